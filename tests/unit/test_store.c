/* Unit tests for the data area's pure parts: the store's spool and cursor
 * (append, read of whole lines, torn tail, cursor files for another inode or off
 * a line boundary, rotation), the record -> SQL mapping, Redis URLs, the
 * migration file scan and checksum, and SQLSTATE classes. No database needed:
 * tests/integration/test_records.py runs them against PostgreSQL and Redis. */
#include <errno.h>
#include <fcntl.h>
#include <setjmp.h>
#include <stdarg.h>
#include <stddef.h>
#include <stdint.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/stat.h>
#include <unistd.h>

#include <cmocka.h>

#include "common/pg.h"
#include "common/redisc.h"
#include "master/migrate.h"
#include "store/records.h"
#include "store/spool.h"

#define CALL_ID "3f2b8c1e-4d5a-4e6f-8a9b-0c1d2e3f4a5b"

/* ---- helpers ------------------------------------------------------------------ */

static char *tmpdir(void)
{
    char *d = strdup("/tmp/vb-test-store-XXXXXX");
    assert_non_null(mkdtemp(d));
    return d;
}

static void rmdir_rf(const char *dir)
{
    char cmd[600];
    snprintf(cmd, sizeof(cmd), "rm -rf '%s'", dir);
    assert_int_equal(system(cmd), 0);
}

static void write_file(const char *dir, const char *name, const char *text)
{
    char path[600];
    snprintf(path, sizeof(path), "%s/%s", dir, name);
    FILE *f = fopen(path, "w");
    assert_non_null(f);
    fputs(text, f);
    fclose(f);
}

static long file_size(const char *dir, const char *name)
{
    char path[600];
    struct stat st;
    snprintf(path, sizeof(path), "%s/%s", dir, name);
    return stat(path, &st) == 0 ? (long)st.st_size : -1;
}

static const char L1[] = "{\"t\":1,\"type\":\"a\"}\n";
static const char L2[] = "{\"t\":2,\"type\":\"b\"}\n";

/* ---- spool ---------------------------------------------------------------------- */

static void test_spool_append_read_sync(void **state)
{
    char *dir = tmpdir(), buf[256];
    vb_spool_t sp;
    assert_int_equal(vb_spool_open(&sp, dir), 0);
    assert_int_equal(sp.size, 0);
    assert_int_equal(sp.applied, 0);
    assert_int_equal(vb_spool_append(&sp, L1, strlen(L1)), 0);
    /* nothing is read before it is synced */
    assert_int_equal(vb_spool_read(&sp, 0, buf, sizeof(buf)), 0);
    assert_int_equal(vb_spool_sync(&sp), 0);
    assert_int_equal(vb_spool_append(&sp, L2, strlen(L2)), 0);
    assert_int_equal(vb_spool_sync(&sp), 0);
    ssize_t n = vb_spool_read(&sp, 0, buf, sizeof(buf));
    assert_int_equal(n, strlen(L1) + strlen(L2));
    assert_memory_equal(buf, L1, strlen(L1));
    /* a buffer that holds one and a half lines returns the whole one */
    n = vb_spool_read(&sp, 0, buf, strlen(L1) + 5);
    assert_int_equal(n, strlen(L1));
    n = vb_spool_read(&sp, strlen(L1), buf, sizeof(buf));
    assert_int_equal(n, strlen(L2));
    assert_memory_equal(buf, L2, strlen(L2));
    assert_int_equal(vb_spool_read(&sp, sp.size, buf, sizeof(buf)), 0);
    /* a line longer than the buffer comes back cut, without its newline */
    n = vb_spool_read(&sp, 0, buf, 4);
    assert_int_equal(n, 4);
    vb_spool_close(&sp);
    rmdir_rf(dir);
    free(dir);
}

static void test_spool_cursor_survives_reopen(void **state)
{
    char *dir = tmpdir();
    vb_spool_t sp;
    assert_int_equal(vb_spool_open(&sp, dir), 0);
    vb_spool_append(&sp, L1, strlen(L1));
    vb_spool_append(&sp, L2, strlen(L2));
    vb_spool_sync(&sp);
    assert_int_equal(vb_spool_set_applied(&sp, strlen(L1)), 0);
    vb_spool_close(&sp);
    assert_int_equal(vb_spool_open(&sp, dir), 0);
    assert_int_equal(sp.applied, strlen(L1));
    assert_int_equal(sp.size, strlen(L1) + strlen(L2));
    assert_int_equal(sp.synced, sp.size);
    /* no temporary file is left behind */
    assert_int_equal(file_size(dir, VB_SPOOL_CURSOR ".tmp"), -1);
    vb_spool_close(&sp);
    rmdir_rf(dir);
    free(dir);
}

