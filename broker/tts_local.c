/* The `local` text-to-speech (see tts_local.h): one espeak-ng synthesis thread
 * per AI broker process, feeding per-call streams of 20 ms frames at 16 kHz.
 *
 * Threads: the broker's event loop calls the vb_tts_* functions; the synthesis
 * thread (synth_main) owns espeak-ng, the resampler and the current job. One
 * mutex guards the streams' queues, their frame FIFOs and the free chunks; the
 * thread holds it only to pick a sentence and to publish each frame, never
 * while espeak-ng runs. */
#include "broker/tts_local.h"

#include "common/log.h"

#include <errno.h>
#include <espeak-ng/espeak_ng.h>
#include <espeak-ng/speak_lib.h>
#include <pthread.h>
#include <signal.h>
#include <speex/speex_resampler.h>
#include <stdatomic.h>
#include <stdlib.h>
#include <string.h>

#define CHUNK_FRAMES 25 /* 0.5 s of audio per FIFO chunk */
#define PIECE_MAX 300   /* bytes synthesised in one go (a sentence, or part of one) */
#define ESPEAK_BUF_MS                                                                          \
    60 /* espeak hands over audio at least this often: first-frame latency                     \
        */
#define OUT_RATE VB_FRAME_RATE
#define RESAMPLE_QUALITY 5
#define AHEAD_FRAMES (VB_TTS_AHEAD_MS / 20)

typedef struct chunk {
    struct chunk *next;
    uint32_t head, tail; /* frames read, frames written */
    vb_tts_frame_info_t info[CHUNK_FRAMES];
    int16_t pcm[CHUNK_FRAMES][VB_FRAME_SAMPLES];
} chunk_t;

typedef struct utt {
    struct utt *next;
    uint32_t id;
    int rate;
    size_t pos, len; /* next byte to synthesise, text length */
    char voice[64];
    char text[];
} utt_t;

struct vb_tts_stream {
    vb_tts_t *tts;
    vb_tts_stream_t *next, *prev; /* the thread's round robin */
    vb_tts_notify_fn notify;
    void *arg;
    utt_t *q_head, *q_tail;   /* text still to synthesise */
    chunk_t *c_head, *c_tail; /* frames to read */
    uint32_t nframes;
    uint32_t next_id;
    uint32_t epoch;      /* bumped by cancel: the job in progress no longer counts */
    uint32_t job_epoch;  /* epoch of the job in progress */
    uint32_t utt_frames; /* frames published for the utterance in progress */
    int synthesising;    /* the thread works for this stream now: not to be freed */
    int job_open;        /* a piece is being made, its last frame not yet published */
    int dead;            /* freed by its owner while synthesising: the thread frees it */
};

/* What the thread is synthesising now (thread-only, except under the mutex). */
typedef struct {
    vb_tts_stream_t *s;
    uint32_t epoch, id;
    int first, last, aborted;
    int16_t stage[VB_FRAME_SAMPLES]; /* samples of the frame being filled */
    uint32_t nstage;
    int16_t held[VB_FRAME_SAMPLES]; /* a full frame not yet published: it may be the last */
    int have_held;
} job_t;

struct vb_tts {
    pthread_t thread;
    pthread_mutex_t mu;
    pthread_cond_t cv;
    int stop;
    vb_tts_stream_t *streams, *rr;
    chunk_t *free_chunks;
    char data_path[256];
    /* thread-only */
    SpeexResamplerState *rs;
    int in_rate;
    char cur_voice[64], bad_voice[64];
    int cur_rate;
    job_t job;
    char piece[PIECE_MAX + 1];
};

static atomic_int tts_running; /* espeak-ng is process-global: one vb_tts_t at a time */
static vb_tts_t *synth_self;   /* the running one, for espeak's callback (thread-only) */

/* ---- the FIFO of frames (mutex held) ---------------------------------- */

static chunk_t *chunk_get(vb_tts_t *t)
{
    chunk_t *c = t->free_chunks;
    if (c != NULL) {
        t->free_chunks = c->next;
    } else if ((c = malloc(sizeof(*c))) == NULL) {
        return NULL;
    }
    c->next = NULL;
    c->head = c->tail = 0;
    return c;
}

