/* The `local` speech-to-text (see stt_local.h): endpointing on the broker's
 * event loop, pocketsphinx decoding on one recognition thread per vb_stt_t.
 *
 * Threads: the loop calls vb_stt_feed/poll/stream_new/stream_free; the thread
 * (rec_main) owns the dictionary, the decoder pool, the open language model
 * and each stream's decoding state. One mutex guards the work list, the streams'
 * frame queues and result queues and the counters; the thread never holds it
 * while decoding. A stream is always freed by the thread (the loop only marks
 * it released), so the loop never touches a decoder. */
#include "broker/stt_local.h"

#include "broker/intents.h"
#include "common/clock.h"
#include "common/log.h"

#include <errno.h>
#include <pocketsphinx.h>
#include <pthread.h>
#include <signal.h>
#include <sphinxbase/err.h>
#include <sphinxbase/jsgf.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <time.h>
#include <unistd.h>

#define FRAME_MS 20
#define QUEUE_FRAMES (VB_STT_QUEUE_MS / FRAME_MS)
#define QUEUE_CAP (QUEUE_FRAMES + 8) /* markers always fit */
#define PREROLL_FRAMES (VB_STT_PREROLL_MS / FRAME_MS)
#define MIN_VOICED (VB_STT_MIN_VOICED_MS / FRAME_MS)
#define MAX_UTT_FRAMES (VB_STT_MAX_UTT_MS / FRAME_MS)
#define RAW_SAMPLES ((MAX_UTT_FRAMES + PREROLL_FRAMES + 8) * VB_FRAME_SAMPLES)
#define RESULTS_MAX 4
#define BATCH 16
#define POOL_IDLE_MAX 6    /* idle decoders kept for the next utterances */
#define DEC_GRAMMARS_MAX 8 /* assistants' grammars one decoder keeps */
/* Uniform white noise of 0.01 full scale (sox "vol 0.01"), before the high-pass. */
#define NOISE_AMPLITUDE 328.0
#define NS_PER_10MS 10000000ull

/* Frequent words of phone English for the garbage loop, beside the phrases' own. */
static const char *const loop_words[] = {
    "a",    "about", "after",   "all",   "am",    "an",    "and",  "any",    "are",    "at",
    "back", "be",    "because", "but",   "by",    "call",  "can",  "could",  "day",    "did",
    "do",   "does",  "don't",   "for",   "from",  "get",   "go",   "good",   "got",    "had",
    "has",  "have",  "he",      "hello", "help",  "her",   "here", "hi",     "his",    "how",
    "i",    "i'm",   "if",      "in",    "is",    "it",    "just", "know",   "like",   "look",
    "make", "me",    "more",    "my",    "need",  "no",    "not",  "now",    "of",     "oh",
    "ok",   "okay",  "on",      "one",   "or",    "our",   "out",  "please", "right",  "say",
    "see",  "she",   "so",      "some",  "sorry", "sure",  "tell", "thank",  "thanks", "that",
    "the",  "them",  "then",    "there", "they",  "think", "this", "time",   "to",     "today",
    "two",  "uh",    "um",      "up",    "us",    "want",  "was",  "we",     "well",   "what",
    "when", "where", "which",   "who",   "why",   "will",  "with", "would",  "yeah",   "yes",
    "you",  "your",
};

enum { IT_FRAME, IT_START, IT_END, IT_ABORT };

typedef struct {
    uint8_t kind;
    uint32_t voiced;         /* END: voiced frames of the utterance */
    uint64_t t_ns;           /* FRAME: capture time; START/END: see below */
    uint64_t first_voice_ns; /* END */
    uint64_t last_voice_ns;  /* END */
    int16_t pcm[VB_FRAME_SAMPLES];
} item_t;

typedef struct grammar {
    uint64_t key;
    char *jsgf;
    char **phrases; /* as in the grammar (words the dictionary lacks left out), sorted */
    size_t nphrases;
    char **words; /* the vocabulary: the phrases' words and loop_words, sorted */
    size_t nwords;
} grammar_t;

typedef struct dec {
    struct dec *next;
    ps_decoder_t *ps;
    cmd_ln_t *cfg;
    uint64_t keys[DEC_GRAMMARS_MAX]; /* grammars it has searches for, oldest first */
    int nkeys;
    uint64_t last_stream; /* id of the stream it decoded for last (0: none) */
} dec_t;

typedef struct {
    uint32_t rng;
    float z[2][2];
} noise_t;

struct vb_stt_stream {
    vb_stt_t *stt;
    vb_stt_notify_fn notify;
    void *arg;
    /* mutex */
    vb_stt_stream_t *work_next;
    int queued, busy, dead, prepare;
    item_t *q;
    uint32_t q_head, q_tail;
    uint64_t dropped;
    vb_stt_result_t res[RESULTS_MAX];
    uint32_t r_head, r_tail;
    /* immutable after creation */
    char **phrases;
    size_t nphrases;
    uint64_t key;
    uint64_t id;
    /* loop thread only: endpointing */
    vb_audio_frame_t preroll[PREROLL_FRAMES];
    uint32_t pre_n, pre_pos;
    int in_utt;
    uint32_t utt_frames, voiced, silence_run, end_silence_frames;
    uint64_t first_voice_ns, last_voice_ns;
    /* recognition thread only */
    grammar_t *g;
    dec_t *dec; /* the decoder of the utterance in progress */
    int utt_open;
    uint64_t utt_t0; /* capture time of the start of the first frame fed */
    noise_t noise;
};

typedef struct {
    char *buf;
    struct dict_entry {
        const char *word, *phones;
    } * e;
    size_t n;
} cmudict_t;

