/* Twilio Media Streams messages: see mstream.h. Runs in the media worker (and callsim).
 *
 * Parsing happens in two steps. A walker fills a "view": for each field we care about
 * (a fixed tree of paths such as start.mediaFormat.encoding) its JSON type and value,
 * last duplicate key winning as in jansson. Then one function checks the view and fills
 * the message. There are two walkers over the same tree: a hand-written validating JSON
 * scanner that allocates nothing and copies nothing it need not (the one vb_ms_parse
 * uses), and one over a jansson tree (vb_ms_parse_jansson), kept as the reference that
 * the fuzz target compares against. The scanner accepts every document jansson accepts
 * (nesting up to MAX_DEPTH), and rejects the same bad UTF-8, control characters, lone
 * surrogates and \u0000; unlike jansson it does not range-check numbers in fields it
 * ignores. */
#include "worker/mstream.h"

#include <errno.h>
#include <stdbool.h>
#include <stdio.h>
#include <string.h>

#include <jansson.h>

#include "common/base64.h"
#include "common/stats.h"

#define MAX_DEPTH 64
#define SLOT_LEN 64 /* decoded escaped strings of small fields; longer is "too long" */
#define B64_MAX VB_BASE64_ENCLEN(VB_MS_MAX_PAYLOAD)

/* ---- the field tree ------------------------------------------------------------------ */

/* clang-format off */
enum {
    F_EVENT, F_SEQ, F_SID,
    F_START, F_S_ACCOUNT, F_S_CALL, F_S_STREAM, F_S_TRACKS, F_S_PARAMS, F_S_CALLID,
    F_S_FORMAT, F_S_ENC, F_S_RATE, F_S_CHANNELS,
    F_MEDIA, F_M_TRACK, F_M_CHUNK, F_M_TS, F_M_PAYLOAD,
    F_MARK, F_MK_NAME,
    F_DTMF, F_D_DIGIT,
    F_STOP, F_P_ACCOUNT, F_P_CALL,
    F__COUNT
};
/* clang-format on */

typedef struct ms_field {
    const char *key;
    unsigned char keylen;
    unsigned char id;
    const struct ms_field *kids; /* for objects whose fields we read */
} ms_field_t;

#define FIELD(k, id, kids)                                                                     \
    {                                                                                          \
        k, sizeof(k) - 1, id, kids                                                             \
    }
#define FIELD_END                                                                              \
    {                                                                                          \
        NULL, 0, 0, NULL                                                                       \
    }

/* clang-format off */
static const ms_field_t params_kids[] = {FIELD("call_id", F_S_CALLID, NULL), FIELD_END};
static const ms_field_t format_kids[] = {
    FIELD("encoding", F_S_ENC, NULL), FIELD("sampleRate", F_S_RATE, NULL),
    FIELD("channels", F_S_CHANNELS, NULL), FIELD_END};
static const ms_field_t start_kids[] = {
    FIELD("accountSid", F_S_ACCOUNT, NULL),   FIELD("callSid", F_S_CALL, NULL),
    FIELD("streamSid", F_S_STREAM, NULL),     FIELD("tracks", F_S_TRACKS, NULL),
    FIELD("customParameters", F_S_PARAMS, params_kids),
    FIELD("mediaFormat", F_S_FORMAT, format_kids), FIELD_END};
static const ms_field_t media_kids[] = {
    FIELD("track", F_M_TRACK, NULL), FIELD("chunk", F_M_CHUNK, NULL),
    FIELD("timestamp", F_M_TS, NULL), FIELD("payload", F_M_PAYLOAD, NULL), FIELD_END};
static const ms_field_t mark_kids[] = {FIELD("name", F_MK_NAME, NULL), FIELD_END};
static const ms_field_t dtmf_kids[] = {FIELD("digit", F_D_DIGIT, NULL), FIELD_END};
static const ms_field_t stop_kids[] = {
    FIELD("accountSid", F_P_ACCOUNT, NULL), FIELD("callSid", F_P_CALL, NULL), FIELD_END};
static const ms_field_t top_kids[] = {
    FIELD("event", F_EVENT, NULL),       FIELD("sequenceNumber", F_SEQ, NULL),
    FIELD("streamSid", F_SID, NULL),     FIELD("start", F_START, start_kids),
    FIELD("media", F_MEDIA, media_kids), FIELD("mark", F_MARK, mark_kids),
    FIELD("dtmf", F_DTMF, dtmf_kids),    FIELD("stop", F_STOP, stop_kids), FIELD_END};
/* clang-format on */

/* ---- the view ------------------------------------------------------------------------ */

typedef enum { T_NONE, T_STR, T_INT, T_REAL, T_OBJ, T_ARR, T_OTHER } ms_type_t;

typedef struct {
    ms_type_t type;
    const char *s; /* T_STR: not NUL-terminated */
    size_t len;    /* T_STR: SIZE_MAX when too long to keep (then s is "") */
    long long i;   /* T_INT */
    bool int_ok;   /* T_INT: fits in a long long */
} ms_val_t;

