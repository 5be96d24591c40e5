/* Configuration parser, run by the master (and by `voxbridge -t`). Every key is
 * declared once in conf_keys[] below; the man page and docs/configuration.md
 * are checked against this table by tests/unit/test_conf.c. */
#include "common/conf.h"
#include "common/log.h"
#include "common/role.h"

#include <ctype.h>
#include <jansson.h>
#include <errno.h>
#include <limits.h>
#include <stdarg.h>
#include <stdlib.h>
#include <string.h>
#include <unistd.h>

typedef enum { T_STR, T_INT, T_AUTO_INT, T_LEVEL, T_SECRET } key_type_t;

typedef struct {
    const char *name;
    key_type_t type;
    size_t offset;
    const char *def;
    long min, max;
    int reloadable; /* 1: SIGHUP applies it; 0: restart needed */
    const char *doc;
} conf_key_t;

#define OFF(f) offsetof(vb_conf_t, f)

static const conf_key_t conf_keys[] = {
    {"listen_api", T_STR, OFF(listen_api), "127.0.0.1:8080", 0, 0, 0,
     "host:port for webhooks, REST API, health and metrics"},
    {"listen_media", T_STR, OFF(listen_media), "127.0.0.1:8081", 0, 0, 0,
     "host:port for carrier media WebSockets"},
    {"public_url", T_STR, OFF(public_url), "http://127.0.0.1:8080", 0, 0, 1,
     "base URL the carrier uses for webhooks (signatures are checked against it)"},
    {"public_media_url", T_STR, OFF(public_media_url), "ws://127.0.0.1:8081", 0, 0, 1,
     "base ws:// or wss:// URL the carrier is told to stream media to"},
    {"listen_api_tls_cert", T_STR, OFF(listen_api_tls_cert), "", 0, 0, 0,
     "PEM certificate chain: serve the API listener over TLS"},
    {"listen_api_tls_key", T_STR, OFF(listen_api_tls_key), "", 0, 0, 0,
     "PEM private key for listen_api_tls_cert"},
    {"listen_media_tls_cert", T_STR, OFF(listen_media_tls_cert), "", 0, 0, 0,
     "PEM certificate chain: serve the media listener over TLS"},
    {"listen_media_tls_key", T_STR, OFF(listen_media_tls_key), "", 0, 0, 0,
     "PEM private key for listen_media_tls_cert"},
    {"database_url", T_SECRET, OFF(database_url), "", 0, 0, 1,
     "libpq conninfo or URI of PostgreSQL (env:NAME or file:PATH allowed)"},
    {"redis_url", T_SECRET, OFF(redis_url), "", 0, 0, 1,
     "redis://host:port/db of Redis (env:NAME or file:PATH allowed)"},
    {"state_dir", T_STR, OFF(state_dir), VB_LOCALSTATEDIR "/lib/voxbridge", 0, 0, 0,
     "directory for the spool and recordings"},
    {"log_file", T_STR, OFF(log_file), "", 0, 0, 0,
     "append logs to this file instead of stderr; reopened on SIGUSR1"},
    {"workers", T_AUTO_INT, OFF(workers), "auto", 1, 4096, 1,
     "media workers started up front; auto = 4 per core"},
    {"workers_min_spare", T_INT, OFF(workers_min_spare), "2", 0, 4096, 1,
     "idle media workers kept ready for new calls"},
    {"workers_max", T_INT, OFF(workers_max), "512", 1, 8192, 0,
     "most media workers; past it new media connections get 503"},
    {"calls_per_worker", T_INT, OFF(calls_per_worker), "1", 1, 64, 0,
     "calls one media worker serves at once (1 = a crash ends one call)"},
    {"brokers", T_AUTO_INT, OFF(brokers), "auto", 1, 256, 0, /* VB_MAX_BROKERS */
     "AI broker processes; auto = one per core"},
    {"api_max_connections", T_INT, OFF(api_max_connections), "0", 0, 1000000, 1,
     "open connections per api worker before the master answers 503 itself; 0 = what the "
     "open-files limit leaves room for"},
    {"local_open_lm", T_INT, OFF(local_open_lm), "1", 0, 1, 0,
     "offline STT: 1 also loads the open language model (about 95 MB per broker) for lines "
     "no intent covers; 0 recognises the intents' phrases only"},
    {"api_max_connections_per_ip", T_INT, OFF(api_max_connections_per_ip), "0", 0, 1000000, 1,
     "open connections one client address may hold in each api worker (503 past it); 0 = no "
     "limit. Leave 0 behind a reverse proxy or load balancer: every client is its address"},
    {"api_workers", T_INT, OFF(api_workers), "2", 1, 64, 1,
     "api worker processes (webhooks, REST, health, metrics)"},
    {"shutdown_timeout", T_INT, OFF(shutdown_timeout), "30", 0, 86400, 1,
     "seconds SIGTERM waits for calls to finish"},
    {"watchdog_ms", T_INT, OFF(watchdog_ms), "3000", 0, 600000, 1,
     "a broker, the store or a media worker whose loop has not run for this long is killed and "
     "restarted (a worker's calls end as failed; 0: off)"},
    {"log_level", T_LEVEL, OFF(log_level), "info", 0, 0, 1,
     "error, warn, notice, info or debug"},
    {"twilio_auth_token", T_SECRET, OFF(twilio_auth_token), "", 0, 0, 1,
     "Twilio auth token for X-Twilio-Signature (env:NAME or file:PATH allowed)"},
    {"http_max_header_bytes", T_INT, OFF(http_max_header_bytes), "16384", 1024, 1048576, 1,
     "largest request line plus headers; past it 431"},
    {"http_max_body_bytes", T_INT, OFF(http_max_body_bytes), "1048576", 0, 67108864, 1,
     "largest request body; past it 413"},
    {"http_request_timeout", T_INT, OFF(http_request_timeout), "10", 1, 3600, 1,
     "seconds a client has to send a whole request"},
    {"http_idle_timeout", T_INT, OFF(http_idle_timeout), "60", 1, 3600, 1,
     "seconds an idle keep-alive connection is kept"},
    {"ws_max_message_bytes", T_INT, OFF(ws_max_message_bytes), "65536", 1024, 16777216, 1,
     "largest WebSocket message; past it the connection closes with 1009"},
    {"max_unplayed_ms", T_INT, OFF(max_unplayed_ms), "100", 20, 2000, 1,
     "outbound audio allowed to sit unplayed at the carrier"},
    {"slots", T_INT, OFF(slots), "0", 0, 65536, 0,
     "shared-memory call slots; 0 = workers_max * calls_per_worker"},
};

