/* Unit tests for worker/mstream: every example message of provider-protocols.md §0 parses,
 * malformed ones fail with the right code, both parsers agree, and every builder's output
 * parses back to what went in. */
#include <setjmp.h>
#include <stdarg.h>
#include <stddef.h>
#include <stdint.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#include <cmocka.h>

#include "common/base64.h"
#include "common/stats.h"
#include "worker/mstream.h"

typedef int (*parse_fn)(const char *, size_t, vb_ms_msg_t *);

static vb_ms_msg_t msg, msg2;

/* Parses S with both parsers; they must agree on the code and on every field. */
static int parse(const char *s)
{
    int rc = vb_ms_parse(s, strlen(s), &msg);
    int rc2 = vb_ms_parse_jansson(s, strlen(s), &msg2);
    if (rc != rc2) {
        fail_msg("hand %d, jansson %d for %s", rc, rc2, s);
    }
    if (rc == 0) {
        assert_int_equal(msg.event, msg2.event);
        assert_string_equal(msg.stream_sid, msg2.stream_sid);
        assert_string_equal(msg.call_sid, msg2.call_sid);
        assert_string_equal(msg.account_sid, msg2.account_sid);
        assert_string_equal(msg.call_id, msg2.call_id);
        assert_string_equal(msg.mark_name, msg2.mark_name);
        assert_string_equal(msg.digit, msg2.digit);
        assert_int_equal(msg.seq, msg2.seq);
        assert_int_equal(msg.chunk, msg2.chunk);
        assert_int_equal(msg.timestamp_ms, msg2.timestamp_ms);
        assert_int_equal(msg.track_inbound, msg2.track_inbound);
        assert_int_equal(msg.payload_len, msg2.payload_len);
        assert_memory_equal(msg.payload, msg2.payload, msg.payload_len);
    }
    return rc;
}

static void test_connected(void **state)
{
    (void)state;
    assert_int_equal(
        parse("{\"event\":\"connected\",\"protocol\":\"Call\",\"version\":\"1.0.0\"}"), 0);
    assert_int_equal(msg.event, VB_MS_CONNECTED);
    assert_int_equal(msg.seq, 0);
    assert_string_equal(msg.stream_sid, "");
}

#define START_MSG(fmt)                                                                         \
    "{\"event\":\"start\",\"sequenceNumber\":\"1\",\"start\":{\"accountSid\":\"AC123\","       \
    "\"streamSid\":\"MZ456\",\"callSid\":\"CA789\",\"tracks\":[\"inbound\"],"                  \
    "\"customParameters\":{\"FirstName\":\"Jane\",\"call_id\":\"c-42\"},\"mediaFormat\":" fmt  \
    "},\"streamSid\":\"MZ456\"}"

static void test_start(void **state)
{
    (void)state;
    assert_int_equal(
        parse(START_MSG("{\"encoding\":\"audio/x-mulaw\",\"sampleRate\":8000,\"channels\":1}")),
        0);
    assert_int_equal(msg.event, VB_MS_START);
    assert_int_equal(msg.seq, 1);
    assert_string_equal(msg.account_sid, "AC123");
    assert_string_equal(msg.stream_sid, "MZ456");
    assert_string_equal(msg.call_sid, "CA789");
    assert_string_equal(msg.call_id, "c-42");
    assert_int_equal(msg.track_inbound, 1);

    /* The §0 example verbatim (no call_id, sids with an ellipsis). */
    assert_int_equal(
        parse("{\"event\":\"start\",\"sequenceNumber\":\"1\",\"start\":{\"accountSid\":"
              "\"AC\xe2\x80\xa6\",\"streamSid\":\"MZ\xe2\x80\xa6\",\"callSid\":\"CA\xe2\x80"
              "\xa6\",\"tracks\":[\"inbound\"],\"customParameters\":{\"FirstName\":"
              "\"Jane\"},\"mediaFormat\":{\"encoding\":\"audio/x-mulaw\",\"sampleRate\":"
              "8000,\"channels\":1}},\"streamSid\":\"MZ\xe2\x80\xa6\"}"),
        0);
    assert_string_equal(msg.call_id, "");
    assert_string_equal(msg.call_sid, "CA\xe2\x80\xa6");

    /* Only an outbound track. */
    assert_int_equal(
        parse("{\"event\":\"start\",\"start\":{\"accountSid\":\"A\",\"streamSid\":\"M\","
              "\"callSid\":\"C\",\"tracks\":[\"outbound\"],\"mediaFormat\":{\"encoding\":"
              "\"audio/x-mulaw\",\"sampleRate\":8000,\"channels\":1}}}"),
        0);
    assert_int_equal(msg.track_inbound, 0);
}

