/* WebSocket over wslay: see ws.h. Server side in the media workers, client
 * side in the AI broker and voxbridge-callsim.
 *
 * wslay parses and builds frames; this file does the HTTP handshake (both
 * ways), moves bytes between wslay and the bufferevent, and turns every way a
 * connection can end into exactly one on_close, delivered from the loop (the
 * "kick" event) so that no callback ever frees the ws under our feet.
 *
 * wslay's send callback always takes all it is given, so wslay never stops in
 * the middle of a frame: the output cap is applied in vb_ws_send instead, and
 * a close frame can be written by hand when wslay reports a framing error
 * (it would otherwise send a close without a status code). */
#include "common/ws.h"

#include <errno.h>
#include <pthread.h>
#include <sys/socket.h>
#include <sys/uio.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <strings.h>

#include <event2/buffer.h>
#include <event2/bufferevent.h>
#include <event2/bufferevent_ssl.h>
#include <event2/event.h>
#include <openssl/err.h>
#include <openssl/evp.h>
#include <openssl/rand.h>
#include <openssl/sha.h>
#include <wslay/wslay.h>

#include "common/httpd.h"
#include "common/log.h"
#include "common/stats.h"
#include "common/tls.h"

enum {
    WS_CONNECTING, /* client: TCP/TLS connect in progress */
    WS_HANDSHAKE,  /* client: request sent, waiting for the 101 */
    WS_OPEN,
    WS_DONE, /* on_close pending from the loop */
};

#define HANDSHAKE_TIMEOUT_S 10
#define CLOSE_TIMEOUT_S 2
#define MAX_RESPONSE_HEAD 16384
#define READ_HIGH_WATERMARK (64 * 1024)
#define MAX_RESP_HEADERS 64
#define RAW_READ_BYTES 16384
#define DIRECT_FRAME_MAX 4096 /* client frames up to this size are masked on the stack */
#define CORK_BYTES 2048        /* frames held while corked (a media frame and a mark) */

static const char ws_guid[] = "258EAFA5-E914-47DA-95CA-C5AB0DC85B11";

struct vb_ws {
    struct event_base *base;
    struct bufferevent *bev; /* NULL in memory mode and once released */
    struct evbuffer *in, *out;
    struct event *rd;   /* plain TCP, open: our own read event (see raw_read_cb) */
    const uint8_t *raw; /* bytes recv()ed and not yet taken by wslay */
    size_t raw_len;
    int mem; /* memory mode: in/out are ours */
    struct evbuffer *mem_in, *mem_out;
    wslay_event_context_ptr ctx;
    vb_ws_callbacks_t cb;
    void *arg;
    size_t max_message, max_out;
    int is_server;
    int state;
    int in_recv;
    int local_close; /* we started the close: close_code is ours */
    int peer_close;  /* the peer started it */
    int close_code;
    char close_reason[124];
    int final_code;
    char final_reason[124];
    /* the message being received (wslay runs without buffering, so that a
     * message costs no allocation once the buffer has grown) */
    uint8_t *msg;
    size_t msg_len, msg_cap;
    int frame_ctrl; /* the frame being received is a control frame */
    int msg_fail;   /* the message went over the cap: drop the rest */
    struct event *kick;
    struct event *timer;
    /* vb_ws_cork: whole frames held back, to go out in one send at uncork */
    int corked;
    size_t cork_len;
    uint8_t cork[CORK_BYTES];
    /* client */
    char key[32];
    char *host_header, *request_target, *extra_headers;
    int resp_status;
    char *resp_head;
    vb_http_header_t resp_hdrs[MAX_RESP_HEADERS];
    int n_resp_hdrs;
};

static void pump(vb_ws_t *ws);
static int random_mask(uint8_t *buf, size_t len);
static void cork_flush(vb_ws_t *ws);

/* ---- helpers ------------------------------------------------------------------------- */

int vb_utf8_valid(const uint8_t *s, size_t len)
{
    size_t i = 0;
    while (i < len) {
        /* Media Streams messages are ASCII: eight bytes a step while they are */
        uint64_t w;
        if (len - i >= 8 && (memcpy(&w, s + i, 8), (w & 0x8080808080808080ull) == 0)) {
            i += 8;
            continue;
        }
        uint8_t c = s[i];
        if (c < 0x80) {
            i++;
            continue;
        }
        size_t n;
        uint8_t lo = 0x80, hi = 0xbf;
        if (c >= 0xc2 && c <= 0xdf) {
            n = 1;
        } else if (c >= 0xe0 && c <= 0xef) {
            n = 2;
            lo = c == 0xe0 ? 0xa0 : 0x80; /* overlong */
            hi = c == 0xed ? 0x9f : 0xbf; /* surrogates */
        } else if (c >= 0xf0 && c <= 0xf4) {
            n = 3;
            lo = c == 0xf0 ? 0x90 : 0x80;
            hi = c == 0xf4 ? 0x8f : 0xbf; /* > U+10FFFF */
        } else {
            return 0;
        }
        if (len - i <= n || s[i + 1] < lo || s[i + 1] > hi) {
            return 0;
        }
        for (size_t k = 2; k <= n; k++) {
            if ((s[i + k] & 0xc0) != 0x80) {
                return 0;
            }
        }
        i += n + 1;
    }
    return 1;
}

int vb_ws_accept_key(const char *key, char out[29])
{
    unsigned char md[SHA_DIGEST_LENGTH];
    char buf[128];
    int n = snprintf(buf, sizeof(buf), "%.64s%s", key, ws_guid);
    /* OpenSSL 3's one-shot digest allocates: it can fail when memory is short,
     * and then md holds whatever was on the stack */
    if (SHA1((const unsigned char *)buf, (size_t)n, md) == NULL) {
        out[0] = '\0';
        return -ENOMEM;
    }
    EVP_EncodeBlock((unsigned char *)out, md, SHA_DIGEST_LENGTH);
    return 0;
}

