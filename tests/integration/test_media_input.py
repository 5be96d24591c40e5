"""Bad input on the Twilio Media Streams WebSocket, and admission control on the
media listener: what a caller (and the operator's metrics) see. Calls are
placed by hand with wsclient.MediaCall. Run by run.py."""

import socket
import time
import unittest

import harness
from wsclient import (BURST_FREQS, HandshakeRefused, MediaCall, WebSocket, burst_frames,
                      goertzel_power)


def echo_flowing(call, n=25):
    return len(call.received) >= n


class MediaInput(harness.ServerTestCase):
    def start_call(self, s, seconds=30):
        call = MediaCall(s).connect()
        self.addCleanup(call.abort)
        call.stream(burst_frames(seconds))
        harness.wait_until(lambda: echo_flowing(call), 5, what="echoed audio on call %s"
                           % call.call_id)
        return call

    def assertStillEchoing(self, call, since, frames=50, timeout=5):
        harness.wait_until(lambda: call.frames_since(since) >= frames, timeout,
                           what="%d more echoed frames on call %s (got %d; closed: %s)" % (
                               frames, call.call_id, call.frames_since(since), call.close_code))
        self.assertIsNone(call.close_code, "call %s closed: %s %s" % (
            call.call_id, call.close_code, call.close_reason))
        # what comes back is the caller's own signal
        audio = call.audio_since(since)
        sig = goertzel_power(audio, BURST_FREQS[0]) + goertzel_power(audio, BURST_FREQS[1])
        off = goertzel_power(audio, 2500.0) + goertzel_power(audio, 425.0)
        self.assertGreater(sig, 10 * off, "echoed audio does not carry the caller's tones "
                           "(signal %.3g, off-band %.3g)" % (sig, off))

    def test_bad_messages_are_counted_and_the_call_goes_on(self):
        s = self.server(workers=2)
        call = self.start_call(s)
        names = ("mstream_bad_json", "mstream_bad_base64", "mstream_unknown_events")
        before = {n: s.counter(n) for n in names}
        sid = call.stream_sid
        call.send_raw_event('{"event":"media","media":{"payload":')  # cut short
        call.send_raw_event('{"event":"media","sequenceNumber":"99","media":{"track":"inbound",'
                            '"chunk":"99","timestamp":"1980","payload":"@@@not*base64@@@"},'
                            '"streamSid":"%s"}' % sid)
        call.send_raw_event('{"event":"bogus","sequenceNumber":"100","streamSid":"%s"}' % sid)
        t = time.monotonic()
        for n in names:
            harness.wait_until(lambda: s.counter(n) >= before[n] + 1, 3,
                               what="voxbridge_%s_total to count the bad message" % n)
        self.assertStillEchoing(call, t)
        for n in names:
            self.assertEqual(s.counter(n), before[n] + 1, n)
        self.assertEqual(call.hangup(), 1000)
        self.assertTrue(s.alive())

    def test_oversized_message_closes_only_that_call_with_1009(self):
        s = self.server(workers=2, ws_max_message_bytes=4096)
        a = self.start_call(s)
        b = self.start_call(s)
        before = s.counter("ws_too_big")
        a.send_raw_event('{"event":"media","media":{"payload":"%s"}}' % ("A" * 6000))
        t = time.monotonic()
        a.wait_closed(5)
        self.assertEqual(a.close_code, 1009, "oversized message: close %s %s" % (
            a.close_code, a.close_reason))
        harness.wait_until(lambda: s.counter("ws_too_big") >= before + 1, 3,
                           what="voxbridge_ws_too_big_total to count it")
        self.assertStillEchoing(b, t)
        self.assertEqual(b.hangup(), 1000)

    def test_full_pool_answers_503_with_retry_after(self):
        s = self.server(workers=2, workers_min_spare=0, workers_max=2)
        a = self.start_call(s)
        self.start_call(s)
        before = s.counter("calls_rejected_busy")
        with self.assertRaises(HandshakeRefused) as cm:
            ws = WebSocket("127.0.0.1", s.media_port, "/twilio/media")
            ws.close()
        self.assertEqual(cm.exception.status, 503)
        self.assertIn("retry-after", cm.exception.headers)
        self.assertGreater(int(cm.exception.headers["retry-after"]), 0)
        self.assertEqual(s.counter("calls_rejected_busy"), before + 1)
        self.assertEqual(len(s.pids("worker")), 2)
        # once a call ends, a new one gets in
        self.assertEqual(a.hangup(), 1000)

        def new_call_answered():
            c = MediaCall(s)
            try:
                c.connect()
            except HandshakeRefused:
                return False
            self.addCleanup(c.abort)
            c.stream(burst_frames(5))
            harness.wait_until(lambda: echo_flowing(c, 10), 5, what="echo on the new call")
            return True

        harness.wait_until(new_call_answered, 5, interval=0.3,
                           what="a call to get in after one ended")

    def test_worker_forked_for_a_call_holds_its_connection_once(self):
        """With no idle worker the master forks one for the call in hand. The child must
        not keep the master's descriptor of that connection: with two, its close at the
        end of the call sends no FIN and the socket stays in the worker for its life."""
        s = self.server(workers=1, workers_min_spare=0, workers_max=3)
        a = self.start_call(s)
        b = self.start_call(s)  # the one worker is busy: forked for this call
        for pid, counts in s.media_socket_fds().items():
            self.assertEqual(set(counts.values()), {1},
                             "worker %d holds a connection twice: %s" % (pid, counts))
        self.assertEqual(b.hangup(), 1000)
        harness.wait_until(lambda: sum(len(c) for c in s.media_socket_fds().values()) == 1,
                           5, what="the ended call's connection to leave its worker (%s)"
                           % s.media_socket_fds())
        self.assertEqual(a.hangup(), 1000)

    def test_refusal_waits_for_a_client_still_sending(self):
        """A client that goes on sending after the server has refused it (here 256 KiB
        after its request, once the 503 has been written) still reads the 503: the master
        half-closes and reads until the client stops, instead of closing with unread bytes,
        which resets the connection (the client's send fails before it reads anything)."""
        s = self.server(workers=1, workers_min_spare=0, workers_max=1)
        self.start_call(s)
        before = s.counter("busy_lingering")
        sock = socket.create_connection(("127.0.0.1", s.media_port), timeout=5)
        self.addCleanup(sock.close)
        sock.sendall(b"POST /twilio/media HTTP/1.1\r\nHost: x\r\n"
                     b"Content-Length: 262144\r\n\r\n")
        harness.wait_until(lambda: s.counter("calls_rejected_busy") >= 1, 5,
                           what="the master to refuse the connection")
        time.sleep(0.2)  # the 503 is out: an immediate close would have reset by now
        sock.sendall(b"x" * 262144)
        sock.shutdown(socket.SHUT_WR)
        reply = harness.recv_until_eof(sock)
        self.assertTrue(reply.startswith(b"HTTP/1.1 503"), reply[:80])
        self.assertIn(b"Retry-After: 1", reply)
        self.assertEqual(s.counter("busy_lingering"), before + 1)
        self.assertTrue(s.alive())

    def test_wrong_call_token_is_refused(self):
        s = self.server(workers=2)
        call = MediaCall(s).webhook()
        call.params["token"] = "0" * 32
        call.connect()
        self.addCleanup(call.abort)
        call.stream(burst_frames(3))
        call.wait_closed(5)
        self.assertEqual(call.close_code, 1008, "a forged stream start: close %s %s" % (
            call.close_code, call.close_reason))
        self.assertEqual(len(call.received), 0)

    def test_unmasked_frame_is_a_protocol_error(self):
        s = self.server(workers=2)
        call = MediaCall(s).connect()
        self.addCleanup(call.abort)
        before = s.counter("ws_protocol_errors")
        call.ws.send_frame(1, '{"event":"mark","mark":{"name":"x"}}', mask=False)
        call.wait_closed(5)
        self.assertEqual(call.close_code, 1002)
        harness.wait_until(lambda: s.counter("ws_protocol_errors") >= before + 1, 3,
                           what="voxbridge_ws_protocol_errors_total to count it")


if __name__ == "__main__":
    unittest.main()