static void test_spool_bad_cursors_replay_from_zero(void **state)
{
    char *dir = tmpdir(), text[64];
    vb_spool_t sp;
    assert_int_equal(vb_spool_open(&sp, dir), 0);
    vb_spool_append(&sp, L1, strlen(L1));
    vb_spool_append(&sp, L2, strlen(L2));
    vb_spool_sync(&sp);
    unsigned long long ino = sp.ino;
    vb_spool_close(&sp);
    /* the cursor of another file (before a rotation) */
    snprintf(text, sizeof(text), "%llu %zu\n", ino + 1, strlen(L1));
    write_file(dir, VB_SPOOL_CURSOR, text);
    assert_int_equal(vb_spool_open(&sp, dir), 0);
    assert_int_equal(sp.applied, 0);
    vb_spool_close(&sp);
    /* not at a line boundary */
    snprintf(text, sizeof(text), "%llu 3\n", ino);
    write_file(dir, VB_SPOOL_CURSOR, text);
    assert_int_equal(vb_spool_open(&sp, dir), 0);
    assert_int_equal(sp.applied, 0);
    vb_spool_close(&sp);
    /* past the end, and garbage */
    snprintf(text, sizeof(text), "%llu 100000\n", ino);
    write_file(dir, VB_SPOOL_CURSOR, text);
    assert_int_equal(vb_spool_open(&sp, dir), 0);
    assert_int_equal(sp.applied, 0);
    vb_spool_close(&sp);
    write_file(dir, VB_SPOOL_CURSOR, "what\n");
    assert_int_equal(vb_spool_open(&sp, dir), 0);
    assert_int_equal(sp.applied, 0);
    vb_spool_close(&sp);
    rmdir_rf(dir);
    free(dir);
}

static void test_spool_drops_a_torn_tail(void **state)
{
    char *dir = tmpdir(), text[128];
    snprintf(text, sizeof(text), "%s{\"t\":3,\"ty", L1);
    write_file(dir, VB_SPOOL_FILE, text);
    vb_spool_t sp;
    assert_int_equal(vb_spool_open(&sp, dir), 0);
    assert_int_equal(sp.size, strlen(L1));
    assert_int_equal(file_size(dir, VB_SPOOL_FILE), (long)strlen(L1));
    /* appending goes on after the last whole line */
    vb_spool_append(&sp, L2, strlen(L2));
    vb_spool_sync(&sp);
    char buf[128];
    assert_int_equal(vb_spool_read(&sp, 0, buf, sizeof(buf)), strlen(L1) + strlen(L2));
    assert_memory_equal(buf + strlen(L1), L2, strlen(L2));
    vb_spool_close(&sp);
    /* a file with no newline at all is emptied */
    write_file(dir, VB_SPOOL_FILE, "{\"t\":1");
    unlink(strcat(strcpy(text, dir), "/" VB_SPOOL_CURSOR));
    assert_int_equal(vb_spool_open(&sp, dir), 0);
    assert_int_equal(sp.size, 0);
    vb_spool_close(&sp);
    rmdir_rf(dir);
    free(dir);
}

