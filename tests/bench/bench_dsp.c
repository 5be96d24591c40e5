/* Benchmark of the media worker's per-frame work: microseconds per 20 ms frame for each
 * stage of the inbound and outbound audio path, and for parsing one Media Streams
 * message. Built with the tree, run by hand: tests/bench/bench_dsp [frames per round]. The
 * stages call speexdsp the way worker/dsp.c does; the totals call vb_dsp_* themselves. */
#include <math.h>
#include <stdint.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <time.h>

#include <speex/speex_echo.h>
#include <speex/speex_preprocess.h>
#include <speex/speex_resampler.h>

#include "common/base64.h"
#include "common/g711.h"
#include "worker/dsp.h"
#include "worker/halfband.h"
#include "worker/mstream.h"

#define SIG_FRAMES 500 /* 10 s of input, replayed */

static uint8_t ulaw_in[SIG_FRAMES][160];
static int16_t pcm8_in[SIG_FRAMES][160];
static int16_t pcm16_in[SIG_FRAMES][320];
static volatile int sink;

static double now_us(void)
{
    struct timespec ts;
    clock_gettime(CLOCK_MONOTONIC, &ts);
    return ts.tv_sec * 1e6 + ts.tv_nsec / 1e3;
}

/* Speech-like buzz with syllabic modulation over low noise, so no stage sees zeros. */
static void make_signal(void)
{
    double phase = 0;
    uint32_t r = 1;
    for (int k = 0; k < SIG_FRAMES; k++) {
        for (int i = 0; i < 160; i++) {
            double t = (k * 160 + i) / 8000.0;
            phase += 2 * M_PI * (150 + 40 * sin(2 * M_PI * 0.7 * t)) / 8000.0;
            double s = 0;
            for (int h = 1; h <= 6; h++) {
                s += sin(h * phase) / h;
            }
            r = r * 1664525u + 1013904223u;
            double n = ((double)(r >> 8) / (1 << 23) - 1.0) * 200;
            pcm8_in[k][i] = (int16_t)(4000 * (0.55 + 0.45 * sin(2 * M_PI * 3 * t)) * s + n);
        }
        vb_ulaw_encode(pcm8_in[k], 160, ulaw_in[k]);
    }
    vb_hb_up_t up;
    vb_hb_up_init(&up);
    for (int k = 0; k < SIG_FRAMES; k++) {
        vb_hb_up(&up, pcm8_in[k], 160, pcm16_in[k]);
    }
}

#define ROUNDS 7

static void report(const char *stage, const double *us, int frames)
{
    double best = us[0], sum = 0;
    for (int r = 0; r < ROUNDS; r++) {
        best = us[r] < best ? us[r] : best;
        sum += us[r];
    }
    printf("  %-46s %8.2f %8.2f\n", stage, best / frames, sum / ROUNDS / frames);
}

/* Runs the body (the last argument, which may use k, the frame index) FRAMES times in each of
 * ROUNDS rounds and prints the best and the mean round in microseconds per frame: the best is
 * the figure least disturbed by other load on the machine. */
#define TIMED(label, frames, ...)                                                              \
    do {                                                                                       \
        double us_[ROUNDS];                                                                    \
        for (int r_ = 0; r_ < ROUNDS; r_++) {                                                  \
            double t0_ = now_us();                                                             \
            for (int k = 0; k < (frames); k++) {                                               \
                __VA_ARGS__;                                                                   \
            }                                                                                  \
            us_[r_] = now_us() - t0_;                                                          \
        }                                                                                      \
        report((label), us_, (frames));                                                        \
    } while (0)

static void bench_codec(int frames)
{
    int16_t pcm[160];
    uint8_t u[160];
    TIMED("mu-law decode (160 bytes)", frames, {
        vb_ulaw_decode(ulaw_in[k % SIG_FRAMES], 160, pcm);
        sink += pcm[k % 160];
    });
    TIMED("mu-law encode (160 samples)", frames, {
        vb_ulaw_encode(pcm8_in[k % SIG_FRAMES], 160, u);
        sink += u[k % 160];
    });
}