typedef struct {
    ms_val_t v[F__COUNT];
    bool tracks_inbound; /* start.tracks holds "inbound" */
} ms_view_t;

static void view_clear_kids(ms_view_t *vw, const ms_field_t *kids)
{
    for (; kids && kids->key; kids++) {
        vw->v[kids->id].type = T_NONE;
        if (kids->id == F_S_TRACKS) {
            vw->tracks_inbound = false;
        }
        view_clear_kids(vw, kids->kids);
    }
}

static bool val_is(const ms_val_t *v, const char *lit)
{
    size_t l = strlen(lit);
    return v->type == T_STR && v->len == l && memcmp(v->s, lit, l) == 0;
}

/* ---- from the view to the message ----------------------------------------------------- */

/* Copies a string field into DST (CAP with the NUL). Absent: "" when optional. */
static int take_str(const ms_val_t *v, char *dst, size_t cap, bool required)
{
    if (v->type == T_NONE && !required) {
        dst[0] = '\0';
        return 0;
    }
    if (v->type != T_STR || v->len >= cap) {
        return -VB_MS_EFIELD;
    }
    memcpy(dst, v->s, v->len);
    dst[v->len] = '\0';
    return 0;
}

/* A uint32 as a decimal string of 1-10 digits or as a JSON integer; absent is 0. */
static int take_u32(const ms_val_t *v, uint32_t *dst)
{
    uint64_t x = 0;
    if (v->type == T_NONE) {
        *dst = 0;
        return 0;
    }
    if (v->type == T_INT) {
        if (!v->int_ok || v->i < 0 || v->i > (long long)UINT32_MAX) {
            return -VB_MS_EFIELD;
        }
        *dst = (uint32_t)v->i;
        return 0;
    }
    if (v->type != T_STR || v->len == 0 || v->len > 10) {
        return -VB_MS_EFIELD;
    }
    for (size_t i = 0; i < v->len; i++) {
        if (v->s[i] < '0' || v->s[i] > '9') {
            return -VB_MS_EFIELD;
        }
        x = x * 10 + (uint64_t)(v->s[i] - '0');
    }
    if (x > UINT32_MAX) {
        return -VB_MS_EFIELD;
    }
    *dst = (uint32_t)x;
    return 0;
}

static bool int_is(const ms_val_t *v, long long want)
{
    return v->type == T_INT && v->int_ok && v->i == want;
}

static int msg_start(const ms_view_t *vw, vb_ms_msg_t *out)
{
    const ms_val_t *v = vw->v;
    if (v[F_START].type != T_OBJ) {
        return -VB_MS_EFIELD;
    }
    int rc = take_str(&v[F_S_ACCOUNT], out->account_sid, sizeof(out->account_sid), true);
    if (rc == 0) {
        rc = take_str(&v[F_S_CALL], out->call_sid, sizeof(out->call_sid), true);
    }
    if (rc == 0 && v[F_S_STREAM].type != T_NONE) {
        rc = take_str(&v[F_S_STREAM], out->stream_sid, sizeof(out->stream_sid), true);
    }
    if (rc == 0 && out->stream_sid[0] == '\0') {
        rc = -VB_MS_EFIELD;
    }
    if (rc == 0 && v[F_S_PARAMS].type != T_NONE && v[F_S_PARAMS].type != T_OBJ) {
        rc = -VB_MS_EFIELD;
    }
    if (rc == 0) {
        rc = take_str(&v[F_S_CALLID], out->call_id, sizeof(out->call_id), false);
    }
    if (rc == 0 && v[F_S_TRACKS].type != T_NONE && v[F_S_TRACKS].type != T_ARR) {
        rc = -VB_MS_EFIELD;
    }
    if (rc < 0) {
        return rc;
    }
    out->track_inbound = v[F_S_TRACKS].type == T_NONE || vw->tracks_inbound;
    if (v[F_S_FORMAT].type != T_OBJ || !val_is(&v[F_S_ENC], "audio/x-mulaw") ||
        !int_is(&v[F_S_RATE], 8000) || !int_is(&v[F_S_CHANNELS], 1)) {
        return -VB_MS_EFORMAT;
    }
    return 0;
}

static int msg_media(const ms_view_t *vw, vb_ms_msg_t *out)
{
    const ms_val_t *v = vw->v;
    if (v[F_MEDIA].type != T_OBJ) {
        return -VB_MS_EFIELD;
    }
    const ms_val_t *track = &v[F_M_TRACK];
    if (track->type == T_NONE || val_is(track, "inbound")) {
        out->track_inbound = 1;
    } else if (val_is(track, "outbound")) {
        out->track_inbound = 0;
    } else {
        return -VB_MS_EFIELD;
    }
    if (take_u32(&v[F_M_CHUNK], &out->chunk) < 0 ||
        take_u32(&v[F_M_TS], &out->timestamp_ms) < 0) {
        return -VB_MS_EFIELD;
    }
    const ms_val_t *p = &v[F_M_PAYLOAD];
    if (p->type != T_STR) {
        return -VB_MS_EFIELD;
    }
    if (p->len > B64_MAX) {
        return -VB_MS_ESIZE;
    }
    int rc =
        vb_base64_decode(p->s, p->len, out->payload, sizeof(out->payload), &out->payload_len);
    if (rc == -ENOSPC) {
        return -VB_MS_ESIZE;
    }
    if (rc < 0) {
        return -VB_MS_EBASE64;
    }
    return out->payload_len == 0 ? -VB_MS_ESIZE : 0;
}