#define N_KEYS (sizeof(conf_keys) / sizeof(conf_keys[0]))

typedef struct {
    const char *name;
    key_type_t type;
    size_t offset;
    size_t size;
    const char *doc;
    long lo, hi; /* T_INT */
} asst_key_t;

#define AOFF(f) offsetof(vb_assistant_t, f), sizeof(((vb_assistant_t *)0)->f)

static const asst_key_t asst_keys[] = {
    {"mode", T_STR, AOFF(mode), "echo (play the caller back) or local (offline voice)", 0, 0},
    {"first_message", T_STR, AOFF(first_message), "what the agent says when it answers", 0, 0},
    {"voice", T_STR, AOFF(voice), "espeak-ng voice of the local TTS", 0, 0},
    {"rate", T_INT, AOFF(rate), "words per minute of the local TTS (80-450)", 80, 450},
    {"echo_delay_ms", T_INT, AOFF(echo_delay_ms), "echo mode: delay before playback (0-5000)",
     0, 5000},
    {"barge_in_ms", T_INT, AOFF(barge_in_ms),
     "local mode: caller speech over the agent that interrupts it (60-5000, default 300)", 60,
     5000},
    {"end_silence_ms", T_INT, AOFF(end_silence_ms),
     "local mode: silence that ends the caller's turn (200-5000, default 500)", 200, 5000},
    {"fallback", T_STR, AOFF(fallback), "local mode: reply when no intent matches", 0, 0},
    {"language", T_STR, AOFF(language), "language of the assistant (BCP 47, e.g. en-US)", 0, 0},
    {"intents_file", T_STR, 0, 0, "local mode: JSON file of intents (patterns, reply, end_call)", 0, 0},
};

