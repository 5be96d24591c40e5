/* voxbridge-callsim: caller audio sequence (see audio.h). */
#include "callsim/audio.h"

#include <errno.h>
#include <math.h>
#include <speex/speex_resampler.h>
#include <stdlib.h>
#include <string.h>

#include "callsim/playout.h"
#include "callsim/stats.h"
#include "common/g711.h"

#define FADE_MS 5

static int16_t sample_at(const vb_cs_wav_t *w, size_t i, unsigned ch)
{
    if (w->format == VB_CS_WAV_ULAW) {
        return vb_ulaw_to_pcm(w->data[i * w->channels + ch]);
    }
    const uint8_t *p = w->data + 2 * (i * w->channels + ch);
    return (int16_t)(uint16_t)(p[0] | p[1] << 8);
}

/* Mono PCM16 at the file's own rate. */
static int16_t *mixdown(const vb_cs_wav_t *w, size_t *n)
{
    size_t frames = w->len / ((size_t)w->channels * (w->bits / 8));
    int16_t *pcm = malloc((frames ? frames : 1) * sizeof(*pcm));
    if (pcm == NULL) {
        return NULL;
    }
    for (size_t i = 0; i < frames; i++) {
        long sum = 0;
        for (unsigned c = 0; c < w->channels; c++) {
            sum += sample_at(w, i, c);
        }
        pcm[i] = (int16_t)(sum / (long)w->channels);
    }
    *n = frames;
    return pcm;
}

int vb_cs_audio_resample(const int16_t *in, size_t n, unsigned rate, int16_t **out,
                         size_t *outn)
{
    int err = 0;
    SpeexResamplerState *st = speex_resampler_init(1, rate, VB_CS_RATE, 5, &err);
    if (st == NULL) {
        return -EINVAL;
    }
    speex_resampler_skip_zeros(st);
    size_t pad = (size_t)speex_resampler_get_input_latency(st);
    size_t cap = (size_t)((double)(n + pad) * VB_CS_RATE / rate) + 64;
    int16_t *buf = malloc(cap * sizeof(*buf));
    int16_t *padded = calloc(n + pad + 1, sizeof(*padded));
    if (buf == NULL || padded == NULL) {
        free(buf);
        free(padded);
        speex_resampler_destroy(st);
        return -ENOMEM;
    }
    memcpy(padded, in, n * sizeof(*in));
    size_t used = 0, made = 0;
    while (used < n + pad && made < cap) {
        spx_uint32_t il = (spx_uint32_t)(n + pad - used), ol = (spx_uint32_t)(cap - made);
        speex_resampler_process_int(st, 0, padded + used, &il, buf + made, &ol);
        if (il == 0 && ol == 0) {
            break;
        }
        used += il;
        made += ol;
    }
    free(padded);
    speex_resampler_destroy(st);
    *out = buf;
    *outn = made;
    return 0;
}

int vb_cs_audio_to_8k(const vb_cs_wav_t *w, int16_t **out, size_t *n)
{
    size_t frames;
    int16_t *pcm = mixdown(w, &frames);
    if (pcm == NULL) {
        return -ENOMEM;
    }
    if (frames == 0) {
        free(pcm);
        return -EINVAL;
    }
    if (w->rate == VB_CS_RATE) {
        *out = pcm;
        *n = frames;
        return 0;
    }
    int rc = vb_cs_audio_resample(pcm, frames, w->rate, out, n);
    free(pcm);
    return rc;
}

void vb_cs_audio_tone_fill(int16_t *pcm, size_t n, double dbfs)
{
    static const double freqs[] = {350, 620, 1100, 1800, 2700};
    const int k = (int)(sizeof(freqs) / sizeof(freqs[0]));
    const size_t fade = VB_CS_RATE * FADE_MS / 1000;
    double peak = 0;
    /* Schroeder phases keep the crest factor low; normalise to the wanted peak. */
    for (int pass = 0; pass < 2; pass++) {
        double gain = pass == 0 ? 1.0 : pow(10.0, dbfs / 20.0) * 32767.0 / peak;
        for (size_t i = 0; i < n; i++) {
            double s = 0;
            for (int j = 0; j < k; j++) {
                s += cos(2 * M_PI * freqs[j] * (double)i / VB_CS_RATE - M_PI * j * j / k);
            }
            if (pass == 0) {
                peak = fabs(s) > peak ? fabs(s) : peak;
                continue;
            }
            double env = 1.0;
            size_t edge = i < n - 1 - i ? i : n - 1 - i;
            if (edge < fade) {
                env = 0.5 - 0.5 * cos(M_PI * (double)edge / (double)fade);
            }
            pcm[i] = (int16_t)lrint(s * gain * env);
        }
    }
}

