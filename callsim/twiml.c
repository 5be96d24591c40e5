/* voxbridge-callsim: TwiML reader (see twiml.h). */
#include "callsim/twiml.h"

#include <errno.h>
#include <stdio.h>
#include <string.h>

typedef struct {
    const char *p, *end;
    int depth; /* elements open inside <Response> */
    int in_response;
    int in_connect; /* depth of <Connect>, 0 when outside */
    int in_stream;
    int in_say;
    int saw_response;
} scan_t;

/* Copies the XML text S..E into OUT (CAP), replacing the five predefined entities and
 * numeric character references below 128; others are kept as written. */
static void unescape(const char *s, const char *e, char *out, size_t cap)
{
    static const struct {
        const char *ent;
        char c;
    } ents[] = {
        {"&amp;", '&'}, {"&lt;", '<'}, {"&gt;", '>'}, {"&quot;", '"'}, {"&apos;", '\''}};
    size_t n = 0;
    while (s < e && n + 1 < cap) {
        char c = *s;
        size_t adv = 1;
        for (size_t i = 0; c == '&' && i < sizeof(ents) / sizeof(ents[0]); i++) {
            size_t l = strlen(ents[i].ent);
            if ((size_t)(e - s) >= l && memcmp(s, ents[i].ent, l) == 0) {
                c = ents[i].c;
                adv = l;
            }
        }
        unsigned code;
        int used = 0;
        if (adv == 1 && c == '&' && sscanf(s, "&#%u;%n", &code, &used) == 1 && used > 0 &&
            code > 0 && code < 128 && s + used <= e) {
            c = (char)code;
            adv = (size_t)used;
        }
        out[n++] = c;
        s += adv;
    }
    out[n] = '\0';
}

/* Finds attribute NAME in the tag text S..E; copies its unescaped value. 1 if found. */
static int attr(const char *s, const char *e, const char *name, char *out, size_t cap)
{
    size_t l = strlen(name);
    for (const char *p = s; p + l + 2 < e; p++) {
        if ((p == s || p[-1] == ' ' || p[-1] == '\t' || p[-1] == '\n' || p[-1] == '\r') &&
            memcmp(p, name, l) == 0) {
            const char *q = p + l;
            while (q < e && (*q == ' ' || *q == '\t')) {
                q++;
            }
            if (q >= e || *q != '=') {
                continue;
            }
            q++;
            while (q < e && (*q == ' ' || *q == '\t')) {
                q++;
            }
            if (q >= e || (*q != '"' && *q != '\'')) {
                continue;
            }
            const char *v = q + 1, *ve = memchr(v, *q, (size_t)(e - v));
            if (ve == NULL) {
                return 0;
            }
            unescape(v, ve, out, cap);
            return 1;
        }
    }
    return 0;
}

static int is_name(const char *s, size_t n, const char *name)
{
    return strlen(name) == n && memcmp(s, name, n) == 0;
}

static void append(char *dst, size_t cap, const char *src)
{
    size_t n = strlen(dst);
    snprintf(dst + n, cap - n, "%s%s", n ? " " : "", src);
}

static void open_stream(scan_t *sc, const char *a, const char *e, vb_cs_twiml_t *out)
{
    if (sc->in_connect) {
        out->kind = VB_CS_TWIML_STREAM;
        if (!attr(a, e, "url", out->url, sizeof(out->url))) {
            out->url[0] = '\0';
        }
        sc->in_stream = 1;
    }
}

static void add_param(const char *a, const char *e, vb_cs_twiml_t *out)
{
    if (out->nparams >= VB_CS_TWIML_MAX_PARAMS) {
        return;
    }
    vb_cs_twiml_param_t *p = &out->params[out->nparams];
    if (attr(a, e, "name", p->name, sizeof(p->name))) {
        if (!attr(a, e, "value", p->value, sizeof(p->value))) {
            p->value[0] = '\0';
        }
        out->nparams++;
    }
}