static void copy_reason(char *dst, const void *src, size_t len)
{
    if (len > 123) {
        len = 123;
    }
    memcpy(dst, src ? src : "", src ? len : 0);
    dst[src ? len : 0] = '\0';
}

/* ---- ending -------------------------------------------------------------------------- */

static void ws_free(vb_ws_t *ws)
{
    if (ws->rd != NULL) {
        event_free(ws->rd);
    }
    if (ws->bev != NULL) {
        bufferevent_free(ws->bev);
    }
    if (ws->mem) {
        evbuffer_free(ws->mem_in);
        evbuffer_free(ws->mem_out);
    }
    wslay_event_context_free(ws->ctx);
    event_free(ws->kick);
    event_free(ws->timer);
    free(ws->host_header);
    free(ws->request_target);
    free(ws->extra_headers);
    free(ws->resp_head);
    free(ws->msg);
    free(ws);
}

static void kick_cb(evutil_socket_t fd, short what, void *arg)
{
    vb_ws_t *ws = arg;
    if (ws->state == WS_DONE) {
        if (ws->cb.on_close != NULL) {
            ws->cb.on_close(ws, ws->final_code, ws->final_reason, ws->arg);
        }
        ws_free(ws);
    } else if (ws->state == WS_OPEN) {
        pump(ws);
    }
}

/* Let go of the socket: flushed first when FLUSH, else closed at once. */
static void drop_bev(vb_ws_t *ws, int flush)
{
    if (ws->rd != NULL) {
        event_free(ws->rd); /* before the socket is closed or handed on */
        ws->rd = NULL;
    }
    ws->raw_len = 0;
    if (flush) {
        cork_flush(ws);
    }
    ws->cork_len = 0;
    if (ws->bev == NULL) {
        return;
    }
    if (flush) {
        vb_bev_close_after_flush(ws->bev, CLOSE_TIMEOUT_S);
    } else {
        bufferevent_free(ws->bev);
    }
    ws->bev = NULL;
    ws->in = ws->out = NULL;
}

/* The connection is over: release the socket (after flushing what is queued)
 * and deliver on_close from the loop. FALLBACK applies when neither side sent
 * a close frame. */
static void finish(vb_ws_t *ws, int fallback, const char *reason)
{
    if (ws->state == WS_DONE) {
        return;
    }
    ws->state = WS_DONE;
    if (ws->local_close) {
        ws->final_code = ws->close_code;
        snprintf(ws->final_reason, sizeof(ws->final_reason), "%s", ws->close_reason);
    } else if (ws->peer_close) {
        ws->final_code = ws->close_code;
        snprintf(ws->final_reason, sizeof(ws->final_reason), "%s", ws->close_reason);
    } else {
        ws->final_code = fallback;
        snprintf(ws->final_reason, sizeof(ws->final_reason), "%s", reason ? reason : "");
    }
    drop_bev(ws, 1);
    evtimer_del(ws->timer);
    event_active(ws->kick, EV_TIMEOUT, 0);
}

static void count_close(int code)
{
    if (code == 1009) {
        VB_STAT_INC(ws_too_big);
    } else if (code == 1002 || code == 1007) {
        VB_STAT_INC(ws_protocol_errors);
    }
}

/* Start a close we decided on (protocol error, size, UTF-8) or were asked for. */
static void start_close(vb_ws_t *ws, int code, const char *reason, int fail)
{
    size_t rl = reason ? strlen(reason) : 0;
    if (rl > 123) {
        rl = 123;
    }
    if (wslay_event_queue_close(ws->ctx, (uint16_t)code, (const uint8_t *)reason, rl) != 0) {
        return; /* a close is already queued */
    }
    if (!ws->peer_close) {
        ws->local_close = 1;
        ws->close_code = code;
        copy_reason(ws->close_reason, reason, rl);
    }
    if (fail) {
        count_close(code);
        wslay_event_shutdown_read(ws->ctx);
    }
}

/* Write a close frame by hand (wslay's frame state is at a frame boundary,
 * see the top of the file) and drop the connection. */
static void fail_raw(vb_ws_t *ws, int code, const char *reason)
{
    uint8_t f[8] = {0x88, 0x02, (uint8_t)(code >> 8), (uint8_t)code};
    if (!ws->is_server) {
        uint8_t mask[4];
        random_mask(mask, sizeof(mask));
        f[1] = 0x82;
        f[2] = mask[0];
        f[3] = mask[1];
        f[4] = mask[2];
        f[5] = mask[3];
        f[6] = (uint8_t)((code >> 8) ^ mask[0]);
        f[7] = (uint8_t)((code & 0xff) ^ mask[1]);
    }
    if (ws->out != NULL && !wslay_event_get_close_sent(ws->ctx)) {
        cork_flush(ws);
        evbuffer_add(ws->out, f, ws->is_server ? 4 : 8);
    }
    count_close(code);
    if (!ws->peer_close && !ws->local_close) {
        ws->local_close = 1;
        ws->close_code = code;
        copy_reason(ws->close_reason, reason, strlen(reason));
    }
    finish(ws, code, reason);
}

/* A close wslay queued by itself (bad mask, opcode, size...) has gone out. */
static void note_close_sent(vb_ws_t *ws)
{
    if (ws->local_close || ws->peer_close || !wslay_event_get_close_sent(ws->ctx)) {
        return;
    }
    ws->local_close = 1;
    ws->close_code = wslay_event_get_status_code_sent(ws->ctx);
    snprintf(ws->close_reason, sizeof(ws->close_reason), "%s",
             ws->close_code == 1009   ? "message too big"
             : ws->close_code == 1007 ? "invalid UTF-8"
                                      : "protocol error");
    count_close(ws->close_code);
    vb_log(VB_LOG_INFO, "ws: closing with %d (%s)", ws->close_code, ws->close_reason);
}

