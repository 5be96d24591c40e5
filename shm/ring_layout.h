/* Memory layout of an SPSC ring header as it sits in the shared region. Every
 * process (master, worker, broker, store) maps the same bytes, so this header
 * holds only fixed-width integers and lock-free atomics, never pointers. */
#ifndef VB_SHM_RING_LAYOUT_H
#define VB_SHM_RING_LAYOUT_H

#include <stdalign.h>
#include <stdatomic.h>
#include <stddef.h>
#include <stdint.h>

#define VB_RING_MAGIC 0x52424256u /* "VBBR" */
#define VB_RING_CACHE_LINE 64u
#define VB_RING_HDR_SIZE (3u * VB_RING_CACHE_LINE)
/* Each element is an 8-byte header (stored length) then the payload, padded to 8. */
#define VB_RING_ELEM_HDR 8u
#define VB_RING_STRIDE(elem_size)                                                              \
    ((((size_t)(elem_size)) + VB_RING_ELEM_HDR + 7u) & ~(size_t)7u)
#define VB_RING_FOOTPRINT(cap, elem_size)                                                      \
    ((size_t)VB_RING_HDR_SIZE + (size_t)(cap)*VB_RING_STRIDE(elem_size))
/* Largest element and capacity vb_ring_init accepts. */
#define VB_RING_MAX_ELEM (1u << 24)
#define VB_RING_MAX_CAP (1u << 24)

/* Atomics across processes must be lock-free (a lock-based atomic would keep
 * its lock in process-local memory). */
_Static_assert(ATOMIC_INT_LOCK_FREE == 2, "32-bit atomics must be lock-free");
_Static_assert(ATOMIC_LLONG_LOCK_FREE == 2, "64-bit atomics must be lock-free");
_Static_assert(sizeof(_Atomic uint32_t) == 4, "_Atomic uint32_t must be 4 bytes");
_Static_assert(sizeof(_Atomic uint64_t) == 8, "_Atomic uint64_t must be 8 bytes");

struct vb_ring {
    /* Line 0: written by vb_ring_init only, then read-only for both sides. */
    uint32_t magic;
    uint32_t capacity; /* power of two */
    uint32_t mask;     /* capacity - 1 */
    uint32_t elem_size;
    uint32_t stride; /* VB_RING_STRIDE(elem_size) */
    uint32_t rsvd0[11];
    /* Line 1: the producer's. tail = next index to write, free-running. */
    alignas(VB_RING_CACHE_LINE) _Atomic uint32_t tail;
    uint32_t rsvd1;
    _Atomic uint64_t drops; /* pushes refused because the ring was full */
    uint32_t rsvd2[12];
    /* Line 2: the consumer's. head = next index to read, free-running. */
    alignas(VB_RING_CACHE_LINE) _Atomic uint32_t head;
    uint32_t rsvd3[15];
    /* capacity elements of `stride` bytes follow. */
    alignas(VB_RING_CACHE_LINE) unsigned char elems[];
};

/* One element: its length, then the payload. */
struct vb_ring_elem {
    uint32_t len;
    uint32_t rsvd;
    unsigned char data[];
};

_Static_assert(offsetof(struct vb_ring, tail) == 64, "tail must start line 1");
_Static_assert(offsetof(struct vb_ring, head) == 128, "head must start line 2");
_Static_assert(offsetof(struct vb_ring, elems) == VB_RING_HDR_SIZE,
               "elements follow the header");
_Static_assert(sizeof(struct vb_ring) == VB_RING_HDR_SIZE, "ring header is three lines");
_Static_assert(alignof(struct vb_ring) == VB_RING_CACHE_LINE, "ring header is line aligned");
_Static_assert(sizeof(struct vb_ring_elem) == VB_RING_ELEM_HDR, "element header is 8 bytes");

#endif