static int msg_event(const ms_val_t *ev, vb_ms_event_t *e)
{
    static const struct {
        const char *name;
        vb_ms_event_t e;
    } names[] = {{"media", VB_MS_MEDIA}, {"mark", VB_MS_MARK}, {"start", VB_MS_START},
                 {"stop", VB_MS_STOP},   {"dtmf", VB_MS_DTMF}, {"connected", VB_MS_CONNECTED},
                 {"clear", VB_MS_CLEAR}};
    if (ev->type != T_STR) {
        return -VB_MS_EFIELD;
    }
    for (size_t i = 0; i < sizeof(names) / sizeof(names[0]); i++) {
        if (val_is(ev, names[i].name)) {
            *e = names[i].e;
            return 0;
        }
    }
    return -VB_MS_EUNKNOWN;
}

static void msg_reset(vb_ms_msg_t *out)
{
    out->stream_sid[0] = out->call_sid[0] = out->account_sid[0] = '\0';
    out->call_id[0] = out->mark_name[0] = out->digit[0] = '\0';
    out->seq = out->chunk = out->timestamp_ms = 0;
    out->track_inbound = 0;
    out->payload_len = 0;
}

static int msg_from_view(const ms_view_t *vw, vb_ms_msg_t *out)
{
    const ms_val_t *v = vw->v;
    msg_reset(out);
    int rc = msg_event(&v[F_EVENT], &out->event);
    if (rc == 0) {
        rc = take_u32(&v[F_SEQ], &out->seq);
    }
    if (rc == 0) {
        rc = take_str(&v[F_SID], out->stream_sid, sizeof(out->stream_sid), false);
    }
    if (rc < 0) {
        return rc;
    }
    switch (out->event) {
    case VB_MS_START:
        return msg_start(vw, out);
    case VB_MS_MEDIA:
        return msg_media(vw, out);
    case VB_MS_MARK:
        return v[F_MARK].type != T_OBJ
                   ? -VB_MS_EFIELD
                   : take_str(&v[F_MK_NAME], out->mark_name, sizeof(out->mark_name), true);
    case VB_MS_DTMF:
        if (v[F_DTMF].type != T_OBJ || v[F_D_DIGIT].type != T_STR || v[F_D_DIGIT].len == 0) {
            return -VB_MS_EFIELD;
        }
        return take_str(&v[F_D_DIGIT], out->digit, sizeof(out->digit), true);
    case VB_MS_STOP:
        if (v[F_STOP].type != T_NONE && v[F_STOP].type != T_OBJ) {
            return -VB_MS_EFIELD;
        }
        rc = take_str(&v[F_P_ACCOUNT], out->account_sid, sizeof(out->account_sid), false);
        return rc < 0 ? rc
                      : take_str(&v[F_P_CALL], out->call_sid, sizeof(out->call_sid), false);
    case VB_MS_CONNECTED:
    case VB_MS_CLEAR:
        return 0;
    }
    return -VB_MS_EUNKNOWN;
}

/* ---- the hand-written scanner ---------------------------------------------------------- */

typedef struct {
    const unsigned char *p, *end;
    int depth;
    ms_view_t *vw;
    char (*slots)[SLOT_LEN]; /* per field: decoded escaped strings */
    char *pbuf;              /* decoded escaped payload, B64_MAX + 1 bytes */
} jscan_t;

static void skip_ws(jscan_t *j)
{
    while (j->p < j->end && (*j->p == ' ' || *j->p == '\n' || *j->p == '\r' || *j->p == '\t')) {
        j->p++;
    }
}

static int hex4(const unsigned char *p)
{
    int v = 0;
    for (int i = 0; i < 4; i++) {
        int c = p[i], d;
        if (c >= '0' && c <= '9') {
            d = c - '0';
        } else if (c >= 'a' && c <= 'f') {
            d = c - 'a' + 10;
        } else if (c >= 'A' && c <= 'F') {
            d = c - 'A' + 10;
        } else {
            return -1;
        }
        v = v * 16 + d;
    }
    return v;
}

