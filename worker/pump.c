/* The 20 ms pump of a call in the media worker: takes the agent's audio from
 * the ring and sends it to the carrier so that no more than max_unplayed_ms
 * sits unplayed there (so a barge-in can be silenced with `clear` at once),
 * tracked with marks; plays a holding tone while the broker is gone; carries
 * the broker's control messages (clear, hangup). Allocates nothing per frame. */
#include "worker/call_int.h"
#include "common/g711.h"
#include "common/log.h"
#include "common/ws.h"
#include "shm/bell.h"
#include "worker/dsp.h"

#include <math.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#define FRAME_NS 20000000ull
#define MARK_EVERY_FRAMES 5 /* one mark per 100 ms of audio sent */
#define WS_BACKLOG_MAX 65536 /* bytes queued to a slow carrier before we stop sending */
#define HOUSEKEEPING_MS 100
#define UTTERANCE_GAP_NS 200000000ull /* a pause longer than this starts a new utterance */

/* One second of the holding tone (8 kHz mu-law): 425 Hz, 0.4 s on / 0.6 s
 * off, soft, so the caller hears the line is alive. The same for every call:
 * made once per worker process. */
static uint8_t hold_tone[VB_HOLD_TONE_BYTES];

static void make_hold_tone(void)
{
    static int made;
    if (made) {
        return;
    }
    int16_t pcm[VB_HOLD_TONE_BYTES];
    for (int i = 0; i < VB_HOLD_TONE_BYTES; i++) {
        double on = i < 3200 ? 1.0 : 0.0;
        pcm[i] = (int16_t)(on * 1500.0 * sin(2.0 * M_PI * 425.0 * i / 8000.0));
    }
    vb_ulaw_encode(pcm, VB_HOLD_TONE_BYTES, hold_tone);
    made = 1;
}

static void send_text(vb_call_t *call, size_t len)
{
    if (len > 0 && call->ws != NULL) {
        vb_ws_send(call->ws, 1, call->out, len);
    }
}

static void send_mark(vb_call_t *call)
{
    char name[32];
    snprintf(name, sizeof(name), "vb%llu", (unsigned long long)call->frames_sent);
    send_text(call, vb_ms_build_mark(call->out, sizeof(call->out), call->stream_sid, name));
    call->last_mark_frames = call->frames_sent;
}

/* A mark we sent came back: the carrier has played up to it. */
void vb_call_on_mark(vb_call_t *call, const char *name)
{
    char *end;
    if (strncmp(name, "vb", 2) != 0) {
        return;
    }
    unsigned long long played = strtoull(name + 2, &end, 10);
    if (*end != '\0' || played <= call->clear_floor || played > call->frames_sent) {
        return;
    }
    call->drain_at_ns = vb_now_ns() + (call->frames_sent - played) * FRAME_NS;
}

static void do_clear(vb_call_t *call)
{
    send_text(call, vb_ms_build_clear(call->out, sizeof(call->out), call->stream_sid));
    vb_ring_discard(vb_slot_ring(call->slot, VB_RING_AGENT_AUDIO));
    call->clear_floor = call->frames_sent;
    call->drain_at_ns = vb_now_ns();
}

static void take_ctl(vb_call_t *call)
{
    vb_ctl_msg_t c;
    uint32_t len;
    while (vb_ring_pop(vb_slot_ring(call->slot, VB_RING_CTL_B2W), &c, sizeof(c), &len) == 0) {
        if (c.type == VB_CTL_CLEAR || c.type == VB_CTL_BARGE_IN) {
            do_clear(call);
        } else if (c.type == VB_CTL_HANGUP) {
            vb_call_hangup(call, 1000, c.text[0] ? c.text : "agent hung up");
        }
    }
}

/* One frame for the carrier: the agent's, or the holding tone; 0 when none. */
static int next_frame(vb_call_t *call, uint8_t ulaw[160])
{
    if (call->holding) {
        memcpy(ulaw, hold_tone + call->hold_pos, 160);
        call->hold_pos = (call->hold_pos + 160) % VB_HOLD_TONE_BYTES;
        return 1;
    }
    vb_audio_frame_t f;
    uint32_t len;
    if (vb_ring_pop(vb_slot_ring(call->slot, VB_RING_AGENT_AUDIO), &f, sizeof(f), &len) < 0) {
        return 0;
    }
    vb_dsp_outbound(call->dsp, f.pcm, ulaw);
    return 1;
}

