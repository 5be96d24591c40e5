/* The master <-> child channel: a SOCK_SEQPACKET socketpair carrying one
 * fixed-size message per packet, optionally with one file descriptor passed by
 * SCM_RIGHTS (HAProxy's proto_sockpair.c is the model). Used by the master and
 * every child. */
#ifndef VB_COMMON_CHAN_H
#define VB_COMMON_CHAN_H

#include <stdint.h>
#include <sys/types.h>

typedef enum {
    VB_CHAN_CONN = 1,    /* master -> child: a new connection (fd attached) */
    VB_CHAN_QUIT,        /* master -> child: finish what you have and exit */
    VB_CHAN_RELOAD,      /* master -> broker/store: re-read the config file */
    VB_CHAN_REOPEN_LOGS, /* master -> child: SIGUSR1 was received */
    VB_CHAN_DONE,        /* worker -> master: a call ended (slot, gen) */
    VB_CHAN_CLOSED,      /* api -> master: a connection ended */
    VB_CHAN__MAX
} vb_chan_type_t;

enum { VB_LISTENER_API = 0, VB_LISTENER_MEDIA = 1 };

typedef struct {
    uint32_t type;
    uint32_t listener; /* VB_LISTENER_* with VB_CHAN_CONN */
    uint32_t slot;     /* shm slot of the call, with CONN to a media worker and DONE */
    uint32_t gen;      /* the slot's generation */
    uint32_t flags;    /* VB_CHAN_F_FAILED with DONE: the call ended in error */
    uint32_t pad;
} vb_chan_msg_t;

#define VB_CHAN_F_FAILED 1u
/* With DONE: the worker wants to leave (it ran short of memory). The master
 * answers QUIT, so every CONN it sent before is read by the worker first and
 * none is lost in the exit. */
#define VB_CHAN_F_LEAVING 2u

/* Create the pair: fds[0] for the master, fds[1] for the child. */
int vb_chan_pair(int fds[2]);
/* Send MSG with FD (-1 for none). 0 or -errno (-EAGAIN when the peer is full). */
int vb_chan_send(int chan, const vb_chan_msg_t *msg, int fd);
/* Receive one message; *fd gets the passed descriptor or -1. 0, -EAGAIN,
 * -EPIPE at EOF, -EPROTO for a malformed packet (any passed fd is closed;
 * counted in chan_bad_packets and logged, throttled), -EMFILE for a CONN whose
 * descriptor the kernel could not install here (open-files limit): MSG is
 * valid then, so the receiver can give back what the master counted for it. */
int vb_chan_recv(int chan, vb_chan_msg_t *msg, int *fd);
/* Count and log (throttled) a packet that is well formed but makes no sense
 * from that peer (a message type it never sends); N is its size. */
void vb_chan_bad(const char *why, ssize_t n);

#endif
