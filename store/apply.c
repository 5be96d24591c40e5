/* The store's applier (see apply.h): spool lines -> records -> one pipelined
 * request per batch (its statements run as one implicit transaction), cursor
 * saved after each committed batch. Replays after a crash are harmless: every
 * statement is idempotent (store/records.c). Run by the store. */
#include "store/apply.h"
#include "common/log.h"
#include "common/pg.h"
#include "store/records.h"

#include <errno.h>
#include <event2/event.h>
#include <fcntl.h>
#include <inttypes.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <unistd.h>

#define BATCH_RECORDS 64
#define READ_BYTES (128u << 10)
#define MAX_SKIPS 64
#define RETRY_MIN_MS 100
#define RETRY_MAX_MS 5000

struct vb_apply {
    struct event_base *base;
    vb_pg_t *pg;
    vb_spool_t *sp;
    char *buf;
    vb_rec_t *recs;                  /* BATCH_RECORDS */
    uint64_t rec_off[BATCH_RECORDS]; /* spool offset of each record of the batch */
    int stmt_rec[BATCH_RECORDS * VB_REC_MAX_STMTS]; /* statement -> record */
    int inflight;
    uint64_t batch_end;
    uint64_t skip[MAX_SKIPS]; /* offsets of refused records, passed over */
    int nskip;
    struct event *retry_ev;
    int retry_ms;
    int waiting; /* records wait in the spool: logged once until they go through */
    int closing;
    unsigned long long applied, rejected;
};

static int skipped(const vb_apply_t *a, uint64_t off)
{
    for (int i = 0; i < a->nskip; i++) {
        if (a->skip[i] == off) {
            return 1;
        }
    }
    return 0;
}

/* Forget refused records the cursor has passed. */
static void prune_skips(vb_apply_t *a)
{
    int j = 0;
    for (int i = 0; i < a->nskip; i++) {
        if (a->skip[i] >= a->sp->applied) {
            a->skip[j++] = a->skip[i];
        }
    }
    a->nskip = j;
}

/* A record we will not apply: kept in rejected.jsonl for the operator. */
static void reject(vb_apply_t *a, uint64_t off, const char *line, size_t len, const char *why)
{
    char path[600];
    snprintf(path, sizeof(path), "%s/rejected.jsonl", a->sp->dir);
    vb_log(VB_LOG_ERR, "spool: record at %" PRIu64 " not applied (%s): %.*s", off, why,
           (int)(len > 300 ? 300 : len), line);
    int fd = open(path, O_WRONLY | O_APPEND | O_CREAT | O_CLOEXEC, 0640);
    if (fd >= 0) {
        if (write(fd, line, len) != (ssize_t)len || write(fd, "\n", 1) != 1) {
            vb_log(VB_LOG_ERR, "cannot write %s: %s", path, strerror(errno));
        }
        fdatasync(fd);
        close(fd);
    }
    a->rejected++;
}

static void on_done(void *arg, const vb_pg_reply_t *r);

/* Adds the line at OFF to the batch. Returns 1 when it has statements. */
static int take_line(vb_apply_t *a, uint64_t off, const char *line, size_t len, int nrec)
{
    if (skipped(a, off)) {
        return 0;
    }
    vb_rec_t *rec = &a->recs[nrec];
    int rc = vb_rec_parse(line, len, rec);
    if (rc < 0) {
        reject(a, off, line, len, rc == -E2BIG ? "too large" : "malformed");
        if (a->nskip < MAX_SKIPS) {
            a->skip[a->nskip++] = off;
        }
        return 0;
    }
    a->rec_off[nrec] = off;
    return rec->nstmts > 0;
}

/* Reads lines from the cursor into a->recs; sets a->batch_end. Returns the
 * number of records with statements, 0 when there are none, -errno. */
static int build_batch(vb_apply_t *a)
{
    uint64_t base = a->sp->applied;
    ssize_t n = vb_spool_read(a->sp, base, a->buf, READ_BYTES);
    if (n <= 0) {
        a->batch_end = base;
        return (int)n;
    }
    int nrec = 0;
    size_t pos = 0;
    while (pos < (size_t)n && nrec < BATCH_RECORDS) {
        char *nl = memchr(a->buf + pos, '\n', (size_t)n - pos);
        size_t len = nl ? (size_t)(nl - (a->buf + pos)) : (size_t)n - pos;
        if (len > 0) {
            nrec += take_line(a, base + pos, a->buf + pos, len, nrec);
        }
        pos += len + (nl ? 1 : 0);
    }
    a->batch_end = base + pos;
    return nrec;
}

static int submit(vb_apply_t *a, int nrec)
{
    vb_pg_stmt_t stmts[BATCH_RECORDS * VB_REC_MAX_STMTS];
    int n = 0;
    for (int i = 0; i < nrec; i++) {
        for (int j = 0; j < a->recs[i].nstmts; j++) {
            a->stmt_rec[n] = i;
            stmts[n++] = a->recs[i].stmts[j];
        }
    }
    int rc = vb_pg_exec(a->pg, stmts, n, 0, on_done, a);
    if (rc == 0) {
        a->inflight = 1;
    }
    if (rc == 0 && !vb_pg_is_up(a->pg) && !a->waiting) {
        vb_log(VB_LOG_WARN,
               "records wait in the spool (%" PRIu64 " bytes not applied): "
               "PostgreSQL is not connected",
               a->sp->synced - a->sp->applied);
        a->waiting = 1;
    }
    return rc;
}