struct vb_stt {
    pthread_t thread;
    pthread_mutex_t mu;
    pthread_cond_t cv;
    int stop;
    vb_stt_opts_t opts;
    char model_dir[256];
    vb_stt_stream_t *work_head, *work_tail;
    uint64_t next_stream_id;
    vb_stt_stats_t stats;
    /* thread only */
    cmudict_t dict;
    dec_t *idle; /* most recently used first */
    ps_decoder_t *lm;
    cmd_ln_t *lm_cfg;
    item_t batch[BATCH];
    int16_t noisy[VB_FRAME_SAMPLES];
};

/* ---- the pronunciation dictionary (read-only after load) ------------------- */

static int cmp_entry(const void *a, const void *b)
{
    return strcmp(((const struct dict_entry *)a)->word, ((const struct dict_entry *)b)->word);
}

static int dict_index(cmudict_t *d, size_t len)
{
    size_t cap = 1;
    for (size_t i = 0; i < len; i++) {
        cap += d->buf[i] == '\n';
    }
    if ((d->e = calloc(cap, sizeof(*d->e))) == NULL) {
        return -ENOMEM;
    }
    for (char *save = NULL, *line = strtok_r(d->buf, "\n", &save); line != NULL;
         line = strtok_r(NULL, "\n", &save)) {
        char *sp = strchr(line, ' ');
        if (sp == NULL || d->n == cap) {
            continue;
        }
        *sp = '\0';
        d->e[d->n].word = line;
        d->e[d->n++].phones = sp + 1 + strspn(sp + 1, " ");
    }
    qsort(d->e, d->n, sizeof(*d->e), cmp_entry);
    return 0;
}

static int dict_load(cmudict_t *d, const char *path)
{
    FILE *f = fopen(path, "r");
    if (f == NULL) {
        int rc = -errno;
        vb_log(VB_LOG_ERR, "local stt: cannot read the dictionary %s: %s", path, strerror(-rc));
        return rc;
    }
    fseek(f, 0, SEEK_END);
    long len = ftell(f);
    rewind(f);
    d->buf = len > 0 ? malloc((size_t)len + 1) : NULL;
    if (d->buf == NULL || fread(d->buf, 1, (size_t)len, f) != (size_t)len) {
        fclose(f);
        vb_log(VB_LOG_ERR, "local stt: cannot load the dictionary %s", path);
        return -EIO;
    }
    fclose(f);
    d->buf[len] = '\0';
    return dict_index(d, (size_t)len);
}

static const char *dict_phones(const cmudict_t *d, const char *word)
{
    struct dict_entry key = {word, NULL};
    const struct dict_entry *e = bsearch(&key, d->e, d->n, sizeof(*d->e), cmp_entry);
    return e ? e->phones : NULL;
}

static void dict_free(cmudict_t *d)
{
    free(d->e);
    free(d->buf);
    memset(d, 0, sizeof(*d));
}

/* ---- grammars (thread) ---------------------------------------------------------- */

typedef struct {
    char *p;
    size_t len, cap;
} sbuf_t;

static int sb_add(sbuf_t *b, const char *s)
{
    size_t n = strlen(s);
    if (b->len + n + 1 > b->cap) {
        size_t cap = b->cap ? b->cap * 2 : 1024;
        while (cap < b->len + n + 1) {
            cap *= 2;
        }
        char *p = realloc(b->p, cap);
        if (p == NULL) {
            return -ENOMEM;
        }
        b->p = p;
        b->cap = cap;
    }
    memcpy(b->p + b->len, s, n + 1);
    b->len += n;
    return 0;
}

static int cmp_str(const void *a, const void *b)
{
    return strcmp(*(char *const *)a, *(char *const *)b);
}

static int list_add(char ***v, size_t *n, size_t *cap, const char *w)
{
    if (*n == *cap) {
        size_t ncap = *cap ? *cap * 2 : 64;
        char **nv = realloc(*v, ncap * sizeof(*nv));
        if (nv == NULL) {
            return -ENOMEM;
        }
        *v = nv;
        *cap = ncap;
    }
    return ((*v)[(*n)++] = strdup(w)) ? 0 : -ENOMEM;
}

/* Sorts V and drops duplicates. */
static void list_unique(char **v, size_t *n)
{
    size_t k = 0;
    qsort(v, *n, sizeof(*v), cmp_str);
    for (size_t i = 0; i < *n; i++) {
        if (k > 0 && strcmp(v[k - 1], v[i]) == 0) {
            free(v[i]);
        } else {
            v[k++] = v[i];
        }
    }
    *n = k;
}

/* PHRASE without the words the dictionary lacks (they cannot be recognised) into
 * OUT; its words join G's vocabulary. */
static int phrase_words(vb_stt_t *t, grammar_t *g, size_t *wcap, const char *phrase, char *out,
                        size_t cap)
{
    char buf[VB_INTENT_TEXT_MAX];
    size_t len = 0;
    int rc = 0;
    snprintf(buf, sizeof(buf), "%s", phrase);
    out[0] = '\0';
    for (char *save = NULL, *w = strtok_r(buf, " ", &save); w && rc == 0;
         w = strtok_r(NULL, " ", &save)) {
        if (dict_phones(&t->dict, w) == NULL) {
            vb_log(VB_LOG_INFO, "local stt: '%s' is not in the dictionary; left out", w);
            continue;
        }
        len += (size_t)snprintf(out + len, cap - len, "%s%s", len ? " " : "", w);
        rc = list_add(&g->words, &g->nwords, wcap, w);
    }
    return rc;
}

