/* Unit tests for shm/ring: the SPSC ring used between worker, broker and store.
 * Single-threaded semantics, wrap-around of the free-running indices near
 * UINT32_MAX, and two-thread stress tests that check order and content of
 * millions of elements, and that the doorbell protocol loses no wake-up. */
#include <errno.h>
#include <poll.h>
#include <pthread.h>
#include <sched.h>
#include <setjmp.h>
#include <stdarg.h>
#include <stddef.h>
#include <stdint.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/eventfd.h>
#include <unistd.h>

#include <cmocka.h>

#include "common/stats.h"
#include "shm/ring.h"

#if defined(__SANITIZE_THREAD__)
#define STRESS_N 300000u
#define BELL_N 60000u
#else
#define STRESS_N 3000000u
#define BELL_N 300000u
#endif

#define HDR 12u /* seq (8) + checksum (4) */

static vb_ring_t *ring_new(uint32_t cap, uint32_t elem_size, uint32_t start)
{
    size_t sz = vb_ring_footprint(cap, elem_size);
    assert_true(sz > 0);
    void *mem = aligned_alloc(64, (sz + 63) & ~(size_t)63);
    assert_non_null(mem);
    memset(mem, 0xa5, sz); /* init must not rely on zeroed memory */
    vb_ring_init(mem, cap, elem_size, start);
    return mem;
}

/* ---- payloads with a sequence number and a checksum --------------------- */

static uint32_t payload_len(uint64_t seq, uint32_t elem_size)
{
    return HDR + (uint32_t)(seq % (elem_size - HDR + 1));
}

static uint32_t fnv(const unsigned char *p, size_t n, uint64_t seq)
{
    uint32_t h = 2166136261u ^ (uint32_t)seq ^ (uint32_t)(seq >> 32);
    for (size_t i = 0; i < n; i++) {
        h = (h ^ p[i]) * 16777619u;
    }
    return h;
}

static void payload_make(unsigned char *buf, uint64_t seq, uint32_t len)
{
    uint64_t x = seq * 0x9e3779b97f4a7c15ull + 1;
    memcpy(buf, &seq, 8);
    for (uint32_t i = HDR; i < len; i++) {
        x ^= x << 13;
        x ^= x >> 7;
        x ^= x << 17;
        buf[i] = (unsigned char)x;
    }
    uint32_t sum = fnv(buf + HDR, len - HDR, seq);
    memcpy(buf + 8, &sum, 4);
}

/* 0 when BUF (LEN bytes) is a valid payload; its sequence number in *SEQ. */
static int payload_check(const unsigned char *buf, uint32_t len, uint64_t *seq)
{
    uint32_t sum;
    if (len < HDR) {
        return -1;
    }
    memcpy(seq, buf, 8);
    memcpy(&sum, buf + 8, 4);
    return fnv(buf + HDR, len - HDR, *seq) == sum ? 0 : -1;
}

/* ---- single-threaded semantics ------------------------------------------ */

static void test_footprint(void **state)
{
    (void)state;
    assert_int_equal(vb_ring_footprint(8, 16), VB_RING_HDR_SIZE + 8 * 24);
    assert_int_equal(vb_ring_footprint(1, 1), VB_RING_HDR_SIZE + 16);
    assert_int_equal(vb_ring_footprint(0, 16), 0);
    assert_int_equal(vb_ring_footprint(12, 16), 0);
    assert_int_equal(vb_ring_footprint(8, 0), 0);
    assert_int_equal(vb_ring_footprint(8, VB_RING_MAX_ELEM + 1), 0);
    assert_int_equal(vb_ring_footprint(VB_RING_MAX_CAP * 2, 8), 0);
}

