/* The `local` conversation engine of the AI broker: answers a call with the
 * assistant's intents and the offline voice (local STT and TTS), no key, no
 * network, deterministic.
 *
 * On attach it says first_message (or, when the slot already holds a transcript,
 * the call survived a broker crash: it restores the dialogue state and says
 * nothing). Each final caller utterance is matched to an intent (intents.c)
 * whose reply it speaks, `fallback` when none matches; an intent with end_call
 * hangs up once its reply has been played. When the caller talks over the agent
 * for VB_LOCAL_BARGE_IN_MS, the reply stops (TTS cancelled, VB_CTL_CLEAR to the
 * worker) and the agent turn is recorded as interrupted, with the part the
 * caller heard. Every turn goes to the store as a "turn" event and into the
 * slot's compact transcript.
 *
 * Everything here runs on the broker's event loop; synthesis and recognition run
 * on their own threads (tts_local.c, stt_local.c), which ring the slot's broker
 * doorbell when they have something, so the loop never waits for them. */
#include "broker/local.h"

#include "broker/engine.h"
#include "broker/intents.h"
#include "broker/transcript.h"
#include "broker/tts_local.h"
#include "common/clock.h"
#include "common/log.h"
#include "shm/shm.h"

#include <ctype.h>
#include <errno.h>
#include <jansson.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <time.h>

#define FRAME_NS 20000000ull
#define CARRIER_FRAMES 5 /* agent audio that sits unplayed at the carrier (~100 ms) */
#define NO_TIME (-1)

/* The process's synthesis and recognition threads, started by the first local call. */
static struct {
    vb_tts_t *tts;
    vb_stt_t *stt;
    vb_stt_opts_t opts;
    int started;
} svc = {.opts = {.open_lm = 1}};

typedef struct {
    int active;  /* an agent turn is queued or playing */
    uint32_t id; /* its TTS utterance */
    char text[VB_INTENT_TEXT_MAX];
    char intent[VB_INTENT_NAME_MAX];
    int end_call;
    uint64_t start_ns; /* its first frame went into the ring; 0 before */
    uint32_t pushed;   /* frames into the ring */
    int synth_done;    /* its last frame was read from the TTS */
} agent_turn_t;

typedef struct {
    int pending; /* recorded when the reply's first audio leaves (v2v known) */
    vb_stt_result_t r;
    char intent[VB_INTENT_NAME_MAX];
    uint32_t turn;
} caller_turn_t;

typedef struct {
    vb_conv_t *c;
    vb_intents_t *intents;
    vb_stt_stream_t *stt;
    vb_tts_stream_t *tts;
    vb_transcript_state_t ts;
    uint64_t t0; /* CLOCK_MONOTONIC of the call's start */
    agent_turn_t agent;
    caller_turn_t caller;
    uint32_t agent_turn;                       /* turn number of the agent turn in progress */
    uint64_t last_agent_start, last_agent_end; /* span of the last agent turn */
    int last_agent_interrupted;
    uint32_t voice_run; /* voiced caller frames in a row while the agent speaks */
    uint32_t out_seq;
    uint64_t hangup_at;
    int hung_up;
    char voice[64];
    int rate;
} local_t;

/* ---- services ------------------------------------------------------------ */

void vb_local_configure(const vb_stt_opts_t *stt_opts)
{
    if (stt_opts != NULL) {
        svc.opts = *stt_opts;
    }
}

static void services_start(void)
{
    if (svc.started) {
        return;
    }
    svc.started = 1;
    if ((svc.tts = vb_tts_local_start(NULL)) == NULL) {
        vb_log(VB_LOG_ERR, "local engine: no voice (%s); calls will be silent",
               strerror(errno));
    }
    if ((svc.stt = vb_stt_local_start(&svc.opts)) == NULL) {
        vb_log(VB_LOG_ERR,
               "local engine: no speech recognition (%s); callers get the "
               "fallback",
               strerror(errno));
    }
}

void vb_local_prepare(void)
{
    services_start();
}

void vb_local_shutdown(void)
{
    vb_stt_local_stop(svc.stt);
    vb_tts_local_stop(svc.tts);
    svc.stt = NULL;
    svc.tts = NULL;
    svc.started = 0;
}

/* Synthesis and recognition threads: something is ready for this call. */
static void wake(void *arg)
{
    local_t *l = arg;
    vb_shm_ring_bell(l->c->shm, l->c->slot_idx, VB_BELL_BROKER);
}

/* ---- records ---------------------------------------------------------------- */

