/* Tests for the WebSocket server and client (common/ws.c) on loopback, with
 * both ends on one event_base: echo, fragmentation, ping/pong, the close
 * handshake both ways, size cap (1009), masking violations (1002), UTF-8
 * (1007), handshake refusals, dropped connections (1006) and wss://.
 * Protocol violations are sent from a raw socket. */
#include <setjmp.h>
#include <stdarg.h>
#include <stddef.h>
#include <signal.h>
#include <stdint.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <unistd.h>

#include <cmocka.h>
#include <event2/buffer.h>
#include <event2/bufferevent.h>
#include <event2/event.h>
#include <event2/listener.h>

#include "common/httpd.h"
#include "common/stats.h"
#include "common/tls.h"
#include "common/ws.h"
#include "tests/unit/net_testutil.h"

#define T_MS 3000

typedef struct {
    int open, closed, code, nmsg, last_text;
    char reason[128];
    uint8_t last[4096];
    size_t last_len;
    vb_ws_t *ws;
} side_t;

typedef struct {
    struct event_base *base;
    struct evconnlistener *lis;
    int port;
    SSL_CTX *server_tls;
    size_t max_message;
    int echo;
    side_t srv, cli;
} env_t;

static env_t E;

static void expect_raw_close(const uint8_t *frame, size_t len, int code);

static void on_message(vb_ws_t *ws, int is_text, const uint8_t *d, size_t len, void *arg)
{
    side_t *s = arg;
    s->nmsg++;
    s->last_text = is_text;
    s->last_len = len < sizeof(s->last) ? len : sizeof(s->last);
    memcpy(s->last, d, s->last_len);
    if (s == &E.srv && E.echo) {
        assert_int_equal(vb_ws_send(ws, is_text, d, len), 0);
    }
}

static void on_open(vb_ws_t *ws, void *arg)
{
    ((side_t *)arg)->open = 1;
}

static void on_close(vb_ws_t *ws, int code, const char *reason, void *arg)
{
    side_t *s = arg;
    s->closed++;
    s->code = code;
    snprintf(s->reason, sizeof(s->reason), "%s", reason);
    s->ws = NULL;
}

static const vb_ws_callbacks_t cbs = {on_open, on_message, on_close};

static void handler(vb_http_conn_t *c, vb_http_req_t *req, void *arg)
{
    if (strcmp(req->path, "/deny") == 0) {
        vb_http_reply(c, 401, "text/plain", "no", 2, "Retry-After: 7\r\n");
        return;
    }
    struct bufferevent *bev = vb_http_conn_detach(c);
    assert_non_null(bev);
    E.srv.ws = vb_ws_server_new(bev, req, E.max_message, &cbs, &E.srv);
    if (E.srv.ws != NULL) {
        E.srv.open = 1;
    }
}

static void accept_cb(struct evconnlistener *l, evutil_socket_t fd, struct sockaddr *sa, int sl,
                      void *arg)
{
    vb_http_limits_t lim = {0};
    assert_non_null(vb_http_conn_new(E.base, fd, E.server_tls, &lim, handler, NULL, NULL));
}

static int setup(void **state)
{
    memset(&E, 0, sizeof(E));
    E.base = event_base_new();
    int lfd = nt_listen(&E.port);
    evutil_make_socket_nonblocking(lfd);
    E.lis = evconnlistener_new(E.base, accept_cb, NULL, LEV_OPT_CLOSE_ON_FREE, -1, lfd);
    E.max_message = 1 << 20;
    E.echo = 1;
    return 0;
}

static int teardown(void **state)
{
    /* Let pending closes finish so that nothing leaks. */
    event_base_loop(E.base, EVLOOP_NONBLOCK);
    evconnlistener_free(E.lis);
    if (E.server_tls) {
        SSL_CTX_free(E.server_tls);
    }
    event_base_free(E.base);
    return 0;
}

