"""System faults E5 and E8 of the fault matrix: the wall clock stepped by an hour
in the middle of calls (libfaketime), and a full disk under the spool and the
log (a small tmpfs). What the callers hear, what the operator sees in the
records, the log and /metrics. Run by run.py."""

import errno
import os
import shutil
import signal
import socket
import subprocess
import tempfile
import time
import unittest

import harness
import test_records
from test_calls import check_echo_call, records_by_call

FAKETIME_LIB = "/usr/lib/x86_64-linux-gnu/faketime/libfaketime.so.1"
HOUR = 3600
LONG_FIRST = ("Hello, thanks for calling the salon. We are glad you called today, and we will "
              "be with you in a moment. How can I help?")


def check_call(tc, res, pc):
    """An echo call that went on: answered, closed normally, >= 95 % of its
    frames back, and no gap over 100 ms beyond callsim's own worst stall (the
    machine is shared; a timer on the wall clock would cost seconds, or the
    rest of the call, not tens of milliseconds)."""
    check_echo_call(tc, res, pc, max_gap_ms=100 + pc.get("send_lag_max_ms", 0))


# ------------------------------------------------------------------ libfaketime

def sanitizer_runtime(binary):
    """The ASan runtime BINARY is linked against, if any: it must come first in
    LD_PRELOAD, before libfaketime."""
    try:
        out = subprocess.run(["ldd", binary], capture_output=True, text=True, timeout=10).stdout
    except (OSError, subprocess.SubprocessError):
        return None
    for line in out.splitlines():
        if "libasan" in line and "=>" in line:
            return line.split("=>")[1].split()[0]
    return None


class WallClock:
    """The server's wall clock, through libfaketime: an offset in seconds read
    from a file on every call (FAKETIME_NO_CACHE), so the test can step it
    while the server runs. FAKETIME_DONT_FAKE_MONOTONIC leaves CLOCK_MONOTONIC
    alone: only the wall clock jumps, as when NTP steps it."""

    def __init__(self, directory):
        self.path = os.path.join(directory, "faketime.rc")
        self.offset = 0
        self.set(0)

    def set(self, offset):
        tmp = self.path + ".tmp"
        with open(tmp, "w") as f:
            f.write("%+d\n" % offset)
        os.replace(tmp, self.path)  # never a half-written file for the library to read
        self.offset = offset

    def env(self):
        preload = [FAKETIME_LIB]
        asan = sanitizer_runtime(harness.voxbridge_bin())
        if asan:
            preload.insert(0, asan)
        return {"LD_PRELOAD": " ".join(preload), "FAKETIME_TIMESTAMP_FILE": self.path,
                "FAKETIME_NO_CACHE": "1", "FAKETIME_DONT_FAKE_MONOTONIC": "1",
                "DONT_FAKE_MONOTONIC": "1"}


def server_date(s):
    """The server's wall clock as its HTTP Date header says (seconds)."""
    import email.utils
    _, headers, _ = s.http("GET", "/health/live")
    return email.utils.parsedate_to_datetime(headers["date"]).timestamp()


def partial_request(s):
    """A connection to the api port that sent half a request and stops."""
    sock = socket.create_connection(("127.0.0.1", s.api_port), timeout=10)
    sock.sendall(b"GET /health HTTP/1.1\r\nHost: x\r\n")
    return sock


def seconds_until_closed(sock, t0, limit):
    """Reads until the server closes SOCK; seconds since T0 (monotonic), or None
    when it is still open LIMIT seconds after T0."""
    while True:
        left = t0 + limit - time.monotonic()
        if left <= 0:
            return None
        sock.settimeout(left)
        try:
            if not sock.recv(4096):
                return time.monotonic() - t0
        except socket.timeout:
            return None
        except ConnectionResetError:
            return time.monotonic() - t0


NO_FAKETIME = "libfaketime is not installed (apt install faketime)"


