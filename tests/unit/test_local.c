/* Unit tests for broker/local (the `local` engine) on a real shared-memory slot.
 * The test plays the broker's loop (on_audio and tick every 20 ms, in real time)
 * and the media worker (caller frames through the phone path, agent frames taken
 * from the ring as they would be played, control messages and turn events read
 * back). One call: greeting, a question answered, a caller barging in on a long
 * reply, a line no intent fits, a broker restart that carries the conversation on
 * without greeting again, and a goodbye that hangs up once it has been played. */
#include <errno.h>
#include <jansson.h>
#include <setjmp.h>
#include <stdarg.h>
#include <stddef.h>
#include <stdint.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <time.h>

#include <cmocka.h>

#include "broker/engine.h"
#include "broker/intents.h"
#include "broker/local.h"
#include "broker/transcript.h"
#include "shm/shm.h"
#include "tests/unit/voice_testutil.h"

#define MAX_EVENTS 64
#define TICK_NS 20000000ull

typedef struct {
    vb_shm_t *shm;
    vb_conv_t conv;
    vt_line_t line;
    vb_audio_frame_t *caller; /* caller frames queued for the coming ticks */
    long ncaller, caller_pos;
    uint64_t next_tick;
    int play_rate;   /* agent frames the "worker" takes per tick */
    uint64_t played; /* agent frames taken */
    int clears, hangups;
    json_t *events[MAX_EVENTS];
    int nevents;
} call_t;

static call_t call;

static void set_assistant(vb_assistant_t *a)
{
    char *json = vt_read_data("demo_intents.json");
    assert_non_null(json);
    memset(a, 0, sizeof(*a));
    snprintf(a->name, sizeof(a->name), "demo");
    a->mode = VB_ASSISTANT_LOCAL;
    snprintf(a->first_message, sizeof(a->first_message), "Hello, thank you for calling.");
    snprintf(a->fallback, sizeof(a->fallback), "Sorry, I can only help with bookings.");
    snprintf(a->voice, sizeof(a->voice), "en-gb");
    a->rate = 190;
    assert_true(strlen(json) < sizeof(a->intents_json));
    snprintf(a->intents_json, sizeof(a->intents_json), "%s", json);
    free(json);
}

/* What the caller says, made before the engine starts (espeak-ng is one per process
 * and the engine's voice takes it). */
enum { L_HOURS, L_HUMAN, L_PIZZA, L_BOOKING, L_BYE, L__COUNT };
static const char *const line_text[L__COUNT] = {
    "What are your opening hours?",
    "Can I speak to a person?",
    "The quick brown fox jumps over the lazy dog.",
    "Can I make a booking?",
    "Thank you, bye.",
};
static int16_t *line_pcm[L__COUNT];
static long line_len[L__COUNT];

static int make_lines(void)
{
    vb_tts_t *tts = vb_tts_local_start(NULL);
    int rc = tts ? 0 : -1;
    for (int i = 0; i < L__COUNT && rc == 0; i++) {
        line_len[i] = vt_synth(tts, line_text[i], "en-us+m3", 165, &line_pcm[i]);
        rc = line_len[i] > 0 ? 0 : -1;
    }
    vb_tts_local_stop(tts);
    return rc;
}

static int setup(void **state)
{
    vb_stt_opts_t opts = {.open_lm = 0}; /* the grammar suffices here; saves 100 MB */
    vb_local_configure(&opts);
    call.shm = vb_shm_create(1);
    if (call.shm == NULL) {
        return -1;
    }
    vb_slot_t *s = vb_shm_slot(call.shm, 0);
    call.conv.shm = call.shm;
    call.conv.slot_idx = 0;
    call.conv.slot = s;
    call.conv.gen = vb_slot_assign(s);
    VB_SLOT_SET(s, call_id, "call-test-1");
    vb_slot_activate(s);
    call.conv.attached = 1;
    call.conv.engine = &vb_engine_local;
    set_assistant(&call.conv.asst);
    call.play_rate = 1;
    return vt_line_init(&call.line) == 0 && make_lines() == 0 ? 0 : -1;
}

static int teardown(void **state)
{
    if (call.conv.state != NULL) {
        vb_engine_local.detach(&call.conv);
    }
    vb_local_shutdown();
    vt_line_free(&call.line);
    for (int i = 0; i < call.nevents; i++) {
        json_decref(call.events[i]);
    }
    free(call.caller);
    for (int i = 0; i < L__COUNT; i++) {
        free(line_pcm[i]);
    }
    vb_shm_destroy(call.shm);
    return 0;
}

/* ---- the worker's side ------------------------------------------------------- */

