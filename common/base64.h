/* Base64 (RFC 4648 §4, standard alphabet with '=' padding) into caller buffers, no
 * allocation. Used by the media worker on every Media Streams frame, by the api workers
 * for X-Twilio-Signature and by the broker for provider audio.
 *
 * The decoder is strict: the length must be a multiple of 4, '=' may only close the
 * last quantum (one or two of them), the unused low bits before the padding must be zero,
 * and whitespace or any other character outside the alphabet is an error. */
#ifndef VB_COMMON_BASE64_H
#define VB_COMMON_BASE64_H

#include <stddef.h>
#include <stdint.h>

/* Characters the encoding of N bytes takes, without the NUL. */
#define VB_BASE64_ENCLEN(n) (4 * (((size_t)(n) + 2) / 3))
/* Upper bound of the bytes that N characters decode to. */
#define VB_BASE64_DECLEN(n) (3 * ((size_t)(n) / 4))

/* Writes VB_BASE64_ENCLEN(n) characters and a NUL to OUT (which needs one more byte than
 * that); returns the number of characters. */
size_t vb_base64_encode(const uint8_t *in, size_t n, char *out);

/* Decodes N characters of IN into OUT (capacity CAP); *OUTLEN gets the byte count.
 * Returns 0, -EINVAL for anything that is not canonical base64, or -ENOSPC when the
 * result does not fit in CAP (nothing is then promised about OUT). */
int vb_base64_decode(const char *in, size_t n, uint8_t *out, size_t cap, size_t *outlen);

#endif
