"""Call records in PostgreSQL and live state in Redis, with the real voxbridge,
a private PostgreSQL cluster and a private Redis (services.py), and echo calls
placed with voxbridge-callsim: `voxbridge migrate`, the calls table after a
call, a crash, a database outage and a store restart; the active set in Redis;
assistants edited in the database; status callbacks; row-level security.
Run by run.py."""

import atexit
import hashlib
import os
import shutil
import signal
import subprocess
import tempfile
import threading
import unittest

import harness
import services
from test_calls import check_echo_call, records_by_call
from wsclient import post_signed, voice_params

DB_NUMBER = "+15550000002"   # answered by an assistant that exists only in the database
ACTIVE_KEY = "voxbridge:calls:active"


def sql_dir():
    return os.path.join(harness.srcdir(), "sql")


def run_migrate(conf_path, sql=None, timeout=60):
    env = dict(os.environ, VOXBRIDGE_SQL_DIR=sql or sql_dir())
    return subprocess.run([harness.voxbridge_bin(), "migrate", "-c", conf_path], env=env,
                          stdout=subprocess.PIPE, stderr=subprocess.PIPE, text=True,
                          timeout=timeout)


def write_conf(dirname, url):
    path = os.path.join(dirname, "migrate.conf")
    with open(path, "w") as f:
        f.write("database_url = %s\nstate_dir = %s\n" % (url, dirname))
    return path


def cursor_of(server):
    """(inode, offset) in the spool's cursor file, or None."""
    try:
        with open(os.path.join(server.state_dir, "spool", "events.cursor")) as f:
            ino, off = f.read().split()
        return int(ino), int(off)
    except (OSError, ValueError):
        return None


def spool_size(server):
    try:
        return os.path.getsize(server.spool_path())
    except OSError:
        return 0


_shared = {}


def shared_services():
    """One PostgreSQL cluster (with a migrated template database) and one Redis
    for the whole run, started on first use and stopped when Python exits: the
    runner calls each test on its own, so setUpClass would not run."""
    if "pg" not in _shared:
        pg = services.start_postgres()
        atexit.register(pg.close)
        rd = services.start_redis()
        atexit.register(rd.close)
        tdir = tempfile.mkdtemp(prefix="vb-records-")
        atexit.register(shutil.rmtree, tdir, True)
        pg.psql("CREATE DATABASE vb_template", dbname="postgres")
        res = run_migrate(write_conf(tdir, pg.url.rsplit("/", 1)[0] + "/vb_template"))
        if res.returncode != 0:
            raise harness.HarnessError("migrate failed: %s %s" % (res.stdout, res.stderr))
        _shared.update(pg=pg, rd=rd)
    return _shared["pg"], _shared["rd"]



def shipped_migrations():
    """[version, name, sha256] of every migration the project ships, in order."""
    out = []
    for f in sorted(os.listdir(sql_dir())):
        if f.endswith(".sql"):
            with open(os.path.join(sql_dir(), f), "rb") as fh:
                sha = hashlib.sha256(fh.read()).hexdigest()
            out.append([str(int(f.split("_")[0])), f[:-4], sha])
    return out

class DatabaseTestCase(harness.ServerTestCase):
    """Each test gets a database of its own (a copy of the migrated template)
    and a Redis database number of its own."""

    _n = 0

    def setUp(self):
        super().setUp()
        self.pg, self.rd = shared_services()
        DatabaseTestCase._n += 1
        self.dbname = "vb_test_%d" % DatabaseTestCase._n
        self.pg.psql("CREATE DATABASE %s TEMPLATE vb_template" % self.dbname, dbname="postgres")
        self.db_url = self.pg.url.rsplit("/", 1)[0] + "/" + self.dbname
        self.redis_db = DatabaseTestCase._n % 16
        self.redis_url = self.rd.url.rsplit("/", 1)[0] + "/%d" % self.redis_db

    def sql(self, text):
        return self.pg.psql(text, dbname=self.dbname)

    def value(self, text):
        rows = self.sql(text)
        return rows[0][0] if rows and rows[0] else None

    def redis(self, *args):
        return self.rd.command(*args, db=self.redis_db)

    def active_calls(self):
        return {m.decode() for m in self.redis("SMEMBERS", ACTIVE_KEY)}

    def db_server(self, **kw):
        extra = {"database_url": self.db_url, "redis_url": self.redis_url}
        extra.update(kw.pop("extra", {}))
        return self.server(extra=extra, **kw)

    def add_db_assistant(self, name="dbecho", number=DB_NUMBER, delay=0):
        return self.value(
            "WITH a AS (INSERT INTO assistants (organization_id, name, mode, echo_delay_ms)"
            " VALUES (vb_default_org(), '%s', 'echo', %d) RETURNING id, organization_id)"
            " INSERT INTO phone_numbers (organization_id, number, assistant_id)"
            " SELECT organization_id, '%s', id FROM a RETURNING assistant_id"
            % (name, delay, number))

    def wait_rows(self, sql, want, timeout=15, what=None):
        return harness.wait_until(lambda: self.value(sql) == str(want), timeout,
                                  what=what or "%s = %s" % (sql, want))


