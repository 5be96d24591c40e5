/* voxbridge-callsim: a run of simulated Twilio calls on one libevent loop. Calls start
 * --ramp-ms apart; each POSTs its signed voice webhook, follows the TwiML to the Media
 * Streams WebSocket and streams the caller audio in real time, all paced by one shared
 * 20 ms timer on absolute times. When the last call has ended (or --timeout passed) the
 * loop is told to exit. Run by voxbridge-callsim only (and its unit test). */
#ifndef VB_CALLSIM_SIM_H
#define VB_CALLSIM_SIM_H

#include <jansson.h>

#include "callsim/audio.h"
#include "callsim/conv.h"
#include "callsim/options.h"

struct event_base;

typedef struct vb_cs_sim vb_cs_sim_t;

/* O and AUDIO must outlive the sim. NULL on failure (logged). */
vb_cs_sim_t *vb_cs_sim_new(struct event_base *base, const vb_cs_opts_t *o,
                           const vb_cs_audio_t *audio);
/* Schedules the calls; the caller then runs BASE's loop, which exits when the run is
 * over. 0 or -errno. */
int vb_cs_sim_start(vb_cs_sim_t *s);
/* Ends the run early (SIGINT, --timeout): every call still going hangs up (1001) and is
 * not counted as clean; the loop exits when they are closed or after a grace period. */
void vb_cs_sim_stop(vb_cs_sim_t *s, const char *why);
/* 1 once every call has ended or the run timed out. */
int vb_cs_sim_finished(const vb_cs_sim_t *s);
/* 1 when every call was answered and its stream ended with close code 1000. */
int vb_cs_sim_ok(const vb_cs_sim_t *s);
/* The summary object described in docs/callsim.md (new reference). */
json_t *vb_cs_sim_summary(vb_cs_sim_t *s);
void vb_cs_sim_free(vb_cs_sim_t *s);

/* Milliseconds a call lasts from its stream's start, from the options and audio (for a
 * conversation: the longest it may last). */
double vb_cs_sim_call_ms(const vb_cs_opts_t *o, const vb_cs_audio_t *audio);
/* The conversation timing the options ask for. */
void vb_cs_sim_conv_opts(const vb_cs_opts_t *o, vb_cs_conv_opts_t *co);
/* The --out file of call N (1-based) of CALLS: FILE itself for one call, else
 * "base-N.ext" ("out.wav" -> "out-3.wav"; no extension: "out-3"). */
void vb_cs_sim_out_path(const char *out, int n, int calls, char *buf, size_t cap);

#endif
