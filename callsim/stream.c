/* voxbridge-callsim: the Media Streams side of one call, speaking as Twilio: connected,
 * start, a media frame of caller audio every 20 ms, dtmf, stop; and the agent's media,
 * mark and clear into the simulated playout buffer, whose marks go back when played.
 * Nothing here allocates per frame: messages are built into one static buffer (the
 * process is single-threaded) and received audio is decoded into a static scratch. */
#include <errno.h>
#include <math.h>
#include <stdlib.h>
#include <string.h>

#include "callsim/sim_int.h"
#include "common/base64.h"
#include "common/g711.h"
#include "common/log.h"
#include "worker/mstream.h"

#define MSG_CAP 16384
#define DTMF_GAP_FRAMES 5   /* 100 ms between digits */
#define DTMF_WAIT_FRAMES 25 /* 'w': 500 ms */
#define MAX_ONSETS 16
#define BAD_LOG_MAX 3 /* per call */
/* A tick that fires this much before its grid time still sends that slot's frame. */
#define TICK_SLACK_US 500

static char msgbuf[MSG_CAP];
static vb_ms_msg_t msg;
static int16_t pcmbuf[VB_MS_MAX_PAYLOAD];

/* A server -> Twilio message, from vb_ms_parse or, for what it refuses but Twilio takes
 * (payloads over VB_MS_MAX_PAYLOAD, long mark names), from jansson. */
typedef struct {
    vb_ms_event_t event;
    const char *stream_sid;
    const uint8_t *payload;
    size_t len;
    const char *mark;
    json_t *root; /* the jansson parse, when used */
    uint8_t *big; /* its decoded payload */
} rxmsg_t;

static int64_t timeline(const vb_cs_call_t *c, int64_t now)
{
    return now > c->t0 ? (now - c->t0) * VB_CS_RATE / 1000000 : 0;
}

static void send_text(vb_cs_call_t *c, const char *buf, size_t n)
{
    if (c->ws == NULL) {
        return;
    }
    int rc = n > 0 ? vb_ws_send(c->ws, 1, buf, n) : -EMSGSIZE;
    if (rc < 0 && c->send_errors++ == 0) {
        vb_cs_call_log(c, VB_LOG_WARN, "cannot send on the stream: %s", strerror(-rc));
    }
}

/* Conversation: the agent's audio started at AT; log when it answers a caller line. */
static void on_agent_onset(vb_cs_call_t *c, int64_t at)
{
    size_t spoken = vb_cs_conv_spoken(&c->conv);
    int64_t before = spoken ? vb_cs_conv_reply(&c->conv, spoken - 1) : -1;
    vb_cs_conv_onset(&c->conv, at);
    int64_t after = spoken ? vb_cs_conv_reply(&c->conv, spoken - 1) : -1;
    if (spoken == 0) {
        vb_cs_call_log(c, c->sim->event_level, "agent speaks at %.2f s", VB_CS_MS(at) / 1000.0);
    } else if (before < 0 && after >= 0) {
        vb_cs_call_log(c, c->sim->event_level,
                       "agent answers line %zu at %.2f s, %.0f ms after "
                       "the caller stopped",
                       spoken, VB_CS_MS(at) / 1000.0, VB_CS_MS(after));
    }
}

static void on_played(const int16_t *pcm, size_t n, void *arg)
{
    vb_cs_call_t *c = arg;
    int64_t at[MAX_ONSETS];
    if (c->has_out) {
        vb_cs_wav_writer_write(&c->out, pcm, n);
    }
    size_t found = vb_cs_onset_feed(&c->onset, pcm, n, at, MAX_ONSETS);
    if (found > 0 && c->first_onset < 0) {
        c->first_onset = at[0];
    }
    for (size_t i = 0; i < found && i < MAX_ONSETS; i++) {
        if (c->converse) {
            on_agent_onset(c, at[i]);
        }
        if (vb_cs_rtt_onset(&c->rtt, at[i]) && c->rtt.lat.n > 0 && !c->converse) {
            vb_cs_call_log(c, c->sim->event_level, "agent audio %.0f ms after the caller turn",
                           c->rtt.lat.v[c->rtt.lat.n - 1]);
        }
    }
}

