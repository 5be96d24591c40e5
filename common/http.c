/* HTTP/1.1 request parser: see http.h. Pure code (no I/O, no logging), run by
 * the api and media workers through httpd.c and by the fuzz target.
 *
 * The head (request line + headers) is copied into one buffer, bounded by
 * max_header_bytes, and parsed in place once its empty line arrives; the body
 * (Content-Length or chunked) is copied de-chunked into a second buffer,
 * bounded by max_body_bytes. Anything that could let two parsers disagree
 * about where a request ends (CL+TE, repeated CL, odd TE, bare CR, NUL,
 * obs-fold, whitespace before ':') is refused with 400. */
#include "common/http.h"

#include <errno.h>
#include <stdint.h>
#include <stdlib.h>
#include <string.h>
#include <strings.h>

enum {
    BODY_NONE = 0,
    BODY_CL,
    CH_SIZE,    /* chunk-size digits */
    CH_SIZE_WS, /* whitespace after the digits */
    CH_EXT,     /* chunk extension up to CRLF */
    CH_SIZE_LF, /* CR seen on the size line */
    CH_DATA,    /* chunk data */
    CH_DATA_CR, /* CRLF after the data */
    CH_DATA_LF,
    CH_TRAILER, /* trailer lines until an empty one */
};

#define MAX_CHUNK_LINE 4096

static void *xrealloc(void *p, size_t n)
{
    void *q = realloc(p, n ? n : 1);
    if (q == NULL) {
        abort(); /* allocation failure outside the audio path aborts (STYLE.md) */
    }
    return q;
}

/* ---- small helpers --------------------------------------------------------------------- */

static int is_tchar(unsigned char c)
{
    static const char extra[] = "!#$%&'*+-.^_`|~";
    if ((c >= '0' && c <= '9') || (c >= 'a' && c <= 'z') || (c >= 'A' && c <= 'Z')) {
        return 1;
    }
    return c != '\0' && strchr(extra, c) != NULL;
}

static int is_ows(char c)
{
    return c == ' ' || c == '\t';
}

int vb_hex_value(int c)
{
    if (c >= '0' && c <= '9') {
        return c - '0';
    }
    if (c >= 'a' && c <= 'f') {
        return c - 'a' + 10;
    }
    if (c >= 'A' && c <= 'F') {
        return c - 'A' + 10;
    }
    return -1;
}

const char *vb_http_header(const vb_http_req_t *req, const char *name)
{
    for (int i = 0; i < req->n_headers; i++) {
        if (strcasecmp(req->headers[i].name, name) == 0) {
            return req->headers[i].value;
        }
    }
    return NULL;
}

/* Does the comma-separated list S contain TOKEN? */
static int list_has_token(const char *s, const char *token)
{
    size_t tl = strlen(token);
    while (*s) {
        while (*s == ',' || is_ows(*s)) {
            s++;
        }
        const char *start = s;
        while (*s && *s != ',') {
            s++;
        }
        const char *end = s;
        while (end > start && is_ows(end[-1])) {
            end--;
        }
        if ((size_t)(end - start) == tl && strncasecmp(start, token, tl) == 0) {
            return 1;
        }
    }
    return 0;
}

int vb_http_header_has_token(const vb_http_req_t *req, const char *name, const char *token)
{
    for (int i = 0; i < req->n_headers; i++) {
        if (strcasecmp(req->headers[i].name, name) == 0 &&
            list_has_token(req->headers[i].value, token)) {
            return 1;
        }
    }
    return 0;
}

const char *vb_http_status_text(int status)
{
    static const struct {
        int code;
        const char *text;
    } texts[] = {
        {100, "Continue"},
        {101, "Switching Protocols"},
        {200, "OK"},
        {201, "Created"},
        {202, "Accepted"},
        {204, "No Content"},
        {206, "Partial Content"},
        {301, "Moved Permanently"},
        {302, "Found"},
        {303, "See Other"},
        {304, "Not Modified"},
        {307, "Temporary Redirect"},
        {308, "Permanent Redirect"},
        {400, "Bad Request"},
        {401, "Unauthorized"},
        {402, "Payment Required"},
        {403, "Forbidden"},
        {404, "Not Found"},
        {405, "Method Not Allowed"},
        {406, "Not Acceptable"},
        {408, "Request Timeout"},
        {409, "Conflict"},
        {410, "Gone"},
        {411, "Length Required"},
        {412, "Precondition Failed"},
        {413, "Content Too Large"},
        {414, "URI Too Long"},
        {415, "Unsupported Media Type"},
        {416, "Range Not Satisfiable"},
        {417, "Expectation Failed"},
        {422, "Unprocessable Content"},
        {426, "Upgrade Required"},
        {428, "Precondition Required"},
        {429, "Too Many Requests"},
        {431, "Request Header Fields Too Large"},
        {500, "Internal Server Error"},
        {501, "Not Implemented"},
        {502, "Bad Gateway"},
        {503, "Service Unavailable"},
        {504, "Gateway Timeout"},
        {505, "HTTP Version Not Supported"},
    };
    for (size_t i = 0; i < sizeof(texts) / sizeof(texts[0]); i++) {
        if (texts[i].code == status) {
            return texts[i].text;
        }
    }
    return "Unknown";
}

