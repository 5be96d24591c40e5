/* G.711 mu-law <-> linear PCM16 (ITU-T G.711, 14-bit mu-law with bias 0x84).
 * Used by the media worker on every 20 ms frame and by voxbridge-callsim. No state, no
 * allocation: decoding is one table look-up per byte, encoding a few bit operations. */
#ifndef VB_COMMON_G711_H
#define VB_COMMON_G711_H

#include <stddef.h>
#include <stdint.h>

/* The mu-law byte of digital silence (positive zero). */
#define VB_ULAW_SILENCE 0xFF

extern const int16_t vb_ulaw_table[256];

static inline int16_t vb_ulaw_to_pcm(uint8_t u)
{
    return vb_ulaw_table[u];
}

uint8_t vb_pcm_to_ulaw(int16_t pcm);

/* N mu-law bytes -> N samples; N samples -> N bytes. IN and OUT may not overlap. */
void vb_ulaw_decode(const uint8_t *in, size_t n, int16_t *out);
void vb_ulaw_encode(const int16_t *in, size_t n, uint8_t *out);

#endif