static void test_start_bad_format(void **state)
{
    (void)state;
    static const char *const fmts[] = {
        "{\"encoding\":\"audio/x-alaw\",\"sampleRate\":8000,\"channels\":1}",
        "{\"encoding\":\"audio/x-mulaw\",\"sampleRate\":16000,\"channels\":1}",
        "{\"encoding\":\"audio/x-mulaw\",\"sampleRate\":8000,\"channels\":2}",
        "{\"encoding\":\"audio/x-mulaw\",\"sampleRate\":\"8000\",\"channels\":1}",
        "{\"encoding\":\"audio/x-mulaw\",\"sampleRate\":8000.0,\"channels\":1}",
        "{\"encoding\":\"audio/x-mulaw\",\"channels\":1}",
        "\"audio/x-mulaw\"",
    };
    char buf[1024];
    for (size_t i = 0; i < sizeof(fmts) / sizeof(fmts[0]); i++) {
        snprintf(buf, sizeof(buf), START_MSG("%s"), fmts[i]);
        if (parse(buf) != -VB_MS_EFORMAT) {
            fail_msg("accepted format %s", fmts[i]);
        }
    }
    assert_int_equal(
        parse("{\"event\":\"start\",\"start\":{\"accountSid\":\"A\",\"streamSid\":\"M\","
              "\"callSid\":\"C\"}}"),
        -VB_MS_EFORMAT);
}

static void test_start_bad_fields(void **state)
{
    (void)state;
    static const char *const bad[] = {
        "{\"event\":\"start\"}",
        "{\"event\":\"start\",\"start\":[]}",
        "{\"event\":\"start\",\"start\":{\"streamSid\":\"M\",\"callSid\":\"C\"}}",
        "{\"event\":\"start\",\"start\":{\"accountSid\":\"A\",\"streamSid\":\"M\"}}",
        "{\"event\":\"start\",\"start\":{\"accountSid\":\"A\",\"callSid\":\"C\"}}",
        "{\"event\":\"start\",\"start\":{\"accountSid\":1,\"streamSid\":\"M\",\"callSid\":"
        "\"C\"}}",
        "{\"event\":\"start\",\"start\":{\"accountSid\":\"A\",\"streamSid\":\"M\",\"callSid\":"
        "\"C\","
        "\"customParameters\":{\"call_id\":7}}}",
        "{\"event\":\"start\",\"start\":{\"accountSid\":\"A\",\"streamSid\":\"M\",\"callSid\":"
        "\"C\","
        "\"customParameters\":{\"call_id\":"
        "\"0123456789012345678901234567890123456789012345678901"
        "234567890123\"}}}",
        "{\"event\":\"start\",\"start\":{\"accountSid\":\"A\",\"streamSid\":"
        "\"0123456789012345678901"
        "23456789012345678901234567\",\"callSid\":\"C\"}}",
        "{\"event\":\"start\",\"start\":{\"accountSid\":\"A\",\"streamSid\":\"M\",\"callSid\":"
        "\"C\","
        "\"tracks\":\"inbound\"}}",
    };
    for (size_t i = 0; i < sizeof(bad) / sizeof(bad[0]); i++) {
        if (parse(bad[i]) != -VB_MS_EFIELD) {
            fail_msg("not EFIELD: %s", bad[i]);
        }
    }
}

