/* `voxbridge migrate [-c FILE]`: applies the numbered SQL files
 * (NNN_name.sql, from $VOXBRIDGE_SQL_DIR or the installed sql directory) to
 * database_url in order, each in its own transaction, recording each in
 * schema_migrations (version, name, applied_at, checksum). A one-shot command
 * run from main() before any role exists: blocking libpq is fine here. */
#ifndef VB_MASTER_MIGRATE_H
#define VB_MASTER_MIGRATE_H

#include <stddef.h>

#include "common/conf.h"

#define VB_MIGRATE_MAX 1000

typedef struct {
    int version;    /* NNN */
    char name[128]; /* file name without .sql, e.g. 001_init */
    char path[768];
} vb_migration_t;

/* Runs the command; returns the process exit status: 0 applied or nothing to
 * do, 1 failed (database error, a changed or out-of-order file), 2 bad setup
 * (no database_url, no sql directory). Prints what it does on stdout, errors
 * on stderr. */
int vb_migrate_main(const vb_conf_t *conf);

/* The migration files in DIR sorted by version (other files are ignored).
 * Returns how many (up to CAP) or -errno, with a reason in ERR (a directory
 * that cannot be read, two files with one version: -EEXIST). */
int vb_migrate_scan(const char *dir, vb_migration_t *out, int cap, char *err, size_t errlen);

/* SHA-256 of TEXT in hex (65 bytes with the NUL). */
void vb_migrate_checksum(const char *text, size_t len, char out[65]);

/* The directory the files are read from. */
const char *vb_migrate_sql_dir(void);

#endif
