/* Twilio webhook signatures and TwiML: see twilio.h. Runs in the api workers and in
 * voxbridge-callsim. The algorithm follows Twilio's request validator: URL plus sorted
 * name/value pairs, HMAC-SHA1 with the auth token, base64. */
#include "api/twilio.h"

#include <errno.h>
#include <stdint.h>
#include <stdlib.h>
#include <string.h>
#include <strings.h>

#include <openssl/crypto.h>
#include <openssl/evp.h>
#include <openssl/hmac.h>
#include <openssl/sha.h>

#include "common/base64.h"

typedef struct {
    const char *name;
    const char *value;
} pair_t;

static int pair_cmp(const void *a, const void *b)
{
    const pair_t *x = a, *y = b;
    int c = strcmp(x->name, y->name);
    return c != 0 ? c : strcmp(x->value, y->value);
}

/* URL followed by the sorted, de-duplicated pairs, as one malloc'd string (*LEN bytes). */
static char *string_to_sign(const char *url, const vb_form_t *params, size_t *len)
{
    size_t n = params ? vb_form_count(params) : 0;
    size_t total = strlen(url);
    pair_t *pairs = calloc(n ? n : 1, sizeof(*pairs));
    if (pairs == NULL) {
        return NULL;
    }
    for (size_t i = 0; i < n; i++) {
        pairs[i] = (pair_t){vb_form_name(params, i), vb_form_value(params, i)};
        total += strlen(pairs[i].name) + strlen(pairs[i].value);
    }
    qsort(pairs, n, sizeof(*pairs), pair_cmp);
    char *s = malloc(total + 1);
    if (s != NULL) {
        size_t o = strlen(url);
        memcpy(s, url, o);
        for (size_t i = 0; i < n; i++) {
            if (i > 0 && pair_cmp(&pairs[i - 1], &pairs[i]) == 0) {
                continue; /* the same name and value again */
            }
            size_t nl = strlen(pairs[i].name), vl = strlen(pairs[i].value);
            memcpy(s + o, pairs[i].name, nl);
            memcpy(s + o + nl, pairs[i].value, vl);
            o += nl + vl;
        }
        s[o] = '\0';
        *len = o;
    }
    free(pairs);
    return s;
}

int vb_twilio_sign(const char *token, const char *url, const vb_form_t *params, char out[64])
{
    size_t len = 0;
    char *s = string_to_sign(url, params, &len);
    if (s == NULL) {
        return -ENOMEM;
    }
    unsigned char mac[EVP_MAX_MD_SIZE];
    unsigned int maclen = 0;
    unsigned char *r = HMAC(EVP_sha1(), token, (int)strlen(token), (const unsigned char *)s,
                            len, mac, &maclen);
    free(s);
    if (r == NULL) {
        return -ENOMEM;
    }
    vb_base64_encode(mac, maclen, out);
    return 0;
}

void vb_twilio_body_sha256(const char *body, size_t len, char out[65])
{
    static const char hex[] = "0123456789abcdef";
    unsigned char md[SHA256_DIGEST_LENGTH];
    SHA256((const unsigned char *)(body ? body : ""), len, md);
    for (int i = 0; i < SHA256_DIGEST_LENGTH; i++) {
        out[2 * i] = hex[md[i] >> 4];
        out[2 * i + 1] = hex[md[i] & 15];
    }
    out[64] = '\0';
}

/* Where the authority of URL ends and where its port (after ':') starts; port_at is NULL
 * when there is none. Returns -1 when URL has no "scheme://". */
static int url_authority(const char *url, const char **auth_end, const char **port_at)
{
    const char *a = strstr(url, "://");
    if (a == NULL) {
        return -1;
    }
    a += 3;
    const char *e = a + strcspn(a, "/?#");
    const char *host = a;
    for (const char *p = a; p < e; p++) {
        if (*p == '@') {
            host = p + 1; /* skip user:password@ */
        }
    }
    const char *colon = NULL;
    const char *p = host;
    if (*p == '[') { /* IPv6 literal */
        const char *rb = memchr(p, ']', (size_t)(e - p));
        p = rb ? rb + 1 : e;
    }
    colon = memchr(p, ':', (size_t)(e - p));
    *auth_end = e;
    *port_at = colon ? colon + 1 : NULL;
    return 0;
}

/* The same URL with its default port removed or added, malloc'd; NULL when there is no
 * such variant (another port, another scheme) or no memory. */
static char *url_port_variant(const char *url)
{
    const char *end, *port;
    if (url_authority(url, &end, &port) < 0) {
        return NULL;
    }
    const char *dflt = NULL;
    if (strncasecmp(url, "https://", 8) == 0) {
        dflt = "443";
    } else if (strncasecmp(url, "http://", 7) == 0) {
        dflt = "80";
    } else {
        return NULL;
    }
    size_t ul = strlen(url), dl = strlen(dflt);
    char *v = malloc(ul + dl + 2);
    if (v == NULL) {
        return NULL;
    }
    if (port != NULL) {
        if ((size_t)(end - port) != dl || memcmp(port, dflt, dl) != 0) {
            free(v);
            return NULL;
        }
        size_t head = (size_t)(port - 1 - url);
        memcpy(v, url, head);
        memcpy(v + head, end, ul - (size_t)(end - url) + 1);
        return v;
    }
    size_t head = (size_t)(end - url);
    memcpy(v, url, head);
    v[head] = ':';
    memcpy(v + head + 1, dflt, dl);
    memcpy(v + head + 1 + dl, end, ul - head + 1);
    return v;
}

