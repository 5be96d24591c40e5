/* The shared region: the slot table, its rings and its eventfd doorbells. The
 * master creates it before forking, so every child inherits the mapping and
 * the fds; the master afterwards only touches slot metadata (gen, state, acks,
 * broker_epoch), never ring contents. Workers, brokers and the store use
 * the rings of the slots they serve. Layout in shm/slot_layout.h, the rules in
 * docs/shm.md. */
#ifndef VB_SHM_SHM_H
#define VB_SHM_SHM_H

#include <stddef.h>
#include <stdint.h>

#include "common/stats.h"
#include "shm/ring.h"
#include "shm/slot_layout.h"

typedef struct vb_shm vb_shm_t; /* process-local handle: base address, nslots, fds */

enum {
    VB_BELL_WORKER, /* something for the worker (agent audio, control b→w) */
    VB_BELL_BROKER, /* something for the broker (caller audio, control w→b) */
    VB_BELL_STORE,  /* something for the store (events) */
    VB_BELL__COUNT
};

/* ---- the region (master at start-up; accessors in every process) -------- */

/* Map a region for NSLOTS slots (1..VB_SHM_MAX_SLOTS), all FREE at gen 0, and
 * make 3 eventfds per slot (EFD_NONBLOCK|EFD_CLOEXEC, inherited by fork). The
 * process's counters move into the region (vb_stats_attach, current values
 * carried over) so that every child counts into the same block.
 * NULL + errno (EINVAL, ENOMEM, EMFILE...) on failure, logged. */
vb_shm_t *vb_shm_create(uint32_t nslots);
/* Unmap and close this process's view (others keep theirs). Counting goes back
 * to a process-local block if this region held it. NULL is allowed. */
void vb_shm_destroy(vb_shm_t *shm);

uint32_t vb_shm_nslots(const vb_shm_t *shm);
size_t vb_shm_size(const vb_shm_t *shm);
const vb_shm_header_t *vb_shm_header(const vb_shm_t *shm);
vb_stats_t *vb_shm_stats(vb_shm_t *shm);
/* Heartbeats (WHO: a broker's index, or VB_BEAT_STORE): the process says it
 * runs its loop; the master reads the last beat and, when it starts a new
 * process in that place, sets it GRACE_MS ahead (time to load models). */
void vb_shm_beat(vb_shm_t *shm, int who);
uint64_t vb_shm_last_beat(vb_shm_t *shm, int who);
/* 1 when WHO's last beat is LIMIT_MS old or older (0 while it is ahead). */
int vb_shm_beat_stale(vb_shm_t *shm, int who, uint64_t limit_ms);
void vb_shm_beat_ahead(vb_shm_t *shm, int who, uint64_t grace_ms);
/* NULL when idx >= nslots. */
vb_slot_t *vb_shm_slot(vb_shm_t *shm, uint32_t idx);
/* The index of SLOT in SHM's table. */
uint32_t vb_shm_slot_index(const vb_shm_t *shm, const vb_slot_t *slot);

/* ---- rings and doorbells ------------------------------------------------- */

/* Ring RING_ID (VB_RING_*) of SLOT. */
vb_ring_t *vb_slot_ring(vb_slot_t *slot, int ring_id);
/* The bell (VB_BELL_*) of the process that consumes RING_ID. */
int vb_ring_consumer_bell(int ring_id);

/* The eventfd, or -EINVAL for a bad idx/bell. */
int vb_shm_bell_fd(const vb_shm_t *shm, uint32_t idx, int bell);
void vb_shm_ring_bell(const vb_shm_t *shm, uint32_t idx, int bell);
/* Reset an eventfd. Consumers: drain the bell first, then pop until -EAGAIN,
 * then sleep; that order loses no wake-up (see shm/ring.h). */
void vb_shm_bell_drain(int fd);
/* Producer: vb_ring_push on ring RING_ID of slot IDX, ringing the consumer's
 * bell when it returns 1 and counting a drop in the slot's overruns when it
 * returns -ENOSPC. Returns what vb_ring_push returned. */
int vb_shm_push(vb_shm_t *shm, uint32_t idx, int ring_id, const void *data, uint32_t len);

