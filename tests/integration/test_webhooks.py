"""Twilio webhooks as Twilio (or an attacker) sends them: signatures, routing by
the called number, and the TwiML that connects the call's audio. Run by run.py."""

import socket
import time
import unittest
import xml.etree.ElementTree as ET

import harness
from wsclient import parse_twiml_stream, post_signed, twilio_signature, voice_params


class SignatureHelper(unittest.TestCase):
    """The test's own signer against the published vectors (so a 403 below is
    the server's doing, not the signer's)."""

    def test_vectors(self):
        p = {"CallSid": "CA1234567890ABCDE", "Caller": "+12349013030", "Digits": "1234",
             "From": "+12349013030", "To": "+18005551212"}
        self.assertEqual(twilio_signature("12345", "https://mycompany.com/myapp.php?foo=1&bar=2",
                                          p), "0/KCTR6DLpKmkAf8muzZqo1nDgQ=")
        self.assertEqual(twilio_signature("t", "https://x.test/a", {"B": ["y", "x", "x"],
                                                                     "A": "b"}),
                         "N95ahBPCCyQVfp2Kj9lyjM1ua/o=")


class Webhooks(harness.ServerTestCase):
    def setUp(self):
        super().setUp()
        self.s = self.server()

    def test_bad_signature_is_403_and_counted(self):
        before = self.s.counter("twilio_bad_signatures")
        params = voice_params(self.s.number, harness.CALLER)
        status, _, body = post_signed(self.s, "/twilio/voice", params,
                                      token="not-the-right-token")
        self.assertEqual(status, 403, body)
        status, _, body = post_signed(self.s, "/twilio/voice", params, signature=False)
        self.assertEqual(status, 403, "no X-Twilio-Signature at all: %r" % body)
        # a good signature over other parameters than those sent
        sig = twilio_signature(self.s.token, self.s.settings["public_url"] + "/twilio/voice",
                               dict(params, To="+15550009999"))
        status, _, body = post_signed(self.s, "/twilio/voice", params, signature=sig)
        self.assertEqual(status, 403, "signature over different parameters: %r" % body)
        self.assertEqual(self.s.counter("twilio_bad_signatures"), before + 3)
        self.assertNotIn(b"<Stream", body)

    def test_good_signature_connects_the_stream(self):
        params = voice_params(self.s.number, harness.CALLER)
        status, headers, body = post_signed(self.s, "/twilio/voice", params)
        self.assertEqual(status, 200, body)
        self.assertIn("xml", headers.get("content-type", ""))
        url, p = parse_twiml_stream(body)
        self.assertEqual(url, "ws://127.0.0.1:%d/twilio/media" % self.s.media_port)
        for name in ("call_id", "assistant", "from", "to", "token"):
            self.assertTrue(p.get(name), "Parameter %s missing in %r" % (name, body))
        self.assertEqual(p["assistant"], "echo")
        self.assertEqual(p["to"], self.s.number)
        self.assertEqual(p["from"], harness.CALLER)
        # each call gets its own id
        _, _, body2 = post_signed(self.s, "/twilio/voice",
                                  voice_params(self.s.number, harness.CALLER))
        self.assertNotEqual(parse_twiml_stream(body2)[1]["call_id"], p["call_id"])

    def test_unknown_number_says_and_hangs_up(self):
        before = self.s.counter("twilio_unknown_numbers")
        status, _, body = post_signed(self.s, "/twilio/voice",
                                      voice_params("+15559999999", harness.CALLER))
        self.assertEqual(status, 200, body)
        root = ET.fromstring(body)
        self.assertEqual(root.tag, "Response")
        self.assertIsNotNone(root.find("Say"), body)
        self.assertTrue((root.find("Say").text or "").strip(), body)
        self.assertIsNotNone(root.find("Hangup"), body)
        self.assertIsNone(root.find("./Connect"), body)
        self.assertEqual(self.s.counter("twilio_unknown_numbers"), before + 1)

    def test_status_callback_needs_a_signature(self):
        params = {"CallSid": "CA" + "1" * 32, "CallStatus": "completed", "SequenceNumber": "3"}
        status, _, _ = post_signed(self.s, "/twilio/status", params, token="wrong")
        self.assertEqual(status, 403)
        before = self.s.counter("twilio_status_callbacks")
        status, _, _ = post_signed(self.s, "/twilio/status", params)
        self.assertIn(status, (200, 204))
        self.assertEqual(self.s.counter("twilio_status_callbacks"), before + 1)

    def test_health_endpoints(self):
        for path in ("/health", "/health/live", "/health/ready"):
            status, _, body = self.s.http("GET", path)
            self.assertEqual(status, 200, "%s: %r" % (path, body))
        m = self.s.metrics()
        self.assertIn("voxbridge_twilio_bad_signatures_total", m)
        self.assertIn("voxbridge_calls_started_total", m)


