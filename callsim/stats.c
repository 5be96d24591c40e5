/* voxbridge-callsim: per-call measurements (see stats.h). */
#include "callsim/stats.h"

#include <errno.h>
#include <math.h>
#include <stdlib.h>
#include <string.h>

void vb_cs_rx_init(vb_cs_rx_t *rx)
{
    memset(rx, 0, sizeof(*rx));
    rx->last = -1;
}

void vb_cs_rx_media(vb_cs_rx_t *rx, int64_t now, size_t queued, int64_t empty_at)
{
    rx->messages++;
    if (rx->last >= 0) {
        int64_t dry = (queued == 0 && empty_at >= 0) ? now - empty_at : 0;
        int flowing = queued > 0 || dry < VB_CS_SAMPLES(VB_CS_SPURT_END_MS);
        if (flowing) {
            int64_t gap = now - rx->last;
            if (gap > rx->max_gap) {
                rx->max_gap = gap;
            }
            if (gap > VB_CS_SAMPLES(VB_CS_GAP_MS)) {
                rx->gaps_over++;
            }
            int64_t late_ms = dry / 8;
            rx->lateness[late_ms < VB_CS_LATENESS_BUCKETS ? late_ms : VB_CS_LATENESS_BUCKETS - 1]++;
            if (dry > VB_CS_SAMPLES(VB_CS_LATE_TOLERANCE_MS)) {
                rx->late++;
                rx->underrun_samples += dry;
            }
        }
    }
    rx->last = now;
}

void vb_cs_rx_clear(vb_cs_rx_t *rx)
{
    rx->last = -1;
}

void vb_cs_lateness_add(uint64_t total[VB_CS_LATENESS_BUCKETS], const vb_cs_rx_t *rx)
{
    for (int i = 0; i < VB_CS_LATENESS_BUCKETS; i++) {
        total[i] += rx->lateness[i];
    }
}

double vb_cs_lateness_pct(const uint64_t hist[VB_CS_LATENESS_BUCKETS], double p)
{
    uint64_t n = 0;
    for (int i = 0; i < VB_CS_LATENESS_BUCKETS; i++) {
        n += hist[i];
    }
    if (n == 0) {
        return 0;
    }
    uint64_t rank = (uint64_t)ceil(p / 100.0 * (double)n), seen = 0;
    rank = rank < 1 ? 1 : rank;
    for (int i = 0; i < VB_CS_LATENESS_BUCKETS; i++) {
        seen += hist[i];
        if (seen >= rank) {
            return i;
        }
    }
    return VB_CS_LATENESS_BUCKETS - 1;
}

void vb_cs_onset_init(vb_cs_onset_t *o, double on_dbfs, int quiet_ms)
{
    const double fs = 32768.0 * 32768.0;
    memset(o, 0, sizeof(*o));
    o->on_energy = fs * pow(10.0, on_dbfs / 10.0);
    o->on_amp = sqrt(o->on_energy);
    o->quiet_energy = fs * pow(10.0, (on_dbfs - 10.0) / 10.0);
    o->quiet_need = (quiet_ms * 8 + VB_CS_ONSET_WIN - 1) / VB_CS_ONSET_WIN;
    o->armed = 1;
    o->last_sound = -1;
}

/* One full window ending at o->pos: returns 1 if it is an onset. */
static int onset_window(vb_cs_onset_t *o, double energy)
{
    if (energy >= o->on_energy) {
        o->quiet_run = 0;
        if (o->armed) {
            o->armed = 0;
            return 1;
        }
    } else if (energy < o->quiet_energy) {
        if (++o->quiet_run >= o->quiet_need) {
            o->armed = 1;
        }
    } else {
        o->quiet_run = 0;
    }
    return 0;
}

/* The onset in the last two windows (o->pos is just past the loud one). */
static int64_t onset_position(const vb_cs_onset_t *o)
{
    int64_t first = o->pos - 2 * VB_CS_ONSET_WIN;
    for (int64_t p = first < 0 ? 0 : first; p < o->pos; p++) {
        if (fabs((double)o->hist[p % (2 * VB_CS_ONSET_WIN)]) >= o->on_amp) {
            return p;
        }
    }
    return o->pos - VB_CS_ONSET_WIN;
}

