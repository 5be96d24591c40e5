/* voxbridge-callsim: command-line options (getopt_long) and their defaults. Run by
 * voxbridge-callsim only. */
#ifndef VB_CALLSIM_OPTIONS_H
#define VB_CALLSIM_OPTIONS_H

#include <stdio.h>

#define VB_CS_MAX_WAVS 64
#define VB_CS_MAX_CALLS 100000
#define VB_CS_DEFAULT_TO "+15555550100"
#define VB_CS_DEFAULT_FROM "+15555550199"
#define VB_CS_DEFAULT_PAUSE_MS 800
#define VB_CS_DEFAULT_RAMP_MS 20
#define VB_CS_DEFAULT_BURSTS 10
#define VB_CS_DEFAULT_ONSET_DBFS (-36.0)
#define VB_CS_DEFAULT_QUIET_MS 200
#define VB_CS_TAIL_MS 2000

/* One caller line, in the order given: a WAV file or a text to speak. */
typedef struct {
    int is_say;
    const char *arg; /* the file name, or the text */
} vb_cs_line_t;

typedef struct {
    const char *url;        /* http(s) base of the API listener */
    const char *public_url; /* what the signature is computed over; default url */
    const char *token;      /* Twilio auth token; --token or TWILIO_AUTH_TOKEN */
    const char *account_sid;
    const char *to, *from;
    const char *wavs[VB_CS_MAX_WAVS]; /* the --wav files among the lines */
    int nwavs;
    vb_cs_line_t lines[VB_CS_MAX_WAVS]; /* --wav and --say, in order */
    int nlines;
    const char *voice; /* espeak-ng voice of --say lines */
    int rate;          /* words per minute of --say lines */
    int gap_ms;        /* conversation: agent quiet this long before the caller speaks */
    int wait_ms;       /* conversation: longest wait for an answer to start */
    int pause_ms;
    const char *out;
    int calls;
    double duration_s; /* 0: audio length plus VB_CS_TAIL_MS */
    int ramp_ms;
    int phases;  /* the 20 ms frame grid is split into this many send phases */
    int tail_ms; /* listening after the last frame, before the hang-up */
    double timeout_s; /* 0: computed from calls, ramp and duration */
    const char *dtmf;
    int insecure;
    const char *ca_file;
    int quiet;
    int per_call; /* per_call in the summary even past 20 calls */
    int bursts;   /* test-signal bursts when there is no --wav and no --duration */
    double onset_dbfs;
    int quiet_ms;    /* silence before an agent onset counts */
    int skip_onsets; /* agent onsets to ignore at the start of each call (greeting) */
} vb_cs_opts_t;

/* Parses ARGV into O (defaults first; pointers refer to ARGV or the environment).
 * Returns 0, 1 when --help was printed to OUT, or -EINVAL after printing why to ERR. */
int vb_cs_opts_parse(vb_cs_opts_t *o, int argc, char **argv, FILE *out, FILE *err);
void vb_cs_opts_usage(FILE *f);
/* 1 when the calls are conversations (lines given, no --duration): each line waits for
 * the agent to finish; else the caller audio plays on a fixed timeline. */
int vb_cs_opts_conversation(const vb_cs_opts_t *o);

#endif
