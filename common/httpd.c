/* HTTP/1.1 server connection: see httpd.h. Runs in the api and media workers
 * on their event_base.
 *
 * Lifecycle: READ (parsing) -> HANDLER (a request is with the handler; reading
 * paused) -> back to READ after the reply, or DONE. Every path that ends the
 * connection goes through conn_end(), which releases the socket at once and
 * frees the struct later from the loop ("kick" event), so that no callback of
 * ours ever runs on freed memory, whatever the handler does re-entrantly. */
#include "common/httpd.h"

#include <arpa/inet.h>
#include <errno.h>
#include <netinet/in.h>
#include <netinet/tcp.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <strings.h>
#include <sys/socket.h>
#include <time.h>
#include <unistd.h>

#include <event2/buffer.h>
#include <event2/bufferevent.h>
#include <event2/bufferevent_ssl.h>
#include <event2/event.h>
#include <event2/util.h>
#include <openssl/err.h>

#include "common/linger.h"
#include "common/log.h"
#include "common/stats.h"

enum { C_READ, C_HANDLER, C_DONE };

#define READ_HIGH_WATERMARK (64 * 1024)
#define BUSY_DRAIN_BYTES (64 * 1024) /* what a refused client may have sent already */

struct vb_http_conn {
    struct event_base *base;
    struct bufferevent *bev; /* NULL once the socket is released */
    vb_http_limits_t lim;
    vb_http_handler_fn fn;
    void (*on_close)(void *arg);
    void *arg;
    vb_http_parser_t parser;
    int state;
    int is_tls;
    int tls_ok;
    int detached;
    int continue_sent;
    int request_timer; /* the timer runs for a request (not idle) */
    int paused;        /* reading paused: output over the cap */
    unsigned nreq;     /* requests dispatched so far */
    struct event *timer;
    struct event *kick;
    char peer[64];
};

static void process_input(vb_http_conn_t *c);

void vb_http_limits_default(vb_http_limits_t *lim)
{
    lim->max_header_bytes = VB_HTTP_DEFAULT_MAX_HEADER;
    lim->max_body_bytes = VB_HTTP_DEFAULT_MAX_BODY;
    lim->request_timeout_s = 10;
    lim->idle_timeout_s = 60;
    lim->max_output_bytes = 1024 * 1024;
}

static void limits_fill(vb_http_limits_t *dst, const vb_http_limits_t *src)
{
    vb_http_limits_t d;
    vb_http_limits_default(&d);
    *dst = d;
    if (src == NULL) {
        return;
    }
    dst->max_header_bytes = src->max_header_bytes ? src->max_header_bytes : d.max_header_bytes;
    dst->max_body_bytes = src->max_body_bytes ? src->max_body_bytes : d.max_body_bytes;
    dst->request_timeout_s =
        src->request_timeout_s > 0 ? src->request_timeout_s : d.request_timeout_s;
    dst->idle_timeout_s = src->idle_timeout_s > 0 ? src->idle_timeout_s : d.idle_timeout_s;
    dst->max_output_bytes = src->max_output_bytes ? src->max_output_bytes : d.max_output_bytes;
}

/* ---- closing a bufferevent after its output is flushed --------------------------------- */

static void linger_read_cb(struct bufferevent *bev, void *arg)
{
    struct evbuffer *in = bufferevent_get_input(bev);
    evbuffer_drain(in, evbuffer_get_length(in));
}

static void linger_event_cb(struct bufferevent *bev, short what, void *arg)
{
    bufferevent_free(bev);
}

static void linger_write_cb(struct bufferevent *bev, void *arg)
{
    if (evbuffer_get_length(bufferevent_get_output(bev)) > 0) {
        return;
    }
    if (bufferevent_openssl_get_ssl(bev) != NULL) {
        bufferevent_free(bev);
        return;
    }
    /* Half-close, then read and discard until EOF or the timeout, so that the
     * peer is not sent a RST for bytes it sent after our response. */
    shutdown(bufferevent_getfd(bev), SHUT_WR);
    bufferevent_setcb(bev, linger_read_cb, NULL, linger_event_cb, NULL);
    struct timeval tv = {VB_LINGER_MS / 1000, 0};
    bufferevent_set_timeouts(bev, &tv, NULL);
    bufferevent_enable(bev, EV_READ);
}

