/* Unit tests for api/form and api/twilio: form bodies, every X-Twilio-Signature vector of
 * provider-protocols.md §0 and §7, the B1 negatives of fault-matrix.md, and TwiML. */
#include <errno.h>
#include <setjmp.h>
#include <stdarg.h>
#include <stddef.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#include <cmocka.h>

#include <openssl/evp.h>
#include <openssl/hmac.h>

#include "api/form.h"
#include "api/twilio.h"
#include "common/base64.h"

#define MYAPP "https://mycompany.com/myapp.php?foo=1&bar=2"
#define VOICE_TOKEN "test_auth_token_0123456789abcdef"
#define JSON_HASH "015abd7f5cc57a2dd94b7590f04ad8084273905ee33ec5cebeae62276a97f862"

static vb_form_t *form_of(const char *body)
{
    vb_form_t *f = vb_form_parse(body, strlen(body));
    assert_non_null(f);
    return f;
}

static void assert_sig(const char *token, const char *url, const vb_form_t *f, const char *want)
{
    char sig[64];
    assert_int_equal(vb_twilio_sign(token, url, f, sig), 0);
    assert_string_equal(sig, want);
    assert_int_equal(vb_twilio_validate(token, url, f, NULL, 0, want), 1);
}

/* ---- form ---------------------------------------------------------------------------- */

static void test_form_decoding(void **state)
{
    (void)state;
    vb_form_t *f = form_of("From=%2B15551230001&Text=hello+world%21&Empty=&Flag&&Utf=%C3%A9&"
                           "From=%2b2&k%3Dx=v%26w");
    assert_int_equal(vb_form_count(f), 7);
    assert_string_equal(vb_form_get(f, "From"), "+15551230001"); /* the first value */
    assert_string_equal(vb_form_get(f, "Text"), "hello world!");
    assert_string_equal(vb_form_get(f, "Empty"), "");
    assert_string_equal(vb_form_get(f, "Flag"), "");
    assert_string_equal(vb_form_get(f, "Utf"), "\xC3\xA9");
    assert_string_equal(vb_form_get(f, "k=x"), "v&w");
    assert_null(vb_form_get(f, "Missing"));
    assert_string_equal(vb_form_name(f, 5), "From");
    assert_string_equal(vb_form_value(f, 5), "+2");
    assert_null(vb_form_name(f, 7));
    vb_form_free(f);

    f = form_of("");
    assert_int_equal(vb_form_count(f), 0);
    vb_form_free(f);
}

static void test_form_rejects(void **state)
{
    (void)state;
    static const char *const bad[] = {"a=%",   "a=%4",  "a=%G1",   "a=%1G",
                                      "%ZZ=1", "a=%00", "a=1&b=x%"};
    for (size_t i = 0; i < sizeof(bad) / sizeof(bad[0]); i++) {
        errno = 0;
        assert_null(vb_form_parse(bad[i], strlen(bad[i])));
        assert_int_equal(errno, EINVAL);
    }
    /* A NUL byte inside the body is refused too. */
    assert_null(vb_form_parse("a=b\0c", 5));
    assert_int_equal(errno, EINVAL);
}

static void test_form_param_cap(void **state)
{
    (void)state;
    size_t n = VB_FORM_MAX_PARAMS + 1;
    char *body = malloc(n * 4 + 1);
    assert_non_null(body);
    size_t o = 0;
    for (size_t i = 0; i < n; i++) {
        o += (size_t)sprintf(body + o, "%sa=", i ? "&" : "");
    }
    errno = 0;
    assert_null(vb_form_parse(body, o));
    assert_int_equal(errno, E2BIG);
    /* One fewer fits. */
    vb_form_t *f = vb_form_parse(body, o - 3);
    assert_non_null(f);
    assert_int_equal(vb_form_count(f), VB_FORM_MAX_PARAMS);
    assert_int_equal(vb_form_add(f, "x", "y"), -E2BIG);
    vb_form_free(f);
    free(body);
}