/* What worker/dsp.c uses. */
static void bench_halfband(int frames)
{
    static vb_hb_up_t up;
    static vb_hb_down_t down;
    vb_hb_up_init(&up);
    vb_hb_down_init(&down);
    int16_t out16[320], out8[160];
    TIMED("resample 8k -> 16k (half-band)", frames, {
        vb_hb_up(&up, pcm8_in[k % SIG_FRAMES], 160, out16);
        sink += out16[k % 320];
    });
    TIMED("resample 16k -> 8k (half-band)", frames, {
        vb_hb_down(&down, pcm16_in[k % SIG_FRAMES], 160, out8);
        sink += out8[k % 160];
    });
}

/* speexdsp's resampler, for comparison (what the half-band filter replaced). */
static void bench_resample(int frames, int quality)
{
    char label[64];
    int err = 0;
    SpeexResamplerState *up = speex_resampler_init(1, 8000, 16000, quality, &err);
    SpeexResamplerState *down = speex_resampler_init(1, 16000, 8000, quality, &err);
    int16_t out16[320], out8[160];
    snprintf(label, sizeof(label), "resample 8k -> 16k (quality %d)", quality);
    TIMED(label, frames, {
        spx_uint32_t il = 160, ol = 320;
        speex_resampler_process_int(up, 0, pcm8_in[k % SIG_FRAMES], &il, out16, &ol);
        sink += out16[k % 320];
    });
    snprintf(label, sizeof(label), "resample 16k -> 8k (quality %d)", quality);
    TIMED(label, frames, {
        spx_uint32_t il = 320, ol = 160;
        speex_resampler_process_int(down, 0, pcm16_in[k % SIG_FRAMES], &il, out8, &ol);
        sink += out8[k % 160];
    });
    speex_resampler_destroy(up);
    speex_resampler_destroy(down);
}

/* The preprocessor as worker/dsp.c runs it: the speech probability is read, speexdsp's
 * own VAD flag is left off. */
static void bench_preprocess(int frames, int rate, int denoise, int agc)
{
    int n = rate / 50;
    SpeexPreprocessState *pp = speex_preprocess_state_init(n, rate);
    speex_preprocess_ctl(pp, SPEEX_PREPROCESS_SET_DENOISE, &denoise);
    speex_preprocess_ctl(pp, SPEEX_PREPROCESS_SET_AGC, &agc);
    int16_t buf[320];
    char label[64];
    snprintf(label, sizeof(label), "preprocess %d Hz denoise=%d agc=%d", rate, denoise, agc);
    TIMED(label, frames, {
        memcpy(buf, rate == 16000 ? pcm16_in[k % SIG_FRAMES] : pcm8_in[k % SIG_FRAMES],
               (size_t)n * 2);
        speex_preprocess_run(pp, buf);
        spx_int32_t prob;
        speex_preprocess_ctl(pp, SPEEX_PREPROCESS_GET_PROB, &prob);
        sink += prob;
    });
    speex_preprocess_state_destroy(pp);
}

static void bench_echo(int frames, int tail_ms)
{
    SpeexEchoState *st = speex_echo_state_init(320, 16 * tail_ms);
    int rate = 16000;
    speex_echo_ctl(st, SPEEX_ECHO_SET_SAMPLING_RATE, &rate);
    int16_t out[320];
    char label[64];
    snprintf(label, sizeof(label), "echo cancel 16 kHz, %d ms tail", tail_ms);
    TIMED(label, frames, {
        speex_echo_cancellation(st, pcm16_in[k % SIG_FRAMES], pcm16_in[(k + 7) % SIG_FRAMES],
                                out);
        sink += out[k % 320];
    });
    speex_echo_state_destroy(st);
}

