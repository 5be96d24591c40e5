/* The store process: drains every slot's event rings (worker -> store and
 * broker -> store) and appends each record, in order, to the spool under
 * state_dir (store/spool.c), fsync'd before it lets go of a slot. It records
 * the failure of a call whose worker died (the worker could not). With
 * database_url the spool is the write-ahead log of PostgreSQL: the applier
 * (store/apply.c) writes the records there in batches and moves a cursor; with
 * redis_url the live state goes to Redis (store/live.c). Neither database can
 * hold up the rings: they are fed from the spool and the records, after the
 * fsync. */
#include "common/chan.h"
#include "common/clock.h"
#include "common/log.h"
#include "common/role.h"
#include "shm/bell.h"
#include "shm/shm.h"
#include "store/apply.h"
#include "store/live.h"
#include "store/records.h"
#include "store/spool.h"

#include <errno.h>
#include <event2/event.h>
#include <signal.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <time.h>
#include <unistd.h>

#define DRAIN_WAIT_MS 3000     /* at exit: how long records may take to reach PostgreSQL */
#define RETRY_FIRST_MS 100     /* a spool write failed (disk full): the next try after this */
#define RETRY_MAX_MS 2000      /* ... doubling up to this */

typedef struct {
    vb_child_ctx_t *ctx;
    const vb_conf_t *conf; /* the latest good config (reloads) */
    struct event_base *base;
    vb_spool_t spool;
    uint32_t nslots;
    uint32_t *failed_gen; /* per slot: the gen whose failure we recorded */
    uint32_t *ack_gen;    /* per slot: the gen to acknowledge once on disk, 0 = none */
    /* per slot and event ring: how far we have read; the ring lets go of the
     * records only once they are fsync'd in the spool (see release_rings) */
    uint32_t *cursor;
    uint32_t *cursor_gen; /* per slot: the gen the cursors belong to */
    uint8_t *held;        /* per slot: records read and not yet released */
    char *pending;        /* lines drained, not yet synced in the spool */
    size_t pending_len, pending_cap;
    uint32_t retry_ms;    /* the spool backoff now; 0 while writes work */
    uint64_t retry_at_ms; /* no spool write before this */
    uint64_t failing_since_ms;
    vb_rec_t rec;      /* scratch for the live state */
    vb_apply_t *apply; /* NULL without database_url */
    vb_live_t *live;   /* NULL without redis_url */
    struct event *exit_ev;
    uint64_t exit_deadline_ms;
} store_t;

static store_t store;

static void add_line(store_t *st, const char *line, size_t len)
{
    if (st->pending_len + len > st->pending_cap) {
        size_t cap = st->pending_cap ? st->pending_cap : 65536;
        while (cap < st->pending_len + len) {
            cap *= 2;
        }
        char *p = realloc(st->pending, cap);
        VB_ASSERT(p != NULL);
        st->pending = p;
        st->pending_cap = cap;
    }
    memcpy(st->pending + st->pending_len, line, len);
    st->pending_len += len;
}

/* {"t":<unix ns>,<the record's own fields>} */
static void take_event(store_t *st, const vb_event_t *ev)
{
    char line[sizeof(ev->data) + 96];
    if (ev->len < 2 || ev->len >= sizeof(ev->data) || ev->data[0] != '{') {
        vb_log(VB_LOG_WARN, "dropped a malformed event record (%u bytes)", ev->len);
        return;
    }
    int n = snprintf(line, sizeof(line), "{\"t\":%llu,%.*s\n", (unsigned long long)ev->t_ns,
                     (int)ev->len - 1, ev->data + 1);
    add_line(st, line, (size_t)n);
}

static void peek_all(store_t *st, vb_ring_t *r, uint32_t *cursor, uint32_t i)
{
    vb_event_t ev;
    uint32_t len;
    int rc;
    while ((rc = vb_ring_peek(r, cursor, &ev, sizeof(ev), &len)) != -EAGAIN) {
        if (rc == 0) {
            take_event(st, &ev);
        }
        st->held[i] = 1;
    }
}

/* K: 0 for the worker's event ring, 1 for the broker's. A new call (gen) on
 * the slot has reset its rings: our cursors start again at their heads. Should the gen move
 * while we read, we read again from 0 (a record twice is harmless, a record
 * skipped is lost). */
