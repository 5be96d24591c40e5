/* Benchmark of the offline voice, to size AI brokers: real-time factor of the local
 * TTS (espeak-ng + resampling) and of the local STT (pocketsphinx on phone audio:
 * caller lines synthesised, sent through 8 kHz mu-law and the worker's inbound DSP),
 * latency of the first TTS frame and of the STT result after the end of speech, and
 * memory. Built with the tree, run by hand:
 *     tests/bench/bench_voice [lines per round (30)] [open-lm 0|1 (1)]
 * Prints its figures; asserts nothing. */
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <time.h>

#include <pthread.h>

#include "broker/intents.h"
#include "broker/stt_local.h"
#include "broker/tts_local.h"
#include "tests/unit/voice_testutil.h"

static const char *const lines[] = {
    "What are your opening hours?",
    "Where are you located?",
    "Can I make a booking?",
    "How much does it cost?",
    "Can I speak to a person?",
    "I need to cancel my appointment.",
    "Do you take credit cards?",
    "Thank you, bye.",
    "My car broke down on the motorway.",
    "Is the shop wheelchair accessible?",
};
#define NLINES (sizeof(lines) / sizeof(lines[0]))

static const char *const replies[] = {
    "We are open from nine in the morning to five in the evening, Monday to Saturday.",
    "Of course. Please tell me the day and time that suits you.",
    "Thank you for calling. Goodbye!",
};

static pthread_mutex_t mu = PTHREAD_MUTEX_INITIALIZER;
static pthread_cond_t cv = PTHREAD_COND_INITIALIZER;
static int events;

static void on_event(void *arg)
{
    pthread_mutex_lock(&mu);
    events++;
    pthread_cond_signal(&cv);
    pthread_mutex_unlock(&mu);
}

static double now_s(void)
{
    struct timespec ts;
    clock_gettime(CLOCK_MONOTONIC, &ts);
    return (double)ts.tv_sec + (double)ts.tv_nsec / 1e9;
}

static double cpu_s(void)
{
    struct timespec ts;
    clock_gettime(CLOCK_PROCESS_CPUTIME_ID, &ts);
    return (double)ts.tv_sec + (double)ts.tv_nsec / 1e9;
}

static long rss_mb(void)
{
    long pages = 0, resident = 0;
    FILE *f = fopen("/proc/self/statm", "r");
    if (f != NULL) {
        if (fscanf(f, "%ld %ld", &pages, &resident) != 2) {
            resident = 0;
        }
        fclose(f);
    }
    return resident * 4 / 1024;
}

static void wait_event(int seen)
{
    pthread_mutex_lock(&mu);
    while (events == seen) {
        pthread_cond_wait(&cv, &mu);
    }
    pthread_mutex_unlock(&mu);
}

/* TTS: real-time factor and first-frame latency over ROUNDS replies. */
static void bench_tts(vb_tts_t *tts, int rounds)
{
    vb_tts_stream_t *s = vb_tts_stream_new(tts, on_event, NULL);
    double audio = 0, wall = 0, first = 0, worst_first = 0;
    for (int i = 0; i < rounds; i++) {
        int16_t pcm[VB_FRAME_SAMPLES];
        vb_tts_frame_info_t info = {0};
        long frames = 0;
        double t0 = now_s(), t_first = 0;
        vb_tts_say(s, replies[i % 3], "en-us", 175, NULL);
        while (!info.last) {
            pthread_mutex_lock(&mu);
            int seen = events;
            pthread_mutex_unlock(&mu);
            if (vb_tts_read(s, pcm, &info) != 0) {
                wait_event(seen);
                continue;
            }
            if (frames++ == 0) {
                t_first = now_s() - t0;
            }
        }
        wall += now_s() - t0;
        audio += frames * 0.02;
        first += t_first;
        worst_first = t_first > worst_first ? t_first : worst_first;
    }
    vb_tts_stream_free(s);
    printf("tts: %.1f s of speech in %.3f s: real-time factor %.4f (a core voices %.0f agents "
           "talking at once); first frame after %.2f ms (worst %.2f ms)\n",
           audio, wall, wall / audio, audio / wall, first / rounds * 1e3, worst_first * 1e3);
}

/* Real time, as on a call: frames every 20 ms; the result's delay after the frame that
 * closed the utterance (the end-of-speech silence is not counted), and after the end
 * of the last word (what a caller waits for: silence + decoding). */
