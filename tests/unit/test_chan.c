/* Unit tests for common/chan: the master <-> child channel. A message and its
 * fd go through; every malformed packet (wrong size, oversized, more than one
 * fd, an unknown type, an empty packet) is refused, counted and its fds are
 * closed; an empty packet is not mistaken for the peer's exit; a CONN whose fd
 * cannot be installed (open-files limit) comes back as -EMFILE with the
 * message intact. */
#include <errno.h>
#include <fcntl.h>
#include <setjmp.h>
#include <stdarg.h>
#include <stddef.h>
#include <stdint.h>
#include <string.h>
#include <sys/resource.h>
#include <sys/socket.h>
#include <unistd.h>

#include <cmocka.h>

#include "common/chan.h"
#include "common/stats.h"

static int pair[2];

static int setup(void **state)
{
    (void)state;
    return vb_chan_pair(pair);
}

static int teardown(void **state)
{
    (void)state;
    close(pair[0]);
    close(pair[1]);
    return 0;
}

/* Sends DATA (LEN bytes) with NFD copies of FD as one packet, as anything
 * holding the other end could. */
static void send_raw(const void *data, size_t len, int fd, int nfd)
{
    struct iovec iov = {.iov_base = (void *)data, .iov_len = len};
    union {
        char buf[CMSG_SPACE(sizeof(int) * 8)];
        struct cmsghdr align;
    } ctl;
    struct msghdr mh = {.msg_iov = &iov, .msg_iovlen = 1};
    if (nfd > 0) {
        memset(&ctl, 0, sizeof(ctl));
        mh.msg_control = ctl.buf;
        mh.msg_controllen = CMSG_SPACE(sizeof(int) * (size_t)nfd);
        struct cmsghdr *c = CMSG_FIRSTHDR(&mh);
        c->cmsg_level = SOL_SOCKET;
        c->cmsg_type = SCM_RIGHTS;
        c->cmsg_len = CMSG_LEN(sizeof(int) * (size_t)nfd);
        for (int i = 0; i < nfd; i++) {
            memcpy(CMSG_DATA(c) + (size_t)i * sizeof(int), &fd, sizeof(int));
        }
    }
    assert_int_equal(sendmsg(pair[0], &mh, 0), (ssize_t)len);
}

static uint64_t bad_count(void)
{
    return VB_STAT_GET(chan_bad_packets);
}

/* 1 when the write end of a pipe has no copy left open anywhere. */
static int no_writer_left(int rd)
{
    char b;
    return read(rd, &b, 1) == 0;
}

static void test_message_and_fd_go_through(void **state)
{
    (void)state;
    int p[2];
    assert_int_equal(pipe(p), 0);
    vb_chan_msg_t out = {
        .type = VB_CHAN_CONN, .listener = VB_LISTENER_MEDIA, .slot = 7, .gen = 3};
    assert_int_equal(vb_chan_send(pair[0], &out, p[1]), 0);
    vb_chan_msg_t in;
    int fd;
    assert_int_equal(vb_chan_recv(pair[1], &in, &fd), 0);
    assert_memory_equal(&in, &out, sizeof(in));
    assert_true(fd >= 0);
    assert_int_equal(write(fd, "x", 1), 1);
    char b;
    assert_int_equal(read(p[0], &b, 1), 1);
    close(fd);
    close(p[0]);
    close(p[1]);
    assert_int_equal(vb_chan_recv(pair[1], &in, &fd), -EAGAIN);
}

static void test_malformed_packets_are_refused_and_counted(void **state)
{
    (void)state;
    static char big[70000];
    vb_chan_msg_t unknown = {.type = 999}, zero = {.type = 0};
    const struct {
        const void *data;
        size_t len;
    } bad[] = {{"x", 1},
               {big, 23},
               {big, 25},
               {big, sizeof(big)},
               {&unknown, sizeof(unknown)},
               {&zero, sizeof(zero)}};
    uint64_t before = bad_count();
    for (size_t i = 0; i < sizeof(bad) / sizeof(bad[0]); i++) {
        send_raw(bad[i].data, bad[i].len, -1, 0);
        vb_chan_msg_t in;
        int fd = 123;
        assert_int_equal(vb_chan_recv(pair[1], &in, &fd), -EPROTO);
        assert_int_equal(fd, -1);
    }
    assert_int_equal(bad_count(), before + sizeof(bad) / sizeof(bad[0]));
}