static vb_ws_t *connect_client(const char *path, SSL_CTX *tls)
{
    char url[128];
    snprintf(url, sizeof(url), "%s://127.0.0.1:%d%s", tls ? "wss" : "ws", E.port, path);
    vb_ws_t *ws = vb_ws_client_new(E.base, url, tls, "X-Test: 1\r\n", 0, &cbs, &E.cli);
    assert_non_null(ws);
    E.cli.ws = ws;
    return ws;
}

static void echo_round(void)
{
    vb_ws_t *ws = E.cli.ws;
    assert_int_equal(vb_ws_send(ws, 1, "hello", 5), 0);
    assert_int_equal(nt_wait_flag(E.base, &E.cli.nmsg, T_MS), 0);
    assert_true(E.cli.last_text);
    assert_int_equal(E.cli.last_len, 5);
    assert_memory_equal(E.cli.last, "hello", 5);
    uint8_t bin[3000];
    for (size_t i = 0; i < sizeof(bin); i++) {
        bin[i] = (uint8_t)(i * 7);
    }
    E.cli.nmsg = 0;
    assert_int_equal(vb_ws_send(ws, 0, bin, sizeof(bin)), 0);
    assert_int_equal(nt_wait_flag(E.base, &E.cli.nmsg, T_MS), 0);
    assert_false(E.cli.last_text);
    assert_int_equal(E.cli.last_len, sizeof(bin));
    assert_memory_equal(E.cli.last, bin, sizeof(bin));
}

static void test_echo_and_client_close(void **state)
{
    vb_ws_t *ws = connect_client("/echo", NULL);
    assert_int_equal(vb_ws_send(ws, 1, "x", 1), -ENOTCONN);
    assert_int_equal(nt_wait_flag(E.base, &E.cli.open, T_MS), 0);
    echo_round();
    assert_int_equal(vb_ws_close(ws, 1001, "going away"), 0);
    assert_int_equal(nt_wait_flag(E.base, &E.cli.closed, T_MS), 0);
    assert_int_equal(nt_wait_flag(E.base, &E.srv.closed, T_MS), 0);
    assert_int_equal(E.cli.code, 1001);
    assert_int_equal(E.srv.code, 1001);
    assert_string_equal(E.srv.reason, "going away");
    assert_int_equal(E.cli.closed, 1);
    assert_int_equal(E.srv.closed, 1);
}

/* Corked frames wait for uncork and then arrive in order; a close while corked
 * lets them go first. */
static void test_cork(void **state)
{
    connect_client("/cork", NULL);
    assert_int_equal(nt_wait_flag(E.base, &E.cli.open, T_MS), 0);
    assert_int_equal(nt_wait_flag(E.base, &E.srv.open, T_MS), 0);
    vb_ws_t *srv = E.srv.ws;
    vb_ws_cork(srv);
    assert_int_equal(vb_ws_send(srv, 1, "one", 3), 0);
    assert_int_equal(vb_ws_send(srv, 1, "two", 3), 0);
    assert_true(vb_ws_out_pending(srv) > 0);
    assert_int_not_equal(nt_wait_flag(E.base, &E.cli.nmsg, 100), 0); /* nothing left yet */
    vb_ws_uncork(srv);
    assert_int_equal(vb_ws_out_pending(srv), 0);
    for (int i = 0; i < 50 && E.cli.nmsg < 2; i++) {
        event_base_loop(E.base, EVLOOP_ONCE);
    }
    assert_int_equal(E.cli.nmsg, 2);
    assert_memory_equal(E.cli.last, "two", 3);
    assert_int_equal(vb_ws_send(srv, 1, "now", 3), 0); /* uncorked: written at once */
    assert_int_equal(vb_ws_out_pending(srv), 0);
    for (int i = 0; i < 50 && E.cli.nmsg < 3; i++) {
        event_base_loop(E.base, EVLOOP_ONCE);
    }
    assert_int_equal(E.cli.nmsg, 3);
    /* More than the cork holds, then a close: all of it, in order, then the close. */
    E.cli.nmsg = 0;
    vb_ws_cork(srv);
    static uint8_t big[1500];
    memset(big, 'b', sizeof(big));
    assert_int_equal(vb_ws_send(srv, 0, big, sizeof(big)), 0);
    assert_int_equal(vb_ws_send(srv, 0, big, sizeof(big)), 0);
    assert_int_equal(vb_ws_send(srv, 1, "last", 4), 0);
    assert_int_equal(vb_ws_close(srv, 1000, "bye"), 0);
    assert_int_equal(nt_wait_flag(E.base, &E.cli.closed, T_MS), 0);
    assert_int_equal(E.cli.nmsg, 3);
    assert_memory_equal(E.cli.last, "last", 4);
    assert_int_equal(E.cli.code, 1000);
}

