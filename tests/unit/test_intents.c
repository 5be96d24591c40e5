/* Unit tests for broker/intents: parsing (good, bad and empty intents JSON),
 * normalisation, matching (exact, phrase inside a longer line, word overlap,
 * nothing), end_call and the demo assistant's file. */
#include <errno.h>
#include <setjmp.h>
#include <stdarg.h>
#include <stddef.h>
#include <stdint.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#include <cmocka.h>

#include "broker/intents.h"
#include "tests/unit/voice_testutil.h"

static const char *const json =
    "[{\"name\":\"hours\",\"patterns\":[\"What are your opening hours?\",\"When are you "
    "open\"],\"reply\":\"We are open nine to five.\",\"end_call\":false},"
    " {\"name\":\"location\",\"patterns\":[\"where are you located\",\"What's your "
    "address\"],\"reply\":\"Twelve High Street.\"},"
    " {\"name\":\"bye\",\"patterns\":[\"goodbye\",\"that is all\"],\"reply\":\"Bye!\","
    "\"end_call\":true}]";

static vb_intents_t *parse_ok(const char *text)
{
    char err[256] = "";
    vb_intents_t *in = vb_intents_parse(text, err, sizeof(err));
    if (in == NULL) {
        fail_msg("parse failed: %s", err);
    }
    return in;
}

static const char *match_name(const vb_intents_t *in, const char *line)
{
    vb_intent_match_t m;
    return vb_intents_match(in, line, &m) ? m.intent->name : NULL;
}

static void test_normalise(void **state)
{
    char out[64];
    assert_int_equal(vb_intents_normalise("  What's   YOUR address?! ", out, sizeof(out)), 19);
    assert_string_equal(out, "what's your address");
    vb_intents_normalise("'quoted' -- rock'n'roll, 24/7", out, sizeof(out));
    assert_string_equal(out, "quoted rock'n'roll 24 7");
    vb_intents_normalise("\xc3\xa9t\xc3\xa9 ok", out, sizeof(out));
    assert_string_equal(out, "t ok"); /* bytes outside ASCII separate words */
    assert_int_equal(vb_intents_normalise("", out, sizeof(out)), 0);
    assert_int_equal(vb_intents_normalise("hello wonderful", out, 10), 5);
    assert_string_equal(out, "hello"); /* cut at a word boundary */
    assert_int_equal(vb_intents_normalise("abcdefghijkl", out, 5), 0);
}

static void test_parse(void **state)
{
    vb_intents_t *in = parse_ok(json);
    assert_int_equal(vb_intents_count(in), 3);
    const vb_intent_t *h = vb_intents_get(in, 0);
    assert_string_equal(h->name, "hours");
    assert_int_equal(h->npatterns, 2);
    assert_string_equal(h->patterns[0], "what are your opening hours");
    assert_string_equal(h->reply, "We are open nine to five.");
    assert_false(h->end_call);
    assert_false(vb_intents_find(in, "location")->end_call); /* end_call defaults to false */
    assert_true(vb_intents_find(in, "bye")->end_call);
    assert_null(vb_intents_find(in, "nope"));
    assert_null(vb_intents_get(in, 3));
    vb_intents_free(in);
}

static void test_parse_empty_and_bad(void **state)
{
    char err[256];
    vb_intents_t *in = parse_ok("");
    assert_int_equal(vb_intents_count(in), 0);
    vb_intent_match_t m;
    assert_int_equal(vb_intents_match(in, "hello", &m), 0);
    vb_intents_free(in);
    in = parse_ok("[]");
    assert_int_equal(vb_intents_count(in), 0);
    vb_intents_free(in);
    static const char *const bad[] = {
        "{",
        "{\"name\":\"x\"}",
        "[1]",
        "[{\"patterns\":[\"a\"]}]",
        "[{\"name\":\"x\",\"patterns\":\"a\"}]",
        "[{\"name\":\"x\",\"patterns\":[1]}]",
        "[{\"name\":\"x\",\"patterns\":[],\"end_call\":\"yes\"}]",
        "[{\"name\":\"\",\"patterns\":[]}]",
    };
    for (size_t i = 0; i < sizeof(bad) / sizeof(bad[0]); i++) {
        err[0] = '\0';
        errno = 0;
        assert_null(vb_intents_parse(bad[i], err, sizeof(err)));
        assert_int_equal(errno, EINVAL);
        assert_true(err[0] != '\0');
    }
}

