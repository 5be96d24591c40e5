/* Unit tests for the HTTP/1.1 request parser (common/http.c): well-formed
 * requests, the B2 bad-input list of the fault matrix (each with its status),
 * chunked bodies, pipelining and byte-at-a-time feeding. */
#include <setjmp.h>
#include <stdarg.h>
#include <stddef.h>
#include <stdint.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#include <cmocka.h>

#include "common/http.h"

/* Feed S whole; returns the parser state, *USED bytes consumed. */
static int parse_all(vb_http_parser_t *p, const char *s, size_t len, size_t *used)
{
    size_t u = vb_http_parser_feed(p, s, len);
    if (used != NULL) {
        *used = u;
    }
    return p->state;
}

/* Feed S one byte at a time until the parser stops. */
static int parse_bytewise(vb_http_parser_t *p, const char *s, size_t len, size_t *used)
{
    size_t u = 0;
    for (size_t i = 0; i < len && p->state < VB_HTTP_PARSE_DONE; i++) {
        u += vb_http_parser_feed(p, s + i, 1);
    }
    if (used != NULL) {
        *used = u;
    }
    return p->state;
}

static int status_of(const char *s)
{
    vb_http_parser_t p;
    vb_http_parser_init(&p, 16384, 65536);
    int st = parse_all(&p, s, strlen(s), NULL);
    int status =
        st == VB_HTTP_PARSE_ERROR ? p.error_status : (st == VB_HTTP_PARSE_DONE ? 200 : 0);
    vb_http_parser_free(&p);
    return status;
}

static void test_simple_get(void **state)
{
    const char *s = "GET /twilio/voice?a=1&b=%20 HTTP/1.1\r\nHost: example.com\r\n"
                    "X-Twilio-Signature:  abc= \r\nAccept: */*\r\n\r\n";
    vb_http_parser_t p;
    vb_http_parser_init(&p, 0, 0);
    size_t used;
    assert_int_equal(parse_all(&p, s, strlen(s), &used), VB_HTTP_PARSE_DONE);
    assert_int_equal(used, strlen(s));
    assert_string_equal(p.req.method, "GET");
    assert_string_equal(p.req.path, "/twilio/voice");
    assert_string_equal(p.req.query, "a=1&b=%20");
    assert_string_equal(p.req.target, "/twilio/voice?a=1&b=%20");
    assert_int_equal(p.req.version_minor, 1);
    assert_int_equal(p.req.n_headers, 3);
    assert_string_equal(vb_http_header(&p.req, "host"), "example.com");
    assert_string_equal(vb_http_header(&p.req, "x-twilio-signature"), "abc=");
    assert_null(vb_http_header(&p.req, "Content-Length"));
    assert_int_equal(p.req.body_len, 0);
    assert_string_equal(p.req.body, "");
    assert_true(p.req.keep_alive);
    vb_http_parser_free(&p);
}

static void test_post_body_bytewise(void **state)
{
    const char *s = "POST /twilio/status HTTP/1.1\r\nHost: h\r\nContent-Length: 11\r\n"
                    "Content-Type: application/x-www-form-urlencoded\r\n\r\nCallSid=CA1";
    vb_http_parser_t p;
    vb_http_parser_init(&p, 0, 0);
    size_t used;
    assert_int_equal(parse_bytewise(&p, s, strlen(s), &used), VB_HTTP_PARSE_DONE);
    assert_int_equal(used, strlen(s));
    assert_int_equal(p.req.body_len, 11);
    assert_string_equal(p.req.body, "CallSid=CA1");
    assert_string_equal(p.req.path, "/twilio/status");
    assert_string_equal(p.req.query, "");
    vb_http_parser_free(&p);
}

static void test_chunked(void **state)
{
    const char *s = "POST /x HTTP/1.1\r\nHost: h\r\nTransfer-Encoding: chunked\r\n\r\n"
                    "5\r\nhello\r\n6;ext=1\r\n world\r\nA \r\n0123456789\r\n0\r\n"
                    "X-Trailer: t\r\n\r\nGET";
    for (int bytewise = 0; bytewise < 2; bytewise++) {
        vb_http_parser_t p;
        vb_http_parser_init(&p, 0, 0);
        size_t used;
        int st = bytewise ? parse_bytewise(&p, s, strlen(s), &used)
                          : parse_all(&p, s, strlen(s), &used);
        assert_int_equal(st, VB_HTTP_PARSE_DONE);
        assert_int_equal(used, strlen(s) - 3); /* "GET" is the next request */
        assert_int_equal(p.req.body_len, 21);
        assert_string_equal(p.req.body, "hello world0123456789");
        vb_http_parser_free(&p);
    }
}