static void test_push_pop(void **state)
{
    (void)state;
    vb_ring_t *r = ring_new(8, 32, 0);
    char out[32];
    uint32_t len = 99;

    assert_int_equal(vb_ring_pop(r, out, sizeof(out), &len), -EAGAIN);
    assert_int_equal(vb_ring_push(r, "hello", 5), 1); /* empty before: ring the bell */
    assert_int_equal(vb_ring_push(r, "world!", 6), 0);
    assert_int_equal(vb_ring_push(r, NULL, 0), 0);
    assert_int_equal(vb_ring_count(r), 3);
    assert_int_equal(vb_ring_free(r), 5);
    assert_int_equal(vb_ring_capacity(r), 8);
    assert_int_equal(vb_ring_elem_size(r), 32);

    assert_int_equal(vb_ring_pop(r, out, sizeof(out), &len), 0);
    assert_int_equal(len, 5);
    assert_memory_equal(out, "hello", 5);
    /* Too small a buffer: refused, element stays, *len says what it needs. */
    assert_int_equal(vb_ring_pop(r, out, 3, &len), -EMSGSIZE);
    assert_int_equal(len, 6);
    assert_int_equal(vb_ring_count(r), 2);
    assert_int_equal(vb_ring_pop(r, out, sizeof(out), &len), 0);
    assert_int_equal(len, 6);
    assert_memory_equal(out, "world!", 6);
    assert_int_equal(vb_ring_pop(r, out, sizeof(out), NULL), 0); /* the empty element */
    assert_int_equal(vb_ring_pop(r, out, sizeof(out), &len), -EAGAIN);
    assert_int_equal(vb_ring_push(r, "again", 5), 1); /* empty again */
    assert_int_equal(vb_ring_drops(r), 0);
    free(r);
}

static void test_full_drops(void **state)
{
    (void)state;
    vb_ring_t *r = ring_new(4, 8, 0);
    uint64_t stat0 = VB_STAT_GET(ring_drops);
    for (uint32_t i = 0; i < 4; i++) {
        assert_int_equal(vb_ring_push(r, &i, sizeof(i)), i == 0 ? 1 : 0);
    }
    assert_int_equal(vb_ring_free(r), 0);
    uint32_t x = 77;
    assert_int_equal(vb_ring_push(r, &x, sizeof(x)), -ENOSPC);
    assert_int_equal(vb_ring_push(r, &x, sizeof(x)), -ENOSPC);
    assert_int_equal(vb_ring_drops(r), 2);
    assert_int_equal(VB_STAT_GET(ring_drops), stat0 + 2);
    /* The queued elements are untouched by the refused pushes. */
    for (uint32_t i = 0; i < 4; i++) {
        uint32_t v, len;
        assert_int_equal(vb_ring_pop(r, &v, sizeof(v), &len), 0);
        assert_int_equal(len, 4);
        assert_int_equal(v, i);
    }
    /* Room again after popping. */
    assert_int_equal(vb_ring_push(r, &x, sizeof(x)), 1);
    assert_int_equal(vb_ring_drops(r), 2);
    free(r);
}

static void test_emsgsize(void **state)
{
    (void)state;
    vb_ring_t *r = ring_new(4, 8, 0);
    char big[9] = "123456789";
    uint64_t stat0 = VB_STAT_GET(ring_drops);
    assert_int_equal(vb_ring_push(r, big, 9), -EMSGSIZE);
    assert_int_equal(vb_ring_count(r), 0);
    assert_int_equal(vb_ring_drops(r), 0);
    assert_int_equal(VB_STAT_GET(ring_drops), stat0);
    assert_int_equal(vb_ring_push(r, big, 8), 1); /* exactly elem_size fits */
    char out[8];
    uint32_t len;
    assert_int_equal(vb_ring_pop(r, out, sizeof(out), &len), 0);
    assert_int_equal(len, 8);
    assert_memory_equal(out, big, 8);
    free(r);
}

static void test_discard(void **state)
{
    (void)state;
    vb_ring_t *r = ring_new(8, 8, 0);
    for (uint32_t i = 0; i < 3; i++) {
        assert_true(vb_ring_push(r, &i, sizeof(i)) >= 0);
    }
    vb_ring_discard(r);
    assert_int_equal(vb_ring_count(r), 0);
    uint32_t v = 0, len;
    assert_int_equal(vb_ring_pop(r, &v, sizeof(v), &len), -EAGAIN);
    uint32_t w = 42;
    assert_int_equal(vb_ring_push(r, &w, sizeof(w)), 1);
    assert_int_equal(vb_ring_pop(r, &v, sizeof(v), &len), 0);
    assert_int_equal(v, 42);
    vb_ring_discard(r); /* on an empty ring: nothing happens */
    assert_int_equal(vb_ring_count(r), 0);
    free(r);
}

