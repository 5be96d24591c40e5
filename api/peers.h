/* Open connections per client address in one api worker, for
 * api_max_connections_per_ip: one address (a slow or idle client, a
 * slowloris) cannot take all of a worker's connections. Event-loop thread only. */
#ifndef VB_API_PEERS_H
#define VB_API_PEERS_H

#include <stdint.h>

#define VB_PEERS_UNTRACKED UINT32_MAX

/* The connection FD's peer takes one more place. Returns 0 and *PLACE (for
 * vb_peers_give; VB_PEERS_UNTRACKED when the address cannot be told or the
 * table is full: such connections are let in), or -EBUSY when the address
 * already holds CAP connections (CAP 0: no limit). */
int vb_peers_take(int fd, uint32_t cap, uint32_t *place);
void vb_peers_give(uint32_t place);

#endif
