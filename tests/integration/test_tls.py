"""TLS on the media listener: Twilio connects with wss://, the worker that gets
the connection terminates TLS, and the call works as over ws://. A client that
speaks plain TCP to the TLS listener is refused and counted. Run by run.py."""

import os
import socket
import subprocess
import unittest

import harness
from test_calls import check_echo_call


def make_cert(directory):
    cert, key = os.path.join(directory, "media.crt"), os.path.join(directory, "media.key")
    subprocess.run(["openssl", "req", "-x509", "-newkey", "rsa:2048", "-nodes", "-days", "2",
                    "-subj", "/CN=127.0.0.1", "-addext", "subjectAltName=IP:127.0.0.1",
                    "-keyout", key, "-out", cert], check=True,
                   stdout=subprocess.DEVNULL, stderr=subprocess.DEVNULL)
    return cert, key


class MediaOverTls(harness.ServerTestCase):
    def test_wss_call_echoes_and_plain_tcp_is_refused(self):
        s = self.server(start=False)
        cert, key = make_cert(s.dir)
        s.settings.update({
            "listen_media_tls_cert": cert,
            "listen_media_tls_key": key,
            "public_media_url": "wss://127.0.0.1:%d" % s.media_port,
        })
        s.start()
        res = s.callsim("--duration", 3, "--ca-file", cert)
        self.assertEqual(res.rc, 0, res.describe())
        check_echo_call(self, res, res.per_call()[0], max_gap_ms=100)

        before = s.counter("tls_handshake_errors")
        with socket.create_connection(("127.0.0.1", s.media_port), timeout=5) as c:
            c.sendall(b"GET /twilio/media HTTP/1.1\r\nHost: x\r\n\r\n")
            c.settimeout(5)
            try:
                data = c.recv(4096)
            except (ConnectionResetError, socket.timeout):
                data = b""
        self.assertNotIn(b"101", data, "a plain-text upgrade was accepted on the TLS listener")
        harness.wait_until(lambda: s.counter("tls_handshake_errors") > before, 5,
                           what="tls_handshake_errors to count the plain-TCP client")


if __name__ == "__main__":
    unittest.main()
