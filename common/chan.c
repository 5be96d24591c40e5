/* The master <-> child channel: see chan.h. Every field of a received control
 * message is checked before an fd is trusted (nginx ngx_channel.c habit). */
#include "common/chan.h"
#include "common/log.h"
#include "common/stats.h"

#include <errno.h>
#include <fcntl.h>
#include <poll.h>
#include <string.h>
#include <sys/socket.h>
#include <unistd.h>

#define BAD_LOG_BURST 5       /* bad packets logged one by one before the log is throttled */
#define BAD_LOG_INTERVAL_S 10 /* then one summary line at most this often */

int vb_chan_pair(int fds[2])
{
    if (socketpair(AF_UNIX, SOCK_SEQPACKET | SOCK_NONBLOCK | SOCK_CLOEXEC, 0, fds) < 0) {
        int err = errno;
        vb_log(VB_LOG_ERR, "socketpair: %s", strerror(err));
        return -err;
    }
    return 0;
}

int vb_chan_send(int chan, const vb_chan_msg_t *msg, int fd)
{
    struct iovec iov = {.iov_base = (void *)msg, .iov_len = sizeof(*msg)};
    union {
        char buf[CMSG_SPACE(sizeof(int))];
        struct cmsghdr align;
    } ctl;
    struct msghdr mh = {.msg_iov = &iov, .msg_iovlen = 1};
    if (fd >= 0) {
        memset(&ctl, 0, sizeof(ctl));
        mh.msg_control = ctl.buf;
        mh.msg_controllen = sizeof(ctl.buf);
        struct cmsghdr *c = CMSG_FIRSTHDR(&mh);
        c->cmsg_level = SOL_SOCKET;
        c->cmsg_type = SCM_RIGHTS;
        c->cmsg_len = CMSG_LEN(sizeof(int));
        memcpy(CMSG_DATA(c), &fd, sizeof(int));
    }
    ssize_t n;
    do {
        n = sendmsg(chan, &mh, MSG_NOSIGNAL);
    } while (n < 0 && errno == EINTR);
    if (n < 0) {
        return -errno;
    }
    return n == (ssize_t)sizeof(*msg) ? 0 : -EPROTO;
}

/* Closes every descriptor an SCM_RIGHTS control message carries. */
static void close_passed(struct cmsghdr *c)
{
    size_t nfd = (c->cmsg_len - CMSG_LEN(0)) / sizeof(int);
    for (size_t i = 0; i < nfd; i++) {
        int extra;
        memcpy(&extra, CMSG_DATA(c) + i * sizeof(int), sizeof(int));
        close(extra);
    }
}

/* The one descriptor of MH in *FD (-1 for none). Anything else (more than one
 * fd, another kind of control message) closes what came and is refused. */
static int take_fd(struct msghdr *mh, int *fd)
{
    int rc = 0;
    *fd = -1;
    for (struct cmsghdr *c = CMSG_FIRSTHDR(mh); c != NULL; c = CMSG_NXTHDR(mh, c)) {
        int rights = c->cmsg_level == SOL_SOCKET && c->cmsg_type == SCM_RIGHTS;
        if (!rights || c->cmsg_len != CMSG_LEN(sizeof(int)) || *fd >= 0) {
            if (rights) {
                close_passed(c);
            }
            rc = -EPROTO;
            continue;
        }
        memcpy(fd, CMSG_DATA(c), sizeof(int));
    }
    if (rc < 0 && *fd >= 0) {
        close(*fd);
        *fd = -1;
    }
    return rc;
}

/* One line per bad packet for the first few, then a summary now and then: a
 * flood of garbage must not turn into a flood of log lines. */
static void log_bad(const char *why, ssize_t n)
{
    static vb_log_limit_t limit;
    unsigned long held;
    if (!vb_log_limit(&limit, BAD_LOG_BURST, BAD_LOG_INTERVAL_S, &held)) {
        return;
    }
    if (held > 0) {
        vb_log(VB_LOG_WARN, "dropped %lu more malformed channel packets (last: %zd bytes, %s)",
               held + 1, n, why);
    } else {
        vb_log(VB_LOG_WARN, "dropped a malformed channel packet (%zd bytes): %s", n, why);
    }
}

void vb_chan_bad(const char *why, ssize_t n)
{
    VB_STAT_INC(chan_bad_packets);
    log_bad(why, n);
}

/* Why a received packet of N bytes with FLAGS cannot be used, or NULL. */
static const char *check_packet(const vb_chan_msg_t *msg, ssize_t n, int flags, int fd_rc)
{
    if (n != (ssize_t)sizeof(*msg) || (flags & MSG_TRUNC)) {
        return "wrong size";
    }
    if (fd_rc < 0) {
        return "more than one fd, or a control message that is not SCM_RIGHTS";
    }
    if (flags & MSG_CTRUNC) {
        return "control data truncated";
    }
    if (msg->type == 0 || msg->type >= VB_CHAN__MAX) {
        return "unknown type";
    }
    return NULL;
}

/* The kernel could not install the fd the sender passed (this process is at
 * its open-files limit): the message itself is whole and is returned with
 * -EMFILE, so the receiver can account for the connection it lost. */
static int fd_lost(const vb_chan_msg_t *msg, ssize_t n, int flags, int fd_rc, int fd)
{
    return n == (ssize_t)sizeof(*msg) && !(flags & MSG_TRUNC) && (flags & MSG_CTRUNC) &&
           fd_rc == 0 && fd < 0 && msg->type == VB_CHAN_CONN;
}

/* recvmsg() returns 0 both at EOF and for an empty packet: only the first
 * means the other process is gone. */
static int peer_closed(int chan)
{
    struct pollfd p = {.fd = chan, .events = POLLRDHUP};
    return poll(&p, 1, 0) > 0 && (p.revents & (POLLRDHUP | POLLHUP)) != 0;
}

int vb_chan_recv(int chan, vb_chan_msg_t *msg, int *fd)
{
    struct iovec iov = {.iov_base = msg, .iov_len = sizeof(*msg)};
    union {
        char buf[CMSG_SPACE(sizeof(int) * 4)];
        struct cmsghdr align;
    } ctl;
    struct msghdr mh = {.msg_iov = &iov,
                        .msg_iovlen = 1,
                        .msg_control = ctl.buf,
                        .msg_controllen = sizeof(ctl.buf)};
    ssize_t n;
    *fd = -1;
    memset(msg, 0, sizeof(*msg));
    do {
        /* MSG_TRUNC: n is the packet's real length, so an oversized one is seen as such */
        n = recvmsg(chan, &mh, MSG_CMSG_CLOEXEC | MSG_TRUNC);
    } while (n < 0 && errno == EINTR);
    if (n < 0) {
        return -errno;
    }
    if (n == 0 && peer_closed(chan)) {
        return -EPIPE;
    }
    int rc = take_fd(&mh, fd);
    if (fd_lost(msg, n, mh.msg_flags, rc, *fd)) {
        VB_STAT_INC(chan_lost_fds);
        vb_log(VB_LOG_ERR, "a connection handed over by the master was lost: no free file "
                           "descriptor (open-files limit reached)");
        return -EMFILE;
    }
    const char *why = check_packet(msg, n, mh.msg_flags, rc);
    if (why == NULL) {
        return 0;
    }
    if (*fd >= 0) {
        close(*fd);
        *fd = -1;
    }
    vb_chan_bad(why, n);
    return -EPROTO;
}
