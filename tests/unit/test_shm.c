/* Unit tests for shm/shm: the shared region, the slot lifecycle and gen, the
 * doorbells across fork, and the crash tests: a producer or a consumer of a
 * slot's ring is killed with SIGKILL mid-stream, the survivor must see no torn
 * frame, and after a reset under a new gen the slot streams cleanly again. */
#include <errno.h>
#include <poll.h>
#include <sched.h>
#include <setjmp.h>
#include <signal.h>
#include <stdarg.h>
#include <stddef.h>
#include <stdint.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/mman.h>
#include <sys/wait.h>
#include <time.h>
#include <unistd.h>

#include <cmocka.h>

#include "common/stats.h"
#include "shm/shm.h"

#define WAIT_MS 20000 /* generous: the machine may be busy */
#define CLEAN_N 20000u

/* Child exit codes. */
enum { KID_OK = 0, KID_BAD_FRAME = 10, KID_BAD_ORDER, KID_LOST_WAKEUP, KID_STUCK, KID_BAD_RC };

/* Test-private counters shared with the children. */
struct shared {
    _Atomic uint64_t produced; /* frames the producer pushed (not dropped) */
    _Atomic uint64_t attempts; /* push calls, dropped or not */
    _Atomic uint64_t consumed; /* valid frames popped */
    _Atomic uint64_t bad;      /* torn or out-of-order frames */
    _Atomic int stop;          /* producer: stop and end the call */
    _Atomic int ready;         /* pid of the last consumer ready to consume */
};

static struct shared *sh;
static pid_t kids[4];

/* ---- helpers --------------------------------------------------------------- */

static int64_t now_ms(void)
{
    struct timespec ts;
    clock_gettime(CLOCK_MONOTONIC, &ts);
    return (int64_t)ts.tv_sec * 1000 + ts.tv_nsec / 1000000;
}

static void nap(void)
{
    struct timespec ts = {0, 1000000}; /* 1 ms between checks of a condition */
    nanosleep(&ts, NULL);
}

static void kid_add(pid_t pid)
{
    for (size_t i = 0; i < sizeof(kids) / sizeof(kids[0]); i++) {
        if (kids[i] == 0) {
            kids[i] = pid;
            return;
        }
    }
    fail_msg("too many children");
}

static void kid_forget(pid_t pid)
{
    for (size_t i = 0; i < sizeof(kids) / sizeof(kids[0]); i++) {
        if (kids[i] == pid) {
            kids[i] = 0;
        }
    }
}

/* Wait for PID to exit, up to WAIT_MS; returns its status. */
static int kid_wait(pid_t pid)
{
    int status = 0;
    int64_t end = now_ms() + WAIT_MS;
    for (;;) {
        pid_t r = waitpid(pid, &status, WNOHANG);
        if (r == pid) {
            kid_forget(pid);
            return status;
        }
        assert_int_equal(r, 0);
        if (now_ms() > end) {
            fail_msg("child %d did not exit", (int)pid);
        }
        nap();
    }
}

static void kid_kill(pid_t pid)
{
    assert_int_equal(kill(pid, SIGKILL), 0);
    int status = kid_wait(pid);
    assert_true(WIFSIGNALED(status) && WTERMSIG(status) == SIGKILL);
}

static void assert_exit_ok(int status)
{
    if (!WIFEXITED(status) || WEXITSTATUS(status) != 0) {
        fail_msg("child failed: %s %d", WIFEXITED(status) ? "exit" : "signal",
                 WIFEXITED(status) ? WEXITSTATUS(status) : WTERMSIG(status));
    }
}

/* Wait until *COUNTER >= TARGET, up to WAIT_MS. */
static void wait_count(_Atomic uint64_t *counter, uint64_t target)
{
    int64_t end = now_ms() + WAIT_MS;
    while (atomic_load(counter) < target) {
        if (now_ms() > end) {
            fail_msg("counter stuck at %llu < %llu", (unsigned long long)atomic_load(counter),
                     (unsigned long long)target);
        }
        nap();
    }
}

static int setup(void **state)
{
    (void)state;
    sh = mmap(NULL, sizeof(*sh), PROT_READ | PROT_WRITE, MAP_SHARED | MAP_ANONYMOUS, -1, 0);
    return sh == MAP_FAILED ? -1 : 0;
}

/* Whatever happened, no child outlives its test. */
static int teardown(void **state)
{
    (void)state;
    for (size_t i = 0; i < sizeof(kids) / sizeof(kids[0]); i++) {
        if (kids[i] > 0) {
            kill(kids[i], SIGKILL);
            waitpid(kids[i], NULL, 0);
            kids[i] = 0;
        }
    }
    munmap(sh, sizeof(*sh));
    return 0;
}