static void drain_ring(store_t *st, uint32_t i, int k)
{
    vb_slot_t *s = vb_shm_slot(st->ctx->shm, i);
    vb_ring_t *r = vb_slot_ring(s, k ? VB_RING_EVENTS_B2S : VB_RING_EVENTS_W2S);
    for (int pass = 0; pass < 2; pass++) {
        uint32_t gen = vb_slot_gen(s);
        if (gen != st->cursor_gen[i]) {
            st->cursor[2 * i] = vb_ring_cursor(vb_slot_ring(s, VB_RING_EVENTS_W2S));
            st->cursor[2 * i + 1] = vb_ring_cursor(vb_slot_ring(s, VB_RING_EVENTS_B2S));
            st->cursor_gen[i] = gen;
        }
        peek_all(st, r, &st->cursor[2 * i + (uint32_t)k], i);
        if (vb_slot_gen(s) == gen) {
            break;
        }
    }
}

/* The records read so far are on disk: the rings may reuse their room. A store
 * killed before this finds them again at its next start (records are
 * idempotent in PostgreSQL: the spool may hold one twice). */
static void release_rings(store_t *st)
{
    for (uint32_t i = 0; i < st->nslots; i++) {
        if (st->held[i]) {
            vb_slot_t *s = vb_shm_slot(st->ctx->shm, i);
            vb_ring_release(vb_slot_ring(s, VB_RING_EVENTS_W2S), st->cursor[2 * i]);
            vb_ring_release(vb_slot_ring(s, VB_RING_EVENTS_B2S), st->cursor[2 * i + 1]);
            st->held[i] = 0;
        }
    }
}

/* The call.ended the dead worker could not write. Its length comes from the
 * slot's monotonic start, which a wall-clock step does not move. */
static void record_failure(store_t *st, vb_slot_t *s)
{
    char line[512];
    int n = snprintf(line, sizeof(line),
                     "{\"t\":%llu,\"type\":\"call.ended\",\"call_id\":\"%s\",\"reason\":"
                     "\"media worker crashed\",\"failed\":true,\"duration_ms\":%llu,"
                     "\"frames_in\":%llu,\"frames_out\":%llu}\n",
                     (unsigned long long)vb_wall_ns(), s->call_id,
                     (unsigned long long)vb_slot_age_ms(s),
                     (unsigned long long)atomic_load(&s->frames_in),
                     (unsigned long long)atomic_load(&s->frames_out));
    add_line(st, line, (size_t)n);
    vb_log(VB_LOG_WARN, "call %s failed: its media worker crashed", s->call_id);
}

static void scan_slot(store_t *st, uint32_t i)
{
    vb_slot_t *s = vb_shm_slot(st->ctx->shm, i);
    drain_ring(st, i, 0);
    drain_ring(st, i, 1);
    uint32_t state = atomic_load_explicit(&s->state, memory_order_acquire);
    uint32_t gen = atomic_load_explicit(&s->gen, memory_order_acquire);
    if (state == VB_SLOT_DEAD && st->failed_gen[i] != gen) {
        st->failed_gen[i] = gen;
        if (s->call_id[0] != '\0') {
            record_failure(st, s);
        }
    }
    /* The broker writes its last records (the turn it was speaking) when it
     * lets go: let go after it, so the slot is not reused under them. */
    if ((state == VB_SLOT_ENDING || state == VB_SLOT_DEAD) &&
        atomic_load_explicit(&s->store_ack_gen, memory_order_relaxed) != gen &&
        atomic_load_explicit(&s->broker_ack_gen, memory_order_acquire) == gen) {
        drain_ring(st, i, 1);
        st->ack_gen[i] = gen;
    }
}

/* The records of this round, once written: to Redis. */
static void publish_live(store_t *st)
{
    size_t pos = 0;
    while (st->live != NULL && pos < st->pending_len) {
        char *nl = memchr(st->pending + pos, '\n', st->pending_len - pos);
        size_t len = (size_t)(nl - (st->pending + pos));
        if (vb_rec_parse(st->pending + pos, len, &st->rec) == 0) {
            vb_live_record(st->live, &st->rec, st->pending + pos, len);
        }
        pos += len + 1;
    }
}

static void ack_slots(store_t *st)
{
    for (uint32_t i = 0; i < st->nslots; i++) {
        if (st->ack_gen[i] != 0) {
            vb_slot_store_ack(vb_shm_slot(st->ctx->shm, i), st->ack_gen[i]);
            st->ack_gen[i] = 0;
        }
    }
}

static size_t count_lines(const char *p, size_t len)
{
    size_t n = 0;
    for (const char *end = p + len; (p = memchr(p, '\n', (size_t)(end - p))) != NULL; p++) {
        n++;
    }
    return n;
}

/* The pending lines into the spool, synced; they leave memory only then. A
 * failed fdatasync may have cost pages the next one would not report: the
 * unsynced tail is dropped and written again. 0 or -errno. */
