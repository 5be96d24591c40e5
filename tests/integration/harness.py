"""Integration-test harness for voxbridge: starts the real server on free loopback
ports with a config written per test, finds its processes by their titles, reads
its metrics and spool, drives voxbridge-callsim, and always kills everything it
started when the test ends. Python 3 standard library only; run by run.py.

Environment:
  VB_BUILDDIR      build directory (default: the current directory)
  VOXBRIDGE_BIN    the server (default: $VB_BUILDDIR/voxbridge)
  CALLSIM_BIN      the call simulator (default: $VB_BUILDDIR/voxbridge-callsim)
  VB_SRCDIR        source tree (default: two levels above this file)
  VB_KEEP=1        keep each test's temporary directory
  VB_SERVER_USER   run the servers as this account (when the tests run as root)
"""

import ctypes
import http.client
import json
import os
import pwd
import shutil
import signal
import socket
import subprocess
import sys
import tempfile
import time
import unittest

HERE = os.path.dirname(os.path.abspath(__file__))
TOKEN = "integration-test-auth-token-0123456789"
NUMBER = "+15550000001"
CALLER = "+15551234567"
ROLES = ("master", "worker", "broker", "store", "api")


def builddir():
    return os.path.abspath(os.environ.get("VB_BUILDDIR", os.getcwd()))


def srcdir():
    return os.path.abspath(os.environ.get("VB_SRCDIR", os.path.join(HERE, "..", "..")))


def voxbridge_bin():
    return os.path.abspath(os.environ.get("VOXBRIDGE_BIN", os.path.join(builddir(), "voxbridge")))


def callsim_bin():
    return os.path.abspath(
        os.environ.get("CALLSIM_BIN", os.path.join(builddir(), "voxbridge-callsim")))


def _become_subreaper():
    """Orphans of the server (children whose master died) are re-parented to us,
    so teardown can still find and reap them."""
    try:
        libc = ctypes.CDLL(None, use_errno=True)
        PR_SET_CHILD_SUBREAPER = 36
        libc.prctl(PR_SET_CHILD_SUBREAPER, 1, 0, 0, 0)
    except (OSError, AttributeError):
        pass


_become_subreaper()


class HarnessError(AssertionError):
    pass


def wait_until(pred, timeout, interval=0.05, what=None):
    """Polls PRED until it returns a true value (returned) or TIMEOUT seconds pass
    (raises HarnessError naming WHAT)."""
    deadline = time.monotonic() + timeout
    last_exc = None
    while True:
        try:
            v = pred()
            if v:
                return v
        except (OSError, ValueError, http.client.HTTPException) as e:
            last_exc = e
        if time.monotonic() >= deadline:
            msg = "timed out after %.1f s waiting for %s" % (
                timeout, what or getattr(pred, "__name__", "a condition"))
            if last_exc is not None:
                msg += " (last error: %r)" % (last_exc,)
            raise HarnessError(msg)
        time.sleep(interval)


def recv_until_eof(sock):
    """Everything the peer sends until it closes."""
    data = b""
    while True:
        chunk = sock.recv(4096)
        if not chunk:
            return data
        data += chunk


def free_port():
    s = socket.socket(socket.AF_INET, socket.SOCK_STREAM)
    s.bind(("127.0.0.1", 0))
    port = s.getsockname()[1]
    s.close()
    return port


# ---------------------------------------------------------------- /proc helpers

def _read(path, mode="r"):
    try:
        with open(path, mode) as f:
            return f.read()
    except (FileNotFoundError, ProcessLookupError, PermissionError):
        return None


def proc_table():
    """{pid: (ppid, state, title)} for every live process."""
    table = {}
    for name in os.listdir("/proc"):
        if not name.isdigit():
            continue
        pid = int(name)
        stat = _read("/proc/%d/stat" % pid)
        if stat is None:
            continue
        rest = stat[stat.rfind(")") + 2:].split()
        state, ppid = rest[0], int(rest[1])
        raw = _read("/proc/%d/cmdline" % pid, "rb") or b""
        title = raw.replace(b"\0", b" ").decode("utf-8", "replace").strip()
        table[pid] = (ppid, state, title)
    return table


