"""Raw clients for the integration tests, standard library only:
- a minimal RFC 6455 WebSocket client (handshake, masked frames, any opcode or
  size, reading frames, close codes) for feeding voxbridge bad input;
- Twilio webhook signatures (HMAC-SHA1, provider-protocols.md section 7);
- MediaCall: one Twilio call by hand (signed /twilio/voice, then the Media
  Streams WebSocket named by the TwiML) with caller audio paced at 20 ms;
- G.711 mu-law and a Goertzel tone detector for checking echoed audio.
Run by the integration tests."""

import base64
import hashlib
import hmac
import math
import os
import socket
import struct
import threading
import time
import urllib.parse
import uuid
import xml.etree.ElementTree as ET

WS_GUID = "258EAFA5-E914-47DA-95CA-C5AB0DC85B11"

OP_CONT, OP_TEXT, OP_BINARY, OP_CLOSE, OP_PING, OP_PONG = 0x0, 0x1, 0x2, 0x8, 0x9, 0xA


# ------------------------------------------------------------------ signatures

def twilio_signature(token, url, params):
    """X-Twilio-Signature: base64 HMAC-SHA1 of URL followed by each parameter's
    name and value, names sorted, each name's values sorted and de-duplicated.
    PARAMS is a dict of str -> str or list of str."""
    s = url
    for name in sorted(params):
        vals = params[name]
        if isinstance(vals, str):
            vals = [vals]
        for v in sorted(set(vals)):
            s += name + v
    mac = hmac.new(token.encode(), s.encode(), hashlib.sha1).digest()
    return base64.b64encode(mac).decode()


def voice_params(to, frm, call_sid=None):
    return {
        "AccountSid": "AC" + "0" * 32,
        "ApiVersion": "2010-04-01",
        "CallSid": call_sid or ("CA" + uuid.uuid4().hex),
        "CallStatus": "ringing",
        "Direction": "inbound",
        "From": frm,
        "To": to,
        "Called": to,
        "Caller": frm,
    }


def post_signed(server, path, params, token=None, signature=None):
    """POSTs PARAMS as a form to SERVER's PATH, signed over public_url + PATH
    (or with SIGNATURE as given; None: no header when signature is False).
    Returns (status, headers, body)."""
    body = urllib.parse.urlencode(params, doseq=True)
    url = server.settings["public_url"].rstrip("/") + path
    headers = {"Content-Type": "application/x-www-form-urlencoded"}
    if signature is None:
        signature = twilio_signature(token or server.token, url, params)
    if signature is not False:
        headers["X-Twilio-Signature"] = signature
    return server.http("POST", path, body=body, headers=headers)


def parse_twiml_stream(xml_bytes):
    """(stream url, {parameter name: value}) of <Connect><Stream> TwiML."""
    root = ET.fromstring(xml_bytes)
    stream = root.find("./Connect/Stream")
    if stream is None:
        raise ValueError("no <Connect><Stream> in TwiML: %r" % xml_bytes)
    params = {p.get("name"): p.get("value") for p in stream.findall("Parameter")}
    return stream.get("url"), params


# ------------------------------------------------------------------- WebSocket

class WSClosed(Exception):
    """The connection ended. code: the peer's close code, 1005 for a close frame
    without one, 1006 when TCP ended with no close frame."""

    def __init__(self, code, reason=""):
        super().__init__("WebSocket closed: %s %s" % (code, reason))
        self.code = code
        self.reason = reason


class HandshakeRefused(Exception):
    def __init__(self, status, headers, body):
        super().__init__("handshake answered HTTP %s" % status)
        self.status = status
        self.headers = headers
        self.body = body


def _read_http_head(sock, buf=b""):
    while b"\r\n\r\n" not in buf:
        chunk = sock.recv(4096)
        if not chunk:
            raise ConnectionError("connection closed during the HTTP response (got %r)" % buf)
        buf += chunk
    head, _, rest = buf.partition(b"\r\n\r\n")
    lines = head.decode("latin-1").split("\r\n")
    status = int(lines[0].split()[1])
    headers = {}
    for line in lines[1:]:
        k, _, v = line.partition(":")
        headers[k.strip().lower()] = v.strip()
    return status, headers, rest