class ClockMixin:
    """A server under libfaketime, and calls across a step of its wall clock."""

    DURATION = 6  # s of each call; the step comes about 2 s in

    def clock_server(self, factory=None, **kw):
        d = tempfile.mkdtemp(prefix="vb-faketime-")
        self.addCleanup(shutil.rmtree, d, True)
        clock = WallClock(d)
        s = (factory or self.server)(env=clock.env(), **kw)
        return s, clock

    def assert_clock_at(self, s, offset):
        """The server's wall clock really is OFFSET seconds off ours (the fault is
        in place: libfaketime loaded and read the file)."""
        harness.wait_until(lambda: abs(server_date(s) - (time.time() + offset)) < 5, 5,
                           what="the server's Date header to be %+d s off" % offset)

    def calls_across_step(self, s, clock, step, calls):
        """CALLS echo calls of DURATION s with the wall clock stepped by STEP s
        about 2 s in; each went on as if nothing happened."""
        self.assert_clock_at(s, 0)
        run = s.callsim("--calls", calls, "--duration", self.DURATION, "--quiet",
                        background=True)

        def up():
            if not run.running():
                raise harness.HarnessError("callsim ended early:\n" + run.wait(1).describe())
            started, _ = records_by_call(s.spool())
            return len(started) >= calls and len(s.media_connections()) >= calls
        harness.wait_until(up, 10, what="%d calls to be up" % calls)
        t_up = time.monotonic()
        harness.wait_until(lambda: time.monotonic() - t_up > 2.0, 3, what="2 s of call")
        clock.set(step)
        self.assert_clock_at(s, step)
        res = run.wait(60)
        self.assertCallsim(res, res["answered"] == calls and res.rc == 0, "the calls failed")
        for pc in res.per_call():
            check_call(self, res, pc)
        return res


