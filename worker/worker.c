/* The media worker process: receives call connections from the master over
 * its channel and runs each call (call.c) on one libevent loop. By default it
 * serves one call at a time, so a crash ends one call, not many. */
#include "worker/call_int.h"
#include "common/chan.h"
#include "common/httpd.h"
#include "common/log.h"
#include "common/role.h"
#include "common/stats.h"

#include <errno.h>
#include <event2/event.h>
#include <signal.h>
#include <stdlib.h>
#include <string.h>
#include <unistd.h>

/* Address space a call's setup may take (its buffers, the DSP state, TLS): a
 * worker that cannot map this much refuses the call with 503 rather than fail
 * half-way through it (speexdsp does not check its allocations). */
#define CALL_HEADROOM_BYTES (1u << 20)

struct vb_worker {
    vb_child_ctx_t *ctx;
    struct event_base *base;
    struct event *chan_ev, *death_ev;
    int calls;
    int quitting;
    int leaving; /* asked the master for a QUIT (see VB_CHAN_F_LEAVING) */
};

const vb_child_ctx_t *vb_worker_ctx(vb_worker_t *w)
{
    return w->ctx;
}

struct event_base *vb_worker_base(vb_worker_t *w)
{
    return w->base;
}

static void maybe_exit(vb_worker_t *w)
{
    if (w->quitting && w->calls == 0) {
        event_base_loopexit(w->base, NULL);
    }
}

void vb_worker_call_ended(vb_worker_t *w, uint32_t slot, uint32_t gen, int failed)
{
    vb_chan_msg_t msg = {.type = VB_CHAN_DONE, .slot = slot, .gen = gen,
                         .flags = (failed ? VB_CHAN_F_FAILED : 0) |
                                  (w->leaving ? VB_CHAN_F_LEAVING : 0)};
    int rc = vb_chan_send(w->ctx->chan, &msg, -1);
    if (rc < 0) {
        vb_log(VB_LOG_WARN, "telling the master slot %u ended: %s", slot, strerror(-rc));
    }
    w->calls--;
    vb_log_set_call(NULL);
    maybe_exit(w);
}

/* A call that never started: end its slot so the broker and the store let
 * go of it at once and the master can reuse it (not after a timeout), and
 * tell the master it failed. */
static void give_back(vb_worker_t *w, const vb_chan_msg_t *msg)
{
    vb_shm_t *shm = w->ctx->shm;
    if (msg->slot < vb_shm_nslots(shm)) {
        vb_slot_end(vb_shm_slot(shm, msg->slot));
        vb_shm_ring_bell(shm, msg->slot, VB_BELL_BROKER);
        vb_shm_ring_bell(shm, msg->slot, VB_BELL_STORE);
    }
    vb_worker_call_ended(w, msg->slot, msg->gen, 1);
}

/* Short of memory: the caller gets 503 at once, the master its slot back, and
 * this worker leaves (once the master answers QUIT) so the pool replaces it
 * with a fresh fork of the master. */
static void refuse_nomem(vb_worker_t *w, const vb_chan_msg_t *msg, int fd)
{
    VB_STAT_INC(rejected_nomem);
    vb_log(VB_LOG_ERR, "call refused with 503: out of memory (cannot map %u KB for its "
           "setup); this worker exits to be replaced", CALL_HEADROOM_BYTES / 1024);
    vb_http_busy_fd(fd, "the media worker is out of memory");
    w->leaving = 1;
    w->calls++;
    give_back(w, msg);
}

static void on_conn(vb_worker_t *w, const vb_chan_msg_t *msg, int fd)
{
    if (fd < 0 || msg->listener != VB_LISTENER_MEDIA) {
        vb_log(VB_LOG_WARN, "CONN without a media connection");
        if (fd >= 0) {
            close(fd);
        }
        return;
    }
    if (!vb_memory_headroom(CALL_HEADROOM_BYTES)) {
        refuse_nomem(w, msg, fd);
        return;
    }
    w->calls++;
    if (vb_call_new(w, fd, msg->slot, msg->gen) == NULL) {
        give_back(w, msg);
    }
}

/* The call's connection did not reach us (no free descriptor): the master
 * counted it as ours, so give its slot back as a failed call. */
static void on_conn_lost(vb_worker_t *w, const vb_chan_msg_t *msg)
{
    if (msg->listener == VB_LISTENER_MEDIA) {
        w->calls++;
        give_back(w, msg);
    }
}

static void on_chan(evutil_socket_t fd, short what, void *arg)
{
    vb_worker_t *w = arg;
    vb_chan_msg_t msg;
    int passed, rc;
    while ((rc = vb_chan_recv(fd, &msg, &passed)) == 0 || rc == -EPROTO || rc == -EMFILE) {
        if (rc == -EMFILE) {
            on_conn_lost(w, &msg);
            continue;
        }
        if (rc < 0) {
            continue; /* malformed: counted and logged */
        }
        if (msg.type != VB_CHAN_CONN && passed >= 0) {
            close(passed); /* only a CONN carries a descriptor */
        }
        switch (msg.type) {
        case VB_CHAN_CONN:
            on_conn(w, &msg, passed);
            break;
        case VB_CHAN_QUIT:
            w->quitting = 1;
            break;
        case VB_CHAN_REOPEN_LOGS:
            vb_log_reopen();
            break;
        default:
            vb_chan_bad("a message type workers do not take", (ssize_t)sizeof(msg));
            break;
        }
    }
    if (rc == -EPIPE) {
        w->quitting = 1; /* master gone: finish the calls, then exit */
        event_del(w->chan_ev);
    }
    maybe_exit(w);
}

/* Readable death pipe: EOF means the master is gone. Bytes (only the master
 * holds the write end, and it never writes) are garbage: read, counted and
 * ignored; EAGAIN means another child read them first. */
static void on_death(evutil_socket_t fd, short what, void *arg)
{
    vb_worker_t *w = arg;
    char buf[256];
    ssize_t n = read(fd, buf, sizeof(buf));
    if (n > 0 || (n < 0 && (errno == EAGAIN || errno == EINTR))) {
        if (n > 0) {
            vb_chan_bad("bytes on the parent-death pipe", n);
        }
        return;
    }
    vb_log(VB_LOG_WARN, "the master is gone; finishing %d call(s)", w->calls);
    w->quitting = 1;
    event_del(w->death_ev);
    maybe_exit(w);
}

int vb_worker_main(vb_child_ctx_t *ctx)
{
    static vb_worker_t worker;
    vb_worker_t *w = &worker;
    w->ctx = ctx;
    signal(SIGPIPE, SIG_IGN);
    w->base = event_base_new();
    if (w->base == NULL) {
        return VB_EXIT_CLEAN;
    }
    w->chan_ev = event_new(w->base, ctx->chan, EV_READ | EV_PERSIST, on_chan, w);
    w->death_ev = event_new(w->base, ctx->death_fd, EV_READ | EV_PERSIST, on_death, w);
    event_add(w->chan_ev, NULL);
    event_add(w->death_ev, NULL);
    event_base_dispatch(w->base);
    return VB_EXIT_OK;
}
