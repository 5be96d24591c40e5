/* Redis on a libevent loop through hiredis's libevent adapter, for live state
 * (active calls, events for dashboards). Commands are fire-and-forget: Redis
 * being down or slow never blocks the caller, it only drops live updates,
 * which the owner restores when on_up tells it the connection is back.
 * Reconnects with backoff; AUTH and SELECT from the URL. Used by the store. */
#ifndef VB_COMMON_REDISC_H
#define VB_COMMON_REDISC_H

#include <stddef.h>

struct event_base;
typedef struct vb_redis vb_redis_t;

typedef struct {
    char host[256]; /* "" for a unix socket */
    int port;
    char path[256]; /* unix socket path */
    char user[64];
    char password[256];
    int db;
} vb_redis_url_t;

/* redis://[[USER]:PASSWORD@]HOST[:PORT][/DB], rediss:// is refused (no TLS in
 * this hiredis), unix:///PATH[?db=N], or a bare HOST[:PORT]. Percent-escapes
 * in the password are decoded. 0 or -EINVAL. */
int vb_redis_url_parse(const char *url, vb_redis_url_t *out);

/* Starts connecting. ON_UP(ARG) runs each time a connection is ready (after
 * AUTH/SELECT were sent): the owner re-sends its live state. NULL + errno. */
vb_redis_t *vb_redis_new(struct event_base *base, const char *url, void (*on_up)(void *arg),
                         void *arg);
void vb_redis_free(vb_redis_t *r);

/* Sends ARGV (binary-safe with ARGVLEN, or NUL-terminated when ARGVLEN is
 * NULL). 0 when queued; -ENOTCONN while down; -ENOBUFS when too many replies
 * are outstanding (Redis stalled). Error replies are logged (rate-limited). */
int vb_redis_cmd(vb_redis_t *r, int argc, const char **argv, const size_t *argvlen);
int vb_redis_is_up(const vb_redis_t *r);
/* Commands not sent because Redis was down or stalled, since the start. */
unsigned long long vb_redis_dropped(const vb_redis_t *r);

#endif