static void on_mark_played(const char *name, void *arg)
{
    vb_cs_call_t *c = arg;
    c->marks_answered++;
    vb_cs_call_log(c, c->sim->event_level, "mark \"%s\" played", name);
    send_text(c, msgbuf, vb_ms_build_mark_in(msgbuf, MSG_CAP, ++c->seq, c->stream_sid, name));
}

static int open_out(vb_cs_call_t *c)
{
    const vb_cs_opts_t *o = c->sim->o;
    char path[4096];
    if (o->out == NULL) {
        return 0;
    }
    vb_cs_sim_out_path(o->out, c->n, o->calls, path, sizeof(path));
    int rc = vb_cs_wav_writer_open(&c->out, path, VB_CS_RATE);
    if (rc < 0) {
        vb_log(VB_LOG_ERR, "cannot write %s: %s", path, strerror(-rc));
        return rc;
    }
    c->has_out = 1;
    return 0;
}

int vb_cs_stream_init(vb_cs_call_t *c)
{
    const vb_cs_opts_t *o = c->sim->o;
    vb_cs_rx_init(&c->rx);
    vb_cs_onset_init(&c->onset, o->onset_dbfs, o->quiet_ms);
    vb_cs_rtt_init(&c->rtt, o->skip_onsets);
    c->dtmf_next = o->dtmf;
    c->loop = o->duration_s > 0;
    c->total_frames = (uint64_t)(vb_cs_sim_call_ms(o, c->sim->audio) / 20.0 + 0.5);
    c->quiet_level = (int)sqrt(c->onset.quiet_energy);
    c->first_onset = -1;
    c->greeting_samples = -1;
    c->converse = vb_cs_opts_conversation(o);
    if (c->converse) {
        vb_cs_conv_opts_t co;
        vb_cs_sim_conv_opts(o, &co);
        return vb_cs_conv_init(&c->conv, c->sim->audio, &co);
    }
    return 0;
}

void vb_cs_stream_free(vb_cs_call_t *c)
{
    if (c->has_out) {
        vb_cs_wav_writer_close(&c->out);
        c->has_out = 0;
    }
    vb_cs_playout_free(&c->play);
    vb_cs_rtt_free(&c->rtt);
    if (c->converse) {
        vb_cs_conv_free(&c->conv);
    }
}

static void send_start(vb_cs_call_t *c)
{
    const char *acct = c->sim->account_sid;
    if (c->custom == NULL) {
        send_text(c, msgbuf,
                  vb_ms_build_start(msgbuf, MSG_CAP, ++c->seq, c->stream_sid, acct, c->call_sid,
                                    c->call_id));
        return;
    }
    /* More <Parameter>s than call_id: Twilio passes them all in customParameters. */
    if (c->call_id[0] != '\0') {
        json_object_set_new(c->custom, "call_id", json_string(c->call_id));
    }
    char seq[16];
    snprintf(seq, sizeof(seq), "%u", ++c->seq);
    json_t *m =
        json_pack("{s:s,s:s,s:{s:s,s:s,s:s,s:[s],s:O,s:{s:s,s:i,s:i}},s:s}", "event", "start",
                  "sequenceNumber", seq, "start", "accountSid", acct, "streamSid",
                  c->stream_sid, "callSid", c->call_sid, "tracks", "inbound",
                  "customParameters", c->custom, "mediaFormat", "encoding", "audio/x-mulaw",
                  "sampleRate", VB_CS_RATE, "channels", 1, "streamSid", c->stream_sid);
    char *s = m ? json_dumps(m, JSON_COMPACT) : NULL;
    send_text(c, s ? s : "", s ? strlen(s) : 0);
    free(s);
    json_decref(m);
}

