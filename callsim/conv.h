/* voxbridge-callsim: the caller's side of a conversation on one call, paced like a person:
 * let the agent finish (its playout queue holds no sound and it has been quiet for a
 * moment), then speak the next line; wait a while for an answer before moving on. It
 * decides, frame slot by frame slot, whether the caller speaks (which frame of which turn)
 * or stays silent, and keeps each turn's times and the agent onset that answered it.
 * Pure: times are timeline positions in 8 kHz samples since the stream started, so it
 * runs in unit tests without a clock or a network. Run by voxbridge-callsim only. */
#ifndef VB_CALLSIM_CONV_H
#define VB_CALLSIM_CONV_H

#include <stddef.h>
#include <stdint.h>

#include "callsim/audio.h"

#define VB_CS_DEFAULT_GAP_MS 600   /* agent quiet this long: its turn is over */
#define VB_CS_DEFAULT_WAIT_MS 8000 /* longest wait for an answer to start */
#define VB_CS_REPLY_MAX_MS 30000   /* longest wait for an answer to finish */

typedef struct {
    int pause_ms; /* before the first line: how long to wait for a greeting that never starts */
    int gap_ms;   /* quiet after the agent's audio before the caller speaks */
    int wait_ms;  /* a line the agent has not started to answer by then is unanswered */
    int tail_ms;  /* after the last line is answered: quiet before the caller hangs up */
} vb_cs_conv_opts_t;

typedef struct {
    int64_t sent;  /* the turn's first frame went out; -1: not spoken (yet) */
    int64_t start; /* its speech started (first loud window) */
    int64_t end;   /* its speech ended (past the last loud window) */
    int64_t reply; /* onset of the agent audio that answered it; -1: none */
} vb_cs_turn_rec_t;

typedef struct {
    const vb_cs_audio_t *a;
    int64_t pause, gap, wait, tail, reply_max; /* samples */
    size_t turn; /* the turn being spoken, else the next one to speak */
    int speaking;
    uint64_t frame;    /* next frame of the turn being spoken */
    int64_t wait_from; /* the current wait started (stream start, or end of a turn) */
    int heard;         /* agent audio started since the last turn started (or ever, before) */
    int over;          /* every line said and answered (or given up on): hang up */
    vb_cs_turn_rec_t *rec; /* one per turn of A */
    uint8_t buf[VB_CS_FRAME];
} vb_cs_conv_t;

/* A's turns, in order, with O's timing. 0 or -ENOMEM. */
int vb_cs_conv_init(vb_cs_conv_t *c, const vb_cs_audio_t *a, const vb_cs_conv_opts_t *o);
void vb_cs_conv_free(vb_cs_conv_t *c);

/* The agent's audio had an onset (a loud window after a quiet stretch) at AT. */
void vb_cs_conv_onset(vb_cs_conv_t *c, int64_t at);

/* The frame the caller sends in the 20 ms slot starting at NOW. LAST_SOUND is where the
 * agent's played audio was last above the quiet level (-1: never), QUEUED_SOUND whether
 * audio above it still waits in the playout queue. *ONSET gets the timeline position of
 * a turn's speech start inside this frame, else -1. Silence while waiting or once over. */
const uint8_t *vb_cs_conv_next(vb_cs_conv_t *c, int64_t now, int64_t last_sound,
                               int queued_sound, int64_t *onset);

/* Every line has been said and its answer heard out (or waited for in vain). */
int vb_cs_conv_over(const vb_cs_conv_t *c);
/* Turns spoken so far, and those of them that got no answer. */
size_t vb_cs_conv_spoken(const vb_cs_conv_t *c);
size_t vb_cs_conv_unanswered(const vb_cs_conv_t *c);
/* Reply time of turn T in samples: from its end of speech to the answer's onset (0 when
 * the agent started before the caller had finished); -1 when unanswered or not spoken. */
int64_t vb_cs_conv_reply(const vb_cs_conv_t *c, size_t t);
/* Longest a conversation over A can last with O (for the default --timeout), in ms. */
double vb_cs_conv_max_ms(const vb_cs_audio_t *a, const vb_cs_conv_opts_t *o);

#endif
