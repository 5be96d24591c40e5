/* Per-call audio processing in the media worker: Twilio's 8 kHz mu-law <-> the internal
 * 16 kHz PCM16 frames (20 ms, 320 samples), with a half-band resampler (worker/halfband.h)
 * and speexdsp preprocessing (denoise, AGC, VAD, optional echo cancellation against the
 * agent's own audio). One
 * vb_dsp_t per call, made at call start; the per-frame calls allocate nothing. */
#ifndef VB_WORKER_DSP_H
#define VB_WORKER_DSP_H

#include <stdint.h>

#define VB_DSP_RATE 16000
#define VB_DSP_FRAME 320    /* samples per 20 ms at 16 kHz */
#define VB_DSP_FRAME_8K 160 /* mu-law bytes per 20 ms at 8 kHz */

/* Echo canceller tail: how far back the agent's audio may echo. speex_echo costs about
 * 2.5 times the rest of the frame's DSP (bench_dsp), hence off by default. */
#define VB_DSP_ECHO_TAIL_MS 128

typedef struct vb_dsp vb_dsp_t;

/* Non-zero enables each stage. denoise, agc and vad run in one speexdsp preprocessor;
 * with all three off (and no echo_cancel) it is skipped. echo_cancel runs speex_echo
 * against the frames given to vb_dsp_outbound, oldest first, one per inbound frame: it
 * only helps when the echo comes back within VB_DSP_ECHO_TAIL_MS of that alignment. */
typedef struct {
    int denoise, agc, vad, echo_cancel;
} vb_dsp_opts_t;

/* NULL opts: denoise and vad on, agc and echo_cancel off. NULL + ENOMEM on failure. */
vb_dsp_t *vb_dsp_new(const vb_dsp_opts_t *opts);
void vb_dsp_free(vb_dsp_t *d);

/* 160 mu-law bytes from the caller -> 320 samples at 16 kHz. *VOICE is 1 when the frame
 * holds speech: with opts.vad, speexdsp's speech probability with hysteresis (on at 70 %
 * and 6 dB over the tracked noise floor, off below 65 %, which lets go ~0.3 s after
 * speech), gated by a minimum level (-50 dBFS RMS) so that near-silence never counts;
 * without opts.vad, the level gate alone. Returns 0. */
int vb_dsp_inbound(vb_dsp_t *d, const uint8_t ulaw[160], int16_t pcm16k[320], int *voice);

/* 320 samples of agent audio at 16 kHz -> 160 mu-law bytes. Returns 0. The frame is also
 * kept as the echo canceller's reference when that is on. */
int vb_dsp_outbound(vb_dsp_t *d, const int16_t pcm16k[320], uint8_t ulaw[160]);

/* Forget all history (resampler memory, noise estimate, echo reference) as for a new
 * call on the same worker. Not for the 20 ms path: it rebuilds the preprocessor. */
void vb_dsp_reset(vb_dsp_t *d);

#endif