/* ---- frames with a checksum -------------------------------------------------- */

static uint64_t frame_sum(const vb_audio_frame_t *f)
{
    const unsigned char *p = (const unsigned char *)f->pcm;
    uint64_t h = 1469598103934665603ull ^ f->seq ^ ((uint64_t)f->flags << 32);
    for (size_t i = 0; i < sizeof(f->pcm); i++) {
        h = (h ^ p[i]) * 1099511628211ull;
    }
    return h;
}

static void frame_make(vb_audio_frame_t *f, uint32_t seq)
{
    uint32_t x = seq * 2654435761u + 1;
    f->seq = seq;
    f->flags = (seq & 1) ? VB_FRAME_VOICE : 0;
    for (int i = 0; i < VB_FRAME_SAMPLES; i++) {
        x ^= x << 13;
        x ^= x >> 17;
        x ^= x << 5;
        f->pcm[i] = (int16_t)x;
    }
    f->t_ns = frame_sum(f); /* the test keeps the checksum in t_ns */
}

static int frame_ok(const vb_audio_frame_t *f, uint32_t len)
{
    return len == sizeof(*f) && f->t_ns == frame_sum(f);
}

/* ---- child roles --------------------------------------------------------------- */

/* Worker side: push caller audio. LOSSLESS waits for room (to count exactly N);
 * otherwise it never waits and the ring drops, as in production. N == 0: until
 * told to stop. Ends the call when done. */
static int producer_main(vb_shm_t *shm, uint32_t idx, uint32_t n, int lossless)
{
    vb_slot_t *s = vb_shm_slot(shm, idx);
    vb_audio_frame_t f;
    if (vb_slot_activate(s) != 0) {
        return KID_BAD_RC;
    }
    for (uint32_t seq = 0; (n == 0 || seq < n) && !atomic_load(&sh->stop); seq++) {
        int64_t end = now_ms() + WAIT_MS;
        while (lossless && vb_ring_free(vb_slot_ring(s, VB_RING_CALLER_AUDIO)) == 0) {
            if (now_ms() > end) {
                return KID_STUCK;
            }
            sched_yield();
        }
        frame_make(&f, seq);
        int rc = vb_shm_push(shm, idx, VB_RING_CALLER_AUDIO, &f, sizeof(f));
        atomic_fetch_add(&sh->attempts, 1);
        if (rc >= 0) {
            VB_SLOT_COUNT(s, frames_in);
            atomic_fetch_add(&sh->produced, 1);
        } else if (rc != -ENOSPC || lossless) {
            return KID_BAD_RC;
        }
    }
    return vb_slot_end(s) == 0 ? KID_OK : KID_BAD_RC;
}

struct consumer {
    vb_shm_t *shm;
    uint32_t idx;
    uint32_t gen;
    uint32_t expect_n; /* lossless: exactly 0..n-1, wake-ups by doorbell only */
    int64_t last;      /* last sequence number seen, -1 at start */
    uint64_t got;
};

/* Pop all that is queued; a non-zero KID_* on a bad frame. */
static int consumer_drain(struct consumer *c)
{
    vb_ring_t *r = vb_slot_ring(vb_shm_slot(c->shm, c->idx), VB_RING_CALLER_AUDIO);
    vb_audio_frame_t f;
    uint32_t len;
    int rc;
    while ((rc = vb_ring_pop(r, &f, sizeof(f), &len)) == 0) {
        if (!frame_ok(&f, len)) {
            atomic_fetch_add(&sh->bad, 1);
            return KID_BAD_FRAME;
        }
        int in_order = c->expect_n ? f.seq == c->last + 1 : (int64_t)f.seq > c->last;
        if (!in_order) {
            atomic_fetch_add(&sh->bad, 1);
            return KID_BAD_ORDER;
        }
        c->last = f.seq;
        c->got++;
        atomic_fetch_add(&sh->consumed, 1);
    }
    return rc == -EAGAIN ? KID_OK : KID_BAD_RC;
}

/* Sleep on the broker bell. Lossless runs rely on the doorbell alone until all
 * frames are in (a 5 s timeout with data queued is a lost wake-up); otherwise
 * the 20 ms tick is the fallback, as in production. */
