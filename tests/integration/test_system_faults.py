"""Process and system faults E3, E4, E9 and E10 of the fault matrix: a low
open-files limit (at start and reached at run time), an address-space limit
(malloc failing in a worker, an api worker, the master), writes to a peer that
has gone (carrier RST mid-call, an API client gone before its responses), and
garbage on the internal IPC (the master <-> child channels, the parent-death
pipe). Each test checks what a caller and an operator see: answers, close
codes, counters, log lines, and which processes are still the same. Limits are
set with resource.setrlimit before the server starts (`ulimit -n`) or with
resource.prlimit on a running process (`prlimit --pid`); the IPC is reached
with pidfd_getfd(2) (root, or ptrace rights over the server). Run by run.py."""

import ctypes
import os
import resource
import select
import socket
import struct
import time
import unittest
import urllib.parse

import harness
from test_calls import records_by_call
from wsclient import (BURST_FREQS, HandshakeRefused, MediaCall, WebSocket, burst_frames,
                      goertzel_power, post_signed, twilio_signature, voice_params)

LIBC = ctypes.CDLL(None, use_errno=True)
SYS_pidfd_getfd = 438  # x86_64 and aarch64 alike


# ------------------------------------------------------------------ helpers

def start_calls(tc, s, n, seconds=30):
    """N MediaCalls streaming the burst signal, once the echo flows on each."""
    calls = []
    for _ in range(n):
        call = MediaCall(s).connect()
        tc.addCleanup(call.abort)
        call.stream(burst_frames(seconds))
        calls.append(call)
    for call in calls:
        harness.wait_until(lambda: len(call.received) >= 25, 8,
                           what="echoed audio on call %s" % call.call_id)
    return calls


def start_call(tc, s, seconds=30):
    return start_calls(tc, s, 1, seconds)[0]


def assert_echoing(tc, call, since, frames=50, timeout=5):
    """CALL is still open and brings back the caller's own tones after SINCE."""
    harness.wait_until(lambda: call.frames_since(since) >= frames, timeout,
                       what="%d more echoed frames on call %s (got %d; closed: %s)" % (
                           frames, call.call_id, call.frames_since(since), call.close_code))
    tc.assertIsNone(call.close_code, "call %s closed: %s %s" % (
        call.call_id, call.close_code, call.close_reason))
    audio = call.audio_since(since)
    sig = goertzel_power(audio, BURST_FREQS[0]) + goertzel_power(audio, BURST_FREQS[1])
    off = goertzel_power(audio, 2500.0) + goertzel_power(audio, 425.0)
    tc.assertGreater(sig, 10 * off, "the echo of call %s is not the caller's signal" %
                     call.call_id)


def try_call(s, seconds=3):
    """A call placed by hand: ('ok', call) once its echo flows, ('refused',
    HandshakeRefused) or ('error', exception) otherwise."""
    call = MediaCall(s)
    try:
        call.connect()
    except HandshakeRefused as e:
        return "refused", e
    except OSError as e:
        return "error", e
    call.stream(burst_frames(seconds))
    try:
        harness.wait_until(lambda: len(call.received) >= 10, 5, what="echo")
    except harness.HarnessError as e:
        call.abort()
        return "error", e
    return "ok", call


def signed_request(s, path, params):
    """The bytes of a signed form POST (one write, as a carrier sends it)."""
    body = urllib.parse.urlencode(params).encode()
    sig = twilio_signature(s.token, s.settings["public_url"] + path, params)
    return (("POST %s HTTP/1.1\r\nHost: x\r\nContent-Type: application/x-www-form-urlencoded"
             "\r\nX-Twilio-Signature: %s\r\nContent-Length: %d\r\nConnection: close\r\n\r\n"
             % (path, sig, len(body))).encode() + body)


def raw_request(port, data, timeout=5):
    """Sends DATA in one write and returns what comes back until the server
    closes (a refusal may close with RST, after its answer)."""
    c = socket.create_connection(("127.0.0.1", port), timeout=timeout)
    out = b""
    try:
        c.sendall(data)
        while True:
            chunk = c.recv(65536)
            if not chunk:
                break
            out += chunk
    except ConnectionResetError:
        pass
    finally:
        c.close()
    return out