def descendants(root, table=None):
    table = table if table is not None else proc_table()
    children = {}
    for pid, (ppid, _, _) in table.items():
        children.setdefault(ppid, []).append(pid)
    out, todo = [], [root]
    while todo:
        p = todo.pop()
        for c in children.get(p, []):
            out.append(c)
            todo.append(c)
    return out


def live_pids(pids):
    """Those of PIDS still running (zombies do not count)."""
    table = proc_table()
    return [p for p in pids if p in table and table[p][1] != "Z"]


def _tcp_sockets():
    """Yields (local_port, remote_port, state, inode) of IPv4/IPv6 TCP sockets."""
    for path in ("/proc/net/tcp", "/proc/net/tcp6"):
        text = _read(path)
        if not text:
            continue
        for line in text.splitlines()[1:]:
            f = line.split()
            lport = int(f[1].rsplit(":", 1)[1], 16)
            rport = int(f[2].rsplit(":", 1)[1], 16)
            yield lport, rport, int(f[3], 16), int(f[9])


def _socket_inode_list(pid):
    """The socket inode of each of PID's descriptors (one entry per descriptor)."""
    inodes = []
    try:
        fds = os.listdir("/proc/%d/fd" % pid)
    except OSError:
        return inodes
    for fd in fds:
        try:
            target = os.readlink("/proc/%d/fd/%s" % (pid, fd))
        except OSError:
            continue
        if target.startswith("socket:["):
            inodes.append(int(target[8:-1]))
    return inodes


def _socket_inodes(pid):
    return set(_socket_inode_list(pid))


TCP_ESTABLISHED = 1


# ------------------------------------------------------------------ call simulator

class CallsimResult:
    """A finished voxbridge-callsim run: exit code, the JSON summary (last stdout
    line), and its output for failure messages."""

    def __init__(self, argv, rc, stdout, stderr):
        self.argv = argv
        self.rc = rc
        self.stdout = stdout
        self.stderr = stderr
        self.summary = None
        for line in reversed(stdout.strip().splitlines()):
            line = line.strip()
            if line.startswith("{"):
                try:
                    self.summary = json.loads(line)
                except ValueError:
                    pass
                break

    def __getitem__(self, key):
        if self.summary is None:
            raise HarnessError("callsim printed no JSON summary:\n" + self.describe())
        if key not in self.summary:
            raise HarnessError("callsim summary has no %r:\n%s" % (key, self.describe()))
        return self.summary[key]

    def get(self, key, default=None):
        return (self.summary or {}).get(key, default)

    def per_call(self):
        return self.get("per_call") or []

    def describe(self):
        tail = "\n".join(self.stderr.strip().splitlines()[-15:])
        return "$ %s\nexit %s\nstdout (last 2000 chars):\n%s\nstderr (tail):\n%s" % (
            " ".join(self.argv), self.rc, self.stdout[-2000:], tail)


class CallsimRun:
    """voxbridge-callsim running in the background."""

    def __init__(self, argv, proc, out_path, err_path):
        self.argv = argv
        self.proc = proc
        self.out_path = out_path
        self.err_path = err_path
        self.started = time.monotonic()
        self.result = None

    def wait(self, timeout=120):
        try:
            rc = self.proc.wait(timeout)
        except subprocess.TimeoutExpired:
            self.kill()
            raise HarnessError("callsim still running after %s s: %s" % (
                timeout, " ".join(self.argv)))
        with open(self.out_path, errors="replace") as f:
            out = f.read()
        with open(self.err_path, errors="replace") as f:
            err = f.read()
        self.result = CallsimResult(self.argv, rc, out, err)
        return self.result

    def running(self):
        return self.proc.poll() is None

    def kill(self):
        if self.proc.poll() is None:
            try:
                os.killpg(self.proc.pid, signal.SIGKILL)
            except ProcessLookupError:
                pass
            self.proc.wait()


