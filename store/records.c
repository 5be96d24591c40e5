/* Spool line -> SQL (see records.h). The statements lean on the helpers of
 * sql/001_init.sql (vb_ts_ns, vb_default_org, vb_call_status_rank...). Run by
 * the store. */
#include "store/records.h"

#include <ctype.h>
#include <errno.h>
#include <jansson.h>
#include <math.h>
#include <stddef.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

/* $1 call_id, $2 t_ns, $3 assistant (name or id), $4 assistant_id, $5 from, $6 to,
 * $7 call_sid, $8 stream_sid, $9 direction. The organization is the assistant's
 * (by id: assistant_id, or an id in assistant; else the called number's
 * assistant of that name), else the called
 * number's, else the default one. A status callback that already ended the
 * call (applied while the record waited in the spool) is kept. A row made by a
 * record that came first (a turn's placeholder, a call.ended) is completed;
 * one that has its start already is left alone (replays). */
const char vb_rec_sql_call_started[] =
    "WITH asst AS ("
    " SELECT a.id, a.organization_id, a.name FROM assistants a"
    " WHERE a.id = COALESCE(vb_uuid_or_null($4), vb_uuid_or_null($3))"
    " UNION ALL"
    " SELECT a.id, a.organization_id, a.name FROM phone_numbers n JOIN assistants a"
    " ON a.id = n.assistant_id WHERE n.number = $6 AND a.name = $3"
    " LIMIT 1) "
    "INSERT INTO calls (id, organization_id, assistant_id, assistant_name, direction,"
    " from_number, to_number, carrier_call_sid, stream_sid, status, started_at, answered_at) "
    "SELECT $1::uuid,"
    " COALESCE((SELECT organization_id FROM asst),"
    " (SELECT organization_id FROM phone_numbers WHERE number = $6), vb_default_org()),"
    " (SELECT id FROM asst), COALESCE((SELECT name FROM asst), $3), $9, $5, $6, $7, $8,"
    " COALESCE((SELECT e.status FROM call_status_events e WHERE e.call_sid = $7"
    " AND vb_call_status_rank(e.status) > 4 ORDER BY e.sequence_number DESC LIMIT 1),"
    " 'in-progress'),"
    " vb_ts_ns($2::bigint), vb_ts_ns($2::bigint) "
    "ON CONFLICT (id) DO UPDATE SET"
    " organization_id = EXCLUDED.organization_id, assistant_id = EXCLUDED.assistant_id,"
    " assistant_name = EXCLUDED.assistant_name, direction = EXCLUDED.direction,"
    " from_number = EXCLUDED.from_number, to_number = EXCLUDED.to_number,"
    " carrier_call_sid = EXCLUDED.carrier_call_sid, stream_sid = EXCLUDED.stream_sid,"
    " started_at = EXCLUDED.started_at, answered_at = EXCLUDED.answered_at,"
    " status = CASE WHEN calls.ended_at IS NULL THEN EXCLUDED.status ELSE calls.status END,"
    " duration_ms = COALESCE(calls.duration_ms,"
    " (extract(epoch FROM calls.ended_at - EXCLUDED.answered_at) * 1000)::bigint),"
    " updated_at = now() "
    "WHERE calls.started_at IS NULL";

/* $1 call_id: the turns stored before their call.started follow its organization. */
const char vb_rec_sql_turns_org[] =
    "UPDATE transcript_turns t SET organization_id = c.organization_id FROM calls c"
    " WHERE c.id = $1::uuid AND t.call_id = c.id AND t.organization_id <> c.organization_id";

/* $1 call_id, $2 t_ns, $3 reason, $4 failed, $5 media stats (JSON), $6 the
 * length measured on the monotonic clock (NULL when the store did not see the
 * start: then the difference of the wall-clock stamps, which a clock step in
 * between skews). The first end wins; a failure wins over a carrier's
 * terminal status. */