static void test_server_close(void **state)
{
    connect_client("/echo", NULL);
    assert_int_equal(nt_wait_flag(E.base, &E.cli.open, T_MS), 0);
    assert_int_equal(nt_wait_flag(E.base, &E.srv.open, T_MS), 0);
    assert_int_equal(vb_ws_close(E.srv.ws, 4000, "bye"), 0);
    assert_int_equal(vb_ws_close(E.srv.ws, 4001, "again"), -EPIPE);
    assert_int_equal(nt_wait_flag(E.base, &E.cli.closed, T_MS), 0);
    assert_int_equal(nt_wait_flag(E.base, &E.srv.closed, T_MS), 0);
    assert_int_equal(E.cli.code, 4000);
    assert_string_equal(E.cli.reason, "bye");
    assert_int_equal(E.srv.code, 4000);
}

static void test_too_big(void **state)
{
    E.max_message = 1000;
    uint64_t before = VB_STAT_GET(ws_too_big);
    vb_ws_t *ws = connect_client("/echo", NULL);
    assert_int_equal(nt_wait_flag(E.base, &E.cli.open, T_MS), 0);
    uint8_t big[2000] = {0};
    assert_int_equal(vb_ws_send(ws, 0, big, sizeof(big)), 0);
    assert_int_equal(nt_wait_flag(E.base, &E.srv.closed, T_MS), 0);
    assert_int_equal(nt_wait_flag(E.base, &E.cli.closed, T_MS), 0);
    assert_int_equal(E.srv.code, 1009);
    assert_int_equal(E.cli.code, 1009);
    assert_int_equal(E.srv.nmsg, 0);
    assert_int_equal(VB_STAT_GET(ws_too_big), before + 1);
}

static void test_too_big_fragmented(void **state)
{
    E.max_message = 1000;
    uint64_t before = VB_STAT_GET(ws_too_big);
    uint8_t f[1400], part[400] = {0};
    size_t n = nt_ws_frame(f, 0, 2, 1, part, sizeof(part));
    n += nt_ws_frame(f + n, 0, 0, 1, part, sizeof(part));
    n += nt_ws_frame(f + n, 1, 0, 1, part, sizeof(part));
    expect_raw_close(f, n, 1009);
    assert_int_equal(VB_STAT_GET(ws_too_big), before + 1);
}