static void test_spool_rotates_only_when_applied(void **state)
{
    char *dir = tmpdir();
    vb_spool_t sp;
    assert_int_equal(vb_spool_open(&sp, dir), 0);
    vb_spool_append(&sp, L1, strlen(L1));
    vb_spool_append(&sp, L2, strlen(L2));
    vb_spool_sync(&sp);
    uint64_t old_ino = sp.ino;
    assert_int_equal(vb_spool_rotate(&sp, 1), 0); /* nothing applied yet */
    vb_spool_set_applied(&sp, strlen(L1));
    assert_int_equal(vb_spool_rotate(&sp, 1), 0); /* not all of it */
    vb_spool_set_applied(&sp, sp.size);
    assert_int_equal(vb_spool_rotate(&sp, 1 << 20), 0); /* too small to bother */
    assert_int_equal(vb_spool_rotate(&sp, 1), 1);
    assert_int_not_equal(sp.ino, old_ino);
    assert_int_equal(sp.size, 0);
    assert_int_equal(sp.applied, 0);
    assert_int_equal(file_size(dir, VB_SPOOL_FILE ".1"), (long)(strlen(L1) + strlen(L2)));
    assert_int_equal(file_size(dir, VB_SPOOL_FILE), 0);
    vb_spool_append(&sp, L1, strlen(L1));
    vb_spool_sync(&sp);
    vb_spool_close(&sp);
    /* reopened: the cursor names the new file, nothing of it applied */
    assert_int_equal(vb_spool_open(&sp, dir), 0);
    assert_int_equal(sp.applied, 0);
    assert_int_equal(sp.size, strlen(L1));
    vb_spool_close(&sp);
    rmdir_rf(dir);
    free(dir);
}

/* ---- records ------------------------------------------------------------------ */

static vb_rec_t rec;

static int parse(const char *line)
{
    return vb_rec_parse(line, strlen(line), &rec);
}

static void test_rec_call_started(void **state)
{
    assert_int_equal(
        parse("{\"t\":1700000000123456789,\"type\":\"call.started\",\"call_id\":\"" CALL_ID
              "\",\"slot\":0,\"gen\":3,\"call_sid\":\"CA1\",\"stream_sid\":\"MZ1\","
              "\"assistant\":\"echo\",\"from\":\"+15551234567\",\"to\":\"+15550000001\"}"),
        0);
    assert_int_equal(rec.kind, VB_REC_CALL_STARTED);
    assert_int_equal(rec.nstmts, 2);
    assert_ptr_equal(rec.stmts[1].sql, vb_rec_sql_turns_org);
    assert_int_equal(rec.stmts[1].nparams, 1);
    assert_string_equal(rec.stmts[1].values[0], CALL_ID);
    assert_ptr_equal(rec.stmts[0].sql, vb_rec_sql_call_started);
    assert_int_equal(rec.stmts[0].nparams, 9);
    const char *const *v = rec.stmts[0].values;
    assert_string_equal(v[0], CALL_ID);
    assert_string_equal(v[1], "1700000000123456789");
    assert_string_equal(v[2], "echo");
    assert_null(v[3]); /* no assistant_id */
    assert_string_equal(v[4], "+15551234567");
    assert_string_equal(v[5], "+15550000001");
    assert_string_equal(v[6], "CA1");
    assert_string_equal(v[7], "MZ1");
    assert_string_equal(v[8], "inbound");
    assert_string_equal(rec.call_id, CALL_ID);
    assert_string_equal(rec.to, "+15550000001");
    assert_true(rec.t_ns == 1700000000123456789LL);
    /* every placeholder the SQL uses has a value slot */
    assert_non_null(strstr(vb_rec_sql_call_started, "$9"));
    assert_null(strstr(vb_rec_sql_call_started, "$10"));
    /* an assistant_id that is a UUID is passed; empty sids are NULL */
    assert_int_equal(parse("{\"t\":1,\"type\":\"call.started\",\"call_id\":\"" CALL_ID
                           "\",\"assistant\":\"x\",\"assistant_id\":\"" CALL_ID
                           "\",\"call_sid\":\"\",\"direction\":\"outbound\"}"),
                     0);
    assert_string_equal(rec.stmts[0].values[3], CALL_ID);
    assert_null(rec.stmts[0].values[6]);
    assert_null(rec.stmts[0].values[7]);
    assert_string_equal(rec.stmts[0].values[8], "outbound");
}

