/* Half-band 2:1 resampling: see halfband.h. */
#include "worker/halfband.h"

#include <math.h>
#include <string.h>

#include "common/log.h"

#define KAISER_BETA 6.0 /* with 15 taps a side: images 62 dB down from 4.6 kHz */
#define PAD (VB_HB_DOT - 2 * VB_HB_SIDE)

/* The zeroth-order modified Bessel function, by its series (converges fast for x < 10). */
static double bessel_i0(double x)
{
    double sum = 1.0, term = 1.0;
    for (int k = 1; k < 30; k++) {
        term *= (x / (2.0 * k)) * (x / (2.0 * k));
        sum += term;
    }
    return sum;
}

/* The taps for GAIN (Q14): the upsampler's are 2.0 (it fills zeros between the samples),
 * the downsampler's 1.0. */
static void hb_taps(vb_hb_taps_t *t, int32_t gain)
{
    double c[VB_HB_SIDE], sum = 0;
    for (int j = 1; j <= VB_HB_SIDE; j++) {
        double n = 2 * j - 1; /* the odd offsets from the centre; the even ones are zero */
        double ideal = (j % 2 ? 1.0 : -1.0) / (M_PI * n);
        double r = n / (2.0 * VB_HB_SIDE);
        c[j - 1] = ideal * bessel_i0(KAISER_BETA * sqrt(1.0 - r * r)) / bessel_i0(KAISER_BETA);
        sum += c[j - 1];
    }
    /* The centre tap is 1/2, so the odd taps (both sides) must add up to 1/2 for unit
     * gain at 0 Hz. */
    memset(t->taps, 0, sizeof(t->taps));
    for (int j = 1; j <= VB_HB_SIDE; j++) {
        int16_t q = (int16_t)lrint(c[j - 1] * 0.25 / sum * gain);
        t->taps[PAD + VB_HB_SIDE - j] = q;
        t->taps[PAD + VB_HB_SIDE - 1 + j] = q;
    }
}

/* Sums of products of int16 lanes: plain C the compiler turns into pmaddwd/smlal. */
static int32_t dot(const int16_t *w, const int16_t *taps)
{
    int32_t acc = 0;
    for (int i = 0; i < VB_HB_DOT; i++) {
        acc += (int32_t)w[i] * taps[i];
    }
    return acc;
}

static int16_t q14_to_sample(int32_t acc)
{
    int32_t v = (acc + VB_HB_ONE / 2) >> 14;
    return (int16_t)(v > INT16_MAX ? INT16_MAX : v < INT16_MIN ? INT16_MIN : v);
}

void vb_hb_up_init(vb_hb_up_t *s)
{
    memset(s->buf, 0, sizeof(s->buf));
    hb_taps(&s->t, 2 * VB_HB_ONE);
}

void vb_hb_up(vb_hb_up_t *s, const int16_t *in, unsigned n, int16_t *out)
{
    VB_ASSERT(n <= VB_HB_MAX_IN);
    memcpy(s->buf + VB_HB_HIST, in, n * sizeof(*in));
    for (unsigned m = 0; m < n; m++) {
        const int16_t *w = s->buf + m;
        /* The input sample just before the point half-way between the centre two, then
         * that point. */
        out[2 * m] = w[PAD + VB_HB_SIDE - 1];
        out[2 * m + 1] = q14_to_sample(dot(w, s->t.taps));
    }
    memmove(s->buf, s->buf + n, VB_HB_HIST * sizeof(s->buf[0]));
}

void vb_hb_down_init(vb_hb_down_t *s)
{
    memset(s->even, 0, sizeof(s->even));
    memset(s->odd, 0, sizeof(s->odd));
    hb_taps(&s->t, VB_HB_ONE);
}

void vb_hb_down(vb_hb_down_t *s, const int16_t *in, unsigned n, int16_t *out)
{
    VB_ASSERT(n <= VB_HB_MAX_IN);
    for (unsigned m = 0; m < n; m++) {
        s->even[VB_HB_HIST + m] = in[2 * m];
        s->odd[VB_HB_HIST + m] = in[2 * m + 1];
    }
    for (unsigned m = 0; m < n; m++) {
        /* The centre tap (1/2) falls on the even stream, the others on the odd one. */
        int32_t centre = s->even[m + VB_HB_HIST - (VB_HB_SIDE - 1)];
        out[m] = q14_to_sample(dot(s->odd + m, s->t.taps) + centre * (VB_HB_ONE / 2));
    }
    memmove(s->even, s->even + n, VB_HB_HIST * sizeof(s->even[0]));
    memmove(s->odd, s->odd + n, VB_HB_HIST * sizeof(s->odd[0]));
}
