/* The `local` speech-to-text: pocketsphinx 0.8 (en-us model) in the AI broker,
 * with no key and no network. See docs/voice.md for what was measured.
 *
 * Per call a stream (vb_stt_stream_t) takes the caller's 20 ms frames on the
 * broker's event loop and finds utterances there (the worker's VAD flag, a
 * pre-roll, and an end-of-speech silence); the frames of an utterance go to one
 * recognition thread per vb_stt_t, which decodes them as they come:
 *   - the 4-8 kHz band that a phone call leaves empty is filled with low-level
 *     high-passed noise (without it the wideband model hears almost nothing);
 *   - one JSGF grammar: the assistant's phrases, or else any sequence of their
 *     words and common English words, each weighted down (the garbage path); a
 *     phrase that wins is taken as it is;
 *   - otherwise the utterance is decoded again with the open language model
 *     (free text; slower and far less accurate on phone audio), or, without
 *     one, the garbage path's words are given.
 * Decoders live in a pool on the thread (about 8 MB each), taken for the length
 * of an utterance, so memory follows the callers speaking at once, not the
 * calls. Results go back through a per-stream queue and a notify callback. */
#ifndef VB_BROKER_STT_LOCAL_H
#define VB_BROKER_STT_LOCAL_H

#include <stddef.h>
#include <stdint.h>

#include "shm/slot_layout.h"

#define VB_STT_MODEL_DIR "/usr/share/pocketsphinx/model/en-us"
#define VB_STT_END_SILENCE_MS 500 /* unvoiced frames that end an utterance */
#define VB_STT_PREROLL_MS 300     /* audio kept from before the VAD said speech */
#define VB_STT_MIN_VOICED_MS 100  /* shorter bursts are clicks, not words */
#define VB_STT_MAX_UTT_MS 15000   /* an utterance is cut (and decoded) at this length */
/* Prior of each word of the garbage path against a whole phrase, as a JSGF weight.
 * Measured on the demo assistant, espeak-ng voices through the phone path, 30 phrases
 * said and 24 other lines (docs/voice.md): 1e-20 lost a phrase to the loop, 1e-25 took
 * 2 other lines for phrases, 1e-22 got 30 of 30 and 0 of 24. */
#define VB_STT_LOOP_WEIGHT "0.0000000000000000000001"
#define VB_STT_TEXT_MAX 256

typedef struct vb_stt vb_stt_t;
typedef struct vb_stt_stream vb_stt_stream_t;

typedef struct {
    const char *model_dir; /* holds en-us/ (acoustic model), cmudict-en-us.dict and
                              en-us.lm.bin; NULL: VB_STT_MODEL_DIR */
    int open_lm;           /* 1: load the open language model for free text (~100 MB,
                              ~1.5 s in the background); 0: the garbage path's words */
    int end_silence_ms;    /* 0: VB_STT_END_SILENCE_MS */
} vb_stt_opts_t;

enum {
    VB_STT_SRC_GRAMMAR = 1, /* one of the phrases */
    VB_STT_SRC_OPEN,        /* the open language model */
    VB_STT_SRC_LOOP,        /* the garbage path's words (no open model) */
    VB_STT_SRC_NONE,        /* nothing recognised (text is empty) */
};

typedef struct {
    char text[VB_STT_TEXT_MAX];      /* lower-case words */
    char loop_text[VB_STT_TEXT_MAX]; /* when not a phrase: the garbage path's words (only
                                        the assistant's and common words), else "" */
    int source;                      /* VB_STT_SRC_* */
    uint64_t start_ns;               /* capture time (frame t_ns) of the first voiced frame */
    uint64_t speech_end_ns;          /* end of the last word heard (decoder alignment), else of
                                        the last voiced frame */
    uint64_t endpoint_ns;            /* when the end-of-speech silence closed the utterance */
    uint64_t final_ns;               /* when the result was ready (CLOCK_MONOTONIC) */
    uint32_t voiced_frames;
} vb_stt_result_t;

/* Called on the recognition thread, under the service's mutex, when a result can
 * be polled. Cheap, thread-safe and must not call back into vb_stt_* (write an
 * eventfd). Never called once vb_stt_stream_free has returned. */
typedef void (*vb_stt_notify_fn)(void *arg);

/* Start the recognition thread; returns at once (the thread loads the dictionary,
 * ~40 ms, and the open model). NULL + errno: ENOENT when the model's files are
 * missing (logged), ENOMEM, or pthread_create's error. */
vb_stt_t *vb_stt_local_start(const vb_stt_opts_t *opts);
/* Stop the thread; frees streams already released and every decoder. */
void vb_stt_local_stop(vb_stt_t *stt);

/* A call's stream recognising PHRASES (caller lines; normalised text, words missing
 * from the dictionary are dropped from the grammar). The thread prepares decoders
 * for them at once so the first utterance pays nothing. NULL + ENOMEM. */
vb_stt_stream_t *vb_stt_stream_new(vb_stt_t *stt, const char *const *phrases, size_t n,
                                   vb_stt_notify_fn notify, void *arg);
/* The silence that ends an utterance on this stream (loop thread; 0: the
 * service's end_silence_ms). */
void vb_stt_set_end_silence(vb_stt_stream_t *s, int ms);
/* Let go of the stream; the thread finishes with it and frees it. NULL allowed. */
void vb_stt_stream_free(vb_stt_stream_t *s);

/* One caller frame (loop thread; no allocation). Returns 1 while inside an
 * utterance, 0 outside. */
int vb_stt_feed(vb_stt_stream_t *s, const vb_audio_frame_t *f);
/* Close the utterance in progress now (its result follows), e.g. when the call is
 * about to end. */
void vb_stt_flush(vb_stt_stream_t *s);
/* Next result: 0, or -EAGAIN. */
int vb_stt_poll(vb_stt_stream_t *s, vb_stt_result_t *out);
/* Frames dropped because the thread fell more than VB_STT_QUEUE_MS behind. */
uint64_t vb_stt_dropped(vb_stt_stream_t *s);
#define VB_STT_QUEUE_MS 5120

/* Counters of the service, for the benchmark and logs. */
typedef struct {
    uint64_t utterances, grammar, open_lm, loop; /* results by source */
    uint64_t decoders;                           /* alive now */
    double audio_s, busy_s; /* audio decoded, thread time spent decoding it */
} vb_stt_stats_t;
void vb_stt_stats(vb_stt_t *stt, vb_stt_stats_t *out);

#endif