def vmsize_kb(pid):
    with open("/proc/%d/status" % pid) as f:
        for line in f:
            if line.startswith("VmSize:"):
                return int(line.split()[1])
    raise harness.HarnessError("no VmSize for %d" % pid)


def open_fds(pid):
    return {int(n) for n in os.listdir("/proc/%d/fd" % pid)}


def lowest_free_fd(pid, settle=0.5, timeout=10):
    """RLIMIT_NOFILE bounds descriptor numbers: at this soft limit the process
    can open nothing more (the fds it holds above it stay open). Taken once the
    process's descriptors have stayed the same for SETTLE seconds: a connection
    in hand (the harness's last health check) or a child starting would free a
    lower one a moment later, and the limit would then let one more in."""
    deadline = time.monotonic() + timeout
    used, since = open_fds(pid), time.monotonic()
    while time.monotonic() - since < settle and time.monotonic() < deadline:
        time.sleep(0.05)
        now = open_fds(pid)
        if now != used:
            used, since = now, time.monotonic()
    return min(set(range(len(used) + 1)) - used)


def cpu_seconds(pid):
    with open("/proc/%d/stat" % pid) as f:
        fields = f.read().rsplit(")", 1)[1].split()
    return (int(fields[11]) + int(fields[12])) / os.sysconf("SC_CLK_TCK")


def server_is_sanitized():
    """ASan reserves terabytes of shadow: an address-space limit means nothing there."""
    with open(harness.voxbridge_bin(), "rb") as f:
        return b"__asan_init" in f.read()


def log_lines(s, needle, pid=None):
    tag = "[%d]" % pid if pid else ""
    return [ln for ln in s.log().splitlines() if needle in ln and tag in ln]


# ------------------------------------------------------- internal IPC access

def steal_fd(pid, fd):
    """A duplicate of PID's descriptor FD in this process (pidfd_getfd)."""
    pidfd = os.pidfd_open(pid)
    try:
        n = LIBC.syscall(SYS_pidfd_getfd, pidfd, fd, 0)
        if n < 0:
            e = ctypes.get_errno()
            raise OSError(e, "pidfd_getfd(%d, %d): %s" % (pid, fd, os.strerror(e)))
        return n
    finally:
        os.close(pidfd)


def unix_peers():
    """{inode: (socket type, peer inode)} of every AF_UNIX socket, from
    sock_diag (NETLINK_SOCK_DIAG, UDIAG_SHOW_PEER): which end pairs with which."""
    nl = socket.socket(socket.AF_NETLINK, socket.SOCK_DGRAM, 4)  # NETLINK_SOCK_DIAG
    try:
        req = struct.pack("=BBHIIIII", socket.AF_UNIX, 0, 0, 0xFFFFFFFF, 0, 4, 0, 0)
        nl.send(struct.pack("=IHHII", 16 + len(req), 20, 0x301, 1, 0) + req)
        peers = {}
        while True:
            data = nl.recv(1 << 16)
            off = 0
            while off + 16 <= len(data):
                ln, typ = struct.unpack_from("=IH", data, off)
                if typ == 3:  # NLMSG_DONE
                    return peers
                if typ == 2:  # NLMSG_ERROR
                    raise OSError("sock_diag refused the dump")
                _, stype, _, _, ino = struct.unpack_from("=BBBBI", data, off + 16)
                a = off + 32
                while a + 4 <= off + ln:
                    alen, atype = struct.unpack_from("=HH", data, a)
                    if atype == 2:  # UNIX_DIAG_PEER
                        peers[ino] = (stype, struct.unpack_from("=I", data, a + 4)[0])
                    a += (alen + 3) & ~3
                off += (ln + 3) & ~3
    finally:
        nl.close()


def fd_targets(pid):
    out = {}
    for n in os.listdir("/proc/%d/fd" % pid):
        try:
            out[int(n)] = os.readlink("/proc/%d/fd/%s" % (pid, n))
        except OSError:
            pass
    return out


