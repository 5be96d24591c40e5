/* Unit tests for broker/stt_local: the accuracy test of the issue (30 caller lines
 * for the demo assistant, spoken by espeak-ng with several voices and rates, sent
 * through the phone path exactly as a call's audio is - 8 kHz, mu-law, the media
 * worker's inbound DSP - and recognised by the local STT and the intent matcher:
 * at least 27 must reach the right intent), plus endpointing: silence and clicks
 * give no result, a line out of the assistant's domain is not taken for a phrase. */
#include <errno.h>
#include <pthread.h>
#include <setjmp.h>
#include <stdarg.h>
#include <stddef.h>
#include <stdint.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <time.h>

#include <cmocka.h>

#include "broker/intents.h"
#include "broker/stt_local.h"
#include "broker/tts_local.h"
#include "tests/unit/voice_testutil.h"

typedef struct {
    const char *intent, *text;
} line_t;

/* What callers of the demo assistant say; most are its patterns, some are not quite. */
static const line_t lines[] = {
    {"hours", "What are your opening hours?"},
    {"hours", "When are you open?"},
    {"hours", "What time do you open?"},
    {"hours", "Are you open on Saturday?"},
    {"location", "Where are you located?"},
    {"location", "What is your address?"},
    {"location", "How do I find you?"},
    {"booking", "I would like to book an appointment."},
    {"booking", "Can I make a booking?"},
    {"booking", "I want to make a reservation."},
    {"prices", "How much does it cost?"},
    {"prices", "What are your prices?"},
    {"prices", "How much is a haircut?"},
    {"human", "Can I speak to a person?"},
    {"human", "I want to talk to a human."},
    {"human", "Put me through to an agent."},
    {"cancel", "I need to cancel my appointment."},
    {"cancel", "Cancel my booking, please."},
    {"payment", "Do you take credit cards?"},
    {"payment", "How can I pay?"},
    {"goodbye", "Goodbye."},
    {"goodbye", "Thank you, bye."},
    {"goodbye", "That is all, thanks."},
    {"hours", "What time do you close today?"},
    {"location", "Where is your office?"},
    {"booking", "Book an appointment for tomorrow."},
    {"prices", "What do you charge?"},
    {"human", "Let me talk to someone."},
    {"payment", "Can I pay by card?"},
    {"goodbye", "No, that is everything. Goodbye."},
};
#define NLINES (sizeof(lines) / sizeof(lines[0]))

static const char *const voices[] = {"en-us+m3", "en-gb+f2", "en-us"};
static const int rates[] = {140, 165, 190, 155, 175};

typedef struct {
    vb_tts_t *tts;
    vb_stt_t *stt;
    vb_intents_t *intents;
    const char **phrases;
    size_t nphrases;
    pthread_mutex_t mu;
    pthread_cond_t cv;
    int results;
} fixture_t;

static fixture_t fx = {.mu = PTHREAD_MUTEX_INITIALIZER, .cv = PTHREAD_COND_INITIALIZER};

static double now_s(void)
{
    struct timespec ts;
    clock_gettime(CLOCK_MONOTONIC, &ts);
    return (double)ts.tv_sec + (double)ts.tv_nsec / 1e9;
}

static void on_result(void *arg)
{
    fixture_t *f = arg;
    pthread_mutex_lock(&f->mu);
    f->results++;
    pthread_cond_signal(&f->cv);
    pthread_mutex_unlock(&f->mu);
}

/* Wait for the next result of S (up to 30 s). 0, or -1 on time-out. The fixture's
 * mutex is never held while calling into the STT (its notify takes it). */
static int next_result(vb_stt_stream_t *s, vb_stt_result_t *r)
{
    struct timespec dl;
    clock_gettime(CLOCK_REALTIME, &dl);
    dl.tv_sec += 30;
    for (;;) {
        pthread_mutex_lock(&fx.mu);
        int seen = fx.results;
        pthread_mutex_unlock(&fx.mu);
        if (vb_stt_poll(s, r) == 0) {
            return 0;
        }
        pthread_mutex_lock(&fx.mu);
        int rc = 0;
        while (fx.results == seen && rc == 0) {
            rc = pthread_cond_timedwait(&fx.cv, &fx.mu, &dl);
        }
        pthread_mutex_unlock(&fx.mu);
        if (rc != 0) {
            return -1;
        }
    }
}