static void take_worker_side(void)
{
    vb_slot_t *s = call.conv.slot;
    vb_audio_frame_t f;
    vb_ctl_msg_t m;
    vb_event_t ev;
    uint32_t len;
    for (int i = 0; i < call.play_rate; i++) {
        if (vb_ring_pop(vb_slot_ring(s, VB_RING_AGENT_AUDIO), &f, sizeof(f), &len) == 0) {
            call.played++;
        }
    }
    while (vb_ring_pop(vb_slot_ring(s, VB_RING_CTL_B2W), &m, sizeof(m), &len) == 0) {
        if (m.type == VB_CTL_CLEAR) {
            call.clears++;
            vb_ring_discard(vb_slot_ring(s, VB_RING_AGENT_AUDIO));
        } else if (m.type == VB_CTL_HANGUP) {
            call.hangups++;
        }
    }
    while (vb_ring_pop(vb_slot_ring(s, VB_RING_EVENTS_B2S), &ev, sizeof(ev), &len) == 0) {
        json_error_t err;
        assert_true(ev.len > 0 && ev.len < sizeof(ev.data));
        assert_int_equal(ev.type, VB_EV_TURN);
        json_t *o = json_loadb(ev.data, ev.len, 0, &err);
        assert_non_null(o);
        assert_true(call.nevents < MAX_EVENTS);
        call.events[call.nevents++] = o;
    }
}

/* ---- the broker's side, in real time ----------------------------------------- */

static uint64_t now_ns(void)
{
    return vb_broker_now_ns();
}

/* Queue caller line I (with a little line noise before, a second after). */
static void say(int i)
{
    vb_audio_frame_t *f = NULL;
    long n = vt_line_frames(&call.line, line_pcm[i], (size_t)line_len[i], 200, 1000, &f);
    assert_true(n > 0);
    free(call.caller);
    call.caller = f;
    call.ncaller = n;
    call.caller_pos = 0;
}

/* One 20 ms tick: a caller frame (queued speech, else line noise), the engine, the
 * worker. Keeps to real time. */
static void tick(void)
{
    static vb_audio_frame_t noise[50];
    static long nnoise, noise_pos;
    vb_audio_frame_t f;
    if (nnoise == 0) {
        vb_audio_frame_t *q = NULL;
        nnoise = vt_line_frames(&call.line, NULL, 0, 1000, 0, &q);
        assert_int_equal(nnoise, 50);
        memcpy(noise, q, sizeof(noise));
        free(q);
    }
    if (call.caller_pos < call.ncaller) {
        f = call.caller[call.caller_pos++];
    } else {
        f = noise[noise_pos++ % nnoise];
    }
    uint64_t now = now_ns();
    if (call.next_tick > now) {
        struct timespec ts = {(time_t)(call.next_tick / 1000000000ull),
                              (long)(call.next_tick % 1000000000ull)};
        clock_nanosleep(CLOCK_MONOTONIC, TIMER_ABSTIME, &ts, NULL);
    }
    call.next_tick = (call.next_tick > now ? call.next_tick : now) + TICK_NS;
    f.t_ns = now_ns();
    vb_engine_local.on_audio(&call.conv, &f);
    vb_engine_local.tick(&call.conv, now_ns());
    take_worker_side();
}

/* Tick until N turn events have arrived (at most SECS seconds). */
static void until_events(int n, double secs)
{
    for (long k = 0; call.nevents < n && k < (long)(secs * 50); k++) {
        tick();
    }
    assert_true(call.nevents >= n);
}

static const char *ev_str(int i, const char *key)
{
    json_t *v = json_object_get(call.events[i], key);
    return json_is_string(v) ? json_string_value(v) : NULL;
}

static json_int_t ev_int(int i, const char *key)
{
    json_t *v = json_object_get(call.events[i], key);
    return json_is_integer(v) ? json_integer_value(v) : -1;
}

static int ev_bool(int i, const char *key)
{
    return json_is_true(json_object_get(call.events[i], key));
}

static void print_turn(int i)
{
    printf("turn %lld %-6s %5lld-%5lld ms %s%s [%s] stt %lld ms v2v %lld ms\n",
           (long long)ev_int(i, "turn"), ev_str(i, "speaker"), (long long)ev_int(i, "start_ms"),
           (long long)ev_int(i, "end_ms"), ev_bool(i, "interrupted") ? "(interrupted) " : "",
           ev_str(i, "text"), ev_str(i, "intent") ? ev_str(i, "intent") : "-",
           (long long)ev_int(i, "stt_ms"), (long long)ev_int(i, "v2v_ms"));
}

static void check_agent_turn(int i, const char *text, int interrupted)
{
    print_turn(i);
    assert_string_equal(ev_str(i, "type"), "turn");
    assert_string_equal(ev_str(i, "call_id"), "call-test-1");
    assert_string_equal(ev_str(i, "speaker"), "agent");
    assert_int_equal(ev_bool(i, "interrupted"), interrupted);
    assert_true(ev_int(i, "end_ms") >= ev_int(i, "start_ms"));
    if (text != NULL) {
        assert_string_equal(ev_str(i, "text"), text);
    }
}

