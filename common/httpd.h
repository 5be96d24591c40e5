/* HTTP/1.1 server connection on a libevent bufferevent (plain or TLS), for
 * the api workers (REST, webhooks, health) and the media workers (until the
 * WebSocket upgrade). The master accepts the socket and passes the fd; the
 * child wraps it with vb_http_conn_new() on its own event_base.
 *
 * One request is handed to the handler at a time; pipelined requests wait in
 * order until the previous one is answered. Limits enforced per connection:
 * head and body size (431/413), the time to send one whole request (408, then
 * close: slowloris/slow body), the idle time between keep-alive requests, and
 * the output queued for a slow reader (reading pauses above the cap; a write
 * that makes no progress for idle_timeout_s closes the connection). */
#ifndef VB_COMMON_HTTPD_H
#define VB_COMMON_HTTPD_H

#include <stddef.h>

#include <openssl/ssl.h>

#include "common/http.h"

struct event_base;
struct bufferevent;

typedef struct vb_http_conn vb_http_conn_t;

/* 0 in any field means its default: 16 KiB head, 1 MiB body, 10 s per
 * request, 60 s idle, 1 MiB queued output. */
typedef struct {
    size_t max_header_bytes, max_body_bytes;
    int request_timeout_s, idle_timeout_s;
    size_t max_output_bytes; /* pause reading pipelined requests above this */
} vb_http_limits_t;

/* REQ (and the strings it points to) stays valid until the reply is sent, the
 * connection is closed or detached. The handler may answer at once or later
 * (from any callback on the same event_base). */
typedef void (*vb_http_handler_fn)(vb_http_conn_t *c, vb_http_req_t *req, void *arg);

/* Takes FD (closed on failure too). TLS: a server SSL_CTX, or NULL for plain.
 * ON_CLOSE(ARG) runs once, from the event loop, when the connection is gone
 * and no reply is pending; C is freed right after. If the peer disconnects
 * while the handler owes a reply, C stays valid (vb_http_conn_is_open() turns
 * 0) until the handler calls vb_http_reply() or vb_http_conn_close(). */
vb_http_conn_t *vb_http_conn_new(struct event_base *base, int fd, SSL_CTX *tls,
                                 const vb_http_limits_t *lim, vb_http_handler_fn fn,
                                 void (*on_close)(void *arg), void *arg);

/* Answer the pending request. CONTENT_TYPE may be NULL (no header). Adds
 * Content-Length, Date, and Connection: close when the connection will close;
 * a HEAD request gets no body. EXTRA_HEADERS: "K: v\r\n..." or NULL. */
/* Refuse a raw connection FD before it is served: 503, Retry-After: 1, a JSON
 * error with code "busy" and MESSAGE (JSON-safe text); closes FD. What the
 * client has sent so far is read first, so the close sends a FIN, not a reset
 * that could reach the client before the answer; what it sends later still
 * meets a reset (common/linger.h waits for it). */
void vb_http_busy_fd(int fd, const char *message);
/* The same without the close: the answer, the FIN (shutdown) and the drain. */
void vb_http_busy_write(int fd, const char *message);
/* Reads and drops what FD has ready, up to MAX bytes, without blocking: the
 * bytes dropped, or -1 once the peer has closed or the socket failed. */
ssize_t vb_http_drain_fd(int fd, size_t max);

void vb_http_reply(vb_http_conn_t *c, int status, const char *content_type, const void *body,
                   size_t len, const char *extra_headers);

/* WebSocket upgrade: stop HTTP processing and hand over the bufferevent (bytes
 * already read past the request stay in its input buffer; its callbacks and
 * timeouts are cleared). The conn is freed; on_close is NOT called. Returns
 * NULL if the peer is already gone (then this is vb_http_conn_close()). */
struct bufferevent *vb_http_conn_detach(vb_http_conn_t *c);

/* Drop the connection now (no reply); on_close follows from the loop. */
void vb_http_conn_close(vb_http_conn_t *c);

/* 1 while the peer is connected and the conn is usable. */
int vb_http_conn_is_open(const vb_http_conn_t *c);
/* Change the ARG given to the handler and on_close from now on. */
void vb_http_conn_set_arg(vb_http_conn_t *c, void *arg);
/* "1.2.3.4:5678", "[::1]:80" or "unix" - for logs. */
const char *vb_http_conn_peer(const vb_http_conn_t *c);
/* 1 when the connection is TLS. */
int vb_http_conn_is_tls(const vb_http_conn_t *c);

/* Send whatever BEV still has queued, then close it (for a plain socket:
 * half-close and discard input for a moment so that the peer reads the whole
 * response before any RST). Gives up after TIMEOUT_S. Takes ownership. */
void vb_bev_close_after_flush(struct bufferevent *bev, int timeout_s);
/* Turn off Nagle on a TCP socket (no-op on others): 20 ms media frames must
 * leave at once; with Nagle a loopback round trip grows by ~30 ms. */
void vb_socket_nodelay(int fd);

/* Default limits, for callers that want to tweak one field. */
void vb_http_limits_default(vb_http_limits_t *lim);

#endif
