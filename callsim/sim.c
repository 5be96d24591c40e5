/* voxbridge-callsim: the run of calls on one libevent loop (see sim.h): the ramp that
 * starts them, the shared tick on an absolute grid (no drift however late one wake-up
 * is; 20 ms, or 20/N ms with --phases N), the overall timeout and the end of the run. */
#include <errno.h>
#include <event2/event.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#include "callsim/sim_int.h"
#include "common/log.h"
#include "common/tls.h"

#define HTTP_TIMEOUT_MS 15000
#define TIMEOUT_SLACK_S 30.0
#define GRACE_S 3

void vb_cs_sim_conv_opts(const vb_cs_opts_t *o, vb_cs_conv_opts_t *co)
{
    co->pause_ms = o->pause_ms;
    co->gap_ms = o->gap_ms;
    co->wait_ms = o->wait_ms;
    co->tail_ms = VB_CS_TAIL_MS;
}

double vb_cs_sim_call_ms(const vb_cs_opts_t *o, const vb_cs_audio_t *audio)
{
    if (o->duration_s > 0) {
        return o->duration_s * 1000.0;
    }
    if (vb_cs_opts_conversation(o)) {
        vb_cs_conv_opts_t co;
        vb_cs_sim_conv_opts(o, &co);
        return vb_cs_conv_max_ms(audio, &co);
    }
    return (double)vb_cs_audio_frames(audio) * 20.0 + VB_CS_TAIL_MS;
}

void vb_cs_sim_out_path(const char *out, int n, int calls, char *buf, size_t cap)
{
    if (calls <= 1) {
        snprintf(buf, cap, "%s", out);
        return;
    }
    const char *slash = strrchr(out, '/');
    const char *dot = strrchr(out, '.');
    if (dot == NULL || (slash != NULL && dot < slash) || dot == out || dot[-1] == '/') {
        snprintf(buf, cap, "%s-%d", out, n);
        return;
    }
    snprintf(buf, cap, "%.*s-%d%s", (int)(dot - out), out, n, dot);
}

static void tv_from_us(struct timeval *tv, int64_t us)
{
    if (us < 0) {
        us = 0;
    }
    tv->tv_sec = (time_t)(us / 1000000);
    tv->tv_usec = (suseconds_t)(us % 1000000);
}

static int64_t grid_of(const vb_cs_sim_t *s, int64_t t, int64_t step)
{
    int64_t k = (t - s->t_base + step - 1) / step;
    return s->t_base + (k > 0 ? k : 0) * step;
}

int64_t vb_cs_sim_grid(const vb_cs_sim_t *s, int64_t t)
{
    return grid_of(s, t, VB_CS_TICK_US);
}

static void on_tick(evutil_socket_t fd, short what, void *arg)
{
    vb_cs_sim_t *s = arg;
    int64_t now = vb_cs_now_us();
    for (vb_cs_call_t *c = s->streaming, *next; c != NULL; c = next) {
        next = c->next;
        vb_cs_stream_tick(c, now);
    }
    if (s->finished) {
        return;
    }
    /* libevent measures the delay from its cached loop time, which is older than now:
     * refresh it, or the tick fires early, finds its frames not yet due and they go out
     * one tick late. */
    struct timeval tv;
    event_base_update_cache_time(s->base);
    int64_t after = vb_cs_now_us();
    tv_from_us(&tv, grid_of(s, after + 1, VB_CS_PHASE_US(s)) - after);
    evtimer_add(s->tick, &tv);
}

static void on_ramp(evutil_socket_t fd, short what, void *arg)
{
    vb_cs_sim_t *s = arg;
    int64_t ramp = (int64_t)s->o->ramp_ms * 1000;
    int64_t now = vb_cs_now_us();
    while (s->started < s->o->calls && !s->timed_out && s->t_base + s->started * ramp <= now) {
        vb_cs_call_start(&s->calls[s->started++]);
    }
    if (s->started < s->o->calls && !s->timed_out) {
        struct timeval tv;
        tv_from_us(&tv, s->t_base + s->started * ramp - now);
        evtimer_add(s->ramp, &tv);
    }
}

static void finish_run(vb_cs_sim_t *s)
{
    s->finished = 1;
    evtimer_del(s->tick);
    evtimer_del(s->ramp);
    evtimer_del(s->timeout);
    evtimer_del(s->grace);
    event_base_loopexit(s->base, NULL);
}

static void on_grace(evutil_socket_t fd, short what, void *arg)
{
    vb_cs_sim_t *s = arg;
    vb_log(VB_LOG_WARN, "%d calls did not close in time; giving up on them",
           s->o->calls - s->done);
    finish_run(s);
}

void vb_cs_sim_stop(vb_cs_sim_t *s, const char *why)
{
    if (s->timed_out || s->finished) {
        return;
    }
    s->timed_out = 1;
    vb_log(VB_LOG_WARN, "%s: hanging up %d calls still going", why, s->o->calls - s->done);
    for (int i = 0; i < s->o->calls && !s->finished; i++) {
        vb_cs_call_timeout(&s->calls[i], why);
    }
    if (!s->finished) {
        struct timeval tv = {.tv_sec = GRACE_S};
        evtimer_add(s->grace, &tv);
    }
}

static void on_timeout(evutil_socket_t fd, short what, void *arg)
{
    vb_cs_sim_stop(arg, "timeout");
}

