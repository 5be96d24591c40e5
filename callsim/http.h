/* voxbridge-callsim: HTTP POSTs (the voice webhooks) through libcurl's multi interface
 * driven by the callsim libevent loop, so a slow webhook does not hold up the 20 ms media
 * timer of the calls already streaming. Run by voxbridge-callsim only. */
#ifndef VB_CALLSIM_HTTP_H
#define VB_CALLSIM_HTTP_H

#include <stddef.h>

struct event_base;

typedef struct vb_cs_http vb_cs_http_t;

/* STATUS is the HTTP status, or 0 when no response came (ERR says why); BODY is
 * NUL-terminated and valid during the call only. */
typedef void (*vb_cs_http_done_fn)(int status, const char *body, size_t len, const char *err,
                                   void *arg);

/* INSECURE: no certificate or host-name check for https; CA_FILE may be NULL.
 * NULL on failure (logged). */
vb_cs_http_t *vb_cs_http_new(struct event_base *base, int insecure, const char *ca_file,
                             int timeout_ms);
/* POSTs BODY to URL with the HEADERS ("K: v" strings, NULL-terminated). DONE runs once,
 * from the loop, never from inside this call. 0 or -ENOMEM/-EINVAL. */
int vb_cs_http_post(vb_cs_http_t *h, const char *url, const char *body,
                    const char *const *headers, vb_cs_http_done_fn done, void *arg);
/* Requests still running. */
int vb_cs_http_pending(const vb_cs_http_t *h);
/* Cancels what is pending (their DONE is not called) and frees H. */
void vb_cs_http_free(vb_cs_http_t *h);

#endif