static int collect(vb_stt_t *t, vb_stt_stream_t *s, grammar_t *g)
{
    size_t wcap = 0, pcap = 0;
    int rc = 0;
    for (size_t i = 0; i < s->nphrases && rc == 0; i++) {
        char ph[VB_INTENT_TEXT_MAX];
        rc = phrase_words(t, g, &wcap, s->phrases[i], ph, sizeof(ph));
        if (rc == 0 && ph[0] != '\0') {
            rc = list_add(&g->phrases, &g->nphrases, &pcap, ph);
        }
    }
    for (size_t i = 0; i < sizeof(loop_words) / sizeof(loop_words[0]) && rc == 0; i++) {
        if (dict_phones(&t->dict, loop_words[i]) != NULL) {
            rc = list_add(&g->words, &g->nwords, &wcap, loop_words[i]);
        }
    }
    list_unique(g->phrases, &g->nphrases);
    list_unique(g->words, &g->nwords);
    return rc;
}

/* public <utt> = <phrase> | <other>; the phrases verbatim, <other> any sequence of
 * the vocabulary, each word of it weighted down by VB_STT_LOOP_WEIGHT. */
static int build_jsgf(grammar_t *g)
{
    sbuf_t b = {0};
    int rc =
        sb_add(&b, g->nphrases ? "#JSGF V1.0;\ngrammar caller;\n"
                                 "public <utt> = <phrase> | <other>;\n<phrase> ="
                               : "#JSGF V1.0;\ngrammar caller;\npublic <utt> = <other>;\n");
    for (size_t i = 0; i < g->nphrases && rc == 0; i++) {
        rc = sb_add(&b, i ? " | ( " : " ( ");
        rc = rc ? rc : sb_add(&b, g->phrases[i]);
        rc = rc ? rc : sb_add(&b, " )");
    }
    rc = rc ? rc : sb_add(&b, g->nphrases ? ";\n<other> = (" : "<other> = (");
    for (size_t i = 0; i < g->nwords && rc == 0; i++) {
        rc = sb_add(&b, i ? " | /" VB_STT_LOOP_WEIGHT "/ " : " /" VB_STT_LOOP_WEIGHT "/ ");
        rc = rc ? rc : sb_add(&b, g->words[i]);
    }
    rc = rc ? rc : sb_add(&b, " )+;\n");
    g->jsgf = b.p;
    return rc;
}

static int is_phrase(const grammar_t *g, const char *text)
{
    return bsearch(&text, g->phrases, g->nphrases, sizeof(char *), cmp_str) != NULL;
}

static void grammar_free(grammar_t *g)
{
    if (g == NULL) {
        return;
    }
    for (size_t i = 0; i < g->nwords; i++) {
        free(g->words[i]);
    }
    for (size_t i = 0; i < g->nphrases; i++) {
        free(g->phrases[i]);
    }
    free(g->words);
    free(g->phrases);
    free(g->jsgf);
    free(g);
}

static grammar_t *grammar_new(vb_stt_t *t, vb_stt_stream_t *s)
{
    grammar_t *g = calloc(1, sizeof(*g));
    if (g == NULL) {
        return NULL;
    }
    g->key = s->key;
    if (collect(t, s, g) < 0 || build_jsgf(g) < 0) {
        grammar_free(g);
        return NULL;
    }
    return g;
}

/* ---- decoders (thread) -------------------------------------------------------------- */

static void search_name(char *out, size_t cap, uint64_t key)
{
    snprintf(out, cap, "g%016llx", (unsigned long long)key);
}

static void dec_free(dec_t *d)
{
    if (d != NULL) {
        ps_free(d->ps);
        cmd_ln_free_r(d->cfg);
        free(d);
    }
}

static dec_t *dec_new(vb_stt_t *t)
{
    char hmm[300];
    dec_t *d = calloc(1, sizeof(*d));
    if (d == NULL) {
        return NULL;
    }
    snprintf(hmm, sizeof(hmm), "%s/en-us", t->model_dir);
    d->cfg = cmd_ln_init(NULL, ps_args(), TRUE, "-hmm", hmm, NULL);
    d->ps = d->cfg ? ps_init(d->cfg) : NULL;
    if (d->ps == NULL) {
        vb_log(VB_LOG_ERR, "local stt: cannot start a decoder on %s", hmm);
        cmd_ln_free_r(d->cfg);
        free(d);
        return NULL;
    }
    ps_set_rawdata_size(d->ps, RAW_SAMPLES);
    pthread_mutex_lock(&t->mu);
    t->stats.decoders++;
    pthread_mutex_unlock(&t->mu);
    return d;
}

static void dec_drop(vb_stt_t *t, dec_t *d)
{
    pthread_mutex_lock(&t->mu);
    t->stats.decoders--;
    pthread_mutex_unlock(&t->mu);
    dec_free(d);
}

static int dec_add_words(vb_stt_t *t, dec_t *d, const grammar_t *g)
{
    for (size_t i = 0; i < g->nwords; i++) {
        char *have = ps_lookup_word(d->ps, g->words[i]);
        if (have != NULL) {
            ckd_free(have);
            continue;
        }
        char alt[96];
        const char *ph = dict_phones(&t->dict, g->words[i]);
        for (int k = 2; ph != NULL; k++) {
            ps_add_word(d->ps, k == 2 ? g->words[i] : alt, ph, FALSE);
            snprintf(alt, sizeof(alt), "%s(%d)", g->words[i], k);
            ph = dict_phones(&t->dict, alt);
        }
    }
    return 0;
}

static void dec_forget_oldest(dec_t *d)
{
    char name[24];
    search_name(name, sizeof(name), d->keys[0]);
    ps_unset_search(d->ps, name);
    memmove(d->keys, d->keys + 1, (size_t)(d->nkeys - 1) * sizeof(d->keys[0]));
    d->nkeys--;
}