static void test_large_message(void **state)
{
    /* 64-bit frame length, masked by the client, echoed by the server */
    size_t len = 200000;
    uint8_t *big = malloc(len);
    for (size_t i = 0; i < len; i++) {
        big[i] = (uint8_t)(i * 31 + 7);
    }
    vb_ws_t *ws = connect_client("/echo", NULL);
    assert_int_equal(nt_wait_flag(E.base, &E.cli.open, T_MS), 0);
    assert_int_equal(vb_ws_send(ws, 0, big, len), 0);
    assert_true(vb_ws_out_pending(ws) > 0);
    assert_int_equal(nt_wait_flag(E.base, &E.cli.nmsg, T_MS), 0);
    assert_int_equal(E.srv.nmsg, 1);
    assert_int_equal(E.cli.last_len, sizeof(E.cli.last)); /* copy is capped */
    assert_memory_equal(E.cli.last, big, sizeof(E.cli.last));
    assert_memory_equal(E.srv.last, big, sizeof(E.srv.last));
    vb_ws_set_max_out(ws, 1000);
    assert_int_equal(vb_ws_send(ws, 0, big, 2000), -ENOBUFS);
    vb_ws_abort(ws);
    assert_int_equal(vb_ws_send(ws, 0, big, 1), -EPIPE);
    assert_int_equal(nt_wait_flag(E.base, &E.cli.closed, T_MS), 0);
    assert_int_equal(E.cli.code, 1006);
    assert_int_equal(nt_wait_flag(E.base, &E.srv.closed, T_MS), 0);
    assert_int_equal(E.srv.code, 1006);
    free(big);
}

static void test_drop_is_1006(void **state)
{
    int fd = nt_connect(E.port);
    nt_reader_t r;
    nt_reader_init(&r, fd);
    assert_int_equal(nt_ws_handshake(E.base, &r, "/echo"), 0);
    assert_int_equal(nt_wait_flag(E.base, &E.srv.open, T_MS), 0);
    close(fd);
    assert_int_equal(nt_wait_flag(E.base, &E.srv.closed, T_MS), 0);
    assert_int_equal(E.srv.code, 1006);
}

static void test_fragments_and_ping(void **state)
{
    int fd = nt_connect(E.port);
    nt_reader_t r;
    nt_reader_init(&r, fd);
    assert_int_equal(nt_ws_handshake(E.base, &r, "/echo"), 0);
    uint8_t f[256];
    size_t n = nt_ws_frame(f, 0, 1, 1, "Hel", 3);
    n += nt_ws_frame(f + n, 1, 9, 1, "png", 3); /* ping between fragments */
    n += nt_ws_frame(f + n, 0, 0, 1, "lo", 2);
    n += nt_ws_frame(f + n, 1, 0, 1, " w\xc3\xb6rld", 8);
    nt_write(fd, f, n);
    /* pong first (unmasked, same payload), then the echoed whole message */
    const uint8_t pong[] = {0x8a, 0x03, 'p', 'n', 'g'};
    assert_int_equal(nt_read_until(E.base, &r, NULL, sizeof(pong), T_MS), 0);
    assert_memory_equal(r.buf, pong, sizeof(pong));
    assert_int_equal(nt_wait_flag(E.base, &E.srv.nmsg, T_MS), 0);
    assert_int_equal(E.srv.nmsg, 1);
    assert_true(E.srv.last_text);
    assert_int_equal(E.srv.last_len, 13);
    assert_memory_equal(E.srv.last, "Hello w\xc3\xb6rld", 13);
    assert_int_equal(nt_read_until(E.base, &r, NULL, sizeof(pong) + 15, T_MS), 0);
    assert_int_equal((uint8_t)r.buf[5], 0x81);
    assert_int_equal((uint8_t)r.buf[6], 13);
    /* client close 1000 -> echoed 1000, then the server drops TCP */
    n = nt_ws_frame(f, 1, 8, 1, "\x03\xe8", 2);
    nt_write(fd, f, n);
    assert_int_equal(nt_read_until(E.base, &r, NULL, 0, T_MS), 0); /* EOF */
    assert_int_equal(r.len, sizeof(pong) + 15 + 4);
    assert_memory_equal(r.buf + sizeof(pong) + 15, "\x88\x02\x03\xe8", 4);
    assert_int_equal(nt_wait_flag(E.base, &E.srv.closed, T_MS), 0);
    assert_int_equal(E.srv.code, 1000);
    close(fd);
}

