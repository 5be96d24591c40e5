/* The api worker's database (see db.h): number -> assistant lookups for
 * /twilio/voice and status callbacks for /twilio/status, as non-blocking
 * queries on the worker's loop. Run by the api workers. */
#include "api/db.h"
#include "broker/assistants.h"
#include "common/log.h"
#include "common/pg.h"

#include <errno.h>
#include <jansson.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#define LOOKUP_TIMEOUT_MS 3000 /* Twilio gives a webhook 15 s */
#define STATUS_TIMEOUT_MS 5000

static vb_pg_t *db;

static const char number_sql[] =
    "SELECT " VB_ASSISTANT_COLUMNS " FROM phone_numbers n"
    " JOIN assistants a ON a.id = n.assistant_id WHERE n.number = $1";

/* $1 CallSid, $2 SequenceNumber, $3 CallStatus, $4 To, $5 From, $6 the form as JSON.
 * A callback without a SequenceNumber is keyed by its status' rank (negative). */
static const char status_sql[] =
    "WITH ins AS ("
    " INSERT INTO call_status_events (organization_id, call_sid, sequence_number, status,"
    " payload)"
    " VALUES (COALESCE((SELECT organization_id FROM calls WHERE carrier_call_sid = $1 LIMIT 1),"
    " (SELECT organization_id FROM phone_numbers WHERE number IN ($4, $5) LIMIT 1),"
    " vb_default_org()),"
    " $1, COALESCE($2::integer, -vb_call_status_rank($3)), $3, $6::jsonb)"
    " ON CONFLICT (call_sid, sequence_number) DO NOTHING RETURNING 1),"
    " upd AS ("
    " UPDATE calls SET status = $3, updated_at = now(),"
    " answered_at = CASE WHEN $3 = 'in-progress' THEN COALESCE(answered_at, now())"
    " ELSE answered_at END"
    " WHERE carrier_call_sid = $1 AND EXISTS (SELECT 1 FROM ins)"
    " AND vb_call_status_rank(status) < vb_call_status_rank($3) RETURNING 1) "
    "SELECT (SELECT count(*) FROM ins), (SELECT count(*) FROM upd)";

int vb_api_db_init(const vb_conf_t *conf, struct event_base *base)
{
    if (conf->database_url[0] == '\0' || db != NULL) {
        return 0;
    }
    vb_pg_opts_t opts = {.application_name = "voxbridge-api"};
    db = vb_pg_new(base, conf->database_url, &opts);
    return db ? 0 : -ENOMEM;
}

void vb_api_db_close(void)
{
    vb_pg_t *p = db;
    db = NULL;
    vb_pg_free(p);
}

/* ---- numbers ------------------------------------------------------------------ */

typedef struct {
    void (*done)(void *arg, const vb_assistant_t *a, int err);
    void *arg;
    const vb_conf_t *conf;
    char to[64];
} lookup_t;

static void on_number(void *arg, const vb_pg_reply_t *r)
{
    lookup_t *l = arg;
    const vb_assistant_t *a = NULL;
    vb_assistant_t *found = NULL;
    int err = 0;
    if (r->err == 0 && PQntuples(r->res[0]) > 0 && (found = malloc(sizeof(*found))) != NULL) {
        vb_assistant_from_row(r->res[0], 0, found);
        a = found;
    } else if (r->err == 0) {
        a = vb_conf_number_assistant(l->conf, l->to);
    } else {
        a = vb_conf_number_assistant(l->conf, l->to);
        if (r->err == -EIO) {
            vb_log(VB_LOG_ERR, "number %s: %s", l->to, vb_pg_errmsg(r->res[0]));
        }
        vb_log(a ? VB_LOG_WARN : VB_LOG_ERR, "number %s: database unavailable (%s)%s", l->to,
               strerror(-r->err), a ? "; the config file answers" : "");
        err = a ? 0 : r->err;
    }
    l->done(l->arg, a, err);
    free(found);
    free(l);
}

int vb_api_db_lookup_number(const vb_child_ctx_t *ctx, const char *to,
                            void (*done)(void *arg, const vb_assistant_t *a, int err),
                            void *arg)
{
    if (db == NULL || ctx->conf->database_url[0] == '\0') {
        done(arg, vb_conf_number_assistant(ctx->conf, to), 0);
        return 0;
    }
    lookup_t *l = calloc(1, sizeof(*l));
    if (l == NULL) {
        return -ENOMEM;
    }
    *l = (lookup_t){.done = done, .arg = arg, .conf = ctx->conf};
    snprintf(l->to, sizeof(l->to), "%s", to);
    const char *vals[] = {l->to};
    int rc = vb_pg_query(db, number_sql, 1, vals, LOOKUP_TIMEOUT_MS, on_number, l);
    if (rc < 0) {
        free(l);
    }
    return rc;
}

/* ---- status callbacks -------------------------------------------------------------- */

typedef struct {
    void (*done)(void *arg, int err, int stored);
    void *arg;
} status_t;

static void on_status(void *arg, const vb_pg_reply_t *r)
{
    status_t *s = arg;
    int stored = 0, err = r->err;
    if (err == 0) {
        stored = vb_pg_get_ll(r->res[0], 0, 0) > 0;
    } else if (err == -EIO) {
        vb_log(VB_LOG_ERR, "status callback not stored: %s", vb_pg_errmsg(r->res[0]));
    }
    s->done(s->arg, err, stored);
    free(s);
}

/* Every parameter of the form (the first value of a repeated one), as JSON. */
static char *form_json(const vb_form_t *form)
{
    json_t *o = json_object();
    for (size_t i = 0; i < vb_form_count(form); i++) {
        if (json_object_get(o, vb_form_name(form, i)) == NULL) {
            json_object_set_new(o, vb_form_name(form, i), json_string(vb_form_value(form, i)));
        }
    }
    char *text = json_dumps(o, JSON_COMPACT);
    json_decref(o);
    return text;
}

/* A SequenceNumber that is a whole number, or NULL. */
static const char *seq_of(const vb_form_t *form)
{
    const char *seq = vb_form_get(form, "SequenceNumber");
    if (seq == NULL || seq[0] == '\0' || strlen(seq) > 9 ||
        strspn(seq, "0123456789") != strlen(seq)) {
        return NULL;
    }
    return seq;
}

int vb_api_db_call_status(const vb_child_ctx_t *ctx, const vb_form_t *form,
                          void (*done)(void *arg, int err, int stored), void *arg)
{
    const char *sid = vb_form_get(form, "CallSid"), *status = vb_form_get(form, "CallStatus");
    if (db == NULL || ctx->conf->database_url[0] == '\0') {
        return -ENOTCONN;
    }
    if (sid == NULL || status == NULL) {
        return -EINVAL;
    }
    char *payload = form_json(form);
    status_t *s = calloc(1, sizeof(*s));
    if (payload == NULL || s == NULL) {
        free(payload);
        free(s);
        return -ENOMEM;
    }
    *s = (status_t){.done = done, .arg = arg};
    const char *to = vb_form_get(form, "To"), *from = vb_form_get(form, "From");
    const char *vals[] = {sid, seq_of(form), status, to ? to : "", from ? from : "", payload};
    int rc = vb_pg_query(db, status_sql, 6, vals, STATUS_TIMEOUT_MS, on_status, s);
    free(payload);
    if (rc < 0) {
        free(s);
    }
    return rc;
}