def channel(master, child):
    """(to_child, to_master): sockets on both ends of CHILD's channel, as the
    master and the child hold them; what is sent on one arrives at the other."""
    peers = unix_peers()

    def seqpackets(pid):
        out = {}
        for fd, t in fd_targets(pid).items():
            if t.startswith("socket:["):
                ino = int(t[8:-1])
                if peers.get(ino, (0,))[0] == socket.SOCK_SEQPACKET:
                    out[ino] = fd
        return out

    mine, theirs = seqpackets(child), seqpackets(master)
    for ino, cfd in mine.items():
        peer = peers[ino][1]
        if peer in theirs:
            to_child = socket.socket(fileno=steal_fd(master, theirs[peer]))
            to_master = socket.socket(fileno=steal_fd(child, cfd))
            return to_child, to_master
    raise harness.HarnessError("no channel between %d and %d" % (master, child))


def death_pipe_writer(master, worker):
    """The master's write end of the parent-death pipe (every child holds the
    read end; the master never writes)."""
    mine = fd_targets(worker)
    pipes = {}
    for t in mine.values():
        if t.startswith("pipe:["):
            pipes[t] = pipes.get(t, 0) + 1
    single = [t for t, n in pipes.items() if n == 1]  # libevent's own pipes come in pairs
    for fd, t in fd_targets(master).items():
        if t in single:
            with open("/proc/%d/fdinfo/%d" % (master, fd)) as f:
                flags = int(f.read().split("flags:")[1].split()[0], 8)
            if flags & os.O_WRONLY:
                return steal_fd(master, fd)
    raise harness.HarnessError("no parent-death pipe found in %d" % master)


MSG = struct.Struct("=6I")  # vb_chan_msg_t: type, listener, slot, gen, flags, pad
CHAN_CONN, CHAN_QUIT, CHAN_RELOAD, CHAN_DONE, CHAN_CLOSED = 1, 2, 3, 5, 6


def junk_packets():
    """Packets no process may act on: wrong sizes (an empty one too, which
    recvmsg() reports like EOF), oversized, a zero and an unknown type."""
    return [b"", b"x", b"\0" * 23, b"\xff" * 25, os.urandom(70000),
            MSG.pack(0, 0, 0, 0, 0, 0), MSG.pack(999, 1, 2, 3, 4, 5)]


def send_packet(sock, data, fds=()):
    """One packet, with FDS passed along. The stolen end is non-blocking (the
    flag is shared with the process it came from) and a SEQPACKET queue holds
    few packets: wait for room while the receiver reads."""
    anc = [(socket.SOL_SOCKET, socket.SCM_RIGHTS, struct.pack("=%di" % len(fds), *fds))] \
        if fds else []
    deadline = time.monotonic() + 5
    while True:
        try:
            return sock.sendmsg([data], anc)
        except BlockingIOError:
            if time.monotonic() > deadline:
                raise
            select.select([], [sock], [], 0.1)


def pipe_fully_closed(rd, timeout=3):
    """The write end of the pipe whose read end is RD has no copy left: every
    process it was passed to closed it."""
    os.set_blocking(rd, False)

    def eof():
        try:
            return os.read(rd, 1) == b""
        except BlockingIOError:
            return False
    return harness.wait_until(eof, timeout, what="the passed descriptors to be closed")


# ---------------------------------------------------------------- E3: fds