static void test_form_encode(void **state)
{
    (void)state;
    vb_form_t *f = vb_form_new();
    assert_non_null(f);
    assert_int_equal(vb_form_add(f, "To", "+15558675310"), 0);
    assert_int_equal(vb_form_add(f, "Url", "https://agent.example/twiml?a=1&b=2"), 0);
    assert_int_equal(vb_form_add(f, "Say", "hi there~"), 0);
    char out[256];
    size_t n = vb_form_encode(f, out, sizeof(out));
    assert_string_equal(out, "To=%2B15558675310&Url=https%3A%2F%2Fagent.example%2Ftwiml%3Fa%3D1"
                             "%26b%3D2&Say=hi%20there~");
    assert_int_equal(n, strlen(out));
    assert_int_equal(vb_form_encode(f, out, n), 0); /* no room for the NUL */
    vb_form_t *g = vb_form_parse(out, n);
    assert_non_null(g);
    for (size_t i = 0; i < 3; i++) {
        assert_string_equal(vb_form_name(f, i), vb_form_name(g, i));
        assert_string_equal(vb_form_value(f, i), vb_form_value(g, i));
    }
    vb_form_free(g);
    vb_form_free(f);
}

/* ---- signature vectors ------------------------------------------------------------------ */

static const char *worked_body = "CallSid=CA1234567890ABCDE&Caller=%2B12349013030&Digits=1234&"
                                 "From=%2B12349013030&To=%2B18005551212";

static void test_sig_worked_example(void **state)
{
    (void)state;
    vb_form_t *f = form_of(worked_body);
    const char *want = "0/KCTR6DLpKmkAf8muzZqo1nDgQ=";
    assert_sig("12345", MYAPP, f, want);
    assert_int_equal(vb_twilio_validate("12345",
                                        "https://mycompany.com:443/myapp.php?foo=1&bar=2", f,
                                        NULL, 0, want),
                     1);
    assert_int_equal(vb_twilio_validate("12346", MYAPP, f, NULL, 0, want), 0);
    assert_int_equal(vb_twilio_validate("12345", "http://mycompany.com/myapp.php?foo=1&bar=2",
                                        f, NULL, 0, want),
                     0);
    vb_form_t *g = form_of("CallSid=CA1234567890ABCDE&Caller=%2B12349013030&Digits=1235&"
                           "From=%2B12349013030&To=%2B18005551212");
    assert_int_equal(vb_twilio_validate("12345", MYAPP, g, NULL, 0, want), 0);
    vb_form_free(g);
    vb_form_free(f);
}

static void test_sig_voice_webhook(void **state)
{
    (void)state;
    /* In Twilio's order, not sorted: the signature sorts. */
    vb_form_t *f = form_of("CallSid=CA11111111111111111111111111111111&"
                           "AccountSid=AC00000000000000000000000000000000&From=%2B15551230001&"
                           "To=%2B15559870002&CallStatus=ringing&ApiVersion=2010-04-01&"
                           "Direction=inbound");
    assert_sig(VOICE_TOKEN, "https://voice.example.com/incoming-call", f,
               "ha/pTdgiL+CWHggwgSX9bzOrIv0=");
    vb_form_free(f);
}

static void test_sig_multi_valued(void **state)
{
    (void)state;
    vb_form_t *f = form_of("B=y&B=x&A=b&B=x");
    assert_sig("t", "https://x.test/a", f, "N95ahBPCCyQVfp2Kj9lyjM1ua/o=");
    vb_form_free(f);
}

