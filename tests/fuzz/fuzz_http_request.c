/* libFuzzer target: the HTTP/1.1 request parser (common/http.c). The input
 * is fed in pieces whose sizes come from its first byte, requests are parsed
 * one after the other (pipelining), and every request that parses is checked
 * for the invariants httpd.c relies on. Build: make fuzz. */
#include <stddef.h>
#include <stdint.h>
#include <stdlib.h>
#include <string.h>

#include "common/http.h"

int LLVMFuzzerTestOneInput(const uint8_t *data, size_t size);

static void check_request(const vb_http_req_t *r)
{
    if (r->path == NULL || r->query == NULL || r->target == NULL || r->body == NULL ||
        r->body[r->body_len] != '\0' || r->n_headers > VB_HTTP_MAX_HEADERS ||
        (r->version_minor != 0 && r->version_minor != 1) || strlen(r->method) == 0) {
        abort();
    }
    for (int i = 0; i < r->n_headers; i++) {
        if (r->headers[i].name[0] == '\0' || r->headers[i].value == NULL) {
            abort();
        }
    }
    (void)vb_http_header(r, "Host");
    (void)vb_http_header_has_token(r, "Connection", "close");
}

int LLVMFuzzerTestOneInput(const uint8_t *data, size_t size)
{
    if (size < 1) {
        return 0;
    }
    size_t step = (size_t)(data[0] % 17) + 1; /* 1..17 bytes at a time, 17 = all */
    data++;
    size--;
    vb_http_parser_t p;
    vb_http_parser_init(&p, 4096, 8192);
    size_t off = 0;
    while (off < size) {
        size_t n = step == 17 ? size - off : (size - off < step ? size - off : step);
        size_t used = vb_http_parser_feed(&p, (const char *)data + off, n);
        if (used > n) {
            abort();
        }
        off += used;
        if (p.state == VB_HTTP_PARSE_ERROR) {
            if (p.error_status < 400 || p.error_status > 505) {
                abort();
            }
            break;
        }
        if (p.state == VB_HTTP_PARSE_DONE) {
            check_request(&p.req);
            vb_http_parser_reset(&p);
        } else if (used < n) {
            abort(); /* only a finished request or an error stops early */
        }
    }
    vb_http_parser_free(&p);
    return 0;
}
