/* Lingering close of refused connections: see linger.h. */
#include "common/linger.h"

#include <errno.h>
#include <stdlib.h>
#include <unistd.h>

#include "common/clock.h"
#include "common/httpd.h"
#include "common/stats.h"

typedef struct lconn {
    struct lconn *next, *prev;
    vb_linger_t *owner;
    struct event *ev;
    int fd;
    size_t drained;
    int64_t deadline_ms;
} lconn_t;

struct vb_linger {
    struct event_base *base;
    int max, count;
    lconn_t *head;
};

vb_linger_t *vb_linger_new(struct event_base *base, int max)
{
    vb_linger_t *l = calloc(1, sizeof(*l));
    if (l != NULL) {
        l->base = base;
        l->max = max;
    }
    return l;
}

static void lconn_close(lconn_t *c)
{
    vb_linger_t *l = c->owner;
    if (c->prev != NULL) {
        c->prev->next = c->next;
    } else {
        l->head = c->next;
    }
    if (c->next != NULL) {
        c->next->prev = c->prev;
    }
    l->count--;
    event_free(c->ev);
    close(c->fd);
    free(c);
}

void vb_linger_free(vb_linger_t *l)
{
    if (l == NULL) {
        return;
    }
    while (l->head != NULL) {
        lconn_close(l->head);
    }
    free(l);
}

static int lconn_wait(lconn_t *c)
{
    int64_t left = c->deadline_ms - (int64_t)vb_mono_ms();
    if (left <= 0) {
        return -1;
    }
    struct timeval tv = {(time_t)(left / 1000), (suseconds_t)(left % 1000) * 1000};
    return event_add(c->ev, &tv);
}

static void on_readable(evutil_socket_t fd, short what, void *arg)
{
    lconn_t *c = arg;
    ssize_t n = (what & EV_READ) ? vb_http_drain_fd(fd, VB_LINGER_BYTES - c->drained) : 0;
    if (n < 0 || (what & EV_TIMEOUT)) {
        lconn_close(c); /* the client has closed, or it had its time */
        return;
    }
    c->drained += (size_t)n;
    if (c->drained >= VB_LINGER_BYTES || lconn_wait(c) < 0) {
        lconn_close(c);
    }
}

void vb_linger_busy(vb_linger_t *l, int fd, const char *message)
{
    vb_http_busy_write(fd, message);
    lconn_t *c = l != NULL && l->count < l->max ? calloc(1, sizeof(*c)) : NULL;
    if (c != NULL) {
        c->ev = event_new(l->base, fd, EV_READ, on_readable, c);
    }
    if (c == NULL || c->ev == NULL) {
        free(c);
        close(fd);
        return;
    }
    c->owner = l;
    c->fd = fd;
    c->deadline_ms = (int64_t)vb_mono_ms() + VB_LINGER_MS;
    c->next = l->head;
    if (l->head != NULL) {
        l->head->prev = c;
    }
    l->head = c;
    l->count++;
    VB_STAT_INC(busy_lingering);
    if (lconn_wait(c) < 0) {
        lconn_close(c);
    }
}

void vb_linger_close_fds(const vb_linger_t *l)
{
    for (const lconn_t *c = l != NULL ? l->head : NULL; c != NULL; c = c->next) {
        close(c->fd);
    }
}

int vb_linger_count(const vb_linger_t *l)
{
    return l != NULL ? l->count : 0;
}