int vb_http_pct_decode(char *s, size_t *len, int form)
{
    char *w = s;
    for (const char *r = s; *r; r++) {
        if (*r == '%') {
            int hi = vb_hex_value(r[1]);
            int lo = hi < 0 ? -1 : vb_hex_value(r[2]);
            if (hi < 0 || lo < 0) {
                return -EINVAL;
            }
            *w++ = (char)(hi * 16 + lo);
            r += 2;
        } else if (*r == '+' && form) {
            *w++ = ' ';
        } else {
            *w++ = *r;
        }
    }
    *w = '\0';
    if (len != NULL) {
        *len = (size_t)(w - s);
    }
    return 0;
}

/* ---- parser state ---------------------------------------------------------------------- */

void vb_http_parser_init(vb_http_parser_t *p, size_t max_header_bytes, size_t max_body_bytes)
{
    memset(p, 0, sizeof(*p));
    p->max_header_bytes = max_header_bytes ? max_header_bytes : VB_HTTP_DEFAULT_MAX_HEADER;
    p->max_body_bytes = max_body_bytes ? max_body_bytes : VB_HTTP_DEFAULT_MAX_BODY;
    p->state = VB_HTTP_PARSE_HEAD;
}

void vb_http_parser_reset(vb_http_parser_t *p)
{
    /* Keep the buffers for the next request unless a big body grew one. */
    if (p->body_cap > 65536) {
        free(p->body);
        p->body = NULL;
        p->body_cap = 0;
    }
    char *head = p->head, *body = p->body, *aux = p->aux;
    size_t head_cap = p->head_cap, body_cap = p->body_cap, aux_cap = p->aux_cap;
    vb_http_header_t *hdrs = p->hdrs;
    vb_http_parser_init(p, p->max_header_bytes, p->max_body_bytes);
    p->head = head;
    p->head_cap = head_cap;
    p->body = body;
    p->body_cap = body_cap;
    p->aux = aux;
    p->aux_cap = aux_cap;
    p->hdrs = hdrs;
}

void vb_http_parser_free(vb_http_parser_t *p)
{
    free(p->head);
    free(p->body);
    free(p->aux);
    free(p->hdrs);
    memset(p, 0, sizeof(*p));
}

int vb_http_parser_started(const vb_http_parser_t *p)
{
    return p->state != VB_HTTP_PARSE_HEAD || p->head_len > 0;
}

static size_t fail(vb_http_parser_t *p, int status, const char *reason, size_t used)
{
    p->state = VB_HTTP_PARSE_ERROR;
    p->error_status = status;
    p->error_reason = reason;
    return used;
}

static void set_fail(vb_http_parser_t *p, int status, const char *reason)
{
    (void)fail(p, status, reason, 0);
}

/* ---- request line ---------------------------------------------------------------------- */

static int method_known(const char *m)
{
    static const char *const known[] = {"GET",    "HEAD",  "POST",   "PUT",
                                        "DELETE", "PATCH", "OPTIONS"};
    for (size_t i = 0; i < sizeof(known) / sizeof(known[0]); i++) {
        if (strcmp(m, known[i]) == 0) {
            return 1;
        }
    }
    return 0;
}

static int parse_version(vb_http_parser_t *p, const char *v)
{
    if (strncmp(v, "HTTP/", 5) != 0 || v[5] < '0' || v[5] > '9' || v[6] != '.' || v[7] < '0' ||
        v[7] > '9' || v[8] != '\0') {
        set_fail(p, 400, "malformed HTTP version");
        return -1;
    }
    if (v[5] != '1' || v[7] > '1') {
        set_fail(p, 505, "unsupported HTTP version");
        return -1;
    }
    p->req.version_minor = v[7] - '0';
    return 0;
}