static void test_sig_json_body(void **state)
{
    (void)state;
    char hash[65];
    vb_twilio_body_sha256("{\"a\":1}", 7, hash);
    assert_string_equal(hash, JSON_HASH);
    const char *url = "https://voice.example.com/hook?bodySHA256=" JSON_HASH;
    const char *want = "ixOeboG8LgWEe7c8s6rQE3cLd4A=";
    char sig[64];
    assert_int_equal(vb_twilio_sign(VOICE_TOKEN, url, NULL, sig), 0);
    assert_string_equal(sig, want);
    assert_int_equal(vb_twilio_validate(VOICE_TOKEN, url, NULL, "{\"a\":1}", 7, want), 1);
    /* The body changed: the hash no longer matches, though the URL signature does. */
    assert_int_equal(vb_twilio_validate(VOICE_TOKEN, url, NULL, "{\"a\":2}", 7, want), 0);
    /* A JSON body whose URL carries no hash is refused. */
    char sig2[64];
    assert_int_equal(vb_twilio_sign(VOICE_TOKEN, "https://voice.example.com/hook", NULL, sig2),
                     0);
    assert_int_equal(
        vb_twilio_validate(VOICE_TOKEN, "https://voice.example.com/hook", NULL, "{}", 2, sig2),
        0);
    assert_int_equal(
        vb_twilio_validate(VOICE_TOKEN, "https://voice.example.com/hook", NULL, NULL, 0, sig2),
        1);
}

static const char *validator_body =
    "CallSid=CA1234567890ABCDE&Caller=%2B14158675309&Digits=1234&"
    "From=%2B14158675309&To=%2B18005551212";

static void test_sig_request_validator(void **state)
{
    (void)state;
    vb_form_t *f = form_of(validator_body);
    assert_sig("12345", MYAPP, f, "RSOYDt4T1cUTdK1PDd93/VVr8B8=");
    assert_sig("12345", "http://mycompany.com:1234/myapp.php?foo=1&bar=2", f,
               "Zmvh+3yNM1Phv2jhDCwEM3q5ebU=");
    vb_form_free(f);

    vb_form_t *d = form_of("Sid=CA123&SidAccount=AC123&Digits=5678&Digits=1234&Digits=1234");
    assert_sig("12345", MYAPP, d, "IK+Dwps556ElfBT0I3Rgjkr1wJU=");
    vb_form_free(d);

    const char *body = "{\"property\": \"value\", \"boolean\": true}";
    char hash[65];
    vb_twilio_body_sha256(body, strlen(body), hash);
    assert_string_equal(hash,
                        "0a1ff7634d9ab3b95db5c9a2dfe9416e41502b283a80c7cf19632632f96e6620");
    /* Not in the reference: this implementation's value, kept as a regression check. */
    char url[256];
    snprintf(url, sizeof(url), "%s&bodySHA256=%s", MYAPP, hash);
    char sig[64];
    assert_int_equal(vb_twilio_sign("12345", url, NULL, sig), 0);
    assert_int_equal(vb_twilio_validate("12345", url, NULL, body, strlen(body), sig), 1);
    assert_string_equal(sig, "a9nBmqA0ju/hNViExpshrM61xv4=");
}

/* ---- default ports ---------------------------------------------------------------------- */

static void check_port_pair(const char *signed_url, const char *presented, int expect)
{
    vb_form_t *f = form_of(validator_body);
    char sig[64];
    assert_int_equal(vb_twilio_sign("12345", signed_url, f, sig), 0);
    if (vb_twilio_validate("12345", presented, f, NULL, 0, sig) != expect) {
        fail_msg("signed %s, presented %s: expected %d", signed_url, presented, expect);
    }
    vb_form_free(f);
}