static int dec_has(const dec_t *d, uint64_t key)
{
    for (int i = 0; i < d->nkeys; i++) {
        if (d->keys[i] == key) {
            return 1;
        }
    }
    return 0;
}

/* ps_set_jsgf_string of this pocketsphinx leaks the parsed grammar, so the same steps
 * here, freeing it. */
static int set_jsgf(ps_decoder_t *ps, const char *name, const char *text)
{
    jsgf_t *jsgf = jsgf_parse_string(text, NULL);
    jsgf_rule_t *rule = jsgf ? jsgf_get_public_rule(jsgf) : NULL;
    fsg_model_t *fsg = NULL;
    int rc = -1;
    if (rule != NULL) {
        float lw = (float)cmd_ln_float32_r(ps_get_config(ps), "-lw");
        fsg = jsgf_build_fsg(jsgf, rule, ps_get_logmath(ps), lw);
    }
    if (fsg != NULL) {
        rc = ps_set_fsg(ps, name, fsg);
        fsg_model_free(fsg);
    }
    if (jsgf != NULL) {
        jsgf_grammar_free(jsgf);
    }
    return rc;
}

static int dec_add_grammar(vb_stt_t *t, dec_t *d, const grammar_t *g)
{
    char name[24];
    if (dec_has(d, g->key)) {
        return 0;
    }
    if (d->nkeys == DEC_GRAMMARS_MAX) {
        dec_forget_oldest(d);
    }
    dec_add_words(t, d, g);
    search_name(name, sizeof(name), g->key);
    if (set_jsgf(d->ps, name, g->jsgf) < 0) {
        vb_log(VB_LOG_ERR, "local stt: pocketsphinx refused the caller grammar");
        return -EINVAL;
    }
    d->keys[d->nkeys++] = g->key;
    return 0;
}

/* The idle decoder this stream used last, else one that knows G, else the least
 * recently used (taught G), else a new one. */
static dec_t *dec_acquire(vb_stt_t *t, const grammar_t *g, uint64_t stream)
{
    dec_t **pp = &t->idle, **lru = NULL;
    for (; *pp != NULL; pp = &(*pp)->next) {
        if ((*pp)->last_stream == stream && dec_has(*pp, g->key)) {
            dec_t *d = *pp;
            *pp = d->next;
            return d;
        }
    }
    for (pp = &t->idle; *pp != NULL; pp = &(*pp)->next) {
        if (dec_has(*pp, g->key)) {
            dec_t *d = *pp;
            *pp = d->next;
            return d;
        }
        lru = pp;
    }
    dec_t *d = NULL;
    if (lru != NULL) {
        d = *lru;
        *lru = d->next;
    } else if ((d = dec_new(t)) == NULL) {
        return NULL;
    }
    if (dec_add_grammar(t, d, g) < 0) {
        dec_drop(t, d);
        return NULL;
    }
    return d;
}

static void dec_release(vb_stt_t *t, dec_t *d)
{
    if (d == NULL) {
        return;
    }
    d->next = t->idle;
    t->idle = d;
    int n = 0;
    for (dec_t **pp = &t->idle; *pp != NULL; pp = &(*pp)->next) {
        if (++n == POOL_IDLE_MAX) {
            dec_t *extra = (*pp)->next; /* the least recently used beyond the limit */
            (*pp)->next = NULL;
            while (extra != NULL) {
                dec_t *x = extra;
                extra = x->next;
                dec_drop(t, x);
            }
            break;
        }
    }
}

/* ---- decoding an utterance (thread) ----------------------------------------------- */

/* 4th-order Butterworth high-pass at 4 kHz (fs 16 kHz) as two biquads: at a quarter of
 * the sample rate cos(w0) = 0, so a1 = 0. */
typedef struct {
    float b0, b1, b2, a2;
} biquad_t;

static biquad_t hp_section(float q)
{
    float alpha = 1.0f / (2.0f * q), a0 = 1.0f + alpha;
    return (biquad_t){0.5f / a0, -1.0f / a0, 0.5f / a0, (1.0f - alpha) / a0};
}

/* OUT = IN + white noise high-passed above 4 kHz, the band a phone call leaves empty. */
static void noise_add(noise_t *n, const int16_t *in, int16_t *out)
{
    const biquad_t sec[2] = {hp_section(0.5412f), hp_section(1.3066f)};
    for (int i = 0; i < VB_FRAME_SAMPLES; i++) {
        n->rng ^= n->rng << 13;
        n->rng ^= n->rng >> 17;
        n->rng ^= n->rng << 5;
        float x = ((float)n->rng / 4294967296.0f * 2.0f - 1.0f) * (float)NOISE_AMPLITUDE;
        for (int k = 0; k < 2; k++) {
            float y = sec[k].b0 * x + n->z[k][0];
            n->z[k][0] = sec[k].b1 * x + n->z[k][1];
            n->z[k][1] = sec[k].b2 * x - sec[k].a2 * y;
            x = y;
        }
        float v = (float)in[i] + x;
        out[i] = (int16_t)(v > 32767.0f ? 32767.0f : v < -32768.0f ? -32768.0f : v);
    }
}

static void utt_release(vb_stt_t *t, vb_stt_stream_t *s)
{
    dec_release(t, s->dec);
    s->dec = NULL;
    s->utt_open = 0;
}

static void utt_abort(vb_stt_t *t, vb_stt_stream_t *s)
{
    if (s->utt_open) {
        ps_end_utt(s->dec->ps);
        utt_release(t, s);
    }
}