static int consumer_sleep(struct consumer *c, int fd)
{
    int waiting = c->expect_n && c->got < c->expect_n;
    struct pollfd p = {.fd = fd, .events = POLLIN};
    int rc = poll(&p, 1, waiting ? 5000 : 20);
    vb_ring_t *r = vb_slot_ring(vb_shm_slot(c->shm, c->idx), VB_RING_CALLER_AUDIO);
    if (rc == 0 && waiting && vb_ring_count(r) > 0) {
        return KID_LOST_WAKEUP;
    }
    return KID_OK;
}

/* Broker side: attach, then consume until the call ends (state ENDING) or the
 * master takes the slot away (gen changed); drain, ack, exit. */
static int consumer_main(struct consumer *c)
{
    vb_slot_t *s = vb_shm_slot(c->shm, c->idx);
    int fd = vb_shm_bell_fd(c->shm, c->idx, VB_BELL_BROKER);
    vb_slot_broker_attach(s, (int32_t)getpid());
    vb_ring_discard(vb_slot_ring(s, VB_RING_CALLER_AUDIO)); /* stale audio of a dead broker */
    atomic_store(&sh->ready, (int)getpid());
    c->last = -1;
    for (;;) {
        vb_shm_bell_drain(fd); /* first the bell, then the ring */
        int rc = consumer_drain(c);
        if (rc != KID_OK) {
            return rc;
        }
        uint32_t gen = vb_slot_gen(s);
        if (gen != c->gen || vb_slot_state(s) == VB_SLOT_ENDING) {
            rc = consumer_drain(c); /* what was committed before the end */
            vb_slot_broker_ack(s, gen);
            if (rc == KID_OK && c->expect_n && c->got != c->expect_n) {
                rc = KID_BAD_ORDER;
            }
            return rc;
        }
        if ((rc = consumer_sleep(c, fd)) != KID_OK) {
            return rc;
        }
    }
}

/* Fork a consumer and wait until it has attached (and discarded what was
 * queued before it), so that what the producer pushes next is all for it. */
static pid_t spawn_consumer(vb_shm_t *shm, uint32_t idx, uint32_t gen, uint32_t expect_n)
{
    vb_slot_t *s = vb_shm_slot(shm, idx);
    pid_t pid = fork();
    assert_true(pid >= 0);
    if (pid == 0) {
        struct consumer c = {.shm = shm, .idx = idx, .gen = gen, .expect_n = expect_n};
        _exit(consumer_main(&c));
    }
    kid_add(pid);
    int64_t end = now_ms() + WAIT_MS;
    while (atomic_load(&s->broker_pid) != pid || atomic_load(&sh->ready) != pid) {
        assert_true(now_ms() < end);
        nap();
    }
    return pid;
}

static pid_t spawn_producer(vb_shm_t *shm, uint32_t idx, uint32_t n, int lossless)
{
    pid_t pid = fork();
    assert_true(pid >= 0);
    if (pid == 0) {
        _exit(producer_main(shm, idx, n, lossless));
    }
    kid_add(pid);
    return pid;
}

static void shared_reset(void)
{
    atomic_store(&sh->produced, 0);
    atomic_store(&sh->attempts, 0);
    atomic_store(&sh->consumed, 0);
    atomic_store(&sh->bad, 0);
    atomic_store(&sh->stop, 0);
}

/* ---- region and lifecycle -------------------------------------------------------- */