class Migrations(harness.ServerTestCase):
    def setUp(self):
        super().setUp()
        self.pg = services.start_postgres()
        self.addCleanup(self.pg.close)
        self.dir = tempfile.mkdtemp(prefix="vb-migrate-")
        self.addCleanup(shutil.rmtree, self.dir, True)
        self.conf = write_conf(self.dir, self.pg.url)

    def test_migrate_applies_once_and_refuses_a_changed_file(self):
        res = run_migrate(self.conf)
        self.assertEqual(res.returncode, 0, res.stderr)
        self.assertIn("applied 001_init", res.stdout)
        tables = {r[0] for r in self.pg.psql(
            "SELECT tablename FROM pg_tables WHERE schemaname = 'public'")}
        for t in ("organizations", "api_keys", "assistants", "phone_numbers", "calls",
                  "call_status_events", "transcript_turns", "schema_migrations"):
            self.assertIn(t, tables)
        shipped = shipped_migrations()
        self.assertIn("applied 002_turn_taking", res.stdout)
        self.assertIn("applied 003_cut_replies", res.stdout)
        self.assertEqual(self.pg.psql("SELECT version, name, checksum FROM schema_migrations "
                                      "ORDER BY version"), shipped)
        # turn-taking settings (002): defaults, and the bounds are enforced
        self.assertEqual(self.pg.psql(
            "INSERT INTO assistants (organization_id, name) VALUES (vb_default_org(), 'tt')"
            " RETURNING barge_in_ms, end_silence_ms"), [["300", "500"]])
        self.assertIsNone(self.pg.psql("UPDATE assistants SET barge_in_ms = 10 WHERE name = 'tt'",
                                       check=False))
        self.assertIsNone(self.pg.psql("UPDATE assistants SET end_silence_ms = 9000"
                                       " WHERE name = 'tt'", check=False))
        # RLS is on for every tenant table
        rls = self.pg.psql("SELECT relname FROM pg_class WHERE relrowsecurity ORDER BY 1")
        self.assertEqual(len(rls), 7, rls)
        # again: nothing to do, nothing changes
        res = run_migrate(self.conf)
        self.assertEqual(res.returncode, 0, res.stderr)
        self.assertIn("up to date", res.stdout)
        self.assertEqual(self.pg.value("SELECT count(*) FROM schema_migrations"),
                         str(len(shipped)))
        # a changed applied file is an error, and the next file is not applied
        sql = os.path.join(self.dir, "sql")
        shutil.copytree(sql_dir(), sql)
        with open(os.path.join(sql, "001_init.sql"), "a") as f:
            f.write("\n-- edited after it was applied\n")
        with open(os.path.join(sql, "900_next.sql"), "w") as f:
            f.write("CREATE TABLE migrate_probe (a int);\n")
        res = run_migrate(self.conf, sql=sql)
        self.assertEqual(res.returncode, 1, res.stdout)
        self.assertIn("changed after it was applied", res.stderr)
        self.assertIsNone(self.pg.value("SELECT to_regclass('migrate_probe')"))
        # a failing file is rolled back as a whole and not recorded
        shutil.copy(os.path.join(sql_dir(), "001_init.sql"), sql)
        with open(os.path.join(sql, "900_next.sql"), "w") as f:
            f.write("CREATE TABLE migrate_probe (a int);\nSELEC 1;\n")
        res = run_migrate(self.conf, sql=sql)
        self.assertEqual(res.returncode, 1, res.stdout)
        self.assertIn("900_next.sql:2", res.stderr)
        self.assertIsNone(self.pg.value("SELECT to_regclass('migrate_probe')"))
        self.assertEqual(self.pg.value("SELECT count(*) FROM schema_migrations"),
                         str(len(shipped)))

    def test_two_migrates_at_once_apply_each_file_once(self):
        sql = os.path.join(self.dir, "sql")
        shutil.copytree(sql_dir(), sql)
        # a slow second file: the other instance has to wait on the advisory lock
        with open(os.path.join(sql, "900_slow.sql"), "w") as f:
            f.write("CREATE TABLE slow_probe (a int);\nSELECT pg_sleep(1);\n")
        results = [None, None]

        def go(i):
            results[i] = run_migrate(self.conf, sql=sql)
        threads = [threading.Thread(target=go, args=(i,)) for i in range(2)]
        for t in threads:
            t.start()
        for t in threads:
            t.join(60)
        for r in results:
            self.assertEqual(r.returncode, 0, "%s %s" % (r.stdout, r.stderr))
        applied = "".join(r.stdout for r in results)
        self.assertEqual(applied.count("applied 001_init"), 1, applied)
        self.assertEqual(applied.count("applied 900_slow"), 1, applied)
        self.assertEqual(self.pg.value("SELECT count(*) FROM schema_migrations"),
                         str(len(shipped_migrations()) + 1))