#define N_ASST_KEYS (sizeof(asst_keys) / sizeof(asst_keys[0]))

static int fail(char *err, size_t errlen, const char *fmt, ...)
    __attribute__((format(printf, 3, 4)));

static int fail(char *err, size_t errlen, const char *fmt, ...)
{
    va_list ap;
    va_start(ap, fmt);
    vsnprintf(err, errlen, fmt, ap);
    va_end(ap);
    return -EINVAL;
}

static int parse_long(const char *v, long min, long max, long *out)
{
    char *end;
    errno = 0;
    long n = strtol(v, &end, 10);
    if (errno != 0 || end == v || *end != '\0' || n < min || n > max) {
        return -EINVAL;
    }
    *out = n;
    return 0;
}

/* "env:NAME" and "file:PATH" keep secrets out of the config file. */
static int resolve_secret(const char *v, char *out, size_t outlen, char *why, size_t whylen)
{
    if (strncmp(v, "env:", 4) == 0) {
        const char *e = getenv(v + 4);
        if (e == NULL) {
            return fail(why, whylen, "environment variable %s is not set", v + 4);
        }
        v = e;
    } else if (strncmp(v, "file:", 5) == 0) {
        FILE *f = fopen(v + 5, "r");
        if (f == NULL) {
            return fail(why, whylen, "cannot read %s: %s", v + 5, strerror(errno));
        }
        size_t n = fread(out, 1, outlen - 1, f);
        fclose(f);
        while (n > 0 && (out[n - 1] == '\n' || out[n - 1] == '\r')) {
            n--;
        }
        out[n] = '\0';
        return 0;
    }
    if (strlen(v) >= outlen) {
        return fail(why, whylen, "value longer than %zu bytes", outlen - 1);
    }
    snprintf(out, outlen, "%s", v);
    return 0;
}

static int set_key(vb_conf_t *conf, const conf_key_t *k, const char *v, char *why, size_t whylen)
{
    char *field = (char *)conf + k->offset;
    long n;
    switch (k->type) {
    case T_STR:
        if (strlen(v) >= VB_CONF_STR) {
            return fail(why, whylen, "value longer than %d bytes", VB_CONF_STR - 1);
        }
        snprintf(field, VB_CONF_STR, "%s", v);
        return 0;
    case T_SECRET:
        return resolve_secret(v, field, VB_CONF_STR, why, whylen);
    case T_AUTO_INT:
        if (strcmp(v, "auto") == 0) {
            *(int *)field = 0;
            return 0;
        }
        /* fall through */
    case T_INT:
        if (parse_long(v, k->min, k->max, &n) < 0) {
            return fail(why, whylen, "expected a whole number from %ld to %ld%s", k->min, k->max,
                        k->type == T_AUTO_INT ? " or auto" : "");
        }
        *(int *)field = (int)n;
        return 0;
    case T_LEVEL:
        if ((n = vb_log_level_parse(v)) < 0) {
            return fail(why, whylen, "expected error, warn, notice, info or debug");
        }
        *(int *)field = (int)n;
        return 0;
    }
    return -EINVAL;
}

void vb_conf_defaults(vb_conf_t *conf)
{
    char why[128];
    memset(conf, 0, sizeof(*conf));
    for (size_t i = 0; i < N_KEYS; i++) {
        int rc = set_key(conf, &conf_keys[i], conf_keys[i].def, why, sizeof(why));
        VB_ASSERT(rc == 0);
    }
}

