/* Tests for the HTTP/1.1 server connection (common/httpd.c) on a real
 * event_base with loopback TCP: keep-alive and pipelining, 413, 431, bad
 * framing on the wire, request and idle timeouts, Expect: 100-continue, async
 * replies (also after the peer left), detach, a slow reader, TLS with a
 * self-signed certificate made at test time, and the lingering close of a
 * refused connection (common/linger.c). */
#include <pthread.h>
#include <setjmp.h>
#include <stdarg.h>
#include <stddef.h>
#include <signal.h>
#include <stdint.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/socket.h>
#include <sys/time.h>
#include <unistd.h>

#include <cmocka.h>
#include <event2/buffer.h>
#include <event2/bufferevent.h>
#include <event2/event.h>
#include <openssl/ssl.h>

#include "common/httpd.h"
#include "common/linger.h"
#include "common/stats.h"
#include "common/tls.h"
#include "tests/unit/net_testutil.h"

#define T_MS 3000

typedef struct {
    struct event_base *base;
    int lfd, port;
    int nreq, closed, async;
    vb_http_conn_t *pending;
    struct bufferevent *detached;
    char last_path[256];
    char last_body[4096];
    size_t big_reply; /* reply with this many bytes */
    int small_sndbuf;
} env_t;

static env_t E;

static void on_close(void *arg)
{
    ((env_t *)arg)->closed++;
}

static void handler(vb_http_conn_t *c, vb_http_req_t *req, void *arg)
{
    env_t *e = arg;
    e->nreq++;
    snprintf(e->last_path, sizeof(e->last_path), "%s", req->path);
    snprintf(e->last_body, sizeof(e->last_body), "%s", req->body);
    if (strcmp(req->path, "/detach") == 0) {
        e->detached = vb_http_conn_detach(c);
        return;
    }
    if (e->async) {
        e->pending = c; /* answered later by the test */
        return;
    }
    if (e->big_reply) {
        char *b = calloc(1, e->big_reply);
        vb_http_reply(c, 200, "application/octet-stream", b, e->big_reply, NULL);
        free(b);
        return;
    }
    char body[512];
    int n = snprintf(body, sizeof(body), "path=%s body=%zu", req->path, req->body_len);
    const char *extra =
        strcmp(req->path, "/closeme") == 0 ? "Connection: close\r\n" : "X-Extra: 1\r\n";
    vb_http_reply(c, 200, "text/plain", body, (size_t)n, extra);
}

static int setup(void **state)
{
    memset(&E, 0, sizeof(E));
    E.base = event_base_new();
    E.lfd = nt_listen(&E.port);
    return 0;
}

static int teardown(void **state)
{
    event_base_loop(E.base, EVLOOP_NONBLOCK);
    close(E.lfd);
    event_base_free(E.base);
    return 0;
}

/* Connect a raw client and serve its connection with LIM (NULL: defaults). */
static int open_conn(const vb_http_limits_t *lim, SSL_CTX *tls, nt_reader_t *r)
{
    int cfd = nt_connect(E.port);
    int sfd = nt_accept(E.lfd);
    if (E.small_sndbuf) {
        int sz = 4096;
        setsockopt(sfd, SOL_SOCKET, SO_SNDBUF, &sz, sizeof(sz));
    }
    assert_non_null(vb_http_conn_new(E.base, sfd, tls, lim, handler, on_close, &E));
    if (r != NULL) {
        nt_reader_init(r, cfd);
    }
    return cfd;
}

static void test_keep_alive_and_pipelining(void **state)
{
    nt_reader_t r;
    int fd = open_conn(NULL, NULL, &r);
    nt_write_str(fd, "GET /one HTTP/1.1\r\nHost: h\r\n\r\n");
    assert_int_equal(nt_read_until(E.base, &r, "path=/one body=0", 0, T_MS), 0);
    assert_non_null(strstr(r.buf, "HTTP/1.1 200 OK\r\n"));
    assert_non_null(strstr(r.buf, "Content-Length: 16\r\n"));
    assert_non_null(strstr(r.buf, "X-Extra: 1\r\n"));
    assert_null(strstr(r.buf, "Connection: close"));
    /* three pipelined in one write: answered in order */
    nt_write_str(fd, "POST /two HTTP/1.1\r\nHost: h\r\nContent-Length: 4\r\n\r\nabcd"
                     "GET /three HTTP/1.1\r\nHost: h\r\n\r\n"
                     "GET /four HTTP/1.1\r\nHost: h\r\nConnection: close\r\n\r\n");
    assert_int_equal(nt_read_until(E.base, &r, NULL, 0, T_MS), 0); /* EOF after /four */
    char *a = strstr(r.buf, "path=/two body=4");
    char *b = strstr(r.buf, "path=/three");
    char *c = strstr(r.buf, "path=/four");
    assert_true(a && b && c && a < b && b < c);
    assert_int_equal(nt_count(&r, "HTTP/1.1 200"), 4);
    assert_int_equal(nt_count(&r, "Connection: close"), 1);
    assert_int_equal(E.nreq, 4);
    assert_int_equal(nt_wait_flag(E.base, &E.closed, T_MS), 0);
    close(fd);
}

