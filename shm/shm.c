/* The shared region and the slot lifecycle: see shm.h and docs/shm.md. The
 * master creates the region and moves slots through their states; workers,
 * brokers and the store use the accessors, doorbells and their own
 * transitions. */
#include "shm/shm.h"

#include <errno.h>
#include <stdlib.h>
#include <string.h>
#include <sys/eventfd.h>
#include <sys/mman.h>
#include <unistd.h>

#include "common/clock.h"
#include "common/log.h"

struct vb_shm {
    unsigned char *base;
    size_t size;
    uint32_t nslots;
    int *bells;             /* nslots * VB_BELL__COUNT eventfds */
    vb_stats_t *prev_stats; /* what vb_stats pointed to before create */
};

/* Compile-time layout of a slot's rings: the master resets rings from this,
 * never from values found in shared memory. */
static const struct {
    size_t off; /* in ring_mem */
    uint32_t cap;
    uint32_t elem_size;
    int bell; /* the consumer's */
} ring_table[VB_RING__COUNT] = {
    [VB_RING_CALLER_AUDIO] = {VB_SLOT_ROFF_CALLER_AUDIO, VB_RING_CALLER_AUDIO_CAP,
                              sizeof(vb_audio_frame_t), VB_BELL_BROKER},
    [VB_RING_AGENT_AUDIO] = {VB_SLOT_ROFF_AGENT_AUDIO, VB_RING_AGENT_AUDIO_CAP,
                             sizeof(vb_audio_frame_t), VB_BELL_WORKER},
    [VB_RING_CTL_W2B] = {VB_SLOT_ROFF_CTL_W2B, VB_RING_CTL_CAP, sizeof(vb_ctl_msg_t),
                         VB_BELL_BROKER},
    [VB_RING_CTL_B2W] = {VB_SLOT_ROFF_CTL_B2W, VB_RING_CTL_CAP, sizeof(vb_ctl_msg_t),
                         VB_BELL_WORKER},
    [VB_RING_EVENTS_W2S] = {VB_SLOT_ROFF_EVENTS_W2S, VB_RING_EVENTS_CAP, sizeof(vb_event_t),
                            VB_BELL_STORE},
    [VB_RING_EVENTS_B2S] = {VB_SLOT_ROFF_EVENTS_B2S, VB_RING_EVENTS_CAP, sizeof(vb_event_t),
                            VB_BELL_STORE},
};

static vb_shm_header_t *header(const vb_shm_t *shm)
{
    return (vb_shm_header_t *)shm->base;
}

static size_t slots_offset(void)
{
    /* Slots start on a page of their own. */
    return (sizeof(vb_shm_header_t) + 4095u) & ~(size_t)4095u;
}

/* ---- rings and doorbells ------------------------------------------------- */

vb_ring_t *vb_slot_ring(vb_slot_t *slot, int ring_id)
{
    VB_ASSERT(ring_id >= 0 && ring_id < VB_RING__COUNT);
    return (vb_ring_t *)(slot->ring_mem + ring_table[ring_id].off);
}

int vb_ring_consumer_bell(int ring_id)
{
    VB_ASSERT(ring_id >= 0 && ring_id < VB_RING__COUNT);
    return ring_table[ring_id].bell;
}

static void slot_reset_rings(vb_slot_t *s)
{
    for (int i = 0; i < VB_RING__COUNT; i++) {
        vb_ring_init(vb_slot_ring(s, i), ring_table[i].cap, ring_table[i].elem_size, 0);
    }
}

int vb_shm_bell_fd(const vb_shm_t *shm, uint32_t idx, int bell)
{
    if (idx >= shm->nslots || bell < 0 || bell >= VB_BELL__COUNT) {
        return -EINVAL;
    }
    return shm->bells[(size_t)idx * VB_BELL__COUNT + (size_t)bell];
}

void vb_shm_ring_bell(const vb_shm_t *shm, uint32_t idx, int bell)
{
    int fd = vb_shm_bell_fd(shm, idx, bell);
    VB_ASSERT(fd >= 0);
    uint64_t one = 1;
    /* EAGAIN means the counter is at its maximum: the consumer will wake
     * anyway. Anything else cannot happen on a valid eventfd. */
    ssize_t n;
    do {
        n = write(fd, &one, sizeof(one));
    } while (n < 0 && errno == EINTR);
}