static void test_rec_call_ended(void **state)
{
    assert_int_equal(parse("{\"t\":5,\"type\":\"call.ended\",\"call_id\":\"" CALL_ID
                           "\",\"reason\":\"hangup\",\"frames_in\":150,\"frames_out\":149,"
                           "\"underruns\":0,\"extra\":\"ignored\"}"),
                     0);
    assert_int_equal(rec.kind, VB_REC_CALL_ENDED);
    assert_ptr_equal(rec.stmts[0].sql, vb_rec_sql_call_ended);
    const char *const *v = rec.stmts[0].values;
    assert_string_equal(v[1], "5");
    assert_string_equal(v[2], "hangup");
    assert_string_equal(v[3], "false");
    assert_string_equal(v[4], "{\"frames_in\":150,\"frames_out\":149,\"underruns\":0}");
    assert_false(rec.failed);
    /* the store's own failure record */
    assert_int_equal(parse("{\"t\":6,\"type\":\"call.ended\",\"call_id\":\"" CALL_ID
                           "\",\"reason\":\"media worker crashed\",\"failed\":true}"),
                     0);
    assert_string_equal(rec.stmts[0].values[3], "true");
    assert_string_equal(rec.stmts[0].values[4], "{}");
    assert_true(rec.failed);
    /* no reason: "hangup" */
    assert_int_equal(parse("{\"t\":6,\"type\":\"call.ended\",\"call_id\":\"" CALL_ID "\"}"), 0);
    assert_string_equal(rec.stmts[0].values[2], "hangup");
}

static void test_rec_turn(void **state)
{
    assert_int_equal(parse("{\"t\":9,\"type\":\"turn\",\"call_id\":\"" CALL_ID
                           "\",\"speaker\":\"agent\",\"text\":\"We are \\\"open\\\" 9-5\","
                           "\"start_ms\":1200,\"end_ms\":2500.4,\"interrupted\":true,"
                           "\"intent\":\"hours\",\"stt_ms\":null,\"v2v_ms\":640,"
                           "\"planned_text\":\"We are \\\"open\\\" 9-5 on weekdays\","
                           "\"broker_restarted\":true}"),
                     0);
    assert_int_equal(rec.kind, VB_REC_TURN);
    assert_int_equal(rec.nstmts, 2);
    assert_ptr_equal(rec.stmts[0].sql, vb_rec_sql_call_placeholder);
    assert_int_equal(rec.stmts[0].nparams, 1);
    assert_string_equal(rec.stmts[0].values[0], CALL_ID);
    assert_ptr_equal(rec.stmts[1].sql, vb_rec_sql_turn);
    assert_int_equal(rec.stmts[1].nparams, 14);
    const char *const *v = rec.stmts[1].values;
    assert_string_equal(v[1], "9");
    assert_string_equal(v[2], "agent");
    assert_string_equal(v[3], "We are \"open\" 9-5");
    assert_string_equal(v[4], "1200");
    assert_string_equal(v[5], "2500");
    assert_string_equal(v[6], "true");
    assert_string_equal(v[7], "hours");
    assert_null(v[8]); /* stt_ms null */
    assert_string_equal(v[9], "640");
    assert_null(v[10]); /* absent */
    assert_null(v[11]);
    assert_string_equal(v[12], "We are \"open\" 9-5 on weekdays");
    assert_string_equal(v[13], "true");
    /* the caller's turn, minimal */
    assert_int_equal(parse("{\"t\":9,\"type\":\"turn\",\"call_id\":\"" CALL_ID
                           "\",\"speaker\":\"caller\",\"text\":\"hi\"}"),
                     0);
    assert_string_equal(rec.stmts[1].values[6], "false");
    assert_null(rec.stmts[1].values[7]);
    assert_null(rec.stmts[1].values[12]); /* not cut off: nothing planned beyond the text */
    assert_string_equal(rec.stmts[1].values[13], "false");
    /* a turn needs a speaker it knows and a text */
    assert_int_equal(parse("{\"t\":9,\"type\":\"turn\",\"call_id\":\"" CALL_ID
                           "\",\"speaker\":\"robot\",\"text\":\"hi\"}"),
                     -EINVAL);
    assert_int_equal(rec.nstmts, 0);
    assert_int_equal(
        parse("{\"t\":9,\"type\":\"turn\",\"call_id\":\"" CALL_ID "\",\"speaker\":\"caller\"}"),
        -EINVAL);
    assert_int_equal(parse("{\"t\":9,\"type\":\"turn\",\"call_id\":\"" CALL_ID
                           "\",\"speaker\":\"caller\",\"text\":7}"),
                     -EINVAL);
}