# ------------------------------------------------------------------------ server

def default_settings(api_port, media_port, state_dir, token=TOKEN):
    """The config every test starts from: loopback ports, small pools, one echo
    assistant answering NUMBER."""
    return {
        "listen_api": "127.0.0.1:%d" % api_port,
        "listen_media": "127.0.0.1:%d" % media_port,
        "public_url": "http://127.0.0.1:%d" % api_port,
        "public_media_url": "ws://127.0.0.1:%d" % media_port,
        "twilio_auth_token": token,
        "state_dir": state_dir,
        "workers": 2,
        "workers_min_spare": 1,
        "workers_max": 8,
        "calls_per_worker": 1,
        "brokers": 1,
        "api_workers": 1,
        "shutdown_timeout": 20,
        "log_level": "info",
        "assistant.echo.mode": "echo",
        "assistant.echo.echo_delay_ms": 0,
        "number." + NUMBER: "echo",
    }


def config_text(settings, extra_lines=()):
    lines = ["# written by tests/integration/harness.py"]
    lines += ["%s = %s" % (k, v) for k, v in settings.items()]
    lines += list(extra_lines)
    return "\n".join(lines) + "\n"


class Server:
    """One voxbridge instance for one test.

    Server(workers=2, brokers=1, ...) overrides config keys; keys with dots
    (assistant.echo.echo_delay_ms) are passed as a dict: Server(extra={...}).
    start() writes the config, starts the master and waits for /health/live."""

    def __init__(self, extra=None, user=None, env=None, rlimits=None, **overrides):
        self.dir = tempfile.mkdtemp(prefix="vb-integ-")
        # {resource.RLIMIT_*: (soft, hard)} set in the master before it starts
        # (its children inherit them): e.g. RLIMIT_NOFILE for `ulimit -n 128`
        self.rlimits = dict(rlimits or {})
        # added to the server's environment (not callsim's): e.g. LD_PRELOAD
        self.env = dict(env or {})
        self.api_port = free_port()
        self.media_port = free_port()
        self.token = TOKEN
        self.number = NUMBER
        self.state_dir = os.path.join(self.dir, "state")
        os.makedirs(self.state_dir)
        self.conf_path = os.path.join(self.dir, "voxbridge.conf")
        self.log_path = os.path.join(self.dir, "server.log")
        # run as this account (root only); VB_SERVER_USER sets it for every test
        self.user = user or os.environ.get("VB_SERVER_USER") or None
        self.proc = None
        self.log_file = None
        self.callsims = []
        self.returncode = None
        self.log_tail_text = ""
        self.log_text = ""
        self.settings = self.default_settings()
        self.settings.update(overrides)
        self.settings.update(extra or {})

    # ---- config
    def default_settings(self):
        return default_settings(self.api_port, self.media_port, self.state_dir, self.token)

    def config_text(self, settings=None, extra_lines=()):
        return config_text(self.settings if settings is None else settings, extra_lines)

    def write_config(self, text=None, **changes):
        """Rewrites the config file: TEXT verbatim, or the current settings with
        CHANGES (use set_keys for dotted keys)."""
        if text is None:
            self.settings.update(changes)
            text = self.config_text()
        tmp = self.conf_path + ".tmp"
        with open(tmp, "w") as f:
            f.write(text)
        os.replace(tmp, self.conf_path)
        if self.user:
            self._chown(self.conf_path)

    def set_keys(self, changes):
        self.settings.update(changes)
        self.write_config()

    # ---- life cycle
    def start(self, timeout=15):
        """Starts the master and waits for /health/live; on failure everything is
        stopped (and the log kept in log_text) before the error is raised."""
        try:
            return self._start(timeout)
        except BaseException:
            self.stop()
            raise

    def _start(self, timeout):
        if not os.access(voxbridge_bin(), os.X_OK):
            raise HarnessError("no server binary at %s (build first, or set VOXBRIDGE_BIN)"
                               % voxbridge_bin())
        self.write_config()
        self.log_file = open(self.log_path, "ab")
        kwargs = {}
        if self.user:
            self._chown(self.dir, recursive=True)
            pw = pwd.getpwnam(self.user)
            kwargs.update(user=pw.pw_uid, group=pw.pw_gid, extra_groups=[])
        if self.env:
            kwargs["env"] = dict(os.environ, **self.env)
        if self.rlimits:
            kwargs["preexec_fn"] = self._apply_rlimits
        self.proc = subprocess.Popen(
            [voxbridge_bin(), "-c", self.conf_path], stdin=subprocess.DEVNULL,
            stdout=self.log_file, stderr=subprocess.STDOUT, start_new_session=True,
            cwd=self.dir, **kwargs)
        self.pid = self.proc.pid

        def live():
            if self.proc.poll() is not None:
                raise HarnessError("voxbridge exited with %s during start-up:\n%s" % (
                    self.proc.returncode, self.log_tail()))
            status, _, _ = self.http("GET", "/health/live", timeout=1)
            return status == 200

        wait_until(live, timeout, what="GET /health/live to answer 200")
        return self

    def _apply_rlimits(self):
        import resource
        for res, limits in self.rlimits.items():
            resource.setrlimit(res, limits)

    def _chown(self, path, recursive=False):
        pw = pwd.getpwnam(self.user)
        os.chown(path, pw.pw_uid, pw.pw_gid)
        if recursive:
            for root, dirs, files in os.walk(path):
                for n in dirs + files:
                    os.chown(os.path.join(root, n), pw.pw_uid, pw.pw_gid)

    def alive(self):
        return self.proc is not None and self.proc.poll() is None

    def stop(self):
        """Kills the server and everything it started (any state, any failure)."""
        for cs in self.callsims:
            cs.kill()
        pids = []
        if self.proc is not None:
            pids = descendants(self.proc.pid)
            # the master first, so that it does not log its children's deaths
            if self.proc.poll() is None:
                try:
                    os.kill(self.proc.pid, signal.SIGKILL)
                except ProcessLookupError:
                    pass
        for p in pids:
            try:
                os.kill(p, signal.SIGKILL)
            except ProcessLookupError:
                pass
        if self.proc is not None:
            try:
                os.killpg(self.proc.pid, signal.SIGKILL)
            except (ProcessLookupError, PermissionError):
                pass
            self.proc.wait()
            self.returncode = self.proc.returncode
        # a child forked while we were killing is now ours (subreaper)
        me = os.getpid()
        for pid, (ppid, _, title) in proc_table().items():
            if ppid == me and title.startswith("voxbridge: ") and pid not in pids:
                try:
                    os.kill(pid, signal.SIGKILL)
                except ProcessLookupError:
                    pass
                pids.append(pid)
        self._reap_orphans(pids)
        if self.log_file is not None:
            self.log_file.close()
            self.log_file = None
        self.log_text = self.log()
        self.log_tail_text = "\n".join(self.log_text.splitlines()[-80:])
        if os.environ.get("VB_KEEP") != "1":
            shutil.rmtree(self.dir, ignore_errors=True)

    @staticmethod
    def _reap_orphans(pids):
        """Children of the master re-parented to us (subreaper): reap them."""
        deadline = time.monotonic() + 5
        for p in pids:
            while True:
                try:
                    done, _ = os.waitpid(p, os.WNOHANG)
                except ChildProcessError:
                    break  # not ours (reaped by init or by Popen)
                if done or time.monotonic() > deadline:
                    break
                time.sleep(0.01)

    def __enter__(self):
        return self.start()

    def __exit__(self, *exc):
        self.stop()
        return False

    @staticmethod
    def wait_until(pred, timeout, interval=0.05, what=None):
        return wait_until(pred, timeout, interval, what)

    # ---- signals
    def signal(self, sig):
        os.kill(self.pid, sig)

    def sighup(self):
        self.signal(signal.SIGHUP)

    def sigterm(self):
        self.signal(signal.SIGTERM)

    def wait_exit(self, timeout):
        """The master's exit status once it exits within TIMEOUT seconds."""
        try:
            self.returncode = self.proc.wait(timeout)
        except subprocess.TimeoutExpired:
            raise HarnessError("voxbridge master still running %s s later" % timeout)
        return self.returncode

    # ---- processes
    def pids(self, role):
        """Live (non-zombie) pids with the title 'voxbridge: ROLE' among the
        master's descendants ('master' gives the master itself)."""
        table = proc_table()
        want = "voxbridge: " + role
        cands = descendants(self.pid, table)
        if role == "master":
            cands = [self.pid]
        out = []
        for p in cands:
            entry = table.get(p)
            if entry and entry[1] != "Z" and entry[2].startswith(want):
                out.append(p)
        return sorted(out)

    def all_pids(self):
        return sorted([self.pid] + descendants(self.pid))

    def media_connections(self):
        """{pid: [client port, ...]} of the processes holding an established
        connection accepted on the media listener."""
        socks = {}
        for lport, rport, state, inode in _tcp_sockets():
            if lport == self.media_port and state == TCP_ESTABLISHED and inode:
                socks[inode] = rport
        out = {}
        for pid in self.pids("worker"):
            ports = [socks[i] for i in _socket_inodes(pid) if i in socks]
            if ports:
                out[pid] = ports
        return out

    def media_socket_fds(self):
        """{pid: {inode: descriptors}} of the media workers' descriptors for sockets
        accepted on the media listener, in any state (a connection the worker has
        closed but still holds shows up as CLOSE_WAIT)."""
        media = {inode for lport, _, _, inode in _tcp_sockets()
                 if lport == self.media_port and inode}
        out = {}
        for pid in self.pids("worker"):
            counts = {}
            for inode in _socket_inode_list(pid):
                if inode in media:
                    counts[inode] = counts.get(inode, 0) + 1
            if counts:
                out[pid] = counts
        return out

    def worker_serving(self, client_port):
        """The worker pid holding the media connection whose client side is
        CLIENT_PORT, or None."""
        for pid, ports in self.media_connections().items():
            if client_port in ports:
                return pid
        return None

    # ---- HTTP
    def http(self, method, path, body=None, headers=None, timeout=5, port=None):
        conn = http.client.HTTPConnection("127.0.0.1", port or self.api_port, timeout=timeout)
        try:
            conn.request(method, path, body=body, headers=headers or {})
            r = conn.getresponse()
            data = r.read()
            return r.status, dict((k.lower(), v) for k, v in r.getheaders()), data
        finally:
            conn.close()

    def metrics(self):
        """Every sample of /metrics as {name: value}."""
        status, _, body = self.http("GET", "/metrics")
        if status != 200:
            raise HarnessError("GET /metrics answered %d" % status)
        out = {}
        for line in body.decode().splitlines():
            if not line or line.startswith("#"):
                continue
            name, _, value = line.rpartition(" ")
            out[name.strip()] = float(value)
        return out

    def counter(self, name):
        """voxbridge_NAME_total (0 when absent)."""
        return self.metrics().get("voxbridge_%s_total" % name, 0)

    def health(self):
        status, _, body = self.http("GET", "/health")
        return status, json.loads(body.decode() or "null")

    # ---- records
    def spool_path(self):
        return os.path.join(self.state_dir, "spool", "events.jsonl")

    def spool(self):
        """The call records written so far (an incomplete last line is skipped)."""
        text = _read(self.spool_path())
        if not text:
            return []
        out = []
        for line in text.splitlines(True):
            if not line.endswith("\n"):
                break
            line = line.strip()
            if line:
                out.append(json.loads(line))
        return out

    # ---- log
    def log(self):
        if self.log_file is not None:
            self.log_file.flush()
        if os.path.exists(self.log_path):
            return _read(self.log_path, "rb").decode("utf-8", "replace")
        return self.log_text

    def log_tail(self, n=60):
        return "\n".join(self.log().splitlines()[-n:])

    def wait_log(self, needle, timeout=5):
        return wait_until(lambda: needle in self.log(), timeout, what="%r in the server log"
                          % needle)

    # ---- callsim
    def callsim_argv(self, *args, to=None):
        argv = [callsim_bin(), "--url", "http://127.0.0.1:%d" % self.api_port,
                "--token", self.token, "--to", to or self.number, "--from", CALLER]
        return argv + [str(a) for a in args]

    def callsim(self, *args, background=False, timeout=120, to=None):
        """Runs voxbridge-callsim against this server. In the foreground returns a
        CallsimResult; with background=True a CallsimRun (call .wait())."""
        if not os.access(callsim_bin(), os.X_OK):
            raise HarnessError("no voxbridge-callsim at %s" % callsim_bin())
        argv = self.callsim_argv(*args, to=to)
        n = len(self.callsims)
        out_path = os.path.join(self.dir, "callsim-%d.out" % n)
        err_path = os.path.join(self.dir, "callsim-%d.err" % n)
        env = dict(os.environ)
        # In a sanitizer build, callsim's own leaks at exit would turn its exit status
        # to 1 and hide what it measured of the server; the server keeps LSan on.
        env.setdefault("ASAN_OPTIONS", "detect_leaks=0")
        with open(out_path, "wb") as out, open(err_path, "wb") as err:
            proc = subprocess.Popen(argv, stdin=subprocess.DEVNULL, stdout=out, stderr=err,
                                    start_new_session=True, cwd=self.dir, env=env)
        run = CallsimRun(argv, proc, out_path, err_path)
        self.callsims.append(run)
        if background:
            return run
        return run.wait(timeout)


