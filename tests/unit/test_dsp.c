/* Unit tests for worker/dsp and worker/halfband: exact frame sizes, silence stays silent,
 * a 1 kHz tone survives 8k -> 16k -> 8k, the phone band passes flat without images or
 * aliases, full-scale input saturates instead of wrapping, the VAD tells a speech-like
 * signal from background noise, reset gives a fresh state, and the echo canceller removes
 * a delayed echo of the agent's audio. Signals are synthesised with a fixed seed. */
#include <math.h>
#include <setjmp.h>
#include <stdarg.h>
#include <stddef.h>
#include <stdint.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#include <cmocka.h>

#include "common/g711.h"
#include "worker/dsp.h"
#include "worker/halfband.h"

#define PI 3.14159265358979323846

static uint32_t rng = 12345;

/* Uniform in [-1, 1). */
static double noise(void)
{
    rng = rng * 1664525u + 1013904223u;
    return (double)(rng >> 8) / (double)(1u << 23) - 1.0;
}

static int16_t clip16(double x)
{
    return (int16_t)(x > 32767 ? 32767 : x < -32768 ? -32768 : lrint(x));
}

/* Frame K (20 ms at 8 kHz) of a 1 kHz tone of amplitude AMP. */
static void tone8k(int k, double amp, int16_t out[160])
{
    for (int i = 0; i < 160; i++) {
        out[i] = clip16(amp * sin(2 * PI * 1000.0 * (k * 160 + i) / 8000.0));
    }
}

/* Frame K of a voiced, speech-like signal: a 6-harmonic buzz whose pitch glides between
 * 110 and 190 Hz, its loudness modulated at a syllable rate of 4 Hz. */
static void speech8k(int k, double amp, int16_t out[160])
{
    static double phase;
    for (int i = 0; i < 160; i++) {
        double t = (k * 160 + i) / 8000.0;
        double f0 = 150 + 40 * sin(2 * PI * 0.7 * t);
        phase += 2 * PI * f0 / 8000.0;
        double env = 0.55 + 0.45 * sin(2 * PI * 4.0 * t);
        double s = 0;
        for (int h = 1; h <= 6; h++) {
            s += sin(h * phase) / h;
        }
        out[i] = clip16(amp * env * s / 2.5);
    }
}

static void white8k(double amp, int16_t out[160])
{
    for (int i = 0; i < 160; i++) {
        out[i] = clip16(amp * noise());
    }
}

static double rms(const int16_t *x, size_t n)
{
    double e = 0;
    for (size_t i = 0; i < n; i++) {
        e += (double)x[i] * x[i];
    }
    return sqrt(e / (double)n);
}

static void test_frame_sizes(void **state)
{
    (void)state;
    vb_dsp_opts_t o = {1, 1, 1, 1};
    vb_dsp_t *d = vb_dsp_new(&o);
    assert_non_null(d);
    int16_t pcm[VB_DSP_FRAME + 8];
    uint8_t ulaw[VB_DSP_FRAME_8K + 8], in[VB_DSP_FRAME_8K];
    memset(in, 0x55, sizeof(in));
    for (int k = 0; k < 20; k++) {
        for (int i = 0; i < 8; i++) {
            pcm[VB_DSP_FRAME + i] = 0x1234;
            ulaw[VB_DSP_FRAME_8K + i] = 0xA5;
        }
        int voice = -1;
        assert_int_equal(vb_dsp_inbound(d, in, pcm, &voice), 0);
        assert_true(voice == 0 || voice == 1);
        assert_int_equal(vb_dsp_outbound(d, pcm, ulaw), 0);
        for (int i = 0; i < 8; i++) {
            assert_int_equal(pcm[VB_DSP_FRAME + i], 0x1234);
            assert_int_equal(ulaw[VB_DSP_FRAME_8K + i], 0xA5);
        }
    }
    vb_dsp_free(d);
    vb_dsp_free(NULL);
}