void vb_bev_close_after_flush(struct bufferevent *bev, int timeout_s)
{
    struct timeval tv = {timeout_s > 0 ? timeout_s : 5, 0};
    bufferevent_setcb(bev, linger_read_cb, linger_write_cb, linger_event_cb, NULL);
    bufferevent_setwatermark(bev, EV_WRITE, 0, 0);
    bufferevent_setwatermark(bev, EV_READ, 0, READ_HIGH_WATERMARK);
    bufferevent_set_timeouts(bev, &tv, &tv);
    bufferevent_enable(bev, EV_READ | EV_WRITE);
    if (evbuffer_get_length(bufferevent_get_output(bev)) == 0) {
        linger_write_cb(bev, NULL);
    }
}

/* ---- ending -------------------------------------------------------------------------- */

static void conn_free(vb_http_conn_t *c)
{
    if (!c->detached && c->on_close != NULL) {
        c->on_close(c->arg);
    }
    event_free(c->timer);
    event_free(c->kick);
    vb_http_parser_free(&c->parser);
    free(c);
}

static void release_bev(vb_http_conn_t *c, int flush)
{
    if (c->bev == NULL) {
        return;
    }
    if (flush) {
        vb_bev_close_after_flush(c->bev, c->lim.idle_timeout_s);
    } else {
        bufferevent_free(c->bev);
    }
    c->bev = NULL;
}

/* Let go of the socket now; free C from the loop unless the handler still
 * owes a reply (then vb_http_reply/close finishes the job). */
static void conn_end(vb_http_conn_t *c, int flush)
{
    release_bev(c, flush);
    evtimer_del(c->timer);
    if (c->state == C_HANDLER) {
        return;
    }
    c->state = C_DONE;
    event_active(c->kick, EV_TIMEOUT, 0);
}

static void kick_cb(evutil_socket_t fd, short what, void *arg)
{
    vb_http_conn_t *c = arg;
    if (c->state == C_DONE) {
        conn_free(c);
    } else if (c->state == C_READ) {
        process_input(c);
    }
}

/* ---- writing ------------------------------------------------------------------------- */

static void add_date(struct evbuffer *out)
{
    char buf[64];
    time_t now = time(NULL);
    struct tm tm;
    gmtime_r(&now, &tm);
    strftime(buf, sizeof(buf), "%a, %d %b %Y %H:%M:%S GMT", &tm);
    evbuffer_add_printf(out, "Date: %s\r\n", buf);
}

static int status_has_body(int status)
{
    return !(status < 200 || status == 204 || status == 304);
}

/* Do EXTRA_HEADERS carry "Connection: close"? */
static int extra_says_close(const char *extra)
{
    const char *l = extra;
    while (l != NULL && *l) {
        const char *end = strchr(l, '\n');
        size_t n = end ? (size_t)(end - l) : strlen(l);
        if (n > 11 && strncasecmp(l, "Connection:", 11) == 0) {
            for (const char *p = l + 11; p + 5 <= l + n; p++) {
                if (strncasecmp(p, "close", 5) == 0) {
                    return 1;
                }
            }
        }
        l = end ? end + 1 : NULL;
    }
    return 0;
}

static void write_response(struct evbuffer *out, int status, const char *ctype,
                           const void *body, size_t len, const char *extra, int close,
                           int head_only)
{
    evbuffer_add_printf(out, "HTTP/1.1 %d %s\r\n", status, vb_http_status_text(status));
    add_date(out);
    if (ctype != NULL) {
        evbuffer_add_printf(out, "Content-Type: %s\r\n", ctype);
    }
    if (status_has_body(status)) {
        evbuffer_add_printf(out, "Content-Length: %zu\r\n", len);
    }
    if (close && !extra_says_close(extra)) {
        evbuffer_add(out, "Connection: close\r\n", 19);
    }
    if (extra != NULL) {
        evbuffer_add(out, extra, strlen(extra));
    }
    evbuffer_add(out, "\r\n", 2);
    if (!head_only && status_has_body(status) && len > 0) {
        evbuffer_add(out, body, len);
    }
}