/* Peek keeps elements in the ring until release: a consumer that dies between
 * the two (the store, between reading a record and its fsync) loses nothing;
 * the producer sees the room only after release. Near UINT32_MAX to wrap. */
static void test_peek_release(void **state)
{
    (void)state;
    vb_ring_t *r = ring_new(4, 8, UINT32_MAX - 1);
    for (uint32_t i = 0; i < 4; i++) {
        assert_true(vb_ring_push(r, &i, sizeof(i)) >= 0);
    }
    uint32_t cur = vb_ring_cursor(r), v = 99, len;
    assert_int_equal(vb_ring_peek(r, &cur, &v, sizeof(v), &len), 0);
    assert_int_equal(v, 0);
    assert_int_equal(vb_ring_peek(r, &cur, &v, sizeof(v), &len), 0);
    assert_int_equal(v, 1);
    assert_int_equal(vb_ring_count(r), 4); /* nothing given back yet */
    uint32_t w = 7;
    assert_int_equal(vb_ring_push(r, &w, sizeof(w)), -ENOSPC);
    /* a new reader (the restarted consumer) sees them all again */
    uint32_t fresh = vb_ring_cursor(r);
    assert_int_equal(vb_ring_peek(r, &fresh, &v, sizeof(v), &len), 0);
    assert_int_equal(v, 0);
    vb_ring_release(r, cur); /* the first two are safe elsewhere */
    assert_int_equal(vb_ring_count(r), 2);
    assert_int_equal(vb_ring_push(r, &w, sizeof(w)), 0);
    for (uint32_t want = 2; want < 4; want++) {
        assert_int_equal(vb_ring_peek(r, &cur, &v, sizeof(v), &len), 0);
        assert_int_equal(v, want);
    }
    assert_int_equal(vb_ring_peek(r, &cur, &v, sizeof(v), &len), 0);
    assert_int_equal(v, 7);
    assert_int_equal(vb_ring_peek(r, &cur, &v, sizeof(v), &len), -EAGAIN);
    vb_ring_release(r, cur);
    assert_int_equal(vb_ring_count(r), 0);
    /* released everything: the next push rings the bell again */
    assert_int_equal(vb_ring_push(r, &w, sizeof(w)), 1);
    /* a cursor outside [head, tail] starts again at head */
    uint32_t lost = 12345;
    assert_int_equal(vb_ring_peek(r, &lost, &v, sizeof(v), &len), 0);
    assert_int_equal(v, 7);
    /* a release with a cursor from before a discard is ignored */
    uint32_t old = cur;
    vb_ring_discard(r);
    vb_ring_release(r, old - 3);
    assert_int_equal(vb_ring_count(r), 0);
    free(r);
}

/* Indices cross UINT32_MAX → 0: counts, full detection and order hold. */
static void test_wrap(void **state)
{
    (void)state;
    const uint32_t start = UINT32_MAX - 5;
    vb_ring_t *r = ring_new(8, 8, start);
    uint32_t next_in = 0, next_out = 0;
    for (int round = 0; round < 40; round++) {
        uint32_t k = 1 + (uint32_t)round % 9; /* up to capacity + 1 */
        for (uint32_t i = 0; i < k; i++) {
            int rc = vb_ring_push(r, &next_in, sizeof(next_in));
            if (i == 8) {
                assert_int_equal(rc, -ENOSPC);
            } else {
                assert_true(rc >= 0);
                next_in++;
            }
        }
        assert_int_equal(vb_ring_count(r), k > 8 ? 8 : k);
        uint32_t v, len;
        while (vb_ring_pop(r, &v, sizeof(v), &len) == 0) {
            assert_int_equal(v, next_out++);
        }
    }
    assert_int_equal(next_in, next_out);
    /* The raw index did wrap. */
    uint32_t tail = atomic_load(&r->tail);
    assert_true(tail < start && tail == start + next_in);
    assert_int_equal(vb_ring_drops(r), 40 / 9);
    free(r);
}