static json_int_t ms_since(uint64_t from, uint64_t to)
{
    return to > from ? (json_int_t)((to - from) / 1000000ull) : 0;
}

static void set_time(json_t *o, const char *key, json_int_t ms)
{
    json_object_set_new(o, key, ms == NO_TIME ? json_null() : json_integer(ms));
}

/* Serialise O into an event for the store, cutting "text" until it fits. */
static void push_event(local_t *l, json_t *o, const char *text)
{
    vb_event_t ev = {.type = VB_EV_TURN};
    size_t cut = strlen(text), n;
    char buf[VB_INTENT_TEXT_MAX];
    for (;;) {
        snprintf(buf, sizeof(buf), "%.*s", (int)cut, text);
        json_object_set_new(o, "text", json_string(buf));
        n = json_dumpb(o, ev.data, sizeof(ev.data) - 1, JSON_COMPACT);
        if (n > 0 && n < sizeof(ev.data) - 1) {
            break;
        }
        if (cut == 0) {
            vb_log(VB_LOG_ERR, "slot %u: turn record too large; dropped", l->c->slot_idx);
            return;
        }
        cut /= 2;
    }
    ev.data[n] = '\0';
    ev.len = (uint32_t)n;
    ev.t_ns = vb_wall_ns();
    vb_shm_push(l->c->shm, l->c->slot_idx, VB_RING_EVENTS_B2S, &ev,
                (uint32_t)(offsetof(vb_event_t, data) + n + 1));
}

static json_t *turn_base(local_t *l, const char *speaker, uint32_t turn, uint64_t start,
                         uint64_t end, int interrupted, const char *intent)
{
    json_t *o = json_object();
    json_object_set_new(o, "type", json_string("turn"));
    json_object_set_new(o, "call_id", json_string(l->c->slot->call_id));
    json_object_set_new(o, "slot", json_integer(l->c->slot_idx));
    json_object_set_new(o, "gen", json_integer(l->c->gen));
    json_object_set_new(o, "turn", json_integer(turn));
    json_object_set_new(o, "speaker", json_string(speaker));
    json_object_set_new(o, "start_ms", json_integer(ms_since(l->t0, start)));
    json_object_set_new(o, "end_ms", json_integer(ms_since(l->t0, end)));
    json_object_set_new(o, "interrupted", json_boolean(interrupted));
    json_object_set_new(o, "intent", intent && *intent ? json_string(intent) : json_null());
    return o;
}

static const char *source_name(int src)
{
    static const char *const names[] = {"none", "grammar", "open", "loop", "none"};
    return src > 0 && src <= VB_STT_SRC_NONE ? names[src] : "none";
}

/* The caller's turn, once its reply's first audio is out (or there is none). */
static void record_caller(local_t *l, uint64_t first_audio_ns)
{
    const vb_stt_result_t *r = &l->caller.r;
    json_t *o = turn_base(l, "caller", l->caller.turn, r->start_ns, r->speech_end_ns, 0,
                          l->caller.intent);
    set_time(o, "stt_ms", ms_since(r->speech_end_ns, r->final_ns));
    set_time(o, "v2v_ms",
             first_audio_ns ? ms_since(r->speech_end_ns, first_audio_ns) : NO_TIME);
    set_time(o, "endpoint_ms", ms_since(r->speech_end_ns, r->endpoint_ns));
    json_object_set_new(o, "stt_source", json_string(source_name(r->source)));
    push_event(l, o, r->text);
    json_decref(o);
    l->caller.pending = 0;
}

/* What the caller heard of TEXT when FRACTION of its audio was played: cut at a word. */
static void heard_part(const char *text, double fraction, char *out, size_t cap)
{
    size_t len = strlen(text), n = (size_t)(fraction * (double)len);
    if (fraction >= 1.0 || n >= len) {
        snprintf(out, cap, "%s", text);
        return;
    }
    while (n > 0 && !isspace((unsigned char)text[n])) {
        n--;
    }
    snprintf(out, cap, "%.*s", (int)n, text);
}

static void record_agent(local_t *l, uint64_t end, int interrupted, double heard)
{
    agent_turn_t *a = &l->agent;
    char text[VB_INTENT_TEXT_MAX];
    uint64_t start = a->start_ns ? a->start_ns : end;
    json_t *o = turn_base(l, "agent", l->agent_turn, start, end, interrupted, a->intent);
    heard_part(a->text, heard, text, sizeof(text));
    if (interrupted) {
        json_object_set_new(o, "planned_text", json_string(a->text));
    }
    push_event(l, o, text);
    json_decref(o);
}

/* ---- speaking -------------------------------------------------------------- */