static void test_media(void **state)
{
    (void)state;
    uint8_t frame[160];
    char b64[VB_BASE64_ENCLEN(160) + 1], buf[512];
    for (int i = 0; i < 160; i++) {
        frame[i] = (uint8_t)(i * 7);
    }
    vb_base64_encode(frame, 160, b64);
    snprintf(buf, sizeof(buf),
             "{\"event\":\"media\",\"sequenceNumber\":\"4\",\"media\":{\"track\":\"inbound\","
             "\"chunk\":\"2\",\"timestamp\":\"20\",\"payload\":\"%s\"},\"streamSid\":\"MZ1\"}",
             b64);
    assert_int_equal(parse(buf), 0);
    assert_int_equal(msg.event, VB_MS_MEDIA);
    assert_int_equal(msg.seq, 4);
    assert_int_equal(msg.chunk, 2);
    assert_int_equal(msg.timestamp_ms, 20);
    assert_int_equal(msg.track_inbound, 1);
    assert_string_equal(msg.stream_sid, "MZ1");
    assert_int_equal(msg.payload_len, 160);
    assert_memory_equal(msg.payload, frame, 160);

    /* The §0 example's payload prefix, padded out to whole quanta, and integers allowed. */
    assert_int_equal(parse("{\"event\":\"media\",\"sequenceNumber\":4,\"media\":{\"track\":"
                           "\"outbound\",\"chunk\":2,\"timestamp\":4294967295,\"payload\":"
                           "\"no+JhoaJjpzS\"},\"streamSid\":\"MZ\"}"),
                     0);
    assert_int_equal(msg.track_inbound, 0);
    assert_int_equal(msg.timestamp_ms, 4294967295u);
    assert_int_equal(msg.payload_len, 9);
    assert_int_equal(msg.payload[0], 0x9E);

    /* Escapes in the payload ("\/" is '/'), and server-side media without track. */
    assert_int_equal(parse("{\"event\":\"media\",\"streamSid\":\"MZ\",\"media\":{\"payload\":"
                           "\"\\/\\/\\/\\u002f\"}}"),
                     0);
    assert_int_equal(msg.payload_len, 3);
    assert_int_equal(msg.payload[0], 0xFF);
    assert_int_equal(msg.track_inbound, 1);
}

static void test_media_sizes(void **state)
{
    (void)state;
    /* B4: 0, 1, 159, 160, 161 and 16,000 bytes. */
    static const size_t sizes[] = {0, 1, 159, 160, 161, 8000, 8001, 16000};
    uint8_t *frame = calloc(16000, 1);
    char *buf = malloc(VB_MS_MEDIA_MSG_CAP(16000));
    assert_non_null(frame);
    assert_non_null(buf);
    for (size_t i = 0; i < sizeof(sizes) / sizeof(sizes[0]); i++) {
        size_t n = vb_ms_build_media_in(buf, VB_MS_MEDIA_MSG_CAP(16000), 3, "MZ", 1, 0, frame,
                                        sizes[i]);
        assert_true(n > 0);
        int rc = parse(buf);
        if (sizes[i] == 0 || sizes[i] > VB_MS_MAX_PAYLOAD) {
            assert_int_equal(rc, -VB_MS_ESIZE);
        } else {
            assert_int_equal(rc, 0);
            assert_int_equal(msg.payload_len, sizes[i]);
        }
    }
    free(buf);
    free(frame);
}