/* Answer a request we could not parse (or that took too long), then close. */
static void send_error(vb_http_conn_t *c, int status, const char *why)
{
    char body[96];
    int n = snprintf(body, sizeof(body), "%d %s\n", status, vb_http_status_text(status));
    if (status == 413 || status == 414 || status == 431) {
        VB_STAT_INC(http_too_large);
    } else if (status == 408) {
        VB_STAT_INC(http_timeouts);
    } else {
        VB_STAT_INC(http_bad_requests);
    }
    vb_log(VB_LOG_INFO, "http %s: %d (%s)", c->peer, status, why);
    if (c->bev != NULL) {
        write_response(bufferevent_get_output(c->bev), status, "text/plain", body, (size_t)n,
                       NULL, 1, 0);
    }
    conn_end(c, 1);
}

/* ---- timers -------------------------------------------------------------------------- */

static void arm_timer(vb_http_conn_t *c, int seconds, int is_request)
{
    struct timeval tv = {seconds, 0};
    c->request_timer = is_request;
    evtimer_add(c->timer, &tv);
}

static void timer_cb(evutil_socket_t fd, short what, void *arg)
{
    vb_http_conn_t *c = arg;
    if (c->state != C_READ) {
        return;
    }
    if (vb_http_parser_started(&c->parser)) {
        send_error(c, 408, "request not complete in time");
        return;
    }
    if (c->nreq == 0) {
        /* A fresh connection that never sent a byte: close quietly. */
        VB_STAT_INC(http_timeouts);
        vb_log(VB_LOG_DEBUG, "http %s: no request in time", c->peer);
    }
    conn_end(c, 0);
}

/* ---- reading ------------------------------------------------------------------------- */

static void dispatch(vb_http_conn_t *c)
{
    VB_STAT_INC(http_requests);
    c->nreq++;
    evtimer_del(c->timer);
    c->state = C_HANDLER;
    bufferevent_disable(c->bev, EV_READ);
    c->fn(c, &c->parser.req, c->arg);
}

static int output_full(const vb_http_conn_t *c)
{
    return evbuffer_get_length(bufferevent_get_output(c->bev)) > c->lim.max_output_bytes;
}

/* Feed the first contiguous chunk of input to the parser; 0 when more may
 * follow, -1 when nothing is to be done now. */
static int feed_once(vb_http_conn_t *c)
{
    struct evbuffer *in = bufferevent_get_input(c->bev);
    struct evbuffer_iovec v;
    if (evbuffer_peek(in, -1, NULL, &v, 1) < 1 || v.iov_len == 0) {
        return -1;
    }
    if (!vb_http_parser_started(&c->parser) && !c->request_timer) {
        arm_timer(c, c->lim.request_timeout_s, 1);
    }
    size_t used = vb_http_parser_feed(&c->parser, v.iov_base, v.iov_len);
    evbuffer_drain(in, used);
    vb_http_parser_t *p = &c->parser;
    if (p->state == VB_HTTP_PARSE_ERROR) {
        send_error(c, p->error_status, p->error_reason);
        return -1;
    }
    if (p->state == VB_HTTP_PARSE_BODY && p->req.expect_continue && !c->continue_sent) {
        c->continue_sent = 1;
        evbuffer_add(bufferevent_get_output(c->bev), "HTTP/1.1 100 Continue\r\n\r\n", 25);
    }
    if (p->state == VB_HTTP_PARSE_DONE) {
        dispatch(c);
        return -1;
    }
    return 0;
}

static void process_input(vb_http_conn_t *c)
{
    while (c->state == C_READ && c->bev != NULL) {
        if (output_full(c)) {
            c->paused = 1;
            bufferevent_disable(c->bev, EV_READ);
            return;
        }
        if (feed_once(c) < 0) {
            return;
        }
    }
}

static void read_cb(struct bufferevent *bev, void *arg)
{
    process_input(arg);
}

static void write_cb(struct bufferevent *bev, void *arg)
{
    vb_http_conn_t *c = arg;
    if (c->state == C_READ && c->paused) {
        c->paused = 0;
        bufferevent_enable(c->bev, EV_READ);
        process_input(c);
    }
}

static void event_cb(struct bufferevent *bev, short what, void *arg)
{
    vb_http_conn_t *c = arg;
    if (what & BEV_EVENT_CONNECTED) {
        c->tls_ok = 1;
        return;
    }
    if (c->is_tls && !c->tls_ok && (what & (BEV_EVENT_ERROR | BEV_EVENT_EOF))) {
        unsigned long e = bufferevent_get_openssl_error(bev);
        VB_STAT_INC(tls_handshake_errors);
        vb_log(VB_LOG_INFO, "http %s: TLS handshake failed: %s", c->peer,
               e ? ERR_reason_error_string(e) : "connection closed");
    } else if (what & BEV_EVENT_TIMEOUT) {
        vb_log(VB_LOG_INFO, "http %s: peer stopped reading, closing", c->peer);
    }
    conn_end(c, 0);
}

