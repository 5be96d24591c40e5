/* Intents of a `local` assistant and the caller-line matcher (see intents.h).
 * Run by the AI broker, on its event loop (matching one line costs microseconds)
 * and on the local STT thread (reading the patterns, which never change once
 * parsed). */
#include "broker/intents.h"

#include <ctype.h>
#include <errno.h>
#include <jansson.h>
#include <stdarg.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#define MAX_WORDS 96       /* words of a line or pattern considered */
#define FILLER_WEIGHT 0.25 /* weight of a filler word in the overlap score */
#define PHRASE_SCORE 0.9   /* floor of a match by a pattern found inside the line */

struct vb_intents {
    vb_intent_t *v;
    size_t n;
};

/* Words that carry little of what the caller wants. Sorted for bsearch. */
static const char *const fillers[] = {
    "a",  "am",   "an",     "and",   "are",  "at",    "be",    "can", "could", "did",
    "do", "does", "for",    "hello", "hi",   "i",     "i'd",   "i'm", "in",    "is",
    "it", "it's", "just",   "me",    "my",   "of",    "oh",    "ok",  "okay",  "on",
    "or", "our",  "please", "so",    "the",  "there", "this",  "to",  "uh",    "um",
    "us", "was",  "we",     "well",  "will", "with",  "would", "you", "your",
};

static void set_err(char *err, size_t errlen, const char *fmt, ...)
{
    if (err != NULL && errlen > 0) {
        va_list ap;
        va_start(ap, fmt);
        vsnprintf(err, errlen, fmt, ap);
        va_end(ap);
    }
}

static int word_char(unsigned char ch)
{
    return isascii(ch) && isalnum(ch);
}

size_t vb_intents_normalise(const char *in, char *out, size_t cap)
{
    size_t n = 0, word_start = 0;
    if (cap == 0) {
        return 0;
    }
    for (const unsigned char *p = (const unsigned char *)in; *p != '\0'; p++) {
        int keep = word_char(*p) || (*p == '\'' && n > word_start && word_char(p[1]));
        if (keep) {
            if (n == word_start && n > 0) {
                if (n + 1 >= cap) {
                    break;
                }
                out[n++] = ' ';
                word_start = n;
            }
            if (n + 1 >= cap) {
                n = word_start > 0 ? word_start - 1 : 0; /* cut at the word boundary */
                break;
            }
            out[n++] = (char)tolower(*p);
        } else if (n > word_start) {
            word_start = n; /* the next kept byte starts a new word */
        }
    }
    out[n] = '\0';
    return n;
}

static int cmp_str(const void *a, const void *b)
{
    return strcmp(*(const char *const *)a, *(const char *const *)b);
}

static double word_weight(const char *w)
{
    const char *key = w;
    size_t n = sizeof(fillers) / sizeof(fillers[0]);
    return bsearch(&key, fillers, n, sizeof(fillers[0]), cmp_str) ? FILLER_WEIGHT : 1.0;
}

/* Splits S (normalised, modified in place) into at most MAX_WORDS distinct words. */
static size_t split_unique(char *s, char *words[MAX_WORDS])
{
    size_t n = 0;
    for (char *save = NULL, *w = strtok_r(s, " ", &save); w && n < MAX_WORDS;
         w = strtok_r(NULL, " ", &save)) {
        size_t i = 0;
        while (i < n && strcmp(words[i], w) != 0) {
            i++;
        }
        if (i == n) {
            words[n++] = w;
        }
    }
    return n;
}

static size_t count_words(const char *s)
{
    size_t n = *s ? 1 : 0;
    for (; *s; s++) {
        n += *s == ' ';
    }
    return n;
}

