/* The broker's assistant cache (see assistants.h): one entry per id or name
 * asked for, loaded with a non-blocking query on the broker's loop. Run by the
 * AI brokers; vb_assistant_from_row() also by the api workers. */
#include "broker/assistants.h"
#include "common/clock.h"
#include "common/log.h"
#include "common/pg.h"

#include <errno.h>
#include <stdint.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <time.h>

#define CACHE_SIZE 128
#define FRESH_MS 1000   /* a revision-less lookup reuses a copy this recent */
#define MISSING_MS 1000 /* "no such assistant" is remembered this long */
#define LOAD_TIMEOUT_MS 2000

enum { E_EMPTY, E_LOADING, E_READY, E_MISSING, E_FAILED };

typedef struct {
    char key[64];
    int state;
    int have; /* a holds a copy (maybe older than asked for) */
    vb_assistant_t a;
    uint64_t loaded_ms;
    uint64_t used_ms;
    int err;
} entry_t;

static struct {
    vb_pg_t *pg;
    struct event_base *base;
    char url[VB_CONF_STR];
    entry_t *entries; /* CACHE_SIZE */
} cache;

static int is_uuid(const char *s)
{
    static const char hex[] = "0123456789abcdefABCDEF";
    if (strlen(s) != 36) {
        return 0;
    }
    for (int i = 0; i < 36; i++) {
        int dash = i == 8 || i == 13 || i == 18 || i == 23;
        if (dash ? s[i] != '-' : strchr(hex, s[i]) == NULL) {
            return 0;
        }
    }
    return 1;
}

int vb_assistant_from_row(const PGresult *res, int row, vb_assistant_t *out)
{
    char mode[16];
    memset(out, 0, sizeof(*out));
    vb_pg_get_str(res, row, 0, out->id, sizeof(out->id));
    vb_pg_get_str(res, row, 1, out->name, sizeof(out->name));
    out->revision = vb_pg_get_ll(res, row, 2);
    vb_pg_get_str(res, row, 3, mode, sizeof(mode));
    out->mode = strcmp(mode, "local") == 0 ? VB_ASSISTANT_LOCAL : VB_ASSISTANT_ECHO;
    vb_pg_get_str(res, row, 4, out->first_message, sizeof(out->first_message));
    vb_pg_get_str(res, row, 5, out->fallback, sizeof(out->fallback));
    vb_pg_get_str(res, row, 6, out->voice, sizeof(out->voice));
    vb_pg_get_str(res, row, 7, out->language, sizeof(out->language));
    out->rate = (int)vb_pg_get_ll(res, row, 8);
    out->echo_delay_ms = (int)vb_pg_get_ll(res, row, 9);
    out->barge_in_ms = (int)vb_pg_get_ll(res, row, 11);
    out->end_silence_ms = (int)vb_pg_get_ll(res, row, 12);
    if (vb_pg_get_str(res, row, 10, out->intents_json, sizeof(out->intents_json)) < 0) {
        vb_log(VB_LOG_ERR, "assistant %s: intents larger than %d bytes; using none", out->name,
               VB_INTENTS_MAX - 1);
        snprintf(out->intents_json, sizeof(out->intents_json), "[]");
        return -E2BIG;
    }
    return 0;
}

/* ---- the cache ---------------------------------------------------------------- */

static entry_t *find(const char *key)
{
    for (int i = 0; i < CACHE_SIZE; i++) {
        if (cache.entries[i].state != E_EMPTY && strcmp(cache.entries[i].key, key) == 0) {
            return &cache.entries[i];
        }
    }
    return NULL;
}

/* A free entry, or the least recently used one that is not loading. */
static entry_t *claim(const char *key)
{
    entry_t *victim = NULL;
    for (int i = 0; i < CACHE_SIZE; i++) {
        entry_t *e = &cache.entries[i];
        if (e->state == E_EMPTY) {
            victim = e;
            break;
        }
        if (e->state != E_LOADING && (victim == NULL || e->used_ms < victim->used_ms)) {
            victim = e;
        }
    }
    if (victim != NULL) {
        memset(victim, 0, sizeof(*victim));
        snprintf(victim->key, sizeof(victim->key), "%s", key);
    }
    return victim;
}

static void on_loaded(void *arg, const vb_pg_reply_t *r)
{
    entry_t *e = arg;
    e->loaded_ms = vb_mono_ms();
    if (r->err != 0) {
        e->state = E_FAILED;
        e->err = r->err;
        if (r->err == -EIO) {
            vb_log(VB_LOG_ERR, "assistant %s: %s", e->key, vb_pg_errmsg(r->res[0]));
        }
        return;
    }
    if (PQntuples(r->res[0]) == 0) {
        e->state = E_MISSING;
        e->have = 0;
        return;
    }
    vb_assistant_from_row(r->res[0], 0, &e->a);
    e->have = 1;
    e->state = E_READY;
}