static void test_create_layout(void **state)
{
    (void)state;
    vb_stats_t *local = vb_stats;
    VB_STAT_INC(config_reloads); /* counted before the region exists */
    uint64_t reloads = VB_STAT_GET(config_reloads);
    vb_shm_t *shm = vb_shm_create(4);
    assert_non_null(shm);
    assert_ptr_equal(vb_stats, vb_shm_stats(shm));
    assert_int_equal(VB_STAT_GET(config_reloads), reloads); /* carried over */

    const vb_shm_header_t *h = vb_shm_header(shm);
    assert_int_equal(h->magic, VB_SHM_MAGIC);
    assert_int_equal(h->version, VB_SHM_VERSION);
    assert_int_equal(h->nslots, 4);
    assert_int_equal(vb_shm_nslots(shm), 4);
    assert_true(vb_shm_size(shm) >= 4 * sizeof(vb_slot_t) + sizeof(*h));
    assert_null(vb_shm_slot(shm, 4));

    static const uint32_t caps[VB_RING__COUNT] = {64, 256, 64, 64, 64, 64};
    static const uint32_t sizes[VB_RING__COUNT] = {656, 656, 256, 256, 1024, 1024};
    for (uint32_t i = 0; i < 4; i++) {
        vb_slot_t *s = vb_shm_slot(shm, i);
        assert_int_equal((uintptr_t)s % 64, 0);
        assert_int_equal(vb_shm_slot_index(shm, s), i);
        assert_int_equal(vb_slot_state(s), VB_SLOT_FREE);
        assert_int_equal(vb_slot_gen(s), 0);
        for (int k = 0; k < VB_RING__COUNT; k++) {
            vb_ring_t *r = vb_slot_ring(s, k);
            assert_int_equal((unsigned char *)r - (unsigned char *)s, h->ring_off[k]);
            assert_int_equal(vb_ring_capacity(r), caps[k]);
            assert_int_equal(vb_ring_elem_size(r), sizes[k]);
            assert_int_equal(vb_ring_count(r), 0);
            size_t end = h->ring_off[k] + vb_ring_footprint(caps[k], sizes[k]);
            assert_true(end <= sizeof(vb_slot_t));
            if (k + 1 < VB_RING__COUNT) {
                assert_true(end <= h->ring_off[k + 1]);
            }
        }
        for (int b = 0; b < VB_BELL__COUNT; b++) {
            assert_true(vb_shm_bell_fd(shm, i, b) >= 0);
        }
    }
    assert_int_equal(vb_shm_bell_fd(shm, 4, VB_BELL_WORKER), -EINVAL);
    assert_int_equal(vb_shm_bell_fd(shm, 0, VB_BELL__COUNT), -EINVAL);
    vb_shm_destroy(shm);
    assert_ptr_equal(vb_stats, local);

    errno = 0;
    assert_null(vb_shm_create(0));
    assert_int_equal(errno, EINVAL);
    assert_null(vb_shm_create(VB_SHM_MAX_SLOTS + 1));
    assert_int_equal(errno, EINVAL);
}

static void test_lifecycle(void **state)
{
    (void)state;
    vb_shm_t *shm = vb_shm_create(2);
    assert_non_null(shm);
    vb_slot_t *s = vb_shm_slot(shm, 1);
    vb_audio_frame_t f;
    frame_make(&f, 1);

    s->broker_index = 3;
    uint32_t g1 = vb_slot_assign(s);
    assert_int_equal(g1, 1);
    assert_int_equal(vb_slot_state(s), VB_SLOT_ASSIGNED);
    assert_int_equal(s->broker_index, 3);
    assert_int_equal(VB_SLOT_SET(s, call_id, "call-1"), 0);
    assert_int_equal(VB_SLOT_SET(s, from, "+15550001111"), 0);
    assert_int_equal(VB_SLOT_SET(s, to, "+1555000222233334444555566667777888899"),
                     -ENAMETOOLONG);
    assert_int_equal(strlen(s->to), sizeof(s->to) - 1);
    assert_int_equal(vb_slot_activate(s), 0);
    assert_int_equal(vb_slot_state(s), VB_SLOT_ACTIVE);
    assert_int_equal(s->worker_pid, getpid());
    assert_true(s->start_ns > 0);
    assert_int_equal(vb_slot_activate(s), -ESTALE); /* only from ASSIGNED */
    assert_int_equal(vb_shm_push(shm, 1, VB_RING_CALLER_AUDIO, &f, sizeof(f)), 1);
    VB_SLOT_COUNT(s, frames_in);
    assert_int_equal(vb_slot_transcript_append(s, "caller: hi\n", 11), 0);

    /* Ended: reusable only once the broker and the store let go of this gen. */
    assert_int_equal(vb_slot_end(s), 0);
    assert_int_equal(vb_slot_state(s), VB_SLOT_ENDING);
    assert_int_equal(vb_slot_end(s), -ESTALE);
    assert_false(vb_slot_reusable(s));
    vb_slot_broker_ack(s, g1);
    assert_false(vb_slot_reusable(s));
    vb_slot_store_ack(s, g1 - 1); /* a stale ack does not count */
    assert_false(vb_slot_done(s, g1));
    vb_slot_store_ack(s, g1);
    assert_true(vb_slot_done(s, g1));
    assert_true(vb_slot_reusable(s));
    vb_slot_free(s);
    assert_int_equal(vb_slot_state(s), VB_SLOT_FREE);
    assert_false(vb_slot_reusable(s));

    /* Reassigned: new gen, everything reset, the old acks no longer match. */
    uint32_t g2 = vb_slot_assign(s);
    assert_int_equal(g2, g1 + 1);
    assert_false(vb_slot_done(s, g2));
    assert_int_equal(s->call_id[0], 0);
    assert_int_equal(s->from[0], 0);
    assert_int_equal(s->worker_pid, 0);
    assert_int_equal(VB_SLOT_GET(s, frames_in), 0);
    assert_int_equal(vb_ring_count(vb_slot_ring(s, VB_RING_CALLER_AUDIO)), 0);
    assert_int_equal(vb_slot_transcript_read(s, NULL, 0), 0);

    /* The worker dies: DEAD under a new gen, which the survivors ack. */
    assert_int_equal(vb_slot_activate(s), 0);
    uint32_t g3 = vb_slot_mark_dead(s);
    assert_int_equal(g3, g2 + 1);
    assert_int_equal(vb_slot_state(s), VB_SLOT_DEAD);
    assert_int_equal(vb_slot_end(s), -ESTALE); /* a late worker cannot revive it */
    assert_false(vb_slot_reusable(s));
    vb_slot_broker_ack(s, g3);
    vb_slot_store_ack(s, g3);
    assert_true(vb_slot_reusable(s));
    vb_slot_free(s);

    /* gen never becomes 0 (0 = never acked). */
    atomic_store(&s->gen, UINT32_MAX);
    assert_int_equal(vb_slot_assign(s), 1);
    assert_string_equal(vb_slot_state_name(VB_SLOT_DEAD), "dead");
    assert_string_equal(vb_slot_state_name(99), "invalid");
    /* The other slot was never touched. */
    assert_int_equal(vb_slot_gen(vb_shm_slot(shm, 0)), 0);
    vb_shm_destroy(shm);
}

