/* Listening for a doorbell in an event loop.
 *
 * A bell is an eventfd shared by every process. Where the loop's backend can
 * be edge-triggered (epoll), the bell is registered that way and never read:
 * each write to an eventfd is a new edge, so a wake-up costs no read() (one
 * system call less per 20 ms frame on every side of a call). Elsewhere it is
 * level-triggered and vb_bell_ack() drains it. Every process that listens to
 * bells must do it through here: one level-triggered listener on an undrained
 * eventfd would spin. */
#ifndef VB_SHM_BELL_H
#define VB_SHM_BELL_H

#include <event2/event.h>

/* An EV_PERSIST read event for the bell FD (not yet added). */
struct event *vb_bell_event_new(struct event_base *base, int fd, event_callback_fn cb,
                                void *arg);
/* Call first thing in the callback, before popping the rings. */
void vb_bell_ack(int fd);

#endif