/* Weighted Dice coefficient of the word sets of LINE and PATTERN. */
static double overlap(char *const line_words[], size_t nl, const char *pattern)
{
    char buf[VB_INTENT_TEXT_MAX];
    char *pw[MAX_WORDS];
    snprintf(buf, sizeof(buf), "%s", pattern);
    size_t np = split_unique(buf, pw);
    double wl = 0, wp = 0, common = 0;
    for (size_t i = 0; i < nl; i++) {
        wl += word_weight(line_words[i]);
    }
    for (size_t j = 0; j < np; j++) {
        double w = word_weight(pw[j]);
        wp += w;
        for (size_t i = 0; i < nl; i++) {
            if (strcmp(line_words[i], pw[j]) == 0) {
                common += w;
                break;
            }
        }
    }
    return wl + wp > 0 ? 2.0 * common / (wl + wp) : 0.0;
}

/* 1.0 when LINE is PATTERN; PHRASE_SCORE.. when PATTERN occurs in it as whole words;
 * else 0. SPACED is " line ". */
static double phrase_score(const char *line, const char *spaced, size_t line_words,
                           const char *pattern)
{
    if (strcmp(line, pattern) == 0) {
        return 1.0;
    }
    size_t pl = strlen(pattern);
    for (const char *p = strstr(spaced, pattern); p != NULL; p = strstr(p + 1, pattern)) {
        if (p[-1] == ' ' && p[pl] == ' ') {
            return PHRASE_SCORE + (1.0 - PHRASE_SCORE) * (double)count_words(pattern) /
                                      (double)(line_words + 1);
        }
    }
    return 0.0;
}

static void consider(vb_intent_match_t *best, const vb_intent_t *it, double score)
{
    if (score > best->score) {
        best->score = score;
        best->intent = it;
        best->exact = score >= 1.0;
    }
}

int vb_intents_match(const vb_intents_t *in, const char *line, vb_intent_match_t *out)
{
    char norm[VB_INTENT_TEXT_MAX], spaced[VB_INTENT_TEXT_MAX + 2],
        words_buf[VB_INTENT_TEXT_MAX];
    char *words[MAX_WORDS];
    vb_intent_match_t best = {NULL, 0.0, 0};
    vb_intents_normalise(line, norm, sizeof(norm));
    snprintf(spaced, sizeof(spaced), " %s ", norm);
    snprintf(words_buf, sizeof(words_buf), "%s", norm);
    size_t nw = split_unique(words_buf, words);
    size_t total_words = count_words(norm);
    for (size_t i = 0; in != NULL && nw > 0 && i < in->n; i++) {
        const vb_intent_t *it = &in->v[i];
        for (size_t j = 0; j < it->npatterns; j++) {
            double s = phrase_score(norm, spaced, total_words, it->patterns[j]);
            consider(&best, it, s > 0 ? s : overlap(words, nw, it->patterns[j]));
        }
    }
    if (best.score < VB_INTENT_MIN_SCORE) {
        best.intent = NULL;
    }
    *out = best;
    return best.intent != NULL;
}

/* ---- parsing ------------------------------------------------------------- */

static void intent_clear(vb_intent_t *it)
{
    for (size_t j = 0; j < it->npatterns; j++) {
        free(it->patterns[j]);
    }
    free(it->patterns);
    free(it->reply);
}

void vb_intents_free(vb_intents_t *in)
{
    if (in == NULL) {
        return;
    }
    for (size_t i = 0; i < in->n; i++) {
        intent_clear(&in->v[i]);
    }
    free(in->v);
    free(in);
}

static int parse_patterns(vb_intent_t *it, json_t *pats, size_t *total, char *err,
                          size_t errlen)
{
    it->patterns = calloc(json_array_size(pats) + 1, sizeof(char *));
    if (it->patterns == NULL) {
        return -ENOMEM;
    }
    for (size_t k = 0; k < json_array_size(pats); k++) {
        json_t *p = json_array_get(pats, k);
        char norm[VB_INTENT_TEXT_MAX];
        if (!json_is_string(p)) {
            set_err(err, errlen, "intent '%s': patterns must be strings", it->name);
            return -EINVAL;
        }
        if (vb_intents_normalise(json_string_value(p), norm, sizeof(norm)) == 0) {
            continue; /* nothing a caller could say */
        }
        if (++*total > VB_INTENTS_MAX_PATTERNS) {
            set_err(err, errlen, "more than %d patterns", VB_INTENTS_MAX_PATTERNS);
            return -EINVAL;
        }
        if ((it->patterns[it->npatterns] = strdup(norm)) == NULL) {
            return -ENOMEM;
        }
        it->npatterns++;
    }
    return 0;
}