/* Split TARGET (len TL) into path and query copies in p->aux. */
static int split_target(vb_http_parser_t *p, const char *target, size_t tl)
{
    const char *path = target;
    if (strcmp(p->req.method, "OPTIONS") == 0 && strcmp(target, "*") == 0) {
        path = target;
    } else if (target[0] != '/') {
        const char *auth = NULL;
        if (strncasecmp(target, "http://", 7) == 0) {
            auth = target + 7;
        } else if (strncasecmp(target, "https://", 8) == 0) {
            auth = target + 8;
        }
        if (auth == NULL || *auth == '\0' || *auth == '/' || *auth == '?') {
            set_fail(p, 400, "bad request-target");
            return -1;
        }
        path = auth + strcspn(auth, "/?");
    }
    const char *q = strchr(path, '?');
    size_t plen = q ? (size_t)(q - path) : strlen(path);
    size_t qlen = q ? strlen(q + 1) : 0;
    if (p->aux_cap < tl + 4) {
        p->aux_cap = tl + 4;
        p->aux = xrealloc(p->aux, p->aux_cap);
    }
    char *a = p->aux;
    if (plen == 0) {
        a[0] = '/';
        a[1] = '\0';
        p->req.path = a;
        a += 2;
    } else {
        memcpy(a, path, plen);
        a[plen] = '\0';
        p->req.path = a;
        a += plen + 1;
    }
    memcpy(a, q ? q + 1 : "", qlen);
    a[qlen] = '\0';
    p->req.query = a;
    return 0;
}

static int parse_request_line(vb_http_parser_t *p, char *line)
{
    size_t ml = 0;
    while (is_tchar((unsigned char)line[ml])) {
        ml++;
    }
    if (ml == 0 || line[ml] != ' ') {
        set_fail(p, 400, "malformed request line");
        return -1;
    }
    if (ml >= sizeof(p->req.method)) {
        set_fail(p, 501, "method not implemented");
        return -1;
    }
    memcpy(p->req.method, line, ml);
    p->req.method[ml] = '\0';
    char *target = line + ml + 1;
    size_t tl = 0;
    while ((unsigned char)target[tl] > 0x20 && (unsigned char)target[tl] < 0x7f) {
        tl++;
    }
    if (tl == 0 || (target[tl] != ' ' && target[tl] != '\0')) {
        set_fail(p, 400, "bad request-target");
        return -1;
    }
    if (target[tl] == '\0') {
        set_fail(p, 400, "HTTP/0.9 request");
        return -1;
    }
    target[tl] = '\0';
    if (parse_version(p, target + tl + 1) < 0) {
        return -1;
    }
    if (!method_known(p->req.method)) {
        set_fail(p, 501, "method not implemented");
        return -1;
    }
    p->req.target = target;
    return split_target(p, target, tl);
}

/* ---- headers --------------------------------------------------------------------------- */

/* LINE is one NUL-terminated header line; fills *h. */
static int parse_header_line(vb_http_parser_t *p, char *line, vb_http_header_t *h)
{
    if (is_ows(line[0])) {
        set_fail(p, 400, "obsolete line folding");
        return -1;
    }
    size_t nl = 0;
    while (is_tchar((unsigned char)line[nl])) {
        nl++;
    }
    if (nl == 0 || line[nl] != ':') {
        set_fail(p, 400, "malformed header name");
        return -1;
    }
    line[nl] = '\0';
    char *v = line + nl + 1;
    while (is_ows(*v)) {
        v++;
    }
    char *end = v;
    for (char *c = v; *c; c++) {
        unsigned char u = (unsigned char)*c;
        if ((u < 0x20 && u != '\t') || u == 0x7f) {
            set_fail(p, 400, "control character in header value");
            return -1;
        }
        if (!is_ows(*c)) {
            end = c + 1;
        }
    }
    *end = '\0';
    h->name = line;
    h->value = v;
    return 0;
}