void vb_cs_stream_open(vb_cs_call_t *c, int64_t now)
{
    /* The playout queue is made here, not at start-up: only answered calls need one. */
    vb_cs_playout_cb_t cb = {.on_audio = on_played, .on_mark = on_mark_played, .arg = c};
    c->t0 = vb_cs_sim_grid(c->sim, now) +
            (int64_t)(c->n % c->sim->o->phases) * VB_CS_PHASE_US(c->sim);
    send_text(c, msgbuf, vb_ms_build_connected(msgbuf, MSG_CAP));
    send_start(c);
    if (vb_cs_playout_init(&c->play, &cb) < 0) {
        vb_cs_call_log(c, VB_LOG_ERR, "out of memory for the playout buffer");
        vb_cs_stream_hang_up(c, 1011, "out of memory");
        return;
    }
    if (open_out(c) < 0) {
        c->has_out = 0;
    }
}

/* Conversation: the frame of slot K, from the turn scheduler. */
static const uint8_t *conv_frame(vb_cs_call_t *c, uint64_t k)
{
    int64_t at = (int64_t)k * VB_CS_FRAME, onset;
    size_t before = vb_cs_conv_spoken(&c->conv);
    int held = vb_cs_playout_holds_sound(&c->play, c->quiet_level);
    const uint8_t *f = vb_cs_conv_next(&c->conv, at, c->onset.last_sound, held, &onset);
    if (onset >= 0) {
        vb_cs_rtt_turn(&c->rtt, onset);
    }
    if (vb_cs_conv_spoken(&c->conv) > before) {
        if (before == 0) {
            c->greeting_samples = (int64_t)c->samples_received;
        }
        const vb_cs_line_t *l = &c->sim->o->lines[before];
        vb_cs_call_log(c, c->sim->event_level, "caller line %zu at %.2f s: %s%s%s", before + 1,
                       VB_CS_MS(at) / 1000.0, l->is_say ? "\"" : "", l->arg,
                       l->is_say ? "\"" : "");
    }
    return f;
}

static void send_frame(vb_cs_call_t *c, int64_t now)
{
    const vb_cs_audio_t *a = c->sim->audio;
    uint64_t k = c->sent++;
    int64_t lag = now - (c->t0 + (int64_t)k * VB_CS_TICK_US);
    if (lag > c->lag_max_us) {
        c->lag_max_us = lag;
    }
    const uint8_t *frame;
    if (c->converse) {
        frame = conv_frame(c, k);
    } else {
        int off = vb_cs_audio_turn_in(a, k, c->loop);
        if (off >= 0) {
            vb_cs_rtt_turn(&c->rtt, timeline(c, now) + off);
        }
        frame = vb_cs_audio_frame(a, k, c->loop);
    }
    size_t n = vb_ms_build_media_in(msgbuf, MSG_CAP, ++c->seq, c->stream_sid, (uint32_t)(k + 1),
                                    (uint32_t)(k * 20), frame, VB_CS_FRAME);
    send_text(c, msgbuf, n);
}

static void send_dtmf(vb_cs_call_t *c)
{
    char digit[2] = {*c->dtmf_next++, '\0'};
    if (digit[0] == 'w') {
        c->dtmf_frame = c->sent + DTMF_WAIT_FRAMES;
        return;
    }
    c->dtmf_frame = c->sent + DTMF_GAP_FRAMES;
    c->dtmf_sent++;
    vb_cs_call_log(c, c->sim->event_level, "dtmf %s", digit);
    send_text(c, msgbuf, vb_ms_build_dtmf(msgbuf, MSG_CAP, ++c->seq, c->stream_sid, digit));
}

void vb_cs_stream_hang_up(vb_cs_call_t *c, int code, const char *why)
{
    if (c->state != VB_CS_STREAMING) {
        return;
    }
    c->state = VB_CS_CLOSING;
    vb_cs_sim_streaming(c->sim, c, 0);
    send_text(c, msgbuf,
              vb_ms_build_stop(msgbuf, MSG_CAP, ++c->seq, c->stream_sid, c->sim->account_sid,
                               c->call_sid));
    vb_cs_call_log(c, VB_LOG_INFO, "hanging up after %llu frames%s%s",
                   (unsigned long long)c->sent, why ? ": " : "", why ? why : "");
    if (c->ws != NULL) {
        vb_ws_close(c->ws, code, why);
    }
}

