/* SPSC ring in shared memory: see ring.h. Runs in whichever process holds an
 * end of a ring (media worker, AI broker, store); the master only calls
 * vb_ring_init when it resets a slot.
 *
 * Memory ordering. Indices are free-running uint32_t; `tail - head` is the
 * number of queued elements modulo 2^32. Three edges, each labelled where its
 * two halves are:
 *   [A] publish: producer writes the element, then stores tail;
 *       consumer loads tail, then reads the element.
 *   [B] reclaim: consumer reads the element, then stores head;
 *       producer loads head, then overwrites the element.
 *   [C] doorbell (store-load, Dekker): producer stores tail then loads head;
 *       consumer stores head (previous pop) then loads tail. With all four
 *       seq_cst, one of them sees the other: either the consumer sees the new
 *       element before it sleeps, or the producer sees the consumer caught up
 *       and rings the bell. Release/acquire alone would allow both to miss.
 * The seq_cst accesses are also release (stores) and acquire (loads), so they
 * carry [A] and [B] too. */
#include "shm/ring.h"

#include <errno.h>
#include <stdlib.h>
#include <string.h>

#include "common/log.h"
#include "common/stats.h"

static int is_pow2(uint32_t v)
{
    return v != 0 && (v & (v - 1)) == 0;
}

static struct vb_ring_elem *elem_at(vb_ring_t *r, uint32_t idx)
{
    return (struct vb_ring_elem *)(r->elems + (size_t)(idx & r->mask) * r->stride);
}

size_t vb_ring_footprint(uint32_t capacity, uint32_t elem_size)
{
    if (!is_pow2(capacity) || capacity > VB_RING_MAX_CAP || elem_size == 0 ||
        elem_size > VB_RING_MAX_ELEM) {
        return 0;
    }
    return VB_RING_FOOTPRINT(capacity, elem_size);
}

void vb_ring_init(vb_ring_t *r, uint32_t capacity, uint32_t elem_size, uint32_t start_index)
{
    VB_ASSERT(vb_ring_footprint(capacity, elem_size) != 0);
    VB_ASSERT(((uintptr_t)r % VB_RING_CACHE_LINE) == 0);
    r->magic = VB_RING_MAGIC;
    r->capacity = capacity;
    r->mask = capacity - 1;
    r->elem_size = elem_size;
    r->stride = (uint32_t)VB_RING_STRIDE(elem_size);
    /* Relaxed: whoever hands the ring to its users publishes it (the slot's
     * state store in vb_slot_assign, fork, or pthread_create). */
    atomic_store_explicit(&r->tail, start_index, memory_order_relaxed);
    atomic_store_explicit(&r->head, start_index, memory_order_relaxed);
    atomic_store_explicit(&r->drops, 0, memory_order_relaxed);
}

static int push_drop(vb_ring_t *r)
{
    atomic_fetch_add_explicit(&r->drops, 1, memory_order_relaxed);
    VB_STAT_INC(ring_drops);
    return -ENOSPC;
}

int vb_ring_push(vb_ring_t *r, const void *data, uint32_t len)
{
    if (len > r->elem_size) {
        return -EMSGSIZE;
    }
    /* Relaxed: tail is written only by this (the producing) side. */
    uint32_t tail = atomic_load_explicit(&r->tail, memory_order_relaxed);
    /* Acquire, [B] reclaim: pairs with the consumer's store of head in
     * vb_ring_pop / vb_ring_discard; the slots below head are read and free. */
    uint32_t head = atomic_load_explicit(&r->head, memory_order_acquire);
    if ((uint32_t)(tail - head) >= r->capacity) {
        /* Full, or (tail - head) > capacity after a stale process reset the
         * consumer side: refuse either way, never overwrite unread data. */
        return push_drop(r);
    }
    struct vb_ring_elem *e = elem_at(r, tail);
    e->len = len;
    if (len > 0) {
        memcpy(e->data, data, len);
    }
    /* Seq_cst store, the commit point. [A] publish: pairs with the consumer's
     * load of tail in vb_ring_pop, making e->len and e->data visible to it.
     * [C] doorbell: first half of the producer's store-load pair. */
    atomic_store_explicit(&r->tail, tail + 1, memory_order_seq_cst);
    /* Seq_cst load, [C] doorbell: pairs with the consumer's seq_cst store of
     * head followed by its seq_cst load of tail. head == tail means the consumer
     * had taken everything before this element and may be going to sleep. */
    head = atomic_load_explicit(&r->head, memory_order_seq_cst);
    return head == tail ? 1 : 0;
}

static int pop_resync(vb_ring_t *r, uint32_t to)
{
    /* Seq_cst store, [B] reclaim and [C] doorbell: as in vb_ring_pop. */
    atomic_store_explicit(&r->head, to, memory_order_seq_cst);
    return -EBADMSG;
}

