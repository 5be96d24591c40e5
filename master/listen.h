/* Listening sockets, opened by the master before it forks. */
#ifndef VB_MASTER_LISTEN_H
#define VB_MASTER_LISTEN_H

#include <stddef.h>

/* Bind and listen on "host:port" ("[::1]:port" for IPv6). Returns the fd or
 * -errno; err gets a message naming the address. */
int vb_listen_tcp(const char *hostport, char *err, size_t errlen);
/* The port a listening fd is bound to (tests bind port 0). */
int vb_listen_port(int fd);

#endif