static void test_sig_default_ports(void **state)
{
    (void)state;
    check_port_pair("https://h.test/p?q=1", "https://h.test:443/p?q=1", 1);
    check_port_pair("https://h.test:443/p?q=1", "https://h.test/p?q=1", 1);
    check_port_pair("http://h.test/p", "http://h.test:80/p", 1);
    check_port_pair("http://h.test:80/p", "http://h.test/p", 1);
    check_port_pair("https://h.test", "https://h.test:443", 1);
    check_port_pair("https://user:pw@h.test/p", "https://user:pw@h.test:443/p", 1);
    check_port_pair("https://[::1]/p", "https://[::1]:443/p", 1);
    /* Only the default port of the scheme, and only the port. */
    check_port_pair("https://h.test/p", "https://h.test:80/p", 0);
    check_port_pair("http://h.test/p", "http://h.test:443/p", 0);
    check_port_pair("https://h.test/p", "https://h.test:8443/p", 0);
    check_port_pair("https://h.test:8443/p", "https://h.test/p", 0);
    check_port_pair("https://h.test:4430/p", "https://h.test:443/p", 0);
}

/* ---- B1 negatives ---------------------------------------------------------------------------
 */

static void expect_invalid(const char *what, const char *token, const char *url,
                           const char *body, const char *sig)
{
    vb_form_t *f = form_of(body);
    if (vb_twilio_validate(token, url, f, NULL, 0, sig) != 0) {
        fail_msg("accepted: %s", what);
    }
    vb_form_free(f);
}

static void test_sig_b1_negatives(void **state)
{
    (void)state;
    const char *good = "RSOYDt4T1cUTdK1PDd93/VVr8B8=";
    const char *vb = validator_body;
    vb_form_t *f = form_of(vb);
    assert_int_equal(vb_twilio_validate("12345", MYAPP, f, NULL, 0, NULL), 0);
    assert_int_equal(vb_twilio_validate("12345", MYAPP, f, NULL, 0, ""), 0);
    assert_int_equal(vb_twilio_validate("", MYAPP, f, NULL, 0, good), 0);
    assert_int_equal(vb_twilio_validate("12345", MYAPP, f, NULL, 0, good), 1);
    vb_form_free(f);

    expect_invalid("wrong token", "54321", MYAPP, vb, good);
    expect_invalid("param changed", "12345", MYAPP,
                   "CallSid=CA1234567890ABCDE&Caller=%2B14158675309&Digits=1235&"
                   "From=%2B14158675309&To=%2B18005551212",
                   good);
    expect_invalid("param added", "12345", MYAPP,
                   "CallSid=CA1234567890ABCDE&Caller=%2B14158675309&Digits=1234&"
                   "From=%2B14158675309&To=%2B18005551212&Extra=1",
                   good);
    expect_invalid("value added to a param", "12345", MYAPP,
                   "CallSid=CA1234567890ABCDE&Caller=%2B14158675309&Digits=1234&"
                   "From=%2B14158675309&To=%2B18005551212&Digits=9",
                   good);
    expect_invalid("param removed", "12345", MYAPP,
                   "CallSid=CA1234567890ABCDE&Caller=%2B14158675309&Digits=1234&"
                   "From=%2B14158675309",
                   good);
    expect_invalid("scheme changed", "12345", "http://mycompany.com/myapp.php?foo=1&bar=2", vb,
                   good);
    expect_invalid("host changed", "12345", "https://mycompany.org/myapp.php?foo=1&bar=2", vb,
                   good);
    expect_invalid("port changed", "12345", "https://mycompany.com:8443/myapp.php?foo=1&bar=2",
                   vb, good);
    expect_invalid("path changed", "12345", "https://mycompany.com/myapp2.php?foo=1&bar=2", vb,
                   good);
    expect_invalid("query changed", "12345", "https://mycompany.com/myapp.php?foo=1&bar=3", vb,
                   good);
    expect_invalid("query dropped", "12345", "https://mycompany.com/myapp.php", vb, good);
    expect_invalid("non-base64", "12345", MYAPP, vb, "!!!!!!!!!!!!!!!!!!!!!!!!!!!=");
    expect_invalid("truncated", "12345", MYAPP, vb, "RSOYDt4T1cUTdK1PDd93/VVr8B8");
    expect_invalid("truncated more", "12345", MYAPP, vb, "RSOYDt4T1cUTdK1P");
    expect_invalid("extended", "12345", MYAPP, vb, "RSOYDt4T1cUTdK1PDd93/VVr8B8==");
    expect_invalid("one char changed", "12345", MYAPP, vb, "RSOYDt4T1cUTdK1PDd93/VVr8B9=");
    expect_invalid("with whitespace", "12345", MYAPP, vb, " RSOYDt4T1cUTdK1PDd93/VVr8B8=");
}