class Records(DatabaseTestCase):
    def test_echo_call_is_recorded_and_live_while_it_runs(self):
        s = self.db_server()
        run = s.callsim("--duration", 4, "--quiet", background=True)

        def live():
            started, _ = records_by_call(s.spool())
            ids = set(started)
            return ids and ids <= self.active_calls() and ids
        ids = harness.wait_until(live, 10, what="the call in voxbridge:calls:active")
        (call_id,) = ids
        h = self.redis("HGETALL", "voxbridge:call:" + call_id)
        fields = dict(zip(h[::2], h[1::2]))
        self.assertEqual(fields[b"to"], harness.NUMBER.encode())
        self.assertGreater(self.redis("TTL", "voxbridge:call:" + call_id), 0)
        res = run.wait(30)
        self.assertCallsim(res, res.rc == 0, "callsim exit %s" % res.rc)
        pc = res.per_call()[0]
        check_echo_call(self, res, pc, min_ratio=0.9, max_gap_ms=200)
        self.wait_rows("SELECT count(*) FROM calls WHERE ended_at IS NOT NULL", 1)
        row = self.sql(
            "SELECT id, status, failed, from_number, to_number, carrier_call_sid, stream_sid,"
            " assistant_name, end_reason, duration_ms, started_at < ended_at,"
            " organization_id = vb_default_org(), media_stats->>'frames_in' FROM calls")[0]
        self.assertEqual(row[0], call_id)
        self.assertEqual(row[1:5], ["completed", "f", harness.CALLER, harness.NUMBER])
        self.assertEqual(row[5], pc["call_sid"])
        self.assertEqual(row[6], pc["stream_sid"])
        self.assertEqual(row[7], "echo")
        self.assertTrue(row[8])
        self.assertTrue(3000 <= int(row[9]) <= 8000, "duration_ms %s" % row[9])
        self.assertEqual(row[10], "t")
        self.assertEqual(row[11], "t")
        self.assertGreater(int(row[12]), 100)
        harness.wait_until(lambda: call_id not in self.active_calls(), 5,
                           what="the call to leave voxbridge:calls:active")
        self.assertEqual(self.redis("EXISTS", "voxbridge:call:" + call_id), 0)
        # everything applied: the cursor is at the end of the spool
        harness.wait_until(lambda: cursor_of(s) and cursor_of(s)[1] == spool_size(s), 5,
                           what="the spool cursor at the end of the spool")

    def test_kill_9_of_the_media_worker_marks_the_call_failed(self):
        s = self.db_server(workers=2, workers_min_spare=1)
        run = s.callsim("--duration", 8, "--quiet", background=True)

        def up():
            started, _ = records_by_call(s.spool())
            return started and s.media_connections()
        harness.wait_until(up, 10, what="the call to be up")
        self.wait_rows("SELECT count(*) FROM calls", 1, what="the call's row")
        (victim,) = list(s.media_connections())
        os.kill(victim, signal.SIGKILL)
        run.wait(30)
        self.wait_rows("SELECT count(*) FROM calls WHERE ended_at IS NOT NULL", 1)
        self.assertEqual(self.sql("SELECT status, failed, end_reason FROM calls"),
                         [["failed", "t", "media worker crashed"]])
        started, _ = records_by_call(s.spool())
        harness.wait_until(lambda: not (set(started) & self.active_calls()), 5,
                           what="the failed call to leave the active set")

    def test_store_restart_replays_from_the_cursor_without_doubles(self):
        s = self.db_server()
        res = s.callsim("--calls", 2, "--duration", 2, "--quiet", timeout=30)
        self.assertCallsim(res, res.rc == 0, "callsim exit %s" % res.rc)
        self.wait_rows("SELECT count(*) FROM calls WHERE status = 'completed'", 2)
        harness.wait_until(lambda: cursor_of(s)[1] == spool_size(s), 5, what="cursor at end")
        before = self.sql("SELECT id, started_at, ended_at, updated_at FROM calls ORDER BY id")
        # as if the store crashed between applying and saving its cursor
        ino, _ = cursor_of(s)
        with open(os.path.join(s.state_dir, "spool", "events.cursor"), "w") as f:
            f.write("%d 0\n" % ino)
        (store,) = s.pids("store")
        os.kill(store, signal.SIGKILL)
        harness.wait_until(lambda: s.pids("store") and s.pids("store") != [store], 10,
                           what="a new store")
        harness.wait_until(lambda: cursor_of(s)[1] == spool_size(s), 10,
                           what="the new store to replay the spool")
        after = self.sql("SELECT id, started_at, ended_at, updated_at FROM calls ORDER BY id")
        self.assertEqual(before, after, "a replay changed the calls")
        self.assertIn("to apply from the cursor", s.log())

    def test_spool_left_by_a_previous_run_is_applied_and_bad_records_set_aside(self):
        state = tempfile.mkdtemp(prefix="vb-records-state-")
        self.addCleanup(shutil.rmtree, state, True)
        os.makedirs(os.path.join(state, "spool"))
        cid = "6a1f7c2e-0b3d-4c5e-9f80-112233445566"
        t0 = 1700000000 * 10**9
        lines = [
            '{"t":%d,"type":"call.started","call_id":"%s","assistant":"echo",'
            '"from":"+15551234567","to":"+15550000001","call_sid":"CAold"}' % (t0, cid),
            '{"t":%d,"type":"turn","call_id":"%s","speaker":"caller","text":"hello"}'
            % (t0 + 10**9, cid),
            'this line is not a record',
            # PostgreSQL refuses this one (stt_ms does not fit an integer): set aside
            '{"t":%d,"type":"turn","call_id":"%s","speaker":"agent","text":"hi",'
            '"stt_ms":99999999999}' % (t0 + 2 * 10**9, cid),
            '{"t":%d,"type":"turn","call_id":"%s","speaker":"agent","text":"bye"}'
            % (t0 + 3 * 10**9, cid),
            '{"t":%d,"type":"usage","call_id":"%s","tokens":12}' % (t0 + 4 * 10**9, cid),
            '{"t":%d,"type":"call.ended","call_id":"%s","reason":"hangup"}'
            % (t0 + 5 * 10**9, cid),
        ]
        # calls naming a database assistant by id (in "assistant" or "assistant_id")
        # belong to its organization
        acme = self.value("INSERT INTO organizations (name) VALUES ('acme') RETURNING id")
        aid = self.value("INSERT INTO assistants (organization_id, name) VALUES ('%s', 'acme1')"
                         " RETURNING id" % acme)
        by_id = ["7b2e0c1d-1111-4c5e-9f80-112233445566", "7b2e0c1d-2222-4c5e-9f80-112233445566"]
        lines += ['{"t":%d,"type":"call.started","call_id":"%s","assistant":"%s",'
                  '"to":"+15559999999"}' % (t0, by_id[0], aid),
                  '{"t":%d,"type":"call.started","call_id":"%s","assistant":"acme1",'
                  '"assistant_id":"%s"}' % (t0, by_id[1], aid)]
        # a turn that overtook its call.started: the call row is completed, and the
        # turn follows the call into the number's organization
        self.sql("INSERT INTO phone_numbers (organization_id, number, assistant_id)"
                 " VALUES ('%s', '+15558880000', '%s')" % (acme, aid))
        late = "7b2e0c1d-3333-4c5e-9f80-112233445566"
        lines += ['{"t":%d,"type":"turn","call_id":"%s","speaker":"agent","text":"welcome"}'
                  % (t0 + 1, late),
                  '{"t":%d,"type":"call.started","call_id":"%s","assistant":"acme1",'
                  '"from":"+15551112222","to":"+15558880000","call_sid":"CAlate"}' % (t0, late)]
        spool = os.path.join(state, "spool", "events.jsonl")
        with open(spool, "w") as f:
            f.write("\n".join(lines) + "\n")
        s = self.db_server(state_dir=state)
        self.wait_rows("SELECT count(*) FROM calls", 4)
        self.assertEqual(self.sql("SELECT id, carrier_call_sid, duration_ms FROM calls"
                                  " WHERE status = 'completed'"), [[cid, "CAold", "5000"]])
        self.assertEqual(self.sql("SELECT organization_id, assistant_id, assistant_name, status"
                                  " FROM calls WHERE id IN ('%s', '%s')" % tuple(by_id)),
                         [[acme, aid, "acme1", "in-progress"]] * 2)
        self.assertEqual(self.sql("SELECT organization_id, assistant_name, from_number,"
                                  " carrier_call_sid, started_at IS NOT NULL FROM calls"
                                  " WHERE id = '%s'" % late),
                         [[acme, "acme1", "+15551112222", "CAlate", "t"]])
        self.assertEqual(self.sql("SELECT organization_id, seq, text FROM transcript_turns"
                                  " WHERE call_id = '%s'" % late), [[acme, "1", "welcome"]])
        self.assertEqual(self.sql("SELECT seq, speaker, text FROM transcript_turns"
                                  " WHERE call_id = '%s' ORDER BY seq" % cid),
                         [["1", "caller", "hello"], ["2", "agent", "bye"]])
        with open(os.path.join(state, "spool", "rejected.jsonl")) as f:
            rejected = f.read().splitlines()
        self.assertEqual(rejected, [lines[2], lines[3]])
        self.assertIn("22003", s.log())  # numeric_value_out_of_range
        with open(os.path.join(state, "spool", "events.cursor")) as f:
            self.assertEqual(int(f.read().split()[1]), os.path.getsize(spool))

    def test_records_wait_in_the_spool_while_postgres_is_down(self):
        s = self.db_server(workers=3, workers_min_spare=1)
        res = s.callsim("--duration", 2, "--quiet", timeout=30)
        self.assertCallsim(res, res.rc == 0, "first call")
        self.wait_rows("SELECT count(*) FROM calls WHERE status = 'completed'", 1)
        first = res.per_call()[0]["call_id"]
        self.pg.stop("fast")
        try:
            res = s.callsim("--calls", 3, "--duration", 2, "--quiet", timeout=40)
            self.assertCallsim(res, res.rc == 0 and res["answered"] == 3,
                               "calls while PostgreSQL is down")
            down_ids = [pc["call_id"] for pc in res.per_call()]
            _, ended = records_by_call(s.spool())
            harness.wait_until(lambda: set(down_ids) <= set(records_by_call(s.spool())[1]), 5,
                               what="their records in the spool")
            self.assertLess(cursor_of(s)[1], spool_size(s), "records wait behind the cursor")
            s.wait_log("records wait in the spool", timeout=10)
        finally:
            self.pg.start()
        self.wait_rows("SELECT count(*) FROM calls WHERE status = 'completed'", 4, timeout=30,
                       what="the 4 calls completed in PostgreSQL after it is back")
        ids = {r[0] for r in self.sql("SELECT id FROM calls")}
        self.assertEqual(ids, set(down_ids) | {first})
        rows = self.sql("SELECT count(*), count(DISTINCT id), bool_and(started_at < ended_at),"
                        " bool_and(duration_ms > 1000) FROM calls")
        self.assertEqual(rows, [["4", "4", "t", "t"]])
        harness.wait_until(lambda: cursor_of(s)[1] == spool_size(s), 10, what="cursor at end")

    def test_redis_down_holds_nothing_up_and_live_state_comes_back(self):
        s = self.db_server()
        self.rd.stop()
        try:
            run = s.callsim("--duration", 9, "--quiet", background=True)
            self.wait_rows("SELECT count(*) FROM calls", 1, what="the call's row without Redis")
            call_id = self.value("SELECT id FROM calls")
        finally:
            self.rd.start()
        # reconnected, the store re-adds the calls still up in its slots
        harness.wait_until(lambda: call_id in self.active_calls(), 8,
                           what="the running call back in voxbridge:calls:active")
        res = run.wait(30)
        self.assertCallsim(res, res.rc == 0, "the call across the Redis outage")
        self.wait_rows("SELECT count(*) FROM calls WHERE status = 'completed'", 1)
        harness.wait_until(lambda: call_id not in self.active_calls(), 5,
                           what="the ended call out of the active set")

    def test_assistant_edited_in_postgres_applies_to_the_next_call(self):
        self.add_db_assistant(delay=0)
        s = self.db_server()
        status, _, body = post_signed(s, "/twilio/voice", voice_params(DB_NUMBER, harness.CALLER))
        if b"<Stream" not in body:
            self.skipTest("the api worker does not look numbers up in PostgreSQL yet "
                          "(api/db.c is not wired into twilio_hooks.c): %r" % body[:200])
        res = s.callsim("--duration", 4, "--quiet", timeout=30, to=DB_NUMBER)
        self.assertCallsim(res, res.rc == 0, "call to the database's number")
        self.assertCallsim(res, 0 < res["rtt_ms"]["p50"] < 300, "rtt %s" % res["rtt_ms"])
        rev = self.value("UPDATE assistants SET echo_delay_ms = 600 WHERE name = 'dbecho'"
                         " RETURNING revision")
        self.assertEqual(rev, "2", "the trigger bumps the revision")
        res = s.callsim("--duration", 5, "--quiet", timeout=30, to=DB_NUMBER)
        self.assertCallsim(res, res.rc == 0, "call after the edit")
        rtt = res["rtt_ms"]
        self.assertCallsim(res, rtt["p50"] >= 600 and rtt["max"] < 1000,
                           "rtt after echo_delay_ms 0 -> 600 in PostgreSQL: %s" % rtt)
        # the calls belong to the assistant's organization and name it
        self.wait_rows("SELECT count(*) FROM calls WHERE assistant_id IS NOT NULL"
                       " AND assistant_name = 'dbecho' AND status = 'completed'", 2)

    def test_status_callbacks_are_stored_once_and_never_move_back(self):
        self.sql("INSERT INTO calls (id, organization_id, carrier_call_sid, status, started_at)"
                 " VALUES (gen_random_uuid(), vb_default_org(), 'CAstatus1', 'in-progress',"
                 " now())")
        s = self.db_server(api_workers=1)

        def post(seq, status):
            params = {"AccountSid": "AC" + "0" * 32, "CallSid": "CAstatus1",
                      "CallStatus": status, "SequenceNumber": str(seq),
                      "To": harness.NUMBER, "From": harness.CALLER}
            st, _, body = post_signed(s, "/twilio/status", params)
            self.assertIn(st, (200, 204), body)
        post(2, "completed")
        if self.value("SELECT count(*) FROM call_status_events") == "0":
            self.skipTest("status callbacks are not stored in PostgreSQL yet "
                          "(api/db.c is not wired into twilio_hooks.c)")
        post(2, "completed")           # Twilio retried it
        post(1, "ringing")             # and an older one arrives late
        rows = self.sql("SELECT sequence_number, status, payload->>'CallStatus'"
                        " FROM call_status_events ORDER BY sequence_number")
        self.assertEqual(rows, [["1", "ringing", "ringing"], ["2", "completed", "completed"]])
        self.assertEqual(self.value("SELECT status FROM calls"), "completed")
        # a restarted server (nothing remembered in memory) still stores it once
        s.stop()
        s2 = self.db_server(api_workers=1)
        s = s2
        post(2, "completed")
        self.assertEqual(self.value("SELECT count(*) FROM call_status_events"), "2")
        self.assertEqual(self.value("SELECT status FROM calls"), "completed")

    def test_row_level_security_keeps_organizations_apart(self):
        self.sql("INSERT INTO organizations (id, name) VALUES"
                 " ('10000000-0000-0000-0000-000000000001', 'a'),"
                 " ('20000000-0000-0000-0000-000000000002', 'b');"
                 "INSERT INTO calls (id, organization_id) VALUES"
                 " (gen_random_uuid(), '10000000-0000-0000-0000-000000000001'),"
                 " (gen_random_uuid(), '20000000-0000-0000-0000-000000000002'),"
                 " (gen_random_uuid(), '20000000-0000-0000-0000-000000000002');"
                 "DO $$ BEGIN CREATE ROLE vb_tenant NOLOGIN; EXCEPTION WHEN duplicate_object"
                 " THEN NULL; END $$;"
                 "GRANT SELECT, INSERT ON ALL TABLES IN SCHEMA public TO vb_tenant")

        def as_tenant(org, q):
            return self.sql("SET ROLE vb_tenant; SET voxbridge.org_id = '%s'; %s" % (org, q))
        self.assertEqual(as_tenant("10000000-0000-0000-0000-000000000001",
                                   "SELECT count(*) FROM calls"), [["1"]])
        self.assertEqual(as_tenant("20000000-0000-0000-0000-000000000002",
                                   "SELECT count(*) FROM calls"), [["2"]])
        self.assertEqual(self.sql("SET ROLE vb_tenant; SELECT count(*) FROM calls"), [["0"]])
        # writing into another organization is refused
        refused = self.pg.psql(
            "SET ROLE vb_tenant; SET voxbridge.org_id = '10000000-0000-0000-0000-000000000001';"
            " INSERT INTO calls (id, organization_id) VALUES (gen_random_uuid(),"
            " '20000000-0000-0000-0000-000000000002')", dbname=self.dbname, check=False)
        self.assertIsNone(refused)
        # the owner (voxbridge's own role) sees everything
        self.assertEqual(self.value("SELECT count(*) FROM calls"), "3")

    def test_transcript_turns_are_stored_in_order(self):
        s = self.db_server(extra={"assistant.talker.mode": "local",
                                  "assistant.talker.first_message":
                                      "Hello, this is the records test.",
                                  "number.+15550000003": "talker"})
        res = s.callsim("--duration", 6, "--quiet", timeout=40, to="+15550000003")
        # The broker writes the turn it was speaking when it lets go of the call, after
        # the caller hung up: take the spool's turns once they stop changing (a count
        # taken before that one is never what the database ends with).
        seen = []

        def settled():
            now = [r for r in s.spool() if r.get("type") == "turn"]
            stable = seen and now == seen[-1]
            seen.append(now)
            return stable
        harness.wait_until(settled, 10, interval=0.5, what="the spool's turns to settle")
        turns = seen[-1]
        if not turns:
            self.skipTest("no `turn` records in the spool yet (the local voice emits them)")
        self.assertCallsim(res, res.rc == 0, "call to the local assistant")
        call_id = turns[0]["call_id"]
        self.wait_rows("SELECT count(*) FROM transcript_turns", len(turns))
        rows = self.sql("SELECT seq, speaker, text FROM transcript_turns WHERE call_id = '%s'"
                        " ORDER BY seq" % call_id)
        want = [[str(i + 1), t["speaker"], t["text"]] for i, t in enumerate(turns)
                if t["call_id"] == call_id]
        self.assertEqual(rows, want)


if __name__ == "__main__":
    unittest.main()