static void test_silence_stays_silent(void **state)
{
    (void)state;
    vb_dsp_t *d = vb_dsp_new(NULL); /* defaults: denoise and vad */
    assert_non_null(d);
    uint8_t in[160], out[160];
    memset(in, VB_ULAW_SILENCE, sizeof(in));
    int16_t pcm[320];
    for (int k = 0; k < 100; k++) {
        int voice = -1;
        vb_dsp_inbound(d, in, pcm, &voice);
        assert_int_equal(voice, 0);
        for (int i = 0; i < 320; i++) {
            assert_true(pcm[i] >= -4 && pcm[i] <= 4);
        }
        vb_dsp_outbound(d, pcm, out);
        for (int i = 0; i < 160; i++) {
            assert_true(vb_ulaw_to_pcm(out[i]) >= -8 && vb_ulaw_to_pcm(out[i]) <= 8);
        }
    }
    vb_dsp_free(d);
}

/* Sign changes in X: a 1 kHz tone has 2 per ms whatever the rate. */
static int crossings(const int16_t *x, size_t n)
{
    int c = 0;
    for (size_t i = 1; i < n; i++) {
        c += (x[i - 1] < 0) != (x[i] < 0);
    }
    return c;
}

static void test_tone_round_trip(void **state)
{
    (void)state;
    vb_dsp_opts_t o = {0, 0, 0, 0}; /* resampling and G.711 only */
    vb_dsp_t *d = vb_dsp_new(&o);
    assert_non_null(d);
    enum { FRAMES = 50 };
    static int16_t orig[FRAMES * 160], back[FRAMES * 160];
    int16_t pcm8[160], pcm16[320];
    uint8_t u[160], u2[160];
    for (int k = 0; k < FRAMES; k++) {
        int voice;
        tone8k(k, 8000, pcm8);
        memcpy(orig + k * 160, pcm8, sizeof(pcm8));
        vb_ulaw_encode(pcm8, 160, u);
        vb_dsp_inbound(d, u, pcm16, &voice);
        if (k >= 5) {
            assert_int_equal(voice, 1);
            int c = crossings(pcm16, 320);
            assert_true(c >= 38 && c <= 41);
            assert_true(fabs(rms(pcm16, 320) - 8000 / sqrt(2)) < 200);
        }
        vb_dsp_outbound(d, pcm16, u2);
        vb_ulaw_decode(u2, 160, back + k * 160);
    }
    /* The chain delays by the two resamplers' latency: find it, then compare. */
    int best_lag = -1;
    double best = 1e30;
    for (int lag = 0; lag < 80; lag++) {
        double e = 0;
        for (int i = 1000; i < FRAMES * 160 - 100; i++) {
            double diff = back[i + lag] - orig[i];
            e += diff * diff;
        }
        if (e < best) {
            best = e;
            best_lag = lag;
        }
    }
    double err_rms = sqrt(best / (FRAMES * 160 - 1100));
    double rel = err_rms / (8000 / sqrt(2));
    /* The tone repeats every 8 samples, so the lag found is the delay modulo 8. */
    print_message("tone round trip: lag %d samples, error %.2f%% RMS\n", best_lag, rel * 100);
    assert_true(best_lag >= 0 && best_lag < 8);
    assert_true(rel < 0.015);
    vb_dsp_free(d);
}

/* Amplitude of frequency F (Hz) in X (N samples at FS), by the Goertzel recurrence. */
static double tone_level(const int16_t *x, size_t n, double f, double fs)
{
    double c = 2 * cos(2 * PI * f / fs), s1 = 0, s2 = 0;
    for (size_t i = 0; i < n; i++) {
        double s0 = x[i] + c * s1 - s2;
        s2 = s1;
        s1 = s0;
    }
    return sqrt(s1 * s1 + s2 * s2 - c * s1 * s2) / ((double)n / 2);
}

static double db(double ratio)
{
    return 20 * log10(ratio + 1e-12);
}

/* Inbound, a tone of F Hz for 1 s: its level and its image (at 8000 - F) in the 16 kHz
 * output, relative to the input, in dB. */