static void close_timer_cb(evutil_socket_t fd, short what, void *arg)
{
    vb_ws_t *ws = arg;
    if (ws->state == WS_OPEN) {
        finish(ws, 1006, "close handshake timed out");
    } else {
        finish(ws, 1006, "connect or handshake timed out");
    }
}

/* After any I/O: is the connection over? */
static void check_done(vb_ws_t *ws)
{
    if (ws->state != WS_OPEN) {
        return;
    }
    note_close_sent(ws);
    int sent = wslay_event_get_close_sent(ws->ctx);
    int received = wslay_event_get_close_received(ws->ctx);
    if (sent && (received || !wslay_event_get_read_enabled(ws->ctx))) {
        finish(ws, 1006, NULL);
    } else if (sent && !evtimer_pending(ws->timer, NULL)) {
        struct timeval tv = {CLOSE_TIMEOUT_S, 0};
        evtimer_add(ws->timer, &tv);
    } else if (ws->out != NULL && evbuffer_get_length(ws->out) > ws->max_out + 65536) {
        /* Pongs piling up for a peer that does not read. */
        vb_log(VB_LOG_INFO, "ws: peer does not read, dropping");
        finish(ws, 1008, "peer does not read");
    }
}

/* ---- wslay glue ---------------------------------------------------------------------- */

static ssize_t recv_cb(wslay_event_context_ptr ctx, uint8_t *buf, size_t len, int flags,
                       void *user)
{
    vb_ws_t *ws = user;
    int n = 0;
    if (ws->in != NULL && evbuffer_get_length(ws->in) > 0) { /* NULL: aborted */
        n = evbuffer_remove(ws->in, buf, len);
    } else if (ws->raw_len > 0) {
        n = (int)(len < ws->raw_len ? len : ws->raw_len);
        memcpy(buf, ws->raw, (size_t)n);
        ws->raw += n;
        ws->raw_len -= (size_t)n;
    }
    if (n <= 0) {
        wslay_event_set_error(ctx, WSLAY_ERR_WOULDBLOCK);
        return -1;
    }
    return n;
}

static ssize_t send_cb(wslay_event_context_ptr ctx, const uint8_t *data, size_t len, int flags,
                       void *user)
{
    vb_ws_t *ws = user;
    cork_flush(ws);
    if (ws->out == NULL || evbuffer_add(ws->out, data, len) < 0) {
        wslay_event_set_error(ctx, WSLAY_ERR_CALLBACK_FAILURE);
        return -1;
    }
    return (ssize_t)len;
}

/* Masking keys come from the CSPRNG, as RFC 6455 asks, drawn 256 bytes at a
 * time: RAND_bytes per 20 ms frame cost three getpid() calls each (its fork
 * check), which showed in the load generator's profile. */
static _Thread_local uint8_t mask_pool[256];
static _Thread_local size_t mask_used = sizeof(mask_pool);
static pthread_once_t mask_once = PTHREAD_ONCE_INIT;

static void mask_pool_forget(void)
{
    mask_used = sizeof(mask_pool); /* a forked child must not reuse its parent's keys */
}

static void mask_pool_init(void)
{
    pthread_atfork(NULL, NULL, mask_pool_forget);
}

static int random_mask(uint8_t *buf, size_t len)
{
    pthread_once(&mask_once, mask_pool_init);
    for (size_t i = 0; i < len; i++) {
        if (mask_used == sizeof(mask_pool)) {
            if (RAND_bytes(mask_pool, (int)sizeof(mask_pool)) != 1) {
                return -1;
            }
            mask_used = 0;
        }
        buf[i] = mask_pool[mask_used++];
    }
    return 0;
}

static int genmask_cb(wslay_event_context_ptr ctx, uint8_t *buf, size_t len, void *user)
{
    return random_mask(buf, len);
}

static void on_frame_start_cb(wslay_event_context_ptr ctx,
                              const struct wslay_event_on_frame_recv_start_arg *a, void *user)
{
    vb_ws_t *ws = user;
    ws->frame_ctrl = (a->opcode & 0x08) != 0;
    if (a->opcode == WSLAY_CONNECTION_CLOSE && a->payload_length == 1) {
        /* half a status code: wslay would answer with an empty close */
        start_close(ws, 1002, "bad close frame", 1);
        return;
    }
    if (ws->frame_ctrl || ws->msg_fail) {
        return;
    }
    if (a->opcode != WSLAY_CONTINUATION_FRAME) {
        ws->msg_len = 0;
    }
    if (a->payload_length > ws->max_message - ws->msg_len) {
        ws->msg_fail = 1;
        start_close(ws, 1009, "message too big", 1);
        return;
    }
    size_t need = ws->msg_len + (size_t)a->payload_length;
    if (need > ws->msg_cap) {
        size_t cap = ws->msg_cap ? ws->msg_cap * 2 : 4096;
        cap = cap < need ? need : cap;
        cap = cap > ws->max_message ? ws->max_message : cap;
        ws->msg = realloc(ws->msg, cap);
        VB_ASSERT(ws->msg != NULL);
        ws->msg_cap = cap;
    }
}

static void on_frame_chunk_cb(wslay_event_context_ptr ctx,
                              const struct wslay_event_on_frame_recv_chunk_arg *a, void *user)
{
    vb_ws_t *ws = user;
    if (ws->frame_ctrl || ws->msg_fail || a->data_length == 0) {
        return;
    }
    VB_ASSERT(ws->msg_len + a->data_length <= ws->msg_cap);
    memcpy(ws->msg + ws->msg_len, a->data, a->data_length);
    ws->msg_len += a->data_length;
}

static void on_peer_close(vb_ws_t *ws, const struct wslay_event_on_msg_recv_arg *a)
{
    if (!ws->local_close && !ws->peer_close) {
        ws->peer_close = 1;
        ws->close_code = a->status_code ? a->status_code : 1005;
        copy_reason(ws->close_reason, a->msg_length > 2 ? a->msg + 2 : NULL,
                    a->msg_length > 2 ? a->msg_length - 2 : 0);
    }
}

