/* Per-call DSP: see dsp.h. Runs in the media worker on every 20 ms frame.
 *
 * Inbound:  mu-law 160 -> PCM 8 kHz -> [echo cancel] -> [preprocess] -> resample x2 -> 320.
 * Outbound: 320 -> resample /2 -> mu-law 160, keeping the 8 kHz frame as echo reference.
 * Echo cancellation and preprocessing run at the line's own 8 kHz: the phone band is
 * empty above 4 kHz, so doing them after upsampling spends half the work (measured
 * 25 -> 18 us a frame, and about twice that with many calls sharing the caches) on
 * nothing.
 * The resampling is our own half-band filter, not speexdsp's (why: worker/halfband.h). */
#include "worker/dsp.h"

#include <errno.h>
#include <stdlib.h>
#include <string.h>

#include <speex/speex_echo.h>
#include <speex/speex_preprocess.h>

#include "common/g711.h"
#include "worker/halfband.h"

#define REF_FRAMES 16 /* echo reference frames kept: 320 ms of agent audio */
/* The level gate on voice: -50 dBFS RMS over a frame, as a sum of squares. */
#define GATE_RMS 104
#define GATE_ENERGY ((int64_t)GATE_RMS * GATE_RMS * VB_DSP_FRAME_8K)
/* Voice decision on speexdsp's speech probability (percent), with hysteresis. speexdsp's
 * own VAD (SPEEX_PREPROCESS_SET_VAD) uses 35/20, but on steady noise the probability
 * settles at 30-45 %, so it would never let go; it also prints a warning on stderr for
 * every call set up. Speech-like input reads 90-99 %. */
#define VAD_PROB_START 70
#define VAD_PROB_CONTINUE 65
/* The probability is also high while the noise estimate settles (the first ~2 s), so
 * speech must also start 6 dB above a tracked noise floor: the floor follows a quieter
 * frame at once and rises by 3 % of energy (0.13 dB) a frame otherwise. */
#define VAD_FLOOR_RATIO 4.0f
#define VAD_FLOOR_RISE 1.03f

struct vb_dsp {
    vb_dsp_opts_t opts;
    vb_hb_up_t up;
    vb_hb_down_t down;
    SpeexPreprocessState *pp;
    SpeexEchoState *echo;
    int16_t ref[REF_FRAMES][VB_DSP_FRAME_8K];
    unsigned ref_head, ref_count;
    int was_speech;
    float floor; /* energy of the background, per frame; 0 before the first frame */
};

static int pp_init(vb_dsp_t *d)
{
    const vb_dsp_opts_t *o = &d->opts;
    if (!o->denoise && !o->agc && !o->vad && !o->echo_cancel) {
        d->pp = NULL;
        return 0;
    }
    d->pp = speex_preprocess_state_init(VB_DSP_FRAME_8K, 8000);
    if (d->pp == NULL) {
        return -ENOMEM;
    }
    /* The speech probability that vb_dsp_inbound reads is computed whatever the flags. */
    spx_int32_t denoise = o->denoise != 0, agc = o->agc != 0;
    speex_preprocess_ctl(d->pp, SPEEX_PREPROCESS_SET_DENOISE, &denoise);
    speex_preprocess_ctl(d->pp, SPEEX_PREPROCESS_SET_AGC, &agc);
    if (d->echo != NULL) {
        speex_preprocess_ctl(d->pp, SPEEX_PREPROCESS_SET_ECHO_STATE, d->echo);
    }
    return 0;
}

static int echo_init(vb_dsp_t *d)
{
    if (!d->opts.echo_cancel) {
        return 0;
    }
    d->echo = speex_echo_state_init(VB_DSP_FRAME_8K, 8 * VB_DSP_ECHO_TAIL_MS);
    if (d->echo == NULL) {
        return -ENOMEM;
    }
    int rate = 8000;
    speex_echo_ctl(d->echo, SPEEX_ECHO_SET_SAMPLING_RATE, &rate);
    return 0;
}

vb_dsp_t *vb_dsp_new(const vb_dsp_opts_t *opts)
{
    static const vb_dsp_opts_t defaults = {.denoise = 1, .agc = 0, .vad = 1, .echo_cancel = 0};
    vb_dsp_t *d = calloc(1, sizeof(*d));
    if (d == NULL) {
        errno = ENOMEM;
        return NULL;
    }
    d->opts = opts ? *opts : defaults;
    vb_hb_up_init(&d->up);
    vb_hb_down_init(&d->down);
    if (echo_init(d) < 0 || pp_init(d) < 0) {
        vb_dsp_free(d);
        errno = ENOMEM;
        return NULL;
    }
    return d;
}