static int parse_content_length(vb_http_parser_t *p, const char *v)
{
    if (*v == '\0') {
        set_fail(p, 400, "empty Content-Length");
        return -1;
    }
    uint64_t n = 0;
    for (const char *c = v; *c; c++) {
        if (*c < '0' || *c > '9') {
            set_fail(p, 400, "malformed Content-Length");
            return -1;
        }
        if (n > (UINT64_MAX - 9) / 10) {
            set_fail(p, 413, "Content-Length too large");
            return -1;
        }
        n = n * 10 + (uint64_t)(*c - '0');
    }
    if (n > p->max_body_bytes) {
        set_fail(p, 413, "body over the limit");
        return -1;
    }
    p->content_length = (size_t)n;
    return 0;
}

/* Only "chunked" alone is understood; a clean list of other codings gets
 * 501, anything odd 400. */
static int parse_transfer_encoding(vb_http_parser_t *p, const char *v)
{
    if (strcasecmp(v, "chunked") == 0) {
        p->chunked = 1;
        return 0;
    }
    int clean = *v != '\0';
    for (const char *c = v; *c && clean; c++) {
        clean = is_tchar((unsigned char)*c) || *c == ',' || *c == ' ';
    }
    set_fail(p, clean ? 501 : 400, "unsupported Transfer-Encoding");
    return -1;
}

typedef struct {
    int n_cl, n_te, n_host;
    const char *cl, *te, *expect;
} framing_t;

static void note_header(framing_t *f, const vb_http_header_t *h)
{
    if (strcasecmp(h->name, "Content-Length") == 0) {
        f->n_cl++;
        f->cl = h->value;
    } else if (strcasecmp(h->name, "Transfer-Encoding") == 0) {
        f->n_te++;
        f->te = h->value;
    } else if (strcasecmp(h->name, "Host") == 0) {
        f->n_host++;
    } else if (strcasecmp(h->name, "Expect") == 0) {
        f->expect = h->value;
    }
}

static int check_framing(vb_http_parser_t *p, const framing_t *f)
{
    vb_http_req_t *r = &p->req;
    if (f->n_cl > 1 || f->n_te > 1) {
        set_fail(p, 400, "repeated Content-Length or Transfer-Encoding");
        return -1;
    }
    if (f->n_cl && f->n_te) {
        set_fail(p, 400, "both Content-Length and Transfer-Encoding");
        return -1;
    }
    if (f->n_host > 1 || (f->n_host == 0 && r->version_minor == 1)) {
        set_fail(p, 400, "missing or repeated Host");
        return -1;
    }
    if (f->n_te && r->version_minor == 0) {
        set_fail(p, 400, "Transfer-Encoding in HTTP/1.0");
        return -1;
    }
    if (f->te && parse_transfer_encoding(p, f->te) < 0) {
        return -1;
    }
    if (f->cl && parse_content_length(p, f->cl) < 0) {
        return -1;
    }
    if (f->expect) {
        if (strcasecmp(f->expect, "100-continue") != 0) {
            set_fail(p, 417, "unsupported Expect");
            return -1;
        }
        r->expect_continue = r->version_minor == 1;
    }
    return 0;
}

static void set_keep_alive(vb_http_req_t *r)
{
    if (vb_http_header_has_token(r, "Connection", "close")) {
        r->keep_alive = 0;
    } else if (r->version_minor == 1) {
        r->keep_alive = 1;
    } else {
        r->keep_alive = vb_http_header_has_token(r, "Connection", "keep-alive");
    }
}

/* Cut the head buffer into NUL-terminated lines; returns their count. */
static int split_lines(char *head, size_t len, char **lines, int max)
{
    int n = 0;
    char *s = head;
    for (size_t i = 0; i < len; i++) {
        if (head[i] == '\n') {
            head[i] = '\0';
            if (i > 0 && head[i - 1] == '\r') {
                head[i - 1] = '\0';
            }
            if (n < max) {
                lines[n++] = s;
            }
            s = head + i + 1;
        }
    }
    return n;
}

static void parse_head(vb_http_parser_t *p)
{
    int nlines = p->nheader_lines + 1;
    char **lines = calloc((size_t)nlines, sizeof(*lines));
    if (lines == NULL) {
        abort();
    }
    split_lines(p->head, p->head_len, lines, nlines);
    framing_t f = {0};
    p->hdrs = xrealloc(p->hdrs, sizeof(*p->hdrs) * (size_t)(nlines - 1 ? nlines - 1 : 1));
    p->req.headers = p->hdrs;
    int ok = parse_request_line(p, lines[0]) == 0;
    for (int i = 1; ok && i < nlines; i++) {
        vb_http_header_t *h = &p->hdrs[p->req.n_headers];
        ok = parse_header_line(p, lines[i], h) == 0;
        if (ok) {
            p->req.n_headers++;
            note_header(&f, h);
        }
    }
    free(lines);
    if (!ok || check_framing(p, &f) < 0) {
        return;
    }
    set_keep_alive(&p->req);
    if (p->chunked) {
        p->body_state = CH_SIZE;
    } else if (p->content_length > 0) {
        p->body_state = BODY_CL;
    }
    p->state = VB_HTTP_PARSE_BODY;
}