static void collect_phrases(void)
{
    size_t n = 0;
    for (size_t i = 0; i < vb_intents_count(fx.intents); i++) {
        n += vb_intents_get(fx.intents, i)->npatterns;
    }
    fx.phrases = calloc(n, sizeof(char *));
    assert_non_null(fx.phrases);
    for (size_t i = 0; i < vb_intents_count(fx.intents); i++) {
        const vb_intent_t *it = vb_intents_get(fx.intents, i);
        for (size_t j = 0; j < it->npatterns; j++) {
            fx.phrases[fx.nphrases++] = it->patterns[j];
        }
    }
}

static int setup(void **state)
{
    char err[256] = "";
    char *json = vt_read_data("demo_intents.json");
    vb_stt_opts_t opts = {.open_lm = 1};
    if (json == NULL) {
        fprintf(stderr, "tests/data/demo_intents.json not found\n");
        return -1;
    }
    fx.intents = vb_intents_parse(json, err, sizeof(err));
    free(json);
    fx.tts = vb_tts_local_start(NULL);
    fx.stt = vb_stt_local_start(&opts);
    if (fx.intents == NULL || fx.tts == NULL || fx.stt == NULL) {
        fprintf(stderr, "set-up failed: %s\n", err);
        return -1;
    }
    collect_phrases();
    return 0;
}

static int teardown(void **state)
{
    vb_stt_local_stop(fx.stt);
    vb_tts_local_stop(fx.tts);
    vb_intents_free(fx.intents);
    free(fx.phrases);
    return 0;
}

/* Feed FRAMES; returns how many utterances were closed. */
static int feed(vb_stt_stream_t *s, const vb_audio_frame_t *frames, long n)
{
    int closed = 0, in = 0;
    for (long k = 0; k < n; k++) {
        int now = vb_stt_feed(s, &frames[k]);
        closed += in && !now;
        in = now;
    }
    if (in) {
        vb_stt_flush(s);
        closed++;
    }
    return closed;
}

/* Say LINE on L into S; the recognised text (utterances joined) into OUT, the garbage
 * path's words into ALT. */
static void recognise(vb_stt_stream_t *s, vt_line_t *l, size_t i, char *out, char *alt,
                      size_t cap, vb_stt_result_t *last)
{
    int16_t *pcm = NULL;
    vb_audio_frame_t *frames = NULL;
    long n = vt_synth(fx.tts, lines[i].text, voices[i % 3], rates[i % 5], &pcm);
    assert_true(n > 0);
    long nf = vt_line_frames(l, pcm, (size_t)n, 400, 1000, &frames);
    assert_true(nf > 0);
    int closed = feed(s, frames, nf);
    out[0] = alt[0] = '\0';
    for (int u = 0; u < closed; u++) {
        assert_int_equal(next_result(s, last), 0);
        size_t len = strlen(out), alen = strlen(alt);
        snprintf(out + len, cap - len, "%s%s", len ? " " : "", last->text);
        snprintf(alt + alen, cap - alen, "%s%s", alen ? " " : "", last->loop_text);
    }
    free(frames);
    free(pcm);
}

static const char *source_name(int src)
{
    static const char *const names[] = {"?", "grammar", "open-lm", "loop", "none"};
    return src >= 0 && src <= VB_STT_SRC_NONE ? names[src] : "?";
}

static void test_accuracy(void **state)
{
    vt_line_t l;
    vb_stt_stats_t st;
    char text[VB_STT_TEXT_MAX * 2], alt[VB_STT_TEXT_MAX * 2];
    int matched = 0;
    double t0 = now_s();
    assert_int_equal(vt_line_init(&l), 0);
    vb_stt_stream_t *s = vb_stt_stream_new(fx.stt, fx.phrases, fx.nphrases, on_result, &fx);
    assert_non_null(s);
    for (size_t i = 0; i < NLINES; i++) {
        vb_stt_result_t r = {0};
        vb_intent_match_t m;
        recognise(s, &l, i, text, alt, sizeof(text), &r);
        int ok =
            vb_intents_match(fx.intents, text, &m) && !strcmp(m.intent->name, lines[i].intent);
        matched += ok;
        printf("%-4s %-9s %-38s -> %-38s [%s%s%s] %s\n", ok ? "ok" : "MISS", voices[i % 3],
               lines[i].text, text, source_name(r.source), alt[0] ? ": " : "", alt,
               m.intent ? m.intent->name : "-");
    }
    vb_stt_stats(fx.stt, &st);
    printf("matched %d of %zu in %.1f s (recognition %.2f x real time, %llu utterances: "
           "%llu grammar, %llu open model, %llu garbage path; %llu decoders)\n",
           matched, NLINES, now_s() - t0, st.audio_s > 0 ? st.busy_s / st.audio_s : 0.0,
           (unsigned long long)st.utterances, (unsigned long long)st.grammar,
           (unsigned long long)st.open_lm, (unsigned long long)st.loop,
           (unsigned long long)st.decoders);
    assert_int_equal(vb_stt_dropped(s), 0);
    vb_stt_stream_free(s);
    vt_line_free(&l);
    assert_true(matched >= 27);
}

