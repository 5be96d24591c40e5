/* Call records as the store keeps them: one spool line (a JSON object with the
 * store's time stamp "t" in ns and the producer's fields) parsed and mapped to
 * the SQL that applies it to PostgreSQL. Every statement is idempotent (ON
 * CONFLICT), so applying a record twice - a replay after a crash between
 * "applied" and "cursor saved" - changes nothing. Pure: no I/O. Store only. */
#ifndef VB_STORE_RECORDS_H
#define VB_STORE_RECORDS_H

#include <stddef.h>

#include "common/pg.h"

#define VB_REC_MAX_STMTS 2
#define VB_REC_MAX_PARAMS 14

typedef enum {
    VB_REC_OTHER = 0,    /* kept in the spool, nothing to write (timing, usage...) */
    VB_REC_CALL_STARTED, /* insert the call, in progress */
    VB_REC_CALL_ENDED,   /* complete it, or mark it failed */
    VB_REC_TURN,         /* one transcript turn, in order */
} vb_rec_kind_t;

typedef struct {
    vb_rec_kind_t kind;
    const char *type;    /* the record's "type" */
    long long t_ns;      /* the store's time stamp */
    const char *call_id; /* "" when the record has none */
    int failed;          /* call.ended: the call failed */
    /* call.started, for the live state ("" when absent) */
    const char *assistant, *from, *to, *call_sid, *stream_sid;
    int nstmts; /* statements to run, in order, in one transaction with the batch */
    vb_pg_stmt_t stmts[VB_REC_MAX_STMTS];
    const char *values[VB_REC_MAX_STMTS][VB_REC_MAX_PARAMS];
    size_t used;
    char buf[3072]; /* the strings above point in here */
} vb_rec_t;

/* Parses LINE (LEN bytes, no newline needed) into REC. 0; -EINVAL when it is
 * not a record (not a JSON object, no "t" or "type", a call record whose
 * call_id is not a UUID, a required field missing or of the wrong type);
 * -E2BIG when its fields do not fit. Unknown types are VB_REC_OTHER, 0. */
int vb_rec_parse(const char *line, size_t len, vb_rec_t *rec);

/* The SQL of each kind (exposed for the tests). */
extern const char vb_rec_sql_call_started[];
extern const char vb_rec_sql_turns_org[];
extern const char vb_rec_sql_call_ended[];
extern const char vb_rec_sql_call_placeholder[];
extern const char vb_rec_sql_turn[];

/* 1 when S is a UUID in its canonical 36-character text form. */
int vb_rec_is_uuid(const char *s);

#endif