/* A signer that does not sort values (5678 before 1234) must not pass: the order of
 * duplicate keys is part of the algorithm. */
static void test_sig_duplicate_key_ordering(void **state)
{
    (void)state;
    const char *unsorted = MYAPP "Digits5678Digits1234SidCA123SidAccountAC123";
    unsigned char mac[20];
    unsigned int maclen = 0;
    HMAC(EVP_sha1(), "12345", 5, (const unsigned char *)unsorted, strlen(unsorted), mac,
         &maclen);
    char sig[32];
    vb_base64_encode(mac, maclen, sig);
    assert_string_not_equal(sig, "IK+Dwps556ElfBT0I3Rgjkr1wJU=");
    expect_invalid("values not sorted", "12345", MYAPP,
                   "Sid=CA123&SidAccount=AC123&Digits=5678&Digits=1234", sig);
    /* Without de-duplication the string would carry Digits1234 twice. */
    const char *dup = MYAPP "Digits1234Digits1234Digits5678SidCA123SidAccountAC123";
    HMAC(EVP_sha1(), "12345", 5, (const unsigned char *)dup, strlen(dup), mac, &maclen);
    vb_base64_encode(mac, maclen, sig);
    expect_invalid("values not de-duplicated", "12345", MYAPP,
                   "Sid=CA123&SidAccount=AC123&Digits=5678&Digits=1234&Digits=1234", sig);
}

static void test_sig_body_hash_mismatch(void **state)
{
    (void)state;
    const char *body = "{\"a\":1}";
    static const char *const urls[] = {
        "https://voice.example.com/"
        "hook?bodySHA256=015abd7f5cc57a2dd94b7590f04ad8084273905ee33ec5ce"
        "beae62276a97f863",
        "https://voice.example.com/hook?bodySHA256=",
        "https://voice.example.com/hook?bodySHA256=015abd",
        "https://voice.example.com/hook?x=1",
    };
    for (size_t i = 0; i < sizeof(urls) / sizeof(urls[0]); i++) {
        char sig[64];
        assert_int_equal(vb_twilio_sign(VOICE_TOKEN, urls[i], NULL, sig), 0);
        if (vb_twilio_validate(VOICE_TOKEN, urls[i], NULL, body, strlen(body), sig) != 0) {
            fail_msg("accepted body against %s", urls[i]);
        }
    }
    /* The hash may come after other query parameters and in capitals. */
    const char *url =
        "https://voice.example.com/hook?x=1&bodySHA256=015ABD7F5CC57A2DD94B7590F04AD8"
        "084273905EE33EC5CEBEAE62276A97F862";
    char sig[64];
    assert_int_equal(vb_twilio_sign(VOICE_TOKEN, url, NULL, sig), 0);
    assert_int_equal(vb_twilio_validate(VOICE_TOKEN, url, NULL, body, strlen(body), sig), 1);
}

/* ---- TwiML
 * ------------------------------------------------------------------------------------ */