void vb_call_pump_out(vb_call_t *call)
{
    if (!call->started || call->ws == NULL || call->closing) {
        return;
    }
    take_ctl(call);
    uint64_t now = vb_now_ns();
    uint64_t cap = (uint64_t)call->ctx->conf->max_unplayed_ms * 1000000ull;
    if (call->drain_at_ns < now) {
        if (call->frames_sent > 0 && now - call->drain_at_ns > FRAME_NS &&
            now - call->drain_at_ns < UTTERANCE_GAP_NS &&
            vb_ring_count(vb_slot_ring(call->slot, VB_RING_AGENT_AUDIO)) > 0) {
            /* audio was waiting while the carrier played silence */
            atomic_fetch_add_explicit(&call->slot->late_frames, 1, memory_order_relaxed);
        }
        call->drain_at_ns = now;
    }
    uint8_t ulaw[160];
    int sent = 0;
    vb_ws_cork(call->ws); /* the frames and their mark leave in one segment */
    while (call->drain_at_ns - now < cap && vb_ws_out_pending(call->ws) < WS_BACKLOG_MAX &&
           next_frame(call, ulaw)) {
        send_text(call, vb_ms_build_media(call->out, sizeof(call->out), call->stream_sid, ulaw,
                                          sizeof(ulaw)));
        call->drain_at_ns += FRAME_NS;
        call->frames_sent++;
        sent++;
        atomic_fetch_add_explicit(&call->slot->frames_out, 1, memory_order_relaxed);
    }
    if (sent > 0 && call->frames_sent - call->last_mark_frames >= MARK_EVERY_FRAMES) {
        send_mark(call);
    }
    vb_ws_uncork(call->ws);
}

/* Notice a broker that died (the master bumps broker_epoch) and one that took
 * over (it writes its pid). Until then the caller hears the holding tone. */
static void watch_broker(vb_call_t *call)
{
    vb_slot_t *s = call->slot;
    uint32_t epoch = atomic_load_explicit(&s->broker_epoch, memory_order_acquire);
    int32_t pid = atomic_load_explicit(&s->broker_pid, memory_order_acquire);
    if (epoch == call->broker_epoch) {
        if (call->broker_pid == 0) {
            call->broker_pid = pid; /* the first broker attached */
        }
        return;
    }
    if (pid != 0 && pid != call->broker_pid) {
        call->holding = 0;
        call->broker_epoch = epoch;
        call->broker_pid = pid;
        vb_log(VB_LOG_NOTICE, "broker %d took over the call", (int)pid);
    } else if (!call->holding) {
        call->holding = 1;
        vb_log(VB_LOG_WARN, "broker %d is gone: holding the call", (int)call->broker_pid);
    }
}

/* Housekeeping every HOUSEKEEPING_MS: the pump itself runs on every inbound
 * frame (Twilio streams the caller's audio without pause) and on the broker's
 * bell, so a per-call 20 ms timer would only add a wake-up per frame. This
 * timer also keeps audio flowing, in max_unplayed_ms batches, should the
 * carrier stop sending, and beats for the master's watchdog. */
static void on_tick(evutil_socket_t fd, short what, void *arg)
{
    vb_call_t *call = arg;
    if (call->started) {
        vb_slot_worker_beat(call->slot); /* the master's watchdog: this loop runs */
        watch_broker(call);
    }
    vb_call_pump_out(call);
}

static void on_bell(evutil_socket_t fd, short what, void *arg)
{
    vb_bell_ack(fd);
    vb_call_pump_out(arg);
}

int vb_call_pump_start(vb_call_t *call)
{
    struct event_base *base = vb_worker_base(call->w);
    vb_dsp_opts_t opts = {.denoise = 1, .agc = 0, .vad = 1, .echo_cancel = 0};
    call->dsp = vb_dsp_new(&opts);
    int bell = vb_shm_bell_fd(call->ctx->shm, call->slot_idx, VB_BELL_WORKER);
    call->tick_ev = event_new(base, -1, EV_PERSIST, on_tick, call);
    call->bell_ev = vb_bell_event_new(base, bell, on_bell, call);
    if (call->dsp == NULL || call->tick_ev == NULL || call->bell_ev == NULL) {
        vb_log(VB_LOG_ERR, "cannot set up the call's audio path");
        return -1;
    }
    vb_shm_bell_drain(bell);
    make_hold_tone();
    struct timeval tv = {0, HOUSEKEEPING_MS * 1000};
    event_add(call->tick_ev, &tv);
    event_add(call->bell_ev, NULL);
    return 0;
}

void vb_call_pump_stop(vb_call_t *call)
{
    if (call->tick_ev != NULL) {
        event_free(call->tick_ev);
        call->tick_ev = NULL;
    }
    if (call->bell_ev != NULL) {
        event_free(call->bell_ev);
        call->bell_ev = NULL;
    }
}
