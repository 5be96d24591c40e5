/* voxbridge-callsim: the one-line JSON summary printed last on stdout (fields in
 * docs/callsim.md): totals over all calls, round-trip percentiles, close codes, webhook
 * statuses and, for up to 20 calls or with --per-call, one object per call. */
#include <stdio.h>

#include "callsim/sim_int.h"

#define PER_CALL_DEFAULT_MAX 20

typedef struct {
    json_int_t answered, rejected, failed, frames_sent, frames_received, gaps, late;
    json_int_t marks, clears, unanswered, bad, samples, agent_hangups;
    double max_gap_ms, lag_max_ms, underrun_ms;
    uint64_t lateness[VB_CS_LATENESS_BUCKETS];
} totals_t;

static const char *result_name(vb_cs_result_t r)
{
    static const char *names[] = {"pending", "answered", "rejected", "failed"};
    return names[r];
}

static double round1(double v)
{
    return (double)(long long)(v * 10.0 + (v >= 0 ? 0.5 : -0.5)) / 10.0;
}

static json_t *rtt_object(vb_cs_lat_t *l)
{
    return json_pack("{s:f,s:f,s:f,s:I}", "p50", round1(vb_cs_lat_pct(l, 50)), "p99",
                     round1(vb_cs_lat_pct(l, 99)), "max", round1(vb_cs_lat_max(l)), "n",
                     (json_int_t)l->n);
}

static void count(json_t *obj, int key)
{
    char k[16];
    snprintf(k, sizeof(k), "%d", key);
    json_int_t n = json_integer_value(json_object_get(obj, k));
    json_object_set_new(obj, k, json_integer(n + 1));
}

static double ms_between(int64_t a, int64_t b)
{
    return (a != 0 && b >= a) ? round1((double)(b - a) / 1000.0) : 0.0;
}

/* Caller lines not answered: in a conversation, spoken lines no agent audio followed;
 * on a fixed timeline, turns overtaken by the next one before any agent audio. */
static json_int_t unanswered(const vb_cs_call_t *c)
{
    if (c->converse) {
        return (json_int_t)vb_cs_conv_unanswered(&c->conv);
    }
    return (json_int_t)c->rtt.unanswered;
}

/* The server ended the stream normally: an agent that hung up (e.g. after its goodbye). */
static int agent_hung_up(const vb_cs_call_t *c)
{
    return c->server_closed && c->close_code == 1000;
}

static json_t *ms_or_null(int64_t samples)
{
    return samples >= 0 ? json_real(round1(VB_CS_MS(samples))) : json_null();
}

/* One object per caller line spoken: what, when (ms since the stream started), and the
 * time from its end of speech to the agent's answer (null: none). */
static json_t *turns_array(const vb_cs_call_t *c)
{
    json_t *arr = json_array();
    const vb_cs_opts_t *o = c->sim->o;
    for (size_t t = 0; arr != NULL && t < c->conv.a->nturns; t++) {
        const vb_cs_turn_rec_t *r = &c->conv.rec[t];
        if (r->sent < 0) {
            break;
        }
        int64_t reply = vb_cs_conv_reply(&c->conv, t);
        json_t *turn = json_pack("{s:s,s:o,s:o,s:o}", o->lines[t].is_say ? "text" : "wav",
                                 o->lines[t].arg, "start_ms", ms_or_null(r->start), "end_ms",
                                 ms_or_null(r->end), "reply_ms", ms_or_null(reply));
        json_array_append_new(arr, turn);
    }
    return arr;
}

/* Adds the call's reply times to L. */
static void add_replies(const vb_cs_call_t *c, vb_cs_lat_t *l)
{
    for (size_t t = 0; c->converse && t < c->conv.a->nturns; t++) {
        int64_t reply = vb_cs_conv_reply(&c->conv, t);
        if (reply >= 0) {
            vb_cs_lat_add(l, VB_CS_MS(reply));
        }
    }
}

static json_t *call_object(vb_cs_call_t *c)
{
    json_t *o = json_pack("{s:i,s:s,s:s,s:s,s:s,s:s,s:i,s:i,s:s,s:b,s:b}", "call", c->n,
                          "result", result_name(c->result), "reason", c->reason, "call_sid",
                          c->call_sid, "stream_sid", c->t_open != 0 ? c->stream_sid : "",
                          "call_id", c->call_id, "http_status", c->http_status, "close_code",
                          c->close_code, "close_reason", c->close_reason, "server_closed",
                          c->server_closed, "timed_out", c->timed_out);
    json_t *n = json_pack(
        "{s:I,s:I,s:f,s:I,s:f,s:I,s:f,s:I,s:I,s:I,s:I,s:I,s:I,s:o,s:f,s:f,s:f,s:f}",
        "frames_sent", (json_int_t)c->sent, "frames_received", (json_int_t)c->rx.messages,
        "audio_ms_received", round1((double)c->samples_received / 8.0), "gaps_over_40ms",
        (json_int_t)c->rx.gaps_over, "max_gap_ms", round1(VB_CS_MS(c->rx.max_gap)),
        "late_frames", (json_int_t)c->rx.late, "underrun_ms",
        round1(VB_CS_MS(c->rx.underrun_samples)), "marks_received",
        (json_int_t)c->marks_received, "marks_answered", (json_int_t)c->marks_answered,
        "clears", (json_int_t)c->clears, "dtmf_sent", (json_int_t)c->dtmf_sent, "bad_messages",
        (json_int_t)c->bad_messages, "unanswered_turns", unanswered(c), "rtt_ms",
        rtt_object(&c->rtt.lat), "webhook_ms", ms_between(c->t_start, c->t_webhook),
        "connect_ms", ms_between(c->t_webhook, c->t_open), "duration_ms",
        ms_between(c->t_open, c->t_end), "send_lag_max_ms",
        round1((double)c->lag_max_us / 1000.0));
    json_object_update(o, n);
    json_decref(n);
    json_object_set_new(o, "agent_hung_up", json_boolean(agent_hung_up(c)));
    json_object_set_new(o, "agent_first_audio_ms", ms_or_null(c->first_onset));
    json_object_set_new(o, "agent_hangup_ms",
                        agent_hung_up(c) && c->t_end >= c->t0
                            ? json_real(round1((double)(c->t_end - c->t0) / 1000.0))
                            : json_null());
    if (c->converse) {
        vb_cs_lat_t l = {0};
        add_replies(c, &l);
        json_object_set_new(o, "turns", turns_array(c));
        json_object_set_new(o, "greeting_ms", ms_or_null(c->greeting_samples));
        json_object_set_new(o, "reply_ms", rtt_object(&l));
        vb_cs_lat_free(&l);
    }
    return o;
}