static void utt_start(vb_stt_t *t, vb_stt_stream_t *s, const item_t *it)
{
    char name[24];
    utt_abort(t, s);
    if (s->g == NULL && (s->g = grammar_new(t, s)) == NULL) {
        vb_log(VB_LOG_ERR, "local stt: cannot build the grammar");
        return;
    }
    if ((s->dec = dec_acquire(t, s->g, s->id)) == NULL) {
        return;
    }
    search_name(name, sizeof(name), s->key);
    /* The channel estimate (CMN) carries over from utterance to utterance of a call;
     * a decoder that last heard another call starts it afresh. */
    int fresh = s->dec->last_stream != s->id;
    s->dec->last_stream = s->id;
    if (ps_set_search(s->dec->ps, name) < 0 || (fresh && ps_start_stream(s->dec->ps) < 0) ||
        ps_start_utt(s->dec->ps) < 0) {
        vb_log(VB_LOG_ERR, "local stt: cannot start an utterance");
        utt_release(t, s);
        return;
    }
    s->utt_open = 1;
    s->utt_t0 = it->t_ns;
}

static void utt_frame(vb_stt_t *t, vb_stt_stream_t *s, const item_t *it)
{
    if (s->utt_open) {
        noise_add(&s->noise, it->pcm, t->noisy);
        ps_process_raw(s->dec->ps, t->noisy, VB_FRAME_SAMPLES, FALSE, FALSE);
    }
}

static int filler_word(const char *w)
{
    return w == NULL || w[0] == '<' || w[0] == '[' || w[0] == '+' || w[0] == '(';
}

/* The hypothesis into OUT and how many 10 ms frames before the end of the audio its
 * last word ends (-1 when none). Returns 1 when there are words. (Segment frame
 * numbers are not counted from the utterance's start in this pocketsphinx, so the
 * distance is taken from the last segment's end.) */
static int hyp_of(ps_decoder_t *ps, char *out, size_t cap, int *tail)
{
    int32 score;
    int last_word_end = -1, last_end = -1;
    const char *h = ps_get_hyp(ps, &score);
    snprintf(out, cap, "%s", h ? h : "");
    for (ps_seg_t *seg = ps_seg_iter(ps); seg != NULL; seg = ps_seg_next(seg)) {
        int sf, ef;
        ps_seg_frames(seg, &sf, &ef);
        last_end = ef > last_end ? ef : last_end;
        if (!filler_word(ps_seg_word(seg))) {
            last_word_end = ef;
        }
    }
    *tail = last_word_end >= 0 ? last_end - last_word_end : -1;
    return out[0] != '\0';
}

static void open_lm_decode(vb_stt_t *t, ps_decoder_t *src, vb_stt_result_t *r, int *tail)
{
    int16 *raw = NULL;
    int32 n = 0;
    ps_get_rawdata(src, &raw, &n);
    if (raw == NULL || n <= 0 || ps_start_utt(t->lm) < 0) {
        return;
    }
    ps_process_raw(t->lm, raw, (size_t)n, FALSE, TRUE);
    ps_end_utt(t->lm);
    hyp_of(t->lm, r->text, sizeof(r->text), tail);
    r->source = VB_STT_SRC_OPEN;
}

/* A phrase of the grammar is taken as it is; anything else (the garbage loop won, or
 * no path reached the end) is decoded again with the open model when there is one. */
static void decide(vb_stt_t *t, vb_stt_stream_t *s, vb_stt_result_t *r, int *tail)
{
    hyp_of(s->dec->ps, r->loop_text, sizeof(r->loop_text), tail);
    if (r->loop_text[0] != '\0' && is_phrase(s->g, r->loop_text)) {
        snprintf(r->text, sizeof(r->text), "%s", r->loop_text);
        r->loop_text[0] = '\0';
        r->source = VB_STT_SRC_GRAMMAR;
        return;
    }
    if (t->lm != NULL) {
        int lm_tail = -1;
        open_lm_decode(t, s->dec->ps, r, &lm_tail);
        *tail = lm_tail >= 0 ? lm_tail : *tail;
    }
    if (r->text[0] == '\0') {
        snprintf(r->text, sizeof(r->text), "%s", r->loop_text);
        r->source = VB_STT_SRC_LOOP;
    }
    if (r->text[0] == '\0') {
        r->source = VB_STT_SRC_NONE;
    }
}

static void post_result(vb_stt_t *t, vb_stt_stream_t *s, const vb_stt_result_t *r)
{
    pthread_mutex_lock(&t->mu);
    if (s->r_tail - s->r_head == RESULTS_MAX) {
        s->r_head++; /* the loop is not reading: keep the newest */
    }
    s->res[s->r_tail++ % RESULTS_MAX] = *r;
    t->stats.utterances++;
    t->stats.grammar += r->source == VB_STT_SRC_GRAMMAR;
    t->stats.open_lm += r->source == VB_STT_SRC_OPEN;
    t->stats.loop += r->source == VB_STT_SRC_LOOP;
    /* Under the mutex: once vb_stt_stream_free has returned, no notify is in flight
     * and none follows, so the owner may free what ARG points to. */
    if (!s->dead && s->notify != NULL) {
        s->notify(s->arg);
    }
    pthread_mutex_unlock(&t->mu);
}

static void utt_end(vb_stt_t *t, vb_stt_stream_t *s, const item_t *it)
{
    vb_stt_result_t r = {.source = VB_STT_SRC_NONE};
    int tail = -1;
    uint64_t frames = 0; /* 10 ms frames decoded */
    if (s->utt_open) {
        frames = (uint64_t)ps_get_n_frames(s->dec->ps);
        ps_end_utt(s->dec->ps);
        decide(t, s, &r, &tail);
        utt_release(t, s);
    }
    r.start_ns = it->first_voice_ns;
    r.speech_end_ns = it->last_voice_ns;
    if (tail >= 0 && (uint64_t)tail < frames) {
        r.speech_end_ns = s->utt_t0 + (frames - (uint64_t)tail) * NS_PER_10MS;
    }
    r.endpoint_ns = it->t_ns;
    r.voiced_frames = it->voiced;
    r.final_ns = vb_mono_ns();
    post_result(t, s, &r);
}