void vb_shm_bell_drain(int fd)
{
    uint64_t v;
    ssize_t n;
    do {
        n = read(fd, &v, sizeof(v));
    } while (n < 0 && errno == EINTR);
}

int vb_shm_push(vb_shm_t *shm, uint32_t idx, int ring_id, const void *data, uint32_t len)
{
    vb_slot_t *s = vb_shm_slot(shm, idx);
    VB_ASSERT(s != NULL);
    int rc = vb_ring_push(vb_slot_ring(s, ring_id), data, len);
    if (rc == 1) {
        vb_shm_ring_bell(shm, idx, ring_table[ring_id].bell);
    } else if (rc == -ENOSPC) {
        VB_SLOT_COUNT(s, overruns);
    }
    return rc;
}

/* ---- the region ---------------------------------------------------------- */

static int region_size(uint32_t nslots, size_t *size)
{
    if (nslots == 0 || nslots > VB_SHM_MAX_SLOTS) {
        return -EINVAL;
    }
    *size = slots_offset() + (size_t)nslots * sizeof(vb_slot_t);
    return 0;
}

static void header_init(vb_shm_header_t *h, uint32_t nslots, size_t size)
{
    h->magic = VB_SHM_MAGIC;
    h->version = VB_SHM_VERSION;
    h->nslots = nslots;
    h->size = size;
    h->slots_off = slots_offset();
    h->slot_size = sizeof(vb_slot_t);
    for (int i = 0; i < VB_RING__COUNT; i++) {
        h->ring_off[i] = offsetof(vb_slot_t, ring_mem) + ring_table[i].off;
    }
    h->created_ns = (int64_t)vb_wall_ns();
    /* The mapping is zero-filled: every counter starts at 0. */
}

static void close_bells(int *bells, size_t n)
{
    for (size_t i = 0; i < n; i++) {
        if (bells[i] >= 0) {
            close(bells[i]);
        }
    }
}

static int *open_bells(uint32_t nslots)
{
    size_t n = (size_t)nslots * VB_BELL__COUNT;
    int *bells = malloc(n * sizeof(*bells));
    if (bells == NULL) {
        vb_log(VB_LOG_ERR, "shm: out of memory for %zu doorbells", n);
        errno = ENOMEM;
        return NULL;
    }
    for (size_t i = 0; i < n; i++) {
        bells[i] = eventfd(0, EFD_NONBLOCK | EFD_CLOEXEC);
        if (bells[i] < 0) {
            int err = errno;
            vb_log(VB_LOG_ERR, "shm: eventfd %zu of %zu: %s (raise the open files limit?)",
                   i + 1, n, strerror(err));
            close_bells(bells, i);
            free(bells);
            errno = err;
            return NULL;
        }
    }
    return bells;
}

static void move_stats_into(vb_shm_t *shm)
{
    vb_stats_t *shared = &header(shm)->stats;
    shm->prev_stats = vb_stats;
    for (int i = 0; i < VB_STAT__COUNT; i++) {
        uint64_t v = atomic_load_explicit(&vb_stats->v[i], memory_order_relaxed);
        atomic_store_explicit(&shared->v[i], v, memory_order_relaxed);
    }
    vb_stats_attach(shared);
}

vb_shm_t *vb_shm_create(uint32_t nslots)
{
    size_t size;
    if (region_size(nslots, &size) < 0) {
        vb_log(VB_LOG_ERR, "shm: %u slots is out of range 1..%u", nslots, VB_SHM_MAX_SLOTS);
        errno = EINVAL;
        return NULL;
    }
    vb_shm_t *shm = calloc(1, sizeof(*shm));
    if (shm == NULL) {
        errno = ENOMEM;
        return NULL;
    }
    void *base = mmap(NULL, size, PROT_READ | PROT_WRITE, MAP_SHARED | MAP_ANONYMOUS, -1, 0);
    if (base == MAP_FAILED) {
        int err = errno;
        vb_log(VB_LOG_ERR, "shm: mmap of %zu bytes for %u slots: %s", size, nslots,
               strerror(err));
        free(shm);
        errno = err;
        return NULL;
    }
    shm->bells = open_bells(nslots);
    if (shm->bells == NULL) {
        int err = errno;
        munmap(base, size);
        free(shm);
        errno = err;
        return NULL;
    }
    shm->base = base;
    shm->size = size;
    shm->nslots = nslots;
    header_init(header(shm), nslots, size);
    for (uint32_t i = 0; i < nslots; i++) {
        slot_reset_rings(vb_shm_slot(shm, i)); /* state FREE, gen 0: zero-filled */
    }
    move_stats_into(shm);
    return shm;
}

