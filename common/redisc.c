/* Redis client on a libevent loop (see redisc.h): hiredis async context with
 * the libevent adapter, reconnect with backoff, a connect timeout and a stall
 * check of our own (this hiredis has neither). Used by the store. */
#include "common/redisc.h"
#include "common/clock.h"
#include "common/log.h"

#include <ctype.h>
#include <errno.h>
#include <event2/event.h>
#include <hiredis/adapters/libevent.h>
#include <hiredis/async.h>
#include <hiredis/hiredis.h>
#include <stdint.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <time.h>

#define MAX_OUTSTANDING 20000 /* unanswered commands before we call Redis stalled */
#define STALL_MS 10000        /* no reply for this long with commands outstanding */
#define CONNECT_TIMEOUT_MS 3000
#define BACKOFF_MIN_MS 100
#define BACKOFF_MAX_MS 5000

struct vb_redis {
    struct event_base *base;
    vb_redis_url_t url;
    redisAsyncContext *ac;
    int up;
    int failing;
    int backoff_ms;
    long outstanding;
    uint64_t last_reply_ms;
    unsigned long long dropped;
    uint64_t last_err_log_ms;
    struct event *timer; /* reconnect, connect timeout, stall check */
    void (*on_up)(void *arg);
    void *arg;
};

/* ---- URL ------------------------------------------------------------------ */

static int unescape(const char *s, size_t len, char *out, size_t cap)
{
    size_t o = 0;
    for (size_t i = 0; i < len; i++) {
        int c = (unsigned char)s[i];
        if (c == '%') {
            if (i + 2 >= len || !isxdigit((unsigned char)s[i + 1]) ||
                !isxdigit((unsigned char)s[i + 2])) {
                return -EINVAL;
            }
            char hex[3] = {s[i + 1], s[i + 2], 0};
            c = (int)strtol(hex, NULL, 16);
            i += 2;
        }
        if (o + 1 >= cap || c == 0) {
            return -EINVAL;
        }
        out[o++] = (char)c;
    }
    out[o] = '\0';
    return 0;
}

static int parse_num(const char *s, size_t len, int lo, int hi, int *out)
{
    if (len == 0 || len > 9) {
        return -EINVAL;
    }
    int v = 0;
    for (size_t i = 0; i < len; i++) {
        if (!isdigit((unsigned char)s[i])) {
            return -EINVAL;
        }
        v = v * 10 + (s[i] - '0');
    }
    if (v < lo || v > hi) {
        return -EINVAL;
    }
    *out = v;
    return 0;
}

/* [USER]:PASSWORD@ */
static int parse_userinfo(const char *s, size_t len, vb_redis_url_t *u)
{
    const char *colon = memchr(s, ':', len);
    if (colon == NULL) { /* redis://PASSWORD@host is not a form we accept */
        return -EINVAL;
    }
    size_t ulen = (size_t)(colon - s);
    if (unescape(s, ulen, u->user, sizeof(u->user)) < 0) {
        return -EINVAL;
    }
    return unescape(colon + 1, len - ulen - 1, u->password, sizeof(u->password));
}

/* HOST[:PORT][/DB] */
static int parse_hostport(const char *s, vb_redis_url_t *u)
{
    size_t end = strcspn(s, "/");
    const char *colon = memchr(s, ':', end);
    size_t hlen = colon ? (size_t)(colon - s) : end;
    if (s[0] == '[') { /* [v6]:port */
        const char *close = memchr(s, ']', end);
        if (close == NULL) {
            return -EINVAL;
        }
        hlen = (size_t)(close - s) + 1;
        colon = (close[1] == ':') ? close + 1 : NULL;
        if (hlen - 2 >= sizeof(u->host)) {
            return -EINVAL;
        }
        snprintf(u->host, sizeof(u->host), "%.*s", (int)(hlen - 2), s + 1);
    } else {
        if (hlen == 0 || hlen >= sizeof(u->host)) {
            return -EINVAL;
        }
        snprintf(u->host, sizeof(u->host), "%.*s", (int)hlen, s);
    }
    if (colon != NULL &&
        parse_num(colon + 1, end - (size_t)(colon + 1 - s), 1, 65535, &u->port) < 0) {
        return -EINVAL;
    }
    if (s[end] == '/' && s[end + 1] != '\0') {
        return parse_num(s + end + 1, strlen(s + end + 1), 0, 100000, &u->db);
    }
    return 0;
}

