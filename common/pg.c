/* PostgreSQL on a libevent loop (see pg.h): libpq non-blocking connection
 * set-up driven by PQconnectPoll, then pipeline mode with one Sync per
 * request, results matched to requests in order. Used by the store, the api
 * workers and the AI brokers. */
#include "common/pg.h"
#include "common/clock.h"
#include "common/log.h"

#include <errno.h>
#include <event2/event.h>
#include <stdint.h>
#include <stdlib.h>
#include <string.h>
#include <time.h>

enum { ST_DOWN, ST_CONNECTING, ST_UP };

typedef struct req {
    struct req *next;
    vb_pg_done_fn fn;
    void *arg;
    int n;                /* statements */
    int got;              /* the statement whose results are being read */
    int syncing;          /* every statement's results read: waiting for the Sync */
    int failed;           /* first failing statement, -1 */
    int err;              /* set when finished */
    uint64_t deadline_ms; /* 0 = none */
    uint64_t sent_ms;
    PGresult **res;
    const char **sql;   /* n */
    int *np;            /* n */
    const char ***vals; /* n arrays of np[i] */
} req_t;

typedef struct {
    req_t *head, *tail;
    size_t n;
} queue_t;

struct vb_pg {
    struct event_base *base;
    char *conninfo;
    char *app;
    int connect_timeout_ms, stall_timeout_ms, backoff_min_ms, backoff_max_ms;
    PGconn *conn;
    int state;
    int failing;       /* the last attempt to connect failed: fail fast */
    int backoff_ms;    /* next delay */
    struct event *cev; /* connect I/O (the socket may change while connecting) */
    struct event *rev, *wev;
    struct event *retry_ev; /* reconnect timer, and the connect timeout */
    struct event *watch_ev; /* deadlines and stalls, while anything is pending */
    struct event *defer_ev; /* runs callbacks of requests finished outside the loop */
    queue_t queued, sent, done;
};

static void q_push(queue_t *q, req_t *r)
{
    r->next = NULL;
    if (q->tail != NULL) {
        q->tail->next = r;
    } else {
        q->head = r;
    }
    q->tail = r;
    q->n++;
}

static req_t *q_pop(queue_t *q)
{
    req_t *r = q->head;
    if (r != NULL) {
        q->head = r->next;
        if (q->head == NULL) {
            q->tail = NULL;
        }
        q->n--;
    }
    return r;
}

/* ---- requests ------------------------------------------------------------ */

static size_t req_bytes(const vb_pg_stmt_t *st, int n)
{
    size_t b = sizeof(req_t) + (size_t)n * (sizeof(PGresult *) + sizeof(char *) + sizeof(int) +
                                            sizeof(char **));
    for (int i = 0; i < n; i++) {
        b += strlen(st[i].sql) + 1 + (size_t)st[i].nparams * sizeof(char *);
        for (int j = 0; j < st[i].nparams; j++) {
            b += st[i].values[j] != NULL ? strlen(st[i].values[j]) + 1 : 0;
        }
    }
    return b + 16;
}

static char *copy_str(char **p, const char *s)
{
    size_t len = strlen(s) + 1;
    char *out = memcpy(*p, s, len);
    *p += len;
    return out;
}

/* One allocation: the request, its arrays, then every string. */
static req_t *req_new(const vb_pg_stmt_t *st, int n)
{
    req_t *r = calloc(1, req_bytes(st, n));
    if (r == NULL) {
        return NULL;
    }
    char *p = (char *)(r + 1);
    r->res = (PGresult **)(void *)p;
    p += (size_t)n * sizeof(PGresult *);
    r->vals = (const char ***)(void *)p;
    p += (size_t)n * sizeof(char **);
    r->sql = (const char **)(void *)p;
    p += (size_t)n * sizeof(char *);
    for (int i = 0; i < n; i++) {
        r->vals[i] = (const char **)(void *)p;
        p += (size_t)st[i].nparams * sizeof(char *);
    }
    r->np = (int *)(void *)p;
    p += (size_t)n * sizeof(int);
    for (int i = 0; i < n; i++) {
        r->sql[i] = copy_str(&p, st[i].sql);
        r->np[i] = st[i].nparams;
        for (int j = 0; j < st[i].nparams; j++) {
            r->vals[i][j] = st[i].values[j] != NULL ? copy_str(&p, st[i].values[j]) : NULL;
        }
    }
    r->n = n;
    r->failed = -1;
    return r;
}