@unittest.skipUnless(os.path.exists(FAKETIME_LIB), NO_FAKETIME)
class ClockStep(ClockMixin, harness.ServerTestCase):
    """E5: the wall clock is stepped by +1 h or -1 h while calls run (libfaketime
    with FAKETIME_DONT_FAKE_MONOTONIC=1: only CLOCK_REALTIME moves, CLOCK_MONOTONIC
    goes on, which is what an NTP step does; faking both would be a machine
    whose every clock jumps, which no server can tell from a hang). Timers,
    pacing and timeouts must run on the monotonic clock: the calls go on without
    a gap, nobody is killed by the watchdog, and the call records keep the
    length the call really had."""

    def step_mid_call(self, step):
        s, clock = self.clock_server(workers=2, workers_min_spare=1, workers_max=6)
        before = {role: s.pids(role) for role in ("broker", "store")}
        res = self.calls_across_step(s, clock, step, 2)
        self.assertEqual(s.counter("watchdog_kills"), 0, "the step looked like a hang")
        self.assertEqual(s.counter("worker_crashes"), 0)
        self.assertEqual({role: s.pids(role) for role in before}, before,
                         "a broker or the store was replaced")
        self.assert_records(s, res, step)
        # and a call placed after the step is as good
        res2 = s.callsim("--duration", 2, "--quiet", timeout=30)
        self.assertCallsim(res2, res2.rc == 0, "a call after the step")
        check_call(self, res2, res2.per_call()[0])

    def assert_records(self, s, res, step):
        """Each call's records: their stamps follow the wall clock (the step is
        between call.started and call.ended), and call.ended carries the length
        of the call measured on the monotonic clock, as callsim measured it."""
        ids = [pc["call_id"] for pc in res.per_call()]

        def all_ended():
            _, ended = records_by_call(s.spool())
            return set(ids) <= set(ended)
        harness.wait_until(all_ended, 5, what="call.ended of both calls in the spool")
        started, ended = records_by_call(s.spool())
        for pc in res.per_call():
            cid = pc["call_id"]
            self.assertEqual(len(ended[cid]), 1, ended[cid])
            end = ended[cid][0]
            stamped = (end["t"] - started[cid]["t"]) / 1e9
            self.assertAlmostEqual(stamped, step + pc["duration_ms"] / 1000.0, delta=3.0,
                                   msg="the wall-clock stamps of %s are %.1f s apart" % (
                                       cid, stamped))
            self.assertIn("duration_ms", end, "call.ended of %s has no length: %s" % (cid, end))
            self.assertAlmostEqual(end["duration_ms"], pc["duration_ms"], delta=1000,
                                   msg="call %s lasted %d ms for the caller, %s ms on record" % (
                                       cid, pc["duration_ms"], end["duration_ms"]))

    def test_wall_clock_steps_forward_an_hour_mid_call(self):
        self.step_mid_call(+HOUR)

    def test_wall_clock_steps_back_an_hour_mid_call(self):
        self.step_mid_call(-HOUR)

    def test_broker_taking_over_after_a_step_times_turns_from_the_call_start(self):
        """A broker that takes over a call after the wall clock stepped an hour
        forward times the call's turns from the call's start (which the slot
        holds on the wall clock), not from an hour before it: a turn's start_ms
        and end_ms stay within the call."""
        number = "+15550000042"
        intents = os.path.join(harness.srcdir(), "tests", "data", "demo_intents.json")
        s, clock = self.clock_server(local_open_lm=0, extra={
            "assistant.salon.mode": "local", "assistant.salon.first_message": LONG_FIRST,
            "assistant.salon.intents_file": intents, "number." + number: "salon"})
        run = s.callsim("--say", "goodbye", "--wait-ms", 6000, "--quiet", background=True,
                        to=number)
        harness.wait_until(lambda: "serving call" in s.log(), 10, what="the broker to attach")
        time.sleep(1.5)  # into the first message
        clock.set(+HOUR)
        self.assert_clock_at(s, +HOUR)
        old = s.pids("broker")
        os.kill(old[0], signal.SIGKILL)
        harness.wait_until(lambda: [p for p in s.pids("broker") if p not in old], 3,
                           what="a new broker")
        res = run.wait(60)
        self.assertCallsim(res, res["answered"] == 1, "the call was not answered")
        pc = res.per_call()[0]
        cid = pc["call_id"]
        harness.wait_until(lambda: cid in records_by_call(s.spool())[1], 5,
                           what="the call's end in the spool")
        turns = [r for r in s.spool() if r.get("type") == "turn" and r.get("call_id") == cid]
        self.assertTrue(any(r.get("broker_restarted") for r in turns),
                        "no turn recorded by the new broker: %s" % turns)
        for r in turns:
            self.assertTrue(0 <= r["start_ms"] <= r["end_ms"] <= pc["duration_ms"] + 1000,
                            "turn %s (%s) at %s-%s ms of a %d ms call" % (
                                r.get("turn"), r["speaker"], r["start_ms"], r["end_ms"],
                                pc["duration_ms"]))

    def test_http_timeouts_ignore_wall_clock_steps(self):
        """http_request_timeout (2 s) holds across steps: a half-sent request is
        not cut at once when the clock jumps an hour forward, nor kept for an
        hour when it jumps back."""
        s, clock = self.clock_server(http_request_timeout=2)
        before = s.counter("http_timeouts")
        for step in (+HOUR, 0):  # forward an hour, then back an hour
            sock = partial_request(s)
            t0 = time.monotonic()
            try:
                clock.set(step)
                self.assert_clock_at(s, step)
                took = seconds_until_closed(sock, t0, 10)
            finally:
                sock.close()
            self.assertIsNotNone(took, "a half-sent request still open 10 s after a step to "
                                 "%+d s (timeout 2 s)" % step)
            self.assertGreater(took, 1.5, "a half-sent request was cut %.1f s after a step to "
                               "%+d s (timeout 2 s)" % (took, step))
            self.assertLess(took, 5.0)
        self.assertEqual(s.counter("http_timeouts"), before + 2)


@unittest.skipUnless(os.path.exists(FAKETIME_LIB), NO_FAKETIME)
class ClockStepDatabase(ClockMixin, test_records.DatabaseTestCase):
    """E5 as PostgreSQL keeps it: the call row's duration_ms is the call's length
    however the wall clock stepped, while started_at and ended_at are the wall
    clock's word (here ended_at comes before started_at)."""

    def test_call_row_keeps_its_length_across_a_step_back(self):
        s, clock = self.clock_server(self.db_server)
        res = self.calls_across_step(s, clock, -HOUR, 1)
        pc = res.per_call()[0]
        self.wait_rows("SELECT count(*) FROM calls WHERE ended_at IS NOT NULL", 1)
        duration, stamped = self.sql(
            "SELECT duration_ms, extract(epoch FROM ended_at - started_at) FROM calls"
            " WHERE id = '%s'" % pc["call_id"])[0]
        self.assertAlmostEqual(float(stamped), pc["duration_ms"] / 1000.0 - HOUR, delta=3.0,
                               msg="the row's stamps are %s s apart" % stamped)
        self.assertAlmostEqual(int(duration), pc["duration_ms"], delta=1000,
                               msg="a call of %d ms is on record as %s ms" % (
                                   pc["duration_ms"], duration))