static vb_assistant_t *assistant_get(vb_conf_t *conf, const char *name, size_t namelen)
{
    for (int i = 0; i < conf->n_assistants; i++) {
        if (strlen(conf->assistants[i].name) == namelen &&
            strncmp(conf->assistants[i].name, name, namelen) == 0) {
            return &conf->assistants[i];
        }
    }
    if (conf->n_assistants == VB_MAX_ASSISTANTS || namelen == 0 ||
        namelen >= sizeof(conf->assistants[0].name)) {
        return NULL;
    }
    vb_assistant_t *a = &conf->assistants[conf->n_assistants++];
    memset(a, 0, sizeof(*a));
    memcpy(a->name, name, namelen);
    a->mode = VB_ASSISTANT_ECHO;
    snprintf(a->voice, sizeof(a->voice), "en-us");
    snprintf(a->language, sizeof(a->language), "en-US");
    snprintf(a->intents_json, sizeof(a->intents_json), "[]");
    a->rate = 175;
    a->barge_in_ms = VB_BARGE_IN_MS_DEFAULT;
    a->end_silence_ms = VB_END_SILENCE_MS_DEFAULT;
    return a;
}

/* The intents of a config-file assistant live in a JSON file of their own. */
static int load_intents(vb_assistant_t *a, const char *path, char *why, size_t whylen)
{
    FILE *f = fopen(path, "r");
    if (f == NULL) {
        return fail(why, whylen, "cannot read %s: %s", path, strerror(errno));
    }
    size_t n = fread(a->intents_json, 1, sizeof(a->intents_json), f);
    fclose(f);
    if (n == sizeof(a->intents_json)) {
        return fail(why, whylen, "%s is larger than %d bytes", path, VB_INTENTS_MAX - 1);
    }
    a->intents_json[n] = '\0';
    json_error_t jerr;
    json_t *j = json_loads(a->intents_json, 0, &jerr);
    int ok = json_is_array(j);
    json_decref(j);
    if (!ok) {
        return fail(why, whylen, "%s: not a JSON array of intents (line %d: %s)", path, jerr.line,
                    jerr.text);
    }
    return 0;
}

static int set_assistant_key(vb_assistant_t *a, const char *key, const char *v, char *why,
                             size_t whylen)
{
    long n;
    if (strcmp(key, "mode") == 0) {
        if (strcmp(v, "echo") == 0) {
            a->mode = VB_ASSISTANT_ECHO;
        } else if (strcmp(v, "local") == 0) {
            a->mode = VB_ASSISTANT_LOCAL;
        } else {
            return fail(why, whylen, "expected echo or local");
        }
        return 0;
    }
    if (strcmp(key, "intents_file") == 0) {
        return load_intents(a, v, why, whylen);
    }
    for (size_t i = 0; i < N_ASST_KEYS; i++) {
        const asst_key_t *k = &asst_keys[i];
        if (strcmp(key, k->name) != 0) {
            continue;
        }
        char *field = (char *)a + k->offset;
        if (k->type == T_INT) {
            if (parse_long(v, k->lo, k->hi, &n) < 0) {
                return fail(why, whylen, "expected a whole number from %ld to %ld", k->lo, k->hi);
            }
            *(int *)field = (int)n;
            return 0;
        }
        if (strlen(v) >= k->size) {
            return fail(why, whylen, "value longer than %zu bytes", k->size - 1);
        }
        snprintf(field, k->size, "%s", v);
        return 0;
    }
    return fail(why, whylen, "unknown assistant setting");
}

/* assistant.NAME.SETTING = value */
static int set_assistant(vb_conf_t *conf, const char *key, const char *v, char *why,
                         size_t whylen)
{
    const char *name = key + strlen("assistant.");
    const char *dot = strchr(name, '.');
    if (dot == NULL) {
        return fail(why, whylen, "expected assistant.NAME.SETTING");
    }
    vb_assistant_t *a = assistant_get(conf, name, (size_t)(dot - name));
    if (a == NULL) {
        return fail(why, whylen, "bad assistant name or more than %d assistants",
                    VB_MAX_ASSISTANTS);
    }
    return set_assistant_key(a, dot + 1, v, why, whylen);
}