size_t vb_cs_onset_feed(vb_cs_onset_t *o, const int16_t *pcm, size_t n, int64_t *out,
                        size_t cap)
{
    size_t found = 0;
    while (n > 0) {
        /* Up to the end of the current window; windows start at multiples of their length,
         * so one lies whole in a half of the ring. An integer sum per piece: this runs on
         * every sample of every call and the load generator shares the server's cores. */
        size_t k = (size_t)(VB_CS_ONSET_WIN - o->fill);
        k = k < n ? k : n;
        int16_t *dst = o->hist + o->pos % (2 * VB_CS_ONSET_WIN);
        int64_t acc = 0;
        for (size_t i = 0; i < k; i++) {
            dst[i] = pcm[i];
            acc += (int32_t)pcm[i] * pcm[i];
        }
        o->acc += acc;
        o->pos += (int64_t)k;
        o->fill += (int)k;
        pcm += k;
        n -= k;
        if (o->fill < VB_CS_ONSET_WIN) {
            break;
        }
        double energy = (double)o->acc / VB_CS_ONSET_WIN;
        if (energy >= o->quiet_energy) {
            o->last_sound = o->pos;
        }
        if (onset_window(o, energy)) {
            if (found < cap) {
                out[found] = onset_position(o);
            }
            found++;
        }
        o->acc = 0;
        o->fill = 0;
    }
    return found;
}

int vb_cs_lat_add(vb_cs_lat_t *l, double ms)
{
    if (l->n == l->cap) {
        size_t cap = l->cap ? l->cap * 2 : 64;
        double *nv = realloc(l->v, cap * sizeof(*nv));
        if (nv == NULL) {
            return -ENOMEM;
        }
        l->v = nv;
        l->cap = cap;
    }
    l->v[l->n++] = ms;
    return 0;
}

int vb_cs_lat_merge(vb_cs_lat_t *l, const vb_cs_lat_t *src)
{
    for (size_t i = 0; i < src->n; i++) {
        int rc = vb_cs_lat_add(l, src->v[i]);
        if (rc < 0) {
            return rc;
        }
    }
    return 0;
}

static int cmp_double(const void *a, const void *b)
{
    double x = *(const double *)a, y = *(const double *)b;
    return (x > y) - (x < y);
}

double vb_cs_lat_pct(vb_cs_lat_t *l, double p)
{
    if (l->n == 0) {
        return 0;
    }
    qsort(l->v, l->n, sizeof(*l->v), cmp_double);
    size_t rank = (size_t)ceil(p / 100.0 * (double)l->n);
    if (rank < 1) {
        rank = 1;
    }
    if (rank > l->n) {
        rank = l->n;
    }
    return l->v[rank - 1];
}

double vb_cs_lat_max(const vb_cs_lat_t *l)
{
    double m = 0;
    for (size_t i = 0; i < l->n; i++) {
        if (l->v[i] > m) {
            m = l->v[i];
        }
    }
    return m;
}

void vb_cs_lat_free(vb_cs_lat_t *l)
{
    free(l->v);
    memset(l, 0, sizeof(*l));
}

void vb_cs_rtt_init(vb_cs_rtt_t *r, int skip)
{
    memset(r, 0, sizeof(*r));
    r->skip = skip;
}

int vb_cs_rtt_turn(vb_cs_rtt_t *r, int64_t at)
{
    if (r->n == r->cap) {
        size_t cap = r->cap ? r->cap * 2 : 16;
        int64_t *nt = realloc(r->turns, cap * sizeof(*nt));
        if (nt == NULL) {
            return -ENOMEM;
        }
        r->turns = nt;
        r->cap = cap;
    }
    r->turns[r->n++] = at;
    return 0;
}

int vb_cs_rtt_onset(vb_cs_rtt_t *r, int64_t at)
{
    if (r->skip > 0) {
        r->skip--;
        return 0;
    }
    size_t k = 0;
    while (k < r->n && r->turns[k] <= at + VB_CS_ONSET_WIN) {
        k++;
    }
    if (k == 0) {
        return 0;
    }
    int64_t rtt = at - r->turns[k - 1];
    vb_cs_lat_add(&r->lat, VB_CS_MS(rtt > 0 ? rtt : 0));
    r->unanswered += k - 1;
    memmove(r->turns, r->turns + k, (r->n - k) * sizeof(*r->turns));
    r->n -= k;
    return 1;
}

void vb_cs_rtt_free(vb_cs_rtt_t *r)
{
    free(r->turns);
    vb_cs_lat_free(&r->lat);
    memset(r, 0, sizeof(*r));
}