static void test_chunked_bad(void **state)
{
    const char *head = "POST /x HTTP/1.1\r\nHost: h\r\nTransfer-Encoding: chunked\r\n\r\n";
    const char *bodies[] = {"x\r\n",
                            "5\r\nhelloXX",
                            "5\nhello\r\n",
                            "-1\r\n",
                            "5\r\nhello\r\n0\r\nbad\rtrailer\r\n\r\n",
                            "\r\n"};
    for (size_t i = 0; i < sizeof(bodies) / sizeof(bodies[0]); i++) {
        char buf[512];
        snprintf(buf, sizeof(buf), "%s%s", head, bodies[i]);
        assert_int_equal(status_of(buf), 400);
    }
    /* a chunk that alone exceeds the body limit */
    char buf[512];
    snprintf(buf, sizeof(buf), "%sFFFFFFFFFFFFFFFFFFFF\r\n", head);
    assert_int_equal(status_of(buf), 413);
}

static void test_pipelining(void **state)
{
    const char *s = "GET /a HTTP/1.1\r\nHost: h\r\n\r\n"
                    "POST /b HTTP/1.1\r\nHost: h\r\nContent-Length: 3\r\n\r\nxyz"
                    "GET /c HTTP/1.0\r\n\r\n";
    const char *paths[] = {"/a", "/b", "/c"};
    vb_http_parser_t p;
    vb_http_parser_init(&p, 0, 0);
    size_t off = 0;
    for (int i = 0; i < 3; i++) {
        off += vb_http_parser_feed(&p, s + off, strlen(s) - off);
        assert_int_equal(p.state, VB_HTTP_PARSE_DONE);
        assert_string_equal(p.req.path, paths[i]);
        if (i == 1) {
            assert_string_equal(p.req.body, "xyz");
        }
        if (i == 2) {
            assert_int_equal(p.req.version_minor, 0);
            assert_false(p.req.keep_alive);
        }
        vb_http_parser_reset(&p);
    }
    assert_int_equal(off, strlen(s));
    vb_http_parser_free(&p);
}

static void test_keep_alive_rules(void **state)
{
    vb_http_parser_t p;
    const char *cases[] = {
        "GET / HTTP/1.1\r\nHost: h\r\nConnection: close\r\n\r\n",
        "GET / HTTP/1.0\r\nConnection: keep-alive\r\n\r\n",
        "GET / HTTP/1.1\r\nHost: h\r\nConnection: foo, Close\r\n\r\n",
    };
    const int expect[] = {0, 1, 0};
    for (int i = 0; i < 3; i++) {
        vb_http_parser_init(&p, 0, 0);
        assert_int_equal(parse_all(&p, cases[i], strlen(cases[i]), NULL), VB_HTTP_PARSE_DONE);
        assert_int_equal(p.req.keep_alive, expect[i]);
        vb_http_parser_free(&p);
    }
}

static void test_expect_continue(void **state)
{
    const char *s =
        "POST /x HTTP/1.1\r\nHost: h\r\nExpect: 100-continue\r\nContent-Length: 2\r\n\r\n";
    vb_http_parser_t p;
    vb_http_parser_init(&p, 0, 0);
    assert_int_equal(parse_all(&p, s, strlen(s), NULL), VB_HTTP_PARSE_BODY);
    assert_true(p.req.expect_continue);
    assert_int_equal(vb_http_parser_feed(&p, "ok", 2), 2);
    assert_int_equal(p.state, VB_HTTP_PARSE_DONE);
    vb_http_parser_free(&p);
    assert_int_equal(status_of("POST /x HTTP/1.1\r\nHost: h\r\nExpect: magic\r\n\r\n"), 417);
}

static void test_absolute_form(void **state)
{
    const char *s =
        "GET http://example.com:8080/health/ready?x=1 HTTP/1.1\r\nHost: example.com\r\n\r\n";
    vb_http_parser_t p;
    vb_http_parser_init(&p, 0, 0);
    assert_int_equal(parse_all(&p, s, strlen(s), NULL), VB_HTTP_PARSE_DONE);
    assert_string_equal(p.req.path, "/health/ready");
    assert_string_equal(p.req.query, "x=1");
    assert_string_equal(p.req.target, "http://example.com:8080/health/ready?x=1");
    vb_http_parser_free(&p);
    vb_http_parser_init(&p, 0, 0);
    s = "GET https://example.com HTTP/1.1\r\nHost: example.com\r\n\r\n";
    assert_int_equal(parse_all(&p, s, strlen(s), NULL), VB_HTTP_PARSE_DONE);
    assert_string_equal(p.req.path, "/");
    vb_http_parser_free(&p);
    assert_int_equal(status_of("GET ftp://x/ HTTP/1.1\r\nHost: h\r\n\r\n"), 400);
    assert_int_equal(status_of("OPTIONS * HTTP/1.1\r\nHost: h\r\n\r\n"), 200);
    assert_int_equal(status_of("GET * HTTP/1.1\r\nHost: h\r\n\r\n"), 400);
}