/* An opening (or empty-element) tag NAME with attribute text A..E. */
static void on_open(scan_t *sc, const char *name, size_t nl, const char *a, const char *e,
                    int empty, vb_cs_twiml_t *out)
{
    if (!sc->in_response) {
        if (is_name(name, nl, "Response")) {
            sc->saw_response = 1;
            sc->in_response = !empty;
        }
        return;
    }
    if (sc->depth == 0) {
        char verb[32];
        snprintf(verb, sizeof(verb), "%.*s", (int)(nl < 31 ? nl : 31), name);
        append(out->verbs, sizeof(out->verbs), verb);
        sc->in_connect = is_name(name, nl, "Connect") && !empty;
        sc->in_say = is_name(name, nl, "Say") && !empty;
    } else if (is_name(name, nl, "Stream")) {
        open_stream(sc, a, e, out);
    } else if (is_name(name, nl, "Parameter") && sc->in_stream) {
        add_param(a, e, out);
    }
    if (!empty) {
        sc->depth++;
    }
    if (empty && is_name(name, nl, "Stream")) {
        sc->in_stream = 0;
    }
}

static void on_close(scan_t *sc, const char *name, size_t nl)
{
    if (sc->depth == 0) {
        sc->in_response = !is_name(name, nl, "Response") && sc->in_response;
        return;
    }
    sc->depth--;
    if (is_name(name, nl, "Stream")) {
        sc->in_stream = 0;
    }
    if (sc->depth == 0) {
        sc->in_connect = 0;
        sc->in_say = 0;
    }
}

/* One markup item starting at sc->p (which points at '<'); returns -EINVAL if broken. */
static int scan_tag(scan_t *sc, vb_cs_twiml_t *out)
{
    const char *p = sc->p + 1;
    const char *gt = memchr(p, '>', (size_t)(sc->end - p));
    if (gt == NULL) {
        return -EINVAL;
    }
    if (*p == '?' || *p == '!') { /* declaration, comment (without '>' inside), CDATA-less */
        sc->p = gt + 1;
        return 0;
    }
    int closing = *p == '/';
    p += closing;
    const char *n = p;
    while (p < gt && *p != ' ' && *p != '\t' && *p != '\n' && *p != '\r' && *p != '/') {
        p++;
    }
    int empty = gt[-1] == '/';
    if (closing) {
        on_close(sc, n, (size_t)(p - n));
    } else {
        on_open(sc, n, (size_t)(p - n), p, empty ? gt - 1 : gt, empty, out);
    }
    sc->p = gt + 1;
    return 0;
}

static void scan_text(scan_t *sc, vb_cs_twiml_t *out)
{
    const char *lt = memchr(sc->p, '<', (size_t)(sc->end - sc->p));
    const char *e = lt ? lt : sc->end;
    if (sc->in_say) {
        char text[512];
        unescape(sc->p, e, text, sizeof(text));
        append(out->say, sizeof(out->say), text);
    }
    sc->p = e;
}

int vb_cs_twiml_parse(const char *xml, size_t len, vb_cs_twiml_t *out)
{
    memset(out, 0, sizeof(*out));
    out->kind = VB_CS_TWIML_HANGUP;
    scan_t sc = {.p = xml, .end = xml + len};
    while (sc.p < sc.end) {
        if (*sc.p == '<') {
            if (scan_tag(&sc, out) < 0) {
                return -EINVAL;
            }
        } else {
            scan_text(&sc, out);
        }
    }
    if (!sc.saw_response || (out->kind == VB_CS_TWIML_STREAM && out->url[0] == '\0')) {
        return -EINVAL;
    }
    return 0;
}

const char *vb_cs_twiml_param(const vb_cs_twiml_t *t, const char *name)
{
    for (int i = 0; i < t->nparams; i++) {
        if (strcmp(t->params[i].name, name) == 0) {
            return t->params[i].value;
        }
    }
    return NULL;
}