/* Full exactly across the wrap: tail just past 0, head just below it. */
static void test_wrap_full(void **state)
{
    (void)state;
    vb_ring_t *r = ring_new(4, 4, UINT32_MAX - 1);
    for (uint32_t i = 0; i < 4; i++) {
        assert_true(vb_ring_push(r, &i, sizeof(i)) >= 0);
    }
    assert_int_equal(atomic_load(&r->tail), 2u);
    assert_int_equal(vb_ring_count(r), 4);
    assert_int_equal(vb_ring_free(r), 0);
    assert_int_equal(vb_ring_push(r, "x", 1), -ENOSPC);
    uint32_t v, len;
    assert_int_equal(vb_ring_pop(r, &v, sizeof(v), &len), 0);
    assert_int_equal(v, 0);
    assert_int_equal(vb_ring_free(r), 1);
    free(r);
}

/* Damage from outside (a stale process, a wild write) is skipped, not trusted. */
static void test_inconsistent(void **state)
{
    (void)state;
    vb_ring_t *r = ring_new(4, 8, 0);
    uint32_t v = 1, len;
    assert_true(vb_ring_push(r, &v, sizeof(v)) >= 0);
    v = 2;
    assert_true(vb_ring_push(r, &v, sizeof(v)) >= 0);
    struct vb_ring_elem *e = (struct vb_ring_elem *)r->elems;
    e->len = 1000; /* longer than elem_size */
    assert_int_equal(vb_ring_pop(r, &v, sizeof(v), &len), -EBADMSG);
    assert_int_equal(vb_ring_pop(r, &v, sizeof(v), &len), 0);
    assert_int_equal(v, 2);
    /* tail - head beyond capacity: the consumer resynchronises. */
    atomic_store(&r->tail, 100);
    assert_int_equal(vb_ring_count(r), 4);
    assert_int_equal(vb_ring_pop(r, &v, sizeof(v), &len), -EBADMSG);
    assert_int_equal(vb_ring_count(r), 0);
    assert_int_equal(vb_ring_pop(r, &v, sizeof(v), &len), -EAGAIN);
    assert_int_equal(vb_ring_push(r, &v, sizeof(v)), 1);
    free(r);
}

/* ---- two threads ----------------------------------------------------------- */

struct stress {
    vb_ring_t *r;
    uint32_t elem_size;
    uint64_t n;
    int bell; /* eventfd, or -1 to spin */
    /* results, read by the main thread after join */
    uint64_t received;
    uint64_t bad_order;
    uint64_t bad_content;
    uint64_t bells_rung;
    uint64_t wakeups;
    int lost_wakeup;
    _Atomic int quit; /* the consumer gave up: the producer must not wait */
};

static void *stress_producer(void *arg)
{
    struct stress *st = arg;
    unsigned char buf[256];
    for (uint64_t seq = 0; seq < st->n; seq++) {
        uint32_t len = payload_len(seq, st->elem_size);
        payload_make(buf, seq, len);
        while (vb_ring_free(st->r) == 0) {
            if (atomic_load(&st->quit)) {
                return NULL;
            }
            sched_yield(); /* the test wants every element; real producers drop */
        }
        int rc = vb_ring_push(st->r, buf, len);
        if (rc == 1 && st->bell >= 0) {
            uint64_t one = 1;
            if (write(st->bell, &one, sizeof(one)) == sizeof(one)) {
                st->bells_rung++;
            }
        }
        if (rc < 0) {
            st->bad_order++; /* cannot happen: there was room */
        }
    }
    return NULL;
}

static void stress_take(struct stress *st, const unsigned char *buf, uint32_t len)
{
    uint64_t seq = UINT64_MAX;
    if (payload_check(buf, len, &seq) != 0 || len != payload_len(seq, st->elem_size)) {
        st->bad_content++;
    }
    if (seq != st->received) {
        st->bad_order++;
    }
    st->received++;
}

