/* Single-producer/single-consumer ring of fixed-size elements that lives in
 * shared memory (shm/ring_layout.h). Used by the media worker, the AI broker
 * and the store, each at one end of a ring in its call's slot; the master only
 * (re)initialises rings when it hands a slot out, it never reads them.
 *
 * Exactly one process pushes and exactly one pops a given ring at any time.
 * A producer never blocks: a full ring drops the element and counts it. The
 * release of `tail` after the element is written is the commit point, so a
 * producer killed mid-push leaves nothing half-read.
 *
 * Doorbells: vb_ring_push returns 1 when the consumer had caught up with
 * everything before this element, i.e. it may be asleep; the caller then rings
 * the consumer's eventfd. No wake-up is lost provided the consumer, when woken,
 * first drains its eventfd and then pops until -EAGAIN before sleeping again. */
#ifndef VB_SHM_RING_H
#define VB_SHM_RING_H

#include <stddef.h>
#include <stdint.h>

#include "shm/ring_layout.h"

typedef struct vb_ring vb_ring_t;

/* Bytes for the header plus `capacity` elements; 0 if capacity is not a power of
 * two in [1, VB_RING_MAX_CAP] or elem_size is 0 or above VB_RING_MAX_ELEM. */
size_t vb_ring_footprint(uint32_t capacity, uint32_t elem_size);

/* Set up an empty ring in vb_ring_footprint() bytes at R (64-byte aligned).
 * Both indices start at start_index (tests start near UINT32_MAX); the drop
 * counter is zeroed. Not safe while another process uses the ring. */
void vb_ring_init(vb_ring_t *r, uint32_t capacity, uint32_t elem_size, uint32_t start_index);

/* Producer. 1: pushed and the ring was empty before (ring the doorbell);
 * 0: pushed; -ENOSPC: full, dropped and counted (ring and VB_STAT ring_drops);
 * -EMSGSIZE: len > elem_size, nothing queued. */
int vb_ring_push(vb_ring_t *r, const void *data, uint32_t len);

/* Consumer. Copies the oldest element into OUT and its length into *LEN (LEN may
 * be NULL). 0, or -EAGAIN when empty; -EMSGSIZE when cap is smaller than the
 * element (it stays queued, *LEN says how much room it needs); -EBADMSG when the
 * ring was found inconsistent (only after outside corruption or a stale process
 * touching a reset ring): the bad element or the whole backlog is skipped. */
int vb_ring_pop(vb_ring_t *r, void *out, uint32_t cap, uint32_t *len);

/* Either side, a snapshot. */
uint32_t vb_ring_count(const vb_ring_t *r);
uint32_t vb_ring_free(const vb_ring_t *r);
uint64_t vb_ring_drops(const vb_ring_t *r);
uint32_t vb_ring_capacity(const vb_ring_t *r);
uint32_t vb_ring_elem_size(const vb_ring_t *r);

/* Consumer: drop all that is queued now (head = tail). */
void vb_ring_discard(vb_ring_t *r);

/* Consumer, for data that must not be lost (the store's records): copy the
 * element at *CURSOR without giving it back to the producer, and move *CURSOR
 * past it. Returns as vb_ring_pop. Start the cursor at vb_ring_cursor(); one
 * found outside [head, tail] (the ring was reset) starts again at head. The elements stay in the
 * ring, so a consumer killed before vb_ring_release finds them again (it must
 * then tolerate seeing them twice); the producer meanwhile sees the ring as
 * busy and does not ring the bell, so the consumer looks again on its tick. */
int vb_ring_peek(vb_ring_t *r, uint32_t *cursor, void *out, uint32_t cap, uint32_t *len);
/* Consumer: where reading starts (the head). */
uint32_t vb_ring_cursor(const vb_ring_t *r);
/* Consumer: give back everything before CURSOR (from vb_ring_peek). */
void vb_ring_release(vb_ring_t *r, uint32_t cursor);

#endif