static void on_msg_cb(wslay_event_context_ptr ctx, const struct wslay_event_on_msg_recv_arg *a,
                      void *user)
{
    vb_ws_t *ws = user;
    if (a->opcode == WSLAY_CONNECTION_CLOSE) {
        on_peer_close(ws, a);
        return;
    }
    if (a->opcode != WSLAY_TEXT_FRAME && a->opcode != WSLAY_BINARY_FRAME) {
        return; /* ping (answered by wslay) or pong */
    }
    size_t len = ws->msg_len;
    ws->msg_len = 0;
    int is_text = a->opcode == WSLAY_TEXT_FRAME;
    if (ws->msg_fail) {
        return;
    }
    if (is_text && !vb_utf8_valid(ws->msg, len)) {
        start_close(ws, 1007, "invalid UTF-8", 1);
        return;
    }
    if (ws->cb.on_message != NULL && ws->state == WS_OPEN) {
        ws->cb.on_message(ws, is_text, ws->msg ? ws->msg : (const uint8_t *)"", len, ws->arg);
    }
}

static int make_ctx(vb_ws_t *ws)
{
    struct wslay_event_callbacks cbs = {
        recv_cb, send_cb, genmask_cb, on_frame_start_cb, on_frame_chunk_cb, NULL, on_msg_cb};
    int r = ws->is_server ? wslay_event_context_server_init(&ws->ctx, &cbs, ws)
                          : wslay_event_context_client_init(&ws->ctx, &cbs, ws);
    if (r != 0) {
        return -ENOMEM;
    }
    wslay_event_config_set_max_recv_msg_length(ws->ctx, ws->max_message);
    wslay_event_config_set_no_buffering(ws->ctx, 1);
    return 0;
}

static void flush_out(vb_ws_t *ws)
{
    if (wslay_event_send(ws->ctx) != 0) {
        finish(ws, 1006, "write failed");
        return;
    }
    check_done(ws);
}

/* Read all complete frames, then send what they caused. */
static void pump(vb_ws_t *ws)
{
    if (ws->state != WS_OPEN) {
        return;
    }
    ws->in_recv = 1;
    int r = wslay_event_recv(ws->ctx);
    ws->in_recv = 0;
    if (ws->state != WS_OPEN) {
        return;
    }
    if (r == WSLAY_ERR_CALLBACK_FAILURE) {
        vb_log(VB_LOG_INFO, "ws: framing error from peer");
        fail_raw(ws, 1002, "protocol error");
        return;
    }
    if (r != 0) {
        fail_raw(ws, 1011, "internal error");
        return;
    }
    flush_out(ws);
}

/* ---- bufferevent callbacks (open connection) ----------------------------------------- */

static void read_cb(struct bufferevent *bev, void *arg)
{
    pump(arg);
}

static void event_cb(struct bufferevent *bev, short what, void *arg)
{
    vb_ws_t *ws = arg;
    if (what & (BEV_EVENT_EOF | BEV_EVENT_ERROR | BEV_EVENT_TIMEOUT)) {
        if (ws->state == WS_OPEN) {
            pump(ws); /* frames that came with the EOF */
        }
        drop_bev(ws, 0); /* nothing more can be sent */
        finish(ws, 1006, "connection dropped");
    }
}

/* On a plain-TCP socket the open connection is read with one recv() straight
 * into a buffer that wslay then takes from: the bufferevent's read path costs
 * an ioctl(FIONREAD), a readv and evbuffer bookkeeping per 20 ms frame. The
 * bufferevent keeps the writes (and TLS connections keep it for both). */
static _Thread_local uint8_t raw_buf[RAW_READ_BYTES];

static void raw_read_cb(evutil_socket_t fd, short what, void *arg)
{
    vb_ws_t *ws = arg;
    ssize_t n = recv(fd, raw_buf, sizeof(raw_buf), MSG_DONTWAIT);
    if (n < 0 && (errno == EAGAIN || errno == EWOULDBLOCK || errno == EINTR)) {
        return;
    }
    if (n > 0) {
        ws->raw = raw_buf;
        ws->raw_len = (size_t)n;
        pump(ws);
        ws->raw_len = 0; /* left only when wslay stopped reading (close) */
        return;
    }
    drop_bev(ws, 0); /* EOF or a reset: nothing more can be sent either */
    finish(ws, 1006, "connection dropped");
}

static void raw_read_start(vb_ws_t *ws)
{
    if (ws->bev == NULL || bufferevent_openssl_get_ssl(ws->bev) != NULL) {
        return;
    }
    ws->rd = event_new(ws->base, bufferevent_getfd(ws->bev), EV_READ | EV_PERSIST, raw_read_cb,
                       ws);
    if (ws->rd == NULL || event_add(ws->rd, NULL) < 0) {
        if (ws->rd != NULL) {
            event_free(ws->rd);
            ws->rd = NULL;
        }
        return; /* the bufferevent reads instead */
    }
    bufferevent_disable(ws->bev, EV_READ);
}

static vb_ws_t *ws_alloc(struct event_base *base, size_t max_message,
                         const vb_ws_callbacks_t *cb, void *arg)
{
    vb_ws_t *ws = calloc(1, sizeof(*ws));
    if (ws == NULL) {
        return NULL;
    }
    ws->base = base;
    ws->cb = *cb;
    ws->arg = arg;
    ws->max_message = max_message ? max_message : VB_WS_DEFAULT_MAX_MESSAGE;
    ws->max_out = VB_WS_DEFAULT_MAX_OUT;
    ws->kick = event_new(base, -1, 0, kick_cb, ws);
    ws->timer = evtimer_new(base, close_timer_cb, ws);
    VB_ASSERT(ws->kick != NULL && ws->timer != NULL);
    return ws;
}