void vb_dsp_free(vb_dsp_t *d)
{
    if (d == NULL) {
        return;
    }
    if (d->pp != NULL) {
        speex_preprocess_state_destroy(d->pp);
    }
    if (d->echo != NULL) {
        speex_echo_state_destroy(d->echo);
    }
    free(d);
}

void vb_dsp_reset(vb_dsp_t *d)
{
    vb_hb_up_init(&d->up);
    vb_hb_down_init(&d->down);
    d->ref_head = d->ref_count = 0;
    d->was_speech = 0;
    d->floor = 0;
    if (d->echo != NULL) {
        speex_echo_state_reset(d->echo);
    }
    if (d->pp != NULL) {
        speex_preprocess_state_destroy(d->pp);
        d->pp = NULL;
        if (pp_init(d) < 0) {
            abort(); /* allocation failure off the audio path */
        }
    }
}

static int64_t frame_energy(const int16_t *x, size_t n)
{
    int64_t e = 0;
    for (size_t i = 0; i < n; i++) {
        e += (int32_t)x[i] * x[i];
    }
    return e;
}

/* The oldest agent frame not yet used as echo reference, or silence. */
static const int16_t *ref_pop(vb_dsp_t *d)
{
    static const int16_t silence[VB_DSP_FRAME_8K];
    if (d->ref_count == 0) {
        return silence;
    }
    const int16_t *f = d->ref[d->ref_head];
    d->ref_head = (d->ref_head + 1) % REF_FRAMES;
    d->ref_count--;
    return f;
}

static void ref_push(vb_dsp_t *d, const int16_t *frame)
{
    if (d->ref_count == REF_FRAMES) { /* the caller side stalled: drop the oldest */
        d->ref_head = (d->ref_head + 1) % REF_FRAMES;
        d->ref_count--;
    }
    memcpy(d->ref[(d->ref_head + d->ref_count) % REF_FRAMES], frame, sizeof(d->ref[0]));
    d->ref_count++;
}

/* Hysteresis on the preprocessor's speech probability of the frame just run; a start
 * also needs ENERGY well above the noise floor. */
static int speech_decision(vb_dsp_t *d, float energy)
{
    spx_int32_t prob = 0;
    speex_preprocess_ctl(d->pp, SPEEX_PREPROCESS_GET_PROB, &prob);
    if (d->was_speech) {
        d->was_speech = prob >= VAD_PROB_CONTINUE;
    } else {
        d->was_speech =
            prob >= VAD_PROB_START && d->floor > 0 && energy > VAD_FLOOR_RATIO * d->floor;
    }
    return d->was_speech;
}

static void floor_update(vb_dsp_t *d, float energy)
{
    if (d->floor == 0 || energy < d->floor) {
        d->floor = energy;
    } else {
        d->floor *= VAD_FLOOR_RISE;
    }
    if (d->floor < 1.0f) {
        d->floor = 1.0f; /* digital silence: keep it rising from somewhere */
    }
}

int vb_dsp_inbound(vb_dsp_t *d, const uint8_t ulaw[160], int16_t pcm16k[320], int *voice)
{
    int16_t pcm8k[VB_DSP_FRAME_8K];
    vb_ulaw_decode(ulaw, VB_DSP_FRAME_8K, pcm8k);
    if (d->echo != NULL) {
        int16_t clean[VB_DSP_FRAME_8K];
        speex_echo_cancellation(d->echo, pcm8k, ref_pop(d), clean);
        memcpy(pcm8k, clean, sizeof(clean));
    }
    /* The gate looks at the signal before denoise and AGC, which would move it. */
    int64_t energy = frame_energy(pcm8k, VB_DSP_FRAME_8K);
    if (d->pp != NULL) {
        speex_preprocess_run(d->pp, pcm8k);
    }
    vb_hb_up(&d->up, pcm8k, VB_DSP_FRAME_8K, pcm16k);
    int speech = d->opts.vad ? speech_decision(d, (float)energy) : 1;
    floor_update(d, (float)energy);
    *voice = energy >= GATE_ENERGY && speech;
    return 0;
}

int vb_dsp_outbound(vb_dsp_t *d, const int16_t pcm16k[320], uint8_t ulaw[160])
{
    int16_t pcm8k[VB_DSP_FRAME_8K];
    vb_hb_down(&d->down, pcm16k, VB_DSP_FRAME_8K, pcm8k);
    if (d->echo != NULL) {
        ref_push(d, pcm8k);
    }
    vb_ulaw_encode(pcm8k, VB_DSP_FRAME_8K, ulaw);
    return 0;
}