class WebSocket:
    """A blocking client WebSocket. send_frame writes any frame (masked unless
    told otherwise); recv() returns (opcode, payload) of a whole message,
    answering pings, and raises WSClosed when the connection ends."""

    def __init__(self, host, port, path="/", timeout=10, headers=None):
        self.sock = socket.create_connection((host, port), timeout=timeout)
        if os.environ.get("VB_WS_NODELAY", "1") == "1":
            self.sock.setsockopt(socket.IPPROTO_TCP, socket.TCP_NODELAY, 1)
        self.local_port = self.sock.getsockname()[1]
        self.send_lock = threading.Lock()
        self.closed = None  # WSClosed once the connection ended
        self.close_sent = False
        self.close_lock = threading.Lock()
        key = base64.b64encode(os.urandom(16)).decode()
        req = ("GET %s HTTP/1.1\r\nHost: %s:%d\r\nUpgrade: websocket\r\n"
               "Connection: Upgrade\r\nSec-WebSocket-Key: %s\r\n"
               "Sec-WebSocket-Version: 13\r\n" % (path, host, port, key))
        for k, v in (headers or {}).items():
            req += "%s: %s\r\n" % (k, v)
        self.sock.sendall((req + "\r\n").encode())
        status, hdrs, rest = _read_http_head(self.sock)
        if status != 101:
            body = rest
            try:
                n = int(hdrs.get("content-length", "0"))
                while len(body) < n:
                    chunk = self.sock.recv(4096)
                    if not chunk:
                        break
                    body += chunk
            except (OSError, ValueError):
                pass
            self.sock.close()
            raise HandshakeRefused(status, hdrs, body)
        want = base64.b64encode(hashlib.sha1((key + WS_GUID).encode()).digest()).decode()
        if hdrs.get("sec-websocket-accept") != want:
            self.sock.close()
            raise ConnectionError("bad Sec-WebSocket-Accept: %r" % hdrs.get(
                "sec-websocket-accept"))
        self.buf = rest

    @classmethod
    def from_url(cls, url, **kw):
        u = urllib.parse.urlsplit(url)
        if u.scheme != "ws":
            raise ValueError("only ws:// here: %s" % url)
        path = u.path + ("?" + u.query if u.query else "")
        return cls(u.hostname, u.port or 80, path or "/", **kw)

    # ---- sending
    def send_frame(self, opcode, payload=b"", fin=True, mask=True, rsv=0):
        if isinstance(payload, str):
            payload = payload.encode()
        b0 = (0x80 if fin else 0) | (rsv << 4) | opcode
        n = len(payload)
        mbit = 0x80 if mask else 0
        if n < 126:
            head = struct.pack("!BB", b0, mbit | n)
        elif n < 65536:
            head = struct.pack("!BBH", b0, mbit | 126, n)
        else:
            head = struct.pack("!BBQ", b0, mbit | 127, n)
        if mask:
            key = os.urandom(4)
            head += key
            payload = _mask(payload, key)
        with self.send_lock:
            self.sock.sendall(head + payload)

    def send_text(self, text):
        self.send_frame(OP_TEXT, text)

    def send_close(self, code=1000, reason=""):
        with self.close_lock:
            if self.close_sent:
                return
            self.close_sent = True
        payload = struct.pack("!H", code) + reason.encode() if code is not None else b""
        try:
            self.send_frame(OP_CLOSE, payload)
        except OSError:
            pass

    # ---- receiving
    def _need(self, n):
        while len(self.buf) < n:
            try:
                chunk = self.sock.recv(65536)
            except ConnectionResetError:
                chunk = b""
            if not chunk:
                self.closed = WSClosed(1006, "connection dropped")
                raise self.closed
            self.buf += chunk
        out, self.buf = self.buf[:n], self.buf[n:]
        return out

    def recv_frame(self):
        """(fin, opcode, payload) of the next frame."""
        b0, b1 = self._need(2)
        n = b1 & 0x7F
        if n == 126:
            n = struct.unpack("!H", self._need(2))[0]
        elif n == 127:
            n = struct.unpack("!Q", self._need(8))[0]
        key = self._need(4) if b1 & 0x80 else None
        payload = self._need(n)
        if key:
            payload = _mask(payload, key)
        return bool(b0 & 0x80), b0 & 0x0F, payload

    def recv(self, timeout=None):
        """(opcode, payload) of the next data message; raises WSClosed at the end
        (after answering the peer's close) or socket.timeout."""
        if self.closed is not None:
            raise self.closed
        if timeout is not None:
            self.sock.settimeout(timeout)
        parts, first_op = [], None
        while True:
            fin, op, payload = self.recv_frame()
            if op == OP_PING:
                self.send_frame(OP_PONG, payload)
                continue
            if op == OP_PONG:
                continue
            if op == OP_CLOSE:
                code = struct.unpack("!H", payload[:2])[0] if len(payload) >= 2 else 1005
                reason = payload[2:].decode("utf-8", "replace")
                self.send_close(code if code != 1005 else None)
                self.closed = WSClosed(code, reason)
                raise self.closed
            if op != OP_CONT:
                first_op = op
            parts.append(payload)
            if fin:
                return first_op, b"".join(parts)

    def close(self):
        try:
            self.sock.close()
        except OSError:
            pass