static void test_rec_bad_and_other(void **state)
{
    assert_int_equal(parse("not json"), -EINVAL);
    assert_int_equal(parse("[1,2]"), -EINVAL);
    assert_int_equal(parse("{\"type\":\"call.ended\",\"call_id\":\"" CALL_ID "\"}"), -EINVAL);
    assert_int_equal(parse("{\"t\":1,\"call_id\":\"" CALL_ID "\"}"), -EINVAL);
    assert_int_equal(parse("{\"t\":-1,\"type\":\"x\"}"), -EINVAL);
    /* call records need a UUID call_id */
    assert_int_equal(parse("{\"t\":1,\"type\":\"call.ended\",\"call_id\":\"abc\"}"), -EINVAL);
    assert_int_equal(parse("{\"t\":1,\"type\":\"call.started\"}"), -EINVAL);
    /* duplicate keys are refused (which one would win?) */
    assert_int_equal(parse("{\"t\":1,\"t\":2,\"type\":\"x\"}"), -EINVAL);
    /* a wrong type for a string field */
    assert_int_equal(
        parse("{\"t\":1,\"type\":\"call.started\",\"call_id\":\"" CALL_ID "\",\"from\":5}"),
        -EINVAL);
    assert_int_equal(parse("{\"t\":1,\"type\":\"call.started\",\"call_id\":\"" CALL_ID
                           "\",\"direction\":\"sideways\"}"),
                     -EINVAL);
    /* other kinds are kept in the spool with nothing to write */
    assert_int_equal(parse("{\"t\":1,\"type\":\"timing\",\"call_id\":\"x\",\"v\":1}"), 0);
    assert_int_equal(rec.kind, VB_REC_OTHER);
    assert_int_equal(rec.nstmts, 0);
    assert_string_equal(rec.type, "timing");
}

static void test_rec_too_large(void **state)
{
    size_t n = sizeof(rec.buf) + 100;
    char *text = malloc(n), *line = malloc(n + 200);
    memset(text, 'a', n - 1);
    text[n - 1] = '\0';
    snprintf(line, n + 200,
             "{\"t\":1,\"type\":\"turn\",\"call_id\":\"" CALL_ID
             "\",\"speaker\":\"agent\",\"text\":\"%s\"}",
             text);
    assert_int_equal(vb_rec_parse(line, strlen(line), &rec), -E2BIG);
    assert_int_equal(rec.nstmts, 0);
    free(text);
    free(line);
}

static void test_rec_uuid(void **state)
{
    assert_true(vb_rec_is_uuid(CALL_ID));
    assert_true(vb_rec_is_uuid("3F2B8C1E-4D5A-4E6F-8A9B-0C1D2E3F4A5B"));
    assert_false(vb_rec_is_uuid("3f2b8c1e-4d5a-4e6f-8a9b-0c1d2e3f4a5"));
    assert_false(vb_rec_is_uuid("3f2b8c1e+4d5a-4e6f-8a9b-0c1d2e3f4a5b"));
    assert_false(vb_rec_is_uuid("3f2b8c1e-4d5a-4e6f-8a9b-0c1d2e3f4a5g"));
    assert_false(vb_rec_is_uuid(""));
    assert_false(vb_rec_is_uuid(NULL));
}

/* ---- Redis URLs ----------------------------------------------------------------- */

static void test_redis_urls(void **state)
{
    vb_redis_url_t u;
    assert_int_equal(vb_redis_url_parse("redis://127.0.0.1:6380/2", &u), 0);
    assert_string_equal(u.host, "127.0.0.1");
    assert_int_equal(u.port, 6380);
    assert_int_equal(u.db, 2);
    assert_string_equal(u.password, "");
    assert_int_equal(vb_redis_url_parse("redis://cache.local", &u), 0);
    assert_string_equal(u.host, "cache.local");
    assert_int_equal(u.port, 6379);
    assert_int_equal(u.db, 0);
    assert_int_equal(vb_redis_url_parse("redis://:s%40cret@h:1/", &u), 0);
    assert_string_equal(u.user, "");
    assert_string_equal(u.password, "s@cret");
    assert_string_equal(u.host, "h");
    assert_int_equal(vb_redis_url_parse("redis://bob:pw@[::1]:7000/3", &u), 0);
    assert_string_equal(u.user, "bob");
    assert_string_equal(u.host, "::1");
    assert_int_equal(u.port, 7000);
    assert_int_equal(u.db, 3);
    assert_int_equal(vb_redis_url_parse("unix:///run/redis.sock?db=4", &u), 0);
    assert_string_equal(u.path, "/run/redis.sock");
    assert_int_equal(u.db, 4);
    assert_int_equal(vb_redis_url_parse("localhost:6390", &u), 0);
    assert_int_equal(u.port, 6390);
    const char *bad[] = {"",
                         "rediss://h:1",
                         "redis://h:0",
                         "redis://h:70000",
                         "redis://h:x",
                         "redis://h/db",
                         "redis://:%4@h",
                         "unix://relative",
                         "redis://pw@h",
                         "http://h",
                         "redis://:6379",
                         "unix:///s?x=1"};
    for (size_t i = 0; i < sizeof(bad) / sizeof(bad[0]); i++) {
        if (vb_redis_url_parse(bad[i], &u) != -EINVAL) {
            fail_msg("accepted %s", bad[i]);
        }
    }
}