static void attach_bev(vb_ws_t *ws, struct bufferevent *bev)
{
    ws->bev = bev;
    ws->in = bufferevent_get_input(bev);
    ws->out = bufferevent_get_output(bev);
    bufferevent_setwatermark(bev, EV_READ, 0, READ_HIGH_WATERMARK);
    bufferevent_setcb(bev, read_cb, NULL, event_cb, ws);
    bufferevent_enable(bev, EV_READ | EV_WRITE);
}

/* ---- server -------------------------------------------------------------------------- */

static int key_valid(const char *key)
{
    unsigned char raw[20];
    if (key == NULL || strlen(key) != 24 || key[22] != '=' || key[23] != '=' ||
        key[21] == '=') {
        return 0;
    }
    return EVP_DecodeBlock(raw, (const unsigned char *)key, 24) == 18;
}

/* 0, or the HTTP status to refuse the handshake with. */
static int check_handshake(const vb_http_req_t *req)
{
    const char *ver = vb_http_header(req, "Sec-WebSocket-Version");
    if (strcmp(req->method, "GET") != 0 || req->version_minor != 1 ||
        !vb_http_header_has_token(req, "Upgrade", "websocket") ||
        !vb_http_header_has_token(req, "Connection", "upgrade") ||
        !key_valid(vb_http_header(req, "Sec-WebSocket-Key")) || ver == NULL) {
        return 400;
    }
    return strcmp(ver, "13") == 0 ? 0 : 426;
}

static void refuse(struct bufferevent *bev, int status)
{
    struct evbuffer *out = bufferevent_get_output(bev);
    const char *text = vb_http_status_text(status);
    evbuffer_add_printf(out,
                        "HTTP/1.1 %d %s\r\nContent-Type: text/plain\r\nContent-Length: %zu\r\n"
                        "%sConnection: close\r\n\r\n%s\n",
                        status, text, strlen(text) + 1,
                        status == 426 ? "Sec-WebSocket-Version: 13\r\n" : "", text);
    VB_STAT_INC(http_bad_requests);
    vb_bev_close_after_flush(bev, CLOSE_TIMEOUT_S);
}

vb_ws_t *vb_ws_server_new(struct bufferevent *bev, const vb_http_req_t *req, size_t max_message,
                          const vb_ws_callbacks_t *cb, void *arg)
{
    int status = check_handshake(req);
    if (status != 0) {
        vb_log(VB_LOG_INFO, "ws: bad handshake for %s: %d", req->path, status);
        refuse(bev, status);
        errno = EINVAL;
        return NULL;
    }
    vb_ws_t *ws = ws_alloc(bufferevent_get_base(bev), max_message, cb, arg);
    if (ws == NULL) {
        refuse(bev, 503);
        errno = ENOMEM;
        return NULL;
    }
    ws->is_server = 1;
    char accept[29];
    if (make_ctx(ws) < 0 ||
        vb_ws_accept_key(vb_http_header(req, "Sec-WebSocket-Key"), accept) < 0) {
        ws_free(ws);
        refuse(bev, 503);
        errno = ENOMEM;
        return NULL;
    }
    attach_bev(ws, bev);
    raw_read_start(ws);
    evbuffer_add_printf(ws->out,
                        "HTTP/1.1 101 Switching Protocols\r\nUpgrade: websocket\r\n"
                        "Connection: Upgrade\r\nSec-WebSocket-Accept: %s\r\n\r\n",
                        accept);
    ws->state = WS_OPEN;
    if (evbuffer_get_length(ws->in) > 0) {
        event_active(ws->kick, EV_TIMEOUT, 0);
    }
    return ws;
}

vb_ws_t *vb_ws_accept(vb_http_conn_t *c, const vb_http_req_t *req, size_t max_message,
                      const vb_ws_callbacks_t *cb, void *arg)
{
    struct bufferevent *bev = vb_http_conn_detach(c);
    if (bev == NULL) {
        errno = EPIPE;
        return NULL;
    }
    return vb_ws_server_new(bev, req, max_message, cb, arg);
}

/* ---- client -------------------------------------------------------------------------- */

typedef struct {
    int tls;
    char host[256];
    int port;
    const char *target;
} ws_url_t;

static int parse_url(const char *url, ws_url_t *u)
{
    const char *p;
    if (strncasecmp(url, "ws://", 5) == 0) {
        p = url + 5;
        u->tls = 0;
        u->port = 80;
    } else if (strncasecmp(url, "wss://", 6) == 0) {
        p = url + 6;
        u->tls = 1;
        u->port = 443;
    } else {
        return -EINVAL;
    }
    size_t hl;
    const char *after;
    if (*p == '[') {
        const char *e = strchr(p, ']');
        if (e == NULL) {
            return -EINVAL;
        }
        hl = (size_t)(e - p - 1);
        p++;
        after = e + 1;
    } else {
        hl = strcspn(p, ":/?#");
        after = p + hl;
    }
    if (hl == 0 || hl >= sizeof(u->host)) {
        return -EINVAL;
    }
    memcpy(u->host, p, hl);
    u->host[hl] = '\0';
    if (*after == ':') {
        char *end;
        long port = strtol(after + 1, &end, 10);
        if (end == after + 1 || port < 1 || port > 65535) {
            return -EINVAL;
        }
        u->port = (int)port;
        after = end;
    }
    if (*after != '\0' && *after != '/' && *after != '?') {
        return -EINVAL;
    }
    u->target = after;
    return 0;
}

static char *xstrdup(const char *s)
{
    char *d = strdup(s);
    VB_ASSERT(d != NULL);
    return d;
}

static void client_setup(vb_ws_t *ws, const ws_url_t *u, const char *extra)
{
    char buf[300];
    int v6 = strchr(u->host, ':') != NULL;
    int dflt = u->port == (u->tls ? 443 : 80);
    if (dflt) {
        snprintf(buf, sizeof(buf), v6 ? "[%s]" : "%s", u->host);
    } else {
        snprintf(buf, sizeof(buf), v6 ? "[%s]:%d" : "%s:%d", u->host, u->port);
    }
    ws->host_header = xstrdup(buf);
    if (u->target[0] == '/') {
        ws->request_target = xstrdup(u->target);
    } else {
        snprintf(buf, sizeof(buf), "/%s", u->target);
        ws->request_target = xstrdup(buf);
    }
    ws->extra_headers = xstrdup(extra ? extra : "");
    unsigned char raw[16];
    RAND_bytes(raw, sizeof(raw));
    EVP_EncodeBlock((unsigned char *)ws->key, raw, sizeof(raw));
}