/* Length of the valid UTF-8 sequence at P (lead byte >= 0x80), or 0. */
static size_t utf8_len(const unsigned char *p, const unsigned char *end)
{
    unsigned char c = p[0];
    size_t n;
    unsigned char lo = 0x80, hi = 0xBF; /* allowed range of the second byte */
    if (c >= 0xC2 && c <= 0xDF) {
        n = 2;
    } else if (c >= 0xE0 && c <= 0xEF) {
        n = 3;
        lo = c == 0xE0 ? 0xA0 : 0x80;
        hi = c == 0xED ? 0x9F : 0xBF; /* no surrogates */
    } else if (c >= 0xF0 && c <= 0xF4) {
        n = 4;
        lo = c == 0xF0 ? 0x90 : 0x80;
        hi = c == 0xF4 ? 0x8F : 0xBF; /* nothing past U+10FFFF */
    } else {
        return 0;
    }
    if ((size_t)(end - p) < n || p[1] < lo || p[1] > hi) {
        return 0;
    }
    for (size_t i = 2; i < n; i++) {
        if ((p[i] & 0xC0) != 0x80) {
            return 0;
        }
    }
    return n;
}

/* A \uXXXX escape at P (pointing at the 'u'), with its low surrogate if it needs one.
 * Returns the code point and sets *USED to the bytes after the backslash, or -1. */
static long unicode_escape(const unsigned char *p, const unsigned char *end, size_t *used)
{
    if (end - p < 5) {
        return -1;
    }
    long cp = hex4(p + 1);
    *used = 5;
    if (cp <= 0 || (cp >= 0xDC00 && cp <= 0xDFFF)) {
        return -1; /* \u0000, a bad hex digit, or a lone low surrogate */
    }
    if (cp >= 0xD800 && cp <= 0xDBFF) {
        if (end - p < 11 || p[5] != '\\' || p[6] != 'u') {
            return -1;
        }
        long lo = hex4(p + 7);
        if (lo < 0xDC00 || lo > 0xDFFF) {
            return -1;
        }
        cp = 0x10000 + ((cp - 0xD800) << 10) + (lo - 0xDC00);
        *used = 11;
    }
    return cp;
}

/* Validates the string whose opening quote J->p is at; leaves J->p after the closing one.
 * *S and *LEN get the raw contents; *ESC whether it holds escapes. */
static int scan_string(jscan_t *j, const unsigned char **s, size_t *len, bool *esc)
{
    const unsigned char *p = j->p + 1, *end = j->end;
    *esc = false;
    *s = p;
    while (p < end) {
        unsigned char c = *p;
        if (c == '"') {
            *len = (size_t)(p - *s);
            j->p = p + 1;
            return 0;
        }
        if (c < 0x20) {
            return -VB_MS_EBADJSON;
        }
        if (c == '\\') {
            *esc = true;
            if (p + 1 >= end) {
                return -VB_MS_EBADJSON;
            }
            size_t used = 1;
            if (p[1] == 'u') {
                if (unicode_escape(p + 1, end, &used) < 0) {
                    return -VB_MS_EBADJSON;
                }
            } else if (!strchr("\"\\/bfnrt", p[1]) || p[1] == '\0') {
                return -VB_MS_EBADJSON;
            }
            p += 1 + used;
        } else if (c >= 0x80) {
            size_t n = utf8_len(p, end);
            if (n == 0) {
                return -VB_MS_EBADJSON;
            }
            p += n;
        } else {
            p++;
        }
    }
    return -VB_MS_EBADJSON;
}

static size_t put_utf8(long cp, char *o)
{
    if (cp < 0x80) {
        o[0] = (char)cp;
        return 1;
    }
    if (cp < 0x800) {
        o[0] = (char)(0xC0 | (cp >> 6));
        o[1] = (char)(0x80 | (cp & 0x3F));
        return 2;
    }
    if (cp < 0x10000) {
        o[0] = (char)(0xE0 | (cp >> 12));
        o[1] = (char)(0x80 | ((cp >> 6) & 0x3F));
        o[2] = (char)(0x80 | (cp & 0x3F));
        return 3;
    }
    o[0] = (char)(0xF0 | (cp >> 18));
    o[1] = (char)(0x80 | ((cp >> 12) & 0x3F));
    o[2] = (char)(0x80 | ((cp >> 6) & 0x3F));
    o[3] = (char)(0x80 | (cp & 0x3F));
    return 4;
}

/* Decodes a validated raw string with escapes into OUT (CAP bytes); SIZE_MAX when the
 * result would not fit. */
static size_t unescape(const unsigned char *s, size_t len, char *out, size_t cap)
{
    static const char from[] = "\"\\/bfnrt", to[] = "\"\\/\b\f\n\r\t";
    const unsigned char *p = s, *end = s + len;
    size_t o = 0;
    while (p < end) {
        char tmp[4];
        size_t n = 1, used = 1;
        if (*p != '\\') {
            tmp[0] = (char)*p;
        } else if (p[1] == 'u') {
            n = put_utf8(unicode_escape(p + 1, end, &used), tmp);
            used++;
        } else {
            tmp[0] = to[strchr(from, p[1]) - from];
            used = 2;
        }
        if (o + n > cap) {
            return SIZE_MAX;
        }
        memcpy(out + o, tmp, n);
        o += n;
        p += used;
    }
    return o;
}

