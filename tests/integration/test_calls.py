"""Echo calls under load, placed with voxbridge-callsim: the issue's acceptance
check "20 simultaneous echo calls each get back all their audio with no gap
over 40 ms", plus the records the store keeps of them. Run by run.py."""

import os
import unittest

import harness


def check_echo_call(tc, res, pc, min_ratio=0.95, max_gap_ms=None):
    """One per_call entry of callsim: answered, closed 1000, and got back at
    least MIN_RATIO of the frames it sent with no gap over 40 ms (or none over
    MAX_GAP_MS when given)."""
    where = "call %s (%s)" % (pc.get("call"), pc.get("call_id"))
    tc.assertCallsim(res, pc["result"] == "answered", "%s: result %s (%s)" % (
        where, pc["result"], pc.get("reason")))
    tc.assertCallsim(res, pc["close_code"] == 1000, "%s: closed with %s %s" % (
        where, pc["close_code"], pc.get("close_reason")))
    tc.assertCallsim(res, pc["frames_sent"] > 0, "%s: sent no audio" % where)
    tc.assertCallsim(res, pc["frames_received"] >= min_ratio * pc["frames_sent"],
                     "%s: got back %d of %d frames (< %d%%)" % (
                         where, pc["frames_received"], pc["frames_sent"], min_ratio * 100))
    if max_gap_ms is None:
        tc.assertCallsim(res, pc["gaps_over_40ms"] == 0, "%s: %d gaps over 40 ms (max %s ms)"
                         % (where, pc["gaps_over_40ms"], pc["max_gap_ms"]))
    else:
        tc.assertCallsim(res, pc["max_gap_ms"] <= max_gap_ms, "%s: a gap of %s ms (> %d)" % (
            where, pc["max_gap_ms"], max_gap_ms))


def records_by_call(spool):
    started, ended = {}, {}
    for r in spool:
        if r.get("type") == "call.started":
            started[r["call_id"]] = r
        elif r.get("type") == "call.ended":
            ended.setdefault(r["call_id"], []).append(r)
    return started, ended


class EchoCalls(harness.ServerTestCase):
    def test_20_simultaneous_echo_calls(self):
        s = self.server(workers=4, workers_min_spare=2, workers_max=24, brokers=2)
        before = s.counter("calls_started")
        res = s.callsim("--calls", 20, "--duration", 8, "--quiet", timeout=90)
        self.assertCallsim(res, res["calls"] == 20 and res["answered"] == 20,
                           "not every call was answered")
        self.assertCallsim(res, res["failed"] == 0 and res["rejected"] == 0, "calls failed")
        self.assertCallsim(res, res.rc == 0, "callsim exit %s" % res.rc)
        self.assertEqual(len(res.per_call()), 20)
        bad = ["call %d: %d/%d frames back, %d gaps over 40 ms, max gap %s ms, close %s" % (
            pc["call"], pc["frames_received"], pc["frames_sent"], pc["gaps_over_40ms"],
            pc["max_gap_ms"], pc["close_code"])
            for pc in res.per_call()
            if pc["result"] != "answered" or pc["close_code"] != 1000
            or pc["frames_received"] < 0.95 * pc["frames_sent"] or pc["gaps_over_40ms"] > 0]
        self.assertCallsim(res, not bad, "%d of 20 calls short of the mark (callsim send lag "
                           "max %s ms, load average %.1f):\n  %s" % (
                               len(bad), res.get("send_lag_max_ms"), os.getloadavg()[0],
                               "\n  ".join(bad)))
        self.assertCallsim(res, res["gaps_over_40ms"] == 0, "gaps over 40 ms")
        # every call has its start and its end on record, none failed
        self.assertEqual(s.counter("calls_started") - before, 20)
        ids = {pc["call_id"] for pc in res.per_call()}

        def all_ended():
            _, ended = records_by_call(s.spool())
            return ids <= set(ended)

        harness.wait_until(all_ended, 5, what="a call.ended record for each of the 20 calls")
        started, ended = records_by_call(s.spool())
        self.assertTrue(ids <= set(started), "calls without call.started: %s" % (
            ids - set(started)))
        for cid in ids:
            self.assertEqual(len(ended[cid]), 1, "call.ended records of %s: %s" % (
                cid, ended[cid]))
            self.assertFalse(ended[cid][0].get("failed"), ended[cid][0])
        self.assertEqual(s.counter("calls_failed"), 0)

    def test_one_call_round_trip_is_short(self):
        s = self.server()
        res = s.callsim("--duration", 4, "--quiet", timeout=30)
        self.assertCallsim(res, res.rc == 0, "callsim exit %s" % res.rc)
        check_echo_call(self, res, res.per_call()[0])
        rtt = res["rtt_ms"]
        self.assertCallsim(res, rtt.get("n", 1) >= 2 and 0 < rtt["p50"] < 300,
                           "echo round trip p50 %s ms" % rtt["p50"])


if __name__ == "__main__":
    unittest.main()
