/* voxbridge-callsim: the turn scheduler of a conversation (see conv.h). */
#include "callsim/conv.h"

#include <errno.h>
#include <stdlib.h>
#include <string.h>

#include "callsim/stats.h"
#include "common/g711.h"

int vb_cs_conv_init(vb_cs_conv_t *c, const vb_cs_audio_t *a, const vb_cs_conv_opts_t *o)
{
    memset(c, 0, sizeof(*c));
    c->a = a;
    c->pause = VB_CS_SAMPLES(o->pause_ms);
    c->gap = VB_CS_SAMPLES(o->gap_ms);
    c->wait = VB_CS_SAMPLES(o->wait_ms);
    c->tail = VB_CS_SAMPLES(o->tail_ms);
    c->reply_max = VB_CS_SAMPLES(VB_CS_REPLY_MAX_MS);
    c->rec = malloc((a->nturns ? a->nturns : 1) * sizeof(*c->rec));
    if (c->rec == NULL) {
        return -ENOMEM;
    }
    for (size_t t = 0; t < a->nturns; t++) {
        c->rec[t] = (vb_cs_turn_rec_t){.sent = -1, .start = -1, .end = -1, .reply = -1};
    }
    return 0;
}

void vb_cs_conv_free(vb_cs_conv_t *c)
{
    free(c->rec);
    memset(c, 0, sizeof(*c));
}

/* The turn an agent onset now answers: the one being spoken, else the last one spoken. */
static long current_turn(const vb_cs_conv_t *c)
{
    if (c->speaking) {
        return (long)c->turn;
    }
    return (long)c->turn - 1;
}

void vb_cs_conv_onset(vb_cs_conv_t *c, int64_t at)
{
    long t = current_turn(c);
    if (t < 0) {
        c->heard = 1; /* a greeting */
        return;
    }
    vb_cs_turn_rec_t *r = &c->rec[t];
    /* An immediate echo may be found up to one window before the turn's speech start. */
    if (r->start >= 0 && at + VB_CS_ONSET_WIN >= r->start) {
        c->heard = 1;
        if (r->reply < 0) {
            r->reply = at;
        }
    }
}

/* The agent is still talking at NOW: sound waits in its queue, or it was loud less than
 * QUIET ago. */
static int agent_busy(int64_t now, int64_t last_sound, int queued_sound, int64_t quiet)
{
    return queued_sound || (last_sound >= 0 && now - last_sound < quiet);
}

/* Waiting at NOW: is it time for the next line (or, after the last one, to hang up)? */
static int wait_over(const vb_cs_conv_t *c, int64_t now, int64_t last_sound, int queued_sound)
{
    int last = c->turn >= c->a->nturns;
    int64_t waited = now - c->wait_from;
    int busy = agent_busy(now, last_sound, queued_sound, last ? c->tail : c->gap);
    if (waited >= c->reply_max) {
        return 1;
    }
    if (c->heard) {
        return !busy;
    }
    if (c->turn == 0) {
        return waited >= c->pause && !busy; /* no greeting: the caller speaks first */
    }
    return waited >= c->wait; /* no answer: move on */
}

/* Frame K of the turn being spoken, noting where its speech starts and ends. */
static const uint8_t *speak(vb_cs_conv_t *c, int64_t now, int64_t *onset)
{
    const vb_cs_audio_t *a = c->a;
    size_t t = c->turn;
    vb_cs_turn_rec_t *r = &c->rec[t];
    int64_t lo = (int64_t)c->frame * VB_CS_FRAME;
    int64_t on = (int64_t)(a->onsets[t] - a->starts[t]),
            end = (int64_t)(a->ends[t] - a->starts[t]);
    if (c->frame == 0) {
        r->sent = now;
    }
    if (on >= lo && on < lo + VB_CS_FRAME) {
        r->start = now + (on - lo);
        *onset = r->start;
    }
    if (end > lo && end <= lo + VB_CS_FRAME) {
        r->end = now + (end - lo);
    }
    vb_cs_audio_turn_frame(a, t, c->frame, c->buf);
    if (++c->frame >= vb_cs_audio_turn_frames(a, t)) {
        c->speaking = 0;
        c->turn++;
        c->wait_from = now + VB_CS_FRAME;
        if (r->start < 0) {
            r->start = r->sent;
        }
        if (r->end < 0) {
            r->end = now + VB_CS_FRAME;
        }
    }
    return c->buf;
}

const uint8_t *vb_cs_conv_next(vb_cs_conv_t *c, int64_t now, int64_t last_sound,
                               int queued_sound, int64_t *onset)
{
    *onset = -1;
    if (!c->speaking && !c->over && wait_over(c, now, last_sound, queued_sound)) {
        if (c->turn >= c->a->nturns) {
            c->over = 1;
        } else {
            c->speaking = 1;
            c->frame = 0;
            c->heard = 0;
        }
    }
    if (c->speaking) {
        return speak(c, now, onset);
    }
    memset(c->buf, VB_ULAW_SILENCE, sizeof(c->buf));
    return c->buf;
}

int vb_cs_conv_over(const vb_cs_conv_t *c)
{
    return c->over;
}

size_t vb_cs_conv_spoken(const vb_cs_conv_t *c)
{
    size_t n = 0;
    for (size_t t = 0; t < c->a->nturns; t++) {
        n += c->rec[t].sent >= 0;
    }
    return n;
}

size_t vb_cs_conv_unanswered(const vb_cs_conv_t *c)
{
    size_t n = 0;
    for (size_t t = 0; t < c->a->nturns; t++) {
        n += c->rec[t].sent >= 0 && c->rec[t].reply < 0;
    }
    return n;
}

int64_t vb_cs_conv_reply(const vb_cs_conv_t *c, size_t t)
{
    if (t >= c->a->nturns || c->rec[t].sent < 0 || c->rec[t].reply < 0) {
        return -1;
    }
    int64_t d = c->rec[t].reply - c->rec[t].end;
    return d > 0 ? d : 0;
}

double vb_cs_conv_max_ms(const vb_cs_audio_t *a, const vb_cs_conv_opts_t *o)
{
    double ms = (double)o->pause_ms + o->tail_ms;
    for (size_t t = 0; t < a->nturns; t++) {
        ms += (double)vb_cs_audio_turn_frames(a, t) * 20.0;
    }
    /* Each line, and the greeting before them, may be answered at length. */
    return ms + (double)(a->nturns + 1) * VB_CS_REPLY_MAX_MS;
}