static void chunk_put(vb_tts_t *t, chunk_t *c)
{
    c->next = t->free_chunks;
    t->free_chunks = c;
}

static int fifo_push(vb_tts_stream_t *s, const int16_t *pcm, vb_tts_frame_info_t info)
{
    if (s->c_tail == NULL || s->c_tail->tail == CHUNK_FRAMES) {
        chunk_t *c = chunk_get(s->tts);
        if (c == NULL) {
            return -ENOMEM;
        }
        if (s->c_tail != NULL) {
            s->c_tail->next = c;
        } else {
            s->c_head = c;
        }
        s->c_tail = c;
    }
    chunk_t *c = s->c_tail;
    memcpy(c->pcm[c->tail], pcm, sizeof(c->pcm[0]));
    c->info[c->tail++] = info;
    s->nframes++;
    return 0;
}

static void fifo_clear(vb_tts_stream_t *s)
{
    while (s->c_head != NULL) {
        chunk_t *c = s->c_head;
        s->c_head = c->next;
        chunk_put(s->tts, c);
    }
    s->c_tail = NULL;
    s->nframes = 0;
}

static void queue_clear(vb_tts_stream_t *s)
{
    while (s->q_head != NULL) {
        utt_t *u = s->q_head;
        s->q_head = u->next;
        free(u);
    }
    s->q_tail = NULL;
}

/* ---- the loop's side --------------------------------------------------- */

vb_tts_stream_t *vb_tts_stream_new(vb_tts_t *t, vb_tts_notify_fn notify, void *arg)
{
    vb_tts_stream_t *s = calloc(1, sizeof(*s));
    if (s == NULL) {
        errno = ENOMEM;
        return NULL;
    }
    s->tts = t;
    s->notify = notify;
    s->arg = arg;
    s->next_id = 1;
    pthread_mutex_lock(&t->mu);
    s->next = t->streams;
    if (t->streams != NULL) {
        t->streams->prev = s;
    }
    t->streams = s;
    pthread_mutex_unlock(&t->mu);
    return s;
}

static void stream_unlink(vb_tts_t *t, vb_tts_stream_t *s)
{
    if (t->rr == s) {
        t->rr = s->next;
    }
    if (s->prev != NULL) {
        s->prev->next = s->next;
    } else {
        t->streams = s->next;
    }
    if (s->next != NULL) {
        s->next->prev = s->prev;
    }
    s->next = s->prev = NULL;
}

void vb_tts_stream_free(vb_tts_stream_t *s)
{
    if (s == NULL) {
        return;
    }
    vb_tts_t *t = s->tts;
    pthread_mutex_lock(&t->mu);
    queue_clear(s);
    fifo_clear(s);
    s->epoch++;
    stream_unlink(t, s);
    int later = s->synthesising;
    s->dead = later;
    pthread_mutex_unlock(&t->mu);
    if (!later) {
        free(s);
    }
}

static utt_t *utt_new(const char *text, const char *voice, int rate)
{
    size_t len = strlen(text);
    if (len > VB_TTS_TEXT_MAX) {
        len = VB_TTS_TEXT_MAX;
        while (len > 0 && text[len] != ' ') {
            len--; /* cut at a space: never inside a word or a UTF-8 sequence */
        }
    }
    utt_t *u = malloc(sizeof(*u) + len + 1);
    if (u == NULL) {
        return NULL;
    }
    memcpy(u->text, text, len);
    u->text[len] = '\0';
    u->len = len;
    u->pos = 0;
    u->next = NULL;
    snprintf(u->voice, sizeof(u->voice), "%s", voice && *voice ? voice : VB_TTS_DEFAULT_VOICE);
    u->rate = rate <= 0 ? VB_TTS_DEFAULT_RATE : rate;
    u->rate = u->rate < VB_TTS_MIN_RATE ? VB_TTS_MIN_RATE : u->rate;
    u->rate = u->rate > VB_TTS_MAX_RATE ? VB_TTS_MAX_RATE : u->rate;
    return u;
}