static int write_pending(store_t *st)
{
    int rc;
    if (st->pending_len > 0 &&
        (rc = vb_spool_append(&st->spool, st->pending, st->pending_len)) < 0) {
        return rc;
    }
    if ((rc = vb_spool_sync(&st->spool)) < 0) {
        vb_spool_rollback(&st->spool);
        return rc;
    }
    publish_live(st);
    st->pending_len = 0;
    return 0;
}

/* A write failed (a full disk, an I/O error): the records stay in memory and
 * in the rings, the calls go on (the master frees slots we cannot acknowledge
 * after a while), and the next try waits, 0.1 s doubling up to 2 s: a disk
 * that stays full costs a few system calls a second, not a spinning loop.
 * Logged once for a run of failures; every failure is counted. */
static void spool_failed(store_t *st, int rc, uint64_t now)
{
    VB_STAT_INC(spool_write_errors);
    if (st->retry_ms == 0) {
        st->failing_since_ms = now;
        vb_log(VB_LOG_ERR,
               "spool: cannot write %zu records to %s: %s; they are kept in memory "
               "and written when it works again",
               count_lines(st->pending, st->pending_len), st->spool.dir, strerror(-rc));
    }
    st->retry_ms = st->retry_ms == 0 ? RETRY_FIRST_MS : st->retry_ms * 2;
    if (st->retry_ms > RETRY_MAX_MS) {
        st->retry_ms = RETRY_MAX_MS;
    }
    st->retry_at_ms = now + st->retry_ms;
}

static void spool_recovered(store_t *st, size_t lines, uint64_t now)
{
    vb_log(VB_LOG_NOTICE,
           "spool: writing again after %.1f s of errors; the %zu records "
           "held meanwhile are on disk",
           (double)(now - st->failing_since_ms) / 1000.0, lines);
    st->retry_ms = 0;
}

/* Records are on disk before a slot is acknowledged: one write and one
 * fdatasync per round. On an error they stay pending and the slots unacked
 * until a later round gets them there (see spool_failed). */
static void flush(store_t *st)
{
    uint64_t now = vb_mono_ms();
    if (st->retry_ms != 0 && now < st->retry_at_ms) {
        return;
    }
    size_t lines = st->retry_ms != 0 ? count_lines(st->pending, st->pending_len) : 0;
    int rc = write_pending(st);
    if (rc < 0) {
        spool_failed(st, rc, now);
        return;
    }
    if (st->retry_ms != 0) {
        spool_recovered(st, lines, now);
    }
    release_rings(st);
    ack_slots(st);
    vb_apply_kick(st->apply);
}

static void on_tick(evutil_socket_t fd, short what, void *arg)
{
    store_t *st = arg;
    vb_shm_beat(st->ctx->shm, VB_BEAT_STORE);
    for (uint32_t i = 0; i < st->nslots; i++) {
        scan_slot(st, i);
    }
    flush(st);
}

static void on_bell(evutil_socket_t fd, short what, void *arg)
{
    vb_bell_ack(fd);
    uint32_t i = (uint32_t)(uintptr_t)arg;
    scan_slot(&store, i);
    flush(&store);
}

/* Leaving: wait a little for the last records to reach PostgreSQL (they are
 * in the spool either way and go there at the next start). */
static void on_exit_check(evutil_socket_t fd, short what, void *arg)
{
    store_t *st = arg;
    if (vb_apply_idle(st->apply) || vb_mono_ms() >= st->exit_deadline_ms) {
        event_base_loopexit(st->base, NULL);
        return;
    }
    struct timeval tv = {0, 20000};
    evtimer_add(st->exit_ev, &tv);
}

static void begin_exit(store_t *st)
{
    on_tick(-1, 0, st); /* last drain */
    if (st->exit_ev == NULL) {
        st->exit_deadline_ms = vb_mono_ms() + DRAIN_WAIT_MS;
        st->exit_ev = evtimer_new(st->base, on_exit_check, st);
        on_exit_check(-1, 0, st);
    }
}

static void open_databases(store_t *st, const vb_conf_t *old);

/* SIGHUP: a new database_url or redis_url takes effect now. Records in flight
 * to the old database stay in the spool and go to the new one. */
static void reload(store_t *st)
{
    vb_conf_t *next = malloc(sizeof(*next));
    char err[512];
    if (next == NULL || vb_conf_load(next, st->conf->path, err, sizeof(err)) < 0) {
        vb_log(VB_LOG_ERR, "reload: keeping the running config: %s", next ? err : "no memory");
        free(next);
        return;
    }
    vb_conf_finalize(next);
    vb_conf_keep_restart_keys(next, st->conf);
    const vb_conf_t *old = st->conf;
    st->conf = next; /* the old one is not freed: the first one is the master's copy */
    vb_log_set_level(next->log_level);
    open_databases(st, old);
}