class OpenFilesLimit(harness.ServerTestCase):
    """E3: `ulimit -n 128`, and descriptors running out while running."""

    def test_ulimit_n_128_fits_the_pool_and_answers_503_past_it(self):
        """Under a hard limit of 128 (three eventfds per call slot in every
        process) the master lowers workers_max to what fits, says so, and
        serves that many calls; the next gets 503; once calls end new ones get
        in. The api connection cap is what is left, never 0 or less."""
        s = self.server(rlimits={resource.RLIMIT_NOFILE: (128, 128)}, workers=2,
                        workers_min_spare=1, workers_max=40)
        warn = log_lines(s, "open-files limit (128) leaves room for")
        self.assertEqual(len(warn), 1, s.log_tail())
        slots = int(warn[0].split("room for ")[1].split()[0])
        self.assertTrue(4 <= slots < 40, warn[0])
        self.assertEqual(s.health()[1]["slots"], slots)
        cap_line = log_lines(s, "api workers take up to")
        self.assertEqual(len(cap_line), 1, s.log_tail())
        cap = int(cap_line[0].split("take up to ")[1].split()[0])
        self.assertGreaterEqual(cap, 16, cap_line[0])
        calls = start_calls(self, s, slots)
        busy = s.counter("calls_rejected_busy")
        with self.assertRaises(HandshakeRefused) as cm:
            WebSocket("127.0.0.1", s.media_port, "/twilio/media").close()
        self.assertEqual(cm.exception.status, 503)
        self.assertIn("retry-after", cm.exception.headers)
        self.assertEqual(s.counter("calls_rejected_busy"), busy + 1)
        self.assertTrue(log_lines(s, "refused with 503: pool at workers_max (%d)" % slots))
        t = time.monotonic()
        for c in calls:
            assert_echoing(self, c, t)
        # the api worker holds up to its cap; past it the master answers 503 itself
        held, refused = [], []
        for _ in range(cap + 2):
            c = socket.create_connection(("127.0.0.1", s.api_port), timeout=5)
            c.settimeout(0.1)
            try:
                refused.append(c.recv(1024))
                c.close()
            except socket.timeout:
                held.append(c)
        self.assertLessEqual(len(held), cap)
        self.assertGreaterEqual(len(refused), 2)
        for reply in refused:
            self.assertTrue(reply.startswith(b"HTTP/1.1 503"), reply)
        for c in held:
            c.close()
        harness.wait_until(lambda: s.http("GET", "/health/live")[0] == 200, 5, interval=0.1,
                           what="the api to answer once the idle clients left")
        self.assertGreaterEqual(s.counter("api_rejected_busy"), len(refused))
        for c in calls:
            self.assertEqual(c.hangup(), 1000)
        status, call = harness.wait_until(lambda: (lambda r: r if r[0] == "ok" else None)(
            try_call(s)), 10, interval=0.3, what="a new call after the others ended")
        call.hangup()
        self.assertEqual(s.counter("worker_crashes"), 0)
        self.assertEqual(s.counter("chan_lost_fds"), 0)

    def test_limit_too_low_for_one_call_refuses_to_start(self):
        s = self.server(start=False, rlimits={resource.RLIMIT_NOFILE: (48, 48)})
        with self.assertRaises(harness.HarnessError) as cm:
            s.start(timeout=10)
        self.assertIn("exited with 2", str(cm.exception))
        self.assertIn("open-files limit (48) is too low for even one call", s.log_text)
        self.assertIn("needs at least", s.log_text)

    def test_master_out_of_descriptors_answers_503_and_does_not_spin(self):
        """accept() failing with EMFILE must not leave the connection in the
        backlog with the listener readable (a busy loop, a caller that hangs):
        the master gives up a spare descriptor, answers 503 and takes it back."""
        s = self.server(workers=2, workers_max=4)
        orig = resource.prlimit(s.pid, resource.RLIMIT_NOFILE)
        low = lowest_free_fd(s.pid)
        resource.prlimit(s.pid, resource.RLIMIT_NOFILE, (low, orig[1]))
        fds = sorted(int(n) for n in os.listdir("/proc/%d/fd" % s.pid))
        self.addCleanup(lambda: s.alive() and resource.prlimit(s.pid, resource.RLIMIT_NOFILE,
                                                                orig))
        cpu0 = cpu_seconds(s.pid)
        t0 = time.monotonic()
        for _ in range(3):
            with self.assertRaises(HandshakeRefused, msg="limit %d, master fds %s, now %s" % (
                    low, fds, sorted(int(n) for n in os.listdir("/proc/%d/fd" % s.pid)))) as cm:
                WebSocket("127.0.0.1", s.media_port, "/twilio/media", timeout=3).close()
            self.assertEqual(cm.exception.status, 503)
            self.assertIn(b"out of file descriptors", cm.exception.body)
        time.sleep(1.0)
        busy = cpu_seconds(s.pid) - cpu0
        self.assertLess(busy, 0.5 * (time.monotonic() - t0),
                        "the master spun (%.2f s of CPU)" % busy)
        resource.prlimit(s.pid, resource.RLIMIT_NOFILE, orig)
        status, call = try_call(s)
        self.assertEqual(status, "ok", call)
        call.hangup()
        self.assertEqual(s.counter("accept_no_fds"), 3)
        lines = log_lines(s, "no free file descriptor")
        self.assertEqual(len(lines), 1, "the log is throttled: %s" % lines)

    def test_worker_without_a_free_descriptor_gives_its_call_back(self):
        """The kernel cannot install the call's socket in a worker at its
        limit: the call is lost (the caller sees the connection close), but
        the worker gives the slot back, so the pool is not left 'busy'
        forever (one worker, one slot: the next call would be 503)."""
        s = self.server(workers=1, workers_min_spare=0, workers_max=1)
        (w,) = s.pids("worker")
        orig = resource.prlimit(w, resource.RLIMIT_NOFILE)
        resource.prlimit(w, resource.RLIMIT_NOFILE, (lowest_free_fd(w), orig[1]))
        with self.assertRaises((ConnectionError, OSError)) as cm:
            WebSocket("127.0.0.1", s.media_port, "/twilio/media", timeout=5).close()
        self.assertNotIsInstance(cm.exception, HandshakeRefused)
        resource.prlimit(w, resource.RLIMIT_NOFILE, orig)
        status, call = harness.wait_until(lambda: (lambda r: r if r[0] == "ok" else None)(
            try_call(s)), 5, interval=0.2, what="the next call on the same worker")
        self.assertEqual(s.worker_serving(call.ws.local_port), w)
        call.hangup()
        self.assertEqual(s.counter("chan_lost_fds"), 1)
        self.assertTrue(log_lines(s, "handed over by the master was lost", w))

    def test_api_worker_without_a_free_descriptor_keeps_its_count_right(self):
        """Same for an api worker: requests it cannot take are lost, but the
        master's count of its connections comes back down, so with
        api_max_connections = 2 it does not answer 503 for ever after."""
        s = self.server(api_workers=1, api_max_connections=2)
        (api,) = s.pids("api")
        orig = resource.prlimit(api, resource.RLIMIT_NOFILE)
        resource.prlimit(api, resource.RLIMIT_NOFILE, (lowest_free_fd(api), orig[1]))
        for _ in range(3):
            with self.assertRaises(OSError):
                s.http("GET", "/health", timeout=3)
        resource.prlimit(api, resource.RLIMIT_NOFILE, orig)
        for _ in range(3):
            self.assertEqual(s.http("GET", "/health")[0], 200)
        self.assertEqual(s.counter("chan_lost_fds"), 3)
        self.assertEqual(s.counter("api_rejected_busy"), 0)


