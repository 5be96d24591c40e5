/* Layout of the shared region: the region header, the slot table (one slot per
 * concurrent call) and the elements carried by each slot's rings. Shared by
 * every process (master, media workers, AI brokers, store), which is why it
 * holds no pointers and every size and offset is asserted. See docs/shm.md. */
#ifndef VB_SHM_SLOT_LAYOUT_H
#define VB_SHM_SLOT_LAYOUT_H

#include <stdalign.h>
#include <stdatomic.h>
#include <stddef.h>
#include <stdint.h>

#include "common/stats.h"
#include "shm/ring_layout.h"

#define VB_SHM_MAGIC 0x31766d6862786f76ull /* "voxbhmv1" */
#define VB_SHM_VERSION 3u
#define VB_MAX_BROKERS 256
#define VB_BEAT_STORE VB_MAX_BROKERS /* beat_ns index of the store; brokers by index */
#define VB_BEATS (VB_MAX_BROKERS + 1)
#define VB_SHM_MAX_SLOTS 65536u

/* ---- ring elements ---------------------------------------------------- */

#define VB_FRAME_SAMPLES 320 /* 20 ms of PCM16 mono at 16 kHz */
#define VB_FRAME_RATE 16000
#define VB_FRAME_VOICE 0x1u /* flags: VAD said speech */

typedef struct {
    uint32_t seq;
    uint32_t flags; /* VB_FRAME_* */
    uint64_t t_ns;  /* CLOCK_MONOTONIC at capture, for latency */
    int16_t pcm[VB_FRAME_SAMPLES];
} vb_audio_frame_t;

enum {
    VB_CTL_BARGE_IN = 1, /* w→b: the caller talks over the agent */
    VB_CTL_CLEAR,        /* b→w: drop the agent audio queued at the carrier */
    VB_CTL_MARK,         /* both: a mark (arg = id) was queued / reached */
    VB_CTL_DTMF,         /* w→b: digit received (text); b→w: digits to send */
    VB_CTL_HANGUP,       /* both: end the call (arg = reason) */
    VB_CTL_TRANSFER,     /* b→w: transfer to the number in text */
    VB_CTL_SPEAK_DONE,   /* b→w: the broker finished an utterance */
};

#define VB_CTL_TEXT 240
typedef struct {
    uint32_t type; /* VB_CTL_* */
    uint32_t arg;
    uint64_t t_ns; /* CLOCK_MONOTONIC */
    char text[VB_CTL_TEXT];
} vb_ctl_msg_t;

/* Event kinds for the store; the JSON in data carries the rest. */
enum {
    VB_EV_CALL_STATUS = 1, /* status change, start/end, end reason */
    VB_EV_TURN,            /* a transcript turn with its timings */
    VB_EV_TIMING,          /* latency figures outside a turn */
    VB_EV_USAGE,           /* provider usage (tokens, seconds, characters) */
};

#define VB_EVENT_DATA 1008
typedef struct {
    uint32_t type;            /* VB_EV_* */
    uint32_t len;             /* bytes used in data */
    uint64_t t_ns;            /* CLOCK_REALTIME */
    char data[VB_EVENT_DATA]; /* JSON text, not NUL-terminated when len == VB_EVENT_DATA */
} vb_event_t;

_Static_assert(sizeof(vb_audio_frame_t) == 656, "audio frame layout");
_Static_assert(offsetof(vb_audio_frame_t, pcm) == 16, "audio frame layout");
_Static_assert(sizeof(vb_ctl_msg_t) == 256, "control message layout");
_Static_assert(sizeof(vb_event_t) == 1024, "event layout");

/* ---- rings of a slot ---------------------------------------------------- */

enum {
    VB_RING_CALLER_AUDIO, /* worker → broker, vb_audio_frame_t */
    VB_RING_AGENT_AUDIO,  /* broker → worker, vb_audio_frame_t */
    VB_RING_CTL_W2B,      /* worker → broker, vb_ctl_msg_t */
    VB_RING_CTL_B2W,      /* broker → worker, vb_ctl_msg_t */
    VB_RING_EVENTS_W2S,   /* worker → store, vb_event_t */
    VB_RING_EVENTS_B2S,   /* broker → store, vb_event_t */
    VB_RING__COUNT
};