/* Fault matrix B2: each bad request and the status it must get. */
static void test_b2_bad_requests(void **state)
{
    static const struct {
        const char *req;
        int status;
    } cases[] = {
        /* CL + TE */
        {"POST / HTTP/1.1\r\nHost: h\r\nContent-Length: 3\r\nTransfer-Encoding: "
         "chunked\r\n\r\n",
         400},
        /* double CL, equal and conflicting, and a list */
        {"POST / HTTP/1.1\r\nHost: h\r\nContent-Length: 3\r\nContent-Length: 3\r\n\r\nabc",
         400},
        {"POST / HTTP/1.1\r\nHost: h\r\nContent-Length: 3\r\nContent-Length: 4\r\n\r\nabc",
         400},
        {"POST / HTTP/1.1\r\nHost: h\r\nContent-Length: 3, 3\r\n\r\nabc", 400},
        {"POST / HTTP/1.1\r\nHost: h\r\nContent-Length: +3\r\n\r\nabc", 400},
        {"POST / HTTP/1.1\r\nHost: h\r\nContent-Length: \r\n\r\n", 400},
        /* obfuscated TE */
        {"POST / HTTP/1.1\r\nHost: h\r\nTransfer-Encoding: chunked\r\nTransfer-Encoding: "
         "x\r\n\r\n",
         400},
        {"POST / HTTP/1.1\r\nHost: h\r\nTransfer-Encoding : chunked\r\n\r\n", 400},
        {"POST / HTTP/1.1\r\nHost: h\r\nTransfer-Encoding: \"chunked\"\r\n\r\n", 400},
        {"POST / HTTP/1.1\r\nHost: h\r\nTransfer-Encoding: chunked;q=1\r\n\r\n", 400},
        {"POST / HTTP/1.1\r\nHost: h\r\nTransfer-Encoding: xchunked\r\n\r\n", 501},
        {"POST / HTTP/1.1\r\nHost: h\r\nTransfer-Encoding: gzip, chunked\r\n\r\n", 501},
        {"POST / HTTP/1.0\r\nTransfer-Encoding: chunked\r\n\r\n", 400},
        /* NUL, bare CR, control characters */
        {"GET / HTTP/1.1\r\nHost: h\r\nX: a\rb\r\n\r\n", 400},
        {"GET / HTTP/1.1\r\nHost: h\r\nX: a\x01"
         "b\r\n\r\n",
         400},
        {"GET / HTTP/1.1\rHost: h\r\n\r\n", 400},
        /* obs-fold */
        {"GET / HTTP/1.1\r\nHost: h\r\nX: a\r\n  folded\r\n\r\n", 400},
        /* bad versions, HTTP/0.9 */
        {"GET /\r\n\r\n", 400},
        {"GET / HTTP/2.0\r\nHost: h\r\n\r\n", 505},
        {"GET / HTTP/1.2\r\nHost: h\r\n\r\n", 505},
        {"GET / HTTP/1.1x\r\nHost: h\r\n\r\n", 400},
        {"GET / http/1.1\r\nHost: h\r\n\r\n", 400},
        {"GET  / HTTP/1.1\r\nHost: h\r\n\r\n", 400},
        /* unknown method, missing/duplicate Host */
        {"BREW / HTTP/1.1\r\nHost: h\r\n\r\n", 501},
        {"GETTTTTTTTTTTTTTTTTTTTTT / HTTP/1.1\r\nHost: h\r\n\r\n", 501},
        {"G@T / HTTP/1.1\r\nHost: h\r\n\r\n", 400},
        {"GET / HTTP/1.1\r\n\r\n", 400},
        {"GET / HTTP/1.1\r\nHost: a\r\nHost: b\r\n\r\n", 400},
        /* header syntax */
        {"GET / HTTP/1.1\r\nHost: h\r\n: empty\r\n\r\n", 400},
        {"GET / HTTP/1.1\r\nHost: h\r\nno colon\r\n\r\n", 400},
        {"GET /\x80 HTTP/1.1\r\nHost: h\r\n\r\n", 400},
        /* body over the limit */
        {"POST / HTTP/1.1\r\nHost: h\r\nContent-Length: 65537\r\n\r\n", 413},
        {"POST / HTTP/1.1\r\nHost: h\r\nContent-Length: 99999999999999999999999\r\n\r\n", 413},
        /* accepted */
        {"GET / HTTP/1.0\r\n\r\n", 200},
        {"\r\n\r\nGET / HTTP/1.1\r\nHost: h\r\n\r\n", 200},
        {"GET / HTTP/1.1\nHost: h\n\n", 200},
        {"GET / HTTP/1.1\r\nHost: h\r\nX: caf\xc3\xa9\r\n\r\n", 200},
        {"GET /upgrade HTTP/1.1\r\nHost: h\r\nConnection: upgrade\r\n\r\n", 200},
    };
    for (size_t i = 0; i < sizeof(cases) / sizeof(cases[0]); i++) {
        int st = status_of(cases[i].req);
        if (st != cases[i].status) {
            print_error("case %zu: got %d want %d: %s\n", i, st, cases[i].status, cases[i].req);
        }
        assert_int_equal(st, cases[i].status);
    }
    /* NUL needs an explicit length */
    vb_http_parser_t p;
    vb_http_parser_init(&p, 0, 0);
    const char nul[] = "GET / HTTP/1.1\r\nHost: h\r\nX: a\0b\r\n\r\n";
    assert_int_equal(parse_all(&p, nul, sizeof(nul) - 1, NULL), VB_HTTP_PARSE_ERROR);
    assert_int_equal(p.error_status, 400);
    vb_http_parser_free(&p);
}