int vb_tts_say(vb_tts_stream_t *s, const char *text, const char *voice, int rate, uint32_t *id)
{
    if (text == NULL || text[strspn(text, " \t\r\n")] == '\0') {
        return -EINVAL;
    }
    utt_t *u = utt_new(text, voice, rate);
    if (u == NULL) {
        return -ENOMEM;
    }
    vb_tts_t *t = s->tts;
    pthread_mutex_lock(&t->mu);
    uint32_t uid = u->id = s->next_id++;
    if (s->next_id == 0) {
        s->next_id = 1;
    }
    if (s->q_tail != NULL) {
        s->q_tail->next = u;
    } else {
        s->q_head = u;
    }
    s->q_tail = u;
    pthread_cond_signal(&t->cv); /* from here on U is the thread's */
    pthread_mutex_unlock(&t->mu);
    if (id != NULL) {
        *id = uid;
    }
    return 0;
}

void vb_tts_cancel(vb_tts_stream_t *s)
{
    pthread_mutex_lock(&s->tts->mu);
    queue_clear(s);
    fifo_clear(s);
    s->epoch++;
    pthread_mutex_unlock(&s->tts->mu);
}

int vb_tts_read(vb_tts_stream_t *s, int16_t pcm[VB_FRAME_SAMPLES], vb_tts_frame_info_t *info)
{
    vb_tts_t *t = s->tts;
    pthread_mutex_lock(&t->mu);
    chunk_t *c = s->c_head;
    if (c == NULL || c->head == c->tail) {
        pthread_mutex_unlock(&t->mu);
        return -EAGAIN;
    }
    memcpy(pcm, c->pcm[c->head], sizeof(c->pcm[0]));
    if (info != NULL) {
        *info = c->info[c->head];
    }
    if (++c->head == CHUNK_FRAMES) {
        s->c_head = c->next;
        if (s->c_head == NULL) {
            s->c_tail = NULL;
        }
        chunk_put(t, c);
    }
    if (s->nframes-- == AHEAD_FRAMES && s->q_head != NULL) {
        pthread_cond_signal(&t->cv); /* room again for the next sentence */
    }
    pthread_mutex_unlock(&t->mu);
    return 0;
}

uint32_t vb_tts_ready(vb_tts_stream_t *s)
{
    pthread_mutex_lock(&s->tts->mu);
    uint32_t n = s->nframes;
    pthread_mutex_unlock(&s->tts->mu);
    return n;
}

int vb_tts_busy(vb_tts_stream_t *s)
{
    pthread_mutex_lock(&s->tts->mu);
    int busy = s->q_head != NULL || s->nframes > 0 || (s->job_open && s->job_epoch == s->epoch);
    pthread_mutex_unlock(&s->tts->mu);
    return busy;
}

/* ---- sentences ------------------------------------------------------------ */

static int sentence_end(const char *p)
{
    return (*p == '.' || *p == '!' || *p == '?' || *p == ';' || *p == ':') &&
           (p[1] == ' ' || p[1] == '\n' || p[1] == '\0');
}

size_t vb_tts_sentence_len(const char *text, size_t max)
{
    size_t last_space = 0;
    for (size_t i = 0; text[i] != '\0'; i++) {
        if (i >= max) {
            if (last_space > 0) {
                return last_space;
            }
            while (i > 1 && ((unsigned char)text[i] & 0xC0) == 0x80) {
                i--; /* not inside a UTF-8 sequence */
            }
            return i;
        }
        if (sentence_end(text + i) || (i >= max / 2 && text[i] == ',' && text[i + 1] == ' ')) {
            return i + 1;
        }
        if (text[i] == ' ') {
            last_space = i + 1;
        }
    }
    return strlen(text);
}

/* ---- the synthesis thread -------------------------------------------------- */

