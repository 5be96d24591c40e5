/* libFuzzer target: common/base64. Whatever decodes must re-encode to the same text (the
 * decoder only accepts canonical base64); any bytes must round-trip. */
#include <stdint.h>
#include <stdlib.h>
#include <string.h>

#include "common/base64.h"

int LLVMFuzzerTestOneInput(const uint8_t *data, size_t size);

int LLVMFuzzerTestOneInput(const uint8_t *data, size_t size)
{
    if (size > 65536) {
        return 0;
    }
    char *text = malloc(size ? size : 1);
    uint8_t *bin = malloc(VB_BASE64_DECLEN(size) + 1);
    char *enc = malloc(VB_BASE64_ENCLEN(size) + 1);
    uint8_t *back = malloc(size + 1);
    if (!text || !bin || !enc || !back) {
        abort();
    }
    memcpy(text, data, size);
    size_t n = 0;
    /* As text: decode with an exact-size buffer, then a short one. */
    if (vb_base64_decode(text, size, bin, VB_BASE64_DECLEN(size), &n) == 0) {
        size_t m = vb_base64_encode(bin, n, enc);
        if (m != size || memcmp(enc, text, size) != 0) {
            abort();
        }
        if (n > 0 && vb_base64_decode(text, size, bin, n - 1, &n) == 0) {
            abort();
        }
    }
    /* As bytes: encode and decode back. */
    size_t m = vb_base64_encode(data, size, enc);
    if (m != VB_BASE64_ENCLEN(size) || enc[m] != '\0' ||
        vb_base64_decode(enc, m, back, size, &n) != 0 || n != size ||
        memcmp(back, data, size) != 0) {
        abort();
    }
    free(text);
    free(bin);
    free(enc);
    free(back);
    return 0;
}