#define VB_RING_CALLER_AUDIO_CAP 64u /* 1.28 s */
#define VB_RING_AGENT_AUDIO_CAP 256u /* 5.12 s */
#define VB_RING_CTL_CAP 64u
#define VB_RING_EVENTS_CAP 64u

#define VB_SLOT_ALIGN64(x) ((((size_t)(x)) + 63u) & ~(size_t)63u)
#define VB_SLOT_RSZ(cap, type) VB_SLOT_ALIGN64(VB_RING_FOOTPRINT(cap, sizeof(type)))

/* Offsets of each ring inside vb_slot_t.ring_mem. */
#define VB_SLOT_ROFF_CALLER_AUDIO ((size_t)0)
#define VB_SLOT_ROFF_AGENT_AUDIO                                                               \
    (VB_SLOT_ROFF_CALLER_AUDIO + VB_SLOT_RSZ(VB_RING_CALLER_AUDIO_CAP, vb_audio_frame_t))
#define VB_SLOT_ROFF_CTL_W2B                                                                   \
    (VB_SLOT_ROFF_AGENT_AUDIO + VB_SLOT_RSZ(VB_RING_AGENT_AUDIO_CAP, vb_audio_frame_t))
#define VB_SLOT_ROFF_CTL_B2W (VB_SLOT_ROFF_CTL_W2B + VB_SLOT_RSZ(VB_RING_CTL_CAP, vb_ctl_msg_t))
#define VB_SLOT_ROFF_EVENTS_W2S                                                                \
    (VB_SLOT_ROFF_CTL_B2W + VB_SLOT_RSZ(VB_RING_CTL_CAP, vb_ctl_msg_t))
#define VB_SLOT_ROFF_EVENTS_B2S                                                                \
    (VB_SLOT_ROFF_EVENTS_W2S + VB_SLOT_RSZ(VB_RING_EVENTS_CAP, vb_event_t))
#define VB_SLOT_RING_BYTES                                                                     \
    (VB_SLOT_ROFF_EVENTS_B2S + VB_SLOT_RSZ(VB_RING_EVENTS_CAP, vb_event_t))

/* ---- the slot ------------------------------------------------------------ */

enum {
    VB_SLOT_FREE = 0, /* nobody's */
    VB_SLOT_ASSIGNED, /* master gave it to a worker for a new connection */
    VB_SLOT_ACTIVE,   /* the worker has the call; the broker should attach */
    VB_SLOT_ENDING,   /* the worker ended the call normally */
    VB_SLOT_DEAD,     /* the worker died; the master set this */
};

#define VB_SLOT_TRANSCRIPT 8192

/* Who writes what (everyone may read):
 *   master: gen, state (FREE/ASSIGNED/DEAD), broker_epoch, broker_index, and
 *           everything when it resets the slot in vb_slot_assign;
 *   worker: state (ACTIVE/ENDING), identity, worker_pid, start_ns, start_mono_ns,
 *           worker_beat_ns, counters;
 *   broker: broker_ack_gen, broker_pid, broker_attach_epoch, transcript;
 *   store:  store_ack_gen.
 * Writers of different fields sit on different cache lines. */
