/* WebSocket (RFC 6455) over wslay on a libevent bufferevent: the server side
 * runs in media workers (Twilio Media Streams on /twilio/media), the client
 * side in the AI broker (provider WebSockets) and in voxbridge-callsim.
 *
 * Both sides: fragmented messages are reassembled, pings answered, text
 * messages checked for UTF-8 (1007), messages over MAX_MESSAGE refused (1009),
 * wrongly masked frames refused (1002), the close handshake completed (or cut
 * after a short timeout). Bytes not yet written are bounded (vb_ws_send
 * returns -ENOBUFS above the cap). */
#ifndef VB_COMMON_WS_H
#define VB_COMMON_WS_H

#include <stddef.h>
#include <stdint.h>

#include <openssl/ssl.h>

#include "common/http.h"

struct event_base;
struct bufferevent;

typedef struct vb_ws vb_ws_t;

typedef struct {
    /* client: handshake done (server: may be NULL; never called) */
    void (*on_open)(vb_ws_t *ws, void *arg);
    /* a whole message; DATA is valid during the call only */
    void (*on_message)(vb_ws_t *ws, int is_text, const uint8_t *data, size_t len, void *arg);
    /* Exactly once; the ws is freed right after it returns. CODE:
     *  - the code of the close frame we sent if we started the close (our
     *    vb_ws_close(), or a protocol error: 1002, 1007, 1009, ...);
     *  - else the peer's close code (1005 when its frame had none);
     *  - 1006 when the TCP connection dropped with no close frame, or a client
     *    could not connect (refused, DNS, timeout);
     *  - 1015 when a client's TLS handshake failed;
     *  - a client whose handshake was answered with an HTTP status other than
     *    101 gets that status (401, 429, 503, 200...) with reason "HTTP <status>"
     *    (vb_ws_response_header() works during this call);
     *  - 1002 for a 101 that is not a valid WebSocket handshake answer. */
    void (*on_close)(vb_ws_t *ws, int code, const char *reason, void *arg);
} vb_ws_callbacks_t;

#define VB_WS_DEFAULT_MAX_MESSAGE (1024 * 1024)
#define VB_WS_DEFAULT_MAX_OUT (4 * 1024 * 1024)

/* Validates REQ as a WebSocket handshake, sends the 101 and owns BEV (as
 * returned by vb_http_conn_detach; call it from the HTTP handler, REQ is still
 * valid then). On a bad handshake sends 400 (or 426 with
 * Sec-WebSocket-Version: 13 for a wrong version), frees BEV, returns NULL with
 * errno EINVAL. MAX_MESSAGE 0 = default. Bytes already in BEV's input are
 * processed from the loop, after this returns. */
vb_ws_t *vb_ws_server_new(struct bufferevent *bev, const vb_http_req_t *req, size_t max_message,
                          const vb_ws_callbacks_t *cb, void *arg);

/* Convenience for an HTTP handler: vb_http_conn_detach(C) then
 * vb_ws_server_new(). C is gone afterwards (its on_close is not called).
 * NULL (errno EINVAL) on a bad handshake, after the error answer was sent;
 * NULL (errno EPIPE) when the peer had already left. */
struct vb_http_conn;
vb_ws_t *vb_ws_accept(struct vb_http_conn *c, const vb_http_req_t *req, size_t max_message,
                      const vb_ws_callbacks_t *cb, void *arg);

/* Connect to URL ("ws://host[:port]/path?q" or "wss://..."), send the
 * handshake (random key; EXTRA_HEADERS "K: v\r\n..." or NULL) and check the
 * 101 and its Sec-WebSocket-Accept; then on_open. Returns NULL with errno
 * EINVAL for a bad URL (or wss:// without TLS); every later failure ends in
 * on_close, never synchronously. Host names are resolved with a blocking
 * getaddrinfo (numeric addresses do not block). TLS: a client SSL_CTX (see
 * tls.h; SNI and host-name checking are set up here). */
vb_ws_t *vb_ws_client_new(struct event_base *base, const char *url, SSL_CTX *tls,
                          const char *extra_headers, size_t max_message,
                          const vb_ws_callbacks_t *cb, void *arg);

/* Queue one message (copied). 0, -ENOTCONN (client not open yet), -EPIPE
 * (closing or closed), -ENOBUFS (more than the output cap is pending: the peer
 * is not reading), -EINVAL. */
int vb_ws_send(vb_ws_t *ws, int is_text, const void *data, size_t len);
/* Start the close handshake (REASON may be NULL, cut to 123 bytes); on_close
 * follows from the loop. 0, or -EPIPE when already closing. */
int vb_ws_close(vb_ws_t *ws, int code, const char *reason);
/* Drop the connection now without a close handshake (fast shutdown);
 * on_close follows from the loop with 1006 unless a close was under way. */
void vb_ws_abort(vb_ws_t *ws);
/* Bytes queued, not yet written to the socket. */
size_t vb_ws_out_pending(const vb_ws_t *ws);
/* Between cork and uncork, small data frames (up to 2 KiB in all) are held and
 * then written with one send: a media frame and the mark after it leave as one
 * TCP segment instead of two. Anything else sent meanwhile (a large frame, a
 * ping, a close) first lets the held frames go, so the order is kept. */
void vb_ws_cork(vb_ws_t *ws);
void vb_ws_uncork(vb_ws_t *ws);
void vb_ws_set_arg(vb_ws_t *ws, void *arg);

/* Output cap for vb_ws_send (default VB_WS_DEFAULT_MAX_OUT). */
void vb_ws_set_max_out(vb_ws_t *ws, size_t bytes);
/* Send a ping now (payload up to 125 bytes, may be NULL). */
int vb_ws_ping(vb_ws_t *ws, const void *data, size_t len);
/* Client: a header of the server's handshake answer (case-insensitive), in
 * on_open and on_close; NULL if absent or not a client. */
const char *vb_ws_response_header(const vb_ws_t *ws, const char *name);
/* Client: the HTTP status of the handshake answer, 0 before it arrived. */
int vb_ws_response_status(const vb_ws_t *ws);

/* Is S (LEN bytes) valid UTF-8 (no overlongs, surrogates or > U+10FFFF)? */
int vb_utf8_valid(const uint8_t *s, size_t len);
/* Sec-WebSocket-Accept for KEY into OUT (29 bytes with the NUL). 0, or
 * -ENOMEM when OpenSSL could not compute it (OUT is then ""). */
int vb_ws_accept_key(const char *key, char out[29]);

/* Tests and fuzzing: a ws with no socket. Bytes given to vb_ws_mem_feed are
 * parsed as frames from the peer (IS_SERVER: we are the server, so the peer's
 * frames must be masked); what we would send is discarded. on_close is
 * delivered from BASE's loop as usual. */
vb_ws_t *vb_ws_mem_new(struct event_base *base, int is_server, size_t max_message,
                       const vb_ws_callbacks_t *cb, void *arg);
int vb_ws_mem_feed(vb_ws_t *ws, const uint8_t *data, size_t len);

#endif