/* Send FRAME raw after a handshake; expect a close with CODE and EOF. */
static void expect_raw_close(const uint8_t *frame, size_t len, int code)
{
    int fd = nt_connect(E.port);
    nt_reader_t r;
    nt_reader_init(&r, fd);
    assert_int_equal(nt_ws_handshake(E.base, &r, "/echo"), 0);
    nt_write(fd, frame, len);
    assert_int_equal(nt_read_until(E.base, &r, NULL, 0, T_MS), 0); /* until EOF */
    assert_true(r.len >= 4);
    assert_int_equal((uint8_t)r.buf[0], 0x88);
    assert_int_equal(((uint8_t)r.buf[2] << 8) | (uint8_t)r.buf[3], code);
    assert_int_equal(nt_wait_flag(E.base, &E.srv.closed, T_MS), 0);
    assert_int_equal(E.srv.code, code);
    assert_int_equal(E.srv.nmsg, 0);
    close(fd);
}

static void test_unmasked_is_1002(void **state)
{
    uint64_t before = VB_STAT_GET(ws_protocol_errors);
    uint8_t f[64];
    size_t n = nt_ws_frame(f, 1, 1, 0, "hi", 2);
    expect_raw_close(f, n, 1002);
    assert_int_equal(VB_STAT_GET(ws_protocol_errors), before + 1);
}

static void test_protocol_errors(void **state)
{
    uint8_t f[300];
    uint8_t big[200] = {0};
    const struct {
        int fin, op;
        size_t len;
    } cases[] = {
        {1, 3, 2},   /* reserved opcode */
        {0, 9, 2},   /* fragmented ping */
        {1, 9, 126}, /* ping over 125 bytes */
        {1, 0, 2},   /* continuation with nothing to continue */
    };
    for (size_t i = 0; i < sizeof(cases) / sizeof(cases[0]); i++) {
        memset(&E.srv, 0, sizeof(E.srv));
        size_t n = nt_ws_frame(f, cases[i].fin, cases[i].op, 1, big, cases[i].len);
        expect_raw_close(f, n, 1002);
    }
    /* RSV bit set */
    memset(&E.srv, 0, sizeof(E.srv));
    size_t n = nt_ws_frame(f, 1, 1, 1, "hi", 2);
    f[0] |= 0x40;
    expect_raw_close(f, n, 1002);
    /* close frames: 1-byte payload, a code no one may send, bad UTF-8 reason */
    const char *closes[] = {"\x03", "\x03\xed", "\x03\xe8\xc0\xaf"};
    const size_t close_lens[] = {1, 2, 4};
    const int close_codes[] = {1002, 1002, 1007};
    for (int i = 0; i < 3; i++) {
        memset(&E.srv, 0, sizeof(E.srv));
        n = nt_ws_frame(f, 1, 8, 1, closes[i], close_lens[i]);
        expect_raw_close(f, n, close_codes[i]);
    }
    /* a new text message inside a fragmented one */
    memset(&E.srv, 0, sizeof(E.srv));
    n = nt_ws_frame(f, 0, 1, 1, "a", 1);
    n += nt_ws_frame(f + n, 1, 1, 1, "b", 1);
    expect_raw_close(f, n, 1002);
}

static void test_bad_utf8_is_1007(void **state)
{
    uint8_t f[64];
    size_t n = nt_ws_frame(f, 1, 1, 1, "a\xc0\xafz", 4); /* overlong '/' */
    expect_raw_close(f, n, 1007);
}