static void test_twiml_connect_stream(void **state)
{
    (void)state;
    char out[512];
    size_t n = vb_twiml_connect_stream(out, sizeof(out), "wss://voice.example.com/twilio/media",
                                       "c-123");
    const char *want =
        "<?xml version=\"1.0\" encoding=\"UTF-8\"?><Response><Connect>"
        "<Stream url=\"wss://voice.example.com/twilio/media\">"
        "<Parameter name=\"call_id\" value=\"c-123\"/></Stream></Connect></Response>";
    assert_string_equal(out, want);
    assert_int_equal(n, strlen(want));
    assert_int_equal(
        vb_twiml_connect_stream(out, n, "wss://voice.example.com/twilio/media", "c-123"), 0);
    assert_int_equal(
        vb_twiml_connect_stream(out, n + 1, "wss://voice.example.com/twilio/media", "c-123"),
        n);

    vb_twiml_connect_stream(out, sizeof(out), "wss://h/m?a=1&b=\"2\"", "<x>'y'\x01");
    assert_non_null(strstr(out, "url=\"wss://h/m?a=1&amp;b=&quot;2&quot;\""));
    assert_non_null(strstr(out, "value=\"&lt;x&gt;&apos;y&apos;\"/>"));
}

static void test_twiml_connect_stream_params(void **state)
{
    (void)state;
    char out[512];
    const char *names[] = {"call_id", "assistant", "from"};
    const char *values[] = {"c-1", "Front & desk", NULL};
    size_t n = vb_twiml_connect_stream_params(out, sizeof(out), "wss://h/twilio/media", names,
                                              values, 3);
    assert_int_equal(n, strlen(out));
    assert_string_equal(out, "<?xml version=\"1.0\" encoding=\"UTF-8\"?><Response><Connect>"
                             "<Stream url=\"wss://h/twilio/media\">"
                             "<Parameter name=\"call_id\" value=\"c-1\"/>"
                             "<Parameter name=\"assistant\" value=\"Front &amp; desk\"/>"
                             "<Parameter name=\"from\" value=\"\"/>"
                             "</Stream></Connect></Response>");
    n = vb_twiml_connect_stream_params(out, sizeof(out), "wss://h/m", NULL, NULL, 0);
    assert_string_equal(out, "<?xml version=\"1.0\" encoding=\"UTF-8\"?><Response><Connect>"
                             "<Stream url=\"wss://h/m\"/></Connect></Response>");
    for (size_t cap = 0; cap <= n; cap++) {
        assert_int_equal(vb_twiml_connect_stream_params(out, cap, "wss://h/m", NULL, NULL, 0),
                         0);
    }
}

static void test_twiml_say_hangup(void **state)
{
    (void)state;
    char out[256];
    size_t n = vb_twiml_say_hangup(out, sizeof(out), "Sorry, this number is not in service.");
    assert_string_equal(out, "<?xml version=\"1.0\" encoding=\"UTF-8\"?><Response><Say>Sorry, "
                             "this number is not in service.</Say><Hangup/></Response>");
    assert_int_equal(n, strlen(out));
    vb_twiml_say_hangup(out, sizeof(out), "Tom & Jerry <3");
    assert_non_null(strstr(out, "<Say>Tom &amp; Jerry &lt;3</Say>"));
    assert_int_equal(vb_twiml_say_hangup(out, 10, "hello"), 0);
}

int main(void)
{
    const struct CMUnitTest tests[] = {
        cmocka_unit_test(test_form_decoding),
        cmocka_unit_test(test_form_rejects),
        cmocka_unit_test(test_form_param_cap),
        cmocka_unit_test(test_form_encode),
        cmocka_unit_test(test_sig_worked_example),
        cmocka_unit_test(test_sig_voice_webhook),
        cmocka_unit_test(test_sig_multi_valued),
        cmocka_unit_test(test_sig_json_body),
        cmocka_unit_test(test_sig_request_validator),
        cmocka_unit_test(test_sig_default_ports),
        cmocka_unit_test(test_sig_b1_negatives),
        cmocka_unit_test(test_sig_duplicate_key_ordering),
        cmocka_unit_test(test_sig_body_hash_mismatch),
        cmocka_unit_test(test_twiml_connect_stream),
        cmocka_unit_test(test_twiml_connect_stream_params),
        cmocka_unit_test(test_twiml_say_hangup),
    };
    return cmocka_run_group_tests(tests, NULL, NULL);
}