static void test_head_and_close_header(void **state)
{
    nt_reader_t r;
    int fd = open_conn(NULL, NULL, &r);
    nt_write_str(
        fd, "HEAD /h HTTP/1.1\r\nHost: h\r\n\r\n"
            "GET /closeme HTTP/1.1\r\nHost: h\r\n\r\nGET /never HTTP/1.1\r\nHost: h\r\n\r\n");
    assert_int_equal(nt_read_until(E.base, &r, NULL, 0, T_MS), 0); /* EOF after /closeme */
    assert_int_equal(nt_count(&r, "HTTP/1.1 200"), 2);
    assert_int_equal(nt_count(&r, "Content-Length: 14\r\n"), 1); /* HEAD: length, no body */
    assert_int_equal(nt_count(&r, "path=/h"), 0);
    assert_int_equal(nt_count(&r, "path=/closeme"), 1);
    assert_int_equal(nt_count(&r, "Connection: close"), 1); /* the handler's, not doubled */
    assert_int_equal(E.nreq, 2);
    close(fd);
}

/* Send REQ on a fresh connection; expect STATUS, then EOF. */
static void expect_status(const vb_http_limits_t *lim, const char *req, size_t len,
                          const char *status)
{
    nt_reader_t r;
    int fd = open_conn(lim, NULL, &r);
    nt_write(fd, req, len);
    assert_int_equal(nt_read_until(E.base, &r, NULL, 0, T_MS), 0);
    if (strncmp(r.buf, status, strlen(status)) != 0) {
        print_error("want %s got: %.200s\n", status, r.buf);
    }
    assert_int_equal(strncmp(r.buf, status, strlen(status)), 0);
    assert_non_null(strstr(r.buf, "Connection: close\r\n"));
    close(fd);
}

static void test_413_431(void **state)
{
    vb_http_limits_t lim = {.max_header_bytes = 1024, .max_body_bytes = 100};
    uint64_t big = VB_STAT_GET(http_too_large);
    const char *r1 = "POST / HTTP/1.1\r\nHost: h\r\nContent-Length: 101\r\n\r\n";
    expect_status(&lim, r1, strlen(r1), "HTTP/1.1 413 ");
    char r2[2048];
    int n = snprintf(r2, sizeof(r2), "GET / HTTP/1.1\r\nHost: h\r\nX: %01500d\r\n\r\n", 0);
    expect_status(&lim, r2, (size_t)n, "HTTP/1.1 431 ");
    const char *r3 =
        "POST / HTTP/1.1\r\nHost: h\r\nTransfer-Encoding: chunked\r\n\r\n"
        "40\r\n0123456789012345678901234567890123456789012345678901234567890123\r\n"
        "40\r\n";
    expect_status(&lim, r3, strlen(r3), "HTTP/1.1 413 ");
    assert_int_equal(VB_STAT_GET(http_too_large), big + 3);
    assert_int_equal(E.nreq, 0);
}

static void test_bad_framing_on_wire(void **state)
{
    uint64_t bad = VB_STAT_GET(http_bad_requests);
    const char *r1 = "POST / HTTP/1.1\r\nHost: h\r\nContent-Length: 3\r\n"
                     "Transfer-Encoding: chunked\r\n\r\n0\r\n\r\n";
    expect_status(NULL, r1, strlen(r1), "HTTP/1.1 400 ");
    const char *r2 = "GET / HTTP/1.1\r\n\r\n";
    expect_status(NULL, r2, strlen(r2), "HTTP/1.1 400 ");
    const char *r3 = "BREW /pot HTTP/1.1\r\nHost: h\r\n\r\n";
    expect_status(NULL, r3, strlen(r3), "HTTP/1.1 501 ");
    assert_int_equal(VB_STAT_GET(http_bad_requests), bad + 3);
    assert_int_equal(E.nreq, 0);
}