static void send_handshake(vb_ws_t *ws)
{
    struct evbuffer *out = bufferevent_get_output(ws->bev);
    evbuffer_add_printf(out,
                        "GET %s HTTP/1.1\r\nHost: %s\r\nUpgrade: websocket\r\n"
                        "Connection: Upgrade\r\nSec-WebSocket-Key: %s\r\n"
                        "Sec-WebSocket-Version: 13\r\n%s\r\n",
                        ws->request_target, ws->host_header, ws->key, ws->extra_headers);
    ws->state = WS_HANDSHAKE;
}

const char *vb_ws_response_header(const vb_ws_t *ws, const char *name)
{
    for (int i = 0; i < ws->n_resp_hdrs; i++) {
        if (strcasecmp(ws->resp_hdrs[i].name, name) == 0) {
            return ws->resp_hdrs[i].value;
        }
    }
    return NULL;
}

int vb_ws_response_status(const vb_ws_t *ws)
{
    return ws->resp_status;
}

static int resp_has_token(const vb_ws_t *ws, const char *name, const char *token)
{
    vb_http_req_t fake = {.headers = (vb_http_header_t *)ws->resp_hdrs,
                          .n_headers = ws->n_resp_hdrs};
    return vb_http_header_has_token(&fake, name, token);
}

/* Split the response head in ws->resp_head into status and headers. */
static int parse_response_head(vb_ws_t *ws)
{
    char *save = NULL;
    char *line = strtok_r(ws->resp_head, "\r\n", &save);
    int minor, status;
    char sp;
    if (line == NULL || sscanf(line, "HTTP/1.%d %3d%c", &minor, &status, &sp) < 2 ||
        status < 100 || status > 999) {
        return -1;
    }
    ws->resp_status = status;
    while ((line = strtok_r(NULL, "\r\n", &save)) != NULL &&
           ws->n_resp_hdrs < MAX_RESP_HEADERS) {
        char *colon = strchr(line, ':');
        if (colon == NULL) {
            continue;
        }
        *colon = '\0';
        char *v = colon + 1;
        while (*v == ' ' || *v == '\t') {
            v++;
        }
        size_t vl = strlen(v);
        while (vl > 0 && (v[vl - 1] == ' ' || v[vl - 1] == '\t')) {
            v[--vl] = '\0';
        }
        ws->resp_hdrs[ws->n_resp_hdrs].name = line;
        ws->resp_hdrs[ws->n_resp_hdrs].value = v;
        ws->n_resp_hdrs++;
    }
    return 0;
}

/* The 101 arrived and checks out: switch to frames. */
static void client_open(vb_ws_t *ws)
{
    if (make_ctx(ws) < 0) {
        finish(ws, 1011, "out of memory");
        return;
    }
    ws->state = WS_OPEN;
    evtimer_del(ws->timer);
    bufferevent_setcb(ws->bev, read_cb, NULL, event_cb, ws);
    raw_read_start(ws);
    if (ws->cb.on_open != NULL) {
        ws->cb.on_open(ws, ws->arg);
    }
    if (ws->state == WS_OPEN) {
        pump(ws); /* frames that came right behind the 101 */
    }
}

static void check_response(vb_ws_t *ws)
{
    char expect[29], buf[32];
    if (parse_response_head(ws) < 0) {
        finish(ws, 1002, "malformed handshake response");
        return;
    }
    if (ws->resp_status != 101) {
        snprintf(buf, sizeof(buf), "HTTP %d", ws->resp_status);
        finish(ws, ws->resp_status, buf);
        return;
    }
    if (vb_ws_accept_key(ws->key, expect) < 0) {
        finish(ws, 1011, "out of memory checking the handshake");
        return;
    }
    const char *acc = vb_ws_response_header(ws, "Sec-WebSocket-Accept");
    /* We offer no extension, so the server may not pick one (RFC 6455 4.1). */
    if (acc == NULL || strcmp(acc, expect) != 0 ||
        !resp_has_token(ws, "Upgrade", "websocket") ||
        !resp_has_token(ws, "Connection", "upgrade") ||
        vb_ws_response_header(ws, "Sec-WebSocket-Extensions") != NULL) {
        VB_STAT_INC(ws_protocol_errors);
        finish(ws, 1002, "bad handshake response");
        return;
    }
    client_open(ws);
}

static void handshake_read_cb(struct bufferevent *bev, void *arg)
{
    vb_ws_t *ws = arg;
    struct evbuffer *in = bufferevent_get_input(bev);
    struct evbuffer_ptr end = evbuffer_search(in, "\r\n\r\n", 4, NULL);
    if (end.pos < 0) {
        if (evbuffer_get_length(in) > MAX_RESPONSE_HEAD) {
            finish(ws, 1002, "handshake response too long");
        }
        return;
    }
    size_t n = (size_t)end.pos + 4;
    ws->resp_head = malloc(n + 1);
    VB_ASSERT(ws->resp_head != NULL);
    evbuffer_remove(in, ws->resp_head, n);
    ws->resp_head[n] = '\0';
    check_response(ws);
}

static void connect_event_cb(struct bufferevent *bev, short what, void *arg)
{
    vb_ws_t *ws = arg;
    if (what & BEV_EVENT_CONNECTED) {
        vb_socket_nodelay(bufferevent_getfd(bev));
        send_handshake(ws);
        return;
    }
    int tls_failed = bufferevent_openssl_get_ssl(bev) != NULL && ws->state == WS_CONNECTING &&
                     bufferevent_get_openssl_error(bev) != 0;
    drop_bev(ws, 0);
    if (tls_failed) {
        VB_STAT_INC(tls_handshake_errors);
        finish(ws, 1015, "TLS handshake failed");
    } else {
        finish(ws, 1006, ws->state == WS_CONNECTING ? "connect failed" : "connection dropped");
    }
}

