/* Helpers for the HTTP and WebSocket tests (test_httpd, test_ws): loopback
 * sockets, waiting on a condition while the event loop runs, a self-signed
 * certificate made at test time, and raw WebSocket frames. */
#ifndef VB_TESTS_NET_TESTUTIL_H
#define VB_TESTS_NET_TESTUTIL_H

#include <stddef.h>
#include <stdint.h>

struct event_base;

/* Listening TCP socket on 127.0.0.1, ephemeral port in *PORT. */
int nt_listen(int *port);
/* Blocking client socket connected to 127.0.0.1:PORT. */
int nt_connect(int port);
/* Accept one connection (blocking). */
int nt_accept(int lfd);
/* Write all of S (blocking). */
void nt_write(int fd, const void *s, size_t len);
void nt_write_str(int fd, const char *s);

/* Run BASE until COND(ARG) is true or TIMEOUT_MS passes; 0 or -1. */
int nt_wait(struct event_base *base, int (*cond)(void *arg), void *arg, int timeout_ms);
/* Run BASE until *FLAG != 0; 0 or -1 on timeout. */
int nt_wait_flag(struct event_base *base, volatile int *flag, int timeout_ms);

/* Bytes read so far from a raw client socket. */
typedef struct {
    int fd;
    char buf[65536];
    size_t len;
    int eof;
    const char *needle; /* wait for this substring */
    size_t want;        /* or at least this many bytes */
} nt_reader_t;
void nt_reader_init(nt_reader_t *r, int fd);
/* Run the loop until R has NEEDLE (or WANT bytes, or EOF when both unset). */
int nt_read_until(struct event_base *base, nt_reader_t *r, const char *needle, size_t want,
                  int timeout_ms);
/* Count of STATUS lines ("HTTP/1.1 200") in what R read. */
int nt_count(const nt_reader_t *r, const char *needle);

/* Self-signed EC certificate for CN=localhost, SAN IP:127.0.0.1 and
 * DNS:localhost, written into a fresh temp dir. Paths are static buffers. */
int nt_make_cert(const char **cert_file, const char **key_file);

/* A WebSocket frame into OUT (cap 14+len); MASK: mask it as a client must. */
size_t nt_ws_frame(uint8_t *out, int fin, int opcode, int mask, const void *data, size_t len);
/* Raw WebSocket client handshake on FD against PATH; leaves R after the 101. */
int nt_ws_handshake(struct event_base *base, nt_reader_t *r, const char *path);

#endif
