/* The store process: drains every slot's event rings (worker -> store and
 * broker -> store) and appends each record, in order, to an fsync'd spool
 * under state_dir. It records the failure of a call whose worker died (the
 * worker could not), and tells the master when it has let go of a slot.
 * PostgreSQL and Redis writes join here with "First words"; the spool stays as
 * the place records wait while the database is away. */
#include "common/chan.h"
#include "common/log.h"
#include "common/role.h"
#include "shm/shm.h"

#include <errno.h>
#include <event2/event.h>
#include <fcntl.h>
#include <signal.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/stat.h>
#include <time.h>
#include <unistd.h>

typedef struct {
    vb_child_ctx_t *ctx;
    struct event_base *base;
    int spool_fd;
    uint32_t nslots;
    uint32_t *failed_gen; /* per slot: the gen whose failure we recorded */
    int dirty;            /* written since the last fsync */
} store_t;

static store_t store;

static int mkdir_p(const char *dir)
{
    char path[512];
    snprintf(path, sizeof(path), "%s", dir);
    for (char *p = path + 1; *p != '\0'; p++) {
        if (*p == '/') {
            *p = '\0';
            mkdir(path, 0750);
            *p = '/';
        }
    }
    if (mkdir(path, 0750) < 0 && errno != EEXIST) {
        return -errno;
    }
    return 0;
}

static int open_spool(store_t *st)
{
    char dir[512], path[600];
    snprintf(dir, sizeof(dir), "%s/spool", st->ctx->conf->state_dir);
    int rc = mkdir_p(dir);
    snprintf(path, sizeof(path), "%s/events.jsonl", dir);
    st->spool_fd = rc < 0 ? -1 : open(path, O_WRONLY | O_APPEND | O_CREAT | O_CLOEXEC, 0640);
    if (st->spool_fd < 0) {
        vb_log(VB_LOG_ERR, "cannot open the spool %s: %s", path, strerror(rc < 0 ? -rc : errno));
        return -1;
    }
    return 0;
}

static void write_line(store_t *st, const char *line, size_t len)
{
    while (len > 0) {
        ssize_t n = write(st->spool_fd, line, len);
        if (n < 0 && errno == EINTR) {
            continue;
        }
        if (n < 0) {
            vb_log(VB_LOG_ERR, "spool write: %s", strerror(errno));
            return;
        }
        line += n;
        len -= (size_t)n;
    }
    st->dirty = 1;
}

/* {"t":<unix ns>,<the record's own fields>} */
static void write_event(store_t *st, const vb_event_t *ev)
{
    char line[sizeof(ev->data) + 64];
    if (ev->len < 2 || ev->len >= sizeof(ev->data) || ev->data[0] != '{') {
        vb_log(VB_LOG_WARN, "dropped a malformed event record (%u bytes)", ev->len);
        return;
    }
    int n = snprintf(line, sizeof(line), "{\"t\":%llu,%.*s\n", (unsigned long long)ev->t_ns,
                     (int)ev->len - 1, ev->data + 1);
    write_line(st, line, (size_t)n);
}

static int drain_ring(store_t *st, vb_ring_t *r)
{
    vb_event_t ev;
    uint32_t len;
    int n = 0;
    while (vb_ring_pop(r, &ev, sizeof(ev), &len) == 0) {
        write_event(st, &ev);
        n++;
    }
    return n;
}

static void record_failure(store_t *st, vb_slot_t *s, uint32_t gen)
{
    struct timespec ts;
    clock_gettime(CLOCK_REALTIME, &ts);
    char line[512];
    int n = snprintf(line, sizeof(line),
                     "{\"t\":%llu,\"type\":\"call.ended\",\"call_id\":\"%s\",\"reason\":"
                     "\"media worker crashed\",\"failed\":true,\"frames_in\":%llu,"
                     "\"frames_out\":%llu}\n",
                     (unsigned long long)ts.tv_sec * 1000000000ull + (unsigned long long)ts.tv_nsec,
                     s->call_id, (unsigned long long)atomic_load(&s->frames_in),
                     (unsigned long long)atomic_load(&s->frames_out));
    write_line(st, line, (size_t)n);
    vb_log(VB_LOG_WARN, "call %s failed: its media worker crashed", s->call_id);
}

static void scan_slot(store_t *st, uint32_t i)
{
    vb_slot_t *s = vb_shm_slot(st->ctx->shm, i);
    drain_ring(st, vb_slot_ring(s, VB_RING_EVENTS_W2S));
    drain_ring(st, vb_slot_ring(s, VB_RING_EVENTS_B2S));
    uint32_t state = atomic_load_explicit(&s->state, memory_order_acquire);
    uint32_t gen = atomic_load_explicit(&s->gen, memory_order_acquire);
    if (state == VB_SLOT_DEAD && st->failed_gen[i] != gen) {
        st->failed_gen[i] = gen;
        if (s->call_id[0] != '\0') {
            record_failure(st, s, gen);
        }
    }
    if ((state == VB_SLOT_ENDING || state == VB_SLOT_DEAD) &&
        atomic_load_explicit(&s->store_ack_gen, memory_order_relaxed) != gen) {
        drain_ring(st, vb_slot_ring(s, VB_RING_EVENTS_B2S));
        vb_slot_store_ack(s, gen);
    }
}

/* Records are on disk before the slot is acknowledged: fsync once per round. */
static void flush(store_t *st)
{
    if (st->dirty) {
        fdatasync(st->spool_fd);
        st->dirty = 0;
    }
}

static void on_tick(evutil_socket_t fd, short what, void *arg)
{
    store_t *st = arg;
    for (uint32_t i = 0; i < st->nslots; i++) {
        scan_slot(st, i);
    }
    flush(st);
}

static void on_bell(evutil_socket_t fd, short what, void *arg)
{
    vb_shm_bell_drain(fd);
    uint32_t i = (uint32_t)(uintptr_t)arg;
    scan_slot(&store, i);
    flush(&store);
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
            on_tick(-1, 0, st); /* last drain */
            event_base_loopexit(st->base, NULL);
        } else if (msg.type == VB_CHAN_REOPEN_LOGS) {
            vb_log_reopen();
        }
    }
    if (rc == -EPIPE) {
        on_tick(-1, 0, st);
        event_base_loopexit(st->base, NULL);
    }
}

int vb_store_main(vb_child_ctx_t *ctx)
{
    store_t *st = &store;
    st->ctx = ctx;
    st->nslots = vb_shm_nslots(ctx->shm);
    st->failed_gen = calloc(st->nslots, sizeof(uint32_t));
    st->base = event_base_new();
    if (st->failed_gen == NULL || st->base == NULL) {
        return VB_EXIT_CLEAN;
    }
    if (open_spool(st) < 0) {
        return VB_EXIT_CONFIG;
    }
    signal(SIGPIPE, SIG_IGN);
    struct timeval tv = {0, 50000};
    event_add(event_new(st->base, -1, EV_PERSIST, on_tick, st), &tv);
    event_add(event_new(st->base, ctx->chan, EV_READ | EV_PERSIST, on_chan, st), NULL);
    for (uint32_t i = 0; i < st->nslots; i++) {
        int fd = vb_shm_bell_fd(ctx->shm, i, VB_BELL_STORE);
        event_add(event_new(st->base, fd, EV_READ | EV_PERSIST, on_bell, (void *)(uintptr_t)i),
                  NULL);
    }
    event_base_dispatch(st->base);
    flush(st);
    return VB_EXIT_OK;
}
