"""The api listener under a short flood and a short slow attack (fault matrix
D4 and D5, bounded for CI; tests/bench/http_load.py is the full run with the
tight bars): forged webhooks from wrk are all refused with 403 and counted,
without a log line each; a request from another address is answered at once
while slowhttptest holds connections open. Skipped when wrk or slowhttptest
is not installed. Run by run.py."""

import os
import shutil
import socket
import subprocess
import time
import urllib.parse

import harness
import wrkload
from wsclient import post_signed, voice_params

def forged_requests(s, n=64):
    """(path, body, signature) webhooks with bad signatures of every kind."""
    rows = []
    for i in range(n):
        path = "/twilio/voice" if i % 2 else "/twilio/status"
        params = voice_params(s.number, harness.CALLER)
        if path == "/twilio/status":
            params = dict(params, CallStatus="completed", SequenceNumber=str(i))
        url = s.settings["public_url"] + path
        rows.append((path, urllib.parse.urlencode(params),
                     wrkload.forged_signature(s.token, url, params, i // 2)))
    return rows


def get_from(port, src, path="/health/live", timeout=5):
    """GET PATH on a fresh connection from SRC: (status, seconds)."""
    t0 = time.monotonic()
    c = socket.socket()
    c.settimeout(timeout)
    try:
        c.bind((src, 0))
        c.connect(("127.0.0.1", port))
        c.sendall(("GET %s HTTP/1.1\r\nHost: x\r\nConnection: close\r\n\r\n" % path).encode())
        data = harness.recv_until_eof(c)
    finally:
        c.close()
    line = data.split(b"\r\n", 1)[0].split()
    return (int(line[1]) if len(line) > 1 else 0), time.monotonic() - t0


class WebhookFlood(harness.ServerTestCase):
    def test_forged_webhooks_are_all_403_and_counted(self):
        """D4 (short): wrk for 3 s with invalid signatures only. Every reply is
        403; the server's twilio_bad_signatures counts at least what wrk saw
        (and at most the requests still in flight when wrk stopped); the log
        says so once, not once per request."""
        if not shutil.which("wrk"):
            self.skipTest("wrk is not installed (apt-get install wrk)")
        s = self.server(log_level="warn")
        script = os.path.join(s.dir, "forged.lua")
        wrkload.write_script(script, forged_requests(s))
        before = s.counter("twilio_bad_signatures")
        conns = 16
        r = wrkload.run(script, s.settings["public_url"] + "/", 3, threads=1, conns=conns)
        n403 = r["status"].get(403, 0)
        self.assertGreater(n403, 100, r)
        self.assertEqual(r["status"], {403: n403}, "replies other than 403: %r" % r)
        self.assertEqual(r["errors"]["status"], r["requests"], r)
        counted = s.counter("twilio_bad_signatures") - before
        self.assertGreaterEqual(counted, n403)
        self.assertLessEqual(counted, n403 + conns, "counted more than wrk can have sent")
        self.assertTrue(s.alive())
        # the operator is told, but a flood is not a line per request
        said = s.log().count("bad X-Twilio-Signature")
        self.assertGreaterEqual(said, 1)
        self.assertLessEqual(said, 3, "%d log lines for %d forged webhooks" % (said, counted))
        # and a real webhook is still answered
        status, _, body = post_signed(s, "/twilio/voice", voice_params(s.number, harness.CALLER))
        self.assertEqual(status, 200, body)


class SlowClients(harness.ServerTestCase):
    def test_slowloris_from_one_address_does_not_delay_another(self):
        """D5 (short): slowhttptest -H opens 200 connections from 127.0.0.1
        and drips headers for 8 s; with api_max_connections_per_ip the
        address is capped (503 past it) and GET /health/live from 127.0.0.2
        is answered in under 1 s throughout (the bench's bar is 200 ms; CI
        machines are shared). Afterwards 127.0.0.1 is served again."""
        if not shutil.which("slowhttptest"):
            self.skipTest("slowhttptest is not installed (apt-get install slowhttptest)")
        cap = 40
        s = self.server(api_workers=1, api_max_connections=400, api_max_connections_per_ip=cap,
                        log_level="warn")
        out = open(os.path.join(s.dir, "slowhttptest.out"), "wb")
        self.addCleanup(out.close)
        attack = subprocess.Popen(
            ["slowhttptest", "-H", "-c", "200", "-r", "200", "-i", "2", "-x", "16", "-l", "8",
             "-p", "3", "-u", s.settings["public_url"] + "/health/live"],
            stdout=out, stderr=subprocess.STDOUT, start_new_session=True)
        self.addCleanup(lambda: attack.poll() is None and attack.kill())
        time.sleep(1.5)  # its connections are open
        worst, answers = 0.0, []
        while attack.poll() is None and len(answers) < 20:
            status, dt = get_from(s.api_port, "127.0.0.2")
            answers.append(status)
            worst = max(worst, dt)
            time.sleep(0.3)
        attack.wait(timeout=30)
        self.assertGreaterEqual(len(answers), 5, "slowhttptest ended early: see %s" % out.name)
        self.assertEqual(set(answers), {200}, answers)
        self.assertLess(worst, 1.0, "a request from 127.0.0.2 took %.3f s" % worst)
        self.assertGreater(s.counter("api_rejected_per_ip"), 0,
                           "the per-address cap never refused anything")
        self.assertTrue(s.alive())

        def served_again():
            return get_from(s.api_port, "127.0.0.1")[0] == 200
        harness.wait_until(served_again, 10, interval=0.2, what="127.0.0.1 to be served again")


if __name__ == "__main__":
    import unittest
    unittest.main()