int vb_ring_pop(vb_ring_t *r, void *out, uint32_t cap, uint32_t *len)
{
    /* Relaxed: head is written only by this (the consuming) side. */
    uint32_t head = atomic_load_explicit(&r->head, memory_order_relaxed);
    /* Seq_cst load. [A] publish: pairs with the producer's store of tail in
     * vb_ring_push; elements below tail are fully written. [C] doorbell:
     * second half of the consumer's store-load pair (the store of head was
     * the previous pop's). */
    uint32_t tail = atomic_load_explicit(&r->tail, memory_order_seq_cst);
    uint32_t used = tail - head;
    if (used == 0) {
        return -EAGAIN;
    }
    if (used > r->capacity) {
        return pop_resync(r, tail);
    }
    const struct vb_ring_elem *e = elem_at(r, head);
    uint32_t n = e->len;
    if (n > r->elem_size) {
        return pop_resync(r, head + 1);
    }
    if (len != NULL) {
        *len = n;
    }
    if (n > cap) {
        return -EMSGSIZE;
    }
    if (n > 0) {
        memcpy(out, e->data, n);
    }
    /* Seq_cst store. [B] reclaim: pairs with the producer's acquire load of
     * head in vb_ring_push; we are done reading this element. [C] doorbell:
     * first half of the consumer's store-load pair. */
    atomic_store_explicit(&r->head, head + 1, memory_order_seq_cst);
    return 0;
}

int vb_ring_peek(vb_ring_t *r, uint32_t *cursor, void *out, uint32_t cap, uint32_t *len)
{
    uint32_t head = atomic_load_explicit(&r->head, memory_order_relaxed);
    /* Seq_cst load: [A] publish and [C] doorbell, as in vb_ring_pop. */
    uint32_t tail = atomic_load_explicit(&r->tail, memory_order_seq_cst);
    if (tail - head > r->capacity) {
        *cursor = tail;
        return pop_resync(r, tail);
    }
    if (*cursor - head > tail - head) {
        *cursor = head; /* never set, or the ring was reset under it */
    }
    if (*cursor == tail) {
        return -EAGAIN;
    }
    const struct vb_ring_elem *e = elem_at(r, *cursor);
    uint32_t n = e->len;
    if (n > r->elem_size) {
        (*cursor)++; /* skipped; released with the rest */
        return -EBADMSG;
    }
    if (len != NULL) {
        *len = n;
    }
    if (n > cap) {
        return -EMSGSIZE;
    }
    if (n > 0) {
        memcpy(out, e->data, n);
    }
    (*cursor)++;
    return 0;
}

uint32_t vb_ring_cursor(const vb_ring_t *r)
{
    /* Relaxed: head is written only by the consumer, who asks. */
    return atomic_load_explicit(&r->head, memory_order_relaxed);
}

void vb_ring_release(vb_ring_t *r, uint32_t cursor)
{
    uint32_t head = atomic_load_explicit(&r->head, memory_order_relaxed);
    /* Acquire, [A] publish: as in vb_ring_discard. */
    uint32_t tail = atomic_load_explicit(&r->tail, memory_order_acquire);
    if (cursor - head > tail - head) {
        return; /* stale: the ring was reset since the peek */
    }
    /* Seq_cst store, [B] reclaim and [C] doorbell: as in vb_ring_pop. */
    atomic_store_explicit(&r->head, cursor, memory_order_seq_cst);
}

void vb_ring_discard(vb_ring_t *r)
{
    /* Acquire, [A] publish: pairs with the producer's store of tail (nothing
     * is read, but the elements up to tail are then ours to release). */
    uint32_t tail = atomic_load_explicit(&r->tail, memory_order_acquire);
    /* Seq_cst store, [B] reclaim and [C] doorbell: as in vb_ring_pop. */
    atomic_store_explicit(&r->head, tail, memory_order_seq_cst);
}

uint32_t vb_ring_count(const vb_ring_t *r)
{
    /* Acquire, [B] reclaim (pairs with the consumer's store of head): the
     * consumer had seen tail >= head before it stored head, so the tail loaded
     * after this cannot be older, and a third process never sees tail < head.
     * A snapshot for decisions and gauges; push and pop load again. */
    uint32_t head = atomic_load_explicit(&r->head, memory_order_acquire);
    uint32_t tail = atomic_load_explicit(&r->tail, memory_order_relaxed);
    uint32_t used = tail - head;
    return used > r->capacity ? r->capacity : used;
}

uint32_t vb_ring_free(const vb_ring_t *r)
{
    return r->capacity - vb_ring_count(r);
}

uint64_t vb_ring_drops(const vb_ring_t *r)
{
    return atomic_load_explicit(&r->drops, memory_order_relaxed);
}

uint32_t vb_ring_capacity(const vb_ring_t *r)
{
    return r->capacity;
}

uint32_t vb_ring_elem_size(const vb_ring_t *r)
{
    return r->elem_size;
}
