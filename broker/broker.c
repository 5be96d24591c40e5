/* The AI broker process: serves the calls of the slots assigned to it (slot
 * index modulo brokers), one conversation per call, driven by the caller's
 * audio on the rings. A broker that is restarted after a crash finds its
 * calls still ACTIVE in their slots and takes them over. */
#include "broker/assistants.h"
#include "broker/engine.h"
#include "broker/local.h"
#include "common/chan.h"
#include "common/clock.h"
#include "common/log.h"
#include "common/role.h"
#include "shm/bell.h"

#include <errno.h>
#include <event2/event.h>
#include <signal.h>
#include <stdlib.h>
#include <string.h>
#include <time.h>
#include <unistd.h>

typedef struct {
    vb_child_ctx_t *ctx;
    const vb_conf_t *conf;
    vb_conf_t *own_conf; /* the config read at the last reload, NULL before one */
    struct event_base *base;
    vb_conv_t *convs; /* indexed by slot */
    uint32_t nslots;
    int quitting;
} broker_t;

static broker_t broker;

#define STALE_AUDIO_NS 200000000ull /* caller audio older than this at attach is dropped */

uint64_t vb_broker_now_ns(void)
{
    return vb_mono_ns();
}

int vb_conv_play(vb_conv_t *c, const vb_audio_frame_t *f)
{
    int rc = vb_ring_push(vb_slot_ring(c->slot, VB_RING_AGENT_AUDIO), f, sizeof(*f));
    if (rc == 1) {
        vb_shm_ring_bell(c->shm, c->slot_idx, VB_BELL_WORKER);
    }
    return rc < 0 ? rc : 0;
}

void vb_conv_ctl(vb_conv_t *c, uint32_t type, const char *text)
{
    vb_ctl_msg_t m = {.type = type, .t_ns = vb_broker_now_ns()};
    snprintf(m.text, sizeof(m.text), "%s", text ? text : "");
    if (vb_ring_push(vb_slot_ring(c->slot, VB_RING_CTL_B2W), &m, sizeof(m)) == 1) {
        vb_shm_ring_bell(c->shm, c->slot_idx, VB_BELL_WORKER);
    }
}

static const vb_engine_t *engine_for(const vb_assistant_t *a)
{
    return a->mode == VB_ASSISTANT_LOCAL ? &vb_engine_local : &vb_engine_echo;
}

static void conv_attach(broker_t *b, vb_conv_t *c, uint32_t gen)
{
    vb_slot_t *s = c->slot;
    int rc = vb_assistants_get(b->conf, b->base, s->assistant_id[0] ? s->assistant_id : s->assistant,
                               s->assistant_revision, &c->asst);
    if (rc == -EAGAIN) {
        return; /* loading: the next tick tries again */
    }
    c->gen = gen;
    c->attached = 1;
    if (rc < 0) {
        memset(&c->asst, 0, sizeof(c->asst));
        vb_log(VB_LOG_WARN, "slot %u: assistant '%s' is not configured; echoing", c->slot_idx,
               c->slot->assistant);
    }
    c->engine = engine_for(&c->asst);
    /* Audio that waited long for a broker (the one before died) is stale; the
     * first frames of a call that waited a few ms for its first broker are
     * the caller's first words. */
    c->fresh_after_ns = vb_broker_now_ns() - STALE_AUDIO_NS;
    if (c->engine->attach(c) < 0) {
        /* a call left silent is the worst outcome: end it, with the reason on record */
        vb_log(VB_LOG_ERR, "slot %u: cannot start the %s engine; hanging up", c->slot_idx,
               c->engine->name);
        vb_conv_ctl(c, VB_CTL_HANGUP, "the assistant could not be started");
    }
    vb_slot_broker_attach(c->slot, (int32_t)getpid());
    vb_log(VB_LOG_INFO, "slot %u: serving call %s (%s)", c->slot_idx, c->slot->call_id,
           c->engine->name);
}

static void conv_detach(vb_conv_t *c)
{
    if (c->attached && c->state != NULL) {
        c->engine->detach(c);
    }
    c->attached = 0;
}

static void conv_feed(vb_conv_t *c)
{
    vb_ctl_msg_t m;
    vb_audio_frame_t f;
    uint32_t len;
    while (vb_ring_pop(vb_slot_ring(c->slot, VB_RING_CTL_W2B), &m, sizeof(m), &len) == 0) {
        c->engine->on_ctl(c, &m);
    }
    while (vb_ring_pop(vb_slot_ring(c->slot, VB_RING_CALLER_AUDIO), &f, sizeof(f), &len) == 0) {
        if (f.t_ns >= c->fresh_after_ns) {
            c->engine->on_audio(c, &f);
        }
    }
    c->engine->tick(c, vb_broker_now_ns());
}