static void req_finish(req_t *r)
{
    vb_pg_reply_t rep = {.err = r->err, .failed = r->failed, .n = r->n, .res = r->res};
    r->fn(r->arg, &rep);
    for (int i = 0; i < r->n; i++) {
        PQclear(r->res[i]);
    }
    free(r);
}

/* Finish R later, from the loop (never inside the caller's vb_pg_exec). */
static void req_defer(vb_pg_t *pg, req_t *r, int err)
{
    r->err = err;
    q_push(&pg->done, r);
    event_active(pg->defer_ev, EV_TIMEOUT, 0);
}

static void on_defer(evutil_socket_t fd, short what, void *arg)
{
    vb_pg_t *pg = arg;
    queue_t q = pg->done;
    memset(&pg->done, 0, sizeof(pg->done));
    req_t *r;
    while ((r = q_pop(&q)) != NULL) {
        req_finish(r);
    }
}

/* Finish every request of Q with ERR, now. Q is detached first: callbacks may
 * queue new requests. */
static void fail_all(queue_t *q, int err)
{
    queue_t mine = *q;
    memset(q, 0, sizeof(*q));
    req_t *r;
    while ((r = q_pop(&mine)) != NULL) {
        r->err = err;
        req_finish(r);
    }
}

/* ---- connection ---------------------------------------------------------- */

static void start_connect(vb_pg_t *pg);
static void send_queued(vb_pg_t *pg);
static void arm_watch(vb_pg_t *pg);

static void drop_events(vb_pg_t *pg)
{
    struct event **evs[] = {&pg->cev, &pg->rev, &pg->wev};
    for (size_t i = 0; i < sizeof(evs) / sizeof(evs[0]); i++) {
        if (*evs[i] != NULL) {
            event_free(*evs[i]);
            *evs[i] = NULL;
        }
    }
}

static void close_conn(vb_pg_t *pg)
{
    drop_events(pg);
    if (pg->conn != NULL) {
        PQfinish(pg->conn);
        pg->conn = NULL;
    }
    evtimer_del(pg->retry_ev);
    pg->state = ST_DOWN;
}

static int next_backoff(vb_pg_t *pg)
{
    int ms = pg->backoff_ms;
    pg->backoff_ms = ms * 2 > pg->backoff_max_ms ? pg->backoff_max_ms : ms * 2;
    return ms - ms / 5 + (int)(random() % (ms / 5 * 2 + 1)); /* +-20 %: instances spread out */
}

static void schedule_connect(vb_pg_t *pg, int delay_ms)
{
    struct timeval tv = {delay_ms / 1000, (delay_ms % 1000) * 1000};
    evtimer_add(pg->retry_ev, &tv);
}

static void first_line(const char *msg, char *out, size_t cap)
{
    size_t n = strcspn(msg, "\n");
    snprintf(out, cap, "%.*s", (int)(n < cap ? n : cap - 1), msg);
}

/* A connection attempt failed: requests with a timeout fail fast from now on. */
static void connect_failed(vb_pg_t *pg, const char *why)
{
    char line[256];
    first_line(why, line, sizeof(line));
    int delay = next_backoff(pg);
    vb_log(pg->failing ? VB_LOG_DEBUG : VB_LOG_WARN,
           "PostgreSQL unreachable (%s); retrying every %d ms or less", line,
           pg->backoff_max_ms);
    pg->failing = 1;
    close_conn(pg);
    schedule_connect(pg, delay);
    queue_t keep = {0};
    req_t *r;
    while ((r = q_pop(&pg->queued)) != NULL) {
        if (r->deadline_ms != 0) {
            req_defer(pg, r, -ECONNREFUSED);
        } else {
            q_push(&keep, r);
        }
    }
    pg->queued = keep;
}

/* The connection broke (or stalled): sent requests fail with ERR (from the
 * loop: this may run inside vb_pg_exec); try again at once. */
static void lose(vb_pg_t *pg, const char *why, int err)
{
    char line[256];
    first_line(why, line, sizeof(line));
    vb_log(VB_LOG_WARN, "PostgreSQL connection lost: %s", line);
    close_conn(pg);
    schedule_connect(pg, 0);
    req_t *r;
    while ((r = q_pop(&pg->sent)) != NULL) {
        req_defer(pg, r, err);
    }
}

static void flush_out(vb_pg_t *pg)
{
    int rc = PQflush(pg->conn);
    if (rc == 1) {
        event_add(pg->wev, NULL);
    } else if (rc < 0) {
        lose(pg, PQerrorMessage(pg->conn), -ECONNRESET);
    }
}