# ---------------------------------------------------------------- a full disk

def fill_disk(path):
    """Writes PATH until the file system is full; returns its size."""
    fd = os.open(path, os.O_WRONLY | os.O_CREAT | os.O_TRUNC, 0o600)
    size = 0
    try:
        for chunk in (1 << 16, 4096, 1):
            data = b"\0" * chunk
            while True:
                try:
                    n = os.write(fd, data)
                except OSError as e:
                    if e.errno != errno.ENOSPC:
                        raise
                    break
                size += n
                if n < chunk:
                    break
    finally:
        os.close(fd)
    return size


def fill_slack(path):
    """A file on tmpfs takes whole pages: what is left of its last page still
    takes writes on a full disk. Fill it with newlines (blank lines in a log)."""
    fd = os.open(path, os.O_WRONLY | os.O_APPEND)
    try:
        while True:
            try:
                if os.write(fd, b"\n") == 0:
                    break
            except OSError as e:
                if e.errno != errno.ENOSPC:
                    raise
                break
    finally:
        os.close(fd)


def cpu_seconds(pid):
    with open("/proc/%d/stat" % pid) as f:
        fields = f.read().rsplit(")", 1)[1].split()
    return (int(fields[11]) + int(fields[12])) / os.sysconf("SC_CLK_TCK")