void vb_shm_destroy(vb_shm_t *shm)
{
    if (shm == NULL) {
        return;
    }
    if (vb_stats == &header(shm)->stats) {
        vb_stats_attach(shm->prev_stats);
    }
    close_bells(shm->bells, (size_t)shm->nslots * VB_BELL__COUNT);
    free(shm->bells);
    munmap(shm->base, shm->size);
    free(shm);
}

uint32_t vb_shm_nslots(const vb_shm_t *shm)
{
    return shm->nslots;
}

size_t vb_shm_size(const vb_shm_t *shm)
{
    return shm->size;
}

const vb_shm_header_t *vb_shm_header(const vb_shm_t *shm)
{
    return header(shm);
}

vb_stats_t *vb_shm_stats(vb_shm_t *shm)
{
    return &header(shm)->stats;
}

_Static_assert(VB_MAX_BROKERS == 256, "common/conf.c caps `brokers` at VB_MAX_BROKERS");

void vb_shm_beat(vb_shm_t *shm, int who)
{
    VB_ASSERT(who >= 0 && who < VB_BEATS);
    atomic_store_explicit(&header(shm)->beat_ns[who], vb_mono_ns(), memory_order_relaxed);
}

uint64_t vb_shm_last_beat(vb_shm_t *shm, int who)
{
    VB_ASSERT(who >= 0 && who < VB_BEATS);
    return atomic_load_explicit(&header(shm)->beat_ns[who], memory_order_relaxed);
}

/* Is a beat at LAST (monotonic ns) LIMIT_MS old or older? */
static int beat_older(uint64_t last, uint64_t limit_ms)
{
    uint64_t now = vb_mono_ns();
    return now > last && now - last >= limit_ms * 1000000ull;
}

int vb_shm_beat_stale(vb_shm_t *shm, int who, uint64_t limit_ms)
{
    return beat_older(vb_shm_last_beat(shm, who), limit_ms);
}

void vb_shm_beat_ahead(vb_shm_t *shm, int who, uint64_t grace_ms)
{
    VB_ASSERT(who >= 0 && who < VB_BEATS);
    atomic_store_explicit(&header(shm)->beat_ns[who], vb_mono_ns() + grace_ms * 1000000ull,
                          memory_order_relaxed);
}

vb_slot_t *vb_shm_slot(vb_shm_t *shm, uint32_t idx)
{
    if (idx >= shm->nslots) {
        return NULL;
    }
    return (vb_slot_t *)(shm->base + slots_offset()) + idx;
}

uint32_t vb_shm_slot_index(const vb_shm_t *shm, const vb_slot_t *slot)
{
    const vb_slot_t *first = (const vb_slot_t *)(shm->base + slots_offset());
    VB_ASSERT(slot >= first && slot < first + shm->nslots);
    return (uint32_t)(slot - first);
}

/* ---- slot lifecycle ------------------------------------------------------ */

static uint32_t bump_gen(vb_slot_t *s)
{
    uint32_t gen = atomic_load_explicit(&s->gen, memory_order_relaxed) + 1;
    if (gen == 0) {
        gen = 1; /* 0 means "never acknowledged" */
    }
    /* Release: pairs with the acquire in vb_slot_gen; whoever sees the new gen
     * also sees what was written before it (the reset, or state DEAD). */
    atomic_store_explicit(&s->gen, gen, memory_order_release);
    return gen;
}