# ------------------------------------------------------- E4: address space

@unittest.skipIf(server_is_sanitized(), "ASan build: an address-space limit cannot apply")
class AddressSpaceLimit(harness.ServerTestCase):
    """E4: malloc failing. The limit is the process's address space now plus
    a little: it runs, but cannot map the 1 MB a call's or a request's setup
    is allowed (found by hand: an echo call's setup takes ~130 KB in the
    worker, a webhook ~260 KB in the api worker; below that speexdsp and
    OpenSSL fail inside)."""

    def limit_as(self, pid, margin_kb=256):
        orig = resource.prlimit(pid, resource.RLIMIT_AS)
        resource.prlimit(pid, resource.RLIMIT_AS, ((vmsize_kb(pid) + margin_kb) * 1024, orig[1]))
        return orig

    def test_worker_short_of_memory_refuses_with_503_and_is_replaced(self):
        """Each worker that cannot set a call up answers 503 (not a broken
        handshake, a hang or a crash), gives its slot back and leaves; fresh
        workers forked from the master take the next calls."""
        s = self.server(workers=2, workers_min_spare=1, workers_max=6)
        others = {r: s.pids(r) for r in ("master", "broker", "store", "api")}
        limited = s.pids("worker")
        for w in limited:
            self.limit_as(w, margin_kb=64)  # without the check: a broken handshake, SIGSEGV
        refused = 0
        for _ in range(len(limited) + 2):
            status, res = try_call(s)
            if status == "ok":
                break
            self.assertEqual(status, "refused", "a call to a worker short of memory: %r" % res)
            self.assertEqual(res.status, 503)
            self.assertIn(b"out of memory", res.body)
            refused += 1
        self.assertEqual(status, "ok", "no call got through after %d refusals" % refused)
        self.assertEqual(refused, len(limited))
        res.hangup()
        harness.wait_until(lambda: not set(limited) & set(s.pids("worker")), 3,
                           what="the limited workers to leave")
        self.assertEqual(s.counter("rejected_nomem"), refused)
        self.assertEqual(len(log_lines(s, "call refused with 503: out of memory")), refused)
        self.assertEqual(s.counter("worker_crashes"), 0)
        self.assertEqual(s.counter("calls_failed"), 0, "a call was lost as the workers left")
        self.assertEqual({r: s.pids(r) for r in others}, others)

    def test_api_short_of_memory_answers_503_not_403(self):
        """A webhook the api worker cannot process gets 503 (Twilio retries),
        not 403 'invalid signature' (the call would be lost, and the operator
        sent looking for a forged request); once memory is back it is served."""
        s = self.server()
        (api,) = s.pids("api")
        orig = self.limit_as(api)
        params = voice_params(s.number, harness.CALLER)
        reply = raw_request(s.api_port, signed_request(s, "/twilio/voice", params))
        self.assertTrue(reply.startswith(b"HTTP/1.1 503"), reply)
        self.assertIn(b"Retry-After:", reply)
        self.assertIn(b"out of memory", reply)
        reply = raw_request(s.api_port, b"GET /health HTTP/1.1\r\nHost: x\r\n\r\n")
        self.assertTrue(reply.startswith(b"HTTP/1.1 503"), reply)
        resource.prlimit(api, resource.RLIMIT_AS, orig)
        status, _, body = post_signed(s, "/twilio/voice", params)
        self.assertEqual(status, 200, body)
        self.assertIn(b"<Stream", body)
        self.assertEqual(s.pids("api"), [api])
        self.assertEqual(s.counter("twilio_bad_signatures"), 0)
        self.assertEqual(s.counter("rejected_nomem"), 2)
        self.assertTrue(log_lines(s, "api connection refused with 503: out of memory"))

    def test_master_under_an_address_space_limit_keeps_supervising(self):
        """prlimit --as on the master: it keeps running the call it has; the
        workers it forks inherit the limit and refuse calls with 503 and
        leave, without a crash; once the limit is lifted calls get through."""
        s = self.server(workers=1, workers_min_spare=1, workers_max=6)
        call = start_call(self, s, seconds=20)
        orig = self.limit_as(s.pid, margin_kb=0)
        statuses, held = [], []
        for _ in range(3):  # held open, so that each needs a worker forked under the limit
            status, res = try_call(s, seconds=10)
            statuses.append((status, getattr(res, "status", res)))
            if status == "ok":
                held.append(res)
        self.assertIn(("refused", 503), statuses)
        self.assertNotIn("error", [st for st, _ in statuses], statuses)
        assert_echoing(self, call, time.monotonic())
        resource.prlimit(s.pid, resource.RLIMIT_AS, orig)
        status, res = harness.wait_until(lambda: (lambda r: r if r[0] == "ok" else None)(
            try_call(s)), 10, interval=0.2, what="a call once the limit is lifted")
        for c in held + [res]:
            c.hangup()
        self.assertEqual(call.hangup(), 1000)
        self.assertTrue(s.alive())
        self.assertEqual(s.counter("worker_crashes"), 0)
        self.assertGreaterEqual(s.counter("rejected_nomem"), 1)