static const char *check_caller_turn(int i, const char *intent)
{
    print_turn(i);
    assert_string_equal(ev_str(i, "speaker"), "caller");
    if (intent != NULL) {
        assert_non_null(ev_str(i, "intent"));
        assert_string_equal(ev_str(i, "intent"), intent);
    } else {
        assert_null(ev_str(i, "intent"));
    }
    assert_true(ev_int(i, "end_ms") > ev_int(i, "start_ms"));
    assert_true(ev_int(i, "stt_ms") >= 0 && ev_int(i, "stt_ms") < 3000);
    assert_true(ev_int(i, "v2v_ms") >= ev_int(i, "stt_ms"));
    return ev_str(i, "text");
}

static const char *reply_of(const char *intent)
{
    static char text[VB_INTENT_TEXT_MAX];
    char err[128];
    vb_intents_t *in = vb_intents_parse(call.conv.asst.intents_json, err, sizeof(err));
    snprintf(text, sizeof(text), "%s", vb_intents_find(in, intent)->reply);
    vb_intents_free(in);
    return text;
}

/* ---- the call ------------------------------------------------------------------- */

static void test_greeting(void **state)
{
    char tr[VB_SLOT_TRANSCRIPT];
    assert_int_equal(vb_engine_local.attach(&call.conv), 0);
    call.play_rate = 3; /* play fast: the greeting is not under test */
    until_events(1, 10);
    check_agent_turn(0, "Hello, thank you for calling.", 0);
    assert_true(call.played > 25); /* over half a second of speech */
    vb_slot_transcript_read(call.conv.slot, tr, sizeof(tr));
    assert_string_equal(tr, "A::Hello, thank you for calling.\nE::\n");
}

static void test_question_answered(void **state)
{
    int first = call.nevents;
    say(L_HOURS);
    until_events(first + 2, 15);
    check_caller_turn(first, "hours");
    check_agent_turn(first + 1, reply_of("hours"), 0);
    assert_int_equal(ev_int(first, "turn"), 2);
    assert_int_equal(ev_int(first + 1, "turn"), 3);
}

static void test_barge_in(void **state)
{
    int first = call.nevents;
    uint64_t played;
    call.play_rate = 1; /* real time: the reply lasts seconds */
    say(L_BOOKING);
    until_events(first + 1, 15); /* the caller's turn: the reply has started */
    check_caller_turn(first, "booking");
    for (int k = 0; k < 25; k++) {
        tick(); /* half a second of the reply */
    }
    played = call.played;
    say(L_HUMAN);
    until_events(first + 2, 5);
    check_agent_turn(first + 1, NULL, 1);
    assert_int_equal(call.clears, 1);
    /* what was heard is a beginning of the reply, shorter than it */
    const char *heard = ev_str(first + 1, "text"), *full = reply_of("booking");
    assert_string_equal(ev_str(first + 1, "planned_text"), full);
    assert_true(strlen(heard) < strlen(full) && strncmp(heard, full, strlen(heard)) == 0);
    assert_true(played > 25);
    /* the barging line is answered */
    until_events(first + 4, 15);
    check_caller_turn(first + 2, "human");
    check_agent_turn(first + 3, NULL, 0);
    char tr[VB_SLOT_TRANSCRIPT];
    vb_slot_transcript_read(call.conv.slot, tr, sizeof(tr));
    assert_non_null(strstr(tr, "C:booking:can i make a booking\nA::"));
    assert_non_null(strstr(tr, "\nI::\nC:human:"));
}

/* The assistant's barge_in_ms decides: a line over the reply shorter than it
 * interrupts nothing (and, overlapping the agent, is not taken as a turn). */
static void test_barge_in_threshold_is_the_assistants(void **state)
{
    int first = call.nevents, clears = call.clears;
    call.play_rate = 1;
    call.conv.asst.barge_in_ms = 5000; /* longer than the caller's line */
    say(L_BOOKING);
    until_events(first + 1, 15);
    check_caller_turn(first, "booking");
    for (int k = 0; k < 25; k++) {
        tick();
    }
    say(L_HUMAN);
    until_events(first + 2, 20); /* the reply plays to its end */
    check_agent_turn(first + 1, reply_of("booking"), 0);
    assert_int_equal(call.clears, clears);
    for (int k = 0; k < 100; k++) {
        tick(); /* the line's recognition comes and is dropped */
    }
    assert_int_equal(call.nevents, first + 2);
    call.conv.asst.barge_in_ms = 0;
}

static void test_no_intent_gets_fallback(void **state)
{
    int first = call.nevents;
    call.play_rate = 3;
    say(L_PIZZA);
    until_events(first + 2, 15);
    check_caller_turn(first, NULL);
    check_agent_turn(first + 1, "Sorry, I can only help with bookings.", 0);
}