static void test_match_exact(void **state)
{
    vb_intents_t *in = parse_ok(json);
    vb_intent_match_t m;
    assert_int_equal(vb_intents_match(in, "When are you OPEN?", &m), 1);
    assert_string_equal(m.intent->name, "hours");
    assert_true(m.exact);
    assert_true(m.score == 1.0);
    assert_string_equal(match_name(in, "what's your address"), "location");
    vb_intents_free(in);
}

static void test_match_phrase_inside(void **state)
{
    vb_intents_t *in = parse_ok(json);
    vb_intent_match_t m;
    assert_int_equal(vb_intents_match(in, "hi there, where are you located please", &m), 1);
    assert_string_equal(m.intent->name, "location");
    assert_false(m.exact);
    assert_true(m.score >= 0.9 && m.score < 1.0);
    /* the longer pattern found wins over a shorter one */
    assert_string_equal(match_name(in, "no that is all goodbye"), "bye");
    /* a pattern must be whole words: "goodbyes" is not "goodbye" */
    assert_null(match_name(in, "goodbyes forever"));
    vb_intents_free(in);
}

static void test_match_overlap(void **state)
{
    vb_intents_t *in = parse_ok(json);
    vb_intent_match_t m;
    assert_string_equal(match_name(in, "when do you open"), "hours");
    assert_string_equal(match_name(in, "your opening hours"), "hours");
    assert_string_equal(match_name(in, "where is it located"), "location");
    /* fillers alone do not make a match */
    assert_int_equal(vb_intents_match(in, "are you there", &m), 0);
    assert_null(m.intent);
    assert_true(m.score < VB_INTENT_MIN_SCORE);
    assert_null(match_name(in, "i would like a pizza"));
    assert_null(match_name(in, ""));
    assert_null(match_name(in, "?!"));
    vb_intents_free(in);
}

static void test_demo_file(void **state)
{
    char *text = vt_read_data("demo_intents.json");
    assert_non_null(text);
    vb_intents_t *in = parse_ok(text);
    free(text);
    assert_true(vb_intents_count(in) >= 6);
    assert_string_equal(match_name(in, "What are your opening hours?"), "hours");
    assert_string_equal(match_name(in, "can i speak to a person"), "human");
    assert_string_equal(match_name(in, "could i speak to a real person"), "human");
    assert_string_equal(match_name(in, "how much does a haircut cost"), "prices");
    const vb_intent_t *bye = vb_intents_find(in, "goodbye");
    assert_non_null(bye);
    assert_true(bye->end_call);
    assert_string_equal(match_name(in, "thank you bye"), "goodbye");
    for (size_t i = 0; i < vb_intents_count(in); i++) {
        const vb_intent_t *it = vb_intents_get(in, i);
        assert_true(it->reply[0] != '\0');
        assert_int_equal(it->end_call, strcmp(it->name, "goodbye") == 0);
        for (size_t j = 0; j < it->npatterns; j++) {
            /* every pattern leads back to its own intent */
            assert_string_equal(match_name(in, it->patterns[j]), it->name);
        }
    }
    vb_intents_free(in);
}

int main(void)
{
    const struct CMUnitTest tests[] = {
        cmocka_unit_test(test_normalise),           cmocka_unit_test(test_parse),
        cmocka_unit_test(test_parse_empty_and_bad), cmocka_unit_test(test_match_exact),
        cmocka_unit_test(test_match_phrase_inside), cmocka_unit_test(test_match_overlap),
        cmocka_unit_test(test_demo_file),
    };
    return cmocka_run_group_tests(tests, NULL, NULL);
}