/* Wait for the doorbell; 0 when woken, -1 on a 5 s timeout with data queued. */
static int stress_sleep(struct stress *st)
{
    struct pollfd p = {.fd = st->bell, .events = POLLIN};
    int rc = poll(&p, 1, 5000);
    if (rc == 0 && vb_ring_count(st->r) > 0) {
        st->lost_wakeup = 1;
        return -1;
    }
    uint64_t v;
    if (read(st->bell, &v, sizeof(v)) == sizeof(v)) { /* drain first, then pop */
        st->wakeups++;
    }
    return 0;
}

static void stress_consume(struct stress *st)
{
    unsigned char buf[256];
    uint32_t len;
    while (st->received < st->n) {
        int rc = vb_ring_pop(st->r, buf, sizeof(buf), &len);
        if (rc == 0) {
            stress_take(st, buf, len);
        } else if (rc != -EAGAIN) {
            st->bad_content++;
            return;
        } else if (st->bell < 0) {
            sched_yield();
        } else if (stress_sleep(st) < 0) {
            return;
        }
    }
}

static void *stress_consumer(void *arg)
{
    struct stress *st = arg;
    stress_consume(st);
    atomic_store(&st->quit, 1);
    return NULL;
}

static void stress_run(uint32_t cap, uint32_t elem_size, uint32_t start, uint64_t n, int bell)
{
    struct stress st = {.elem_size = elem_size, .n = n, .bell = bell};
    st.r = ring_new(cap, elem_size, start);
    pthread_t p, c;
    assert_int_equal(pthread_create(&c, NULL, stress_consumer, &st), 0);
    assert_int_equal(pthread_create(&p, NULL, stress_producer, &st), 0);
    assert_int_equal(pthread_join(p, NULL), 0);
    assert_int_equal(pthread_join(c, NULL), 0);
    assert_int_equal(st.lost_wakeup, 0);
    assert_int_equal(st.received, n);
    assert_int_equal(st.bad_order, 0);
    assert_int_equal(st.bad_content, 0);
    assert_int_equal(vb_ring_count(st.r), 0);
    assert_int_equal(vb_ring_drops(st.r), 0);
    if (bell >= 0) {
        print_message("      %llu elements, %llu bells, %llu wake-ups\n", (unsigned long long)n,
                      (unsigned long long)st.bells_rung, (unsigned long long)st.wakeups);
        assert_true(st.bells_rung > 0);
    }
    free(st.r);
}

static void test_stress_threads(void **state)
{
    (void)state;
    stress_run(64, 200, 0, STRESS_N, -1);
}

/* A tiny ring: producer and consumer meet at full and empty all the time. */
static void test_stress_threads_small(void **state)
{
    (void)state;
    stress_run(2, 40, 0, STRESS_N / 4, -1);
}

/* The indices wrap many times per run... and once across UINT32_MAX. */
static void test_stress_threads_wrap(void **state)
{
    (void)state;
    stress_run(16, 64, UINT32_MAX - 1000, STRESS_N / 4, -1);
}

/* The consumer sleeps on an eventfd with no tick: a lost wake-up would leave
 * data queued while it sleeps, which the 5 s poll catches. */
static void test_stress_doorbell(void **state)
{
    (void)state;
    int fd = eventfd(0, EFD_NONBLOCK | EFD_CLOEXEC);
    assert_true(fd >= 0);
    stress_run(8, 64, UINT32_MAX - 100, BELL_N, fd);
    close(fd);
}

int main(void)
{
    const struct CMUnitTest tests[] = {
        cmocka_unit_test(test_footprint),
        cmocka_unit_test(test_push_pop),
        cmocka_unit_test(test_full_drops),
        cmocka_unit_test(test_emsgsize),
        cmocka_unit_test(test_discard),
        cmocka_unit_test(test_peek_release),
        cmocka_unit_test(test_wrap),
        cmocka_unit_test(test_wrap_full),
        cmocka_unit_test(test_inconsistent),
        cmocka_unit_test(test_stress_threads),
        cmocka_unit_test(test_stress_threads_small),
        cmocka_unit_test(test_stress_threads_wrap),
        cmocka_unit_test(test_stress_doorbell),
    };
    return cmocka_run_group_tests(tests, NULL, NULL);
}
