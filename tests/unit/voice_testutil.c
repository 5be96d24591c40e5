/* Helpers for the offline-voice tests and benchmark: see voice_testutil.h. */
#include "tests/unit/voice_testutil.h"

#include "common/g711.h"

#include <errno.h>
#include <pthread.h>
#include <speex/speex_resampler.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <time.h>

#ifndef VB_TEST_DATA
#define VB_TEST_DATA "tests/data"
#endif

#define LINE_NOISE 24.0 /* peak of the uniform line noise at 8 kHz (about -66 dBFS RMS) */

typedef struct {
    pthread_mutex_t mu;
    pthread_cond_t cv;
    int events;
} waiter_t;

static void on_notify(void *arg)
{
    waiter_t *w = arg;
    pthread_mutex_lock(&w->mu);
    w->events++;
    pthread_cond_signal(&w->cv);
    pthread_mutex_unlock(&w->mu);
}

static int wait_event(waiter_t *w, int seen)
{
    struct timespec dl;
    clock_gettime(CLOCK_REALTIME, &dl);
    dl.tv_sec += 30;
    int rc = 0;
    pthread_mutex_lock(&w->mu);
    while (w->events == seen && rc == 0) {
        rc = pthread_cond_timedwait(&w->cv, &w->mu, &dl);
    }
    seen = w->events;
    pthread_mutex_unlock(&w->mu);
    return rc == 0 ? seen : -ETIMEDOUT;
}

static int append(int16_t **pcm, size_t *n, size_t *cap, const int16_t *f)
{
    if (*n + VB_FRAME_SAMPLES > *cap) {
        size_t c = *cap ? *cap * 2 : 16000;
        int16_t *p = realloc(*pcm, c * sizeof(*p));
        if (p == NULL) {
            return -ENOMEM;
        }
        *pcm = p;
        *cap = c;
    }
    memcpy(*pcm + *n, f, VB_FRAME_SAMPLES * sizeof(*f));
    *n += VB_FRAME_SAMPLES;
    return 0;
}

long vt_synth(vb_tts_t *tts, const char *text, const char *voice, int rate, int16_t **pcm)
{
    waiter_t w = {PTHREAD_MUTEX_INITIALIZER, PTHREAD_COND_INITIALIZER, 0};
    vb_tts_stream_t *s = vb_tts_stream_new(tts, on_notify, &w);
    size_t n = 0, cap = 0;
    int seen = 0, done = 0, rc = s ? vb_tts_say(s, text, voice, rate, NULL) : -ENOMEM;
    *pcm = NULL;
    while (rc == 0 && !done) {
        int16_t f[VB_FRAME_SAMPLES];
        vb_tts_frame_info_t info;
        if (vb_tts_read(s, f, &info) == 0) {
            rc = append(pcm, &n, &cap, f);
            done = info.last;
        } else if ((seen = wait_event(&w, seen)) < 0) {
            rc = seen;
        }
    }
    vb_tts_stream_free(s);
    if (rc < 0) {
        free(*pcm);
        *pcm = NULL;
        return rc;
    }
    return (long)n;
}

int vt_line_init(vt_line_t *l)
{
    int err = 0;
    memset(l, 0, sizeof(*l));
    l->dsp = vb_dsp_new(NULL);
    l->down = speex_resampler_init(1, 16000, 8000, 5, &err);
    l->rng = 2463534242u;
    l->t_ns = 1000000000ull;
    return l->dsp && l->down ? 0 : -ENOMEM;
}

void vt_line_free(vt_line_t *l)
{
    vb_dsp_free(l->dsp);
    if (l->down != NULL) {
        speex_resampler_destroy(l->down);
    }
}

static int16_t line_sample(vt_line_t *l, int16_t x)
{
    l->rng ^= l->rng << 13;
    l->rng ^= l->rng >> 17;
    l->rng ^= l->rng << 5;
    double v = x + ((double)l->rng / 4294967296.0 * 2.0 - 1.0) * LINE_NOISE;
    return (int16_t)(v > 32767 ? 32767 : v < -32768 ? -32768 : v);
}

/* One 20 ms frame of 8 kHz audio through G.711 and the worker's inbound DSP. */
static void frame_out(vt_line_t *l, int16_t pcm8[160], vb_audio_frame_t *f)
{
    uint8_t ulaw[160];
    int voice = 0;
    for (int i = 0; i < 160; i++) {
        pcm8[i] = line_sample(l, pcm8[i]);
    }
    vb_ulaw_encode(pcm8, 160, ulaw);
    vb_dsp_inbound(l->dsp, ulaw, f->pcm, &voice);
    f->seq = l->seq++;
    f->flags = voice ? VB_FRAME_VOICE : 0;
    f->t_ns = l->t_ns;
    l->t_ns += 20000000ull;
}

long vt_line_frames(vt_line_t *l, const int16_t *pcm, size_t n, int lead_ms, int tail_ms,
                    vb_audio_frame_t **out)
{
    size_t lead = (size_t)lead_ms * 8, tail = (size_t)tail_ms * 8;
    size_t total8 = lead + n / 2 + tail + 160;
    int16_t *p8 = calloc(total8 + 160, sizeof(*p8));
    *out = calloc(total8 / 160 + 1, sizeof(**out));
    if (p8 == NULL || *out == NULL) {
        free(p8);
        free(*out);
        return -ENOMEM;
    }
    spx_uint32_t il = (spx_uint32_t)n, ol = (spx_uint32_t)(n / 2 + 160);
    speex_resampler_reset_mem(l->down);
    if (n > 0) {
        speex_resampler_process_int(l->down, 0, pcm, &il, p8 + lead, &ol);
    } else {
        ol = 0;
    }
    size_t frames = (lead + ol + tail) / 160;
    for (size_t k = 0; k < frames; k++) {
        frame_out(l, p8 + k * 160, &(*out)[k]);
    }
    free(p8);
    return (long)frames;
}

char *vt_read_data(const char *name)
{
    char path[512];
    snprintf(path, sizeof(path), "%s/%s", VB_TEST_DATA, name);
    FILE *f = fopen(path, "r");
    if (f == NULL) {
        return NULL;
    }
    fseek(f, 0, SEEK_END);
    long len = ftell(f);
    rewind(f);
    char *s = len >= 0 ? malloc((size_t)len + 1) : NULL;
    if (s != NULL && fread(s, 1, (size_t)len, f) != (size_t)len) {
        free(s);
        s = NULL;
    }
    fclose(f);
    if (s != NULL) {
        s[len] = '\0';
    }
    return s;
}