/* ---- public -------------------------------------------------------------------------- */

static void format_peer(int fd, char *buf, size_t len)
{
    struct sockaddr_storage ss;
    socklen_t sl = sizeof(ss);
    char host[INET6_ADDRSTRLEN] = "?";
    snprintf(buf, len, "unix");
    if (getpeername(fd, (struct sockaddr *)&ss, &sl) < 0) {
        return;
    }
    if (ss.ss_family == AF_INET) {
        struct sockaddr_in *sin = (struct sockaddr_in *)&ss;
        inet_ntop(AF_INET, &sin->sin_addr, host, sizeof(host));
        snprintf(buf, len, "%s:%u", host, ntohs(sin->sin_port));
    } else if (ss.ss_family == AF_INET6) {
        struct sockaddr_in6 *s6 = (struct sockaddr_in6 *)&ss;
        inet_ntop(AF_INET6, &s6->sin6_addr, host, sizeof(host));
        snprintf(buf, len, "[%s]:%u", host, ntohs(s6->sin6_port));
    }
}

void vb_socket_nodelay(int fd)
{
    int one = 1;
    setsockopt(fd, IPPROTO_TCP, TCP_NODELAY, &one, sizeof(one));
}

static struct bufferevent *make_bev(struct event_base *base, int fd, SSL_CTX *tls)
{
    if (tls == NULL) {
        return bufferevent_socket_new(base, fd, BEV_OPT_CLOSE_ON_FREE);
    }
    SSL *ssl = SSL_new(tls);
    if (ssl == NULL) {
        return NULL;
    }
    struct bufferevent *bev = bufferevent_openssl_socket_new(
        base, fd, ssl, BUFFEREVENT_SSL_ACCEPTING, BEV_OPT_CLOSE_ON_FREE);
    if (bev == NULL) {
        SSL_free(ssl);
        return NULL;
    }
    bufferevent_openssl_set_allow_dirty_shutdown(bev, 1);
    return bev;
}

vb_http_conn_t *vb_http_conn_new(struct event_base *base, int fd, SSL_CTX *tls,
                                 const vb_http_limits_t *lim, vb_http_handler_fn fn,
                                 void (*on_close)(void *arg), void *arg)
{
    vb_http_conn_t *c = calloc(1, sizeof(*c));
    if (c == NULL || evutil_make_socket_nonblocking(fd) < 0) {
        free(c);
        close(fd);
        errno = ENOMEM;
        return NULL;
    }
    vb_socket_nodelay(fd);
    format_peer(fd, c->peer, sizeof(c->peer));
    c->bev = make_bev(base, fd, tls);
    if (c->bev == NULL) {
        vb_log(VB_LOG_ERR, "http %s: cannot create bufferevent", c->peer);
        free(c);
        close(fd);
        errno = ENOMEM;
        return NULL;
    }
    c->base = base;
    c->is_tls = tls != NULL;
    limits_fill(&c->lim, lim);
    c->fn = fn;
    c->on_close = on_close;
    c->arg = arg;
    vb_http_parser_init(&c->parser, c->lim.max_header_bytes, c->lim.max_body_bytes);
    c->timer = evtimer_new(base, timer_cb, c);
    c->kick = event_new(base, -1, 0, kick_cb, c);
    if (c->timer == NULL || c->kick == NULL) { /* short of memory: refuse, do not abort */
        vb_log(VB_LOG_ERR, "http %s: cannot create timers", c->peer);
        if (c->timer != NULL) {
            event_free(c->timer);
        }
        if (c->kick != NULL) {
            event_free(c->kick);
        }
        bufferevent_free(c->bev); /* closes FD */
        free(c);
        errno = ENOMEM;
        return NULL;
    }
    struct timeval wt = {c->lim.idle_timeout_s, 0};
    bufferevent_set_timeouts(c->bev, NULL, &wt);
    bufferevent_setwatermark(c->bev, EV_READ, 0, READ_HIGH_WATERMARK);
    bufferevent_setcb(c->bev, read_cb, write_cb, event_cb, c);
    bufferevent_enable(c->bev, EV_READ | EV_WRITE);
    arm_timer(c, c->lim.request_timeout_s, 1); /* the TLS handshake counts too */
    return c;
}