static void test_request_timeout(void **state)
{
    vb_http_limits_t lim = {.request_timeout_s = 1, .idle_timeout_s = 1};
    uint64_t before = VB_STAT_GET(http_timeouts);
    nt_reader_t r;
    int fd = open_conn(&lim, NULL, &r);
    nt_write_str(fd, "GET / HTTP/1.1\r\nHost: h\r\n"); /* never finished */
    assert_int_equal(nt_read_until(E.base, &r, NULL, 0, 2500), 0);
    assert_int_equal(strncmp(r.buf, "HTTP/1.1 408 ", 13), 0);
    assert_int_equal(VB_STAT_GET(http_timeouts), before + 1);
    assert_int_equal(nt_wait_flag(E.base, &E.closed, T_MS), 0);
    close(fd);
}

static void test_slow_body_timeout(void **state)
{
    vb_http_limits_t lim = {.request_timeout_s = 1};
    nt_reader_t r;
    int fd = open_conn(&lim, NULL, &r);
    nt_write_str(fd, "POST / HTTP/1.1\r\nHost: h\r\nContent-Length: 10\r\n\r\nabc");
    assert_int_equal(nt_read_until(E.base, &r, NULL, 0, 2500), 0);
    assert_int_equal(strncmp(r.buf, "HTTP/1.1 408 ", 13), 0);
    assert_int_equal(E.nreq, 0);
    close(fd);
}

static void test_idle_timeout(void **state)
{
    vb_http_limits_t lim = {.request_timeout_s = 5, .idle_timeout_s = 1};
    nt_reader_t r;
    int fd = open_conn(&lim, NULL, &r);
    nt_write_str(fd, "GET /a HTTP/1.1\r\nHost: h\r\n\r\n");
    assert_int_equal(nt_read_until(E.base, &r, NULL, 0, 2500), 0); /* EOF after idle */
    assert_int_equal(nt_count(&r, "HTTP/1.1 200"), 1);
    assert_int_equal(nt_count(&r, "408"), 0);
    assert_int_equal(nt_wait_flag(E.base, &E.closed, T_MS), 0);
    close(fd);
}

static void test_expect_continue(void **state)
{
    nt_reader_t r;
    int fd = open_conn(NULL, NULL, &r);
    nt_write_str(fd, "POST /up HTTP/1.1\r\nHost: h\r\nExpect: 100-continue\r\n"
                     "Content-Length: 5\r\n\r\n");
    assert_int_equal(nt_read_until(E.base, &r, "HTTP/1.1 100 Continue\r\n\r\n", 0, T_MS), 0);
    assert_int_equal(E.nreq, 0);
    nt_write_str(fd, "hello");
    assert_int_equal(nt_read_until(E.base, &r, "path=/up body=5", 0, T_MS), 0);
    assert_string_equal(E.last_body, "hello");
    close(fd);
}

static int cond_pending(void *arg)
{
    return E.pending != NULL;
}

static void test_async_reply(void **state)
{
    E.async = 1;
    nt_reader_t r;
    int fd = open_conn(NULL, NULL, &r);
    nt_write_str(fd,
                 "GET /slow HTTP/1.1\r\nHost: h\r\n\r\nGET /next HTTP/1.1\r\nHost: h\r\n\r\n");
    assert_int_equal(nt_wait(E.base, cond_pending, NULL, T_MS), 0);
    /* the pipelined request waits for the first answer */
    event_base_loop(E.base, EVLOOP_NONBLOCK);
    assert_int_equal(E.nreq, 1);
    assert_true(vb_http_conn_is_open(E.pending));
    vb_http_conn_t *c = E.pending;
    E.pending = NULL;
    vb_http_reply(c, 202, NULL, "later", 5, NULL);
    assert_int_equal(nt_wait(E.base, cond_pending, NULL, T_MS), 0);
    assert_string_equal(E.last_path, "/next");
    c = E.pending;
    E.pending = NULL;
    vb_http_reply(c, 204, NULL, NULL, 0, NULL);
    assert_int_equal(nt_read_until(E.base, &r, "HTTP/1.1 204", 0, T_MS), 0);
    char *a = strstr(r.buf, "HTTP/1.1 202 Accepted");
    assert_non_null(a);
    assert_non_null(strstr(a, "later"));
    close(fd);
}

static void test_peer_leaves_during_async(void **state)
{
    E.async = 1;
    nt_reader_t r;
    int fd = open_conn(NULL, NULL, &r);
    nt_write_str(fd, "GET /slow HTTP/1.1\r\nHost: h\r\n\r\n");
    assert_int_equal(nt_wait(E.base, cond_pending, NULL, T_MS), 0);
    /* Reply is pending: the conn stays valid whatever the peer does. */
    close(fd);
    event_base_loop(E.base, EVLOOP_NONBLOCK);
    assert_int_equal(E.closed, 0);
    vb_http_reply(E.pending, 200, NULL, "x", 1, NULL);
    assert_int_equal(nt_wait_flag(E.base, &E.closed, T_MS), 0);
    assert_int_equal(E.closed, 1);
}