/* Phase 0 of the head request: results of statement r->got, then a NULL. */
static void take_result(req_t *r, PGresult *res)
{
    ExecStatusType st = PQresultStatus(res);
    if (st == PGRES_PIPELINE_ABORTED || r->res[r->got] != NULL) {
        PQclear(res);
        return;
    }
    if (st == PGRES_FATAL_ERROR && r->failed < 0) {
        r->failed = r->got;
    }
    r->res[r->got] = res;
}

/* Reads what has arrived; finishes requests in order. */
static void read_results(vb_pg_t *pg)
{
    while (pg->conn != NULL && pg->sent.head != NULL && PQstatus(pg->conn) != CONNECTION_BAD &&
           !PQisBusy(pg->conn)) {
        req_t *r = pg->sent.head;
        PGresult *res = PQgetResult(pg->conn);
        if (!r->syncing) {
            if (res == NULL) {
                r->syncing = ++r->got == r->n;
            } else {
                take_result(r, res);
            }
            continue;
        }
        if (res == NULL) {
            break; /* the Sync has not arrived yet */
        }
        if (PQresultStatus(res) != PGRES_PIPELINE_SYNC) {
            if (r->failed < 0) {
                vb_log(VB_LOG_WARN, "PostgreSQL: commit failed: %s", vb_pg_errmsg(res));
                r->failed = r->n;
            }
            PQclear(res);
            continue;
        }
        PQclear(res);
        q_pop(&pg->sent);
        r->err = r->failed >= 0 ? -EIO : 0;
        req_finish(r);
    }
}

static void on_read(evutil_socket_t fd, short what, void *arg)
{
    vb_pg_t *pg = arg;
    if (!PQconsumeInput(pg->conn)) {
        lose(pg, PQerrorMessage(pg->conn), -ECONNRESET);
        return;
    }
    PGnotify *n;
    while ((n = PQnotifies(pg->conn)) != NULL) {
        PQfreemem(n);
    }
    read_results(pg);
    if (pg->conn != NULL && PQstatus(pg->conn) == CONNECTION_BAD) {
        lose(pg, PQerrorMessage(pg->conn), -ECONNRESET);
    }
}

static void on_write(evutil_socket_t fd, short what, void *arg)
{
    flush_out(arg);
}

static void connected(vb_pg_t *pg)
{
    drop_events(pg);
    evtimer_del(pg->retry_ev);
    if (PQsetnonblocking(pg->conn, 1) != 0 || PQenterPipelineMode(pg->conn) != 1) {
        connect_failed(pg, PQerrorMessage(pg->conn));
        return;
    }
    int fd = PQsocket(pg->conn);
    pg->rev = event_new(pg->base, fd, EV_READ | EV_PERSIST, on_read, pg);
    pg->wev = event_new(pg->base, fd, EV_WRITE, on_write, pg);
    event_add(pg->rev, NULL);
    pg->state = ST_UP;
    vb_log(pg->failing ? VB_LOG_NOTICE : VB_LOG_INFO, "PostgreSQL connected (%s)",
           pg->app ? pg->app : "voxbridge");
    pg->failing = 0;
    pg->backoff_ms = pg->backoff_min_ms;
    send_queued(pg);
}

static void on_connect_io(evutil_socket_t fd, short what, void *arg);

static void connect_wait(vb_pg_t *pg, PostgresPollingStatusType st)
{
    if (pg->cev != NULL) {
        event_free(pg->cev);
    }
    short ev = st == PGRES_POLLING_READING ? EV_READ : EV_WRITE;
    pg->cev = event_new(pg->base, PQsocket(pg->conn), ev, on_connect_io, pg);
    event_add(pg->cev, NULL);
}

static void on_connect_io(evutil_socket_t fd, short what, void *arg)
{
    vb_pg_t *pg = arg;
    PostgresPollingStatusType st = PQconnectPoll(pg->conn);
    if (st == PGRES_POLLING_OK) {
        connected(pg);
    } else if (st == PGRES_POLLING_FAILED) {
        connect_failed(pg, PQerrorMessage(pg->conn));
    } else {
        connect_wait(pg, st);
    }
}

/* Server notices and messages libpq would print on stderr: into our log. */
static void on_notice(void *arg, const char *message)
{
    char line[512];
    first_line(message, line, sizeof(line));
    vb_log(strncmp(line, "FATAL", 5) == 0 || strncmp(line, "WARNING", 7) == 0 ? VB_LOG_WARN
                                                                              : VB_LOG_DEBUG,
           "PostgreSQL: %s", line);
}

