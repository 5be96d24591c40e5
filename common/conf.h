/* Configuration: one key = value file, every key declared once in a table
 * (conf.c) with its type, default, bounds and whether SIGHUP may change it.
 * Parsed by the master; children inherit the parsed copy across fork(). */
#ifndef VB_COMMON_CONF_H
#define VB_COMMON_CONF_H

#include <stddef.h>
#include <stdio.h>

#define VB_CONF_STR 256
#define VB_MAX_ASSISTANTS 64
#define VB_MAX_NUMBERS 256

typedef enum { VB_ASSISTANT_ECHO = 0, VB_ASSISTANT_LOCAL = 1 } vb_assistant_mode_t;

#define VB_INTENTS_MAX 8192
#define VB_BARGE_IN_MS_DEFAULT 300    /* also the column default in sql/002 */
#define VB_END_SILENCE_MS_DEFAULT 500 /* also the column default in sql/002 */

typedef struct {
    char name[64];
    char id[40];          /* database id (uuid), "" for assistants from the config file */
    long long revision;   /* bumped on every change in the database; 0 from the file */
    vb_assistant_mode_t mode;
    char first_message[VB_CONF_STR];
    char fallback[VB_CONF_STR]; /* local engine: reply when no intent matches */
    char voice[64];       /* espeak-ng voice, e.g. en-us, en-gb+f2 */
    char language[16];    /* BCP 47, e.g. en-US */
    int rate;             /* words per minute for the local voice */
    int echo_delay_ms;    /* echo mode: how long the broker holds audio before playing it back */
    int barge_in_ms;      /* local: caller speech over the agent that interrupts it */
    int end_silence_ms;   /* local: silence that ends the caller's turn */
    /* local engine intents, JSON: [{"name":"hours","patterns":["what are your hours",...],
     * "reply":"We are open ...","end_call":false}, ...] */
    char intents_json[VB_INTENTS_MAX];
} vb_assistant_t;

typedef struct {
    char number[32];    /* E.164, as Twilio sends it in To= */
    char assistant[64]; /* name of an assistant */
} vb_number_t;

typedef struct {
    char path[VB_CONF_STR]; /* file it came from; "" for defaults only */
    char listen_api[VB_CONF_STR];
    char listen_media[VB_CONF_STR];
    char public_url[VB_CONF_STR];
    char public_media_url[VB_CONF_STR];
    char listen_api_tls_cert[VB_CONF_STR];
    char listen_api_tls_key[VB_CONF_STR];
    char listen_media_tls_cert[VB_CONF_STR];
    char listen_media_tls_key[VB_CONF_STR];
    char database_url[VB_CONF_STR];
    char redis_url[VB_CONF_STR];
    char state_dir[VB_CONF_STR];
    char log_file[VB_CONF_STR];
    int workers; /* 0 = auto */
    int workers_min_spare;
    int workers_max;
    int calls_per_worker;
    int brokers; /* 0 = auto */
    int api_workers;
    int api_max_connections; /* per api worker; 0 = from the open-files limit */
    int local_open_lm;       /* offline STT loads the open language model */
    int api_max_connections_per_ip; /* per api worker; 0 = no limit */
    int shutdown_timeout; /* seconds */
    int watchdog_ms;      /* 0: off */
    int log_level;
    char twilio_auth_token[VB_CONF_STR];
    int http_max_header_bytes;
    int http_max_body_bytes;
    int http_request_timeout; /* seconds to send headers and body */
    int http_idle_timeout;    /* seconds a keep-alive connection may sit idle */
    int ws_max_message_bytes;
    int max_unplayed_ms; /* outbound audio allowed to sit unplayed at the carrier */
    int slots;           /* shared-memory call slots; 0 = workers_max * calls_per_worker */
    int n_assistants;
    vb_assistant_t assistants[VB_MAX_ASSISTANTS];
    int n_numbers;
    vb_number_t numbers[VB_MAX_NUMBERS];
} vb_conf_t;

/* Defaults for every key. */
void vb_conf_defaults(vb_conf_t *conf);
/* Parse FILE over the defaults. On error returns -EINVAL (or -errno when the
 * file cannot be read) and writes "FILE:LINE: key 'K': why" into err. */
int vb_conf_load(vb_conf_t *conf, const char *path, char *err, size_t errlen);
/* Resolve "auto" values against the machine (cores). */
void vb_conf_finalize(vb_conf_t *conf);
/* Keys whose change needs a restart and differ between a and b, comma separated
 * into out (empty when none). */
void vb_conf_restart_keys_changed(const vb_conf_t *a, const vb_conf_t *b, char *out, size_t outlen);
/* Carry the restart-only keys of the running config into NEXT (SIGHUP). */
void vb_conf_keep_restart_keys(vb_conf_t *next, const vb_conf_t *running);
/* Print the key table (name, type, default, reload, description) for docs. */
void vb_conf_print_table(FILE *out);

const vb_assistant_t *vb_conf_assistant(const vb_conf_t *conf, const char *name);
/* The assistant answering calls to NUMBER, or NULL. */
const vb_assistant_t *vb_conf_number_assistant(const vb_conf_t *conf, const char *number);

#endif