static int scan_value(jscan_t *j, const ms_field_t *f);

/* Stores a string value for field F into the view. */
static void store_string(jscan_t *j, const ms_field_t *f, const unsigned char *s, size_t len,
                         bool esc)
{
    ms_val_t *v = &j->vw->v[f->id];
    v->type = T_STR;
    v->s = (const char *)s;
    v->len = len;
    if (esc) {
        char *buf = f->id == F_M_PAYLOAD ? j->pbuf : j->slots[f->id];
        size_t cap = f->id == F_M_PAYLOAD ? B64_MAX + 1 : SLOT_LEN;
        v->len = unescape(s, len, buf, cap);
        v->s = v->len == SIZE_MAX ? "" : buf;
    }
}

static const ms_field_t *find_kid(const ms_field_t *kids, const unsigned char *k, size_t kl,
                                  bool esc)
{
    char tmp[SLOT_LEN];
    if (kids == NULL) {
        return NULL;
    }
    if (esc) {
        kl = unescape(k, kl, tmp, sizeof(tmp));
        if (kl == SIZE_MAX) {
            return NULL;
        }
        k = (const unsigned char *)tmp;
    }
    for (; kids->key; kids++) {
        if (kids->keylen == kl && memcmp(kids->key, k, kl) == 0) {
            return kids;
        }
    }
    return NULL;
}

/* An object; KIDS are the fields of it that we read (NULL: none). */
static int scan_object(jscan_t *j, const ms_field_t *kids)
{
    j->p++; /* '{' */
    skip_ws(j);
    if (j->p < j->end && *j->p == '}') {
        j->p++;
        return 0;
    }
    for (;;) {
        const unsigned char *k;
        size_t kl;
        bool esc;
        if (j->p >= j->end || *j->p != '"' || scan_string(j, &k, &kl, &esc) < 0) {
            return -VB_MS_EBADJSON;
        }
        skip_ws(j);
        if (j->p >= j->end || *j->p != ':') {
            return -VB_MS_EBADJSON;
        }
        j->p++;
        int rc = scan_value(j, find_kid(kids, k, kl, esc));
        if (rc < 0) {
            return rc;
        }
        skip_ws(j);
        if (j->p < j->end && *j->p == ',') {
            j->p++;
            skip_ws(j);
            continue;
        }
        if (j->p < j->end && *j->p == '}') {
            j->p++;
            return 0;
        }
        return -VB_MS_EBADJSON;
    }
}

/* An array; F is the field it is the value of (start.tracks is read), or NULL. */
static int scan_array(jscan_t *j, const ms_field_t *f)
{
    j->p++; /* '[' */
    skip_ws(j);
    if (j->p < j->end && *j->p == ']') {
        j->p++;
        return 0;
    }
    for (;;) {
        skip_ws(j);
        const unsigned char *before = j->p;
        int rc = scan_value(j, NULL);
        if (rc < 0) {
            return rc;
        }
        if (f != NULL && f->id == F_S_TRACKS && *before == '"') {
            const unsigned char *s;
            size_t len;
            bool esc;
            jscan_t again = *j;
            again.p = before;
            scan_string(&again, &s, &len, &esc);
            char tmp[SLOT_LEN];
            if (esc) {
                len = unescape(s, len, tmp, sizeof(tmp));
                s = (const unsigned char *)tmp;
            }
            if (len == 7 && memcmp(s, "inbound", 7) == 0) {
                j->vw->tracks_inbound = true;
            }
        }
        skip_ws(j);
        if (j->p < j->end && *j->p == ',') {
            j->p++;
            continue;
        }
        if (j->p < j->end && *j->p == ']') {
            j->p++;
            return 0;
        }
        return -VB_MS_EBADJSON;
    }
}

static bool is_digit(const jscan_t *j)
{
    return j->p < j->end && *j->p >= '0' && *j->p <= '9';
}

/* The integer part of a number: digits at [S, E). Sets *OK when it fits in 63 bits plus
 * the sign (the magnitude 2^63 only fits negative). */
static unsigned long long int_magnitude(const unsigned char *s, const unsigned char *e,
                                        bool *ok)
{
    unsigned long long mag = 0;
    *ok = true;
    for (; s < e; s++) {
        unsigned digit = (unsigned)(*s - '0');
        if (mag > (9223372036854775808ULL - digit) / 10) {
            *ok = false;
            return 0;
        }
        mag = mag * 10 + digit;
    }
    return mag;
}

static void skip_digits(jscan_t *j)
{
    while (is_digit(j)) {
        j->p++;
    }
}

