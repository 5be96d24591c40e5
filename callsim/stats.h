/* voxbridge-callsim: measurements on one call, all pure so they run in unit tests.
 * - vb_cs_rx_*: arrival of the agent's media messages: gaps while audio flows, and
 *   "late" messages that arrived after the playout queue had run dry mid-utterance.
 * - vb_cs_onset_*: energy onset detection (a loud 5 ms window after a quiet stretch),
 *   used on the caller's audio to find turn starts and on the played-out agent audio.
 * - vb_cs_rtt_*: matches agent onsets to the caller turns before them: round-trip time.
 * - vb_cs_lat_*: a list of latencies in ms with nearest-rank percentiles.
 * Times are timeline positions in 8 kHz samples since the stream started.
 * Run by voxbridge-callsim only. */
#ifndef VB_CALLSIM_STATS_H
#define VB_CALLSIM_STATS_H

#include <stddef.h>
#include <stdint.h>

#define VB_CS_MS(samples) ((double)(samples) / 8.0)
#define VB_CS_SAMPLES(ms) ((int64_t)(ms)*8)

/* Gaps longer than this count in gaps_over. */
#define VB_CS_GAP_MS 40
/* A dry queue refilled within this time is an underrun inside an utterance; after longer
 * silence the audio is a new utterance and the silence before it is not a gap. */
#define VB_CS_SPURT_END_MS 500
/* Starvation shorter than this is clock jitter, not a late message. */
#define VB_CS_LATE_TOLERANCE_MS 5

#define VB_CS_LATENESS_BUCKETS 256 /* the last bucket holds everything later */

typedef struct {
    int64_t last;             /* arrival of the previous message; -1 at a spurt start */
    uint64_t messages;        /* media messages received */
    uint64_t gaps_over;       /* inter-arrival gaps over VB_CS_GAP_MS while flowing */
    int64_t max_gap;          /* samples */
    uint64_t late;            /* messages that found the queue dry mid-utterance */
    int64_t underrun_samples; /* total starvation inside utterances */
    /* how late each message inside an utterance was: how long the playout had been
     * dry when it came (0 when audio was still queued), in 1 ms buckets */
    uint32_t lateness[VB_CS_LATENESS_BUCKETS];
} vb_cs_rx_t;

void vb_cs_rx_init(vb_cs_rx_t *rx);
/* A media message arrived at NOW. QUEUED is what the playout queue held just before it
 * (after playing up to NOW) and EMPTY_AT when the queue last ran dry (-1: never). */
void vb_cs_rx_media(vb_cs_rx_t *rx, int64_t now, size_t queued, int64_t empty_at);
/* The queue was cleared: the next audio starts a new utterance. */
void vb_cs_rx_clear(vb_cs_rx_t *rx);
/* Adds RX's lateness buckets to TOTAL. */
void vb_cs_lateness_add(uint64_t total[VB_CS_LATENESS_BUCKETS], const vb_cs_rx_t *rx);
/* Nearest-rank percentile (0 < P <= 100) of the lateness histogram, in ms; 0 when empty. */
double vb_cs_lateness_pct(const uint64_t hist[VB_CS_LATENESS_BUCKETS], double p);

#define VB_CS_ONSET_WIN 40 /* 5 ms at 8 kHz */

typedef struct {
    double on_energy;    /* mean square above which a window is loud */
    double on_amp;       /* its RMS: the first sample this loud marks the onset */
    double quiet_energy; /* mean square below which a window is quiet */
    int quiet_need;      /* quiet windows in a row that re-arm the detector */
    int quiet_run;
    int armed;
    int64_t pos;                       /* samples consumed */
    int64_t last_sound;                /* end of the last window not quiet; -1: none yet */
    int64_t acc;                       /* sum of squares in the current window */
    int fill;                          /* samples in the current window */
    int16_t hist[2 * VB_CS_ONSET_WIN]; /* the last two windows, ring by pos */
} vb_cs_onset_t;

/* ON_DBFS: a window whose RMS is above this (dB relative to full scale) is loud; quiet is
 * 10 dB lower and must last QUIET_MS before the next onset. The stream starts armed. */
void vb_cs_onset_init(vb_cs_onset_t *o, double on_dbfs, int quiet_ms);
/* (last_sound: the end of the last window above the quiet level, i.e. where the sound
 * last stopped, -1 before any.) Feeds N samples; writes the positions of the onsets found to
 * OUT, up to CAP of them, and returns how many were found. An onset is where a loud window
 * follows enough quiet ones; its position is the first sample at the loud level in that window
 * or the one before (so it does not depend on where the windows fall), else the window's start.
 */
size_t vb_cs_onset_feed(vb_cs_onset_t *o, const int16_t *pcm, size_t n, int64_t *out,
                        size_t cap);

typedef struct {
    double *v;
    size_t n, cap;
} vb_cs_lat_t;

/* 0 or -ENOMEM. */
int vb_cs_lat_add(vb_cs_lat_t *l, double ms);
/* Adds every value of SRC. */
int vb_cs_lat_merge(vb_cs_lat_t *l, const vb_cs_lat_t *src);
/* Nearest-rank percentile (0 < P <= 100) of the values; 0 when empty. Sorts in place. */
double vb_cs_lat_pct(vb_cs_lat_t *l, double p);
double vb_cs_lat_max(const vb_cs_lat_t *l);
void vb_cs_lat_free(vb_cs_lat_t *l);

typedef struct {
    int64_t *turns; /* caller turn onsets not yet answered, ascending */
    size_t n, cap;
    int skip;            /* agent onsets still to ignore (e.g. a greeting) */
    uint64_t unanswered; /* caller turns superseded by a later turn before any reply */
    vb_cs_lat_t lat;
} vb_cs_rtt_t;

void vb_cs_rtt_init(vb_cs_rtt_t *r, int skip);
/* A caller turn started at AT. 0 or -ENOMEM. */
int vb_cs_rtt_turn(vb_cs_rtt_t *r, int64_t at);
/* The agent's audio started at AT: if a turn started at or before AT (or up to one onset
 * window after it: detection jitter when the reply is immediate), the latest such turn is
 * answered and AT minus its start (at least 0) is recorded; older turns count as
 * unanswered. Returns 1 when a round trip was recorded. */
int vb_cs_rtt_onset(vb_cs_rtt_t *r, int64_t at);
void vb_cs_rtt_free(vb_cs_rtt_t *r);

#endif