static void slot_reset(vb_slot_t *s)
{
    s->worker_pid = 0;
    s->start_ns = 0;
    s->start_mono_ns = 0;
    atomic_store_explicit(&s->worker_beat_ns, 0, memory_order_relaxed);
    atomic_store_explicit(&s->broker_pid, 0, memory_order_relaxed);
    atomic_store_explicit(&s->broker_attach_epoch, 0, memory_order_relaxed);
    atomic_store_explicit(&s->frames_in, 0, memory_order_relaxed);
    atomic_store_explicit(&s->frames_out, 0, memory_order_relaxed);
    atomic_store_explicit(&s->underruns, 0, memory_order_relaxed);
    atomic_store_explicit(&s->overruns, 0, memory_order_relaxed);
    atomic_store_explicit(&s->late_frames, 0, memory_order_relaxed);
    atomic_store_explicit(&s->bad_messages, 0, memory_order_relaxed);
    memset(s->call_id, 0, sizeof(s->call_id));
    memset(s->call_sid, 0, sizeof(s->call_sid));
    memset(s->stream_sid, 0, sizeof(s->stream_sid));
    memset(s->assistant, 0, sizeof(s->assistant));
    memset(s->from, 0, sizeof(s->from));
    memset(s->to, 0, sizeof(s->to));
    atomic_store_explicit(&s->transcript_len, 0, memory_order_relaxed);
    s->transcript[0] = '\0';
    slot_reset_rings(s);
}

uint32_t vb_slot_assign(vb_slot_t *s)
{
    slot_reset(s);
    uint32_t gen = bump_gen(s);
    /* Release: pairs with the acquire in vb_slot_state; the reset, gen and
     * broker_index are visible to whoever sees ASSIGNED. */
    atomic_store_explicit(&s->state, VB_SLOT_ASSIGNED, memory_order_release);
    return gen;
}

static int slot_move(vb_slot_t *s, uint32_t from, uint32_t to)
{
    /* Release on success: pairs with the acquire in vb_slot_state; identity
     * and worker_pid written before are visible to whoever sees TO. */
    return atomic_compare_exchange_strong_explicit(&s->state, &from, to, memory_order_release,
                                                   memory_order_relaxed)
               ? 0
               : -ESTALE;
}

int vb_slot_activate(vb_slot_t *s)
{
    s->worker_pid = (int32_t)getpid();
    s->start_ns = vb_wall_ns();
    s->start_mono_ns = vb_mono_ns();
    vb_slot_worker_beat(s);
    return slot_move(s, VB_SLOT_ASSIGNED, VB_SLOT_ACTIVE);
}

void vb_slot_worker_beat(vb_slot_t *s)
{
    atomic_store_explicit(&s->worker_beat_ns, vb_mono_ns(), memory_order_relaxed);
}

int vb_slot_worker_stale(const vb_slot_t *s, uint64_t limit_ms)
{
    uint64_t last = atomic_load_explicit(&s->worker_beat_ns, memory_order_relaxed);
    return vb_slot_state(s) == VB_SLOT_ACTIVE && last != 0 && beat_older(last, limit_ms);
}

uint64_t vb_slot_age_ms(const vb_slot_t *s)
{
    return s->start_mono_ns != 0 ? (vb_mono_ns() - s->start_mono_ns) / 1000000u : 0;
}

int vb_slot_end(vb_slot_t *s)
{
    if (slot_move(s, VB_SLOT_ACTIVE, VB_SLOT_ENDING) == 0) {
        return 0;
    }
    return slot_move(s, VB_SLOT_ASSIGNED, VB_SLOT_ENDING);
}

uint32_t vb_slot_mark_dead(vb_slot_t *s)
{
    /* Relaxed here; bump_gen's release store publishes it. */
    atomic_store_explicit(&s->state, VB_SLOT_DEAD, memory_order_relaxed);
    return bump_gen(s);
}

void vb_slot_free(vb_slot_t *s)
{
    /* Release: pairs with the acquire in vb_slot_state. */
    atomic_store_explicit(&s->state, VB_SLOT_FREE, memory_order_release);
}

uint32_t vb_slot_gen(const vb_slot_t *s)
{
    /* Acquire: pairs with the release in bump_gen. */
    return atomic_load_explicit(&s->gen, memory_order_acquire);
}

uint32_t vb_slot_state(const vb_slot_t *s)
{
    /* Acquire: pairs with the release stores of state (assign, activate,
     * end, free). */
    return atomic_load_explicit(&s->state, memory_order_acquire);
}

const char *vb_slot_state_name(uint32_t state)
{
    static const char *const names[] = {"free", "assigned", "active", "ending", "dead"};
    return state < sizeof(names) / sizeof(names[0]) ? names[state] : "invalid";
}