static void inbound_response(double f, double *pass, double *image)
{
    vb_dsp_opts_t o = {0, 0, 0, 0};
    vb_dsp_t *d = vb_dsp_new(&o);
    static int16_t out[50 * 320];
    int16_t pcm8[160];
    uint8_t u[160];
    for (int k = 0; k < 50; k++) {
        for (int i = 0; i < 160; i++) {
            pcm8[i] = clip16(10000 * sin(2 * PI * f * (k * 160 + i) / 8000.0));
        }
        vb_ulaw_encode(pcm8, 160, u);
        int voice;
        vb_dsp_inbound(d, u, out + k * 320, &voice);
    }
    *pass = db(tone_level(out + 3200, 12800, f, 16000) / 10000);
    *image = db(tone_level(out + 3200, 12800, 8000 - f, 16000) / 10000);
    vb_dsp_free(d);
}

/* Outbound, a 16 kHz tone of F Hz for 1 s: its level at 8 kHz, in dB, at F (in band) or
 * at its alias 8000 - F (above 4 kHz). */
static double outbound_response(double f)
{
    vb_dsp_opts_t o = {0, 0, 0, 0};
    vb_dsp_t *d = vb_dsp_new(&o);
    static int16_t back[50 * 160];
    int16_t pcm16[320];
    uint8_t u[160];
    for (int k = 0; k < 50; k++) {
        for (int i = 0; i < 320; i++) {
            pcm16[i] = clip16(10000 * sin(2 * PI * f * (k * 320 + i) / 16000.0));
        }
        vb_dsp_outbound(d, pcm16, u);
        vb_ulaw_decode(u, 160, back + k * 160);
    }
    vb_dsp_free(d);
    return db(tone_level(back + 1600, 6400, f < 4000 ? f : 8000 - f, 8000) / 10000);
}

/* What the resampler must keep, for a phone line: the band up to 3.3 kHz flat
 * within 0.5 dB each way, and images and aliases at least 55 dB down, well under
 * G.711's own noise (about 38 dB below a full-scale tone). */
static void test_phone_band_response(void **state)
{
    (void)state;
    static const double in_band[] = {300, 1000, 2000, 3000, 3300};
    for (size_t i = 0; i < sizeof(in_band) / sizeof(in_band[0]); i++) {
        double pass, image, out = outbound_response(in_band[i]);
        inbound_response(in_band[i], &pass, &image);
        print_message("%4.0f Hz: in %.2f dB (image %.0f dB), out %.2f dB\n", in_band[i], pass,
                      image, out);
        assert_true(fabs(pass) < 0.5 && fabs(out) < 0.5);
        assert_true(image < -55);
    }
    static const double above[] = {4600, 5000, 6000, 7000};
    for (size_t i = 0; i < sizeof(above) / sizeof(above[0]); i++) {
        double alias = outbound_response(above[i]);
        print_message("%4.0f Hz at 16 kHz: alias %.0f dB\n", above[i], alias);
        assert_true(alias < -55);
    }
}

/* The half-band filter's worst case: a full-scale input whose signs match the taps'
 * drives the sum to its largest; the output must clip at full scale with the right sign,
 * never wrap round (the int32 sum has room: the taps' absolute sum bounds it). */
static int16_t full_scale_like(int16_t tap, int sign)
{
    return (int16_t)(tap == 0 ? 0 : (tap > 0) == (sign > 0) ? 32767 : -32767);
}