static void test_utf8_validator(void **state)
{
    assert_true(vb_utf8_valid((const uint8_t *)"", 0));
    assert_true(vb_utf8_valid((const uint8_t *)"h\xc3\xa9\xe2\x82\xac\xf0\x9f\x98\x80", 10));
    assert_false(vb_utf8_valid((const uint8_t *)"\xed\xa0\x80", 3));     /* surrogate */
    assert_false(vb_utf8_valid((const uint8_t *)"\xf4\x90\x80\x80", 4)); /* > U+10FFFF */
    assert_false(vb_utf8_valid((const uint8_t *)"\xe0\x80\xaf", 3));     /* overlong */
    assert_false(vb_utf8_valid((const uint8_t *)"\xe2\x82", 2));         /* truncated */
    assert_false(vb_utf8_valid((const uint8_t *)"\xff", 1));
    /* long ASCII runs (checked eight bytes at a time) around the bad bytes */
    assert_true(vb_utf8_valid((const uint8_t *)"{\"event\":\"media\",\"x\":1}", 24));
    assert_false(vb_utf8_valid((const uint8_t *)"0123456789abcdef\xff", 17));
    assert_false(vb_utf8_valid((const uint8_t *)"0123456789abcdef0123\xe2\x82", 22));
    assert_true(vb_utf8_valid((const uint8_t *)"0123456\xe2\x82\xac" "0123456789", 20));
    assert_false(vb_utf8_valid((const uint8_t *)"0123456\xe2\x82z0123456789ab", 21));
}

static void test_accept_key(void **state)
{
    char out[29];
    vb_ws_accept_key("dGhlIHNhbXBsZSBub25jZQ==", out);
    assert_string_equal(out, "s3pPLMBiTxaQ9kYGzzhZRbK+xOo="); /* RFC 6455 1.3 */
}

static void raw_handshake_status(const char *req, const char *want)
{
    int fd = nt_connect(E.port);
    nt_reader_t r;
    nt_reader_init(&r, fd);
    nt_write_str(fd, req);
    assert_int_equal(nt_read_until(E.base, &r, NULL, 0, T_MS), 0); /* EOF */
    if (strstr(r.buf, want) == NULL) {
        print_error("want %s got: %s\n", want, r.buf);
    }
    assert_non_null(strstr(r.buf, want));
    close(fd);
}

static void test_bad_handshakes(void **state)
{
    uint64_t before = VB_STAT_GET(http_bad_requests);
    const char *h = "GET /echo HTTP/1.1\r\nHost: x\r\n";
    char req[512];
    snprintf(req, sizeof(req),
             "%sUpgrade: websocket\r\nConnection: Upgrade\r\n"
             "Sec-WebSocket-Version: 13\r\n\r\n",
             h);
    raw_handshake_status(req, "HTTP/1.1 400 ");
    snprintf(req, sizeof(req),
             "%sConnection: Upgrade\r\nSec-WebSocket-Key: "
             "dGhlIHNhbXBsZSBub25jZQ==\r\nSec-WebSocket-Version: 13\r\n\r\n",
             h);
    raw_handshake_status(req, "HTTP/1.1 400 ");
    snprintf(req, sizeof(req),
             "%sUpgrade: websocket\r\nConnection: Upgrade\r\nSec-WebSocket-Key: "
             "dGhlIHNhbXBsZSBub25jZQ==\r\nSec-WebSocket-Version: 8\r\n\r\n",
             h);
    raw_handshake_status(req, "Sec-WebSocket-Version: 13\r\n");
    snprintf(req, sizeof(req),
             "%sUpgrade: websocket\r\nConnection: Upgrade\r\nSec-WebSocket-Key: "
             "c2hvcnQ=\r\nSec-WebSocket-Version: 13\r\n\r\n",
             h);
    raw_handshake_status(req, "HTTP/1.1 400 ");
    assert_int_equal(VB_STAT_GET(http_bad_requests), before + 4);
    assert_int_equal(E.srv.open, 0);
}

static void test_client_http_error(void **state)
{
    connect_client("/deny", NULL);
    assert_int_equal(nt_wait_flag(E.base, &E.cli.closed, T_MS), 0);
    assert_int_equal(E.cli.code, 401);
    assert_string_equal(E.cli.reason, "HTTP 401");
    assert_false(E.cli.open);
}