def _mask(data, key):
    if not data:
        return data
    n = len(data)
    k = (key * (n // 4 + 1))[:n]
    return (int.from_bytes(data, "big") ^ int.from_bytes(k, "big")).to_bytes(n, "big")


# ----------------------------------------------------------------------- audio

def _ulaw_decode_byte(u):
    u = ~u & 0xFF
    sign = u & 0x80
    exp = (u >> 4) & 7
    mant = u & 0x0F
    s = ((mant << 3) + 0x84) << exp
    s -= 0x84
    return -s if sign else s


ULAW_DECODE = [_ulaw_decode_byte(i) for i in range(256)]


def ulaw_encode_sample(s):
    BIAS, CLIP = 0x84, 32635
    sign = 0x80 if s < 0 else 0
    if s < 0:
        s = -s
    s = min(s, CLIP) + BIAS
    exp = 7
    mask = 0x4000
    while exp > 0 and not (s & mask):
        exp -= 1
        mask >>= 1
    mant = (s >> (exp + 3)) & 0x0F
    return ~(sign | (exp << 4) | mant) & 0xFF


def ulaw_encode(pcm):
    return bytes(ulaw_encode_sample(int(s)) for s in pcm)


def ulaw_decode(data):
    return [ULAW_DECODE[b] for b in data]


def tone(freqs, n, amp=8000.0, rate=8000, start=0):
    """N samples of a sum of sine FREQS (peak about AMP)."""
    k = len(freqs)
    return [int(amp / k * sum(math.sin(2 * math.pi * f * (start + i) / rate) for f in freqs))
            for i in range(n)]


def goertzel_power(samples, freq, rate=8000):
    """Mean power of SAMPLES at FREQ (normalised so a full-scale sine ~ 0.25)."""
    n = len(samples)
    if n == 0:
        return 0.0
    w = 2 * math.pi * freq / rate
    c = 2 * math.cos(w)
    s1 = s2 = 0.0
    for x in samples:
        s0 = x / 32768.0 + c * s1 - s2
        s2, s1 = s1, s0
    p = s1 * s1 + s2 * s2 - c * s1 * s2
    return p / (n * n)


def rms(samples):
    if not samples:
        return 0.0
    return math.sqrt(sum(s * s for s in samples) / len(samples))


# The caller's test signal: 300 ms of a two-tone burst every second.
BURST_FREQS = (700.0, 1300.0)
SILENCE = bytes([0xFF]) * 160


def burst_frames(seconds):
    """Mu-law frames of 300 ms bursts every second, SECONDS long."""
    burst = ulaw_encode(tone(BURST_FREQS, 2400))
    out = []
    for k in range(int(seconds * 50)):
        pos = k % 50
        out.append(burst[pos * 160:(pos + 1) * 160] if pos < 15 else SILENCE)
    return out


# ------------------------------------------------------------------- MediaCall

class MediaCall:
    """One simulated Twilio call, by hand.

    call = MediaCall(server).webhook()  # signed POST /twilio/voice
    call.connect()                      # WebSocket, connected + start messages
    call.stream(frames)                 # background: one media message per 20 ms
    ...  call.received (list of (monotonic time, mu-law bytes)), call.close_code
    call.hangup()                       # stop + close 1000"""

    def __init__(self, server, to=None, frm="+15551234567"):
        self.server = server
        self.to = to or server.number
        self.frm = frm
        self.call_sid = "CA" + uuid.uuid4().hex
        self.stream_sid = "MZ" + uuid.uuid4().hex
        self.ws = None
        self.stream_url = None
        self.params = None
        self.received = []
        self.marks = []
        self.other = []
        self.close_code = None
        self.close_reason = None
        self.seq = 0
        self.chunk = 0
        self.lock = threading.Lock()
        self._stop = threading.Event()
        self._reader = None
        self._sender = None

    @property
    def call_id(self):
        return (self.params or {}).get("call_id")

    def webhook(self):
        status, _, body = post_signed(self.server, "/twilio/voice",
                                      voice_params(self.to, self.frm, self.call_sid))
        if status != 200:
            raise AssertionError("/twilio/voice answered %d: %r" % (status, body))
        self.stream_url, self.params = parse_twiml_stream(body)
        return self

    def open_ws(self):
        # Twilio signs the WebSocket handshake too: over the URL alone.
        sig = twilio_signature(self.server.token, self.stream_url, {})
        self.ws = WebSocket.from_url(self.stream_url, headers={"X-Twilio-Signature": sig})
        return self.ws

    def connect(self, read=True):
        if self.stream_url is None:
            self.webhook()
        self.open_ws()
        self.send_json('{"event":"connected","protocol":"Call","version":"1.0.0"}')
        self.seq = 1
        params = ",".join('"%s":"%s"' % (k, v) for k, v in self.params.items())
        self.send_json(
            '{"event":"start","sequenceNumber":"1","start":{"accountSid":"AC%s",'
            '"streamSid":"%s","callSid":"%s","tracks":["inbound"],"customParameters":{%s},'
            '"mediaFormat":{"encoding":"audio/x-mulaw","sampleRate":8000,"channels":1}},'
            '"streamSid":"%s"}' % ("0" * 32, self.stream_sid, self.call_sid, params,
                                   self.stream_sid))
        if read:
            self._reader = threading.Thread(target=self._read_loop, daemon=True)
            self._reader.start()
        return self

    def send_json(self, text):
        self.ws.send_text(text)

    def media_json(self, payload_b64):
        self.seq += 1
        self.chunk += 1
        return ('{"event":"media","sequenceNumber":"%d","media":{"track":"inbound",'
                '"chunk":"%d","timestamp":"%d","payload":"%s"},"streamSid":"%s"}' % (
                    self.seq, self.chunk, (self.chunk - 1) * 20, payload_b64, self.stream_sid))

    def send_media(self, ulaw):
        with self.lock:
            msg = self.media_json(base64.b64encode(ulaw).decode())
        self.ws.send_text(msg)

    def send_raw_event(self, text):
        """Sends TEXT as is (bad input), between media messages."""
        with self.lock:
            self.ws.send_text(text)

    def stream(self, frames, loop=False):
        """Sends FRAMES (mu-law, 160 bytes each) one per 20 ms in the background."""
        def run():
            t0 = time.monotonic()
            k = 0
            while not self._stop.is_set():
                if k >= len(frames):
                    if not loop:
                        return
                i = k % len(frames)
                try:
                    self.send_media(frames[i])
                except OSError:
                    return
                k += 1
                delay = t0 + k * 0.02 - time.monotonic()
                if delay > 0:
                    self._stop.wait(delay)
        self._sender = threading.Thread(target=run, daemon=True)
        self._sender.start()

    def _read_loop(self):
        import json
        while True:
            try:
                op, payload = self.ws.recv(timeout=60)
            except WSClosed as e:
                self.close_code, self.close_reason = e.code, e.reason
                return
            except OSError as e:
                self.close_code, self.close_reason = 1006, str(e)
                return
            now = time.monotonic()
            try:
                msg = json.loads(payload)
            except ValueError:
                self.other.append((now, payload))
                continue
            ev = msg.get("event")
            if ev == "media":
                audio = base64.b64decode(msg["media"]["payload"])
                self.received.append((now, audio))
            elif ev == "mark":
                name = msg.get("mark", {}).get("name")
                self.marks.append((now, name))
                # Twilio answers a mark once what was queued before it has played;
                # nothing is buffered here, so at once.
                try:
                    with self.lock:
                        self.seq += 1
                        self.ws.send_text(
                            '{"event":"mark","sequenceNumber":"%d","streamSid":"%s",'
                            '"mark":{"name":"%s"}}' % (self.seq, self.stream_sid, name))
                except OSError:
                    pass
            else:
                self.other.append((now, msg))

    def frames_since(self, t):
        return sum(1 for ts, _ in list(self.received) if ts >= t)

    def audio_since(self, t, until=None):
        out = []
        for ts, a in list(self.received):
            if ts >= t and (until is None or ts < until):
                out.extend(ulaw_decode(a))
        return out

    def stop_streaming(self):
        self._stop.set()
        if self._sender is not None:
            self._sender.join(5)

    def wait_closed(self, timeout):
        if self._reader is not None:
            self._reader.join(timeout)
        return self.close_code

    def hangup(self, timeout=5):
        """Twilio's end of a call: stop, then close 1000; waits for the close."""
        self.stop_streaming()
        if self.ws is None:
            return None
        try:
            with self.lock:
                self.seq += 1
                self.ws.send_text('{"event":"stop","sequenceNumber":"%d","streamSid":"%s",'
                                  '"stop":{"accountSid":"AC%s","callSid":"%s"}}' % (
                                      self.seq, self.stream_sid, "0" * 32, self.call_sid))
            self.ws.send_close(1000)
        except OSError:
            pass
        code = self.wait_closed(timeout)
        self.ws.close()
        return code

    def abort(self):
        self._stop.set()
        if self.ws is not None:
            self.ws.close()
