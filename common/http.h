/* HTTP/1.1 request parsing: a strict, incremental parser that does no I/O, so
 * that it can be fed byte by byte, fuzzed, and driven by httpd.c. Used by the
 * api workers (REST, webhooks) and the media workers (WebSocket upgrade). */
#ifndef VB_COMMON_HTTP_H
#define VB_COMMON_HTTP_H

#include <stddef.h>
#include <sys/types.h>

typedef struct {
    const char *name;  /* NUL-terminated, point into the request's own buffer */
    const char *value; /* leading and trailing whitespace removed */
} vb_http_header_t;

typedef struct vb_http_req {
    char method[16];
    char *path;        /* raw path without the query (not %-decoded), NUL-terminated;
                          for an absolute-form target only the path part ("/" if none) */
    char *query;       /* raw query string without '?', "" when none */
    char *target;      /* raw request-target as sent (path + "?" + query) */
    int version_minor; /* 0 or 1 */
    vb_http_header_t *headers;
    int n_headers;
    char *body; /* de-chunked, NUL-terminated for convenience; never NULL */
    size_t body_len;
    int keep_alive;      /* the connection may carry another request after this one */
    int expect_continue; /* "Expect: 100-continue" was sent */
} vb_http_req_t;

/* Case-insensitive; the first header of that name, NULL if absent. */
const char *vb_http_header(const vb_http_req_t *req, const char *name);
/* Does the comma-separated header NAME contain TOKEN (case-insensitive)? */
int vb_http_header_has_token(const vb_http_req_t *req, const char *name, const char *token);
/* "Not Found" for 404; "Unknown" for codes it does not know. */
const char *vb_http_status_text(int status);

/* %-decode S in place ("+" becomes a space when FORM is set); the result is
 * NUL-terminated and *LEN (may be NULL) gets its length, which may be shorter
 * than strlen() when it decodes %00. -EINVAL on a bad escape. */
int vb_http_pct_decode(char *s, size_t *len, int form);
/* The value of one hex digit, or -1. */
int vb_hex_value(int c);

/* ---- incremental request parser ---------------------------------------- */

enum {
    VB_HTTP_PARSE_HEAD = 0, /* reading the request line and headers */
    VB_HTTP_PARSE_BODY,     /* head done (req fields are valid), reading the body */
    VB_HTTP_PARSE_DONE,     /* a whole request is in p->req */
    VB_HTTP_PARSE_ERROR,    /* p->error_status says what to answer; then close */
};

typedef struct vb_http_parser {
    int state;
    int error_status;         /* 400, 413, 414, 431, 417, 501 or 505 when state == ERROR */
    const char *error_reason; /* short static text, for logs */
    vb_http_req_t req;
    /* private below */
    size_t max_header_bytes, max_body_bytes;
    char *head;
    size_t head_len, head_cap, line_start;
    int nheader_lines;
    vb_http_header_t *hdrs;
    char *aux; /* path and query copies */
    size_t aux_cap;
    char *body;
    size_t body_cap;
    int chunked;
    size_t content_length;
    int body_state;
    size_t chunk_left;
    size_t line_len; /* bytes of the current chunk-size or trailer line */
    size_t trailer_bytes;
    int line_cr; /* a CR was just seen on a chunk-size/trailer line */
    int trailer_empty;
    int chunk_digits;
} vb_http_parser_t;

/* Defaults used when a limit is 0. */
#define VB_HTTP_DEFAULT_MAX_HEADER 16384
#define VB_HTTP_DEFAULT_MAX_BODY (1024 * 1024)
#define VB_HTTP_MAX_HEADERS 128

void vb_http_parser_init(vb_http_parser_t *p, size_t max_header_bytes, size_t max_body_bytes);
/* Consume up to LEN bytes; returns how many were used. It stops right after a
 * complete request (state DONE), so pipelined bytes are left to the caller.
 * Check p->state after each call. Never fails on allocation (aborts). */
size_t vb_http_parser_feed(vb_http_parser_t *p, const char *data, size_t len);
/* Forget the current request (p->req becomes invalid) and wait for the next. */
void vb_http_parser_reset(vb_http_parser_t *p);
void vb_http_parser_free(vb_http_parser_t *p);
/* Has any byte of the current request been consumed? */
int vb_http_parser_started(const vb_http_parser_t *p);

#endif