static void test_halfband_full_scale(void **state)
{
    (void)state;
    for (int sign = -1; sign <= 1; sign += 2) {
        vb_hb_up_t up;
        vb_hb_up_init(&up);
        int64_t bound = 0;
        int16_t x[VB_HB_MAX_IN] = {0}, out[2 * VB_HB_MAX_IN];
        for (int i = 0; i < VB_HB_DOT; i++) {
            bound += (int64_t)abs(up.t.taps[i]) * 32768;
            x[i] = full_scale_like(up.t.taps[i], sign);
        }
        assert_true(bound < INT32_MAX);
        vb_hb_up(&up, x, VB_HB_MAX_IN, out);
        /* The window of output 2m+1 is input m-31..m: the pattern lines up at m = 31. */
        assert_int_equal(out[2 * VB_HB_HIST + 1], sign > 0 ? INT16_MAX : INT16_MIN);

        vb_hb_down_t down;
        vb_hb_down_init(&down);
        int16_t z[2 * VB_HB_MAX_IN] = {0}, y[VB_HB_MAX_IN];
        bound = 32768 * (VB_HB_ONE / 2);
        for (int i = 0; i < VB_HB_DOT; i++) {
            bound += (int64_t)abs(down.t.taps[i]) * 32768;
            z[2 * i + 1] = full_scale_like(down.t.taps[i], sign);
        }
        for (int i = 0; i < VB_HB_MAX_IN; i++) {
            z[2 * i] = (int16_t)(sign * 32767);
        }
        assert_true(bound < INT32_MAX);
        vb_hb_down(&down, z, VB_HB_MAX_IN, y);
        int16_t peak = y[VB_HB_HIST];
        assert_true(sign > 0 ? peak > 32000 : peak < -32000);
    }
}

/* Fraction of frames flagged as voice over frames [FROM, TO) of background noise (about
 * -43 dBFS, above the level gate), with the speech-like signal on top when SPEECH. */
static void run_vad(vb_dsp_t *d, int from, int to, int speech, double *frac)
{
    int16_t pcm8[160], noise8[160], pcm16[320];
    uint8_t u[160];
    int n = 0;
    for (int k = from; k < to; k++) {
        int voice;
        white8k(300, noise8);
        if (speech) {
            speech8k(k, 9000, pcm8);
        } else {
            memset(pcm8, 0, sizeof(pcm8));
        }
        for (int i = 0; i < 160; i++) {
            pcm8[i] = clip16((double)pcm8[i] + noise8[i]);
        }
        vb_ulaw_encode(pcm8, 160, u);
        vb_dsp_inbound(d, u, pcm16, &voice);
        n += voice;
    }
    *frac = (double)n / (to - from);
}

static void test_vad(void **state)
{
    (void)state;
    vb_dsp_opts_t o = {1, 0, 1, 0};
    vb_dsp_t *d = vb_dsp_new(&o);
    assert_non_null(d);
    double f_settle, f_noise, f_speech, f_release, f_tail;
    run_vad(d, 0, 100, 0, &f_settle);    /* 2 s: the noise estimate settles */
    run_vad(d, 100, 150, 0, &f_noise);   /* 1 s of noise */
    run_vad(d, 150, 250, 1, &f_speech);  /* 2 s of speech over it */
    run_vad(d, 250, 275, 0, &f_release); /* the first 0.5 s after */
    run_vad(d, 275, 400, 0, &f_tail);
    print_message("vad: settling %.2f noise %.2f speech %.2f release %.2f tail %.2f\n",
                  f_settle, f_noise, f_speech, f_release, f_tail);
    assert_true(f_noise < 0.05);
    assert_true(f_speech > 0.9);
    assert_true(f_release < 0.75); /* lets go within ~0.35 s */
    assert_true(f_tail < 0.02);
    vb_dsp_free(d);

    /* A 1 kHz tone after digital silence counts as voice (level gate, the 6 dB over the
     * floor, and the speech probability). */
    d = vb_dsp_new(&o);
    int16_t pcm8[160], pcm16[320];
    uint8_t u[160];
    int voiced = 0, voice;
    memset(u, VB_ULAW_SILENCE, sizeof(u));
    for (int k = 0; k < 10; k++) {
        vb_dsp_inbound(d, u, pcm16, &voice);
        assert_int_equal(voice, 0);
    }
    for (int k = 0; k < 10; k++) {
        tone8k(k, 8000, pcm8);
        vb_ulaw_encode(pcm8, 160, u);
        vb_dsp_inbound(d, u, pcm16, &voice);
        voiced += voice;
    }
    assert_true(voiced >= 8);
    vb_dsp_free(d);
}