static void test_detach(void **state)
{
    nt_reader_t r;
    int fd = open_conn(NULL, NULL, &r);
    nt_write_str(fd, "GET /detach HTTP/1.1\r\nHost: h\r\n\r\nEXTRA");
    assert_int_equal(nt_wait(E.base, cond_pending, NULL, 300) < 0 && E.detached != NULL, 1);
    struct evbuffer *in = bufferevent_get_input(E.detached);
    /* the bytes after the request stay for the new owner */
    assert_int_equal(evbuffer_get_length(in), 5);
    event_base_loop(E.base, EVLOOP_NONBLOCK);
    assert_int_equal(E.closed, 0); /* on_close is not called on detach */
    bufferevent_free(E.detached);
    close(fd);
}

static void test_slow_reader(void **state)
{
    /* The client pipelines requests for big answers and never reads: the
     * server must stop taking requests once its output is over the cap. */
    vb_http_limits_t lim = {.max_output_bytes = 64 * 1024, .idle_timeout_s = 1};
    E.big_reply = 256 * 1024;
    E.small_sndbuf = 1;
    int fd = open_conn(&lim, NULL, NULL);
    int sz = 4096;
    setsockopt(fd, SOL_SOCKET, SO_RCVBUF, &sz, sizeof(sz));
    for (int i = 0; i < 50; i++) {
        nt_write_str(fd, "GET /big HTTP/1.1\r\nHost: h\r\n\r\n");
    }
    /* the write timeout (idle_timeout_s) drops the stuck connection */
    assert_int_equal(nt_wait_flag(E.base, &E.closed, 4000), 0);
    assert_int_equal(E.nreq, 1); /* 256 KiB queued > 64 KiB cap: no second request */
    close(fd);
}

typedef struct {
    int port;
    const char *ca;
    char resp[4096];
    volatile int done;
    int ok;
} tls_client_t;

static void *tls_client_thread(void *arg)
{
    tls_client_t *t = arg;
    SSL_CTX *ctx = vb_tls_client_ctx(1, t->ca);
    SSL *ssl = SSL_new(ctx);
    vb_tls_client_prepare(ssl, "127.0.0.1");
    int fd = nt_connect(t->port);
    SSL_set_fd(ssl, fd);
    if (SSL_connect(ssl) == 1) {
        const char *req = "GET /secure HTTP/1.1\r\nHost: h\r\nConnection: close\r\n\r\n";
        SSL_write(ssl, req, (int)strlen(req));
        size_t len = 0;
        int n;
        while ((n = SSL_read(ssl, t->resp + len, (int)(sizeof(t->resp) - 1 - len))) > 0) {
            len += (size_t)n;
        }
        t->resp[len] = '\0';
        t->ok = 1;
    }
    SSL_free(ssl);
    SSL_CTX_free(ctx);
    close(fd);
    t->done = 1;
    return NULL;
}

static void test_tls(void **state)
{
    const char *cert, *key;
    char err[256];
    assert_int_equal(nt_make_cert(&cert, &key), 0);
    SSL_CTX *sctx = vb_tls_server_ctx(cert, key, err, sizeof(err));
    assert_non_null(sctx);
    tls_client_t t = {.port = E.port, .ca = cert};
    pthread_t th;
    pthread_create(&th, NULL, tls_client_thread, &t);
    int sfd = nt_accept(E.lfd);
    vb_http_conn_t *c = vb_http_conn_new(E.base, sfd, sctx, NULL, handler, on_close, &E);
    assert_true(vb_http_conn_is_tls(c));
    assert_int_equal(nt_wait_flag(E.base, &t.done, T_MS), 0);
    pthread_join(th, NULL);
    assert_true(t.ok);
    assert_non_null(strstr(t.resp, "HTTP/1.1 200 OK"));
    assert_non_null(strstr(t.resp, "path=/secure"));
    /* plain HTTP to the TLS port: a failed handshake, counted */
    uint64_t before = VB_STAT_GET(tls_handshake_errors);
    E.closed = 0;
    nt_reader_t r;
    int fd = open_conn(NULL, sctx, &r);
    nt_write_str(fd, "GET / HTTP/1.1\r\nHost: h\r\n\r\n");
    assert_int_equal(nt_wait_flag(E.base, &E.closed, T_MS), 0);
    assert_int_equal(VB_STAT_GET(tls_handshake_errors), before + 1);
    close(fd);
    assert_null(vb_tls_server_ctx("/nonexistent.pem", key, err, sizeof(err)));
    assert_non_null(strstr(err, "certificate"));
    SSL_CTX_free(sctx);
}