/* A number, with the grammar of RFC 8259. Integers are converted for field V. */
static int scan_number(jscan_t *j, ms_val_t *v)
{
    bool neg = false, real = false;
    if (*j->p == '-') {
        neg = true;
        j->p++;
    }
    const unsigned char *digits = j->p;
    if (!is_digit(j)) {
        return -VB_MS_EBADJSON;
    }
    if (*j->p == '0') {
        j->p++;
        if (is_digit(j)) {
            return -VB_MS_EBADJSON; /* no leading zeros */
        }
    } else {
        skip_digits(j);
    }
    const unsigned char *digits_end = j->p;
    if (j->p < j->end && *j->p == '.') {
        j->p++;
        if (!is_digit(j)) {
            return -VB_MS_EBADJSON;
        }
        skip_digits(j);
        real = true;
    }
    if (j->p < j->end && (*j->p == 'e' || *j->p == 'E')) {
        j->p++;
        if (j->p < j->end && (*j->p == '+' || *j->p == '-')) {
            j->p++;
        }
        if (!is_digit(j)) {
            return -VB_MS_EBADJSON;
        }
        skip_digits(j);
        real = true;
    }
    if (v != NULL) {
        bool ok;
        unsigned long long mag = int_magnitude(digits, digits_end, &ok);
        v->type = real ? T_REAL : T_INT;
        v->int_ok = ok && (neg || mag <= 9223372036854775807ULL);
        v->i = neg ? (long long)(0 - mag) : (long long)mag;
    }
    return 0;
}

static int scan_literal(jscan_t *j)
{
    static const char *const lits[] = {"true", "false", "null"};
    for (int i = 0; i < 3; i++) {
        size_t l = strlen(lits[i]);
        if ((size_t)(j->end - j->p) >= l && memcmp(j->p, lits[i], l) == 0) {
            j->p += l;
            return 0;
        }
    }
    return -VB_MS_EBADJSON;
}

/* Any value; F is the field it belongs to, or NULL for one we skip (still validated). */
static int scan_value(jscan_t *j, const ms_field_t *f)
{
    skip_ws(j);
    if (j->p >= j->end) {
        return -VB_MS_EBADJSON;
    }
    ms_val_t *v = f ? &j->vw->v[f->id] : NULL;
    if (f != NULL) {
        view_clear_kids(j->vw, f->kids); /* a later duplicate key replaces the whole value */
        if (f->id == F_S_TRACKS) {
            j->vw->tracks_inbound = false;
        }
        v->type = T_OTHER;
    }
    unsigned char c = *j->p;
    int rc;
    if (c == '{' || c == '[') {
        if (++j->depth > MAX_DEPTH) {
            return -VB_MS_EBADJSON;
        }
        rc = c == '{' ? scan_object(j, f ? f->kids : NULL) : scan_array(j, f);
        j->depth--;
        if (v != NULL) {
            v->type = c == '{' ? T_OBJ : T_ARR;
        }
        return rc;
    }
    if (c == '"') {
        const unsigned char *s;
        size_t len;
        bool esc;
        rc = scan_string(j, &s, &len, &esc);
        if (rc == 0 && f != NULL) {
            store_string(j, f, s, len, esc);
        }
        return rc;
    }
    if (c == '-' || (c >= '0' && c <= '9')) {
        return scan_number(j, v);
    }
    return scan_literal(j);
}

int vb_ms_parse(const char *json, size_t len, vb_ms_msg_t *out)
{
    ms_view_t vw;
    char slots[F__COUNT][SLOT_LEN];
    char pbuf[B64_MAX + 1];
    for (int i = 0; i < F__COUNT; i++) {
        vw.v[i].type = T_NONE;
    }
    vw.tracks_inbound = false;
    jscan_t j = {
        (const unsigned char *)json, (const unsigned char *)json + len, 0, &vw, slots, pbuf};
    skip_ws(&j);
    if (j.p >= j.end || (*j.p != '{' && *j.p != '[')) {
        return -VB_MS_EBADJSON; /* jansson too wants an object or an array */
    }
    bool object = *j.p == '{';
    static const ms_field_t root = {"", 0, F__COUNT, top_kids};
    j.depth = 1;
    int rc = object ? scan_object(&j, root.kids) : scan_array(&j, NULL);
    if (rc < 0) {
        return rc;
    }
    skip_ws(&j);
    if (j.p != j.end) {
        return -VB_MS_EBADJSON;
    }
    return object ? msg_from_view(&vw, out) : -VB_MS_EFIELD;
}

/* ---- the jansson walker ------------------------------------------------------------------ */

static void jval(ms_view_t *vw, const ms_field_t *f, json_t *x);

static void jwalk(ms_view_t *vw, const ms_field_t *kids, json_t *obj)
{
    for (; kids && kids->key; kids++) {
        json_t *x = json_object_get(obj, kids->key);
        if (x != NULL) {
            jval(vw, kids, x);
        }
    }
}