static void test_media_bad(void **state)
{
    (void)state;
    static const struct {
        const char *json;
        int rc;
    } cases[] = {
        {"{\"event\":\"media\",\"media\":{\"payload\":\"Zg\"}}", -VB_MS_EBASE64},
        {"{\"event\":\"media\",\"media\":{\"payload\":\"Zg=\"}}", -VB_MS_EBASE64},
        {"{\"event\":\"media\",\"media\":{\"payload\":\"Zm9v Zm9v\"}}", -VB_MS_EBASE64},
        {"{\"event\":\"media\",\"media\":{\"payload\":\"Zm9v\\nZm9v\"}}", -VB_MS_EBASE64},
        {"{\"event\":\"media\",\"media\":{\"payload\":\"Zm9v*m9v\"}}", -VB_MS_EBASE64},
        {"{\"event\":\"media\",\"media\":{\"payload\":\"\"}}", -VB_MS_ESIZE},
        {"{\"event\":\"media\",\"media\":{\"payload\":123}}", -VB_MS_EFIELD},
        {"{\"event\":\"media\",\"media\":{}}", -VB_MS_EFIELD},
        {"{\"event\":\"media\"}", -VB_MS_EFIELD},
        {"{\"event\":\"media\",\"media\":\"Zm9v\"}", -VB_MS_EFIELD},
        {"{\"event\":\"media\",\"media\":{\"track\":\"both\",\"payload\":\"Zm9v\"}}",
         -VB_MS_EFIELD},
        {"{\"event\":\"media\",\"media\":{\"chunk\":\"x\",\"payload\":\"Zm9v\"}}",
         -VB_MS_EFIELD},
        {"{\"event\":\"media\",\"media\":{\"chunk\":\"-1\",\"payload\":\"Zm9v\"}}",
         -VB_MS_EFIELD},
        {"{\"event\":\"media\",\"media\":{\"chunk\":-1,\"payload\":\"Zm9v\"}}", -VB_MS_EFIELD},
        {"{\"event\":\"media\",\"media\":{\"timestamp\":\"4294967296\",\"payload\":\"Zm9v\"}}",
         -VB_MS_EFIELD},
        {"{\"event\":\"media\",\"media\":{\"timestamp\":1.5,\"payload\":\"Zm9v\"}}",
         -VB_MS_EFIELD},
        {"{\"event\":\"media\",\"sequenceNumber\":\"\",\"media\":{\"payload\":\"Zm9v\"}}",
         -VB_MS_EFIELD},
        {"{\"event\":\"media\",\"sequenceNumber\":99999999999999999999,\"media\":{\"payload\":"
         "\"Zm9v\"}}",
         -VB_MS_EFIELD},
    };
    for (size_t i = 0; i < sizeof(cases) / sizeof(cases[0]); i++) {
        int rc = vb_ms_parse(cases[i].json, strlen(cases[i].json), &msg);
        if (rc != cases[i].rc) {
            fail_msg("%s: %d, want %d", cases[i].json, rc, cases[i].rc);
        }
    }
}

static void test_mark_dtmf_stop_clear(void **state)
{
    (void)state;
    assert_int_equal(parse("{\"event\":\"mark\",\"sequenceNumber\":\"4\",\"streamSid\":\"MZ\","
                           "\"mark\":{\"name\":\"my label\"}}"),
                     0);
    assert_int_equal(msg.event, VB_MS_MARK);
    assert_string_equal(msg.mark_name, "my label");
    assert_int_equal(parse("{\"event\":\"dtmf\",\"streamSid\":\"MZ\",\"sequenceNumber\":\"5\","
                           "\"dtmf\":{\"track\":\"inbound_track\",\"digit\":\"1\"}}"),
                     0);
    assert_int_equal(msg.event, VB_MS_DTMF);
    assert_string_equal(msg.digit, "1");
    assert_int_equal(msg.seq, 5);
    assert_int_equal(
        parse("{\"event\":\"stop\",\"sequenceNumber\":\"5\",\"stop\":{\"accountSid\":"
              "\"AC1\",\"callSid\":\"CA1\"},\"streamSid\":\"MZ\"}"),
        0);
    assert_int_equal(msg.event, VB_MS_STOP);
    assert_string_equal(msg.account_sid, "AC1");
    assert_string_equal(msg.call_sid, "CA1");
    assert_int_equal(parse("{\"event\":\"clear\",\"streamSid\":\"MZ\"}"), 0);
    assert_int_equal(msg.event, VB_MS_CLEAR);

    assert_int_equal(parse("{\"event\":\"mark\",\"mark\":{}}"), -VB_MS_EFIELD);
    assert_int_equal(parse("{\"event\":\"mark\"}"), -VB_MS_EFIELD);
    assert_int_equal(parse("{\"event\":\"dtmf\",\"dtmf\":{\"digit\":\"\"}}"), -VB_MS_EFIELD);
    assert_int_equal(parse("{\"event\":\"dtmf\",\"dtmf\":{\"digit\":\"1234\"}}"),
                     -VB_MS_EFIELD);
    assert_int_equal(parse("{\"event\":\"dtmf\",\"dtmf\":{\"digit\":1}}"), -VB_MS_EFIELD);
    assert_int_equal(parse("{\"event\":\"stop\",\"stop\":5}"), -VB_MS_EFIELD);
}