/* Publish one frame of the job's stream (mutex taken here). -1: stop synthesising. */
static int publish(vb_tts_t *t, const int16_t *pcm, int last)
{
    job_t *j = &t->job;
    vb_tts_stream_t *s = j->s;
    int first = 0, was_empty = 0, rc = 0;
    pthread_mutex_lock(&t->mu);
    if (s->dead || s->epoch != j->epoch) {
        rc = -1;
    } else {
        first = s->utt_frames == 0;
        was_empty = s->nframes == 0;
        vb_tts_frame_info_t info = {.id = j->id, .first = first, .last = last};
        if (fifo_push(s, pcm, info) < 0) {
            vb_log(VB_LOG_ERR, "local tts: out of memory; the reply is cut short");
            rc = -1;
        } else {
            s->utt_frames++;
            s->job_open = !last;
        }
    }
    /* Under the mutex: once vb_tts_stream_free has returned, no notify is in flight
     * and none follows, so the owner may free what ARG points to. */
    if (rc == 0 && (first || last || was_empty) && s->notify != NULL) {
        s->notify(s->arg);
    }
    pthread_mutex_unlock(&t->mu);
    return rc;
}

/* A full frame: publish the one held before it, hold this one. */
static int push_frame(vb_tts_t *t, const int16_t *pcm)
{
    job_t *j = &t->job;
    if (j->have_held && publish(t, j->held, 0) < 0) {
        return -1;
    }
    memcpy(j->held, pcm, sizeof(j->held));
    j->have_held = 1;
    return 0;
}

static int take_samples(vb_tts_t *t, const int16_t *in, uint32_t n)
{
    job_t *j = &t->job;
    while (n > 0) {
        int16_t out[512];
        spx_uint32_t il = n, ol = sizeof(out) / sizeof(out[0]);
        speex_resampler_process_int(t->rs, 0, in, &il, out, &ol);
        in += il;
        n -= il;
        for (uint32_t k = 0; k < ol; k++) {
            j->stage[j->nstage++] = out[k];
            if (j->nstage == VB_FRAME_SAMPLES) {
                j->nstage = 0;
                if (push_frame(t, j->stage) < 0) {
                    return -1;
                }
            }
        }
        if (il == 0 && ol == 0) {
            break;
        }
    }
    return 0;
}

static int synth_cb(short *wav, int n, espeak_EVENT *events)
{
    vb_tts_t *t = synth_self;
    if (t == NULL || wav == NULL || n <= 0) {
        return 0;
    }
    if (take_samples(t, wav, (uint32_t)n) < 0) {
        t->job.aborted = 1;
        return 1; /* cancelled: espeak stops */
    }
    return 0;
}

/* By voice name ("en-us", "en-gb+f2"), else as a language with an optional variant,
 * as the espeak-ng program does it. */
static int select_voice(const char *voice)
{
    if (espeak_ng_SetVoiceByName(voice) == ENS_OK) {
        return 0;
    }
    espeak_VOICE sel;
    memset(&sel, 0, sizeof(sel));
    sel.languages = voice;
    return espeak_ng_SetVoiceByProperties(&sel) == ENS_OK ? 0 : -1;
}

static void set_voice(vb_tts_t *t, const char *voice, int rate)
{
    if (strcmp(voice, t->cur_voice) != 0) {
        if (select_voice(voice) != 0) {
            if (strcmp(voice, t->bad_voice) != 0) {
                vb_log(VB_LOG_WARN, "local tts: unknown espeak-ng voice '%s'; using %s", voice,
                       VB_TTS_DEFAULT_VOICE);
                snprintf(t->bad_voice, sizeof(t->bad_voice), "%s", voice);
            }
            espeak_SetVoiceByName(VB_TTS_DEFAULT_VOICE);
        }
        snprintf(t->cur_voice, sizeof(t->cur_voice), "%s", voice);
        t->cur_rate = 0; /* a voice brings its own rate */
    }
    if (rate != t->cur_rate) {
        espeak_SetParameter(espeakRATE, rate, 0);
        t->cur_rate = rate;
    }
}

/* Flush the resampler and publish the rest of the piece; on its utterance's last
 * piece, mark the last frame (or make a silent one when nothing was heard). */