static void on_chan(evutil_socket_t fd, short what, void *arg)
{
    store_t *st = arg;
    vb_chan_msg_t msg;
    int passed, rc;
    while ((rc = vb_chan_recv(fd, &msg, &passed)) == 0) {
        if (passed >= 0) {
            close(passed);
        }
        if (msg.type == VB_CHAN_QUIT) {
            begin_exit(st);
        } else if (msg.type == VB_CHAN_RELOAD && st->exit_ev == NULL) {
            reload(st);
        } else if (msg.type == VB_CHAN_REOPEN_LOGS) {
            vb_log_reopen();
        }
    }
    if (rc == -EPIPE) {
        event_del(event_base_get_running_event(st->base));
        begin_exit(st);
    }
}

/* PostgreSQL and Redis, when configured (and changed since OLD, when given).
 * Either may be down now: they are connected in the background. A setting
 * that cannot be used is logged and the store goes on without it: the rings
 * and the spool must keep working whatever happens to the databases. */
static void open_databases(store_t *st, const vb_conf_t *old)
{
    const vb_conf_t *conf = st->conf;
    if (old == NULL || strcmp(old->database_url, conf->database_url) != 0) {
        vb_apply_free(st->apply);
        st->apply = NULL;
        if (conf->database_url[0] != '\0') {
            st->apply = vb_apply_new(st->base, conf->database_url, &st->spool);
            if (st->apply == NULL) {
                vb_log(VB_LOG_ERR, "store: records stay in the spool: cannot use database_url");
            }
            vb_apply_kick(st->apply); /* what a previous run left in the spool */
        }
    }
    if (old == NULL || strcmp(old->redis_url, conf->redis_url) != 0) {
        vb_live_free(st->live);
        st->live = NULL;
        if (conf->redis_url[0] != '\0') {
            st->live = vb_live_new(st->base, conf->redis_url, st->ctx->shm);
            if (st->live == NULL) {
                vb_log(VB_LOG_ERR, "store: no live state: cannot use redis_url");
            }
        }
    }
}

static void add_events(store_t *st)
{
    struct timeval tv = {0, 50000};
    event_add(event_new(st->base, -1, EV_PERSIST, on_tick, st), &tv);
    event_add(event_new(st->base, st->ctx->chan, EV_READ | EV_PERSIST, on_chan, st), NULL);
    for (uint32_t i = 0; i < st->nslots; i++) {
        int fd = vb_shm_bell_fd(st->ctx->shm, i, VB_BELL_STORE);
        event_add(vb_bell_event_new(st->base, fd, on_bell, (void *)(uintptr_t)i), NULL);
    }
}

int vb_store_main(vb_child_ctx_t *ctx)
{
    store_t *st = &store;
    char dir[VB_CONF_STR + 16];
    st->ctx = ctx;
    st->conf = ctx->conf;
    st->nslots = vb_shm_nslots(ctx->shm);
    st->failed_gen = calloc(st->nslots, sizeof(uint32_t));
    st->ack_gen = calloc(st->nslots, sizeof(uint32_t));
    st->cursor = calloc(2 * (size_t)st->nslots, sizeof(uint32_t));
    st->held = calloc(st->nslots, 1);
    st->cursor_gen = calloc(st->nslots, sizeof(uint32_t));
    st->base = event_base_new();
    if (st->failed_gen == NULL || st->ack_gen == NULL || st->cursor == NULL ||
        st->held == NULL || st->cursor_gen == NULL || st->base == NULL) {
        return VB_EXIT_CLEAN;
    }
    snprintf(dir, sizeof(dir), "%s/spool", ctx->conf->state_dir);
    if (vb_spool_open(&st->spool, dir) < 0) {
        return VB_EXIT_CONFIG;
    }
    signal(SIGPIPE, SIG_IGN);
    open_databases(st, NULL);
    add_events(st);
    event_base_dispatch(st->base);
    st->retry_at_ms = 0; /* a last try, whatever the backoff */
    flush(st);
    if (st->pending_len > 0) {
        vb_log(VB_LOG_ERR,
               "store: exiting with %zu records the spool could not take: "
               "they are lost",
               count_lines(st->pending, st->pending_len));
    }
    vb_apply_free(st->apply);
    vb_live_free(st->live);
    vb_spool_close(&st->spool);
    return VB_EXIT_OK;
}