/* number.+15551230001 = ASSISTANT */
static int set_number(vb_conf_t *conf, const char *key, const char *v, char *why, size_t whylen)
{
    const char *num = key + strlen("number.");
    if (*num == '\0' || strlen(num) >= sizeof(conf->numbers[0].number)) {
        return fail(why, whylen, "expected number.E164 = assistant");
    }
    if (conf->n_numbers == VB_MAX_NUMBERS) {
        return fail(why, whylen, "more than %d numbers", VB_MAX_NUMBERS);
    }
    if (strlen(v) >= sizeof(conf->numbers[0].assistant)) {
        return fail(why, whylen, "assistant name too long");
    }
    vb_number_t *n = &conf->numbers[conf->n_numbers++];
    snprintf(n->number, sizeof(n->number), "%s", num);
    snprintf(n->assistant, sizeof(n->assistant), "%s", v);
    return 0;
}

static int set_any(vb_conf_t *conf, const char *key, const char *v, char *why, size_t whylen)
{
    if (strncmp(key, "assistant.", 10) == 0) {
        return set_assistant(conf, key, v, why, whylen);
    }
    if (strncmp(key, "number.", 7) == 0) {
        return set_number(conf, key, v, why, whylen);
    }
    for (size_t i = 0; i < N_KEYS; i++) {
        if (strcmp(key, conf_keys[i].name) == 0) {
            return set_key(conf, &conf_keys[i], v, why, whylen);
        }
    }
    return fail(why, whylen, "unknown key");
}

static char *trim(char *s)
{
    while (isspace((unsigned char)*s)) {
        s++;
    }
    size_t n = strlen(s);
    while (n > 0 && isspace((unsigned char)s[n - 1])) {
        s[--n] = '\0';
    }
    return s;
}

/* Strip a trailing comment and optional double quotes around the value. */
static char *clean_value(char *v)
{
    if (*v == '"') {
        char *end = strrchr(v + 1, '"');
        if (end != NULL) {
            *end = '\0';
            return v + 1;
        }
    }
    char *hash = strstr(v, " #");
    if (hash != NULL) {
        *hash = '\0';
    }
    return trim(v);
}

static int parse_line(vb_conf_t *conf, char *line, const char *path, int lineno, char *err,
                      size_t errlen)
{
    char *s = trim(line);
    if (*s == '\0' || *s == '#') {
        return 0;
    }
    char *eq = strchr(s, '=');
    if (eq == NULL) {
        return fail(err, errlen, "%s:%d: expected key = value", path, lineno);
    }
    *eq = '\0';
    char *key = trim(s);
    char *val = clean_value(trim(eq + 1));
    char why[256];
    if (set_any(conf, key, val, why, sizeof(why)) < 0) {
        return fail(err, errlen, "%s:%d: key '%s': %s", path, lineno, key, why);
    }
    return 0;
}

static int check_numbers(const vb_conf_t *conf, const char *path, char *err, size_t errlen)
{
    for (int i = 0; i < conf->n_numbers; i++) {
        if (vb_conf_assistant(conf, conf->numbers[i].assistant) == NULL) {
            return fail(err, errlen, "%s: key 'number.%s': no assistant named '%s'", path,
                        conf->numbers[i].number, conf->numbers[i].assistant);
        }
    }
    const char *tls[][2] = {{conf->listen_api_tls_cert, conf->listen_api_tls_key},
                            {conf->listen_media_tls_cert, conf->listen_media_tls_key}};
    for (int i = 0; i < 2; i++) {
        if ((tls[i][0][0] == '\0') != (tls[i][1][0] == '\0')) {
            return fail(err, errlen, "%s: key '%s': TLS needs both a certificate and a key", path,
                        i == 0 ? "listen_api_tls_cert" : "listen_media_tls_cert");
        }
    }
    return 0;
}

