/* The intents of a `local` assistant: what callers ask (patterns) and what the
 * assistant answers (reply, and whether that ends the call), parsed from the
 * assistant's intents_json, and the matcher that picks the intent of a caller
 * line. Deterministic, no I/O. Run by the AI broker (local engine and local
 * STT, which builds its grammar from the patterns). */
#ifndef VB_BROKER_INTENTS_H
#define VB_BROKER_INTENTS_H

#include <stddef.h>

#define VB_INTENT_NAME_MAX 64
#define VB_INTENT_TEXT_MAX 512       /* longest pattern or reply kept; longer ones are cut */
#define VB_INTENTS_MAX_PATTERNS 1024 /* over all intents of an assistant */

/* Word-overlap score (0..1) a caller line must reach to match an intent when
 * no pattern appears in it as a whole phrase. */
#define VB_INTENT_MIN_SCORE 0.6

typedef struct {
    char name[VB_INTENT_NAME_MAX];
    char **patterns; /* normalised (see vb_intents_normalise), none empty */
    size_t npatterns;
    char *reply; /* as written, for the voice */
    int end_call;
} vb_intent_t;

typedef struct vb_intents vb_intents_t;

typedef struct {
    const vb_intent_t *intent; /* NULL: nothing matched */
    double score; /* 1.0 exact, 0.9..1 phrase found inside the line, else overlap */
    int exact;    /* 1: the whole line is a pattern */
} vb_intent_match_t;

/* Parse a JSON array [{"name":..,"patterns":[..],"reply":..,"end_call":false}, ...].
 * An empty string or "[]" gives an empty set. NULL + errno EINVAL (with the reason
 * in err) on bad JSON or a bad entry, ENOMEM on allocation failure. */
vb_intents_t *vb_intents_parse(const char *json, char *err, size_t errlen);
void vb_intents_free(vb_intents_t *in);

size_t vb_intents_count(const vb_intents_t *in);
const vb_intent_t *vb_intents_get(const vb_intents_t *in, size_t i);
/* By name; NULL when there is none. */
const vb_intent_t *vb_intents_find(const vb_intents_t *in, const char *name);

/* Best intent for a caller line: a pattern equal to the normalised line first,
 * then the longest pattern found inside it as whole words, then the best
 * weighted word overlap (filler words count less) of at least
 * VB_INTENT_MIN_SCORE. Returns 1 when an intent matched, 0 otherwise (out->intent
 * is NULL then, out->score the best score seen). */
int vb_intents_match(const vb_intents_t *in, const char *line, vb_intent_match_t *out);

/* Lower-case ASCII letters and digits and inner apostrophes; every other byte
 * separates words; single spaces, no leading or trailing space. Writes at most
 * cap - 1 bytes and a NUL, cutting at a word boundary; returns the length. */
size_t vb_intents_normalise(const char *in, char *out, size_t cap);

#endif
