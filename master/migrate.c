/* `voxbridge migrate` (see migrate.h): scans the sql directory, takes a
 * PostgreSQL advisory lock so that two instances never migrate at once,
 * checks the files already applied against their recorded checksums, and
 * applies the others in order, one transaction each. Runs in the foreground
 * from main(), never as a role. */
#include "master/migrate.h"

#include <ctype.h>
#include <dirent.h>
#include <errno.h>
#include <libpq-fe.h>
#include <openssl/evp.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <time.h>

#define LOCK_SQL "SELECT pg_advisory_lock(hashtext('voxbridge migrate'))"
#define TRY_LOCK_SQL "SELECT pg_try_advisory_lock(hashtext('voxbridge migrate'))"

const char *vb_migrate_sql_dir(void)
{
    const char *env = getenv("VOXBRIDGE_SQL_DIR");
    return env && env[0] ? env : VB_DATADIR "/sql";
}

void vb_migrate_checksum(const char *text, size_t len, char out[65])
{
    unsigned char md[EVP_MAX_MD_SIZE];
    unsigned int mdlen = 0;
    EVP_Digest(text, len, md, &mdlen, EVP_sha256(), NULL);
    for (unsigned int i = 0; i < mdlen && i < 32; i++) {
        snprintf(out + 2 * i, 3, "%02x", md[i]);
    }
    out[64] = '\0';
}

/* NNN_name.sql: the version, or -1 for a file that is not a migration. */
static int version_of(const char *file)
{
    size_t len = strlen(file), digits = strspn(file, "0123456789");
    if (digits == 0 || digits > 6 || file[digits] != '_' || len < digits + 6 ||
        strcmp(file + len - 4, ".sql") != 0) {
        return -1;
    }
    for (size_t i = digits + 1; i < len - 4; i++) {
        if (!isalnum((unsigned char)file[i]) && file[i] != '_' && file[i] != '-') {
            return -1;
        }
    }
    return atoi(file);
}

static int by_version(const void *a, const void *b)
{
    const vb_migration_t *x = a, *y = b;
    return (x->version > y->version) - (x->version < y->version);
}

int vb_migrate_scan(const char *dir, vb_migration_t *out, int cap, char *err, size_t errlen)
{
    DIR *d = opendir(dir);
    if (d == NULL) {
        int rc = -errno;
        snprintf(err, errlen, "cannot read the sql directory %s: %s", dir, strerror(-rc));
        return rc;
    }
    int n = 0;
    struct dirent *e;
    while ((e = readdir(d)) != NULL && n < cap) {
        int v = version_of(e->d_name);
        if (v < 0 || strlen(e->d_name) >= sizeof(out[n].name) + 4) {
            continue;
        }
        out[n].version = v;
        snprintf(out[n].name, sizeof(out[n].name), "%.*s", (int)strlen(e->d_name) - 4,
                 e->d_name);
        snprintf(out[n].path, sizeof(out[n].path), "%s/%s", dir, e->d_name);
        n++;
    }
    closedir(d);
    qsort(out, (size_t)n, sizeof(*out), by_version);
    for (int i = 1; i < n; i++) {
        if (out[i].version == out[i - 1].version) {
            snprintf(err, errlen, "%s and %s have the same version %d", out[i - 1].name,
                     out[i].name, out[i].version);
            return -EEXIST;
        }
    }
    return n;
}

/* ---- the database side ------------------------------------------------------ */

typedef struct {
    int version;
    char name[128];
    char checksum[65];
} applied_t;

typedef struct {
    PGconn *db;
    applied_t *applied;
    int napplied;
} mig_t;

static char *read_file(const char *path, size_t *len)
{
    FILE *f = fopen(path, "rb");
    if (f == NULL) {
        return NULL;
    }
    char *buf = NULL;
    size_t cap = 0, n = 0;
    for (;;) {
        if (n + 4096 + 1 > cap) {
            cap = cap ? cap * 2 : 16384;
            char *p = realloc(buf, cap);
            if (p == NULL) {
                free(buf);
                fclose(f);
                return NULL;
            }
            buf = p;
        }
        size_t r = fread(buf + n, 1, cap - n - 1, f);
        n += r;
        if (r == 0) {
            break;
        }
    }
    fclose(f);
    buf[n] = '\0';
    *len = n;
    return buf;
}