static void test_unknown_and_event_errors(void **state)
{
    (void)state;
    assert_int_equal(parse("{\"event\":\"transcription\",\"x\":1}"), -VB_MS_EUNKNOWN);
    assert_int_equal(parse("{\"event\":\"Media\"}"), -VB_MS_EUNKNOWN);
    assert_int_equal(parse("{\"event\":\"\"}"), -VB_MS_EUNKNOWN);
    assert_int_equal(parse("{\"event\":\"medi\\u0061\",\"media\":{\"payload\":\"AAAA\"}}"), 0);
    assert_int_equal(parse("{\"event\":7}"), -VB_MS_EFIELD);
    assert_int_equal(parse("{\"Event\":\"media\"}"), -VB_MS_EFIELD);
    assert_int_equal(parse("{}"), -VB_MS_EFIELD);
    assert_int_equal(parse("[]"), -VB_MS_EFIELD);
    assert_int_equal(parse("[{\"event\":\"connected\"}]"), -VB_MS_EFIELD);
}

static void test_bad_json(void **state)
{
    (void)state;
    static const char *const bad[] = {
        "",
        " ",
        "{",
        "}",
        "{\"event\":\"media\"",
        "{\"event\":\"media\",}",
        "{\"event\" \"x\"}",
        "{\"event\":'media'}",
        "{event:\"media\"}",
        "\"media\"",
        "42",
        "null",
        "{\"event\":\"media\"} x",
        "{\"event\":\"media\"}{}",
        "{\"a\":01}",
        "{\"a\":1.}",
        "{\"a\":.5}",
        "{\"a\":1e}",
        "{\"a\":-}",
        "{\"a\":tru}",
        "{\"a\":nul}",
        "{\"a\":[1,]}",
        "{\"a\":\"\\x\"}",
        "{\"a\":\"\\u12\"}",
        "{\"a\":\"\\u0000\"}",
        "{\"a\":\"\\ud800\"}",
        "{\"a\":\"\\udc00\"}",
        "{\"a\":\"\\ud800\\u0041\"}",
        "{\"a\":\"tab\there\"}",
        "{\"a\":\"\xff\"}",
        "{\"a\":\"\xc0\xaf\"}",
        "{\"a\":\"\xed\xa0\x80\"}",
        "{\"a\":\"\xf4\x90\x80\x80\"}",
        "{\"a\":\"\xe2\x82\"}",
        "\xef\xbb\xbf{}",
        "{\"event\":\"media\",\"media\":{\"payload\":\"Zm9v\"}",
    };
    for (size_t i = 0; i < sizeof(bad) / sizeof(bad[0]); i++) {
        if (parse(bad[i]) != -VB_MS_EBADJSON) {
            fail_msg("not EBADJSON: %s", bad[i]);
        }
    }
    /* Deep nesting is refused without recursing without bound. */
    char deep[300];
    memset(deep, '[', sizeof(deep) - 1);
    deep[sizeof(deep) - 1] = '\0';
    assert_int_equal(vb_ms_parse(deep, strlen(deep), &msg), -VB_MS_EBADJSON);
    /* A NUL byte inside the length is not the end of the message (jansson 2.14 lets the
     * second one through: see tests/fuzz/fuzz_mstream.c). */
    assert_int_equal(vb_ms_parse("{\"event\":\"clear\"}\0", 18, &msg), -VB_MS_EBADJSON);
    assert_int_equal(vb_ms_parse("{\"event\":\"clear\",\"x\":1\0}", 24, &msg), -VB_MS_EBADJSON);
    /* Not NUL-terminated: only LEN bytes are read. */
    const char *s = "{\"event\":\"clear\"}garbage";
    assert_int_equal(vb_ms_parse(s, 17, &msg), 0);
}