static int parse_one(vb_intent_t *it, json_t *o, size_t idx, size_t *total, char *err,
                     size_t errlen)
{
    json_t *name = json_object_get(o, "name"), *pats = json_object_get(o, "patterns");
    json_t *reply = json_object_get(o, "reply"), *end = json_object_get(o, "end_call");
    if (!json_is_object(o) || !json_is_string(name) || !json_is_array(pats) ||
        (reply != NULL && !json_is_string(reply)) || (end != NULL && !json_is_boolean(end))) {
        set_err(err, errlen,
                "intent %zu: needs a string name, an array of patterns, "
                "a string reply and a boolean end_call",
                idx);
        return -EINVAL;
    }
    if (json_string_length(name) == 0 || json_string_length(name) >= sizeof(it->name)) {
        set_err(err, errlen, "intent %zu: the name must be 1 to %zu bytes", idx,
                sizeof(it->name) - 1);
        return -EINVAL;
    }
    snprintf(it->name, sizeof(it->name), "%s", json_string_value(name));
    it->end_call = end != NULL && json_is_true(end);
    char cut[VB_INTENT_TEXT_MAX];
    snprintf(cut, sizeof(cut), "%s", reply ? json_string_value(reply) : "");
    if ((it->reply = strdup(cut)) == NULL) {
        return -ENOMEM;
    }
    return parse_patterns(it, pats, total, err, errlen);
}

static int parse_all(vb_intents_t *in, json_t *root, char *err, size_t errlen)
{
    size_t total = 0;
    if (!json_is_array(root)) {
        set_err(err, errlen, "intents must be a JSON array");
        return -EINVAL;
    }
    in->v = calloc(json_array_size(root) + 1, sizeof(*in->v));
    if (in->v == NULL) {
        return -ENOMEM;
    }
    for (size_t i = 0; i < json_array_size(root); i++) {
        in->n = i + 1; /* so that a failure frees what this entry holds */
        int rc = parse_one(&in->v[i], json_array_get(root, i), i, &total, err, errlen);
        if (rc < 0) {
            return rc;
        }
    }
    return 0;
}

vb_intents_t *vb_intents_parse(const char *json, char *err, size_t errlen)
{
    vb_intents_t *in = calloc(1, sizeof(*in));
    if (in == NULL) {
        errno = ENOMEM;
        return NULL;
    }
    if (json == NULL || json[strspn(json, " \t\r\n")] == '\0') {
        return in;
    }
    json_error_t jerr;
    json_t *root = json_loads(json, JSON_REJECT_DUPLICATES, &jerr);
    if (root == NULL) {
        set_err(err, errlen, "intents JSON, line %d: %s", jerr.line, jerr.text);
        vb_intents_free(in);
        errno = EINVAL;
        return NULL;
    }
    int rc = parse_all(in, root, err, errlen);
    json_decref(root);
    if (rc < 0) {
        vb_intents_free(in);
        errno = -rc;
        return NULL;
    }
    return in;
}

size_t vb_intents_count(const vb_intents_t *in)
{
    return in ? in->n : 0;
}

const vb_intent_t *vb_intents_get(const vb_intents_t *in, size_t i)
{
    return in && i < in->n ? &in->v[i] : NULL;
}

const vb_intent_t *vb_intents_find(const vb_intents_t *in, const char *name)
{
    for (size_t i = 0; in != NULL && name != NULL && i < in->n; i++) {
        if (strcmp(in->v[i].name, name) == 0) {
            return &in->v[i];
        }
    }
    return NULL;
}
