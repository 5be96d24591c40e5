/* Unit tests for broker/tts_local: a phrase comes out as 20 ms frames of 320
 * samples, not silent, as long as its rate says; a slower rate is longer; the
 * calling thread never waits for synthesis (vb_tts_say and vb_tts_read return in
 * well under a millisecond, not after the synthesis) and the first frames of a
 * long reply are readable long before its last is made; cancel stops a reply at
 * once; streams are served in turn; an unknown voice falls back to the default;
 * sentences split where they should. */
#include <errno.h>
#include <math.h>
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

#include "broker/tts_local.h"
#include "tests/unit/voice_testutil.h"

static vb_tts_t *tts;

typedef struct {
    pthread_mutex_t mu;
    pthread_cond_t cv;
    int events;
} waiter_t;

static double now_ms(void)
{
    struct timespec ts;
    clock_gettime(CLOCK_MONOTONIC, &ts);
    return (double)ts.tv_sec * 1e3 + (double)ts.tv_nsec / 1e6;
}

static void on_notify(void *arg)
{
    waiter_t *w = arg;
    pthread_mutex_lock(&w->mu);
    w->events++;
    pthread_cond_signal(&w->cv);
    pthread_mutex_unlock(&w->mu);
}

/* Read one frame, waiting (up to 10 s) for the synthesis thread. The waiter's mutex
 * is never held while calling into the TTS (its notify takes it). */
static int read_wait(vb_tts_stream_t *s, waiter_t *w, int16_t *pcm, vb_tts_frame_info_t *info)
{
    struct timespec dl;
    clock_gettime(CLOCK_REALTIME, &dl);
    dl.tv_sec += 10;
    for (;;) {
        pthread_mutex_lock(&w->mu);
        int seen = w->events;
        pthread_mutex_unlock(&w->mu);
        if (vb_tts_read(s, pcm, info) == 0) {
            return 0;
        }
        pthread_mutex_lock(&w->mu);
        int rc = 0;
        while (w->events == seen && rc == 0) {
            rc = pthread_cond_timedwait(&w->cv, &w->mu, &dl);
        }
        pthread_mutex_unlock(&w->mu);
        if (rc != 0) {
            return -ETIMEDOUT;
        }
    }
}

static double rms(const int16_t *x, size_t n)
{
    double e = 0;
    for (size_t i = 0; i < n; i++) {
        e += (double)x[i] * x[i];
    }
    return n ? sqrt(e / (double)n) : 0;
}

static int setup(void **state)
{
    tts = vb_tts_local_start(NULL);
    return tts ? 0 : -1;
}

static int teardown(void **state)
{
    vb_tts_local_stop(tts);
    return 0;
}

static void test_one_process_one_engine(void **state)
{
    errno = 0;
    assert_null(vb_tts_local_start(NULL));
    assert_int_equal(errno, EBUSY);
}

/* 11 words: at R words a minute about 660/R seconds, allowing for espeak's pauses. */
static const char *const phrase =
    "Thank you for calling, how can I help you with your booking?";

static void check_duration(int rate, double *secs)
{
    int16_t *pcm = NULL;
    long n = vt_synth(tts, phrase, "en-us", rate, &pcm);
    assert_true(n > 0);
    assert_int_equal(n % VB_FRAME_SAMPLES, 0);
    *secs = (double)n / VB_FRAME_RATE;
    double expect = 11.0 * 60.0 / rate;
    printf("rate %d: %.2f s (%.2f s for 11 words), rms %.0f\n", rate, *secs, expect,
           rms(pcm, (size_t)n));
    assert_true(*secs > 0.6 * expect && *secs < 1.6 * expect);
    assert_true(rms(pcm, (size_t)n) > 500.0); /* speech, not silence */
    free(pcm);
}

static void test_frames_and_duration(void **state)
{
    double slow, fast;
    check_duration(120, &slow);
    check_duration(240, &fast);
    assert_true(slow > 1.5 * fast);
}