/* ---- migrations and SQLSTATEs ---------------------------------------------------- */

static void test_migrate_scan(void **state)
{
    char *dir = tmpdir(), err[256];
    vb_migration_t m[8];
    write_file(dir, "010_later.sql", "x");
    write_file(dir, "002_second.sql", "x");
    write_file(dir, "001_init.sql", "x");
    write_file(dir, "README.md", "x");
    write_file(dir, "003_bad name.sql", "x");
    write_file(dir, "004_draft.sql.orig", "x");
    write_file(dir, "_005.sql", "x");
    assert_int_equal(vb_migrate_scan(dir, m, 8, err, sizeof(err)), 3);
    assert_int_equal(m[0].version, 1);
    assert_string_equal(m[0].name, "001_init");
    assert_int_equal(m[1].version, 2);
    assert_int_equal(m[2].version, 10);
    assert_string_equal(m[2].name, "010_later");
    assert_non_null(strstr(m[2].path, "/010_later.sql"));
    write_file(dir, "10_same.sql", "x");
    assert_int_equal(vb_migrate_scan(dir, m, 8, err, sizeof(err)), -EEXIST);
    assert_non_null(strstr(err, "same version 10"));
    rmdir_rf(dir);
    assert_int_equal(vb_migrate_scan(dir, m, 8, err, sizeof(err)), -ENOENT);
    free(dir);
    char sum[65];
    vb_migrate_checksum("abc", 3, sum);
    assert_string_equal(sum,
                        "ba7816bf8f01cfea414140de5dae2223b00361a396177a9cb410ff61f20015ad");
}

static void test_sqlstate_classes(void **state)
{
    assert_false(vb_pg_retryable("23505")); /* unique violation */
    assert_false(vb_pg_retryable("23514")); /* check violation */
    assert_false(vb_pg_retryable("22P02")); /* invalid text representation */
    assert_true(vb_pg_retryable("08006"));  /* connection failure */
    assert_true(vb_pg_retryable("40P01"));  /* deadlock */
    assert_true(vb_pg_retryable("42P01"));  /* undefined table: not migrated yet */
    assert_true(vb_pg_retryable("57P01"));  /* admin shutdown */
    assert_true(vb_pg_retryable(""));
    assert_true(vb_pg_retryable(NULL));
    assert_string_equal(vb_pg_sqlstate(NULL), "");
}

int main(void)
{
    const struct CMUnitTest tests[] = {
        cmocka_unit_test(test_spool_append_read_sync),
        cmocka_unit_test(test_spool_cursor_survives_reopen),
        cmocka_unit_test(test_spool_bad_cursors_replay_from_zero),
        cmocka_unit_test(test_spool_drops_a_torn_tail),
        cmocka_unit_test(test_spool_rotates_only_when_applied),
        cmocka_unit_test(test_rec_call_started),
        cmocka_unit_test(test_rec_call_ended),
        cmocka_unit_test(test_rec_turn),
        cmocka_unit_test(test_rec_bad_and_other),
        cmocka_unit_test(test_rec_too_large),
        cmocka_unit_test(test_rec_uuid),
        cmocka_unit_test(test_redis_urls),
        cmocka_unit_test(test_migrate_scan),
        cmocka_unit_test(test_sqlstate_classes),
    };
    return cmocka_run_group_tests(tests, NULL, NULL);
}