static void agent_end(local_t *l, uint64_t now, int interrupted, double heard)
{
    record_agent(l, now, interrupted, heard);
    if (!interrupted) {
        vb_transcript_finished(l->c->slot, &l->ts); /* barge_in wrote I:: */
    }
    l->last_agent_start = l->agent.start_ns ? l->agent.start_ns : now;
    l->last_agent_end = now;
    l->last_agent_interrupted = interrupted;
    l->agent.active = 0;
    l->voice_run = 0;
}

/* The share of the reply in progress the caller has heard: what left the ring,
 * less what still sits at the carrier, over the reply's length (what went out
 * plus what is ready: synthesis runs far ahead). */
static double heard_fraction(local_t *l)
{
    agent_turn_t *a = &l->agent;
    uint32_t in_ring = vb_ring_count(vb_slot_ring(l->c->slot, VB_RING_AGENT_AUDIO));
    uint32_t total = a->pushed + (l->tts ? vb_tts_ready(l->tts) : 0);
    uint32_t played =
        a->pushed > in_ring + CARRIER_FRAMES ? a->pushed - in_ring - CARRIER_FRAMES : 0;
    return total ? (double)played / total : 0.0;
}

/* The broker before this one died while the agent spoke (the transcript has
 * the reply's start and no end): the reply goes on record, cut off; what the
 * caller heard of it died with that broker, so its text is empty. */
static void record_lost_reply(local_t *l)
{
    uint64_t now = vb_broker_now_ns();
    /* the reply answered the last caller line: its intent */
    json_t *o = turn_base(l, "agent", l->ts.agent_turn, now, now, 1, l->ts.last_intent);
    json_object_set_new(o, "planned_text", json_string(l->ts.agent_text));
    json_object_set_new(o, "broker_restarted", json_true());
    push_event(l, o, "");
    json_decref(o);
    vb_transcript_interrupted(l->c->slot, &l->ts);
    vb_log(VB_LOG_NOTICE, "slot %u: the reply in progress when the broker died is recorded "
           "as cut off", l->c->slot_idx);
}

static void barge_in(local_t *l, uint64_t now)
{
    double heard = heard_fraction(l);
    if (l->tts != NULL) {
        vb_tts_cancel(l->tts);
    }
    vb_conv_ctl(l->c, VB_CTL_CLEAR, "barge-in");
    vb_transcript_interrupted(l->c->slot, &l->ts);
    if (l->caller.pending) {
        record_caller(l, 0);
    }
    vb_log(VB_LOG_DEBUG, "slot %u: caller barged in", l->c->slot_idx);
    agent_end(l, now, 1, heard);
}

/* Start an agent turn saying TEXT (replacing one in progress). */
static void speak(local_t *l, const char *text, const char *intent, int end_call, uint64_t now)
{
    agent_turn_t *a = &l->agent;
    if (a->active) {
        barge_in(l, now);
    }
    memset(a, 0, sizeof(*a));
    snprintf(a->text, sizeof(a->text), "%s", text);
    snprintf(a->intent, sizeof(a->intent), "%s", intent ? intent : "");
    a->end_call = end_call;
    a->active = 1;
    vb_transcript_add(l->c->slot, &l->ts, 'A', NULL, text);
    l->agent_turn = l->ts.turns;
    if (l->tts == NULL || vb_tts_say(l->tts, text, l->voice, l->rate, &a->id) < 0) {
        a->synth_done = 1; /* nothing to play: the turn ends at the next tick */
    }
}

/* Agent audio into the ring while there is room (the worker paces it out). */
static void pump(local_t *l, uint64_t now)
{
    vb_ring_t *ring = vb_slot_ring(l->c->slot, VB_RING_AGENT_AUDIO);
    vb_audio_frame_t f = {.flags = 0};
    vb_tts_frame_info_t info;
    while (l->tts != NULL && vb_ring_free(ring) > 0 && vb_tts_read(l->tts, f.pcm, &info) == 0) {
        agent_turn_t *a = &l->agent;
        if (!a->active || info.id != a->id) {
            continue; /* left over from a reply already given up */
        }
        f.seq = l->out_seq++;
        f.t_ns = now;
        vb_conv_play(l->c, &f);
        if (a->start_ns == 0) {
            a->start_ns = now;
            if (l->caller.pending) {
                record_caller(l, now);
            }
        }
        a->pushed++;
        a->synth_done = info.last;
    }
}