int vb_conf_load(vb_conf_t *conf, const char *path, char *err, size_t errlen)
{
    vb_conf_defaults(conf);
    snprintf(conf->path, sizeof(conf->path), "%s", path);
    FILE *f = fopen(path, "r");
    if (f == NULL) {
        int e = errno;
        fail(err, errlen, "%s: cannot open: %s", path, strerror(e));
        return -e;
    }
    char line[4096];
    int lineno = 0, rc = 0;
    while (rc == 0 && fgets(line, sizeof(line), f) != NULL) {
        lineno++;
        rc = parse_line(conf, line, path, lineno, err, errlen);
    }
    fclose(f);
    if (rc == 0) {
        rc = check_numbers(conf, path, err, errlen);
    }
    return rc;
}

void vb_conf_finalize(vb_conf_t *conf)
{
    long cores = sysconf(_SC_NPROCESSORS_ONLN);
    if (cores < 1) {
        cores = 1;
    }
    if (conf->brokers == 0) {
        conf->brokers = (int)cores;
    }
    if (conf->workers == 0) {
        conf->workers = (int)cores * 4;
    }
    if (conf->workers > conf->workers_max) {
        conf->workers = conf->workers_max;
    }
    if (conf->slots == 0) {
        conf->slots = conf->workers_max * conf->calls_per_worker;
    }
}

void vb_conf_restart_keys_changed(const vb_conf_t *a, const vb_conf_t *b, char *out, size_t outlen)
{
    size_t used = 0;
    out[0] = '\0';
    for (size_t i = 0; i < N_KEYS; i++) {
        const conf_key_t *k = &conf_keys[i];
        if (k->reloadable) {
            continue;
        }
        const char *fa = (const char *)a + k->offset, *fb = (const char *)b + k->offset;
        int same = (k->type == T_STR || k->type == T_SECRET) ? strcmp(fa, fb) == 0
                                                             : *(const int *)fa == *(const int *)fb;
        if (!same && used + strlen(k->name) + 2 < outlen) {
            used += (size_t)snprintf(out + used, outlen - used, "%s%s", used ? "," : "", k->name);
        }
    }
}

void vb_conf_print_table(FILE *out)
{
    for (size_t i = 0; i < N_KEYS; i++) {
        const conf_key_t *k = &conf_keys[i];
        fprintf(out, "%s\t%s\t%s\t%s\n", k->name, k->def[0] ? k->def : "(empty)",
                k->reloadable ? "reload" : "restart", k->doc);
    }
    for (size_t i = 0; i < N_ASST_KEYS; i++) {
        fprintf(out, "assistant.NAME.%s\t-\treload\t%s\n", asst_keys[i].name, asst_keys[i].doc);
    }
    fprintf(out, "number.E164\t-\treload\tassistant that answers calls to this number\n");
}

const vb_assistant_t *vb_conf_assistant(const vb_conf_t *conf, const char *name)
{
    for (int i = 0; i < conf->n_assistants; i++) {
        if (strcmp(conf->assistants[i].name, name) == 0) {
            return &conf->assistants[i];
        }
    }
    return NULL;
}

const vb_assistant_t *vb_conf_number_assistant(const vb_conf_t *conf, const char *number)
{
    for (int i = 0; i < conf->n_numbers; i++) {
        if (strcmp(conf->numbers[i].number, number) == 0) {
            return vb_conf_assistant(conf, conf->numbers[i].assistant);
        }
    }
    return NULL;
}

void vb_conf_keep_restart_keys(vb_conf_t *next, const vb_conf_t *running)
{
    for (size_t i = 0; i < N_KEYS; i++) {
        const conf_key_t *k = &conf_keys[i];
        if (k->reloadable) {
            continue;
        }
        size_t size = (k->type == T_STR || k->type == T_SECRET) ? VB_CONF_STR : sizeof(int);
        memcpy((char *)next + k->offset, (const char *)running + k->offset, size);
    }
}

const char *vb_role_name(vb_role_t role)
{
    static const char *const names[VB_ROLE__COUNT] = {
        [VB_ROLE_WORKER] = "worker", [VB_ROLE_BROKER] = "broker",
        [VB_ROLE_STORE] = "store",   [VB_ROLE_API] = "api"};
    return (unsigned)role < VB_ROLE__COUNT ? names[role] : "?";
}