/* Heartbeats for the master's watchdog: a new process gets its grace ahead
 * of time; a beat is the time of the tick; places do not share a beat. */
static void test_heartbeats(void **state)
{
    (void)state;
    vb_shm_t *shm = vb_shm_create(1);
    assert_non_null(shm);
    struct timespec ts;
    clock_gettime(CLOCK_MONOTONIC, &ts);
    uint64_t now = (uint64_t)ts.tv_sec * 1000000000ull + (uint64_t)ts.tv_nsec;
    assert_int_equal(vb_shm_last_beat(shm, 3), 0);
    vb_shm_beat_ahead(shm, 3, 30000);
    assert_true(vb_shm_last_beat(shm, 3) >= now + 29000000000ull);
    assert_false(vb_shm_beat_stale(shm, 3, 1)); /* ahead: never stale */
    vb_shm_beat(shm, 3);
    uint64_t b = vb_shm_last_beat(shm, 3);
    assert_true(b >= now && b < now + 5000000000ull);
    assert_false(vb_shm_beat_stale(shm, 3, 60000));
    struct timespec nap = {0, 20000000};
    nanosleep(&nap, NULL);
    assert_true(vb_shm_beat_stale(shm, 3, 10));
    vb_shm_beat(shm, VB_BEAT_STORE);
    assert_true(vb_shm_last_beat(shm, VB_BEAT_STORE) >= b);
    assert_int_equal(vb_shm_last_beat(shm, 0), 0);
    vb_shm_destroy(shm);
}

/* A media worker's beat counts only while its call is ACTIVE: a slot being
 * set up, ended or reassigned is never stale. */
static void test_worker_beat(void **state)
{
    (void)state;
    vb_shm_t *shm = vb_shm_create(1);
    assert_non_null(shm);
    vb_slot_t *s = vb_shm_slot(shm, 0);
    struct timespec nap = {0, 20000000};
    vb_slot_assign(s);
    nanosleep(&nap, NULL);
    assert_false(vb_slot_worker_stale(s, 10)); /* ASSIGNED: not watched */
    assert_int_equal(vb_slot_activate(s), 0);  /* activation beats */
    assert_false(vb_slot_worker_stale(s, 10));
    nanosleep(&nap, NULL);
    assert_true(vb_slot_worker_stale(s, 10));
    assert_false(vb_slot_worker_stale(s, 60000));
    vb_slot_worker_beat(s);
    assert_false(vb_slot_worker_stale(s, 10));
    nanosleep(&nap, NULL);
    assert_int_equal(vb_slot_end(s), 0);
    assert_false(vb_slot_worker_stale(s, 10)); /* ENDING: not watched */
    vb_slot_mark_dead(s);
    vb_slot_free(s);
    vb_slot_assign(s); /* a new call starts without the old beat */
    assert_int_equal(vb_slot_activate(s), 0);
    assert_false(vb_slot_worker_stale(s, 10));
    vb_shm_destroy(shm);
}