static void add_call(totals_t *t, const vb_cs_call_t *c)
{
    t->answered += c->result == VB_CS_ANSWERED;
    t->rejected += c->result == VB_CS_REJECTED;
    t->failed += c->result == VB_CS_FAILED || c->result == VB_CS_PENDING;
    t->frames_sent += (json_int_t)c->sent;
    t->frames_received += (json_int_t)c->rx.messages;
    t->samples += (json_int_t)c->samples_received;
    t->gaps += (json_int_t)c->rx.gaps_over;
    t->late += (json_int_t)c->rx.late;
    t->marks += (json_int_t)c->marks_answered;
    t->clears += (json_int_t)c->clears;
    t->unanswered += unanswered(c);
    t->agent_hangups += agent_hung_up(c);
    t->bad += (json_int_t)c->bad_messages;
    t->underrun_ms += VB_CS_MS(c->rx.underrun_samples);
    vb_cs_lateness_add(t->lateness, &c->rx);
    if (VB_CS_MS(c->rx.max_gap) > t->max_gap_ms) {
        t->max_gap_ms = VB_CS_MS(c->rx.max_gap);
    }
    if ((double)c->lag_max_us / 1000.0 > t->lag_max_ms) {
        t->lag_max_ms = (double)c->lag_max_us / 1000.0;
    }
}

static json_t *totals_object(const totals_t *t, int calls, int clean, vb_cs_lat_t *all)
{
    return json_pack("{s:i,s:I,s:I,s:I,s:i,s:I,s:I,s:f,s:I,s:f,s:f,s:I,s:I,s:I,s:I,s:o,s:f}",
                     "calls", calls, "answered", t->answered, "rejected", t->rejected, "failed",
                     t->failed, "clean", clean, "frames_sent", t->frames_sent,
                     "frames_received", t->frames_received, "audio_ms_received",
                     round1((double)t->samples / 8.0), "gaps_over_40ms", t->gaps, "max_gap_ms",
                     round1(t->max_gap_ms), "underrun_ms", round1(t->underrun_ms),
                     "late_frames", t->late, "marks_answered", t->marks, "clears", t->clears,
                     "unanswered_turns", t->unanswered, "rtt_ms", rtt_object(all),
                     "send_lag_max_ms", round1(t->lag_max_ms));
}

json_t *vb_cs_sim_summary(vb_cs_sim_t *s)
{
    totals_t t = {0};
    vb_cs_lat_t all = {0}, replies = {0};
    json_t *codes = json_object(), *status = json_object();
    int with_calls = s->o->calls <= PER_CALL_DEFAULT_MAX || s->o->per_call;
    json_t *per_call = with_calls ? json_array() : NULL;
    int clean = 0;
    for (int i = 0; i < s->o->calls; i++) {
        vb_cs_call_t *c = &s->calls[i];
        add_call(&t, c);
        clean += vb_cs_sim_call_clean(c);
        vb_cs_lat_merge(&all, &c->rtt.lat);
        add_replies(c, &replies);
        if (c->close_code != 0) {
            count(codes, c->close_code);
        }
        if (c->state != VB_CS_IDLE) {
            count(status, c->http_status);
        }
        if (per_call != NULL) {
            json_array_append_new(per_call, call_object(c));
        }
    }
    json_t *sum = totals_object(&t, s->o->calls, clean, &all);
    json_object_set_new(sum, "bad_messages", json_integer(t.bad));
    json_object_set_new(sum, "lateness_ms",
                        json_pack("{s:f,s:f,s:f}", "p50", vb_cs_lateness_pct(t.lateness, 50),
                                  "p99", vb_cs_lateness_pct(t.lateness, 99), "p999",
                                  vb_cs_lateness_pct(t.lateness, 99.9)));
    json_object_set_new(sum, "agent_hangups", json_integer(t.agent_hangups));
    if (vb_cs_opts_conversation(s->o)) {
        json_object_set_new(sum, "reply_ms", rtt_object(&replies));
    }
    json_object_set_new(sum, "timed_out", json_boolean(s->timed_out));
    json_object_set_new(sum, "close_codes", codes);
    json_object_set_new(sum, "http_status", status);
    if (per_call != NULL) {
        json_object_set_new(sum, "per_call", per_call);
    }
    vb_cs_lat_free(&all);
    vb_cs_lat_free(&replies);
    return sum;
}