/* Silence and a click give no result; the utterance after them gives the first. */
static void test_endpointing(void **state)
{
    vt_line_t l;
    vb_audio_frame_t *frames = NULL;
    int16_t *pcm = NULL, click[320 * 3];
    vb_stt_result_t r;
    assert_int_equal(vt_line_init(&l), 0);
    vb_stt_stream_t *s = vb_stt_stream_new(fx.stt, fx.phrases, fx.nphrases, on_result, &fx);
    long nf = vt_line_frames(&l, NULL, 0, 3000, 0, &frames);
    assert_int_equal(feed(s, frames, nf), 0); /* line noise only: never speech */
    free(frames);
    for (int i = 0; i < 320 * 3; i++) {
        click[i] = (int16_t)(i % 2 ? 12000 : -12000);
    }
    nf = vt_line_frames(&l, click, sizeof(click) / 2, 0, 800, &frames);
    assert_int_equal(feed(s, frames, nf), 1); /* a burst too short to be words */
    free(frames);
    long n = vt_synth(fx.tts, "Where are you located?", "en-us", 160, &pcm);
    nf = vt_line_frames(&l, pcm, (size_t)n, 300, 1000, &frames);
    assert_int_equal(feed(s, frames, nf), 1);
    assert_int_equal(next_result(s, &r), 0);
    assert_string_equal(r.text, "where are you located"); /* the click gave nothing */
    assert_true(r.voiced_frames > 20);
    assert_true(r.start_ns < r.speech_end_ns && r.speech_end_ns <= r.endpoint_ns);
    assert_int_equal(vb_stt_poll(s, &r), -EAGAIN);
    free(frames);
    free(pcm);
    vb_stt_stream_free(s);
    vt_line_free(&l);
}

/* Lines no phrase fits are not taken for one: the garbage loop wins. */
static void test_out_of_domain(void **state)
{
    static const char *const other[] = {
        "The quick brown fox jumps over the lazy dog.",
        "What is the weather like?",
        "I am calling about my order.",
    };
    vt_line_t l;
    int taken = 0;
    assert_int_equal(vt_line_init(&l), 0);
    vb_stt_stream_t *s = vb_stt_stream_new(fx.stt, fx.phrases, fx.nphrases, on_result, &fx);
    for (size_t i = 0; i < 3; i++) {
        int16_t *pcm = NULL;
        vb_audio_frame_t *frames = NULL;
        vb_stt_result_t r;
        long n = vt_synth(fx.tts, other[i], voices[i], 160, &pcm);
        long nf = vt_line_frames(&l, pcm, (size_t)n, 300, 1000, &frames);
        for (int u = feed(s, frames, nf); u > 0; u--) {
            assert_int_equal(next_result(s, &r), 0);
            printf("%-45s -> %s [%s: %s]\n", other[i], r.text, source_name(r.source),
                   r.loop_text);
            taken += r.source == VB_STT_SRC_GRAMMAR;
        }
        free(frames);
        free(pcm);
    }
    vb_stt_stream_free(s);
    vt_line_free(&l);
    assert_int_equal(taken, 0);
}

int main(void)
{
    const struct CMUnitTest tests[] = {
        cmocka_unit_test(test_endpointing),
        cmocka_unit_test(test_out_of_domain),
        cmocka_unit_test(test_accuracy),
    };
    return cmocka_run_group_tests(tests, setup, teardown);
}
