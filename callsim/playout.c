/* voxbridge-callsim: the simulated Twilio playout buffer (see playout.h). */
#include "callsim/playout.h"

#include <errno.h>
#include <stdlib.h>
#include <string.h>

#define PLAYOUT_INITIAL (VB_CS_RATE * 2)

static const int16_t zeros[VB_CS_FRAME];

int vb_cs_playout_init(vb_cs_playout_t *p, const vb_cs_playout_cb_t *cb)
{
    memset(p, 0, sizeof(*p));
    p->cap = 1;
    while (p->cap < PLAYOUT_INITIAL) {
        p->cap <<= 1;
    }
    p->q = malloc(p->cap * sizeof(*p->q));
    if (p->q == NULL) {
        return -ENOMEM;
    }
    p->empty_at = -1;
    p->cb = *cb;
    return 0;
}

static void answer_marks(vb_cs_playout_t *p, uint64_t upto)
{
    size_t i = 0;
    while (i < p->nmarks && p->marks[i].pos <= upto) {
        if (p->cb.on_mark != NULL) {
            p->cb.on_mark(p->marks[i].name, p->cb.arg);
        }
        free(p->marks[i].name);
        i++;
    }
    if (i > 0) {
        memmove(p->marks, p->marks + i, (p->nmarks - i) * sizeof(*p->marks));
        p->nmarks -= i;
    }
}

void vb_cs_playout_free(vb_cs_playout_t *p)
{
    for (size_t i = 0; i < p->nmarks; i++) {
        free(p->marks[i].name);
    }
    free(p->marks);
    free(p->q);
    memset(p, 0, sizeof(*p));
}

static void emit_silence(vb_cs_playout_t *p, int64_t n)
{
    while (n > 0) {
        size_t k = n < VB_CS_FRAME ? (size_t)n : VB_CS_FRAME;
        if (p->cb.on_audio != NULL) {
            p->cb.on_audio(zeros, k, p->cb.arg);
        }
        p->out += (int64_t)k;
        n -= (int64_t)k;
    }
}

/* Plays N queued samples (N <= queued), in at most two pieces around the wrap. */
static void emit_queued(vb_cs_playout_t *p, size_t n)
{
    while (n > 0) {
        size_t at = (size_t)(p->head & (p->cap - 1));
        size_t k = p->cap - at < n ? p->cap - at : n;
        if (p->cb.on_audio != NULL) {
            p->cb.on_audio(p->q + at, k, p->cb.arg);
        }
        p->head += k;
        p->out += (int64_t)k;
        n -= k;
    }
    p->anchor = p->out;
}

void vb_cs_playout_advance(vb_cs_playout_t *p, int64_t now)
{
    while (p->out < now) {
        if (p->head == p->tail) {
            emit_silence(p, now - p->out);
            break;
        }
        if (p->anchor > p->out) {
            emit_silence(p, (p->anchor < now ? p->anchor : now) - p->out);
            continue;
        }
        uint64_t queued = p->tail - p->head;
        uint64_t due = (uint64_t)(now - p->out);
        emit_queued(p, (size_t)(queued < due ? queued : due));
        answer_marks(p, p->head);
        if (p->head == p->tail) {
            p->empty_at = p->out;
        }
    }
}

size_t vb_cs_playout_queued(const vb_cs_playout_t *p)
{
    return (size_t)(p->tail - p->head);
}

int vb_cs_playout_holds_sound(const vb_cs_playout_t *p, int level)
{
    for (uint64_t i = p->head; i != p->tail; i++) {
        int v = p->q[i & (p->cap - 1)];
        if (v >= level || -v >= level) {
            return 1;
        }
    }
    return 0;
}

/* Makes room for N more samples, keeping the queued ones in order. */
static int reserve(vb_cs_playout_t *p, size_t n)
{
    size_t queued = vb_cs_playout_queued(p);
    if (queued + n <= p->cap) {
        return 0;
    }
    size_t cap = p->cap;
    while (cap < queued + n) {
        cap <<= 1;
    }
    int16_t *nq = malloc(cap * sizeof(*nq));
    if (nq == NULL) {
        return -ENOMEM;
    }
    for (uint64_t i = p->head; i != p->tail; i++) {
        nq[i & (cap - 1)] = p->q[i & (p->cap - 1)];
    }
    free(p->q);
    p->q = nq;
    p->cap = cap;
    return 0;
}

int vb_cs_playout_push(vb_cs_playout_t *p, int64_t now, const int16_t *pcm, size_t n)
{
    vb_cs_playout_advance(p, now);
    size_t queued = vb_cs_playout_queued(p);
    size_t room = queued < VB_CS_PLAYOUT_MAX ? VB_CS_PLAYOUT_MAX - queued : 0;
    size_t take = n < room ? n : room;
    if (take > 0 && reserve(p, take) < 0) {
        take = 0;
    }
    if (queued == 0 && take > 0) {
        p->anchor = now > p->out ? now : p->out;
    }
    for (size_t i = 0; i < take; i++) {
        p->q[(p->tail + i) & (p->cap - 1)] = pcm[i];
    }
    p->tail += take;
    p->dropped += n - take;
    return take == n ? 0 : -ENOBUFS;
}

int vb_cs_playout_mark(vb_cs_playout_t *p, int64_t now, const char *name)
{
    vb_cs_playout_advance(p, now);
    if (p->head == p->tail) {
        if (p->cb.on_mark != NULL) {
            p->cb.on_mark(name, p->cb.arg);
        }
        return 0;
    }
    if (p->nmarks == p->mcap) {
        size_t mcap = p->mcap ? p->mcap * 2 : 8;
        vb_cs_mark_t *nm = realloc(p->marks, mcap * sizeof(*nm));
        if (nm == NULL) {
            return -ENOMEM;
        }
        p->marks = nm;
        p->mcap = mcap;
    }
    char *copy = strdup(name);
    if (copy == NULL) {
        return -ENOMEM;
    }
    p->marks[p->nmarks++] = (vb_cs_mark_t){.pos = p->tail, .name = copy};
    return 0;
}

size_t vb_cs_playout_clear(vb_cs_playout_t *p, int64_t now)
{
    vb_cs_playout_advance(p, now);
    size_t n = p->nmarks;
    if (p->head != p->tail) {
        p->empty_at = p->out;
    }
    p->head = p->tail;
    answer_marks(p, p->tail);
    return n;
}
