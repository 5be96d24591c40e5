/* The `local` text-to-speech: espeak-ng in the AI broker, with no key and no
 * network. espeak-ng keeps global state, so one synthesis thread per process
 * does all of it (vb_tts_t); each call has a stream (vb_tts_stream_t) into
 * which the broker's event loop queues text and from which it reads 20 ms
 * frames of PCM16 at 16 kHz (synthesised at espeak's 22.05 kHz, resampled with
 * speexdsp). Synthesis goes one sentence at a time, streams served in turn,
 * and the first frames of a reply are readable while the rest is still being
 * made. No call on the loop's side blocks on synthesis: they take one mutex
 * for a few copies. */
#ifndef VB_BROKER_TTS_LOCAL_H
#define VB_BROKER_TTS_LOCAL_H

#include <stddef.h>
#include <stdint.h>

#include "shm/slot_layout.h"

#define VB_TTS_DEFAULT_VOICE "en-us"
#define VB_TTS_DEFAULT_RATE 175 /* words per minute, espeak's own default */
#define VB_TTS_MIN_RATE 80
#define VB_TTS_MAX_RATE 450
/* Audio a stream may hold unread before its next sentence waits: the agent ring
 * holds 5.12 s, so this keeps the broker a sentence or two ahead of the worker. */
#define VB_TTS_AHEAD_MS 8000
#define VB_TTS_TEXT_MAX 2048 /* bytes of one utterance; longer text is cut at a word */

typedef struct vb_tts vb_tts_t;
typedef struct vb_tts_stream vb_tts_stream_t;

/* Called on the synthesis thread when the first frame of an utterance can be
 * read (so the loop need not wait for its next tick), when a frame arrives in an
 * empty stream and when an utterance has been fully synthesised; under the
 * service's mutex: cheap, thread-safe, no calls back into vb_tts_* (write an
 * eventfd). Never called once vb_tts_stream_free has returned. */
typedef void (*vb_tts_notify_fn)(void *arg);

/* Start the synthesis thread, which loads espeak-ng (data from DATA_PATH, NULL for
 * the system's); returns at once. When espeak-ng cannot start (logged by the
 * thread) every utterance ends at once with one silent frame. NULL + errno: EBUSY
 * when this process already has one, ENOMEM, or pthread_create's error. */
vb_tts_t *vb_tts_local_start(const char *data_path);
/* Stop the thread (espeak-ng stays loaded for the next start: it cannot be loaded
 * twice in one process). Streams must have been freed. */
void vb_tts_local_stop(vb_tts_t *tts);

/* A call's stream. NOTIFY may be NULL. NULL + ENOMEM. */
vb_tts_stream_t *vb_tts_stream_new(vb_tts_t *tts, vb_tts_notify_fn notify, void *arg);
/* Cancel what the stream has and free it; safe while its sentence is being
 * synthesised (the thread lets go of it). NULL is allowed. */
void vb_tts_stream_free(vb_tts_stream_t *s);

/* Queue TEXT (UTF-8) to be spoken after what is queued already. VOICE is any
 * espeak-ng voice name (e.g. "en-us", "en-gb+f2"; NULL or "" for the default; an
 * unknown name falls back to the default, logged once); RATE in words per minute
 * (0 for the default; clamped to espeak's range). *ID (may be NULL) gets the
 * utterance's id, never 0. 0, -EINVAL (empty text) or -ENOMEM. */
int vb_tts_say(vb_tts_stream_t *s, const char *text, const char *voice, int rate, uint32_t *id);
/* Forget all queued text and unread audio and stop the sentence in progress. */
void vb_tts_cancel(vb_tts_stream_t *s);

typedef struct {
    uint32_t id; /* utterance the frame belongs to */
    int first;   /* its first frame */
    int last;    /* its last frame: the utterance is complete */
} vb_tts_frame_info_t;

/* Take the next frame (VB_FRAME_SAMPLES samples at 16 kHz). 0, or -EAGAIN when
 * none is ready. An utterance that produced no sound (espeak failed) still
 * yields one silent frame with first and last set, so readers always see its end. */
int vb_tts_read(vb_tts_stream_t *s, int16_t pcm[VB_FRAME_SAMPLES], vb_tts_frame_info_t *info);
/* Frames ready to read now. */
uint32_t vb_tts_ready(vb_tts_stream_t *s);
/* 1 while text is queued, being synthesised or frames are unread. */
int vb_tts_busy(vb_tts_stream_t *s);

/* Split TEXT at the next sentence end (. ! ? ; : followed by a space, a comma
 * once MAX/2 bytes are taken, a space when MAX would be exceeded); returns the
 * length of the first piece (at least 1 for non-empty text). For tests. */
size_t vb_tts_sentence_len(const char *text, size_t max);

#endif