/* All frames sent (fixed timeline), or the conversation is over. */
static int call_done(const vb_cs_call_t *c)
{
    return c->sent >= c->total_frames || (c->converse && vb_cs_conv_over(&c->conv));
}

void vb_cs_stream_tick(vb_cs_call_t *c, int64_t now)
{
    if (!c->converse && c->state == VB_CS_STREAMING &&
        c->t0 + (int64_t)c->sent * VB_CS_TICK_US > now + TICK_SLACK_US) {
        return; /* not this call's phase */
    }
    /* The frame and the marks played by now leave in one segment, as the worker's frames
     * and marks do: one wake-up of the worker instead of two. */
    if (c->ws != NULL) {
        vb_ws_cork(c->ws);
    }
    if (c->converse) {
        /* The turn scheduler decides on what the caller has heard up to now. */
        vb_cs_playout_advance(&c->play, timeline(c, now));
    }
    while (c->state == VB_CS_STREAMING && !call_done(c) &&
           c->t0 + (int64_t)c->sent * VB_CS_TICK_US <= now + TICK_SLACK_US) {
        send_frame(c, now);
        if (c->dtmf_next != NULL && *c->dtmf_next != '\0' && c->sent >= c->dtmf_frame) {
            send_dtmf(c);
        }
    }
    vb_cs_playout_advance(&c->play, timeline(c, now));
    if (c->ws != NULL) { /* NULL if the stream closed meanwhile */
        vb_ws_uncork(c->ws);
    }
    if (c->state == VB_CS_STREAMING && call_done(c)) {
        c->t_done = c->t_done ? c->t_done : now;
        if (now - c->t_done >= (int64_t)c->sim->o->tail_ms * 1000) {
            vb_cs_stream_hang_up(c, 1000, NULL);
        }
    }
}

void vb_cs_stream_end(vb_cs_call_t *c, int64_t now)
{
    if (c->t0 != 0) {
        vb_cs_playout_advance(&c->play, timeline(c, now));
    }
    if (c->has_out) {
        int rc = vb_cs_wav_writer_close(&c->out);
        if (rc < 0) {
            vb_cs_call_log(c, VB_LOG_ERR, "writing the --out file failed: %s", strerror(-rc));
        }
        c->has_out = 0;
    }
}

static void bad_message(vb_cs_call_t *c, const char *why, const uint8_t *data, size_t len)
{
    if (c->bad_messages++ < BAD_LOG_MAX) {
        vb_cs_call_log(c, VB_LOG_WARN, "bad message from the server (%s): %.*s", why,
                       (int)(len < 120 ? len : 120), (const char *)data);
    }
}

static const char *jstr(json_t *obj, const char *k1, const char *k2)
{
    json_t *v = json_object_get(obj, k1);
    return json_string_value(k2 ? json_object_get(v, k2) : v);
}

/* What Twilio accepts and vb_ms_parse does not: media of any length, any mark name. */
static int parse_jansson(const uint8_t *data, size_t len, rxmsg_t *m)
{
    m->root = json_loadb((const char *)data, len, 0, NULL);
    const char *ev = jstr(m->root, "event", NULL);
    if (ev == NULL) {
        return -VB_MS_EBADJSON;
    }
    m->stream_sid = jstr(m->root, "streamSid", NULL);
    if (strcmp(ev, "mark") == 0) {
        m->event = VB_MS_MARK;
        m->mark = jstr(m->root, "mark", "name");
        return m->mark ? 0 : -VB_MS_EFIELD;
    }
    const char *b64 = jstr(m->root, "media", "payload");
    if (strcmp(ev, "media") != 0 || b64 == NULL) {
        return -VB_MS_EFIELD;
    }
    size_t n = strlen(b64);
    m->big = malloc(VB_BASE64_DECLEN(n) + 1);
    if (m->big == NULL || vb_base64_decode(b64, n, m->big, VB_BASE64_DECLEN(n) + 1, &m->len)) {
        return -VB_MS_EBASE64;
    }
    m->event = VB_MS_MEDIA;
    m->payload = m->big;
    return 0;
}