static void jval(ms_view_t *vw, const ms_field_t *f, json_t *x)
{
    ms_val_t *v = &vw->v[f->id];
    v->type = T_OTHER;
    if (json_is_string(x)) {
        v->type = T_STR;
        v->s = json_string_value(x);
        v->len = json_string_length(x);
    } else if (json_is_integer(x)) {
        v->type = T_INT;
        v->i = json_integer_value(x);
        v->int_ok = true;
    } else if (json_is_real(x)) {
        v->type = T_REAL;
    } else if (json_is_object(x)) {
        v->type = T_OBJ;
        jwalk(vw, f->kids, x);
    } else if (json_is_array(x)) {
        v->type = T_ARR;
        for (size_t i = 0; f->id == F_S_TRACKS && i < json_array_size(x); i++) {
            const char *t = json_string_value(json_array_get(x, i));
            if (t != NULL && strcmp(t, "inbound") == 0) {
                vw->tracks_inbound = true;
            }
        }
    }
}

int vb_ms_parse_jansson(const char *json, size_t len, vb_ms_msg_t *out)
{
    json_error_t err;
    json_t *root = json_loadb(json, len, 0, &err);
    if (root == NULL) {
        return -VB_MS_EBADJSON;
    }
    int rc = -VB_MS_EFIELD;
    if (json_is_object(root)) {
        ms_view_t vw;
        memset(&vw, 0, sizeof(vw));
        jwalk(&vw, top_kids, root);
        rc = msg_from_view(&vw, out);
    }
    json_decref(root);
    return rc;
}

/* ---- counting ------------------------------------------------------------------------------
 */

void vb_ms_count_error(int rc)
{
    switch (rc) {
    case -VB_MS_EBADJSON:
        VB_STAT_INC(mstream_bad_json);
        break;
    case -VB_MS_EBASE64:
        VB_STAT_INC(mstream_bad_base64);
        break;
    case -VB_MS_EUNKNOWN:
        VB_STAT_INC(mstream_unknown_events);
        break;
    case -VB_MS_ESIZE:
        VB_STAT_INC(mstream_bad_frames);
        break;
    default:
        break;
    }
}

const char *vb_ms_strerror(int rc)
{
    switch (rc) {
    case 0:
        return "ok";
    case -VB_MS_EBADJSON:
        return "not valid JSON";
    case -VB_MS_EBASE64:
        return "payload is not valid base64";
    case -VB_MS_EUNKNOWN:
        return "unknown event";
    case -VB_MS_EFIELD:
        return "missing or invalid field";
    case -VB_MS_EFORMAT:
        return "media format is not audio/x-mulaw 8000 Hz mono";
    case -VB_MS_ESIZE:
        return "payload size out of range";
    default:
        return "unknown error";
    }
}

/* ---- builders ------------------------------------------------------------------------------
 */

typedef struct {
    char *out;
    size_t cap, o;
    bool full;
} jw_t;

static void jw_raw(jw_t *w, const char *s, size_t n)
{
    if (w->full || w->o + n >= w->cap) {
        w->full = true;
        return;
    }
    memcpy(w->out + w->o, s, n);
    w->o += n;
}

static void jw_lit(jw_t *w, const char *s)
{
    jw_raw(w, s, strlen(s));
}

/* A JSON string: quotes, backslashes and control characters escaped. */
static void jw_str(jw_t *w, const char *s)
{
    static const char hex[] = "0123456789abcdef";
    jw_raw(w, "\"", 1);
    for (const unsigned char *p = (const unsigned char *)s; *p; p++) {
        const unsigned char *run = p;
        while (*p >= 0x20 && *p != '"' && *p != '\\') {
            p++;
        }
        jw_raw(w, (const char *)run, (size_t)(p - run));
        if (*p == '\0') {
            break;
        }
        char esc[6] = {'\\', (char)*p, 0, 0, 0, 0};
        if (*p < 0x20) {
            esc[1] = 'u';
            esc[2] = esc[3] = '0';
            esc[4] = hex[*p >> 4];
            esc[5] = hex[*p & 15];
        }
        jw_raw(w, esc, *p < 0x20 ? 6 : 2);
    }
    jw_raw(w, "\"", 1);
}

static void jw_u32str(jw_t *w, uint32_t v)
{
    char tmp[16];
    int n = snprintf(tmp, sizeof(tmp), "\"%u\"", v);
    jw_raw(w, tmp, (size_t)n);
}

static void jw_b64(jw_t *w, const uint8_t *in, size_t n)
{
    size_t need = VB_BASE64_ENCLEN(n);
    if (w->full || w->o + need + 2 >= w->cap) {
        w->full = true;
        return;
    }
    w->out[w->o++] = '"';
    w->o += vb_base64_encode(in, n, w->out + w->o);
    w->out[w->o++] = '"';
}

/* Writes the NUL; returns the length, or 0 if anything did not fit. */
static size_t jw_end(jw_t *w)
{
    if (w->full || w->o >= w->cap) {
        if (w->cap > 0) {
            w->out[0] = '\0';
        }
        return 0;
    }
    w->out[w->o] = '\0';
    return w->o;
}