/* ---- slot lifecycle ------------------------------------------------------ */

/* Master: FREE → ASSIGNED. Resets identity, counters, transcript, broker
 * attachment and all rings (from the compile-time layout, whatever the slot
 * holds), bumps gen (never to 0) and publishes with a release store of
 * state. Set broker_index before calling. Returns the new gen. */
uint32_t vb_slot_assign(vb_slot_t *s);
/* Worker: identity filled in → ACTIVE (release); records worker_pid and
 * start_ns (wall clock) and start_mono_ns. 0, or -ESTALE if the slot was not ASSIGNED. */
int vb_slot_activate(vb_slot_t *s);
/* Worker: its loop ran for the call in S (every housekeeping tick). */
void vb_slot_worker_beat(vb_slot_t *s);
/* Master: 1 when S is ACTIVE and its worker has not beaten for LIMIT_MS or more. */
int vb_slot_worker_stale(const vb_slot_t *s, uint64_t limit_ms);
/* How long the call in S has lasted, on the monotonic clock (a wall-clock step does
 * not move it): the call's length at its end. 0 before vb_slot_activate. */
uint64_t vb_slot_age_ms(const vb_slot_t *s);
/* Worker: ASSIGNED/ACTIVE → ENDING (release). 0, or -ESTALE otherwise. */
int vb_slot_end(vb_slot_t *s);
/* Master, after reaping the worker: → DEAD, then bump gen (release) so that
 * the broker and the store let go. Returns the new gen. */
uint32_t vb_slot_mark_dead(vb_slot_t *s);
/* Master: → FREE. */
void vb_slot_free(vb_slot_t *s);

/* Acquire loads, for the tick's checks. */
uint32_t vb_slot_gen(const vb_slot_t *s);
uint32_t vb_slot_state(const vb_slot_t *s);
const char *vb_slot_state_name(uint32_t state);

/* Broker / store: "I hold nothing of this slot up to GEN" (release). Write
 * the gen you observed when you let go (after a worker death that is the
 * new one, after ENDING the call's gen, having drained your rings). */
void vb_slot_broker_ack(vb_slot_t *s, uint32_t gen);
void vb_slot_store_ack(vb_slot_t *s, uint32_t gen);
/* Both acks equal GEN. */
int vb_slot_done(const vb_slot_t *s, uint32_t gen);
/* Master's predicate: the worker let go (ENDING or DEAD) and both acks equal
 * the current gen. Timeouts are the master's policy, not this function's. */
int vb_slot_reusable(const vb_slot_t *s);

/* ---- broker attachment ---------------------------------------------------- */

/* Broker: serve this slot from now on (records pid and the current epoch). */
void vb_slot_broker_attach(vb_slot_t *s, int32_t pid);
/* Master, after reaping the broker that served S: epoch++ and pid = 0. */
void vb_slot_broker_lost(vb_slot_t *s);
/* Worker: 1 if a live broker serves the call (play holding audio when 0). */
int vb_slot_broker_attached(const vb_slot_t *s);

/* ---- identity, counters, transcript ---------------------------------------- */

/* Copy SRC into a NUL-terminated field; -ENAMETOOLONG (truncated) or 0. */
int vb_slot_set_str(char *field, size_t cap, const char *src);
#define VB_SLOT_SET(s, field, src) vb_slot_set_str((s)->field, sizeof((s)->field), (src))
#define VB_SLOT_COUNT(s, field) atomic_fetch_add_explicit(&(s)->field, 1, memory_order_relaxed)
#define VB_SLOT_ADD(s, field, n)                                                               \
    atomic_fetch_add_explicit(&(s)->field, (n), memory_order_relaxed)
#define VB_SLOT_GET(s, field) atomic_load_explicit(&(s)->field, memory_order_relaxed)

/* Broker: append LEN bytes (release). 0, or -ENOSPC when they do not fit
 * (nothing is appended). */
int vb_slot_transcript_append(vb_slot_t *s, const char *text, size_t len);
/* Anyone: copy the committed transcript into OUT (NUL-terminated, truncated
 * to cap - 1); returns the committed length. */
size_t vb_slot_transcript_read(const vb_slot_t *s, char *out, size_t cap);

#endif
