/* Connections per client address (see peers.h): an open-addressing table.
 * An entry whose count fell to 0 keeps its address and may be reused by
 * another; an address has at most one entry with a count, because a lookup
 * runs the whole probe chain (to an entry never used) before inserting. */
#include "api/peers.h"

#include <errno.h>
#include <netinet/in.h>
#include <string.h>
#include <sys/socket.h>

#define PEERS 4096 /* a power of two */

typedef struct {
    uint8_t addr[16]; /* IPv4 as IPv4-mapped IPv6 */
    uint8_t used;     /* ever used: ends a probe chain when 0 */
    uint32_t count;
} peer_t;

static peer_t peers[PEERS];

static int peer_addr(int fd, uint8_t out[16])
{
    struct sockaddr_storage ss;
    socklen_t len = sizeof(ss);
    if (getpeername(fd, (struct sockaddr *)&ss, &len) < 0) {
        return -1;
    }
    if (ss.ss_family == AF_INET6) {
        memcpy(out, &((struct sockaddr_in6 *)&ss)->sin6_addr, 16);
        return 0;
    }
    if (ss.ss_family == AF_INET) {
        memset(out, 0, 10);
        out[10] = out[11] = 0xff;
        memcpy(out + 12, &((struct sockaddr_in *)&ss)->sin_addr, 4);
        return 0;
    }
    return -1; /* a Unix socket: no address to count */
}

static uint32_t hash(const uint8_t a[16])
{
    uint32_t h = 2166136261u; /* FNV-1a */
    for (int i = 0; i < 16; i++) {
        h = (h ^ a[i]) * 16777619u;
    }
    return h & (PEERS - 1);
}

/* The entry holding ADDR with a count, else the first reusable one on its
 * chain; VB_PEERS_UNTRACKED when the table is full. */
static uint32_t find(const uint8_t addr[16])
{
    uint32_t free_at = VB_PEERS_UNTRACKED, i = hash(addr);
    for (uint32_t n = 0; n < PEERS; n++, i = (i + 1) & (PEERS - 1)) {
        peer_t *p = &peers[i];
        if (p->used && p->count > 0 && memcmp(p->addr, addr, 16) == 0) {
            return i;
        }
        if (free_at == VB_PEERS_UNTRACKED && (!p->used || p->count == 0)) {
            free_at = i;
        }
        if (!p->used) {
            break;
        }
    }
    return free_at;
}

int vb_peers_take(int fd, uint32_t cap, uint32_t *place)
{
    uint8_t addr[16];
    *place = VB_PEERS_UNTRACKED;
    if (cap == 0 || peer_addr(fd, addr) < 0) {
        return 0;
    }
    uint32_t i = find(addr);
    if (i == VB_PEERS_UNTRACKED) {
        return 0;
    }
    peer_t *p = &peers[i];
    if (p->count == 0) {
        memcpy(p->addr, addr, 16);
        p->used = 1;
    } else if (p->count >= cap) {
        return -EBUSY;
    }
    p->count++;
    *place = i;
    return 0;
}

void vb_peers_give(uint32_t place)
{
    if (place < PEERS && peers[place].count > 0) {
        peers[place].count--;
    }
}
