/* Form bodies: see form.h. Runs in the api workers, the broker and callsim.
 *
 * A parsed set is one allocation for the struct and the parameter array, plus one buffer
 * holding every decoded name and value; parameters added later own their strings. */
#include "api/form.h"
#include "common/http.h"

#include <errno.h>
#include <stdint.h>
#include <stdlib.h>
#include <string.h>

typedef struct {
    char *name;
    char *value;
    int owned; /* added by vb_form_add: name and value are one malloc'd block */
} form_param_t;

struct vb_form {
    size_t n, cap;
    form_param_t *p;
    char *buf; /* decoded strings of a parsed body */
};

/* Decodes S[0..N) into OUT and NUL-terminates it. Returns the bytes written or -EINVAL. */
static long decode_component(const char *s, size_t n, char *out)
{
    size_t o = 0;
    for (size_t i = 0; i < n; i++) {
        unsigned char c = (unsigned char)s[i];
        if (c == '+') {
            c = ' ';
        } else if (c == '%') {
            if (i + 2 >= n) { /* a '%' needs two characters after it */
                return -EINVAL;
            }
            int hi = vb_hex_value((unsigned char)s[i + 1]), lo = vb_hex_value((unsigned char)s[i + 2]);
            if (hi < 0 || lo < 0 || (hi == 0 && lo == 0)) {
                return -EINVAL;
            }
            c = (unsigned char)(hi * 16 + lo);
            i += 2;
        } else if (c == '\0') {
            return -EINVAL;
        }
        out[o++] = (char)c;
    }
    out[o] = '\0';
    return (long)o;
}

static int grow(vb_form_t *f)
{
    if (f->n < f->cap) {
        return 0;
    }
    if (f->n >= VB_FORM_MAX_PARAMS) {
        return -E2BIG;
    }
    size_t ncap = f->cap ? f->cap * 2 : 16;
    if (ncap > VB_FORM_MAX_PARAMS) {
        ncap = VB_FORM_MAX_PARAMS;
    }
    form_param_t *np = realloc(f->p, ncap * sizeof(*np));
    if (np == NULL) {
        return -ENOMEM;
    }
    f->p = np;
    f->cap = ncap;
    return 0;
}

vb_form_t *vb_form_new(void)
{
    vb_form_t *f = calloc(1, sizeof(*f));
    if (f == NULL) {
        errno = ENOMEM;
    }
    return f;
}

/* One "name[=value]" segment of LEN bytes: decode it into *BUFP and append it. */
static int parse_segment(vb_form_t *f, const char *seg, size_t len, char **bufp)
{
    const char *eq = memchr(seg, '=', len);
    size_t nlen = eq ? (size_t)(eq - seg) : len;
    int rc = grow(f);
    if (rc < 0) {
        return rc;
    }
    char *name = *bufp;
    long k = decode_component(seg, nlen, name);
    if (k < 0) {
        return (int)k;
    }
    char *value = name + k + 1;
    long v = 0;
    if (eq != NULL) {
        v = decode_component(eq + 1, len - nlen - 1, value);
    } else {
        value[0] = '\0';
    }
    if (v < 0) {
        return (int)v;
    }
    *bufp = value + v + 1;
    f->p[f->n++] = (form_param_t){.name = name, .value = value, .owned = 0};
    return 0;
}

vb_form_t *vb_form_parse(const char *body, size_t len)
{
    vb_form_t *f = vb_form_new();
    if (f == NULL) {
        return NULL;
    }
    /* Each segment decodes to at most its own length plus two NULs (one '=' saved). */
    f->buf = malloc(len * 2 + 2);
    if (f->buf == NULL) {
        vb_form_free(f);
        errno = ENOMEM;
        return NULL;
    }
    char *bufp = f->buf;
    size_t i = 0;
    while (i < len) {
        const char *amp = memchr(body + i, '&', len - i);
        size_t seglen = amp ? (size_t)(amp - (body + i)) : len - i;
        if (seglen > 0) {
            int rc = parse_segment(f, body + i, seglen, &bufp);
            if (rc < 0) {
                vb_form_free(f);
                errno = -rc;
                return NULL;
            }
        }
        i += seglen + 1;
    }
    return f;
}

int vb_form_add(vb_form_t *f, const char *name, const char *value)
{
    int rc = grow(f);
    if (rc < 0) {
        return rc;
    }
    size_t nl = strlen(name), vl = strlen(value);
    char *block = malloc(nl + vl + 2);
    if (block == NULL) {
        return -ENOMEM;
    }
    memcpy(block, name, nl + 1);
    memcpy(block + nl + 1, value, vl + 1);
    f->p[f->n++] = (form_param_t){.name = block, .value = block + nl + 1, .owned = 1};
    return 0;
}

void vb_form_free(vb_form_t *f)
{
    if (f == NULL) {
        return;
    }
    for (size_t i = 0; i < f->n; i++) {
        if (f->p[i].owned) {
            free(f->p[i].name);
        }
    }
    free(f->p);
    free(f->buf);
    free(f);
}

const char *vb_form_get(const vb_form_t *f, const char *name)
{
    for (size_t i = 0; i < f->n; i++) {
        if (strcmp(f->p[i].name, name) == 0) {
            return f->p[i].value;
        }
    }
    return NULL;
}

size_t vb_form_count(const vb_form_t *f)
{
    return f->n;
}

const char *vb_form_name(const vb_form_t *f, size_t i)
{
    return i < f->n ? f->p[i].name : NULL;
}

const char *vb_form_value(const vb_form_t *f, size_t i)
{
    return i < f->n ? f->p[i].value : NULL;
}

/* Appends S percent-encoded at OUT+*O; returns -1 when CAP would be reached. */
static int encode_component(const char *s, char *out, size_t cap, size_t *o)
{
    static const char hex[] = "0123456789ABCDEF";
    for (const unsigned char *p = (const unsigned char *)s; *p; p++) {
        unsigned char c = *p;
        int plain = (c >= 'a' && c <= 'z') || (c >= 'A' && c <= 'Z') ||
                    (c >= '0' && c <= '9') || c == '-' || c == '.' || c == '_' || c == '~';
        size_t need = plain ? 1 : 3;
        if (*o + need >= cap) {
            return -1;
        }
        if (plain) {
            out[(*o)++] = (char)c;
        } else {
            out[(*o)++] = '%';
            out[(*o)++] = hex[c >> 4];
            out[(*o)++] = hex[c & 15];
        }
    }
    return 0;
}

size_t vb_form_encode(const vb_form_t *f, char *out, size_t cap)
{
    size_t o = 0;
    if (cap == 0 || f->n == 0) {
        return 0;
    }
    for (size_t i = 0; i < f->n; i++) {
        if (i > 0) {
            if (o + 1 >= cap) {
                return 0;
            }
            out[o++] = '&';
        }
        if (encode_component(f->p[i].name, out, cap, &o) < 0 || o + 1 >= cap) {
            return 0;
        }
        out[o++] = '=';
        if (encode_component(f->p[i].value, out, cap, &o) < 0) {
            return 0;
        }
    }
    out[o] = '\0';
    return o;
}