/* The reply has left the ring: the turn is over; a goodbye hangs up shortly after. */
static void check_agent_done(local_t *l, uint64_t now)
{
    agent_turn_t *a = &l->agent;
    if (!a->active || !a->synth_done ||
        vb_ring_count(vb_slot_ring(l->c->slot, VB_RING_AGENT_AUDIO)) > 0) {
        return;
    }
    if (l->caller.pending) {
        record_caller(l, 0);
    }
    int end_call = a->end_call;
    agent_end(l, now + CARRIER_FRAMES * FRAME_NS, 0, 1.0);
    if (end_call) {
        l->hangup_at = now + VB_LOCAL_HANGUP_TAIL_MS * 1000000ull;
    }
}

/* ---- listening --------------------------------------------------------------- */

/* An utterance that began while the agent spoke and did not interrupt it is the
 * caller's back-channel ("mm", "ok") or the agent's own echo: not a turn. */
static int overlapped(const local_t *l, const vb_stt_result_t *r)
{
    if (l->agent.active && l->agent.start_ns != 0) {
        return r->start_ns >= l->agent.start_ns;
    }
    return !l->last_agent_interrupted && r->start_ns >= l->last_agent_start &&
           r->start_ns < l->last_agent_end;
}

static void on_result(local_t *l, const vb_stt_result_t *r, uint64_t now)
{
    vb_intent_match_t m = {0};
    const char *fallback = l->c->asst.fallback[0] ? l->c->asst.fallback : VB_LOCAL_FALLBACK;
    if (l->hung_up || l->hangup_at || overlapped(l, r)) {
        return;
    }
    vb_intents_match(l->intents, r->text, &m);
    if (l->caller.pending) {
        record_caller(l, 0);
    }
    vb_transcript_add(l->c->slot, &l->ts, 'C', m.intent ? m.intent->name : NULL, r->text);
    l->caller.pending = 1;
    l->caller.r = *r;
    l->caller.turn = l->ts.turns;
    snprintf(l->caller.intent, sizeof(l->caller.intent), "%s", m.intent ? m.intent->name : "");
    vb_log(VB_LOG_INFO, "slot %u: caller said '%s' (%s): %s", l->c->slot_idx, r->text,
           source_name(r->source), m.intent ? m.intent->name : "no intent");
    const char *reply = m.intent ? m.intent->reply : fallback;
    if (reply[0] == '\0' && m.intent && m.intent->end_call) {
        record_caller(l, 0);
        l->hangup_at = now + VB_LOCAL_HANGUP_TAIL_MS * 1000000ull;
        return;
    }
    speak(l, reply[0] ? reply : fallback, m.intent ? m.intent->name : NULL,
          m.intent && m.intent->end_call, now);
}

/* ---- the engine ------------------------------------------------------------------ */

/* Caller frames of speech over the agent that interrupt it (the assistant's
 * barge_in_ms; 0 from an old row or a test: VB_LOCAL_BARGE_IN_MS). */
static uint32_t barge_frames(const vb_conv_t *c)
{
    int ms = c->asst.barge_in_ms > 0 ? c->asst.barge_in_ms : VB_LOCAL_BARGE_IN_MS;
    return ms < 20 ? 1 : (uint32_t)ms / 20;
}

static void local_on_audio(vb_conv_t *c, const vb_audio_frame_t *f)
{
    local_t *l = c->state;
    if (l->stt != NULL) {
        vb_stt_feed(l->stt, f);
    }
    int speaking = l->agent.active && l->agent.start_ns != 0;
    l->voice_run = speaking && (f->flags & VB_FRAME_VOICE) ? l->voice_run + 1 : 0;
    if (l->voice_run >= barge_frames(c)) {
        barge_in(l, vb_broker_now_ns());
    }
}

static void local_on_ctl(vb_conv_t *c, const vb_ctl_msg_t *m)
{
    local_t *l = c->state;
    if (m->type == VB_CTL_BARGE_IN && l->agent.active) {
        barge_in(l, vb_broker_now_ns());
    } else if (m->type == VB_CTL_HANGUP && l->stt != NULL) {
        vb_stt_flush(l->stt);
    }
}

static void local_tick(vb_conv_t *c, uint64_t now)
{
    local_t *l = c->state;
    vb_stt_result_t r;
    while (l->stt != NULL && vb_stt_poll(l->stt, &r) == 0) {
        on_result(l, &r, now);
    }
    pump(l, now);
    check_agent_done(l, now);
    if (l->hangup_at != 0 && now >= l->hangup_at && !l->hung_up) {
        l->hung_up = 1;
        vb_log(VB_LOG_INFO, "slot %u: the assistant ends the call", c->slot_idx);
        vb_conv_ctl(c, VB_CTL_HANGUP, "assistant ended the call");
    }
}

