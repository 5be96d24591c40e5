/* Refusing a connection without resetting it. A process that answers 503 on a
 * fresh connection and closes it while the client is still sending (a request
 * body, or a request that arrived after the answer) makes the kernel send a
 * reset: the client's send fails, and a client that has not read the answer yet
 * never sees the 503 or its Retry-After. Here the answer is followed by a FIN
 * and what the client still sends is read and dropped until it stops (EOF),
 * for at most VB_LINGER_MS or VB_LINGER_BYTES, then the descriptor is closed:
 * nginx's lingering close. At most MAX connections linger at once, and each is a
 * descriptor the owner must budget for; past that (or without memory) the
 * connection is closed at once, as vb_http_busy_fd does. */
#ifndef VB_COMMON_LINGER_H
#define VB_COMMON_LINGER_H

#include <event2/event.h>

#define VB_LINGER_MS 2000
#define VB_LINGER_BYTES (1024 * 1024)

typedef struct vb_linger vb_linger_t;

/* NULL on ENOMEM. */
vb_linger_t *vb_linger_new(struct event_base *base, int max);
/* Closes what still lingers. */
void vb_linger_free(vb_linger_t *l);

/* 503 with Retry-After (vb_http_busy_fd's answer) on FD, then the lingering
 * close. Takes FD. L may be NULL: closed at once. */
void vb_linger_busy(vb_linger_t *l, int fd, const char *message);

/* In a child forked from the owner: closes its copies of the lingering
 * descriptors (the events stay the owner's: the epoll set is shared). */
void vb_linger_close_fds(const vb_linger_t *l);

/* Connections lingering now. */
int vb_linger_count(const vb_linger_t *l);

#endif