/* ---- feeding --------------------------------------------------------------------------- */

static void head_push(vb_http_parser_t *p, char c)
{
    if (p->head_len + 1 >= p->head_cap) {
        p->head_cap = p->head_cap ? p->head_cap * 2 : 1024;
        if (p->head_cap > p->max_header_bytes + 1) {
            p->head_cap = p->max_header_bytes + 1;
        }
        p->head = xrealloc(p->head, p->head_cap);
    }
    p->head[p->head_len++] = c;
}

/* A line of the head ended at p->head_len - 1 (the '\n'). */
static void head_line_end(vb_http_parser_t *p)
{
    size_t l = p->head_len - 1 - p->line_start;
    if (l > 0 && p->head[p->head_len - 2] == '\r') {
        l--;
    }
    if (l > 0) {
        if (p->nheader_lines >= VB_HTTP_MAX_HEADERS) {
            set_fail(p, 431, "too many header fields");
            return;
        }
        p->nheader_lines++;
        p->line_start = p->head_len;
        return;
    }
    if (p->nheader_lines == 0) {
        /* Empty lines before a request line are ignored (RFC 9112 2.2). */
        p->head_len = 0;
        p->line_start = 0;
        return;
    }
    p->nheader_lines--; /* the request line is not a header line */
    parse_head(p);
}

static size_t feed_head(vb_http_parser_t *p, const char *data, size_t len)
{
    for (size_t i = 0; i < len; i++) {
        char c = data[i];
        if (p->head_len >= p->max_header_bytes) {
            int in_reqline = p->nheader_lines == 0;
            return fail(p, in_reqline ? 414 : 431, "request head over the limit", i);
        }
        if (c == '\0') {
            return fail(p, 400, "NUL in request head", i);
        }
        if (p->head_len > 0 && p->head[p->head_len - 1] == '\r' && c != '\n') {
            return fail(p, 400, "bare CR in request head", i);
        }
        head_push(p, c);
        if (c == '\n') {
            head_line_end(p);
            if (p->state != VB_HTTP_PARSE_HEAD) {
                return i + 1;
            }
        }
    }
    return len;
}

static void body_reserve(vb_http_parser_t *p, size_t extra)
{
    size_t need = p->req.body_len + extra + 1;
    if (need > p->body_cap) {
        size_t cap = p->body_cap ? p->body_cap : 256;
        while (cap < need) {
            cap *= 2;
        }
        p->body = xrealloc(p->body, cap);
        p->body_cap = cap;
    }
}

static void body_append(vb_http_parser_t *p, const char *data, size_t n)
{
    body_reserve(p, n);
    memcpy(p->body + p->req.body_len, data, n);
    p->req.body_len += n;
}

static void finish(vb_http_parser_t *p)
{
    body_reserve(p, 0);
    p->body[p->req.body_len] = '\0';
    p->req.body = p->body;
    p->state = VB_HTTP_PARSE_DONE;
}

static int chunk_size_char(vb_http_parser_t *p, char c)
{
    int h = vb_hex_value(c);
    if (h >= 0 && p->body_state == CH_SIZE) {
        p->chunk_left = p->chunk_left * 16 + (size_t)h;
        p->chunk_digits++;
        if (p->req.body_len + p->chunk_left > p->max_body_bytes) {
            set_fail(p, 413, "chunked body over the limit");
            return -1;
        }
        return 0;
    }
    if (p->chunk_digits == 0) {
        set_fail(p, 400, "bad chunk size");
        return -1;
    }
    if (c == '\r') {
        p->body_state = CH_SIZE_LF;
    } else if (c == ';') {
        p->body_state = CH_EXT;
    } else if (is_ows(c)) {
        p->body_state = CH_SIZE_WS;
    } else {
        set_fail(p, 400, "bad chunk size");
        return -1;
    }
    return 0;
}