static void start_connect(vb_pg_t *pg)
{
    const char *keys[] = {"keepalives",
                          "keepalives_idle",
                          "keepalives_interval",
                          "keepalives_count",
                          "application_name",
                          "dbname",
                          NULL};
    const char *vals[] = {"1",          "30", "10", "3", pg->app ? pg->app : "voxbridge",
                          pg->conninfo, NULL};
    pg->conn = PQconnectStartParams(keys, vals, 1);
    if (pg->conn == NULL || PQstatus(pg->conn) == CONNECTION_BAD) {
        connect_failed(pg, pg->conn ? PQerrorMessage(pg->conn) : "out of memory");
        return;
    }
    PQsetNoticeProcessor(pg->conn, on_notice, pg);
    pg->state = ST_CONNECTING;
    connect_wait(pg, PGRES_POLLING_WRITING);
    struct timeval tv = {pg->connect_timeout_ms / 1000, (pg->connect_timeout_ms % 1000) * 1000};
    evtimer_add(pg->retry_ev, &tv);
}

/* The retry timer: reconnect when down, give up an attempt that takes too long. */
static void on_retry(evutil_socket_t fd, short what, void *arg)
{
    vb_pg_t *pg = arg;
    if (pg->state == ST_CONNECTING) {
        connect_failed(pg, "timed out connecting");
    } else if (pg->state == ST_DOWN) {
        start_connect(pg);
    }
}

/* ---- sending ------------------------------------------------------------- */

static int send_req(vb_pg_t *pg, req_t *r)
{
    for (int i = 0; i < r->n; i++) {
        if (!PQsendQueryParams(pg->conn, r->sql[i], r->np[i], NULL, r->vals[i], NULL, NULL,
                               0)) {
            return -1;
        }
    }
    return PQpipelineSync(pg->conn) == 1 ? 0 : -1;
}

static void send_queued(vb_pg_t *pg)
{
    req_t *r;
    int any = 0;
    while (pg->state == ST_UP && (r = q_pop(&pg->queued)) != NULL) {
        r->sent_ms = vb_mono_ms();
        q_push(&pg->sent, r); /* before sending: a failure below fails it too */
        if (send_req(pg, r) < 0) {
            lose(pg, PQerrorMessage(pg->conn), -ECONNRESET);
            return;
        }
        any = 1;
    }
    if (any) {
        flush_out(pg);
    }
}

static void check_deadlines(vb_pg_t *pg, uint64_t now)
{
    queue_t keep = {0};
    req_t *r;
    while ((r = q_pop(&pg->queued)) != NULL) {
        if (r->deadline_ms != 0 && now >= r->deadline_ms) {
            req_defer(pg, r, -ETIMEDOUT);
        } else {
            q_push(&keep, r);
        }
    }
    pg->queued = keep;
    for (r = pg->sent.head; r != NULL; r = r->next) {
        int late = r->deadline_ms != 0 && now >= r->deadline_ms;
        if (late || now - r->sent_ms >= (uint64_t)pg->stall_timeout_ms) {
            lose(pg, late ? "a request timed out" : "no answer: connection stalled",
                 -ETIMEDOUT);
            return;
        }
    }
}

static void on_watch(evutil_socket_t fd, short what, void *arg)
{
    vb_pg_t *pg = arg;
    check_deadlines(pg, vb_mono_ms());
    arm_watch(pg);
}

static void arm_watch(vb_pg_t *pg)
{
    if ((pg->queued.n > 0 || pg->sent.n > 0) && !evtimer_pending(pg->watch_ev, NULL)) {
        struct timeval tv = {0, 100000};
        evtimer_add(pg->watch_ev, &tv);
    }
}

int vb_pg_exec(vb_pg_t *pg, const vb_pg_stmt_t *stmts, int n, int timeout_ms, vb_pg_done_fn fn,
               void *arg)
{
    if (pg == NULL || n <= 0 || fn == NULL) {
        return -EINVAL;
    }
    req_t *r = req_new(stmts, n);
    if (r == NULL) {
        return -ENOMEM;
    }
    r->fn = fn;
    r->arg = arg;
    r->deadline_ms = timeout_ms > 0 ? vb_mono_ms() + (uint64_t)timeout_ms : 0;
    if (pg->state != ST_UP && pg->failing && timeout_ms > 0) {
        req_defer(pg, r, -ECONNREFUSED);
        return 0;
    }
    q_push(&pg->queued, r);
    send_queued(pg);
    arm_watch(pg);
    return 0;
}

