/* voxbridge-callsim: a model of Twilio's playout buffer for the agent's audio. Audio the
 * server sends is queued and plays out in real time; a mark is answered when playout
 * reaches the point where it was sent (at once if nothing is queued); clear drops the
 * queue and answers every pending mark. Time is the call's timeline in 8 kHz samples since
 * the stream started, so the model is pure and runs in unit tests without a clock.
 * Run by voxbridge-callsim only. */
#ifndef VB_CALLSIM_PLAYOUT_H
#define VB_CALLSIM_PLAYOUT_H

#include <stddef.h>
#include <stdint.h>

#define VB_CS_RATE 8000
#define VB_CS_FRAME 160 /* samples in 20 ms at 8 kHz */
/* The queue grows (by doubling) up to this many samples; beyond it audio is dropped. */
#define VB_CS_PLAYOUT_MAX (VB_CS_RATE * 600)

typedef struct {
    /* Played-out audio in order, silence included, so that the samples handed over so far
     * always equal the timeline position. N is never 0. */
    void (*on_audio)(const int16_t *pcm, size_t n, void *arg);
    /* A mark's audio has played (or was dropped by clear). */
    void (*on_mark)(const char *name, void *arg);
    void *arg;
} vb_cs_playout_cb_t;

typedef struct {
    uint64_t pos; /* sample count enqueued when the mark came */
    char *name;
} vb_cs_mark_t;

typedef struct {
    int16_t *q;
    size_t cap;          /* power of two */
    uint64_t head, tail; /* free-running: samples played, samples enqueued */
    int64_t out;         /* timeline samples handed to on_audio */
    int64_t anchor;      /* timeline sample at which q[head] starts (when not empty) */
    int64_t empty_at;    /* when the queue last ran dry or was cleared; -1 before any audio */
    vb_cs_mark_t *marks; /* pending, ascending pos */
    size_t nmarks, mcap;
    uint64_t dropped; /* samples refused past VB_CS_PLAYOUT_MAX */
    vb_cs_playout_cb_t cb;
} vb_cs_playout_t;

/* 0 or -ENOMEM. */
int vb_cs_playout_init(vb_cs_playout_t *p, const vb_cs_playout_cb_t *cb);
void vb_cs_playout_free(vb_cs_playout_t *p);

/* Plays out everything due up to timeline sample NOW (ignored if not ahead of the last). */
void vb_cs_playout_advance(vb_cs_playout_t *p, int64_t now);
/* Queues N samples received at NOW (advances first). 0, or -ENOBUFS if some were dropped
 * because the queue is at its limit. */
int vb_cs_playout_push(vb_cs_playout_t *p, int64_t now, const int16_t *pcm, size_t n);
/* A mark received at NOW: answered at once if nothing is queued, else when playout gets
 * there. 0 or -ENOMEM. */
int vb_cs_playout_mark(vb_cs_playout_t *p, int64_t now, const char *name);
/* Drops the queue at NOW and answers every pending mark; returns how many. */
size_t vb_cs_playout_clear(vb_cs_playout_t *p, int64_t now);
/* Samples waiting to be played. */
size_t vb_cs_playout_queued(const vb_cs_playout_t *p);
/* 1 when a sample waiting to be played is at least LEVEL loud (absolute value). */
int vb_cs_playout_holds_sound(const vb_cs_playout_t *p, int level);

#endif