const char vb_rec_sql_call_ended[] =
    "INSERT INTO calls AS c (id, organization_id, status, ended_at, end_reason, failed,"
    " media_stats, duration_ms) "
    "VALUES ($1::uuid, vb_default_org(),"
    " CASE WHEN $4::boolean THEN 'failed' ELSE 'completed' END,"
    " vb_ts_ns($2::bigint), $3, $4::boolean, $5::jsonb, $6::bigint) "
    "ON CONFLICT (id) DO UPDATE SET"
    " ended_at = EXCLUDED.ended_at, end_reason = EXCLUDED.end_reason,"
    " failed = EXCLUDED.failed, media_stats = EXCLUDED.media_stats,"
    " status = CASE WHEN EXCLUDED.failed THEN 'failed'"
    " WHEN vb_call_status_rank(c.status) >= 10 THEN c.status ELSE 'completed' END,"
    " duration_ms = COALESCE($6::bigint, (extract(epoch FROM EXCLUDED.ended_at"
    " - COALESCE(c.answered_at, c.started_at)) * 1000)::bigint),"
    " updated_at = now() "
    "WHERE c.ended_at IS NULL";

/* $1 call_id: a turn whose call.started never arrived still has its call. */
const char vb_rec_sql_call_placeholder[] =
    "INSERT INTO calls (id, organization_id) VALUES ($1::uuid, vb_default_org()) "
    "ON CONFLICT (id) DO NOTHING";

/* $1 call_id, $2 t_ns, $3 speaker, $4 text, $5 start_ms, $6 end_ms, $7 interrupted,
 * $8 intent, $9 stt_ms, $10 v2v_ms, $11 llm_first_token_ms, $12 tts_first_audio_ms,
 * $13 planned_text, $14 broker_restarted (sql/003_cut_replies.sql).
 * seq follows the turns already stored for the call: records are applied in
 * spool order, so it is the order they were said in. */
const char vb_rec_sql_turn[] =
    "INSERT INTO transcript_turns (organization_id, call_id, seq, speaker, text, start_ms,"
    " end_ms, interrupted, intent, stt_ms, v2v_ms, llm_first_token_ms, tts_first_audio_ms,"
    " planned_text, broker_restarted, event_ns) "
    "SELECT c.organization_id, c.id,"
    " COALESCE((SELECT max(t.seq) FROM transcript_turns t WHERE t.call_id = c.id), 0) + 1,"
    " $3, $4, $5::bigint, $6::bigint, COALESCE($7::boolean, false), $8, $9::integer,"
    " $10::integer, $11::integer, $12::integer, $13, COALESCE($14::boolean, false),"
    " $2::bigint "
    "FROM calls c WHERE c.id = $1::uuid "
    "ON CONFLICT DO NOTHING";

int vb_rec_is_uuid(const char *s)
{
    if (s == NULL || strlen(s) != 36) {
        return 0;
    }
    for (int i = 0; i < 36; i++) {
        int dash = i == 8 || i == 13 || i == 18 || i == 23;
        if (dash ? s[i] != '-' : !isxdigit((unsigned char)s[i])) {
            return 0;
        }
    }
    return 1;
}

/* ---- building values ------------------------------------------------------ */

/* Copy S into the record's buffer; NULL when it is full. */
static const char *put(vb_rec_t *rec, const char *s)
{
    size_t len = strlen(s) + 1;
    if (rec->used + len > sizeof(rec->buf)) {
        return NULL;
    }
    char *out = memcpy(rec->buf + rec->used, s, len);
    rec->used += len;
    return out;
}

typedef struct {
    vb_rec_t *rec;
    json_t *obj;
    int stmt;
    int bad; /* a required field missing, or the buffer full */
} builder_t;

static void param(builder_t *b, int idx, const char *v)
{
    b->rec->values[b->stmt][idx] = v;
    if (b->rec->stmts[b->stmt].nparams < idx + 1) {
        b->rec->stmts[b->stmt].nparams = idx + 1;
    }
}

static void param_copy(builder_t *b, int idx, const char *v)
{
    const char *p = put(b->rec, v);
    if (p == NULL) {
        b->bad = -E2BIG;
    }
    param(b, idx, p);
}

/* A string field: its value, DEF when absent (NULL param when DEF is NULL).
 * REQUIRED: absent or not a string is an error. */