int vb_pg_query(vb_pg_t *pg, const char *sql, int nparams, const char *const *values,
                int timeout_ms, vb_pg_done_fn fn, void *arg)
{
    vb_pg_stmt_t st = {.sql = sql, .nparams = nparams, .values = values};
    return vb_pg_exec(pg, &st, 1, timeout_ms, fn, arg);
}

/* ---- life cycle ---------------------------------------------------------- */

static int or_default(int v, int def)
{
    return v > 0 ? v : def;
}

vb_pg_t *vb_pg_new(struct event_base *base, const char *conninfo, const vb_pg_opts_t *opts)
{
    vb_pg_opts_t none = {0};
    opts = opts ? opts : &none;
    vb_pg_t *pg = calloc(1, sizeof(*pg));
    if (pg == NULL) {
        errno = ENOMEM;
        return NULL;
    }
    pg->base = base;
    pg->conninfo = strdup(conninfo);
    pg->app = opts->application_name ? strdup(opts->application_name) : NULL;
    pg->connect_timeout_ms = or_default(opts->connect_timeout_ms, 5000);
    pg->stall_timeout_ms = or_default(opts->stall_timeout_ms, 30000);
    pg->backoff_min_ms = or_default(opts->backoff_min_ms, 100);
    pg->backoff_max_ms = or_default(opts->backoff_max_ms, 5000);
    pg->backoff_ms = pg->backoff_min_ms;
    pg->retry_ev = evtimer_new(base, on_retry, pg);
    pg->watch_ev = evtimer_new(base, on_watch, pg);
    pg->defer_ev = event_new(base, -1, 0, on_defer, pg);
    if (pg->conninfo == NULL || pg->retry_ev == NULL || pg->watch_ev == NULL ||
        pg->defer_ev == NULL) {
        vb_pg_free(pg);
        errno = ENOMEM;
        return NULL;
    }
    start_connect(pg);
    return pg;
}

void vb_pg_free(vb_pg_t *pg)
{
    if (pg == NULL) {
        return;
    }
    close_conn(pg);
    fail_all(&pg->sent, -ECANCELED);
    while (pg->queued.n > 0) { /* a callback may have queued more */
        fail_all(&pg->queued, -ECANCELED);
    }
    req_t *r;
    while ((r = q_pop(&pg->done)) != NULL) {
        req_finish(r); /* keeps the error it was deferred with */
    }
    struct event *evs[] = {pg->retry_ev, pg->watch_ev, pg->defer_ev};
    for (size_t i = 0; i < sizeof(evs) / sizeof(evs[0]); i++) {
        if (evs[i] != NULL) {
            event_free(evs[i]);
        }
    }
    free(pg->conninfo);
    free(pg->app);
    free(pg);
}

int vb_pg_is_up(const vb_pg_t *pg)
{
    return pg != NULL && pg->state == ST_UP;
}

size_t vb_pg_pending(const vb_pg_t *pg)
{
    return pg->queued.n + pg->sent.n + pg->done.n;
}

const char *vb_pg_conninfo(const vb_pg_t *pg)
{
    return pg->conninfo;
}

/* ---- results ------------------------------------------------------------- */

const char *vb_pg_sqlstate(const PGresult *res)
{
    const char *s = res ? PQresultErrorField(res, PG_DIAG_SQLSTATE) : NULL;
    return s ? s : "";
}

const char *vb_pg_errmsg(const PGresult *res)
{
    const char *s = res ? PQresultErrorField(res, PG_DIAG_MESSAGE_PRIMARY) : NULL;
    return s ? s : "";
}

int vb_pg_retryable(const char *sqlstate)
{
    if (sqlstate == NULL || strlen(sqlstate) != 5) {
        return 1;
    }
    /* 22: data exception, 23: integrity constraint violation */
    return !(strncmp(sqlstate, "22", 2) == 0 || strncmp(sqlstate, "23", 2) == 0);
}

int vb_pg_get_str(const PGresult *res, int row, int col, char *out, size_t cap)
{
    const char *v = PQgetisnull(res, row, col) ? "" : PQgetvalue(res, row, col);
    size_t len = strlen(v);
    snprintf(out, cap, "%s", v);
    return len >= cap ? -ENAMETOOLONG : 0;
}

long long vb_pg_get_ll(const PGresult *res, int row, int col)
{
    if (PQgetisnull(res, row, col)) {
        return 0;
    }
    return strtoll(PQgetvalue(res, row, col), NULL, 10);
}