static void test_extra_fds_are_closed(void **state)
{
    (void)state;
    vb_chan_msg_t conn = {.type = VB_CHAN_CONN, .listener = VB_LISTENER_API};
    vb_chan_msg_t garbage = {.type = 999};
    uint64_t before = bad_count();
    for (int round = 0; round < 4; round++) {
        int p[2];
        assert_int_equal(pipe(p), 0);
        if (round == 0) {
            send_raw(&conn, sizeof(conn), p[1], 2); /* a CONN with two fds */
        } else if (round == 1) {
            send_raw(&conn, 10, p[1], 1); /* a short packet with an fd */
        } else if (round == 2) {
            send_raw(&conn, sizeof(conn), p[1], 6); /* more than fit: not a "lost" fd */
        } else {
            send_raw(&garbage, sizeof(garbage), p[1], 1); /* an unknown type with an fd */
        }
        close(p[1]);
        vb_chan_msg_t in;
        int fd;
        assert_int_equal(vb_chan_recv(pair[1], &in, &fd), -EPROTO);
        assert_int_equal(fd, -1);
        assert_true(no_writer_left(p[0])); /* the receiver kept no copy */
        close(p[0]);
    }
    assert_int_equal(bad_count(), before + 4);
}

static void test_empty_packet_is_not_the_end(void **state)
{
    (void)state;
    uint64_t before = bad_count();
    send_raw("", 0, -1, 0);
    vb_chan_msg_t in;
    int fd;
    assert_int_equal(vb_chan_recv(pair[1], &in, &fd), -EPROTO);
    assert_int_equal(bad_count(), before + 1);
    vb_chan_msg_t quit = {.type = VB_CHAN_QUIT};
    assert_int_equal(vb_chan_send(pair[0], &quit, -1), 0);
    assert_int_equal(vb_chan_recv(pair[1], &in, &fd), 0);
    assert_int_equal(in.type, VB_CHAN_QUIT);
}

static void test_peer_exit_is_the_end(void **state)
{
    (void)state;
    int p[2];
    assert_int_equal(vb_chan_pair(p), 0);
    close(p[0]);
    vb_chan_msg_t in;
    int fd;
    assert_int_equal(vb_chan_recv(p[1], &in, &fd), -EPIPE);
    close(p[1]);
}

/* The lowest descriptor number free in this process. */
static int lowest_free_fd(void)
{
    int fd = dup(0);
    assert_true(fd >= 0);
    close(fd);
    return fd;
}

static void test_fd_that_cannot_be_installed_is_reported(void **state)
{
    (void)state;
    int p[2];
    assert_int_equal(pipe(p), 0);
    vb_chan_msg_t out = {
        .type = VB_CHAN_CONN, .listener = VB_LISTENER_MEDIA, .slot = 5, .gen = 9};
    assert_int_equal(vb_chan_send(pair[0], &out, p[1]), 0);
    close(p[1]);
    struct rlimit old, low;
    assert_int_equal(getrlimit(RLIMIT_NOFILE, &old), 0);
    low = old;
    low.rlim_cur = (rlim_t)lowest_free_fd(); /* no new descriptor fits */
    assert_int_equal(setrlimit(RLIMIT_NOFILE, &low), 0);
    uint64_t lost = VB_STAT_GET(chan_lost_fds);
    vb_chan_msg_t in;
    int fd;
    int rc = vb_chan_recv(pair[1], &in, &fd);
    assert_int_equal(setrlimit(RLIMIT_NOFILE, &old), 0);
    assert_int_equal(rc, -EMFILE);
    assert_int_equal(fd, -1);
    assert_memory_equal(&in, &out, sizeof(in)); /* the receiver can give the slot back */
    assert_int_equal(VB_STAT_GET(chan_lost_fds), lost + 1);
    assert_true(no_writer_left(p[0])); /* the kernel dropped the fd in flight */
    close(p[0]);
}

int main(void)
{
    const struct CMUnitTest tests[] = {
        cmocka_unit_test_setup_teardown(test_message_and_fd_go_through, setup, teardown),
        cmocka_unit_test_setup_teardown(test_malformed_packets_are_refused_and_counted, setup,
                                        teardown),
        cmocka_unit_test_setup_teardown(test_extra_fds_are_closed, setup, teardown),
        cmocka_unit_test_setup_teardown(test_empty_packet_is_not_the_end, setup, teardown),
        cmocka_unit_test(test_peer_exit_is_the_end),
        cmocka_unit_test_setup_teardown(test_fd_that_cannot_be_installed_is_reported, setup,
                                        teardown),
    };
    return cmocka_run_group_tests(tests, NULL, NULL);
}