static int start_load(entry_t *e)
{
    const char *by_id =
        "SELECT " VB_ASSISTANT_COLUMNS " FROM assistants a WHERE a.id = $1::uuid";
    const char *by_name = "SELECT " VB_ASSISTANT_COLUMNS " FROM assistants a WHERE a.name = $1"
                          " ORDER BY a.created_at LIMIT 1";
    const char *vals[] = {e->key};
    int rc = vb_pg_query(cache.pg, is_uuid(e->key) ? by_id : by_name, 1, vals, LOAD_TIMEOUT_MS,
                         on_loaded, e);
    if (rc == 0) {
        e->state = E_LOADING;
    }
    return rc;
}

static int setup(const vb_conf_t *conf, struct event_base *base)
{
    if (cache.entries == NULL) {
        cache.entries = calloc(CACHE_SIZE, sizeof(entry_t));
        if (cache.entries == NULL) {
            return -ENOMEM;
        }
    }
    if (cache.pg != NULL && cache.base == base && strcmp(cache.url, conf->database_url) == 0) {
        return 0;
    }
    vb_pg_free(cache.pg); /* database_url changed (reload): loads in flight fail */
    memset(cache.entries, 0, CACHE_SIZE * sizeof(entry_t));
    vb_pg_opts_t opts = {.application_name = "voxbridge-broker"};
    cache.pg = vb_pg_new(base, conf->database_url, &opts);
    cache.base = base;
    snprintf(cache.url, sizeof(cache.url), "%s", conf->database_url);
    return cache.pg ? 0 : -ENOMEM;
}

static int from_conf(const vb_conf_t *conf, const char *name, vb_assistant_t *out)
{
    const vb_assistant_t *a = vb_conf_assistant(conf, name);
    if (a == NULL) {
        return -ENOENT;
    }
    *out = *a;
    return 0;
}

/* The load failed: an older copy, the config file's, or -EIO. */
static int fall_back(const vb_conf_t *conf, entry_t *e, vb_assistant_t *out)
{
    int err = e->err;
    if (e->have) {
        e->state = E_READY; /* reused for FRESH_MS, then tried again */
        *out = e->a;
        vb_log(VB_LOG_WARN, "assistant %s: database unavailable (%s); using revision %lld",
               e->key, strerror(-err), e->a.revision);
        return 0;
    }
    e->state = E_EMPTY;
    if (from_conf(conf, e->key, out) == 0) {
        vb_log(VB_LOG_WARN, "assistant %s: database unavailable (%s); using the config file's",
               e->key, strerror(-err));
        return 0;
    }
    vb_log(VB_LOG_ERR, "assistant %s: database unavailable (%s)", e->key, strerror(-err));
    return -EIO;
}

/* Whether E answers a lookup for REVISION now. */
static int usable(const entry_t *e, long long revision, uint64_t now)
{
    if (e->state != E_READY) {
        return 0;
    }
    /* a copy loaded just now is the newest there is, whatever was asked for */
    return (revision > 0 && e->a.revision >= revision) || now - e->loaded_ms < FRESH_MS;
}

int vb_assistants_get(const vb_conf_t *conf, struct event_base *base,
                      const char *assistant_id_or_name, long long revision, vb_assistant_t *out)
{
    const char *key = assistant_id_or_name;
    if (conf->database_url[0] == '\0') {
        return from_conf(conf, key, out);
    }
    if (key == NULL || key[0] == '\0' || strlen(key) >= sizeof(cache.entries[0].key)) {
        return -ENOENT;
    }
    if (setup(conf, base) < 0) {
        return -EIO;
    }
    uint64_t now = vb_mono_ms();
    entry_t *e = find(key);
    if (e != NULL) {
        e->used_ms = now;
        if (usable(e, revision, now)) {
            *out = e->a;
            return 0;
        }
        if (e->state == E_LOADING) {
            return -EAGAIN;
        }
        if (e->state == E_MISSING && now - e->loaded_ms < MISSING_MS) {
            return from_conf(conf, key, out); /* not in the database: the config file's */
        }
        if (e->state == E_FAILED) {
            return fall_back(conf, e, out);
        }
    } else if ((e = claim(key)) == NULL) {
        return -EAGAIN; /* every entry is loading */
    }
    e->used_ms = now;
    return start_load(e) == 0 ? -EAGAIN : -EIO;
}

void vb_assistants_shutdown(void)
{
    vb_pg_free(cache.pg);
    cache.pg = NULL;
    free(cache.entries);
    cache.entries = NULL;
    cache.base = NULL;
}
