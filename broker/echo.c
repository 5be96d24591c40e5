/* The echo engine: plays the caller's audio back after echo_delay_ms. Operators
 * use it to check media quality and latency; the benchmark uses it to measure
 * the media path alone. Run by the broker. */
#include "broker/engine.h"
#include "common/log.h"

#include <errno.h>
#include <stdlib.h>

typedef struct {
    uint32_t cap, head, tail; /* delay line of frames, power-of-two free-running indices */
    vb_audio_frame_t *frames;
} echo_t;

static int echo_attach(vb_conv_t *c)
{
    echo_t *e = calloc(1, sizeof(*e));
    if (e == NULL) {
        return -ENOMEM;
    }
    uint32_t need = (uint32_t)c->asst.echo_delay_ms / 20 + 64;
    e->cap = 64;
    while (e->cap < need) {
        e->cap <<= 1;
    }
    e->frames = calloc(e->cap, sizeof(*e->frames));
    if (e->frames == NULL) {
        free(e);
        return -ENOMEM;
    }
    c->state = e;
    return 0;
}

static void echo_release(vb_conv_t *c, uint64_t now)
{
    echo_t *e = c->state;
    uint64_t delay = (uint64_t)c->asst.echo_delay_ms * 1000000ull;
    while (e->head != e->tail) {
        vb_audio_frame_t *f = &e->frames[e->head & (e->cap - 1)];
        if (f->t_ns + delay > now) {
            break;
        }
        if (vb_conv_play(c, f) == -ENOSPC) {
            break; /* the worker is behind; keep it and try next tick */
        }
        e->head++;
    }
}

static void echo_on_audio(vb_conv_t *c, const vb_audio_frame_t *f)
{
    echo_t *e = c->state;
    if (e->tail - e->head == e->cap) {
        e->head++; /* full: drop the oldest */
    }
    e->frames[e->tail++ & (e->cap - 1)] = *f;
    echo_release(c, vb_broker_now_ns());
}

static void echo_on_ctl(vb_conv_t *c, const vb_ctl_msg_t *m)
{
}

static void echo_tick(vb_conv_t *c, uint64_t now)
{
    echo_release(c, now);
}

static void echo_detach(vb_conv_t *c)
{
    echo_t *e = c->state;
    if (e != NULL) {
        free(e->frames);
        free(e);
    }
    c->state = NULL;
}

const vb_engine_t vb_engine_echo = {
    .name = "echo",
    .attach = echo_attach,
    .on_audio = echo_on_audio,
    .on_ctl = echo_on_ctl,
    .tick = echo_tick,
    .detach = echo_detach,
};