static void test_stream_flags_and_ids(void **state)
{
    waiter_t w = {PTHREAD_MUTEX_INITIALIZER, PTHREAD_COND_INITIALIZER, 0};
    vb_tts_stream_t *s = vb_tts_stream_new(tts, on_notify, &w);
    uint32_t a = 0, b = 0;
    int16_t pcm[VB_FRAME_SAMPLES];
    vb_tts_frame_info_t info;
    assert_int_equal(vb_tts_say(s, "   ", NULL, 0, &a), -EINVAL);
    assert_int_equal(vb_tts_say(s, "Hello.", NULL, 0, &a), 0);
    assert_int_equal(vb_tts_say(s, "Goodbye.", "en-gb+f2", 200, &b), 0);
    assert_true(a != 0 && b != a);
    assert_true(vb_tts_busy(s));
    int firsts = 0, lasts = 0;
    uint32_t prev = a;
    while (lasts < 2) {
        assert_int_equal(read_wait(s, &w, pcm, &info), 0);
        assert_true(info.id == a || info.id == b);
        assert_true(info.id >= prev); /* in order */
        prev = info.id;
        firsts += info.first;
        lasts += info.last;
    }
    assert_int_equal(firsts, 2);
    if (vb_tts_busy(s)) {
        fail_msg("busy after both utterances: %u frames unread", vb_tts_ready(s));
    }
    assert_int_equal(vb_tts_read(s, pcm, &info), -EAGAIN);
    vb_tts_stream_free(s);
}

/* The caller's thread never waits, and audio streams before the reply is complete. */
static void test_streaming_and_responsive(void **state)
{
    static char text[VB_TTS_TEXT_MAX];
    waiter_t w = {PTHREAD_MUTEX_INITIALIZER, PTHREAD_COND_INITIALIZER, 0};
    vb_tts_stream_t *s = vb_tts_stream_new(tts, on_notify, &w);
    text[0] = '\0';
    for (int i = 0; i < 12; i++) {
        strcat(text, "This is sentence number one of a long reply that goes on. ");
    }
    int16_t pcm[VB_FRAME_SAMPLES];
    vb_tts_frame_info_t info;
    double t0 = now_ms();
    assert_int_equal(vb_tts_say(s, text, "en-us", 175, NULL), 0);
    double say_ms = now_ms() - t0;
    assert_int_equal(read_wait(s, &w, pcm, &info), 0);
    double first_ms = now_ms() - t0;
    assert_true(info.first);
    double worst_read = 0;
    long frames = 1;
    while (!info.last) {
        double r0 = now_ms();
        int rc = vb_tts_read(s, pcm, &info);
        double r = now_ms() - r0;
        worst_read = r > worst_read ? r : worst_read;
        if (rc == -EAGAIN) {
            assert_int_equal(read_wait(s, &w, pcm, &info), 0);
        }
        frames++;
    }
    double all_ms = now_ms() - t0;
    printf("say returned in %.3f ms; first frame after %.1f ms; %.1f s of audio made in "
           "%.0f ms; slowest read %.3f ms\n",
           say_ms, first_ms, frames * 0.02, all_ms, worst_read);
    /* synthesis inline would make vb_tts_say take as long as all of it */
    assert_true(say_ms * 10 < all_ms);
    assert_true(worst_read * 10 < all_ms);
    assert_true(first_ms < all_ms / 4);   /* the first sentence did not wait for the rest */
    assert_true(frames * 20.0 > 20000.0); /* 12 sentences: well over 20 s */
    vb_tts_stream_free(s);
}

static int cmp_double(const void *a, const void *b)
{
    double x = *(const double *)a, y = *(const double *)b;
    return (x > y) - (x < y);
}

/* The loop's calls return at once: a median under 1 ms (the slowest is printed: a
 * busy machine may preempt the synthesis thread while it holds the mutex). */
static void test_calls_return_at_once(void **state)
{
    waiter_t w = {PTHREAD_MUTEX_INITIALIZER, PTHREAD_COND_INITIALIZER, 0};
    vb_tts_stream_t *s = vb_tts_stream_new(tts, on_notify, &w);
    double say[21], read[21];
    int16_t pcm[VB_FRAME_SAMPLES];
    vb_tts_frame_info_t info;
    for (int i = 0; i < 21; i++) {
        double t0 = now_ms();
        assert_int_equal(
            vb_tts_say(s, "A short sentence that takes a while to say.", NULL, 0, NULL), 0);
        say[i] = now_ms() - t0;
        t0 = now_ms();
        vb_tts_read(s, pcm, &info);
        read[i] = now_ms() - t0;
    }
    qsort(say, 21, sizeof(double), cmp_double);
    qsort(read, 21, sizeof(double), cmp_double);
    printf("vb_tts_say: median %.3f ms, slowest %.3f ms; vb_tts_read: median %.3f ms, slowest "
           "%.3f ms\n",
           say[10], say[20], read[10], read[20]);
    assert_true(say[10] < 1.0);
    assert_true(read[10] < 1.0);
    vb_tts_stream_free(s);
}