void vb_slot_broker_ack(vb_slot_t *s, uint32_t gen)
{
    /* Release: pairs with the acquire in vb_slot_done; our last ring accesses
     * happen before the master reuses the slot. */
    atomic_store_explicit(&s->broker_ack_gen, gen, memory_order_release);
}

void vb_slot_store_ack(vb_slot_t *s, uint32_t gen)
{
    /* Release: pairs with the acquire in vb_slot_done, as above. */
    atomic_store_explicit(&s->store_ack_gen, gen, memory_order_release);
}

int vb_slot_done(const vb_slot_t *s, uint32_t gen)
{
    /* Acquire: pairs with the releases in vb_slot_broker_ack / store_ack. */
    return atomic_load_explicit(&s->broker_ack_gen, memory_order_acquire) == gen &&
           atomic_load_explicit(&s->store_ack_gen, memory_order_acquire) == gen;
}

int vb_slot_reusable(const vb_slot_t *s)
{
    uint32_t state = vb_slot_state(s);
    if (state != VB_SLOT_ENDING && state != VB_SLOT_DEAD) {
        return 0;
    }
    return vb_slot_done(s, vb_slot_gen(s));
}

/* ---- broker attachment ---------------------------------------------------- */

void vb_slot_broker_attach(vb_slot_t *s, int32_t pid)
{
    uint32_t epoch = atomic_load_explicit(&s->broker_epoch, memory_order_acquire);
    atomic_store_explicit(&s->broker_attach_epoch, epoch, memory_order_relaxed);
    /* Release: pairs with the acquire in vb_slot_broker_attached; the epoch
     * written above is visible with the pid. */
    atomic_store_explicit(&s->broker_pid, pid, memory_order_release);
}

void vb_slot_broker_lost(vb_slot_t *s)
{
    /* Release: pairs with the acquire of broker_epoch in attach/attached. */
    atomic_fetch_add_explicit(&s->broker_epoch, 1, memory_order_release);
    atomic_store_explicit(&s->broker_pid, 0, memory_order_release);
}

int vb_slot_broker_attached(const vb_slot_t *s)
{
    /* Acquire: pairs with the release of broker_pid in vb_slot_broker_attach. */
    if (atomic_load_explicit(&s->broker_pid, memory_order_acquire) == 0) {
        return 0;
    }
    uint32_t attached = atomic_load_explicit(&s->broker_attach_epoch, memory_order_relaxed);
    /* Acquire: pairs with the release in vb_slot_broker_lost. */
    return attached == atomic_load_explicit(&s->broker_epoch, memory_order_acquire);
}

/* ---- identity and transcript ----------------------------------------------- */

int vb_slot_set_str(char *field, size_t cap, const char *src)
{
    size_t n = strnlen(src, cap);
    int rc = 0;
    if (n == cap) {
        n = cap - 1;
        rc = -ENAMETOOLONG;
    }
    memcpy(field, src, n);
    memset(field + n, 0, cap - n);
    return rc;
}

int vb_slot_transcript_append(vb_slot_t *s, const char *text, size_t len)
{
    /* Relaxed: only the broker writes transcript_len. */
    uint32_t used = atomic_load_explicit(&s->transcript_len, memory_order_relaxed);
    if (used > VB_SLOT_TRANSCRIPT || len > VB_SLOT_TRANSCRIPT - used) {
        return -ENOSPC;
    }
    memcpy(s->transcript + used, text, len);
    /* Release: pairs with the acquire in vb_slot_transcript_read; the bytes
     * appended are committed, as in a ring's tail. */
    atomic_store_explicit(&s->transcript_len, used + (uint32_t)len, memory_order_release);
    return 0;
}

size_t vb_slot_transcript_read(const vb_slot_t *s, char *out, size_t cap)
{
    /* Acquire: pairs with the release in vb_slot_transcript_append. */
    uint32_t used = atomic_load_explicit(&s->transcript_len, memory_order_acquire);
    if (used > VB_SLOT_TRANSCRIPT) {
        used = VB_SLOT_TRANSCRIPT;
    }
    if (cap > 0) {
        size_t n = used < cap - 1 ? used : cap - 1;
        memcpy(out, s->transcript, n);
        out[n] = '\0';
    }
    return used;
}