static const char *str_field(builder_t *b, int idx, const char *name, const char *def,
                             int required)
{
    json_t *v = json_object_get(b->obj, name);
    const char *s = json_is_string(v) ? json_string_value(v) : NULL;
    if (s == NULL && (required || (v != NULL && !json_is_null(v)))) {
        b->bad = b->bad ? b->bad : -EINVAL;
        return NULL;
    }
    if (s == NULL) {
        s = def;
    }
    if (s == NULL) {
        param(b, idx, NULL);
        return NULL;
    }
    param_copy(b, idx, s);
    return b->rec->values[b->stmt][idx];
}

/* A number field (integer, or a real rounded); NULL param when absent or not a number. */
static void num_field(builder_t *b, int idx, const char *name)
{
    json_t *v = json_object_get(b->obj, name);
    char num[32];
    if (json_is_integer(v)) {
        snprintf(num, sizeof(num), "%lld", (long long)json_integer_value(v));
    } else if (json_is_real(v) && isfinite(json_real_value(v)) &&
               fabs(json_real_value(v)) < 9e15) {
        snprintf(num, sizeof(num), "%lld", (long long)llround(json_real_value(v)));
    } else {
        param(b, idx, NULL);
        return;
    }
    param_copy(b, idx, num);
}

static void bool_field(builder_t *b, int idx, const char *name, int def)
{
    json_t *v = json_object_get(b->obj, name);
    int on = json_is_boolean(v) ? json_is_true(v) : def;
    param(b, idx, on ? "true" : "false");
}

static void start_stmt(builder_t *b, const char *sql)
{
    vb_rec_t *rec = b->rec;
    b->stmt = rec->nstmts++;
    rec->stmts[b->stmt].sql = sql;
    rec->stmts[b->stmt].nparams = 0;
    rec->stmts[b->stmt].values = rec->values[b->stmt];
}

/* $1 call_id and $2 t_ns, common to every statement. */
static void key_params(builder_t *b, const char *t)
{
    param(b, 0, b->rec->call_id);
    param(b, 1, t);
}

/* ---- one function per kind ------------------------------------------------- */

static const char *or_empty(const char *s)
{
    return s ? s : "";
}

static void map_started(builder_t *b, const char *t)
{
    vb_rec_t *rec = b->rec;
    start_stmt(b, vb_rec_sql_call_started);
    key_params(b, t);
    rec->assistant = or_empty(str_field(b, 2, "assistant", "", 0));
    json_t *aid = json_object_get(b->obj, "assistant_id");
    param(b, 3, NULL);
    if (json_is_string(aid) && vb_rec_is_uuid(json_string_value(aid))) {
        param_copy(b, 3, json_string_value(aid));
    }
    rec->from = or_empty(str_field(b, 4, "from", "", 0));
    rec->to = or_empty(str_field(b, 5, "to", "", 0));
    rec->call_sid = or_empty(str_field(b, 6, "call_sid", NULL, 0));
    rec->stream_sid = or_empty(str_field(b, 7, "stream_sid", NULL, 0));
    const char *dir = str_field(b, 8, "direction", "inbound", 0);
    if (dir != NULL && strcmp(dir, "inbound") != 0 && strcmp(dir, "outbound") != 0) {
        b->bad = -EINVAL;
    }
    if (rec->call_sid[0] == '\0') {
        param(b, 6, NULL);
    }
    if (rec->stream_sid[0] == '\0') {
        param(b, 7, NULL);
    }
    start_stmt(b, vb_rec_sql_turns_org);
    param(b, 0, rec->call_id);
}

/* The worker's per-call counters, as a JSON object for calls.media_stats. */
static void media_stats(builder_t *b, int idx)
{
    static const char *const names[] = {"frames_in", "frames_out", "underruns", "late_frames",
                                        "bad_messages"};
    json_t *o = json_object();
    for (size_t i = 0; i < sizeof(names) / sizeof(names[0]); i++) {
        json_t *v = json_object_get(b->obj, names[i]);
        if (json_is_integer(v)) {
            json_object_set_new(o, names[i], json_integer(json_integer_value(v)));
        }
    }
    char *text = json_dumps(o, JSON_COMPACT | JSON_SORT_KEYS);
    param_copy(b, idx, text ? text : "{}");
    free(text);
    json_decref(o);
}