# ------------------------------------------------------------------ PostgreSQL hook

def running_as_root():
    return os.geteuid() == 0


def unprivileged_user():
    """The account the server runs as when the tests run as root and need it to
    drop privileges (PostgreSQL refuses to run as root)."""
    for name in ("voxbridge", "nobody"):
        try:
            pwd.getpwnam(name)
            return name
        except KeyError:
            continue
    return None


def start_postgres():
    """A throw-away PostgreSQL cluster on loopback (tests/integration/services.py):
    when we are root it runs as an unprivileged system user, since PostgreSQL
    refuses to run as root; the servers connect over TCP and need no change."""
    import services
    return services.start_postgres()


# -------------------------------------------------------------------- test base

SANITIZER_MARKERS = ("ERROR: AddressSanitizer", "ERROR: LeakSanitizer", "runtime error:",
                     "WARNING: ThreadSanitizer")


class ServerTestCase(unittest.TestCase):
    """Base class: self.server(...) starts a Server that is always stopped when
    the test ends; if the test failed, the tail of each server's log (and of
    each callsim's stderr) is printed."""

    def setUp(self):
        self._servers = []

    def server(self, start=True, **kw):
        s = Server(**kw)
        self._servers.append(s)
        self.addCleanup(self._check_sanitizers, s)  # runs after stop (LIFO)
        self.addCleanup(s.stop)
        if start:
            s.start()
        return s

    def run(self, result=None):
        before = (len(result.failures) + len(result.errors)) if result is not None else 0
        out = super().run(result)
        if result is not None and len(result.failures) + len(result.errors) > before:
            for s in getattr(self, "_servers", []):
                sys.stderr.write("\n----- server log of %s (tail; dir %s) -----\n%s\n" % (
                    self.id(), s.dir, s.log_tail_text or "(empty)"))
        return out

    def _check_sanitizers(self, s):
        found = [line for line in s.log_text.splitlines()
                 if any(m in line for m in SANITIZER_MARKERS)]
        if found:
            self.fail("sanitizer reports in the server log:\n" + "\n".join(found[:20]))

    # assertions that print the server log tail in their message
    def assertCallsim(self, res, cond, msg):
        if not cond:
            self.fail("%s\n%s" % (msg, res.describe()))