static int audio_alloc(vb_cs_audio_t *a, size_t samples, size_t turns)
{
    size_t nt = turns ? turns : 1;
    memset(a, 0, sizeof(*a));
    a->len = (samples + VB_CS_FRAME - 1) / VB_CS_FRAME * VB_CS_FRAME;
    a->ulaw = malloc(a->len ? a->len : 1);
    a->onsets = malloc(nt * sizeof(*a->onsets));
    a->starts = malloc(nt * sizeof(*a->starts));
    a->lens = malloc(nt * sizeof(*a->lens));
    a->ends = malloc(nt * sizeof(*a->ends));
    if (a->ulaw == NULL || a->onsets == NULL || a->starts == NULL || a->lens == NULL ||
        a->ends == NULL) {
        vb_cs_audio_free(a);
        return -ENOMEM;
    }
    memset(a->ulaw, VB_ULAW_SILENCE, a->len);
    return 0;
}

/* Where speech starts in a turn: its first onset, or its start if it never gets loud. */
static size_t first_onset(const int16_t *pcm, size_t n, double onset_dbfs)
{
    vb_cs_onset_t o;
    int64_t at = 0;
    vb_cs_onset_init(&o, onset_dbfs, 0);
    for (size_t off = 0; off < n; off += VB_CS_FRAME) {
        size_t k = n - off < VB_CS_FRAME ? n - off : VB_CS_FRAME;
        if (vb_cs_onset_feed(&o, pcm + off, k, &at, 1) > 0) {
            return (size_t)at;
        }
    }
    return 0;
}

/* Where speech ends in a turn: just past its last window at the onset level (5 ms windows
 * from the start), or its end if it never gets that loud. */
static size_t last_sound(const int16_t *pcm, size_t n, double onset_dbfs)
{
    const double on = 32768.0 * 32768.0 * pow(10.0, onset_dbfs / 10.0) * VB_CS_ONSET_WIN;
    size_t end = n;
    for (size_t off = 0; off < n; off += VB_CS_ONSET_WIN) {
        size_t k = n - off < VB_CS_ONSET_WIN ? n - off : VB_CS_ONSET_WIN;
        double acc = 0;
        for (size_t i = 0; i < k; i++) {
            acc += (double)pcm[off + i] * pcm[off + i];
        }
        if (acc >= on) {
            end = off + k;
        }
    }
    return end;
}

/* Records turn T: its audio of LEN samples at sequence offset OFF. */
static void add_turn(vb_cs_audio_t *a, const int16_t *pcm, size_t len, size_t off,
                     double onset_dbfs)
{
    size_t t = a->nturns++;
    a->starts[t] = off;
    a->lens[t] = len;
    a->onsets[t] = off + first_onset(pcm, len, onset_dbfs);
    a->ends[t] = off + last_sound(pcm, len, onset_dbfs);
    if (a->ends[t] < a->onsets[t]) {
        a->ends[t] = a->onsets[t];
    }
}

int vb_cs_audio_tone(vb_cs_audio_t *a, int bursts, double onset_dbfs)
{
    const size_t period = VB_CS_RATE * VB_CS_TONE_PERIOD_MS / 1000;
    const size_t burst = VB_CS_RATE * VB_CS_TONE_BURST_MS / 1000;
    int16_t tone[VB_CS_RATE * VB_CS_TONE_BURST_MS / 1000];
    if (bursts < 1) {
        bursts = 1;
    }
    int rc = audio_alloc(a, period * (size_t)bursts, (size_t)bursts);
    if (rc < 0) {
        return rc;
    }
    vb_cs_audio_tone_fill(tone, burst, VB_CS_TONE_DBFS);
    /* Found the way the agent's onsets are, so that the fade-in biases neither side. */
    for (int b = 0; b < bursts; b++) {
        vb_ulaw_encode(tone, burst, a->ulaw + (size_t)b * period);
        add_turn(a, tone, burst, (size_t)b * period, onset_dbfs);
    }
    return 0;
}