void vb_cs_sim_call_done(vb_cs_sim_t *s, vb_cs_call_t *c)
{
    if (++s->done == s->o->calls) {
        finish_run(s);
    }
}

void vb_cs_sim_streaming(vb_cs_sim_t *s, vb_cs_call_t *c, int on)
{
    if (on && !c->in_list) {
        c->prev = NULL;
        c->next = s->streaming;
        if (s->streaming != NULL) {
            s->streaming->prev = c;
        }
        s->streaming = c;
        c->in_list = 1;
    } else if (!on && c->in_list) {
        if (c->prev != NULL) {
            c->prev->next = c->next;
        } else {
            s->streaming = c->next;
        }
        if (c->next != NULL) {
            c->next->prev = c->prev;
        }
        c->next = c->prev = NULL;
        c->in_list = 0;
    }
}

SSL_CTX *vb_cs_sim_tls(vb_cs_sim_t *s)
{
    if (s->tls == NULL) {
        s->tls = vb_tls_client_ctx(!s->o->insecure, s->o->ca_file);
    }
    return s->tls;
}

static int make_events(vb_cs_sim_t *s)
{
    s->tick = evtimer_new(s->base, on_tick, s);
    s->ramp = evtimer_new(s->base, on_ramp, s);
    s->timeout = evtimer_new(s->base, on_timeout, s);
    s->grace = evtimer_new(s->base, on_grace, s);
    return (s->tick && s->ramp && s->timeout && s->grace) ? 0 : -ENOMEM;
}

vb_cs_sim_t *vb_cs_sim_new(struct event_base *base, const vb_cs_opts_t *o,
                           const vb_cs_audio_t *audio)
{
    vb_cs_sim_t *s = calloc(1, sizeof(*s));
    if (s == NULL) {
        return NULL;
    }
    s->base = base;
    s->o = o;
    s->audio = audio;
    s->event_level = o->calls <= 20 ? VB_LOG_INFO : VB_LOG_DEBUG;
    if (o->account_sid != NULL) {
        snprintf(s->account_sid, sizeof(s->account_sid), "%s", o->account_sid);
    } else {
        vb_cs_random_sid(s->account_sid, sizeof(s->account_sid), "AC");
    }
    s->calls = calloc((size_t)o->calls, sizeof(*s->calls));
    s->http = vb_cs_http_new(base, o->insecure, o->ca_file, HTTP_TIMEOUT_MS);
    int rc = (s->calls == NULL || s->http == NULL) ? -ENOMEM : make_events(s);
    for (int i = 0; rc == 0 && i < o->calls; i++) {
        rc = vb_cs_call_init(&s->calls[i], s, i + 1);
    }
    if (rc < 0) {
        vb_log(VB_LOG_ERR, "cannot set up %d calls: %s", o->calls, strerror(-rc));
        vb_cs_sim_free(s);
        return NULL;
    }
    return s;
}

int vb_cs_sim_start(vb_cs_sim_t *s)
{
    const vb_cs_opts_t *o = s->o;
    double limit = o->timeout_s;
    if (limit <= 0) {
        limit = (double)o->ramp_ms * (o->calls - 1) / 1000.0 +
                vb_cs_sim_call_ms(o, s->audio) / 1000.0 + TIMEOUT_SLACK_S;
    }
    struct timeval tv;
    s->t_base = vb_cs_now_us();
    tv_from_us(&tv, (int64_t)(limit * 1e6));
    evtimer_add(s->timeout, &tv);
    tv_from_us(&tv, 0);
    evtimer_add(s->ramp, &tv);
    tv_from_us(&tv, VB_CS_PHASE_US(s));
    evtimer_add(s->tick, &tv);
    if (vb_cs_opts_conversation(o)) {
        vb_log(VB_LOG_INFO, "%d call(s) to %s, %d caller lines each, timeout %.1f s", o->calls,
               o->url, o->nlines, limit);
    } else {
        vb_log(VB_LOG_INFO, "%d call(s) to %s, %.1f s each, timeout %.1f s", o->calls, o->url,
               vb_cs_sim_call_ms(o, s->audio) / 1000.0, limit);
    }
    return 0;
}

int vb_cs_sim_finished(const vb_cs_sim_t *s)
{
    return s->finished;
}

int vb_cs_sim_call_clean(const vb_cs_call_t *c)
{
    return c->result == VB_CS_ANSWERED && c->close_code == 1000 && !c->timed_out &&
           c->state == VB_CS_DONE;
}

int vb_cs_sim_ok(const vb_cs_sim_t *s)
{
    for (int i = 0; i < s->o->calls; i++) {
        if (!vb_cs_sim_call_clean(&s->calls[i])) {
            return 0;
        }
    }
    return 1;
}

void vb_cs_sim_free(vb_cs_sim_t *s)
{
    if (s == NULL) {
        return;
    }
    for (int i = 0; s->calls != NULL && i < s->o->calls; i++) {
        vb_cs_call_free(&s->calls[i]);
    }
    free(s->calls);
    vb_cs_http_free(s->http);
    struct event *evs[] = {s->tick, s->ramp, s->timeout, s->grace};
    for (size_t i = 0; i < sizeof(evs) / sizeof(evs[0]); i++) {
        if (evs[i] != NULL) {
            event_free(evs[i]);
        }
    }
    vb_tls_ctx_free(s->tls);
    free(s);
}