/* Runs SQL; 0, or -1 after printing what failed. */
static int exec_ok(PGconn *db, const char *sql, const char *what)
{
    PGresult *r = PQexec(db, sql);
    ExecStatusType st = PQresultStatus(r);
    int ok = st == PGRES_COMMAND_OK || st == PGRES_TUPLES_OK;
    if (!ok) {
        fprintf(stderr, "voxbridge migrate: %s: %s", what, PQerrorMessage(db));
    }
    PQclear(r);
    return ok ? 0 : -1;
}

static int lock(PGconn *db)
{
    PGresult *r = PQexec(db, TRY_LOCK_SQL);
    int got = PQresultStatus(r) == PGRES_TUPLES_OK && strcmp(PQgetvalue(r, 0, 0), "t") == 0;
    PQclear(r);
    if (got) {
        return 0;
    }
    printf("another voxbridge migrate is running; waiting for it\n");
    fflush(stdout);
    return exec_ok(db, LOCK_SQL, "advisory lock");
}

static int load_applied(mig_t *m)
{
    if (exec_ok(m->db,
                "CREATE TABLE IF NOT EXISTS schema_migrations ("
                " version integer PRIMARY KEY, name text NOT NULL,"
                " applied_at timestamptz NOT NULL DEFAULT now(), checksum text NOT NULL)",
                "schema_migrations") < 0) {
        return -1;
    }
    PGresult *r = PQexec(m->db, "SELECT version, name, checksum FROM schema_migrations "
                                "ORDER BY version");
    if (PQresultStatus(r) != PGRES_TUPLES_OK) {
        fprintf(stderr, "voxbridge migrate: reading schema_migrations: %s",
                PQerrorMessage(m->db));
        PQclear(r);
        return -1;
    }
    m->napplied = PQntuples(r);
    m->applied = calloc((size_t)m->napplied + 1, sizeof(applied_t));
    for (int i = 0; m->applied != NULL && i < m->napplied; i++) {
        m->applied[i].version = atoi(PQgetvalue(r, i, 0));
        snprintf(m->applied[i].name, sizeof(m->applied[i].name), "%s", PQgetvalue(r, i, 1));
        snprintf(m->applied[i].checksum, sizeof(m->applied[i].checksum), "%s",
                 PQgetvalue(r, i, 2));
    }
    PQclear(r);
    return m->applied != NULL ? 0 : -1;
}

static const applied_t *find_applied(const mig_t *m, int version)
{
    for (int i = 0; i < m->napplied; i++) {
        if (m->applied[i].version == version) {
            return &m->applied[i];
        }
    }
    return NULL;
}

static int max_applied(const mig_t *m)
{
    return m->napplied > 0 ? m->applied[m->napplied - 1].version : -1;
}

/* Line of FILE where the 1-based character POS is. */
static int line_at(const char *text, long pos)
{
    int line = 1;
    for (long i = 0; text[i] != '\0' && i < pos - 1; i++) {
        line += text[i] == '\n';
    }
    return line;
}

static void report_sql_error(const vb_migration_t *f, const char *text, PGresult *r)
{
    const char *pos = PQresultErrorField(r, PG_DIAG_STATEMENT_POSITION);
    const char *msg = PQresultErrorField(r, PG_DIAG_MESSAGE_PRIMARY);
    const char *state = PQresultErrorField(r, PG_DIAG_SQLSTATE);
    if (pos != NULL) {
        fprintf(stderr, "voxbridge migrate: %s:%d: %s (SQLSTATE %s); nothing of it applied\n",
                f->path, line_at(text, atol(pos)), msg ? msg : "error", state ? state : "?");
    } else {
        fprintf(stderr, "voxbridge migrate: %s: %s (SQLSTATE %s); nothing of it applied\n",
                f->path, msg ? msg : "error", state ? state : "?");
    }
}