static void test_broker_attach(void **state)
{
    (void)state;
    vb_shm_t *shm = vb_shm_create(1);
    assert_non_null(shm);
    vb_slot_t *s = vb_shm_slot(shm, 0);
    vb_slot_assign(s);
    assert_false(vb_slot_broker_attached(s));
    vb_slot_broker_attach(s, 1234);
    assert_true(vb_slot_broker_attached(s));
    vb_slot_broker_lost(s); /* the master reaped that broker */
    assert_false(vb_slot_broker_attached(s));
    assert_int_equal(atomic_load(&s->broker_pid), 0);
    /* A broker that attached under the old epoch is not taken for the new one. */
    atomic_store(&s->broker_pid, 1234);
    assert_false(vb_slot_broker_attached(s));
    vb_slot_broker_attach(s, 5678);
    assert_true(vb_slot_broker_attached(s));
    vb_shm_destroy(shm);
}

static void test_transcript(void **state)
{
    (void)state;
    vb_shm_t *shm = vb_shm_create(1);
    assert_non_null(shm);
    vb_slot_t *s = vb_shm_slot(shm, 0);
    vb_slot_assign(s);
    char out[64];
    assert_int_equal(vb_slot_transcript_append(s, "agent: hello\n", 13), 0);
    assert_int_equal(vb_slot_transcript_append(s, "caller: hi\n", 11), 0);
    assert_int_equal(vb_slot_transcript_read(s, out, sizeof(out)), 24);
    assert_string_equal(out, "agent: hello\ncaller: hi\n");
    assert_int_equal(vb_slot_transcript_read(s, out, 6), 24); /* truncated copy */
    assert_string_equal(out, "agent");
    static char big[VB_SLOT_TRANSCRIPT];
    memset(big, 'x', sizeof(big));
    assert_int_equal(vb_slot_transcript_append(s, big, sizeof(big) - 24), 0);
    assert_int_equal(vb_slot_transcript_append(s, "y", 1), -ENOSPC);
    assert_int_equal(vb_slot_transcript_read(s, NULL, 0), VB_SLOT_TRANSCRIPT);
    vb_slot_assign(s);
    assert_int_equal(vb_slot_transcript_read(s, out, sizeof(out)), 0);
    assert_string_equal(out, "");
    vb_shm_destroy(shm);
}

/* A full ring drops and counts in the ring, the slot and the shared stats. */
static void test_overrun_counts(void **state)
{
    (void)state;
    vb_shm_t *shm = vb_shm_create(1);
    assert_non_null(shm);
    vb_slot_t *s = vb_shm_slot(shm, 0);
    vb_slot_assign(s);
    vb_ctl_msg_t m = {.type = VB_CTL_MARK};
    uint64_t stat0 = VB_STAT_GET(ring_drops);
    for (uint32_t i = 0; i < VB_RING_CTL_CAP; i++) {
        m.arg = i;
        assert_true(vb_shm_push(shm, 0, VB_RING_CTL_B2W, &m, sizeof(m)) >= 0);
    }
    pid_t pid = fork(); /* the drop is counted in another process */
    assert_true(pid >= 0);
    if (pid == 0) {
        _exit(vb_shm_push(shm, 0, VB_RING_CTL_B2W, &m, sizeof(m)) == -ENOSPC ? 0 : 1);
    }
    kid_add(pid);
    assert_exit_ok(kid_wait(pid));
    assert_int_equal(VB_SLOT_GET(s, overruns), 1);
    assert_int_equal(vb_ring_drops(vb_slot_ring(s, VB_RING_CTL_B2W)), 1);
    assert_int_equal(VB_STAT_GET(ring_drops), stat0 + 1);
    assert_int_equal(atomic_load(&vb_shm_stats(shm)->v[VB_STAT_ring_drops]), stat0 + 1);
    vb_shm_destroy(shm);
}

/* ---- doorbells across fork ---------------------------------------------------------- */

static int readable(int fd, int timeout_ms)
{
    struct pollfd p = {.fd = fd, .events = POLLIN};
    return poll(&p, 1, timeout_ms) == 1 && (p.revents & POLLIN);
}

/* Child (worker): two caller frames into slot 1; 1 then 0 from the push. Then
 * wait on the worker bell for the parent's agent frame. */
static int bell_child(vb_shm_t *shm)
{
    vb_audio_frame_t f;
    frame_make(&f, 7);
    if (vb_shm_push(shm, 1, VB_RING_CALLER_AUDIO, &f, sizeof(f)) != 1 ||
        vb_shm_push(shm, 1, VB_RING_CALLER_AUDIO, &f, sizeof(f)) != 0) {
        return KID_BAD_RC;
    }
    int fd = vb_shm_bell_fd(shm, 1, VB_BELL_WORKER);
    if (!readable(fd, 5000)) {
        return KID_LOST_WAKEUP;
    }
    vb_shm_bell_drain(fd);
    uint32_t len;
    if (vb_ring_pop(vb_slot_ring(vb_shm_slot(shm, 1), VB_RING_AGENT_AUDIO), &f, sizeof(f),
                    &len) != 0 ||
        !frame_ok(&f, len) || f.seq != 8) {
        return KID_BAD_FRAME;
    }
    return KID_OK;
}

