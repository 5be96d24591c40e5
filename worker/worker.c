/* The media worker process: receives call connections from the master over
 * its channel and runs each call (call.c) on one libevent loop. By default it
 * serves one call at a time, so a crash ends one call, not many. */
#include "worker/call_int.h"
#include "common/chan.h"
#include "common/log.h"
#include "common/role.h"

#include <errno.h>
#include <event2/event.h>
#include <signal.h>
#include <stdlib.h>
#include <string.h>
#include <unistd.h>

struct vb_worker {
    vb_child_ctx_t *ctx;
    struct event_base *base;
    struct event *chan_ev, *death_ev;
    int calls;
    int quitting;
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
                         .flags = failed ? VB_CHAN_F_FAILED : 0};
    int rc = vb_chan_send(w->ctx->chan, &msg, -1);
    if (rc < 0) {
        vb_log(VB_LOG_WARN, "telling the master slot %u ended: %s", slot, strerror(-rc));
    }
    w->calls--;
    vb_log_set_call(NULL);
    maybe_exit(w);
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
    w->calls++;
    if (vb_call_new(w, fd, msg->slot, msg->gen) == NULL) {
        vb_worker_call_ended(w, msg->slot, msg->gen, 1);
    }
}

static void on_chan(evutil_socket_t fd, short what, void *arg)
{
    vb_worker_t *w = arg;
    vb_chan_msg_t msg;
    int passed, rc;
    while ((rc = vb_chan_recv(fd, &msg, &passed)) == 0) {
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
            break;
        }
    }
    if (rc == -EPIPE) {
        w->quitting = 1; /* master gone: finish the calls, then exit */
        event_del(w->chan_ev);
    }
    maybe_exit(w);
}

static void on_death(evutil_socket_t fd, short what, void *arg)
{
    vb_worker_t *w = arg;
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
    w->death_ev = event_new(w->base, ctx->death_fd, EV_READ, on_death, w);
    event_add(w->chan_ev, NULL);
    event_add(w->death_ev, NULL);
    event_base_dispatch(w->base);
    return VB_EXIT_OK;
}