# ------------------------------------------------------ E9: closed peer

def reset(sock):
    """Close with SO_LINGER 0: the peer gets RST, not FIN. shutdown(SHUT_RD)
    first wakes a thread blocked in recv() on it, which would otherwise hold
    the socket open (and the RST back) until data came."""
    sock.setsockopt(socket.SOL_SOCKET, socket.SO_LINGER, struct.pack("ii", 1, 0))
    try:
        sock.shutdown(socket.SHUT_RD)
    except OSError:
        pass
    sock.close()


def ignores_sigpipe(pid):
    with open("/proc/%d/status" % pid) as f:
        for line in f:
            if line.startswith("SigIgn:"):
                return bool(int(line.split()[1], 16) & (1 << (13 - 1)))  # SIGPIPE is 13
    return False


class ClosedPeer(harness.ServerTestCase):
    """E9: writing to a peer that has gone must be an error, not SIGPIPE. The
    first write after an RST fails with ECONNRESET, the next ones with EPIPE,
    which raises SIGPIPE unless it is ignored or the write says MSG_NOSIGNAL:
    every process must ignore it (a bufferevent's writev cannot say so), and
    the tests make the server write into connections that are gone."""

    def assertNoSigpipeDeath(self, s, pids):
        self.assertEqual(s.all_pids(), pids, "a process died")
        for pid in pids:
            self.assertTrue(ignores_sigpipe(pid), "%s %d does not ignore SIGPIPE" % (
                harness.proc_table()[pid][2], pid))

    def test_carrier_reset_mid_call_ends_only_that_call(self):
        """Two carriers RST their streams while the workers send them echo:
        the workers survive (no SIGPIPE), record the calls as ended, counters
        move, and the same workers take the next calls."""
        s = self.server(workers=3, workers_min_spare=0, workers_max=3)
        pids = s.all_pids()
        a, b, c = start_calls(self, s, 3)
        served = {x: s.worker_serving(x.ws.local_port) for x in (a, b, c)}
        ended = s.counter("calls_ended")
        for x in (a, b):
            reset(x.ws.sock)  # while its sender still streams and the worker echoes
            x._stop.set()
        t = time.monotonic()

        def recorded():
            _, done = records_by_call(s.spool())
            return a.call_id in done and b.call_id in done
        harness.wait_until(recorded, 5, what="call.ended of the reset calls")
        _, done = records_by_call(s.spool())
        for x in (a, b):
            self.assertEqual(done[x.call_id][0].get("reason"), "connection lost", done[x.call_id])
        self.assertEqual(s.counter("calls_ended"), ended + 2)
        assert_echoing(self, c, t)
        self.assertNoSigpipeDeath(s, pids)
        nxt = start_calls(self, s, 2)
        self.assertEqual({s.worker_serving(x.ws.local_port) for x in nxt},
                         {served[a], served[b]})
        for x in nxt + [c]:
            self.assertEqual(x.hangup(), 1000)
        self.assertEqual(s.counter("worker_crashes"), 0)

    def test_api_client_gone_before_its_responses(self):
        """A client pipelines requests, reads nothing (the responses pile up
        in the socket) and resets the connection: the api worker's writes fail
        and it goes on; so does the master writing its own 503 to a client
        that reset first."""
        s = self.server(workers=1, workers_min_spare=0, workers_max=1)
        pids = s.all_pids()
        for _ in range(5):
            c = socket.socket()
            c.setsockopt(socket.SOL_SOCKET, socket.SO_RCVBUF, 4096)
            c.connect(("127.0.0.1", s.api_port))
            c.sendall(b"GET /metrics HTTP/1.1\r\nHost: x\r\n\r\n" * 200)
            c.settimeout(5)
            # the api is answering (and has far more to send) when the client resets
            self.assertTrue(c.recv(1, socket.MSG_PEEK).startswith(b"H"))
            reset(c)
        # the pool is full: the master answers 503 to clients that already reset
        call = start_call(self, s)
        for _ in range(5):
            c = socket.create_connection(("127.0.0.1", s.media_port))
            c.sendall(b"GET /twilio/media HTTP/1.1\r\nHost: x\r\n\r\n")
            reset(c)
        self.assertEqual(call.hangup(), 1000)
        self.assertEqual(s.http("GET", "/health")[0], 200)
        self.assertNoSigpipeDeath(s, pids)
        self.assertEqual(s.counter("worker_crashes"), 0)