static void test_cancel(void **state)
{
    waiter_t w = {PTHREAD_MUTEX_INITIALIZER, PTHREAD_COND_INITIALIZER, 0};
    vb_tts_stream_t *s = vb_tts_stream_new(tts, on_notify, &w);
    int16_t pcm[VB_FRAME_SAMPLES];
    vb_tts_frame_info_t info;
    uint32_t id, next;
    assert_int_equal(vb_tts_say(s,
                                "One two three four five six seven eight. Nine ten "
                                "eleven twelve. Thirteen fourteen fifteen.",
                                NULL, 0, &id),
                     0);
    assert_int_equal(read_wait(s, &w, pcm, &info), 0);
    vb_tts_cancel(s);
    assert_false(vb_tts_busy(s));
    assert_int_equal(vb_tts_read(s, pcm, &info), -EAGAIN);
    /* what follows a cancel is spoken, and nothing of the cancelled reply comes back */
    assert_int_equal(vb_tts_say(s, "Yes?", NULL, 0, &next), 0);
    do {
        assert_int_equal(read_wait(s, &w, pcm, &info), 0);
        assert_int_equal(info.id, next);
    } while (!info.last);
    vb_tts_stream_free(s);
}

/* Freeing a stream in the middle of a long reply is safe; others go on. */
static void test_free_while_busy_and_fairness(void **state)
{
    waiter_t w = {PTHREAD_MUTEX_INITIALIZER, PTHREAD_COND_INITIALIZER, 0};
    vb_tts_stream_t *a = vb_tts_stream_new(tts, on_notify, &w);
    vb_tts_stream_t *b = vb_tts_stream_new(tts, on_notify, &w);
    int16_t pcm[VB_FRAME_SAMPLES];
    vb_tts_frame_info_t info;
    for (int i = 0; i < 6; i++) {
        vb_tts_say(a, "A long sentence for the first caller, said again and again.", 0, 0, 0);
    }
    assert_int_equal(vb_tts_say(b, "Hi.", NULL, 0, NULL), 0);
    /* b's short reply is not stuck behind all of a's sentences */
    assert_int_equal(read_wait(b, &w, pcm, &info), 0);
    assert_true(vb_tts_busy(a));
    vb_tts_stream_free(a);
    vb_tts_stream_free(b);
}

static void test_unknown_voice(void **state)
{
    int16_t *pcm = NULL;
    long n = vt_synth(tts, "Hello there.", "no-such-voice", 0, &pcm);
    assert_true(n > VB_FRAME_SAMPLES * 10);
    assert_true(rms(pcm, (size_t)n) > 500.0);
    free(pcm);
    n = vt_synth(tts, "Bonjour.", "fr", 0, &pcm); /* any espeak-ng language */
    assert_true(n > VB_FRAME_SAMPLES * 10);
    free(pcm);
}

static void test_sentence_split(void **state)
{
    assert_int_equal(vb_tts_sentence_len("Hello. World.", 300), 6);
    assert_int_equal(vb_tts_sentence_len("No end", 300), 6);
    assert_int_equal(vb_tts_sentence_len("3.5 pounds, please", 300), 18);
    assert_int_equal(vb_tts_sentence_len("one, two, three four", 10), 9);
    assert_int_equal(vb_tts_sentence_len("aaaa bbbb cccc", 8), 5);
    assert_int_equal(vb_tts_sentence_len("abcdefghij", 4), 4);
    assert_int_equal(vb_tts_sentence_len("ab\xc3\xa9\xc3\xa9", 3),
                     2); /* not inside a UTF-8 char */
}

int main(void)
{
    const struct CMUnitTest tests[] = {
        cmocka_unit_test(test_sentence_split),
        cmocka_unit_test(test_one_process_one_engine),
        cmocka_unit_test(test_frames_and_duration),
        cmocka_unit_test(test_stream_flags_and_ids),
        cmocka_unit_test(test_streaming_and_responsive),
        cmocka_unit_test(test_calls_return_at_once),
        cmocka_unit_test(test_cancel),
        cmocka_unit_test(test_free_while_busy_and_fairness),
        cmocka_unit_test(test_unknown_voice),
    };
    return cmocka_run_group_tests(tests, setup, teardown);
}