/* One file in one transaction, with its row in schema_migrations. */
static int apply_one(mig_t *m, const vb_migration_t *f, const char *text, const char *sum)
{
    struct timespec t0, t1;
    clock_gettime(CLOCK_MONOTONIC, &t0);
    if (exec_ok(m->db, "BEGIN", "BEGIN") < 0) {
        return -1;
    }
    PGresult *r = PQexec(m->db, text);
    ExecStatusType st = PQresultStatus(r);
    if (st != PGRES_COMMAND_OK && st != PGRES_TUPLES_OK && st != PGRES_EMPTY_QUERY) {
        report_sql_error(f, text, r);
        PQclear(r);
        exec_ok(m->db, "ROLLBACK", "ROLLBACK");
        return -1;
    }
    PQclear(r);
    char ver[16];
    snprintf(ver, sizeof(ver), "%d", f->version);
    const char *vals[] = {ver, f->name, sum};
    r = PQexecParams(
        m->db, "INSERT INTO schema_migrations (version, name, checksum) VALUES ($1, $2, $3)", 3,
        NULL, vals, NULL, NULL, 0);
    int ok = PQresultStatus(r) == PGRES_COMMAND_OK;
    PQclear(r);
    if (!ok || exec_ok(m->db, "COMMIT", "COMMIT") < 0) {
        fprintf(stderr, "voxbridge migrate: %s: %s", f->name, PQerrorMessage(m->db));
        exec_ok(m->db, "ROLLBACK", "ROLLBACK");
        return -1;
    }
    clock_gettime(CLOCK_MONOTONIC, &t1);
    printf("applied %s (%.0f ms)\n", f->name,
           (double)(t1.tv_sec - t0.tv_sec) * 1e3 + (double)(t1.tv_nsec - t0.tv_nsec) / 1e6);
    fflush(stdout);
    return 0;
}

/* Checks what is applied against the files, then applies the rest in order. */
static int run(mig_t *m, const vb_migration_t *files, int n)
{
    int done = 0, top = max_applied(m);
    for (int i = 0; i < m->napplied; i++) {
        int found = 0;
        for (int j = 0; j < n; j++) {
            found |= files[j].version == m->applied[i].version;
        }
        if (!found) {
            printf("warning: %s is applied but its file is not in %s\n", m->applied[i].name,
                   vb_migrate_sql_dir());
        }
    }
    for (int i = 0; i < n; i++) {
        size_t len = 0;
        char *text = read_file(files[i].path, &len), sum[65];
        if (text == NULL) {
            fprintf(stderr, "voxbridge migrate: cannot read %s: %s\n", files[i].path,
                    strerror(errno));
            return -1;
        }
        vb_migrate_checksum(text, len, sum);
        const applied_t *a = find_applied(m, files[i].version);
        int rc = 0;
        if (a != NULL && strcmp(a->checksum, sum) != 0) {
            fprintf(stderr,
                    "voxbridge migrate: %s was changed after it was applied "
                    "(checksum %.12s, applied %.12s): add a new migration instead\n",
                    files[i].path, sum, a->checksum);
            rc = -1;
        } else if (a == NULL && files[i].version < top) {
            fprintf(stderr,
                    "voxbridge migrate: %s is older than the applied version %d: "
                    "renumber it after the last one\n",
                    files[i].path, top);
            rc = -1;
        } else if (a == NULL) {
            rc = apply_one(m, &files[i], text, sum);
            done += rc == 0;
        }
        free(text);
        if (rc < 0) {
            return -1;
        }
    }
    if (done == 0 && top >= 0) {
        printf("the database is up to date (version %d)\n", top);
    } else if (done == 0) {
        printf("no migrations in %s\n", vb_migrate_sql_dir());
    }
    return 0;
}

static PGconn *connect_db(const char *url)
{
    const char *keys[] = {"application_name", "dbname", NULL};
    const char *vals[] = {"voxbridge-migrate", url, NULL};
    PGconn *db = PQconnectdbParams(keys, vals, 1);
    if (db == NULL || PQstatus(db) != CONNECTION_OK) {
        fprintf(stderr, "voxbridge migrate: cannot connect to database_url: %s",
                db ? PQerrorMessage(db) : "out of memory\n");
        PQfinish(db);
        return NULL;
    }
    PQclear(PQexec(db, "SET client_min_messages = warning"));
    return db;
}

int vb_migrate_main(const vb_conf_t *conf)
{
    if (conf->database_url[0] == '\0') {
        fprintf(stderr, "voxbridge migrate: %s: database_url is not set\n",
                conf->path[0] ? conf->path : "config");
        return 2;
    }
    static vb_migration_t files[VB_MIGRATE_MAX];
    char err[512];
    int n = vb_migrate_scan(vb_migrate_sql_dir(), files, VB_MIGRATE_MAX, err, sizeof(err));
    if (n < 0) {
        fprintf(stderr, "voxbridge migrate: %s\n", err);
        return n == -EEXIST ? 1 : 2;
    }
    mig_t m = {.db = connect_db(conf->database_url)};
    if (m.db == NULL) {
        return 1;
    }
    int rc = lock(m.db) < 0 || load_applied(&m) < 0 || run(&m, files, n) < 0 ? 1 : 0;
    free(m.applied);
    PQfinish(m.db); /* ends the session: the advisory lock goes with it */
    return rc;
}