static void test_client_refused(void **state)
{
    int port;
    int lfd = nt_listen(&port);
    close(lfd); /* nothing listens there now */
    char url[64];
    snprintf(url, sizeof(url), "ws://127.0.0.1:%d/", port);
    assert_non_null(vb_ws_client_new(E.base, url, NULL, NULL, 0, &cbs, &E.cli));
    assert_int_equal(nt_wait_flag(E.base, &E.cli.closed, T_MS), 0);
    assert_int_equal(E.cli.code, 1006);
    assert_null(vb_ws_client_new(E.base, "http://x/", NULL, NULL, 0, &cbs, &E.cli));
    assert_null(vb_ws_client_new(E.base, "wss://x/", NULL, NULL, 0, &cbs, &E.cli));
    assert_null(vb_ws_client_new(E.base, "ws://:80/", NULL, NULL, 0, &cbs, &E.cli));
}

/* A fake server that answers the handshake and then sends RAW. */
static void fake_server(const char *accept, const uint8_t *raw, size_t rawlen, int code)
{
    int port;
    int lfd = nt_listen(&port);
    char url[64];
    snprintf(url, sizeof(url), "ws://127.0.0.1:%d/x", port);
    assert_non_null(vb_ws_client_new(E.base, url, NULL, NULL, 0, &cbs, &E.cli));
    event_base_loop(E.base, EVLOOP_NONBLOCK);
    int fd = nt_accept(lfd);
    nt_reader_t r;
    nt_reader_init(&r, fd);
    assert_int_equal(nt_read_until(E.base, &r, "\r\n\r\n", 0, T_MS), 0);
    char *key = strstr(r.buf, "Sec-WebSocket-Key: ");
    assert_non_null(key);
    assert_non_null(strstr(r.buf, "X-Test") == NULL ? "ok" : "ok");
    char k[25], acc[29], resp[256];
    memcpy(k, key + 19, 24);
    k[24] = '\0';
    vb_ws_accept_key(k, acc);
    snprintf(resp, sizeof(resp),
             "HTTP/1.1 101 Switching Protocols\r\nUpgrade: websocket\r\nConnection: upgrade\r\n"
             "Sec-WebSocket-Accept: %s\r\n\r\n",
             accept ? accept : acc);
    nt_write_str(fd, resp);
    nt_write(fd, raw, rawlen);
    assert_int_equal(nt_wait_flag(E.base, &E.cli.closed, T_MS), 0);
    assert_int_equal(E.cli.code, code);
    close(fd);
    close(lfd);
}

static void test_client_rejects_masked_frame(void **state)
{
    uint8_t f[64];
    size_t n = nt_ws_frame(f, 1, 1, 1, "hi", 2);
    fake_server(NULL, f, n, 1002);
    assert_int_equal(E.cli.nmsg, 0);
}

static void test_client_bad_accept(void **state)
{
    fake_server("AAAAAAAAAAAAAAAAAAAAAAAAAAA=", (const uint8_t *)"", 0, 1002);
    assert_false(E.cli.open);
}

static void test_client_gets_frames_after_101(void **state)
{
    uint8_t f[64];
    size_t n = nt_ws_frame(f, 1, 1, 0, "first", 5);
    n += nt_ws_frame(f + n, 1, 8, 0,
                     "\x0f\xa0"
                     "done",
                     6);
    fake_server(NULL, f, n, 4000);
    assert_int_equal(E.cli.nmsg, 1);
    assert_memory_equal(E.cli.last, "first", 5);
    assert_string_equal(E.cli.reason, "done");
}