static int chunk_ext_char(vb_http_parser_t *p, char c)
{
    unsigned char u = (unsigned char)c;
    if (c == '\r') {
        p->body_state = CH_SIZE_LF;
    } else if ((u < 0x20 && c != '\t') || u == 0x7f) {
        set_fail(p, 400, "bad chunk extension");
        return -1;
    }
    return 0;
}

static int chunk_size_lf(vb_http_parser_t *p, char c)
{
    if (c != '\n') {
        set_fail(p, 400, "bare CR in chunk size");
        return -1;
    }
    p->line_len = 0;
    p->body_state = p->chunk_left ? CH_DATA : CH_TRAILER;
    p->line_cr = 0;
    p->trailer_empty = 1;
    return 0;
}

/* One byte of the trailer section: lines until an empty one. */
static int trailer_char(vb_http_parser_t *p, char c)
{
    if (++p->trailer_bytes > p->max_header_bytes) {
        set_fail(p, 431, "trailer section over the limit");
        return -1;
    }
    if (p->line_cr) {
        if (c != '\n') {
            set_fail(p, 400, "bare CR in trailer");
            return -1;
        }
        if (p->trailer_empty) {
            finish(p);
        }
        p->line_cr = 0;
        p->trailer_empty = 1;
        return 0;
    }
    if (c == '\r') {
        p->line_cr = 1;
    } else if (c == '\0' || c == '\n') {
        set_fail(p, 400, "bad character in trailer");
        return -1;
    } else {
        p->trailer_empty = 0;
    }
    return 0;
}

/* Consume framing bytes of a chunked body (everything but chunk data). */
static int chunk_char(vb_http_parser_t *p, char c)
{
    if (p->body_state != CH_DATA && p->body_state != CH_TRAILER &&
        ++p->line_len > MAX_CHUNK_LINE) {
        set_fail(p, 400, "chunk size line too long");
        return -1;
    }
    switch (p->body_state) {
    case CH_SIZE:
        return chunk_size_char(p, c);
    case CH_SIZE_WS:
        if (c == ';') {
            p->body_state = CH_EXT;
        } else if (c == '\r') {
            p->body_state = CH_SIZE_LF;
        } else if (!is_ows(c)) {
            set_fail(p, 400, "bad chunk size");
            return -1;
        }
        return 0;
    case CH_EXT:
        return chunk_ext_char(p, c);
    case CH_SIZE_LF:
        return chunk_size_lf(p, c);
    case CH_DATA_CR:
        p->body_state = CH_DATA_LF;
        return c == '\r' ? 0 : (set_fail(p, 400, "missing CRLF after chunk"), -1);
    case CH_DATA_LF:
        p->body_state = CH_SIZE;
        p->chunk_digits = 0;
        p->line_len = 0;
        return c == '\n' ? 0 : (set_fail(p, 400, "missing CRLF after chunk"), -1);
    case CH_TRAILER:
        return trailer_char(p, c);
    default:
        return 0;
    }
}

static size_t feed_chunked(vb_http_parser_t *p, const char *data, size_t len)
{
    size_t i = 0;
    while (i < len && p->state == VB_HTTP_PARSE_BODY) {
        if (p->body_state == CH_DATA) {
            size_t n = len - i < p->chunk_left ? len - i : p->chunk_left;
            body_append(p, data + i, n);
            p->chunk_left -= n;
            i += n;
            if (p->chunk_left == 0) {
                p->body_state = CH_DATA_CR;
            }
            continue;
        }
        if (chunk_char(p, data[i]) < 0) {
            return i;
        }
        i++;
    }
    return i;
}

static size_t feed_body(vb_http_parser_t *p, const char *data, size_t len)
{
    if (p->body_state == BODY_NONE) {
        finish(p);
        return 0;
    }
    if (p->body_state == BODY_CL) {
        size_t left = p->content_length - p->req.body_len;
        size_t n = len < left ? len : left;
        if (p->req.body_len == 0) {
            body_reserve(p, p->content_length);
        }
        body_append(p, data, n);
        if (p->req.body_len == p->content_length) {
            finish(p);
        }
        return n;
    }
    return feed_chunked(p, data, len);
}

size_t vb_http_parser_feed(vb_http_parser_t *p, const char *data, size_t len)
{
    size_t used = 0;
    if (p->state == VB_HTTP_PARSE_HEAD) {
        used = feed_head(p, data, len);
    }
    if (p->state == VB_HTTP_PARSE_BODY) {
        used += feed_body(p, data + used, len - used);
    }
    return used;
}