static void test_json_edge_cases_accepted(void **state)
{
    (void)state;
    /* Whitespace, unknown fields of every type, duplicate keys (the last wins, whole). */
    assert_int_equal(
        parse(" \r\n\t{ \"x\" : [ 1 , -2.5e+3 , true , false , null , { } , [ ] , "
              "\"\\\"\\\\\\/\\b\\f\\n\\r\\t\\u00e9\\ud83d\\ude00\" ] , \"event\" : "
              "\"mark\" , \"mark\" : { \"name\" : \"a\" } , \"mark\" : { \"name\" : "
              "\"b\\u00e9\" } } \n"),
        0);
    assert_string_equal(msg.mark_name, "b\xc3\xa9");
    assert_int_equal(
        parse("{\"event\":\"start\",\"start\":{\"accountSid\":\"A\",\"streamSid\":\"M\","
              "\"callSid\":\"C\",\"customParameters\":{\"call_id\":\"x\"},"
              "\"mediaFormat\":{\"encoding\":\"audio/x-mulaw\",\"sampleRate\":8000,"
              "\"channels\":1}},\"start\":{\"accountSid\":\"A\",\"streamSid\":\"M\","
              "\"callSid\":\"C\"}}"),
        -VB_MS_EFORMAT);
    assert_int_equal(parse("{\"event\":\"mark\",\"event\":\"clear\"}"), 0);
    assert_int_equal(msg.event, VB_MS_CLEAR);
    /* UTF-8 of every length in a value. */
    assert_int_equal(parse("{\"event\":\"mark\",\"mark\":{\"name\":\"\xc3\xa9\xe2\x82\xac"
                           "\xf0\x9f\x98\x80\"}}"),
                     0);
    assert_int_equal(parse("{\"event\":\"mark\",\"mark\":{\"n\\u0061me\":\"esc key\"}}"), 0);
    assert_string_equal(msg.mark_name, "esc key");
}

/* ---- builders
 * -------------------------------------------------------------------------------- */

static void test_build_outbound(void **state)
{
    (void)state;
    uint8_t ulaw[160];
    memset(ulaw, 0xFF, sizeof(ulaw));
    char buf[VB_MS_MEDIA_MSG_CAP(160)];
    size_t n = vb_ms_build_media(buf, sizeof(buf), "MZ1", ulaw, 160);
    assert_int_equal(n, strlen(buf));
    const char *head =
        "{\"event\":\"media\",\"streamSid\":\"MZ1\",\"media\":{\"payload\":\"////";
    assert_int_equal(strncmp(buf, head, strlen(head)), 0);
    assert_int_equal(parse(buf), 0);
    assert_int_equal(msg.event, VB_MS_MEDIA);
    assert_int_equal(msg.payload_len, 160);
    assert_memory_equal(msg.payload, ulaw, 160);
    assert_int_equal(vb_ms_build_media(buf, n, "MZ1", ulaw, 160), 0); /* no room for NUL */

    n = vb_ms_build_mark(buf, sizeof(buf), "MZ1", "part \"1\"\n");
    assert_string_equal(buf, "{\"event\":\"mark\",\"streamSid\":\"MZ1\",\"mark\":{\"name\":"
                             "\"part \\\"1\\\"\\u000a\"}}");
    assert_int_equal(parse(buf), 0);
    assert_string_equal(msg.mark_name, "part \"1\"\n");
    n = vb_ms_build_clear(buf, sizeof(buf), "MZ1");
    assert_string_equal(buf, "{\"event\":\"clear\",\"streamSid\":\"MZ1\"}");
    assert_int_equal(n, strlen(buf));
    assert_int_equal(vb_ms_build_clear(buf, 10, "MZ1"), 0);
}

