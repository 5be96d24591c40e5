/* 2:1 resampling between the line's 8 kHz and the internal 16 kHz, for whole 20 ms
 * frames, with one half-band FIR filter (59 taps, Kaiser window).
 *
 * Why not speexdsp's resampler (DESIGN.md names speexdsp for the conversion; this is the
 * written-down deviation): at a 2:1 ratio every other tap of the ideal filter is zero
 * and, going up, every other output sample is a plain copy of an input sample. speexdsp's
 * general polyphase filter multiplies them all: at its quality 3 it spends 48 products
 * per sample up and 96 down, where this filter needs 15 and 15 for a flatter band (0.01
 * dB to 3.3 kHz against 0.5) and images 62 dB down from 4.6 kHz. Under load speexdsp's
 * resampler was 12 % of both cores at 400 echo calls; see docs/benchmarks.md. The delay
 * is also shorter: 1.9 and 1.75 ms (15 samples at 8 kHz up, 28 at 16 kHz down) against 3
 * and 3.
 * 15 taps a side, not fewer: the offline recogniser (pocketsphinx on phone audio) is
 * sensitive to the band edge; with 13 it missed an utterance of tests/unit/test_stt_local
 * that speexdsp's filter let through. The steep edge sits at 4 kHz (-6 dB there).
 *
 * Integer arithmetic (Q14 taps, int32 sums) so that the compiler can vectorise the dot
 * products without -ffast-math; the taps' absolute sum keeps a full-scale input from
 * overflowing the sum (tests/unit/test_dsp.c checks it). */
#ifndef VB_WORKER_HALFBAND_H
#define VB_WORKER_HALFBAND_H

#include <stdint.h>

#define VB_HB_SIDE 15              /* non-zero taps each side of the centre */
#define VB_HB_DOT 32               /* the dot product's length: 2 * VB_HB_SIDE, padded */
#define VB_HB_HIST (VB_HB_DOT - 1) /* input samples kept from the frame before */
#define VB_HB_MAX_IN 160           /* samples per frame at 8 kHz (per phase at 16 kHz) */
#define VB_HB_ONE 16384            /* 1.0 in the taps' Q14 */

/* The filter's odd-phase taps, zero-padded at the front to VB_HB_DOT. */
typedef struct {
    int16_t taps[VB_HB_DOT];
} vb_hb_taps_t;

/* 8 kHz -> 16 kHz. */
typedef struct {
    int16_t buf[VB_HB_HIST + VB_HB_MAX_IN];
    vb_hb_taps_t t;
} vb_hb_up_t;

/* 16 kHz -> 8 kHz: the even and odd samples are filtered as two streams. */
typedef struct {
    int16_t even[VB_HB_HIST + VB_HB_MAX_IN];
    int16_t odd[VB_HB_HIST + VB_HB_MAX_IN];
    vb_hb_taps_t t;
} vb_hb_down_t;

void vb_hb_up_init(vb_hb_up_t *s);
/* N (at most VB_HB_MAX_IN) samples in, 2N out. */
void vb_hb_up(vb_hb_up_t *s, const int16_t *in, unsigned n, int16_t *out);

void vb_hb_down_init(vb_hb_down_t *s);
/* 2N samples in (N at most VB_HB_MAX_IN), N out. */
void vb_hb_down(vb_hb_down_t *s, const int16_t *in, unsigned n, int16_t *out);

#endif