static void handle_item(vb_stt_t *t, vb_stt_stream_t *s, const item_t *it)
{
    switch (it->kind) {
    case IT_START:
        utt_start(t, s, it);
        break;
    case IT_FRAME:
        utt_frame(t, s, it);
        break;
    case IT_END:
        utt_end(t, s, it);
        break;
    default:
        utt_abort(t, s);
        break;
    }
}

/* New stream: build its grammar and have an idle decoder know it. */
static void stream_prepare(vb_stt_t *t, vb_stt_stream_t *s)
{
    if (s->g == NULL && (s->g = grammar_new(t, s)) == NULL) {
        return;
    }
    dec_release(t, dec_acquire(t, s->g, s->id));
}

static void stream_destroy(vb_stt_t *t, vb_stt_stream_t *s)
{
    utt_abort(t, s);
    grammar_free(s->g);
    for (size_t i = 0; i < s->nphrases; i++) {
        free(s->phrases[i]);
    }
    free(s->phrases);
    free(s->q);
    free(s);
}

/* ---- the recognition thread --------------------------------------------------------- */

static void work_push(vb_stt_t *t, vb_stt_stream_t *s)
{
    if (!s->queued) {
        s->queued = 1;
        s->work_next = NULL;
        if (t->work_tail != NULL) {
            t->work_tail->work_next = s;
        } else {
            t->work_head = s;
        }
        t->work_tail = s;
        pthread_cond_signal(&t->cv);
    }
}

static vb_stt_stream_t *work_pop(vb_stt_t *t)
{
    vb_stt_stream_t *s = t->work_head;
    if (s != NULL) {
        t->work_head = s->work_next;
        if (t->work_head == NULL) {
            t->work_tail = NULL;
        }
        s->queued = 0;
    }
    return s;
}

static double thread_s(void)
{
    struct timespec ts;
    clock_gettime(CLOCK_THREAD_CPUTIME_ID, &ts);
    return (double)ts.tv_sec + (double)ts.tv_nsec / 1e9;
}

/* Mutex held on entry and exit: one batch of S's items. */
static void serve(vb_stt_t *t, vb_stt_stream_t *s)
{
    int prepare = s->prepare;
    uint32_t n = 0, frames = 0;
    s->prepare = 0;
    while (n < BATCH && s->q_head != s->q_tail) {
        t->batch[n] = s->q[s->q_head++ % QUEUE_CAP];
        frames += t->batch[n++].kind == IT_FRAME;
    }
    s->busy = 1;
    pthread_mutex_unlock(&t->mu);
    double t0 = thread_s();
    if (prepare) {
        stream_prepare(t, s);
    }
    for (uint32_t i = 0; i < n; i++) {
        handle_item(t, s, &t->batch[i]);
    }
    double busy = thread_s() - t0;
    pthread_mutex_lock(&t->mu);
    t->stats.busy_s += busy;
    t->stats.audio_s += frames * (FRAME_MS / 1000.0);
    s->busy = 0;
    if (s->dead || s->q_head != s->q_tail) {
        work_push(t, s);
    }
}

static void rec_loop(vb_stt_t *t)
{
    pthread_mutex_lock(&t->mu);
    for (;;) {
        vb_stt_stream_t *s = work_pop(t);
        if (s == NULL && t->stop) {
            break;
        }
        if (s == NULL) {
            pthread_cond_wait(&t->cv, &t->mu);
        } else if (s->dead) {
            pthread_mutex_unlock(&t->mu);
            stream_destroy(t, s);
            pthread_mutex_lock(&t->mu);
        } else if (!t->stop) {
            serve(t, s);
        }
    }
    pthread_mutex_unlock(&t->mu);
}

static int load_open_lm(vb_stt_t *t)
{
    char hmm[300], dict[300], lm[300];
    snprintf(hmm, sizeof(hmm), "%s/en-us", t->model_dir);
    snprintf(dict, sizeof(dict), "%s/cmudict-en-us.dict", t->model_dir);
    snprintf(lm, sizeof(lm), "%s/en-us.lm.bin", t->model_dir);
    /* Faster than the defaults (no second pass, fewer HMMs a frame): about 0.3 of real
     * time here instead of 1.2, for the same (poor) accuracy on phone audio. */
    t->lm_cfg = cmd_ln_init(NULL, ps_args(), TRUE, "-hmm", hmm, "-dict", dict, "-lm", lm,
                            "-fwdflat", "no", "-bestpath", "no", "-maxhmmpf", "3000", NULL);
    t->lm = t->lm_cfg ? ps_init(t->lm_cfg) : NULL;
    if (t->lm == NULL) {
        vb_log(VB_LOG_WARN,
               "local stt: no open language model (%s); free speech gets the "
               "garbage path's words",
               lm);
        cmd_ln_free_r(t->lm_cfg);
        t->lm_cfg = NULL;
        return -ENOENT;
    }
    ps_set_rawdata_size(t->lm, 0);
    return 0;
}

static void sphinx_log(void *user, err_lvl_t lvl, const char *fmt, ...)
{
    char msg[512];
    if (lvl < ERR_ERROR || strncmp(fmt, "%s: \"%s\"", 8) == 0) {
        return; /* chatter, or the "file, line" prefix of the message that follows */
    }
    va_list ap;
    va_start(ap, fmt);
    vsnprintf(msg, sizeof(msg), fmt, ap);
    va_end(ap);
    msg[strcspn(msg, "\n")] = '\0';
    if (msg[0] != '\0') {
        vb_log(VB_LOG_WARN, "pocketsphinx: %s", msg);
    }
}

