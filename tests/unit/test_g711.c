/* Unit tests for common/g711: known values of ITU G.711 mu-law, the round trip of every
 * code, and the quantisation error bound over the whole 16-bit range. */
#include <setjmp.h>
#include <stdarg.h>
#include <stddef.h>
#include <stdint.h>
#include <stdlib.h>

#include <cmocka.h>

#include "common/g711.h"

static void test_known_values(void **state)
{
    (void)state;
    assert_int_equal(vb_ulaw_to_pcm(0xFF), 0);
    assert_int_equal(vb_ulaw_to_pcm(0x7F), 0); /* negative zero */
    assert_int_equal(vb_ulaw_to_pcm(0x80), 32124);
    assert_int_equal(vb_ulaw_to_pcm(0x00), -32124);
    assert_int_equal(vb_ulaw_to_pcm(0xFE), 8);
    assert_int_equal(vb_ulaw_to_pcm(0x7E), -8);
    assert_int_equal(vb_ulaw_to_pcm(0xF0), 120);
    assert_int_equal(vb_ulaw_to_pcm(0xEF), 132);
    assert_int_equal(vb_ulaw_to_pcm(0xDF), 396);
    assert_int_equal(vb_pcm_to_ulaw(0), 0xFF);
    assert_int_equal(vb_pcm_to_ulaw(-1), 0x7F);
    assert_int_equal(vb_pcm_to_ulaw(32767), 0x80);
    assert_int_equal(vb_pcm_to_ulaw(-32768), 0x00);
    assert_int_equal(vb_pcm_to_ulaw(8), 0xFE);
    assert_int_equal(vb_pcm_to_ulaw(1000), 0xCE);
    assert_int_equal(vb_pcm_to_ulaw(-1000), 0x4E);
}

/* Decode then encode gives back every code except negative zero, which becomes +0. */
static void test_code_round_trip(void **state)
{
    (void)state;
    for (int u = 0; u < 256; u++) {
        uint8_t back = vb_pcm_to_ulaw(vb_ulaw_to_pcm((uint8_t)u));
        assert_int_equal(back, u == 0x7F ? 0xFF : u);
    }
}

/* A magnitude M falls in segment seg = floor(log2(M + 132)) - 7, whose step is
 * 2^(seg+3) (8 .. 1024): the round trip error is at most half a step, and beyond the
 * clip level 32635 the distance to the largest code 32124. */
static void test_error_bound(void **state)
{
    (void)state;
    for (int x = -32768; x <= 32767; x++) {
        int y = vb_ulaw_to_pcm(vb_pcm_to_ulaw((int16_t)x));
        int mag = abs(x);
        int err = abs(y - x);
        int bound;
        if (mag > 32635) {
            bound = mag - 32124; /* clipped to the largest code */
        } else {
            int v = mag + 132, seg = 0;
            while ((v >> (seg + 8)) != 0) {
                seg++;
            }
            bound = 1 << (seg + 2); /* half a step of that segment */
        }
        if (err > bound) {
            fail_msg("x=%d -> %d: error %d over bound %d", x, y, err, bound);
        }
        if ((x > 0 && y < 0) || (x < 0 && y > 0)) {
            fail_msg("x=%d -> %d: sign flipped", x, y);
        }
    }
}

static void test_buffers(void **state)
{
    (void)state;
    int16_t pcm[256], pcm2[256];
    uint8_t u[256], u2[256];
    for (int i = 0; i < 256; i++) {
        u[i] = (uint8_t)i;
    }
    vb_ulaw_decode(u, 256, pcm);
    vb_ulaw_encode(pcm, 256, u2);
    vb_ulaw_decode(u2, 256, pcm2);
    assert_memory_equal(pcm, pcm2, sizeof(pcm));
    for (int i = 0; i < 256; i++) {
        assert_int_equal(pcm[i], vb_ulaw_to_pcm((uint8_t)i));
    }
}

int main(void)
{
    const struct CMUnitTest tests[] = {
        cmocka_unit_test(test_known_values),
        cmocka_unit_test(test_code_round_trip),
        cmocka_unit_test(test_error_bound),
        cmocka_unit_test(test_buffers),
    };
    return cmocka_run_group_tests(tests, NULL, NULL);
}