static void finish_piece(vb_tts_t *t)
{
    job_t *j = &t->job;
    if (!j->aborted && t->rs != NULL) {
        int16_t zeros[64] = {0};
        int lat = speex_resampler_get_input_latency(t->rs);
        for (int k = 0; k < lat && !j->aborted; k += 64) {
            j->aborted = take_samples(t, zeros, (uint32_t)(lat - k < 64 ? lat - k : 64)) < 0;
        }
    }
    if (!j->aborted && j->nstage > 0) {
        memset(j->stage + j->nstage, 0, (VB_FRAME_SAMPLES - j->nstage) * sizeof(int16_t));
        j->aborted = push_frame(t, j->stage) < 0;
    }
    if (!j->aborted && j->have_held) {
        j->aborted = publish(t, j->held, j->last) < 0;
    } else if (!j->aborted && j->last && j->s->utt_frames == 0) {
        int16_t silence[VB_FRAME_SAMPLES] = {0};
        publish(t, silence, 1);
    }
}

static void synth_piece(vb_tts_t *t, const char *voice, int rate)
{
    job_t *j = &t->job;
    j->nstage = 0;
    j->have_held = 0;
    j->aborted = 0;
    if (t->rs == NULL) {
        finish_piece(t); /* no espeak-ng: the utterance ends silent */
        return;
    }
    set_voice(t, voice, rate);
    speex_resampler_reset_mem(t->rs);
    speex_resampler_skip_zeros(t->rs);
    espeak_ERROR e = espeak_Synth(t->piece, strlen(t->piece) + 1, 0, POS_CHARACTER, 0,
                                  espeakCHARS_UTF8, NULL, NULL);
    if (e != EE_OK && !j->aborted) {
        vb_log(VB_LOG_ERR, "local tts: espeak-ng failed (%d) on a sentence", (int)e);
    }
    finish_piece(t);
}

static vb_tts_stream_t *next_ready(vb_tts_t *t)
{
    vb_tts_stream_t *start = t->rr ? t->rr : t->streams, *s = start;
    while (s != NULL) {
        if (s->q_head != NULL && s->nframes < AHEAD_FRAMES) {
            t->rr = s->next;
            return s;
        }
        s = s->next ? s->next : t->streams;
        if (s == start) {
            break;
        }
    }
    return NULL;
}

/* Mutex held: take the next piece of S's first utterance into t->piece and the job. */
static void take_piece(vb_tts_t *t, vb_tts_stream_t *s, char *voice, int *rate)
{
    utt_t *u = s->q_head;
    job_t *j = &t->job;
    size_t n = vb_tts_sentence_len(u->text + u->pos, PIECE_MAX);
    memcpy(t->piece, u->text + u->pos, n);
    t->piece[n] = '\0';
    j->s = s;
    j->epoch = s->job_epoch = s->epoch;
    j->id = u->id;
    j->first = u->pos == 0;
    j->last = u->pos + n >= u->len;
    if (j->first) {
        s->utt_frames = 0;
    }
    u->pos += n;
    snprintf(voice, 64, "%s", u->voice);
    *rate = u->rate;
    if (j->last) {
        s->q_head = u->next;
        if (s->q_head == NULL) {
            s->q_tail = NULL;
        }
        free(u);
    }
    s->synthesising = 1;
    s->job_open = 1;
}

/* espeak-ng is loaded once per process and never unloaded: espeak_ng_Terminate
 * followed by a new espeak_ng_Initialize hangs in espeak-ng 1.51 (its internal
 * thread is not restarted), and the broker never needs to. */
static int espeak_load(const char *data_path)
{
    static int loaded; /* only ever touched by the synthesis thread of the moment */
    if (loaded) {
        return 0;
    }
    espeak_ng_InitializePath(data_path[0] ? data_path : NULL);
    espeak_ng_STATUS st = espeak_ng_Initialize(NULL);
    if (st != ENS_OK) {
        char msg[256];
        espeak_ng_GetStatusCodeMessage(st, msg, sizeof(msg));
        vb_log(VB_LOG_ERR, "local tts: cannot start espeak-ng: %s", msg);
        return -ENOENT;
    }
    if (espeak_ng_InitializeOutput(ENOUTPUT_MODE_SYNCHRONOUS, ESPEAK_BUF_MS, NULL) != ENS_OK) {
        vb_log(VB_LOG_ERR, "local tts: espeak-ng output set-up failed");
        return -EIO;
    }
    espeak_SetSynthCallback(synth_cb);
    loaded = 1;
    return 0;
}

