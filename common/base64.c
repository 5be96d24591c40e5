/* Strict base64 encoder and decoder: see base64.h. Runs in every process that needs it;
 * on the media path it decodes one 216-character payload per 20 ms frame. */
#include "common/base64.h"

#include <errno.h>

static const char enc_alphabet[64] =
    "ABCDEFGHIJKLMNOPQRSTUVWXYZabcdefghijklmnopqrstuvwxyz0123456789+/";

/* 0..63 for alphabet characters, 0xFF for everything else (including '='). */
#define XX 0xFF
/* clang-format off */
static const uint8_t dec_table[256] = {
    XX, XX, XX, XX, XX, XX, XX, XX, XX, XX, XX, XX, XX, XX, XX, XX, /* 0x00 */
    XX, XX, XX, XX, XX, XX, XX, XX, XX, XX, XX, XX, XX, XX, XX, XX, /* 0x10 */
    XX, XX, XX, XX, XX, XX, XX, XX, XX, XX, XX, 62, XX, XX, XX, 63, /* 0x20 */
    52, 53, 54, 55, 56, 57, 58, 59, 60, 61, XX, XX, XX, XX, XX, XX, /* 0x30 */
    XX, 0,  1,  2,  3,  4,  5,  6,  7,  8,  9,  10, 11, 12, 13, 14, /* 0x40 */
    15, 16, 17, 18, 19, 20, 21, 22, 23, 24, 25, XX, XX, XX, XX, XX, /* 0x50 */
    XX, 26, 27, 28, 29, 30, 31, 32, 33, 34, 35, 36, 37, 38, 39, 40, /* 0x60 */
    41, 42, 43, 44, 45, 46, 47, 48, 49, 50, 51, XX, XX, XX, XX, XX, /* 0x70 */
    XX, XX, XX, XX, XX, XX, XX, XX, XX, XX, XX, XX, XX, XX, XX, XX, /* 0x80 */
    XX, XX, XX, XX, XX, XX, XX, XX, XX, XX, XX, XX, XX, XX, XX, XX,
    XX, XX, XX, XX, XX, XX, XX, XX, XX, XX, XX, XX, XX, XX, XX, XX,
    XX, XX, XX, XX, XX, XX, XX, XX, XX, XX, XX, XX, XX, XX, XX, XX,
    XX, XX, XX, XX, XX, XX, XX, XX, XX, XX, XX, XX, XX, XX, XX, XX,
    XX, XX, XX, XX, XX, XX, XX, XX, XX, XX, XX, XX, XX, XX, XX, XX,
    XX, XX, XX, XX, XX, XX, XX, XX, XX, XX, XX, XX, XX, XX, XX, XX,
    XX, XX, XX, XX, XX, XX, XX, XX, XX, XX, XX, XX, XX, XX, XX, XX,
};
/* clang-format on */
#undef XX

size_t vb_base64_encode(const uint8_t *in, size_t n, char *out)
{
    size_t o = 0;
    size_t i = 0;
    for (; i + 3 <= n; i += 3) {
        uint32_t v = ((uint32_t)in[i] << 16) | ((uint32_t)in[i + 1] << 8) | in[i + 2];
        out[o++] = enc_alphabet[(v >> 18) & 63];
        out[o++] = enc_alphabet[(v >> 12) & 63];
        out[o++] = enc_alphabet[(v >> 6) & 63];
        out[o++] = enc_alphabet[v & 63];
    }
    if (n - i == 1) {
        uint32_t v = (uint32_t)in[i] << 16;
        out[o++] = enc_alphabet[(v >> 18) & 63];
        out[o++] = enc_alphabet[(v >> 12) & 63];
        out[o++] = '=';
        out[o++] = '=';
    } else if (n - i == 2) {
        uint32_t v = ((uint32_t)in[i] << 16) | ((uint32_t)in[i + 1] << 8);
        out[o++] = enc_alphabet[(v >> 18) & 63];
        out[o++] = enc_alphabet[(v >> 12) & 63];
        out[o++] = enc_alphabet[(v >> 6) & 63];
        out[o++] = '=';
    }
    out[o] = '\0';
    return o;
}

/* The last quantum: 4 characters, of which the last one or two may be '='. Returns the
 * number of bytes it holds (1..3) or -EINVAL. */
static int decode_tail(const unsigned char *q, uint8_t bytes[3])
{
    uint8_t a = dec_table[q[0]], b = dec_table[q[1]], c = dec_table[q[2]], d = dec_table[q[3]];
    if ((a | b) == 0xFF) {
        return -EINVAL;
    }
    if (q[2] == '=' && q[3] == '=') {
        if (b & 0x0F) { /* non-zero bits that no byte carries */
            return -EINVAL;
        }
        bytes[0] = (uint8_t)((a << 2) | (b >> 4));
        return 1;
    }
    if (c == 0xFF) {
        return -EINVAL;
    }
    if (q[3] == '=') {
        if (c & 0x03) {
            return -EINVAL;
        }
        bytes[0] = (uint8_t)((a << 2) | (b >> 4));
        bytes[1] = (uint8_t)((b << 4) | (c >> 2));
        return 2;
    }
    if (d == 0xFF) {
        return -EINVAL;
    }
    bytes[0] = (uint8_t)((a << 2) | (b >> 4));
    bytes[1] = (uint8_t)((b << 4) | (c >> 2));
    bytes[2] = (uint8_t)((c << 6) | d);
    return 3;
}

int vb_base64_decode(const char *in, size_t n, uint8_t *out, size_t cap, size_t *outlen)
{
    const unsigned char *s = (const unsigned char *)in;
    *outlen = 0;
    if (n % 4 != 0) {
        return -EINVAL;
    }
    if (n == 0) {
        return 0;
    }
    size_t full = n - 4; /* every quantum but the last has no padding */
    if (VB_BASE64_DECLEN(full) > cap) {
        return -ENOSPC;
    }
    size_t o = 0;
    for (size_t i = 0; i < full; i += 4) {
        uint32_t a = dec_table[s[i]], b = dec_table[s[i + 1]];
        uint32_t c = dec_table[s[i + 2]], d = dec_table[s[i + 3]];
        if ((a | b | c | d) & 0xC0) { /* 0xFF marks a character outside the alphabet */
            return -EINVAL;
        }
        uint32_t v = (a << 18) | (b << 12) | (c << 6) | d;
        out[o++] = (uint8_t)(v >> 16);
        out[o++] = (uint8_t)(v >> 8);
        out[o++] = (uint8_t)v;
    }
    uint8_t last[3];
    int k = decode_tail(s + full, last);
    if (k < 0) {
        return k;
    }
    if (o + (size_t)k > cap) {
        return -ENOSPC;
    }
    for (int j = 0; j < k; j++) {
        out[o++] = last[j];
    }
    *outlen = o;
    return 0;
}