static int parse_unix(const char *s, vb_redis_url_t *u)
{
    size_t plen = strcspn(s, "?");
    if (plen == 0 || s[0] != '/' || plen >= sizeof(u->path)) {
        return -EINVAL;
    }
    snprintf(u->path, sizeof(u->path), "%.*s", (int)plen, s);
    if (s[plen] == '?') {
        if (strncmp(s + plen + 1, "db=", 3) != 0) {
            return -EINVAL;
        }
        return parse_num(s + plen + 4, strlen(s + plen + 4), 0, 100000, &u->db);
    }
    return 0;
}

int vb_redis_url_parse(const char *url, vb_redis_url_t *out)
{
    memset(out, 0, sizeof(*out));
    out->port = 6379;
    if (url == NULL || url[0] == '\0') {
        return -EINVAL;
    }
    if (strncmp(url, "unix://", 7) == 0) {
        return parse_unix(url + 7, out);
    }
    const char *s = url;
    if (strncmp(s, "redis://", 8) == 0) {
        s += 8;
    } else if (strstr(s, "://") != NULL) {
        return -EINVAL; /* rediss:// (TLS) and anything else */
    }
    const char *at = strrchr(s, '@');
    if (at != NULL) {
        if (parse_userinfo(s, (size_t)(at - s), out) < 0) {
            return -EINVAL;
        }
        s = at + 1;
    }
    return parse_hostport(s, out);
}

/* ---- connection ----------------------------------------------------------- */

static void start_connect(vb_redis_t *r);

static void arm(vb_redis_t *r, int ms)
{
    struct timeval tv = {ms / 1000, (ms % 1000) * 1000};
    evtimer_add(r->timer, &tv);
}

static void schedule_reconnect(vb_redis_t *r, const char *why)
{
    int ms = r->failing ? r->backoff_ms : 0;
    if (r->failing) {
        r->backoff_ms = r->backoff_ms * 2 > BACKOFF_MAX_MS ? BACKOFF_MAX_MS : r->backoff_ms * 2;
    }
    vb_log(r->failing ? VB_LOG_DEBUG : VB_LOG_WARN,
           "Redis unavailable (%s): live state is not updated until it is back", why);
    r->failing = 1;
    r->up = 0;
    r->outstanding = 0;
    arm(r, ms);
}

/* Drop the context ourselves (timeout, stall): its callbacks see it is not ours. */
static void drop(vb_redis_t *r, const char *why)
{
    redisAsyncContext *ac = r->ac;
    r->ac = NULL;
    if (ac != NULL) {
        redisAsyncFree(ac);
    }
    schedule_reconnect(r, why);
}

static void on_connect(const redisAsyncContext *ac, int status)
{
    vb_redis_t *r = ac->data;
    if (r == NULL || ac != r->ac) {
        return;
    }
    if (status != REDIS_OK) {
        r->ac = NULL; /* hiredis frees it after this callback */
        schedule_reconnect(r, ac->errstr[0] ? ac->errstr : "connect failed");
        return;
    }
    vb_log(r->failing ? VB_LOG_NOTICE : VB_LOG_INFO, "Redis connected");
    r->up = 1;
    r->failing = 0;
    r->backoff_ms = BACKOFF_MIN_MS;
    r->last_reply_ms = vb_mono_ms();
    evtimer_del(r->timer);
    arm(r, 1000); /* stall checks */
    if (r->on_up != NULL) {
        r->on_up(r->arg);
    }
}

static void on_disconnect(const redisAsyncContext *ac, int status)
{
    vb_redis_t *r = ac->data;
    if (r == NULL || ac != r->ac) {
        return;
    }
    r->ac = NULL; /* freed by hiredis after this callback */
    schedule_reconnect(r, ac->errstr[0] ? ac->errstr : "connection closed");
}

static void log_error_reply(vb_redis_t *r, const redisReply *rep)
{
    uint64_t now = vb_mono_ms();
    if (now - r->last_err_log_ms >= 10000) {
        r->last_err_log_ms = now;
        vb_log(VB_LOG_WARN, "Redis refused a command: %.*s", (int)rep->len, rep->str);
    }
}

static void on_reply(redisAsyncContext *ac, void *reply, void *privdata)
{
    vb_redis_t *r = privdata;
    if (r == NULL || ac != r->ac) {
        return; /* a context being freed */
    }
    r->outstanding--;
    r->last_reply_ms = vb_mono_ms();
    const redisReply *rep = reply;
    if (rep != NULL && rep->type == REDIS_REPLY_ERROR) {
        log_error_reply(r, rep);
    }
}