static struct bufferevent *client_bev(vb_ws_t *ws, const ws_url_t *u, SSL_CTX *tls)
{
    if (!u->tls) {
        return bufferevent_socket_new(ws->base, -1, BEV_OPT_CLOSE_ON_FREE);
    }
    SSL *ssl = SSL_new(tls);
    if (ssl == NULL || vb_tls_client_prepare(ssl, u->host) < 0) {
        SSL_free(ssl);
        return NULL;
    }
    struct bufferevent *bev = bufferevent_openssl_socket_new(
        ws->base, -1, ssl, BUFFEREVENT_SSL_CONNECTING, BEV_OPT_CLOSE_ON_FREE);
    if (bev == NULL) {
        SSL_free(ssl);
        return NULL;
    }
    bufferevent_openssl_set_allow_dirty_shutdown(bev, 1);
    return bev;
}

vb_ws_t *vb_ws_client_new(struct event_base *base, const char *url, SSL_CTX *tls,
                          const char *extra_headers, size_t max_message,
                          const vb_ws_callbacks_t *cb, void *arg)
{
    ws_url_t u;
    if (parse_url(url, &u) < 0 || (u.tls && tls == NULL)) {
        errno = EINVAL;
        return NULL;
    }
    vb_ws_t *ws = ws_alloc(base, max_message, cb, arg);
    VB_ASSERT(ws != NULL);
    client_setup(ws, &u, extra_headers);
    struct bufferevent *bev = client_bev(ws, &u, tls);
    if (bev == NULL) {
        ws_free(ws);
        errno = ENOMEM;
        return NULL;
    }
    ws->bev = bev;
    ws->in = bufferevent_get_input(bev);
    ws->out = bufferevent_get_output(bev);
    bufferevent_setwatermark(bev, EV_READ, 0, READ_HIGH_WATERMARK);
    bufferevent_setcb(bev, handshake_read_cb, NULL, connect_event_cb, ws);
    bufferevent_enable(bev, EV_READ | EV_WRITE);
    struct timeval tv = {HANDSHAKE_TIMEOUT_S, 0};
    evtimer_add(ws->timer, &tv);
    ws->state = WS_CONNECTING;
    if (bufferevent_socket_connect_hostname(bev, NULL, AF_UNSPEC, u.host, u.port) < 0 &&
        ws->state == WS_CONNECTING) {
        drop_bev(ws, 0);
        finish(ws, 1006, "connect failed");
    }
    return ws;
}

/* ---- memory mode (tests, fuzzing) ---------------------------------------------------- */

vb_ws_t *vb_ws_mem_new(struct event_base *base, int is_server, size_t max_message,
                       const vb_ws_callbacks_t *cb, void *arg)
{
    vb_ws_t *ws = ws_alloc(base, max_message, cb, arg);
    VB_ASSERT(ws != NULL);
    ws->mem = 1;
    ws->is_server = is_server;
    ws->in = ws->mem_in = evbuffer_new();
    ws->out = ws->mem_out = evbuffer_new();
    VB_ASSERT(ws->in != NULL && ws->out != NULL && make_ctx(ws) == 0);
    ws->state = WS_OPEN;
    return ws;
}

int vb_ws_mem_feed(vb_ws_t *ws, const uint8_t *data, size_t len)
{
    if (ws->state != WS_OPEN) {
        return -EPIPE;
    }
    evbuffer_add(ws->mem_in, data, len);
    pump(ws);
    evbuffer_drain(ws->mem_out, evbuffer_get_length(ws->mem_out));
    return 0;
}

/* ---- public -------------------------------------------------------------------------- */

/* A plain-TCP socket with nothing queued takes a frame with one sendmsg():
 * going through the bufferevent instead costs an epoll_ctl pair and an extra
 * wake-up per 20 ms frame. */
static int can_write_now(const vb_ws_t *ws)
{
    return !ws->mem && ws->bev != NULL && bufferevent_openssl_get_ssl(ws->bev) == NULL &&
           evbuffer_get_length(ws->out) == 0;
}

/* Writes what the socket takes of IOV now (when it can) and queues the rest
 * behind, so the order of bytes is kept. */
static void write_or_queue(vb_ws_t *ws, const struct iovec *iov, int n)
{
    size_t done = 0;
    if (can_write_now(ws)) {
        struct msghdr mh = {.msg_iov = (struct iovec *)iov, .msg_iovlen = (size_t)n};
        ssize_t w = sendmsg(bufferevent_getfd(ws->bev), &mh, MSG_NOSIGNAL | MSG_DONTWAIT);
        done = w > 0 ? (size_t)w : 0;
    }
    for (int i = 0; i < n && ws->out != NULL; i++) {
        size_t skip = done < iov[i].iov_len ? done : iov[i].iov_len;
        done -= skip;
        evbuffer_add(ws->out, (const uint8_t *)iov[i].iov_base + skip, iov[i].iov_len - skip);
    }
}

/* Frames held by vb_ws_cork go out (or are queued) now. Everything that adds
 * to the output buffer calls this first. */
static void cork_flush(vb_ws_t *ws)
{
    if (ws->cork_len == 0) {
        return;
    }
    struct iovec iov[1] = {{ws->cork, ws->cork_len}};
    ws->cork_len = 0;
    write_or_queue(ws, iov, 1);
}

/* Header H (N bytes) and payload: held while corked and there is room (only
 * when nothing is queued, so they cannot overtake it), else written with
 * whatever the cork held. */