static void test_header_limits(void **state)
{
    /* headers over 16 KiB -> 431; a huge request line -> 414 */
    size_t n = 20000;
    char *s = malloc(n + 128);
    int k = sprintf(s, "GET / HTTP/1.1\r\nHost: h\r\nX-Big: ");
    memset(s + k, 'a', n);
    strcpy(s + k + n, "\r\n\r\n");
    assert_int_equal(status_of(s), 431);
    k = sprintf(s, "GET /");
    memset(s + k, 'a', n);
    strcpy(s + k + n, " HTTP/1.1\r\nHost: h\r\n\r\n");
    assert_int_equal(status_of(s), 414);
    /* too many header fields */
    k = sprintf(s, "GET / HTTP/1.1\r\nHost: h\r\n");
    for (int i = 0; i < VB_HTTP_MAX_HEADERS + 1 && k < (int)n; i++) {
        k += sprintf(s + k, "X%d: v\r\n", i);
    }
    strcpy(s + k, "\r\n");
    assert_int_equal(status_of(s), 431);
    free(s);
}

static void test_trailer_limit(void **state)
{
    vb_http_parser_t p;
    vb_http_parser_init(&p, 1024, 65536);
    const char *head = "POST /x HTTP/1.1\r\nHost: h\r\nTransfer-Encoding: chunked\r\n\r\n0\r\n";
    vb_http_parser_feed(&p, head, strlen(head));
    char line[64];
    for (int i = 0; i < 100 && p.state == VB_HTTP_PARSE_BODY; i++) {
        int l = snprintf(line, sizeof(line), "X-T%d: vvvvvvvvvvvvvvvvvvvv\r\n", i);
        vb_http_parser_feed(&p, line, (size_t)l);
    }
    assert_int_equal(p.state, VB_HTTP_PARSE_ERROR);
    assert_int_equal(p.error_status, 431);
    vb_http_parser_free(&p);
}

static void test_pct_decode(void **state)
{
    char s1[] = "a%20b+c%2F";
    size_t len;
    assert_int_equal(vb_http_pct_decode(s1, &len, 1), 0);
    assert_string_equal(s1, "a b c/");
    assert_int_equal(len, 6);
    char s2[] = "a+b";
    assert_int_equal(vb_http_pct_decode(s2, NULL, 0), 0);
    assert_string_equal(s2, "a+b");
    char s3[] = "bad%2";
    assert_int_equal(vb_http_pct_decode(s3, NULL, 0), -22);
    char s4[] = "bad%zz";
    assert_int_equal(vb_http_pct_decode(s4, NULL, 0), -22);
}

static void test_status_text(void **state)
{
    assert_string_equal(vb_http_status_text(404), "Not Found");
    assert_string_equal(vb_http_status_text(431), "Request Header Fields Too Large");
    assert_string_equal(vb_http_status_text(799), "Unknown");
}

int main(void)
{
    const struct CMUnitTest tests[] = {
        cmocka_unit_test(test_simple_get),      cmocka_unit_test(test_post_body_bytewise),
        cmocka_unit_test(test_chunked),         cmocka_unit_test(test_chunked_bad),
        cmocka_unit_test(test_pipelining),      cmocka_unit_test(test_keep_alive_rules),
        cmocka_unit_test(test_expect_continue), cmocka_unit_test(test_absolute_form),
        cmocka_unit_test(test_b2_bad_requests), cmocka_unit_test(test_header_limits),
        cmocka_unit_test(test_trailer_limit),   cmocka_unit_test(test_pct_decode),
        cmocka_unit_test(test_status_text),
    };
    return cmocka_run_group_tests(tests, NULL, NULL);
}