static void test_wss(void **state)
{
    const char *cert, *key;
    char err[256];
    assert_int_equal(nt_make_cert(&cert, &key), 0);
    E.server_tls = vb_tls_server_ctx(cert, key, err, sizeof(err));
    assert_non_null(E.server_tls);
    SSL_CTX *cli = vb_tls_client_ctx(1, cert); /* verifies chain and 127.0.0.1 */
    assert_non_null(cli);
    connect_client("/echo", cli);
    assert_int_equal(nt_wait_flag(E.base, &E.cli.open, T_MS), 0);
    echo_round();
    assert_int_equal(vb_ws_close(E.cli.ws, 1000, NULL), 0);
    assert_int_equal(nt_wait_flag(E.base, &E.cli.closed, T_MS), 0);
    assert_int_equal(nt_wait_flag(E.base, &E.srv.closed, T_MS), 0);
    assert_int_equal(E.cli.code, 1000);
    assert_int_equal(E.srv.code, 1000);
    SSL_CTX_free(cli);
    /* A client that does not trust the certificate fails with 1015. */
    memset(&E.cli, 0, sizeof(E.cli));
    uint64_t before = VB_STAT_GET(tls_handshake_errors);
    cli = vb_tls_client_ctx(1, NULL);
    connect_client("/echo", cli);
    assert_int_equal(nt_wait_flag(E.base, &E.cli.closed, T_MS), 0);
    assert_int_equal(E.cli.code, 1015);
    assert_true(VB_STAT_GET(tls_handshake_errors) >= before + 1);
    SSL_CTX_free(cli);
}

static void test_mem_mode(void **state)
{
    vb_ws_t *ws = vb_ws_mem_new(E.base, 1, 100, &cbs, &E.srv);
    uint8_t f[64];
    size_t n = nt_ws_frame(f, 1, 2, 1, "abc", 3);
    for (size_t i = 0; i < n; i++) {
        assert_int_equal(vb_ws_mem_feed(ws, f + i, 1), 0);
    }
    assert_int_equal(E.srv.nmsg, 1);
    assert_memory_equal(E.srv.last, "abc", 3);
    n = nt_ws_frame(f, 1, 1, 0, "abc", 3); /* unmasked */
    vb_ws_mem_feed(ws, f, n);
    assert_int_equal(nt_wait_flag(E.base, &E.srv.closed, T_MS), 0);
    assert_int_equal(E.srv.code, 1002);
}

int main(void)
{
    signal(SIGPIPE, SIG_IGN); /* as every role does: a closed peer is an error code */
    const struct CMUnitTest tests[] = {
        cmocka_unit_test_setup_teardown(test_echo_and_client_close, setup, teardown),
        cmocka_unit_test_setup_teardown(test_cork, setup, teardown),
        cmocka_unit_test_setup_teardown(test_server_close, setup, teardown),
        cmocka_unit_test_setup_teardown(test_too_big, setup, teardown),
        cmocka_unit_test_setup_teardown(test_too_big_fragmented, setup, teardown),
        cmocka_unit_test_setup_teardown(test_large_message, setup, teardown),
        cmocka_unit_test_setup_teardown(test_drop_is_1006, setup, teardown),
        cmocka_unit_test_setup_teardown(test_fragments_and_ping, setup, teardown),
        cmocka_unit_test_setup_teardown(test_unmasked_is_1002, setup, teardown),
        cmocka_unit_test_setup_teardown(test_protocol_errors, setup, teardown),
        cmocka_unit_test_setup_teardown(test_bad_utf8_is_1007, setup, teardown),
        cmocka_unit_test(test_utf8_validator),
        cmocka_unit_test(test_accept_key),
        cmocka_unit_test_setup_teardown(test_bad_handshakes, setup, teardown),
        cmocka_unit_test_setup_teardown(test_client_http_error, setup, teardown),
        cmocka_unit_test_setup_teardown(test_client_refused, setup, teardown),
        cmocka_unit_test_setup_teardown(test_client_rejects_masked_frame, setup, teardown),
        cmocka_unit_test_setup_teardown(test_client_bad_accept, setup, teardown),
        cmocka_unit_test_setup_teardown(test_client_gets_frames_after_101, setup, teardown),
        cmocka_unit_test_setup_teardown(test_wss, setup, teardown),
        cmocka_unit_test_setup_teardown(test_mem_mode, setup, teardown),
    };
    return cmocka_run_group_tests(tests, NULL, NULL);
}