# ---------------------------------------------------- E10: internal IPC

class InternalIpc(harness.ServerTestCase):
    """E10: garbage on the master <-> child channels and the parent-death pipe."""

    def test_garbage_on_every_channel_is_counted_and_dropped(self):
        """Junk packets both ways on the channel of every child (the worker
        holding a call included), and packets carrying two descriptors: each
        is counted once, the descriptors are closed, every process keeps
        running and the call keeps its echo. An empty packet is not taken for
        the master's exit."""
        s = self.server(workers=2, workers_min_spare=1)
        call = start_call(self, s)
        pids = s.all_pids()
        bad = s.counter("chan_bad_packets")
        sent = 0
        rd, wr = os.pipe()
        for role in ("worker", "api", "broker", "store"):
            for pid in s.pids(role):
                to_child, to_master = channel(s.pid, pid)
                for sock in (to_child, to_master):
                    for pkt in junk_packets():
                        send_packet(sock, pkt)
                        sent += 1
                    send_packet(sock, MSG.pack(CHAN_CONN, 0, 0, 0, 0, 0), [wr, wr])
                    sent += 1
                to_child.close()
                to_master.close()
        os.close(wr)
        t = time.monotonic()
        harness.wait_until(lambda: s.counter("chan_bad_packets") >= bad + sent, 5,
                           what="%d bad packets counted" % sent)
        pipe_fully_closed(rd)
        os.close(rd)
        assert_echoing(self, call, t)
        self.assertEqual(s.all_pids(), pids, "a process left or died")
        self.assertEqual(s.counter("chan_bad_packets"), bad + sent)
        self.assertTrue(log_lines(s, "dropped a malformed channel packet"))
        self.assertEqual(call.hangup(), 1000)
        status, nxt = try_call(s)
        self.assertEqual(status, "ok", nxt)
        nxt.hangup()

    def test_a_flood_is_logged_a_few_times(self):
        s = self.server(workers=1, workers_min_spare=0)
        (w,) = s.pids("worker")
        to_child, to_master = channel(s.pid, w)
        bad = s.counter("chan_bad_packets")
        for i in range(300):
            send_packet(to_child, b"\x01" * (i % 23 + 1))
        to_child.close()
        to_master.close()
        harness.wait_until(lambda: s.counter("chan_bad_packets") >= bad + 300, 5,
                           what="300 bad packets counted")
        self.assertLessEqual(len(log_lines(s, "malformed channel packet", w)), 6)
        self.assertEqual(s.pids("worker"), [w])

    def test_forged_messages_to_the_master_do_not_move_its_counts(self):
        """Well-formed messages a child of that role never sends (DONE from an
        api worker, CLOSED from a media worker, QUIT from the store) are
        counted and ignored: the pool's accounting stays right, so a
        one-worker pool still takes exactly one call."""
        s = self.server(workers=1, workers_min_spare=0, workers_max=1)
        call = start_call(self, s)
        (w,) = s.pids("worker")
        forged = [(w, MSG.pack(CHAN_CLOSED, 0, 0, 0, 0, 0))]
        forged += [(s.pids("api")[0], MSG.pack(CHAN_DONE, 0, 0, 1, 0, 0))]
        forged += [(s.pids("store")[0], MSG.pack(CHAN_QUIT, 0, 0, 0, 0, 0))]
        bad = s.counter("chan_bad_packets")
        for pid, pkt in forged:
            to_child, to_master = channel(s.pid, pid)
            for _ in range(3):
                send_packet(to_master, pkt)
            to_child.close()
            to_master.close()
        harness.wait_until(lambda: s.counter("chan_bad_packets") >= bad + 9, 5,
                           what="9 forged messages counted")
        with self.assertRaises(HandshakeRefused) as cm:
            WebSocket("127.0.0.1", s.media_port, "/twilio/media").close()
        self.assertEqual(cm.exception.status, 503, "the busy worker was handed a second call")
        assert_echoing(self, call, time.monotonic())
        self.assertEqual(call.hangup(), 1000)
        status, nxt = harness.wait_until(lambda: (lambda r: r if r[0] == "ok" else None)(
            try_call(s)), 5, interval=0.2, what="the next call")
        nxt.hangup()

    def test_bytes_on_the_death_pipe_do_not_stop_the_workers(self):
        """Only EOF on the parent-death pipe means the master is gone: bytes
        there are read, counted and ignored. (Taken for EOF, every worker
        would finish its call and leave, and every new one at once.)"""
        s = self.server(workers=2, workers_min_spare=1)
        call = start_call(self, s)
        workers = s.pids("worker")
        bad = s.counter("chan_bad_packets")
        fd = death_pipe_writer(s.pid, workers[0])
        try:
            os.write(fd, b"garbage\n" * 16)
        finally:
            os.close(fd)
        harness.wait_until(lambda: s.counter("chan_bad_packets") > bad, 3,
                           what="the bytes on the death pipe counted")
        t = time.monotonic()
        assert_echoing(self, call, t)
        time.sleep(0.5)  # time for a worker that took it for EOF to leave
        self.assertEqual(s.pids("worker"), workers)
        self.assertFalse(log_lines(s, "the master is gone"))
        self.assertEqual(call.hangup(), 1000)
        status, nxt = try_call(s)
        self.assertEqual(status, "ok", nxt)
        nxt.hangup()


if __name__ == "__main__":
    unittest.main()