static void bench_base64(int frames)
{
    char b64[VB_BASE64_ENCLEN(160) + 1];
    uint8_t back[160];
    size_t n;
    TIMED("base64 encode (160 bytes)", frames,
          { sink += (int)vb_base64_encode(ulaw_in[k % SIG_FRAMES], 160, b64); });
    vb_base64_encode(ulaw_in[0], 160, b64);
    TIMED("base64 decode (216 chars)", frames,
          { sink += vb_base64_decode(b64, strlen(b64), back, sizeof(back), &n); });
}

static void bench_json(int frames)
{
    static char msgs[SIG_FRAMES][512];
    static size_t lens[SIG_FRAMES];
    static vb_ms_msg_t m;
    for (int k = 0; k < SIG_FRAMES; k++) {
        lens[k] = vb_ms_build_media_in(msgs[k], sizeof(msgs[k]), (uint32_t)k + 2,
                                       "MZ18ad3ab5a668481ce02b83e7395059f0", (uint32_t)k + 1,
                                       (uint32_t)k * 20, ulaw_in[k], 160);
    }
    TIMED("media message parse: vb_ms_parse (incl. b64)", frames,
          { sink += vb_ms_parse(msgs[k % SIG_FRAMES], lens[k % SIG_FRAMES], &m); });
    TIMED("media message parse: jansson (incl. b64)", frames,
          { sink += vb_ms_parse_jansson(msgs[k % SIG_FRAMES], lens[k % SIG_FRAMES], &m); });
    char out[VB_MS_MEDIA_MSG_CAP(160)];
    TIMED("media message build (incl. b64)", frames, {
        sink += (int)vb_ms_build_media(out, sizeof(out), "MZ18ad3ab5a668481ce02b83e7395059f0",
                                       ulaw_in[k % SIG_FRAMES], 160);
    });
}

static void bench_dsp_total(int frames, const vb_dsp_opts_t *o, const char *label)
{
    vb_dsp_t *d = vb_dsp_new(o);
    int16_t pcm[320];
    uint8_t u[160];
    int voice;
    TIMED(label, frames, {
        vb_dsp_outbound(d, pcm16_in[(k + 3) % SIG_FRAMES], u);
        vb_dsp_inbound(d, ulaw_in[k % SIG_FRAMES], pcm, &voice);
        sink += voice;
    });
    vb_dsp_free(d);
}

int main(int argc, char **argv)
{
    int frames = argc > 1 ? atoi(argv[1]) : 3000;
    if (frames <= 0) {
        fprintf(stderr, "usage: %s [frames]\n", argv[0]);
        return 2;
    }
    make_signal();
    printf("bench_dsp: us per 20 ms frame; best and mean of %d rounds of %d frames\n", ROUNDS,
           frames);
    printf("stages:%48s %8s\n", "best", "mean");
    bench_codec(frames);
    bench_halfband(frames);
    bench_resample(frames, 2);
    bench_resample(frames, 3);
    bench_resample(frames, 4);
    bench_preprocess(frames, 16000, 1, 0);
    bench_preprocess(frames, 16000, 1, 1);
    bench_preprocess(frames, 16000, 0, 0);
    bench_preprocess(frames, 8000, 1, 0);
    bench_echo(frames, VB_DSP_ECHO_TAIL_MS);
    bench_echo(frames, 256);
    bench_base64(frames);
    bench_json(frames);
    printf("a whole frame both ways, vb_dsp_inbound + vb_dsp_outbound:\n");
    bench_dsp_total(frames, &(vb_dsp_opts_t){0, 0, 0, 0}, "resample + G.711 only");
    bench_dsp_total(frames, &(vb_dsp_opts_t){1, 0, 1, 0}, "denoise + vad (the default)");
    bench_dsp_total(frames, &(vb_dsp_opts_t){1, 1, 1, 0}, "denoise + agc + vad");
    bench_dsp_total(frames, &(vb_dsp_opts_t){1, 1, 1, 1}, "denoise + agc + vad + echo cancel");
    return sink == 42 ? 1 : 0;
}