class DiskFull(harness.ServerTestCase):
    """E8: the spool (state_dir) and the log file on a 2 MB tmpfs that the test
    fills. voxbridge has no recordings yet: the spool and the log are what it
    writes to disk."""

    def small_disk(self):
        if not harness.running_as_root():
            self.skipTest("mounting a tmpfs needs root")
        d = tempfile.mkdtemp(prefix="vb-tmpfs-")
        r = subprocess.run(["mount", "-t", "tmpfs", "-o", "size=2m,mode=0755", "tmpfs", d],
                           capture_output=True, text=True)
        if r.returncode != 0:
            os.rmdir(d)
            self.skipTest("mount -t tmpfs failed: %s" % (r.stderr.strip() or r.returncode))
        self.addCleanup(self.unmount, d)  # after the server's stop (cleanups run LIFO)
        return d

    @staticmethod
    def unmount(d):
        if subprocess.run(["umount", d], capture_output=True).returncode != 0:
            subprocess.run(["umount", "-l", d], capture_output=True)
        try:
            os.rmdir(d)
        except OSError:
            pass

    def disk_server(self, disk, **overrides):
        settings = dict(workers=2, workers_min_spare=1, workers_max=6)
        settings.update(overrides)
        s = self.server(start=False, **settings)
        s.state_dir = os.path.join(disk, "state")
        s.log_path = os.path.join(disk, "voxbridge.log")
        os.makedirs(s.state_dir)
        s.settings.update(state_dir=s.state_dir, log_file=s.log_path)
        if s.user:
            s._chown(disk, recursive=True)
        return s.start()

    def test_full_disk_keeps_calls_up_and_records_are_written_once_freed(self):
        disk = self.small_disk()
        s = self.disk_server(disk)
        (store,) = s.pids("store")
        ballast = os.path.join(disk, "ballast")
        fill_disk(ballast)
        fill_slack(s.log_path)
        self.assertEqual(os.statvfs(disk).f_bavail, 0, "the disk is not full")
        t_full = time.monotonic()
        cpu0 = cpu_seconds(store)

        res = s.callsim("--calls", 2, "--duration", 3, "--quiet", timeout=40)
        self.assertCallsim(res, res["answered"] == 2 and res.rc == 0, "calls on a full disk")
        for pc in res.per_call():
            check_call(self, res, pc)
        ids = {pc["call_id"] for pc in res.per_call()}
        harness.wait_until(lambda: s.counter("spool_write_errors") > 0, 5,
                           what="voxbridge_spool_write_errors_total to count the failure")
        self.assertGreater(s.counter("log_write_errors"), 0, "no log line was lost?")
        time.sleep(1.0)  # the call.ended records meet the full disk too
        started, ended = records_by_call(s.spool())
        self.assertFalse(ids & (set(started) | set(ended)), "records written on a full disk?")
        # the store waits between tries instead of spinning, and nobody died
        busy = (cpu_seconds(store) - cpu0) / (time.monotonic() - t_full)
        self.assertLess(busy, 0.25, "the store used %.0f%% of a CPU on a full disk" % (
            busy * 100))
        self.assertTrue(s.alive(), "the master died")
        self.assertEqual(s.pids("store"), [store], "the store was replaced")
        self.assertEqual(s.counter("worker_crashes"), 0)
        self.assertEqual(s.counter("watchdog_kills"), 0)

        # space again: the records held meanwhile reach the spool, each once
        os.unlink(ballast)
        t_full = time.monotonic() - t_full
        errors = s.counter("spool_write_errors")
        self.assertLessEqual(errors, 3 + t_full, "%d failed spool writes in %.1f s: no backoff"
                             % (errors, t_full))

        def written():
            started, ended = records_by_call(s.spool())
            return ids <= set(started) and ids <= set(ended)
        harness.wait_until(written, 5, what="the held records in the spool once space is back")
        started, ended = records_by_call(s.spool())
        for pc in res.per_call():
            self.assertEqual(len(ended[pc["call_id"]]), 1, ended[pc["call_id"]])
            self.assertFalse(ended[pc["call_id"]][0].get("failed"))
        # the log says what happened: how many lines it lost, and that the spool recovered
        s.wait_log("spool: writing again after")
        self.assertRegex(s.log(), r"log: \d+ lines of this process could not be written: "
                         "No space left on device")
        self.assertEqual(s.counter("spool_write_errors"), errors, "errors after recovery")
        # and the next call's records are written at once
        res2 = s.callsim("--duration", 1, "--quiet", timeout=30)
        self.assertCallsim(res2, res2.rc == 0, "a call after the disk was freed")
        cid = res2.per_call()[0]["call_id"]
        harness.wait_until(lambda: cid in records_by_call(s.spool())[1], 2,
                           what="the next call's call.ended in the spool")

    def test_slot_reused_while_the_disk_stays_full_loses_no_record(self):
        """The store acknowledges a slot only once its records are on disk; with the
        disk full longer than the master waits for that (10 s), the master frees the slot
        anyway and the next call takes it. Both calls' records reach the spool once
        space is back, each once, the second not taken for a crash."""
        disk = self.small_disk()
        s = self.disk_server(disk, workers=1, workers_min_spare=0, workers_max=1, slots=1)
        ballast = os.path.join(disk, "ballast")
        fill_disk(ballast)
        fill_slack(s.log_path)
        first = s.callsim("--duration", 1, "--quiet", timeout=30)
        self.assertCallsim(first, first.rc == 0, "a call on a full disk")
        t_first = time.monotonic()

        def answered():  # 503 until the master frees the slot (its log is on the disk too)
            r = s.callsim("--duration", 1, "--quiet", timeout=30)
            return [r] if r["answered"] == 1 else None
        (second,) = harness.wait_until(answered, 20, interval=0.5,
                                       what="the master to free the unacknowledged slot")
        self.assertGreater(time.monotonic() - t_first, 9, "the slot was acknowledged?")
        self.assertCallsim(second, second.rc == 0, "a call on the reused slot, disk still full")
        ids = [first.per_call()[0]["call_id"], second.per_call()[0]["call_id"]]
        self.assertNotEqual(ids[0], ids[1])
        time.sleep(0.5)
        os.unlink(ballast)

        def written():
            started, ended = records_by_call(s.spool())
            return all(i in started and i in ended for i in ids)
        harness.wait_until(written, 5, what="both calls' records in the spool")
        time.sleep(0.5)  # a record written twice would show by now
        started, ended = records_by_call(s.spool())
        for i in ids:
            self.assertEqual(len(ended[i]), 1, ended[i])
            self.assertFalse(ended[i][0].get("failed"), ended[i][0])
        self.assertEqual(s.counter("calls_failed"), 0)
        self.assertEqual(s.counter("ring_drops"), 0)


if __name__ == "__main__":
    unittest.main()
