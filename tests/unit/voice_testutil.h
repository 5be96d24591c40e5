/* Helpers for the offline-voice tests and the voice benchmark: synthesise a line
 * with the local TTS and pass it through the phone path as a call would (16 kHz ->
 * 8 kHz, line noise, G.711 mu-law, then the media worker's own vb_dsp_inbound:
 * back to 16 kHz, denoise and VAD), giving the frames the broker would see. */
#ifndef VB_TESTS_VOICE_TESTUTIL_H
#define VB_TESTS_VOICE_TESTUTIL_H

#include <stddef.h>
#include <stdint.h>

#include "broker/tts_local.h"
#include "shm/slot_layout.h"
#include "worker/dsp.h"

/* Synthesise TEXT into *PCM (16 kHz, malloc'd), waiting for the whole utterance.
 * Returns the number of samples, or -errno. */
long vt_synth(vb_tts_t *tts, const char *text, const char *voice, int rate, int16_t **pcm);

/* The caller's side of a call: one vb_dsp_t, line noise and a virtual clock. */
typedef struct {
    vb_dsp_t *dsp;
    void *down; /* 16 kHz -> 8 kHz resampler */
    uint32_t rng;
    uint32_t seq;
    uint64_t t_ns; /* virtual capture time of the next frame */
} vt_line_t;

int vt_line_init(vt_line_t *l);
void vt_line_free(vt_line_t *l);
/* Frames for LEAD_MS of line noise, PCM (16 kHz), then TAIL_MS of line noise, into
 * *OUT (malloc'd). Returns the frame count, or -ENOMEM. */
long vt_line_frames(vt_line_t *l, const int16_t *pcm, size_t n, int lead_ms, int tail_ms,
                    vb_audio_frame_t **out);

/* The file tests/data/NAME read into a malloc'd string, or NULL. */
char *vt_read_data(const char *name);

#endif
