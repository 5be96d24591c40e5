/* Unit tests for common/base64: the RFC 4648 §10 vectors both ways, a round trip of every
 * length up to 300 bytes, and the strict decoder's refusals. */
#include <errno.h>
#include <setjmp.h>
#include <stdarg.h>
#include <stddef.h>
#include <stdint.h>
#include <string.h>

#include <cmocka.h>

#include "common/base64.h"

static const struct {
    const char *plain, *coded;
} rfc4648[] = {{"", ""},
               {"f", "Zg=="},
               {"fo", "Zm8="},
               {"foo", "Zm9v"},
               {"foob", "Zm9vYg=="},
               {"fooba", "Zm9vYmE="},
               {"foobar", "Zm9vYmFy"}};

static void test_rfc4648_encode(void **state)
{
    (void)state;
    for (size_t i = 0; i < sizeof(rfc4648) / sizeof(rfc4648[0]); i++) {
        char out[16];
        memset(out, 'X', sizeof(out));
        size_t n =
            vb_base64_encode((const uint8_t *)rfc4648[i].plain, strlen(rfc4648[i].plain), out);
        assert_int_equal(n, strlen(rfc4648[i].coded));
        assert_int_equal(n, VB_BASE64_ENCLEN(strlen(rfc4648[i].plain)));
        assert_string_equal(out, rfc4648[i].coded);
    }
}

static void test_rfc4648_decode(void **state)
{
    (void)state;
    for (size_t i = 0; i < sizeof(rfc4648) / sizeof(rfc4648[0]); i++) {
        uint8_t out[16];
        size_t n = 99;
        const char *c = rfc4648[i].coded;
        assert_int_equal(vb_base64_decode(c, strlen(c), out, sizeof(out), &n), 0);
        assert_int_equal(n, strlen(rfc4648[i].plain));
        assert_memory_equal(out, rfc4648[i].plain, n);
    }
}

static void test_round_trip(void **state)
{
    (void)state;
    uint8_t in[300], back[300];
    char coded[VB_BASE64_ENCLEN(300) + 1];
    for (size_t i = 0; i < sizeof(in); i++) {
        in[i] = (uint8_t)(i * 151 + 7);
    }
    for (size_t n = 0; n <= sizeof(in); n++) {
        size_t len = vb_base64_encode(in, n, coded);
        assert_int_equal(strlen(coded), len);
        size_t got = 0;
        assert_int_equal(vb_base64_decode(coded, len, back, sizeof(back), &got), 0);
        assert_int_equal(got, n);
        assert_memory_equal(in, back, n);
    }
}

static void test_all_byte_values(void **state)
{
    (void)state;
    uint8_t in[256], back[256];
    char coded[VB_BASE64_ENCLEN(256) + 1];
    for (int i = 0; i < 256; i++) {
        in[i] = (uint8_t)i;
    }
    size_t len = vb_base64_encode(in, 256, coded);
    assert_non_null(strchr(coded, '+'));
    assert_non_null(strchr(coded, '/'));
    size_t got = 0;
    assert_int_equal(vb_base64_decode(coded, len, back, sizeof(back), &got), 0);
    assert_int_equal(got, 256);
    assert_memory_equal(in, back, 256);
}

static void test_rejects(void **state)
{
    (void)state;
    static const char *const bad[] = {
        "Zg",                               /* no padding */
        "Zg=",                              /* short padding */
        "Zm9",                              /* length not a multiple of 4 */
        "Zg===",                            /* too much padding */
        "====",                             /* padding only */
        "Z===",                             /* three '=' */
        "Zm=v",                             /* '=' inside a quantum */
        "Zg==Zg==",                         /* padding before the end */
        "Zm9v Zm9v", "Zm9v\nZm9v", " Zm9v", /* whitespace */
        "Zm9v\r\n",  "Zm9-",       "Zm9_",  /* base64url characters */
        "Zm9.",      "Zm\x80v",    "Zh==",  /* Zh==: non-zero unused bits */
        "Zm9=",                             /* ditto, one '=' */
    };
    for (size_t i = 0; i < sizeof(bad) / sizeof(bad[0]); i++) {
        uint8_t out[16];
        size_t n = 77;
        int rc = vb_base64_decode(bad[i], strlen(bad[i]), out, sizeof(out), &n);
        if (rc != -EINVAL) {
            fail_msg("'%s' decoded with rc %d", bad[i], rc);
        }
        assert_int_equal(n, 0);
    }
    /* A NUL inside the counted length is a bad character, not the end. */
    uint8_t out[8];
    size_t n;
    assert_int_equal(vb_base64_decode("Zm\0v", 4, out, sizeof(out), &n), -EINVAL);
}

static void test_capacity(void **state)
{
    (void)state;
    uint8_t out[6];
    size_t n;
    assert_int_equal(vb_base64_decode("Zm9vYmFy", 8, out, 5, &n), -ENOSPC);
    assert_int_equal(vb_base64_decode("Zm9vYmE=", 8, out, 4, &n), -ENOSPC);
    assert_int_equal(vb_base64_decode("Zm9vYmE=", 8, out, 5, &n), 0);
    assert_int_equal(n, 5);
    assert_int_equal(vb_base64_decode("Zm9vYmFy", 8, out, 6, &n), 0);
    assert_memory_equal(out, "foobar", 6);
}

int main(void)
{
    const struct CMUnitTest tests[] = {
        cmocka_unit_test(test_rfc4648_encode), cmocka_unit_test(test_rfc4648_decode),
        cmocka_unit_test(test_round_trip),     cmocka_unit_test(test_all_byte_values),
        cmocka_unit_test(test_rejects),        cmocka_unit_test(test_capacity),
    };
    return cmocka_run_group_tests(tests, NULL, NULL);
}