static void test_level_gate_without_vad(void **state)
{
    (void)state;
    vb_dsp_opts_t o = {0, 0, 0, 0};
    vb_dsp_t *d = vb_dsp_new(&o);
    int16_t pcm8[160], pcm16[320];
    uint8_t u[160];
    int voice;
    white8k(30, pcm8); /* about -64 dBFS */
    vb_ulaw_encode(pcm8, 160, u);
    vb_dsp_inbound(d, u, pcm16, &voice);
    assert_int_equal(voice, 0);
    white8k(1000, pcm8);
    vb_ulaw_encode(pcm8, 160, u);
    vb_dsp_inbound(d, u, pcm16, &voice);
    assert_int_equal(voice, 1);
    vb_dsp_free(d);
}

static void test_reset_is_fresh(void **state)
{
    (void)state;
    vb_dsp_opts_t o = {1, 1, 1, 0};
    vb_dsp_t *a = vb_dsp_new(&o), *b = vb_dsp_new(&o);
    int16_t pcm8[160], pa[320], pb[320];
    uint8_t u[160], ua[160], ub[160];
    int va, vb;
    for (int k = 0; k < 30; k++) { /* history in A only */
        speech8k(k, 5000, pcm8);
        vb_ulaw_encode(pcm8, 160, u);
        vb_dsp_inbound(a, u, pa, &va);
        vb_dsp_outbound(a, pa, ua);
    }
    vb_dsp_reset(a);
    for (int k = 0; k < 30; k++) {
        speech8k(k, 5000, pcm8);
        vb_ulaw_encode(pcm8, 160, u);
        vb_dsp_inbound(a, u, pa, &va);
        vb_dsp_inbound(b, u, pb, &vb);
        assert_memory_equal(pa, pb, sizeof(pa));
        assert_int_equal(va, vb);
        vb_dsp_outbound(a, pa, ua);
        vb_dsp_outbound(b, pb, ub);
        assert_memory_equal(ua, ub, sizeof(ua));
    }
    vb_dsp_free(a);
    vb_dsp_free(b);
}

/* The caller's line returns the agent's audio 40 ms later at half amplitude. */
static double echo_residual(int echo_cancel)
{
    vb_dsp_opts_t o = {0, 0, 0, echo_cancel};
    vb_dsp_t *d = vb_dsp_new(&o);
    enum { FRAMES = 250, DELAY = 2 };
    static uint8_t played[FRAMES][160];
    int16_t agent[320], pcm16[320], pcm8[160];
    uint8_t u[160];
    double e_in = 0, e_out = 0;
    rng = 777;
    for (int k = 0; k < FRAMES; k++) {
        for (int i = 0; i < 320; i++) {
            agent[i] = clip16(6000 * noise());
        }
        vb_dsp_outbound(d, agent, played[k]);
        for (int i = 0; i < 160; i++) {
            pcm8[i] = k >= DELAY ? (int16_t)(vb_ulaw_to_pcm(played[k - DELAY][i]) / 2) : 0;
        }
        vb_ulaw_encode(pcm8, 160, u);
        int voice;
        vb_dsp_inbound(d, u, pcm16, &voice);
        if (k >= FRAMES - 50) { /* the last second, once converged */
            e_in += rms(pcm8, 160) * rms(pcm8, 160);
            e_out += rms(pcm16, 320) * rms(pcm16, 320);
        }
    }
    vb_dsp_free(d);
    return 10 * log10(e_out / e_in);
}

static void test_echo_cancel(void **state)
{
    (void)state;
    double off = echo_residual(0), on = echo_residual(1);
    print_message("echo: %.1f dB without, %.1f dB with the canceller\n", off, on);
    assert_true(fabs(off) < 1.5);
    assert_true(on < -10);
}

int main(void)
{
    const struct CMUnitTest tests[] = {
        cmocka_unit_test(test_frame_sizes),
        cmocka_unit_test(test_silence_stays_silent),
        cmocka_unit_test(test_tone_round_trip),
        cmocka_unit_test(test_phone_band_response),
        cmocka_unit_test(test_halfband_full_scale),
        cmocka_unit_test(test_vad),
        cmocka_unit_test(test_level_gate_without_vad),
        cmocka_unit_test(test_reset_is_fresh),
        cmocka_unit_test(test_echo_cancel),
    };
    return cmocka_run_group_tests(tests, NULL, NULL);
}