typedef struct vb_slot {
    /* Line 0: lifecycle. */
    alignas(64) _Atomic uint32_t gen; /* bumped on every assign and on a worker death */
    _Atomic uint32_t state;           /* VB_SLOT_* */
    _Atomic uint32_t broker_epoch;    /* bumped when the broker serving this slot died */
    uint32_t broker_index;            /* which broker serves the call (set before assign) */
    int32_t worker_pid;
    uint32_t rsvd0;
    uint64_t start_ns; /* CLOCK_REALTIME at activation */
    /* CLOCK_MONOTONIC of the worker's last housekeeping tick for this call, for
     * the master's watchdog (relaxed; 0 until the call is active) */
    _Atomic uint64_t worker_beat_ns;
    /* CLOCK_MONOTONIC at activation (system-wide, so every process can measure
     * the call's age with it, whatever steps the wall clock takes) */
    uint64_t start_mono_ns;
    /* Line 1: the broker's. */
    alignas(64) _Atomic uint32_t broker_ack_gen;
    _Atomic int32_t broker_pid;           /* the broker attached, 0 if none */
    _Atomic uint32_t broker_attach_epoch; /* broker_epoch it attached under */
    /* Line 2: the store's. */
    alignas(64) _Atomic uint32_t store_ack_gen;
    /* Line 3: per-call counters, relaxed. */
    alignas(64) _Atomic uint64_t frames_in; /* caller frames the worker produced */
    _Atomic uint64_t frames_out;            /* agent frames the worker played */
    _Atomic uint64_t underruns;             /* ticks with no agent audio while speaking */
    _Atomic uint64_t overruns;              /* pushes dropped on a full ring */
    _Atomic uint64_t late_frames;
    _Atomic uint64_t bad_messages;
    /* Identity, written by the worker before VB_SLOT_ACTIVE; NUL-terminated. */
    alignas(64) char call_id[48];
    char call_sid[48];
    char stream_sid[48];
    char assistant[64];
    char from[32];
    char to[32];
    char assistant_id[40];      /* database id, "" for a config-file assistant */
    int64_t assistant_revision; /* the version the webhook answered with */
    /* Transcript, append-only, written by the broker; bytes below
     * transcript_len are final (release on append, acquire to read). */
    alignas(64) _Atomic uint32_t transcript_len;
    char transcript[VB_SLOT_TRANSCRIPT];
    /* The rings, at VB_SLOT_ROFF_* inside ring_mem. */
    alignas(64) unsigned char ring_mem[VB_SLOT_RING_BYTES];
} vb_slot_t;

_Static_assert(alignof(vb_slot_t) == 64, "slots are cache-line aligned");
_Static_assert(sizeof(vb_slot_t) % 64 == 0, "slot size is a multiple of a line");
_Static_assert(offsetof(vb_slot_t, broker_ack_gen) == 64, "broker line");
_Static_assert(offsetof(vb_slot_t, store_ack_gen) == 128, "store line");
_Static_assert(offsetof(vb_slot_t, frames_in) == 192, "counter line");
_Static_assert(offsetof(vb_slot_t, call_id) == 256, "identity");
_Static_assert(offsetof(vb_slot_t, transcript_len) == 576, "transcript");
_Static_assert(offsetof(vb_slot_t, ring_mem) % 64 == 0, "rings are line aligned");
_Static_assert(VB_SLOT_ROFF_AGENT_AUDIO % 64 == 0 && VB_SLOT_ROFF_CTL_W2B % 64 == 0 &&
                   VB_SLOT_ROFF_CTL_B2W % 64 == 0 && VB_SLOT_ROFF_EVENTS_W2S % 64 == 0 &&
                   VB_SLOT_ROFF_EVENTS_B2S % 64 == 0,
               "ring offsets are line aligned");

/* ---- the region header --------------------------------------------------- */

typedef struct {
    uint64_t magic; /* VB_SHM_MAGIC */
    uint32_t version;
    uint32_t nslots;
    uint64_t size;                     /* bytes mapped */
    uint64_t slots_off;                /* from the region start */
    uint64_t slot_size;                /* sizeof(vb_slot_t) */
    uint64_t ring_off[VB_RING__COUNT]; /* from the slot start */
    int64_t created_ns;                /* CLOCK_REALTIME */
    /* CLOCK_MONOTONIC ns of each broker's (by index) and the store's last
     * tick, for the master's watchdog (ahead of time while one starts) */
    alignas(64) _Atomic uint64_t beat_ns[VB_BEATS];
    alignas(64) vb_stats_t stats; /* process-wide counters, see common/stats.h */
} vb_shm_header_t;

_Static_assert(offsetof(vb_shm_header_t, stats) % 64 == 0, "stats on their own line");
_Static_assert(sizeof(vb_shm_header_t) % 64 == 0, "header size");

#endif
