/* libFuzzer target: api/form and api/twilio. The input is "url\ntoken\nsignature\nbody":
 * the form body is parsed (strictly), re-encoded and parsed again to the same pairs, and
 * the signature is checked against it and against the body as JSON. A signature this
 * code computes must always validate. */
#include <stdint.h>
#include <stdlib.h>
#include <string.h>

#include "api/form.h"
#include "api/twilio.h"

int LLVMFuzzerTestOneInput(const uint8_t *data, size_t size);

/* The next '\n'-terminated line of [*P, END) as a malloc'd string. */
static char *line(const uint8_t **p, const uint8_t *end)
{
    const uint8_t *nl = memchr(*p, '\n', (size_t)(end - *p));
    size_t n = nl ? (size_t)(nl - *p) : (size_t)(end - *p);
    char *s = malloc(n + 1);
    if (s == NULL) {
        abort();
    }
    memcpy(s, *p, n);
    s[n] = '\0';
    *p += n + (nl != NULL);
    return s;
}

/* BLEN: the length of the body F was parsed from, which bounds every decoded string. */
static void check_reencode(const vb_form_t *f, size_t blen)
{
    size_t cap = 3 * blen + 16;
    char *enc = malloc(cap);
    if (enc == NULL) {
        abort();
    }
    size_t n = vb_form_encode(f, enc, cap);
    if (vb_form_count(f) > 0 && n > 0) {
        vb_form_t *g = vb_form_parse(enc, n);
        if (g == NULL || vb_form_count(g) != vb_form_count(f)) {
            abort();
        }
        for (size_t i = 0; i < vb_form_count(f); i++) {
            if (strcmp(vb_form_name(f, i), vb_form_name(g, i)) != 0 ||
                strcmp(vb_form_value(f, i), vb_form_value(g, i)) != 0) {
                abort();
            }
        }
        vb_form_free(g);
    }
    free(enc);
}

int LLVMFuzzerTestOneInput(const uint8_t *data, size_t size)
{
    if (size > 100000) {
        return 0;
    }
    const uint8_t *p = data, *end = data + size;
    char *url = line(&p, end), *token = line(&p, end), *sig = line(&p, end);
    size_t blen = (size_t)(end - p);
    char *body = malloc(blen ? blen : 1);
    if (body == NULL) {
        abort();
    }
    memcpy(body, p, blen);
    vb_form_t *f = vb_form_parse(body, blen);
    if (f != NULL) {
        check_reencode(f, blen);
        (void)vb_twilio_validate(token, url, f, NULL, 0, sig);
        char good[64];
        if (token[0] != '\0' && vb_twilio_sign(token, url, f, good) == 0 &&
            vb_twilio_validate(token, url, f, NULL, 0, good) != 1) {
            abort();
        }
        vb_form_free(f);
    }
    (void)vb_twilio_validate(token, url, NULL, body, blen, sig);
    char out[4096];
    (void)vb_twiml_connect_stream(out, sizeof(out), url, token);
    (void)vb_twiml_say_hangup(out, sizeof(out), sig);
    free(body);
    free(url);
    free(token);
    free(sig);
    return 0;
}
