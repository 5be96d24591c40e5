/* voxbridge-callsim: the caller's side of the conversation, prepared once before the calls
 * start and shared by all of them: a sequence of turns (one per --wav file or --say line,
 * or bursts of a test tone) with pauses between, as 8 kHz mu-law in whole 20 ms frames,
 * plus where each turn's audio lies and where its speech starts and ends (for round-trip
 * and reply timing). A fixed-timeline call plays the sequence as it is; a conversation
 * (conv.h) takes each turn's frames when it is the caller's turn to speak.
 * Run by voxbridge-callsim only. */
#ifndef VB_CALLSIM_AUDIO_H
#define VB_CALLSIM_AUDIO_H

#include <stddef.h>
#include <stdint.h>

#include "callsim/playout.h"
#include "callsim/wav.h"

/* The built-in test signal: a burst of BURST_MS of a speech-band multi-tone at -12 dBFS
 * (peak) every PERIOD_MS, silence between. */
#define VB_CS_TONE_BURST_MS 300
#define VB_CS_TONE_PERIOD_MS 1000
#define VB_CS_TONE_DBFS (-12.0)

typedef struct {
    uint8_t *ulaw;  /* LEN mu-law bytes */
    size_t len;     /* samples; a multiple of VB_CS_FRAME */
    size_t *onsets; /* sequence offset where each turn's speech starts, ascending */
    size_t *starts; /* sequence offset where each turn's audio starts */
    size_t *lens;   /* samples of each turn's audio (its pause not included) */
    size_t *ends;   /* sequence offset just past each turn's last loud 5 ms window */
    size_t nturns;
} vb_cs_audio_t;

/* Builds the sequence from N decoded WAV files: turn, pause, turn, pause... PCM16 and
 * mu-law at any rate are accepted (resampled to 8 kHz with speexdsp; stereo is mixed
 * down). ONSET_DBFS is the level that counts as speech. 0, -EINVAL (empty file) or
 * -ENOMEM. */
int vb_cs_audio_from_wavs(vb_cs_audio_t *a, const vb_cs_wav_t *wavs, size_t n, int pause_ms,
                          double onset_dbfs);
/* The same from N turns already at 8 kHz mono (PCM[i], LEN[i] samples). 0, -EINVAL (an
 * empty turn) or -ENOMEM. */
int vb_cs_audio_from_pcm(vb_cs_audio_t *a, int16_t *const *pcm, const size_t *len, size_t n,
                         int pause_ms, double onset_dbfs);
/* BURSTS periods of the test signal; turn onsets found at ONSET_DBFS. 0 or -ENOMEM. */
int vb_cs_audio_tone(vb_cs_audio_t *a, int bursts, double onset_dbfs);
void vb_cs_audio_free(vb_cs_audio_t *a);

/* The 160 bytes of the call's frame K: the sequence repeats when LOOP is set, else
 * frames past its end are silence. */
const uint8_t *vb_cs_audio_frame(const vb_cs_audio_t *a, uint64_t k, int loop);
/* If a turn's speech starts inside frame K, returns its offset in the frame (0..159),
 * else -1. */
int vb_cs_audio_turn_in(const vb_cs_audio_t *a, uint64_t k, int loop);
/* Frames in one pass of the sequence. */
uint64_t vb_cs_audio_frames(const vb_cs_audio_t *a);
/* Frames of turn T's own audio (its last one padded with silence). */
uint64_t vb_cs_audio_turn_frames(const vb_cs_audio_t *a, size_t t);
/* Copies frame K of turn T (silence past its end) to OUT. */
void vb_cs_audio_turn_frame(const vb_cs_audio_t *a, size_t t, uint64_t k,
                            uint8_t out[VB_CS_FRAME]);

/* Converts a decoded WAV to 8 kHz mono PCM16; *OUT is malloc'd, *N its samples.
 * 0, -EINVAL or -ENOMEM. */
int vb_cs_audio_to_8k(const vb_cs_wav_t *w, int16_t **out, size_t *n);
/* Resamples IN (N samples at RATE) to 8 kHz with speexdsp, flushing the filter's delay;
 * *OUT is malloc'd, *OUTN its samples. 0, -EINVAL or -ENOMEM. */
int vb_cs_audio_resample(const int16_t *in, size_t n, unsigned rate, int16_t **out,
                         size_t *outn);
/* Fills N samples with the test multi-tone, peak at DBFS, with 5 ms fades. */
void vb_cs_audio_tone_fill(int16_t *pcm, size_t n, double dbfs);

#endif