static void queue_frame(vb_ws_t *ws, const uint8_t *h, size_t n, const uint8_t *data, size_t len)
{
    if (ws->corked && can_write_now(ws) && ws->cork_len + n + len <= sizeof(ws->cork)) {
        memcpy(ws->cork + ws->cork_len, h, n);
        memcpy(ws->cork + ws->cork_len + n, data, len);
        ws->cork_len += n + len;
        return;
    }
    struct iovec iov[3] = {{ws->cork, ws->cork_len}, {(void *)h, n}, {(void *)data, len}};
    ws->cork_len = 0;
    write_or_queue(ws, iov, 3);
}

/* Client payload bytes, masked; AT is the offset of SRC in the payload. */
static void mask_into(uint8_t *dst, const uint8_t *src, size_t len, const uint8_t mask[4],
                      size_t at)
{
    for (size_t j = 0; j < len; j++) {
        dst[j] = src[j] ^ mask[(at + j) & 3];
    }
}

/* Write one whole data frame straight into the output buffer (allowed when
 * wslay has nothing queued, so frames stay in order): no allocation. */
static void send_direct(vb_ws_t *ws, int opcode, const uint8_t *data, size_t len)
{
    uint8_t h[14], mask[4];
    size_t n = 0;
    uint8_t mbit = ws->is_server ? 0 : 0x80;
    h[n++] = (uint8_t)(0x80 | opcode);
    if (len < 126) {
        h[n++] = (uint8_t)(mbit | len);
    } else if (len < 65536) {
        h[n++] = mbit | 126;
        h[n++] = (uint8_t)(len >> 8);
        h[n++] = (uint8_t)len;
    } else {
        h[n++] = mbit | 127;
        for (int i = 7; i >= 0; i--) {
            h[n++] = (uint8_t)((uint64_t)len >> (8 * i));
        }
    }
    if (ws->is_server) {
        queue_frame(ws, h, n, data, len);
        return;
    }
    random_mask(mask, sizeof(mask));
    memcpy(h + n, mask, 4);
    n += 4;
    if (len <= DIRECT_FRAME_MAX) {
        uint8_t body[DIRECT_FRAME_MAX];
        mask_into(body, data, len, mask, 0);
        queue_frame(ws, h, n, body, len);
        return;
    }
    cork_flush(ws);
    evbuffer_add(ws->out, h, n);
    struct evbuffer_iovec v[2];
    int nv = evbuffer_reserve_space(ws->out, (ev_ssize_t)len, v, 2);
    VB_ASSERT(nv > 0 || len == 0);
    size_t done = 0;
    for (int i = 0; i < nv && done < len; i++) {
        size_t k = len - done < v[i].iov_len ? len - done : v[i].iov_len;
        mask_into(v[i].iov_base, data + done, k, mask, done);
        done += k;
        v[i].iov_len = k;
    }
    evbuffer_commit_space(ws->out, v, nv);
}

int vb_ws_send(vb_ws_t *ws, int is_text, const void *data, size_t len)
{
    if (ws->state == WS_CONNECTING || ws->state == WS_HANDSHAKE) {
        return -ENOTCONN;
    }
    if (ws->state != WS_OPEN || !wslay_event_get_write_enabled(ws->ctx)) {
        return -EPIPE;
    }
    if (vb_ws_out_pending(ws) + len > ws->max_out) {
        return -ENOBUFS;
    }
    int opcode = is_text ? WSLAY_TEXT_FRAME : WSLAY_BINARY_FRAME;
    if (!wslay_event_want_write(ws->ctx) && !ws->local_close && !ws->peer_close) {
        send_direct(ws, opcode, data, len);
        return 0;
    }
    struct wslay_event_msg m = {(uint8_t)opcode, data, len};
    int r = wslay_event_queue_msg(ws->ctx, &m);
    if (r == WSLAY_ERR_NO_MORE_MSG) {
        return -EPIPE;
    }
    if (r != 0) {
        return r == WSLAY_ERR_NOMEM ? -ENOMEM : -EINVAL;
    }
    if (!ws->in_recv) {
        flush_out(ws);
    }
    return 0;
}

int vb_ws_ping(vb_ws_t *ws, const void *data, size_t len)
{
    if (ws->state != WS_OPEN) {
        return ws->state == WS_DONE ? -EPIPE : -ENOTCONN;
    }
    struct wslay_event_msg m = {WSLAY_PING, data, len};
    int r = wslay_event_queue_msg(ws->ctx, &m);
    if (r != 0) {
        return r == WSLAY_ERR_INVALID_ARGUMENT ? -EINVAL : -EPIPE;
    }
    if (!ws->in_recv) {
        flush_out(ws);
    }
    return 0;
}

int vb_ws_close(vb_ws_t *ws, int code, const char *reason)
{
    if (ws->state == WS_DONE) {
        return -EPIPE;
    }
    if (ws->state != WS_OPEN) {
        drop_bev(ws, 0);
        finish(ws, code, reason);
        return 0;
    }
    if (wslay_event_get_close_sent(ws->ctx) || ws->local_close || ws->peer_close) {
        return -EPIPE;
    }
    start_close(ws, code, reason, 0);
    if (!ws->in_recv) {
        flush_out(ws);
    }
    return 0;
}

void vb_ws_abort(vb_ws_t *ws)
{
    drop_bev(ws, 0);
    finish(ws, 1006, "aborted");
}

size_t vb_ws_out_pending(const vb_ws_t *ws)
{
    size_t n = ws->cork_len + (ws->out ? evbuffer_get_length(ws->out) : 0);
    if (ws->ctx != NULL) {
        n += wslay_event_get_queued_msg_length(ws->ctx);
    }
    return n;
}

void vb_ws_cork(vb_ws_t *ws)
{
    ws->corked = 1;
}

void vb_ws_uncork(vb_ws_t *ws)
{
    ws->corked = 0;
    cork_flush(ws);
}

void vb_ws_set_arg(vb_ws_t *ws, void *arg)
{
    ws->arg = arg;
}

void vb_ws_set_max_out(vb_ws_t *ws, size_t bytes)
{
    ws->max_out = bytes;
}