static void bench_stt_live(vb_tts_t *tts, vb_stt_t *stt, const char **phrases, size_t np,
                           int rounds)
{
    vb_stt_stream_t *s = vb_stt_stream_new(stt, phrases, np, on_event, NULL);
    vt_line_t line;
    vt_line_init(&line);
    double after_endpoint = 0, after_speech = 0;
    for (int i = 0; i < rounds; i++) {
        int16_t *pcm = NULL;
        vb_audio_frame_t *frames = NULL;
        long n = vt_synth(tts, lines[i % NLINES], "en-us", 170, &pcm);
        long nf = vt_line_frames(&line, pcm, (size_t)n, 300, 800, &frames);
        struct timespec next;
        clock_gettime(CLOCK_MONOTONIC, &next);
        int seen;
        pthread_mutex_lock(&mu);
        seen = events;
        pthread_mutex_unlock(&mu);
        vb_stt_result_t r;
        int got = 0;
        for (long k = 0; k < nf && !got; k++) {
            next.tv_nsec += 20000000;
            if (next.tv_nsec >= 1000000000) {
                next.tv_nsec -= 1000000000;
                next.tv_sec++;
            }
            clock_nanosleep(CLOCK_MONOTONIC, TIMER_ABSTIME, &next, NULL);
            frames[k].t_ns = (uint64_t)(now_s() * 1e9);
            vb_stt_feed(s, &frames[k]);
            got = vb_stt_poll(s, &r) == 0;
        }
        while (!got) {
            vb_stt_flush(s);
            wait_event(seen);
            got = vb_stt_poll(s, &r) == 0;
        }
        after_endpoint += (double)(r.final_ns - r.endpoint_ns) / 1e6;
        after_speech += (double)(r.final_ns - r.speech_end_ns) / 1e6;
        free(frames);
        free(pcm);
    }
    printf("stt live: result %.0f ms after the closing frame, %.0f ms after the last word "
           "(end-of-speech silence %d ms + the VAD's hang-over)\n",
           after_endpoint / rounds, after_speech / rounds, VB_STT_END_SILENCE_MS);
    vb_stt_stream_free(s);
    vt_line_free(&line);
}

static void bench_stt(vb_tts_t *tts, vb_stt_t *stt, const vb_intents_t *in, int rounds)
{
    const char *phrases[256];
    size_t np = 0;
    for (size_t i = 0; i < vb_intents_count(in); i++) {
        const vb_intent_t *it = vb_intents_get(in, i);
        for (size_t j = 0; j < it->npatterns && np < 256; j++) {
            phrases[np++] = it->patterns[j];
        }
    }
    bench_stt_live(tts, stt, phrases, np, 5);
    vb_stt_stream_t *s = vb_stt_stream_new(stt, phrases, np, on_event, NULL);
    vt_line_t line;
    vt_line_init(&line);
    double lat = 0, worst = 0, speech = 0;
    int results = 0;
    for (int i = 0; i < rounds; i++) {
        int16_t *pcm = NULL;
        vb_audio_frame_t *frames = NULL;
        long n = vt_synth(tts, lines[i % NLINES], i % 2 ? "en-gb+f2" : "en-us+m3", 160, &pcm);
        long nf = vt_line_frames(&line, pcm, (size_t)n, 300, 800, &frames);
        speech += (double)n / VB_FRAME_RATE;
        for (long k = 0; k < nf; k++) {
            vb_stt_feed(s, &frames[k]);
        }
        vb_stt_flush(s);
        double t_end = now_s(); /* the endpoint: all audio is in */
        vb_stt_result_t r;
        for (;;) {
            pthread_mutex_lock(&mu);
            int seen = events;
            pthread_mutex_unlock(&mu);
            if (vb_stt_poll(s, &r) == 0) {
                break;
            }
            wait_event(seen);
        }
        double l = now_s() - t_end;
        lat += l;
        worst = l > worst ? l : worst;
        results++;
        while (vb_stt_poll(s, &r) == 0) {
        }
        free(frames);
        free(pcm);
    }
    vb_stt_stats_t st;
    vb_stt_stats(stt, &st);
    printf("stt: %.1f s of caller audio (%.1f s speech), thread busy %.2f s: real-time factor "
           "%.3f (%.0f callers speaking at once per core)\n",
           st.audio_s, speech, st.busy_s, st.busy_s / st.audio_s, st.audio_s / st.busy_s);
    printf("stt: result %.0f ms after all audio was in on average (worst %.0f ms), fed faster "
           "than real time; %llu utterances: %llu grammar, %llu open model, %llu garbage path; "
           "%llu decoders\n",
           lat / results * 1e3, worst * 1e3, (unsigned long long)st.utterances,
           (unsigned long long)st.grammar, (unsigned long long)st.open_lm,
           (unsigned long long)st.loop, (unsigned long long)st.decoders);
    vb_stt_stream_free(s);
    vt_line_free(&line);
}

int main(int argc, char **argv)
{
    int rounds = argc > 1 ? atoi(argv[1]) : 30;
    vb_stt_opts_t opts = {.open_lm = argc > 2 ? atoi(argv[2]) : 1};
    char err[256];
    char *json = vt_read_data("demo_intents.json");
    vb_intents_t *in = json ? vb_intents_parse(json, err, sizeof(err)) : NULL;
    free(json);
    if (in == NULL || rounds <= 0) {
        fprintf(stderr, "usage: bench_voice [lines] [open-lm 0|1]; needs tests/data\n");
        return 2;
    }
    long rss0 = rss_mb();
    double c0 = cpu_s();
    vb_tts_t *tts = vb_tts_local_start(NULL);
    vb_stt_t *stt = vb_stt_local_start(&opts);
    if (tts == NULL || stt == NULL) {
        fprintf(stderr, "cannot start the local voice\n");
        return 1;
    }
    bench_tts(tts, rounds);
    bench_stt(tts, stt, in, rounds);
    printf("memory: %ld MB resident for the voice (open model %s); cpu %.2f s in all\n",
           rss_mb() - rss0, opts.open_lm ? "on" : "off", cpu_s() - c0);
    vb_stt_local_stop(stt);
    vb_tts_local_stop(tts);
    vb_intents_free(in);
    return 0;
}