static void map_ended(builder_t *b, const char *t)
{
    vb_rec_t *rec = b->rec;
    start_stmt(b, vb_rec_sql_call_ended);
    key_params(b, t);
    str_field(b, 2, "reason", "hangup", 0);
    json_t *f = json_object_get(b->obj, "failed");
    rec->failed = json_is_true(f);
    bool_field(b, 3, "failed", 0);
    media_stats(b, 4);
    num_field(b, 5, "duration_ms");
}

static void map_turn(builder_t *b, const char *t)
{
    start_stmt(b, vb_rec_sql_call_placeholder);
    param(b, 0, b->rec->call_id);
    start_stmt(b, vb_rec_sql_turn);
    key_params(b, t);
    const char *speaker = str_field(b, 2, "speaker", NULL, 1);
    if (speaker != NULL && strcmp(speaker, "caller") != 0 && strcmp(speaker, "agent") != 0) {
        b->bad = -EINVAL;
    }
    str_field(b, 3, "text", NULL, 1);
    num_field(b, 4, "start_ms");
    num_field(b, 5, "end_ms");
    bool_field(b, 6, "interrupted", 0);
    str_field(b, 7, "intent", NULL, 0);
    num_field(b, 8, "stt_ms");
    num_field(b, 9, "v2v_ms");
    num_field(b, 10, "llm_first_token_ms");
    num_field(b, 11, "tts_first_audio_ms");
    str_field(b, 12, "planned_text", NULL, 0);
    bool_field(b, 13, "broker_restarted", 0);
}

static vb_rec_kind_t kind_of(const char *type)
{
    if (strcmp(type, "call.started") == 0) {
        return VB_REC_CALL_STARTED;
    }
    if (strcmp(type, "call.ended") == 0) {
        return VB_REC_CALL_ENDED;
    }
    if (strcmp(type, "turn") == 0) {
        return VB_REC_TURN;
    }
    return VB_REC_OTHER;
}

/* "t", "type" and "call_id": what every record has. */
static int parse_head(vb_rec_t *rec, json_t *obj, char *t, size_t tcap)
{
    json_t *jt = json_object_get(obj, "t"), *jtype = json_object_get(obj, "type");
    json_t *jid = json_object_get(obj, "call_id");
    if (!json_is_integer(jt) || json_integer_value(jt) < 0 || !json_is_string(jtype)) {
        return -EINVAL;
    }
    rec->t_ns = (long long)json_integer_value(jt);
    snprintf(t, tcap, "%lld", rec->t_ns);
    rec->type = put(rec, json_string_value(jtype));
    rec->call_id = put(rec, json_is_string(jid) ? json_string_value(jid) : "");
    if (rec->type == NULL || rec->call_id == NULL) {
        return -E2BIG;
    }
    rec->kind = kind_of(rec->type);
    if (rec->kind != VB_REC_OTHER && !vb_rec_is_uuid(rec->call_id)) {
        return -EINVAL;
    }
    return 0;
}

int vb_rec_parse(const char *line, size_t len, vb_rec_t *rec)
{
    memset(rec, 0, offsetof(vb_rec_t, buf));
    rec->assistant = rec->from = rec->to = rec->call_sid = rec->stream_sid = "";
    json_t *obj = json_loadb(line, len, JSON_REJECT_DUPLICATES, NULL);
    if (!json_is_object(obj)) {
        json_decref(obj);
        return -EINVAL;
    }
    char t[32];
    int rc = parse_head(rec, obj, t, sizeof(t));
    const char *tv = rc == 0 ? put(rec, t) : NULL;
    if (rc == 0 && tv == NULL) {
        rc = -E2BIG;
    }
    if (rc == 0) {
        builder_t b = {.rec = rec, .obj = obj};
        if (rec->kind == VB_REC_CALL_STARTED) {
            map_started(&b, tv);
        } else if (rec->kind == VB_REC_CALL_ENDED) {
            map_ended(&b, tv);
        } else if (rec->kind == VB_REC_TURN) {
            map_turn(&b, tv);
        }
        rc = b.bad;
    }
    json_decref(obj);
    if (rc < 0) {
        rec->nstmts = 0;
    }
    return rc;
}