int vb_cs_audio_from_pcm(vb_cs_audio_t *a, int16_t *const *pcm, const size_t *len, size_t n,
                         int pause_ms, double onset_dbfs)
{
    size_t pause = (size_t)(pause_ms > 0 ? pause_ms : 0) * VB_CS_RATE / 1000, total = 0;
    for (size_t i = 0; i < n; i++) {
        if (len[i] == 0) {
            return -EINVAL;
        }
        total += len[i] + pause;
    }
    int rc = audio_alloc(a, total, n);
    for (size_t i = 0, off = 0; rc == 0 && i < n; i++) {
        vb_ulaw_encode(pcm[i], len[i], a->ulaw + off);
        add_turn(a, pcm[i], len[i], off, onset_dbfs);
        off += len[i] + pause;
    }
    return rc;
}

int vb_cs_audio_from_wavs(vb_cs_audio_t *a, const vb_cs_wav_t *wavs, size_t n, int pause_ms,
                          double onset_dbfs)
{
    int16_t **pcm = calloc(n ? n : 1, sizeof(*pcm));
    size_t *len = calloc(n ? n : 1, sizeof(*len));
    int rc = (pcm == NULL || len == NULL) ? -ENOMEM : 0;
    for (size_t i = 0; rc == 0 && i < n; i++) {
        rc = vb_cs_audio_to_8k(&wavs[i], &pcm[i], &len[i]);
    }
    if (rc == 0) {
        rc = vb_cs_audio_from_pcm(a, pcm, len, n, pause_ms, onset_dbfs);
    }
    for (size_t i = 0; pcm != NULL && i < n; i++) {
        free(pcm[i]);
    }
    free(pcm);
    free(len);
    return rc;
}

void vb_cs_audio_free(vb_cs_audio_t *a)
{
    free(a->ulaw);
    free(a->onsets);
    free(a->starts);
    free(a->lens);
    free(a->ends);
    memset(a, 0, sizeof(*a));
}

uint64_t vb_cs_audio_frames(const vb_cs_audio_t *a)
{
    return a->len / VB_CS_FRAME;
}

const uint8_t *vb_cs_audio_frame(const vb_cs_audio_t *a, uint64_t k, int loop)
{
    static uint8_t silence[VB_CS_FRAME];
    uint64_t frames = vb_cs_audio_frames(a);
    if (frames > 0 && (loop || k < frames)) {
        return a->ulaw + (k % frames) * VB_CS_FRAME;
    }
    if (silence[0] != VB_ULAW_SILENCE) {
        memset(silence, VB_ULAW_SILENCE, sizeof(silence));
    }
    return silence;
}

int vb_cs_audio_turn_in(const vb_cs_audio_t *a, uint64_t k, int loop)
{
    uint64_t frames = vb_cs_audio_frames(a);
    if (frames == 0 || (!loop && k >= frames)) {
        return -1;
    }
    size_t start = (size_t)(k % frames) * VB_CS_FRAME;
    size_t lo = 0, hi = a->nturns; /* first onset >= start */
    while (lo < hi) {
        size_t mid = (lo + hi) / 2;
        if (a->onsets[mid] < start) {
            lo = mid + 1;
        } else {
            hi = mid;
        }
    }
    if (lo < a->nturns && a->onsets[lo] < start + VB_CS_FRAME) {
        return (int)(a->onsets[lo] - start);
    }
    return -1;
}

uint64_t vb_cs_audio_turn_frames(const vb_cs_audio_t *a, size_t t)
{
    return t < a->nturns ? (a->lens[t] + VB_CS_FRAME - 1) / VB_CS_FRAME : 0;
}

void vb_cs_audio_turn_frame(const vb_cs_audio_t *a, size_t t, uint64_t k,
                            uint8_t out[VB_CS_FRAME])
{
    size_t from = (size_t)k * VB_CS_FRAME, n = 0;
    if (t < a->nturns && from < a->lens[t]) {
        n = a->lens[t] - from < VB_CS_FRAME ? a->lens[t] - from : VB_CS_FRAME;
        memcpy(out, a->ulaw + a->starts[t] + from, n);
    }
    memset(out + n, VB_ULAW_SILENCE, VB_CS_FRAME - n);
}