static int synth_init(vb_tts_t *t)
{
    int err = espeak_load(t->data_path);
    if (err < 0) {
        return err;
    }
    synth_self = t;
    t->in_rate = espeak_ng_GetSampleRate();
    t->rs = speex_resampler_init(1, (spx_uint32_t)t->in_rate, OUT_RATE, RESAMPLE_QUALITY, &err);
    if (t->rs == NULL) {
        return -ENOMEM;
    }
    set_voice(t, VB_TTS_DEFAULT_VOICE, VB_TTS_DEFAULT_RATE);
    return 0;
}

static void synth_loop(vb_tts_t *t)
{
    char voice[64];
    int rate;
    pthread_mutex_lock(&t->mu);
    while (!t->stop) {
        vb_tts_stream_t *s = next_ready(t);
        if (s == NULL) {
            pthread_cond_wait(&t->cv, &t->mu);
            continue;
        }
        take_piece(t, s, voice, &rate);
        pthread_mutex_unlock(&t->mu);
        synth_piece(t, voice, rate);
        pthread_mutex_lock(&t->mu);
        s->synthesising = 0;
        s->job_open = 0;
        if (s->dead) {
            free(s);
        }
    }
    pthread_mutex_unlock(&t->mu);
}

/* espeak-ng starts here, not in vb_tts_local_start, so that the broker's loop never
 * waits for it; without it every utterance ends at once, silent. */
static void *synth_main(void *arg)
{
    vb_tts_t *t = arg;
    if (synth_init(t) < 0) {
        t->rs = NULL;
        synth_loop(t);
        return NULL;
    }
    synth_loop(t);
    speex_resampler_destroy(t->rs);
    synth_self = NULL;
    return NULL;
}

/* ---- start and stop ----------------------------------------------------------- */

static int spawn(vb_tts_t *t)
{
    sigset_t all, old;
    sigfillset(&all);
    pthread_sigmask(SIG_SETMASK, &all, &old); /* signals stay with the event loop */
    int rc = pthread_create(&t->thread, NULL, synth_main, t);
    pthread_sigmask(SIG_SETMASK, &old, NULL);
    return -rc;
}

vb_tts_t *vb_tts_local_start(const char *data_path)
{
    int expected = 0;
    if (!atomic_compare_exchange_strong(&tts_running, &expected, 1)) {
        errno = EBUSY;
        return NULL;
    }
    vb_tts_t *t = calloc(1, sizeof(*t));
    if (t == NULL) {
        atomic_store(&tts_running, 0);
        errno = ENOMEM;
        return NULL;
    }
    snprintf(t->data_path, sizeof(t->data_path), "%s", data_path ? data_path : "");
    pthread_mutex_init(&t->mu, NULL);
    pthread_cond_init(&t->cv, NULL);
    int rc = spawn(t);
    if (rc < 0) {
        pthread_mutex_destroy(&t->mu);
        pthread_cond_destroy(&t->cv);
        free(t);
        atomic_store(&tts_running, 0);
        errno = -rc;
        return NULL;
    }
    return t;
}

void vb_tts_local_stop(vb_tts_t *t)
{
    if (t == NULL) {
        return;
    }
    pthread_mutex_lock(&t->mu);
    t->stop = 1;
    pthread_cond_broadcast(&t->cv);
    pthread_mutex_unlock(&t->mu);
    pthread_join(t->thread, NULL);
    VB_ASSERT(t->streams == NULL);
    while (t->free_chunks != NULL) {
        chunk_t *c = t->free_chunks;
        t->free_chunks = c->next;
        free(c);
    }
    pthread_mutex_destroy(&t->mu);
    pthread_cond_destroy(&t->cv);
    free(t);
    atomic_store(&tts_running, 0);
}
