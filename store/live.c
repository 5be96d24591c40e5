/* Live state in Redis (see live.h): SADD/SREM of the active set, a hash per
 * call with a TTL refreshed while it is up, PUBLISH of every record. Run by
 * the store. */
#include "store/live.h"
#include "common/log.h"
#include "common/redisc.h"

#include <errno.h>
#include <event2/event.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <unistd.h>

#define MAX_PENDING_ENDS 4096 /* calls that ended while Redis was down */
#define REFRESH_S 300

typedef char call_id_t[48];

struct vb_live {
    vb_redis_t *r;
    vb_shm_t *shm;
    char host[64];
    call_id_t *ended; /* MAX_PENDING_ENDS */
    int nended;
    struct event *refresh_ev;
};

typedef struct {
    const char *call_id, *assistant, *from, *to, *call_sid, *stream_sid;
    long long started_ms;
} call_info_t;

static void cmd(vb_live_t *l, int argc, const char **argv)
{
    vb_redis_cmd(l->r, argc, argv, NULL);
}

static void announce(vb_live_t *l, const call_info_t *c)
{
    char key[96], started[32], ttl[16];
    snprintf(key, sizeof(key), VB_LIVE_CALL_PREFIX "%s", c->call_id);
    snprintf(started, sizeof(started), "%lld", c->started_ms);
    snprintf(ttl, sizeof(ttl), "%d", VB_LIVE_CALL_TTL_S);
    const char *sadd[] = {"SADD", VB_LIVE_ACTIVE_KEY, c->call_id};
    const char *hset[] = {"HSET",       key,         "call_id",     c->call_id,    "assistant",
                          c->assistant, "from",      c->from,       "to",          c->to,
                          "call_sid",   c->call_sid, "stream_sid",  c->stream_sid, "started_at",
                          started,      "status",    "in-progress", "host",        l->host};
    const char *expire[] = {"EXPIRE", key, ttl};
    cmd(l, 3, sadd);
    cmd(l, (int)(sizeof(hset) / sizeof(hset[0])), hset);
    cmd(l, 3, expire);
}

static int remove_call(vb_live_t *l, const char *call_id)
{
    char key[96];
    snprintf(key, sizeof(key), VB_LIVE_CALL_PREFIX "%s", call_id);
    const char *srem[] = {"SREM", VB_LIVE_ACTIVE_KEY, call_id};
    const char *del[] = {"DEL", key};
    int rc = vb_redis_cmd(l->r, 3, srem, NULL);
    if (rc == 0) {
        vb_redis_cmd(l->r, 2, del, NULL);
    }
    return rc;
}

static void remember_end(vb_live_t *l, const char *call_id)
{
    if (l->nended == MAX_PENDING_ENDS) { /* the oldest goes; its hash expires anyway */
        memmove(l->ended, l->ended + 1, sizeof(call_id_t) * (MAX_PENDING_ENDS - 1));
        l->nended--;
    }
    snprintf(l->ended[l->nended++], sizeof(call_id_t), "%s", call_id);
}

/* The call in slot I when it is up, from the slot's identity. */
static int slot_call(vb_live_t *l, uint32_t i, call_info_t *c)
{
    vb_slot_t *s = vb_shm_slot(l->shm, i);
    if (vb_slot_state(s) != VB_SLOT_ACTIVE || s->call_id[0] == '\0') {
        return 0;
    }
    *c = (call_info_t){.call_id = s->call_id,
                       .assistant = s->assistant,
                       .from = s->from,
                       .to = s->to,
                       .call_sid = s->call_sid,
                       .stream_sid = s->stream_sid,
                       .started_ms = (long long)(s->start_ns / 1000000u)};
    return 1;
}

/* Redis is (back) up: forget what ended meanwhile, re-add what is up. */
static void on_up(void *arg)
{
    vb_live_t *l = arg;
    int n = l->nended;
    l->nended = 0;
    for (int i = 0; i < n; i++) {
        remove_call(l, l->ended[i]);
    }
    call_info_t c;
    uint32_t nslots = vb_shm_nslots(l->shm);
    for (uint32_t i = 0; i < nslots; i++) {
        if (slot_call(l, i, &c)) {
            announce(l, &c);
        }
    }
}

/* Keep the hashes of long calls from expiring. */
static void on_refresh(evutil_socket_t fd, short what, void *arg)
{
    vb_live_t *l = arg;
    call_info_t c;
    char key[96], ttl[16];
    snprintf(ttl, sizeof(ttl), "%d", VB_LIVE_CALL_TTL_S);
    uint32_t nslots = vb_shm_nslots(l->shm);
    for (uint32_t i = 0; i < nslots && vb_redis_is_up(l->r); i++) {
        if (slot_call(l, i, &c)) {
            snprintf(key, sizeof(key), VB_LIVE_CALL_PREFIX "%s", c.call_id);
            const char *expire[] = {"EXPIRE", key, ttl};
            cmd(l, 3, expire);
        }
    }
}

void vb_live_record(vb_live_t *l, const vb_rec_t *rec, const char *line, size_t len)
{
    if (l == NULL) {
        return;
    }
    if (rec->kind == VB_REC_CALL_STARTED) {
        call_info_t c = {.call_id = rec->call_id,
                         .assistant = rec->assistant,
                         .from = rec->from,
                         .to = rec->to,
                         .call_sid = rec->call_sid,
                         .stream_sid = rec->stream_sid,
                         .started_ms = rec->t_ns / 1000000};
        announce(l, &c);
    } else if (rec->kind == VB_REC_CALL_ENDED && remove_call(l, rec->call_id) < 0) {
        remember_end(l, rec->call_id);
    }
    const char *pub[] = {"PUBLISH", VB_LIVE_EVENTS_CHANNEL, line};
    size_t lens[] = {7, strlen(VB_LIVE_EVENTS_CHANNEL), len};
    vb_redis_cmd(l->r, 3, pub, lens);
}

vb_live_t *vb_live_new(struct event_base *base, const char *redis_url, vb_shm_t *shm)
{
    vb_live_t *l = calloc(1, sizeof(*l));
    if (l == NULL) {
        errno = ENOMEM;
        return NULL;
    }
    l->shm = shm;
    if (gethostname(l->host, sizeof(l->host) - 1) < 0) {
        snprintf(l->host, sizeof(l->host), "unknown");
    }
    l->ended = calloc(MAX_PENDING_ENDS, sizeof(call_id_t));
    l->refresh_ev = event_new(base, -1, EV_PERSIST, on_refresh, l);
    if (l->ended == NULL || l->refresh_ev == NULL) {
        vb_live_free(l);
        errno = ENOMEM;
        return NULL;
    }
    l->r = vb_redis_new(base, redis_url, on_up, l);
    if (l->r == NULL) {
        int e = errno;
        vb_live_free(l);
        errno = e;
        return NULL;
    }
    struct timeval tv = {REFRESH_S, 0};
    event_add(l->refresh_ev, &tv);
    return l;
}

void vb_live_free(vb_live_t *l)
{
    if (l == NULL) {
        return;
    }
    vb_redis_free(l->r);
    if (l->refresh_ev != NULL) {
        event_free(l->refresh_ev);
    }
    free(l->ended);
    free(l);
}