static int parse(const uint8_t *data, size_t len, rxmsg_t *m)
{
    memset(m, 0, sizeof(*m));
    int rc = vb_ms_parse((const char *)data, len, &msg);
    if (rc == -VB_MS_ESIZE || rc == -VB_MS_EFIELD) {
        return parse_jansson(data, len, m);
    }
    m->event = msg.event;
    m->stream_sid = msg.stream_sid;
    m->payload = msg.payload;
    m->len = msg.payload_len;
    m->mark = msg.mark_name;
    return rc;
}

static void on_media(vb_cs_call_t *c, const rxmsg_t *m, int64_t now)
{
    int64_t tl = timeline(c, now);
    vb_cs_playout_advance(&c->play, tl);
    vb_cs_rx_media(&c->rx, tl, vb_cs_playout_queued(&c->play), c->play.empty_at);
    for (size_t off = 0; off < m->len; off += VB_MS_MAX_PAYLOAD) {
        size_t n = m->len - off < VB_MS_MAX_PAYLOAD ? m->len - off : VB_MS_MAX_PAYLOAD;
        uint64_t dropped_before = c->play.dropped;
        vb_ulaw_decode(m->payload + off, n, pcmbuf);
        if (vb_cs_playout_push(&c->play, tl, pcmbuf, n) < 0 && dropped_before == 0) {
            vb_cs_call_log(c, VB_LOG_WARN, "playout buffer full: dropping audio");
        }
    }
    c->samples_received += m->len;
}

static void on_mark(vb_cs_call_t *c, const rxmsg_t *m, int64_t now)
{
    c->marks_received++;
    vb_cs_call_log(c, c->sim->event_level, "mark \"%s\" received, %zu ms queued", m->mark,
                   vb_cs_playout_queued(&c->play) / 8);
    if (vb_cs_playout_mark(&c->play, timeline(c, now), m->mark) < 0) {
        vb_cs_call_log(c, VB_LOG_ERR, "out of memory for a mark");
    }
}

static void on_clear(vb_cs_call_t *c, int64_t now)
{
    c->clears++;
    int64_t tl = timeline(c, now);
    vb_cs_playout_advance(&c->play, tl);
    size_t queued = vb_cs_playout_queued(&c->play);
    size_t marks = vb_cs_playout_clear(&c->play, tl);
    vb_cs_rx_clear(&c->rx);
    vb_cs_call_log(c, c->sim->event_level, "clear: dropped %zu ms of audio, returned %zu marks",
                   queued / 8, marks);
}

void vb_cs_stream_message(vb_cs_call_t *c, int is_text, const uint8_t *data, size_t len,
                          int64_t now)
{
    if (c->state != VB_CS_STREAMING) {
        return; /* after stop Twilio listens no more */
    }
    rxmsg_t m;
    int rc = is_text ? parse(data, len, &m) : -VB_MS_EBADJSON;
    if (!is_text) {
        memset(&m, 0, sizeof(m));
        bad_message(c, "binary frame", data, 0);
    } else if (rc < 0) {
        bad_message(c, vb_ms_strerror(rc), data, len);
    } else if (m.stream_sid != NULL && m.stream_sid[0] != '\0' &&
               strcmp(m.stream_sid, c->stream_sid) != 0) {
        bad_message(c, "streamSid of another stream", data, len);
    } else if (m.event == VB_MS_MEDIA) {
        on_media(c, &m, now);
    } else if (m.event == VB_MS_MARK) {
        on_mark(c, &m, now);
    } else if (m.event == VB_MS_CLEAR) {
        on_clear(c, now);
    } else {
        bad_message(c, "an event only Twilio sends", data, len);
    }
    json_decref(m.root);
    free(m.big);
}