/* {"event":"NAME","sequenceNumber":"SEQ","streamSid":"SID" -- the common head. */
static void jw_head(jw_t *w, const char *event, const uint32_t *seq, const char *sid)
{
    jw_lit(w, "{\"event\":");
    jw_str(w, event);
    if (seq != NULL) {
        jw_lit(w, ",\"sequenceNumber\":");
        jw_u32str(w, *seq);
    }
    if (sid != NULL) {
        jw_lit(w, ",\"streamSid\":");
        jw_str(w, sid);
    }
}

size_t vb_ms_build_media(char *out, size_t cap, const char *stream_sid, const uint8_t *ulaw,
                         size_t n)
{
    jw_t w = {out, cap, 0, false};
    jw_head(&w, "media", NULL, stream_sid);
    jw_lit(&w, ",\"media\":{\"payload\":");
    jw_b64(&w, ulaw, n);
    jw_lit(&w, "}}");
    return jw_end(&w);
}

size_t vb_ms_build_mark(char *out, size_t cap, const char *stream_sid, const char *name)
{
    jw_t w = {out, cap, 0, false};
    jw_head(&w, "mark", NULL, stream_sid);
    jw_lit(&w, ",\"mark\":{\"name\":");
    jw_str(&w, name);
    jw_lit(&w, "}}");
    return jw_end(&w);
}

size_t vb_ms_build_clear(char *out, size_t cap, const char *stream_sid)
{
    jw_t w = {out, cap, 0, false};
    jw_head(&w, "clear", NULL, stream_sid);
    jw_lit(&w, "}");
    return jw_end(&w);
}

size_t vb_ms_build_connected(char *out, size_t cap)
{
    jw_t w = {out, cap, 0, false};
    jw_lit(&w, "{\"event\":\"connected\",\"protocol\":\"Call\",\"version\":\"1.0.0\"}");
    return jw_end(&w);
}

size_t vb_ms_build_start(char *out, size_t cap, uint32_t seq, const char *stream_sid,
                         const char *account_sid, const char *call_sid, const char *call_id)
{
    jw_t w = {out, cap, 0, false};
    jw_head(&w, "start", &seq, NULL);
    jw_lit(&w, ",\"start\":{\"accountSid\":");
    jw_str(&w, account_sid);
    jw_lit(&w, ",\"streamSid\":");
    jw_str(&w, stream_sid);
    jw_lit(&w, ",\"callSid\":");
    jw_str(&w, call_sid);
    jw_lit(&w, ",\"tracks\":[\"inbound\"],\"customParameters\":{\"call_id\":");
    jw_str(&w, call_id);
    jw_lit(&w, "},\"mediaFormat\":{\"encoding\":\"audio/x-mulaw\",\"sampleRate\":8000,"
               "\"channels\":1}},\"streamSid\":");
    jw_str(&w, stream_sid);
    jw_lit(&w, "}");
    return jw_end(&w);
}

size_t vb_ms_build_media_in(char *out, size_t cap, uint32_t seq, const char *stream_sid,
                            uint32_t chunk, uint32_t timestamp_ms, const uint8_t *ulaw,
                            size_t n)
{
    jw_t w = {out, cap, 0, false};
    jw_head(&w, "media", &seq, NULL);
    jw_lit(&w, ",\"media\":{\"track\":\"inbound\",\"chunk\":");
    jw_u32str(&w, chunk);
    jw_lit(&w, ",\"timestamp\":");
    jw_u32str(&w, timestamp_ms);
    jw_lit(&w, ",\"payload\":");
    jw_b64(&w, ulaw, n);
    jw_lit(&w, "},\"streamSid\":");
    jw_str(&w, stream_sid);
    jw_lit(&w, "}");
    return jw_end(&w);
}

size_t vb_ms_build_mark_in(char *out, size_t cap, uint32_t seq, const char *stream_sid,
                           const char *name)
{
    jw_t w = {out, cap, 0, false};
    jw_head(&w, "mark", &seq, stream_sid);
    jw_lit(&w, ",\"mark\":{\"name\":");
    jw_str(&w, name);
    jw_lit(&w, "}}");
    return jw_end(&w);
}

size_t vb_ms_build_dtmf(char *out, size_t cap, uint32_t seq, const char *stream_sid,
                        const char *digit)
{
    jw_t w = {out, cap, 0, false};
    jw_head(&w, "dtmf", &seq, stream_sid);
    jw_lit(&w, ",\"dtmf\":{\"track\":\"inbound_track\",\"digit\":");
    jw_str(&w, digit);
    jw_lit(&w, "}}");
    return jw_end(&w);
}

size_t vb_ms_build_stop(char *out, size_t cap, uint32_t seq, const char *stream_sid,
                        const char *account_sid, const char *call_sid)
{
    jw_t w = {out, cap, 0, false};
    jw_head(&w, "stop", &seq, NULL);
    jw_lit(&w, ",\"stop\":{\"accountSid\":");
    jw_str(&w, account_sid);
    jw_lit(&w, ",\"callSid\":");
    jw_str(&w, call_sid);
    jw_lit(&w, "},\"streamSid\":");
    jw_str(&w, stream_sid);
    jw_lit(&w, "}");
    return jw_end(&w);
}