static void test_doorbell_fork(void **state)
{
    (void)state;
    vb_shm_t *shm = vb_shm_create(2);
    assert_non_null(shm);
    vb_slot_assign(vb_shm_slot(shm, 0));
    vb_slot_t *s = vb_shm_slot(shm, 1);
    vb_slot_assign(s);
    int broker_fd = vb_shm_bell_fd(shm, 1, VB_BELL_BROKER);
    assert_false(readable(broker_fd, 0));

    pid_t pid = fork();
    assert_true(pid >= 0);
    if (pid == 0) {
        _exit(bell_child(shm));
    }
    kid_add(pid);
    assert_true(readable(broker_fd, 5000));
    uint64_t v = 0;
    assert_int_equal(read(broker_fd, &v, sizeof(v)), sizeof(v));
    /* Rung once, on the empty → non-empty transition only... */
    int64_t end = now_ms() + WAIT_MS;
    while (vb_ring_count(vb_slot_ring(s, VB_RING_CALLER_AUDIO)) < 2) { /* the second push */
        assert_true(now_ms() < end);
        nap();
    }
    assert_int_equal(v, 1);
    assert_false(readable(broker_fd, 0));
    /* ...and only the consumer's bell, of that slot. */
    assert_false(readable(vb_shm_bell_fd(shm, 1, VB_BELL_WORKER), 0));
    assert_false(readable(vb_shm_bell_fd(shm, 1, VB_BELL_STORE), 0));
    assert_false(readable(vb_shm_bell_fd(shm, 0, VB_BELL_BROKER), 0));
    vb_audio_frame_t f;
    uint32_t len;
    for (int i = 0; i < 2; i++) {
        assert_int_equal(
            vb_ring_pop(vb_slot_ring(s, VB_RING_CALLER_AUDIO), &f, sizeof(f), &len), 0);
        assert_true(frame_ok(&f, len));
        assert_int_equal(f.seq, 7);
    }
    /* The other way: the broker pushes agent audio, the worker wakes. */
    frame_make(&f, 8);
    assert_int_equal(vb_shm_push(shm, 1, VB_RING_AGENT_AUDIO, &f, sizeof(f)), 1);
    assert_exit_ok(kid_wait(pid));
    vb_shm_destroy(shm);
}

/* ---- crash tests ------------------------------------------------------------------ */

/* After a reset under a new gen, the slot streams CLEAN_N frames end to end:
 * none lost, none torn, in order, woken by the doorbell alone. */
static void stream_clean(vb_shm_t *shm, uint32_t idx)
{
    vb_slot_t *s = vb_shm_slot(shm, idx);
    uint32_t gen = vb_slot_assign(s);
    shared_reset();
    pid_t c = spawn_consumer(shm, idx, gen, CLEAN_N);
    pid_t p = spawn_producer(shm, idx, CLEAN_N, 1);
    assert_exit_ok(kid_wait(p));
    assert_exit_ok(kid_wait(c));
    assert_int_equal(atomic_load(&sh->consumed), CLEAN_N);
    assert_int_equal(atomic_load(&sh->bad), 0);
    assert_int_equal(VB_SLOT_GET(s, frames_in), CLEAN_N);
    assert_int_equal(vb_ring_drops(vb_slot_ring(s, VB_RING_CALLER_AUDIO)), 0);
    assert_int_equal(vb_slot_state(s), VB_SLOT_ENDING);
    vb_slot_store_ack(s, gen); /* the test stands in for the store */
    assert_true(vb_slot_reusable(s));
    vb_slot_free(s);
}

/* One round: stream, SIGKILL the producer (worker) mid-stream, the master marks
 * the slot DEAD under a new gen; the consumer drains what was committed (no torn
 * frame, sequence increasing), acks the new gen and exits. */