/* Everything the peer sends until it closes (3 s at most). */
static size_t recv_until_eof(int fd, char *buf, size_t cap)
{
    struct timeval tv = {3, 0};
    setsockopt(fd, SOL_SOCKET, SO_RCVTIMEO, &tv, sizeof(tv));
    size_t got = 0;
    ssize_t n;
    while (got < cap && (n = recv(fd, buf + got, cap - got, 0)) > 0) {
        got += (size_t)n;
    }
    assert_true(n == 0); /* EOF, not a reset or the timeout */
    return got;
}

/* Runs the loop until L holds WANT connections, for MS at most. */
static void loop_until_lingering(vb_linger_t *l, int want, int ms)
{
    for (int t = 0; t < ms && vb_linger_count(l) != want; t += 10) {
        event_base_loop(E.base, EVLOOP_NONBLOCK);
        usleep(10000);
    }
    assert_int_equal(vb_linger_count(l), want);
}

static void test_linger(void **state)
{
    vb_linger_t *l = vb_linger_new(E.base, 1);
    char buf[2048], junk[32768];
    memset(junk, 'x', sizeof(junk));
    int c1 = nt_connect(E.port), s1 = nt_accept(E.lfd);
    int c2 = nt_connect(E.port), s2 = nt_accept(E.lfd);
    vb_linger_busy(l, s1, "busy");
    vb_linger_busy(l, s2, "busy"); /* over the cap of one: closed at once */
    assert_int_equal(vb_linger_count(l), 1);
    size_t n = recv_until_eof(c2, buf, sizeof(buf));
    assert_true(n > 12 && memcmp(buf, "HTTP/1.1 503", 12) == 0);

    /* The answer and a FIN come at once; what the client still sends is read and
     * dropped, and the close waits for the client's. */
    n = recv_until_eof(c1, buf, sizeof(buf));
    assert_true(n > 12 && memcmp(buf, "HTTP/1.1 503", 12) == 0);
    for (int i = 0; i < 8; i++) {
        assert_int_equal(send(c1, junk, sizeof(junk), MSG_NOSIGNAL), (ssize_t)sizeof(junk));
        event_base_loop(E.base, EVLOOP_NONBLOCK);
    }
    loop_until_lingering(l, 1, 100);
    close(c1);
    loop_until_lingering(l, 0, 1000);

    /* A client that neither sends nor closes is let go after VB_LINGER_MS. */
    int c3 = nt_connect(E.port), s3 = nt_accept(E.lfd);
    vb_linger_busy(l, s3, "busy");
    loop_until_lingering(l, 1, 100);
    loop_until_lingering(l, 0, VB_LINGER_MS + 1000);
    n = recv_until_eof(c3, buf, sizeof(buf));
    assert_true(n > 12 && memcmp(buf, "HTTP/1.1 503", 12) == 0);
    close(c2);
    close(c3);
    vb_linger_free(l);
}

int main(void)
{
    signal(SIGPIPE, SIG_IGN); /* as every role does: a closed peer is an error code */
    const struct CMUnitTest tests[] = {
        cmocka_unit_test_setup_teardown(test_keep_alive_and_pipelining, setup, teardown),
        cmocka_unit_test_setup_teardown(test_head_and_close_header, setup, teardown),
        cmocka_unit_test_setup_teardown(test_413_431, setup, teardown),
        cmocka_unit_test_setup_teardown(test_bad_framing_on_wire, setup, teardown),
        cmocka_unit_test_setup_teardown(test_request_timeout, setup, teardown),
        cmocka_unit_test_setup_teardown(test_slow_body_timeout, setup, teardown),
        cmocka_unit_test_setup_teardown(test_idle_timeout, setup, teardown),
        cmocka_unit_test_setup_teardown(test_expect_continue, setup, teardown),
        cmocka_unit_test_setup_teardown(test_async_reply, setup, teardown),
        cmocka_unit_test_setup_teardown(test_peer_leaves_during_async, setup, teardown),
        cmocka_unit_test_setup_teardown(test_detach, setup, teardown),
        cmocka_unit_test_setup_teardown(test_slow_reader, setup, teardown),
        cmocka_unit_test_setup_teardown(test_tls, setup, teardown),
        cmocka_unit_test_setup_teardown(test_linger, setup, teardown),
    };
    return cmocka_run_group_tests(tests, NULL, NULL);
}