/* The dictionary and the open model load here, so that the broker's loop never waits
 * for them; streams queue meanwhile. Without a dictionary every utterance gives an
 * empty result. */
static void *rec_main(void *arg)
{
    vb_stt_t *t = arg;
    char path[300];
    snprintf(path, sizeof(path), "%s/cmudict-en-us.dict", t->model_dir);
    if (dict_load(&t->dict, path) == 0 && t->opts.open_lm) {
        load_open_lm(t);
    }
    rec_loop(t);
    return NULL;
}

/* ---- start and stop ------------------------------------------------------------------- */

static int spawn(vb_stt_t *t)
{
    sigset_t all, old;
    sigfillset(&all);
    pthread_sigmask(SIG_SETMASK, &all, &old); /* signals stay with the event loop */
    int rc = pthread_create(&t->thread, NULL, rec_main, t);
    pthread_sigmask(SIG_SETMASK, &old, NULL);
    return -rc;
}

/* The acoustic model and the dictionary must be there (checked now, loaded later). */
static int check_model(const char *dir)
{
    static const char *const need[] = {"en-us/mdef", "en-us/means", "cmudict-en-us.dict"};
    for (size_t i = 0; i < sizeof(need) / sizeof(need[0]); i++) {
        char path[320];
        snprintf(path, sizeof(path), "%s/%s", dir, need[i]);
        if (access(path, R_OK) != 0) {
            int rc = -errno;
            vb_log(VB_LOG_ERR, "local stt: %s: %s (install pocketsphinx-en-us)", path,
                   strerror(-rc));
            return rc;
        }
    }
    return 0;
}

vb_stt_t *vb_stt_local_start(const vb_stt_opts_t *opts)
{
    vb_stt_t *t = calloc(1, sizeof(*t));
    if (t == NULL) {
        errno = ENOMEM;
        return NULL;
    }
    if (opts != NULL) {
        t->opts = *opts;
    }
    snprintf(t->model_dir, sizeof(t->model_dir), "%s",
             t->opts.model_dir ? t->opts.model_dir : VB_STT_MODEL_DIR);
    t->opts.model_dir = NULL;
    if (t->opts.end_silence_ms <= 0) {
        t->opts.end_silence_ms = VB_STT_END_SILENCE_MS;
    }
    int rc = check_model(t->model_dir);
    if (rc < 0) {
        free(t);
        errno = -rc;
        return NULL;
    }
    err_set_logfp(NULL); /* no configuration dumps on stderr */
    err_set_callback(sphinx_log, NULL);
    pthread_mutex_init(&t->mu, NULL);
    pthread_cond_init(&t->cv, NULL);
    rc = spawn(t);
    if (rc < 0) {
        pthread_mutex_destroy(&t->mu);
        pthread_cond_destroy(&t->cv);
        free(t);
        errno = -rc;
        return NULL;
    }
    return t;
}

void vb_stt_local_stop(vb_stt_t *t)
{
    if (t == NULL) {
        return;
    }
    pthread_mutex_lock(&t->mu);
    t->stop = 1;
    pthread_cond_broadcast(&t->cv);
    pthread_mutex_unlock(&t->mu);
    pthread_join(t->thread, NULL);
    while (t->idle != NULL) {
        dec_t *d = t->idle;
        t->idle = d->next;
        dec_free(d);
    }
    if (t->lm != NULL) {
        ps_free(t->lm);
        cmd_ln_free_r(t->lm_cfg);
    }
    dict_free(&t->dict);
    pthread_mutex_destroy(&t->mu);
    pthread_cond_destroy(&t->cv);
    free(t);
}

void vb_stt_stats(vb_stt_t *t, vb_stt_stats_t *out)
{
    pthread_mutex_lock(&t->mu);
    *out = t->stats;
    pthread_mutex_unlock(&t->mu);
}

/* ---- streams: the loop's side ------------------------------------------------------- */

static uint64_t phrases_key(const char *const *phrases, size_t n)
{
    uint64_t h = 1469598103934665603ull; /* FNV-1a */
    for (size_t i = 0; i < n; i++) {
        for (const char *p = phrases[i]; *p; p++) {
            h = (h ^ (unsigned char)*p) * 1099511628211ull;
        }
        h = (h ^ '\n') * 1099511628211ull;
    }
    return h;
}

static vb_stt_stream_t *stream_alloc(const char *const *phrases, size_t n)
{
    vb_stt_stream_t *s = calloc(1, sizeof(*s));
    if (s == NULL || (s->q = calloc(QUEUE_CAP, sizeof(item_t))) == NULL ||
        (s->phrases = calloc(n + 1, sizeof(char *))) == NULL) {
        goto fail;
    }
    for (size_t i = 0; i < n; i++) {
        char norm[VB_INTENT_TEXT_MAX];
        vb_intents_normalise(phrases[i], norm, sizeof(norm));
        if ((s->phrases[i] = strdup(norm)) == NULL) {
            goto fail;
        }
        s->nphrases = i + 1;
    }
    s->key = phrases_key((const char *const *)s->phrases, s->nphrases);
    return s;
fail:
    if (s != NULL) {
        for (size_t i = 0; i < s->nphrases; i++) {
            free(s->phrases[i]);
        }
        free(s->phrases);
        free(s->q);
        free(s);
    }
    errno = ENOMEM;
    return NULL;
}

void vb_stt_set_end_silence(vb_stt_stream_t *s, int ms)
{
    vb_stt_t *t = s->stt;
    pthread_mutex_lock(&t->mu);
    s->end_silence_frames = (uint32_t)((ms > 0 ? ms : t->opts.end_silence_ms) / FRAME_MS);
    pthread_mutex_unlock(&t->mu);
}