static void kill_producer_round(vb_shm_t *shm, uint32_t idx, uint64_t target)
{
    vb_slot_t *s = vb_shm_slot(shm, idx);
    uint32_t gen = vb_slot_assign(s);
    shared_reset();
    pid_t c = spawn_consumer(shm, idx, gen, 0);
    pid_t p = spawn_producer(shm, idx, 0, 0);
    wait_count(&sh->consumed, target); /* mid-stream, confirmed */
    kid_kill(p);
    uint64_t produced = atomic_load(&sh->produced);
    uint32_t dead_gen = vb_slot_mark_dead(s);
    assert_int_not_equal(dead_gen, gen);
    assert_exit_ok(kid_wait(c));
    assert_int_equal(atomic_load(&sh->bad), 0);
    /* Every committed frame reached the consumer; `produced` lags the commit
     * by at most the one push the kill interrupted. */
    uint64_t consumed = atomic_load(&sh->consumed);
    assert_true(consumed >= target && consumed >= produced && consumed <= produced + 1);
    assert_int_equal(atomic_load(&s->broker_ack_gen), dead_gen);
    /* Drops under load were counted in the ring and in the slot alike. */
    assert_int_equal(vb_ring_drops(vb_slot_ring(s, VB_RING_CALLER_AUDIO)),
                     VB_SLOT_GET(s, overruns));
    vb_slot_store_ack(s, dead_gen);
    assert_true(vb_slot_reusable(s));
    vb_slot_free(s);
}

static void test_kill_producer(void **state)
{
    (void)state;
    vb_shm_t *shm = vb_shm_create(2);
    assert_non_null(shm);
    for (uint64_t round = 0; round < 5; round++) {
        kill_producer_round(shm, 1, 2000 + round * 1777);
    }
    stream_clean(shm, 1);
    vb_shm_destroy(shm);
}

/* The consumer (broker) is SIGKILLed mid-stream: the producer neither blocks
 * nor fails, it drops and counts; the worker sees no broker; a new consumer
 * attaches, discards the stale audio and gets intact frames in order. */
static void test_kill_consumer(void **state)
{
    (void)state;
    vb_shm_t *shm = vb_shm_create(1);
    assert_non_null(shm);
    vb_slot_t *s = vb_shm_slot(shm, 0);
    vb_ring_t *r = vb_slot_ring(s, VB_RING_CALLER_AUDIO);
    uint32_t gen = vb_slot_assign(s);
    shared_reset();
    pid_t c1 = spawn_consumer(shm, 0, gen, 0);
    pid_t p = spawn_producer(shm, 0, 0, 0);
    wait_count(&sh->consumed, 5000);
    kid_kill(c1);
    vb_slot_broker_lost(s); /* the master reaped the broker */
    assert_false(vb_slot_broker_attached(s));

    /* The producer goes on: the ring fills and the rest is dropped and counted. */
    uint64_t drops0 = VB_SLOT_GET(s, overruns);
    wait_count(&sh->attempts, atomic_load(&sh->attempts) + 5000);
    wait_count(&s->overruns, drops0 + 1000);
    assert_int_equal(vb_ring_count(r), VB_RING_CALLER_AUDIO_CAP);
    assert_int_equal(atomic_load(&sh->bad), 0);

    /* A new broker takes over the same slot under the same gen. */
    uint64_t before = atomic_load(&sh->consumed);
    pid_t c2 = spawn_consumer(shm, 0, gen, 0);
    wait_count(&sh->consumed, before + 5000);
    assert_true(vb_slot_broker_attached(s));
    atomic_store(&sh->stop, 1); /* the caller hangs up: the worker ends the call */
    assert_exit_ok(kid_wait(p));
    assert_exit_ok(kid_wait(c2));
    assert_int_equal(atomic_load(&sh->bad), 0);
    assert_int_equal(atomic_load(&s->broker_ack_gen), gen);
    vb_slot_store_ack(s, gen);
    assert_true(vb_slot_reusable(s));
    vb_slot_free(s);

    stream_clean(shm, 0);
    vb_shm_destroy(shm);
}

int main(void)
{
    const struct CMUnitTest tests[] = {
        cmocka_unit_test_setup_teardown(test_create_layout, setup, teardown),
        cmocka_unit_test_setup_teardown(test_lifecycle, setup, teardown),
        cmocka_unit_test_setup_teardown(test_broker_attach, setup, teardown),
        cmocka_unit_test_setup_teardown(test_heartbeats, setup, teardown),
        cmocka_unit_test_setup_teardown(test_worker_beat, setup, teardown),
        cmocka_unit_test_setup_teardown(test_transcript, setup, teardown),
        cmocka_unit_test_setup_teardown(test_overrun_counts, setup, teardown),
        cmocka_unit_test_setup_teardown(test_doorbell_fork, setup, teardown),
        cmocka_unit_test_setup_teardown(test_kill_producer, setup, teardown),
        cmocka_unit_test_setup_teardown(test_kill_consumer, setup, teardown),
    };
    return cmocka_run_group_tests(tests, NULL, NULL);
}
