/* Unit tests for broker/transcript: lines written into a real slot and read back,
 * the state a restarted broker rebuilds (turns, last intent, interrupted), odd
 * characters flattened, and compaction when the area is full: the newest lines
 * kept, the count of the dropped ones carried in an S: line. */
#include <errno.h>
#include <setjmp.h>
#include <stdarg.h>
#include <stddef.h>
#include <stdint.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#include <cmocka.h>

#include "broker/transcript.h"
#include "shm/shm.h"

static vb_shm_t *shm;
static vb_slot_t *slot;

static int setup(void **state)
{
    shm = vb_shm_create(1);
    if (shm == NULL) {
        return -1;
    }
    slot = vb_shm_slot(shm, 0);
    vb_slot_assign(slot);
    return 0;
}

static int teardown(void **state)
{
    vb_shm_destroy(shm);
    return 0;
}

static void test_lines_and_state(void **state)
{
    vb_transcript_state_t st = {0}, back;
    char buf[VB_SLOT_TRANSCRIPT + 1];
    vb_slot_assign(slot);
    assert_int_equal(vb_transcript_restore(slot, &back), 0);
    assert_int_equal(back.turns, 0);
    assert_int_equal(vb_transcript_add(slot, &st, 'A', NULL, "Hello, how can I help?"), 0);
    assert_int_equal(vb_transcript_add(slot, &st, 'C', "hours", "when are you open"), 0);
    assert_int_equal(vb_transcript_add(slot, &st, 'A', "hours", "Nine to five.\nDaily."), 0);
    assert_int_equal(vb_transcript_interrupted(slot, &st), 0);
    assert_int_equal(vb_transcript_add(slot, &st, 'C', "a:b\nc", "x: y"), 0);
    assert_int_equal(vb_transcript_add(slot, &st, 'X', NULL, "no"), -EINVAL);
    vb_slot_transcript_read(slot, buf, sizeof(buf));
    assert_string_equal(buf, "A::Hello, how can I help?\n"
                             "C:hours:when are you open\n"
                             "A::Nine to five. Daily.\n"
                             "I::\n"
                             "C:a b c:x: y\n");
    assert_int_equal(st.turns, 4);
    assert_string_equal(st.last_intent, "a b c");
    assert_int_equal(vb_transcript_restore(slot, &back), 1);
    assert_int_equal(back.turns, 4);
    assert_string_equal(back.last_intent, "a b c");
    assert_int_equal(back.last_speaker, 'C');
}

static void test_parse_tolerant(void **state)
{
    vb_transcript_state_t st;
    const char *t = "S:12:booking\ngarbage\nA::hi\nC::mumble\nI::\nZ:1:2\nC:prices:how";
    vb_transcript_parse(t, strlen(t), &st);
    assert_int_equal(st.turns, 15);
    assert_string_equal(st.last_intent, "prices");
    const char *u = "S:3:hours\nA::ok\nI::";
    vb_transcript_parse(u, strlen(u), &st);
    assert_int_equal(st.turns, 4);
    assert_string_equal(st.last_intent, "hours"); /* from the dropped lines */
    assert_true(st.interrupted);
    vb_transcript_parse("", 0, &st);
    assert_int_equal(st.turns, 0);
    assert_int_equal(st.last_speaker, 0);
}

/* An agent turn with no end line after it is one a broker died in. */
static void test_open_agent_turn(void **state)
{
    vb_transcript_state_t st;
    const char *open = "S:4:hours\nC:hours:when\nA::We open at nine.";
    vb_transcript_parse(open, strlen(open), &st);
    assert_true(st.agent_open);
    assert_int_equal(st.agent_turn, 6);
    assert_string_equal(st.agent_text, "We open at nine.");
    const char *ended = "A::We open at nine.\nE::\nC:where:where";
    vb_transcript_parse(ended, strlen(ended), &st);
    assert_false(st.agent_open);
    const char *cut = "A::We open at nine.\nI::";
    vb_transcript_parse(cut, strlen(cut), &st);
    assert_false(st.agent_open);
    assert_true(st.interrupted);
}

/* Many turns: the area never overflows, the newest lines stay, the count goes on. */
static void test_compaction(void **state)
{
    vb_transcript_state_t st = {0}, back;
    char buf[VB_SLOT_TRANSCRIPT + 1], text[400];
    vb_slot_assign(slot);
    memset(text, 'w', sizeof(text) - 1);
    text[sizeof(text) - 1] = '\0';
    for (int i = 0; i < 200; i++) {
        char intent[16];
        snprintf(intent, sizeof(intent), "i%d", i);
        text[0] = (char)('0' + i % 10);
        assert_int_equal(vb_transcript_add(slot, &st, i % 2 ? 'C' : 'A', intent, text), 0);
    }
    size_t len = vb_slot_transcript_read(slot, buf, sizeof(buf));
    assert_true(len <= VB_SLOT_TRANSCRIPT);
    assert_memory_equal(buf, "S:", 2);
    assert_int_equal(vb_transcript_restore(slot, &back), 1);
    assert_int_equal(back.turns, 200);
    assert_string_equal(back.last_intent, "i199");
    assert_int_equal(st.turns, 200);
    /* the last line is the last turn */
    assert_non_null(strstr(buf, "C:i199:9www"));
}

static void test_compact_buffer(void **state)
{
    char out[64], big[256];
    const char *t = "A::one\nC:x:two\nA::three\nC:y:four\n";
    size_t n = vb_transcript_compact(t, strlen(t), big, 2 * sizeof(big));
    assert_int_equal(n, strlen("S:0:\n") + strlen(t)); /* all of it fits */
    assert_memory_equal(big + 5, t, strlen(t));
    n = vb_transcript_compact(t, strlen(t), out, sizeof(out) * 2);
    out[n] = '\0';
    vb_transcript_state_t st;
    vb_transcript_parse(out, n, &st);
    assert_int_equal(st.turns, 4);
    assert_string_equal(st.last_intent, "y");
    assert_true(n <= sizeof(out));
}

int main(void)
{
    const struct CMUnitTest tests[] = {
        cmocka_unit_test(test_lines_and_state),
        cmocka_unit_test(test_parse_tolerant),
        cmocka_unit_test(test_open_agent_turn),
        cmocka_unit_test(test_compaction),
        cmocka_unit_test(test_compact_buffer),
    };
    return cmocka_run_group_tests(tests, setup, teardown);
}