static void after_reply(vb_http_conn_t *c, int keep_alive)
{
    vb_http_parser_reset(&c->parser);
    c->continue_sent = 0;
    c->request_timer = 0;
    if (!keep_alive) {
        c->state = C_DONE;
        conn_end(c, 1);
        return;
    }
    c->state = C_READ;
    bufferevent_enable(c->bev, EV_READ);
    arm_timer(c, c->lim.idle_timeout_s, 0);
    if (evbuffer_get_length(bufferevent_get_input(c->bev)) > 0) {
        event_active(c->kick, EV_TIMEOUT, 0); /* pipelined request already here */
    }
}

void vb_http_reply(vb_http_conn_t *c, int status, const char *content_type, const void *body,
                   size_t len, const char *extra_headers)
{
    VB_ASSERT(c->state == C_HANDLER);
    if (c->bev == NULL) { /* the peer left while the handler worked */
        c->state = C_DONE;
        conn_end(c, 0);
        return;
    }
    vb_http_req_t *req = &c->parser.req;
    int keep = req->keep_alive && status >= 200;
    /* A body we did not read would be taken for the next request. */
    keep = keep && c->parser.state == VB_HTTP_PARSE_DONE && !extra_says_close(extra_headers);
    int head_only = strcmp(req->method, "HEAD") == 0;
    write_response(bufferevent_get_output(c->bev), status, content_type, body, len,
                   extra_headers, !keep, head_only);
    after_reply(c, keep);
}

struct bufferevent *vb_http_conn_detach(vb_http_conn_t *c)
{
    VB_ASSERT(c->state == C_HANDLER);
    struct bufferevent *bev = c->bev;
    c->bev = NULL;
    c->state = C_DONE;
    if (bev != NULL) {
        c->detached = 1;
        bufferevent_setcb(bev, NULL, NULL, NULL, NULL);
        bufferevent_set_timeouts(bev, NULL, NULL);
        bufferevent_setwatermark(bev, EV_READ, 0, 0);
    }
    conn_end(c, 0);
    return bev;
}

void vb_http_conn_close(vb_http_conn_t *c)
{
    if (c->state == C_DONE) {
        return;
    }
    c->state = C_DONE;
    conn_end(c, 0);
}

int vb_http_conn_is_open(const vb_http_conn_t *c)
{
    return c->bev != NULL && c->state != C_DONE;
}

void vb_http_conn_set_arg(vb_http_conn_t *c, void *arg)
{
    c->arg = arg;
}

const char *vb_http_conn_peer(const vb_http_conn_t *c)
{
    return c->peer;
}

int vb_http_conn_is_tls(const vb_http_conn_t *c)
{
    return c->is_tls;
}

void vb_http_busy_write(int fd, const char *message)
{
    char body[160], buf[512];
    int len = snprintf(body, sizeof(body),
                       "{\"error\":{\"code\":\"busy\",\"message\":\"%s\"}}\n", message);
    int n = snprintf(buf, sizeof(buf),
                     "HTTP/1.1 503 Service Unavailable\r\nRetry-After: 1\r\n"
                     "Content-Type: application/json\r\nContent-Length: %d\r\n"
                     "Connection: close\r\n\r\n%s",
                     len, body);
    ssize_t w = write(fd, buf, (size_t)n); /* best effort: the socket is fresh */
    (void)w;
    shutdown(fd, SHUT_WR);
    vb_http_drain_fd(fd, BUSY_DRAIN_BYTES);
}

ssize_t vb_http_drain_fd(int fd, size_t max)
{
    char sink[4096];
    size_t total = 0;
    while (total < max) {
        size_t want = max - total < sizeof(sink) ? max - total : sizeof(sink);
        ssize_t r = recv(fd, sink, want, MSG_DONTWAIT);
        if (r < 0 && (errno == EAGAIN || errno == EWOULDBLOCK)) {
            break; /* nothing more for now */
        }
        if (r <= 0) {
            return -1; /* the peer closed, or the socket failed */
        }
        total += (size_t)r;
    }
    return (ssize_t)total;
}

void vb_http_busy_fd(int fd, const char *message)
{
    vb_http_busy_write(fd, message);
    close(fd);
}