/* The espeak-ng voice: the assistant's, else its language ("en-US" -> "en-us"). */
static void pick_voice(local_t *l)
{
    const vb_assistant_t *a = &l->c->asst;
    snprintf(l->voice, sizeof(l->voice), "%s", a->voice[0] ? a->voice : a->language);
    for (char *p = l->voice; *p; p++) {
        *p = (char)tolower((unsigned char)*p);
    }
    l->rate = a->rate;
}

/* CLOCK_MONOTONIC of the call's start: a broker taking over a call times its
 * turns from it (the slot's wall-clock start would be off by any step NTP
 * took since). */
static uint64_t call_start_mono(const vb_slot_t *s)
{
    return s->start_mono_ns != 0 ? s->start_mono_ns : vb_broker_now_ns();
}

static int open_streams(local_t *l)
{
    size_t n = 0, k = 0;
    for (size_t i = 0; i < vb_intents_count(l->intents); i++) {
        n += vb_intents_get(l->intents, i)->npatterns;
    }
    const char **phrases = calloc(n + 1, sizeof(*phrases));
    if (phrases == NULL) {
        return -ENOMEM;
    }
    for (size_t i = 0; i < vb_intents_count(l->intents); i++) {
        const vb_intent_t *it = vb_intents_get(l->intents, i);
        for (size_t j = 0; j < it->npatterns; j++) {
            phrases[k++] = it->patterns[j];
        }
    }
    l->stt = svc.stt ? vb_stt_stream_new(svc.stt, phrases, n, wake, l) : NULL;
    if (l->stt != NULL) {
        vb_stt_set_end_silence(l->stt, l->c->asst.end_silence_ms);
    }
    l->tts = svc.tts ? vb_tts_stream_new(svc.tts, wake, l) : NULL;
    free(phrases);
    return (svc.stt && !l->stt) || (svc.tts && !l->tts) ? -ENOMEM : 0;
}

static void local_free(local_t *l)
{
    vb_stt_stream_free(l->stt);
    vb_tts_stream_free(l->tts);
    vb_intents_free(l->intents);
    free(l);
}

static int local_attach(vb_conv_t *c)
{
    char err[256] = "";
    local_t *l = calloc(1, sizeof(*l));
    if (l == NULL) {
        return -ENOMEM;
    }
    l->c = c;
    services_start();
    if ((l->intents = vb_intents_parse(c->asst.intents_json, err, sizeof(err))) == NULL) {
        vb_log(VB_LOG_WARN, "assistant '%s': %s; every caller line gets the fallback",
               c->asst.name, err);
        l->intents = vb_intents_parse("", NULL, 0);
    }
    if (l->intents == NULL || open_streams(l) < 0) {
        local_free(l);
        return -ENOMEM;
    }
    l->t0 = call_start_mono(c->slot);
    pick_voice(l);
    c->state = l;
    if (vb_transcript_restore(c->slot, &l->ts)) {
        vb_log(VB_LOG_NOTICE, "slot %u: carrying on the conversation after %u turns",
               c->slot_idx, l->ts.turns);
        if (l->ts.agent_open) {
            record_lost_reply(l);
        }
    } else if (c->asst.first_message[0] != '\0') {
        speak(l, c->asst.first_message, NULL, 0, vb_broker_now_ns());
    }
    return 0;
}

static void local_detach(vb_conv_t *c)
{
    local_t *l = c->state;
    if (l == NULL) {
        return;
    }
    /* the call ended while the agent spoke: the store still takes this call's records
     * until the broker lets go of the slot, also after the master marked it DEAD
     * (which bumps gen); a slot already given to a new call is left alone */
    uint32_t state = vb_slot_state(c->slot);
    if (vb_slot_gen(c->slot) == c->gen || state == VB_SLOT_ENDING || state == VB_SLOT_DEAD) {
        if (l->caller.pending) {
            record_caller(l, 0);
        }
        if (l->agent.active && l->agent.start_ns != 0) {
            record_agent(l, vb_broker_now_ns(), 1, heard_fraction(l)); /* cut off by the end */
            vb_transcript_interrupted(l->c->slot, &l->ts); /* on record: not lost */
        }
    }
    local_free(l);
    c->state = NULL;
}

const vb_engine_t vb_engine_local = {
    .name = "local",
    .attach = local_attach,
    .on_audio = local_on_audio,
    .on_ctl = local_on_ctl,
    .tick = local_tick,
    .detach = local_detach,
};