/* The call ends while the agent speaks: the reply is on record, cut off, with
 * the part the caller heard (what left the ring, less the carrier's ~100 ms). */
static void test_call_end_records_what_was_heard(void **state)
{
    int first = call.nevents;
    call.play_rate = 1;
    say(L_BOOKING);
    until_events(first + 1, 15);
    check_caller_turn(first, "booking");
    for (int k = 0; k < 50; k++) {
        tick(); /* a second of the reply */
    }
    vb_engine_local.detach(&call.conv); /* as when the call ends */
    call.conv.state = NULL;
    take_worker_side();
    assert_int_equal(call.nevents, first + 2);
    check_agent_turn(first + 1, NULL, 1);
    const char *heard = ev_str(first + 1, "text"), *full = reply_of("booking");
    assert_true(strlen(heard) > 0 && strlen(heard) < strlen(full));
    assert_true(strncmp(heard, full, strlen(heard)) == 0);
    /* the same call goes on with a new engine (the worker took no more audio) */
    vb_ring_discard(vb_slot_ring(call.conv.slot, VB_RING_AGENT_AUDIO));
    assert_int_equal(vb_engine_local.attach(&call.conv), 0);
}

/* The broker before died while the agent spoke (its transcript ends with the
 * reply's start): the new one records that reply, cut off, once. */
static void test_reply_lost_with_a_broker_is_recorded(void **state)
{
    int first = call.nevents;
    vb_engine_local.detach(&call.conv);
    call.conv.state = NULL;
    vb_transcript_state_t st;
    vb_transcript_restore(call.conv.slot, &st);
    vb_transcript_add(call.conv.slot, &st, 'A', NULL, "We are open nine to five.");
    assert_int_equal(vb_engine_local.attach(&call.conv), 0); /* the new broker */
    take_worker_side();
    assert_int_equal(call.nevents, first + 1);
    check_agent_turn(first, "", 1);
    assert_int_equal(ev_int(first, "turn"), st.turns);
    assert_string_equal(ev_str(first, "planned_text"), "We are open nine to five.");
    assert_true(ev_bool(first, "broker_restarted"));
    /* a third broker does not record it again */
    vb_engine_local.detach(&call.conv);
    call.conv.state = NULL;
    assert_int_equal(vb_engine_local.attach(&call.conv), 0);
    take_worker_side();
    assert_int_equal(call.nevents, first + 1);
}

/* A new broker takes over the slot: no greeting, the turns go on from the transcript. */
static void test_restart_carries_on(void **state)
{
    vb_transcript_state_t st;
    int first = call.nevents;
    vb_transcript_restore(call.conv.slot, &st);
    vb_engine_local.detach(&call.conv);
    vb_local_shutdown(); /* as in a new process */
    call.conv.state = NULL;
    assert_int_equal(vb_engine_local.attach(&call.conv), 0);
    uint64_t played = call.played;
    for (int k = 0; k < 25; k++) {
        tick();
    }
    assert_int_equal(call.played, played); /* nothing said */
    assert_int_equal(call.nevents, first);
    say(L_BOOKING);
    until_events(first + 2, 15);
    check_caller_turn(first, "booking");
    assert_int_equal(ev_int(first, "turn"), st.turns + 1);
}

static void test_goodbye_hangs_up(void **state)
{
    int first = call.nevents;
    call.play_rate = 1;
    say(L_BYE);
    until_events(first + 2, 15);
    check_caller_turn(first, "goodbye");
    check_agent_turn(first + 1, reply_of("goodbye"), 0);
    for (int k = 0; k < 50 && call.hangups == 0; k++) {
        tick();
    }
    assert_int_equal(call.hangups, 1);
    /* the whole goodbye was played before the hang-up */
    assert_int_equal(vb_ring_count(vb_slot_ring(call.conv.slot, VB_RING_AGENT_AUDIO)), 0);
    say(L_HOURS); /* nothing more is answered */
    for (int k = 0; k < 150; k++) {
        tick();
    }
    assert_int_equal(call.nevents, first + 2);
}

int main(void)
{
    const struct CMUnitTest tests[] = {
        cmocka_unit_test(test_greeting),
        cmocka_unit_test(test_question_answered),
        cmocka_unit_test(test_barge_in),
        cmocka_unit_test(test_barge_in_threshold_is_the_assistants),
        cmocka_unit_test(test_no_intent_gets_fallback),
        cmocka_unit_test(test_call_end_records_what_was_heard),
        cmocka_unit_test(test_reply_lost_with_a_broker_is_recorded),
        cmocka_unit_test(test_restart_carries_on),
        cmocka_unit_test(test_goodbye_hangs_up),
    };
    return cmocka_run_group_tests(tests, setup, teardown);
}