class ApiConnectionCap(harness.ServerTestCase):
    def open_idle(self, s, n):
        """N connections opened one at a time and left idle: (held, replies of
        the refused ones). A refused one has its 503 at once, a held one stays
        silent (a start-up request of the harness may still count a moment)."""
        held, refused = [], []
        for _ in range(n):
            c = socket.create_connection(("127.0.0.1", s.api_port), timeout=5)
            c.settimeout(0.5)
            try:
                reply = c.recv(1024)
            except socket.timeout:
                held.append(c)
                continue
            refused.append(reply)
            c.close()
        for reply in refused:
            self.assertTrue(reply.startswith(b"HTTP/1.1 503"), reply)
            self.assertIn(b"Retry-After: 1", reply)
        return held, refused

    def close_and_wait_served(self, s, held):
        for c in held:
            c.close()

        def health_ok():
            try:
                return s.http("GET", "/health/live")[0] == 200
            except OSError:
                return False
        harness.wait_until(health_ok, 5, interval=0.2, what="the api to answer again")

    def test_idle_connections_beyond_the_cap_get_503_and_the_api_recovers(self):
        """Clients holding connections open cannot exhaust an api worker's file
        descriptors: past api_max_connections the master answers 503 itself,
        and once they go the api answers again."""
        s = self.server(api_workers=1, api_max_connections=5)
        held, refused = self.open_idle(s, 10)
        self.assertLessEqual(len(held), 5, "more connections held than the cap")
        self.assertGreaterEqual(len(refused), 5, "refused: %d" % len(refused))
        self.assertIn("api connection refused with 503", s.log())
        self.close_and_wait_served(s, held)
        # /metrics is on the api too: read once it answers
        self.assertGreaterEqual(s.counter("api_rejected_busy"), len(refused))

    def test_one_address_is_capped_and_others_are_still_served(self):
        """api_max_connections_per_ip: one client address holding connections
        open (a slowloris) gets 503 past the cap, while a request from another
        address is answered at once."""
        s = self.server(api_workers=1, api_max_connections_per_ip=3)
        held, refused = self.open_idle(s, 8)
        self.assertLessEqual(len(held), 3, "more connections held than the cap")
        self.assertGreaterEqual(len(refused), 5)
        for reply in refused:
            self.assertIn(b"too many connections from this address", reply)
        # another address (127.0.0.2 is loopback too) is served meanwhile
        other = socket.socket()
        other.bind(("127.0.0.2", 0))
        other.settimeout(5)
        t0 = time.monotonic()
        other.connect(("127.0.0.1", s.api_port))
        other.sendall(b"GET /health/live HTTP/1.1\r\nHost: x\r\nConnection: close\r\n\r\n")
        answer = other.recv(1024)
        other.close()
        self.assertTrue(answer.startswith(b"HTTP/1.1 200"), answer)
        self.assertLess(time.monotonic() - t0, 1.0)
        self.assertIn("its address holds 3 connections", s.log())
        self.close_and_wait_served(s, held)
        self.assertGreaterEqual(s.counter("api_rejected_per_ip"), len(refused))

if __name__ == "__main__":
    unittest.main()
