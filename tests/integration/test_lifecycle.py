"""The operator's signals while calls are up: SIGHUP reloads (a good file takes
effect for new calls only, a broken one is refused) and SIGTERM drains the
calls before the master exits 0. Calls are placed with voxbridge-callsim.
Run by run.py."""

import socket
import time
import unittest

import harness
from test_calls import check_echo_call, records_by_call

DELAY_KEY = "assistant.echo.echo_delay_ms"
# These tests are about calls surviving signals, not audio quality (test_calls
# has the 40 ms criterion): a call "works" when it gets its audio back with no
# gap longer than this.
WORKS_MAX_GAP_MS = 200


def check_call_works(tc, res, pc):
    check_echo_call(tc, res, pc, min_ratio=0.9, max_gap_ms=WORKS_MAX_GAP_MS)


class Lifecycle(harness.ServerTestCase):
    def wait_started(self, s, run, n, timeout=15):
        def up():
            if not run.running():
                raise harness.HarnessError("callsim ended early:\n" + run.wait(1).describe())
            started, _ = records_by_call(s.spool())
            return len(started) >= n
        harness.wait_until(up, timeout, what="%d calls to start" % n)
        return time.monotonic()

    def test_sighup_changes_new_calls_only(self):
        s = self.server(workers=4, workers_min_spare=2, workers_max=16, brokers=2)
        early = s.callsim("--calls", 10, "--duration", 9, "--quiet", background=True)
        t_up = self.wait_started(s, early, 10)
        harness.wait_until(lambda: time.monotonic() - t_up > 1.5, 3, what="calls under way")
        reloads = s.counter("config_reloads")
        s.set_keys({DELAY_KEY: 600})
        s.sighup()
        harness.wait_until(lambda: s.counter("config_reloads") > reloads, 5,
                           what="voxbridge_config_reloads_total to count the reload")
        late = s.callsim("--duration", 5, "--quiet", timeout=40)
        res = early.wait(60)
        # no call dropped, and the earlier calls kept their config (no delay)
        self.assertCallsim(res, res["answered"] == 10 and res.rc == 0,
                           "the 10 calls across the reload")
        for pc in res.per_call():
            check_call_works(self, res, pc)
            self.assertCallsim(res, 0 < pc["rtt_ms"]["max"] < 300,
                               "call %s: rtt max %s ms: an earlier call changed config" % (
                                   pc["call_id"], pc["rtt_ms"]["max"]))
        # the new call has the new setting
        self.assertCallsim(late, late.rc == 0, "the call after the reload")
        rtt = late["rtt_ms"]
        self.assertCallsim(late, rtt["p50"] >= 600 and rtt["max"] < 1000,
                           "rtt after echo_delay_ms 0 -> 600: %s" % rtt)
        self.assertTrue(s.alive())

    def test_sighup_with_a_broken_file_keeps_the_running_config(self):
        s = self.server(workers=2, workers_min_spare=1, brokers=1)
        errors = s.counter("config_reload_errors")
        good = s.config_text()
        # the broken file also asks for a delay: none of it may apply
        broken = s.config_text(dict(s.settings, **{DELAY_KEY: 600}),
                               extra_lines=["workers_max = many"])
        s.write_config(text=broken)
        s.sighup()
        harness.wait_until(lambda: s.counter("config_reload_errors") > errors, 5,
                           what="voxbridge_config_reload_errors_total to count the refusal")
        s.wait_log("reload refused")
        self.assertIn("workers_max", s.log())
        self.assertTrue(s.alive(), "the master died on a broken reload")
        self.assertEqual(s.counter("config_reloads"), 0)
        res = s.callsim("--duration", 4, "--quiet", timeout=30)
        self.assertCallsim(res, res.rc == 0, "a call after the refused reload")
        check_call_works(self, res, res.per_call()[0])
        self.assertCallsim(res, 0 < res["rtt_ms"]["p50"] < 300,
                           "rtt %s: the refused file's delay was applied" % res["rtt_ms"])
        # and a later good reload still works
        s.write_config(text=good)
        s.sighup()
        harness.wait_until(lambda: s.counter("config_reloads") == 1, 5,
                           what="a good reload after the broken one")

    def test_sigterm_lets_the_call_finish(self):
        s = self.server(workers=2, workers_min_spare=1, brokers=1, shutdown_timeout=20)
        run = s.callsim("--duration", 6, "--quiet", background=True)
        t_up = self.wait_started(s, run, 1)
        harness.wait_until(lambda: time.monotonic() - t_up > 1.0, 2, what="call under way")
        t_term = time.monotonic()
        s.sigterm()

        # new connections are refused once the stop began (checked last)
        def refused():
            try:
                socket.create_connection(("127.0.0.1", s.api_port), timeout=1).close()
                return False
            except ConnectionRefusedError:
                return True
        try:
            listener_closed = harness.wait_until(refused, 3)
        except harness.HarnessError:
            listener_closed = False
        ours = s.all_pids()
        self.assertTrue(s.alive(), "the master exited with a call still up")
        res = run.wait(30)
        self.assertCallsim(res, res.rc == 0, "the call across SIGTERM")
        pc = res.per_call()[0]
        self.assertCallsim(res, pc["close_code"] == 1000 and not pc["server_closed"],
                           "the call was cut by the server (%s %s)" % (
                               pc["close_code"], pc["close_reason"]))
        check_call_works(self, res, pc)
        self.assertGreater(time.monotonic() - t_term, 3.0)
        self.assertEqual(s.wait_exit(10), 0, "master exit status")
        left = harness.live_pids(p for p in ours if p != s.pid)
        self.assertEqual(left, [], "processes left after the master exited")
        _, ended = records_by_call(s.spool())
        self.assertIn(pc["call_id"], ended, "the call's end was recorded before exit")
        self.assertTrue(listener_closed, "connections to listen_api were still accepted 3 s "
                        "after SIGTERM (they should be refused)")


if __name__ == "__main__":
    unittest.main()