/* One slot: attach to a new call, feed a running one, let go of an ended one. */
static void scan_slot(broker_t *b, uint32_t i)
{
    vb_conv_t *c = &b->convs[i];
    vb_slot_t *s = c->slot;
    uint32_t state = atomic_load_explicit(&s->state, memory_order_acquire);
    uint32_t gen = atomic_load_explicit(&s->gen, memory_order_acquire);
    if (c->attached && (gen != c->gen || state != VB_SLOT_ACTIVE)) {
        conv_detach(c);
    }
    if (!c->attached && state == VB_SLOT_ACTIVE && !b->quitting) {
        conv_attach(b, c, gen);
    }
    if (c->attached) {
        if (c->state != NULL) {
            conv_feed(c);
        }
    } else if ((state == VB_SLOT_ENDING || state == VB_SLOT_DEAD) &&
               atomic_load_explicit(&s->broker_ack_gen, memory_order_relaxed) != gen) {
        vb_slot_broker_ack(s, gen);
    }
}

static int mine(const broker_t *b, uint32_t i)
{
    return (int)(i % (uint32_t)b->conf->brokers) == b->ctx->index;
}

static void on_tick(evutil_socket_t fd, short what, void *arg)
{
    broker_t *b = arg;
    vb_shm_beat(b->ctx->shm, b->ctx->index);
    for (uint32_t i = 0; i < b->nslots; i++) {
        if (mine(b, i)) {
            scan_slot(b, i);
        }
    }
}

static void on_bell(evutil_socket_t fd, short what, void *arg)
{
    vb_conv_t *c = arg;
    vb_bell_ack(fd);
    scan_slot(&broker, c->slot_idx);
}

static void reload(broker_t *b)
{
    vb_conf_t *next = malloc(sizeof(*next));
    char err[512];
    if (next == NULL || vb_conf_load(next, b->conf->path, err, sizeof(err)) < 0) {
        vb_log(VB_LOG_ERR, "reload: keeping the running config: %s", next ? err : "no memory");
        free(next);
        return;
    }
    vb_conf_finalize(next);
    vb_conf_keep_restart_keys(next, b->conf);
    /* Calls hold copies of their assistant, nothing points into the old config:
     * free it, unless it is the copy inherited from the master. */
    free(b->own_conf);
    b->own_conf = next;
    b->conf = next;
    vb_log_set_level(next->log_level);
}

static void on_chan(evutil_socket_t fd, short what, void *arg)
{
    broker_t *b = arg;
    vb_chan_msg_t msg;
    int passed, rc;
    while ((rc = vb_chan_recv(fd, &msg, &passed)) == 0) {
        if (passed >= 0) {
            close(passed);
        }
        if (msg.type == VB_CHAN_RELOAD) {
            reload(b);
        } else if (msg.type == VB_CHAN_QUIT) {
            event_base_loopexit(b->base, NULL);
        } else if (msg.type == VB_CHAN_REOPEN_LOGS) {
            vb_log_reopen();
        }
    }
    if (rc == -EPIPE) {
        event_base_loopexit(b->base, NULL);
    }
}

static void add_events(broker_t *b)
{
    struct timeval tv = {0, 20000};
    event_add(event_new(b->base, -1, EV_PERSIST, on_tick, b), &tv);
    event_add(event_new(b->base, b->ctx->chan, EV_READ | EV_PERSIST, on_chan, b), NULL);
    for (uint32_t i = 0; i < b->nslots; i++) {
        vb_conv_t *c = &b->convs[i];
        c->shm = b->ctx->shm;
        c->slot_idx = i;
        c->slot = vb_shm_slot(b->ctx->shm, i);
        if (mine(b, i)) {
            int fd = vb_shm_bell_fd(b->ctx->shm, i, VB_BELL_BROKER);
            event_add(vb_bell_event_new(b->base, fd, on_bell, c), NULL);
        }
    }
}

/* Any assistant may be `local` when they come from the database. */
static int may_serve_local(const vb_conf_t *conf)
{
    for (int i = 0; i < conf->n_assistants; i++) {
        if (conf->assistants[i].mode == VB_ASSISTANT_LOCAL) {
            return 1;
        }
    }
    return conf->database_url[0] != '\0';
}

int vb_broker_main(vb_child_ctx_t *ctx)
{
    broker_t *b = &broker;
    b->ctx = ctx;
    b->conf = ctx->conf;
    b->nslots = vb_shm_nslots(ctx->shm);
    b->convs = calloc(b->nslots, sizeof(*b->convs));
    b->base = event_base_new();
    if (b->convs == NULL || b->base == NULL) {
        return VB_EXIT_CLEAN;
    }
    signal(SIGPIPE, SIG_IGN);
    if (may_serve_local(b->conf)) {
        vb_stt_opts_t stt = {.open_lm = b->conf->local_open_lm};
        vb_local_configure(&stt);
        vb_local_prepare();
    }
    add_events(b);
    event_base_dispatch(b->base);
    vb_assistants_shutdown();
    return VB_EXIT_OK;
}