static void test_build_inbound(void **state)
{
    (void)state;
    char buf[1024];
    assert_true(vb_ms_build_connected(buf, sizeof(buf)) > 0);
    assert_int_equal(parse(buf), 0);
    assert_int_equal(msg.event, VB_MS_CONNECTED);

    assert_true(vb_ms_build_start(buf, sizeof(buf), 1, "MZ9", "AC9", "CA9", "call-\"x\"") > 0);
    assert_int_equal(parse(buf), 0);
    assert_int_equal(msg.event, VB_MS_START);
    assert_int_equal(msg.seq, 1);
    assert_string_equal(msg.stream_sid, "MZ9");
    assert_string_equal(msg.account_sid, "AC9");
    assert_string_equal(msg.call_sid, "CA9");
    assert_string_equal(msg.call_id, "call-\"x\"");
    assert_int_equal(msg.track_inbound, 1);

    uint8_t ulaw[160];
    for (int i = 0; i < 160; i++) {
        ulaw[i] = (uint8_t)(255 - i);
    }
    assert_true(vb_ms_build_media_in(buf, sizeof(buf), 7, "MZ9", 6, 100, ulaw, 160) > 0);
    assert_int_equal(parse(buf), 0);
    assert_int_equal(msg.event, VB_MS_MEDIA);
    assert_int_equal(msg.seq, 7);
    assert_int_equal(msg.chunk, 6);
    assert_int_equal(msg.timestamp_ms, 100);
    assert_int_equal(msg.track_inbound, 1);
    assert_memory_equal(msg.payload, ulaw, 160);

    assert_true(vb_ms_build_mark_in(buf, sizeof(buf), 8, "MZ9", "turn-3") > 0);
    assert_int_equal(parse(buf), 0);
    assert_string_equal(msg.mark_name, "turn-3");
    assert_true(vb_ms_build_dtmf(buf, sizeof(buf), 9, "MZ9", "#") > 0);
    assert_int_equal(parse(buf), 0);
    assert_string_equal(msg.digit, "#");
    assert_true(vb_ms_build_stop(buf, sizeof(buf), 10, "MZ9", "AC9", "CA9") > 0);
    assert_int_equal(parse(buf), 0);
    assert_int_equal(msg.event, VB_MS_STOP);
    assert_int_equal(msg.seq, 10);
    assert_string_equal(msg.call_sid, "CA9");
    assert_string_equal(msg.stream_sid, "MZ9");

    /* Every builder refuses a buffer one byte short. */
    size_t n = vb_ms_build_start(buf, sizeof(buf), 1, "MZ9", "AC9", "CA9", "c");
    assert_int_equal(vb_ms_build_start(buf, n, 1, "MZ9", "AC9", "CA9", "c"), 0);
    assert_int_equal(vb_ms_build_start(buf, n + 1, 1, "MZ9", "AC9", "CA9", "c"), n);
}

static void test_counters(void **state)
{
    (void)state;
    uint64_t j = VB_STAT_GET(mstream_bad_json), b = VB_STAT_GET(mstream_bad_base64);
    uint64_t u = VB_STAT_GET(mstream_unknown_events), f = VB_STAT_GET(mstream_bad_frames);
    vb_ms_count_error(-VB_MS_EBADJSON);
    vb_ms_count_error(-VB_MS_EBASE64);
    vb_ms_count_error(-VB_MS_EBASE64);
    vb_ms_count_error(-VB_MS_EUNKNOWN);
    vb_ms_count_error(-VB_MS_ESIZE);
    vb_ms_count_error(-VB_MS_EFIELD);
    vb_ms_count_error(0);
    assert_int_equal(VB_STAT_GET(mstream_bad_json), j + 1);
    assert_int_equal(VB_STAT_GET(mstream_bad_base64), b + 2);
    assert_int_equal(VB_STAT_GET(mstream_unknown_events), u + 1);
    assert_int_equal(VB_STAT_GET(mstream_bad_frames), f + 1);
    assert_string_equal(vb_ms_strerror(-VB_MS_EFORMAT),
                        "media format is not audio/x-mulaw 8000 Hz mono");
}

int main(void)
{
    const struct CMUnitTest tests[] = {
        cmocka_unit_test(test_connected),
        cmocka_unit_test(test_start),
        cmocka_unit_test(test_start_bad_format),
        cmocka_unit_test(test_start_bad_fields),
        cmocka_unit_test(test_media),
        cmocka_unit_test(test_media_sizes),
        cmocka_unit_test(test_media_bad),
        cmocka_unit_test(test_mark_dtmf_stop_clear),
        cmocka_unit_test(test_unknown_and_event_errors),
        cmocka_unit_test(test_bad_json),
        cmocka_unit_test(test_json_edge_cases_accepted),
        cmocka_unit_test(test_build_outbound),
        cmocka_unit_test(test_build_inbound),
        cmocka_unit_test(test_counters),
    };
    return cmocka_run_group_tests(tests, NULL, NULL);
}
