/* voxbridge-callsim: the structures shared by sim.c (the run), call.c (one call's state
 * machine) and summary.c (the JSON summary). Internal to voxbridge-callsim. */
#ifndef VB_CALLSIM_SIM_INT_H
#define VB_CALLSIM_SIM_INT_H

#include <stdint.h>

#include <jansson.h>
#include <openssl/ssl.h>

#include "callsim/audio.h"
#include "callsim/conv.h"
#include "callsim/http.h"
#include "callsim/options.h"
#include "callsim/playout.h"
#include "callsim/sim.h"
#include "callsim/stats.h"
#include "callsim/wav.h"
#include "common/ws.h"

#define VB_CS_TICK_US 20000
/* With --phases N each call sends on one of N phases of the 20 ms frame grid, as
 * independent calls at a carrier do; the default, 1, sends every call's frame in the same
 * instant (the burst that the benchmark figures since the first were measured with). */
#define VB_CS_PHASE_US(s) (VB_CS_TICK_US / (s)->o->phases)

typedef enum {
    VB_CS_IDLE,       /* not started yet */
    VB_CS_WEBHOOK,    /* POST /twilio/voice in flight */
    VB_CS_CONNECTING, /* WebSocket handshake */
    VB_CS_STREAMING,  /* sending media */
    VB_CS_CLOSING,    /* stop sent, close handshake running */
    VB_CS_DONE,
} vb_cs_state_t;

typedef enum {
    VB_CS_PENDING,
    VB_CS_ANSWERED, /* the stream opened */
    VB_CS_REJECTED, /* TwiML without a stream */
    VB_CS_FAILED,   /* HTTP error, bad TwiML, the WebSocket did not open, timeout */
} vb_cs_result_t;

typedef struct vb_cs_call vb_cs_call_t;

struct vb_cs_call {
    vb_cs_sim_t *sim;
    int n; /* 1-based */
    vb_cs_state_t state;
    vb_cs_result_t result;
    char reason[256];
    vb_cs_call_t *next, *prev; /* in sim->streaming while STREAMING */
    int in_list;

    char call_sid[40], stream_sid[40], call_id[80];
    json_t *custom;  /* <Parameter>s besides call_id, or NULL */
    int http_status; /* 0: no response */
    int close_code;  /* 0: no WebSocket */
    char close_reason[128];
    int timed_out;
    int server_closed; /* the server ended the stream before we did */

    vb_ws_t *ws;
    int64_t t_start, t_webhook, t_open, t_end; /* CLOCK_MONOTONIC us */
    int64_t t_done;                            /* the caller had said all; 0: not yet */
    int64_t t0;                                /* timeline origin, on the tick grid */
    uint64_t total_frames, sent;
    uint32_t seq;
    int loop;
    const char *dtmf_next;
    uint64_t dtmf_frame;
    int64_t lag_max_us;

    vb_cs_playout_t play;
    vb_cs_rx_t rx;
    vb_cs_onset_t onset;
    vb_cs_rtt_t rtt;
    int converse;             /* the caller's lines wait for the agent (conv.h) */
    vb_cs_conv_t conv;        /* when converse */
    int quiet_level;          /* sample level below which the agent's queued audio is quiet */
    int64_t first_onset;      /* timeline of the agent's first onset; -1: none */
    int64_t greeting_samples; /* agent audio received before the first line; -1: none */
    vb_cs_wav_writer_t out;
    int has_out;
    uint64_t samples_received, marks_received, marks_answered, clears, dtmf_sent;
    uint64_t bad_messages, send_errors;
};

struct vb_cs_sim {
    struct event_base *base;
    const vb_cs_opts_t *o;
    const vb_cs_audio_t *audio;
    vb_cs_http_t *http;
    SSL_CTX *tls;
    char account_sid[40];
    int event_level; /* log level of per-event lines (marks, clears) */

    vb_cs_call_t *calls;
    int started, done;
    vb_cs_call_t *streaming; /* list head */
    int64_t t_base;          /* tick grid origin */
    struct event *tick, *ramp, *timeout, *grace;
    int timed_out, finished;
};

/* call.c */
int64_t vb_cs_now_us(void);
void vb_cs_random_sid(char *out, size_t cap, const char *prefix);
void vb_cs_call_log(const vb_cs_call_t *c, int level, const char *fmt, ...)
    __attribute__((format(printf, 3, 4)));
int vb_cs_call_init(vb_cs_call_t *c, vb_cs_sim_t *s, int n);
void vb_cs_call_start(vb_cs_call_t *c);
/* Ends the call now with RESULT and a reason (logged). */
void vb_cs_call_end(vb_cs_call_t *c, vb_cs_result_t result, const char *fmt, ...)
    __attribute__((format(printf, 3, 4)));
/* The run is ending (WHY: "timeout", "interrupted"...): hang up with 1001. */
void vb_cs_call_timeout(vb_cs_call_t *c, const char *why);
void vb_cs_call_free(vb_cs_call_t *c);

/* stream.c: the Media Streams side of a call. */
int vb_cs_stream_init(vb_cs_call_t *c);
void vb_cs_stream_free(vb_cs_call_t *c);
/* The WebSocket opened at NOW: connected and start go out, media from the next tick. */
void vb_cs_stream_open(vb_cs_call_t *c, int64_t now);
/* The 20 ms tick: frames due, DTMF, the end of the call, playout up to NOW. */
void vb_cs_stream_tick(vb_cs_call_t *c, int64_t now);
void vb_cs_stream_message(vb_cs_call_t *c, int is_text, const uint8_t *data, size_t len,
                          int64_t now);
/* Sends stop and closes the WebSocket with CODE (WHY may be NULL), as Twilio does at
 * hang-up; the call ends when the close handshake does. Only while STREAMING. */
void vb_cs_stream_hang_up(vb_cs_call_t *c, int code, const char *why);
/* The stream is gone: play out what is due and close the --out file. */
void vb_cs_stream_end(vb_cs_call_t *c, int64_t now);

/* sim.c, for the calls */
void vb_cs_sim_streaming(vb_cs_sim_t *s, vb_cs_call_t *c, int on);
void vb_cs_sim_call_done(vb_cs_sim_t *s, vb_cs_call_t *c);
/* The first tick of the grid at or after T. */
int64_t vb_cs_sim_grid(const vb_cs_sim_t *s, int64_t t);
/* Answered, closed with 1000, not timed out. */
int vb_cs_sim_call_clean(const vb_cs_call_t *c);
/* The client TLS context, made on first use; NULL on failure (logged). */
SSL_CTX *vb_cs_sim_tls(vb_cs_sim_t *s);

#endif