vb_stt_stream_t *vb_stt_stream_new(vb_stt_t *t, const char *const *phrases, size_t n,
                                   vb_stt_notify_fn notify, void *arg)
{
    vb_stt_stream_t *s = stream_alloc(phrases, n);
    if (s == NULL) {
        return NULL;
    }
    s->stt = t;
    s->notify = notify;
    pthread_mutex_lock(&t->mu);
    s->id = ++t->next_stream_id;
    pthread_mutex_unlock(&t->mu);
    s->arg = arg;
    s->end_silence_frames = (uint32_t)(t->opts.end_silence_ms / FRAME_MS);
    s->noise.rng = 0x9e3779b9u; /* the same noise for every call: reproducible results */
    pthread_mutex_lock(&t->mu);
    s->prepare = 1;
    work_push(t, s);
    pthread_mutex_unlock(&t->mu);
    return s;
}

void vb_stt_stream_free(vb_stt_stream_t *s)
{
    if (s == NULL) {
        return;
    }
    vb_stt_t *t = s->stt;
    pthread_mutex_lock(&t->mu);
    s->dead = 1;
    if (!s->busy) {
        work_push(t, s);
    }
    pthread_mutex_unlock(&t->mu);
}

/* Mutex held. Frames go only while there is room for them; markers always fit. */
static void q_push(vb_stt_stream_t *s, const item_t *it)
{
    uint32_t used = s->q_tail - s->q_head;
    if (used >= QUEUE_CAP || (it->kind == IT_FRAME && used >= QUEUE_FRAMES)) {
        s->dropped++;
        return;
    }
    s->q[s->q_tail++ % QUEUE_CAP] = *it;
}

static void q_push_frame(vb_stt_stream_t *s, const vb_audio_frame_t *f)
{
    uint32_t used = s->q_tail - s->q_head;
    if (used >= QUEUE_FRAMES) {
        s->dropped++;
        return;
    }
    item_t *it = &s->q[s->q_tail++ % QUEUE_CAP];
    it->kind = IT_FRAME;
    it->t_ns = f->t_ns;
    memcpy(it->pcm, f->pcm, sizeof(it->pcm));
}

/* Mutex held: START, then the pre-roll, oldest first. */
static void begin_utt(vb_stt_stream_t *s, const vb_audio_frame_t *f)
{
    uint32_t n = s->pre_n;
    uint32_t first = (s->pre_pos + PREROLL_FRAMES - n) % PREROLL_FRAMES;
    uint64_t t0 = n ? s->preroll[first].t_ns : f->t_ns;
    item_t start = {.kind = IT_START, .t_ns = t0 - FRAME_MS * 1000000ull};
    q_push(s, &start);
    for (uint32_t i = 0; i < n; i++) {
        q_push_frame(s, &s->preroll[(first + i) % PREROLL_FRAMES]);
    }
    s->pre_n = 0;
    s->in_utt = 1;
    s->utt_frames = n;
    s->voiced = 0;
    s->silence_run = 0;
    s->first_voice_ns = f->t_ns;
}

/* Mutex held. */
static void close_utt(vb_stt_stream_t *s, uint64_t t_ns)
{
    item_t end = {.kind = s->voiced >= MIN_VOICED ? IT_END : IT_ABORT,
                  .t_ns = t_ns,
                  .voiced = s->voiced,
                  .first_voice_ns = s->first_voice_ns,
                  .last_voice_ns = s->last_voice_ns};
    q_push(s, &end);
    s->in_utt = 0;
}

int vb_stt_feed(vb_stt_stream_t *s, const vb_audio_frame_t *f)
{
    int voice = (f->flags & VB_FRAME_VOICE) != 0;
    if (!s->in_utt && !voice) {
        s->preroll[s->pre_pos] = *f;
        s->pre_pos = (s->pre_pos + 1) % PREROLL_FRAMES;
        s->pre_n += s->pre_n < PREROLL_FRAMES;
        return 0;
    }
    vb_stt_t *t = s->stt;
    pthread_mutex_lock(&t->mu);
    if (!s->in_utt) {
        begin_utt(s, f);
    }
    q_push_frame(s, f);
    s->utt_frames++;
    if (voice) {
        s->voiced++;
        s->silence_run = 0;
        s->last_voice_ns = f->t_ns;
    } else {
        s->silence_run++;
    }
    if (s->silence_run >= s->end_silence_frames || s->utt_frames >= MAX_UTT_FRAMES) {
        close_utt(s, f->t_ns);
    }
    if (!s->busy) {
        work_push(t, s);
    }
    int in = s->in_utt;
    pthread_mutex_unlock(&t->mu);
    return in;
}

void vb_stt_flush(vb_stt_stream_t *s)
{
    if (!s->in_utt) {
        return;
    }
    pthread_mutex_lock(&s->stt->mu);
    close_utt(s, s->last_voice_ns);
    if (!s->busy) {
        work_push(s->stt, s);
    }
    pthread_mutex_unlock(&s->stt->mu);
}

int vb_stt_poll(vb_stt_stream_t *s, vb_stt_result_t *out)
{
    int rc = -EAGAIN;
    pthread_mutex_lock(&s->stt->mu);
    if (s->r_head != s->r_tail) {
        *out = s->res[s->r_head++ % RESULTS_MAX];
        rc = 0;
    }
    pthread_mutex_unlock(&s->stt->mu);
    return rc;
}

uint64_t vb_stt_dropped(vb_stt_stream_t *s)
{
    pthread_mutex_lock(&s->stt->mu);
    uint64_t n = s->dropped;
    pthread_mutex_unlock(&s->stt->mu);
    return n;
}
