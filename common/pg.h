/* PostgreSQL on a libevent loop, for the processes that talk to the database
 * (store, api workers, AI brokers): one libpq connection in non-blocking
 * pipeline mode, requests sent in order as soon as it is up, reconnection with
 * backoff when it drops. A request is one or more statements followed by one
 * Sync, so its statements run as one implicit transaction: all or nothing.
 * The master never uses this (it touches no database). */
#ifndef VB_COMMON_PG_H
#define VB_COMMON_PG_H

#include <stddef.h>

#include <libpq-fe.h>

struct event_base;
typedef struct vb_pg vb_pg_t;

typedef struct {
    const char *sql;
    int nparams;
    const char *const *values; /* text values; a NULL entry is SQL NULL */
} vb_pg_stmt_t;

/* What a request came to. err:
 *   0            every statement ran and the transaction committed;
 *   -EIO         statement `failed` failed (res[failed] says why; failed == n
 *                when the commit itself failed): nothing was committed;
 *   -ECONNRESET  the connection dropped before the answer: unknown;
 *   -ETIMEDOUT   its timeout passed (not sent: nothing ran; sent: unknown);
 *   -ECONNREFUSED not sent: the database is known to be down (requests with a
 *                timeout fail at once then, instead of waiting);
 *   -ECANCELED   vb_pg_free() while it was pending. */
typedef struct {
    int err;
    int failed;           /* index of the failing statement, or -1 */
    int n;                /* statements in the request */
    PGresult *const *res; /* res[i]: statement i's result, NULL when it did not run */
} vb_pg_reply_t;

/* Runs from the event loop, never from inside vb_pg_exec(). The results are
 * freed when it returns. It may queue new requests; it must not vb_pg_free(). */
typedef void (*vb_pg_done_fn)(void *arg, const vb_pg_reply_t *r);

typedef struct {
    const char *application_name;       /* shown in pg_stat_activity */
    int connect_timeout_ms;             /* 0 = 5000 */
    int stall_timeout_ms;               /* drop a connection that leaves a sent request
                                           unanswered this long; 0 = 30000 */
    int backoff_min_ms, backoff_max_ms; /* reconnect delays; 0 = 100 and 5000 */
} vb_pg_opts_t;

/* Starts connecting at once (CONNINFO: libpq URI or key=value string). OPTS may
 * be NULL. NULL + errno ENOMEM. */
vb_pg_t *vb_pg_new(struct event_base *base, const char *conninfo, const vb_pg_opts_t *opts);
/* Closes the connection; pending requests' callbacks run with -ECANCELED
 * before it returns. NULL is allowed. */
void vb_pg_free(vb_pg_t *pg);

/* Queues N statements as one request (everything is copied). TIMEOUT_MS from
 * now, 0 for none. 0, or -EINVAL / -ENOMEM (FN will not run). */
int vb_pg_exec(vb_pg_t *pg, const vb_pg_stmt_t *stmts, int n, int timeout_ms, vb_pg_done_fn fn,
               void *arg);
/* One statement. */
int vb_pg_query(vb_pg_t *pg, const char *sql, int nparams, const char *const *values,
                int timeout_ms, vb_pg_done_fn fn, void *arg);

/* 1 while connected. */
int vb_pg_is_up(const vb_pg_t *pg);
/* Requests queued or sent and not yet answered. */
size_t vb_pg_pending(const vb_pg_t *pg);
const char *vb_pg_conninfo(const vb_pg_t *pg);

/* ---- results ------------------------------------------------------------- */

/* The SQLSTATE of an error result, "" when there is none. */
const char *vb_pg_sqlstate(const PGresult *res);
/* The primary error message of RES (one line), or "". */
const char *vb_pg_errmsg(const PGresult *res);
/* 1 when a statement that failed with SQLSTATE may succeed if tried again
 * later unchanged (connection, resources, locks, missing schema, admin
 * shutdown); 0 when the data itself is refused (classes 22 and 23). */
int vb_pg_retryable(const char *sqlstate);
/* Copies field (ROW, COL) into OUT ("" for NULL). 0, or -ENAMETOOLONG when it
 * was cut to fit. */
int vb_pg_get_str(const PGresult *res, int row, int col, char *out, size_t cap);
/* The field as an integer (0 for NULL or not a number). */
long long vb_pg_get_ll(const PGresult *res, int row, int col);

#endif
