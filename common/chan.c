/* The master <-> child channel: see chan.h. Every field of a received control
 * message is checked before an fd is trusted (nginx ngx_channel.c habit). */
#include "common/chan.h"
#include "common/log.h"

#include <errno.h>
#include <fcntl.h>
#include <string.h>
#include <sys/socket.h>
#include <unistd.h>

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

static int take_fd(struct msghdr *mh, int *fd)
{
    *fd = -1;
    for (struct cmsghdr *c = CMSG_FIRSTHDR(mh); c != NULL; c = CMSG_NXTHDR(mh, c)) {
        if (c->cmsg_level != SOL_SOCKET || c->cmsg_type != SCM_RIGHTS ||
            c->cmsg_len != CMSG_LEN(sizeof(int)) || *fd >= 0) {
            if (c->cmsg_level == SOL_SOCKET && c->cmsg_type == SCM_RIGHTS) {
                /* close whatever came, then refuse the packet */
                size_t nfd = (c->cmsg_len - CMSG_LEN(0)) / sizeof(int);
                for (size_t i = 0; i < nfd; i++) {
                    int extra;
                    memcpy(&extra, CMSG_DATA(c) + i * sizeof(int), sizeof(int));
                    close(extra);
                }
            }
            return -EPROTO;
        }
        memcpy(fd, CMSG_DATA(c), sizeof(int));
    }
    return 0;
}

int vb_chan_recv(int chan, vb_chan_msg_t *msg, int *fd)
{
    struct iovec iov = {.iov_base = msg, .iov_len = sizeof(*msg)};
    union {
        char buf[CMSG_SPACE(sizeof(int) * 4)];
        struct cmsghdr align;
    } ctl;
    struct msghdr mh = {.msg_iov = &iov, .msg_iovlen = 1, .msg_control = ctl.buf,
                        .msg_controllen = sizeof(ctl.buf)};
    ssize_t n;
    do {
        n = recvmsg(chan, &mh, MSG_CMSG_CLOEXEC);
    } while (n < 0 && errno == EINTR);
    if (n < 0) {
        return -errno;
    }
    if (n == 0) {
        return -EPIPE;
    }
    int rc = take_fd(&mh, fd);
    if (rc == 0 && (n != (ssize_t)sizeof(*msg) || (mh.msg_flags & (MSG_TRUNC | MSG_CTRUNC)) ||
                    msg->type == 0 || msg->type >= VB_CHAN__MAX)) {
        rc = -EPROTO;
    }
    if (rc < 0) {
        if (*fd >= 0) {
            close(*fd);
            *fd = -1;
        }
        vb_log(VB_LOG_WARN, "dropped a malformed channel packet (%zd bytes)", n);
    }
    return rc;
}