static void send_login(vb_redis_t *r)
{
    if (r->url.password[0] != '\0') {
        const char *auth[] = {"AUTH", r->url.user, r->url.password};
        if (r->url.user[0] != '\0') {
            redisAsyncCommandArgv(r->ac, on_reply, r, 3, auth, NULL);
        } else {
            auth[1] = r->url.password;
            redisAsyncCommandArgv(r->ac, on_reply, r, 2, auth, NULL);
        }
        r->outstanding++;
    }
    if (r->url.db != 0) {
        char db[16];
        snprintf(db, sizeof(db), "%d", r->url.db);
        const char *sel[] = {"SELECT", db};
        redisAsyncCommandArgv(r->ac, on_reply, r, 2, sel, NULL);
        r->outstanding++;
    }
}

static void start_connect(vb_redis_t *r)
{
    redisAsyncContext *ac = r->url.path[0] ? redisAsyncConnectUnix(r->url.path)
                                           : redisAsyncConnect(r->url.host, r->url.port);
    if (ac == NULL || ac->err) {
        char why[128];
        snprintf(why, sizeof(why), "%s", ac ? ac->errstr : "out of memory");
        if (ac != NULL) {
            redisAsyncFree(ac);
        }
        schedule_reconnect(r, why);
        return;
    }
    ac->data = r;
    r->ac = ac;
    redisLibeventAttach(ac, r->base);
    redisAsyncSetConnectCallback(ac, on_connect);
    redisAsyncSetDisconnectCallback(ac, on_disconnect);
    r->outstanding = 0;
    send_login(r); /* queued until the connection is up */
    arm(r, CONNECT_TIMEOUT_MS);
}

static void on_timer(evutil_socket_t fd, short what, void *arg)
{
    vb_redis_t *r = arg;
    if (r->ac == NULL) {
        start_connect(r);
    } else if (!r->up) {
        drop(r, "timed out connecting");
    } else if (r->outstanding > 0 && vb_mono_ms() - r->last_reply_ms > STALL_MS) {
        drop(r, "no reply: stalled");
    } else {
        arm(r, 1000);
    }
}

vb_redis_t *vb_redis_new(struct event_base *base, const char *url, void (*on_up)(void *arg),
                         void *arg)
{
    vb_redis_t *r = calloc(1, sizeof(*r));
    if (r == NULL) {
        errno = ENOMEM;
        return NULL;
    }
    if (vb_redis_url_parse(url, &r->url) < 0) {
        vb_log(VB_LOG_ERR, "redis_url: cannot read '%s'", url);
        free(r);
        errno = EINVAL;
        return NULL;
    }
    r->base = base;
    r->on_up = on_up;
    r->arg = arg;
    r->backoff_ms = BACKOFF_MIN_MS;
    r->timer = evtimer_new(base, on_timer, r);
    if (r->timer == NULL) {
        free(r);
        errno = ENOMEM;
        return NULL;
    }
    start_connect(r);
    return r;
}

void vb_redis_free(vb_redis_t *r)
{
    if (r == NULL) {
        return;
    }
    redisAsyncContext *ac = r->ac;
    r->ac = NULL;
    if (ac != NULL) {
        redisAsyncFree(ac);
    }
    event_free(r->timer);
    free(r);
}

int vb_redis_cmd(vb_redis_t *r, int argc, const char **argv, const size_t *argvlen)
{
    if (r == NULL || !r->up || r->ac == NULL) {
        if (r != NULL) {
            r->dropped++;
        }
        return -ENOTCONN;
    }
    if (r->outstanding >= MAX_OUTSTANDING) {
        r->dropped++;
        return -ENOBUFS;
    }
    if (redisAsyncCommandArgv(r->ac, on_reply, r, argc, argv, argvlen) != REDIS_OK) {
        r->dropped++;
        return -ENOTCONN;
    }
    if (r->outstanding++ == 0) {
        r->last_reply_ms = vb_mono_ms(); /* the stall clock starts with the first outstanding */
    }
    return 0;
}

int vb_redis_is_up(const vb_redis_t *r)
{
    return r != NULL && r->up;
}

unsigned long long vb_redis_dropped(const vb_redis_t *r)
{
    return r ? r->dropped : 0;
}
