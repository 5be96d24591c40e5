"""Crashes in the middle of calls (kill -9 of a media worker, of the AI broker):
what the callers hear, what the pool does, what the records say. Calls are
placed with voxbridge-callsim. Run by run.py."""

import os
import signal
import time
import unittest
import wave

import harness
from test_calls import check_echo_call, records_by_call
from wsclient import goertzel_power

CALLSIM_TONES = (1100.0, 1800.0)  # two of callsim's test-signal tones
HOLD_TONE = 425.0                 # the worker's holding tone


def read_wav(path):
    with wave.open(path, "rb") as w:
        assert w.getsampwidth() == 2 and w.getnchannels() == 1, path
        rate = w.getframerate()
        data = w.readframes(w.getnframes())
    samples = [int.from_bytes(data[i:i + 2], "little", signed=True)
               for i in range(0, len(data), 2)]
    return rate, samples


def band_powers(samples, rate, t0, t1):
    seg = samples[int(t0 * rate):int(t1 * rate)]
    echo = sum(goertzel_power(seg, f, rate) for f in CALLSIM_TONES)
    hold = goertzel_power(seg, HOLD_TONE, rate)
    return echo, hold


class Faults(harness.ServerTestCase):
    def wait_calls_up(self, s, run, n, timeout=10):
        def up():
            if not run.running():
                raise harness.HarnessError("callsim ended early:\n" + run.wait(1).describe())
            started, _ = records_by_call(s.spool())
            return len(started) >= n and len(s.media_connections()) >= n
        harness.wait_until(up, timeout, what="%d calls to be up" % n)
        return time.monotonic()

    def test_kill_9_of_a_media_worker_ends_only_its_call(self):
        s = self.server(workers=3, workers_min_spare=0, workers_max=6, brokers=1)
        run = s.callsim("--calls", 3, "--duration", 8, "--quiet", background=True)
        t_up = self.wait_calls_up(s, run, 3)
        workers = set(s.pids("worker"))
        conns = s.media_connections()
        self.assertEqual(len(conns), 3, "each call has its own worker: %s" % conns)
        victim = sorted(conns)[0]
        # mid-call: let audio flow for a while first
        harness.wait_until(lambda: time.monotonic() - t_up > 2.0, 3, what="2 s of call")
        crashes = s.counter("worker_crashes")
        os.kill(victim, signal.SIGKILL)

        def replaced():
            now = set(s.pids("worker"))
            return victim not in now and len(now) == len(workers) and now - workers
        new = harness.wait_until(replaced, 3, what="a new worker in place of %d (workers %s)"
                                 % (victim, sorted(workers)))
        self.assertEqual(len(new), 1)
        res = run.wait(60)
        pcs = res.per_call()
        self.assertEqual(len(pcs), 3)
        dead = [pc for pc in pcs if pc["close_code"] != 1000]
        alive = [pc for pc in pcs if pc["close_code"] == 1000]
        self.assertCallsim(res, len(dead) == 1, "exactly one call ends abnormally")
        self.assertCallsim(res, res.rc != 0, "callsim reports the broken call (exit status)")
        self.assertCallsim(res, dead[0]["close_code"] in (1006, 1011, 1001),
                           "the killed call's close code %s" % dead[0]["close_code"])
        for pc in alive:
            check_echo_call(self, res, pc, max_gap_ms=100)
        # the record of the dead call says it failed; the others ended normally
        dead_id = dead[0]["call_id"]

        def failure_recorded():
            _, ended = records_by_call(s.spool())
            return dead_id in ended and all(pc["call_id"] in ended for pc in alive)
        harness.wait_until(failure_recorded, 5, what="call.ended for all 3 calls in the spool")
        _, ended = records_by_call(s.spool())
        self.assertTrue(any(r.get("failed") is True for r in ended[dead_id]),
                        "call.ended of %s: %s" % (dead_id, ended[dead_id]))
        for pc in alive:
            self.assertFalse(any(r.get("failed") for r in ended[pc["call_id"]]),
                             ended[pc["call_id"]])
        self.assertEqual(s.counter("worker_crashes"), crashes + 1)
        self.assertEqual(s.counter("calls_failed"), 1)
        # the pool still answers calls
        res2 = s.callsim("--duration", 2, "--quiet", timeout=30)
        self.assertCallsim(res2, res2.rc == 0, "a call after the crash")

    def test_kill_9_of_the_broker_keeps_calls_up(self):
        s = self.server(workers=2, workers_min_spare=1, workers_max=6, brokers=1)
        duration = 10
        out = os.path.join(s.dir, "heard.wav")
        t_launch = time.monotonic()
        run = s.callsim("--calls", 2, "--duration", duration, "--out", out, "--quiet",
                        background=True)
        t_up = self.wait_calls_up(s, run, 2)
        old = s.pids("broker")
        self.assertEqual(len(old), 1, "brokers = 1: %s" % old)
        harness.wait_until(lambda: time.monotonic() - t_up > 2.5, 4, what="2.5 s of call")
        restarts = s.counter("broker_restarts")
        t_kill = time.monotonic()
        os.kill(old[0], signal.SIGKILL)
        new = harness.wait_until(lambda: [p for p in s.pids("broker") if p not in old], 2.0,
                                 interval=0.02, what="a new broker within 2 s")
        t_back = time.monotonic()
        res = run.wait(60)
        self.assertCallsim(res, res["answered"] == 2, "both calls answered")
        for pc in res.per_call():
            self.assertCallsim(res, pc["close_code"] == 1000 and not pc["server_closed"],
                               "call %s was closed by the server (%s %s)" % (
                                   pc["call_id"], pc["close_code"], pc["close_reason"]))
        self.assertCallsim(res, res.rc == 0, "callsim exit %s" % res.rc)
        self.assertEqual(len(new), 1)
        self.assertEqual(s.counter("broker_restarts"), restarts + 1)
        self.assert_echo_back(res, out, t_launch, t_kill, t_back)

    def test_stopped_broker_is_killed_by_the_watchdog_and_replaced(self):
        """A broker whose loop stops (SIGSTOP stands for a hang) is killed
        after watchdog_ms; the calls stay up and the echo comes back."""
        s = self.server(workers=2, workers_min_spare=1, workers_max=6, brokers=1,
                        watchdog_ms=1000)
        out = os.path.join(s.dir, "heard.wav")
        t_launch = time.monotonic()
        run = s.callsim("--calls", 2, "--duration", 10, "--out", out, "--quiet",
                        background=True)
        t_up = self.wait_calls_up(s, run, 2)
        old = s.pids("broker")
        harness.wait_until(lambda: time.monotonic() - t_up > 2.5, 4, what="2.5 s of call")
        t_stop = time.monotonic()
        os.kill(old[0], signal.SIGSTOP)
        new = harness.wait_until(lambda: [p for p in s.pids("broker") if p not in old], 3.0,
                                 interval=0.02, what="a new broker within 3 s of the stop")
        t_back = time.monotonic()
        self.assertGreater(t_back - t_stop, 0.9, "killed before watchdog_ms")
        res = run.wait(60)
        self.assertCallsim(res, res["answered"] == 2 and res.rc == 0, "calls failed")
        for pc in res.per_call():
            self.assertCallsim(res, pc["close_code"] == 1000 and not pc["server_closed"],
                               "call %s was closed by the server" % pc["call_id"])
        self.assertEqual(s.counter("watchdog_kills"), 1)
        self.assertIn("has not run its loop", s.log())
        self.assertNotIn(old[0], s.pids("broker"), "the stopped broker is still there")
        self.assert_echo_back(res, out, t_launch, t_stop, t_back)

    def test_stopped_media_worker_is_killed_by_the_watchdog(self):
        """A media worker whose loop stops (SIGSTOP stands for a hang) leaves
        its caller hearing nothing: after watchdog_ms it is killed, its call
        ends as failed, the other calls go on and a new worker takes its place."""
        s = self.server(workers=3, workers_min_spare=0, workers_max=6, brokers=1,
                        watchdog_ms=1000)
        run = s.callsim("--calls", 3, "--duration", 8, "--quiet", background=True)
        t_up = self.wait_calls_up(s, run, 3)
        workers = set(s.pids("worker"))
        victim = sorted(s.media_connections())[0]
        harness.wait_until(lambda: time.monotonic() - t_up > 2.0, 3, what="2 s of call")
        kills = s.counter("watchdog_kills")
        t_stop = time.monotonic()
        os.kill(victim, signal.SIGSTOP)
        harness.wait_until(lambda: victim not in s.pids("worker"), 3.0, interval=0.02,
                           what="the stopped worker %d killed within 3 s" % victim)
        self.assertGreater(time.monotonic() - t_stop, 0.9, "killed before watchdog_ms")
        harness.wait_until(lambda: len(set(s.pids("worker")) - {victim}) >= len(workers) - 1
                           and set(s.pids("worker")) - workers, 3, what="a new worker")
        res = run.wait(60)
        pcs = res.per_call()
        dead = [pc for pc in pcs if pc["close_code"] != 1000]
        alive = [pc for pc in pcs if pc["close_code"] == 1000]
        self.assertCallsim(res, len(dead) == 1 and len(alive) == 2,
                           "exactly the stopped worker's call ends abnormally")
        for pc in alive:
            check_echo_call(self, res, pc, max_gap_ms=100)
        self.assertEqual(s.counter("watchdog_kills"), kills + 1)
        self.assertIn("has not run its loop for 1000 ms or more for a call", s.log())
        dead_id = dead[0]["call_id"]
        harness.wait_until(lambda: dead_id in records_by_call(s.spool())[1], 5,
                           what="call.ended of the stopped worker's call")
        self.assertTrue(any(r.get("failed") is True
                            for r in records_by_call(s.spool())[1][dead_id]))

    def test_call_length_is_on_record_after_a_store_restart(self):
        """The store restarted mid-call never saw the call start: the length
        comes from the worker, measured on the monotonic clock."""
        s = self.server(workers=2, workers_min_spare=1, workers_max=6)
        run = s.callsim("--calls", 1, "--duration", 4, "--quiet", background=True)
        t_up = self.wait_calls_up(s, run, 1)
        (old,) = s.pids("store")
        harness.wait_until(lambda: time.monotonic() - t_up > 1.0, 2, what="1 s of call")
        os.kill(old, signal.SIGKILL)
        harness.wait_until(lambda: [p for p in s.pids("store") if p != old], 5,
                           what="a new store")
        res = run.wait(60)
        (pc,) = res.per_call()
        self.assertCallsim(res, res.rc == 0, "the call failed")
        harness.wait_until(lambda: pc["call_id"] in records_by_call(s.spool())[1], 5,
                           what="call.ended in the spool")
        (end,) = records_by_call(s.spool())[1][pc["call_id"]]
        self.assertIn("duration_ms", end, end)
        self.assertAlmostEqual(end["duration_ms"], pc["duration_ms"], delta=1000, msg=end)

    def test_stopped_store_is_killed_by_the_watchdog_and_its_records_kept(self):
        """Records written while the store is stopped wait in the rings; the
        watchdog replaces the store and the new one writes them."""
        s = self.server(workers=2, workers_min_spare=1, workers_max=6, watchdog_ms=1000)
        (old,) = s.pids("store")
        time.sleep(0.5)  # its loop runs (a store stuck before that gets 30 s of grace)
        os.kill(old, signal.SIGSTOP)
        res = s.callsim("--calls", 1, "--duration", 1, "--quiet", timeout=30)
        self.assertCallsim(res, res["answered"] == 1 and res.rc == 0, "the call failed")
        harness.wait_until(lambda: [p for p in s.pids("store") if p != old], 4.0,
                           what="a new store within 4 s of the stop")
        cid = res.per_call()[0]["call_id"]

        def kinds():
            return {r.get("type") for r in s.spool() if r.get("call_id") == cid}

        harness.wait_until(lambda: {"call.started", "call.ended"} <= kinds(), 5,
                           what="the call's records in the spool")
        self.assertEqual(s.counter("watchdog_kills"), 1)

    def assert_echo_back(self, res, out, t_launch, t_fault, t_back):
        """The echo comes back after the restart: in the audio each caller heard,
        every second from 1.5 s after the new broker until the end carries the
        caller's tones (as strongly as before the fault) and no holding tone."""
        t_kill = t_fault
        for n, pc in enumerate(res.per_call(), 1):
            rate, heard = read_wav(out.replace(".wav", "-%d.wav" % n))
            t0 = t_launch + (pc.get("webhook_ms", 0) + pc.get("connect_ms", 0)) / 1000.0
            wins = [band_powers(heard, rate, a, a + 1.0)[0]
                    for a in (0.5, 1.0, 1.5) if a + 1.0 <= t_kill - t0]
            self.assertTrue(wins, "no audio before the crash on call %d" % n)
            before_echo = sum(wins) / len(wins)
            self.assertGreater(before_echo, 0, "no echo before the crash on call %d" % n)
            start = t_back - t0 + 1.5
            end = len(heard) / rate - 0.5
            self.assertGreater(end - start, 2.0, "too little audio after the restart")
            t = start
            while t + 1.0 <= end:
                echo, hold = band_powers(heard, rate, t, t + 1.0)
                self.assertGreater(echo, 0.2 * before_echo,
                                   "call %d, %.1f-%.1f s: no echo after the broker restart "
                                   "(%.3g vs %.3g before; hold tone %.3g)" % (
                                       n, t, t + 1, echo, before_echo, hold))
                self.assertLess(hold, 0.1 * echo, "call %d, %.1f-%.1f s: still the holding "
                                "tone after the restart" % (n, t, t + 1))
                t += 1.0


if __name__ == "__main__":
    unittest.main()