static void retry_later(vb_apply_t *a, const char *why)
{
    if (!a->waiting) {
        vb_log(VB_LOG_WARN, "records wait in the spool (%" PRIu64 " bytes not applied): %s",
               a->sp->synced - a->sp->applied, why);
        a->waiting = 1;
    }
    struct timeval tv = {a->retry_ms / 1000, (a->retry_ms % 1000) * 1000};
    evtimer_add(a->retry_ev, &tv);
    a->retry_ms = a->retry_ms * 2 > RETRY_MAX_MS ? RETRY_MAX_MS : a->retry_ms * 2;
}

void vb_apply_kick(vb_apply_t *a)
{
    if (a == NULL || a->inflight || evtimer_pending(a->retry_ev, NULL)) {
        return;
    }
    for (int rounds = 0; rounds < 64; rounds++) {
        int nrec = build_batch(a);
        if (nrec < 0) {
            retry_later(a, strerror(-nrec));
            return;
        }
        if (nrec > 0) {
            if (submit(a, nrec) < 0) {
                retry_later(a, "out of memory");
            }
            return;
        }
        if (a->batch_end == a->sp->applied) {
            vb_spool_rotate(a->sp, VB_SPOOL_ROTATE_BYTES);
            return; /* all applied */
        }
        /* only lines with nothing to write: move past them */
        if (vb_spool_set_applied(a->sp, a->batch_end) < 0) {
            retry_later(a, "cannot save the cursor");
            return;
        }
    }
    event_active(a->retry_ev, EV_TIMEOUT, 0); /* more later, from the loop */
}

static void on_retry(evutil_socket_t fd, short what, void *arg)
{
    vb_apply_kick(arg);
}

/* The failing statement was refused for its data: pass its record over. */
static int refused(vb_apply_t *a, const vb_pg_reply_t *r)
{
    if (r->failed < 0 || r->failed >= r->n) {
        return 0;
    }
    const char *state = vb_pg_sqlstate(r->res[r->failed]);
    if (vb_pg_retryable(state) || a->nskip >= MAX_SKIPS) {
        return 0;
    }
    int i = a->stmt_rec[r->failed];
    uint64_t off = a->rec_off[i];
    char why[300], line[1200];
    snprintf(why, sizeof(why), "PostgreSQL %s: %s", state, vb_pg_errmsg(r->res[r->failed]));
    ssize_t n = pread(a->sp->fd, line, sizeof(line), (off_t)off);
    char *nl = n > 0 ? memchr(line, '\n', (size_t)n) : NULL;
    reject(a, off, line, nl ? (size_t)(nl - line) : (n > 0 ? (size_t)n : 0), why);
    a->skip[a->nskip++] = off;
    return 1;
}

static void on_done(void *arg, const vb_pg_reply_t *r)
{
    vb_apply_t *a = arg;
    a->inflight = 0;
    if (a->closing) {
        if (r->err == 0) {
            vb_spool_set_applied(a->sp, a->batch_end);
        }
        return;
    }
    if (r->err == 0) {
        int nrec = 0;
        for (int i = 0; i < r->n; i++) {
            nrec = a->stmt_rec[i] + 1;
        }
        a->applied += (unsigned long long)nrec;
        if (vb_spool_set_applied(a->sp, a->batch_end) < 0) {
            retry_later(a, "cannot save the cursor");
            return;
        }
        prune_skips(a);
        if (a->waiting) {
            vb_log(VB_LOG_NOTICE, "PostgreSQL takes records again; applying the spool");
            a->waiting = 0;
        }
        a->retry_ms = RETRY_MIN_MS;
        vb_apply_kick(a);
        return;
    }
    if (r->err == -EIO && refused(a, r)) {
        vb_apply_kick(a); /* the same batch again, without it */
        return;
    }
    char why[300];
    if (r->err == -EIO && r->failed < r->n) {
        snprintf(why, sizeof(why), "PostgreSQL %s: %s", vb_pg_sqlstate(r->res[r->failed]),
                 vb_pg_errmsg(r->res[r->failed]));
    } else {
        snprintf(why, sizeof(why), "%s", strerror(-r->err));
    }
    retry_later(a, why);
}

vb_apply_t *vb_apply_new(struct event_base *base, const char *conninfo, vb_spool_t *sp)
{
    vb_apply_t *a = calloc(1, sizeof(*a));
    if (a == NULL) {
        errno = ENOMEM;
        return NULL;
    }
    vb_pg_opts_t opts = {.application_name = "voxbridge-store"};
    a->base = base;
    a->sp = sp;
    a->retry_ms = RETRY_MIN_MS;
    a->buf = malloc(READ_BYTES);
    a->recs = malloc(sizeof(vb_rec_t) * BATCH_RECORDS);
    a->retry_ev = evtimer_new(base, on_retry, a);
    a->pg = vb_pg_new(base, conninfo, &opts);
    if (a->buf == NULL || a->recs == NULL || a->retry_ev == NULL || a->pg == NULL) {
        vb_apply_free(a);
        errno = ENOMEM;
        return NULL;
    }
    if (sp->applied < sp->synced) {
        vb_log(VB_LOG_INFO, "spool: %" PRIu64 " bytes to apply from the cursor",
               sp->synced - sp->applied);
    }
    return a;
}

void vb_apply_free(vb_apply_t *a)
{
    if (a == NULL) {
        return;
    }
    a->closing = 1;
    vb_pg_free(a->pg); /* a batch in flight ends with -ECANCELED: it stays in the spool */
    if (a->retry_ev != NULL) {
        event_free(a->retry_ev);
    }
    free(a->buf);
    free(a->recs);
    free(a);
}

int vb_apply_idle(const vb_apply_t *a)
{
    return a == NULL || (!a->inflight && a->sp->applied == a->sp->synced);
}