/* The value of the first bodySHA256 in URL's query into OUT (CAP bytes); -1 if absent. */
static int query_body_hash(const char *url, char *out, size_t cap)
{
    const char *q = strchr(url, '?');
    if (q == NULL) {
        return -1;
    }
    for (const char *p = q + 1;;) {
        size_t seg = strcspn(p, "&#");
        if (seg >= 11 && memcmp(p, "bodySHA256=", 11) == 0) {
            size_t vl = seg - 11;
            if (vl >= cap) {
                vl = cap - 1; /* too long to be a hash: compared and refused */
            }
            memcpy(out, p + 11, vl);
            out[vl] = '\0';
            return 0;
        }
        p += seg;
        if (*p != '&') {
            break;
        }
        p++;
    }
    return -1;
}

static int sig_matches(const char *token, const char *url, const vb_form_t *params,
                       const char *header, size_t hlen)
{
    char sig[64];
    if (url == NULL) {
        return 0;
    }
    int rc = vb_twilio_sign(token, url, params, sig);
    if (rc < 0) {
        return rc; /* not a mismatch: the signature could not be computed */
    }
    return hlen == VB_TWILIO_SIG_LEN && CRYPTO_memcmp(sig, header, hlen) == 0;
}

/* For a JSON body (no params): 1 if the URL's bodySHA256 matches BODY, else 0. */
static int body_hash_ok(const char *url, const char *body, size_t body_len)
{
    char want[72], have[65];
    if (query_body_hash(url, want, sizeof(want)) < 0) {
        return body_len == 0; /* an unsigned body may not pass */
    }
    vb_twilio_body_sha256(body, body_len, have);
    for (char *p = want; *p; p++) {
        if (*p >= 'A' && *p <= 'F') {
            *p = (char)(*p - 'A' + 'a');
        }
    }
    return strlen(want) == 64 && CRYPTO_memcmp(want, have, 64) == 0;
}

int vb_twilio_validate(const char *token, const char *url, const vb_form_t *params,
                       const char *body, size_t body_len, const char *signature_header)
{
    if (token == NULL || token[0] == '\0' || url == NULL || signature_header == NULL) {
        return 0;
    }
    size_t hlen = strlen(signature_header);
    if (hlen == 0) {
        return 0;
    }
    if (params == NULL && !body_hash_ok(url, body, body_len)) {
        return 0;
    }
    int ok = sig_matches(token, url, params, signature_header, hlen);
    if (ok == 0) {
        char *alt = url_port_variant(url);
        ok = sig_matches(token, alt, params, signature_header, hlen);
        free(alt);
    }
    return ok;
}

/* Appends S XML-escaped at OUT+*O. Control characters XML 1.0 does not allow are dropped.
 * Returns -1 when it does not fit (leaving room for the NUL). */
static int xml_escape(const char *s, char *out, size_t cap, size_t *o)
{
    for (const unsigned char *p = (const unsigned char *)s; *p; p++) {
        const char *rep = NULL;
        char one[2] = {(char)*p, '\0'};
        switch (*p) {
        case '&':
            rep = "&amp;";
            break;
        case '<':
            rep = "&lt;";
            break;
        case '>':
            rep = "&gt;";
            break;
        case '"':
            rep = "&quot;";
            break;
        case '\'':
            rep = "&apos;";
            break;
        default:
            rep = (*p < 0x20 && *p != '\t' && *p != '\n' && *p != '\r') ? "" : one;
        }
        size_t rl = strlen(rep);
        if (*o + rl >= cap) {
            return -1;
        }
        memcpy(out + *o, rep, rl);
        *o += rl;
    }
    return 0;
}

static int append(const char *s, char *out, size_t cap, size_t *o)
{
    size_t l = strlen(s);
    if (*o + l >= cap) {
        return -1;
    }
    memcpy(out + *o, s, l);
    *o += l;
    return 0;
}

#define TWIML_HEAD "<?xml version=\"1.0\" encoding=\"UTF-8\"?><Response>"

size_t vb_twiml_connect_stream_params(char *out, size_t cap, const char *stream_url,
                                      const char *const *names, const char *const *values,
                                      size_t n)
{
    size_t o = 0;
    if (cap == 0 || append(TWIML_HEAD "<Connect><Stream url=\"", out, cap, &o) < 0 ||
        xml_escape(stream_url, out, cap, &o) < 0 ||
        append(n > 0 ? "\">" : "\"/></Connect></Response>", out, cap, &o) < 0) {
        return 0;
    }
    if (n == 0) { /* as Twilio's helper libraries write it */
        out[o] = '\0';
        return o;
    }
    for (size_t i = 0; i < n; i++) {
        if (append("<Parameter name=\"", out, cap, &o) < 0 ||
            xml_escape(names[i], out, cap, &o) < 0 || append("\" value=\"", out, cap, &o) < 0 ||
            xml_escape(values[i] ? values[i] : "", out, cap, &o) < 0 ||
            append("\"/>", out, cap, &o) < 0) {
            return 0;
        }
    }
    if (append("</Stream></Connect></Response>", out, cap, &o) < 0) {
        return 0;
    }
    out[o] = '\0';
    return o;
}

size_t vb_twiml_connect_stream(char *out, size_t cap, const char *stream_url,
                               const char *call_id)
{
    const char *name = "call_id";
    return vb_twiml_connect_stream_params(out, cap, stream_url, &name, &call_id, 1);
}

size_t vb_twiml_say_hangup(char *out, size_t cap, const char *text)
{
    size_t o = 0;
    if (cap == 0 || append(TWIML_HEAD "<Say>", out, cap, &o) < 0 ||
        xml_escape(text, out, cap, &o) < 0 ||
        append("</Say><Hangup/></Response>", out, cap, &o) < 0) {
        return 0;
    }
    out[o] = '\0';
    return o;
}
