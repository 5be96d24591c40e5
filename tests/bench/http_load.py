#!/usr/bin/env python3
"""The api listener under load and attack: fault matrix D4, D5 and D7
(../shared/reference/fault-matrix.md section D), on loopback only.

Starts its own voxbridge per scenario (temp config on free loopback ports,
echo assistant, one number, twilio_auth_token, the connection caps an
operator would set: api_max_connections and api_max_connections_per_ip) and:

- D4 webhook flood: `wrk -t2 -c64` POSTs to /twilio/status and /twilio/voice
  (half each) with precomputed VALID X-Twilio-Signature headers, then a run
  with INVALID ones (wrong token, no header, truncated, signed over other
  parameters), each while N echo calls run (voxbridge-callsim, as
  echo_capacity.py does); the same calls also run with no flood, before and
  after, as the baseline. Prints requests/s, the status codes wrk saw, the
  server's twilio_bad_signatures counter against wrk's count of 403s, and how
  the calls' lateness p99, rtt p99 and lost frames moved against the
  baseline. Bar: invalid -> all 403; media p99 degrades <= 10 %.
- D7 throughput: `h2load --h1 -n 100000 -c 100` on /health/live, /health and
  /twilio/status (one body, signed once: a status callback is idempotent on
  CallSid + SequenceNumber). Prints req/s and latency percentiles (from
  h2load's per-request log).
- D5 slow attacks: `slowhttptest -H` (slowloris), `-B` (slow body), `-X`
  (slow read) with 500 connections from 127.0.0.1 for --duration s (60 by
  default; rounds are repeated while time is left, since slowhttptest stops
  once its connections are gone), while a probe from 127.0.0.2 times a
  GET /health/live every 0.5 s and the server's fds are counted from /proc.
  Bar: every probe < 200 ms; no fd exhaustion; the caps hold; the server
  answers afterwards and its fds come back.

Each scenario prints human-readable lines and one JSON line ("{...}").
Not part of `make check`; run by hand:

usage: http_load.py BUILD_DIR [--only d4,d5,d7] [--calls 50] [--flood-seconds 10]
                    [--duration 60] [--connections 500] [--d5-modes H,B,X]
                    [--d7-requests 100000] [--d7-clients 100] [--wrk-nice 0]
                    [--api-nice 0] [--api-workers 2] [--per-ip 64] [--max-conns 512]
                    [--nofile 0] [--keep]
"""
import argparse
import json
import os
import resource
import shutil
import signal
import socket
import subprocess
import sys
import tempfile
import threading
import time
import urllib.parse
import uuid

HERE = os.path.dirname(os.path.abspath(__file__))
sys.path.insert(0, os.path.join(HERE, "..", "integration"))
from wsclient import twilio_signature, voice_params  # noqa: E402
import wrkload  # noqa: E402

TOKEN = "bench-token-0123456789"
NUMBER = "+15550000001"
CALLER = "+15551234567"
CLK = os.sysconf("SC_CLK_TCK")


# ------------------------------------------------------------------ helpers

def free_port():
    s = socket.socket()
    s.bind(("127.0.0.1", 0))
    port = s.getsockname()[1]
    s.close()
    return port


def pct(xs, q):
    xs = sorted(xs)
    if not xs:
        return None
    return xs[min(len(xs) - 1, int(q / 100.0 * len(xs)))]


def http_raw(port, method, path, src="127.0.0.3", body=b"", headers=None, timeout=5):
    """One request on a fresh connection from SRC (any 127/8 address is
    loopback: a different client address from the load's 127.0.0.1, so the
    per-address cap does not apply to it). (status, body, seconds)."""
    t0 = time.monotonic()
    s = socket.socket()
    s.settimeout(timeout)
    try:
        s.bind((src, 0))
        s.connect(("127.0.0.1", port))
        head = "%s %s HTTP/1.1\r\nHost: 127.0.0.1\r\nConnection: close\r\n" % (method, path)
        for k, v in (headers or {}).items():
            head += "%s: %s\r\n" % (k, v)
        if body:
            head += "Content-Length: %d\r\n" % len(body)
        s.sendall(head.encode() + b"\r\n" + body)
        data = b""
        while True:
            chunk = s.recv(65536)
            if not chunk:
                break
            data += chunk
    finally:
        s.close()
    dt = time.monotonic() - t0
    line = data.split(b"\r\n", 1)[0].split()
    status = int(line[1]) if len(line) > 1 else 0
    return status, data.partition(b"\r\n\r\n")[2], dt


def proc_table():
    table = {}
    for name in os.listdir("/proc"):
        if not name.isdigit():
            continue
        try:
            with open("/proc/%s/stat" % name) as f:
                ppid = int(f.read().rsplit(")", 1)[1].split()[1])
            with open("/proc/%s/cmdline" % name, "rb") as f:
                title = f.read().split(b"\0")[0].decode(errors="replace")
            table[int(name)] = (ppid, title)
        except (OSError, ValueError, IndexError):
            pass
    return table


def descendants(root):
    table = proc_table()
    kids = {}
    for pid, (ppid, _) in table.items():
        kids.setdefault(ppid, []).append(pid)
    out, todo = [], [root]
    while todo:
        p = todo.pop()
        out.append(p)
        todo.extend(kids.get(p, []))
    return [(p, table.get(p, (0, ""))[1]) for p in out]


def fd_count(pid):
    try:
        return len(os.listdir("/proc/%d/fd" % pid))
    except OSError:
        return None


def fd_limit(pid):
    try:
        with open("/proc/%d/limits" % pid) as f:
            for line in f:
                if line.startswith("Max open files"):
                    return int(line.split()[3])
    except (OSError, ValueError):
        pass
    return None


def cpu_seconds(pids):
    total = 0
    for pid in pids:
        try:
            with open("/proc/%d/stat" % pid) as f:
                fields = f.read().rsplit(")", 1)[1].split()
            total += int(fields[11]) + int(fields[12])
        except (OSError, IndexError):
            pass
    return total / CLK


# ------------------------------------------------------------------ the server

class Server:
    def __init__(self, args, tmp, name, workers=8):
        self.args, self.dir = args, os.path.join(tmp, name)
        os.makedirs(self.dir)
        self.api, self.media = free_port(), free_port()
        self.public_url = "http://127.0.0.1:%d" % self.api
        conf = os.path.join(self.dir, "vb.conf")
        with open(conf, "w") as f:
            f.write("""listen_api = 127.0.0.1:{api}
listen_media = 127.0.0.1:{media}
public_url = http://127.0.0.1:{api}
public_media_url = ws://127.0.0.1:{media}
twilio_auth_token = {token}
state_dir = {dir}/state
workers = {workers}
workers_min_spare = 4
workers_max = {workers}
calls_per_worker = 1
brokers = 2
api_workers = {api_workers}
api_max_connections = {max_conns}
api_max_connections_per_ip = {per_ip}
log_level = warn
assistant.echo.mode = echo
number.{number} = echo
""".format(api=self.api, media=self.media, token=TOKEN, dir=self.dir, workers=workers,
           api_workers=args.api_workers, max_conns=args.max_conns, per_ip=args.per_ip,
           number=NUMBER))
        self.log_path = os.path.join(self.dir, "server.log")
        log = open(self.log_path, "w")

        def limits():
            if args.nofile:
                resource.setrlimit(resource.RLIMIT_NOFILE, (args.nofile, args.nofile))
        self.proc = subprocess.Popen([os.path.join(args.build, "voxbridge"), "-c", conf],
                                     stdin=subprocess.DEVNULL, stderr=log, stdout=log,
                                     preexec_fn=limits, start_new_session=True)
        for _ in range(150):
            try:
                if self.get("/health/live")[0] == 200:
                    time.sleep(0.5)  # let the pool fill
                    for pid in self.pids("api") if args.api_nice else ():
                        os.setpriority(os.PRIO_PROCESS, pid, args.api_nice)
                    return
            except OSError:
                pass
            if self.proc.poll() is not None:
                break
            time.sleep(0.1)
        self.stop()
        raise SystemExit("server did not come up; see " + self.log_path)

    def get(self, path, src="127.0.0.3", timeout=5):
        return http_raw(self.api, "GET", path, src=src, timeout=timeout)

    def metrics(self):
        status, body, _ = self.get("/metrics")
        if status != 200:
            raise RuntimeError("GET /metrics answered %d" % status)
        out = {}
        for line in body.decode().splitlines():
            if line and not line.startswith("#"):
                k, _, v = line.rpartition(" ")
                out[k] = float(v)
        return out

    def counter(self, name):
        return int(self.metrics().get("voxbridge_%s_total" % name, 0))

    def processes(self):
        return descendants(self.proc.pid)

    def pids(self, role):
        return [p for p, t in self.processes() if t == "voxbridge: " + role]

    def fds(self):
        """{pid: (title, open fds)} of every server process."""
        return {p: (t, fd_count(p)) for p, t in self.processes()}

    def alive(self):
        return self.proc.poll() is None

    def log_tail(self, n=10):
        try:
            with open(self.log_path, errors="replace") as f:
                return "".join(f.readlines()[-n:])
        except OSError:
            return ""

    def stop(self):
        if self.proc.poll() is None:
            self.proc.send_signal(signal.SIGQUIT)
            try:
                self.proc.wait(timeout=30)
            except subprocess.TimeoutExpired:
                os.killpg(self.proc.pid, signal.SIGKILL)
                self.proc.wait()
        # SIGQUIT kills the children; anything left of the group goes too
        try:
            os.killpg(self.proc.pid, signal.SIGKILL)
        except (ProcessLookupError, PermissionError):
            pass


# ------------------------------------------------------------------ calls (D4)

def start_calls(args, srv, tag):
    out = open(os.path.join(srv.dir, "callsim-%s.out" % tag), "w+")
    p = subprocess.Popen(
        [os.path.join(args.build, "voxbridge-callsim"), "--url", srv.public_url,
         "--token", TOKEN, "--to", NUMBER, "--from", CALLER, "--calls", str(args.calls),
         "--duration", str(args.flood_seconds), "--ramp-ms", "10", "--tail-ms", "1000",
         "--quiet"], stdout=out, stderr=subprocess.DEVNULL, start_new_session=True)
    return p, out


def finish_calls(p, out, timeout):
    p.wait(timeout=timeout)
    out.seek(0)
    lines = [x for x in out.read().splitlines() if x.startswith("{")]
    out.close()
    if not lines:
        return {"error": "callsim printed no summary (exit %s)" % p.returncode}
    s = json.loads(lines[-1])
    return {"answered": s["answered"], "calls": s["calls"],
            "lost_frames": s["frames_sent"] - s["frames_received"],
            "lateness_p99_ms": s.get("lateness_ms", {}).get("p99"),
            "rtt_p99_ms": s["rtt_ms"]["p99"], "max_gap_ms": s["max_gap_ms"],
            "gaps_over_40ms": s["gaps_over_40ms"], "webhook_status": s.get("http_status")}


# ------------------------------------------------------------------ wrk (D4)

def wrk_requests(srv, valid, n=2000):
    """N (path, body, signature or None) requests: status callbacks and voice
    webhooks, half each, every one with its own CallSid."""
    out = []
    for i in range(n):
        if i % 2 == 0:
            path = "/twilio/status"
            params = {"AccountSid": "AC" + "0" * 32, "ApiVersion": "2010-04-01",
                      "CallSid": "CA" + uuid.uuid4().hex, "CallStatus": "completed",
                      "SequenceNumber": str(i % 7), "CallDuration": "12", "From": CALLER,
                      "To": NUMBER, "Direction": "inbound",
                      "CallbackSource": "call-progress-events"}
        else:
            path = "/twilio/voice"
            params = voice_params(NUMBER, CALLER)
        body = urllib.parse.urlencode(params)
        url = srv.public_url + path
        if valid:
            sig = twilio_signature(TOKEN, url, params)
        else:
            sig = wrkload.forged_signature(TOKEN, url, params, i // 2)
        out.append((path, body, sig))
    return out


def run_wrk(args, srv, script, seconds, threads=2, conns=64, nice=0):
    return wrkload.run(script, srv.public_url + "/", seconds, threads, conns, nice)


def degradation(base, flood):
    """% change of FLOOD over BASE (None when BASE is 0)."""
    if base is None or flood is None:
        return None
    if base <= 0:
        return 0.0 if flood <= 0 else None
    return round(100.0 * (flood - base) / base, 1)


def d4(args, tmp):
    for tool in ("wrk", "nice"):
        if not shutil.which(tool):
            return emit({"scenario": "d4", "skipped": "%s is not installed" % tool})
    srv = Server(args, tmp, "d4", workers=args.calls + 8)
    try:
        valid_lua = os.path.join(srv.dir, "valid.lua")
        invalid_lua = os.path.join(srv.dir, "invalid.lua")
        wrkload.write_script(valid_lua, wrk_requests(srv, True))
        wrkload.write_script(invalid_lua, wrk_requests(srv, False))
        timeout = args.flood_seconds * 3 + args.calls + 30
        runs = {}
        for tag, script in (("baseline", None), ("valid", valid_lua),
                            ("invalid", invalid_lua), ("baseline2", None)):
            bad0 = srv.counter("twilio_bad_signatures")
            ok0 = srv.counter("twilio_status_callbacks") + srv.counter("twilio_status_duplicates")
            api_cpu0 = cpu_seconds(srv.pids("api"))
            calls, out = start_calls(args, srv, tag)
            flood = None
            if script:
                time.sleep(args.calls * 0.01 + 0.3)  # the calls' ramp
                flood = run_wrk(args, srv, script, args.flood_seconds, nice=args.wrk_nice)
            media = finish_calls(calls, out, timeout)
            r = {"media": media,
                 "api_cpu_s": round(cpu_seconds(srv.pids("api")) - api_cpu0, 2),
                 "bad_signatures_counted": srv.counter("twilio_bad_signatures") - bad0,
                 "status_callbacks_counted": srv.counter("twilio_status_callbacks") +
                 srv.counter("twilio_status_duplicates") - ok0}
            if flood:
                r["wrk"] = flood
            runs[tag] = r
            line = "D4 %-9s calls %d/%d lost %d lateness p99 %s ms rtt p99 %s ms max gap %s ms" % (
                tag, media.get("answered", 0), args.calls, media.get("lost_frames", -1),
                media.get("lateness_p99_ms"), media.get("rtt_p99_ms"), media.get("max_gap_ms"))
            if flood:
                line += " | wrk %.0f req/s, status %s, errors %s, latency p99 %.1f ms" % (
                    flood["rps"], flood["status"],
                    {k: v for k, v in flood["errors"].items() if v}, flood["latency_us"]["p99"] / 1000)
                line += " | server 403-counter +%d, api CPU %.1f s" % (
                    r["bad_signatures_counted"], r["api_cpu_s"])
            print(line, flush=True)
            time.sleep(1)
        b1, b2 = runs["baseline"]["media"], runs["baseline2"]["media"]

        def base_of(key):
            xs = [b.get(key) for b in (b1, b2) if b.get(key) is not None]
            return sum(xs) / len(xs) if xs else None
        result = {"scenario": "d4", "calls": args.calls, "flood_seconds": args.flood_seconds,
                  "wrk_nice": args.wrk_nice, "api_nice": args.api_nice, "runs": runs,
                  "baseline_lateness_p99_ms": base_of("lateness_p99_ms"),
                  "baseline_rtt_p99_ms": base_of("rtt_p99_ms")}
        ok = True
        for tag in ("valid", "invalid"):
            m, w = runs[tag]["media"], runs[tag]["wrk"]
            deg = {"lateness_p99_pct": degradation(base_of("lateness_p99_ms"),
                                                    m.get("lateness_p99_ms")),
                   "rtt_p99_pct": degradation(base_of("rtt_p99_ms"), m.get("rtt_p99_ms")),
                   "lateness_p99_delta_ms": round(m.get("lateness_p99_ms", 0) -
                                                  (base_of("lateness_p99_ms") or 0), 1),
                   "rtt_p99_delta_ms": round(m.get("rtt_p99_ms", 0) -
                                             (base_of("rtt_p99_ms") or 0), 1),
                   "lost_frames_delta": m.get("lost_frames", 0) - max(
                       b1.get("lost_frames", 0), b2.get("lost_frames", 0))}
            # p99s are in whole milliseconds at best: a change within 1 ms is noise
            media_ok = (deg["lost_frames_delta"] <= 0 and
                        (deg["rtt_p99_pct"] is not None and deg["rtt_p99_pct"] <= 10 or
                         deg["rtt_p99_delta_ms"] <= 1) and
                        (deg["lateness_p99_pct"] is not None and deg["lateness_p99_pct"] <= 10
                         or deg["lateness_p99_delta_ms"] <= 1))
            deg["media_bar_met"] = media_ok
            ok = ok and media_ok
            if tag == "invalid":
                non403 = {k: v for k, v in w["status"].items() if k != 403}
                n403 = w["status"].get(403, 0)
                deg["all_403"] = not non403 and n403 > 0
                deg["counter_vs_wrk_403"] = [runs[tag]["bad_signatures_counted"], n403]
                # wrk does not count replies still in flight when it stops
                deg["counter_ok"] = (n403 <= runs[tag]["bad_signatures_counted"] <=
                                     n403 + 64 * 2)
                ok = ok and deg["all_403"] and deg["counter_ok"]
            else:
                deg["all_2xx"] = all(200 <= k < 300 for k in w["status"])
                ok = ok and deg["all_2xx"]
            result[tag] = deg
            print("D4 %-9s %.0f req/s; media vs baseline: lateness p99 %+.1f ms (%s %%), rtt p99 "
                  "%+.1f ms (%s %%), lost frames %+d; %s" % (
                      tag, w["rps"], deg["lateness_p99_delta_ms"], deg["lateness_p99_pct"],
                      deg["rtt_p99_delta_ms"], deg["rtt_p99_pct"], deg["lost_frames_delta"],
                      ("all 403, server counted %d for wrk's %d" % tuple(deg["counter_vs_wrk_403"])
                       if deg.get("all_403") else
                       "NOT all 403: %s" % w["status"]) if tag == "invalid" else
                      ("all 2xx" if deg["all_2xx"] else "NOT all 2xx: %s" % w["status"])),
                  flush=True)
        result["alive"] = srv.alive()
        result["bar_met"] = ok and result["alive"]
        print("D4 bar (invalid -> 403, media p99 <= +10 %%): %s" % (
            "met" if result["bar_met"] else "NOT met"), flush=True)
        emit(result)
    finally:
        srv.stop()


# ------------------------------------------------------------------ h2load (D7)

def run_h2load(srv, path, n, c, body_file=None, headers=()):
    log = os.path.join(srv.dir, "h2load-%s.log" % path.strip("/").replace("/", "-"))
    cmd = ["h2load", "--h1", "-n", str(n), "-c", str(c), "-t", "1", "--log-file", log]
    if body_file:
        cmd += ["-d", body_file]
    for h in headers:
        cmd += ["-H", h]
    cmd.append(srv.public_url + path)
    t0 = time.monotonic()
    p = subprocess.run(cmd, stdout=subprocess.PIPE, stderr=subprocess.STDOUT, text=True,
                       timeout=600)
    wall = time.monotonic() - t0
    rps, codes, done = None, {}, None
    for line in p.stdout.splitlines():
        line = line.strip()
        if line.startswith("finished in"):
            rps = float(line.split(",")[1].split()[0])
        elif line.startswith("status codes:"):
            for part in line[len("status codes:"):].split(","):
                v, k = part.split()
                codes[k] = int(v)
        elif line.startswith("requests:"):
            done = line
    lat = []
    try:
        with open(log) as f:
            for line in f:
                f3 = line.split()
                if len(f3) >= 3:
                    lat.append(int(f3[2]) / 1000.0)  # µs -> ms
    except OSError:
        pass
    return {"path": path, "requests": n, "clients": c, "rps": rps, "status_codes": codes,
            "summary": done, "wall_s": round(wall, 2),
            "latency_ms": {"p50": pct(lat, 50), "p90": pct(lat, 90), "p99": pct(lat, 99),
                           "p999": pct(lat, 99.9), "max": max(lat) if lat else None},
            "exit": p.returncode, "output_tail": "" if p.returncode == 0 else p.stdout[-800:]}


def d7(args, tmp):
    if not shutil.which("h2load"):
        return emit({"scenario": "d7", "skipped": "h2load is not installed (nghttp2-client)"})
    srv = Server(args, tmp, "d7")
    try:
        params = {"AccountSid": "AC" + "0" * 32, "ApiVersion": "2010-04-01",
                  "CallSid": "CA" + uuid.uuid4().hex, "CallStatus": "completed",
                  "SequenceNumber": "3", "CallDuration": "49", "From": CALLER, "To": NUMBER,
                  "Direction": "inbound", "CallbackSource": "call-progress-events"}
        body_file = os.path.join(srv.dir, "status.form")
        with open(body_file, "w") as f:
            f.write(urllib.parse.urlencode(params))
        sig = twilio_signature(TOKEN, srv.public_url + "/twilio/status", params)
        results = []
        for path in ("/health/live", "/health", "/twilio/status"):
            if path == "/twilio/status":
                r = run_h2load(srv, path, args.d7_requests, args.d7_clients, body_file,
                               ["content-type: application/x-www-form-urlencoded",
                                "x-twilio-signature: " + sig])
            else:
                r = run_h2load(srv, path, args.d7_requests, args.d7_clients)
            results.append(r)
            lm = r["latency_ms"]
            print("D7 %-15s %s req/s, status %s, latency p50 %s p90 %s p99 %s p99.9 %s max %s ms"
                  % (path, r["rps"], r["status_codes"], lm["p50"], lm["p90"], lm["p99"],
                     lm["p999"], lm["max"]), flush=True)
            if r["output_tail"]:
                print(r["output_tail"])
            time.sleep(1)
        bad = srv.counter("twilio_bad_signatures")
        status_ok = srv.counter("twilio_status_callbacks")
        dups = srv.counter("twilio_status_duplicates")
        print("D7 server: status callbacks stored %d, duplicates %d, bad signatures %d" % (
            status_ok, dups, bad), flush=True)
        emit({"scenario": "d7", "results": results, "status_callbacks": status_ok,
              "status_duplicates": dups, "bad_signatures": bad, "alive": srv.alive()})
    finally:
        srv.stop()


# ------------------------------------------------------------------ slowhttptest (D5)

class Probe(threading.Thread):
    """GET /health/live from 127.0.0.2 every INTERVAL s (a legitimate client
    at another address), and the server's fd counts at the same pace."""

    def __init__(self, srv, interval=0.5):
        super().__init__(daemon=True)
        self.srv, self.interval = srv, interval
        self.stop_ev = threading.Event()
        self.lat, self.fail = [], []
        self.fd_max = {}  # title -> max fds of one process with that title
        self.pid_fd_max = {}  # pid -> its max fds
        self.fd_total_max = 0

    def run(self):
        while not self.stop_ev.is_set():
            t0 = time.monotonic()
            try:
                status, _, dt = self.srv.get("/health/live", src="127.0.0.2", timeout=5)
                if status == 200:
                    self.lat.append(dt * 1000)
                else:
                    self.fail.append("status %d" % status)
            except OSError as e:
                self.fail.append(repr(e))
            total = 0
            for pid, (title, n) in self.srv.fds().items():
                if n is None:
                    continue
                total += n
                self.fd_max[title] = max(self.fd_max.get(title, 0), n)
                self.pid_fd_max[pid] = max(self.pid_fd_max.get(pid, 0), n)
            self.fd_total_max = max(self.fd_total_max, total)
            self.stop_ev.wait(max(0.0, self.interval - (time.monotonic() - t0)))


def slowhttptest_cmd(mode, srv, conns, seconds, prefix):
    base = ["slowhttptest", "-c", str(conns), "-r", "200", "-l", str(seconds), "-p", "3",
            "-g", "-o", prefix]
    if mode == "H":  # slowloris: headers one small line every 5 s
        return base + ["-H", "-i", "5", "-x", "24", "-u", srv.public_url + "/health/live"]
    if mode == "B":  # slow body: a form POST dripping its 8 KiB body
        return base + ["-B", "-i", "5", "-x", "24", "-s", "8192",
                       "-u", srv.public_url + "/twilio/status"]
    # slow read: 10 pipelined GET /metrics, a tiny window, 32 bytes a second
    return base + ["-X", "-k", "10", "-w", "1", "-y", "512", "-n", "1", "-z", "32",
                   "-u", srv.public_url + "/metrics"]


def read_csv_max_connected(path):
    best = 0
    try:
        with open(path) as f:
            next(f)
            for line in f:
                parts = line.strip().split(",")
                if len(parts) >= 4:
                    best = max(best, int(parts[3]))
    except (OSError, StopIteration, ValueError):
        pass
    return best


def settle_fds(srv, base_total, timeout):
    """Waits for the server's total fd count to come back within a small
    margin of BASE_TOTAL; returns the last total."""
    deadline = time.monotonic() + timeout
    while True:
        total = sum(n for _, n in srv.fds().values() if n is not None)
        if total <= base_total + 4 or time.monotonic() > deadline:
            return total
        time.sleep(0.5)


def d5(args, tmp):
    if not shutil.which("slowhttptest"):
        return emit({"scenario": "d5", "skipped": "slowhttptest is not installed"})
    results = []
    modes = [m.strip().upper() for m in args.d5_modes.split(",")]
    for mode, name in (("H", "slowloris"), ("B", "slow body"), ("X", "slow read")):
        if mode not in modes:
            continue
        srv = Server(args, tmp, "d5" + mode)
        try:
            fds0 = srv.fds()
            base_total = sum(n for _, n in fds0.values() if n is not None)
            limit = min(x for x in (fd_limit(p) for p in fds0) if x)
            api_base = max(n for t, n in fds0.values() if t == "voxbridge: api")
            c0 = {k: srv.counter(k) for k in ("api_rejected_per_ip", "api_rejected_busy",
                                               "http_timeouts", "http_requests")}
            probe = Probe(srv)
            probe.start()
            t_end = time.monotonic() + args.duration
            rounds, connected, tool_error = 0, 0, None
            while True:
                left = int(t_end - time.monotonic())
                if left < 2:
                    break
                prefix = os.path.join(srv.dir, "slow%s-%d" % (mode, rounds))
                t0 = time.monotonic()
                with open(prefix + ".out", "w") as out:
                    rc = subprocess.run(
                        slowhttptest_cmd(mode, srv, args.connections, left, prefix),
                        stdout=out, stderr=subprocess.STDOUT, timeout=left + 60).returncode
                rounds += 1
                connected = max(connected, read_csv_max_connected(prefix + ".csv"))
                if time.monotonic() - t0 < 1.0 and not os.path.exists(prefix + ".csv"):
                    with open(prefix + ".out", errors="replace") as f:
                        tool_error = "slowhttptest exit %d: %s" % (rc, f.read()[-300:].strip())
                    print("D5 " + tool_error, flush=True)
                    break
            probe.stop_ev.set()
            probe.join()
            c1 = {k: srv.counter(k) - v for k, v in c0.items()}
            after_total = settle_fds(srv, base_total, 15)
            try:
                st_after, _, dt_after = srv.get("/health/live", src="127.0.0.1")
            except OSError as e:
                st_after, dt_after = repr(e), None
            lat = probe.lat
            r = {"mode": mode, "name": name, "connections": args.connections,
                 "duration_s": args.duration, "rounds": rounds, "tool_error": tool_error,
                 "attacker_connections_open_max": connected,
                 "probes": len(lat) + len(probe.fail), "probe_failures": probe.fail[:5],
                 "probe_failed": len(probe.fail),
                 "probe_ms": {"p50": pct(lat, 50), "p99": pct(lat, 99),
                              "max": max(lat) if lat else None},
                 "fd_limit": limit, "fd_total_before": base_total,
                 "fd_total_max": probe.fd_total_max, "fd_total_after": after_total,
                 "api_worker_fds_before": api_base,
                 "api_worker_fds_max": probe.fd_max.get("voxbridge: api"),
                 "counters": c1, "answers_after": st_after,
                 "answers_after_ms": round(dt_after * 1000, 1) if dt_after else None,
                 "alive": srv.alive()}
            cap_per_worker = args.max_conns if args.max_conns else None
            # connections the api workers held at most: their fds over the start
            held = sum(max(0, probe.pid_fd_max.get(p, n) - n)
                       for p, (t, n) in fds0.items() if t == "voxbridge: api" and n)
            r["server_connections_held_max"] = held
            caps = [c for c in (args.per_ip, args.max_conns) if c]
            r["caps_hold"] = not caps or held <= min(caps) * args.api_workers + 2
            r["no_fd_exhaustion"] = bool(r["api_worker_fds_max"] and
                                         r["api_worker_fds_max"] < limit and
                                         (cap_per_worker is None or
                                          r["api_worker_fds_max"] <= api_base + cap_per_worker))
            r["bar_met"] = bool(not tool_error and held > 0 and lat and not probe.fail and max(lat) < 200 and r["caps_hold"]
                                and r["no_fd_exhaustion"] and st_after == 200 and r["alive"]
                                and after_total <= base_total + 4)
            results.append(r)
            print("D5 %-9s (-%s) %d conns x %d s, %d round(s): open at the attacker <= %d, held by "
                  "the server <= %d; probe from "
                  "127.0.0.2 p50 %s ms p99 %s ms max %s ms, %d failed of %d; api worker fds %s "
                  "-> max %s (limit %s); server fds %d -> max %d -> %d after; 503 per-ip %d, "
                  "503 busy %d, 408/timeouts %d; answers after: %s; bar %s" % (
                      name, mode, args.connections, args.duration, rounds, connected, held,
                      _r(r["probe_ms"]["p50"]), _r(r["probe_ms"]["p99"]), _r(r["probe_ms"]["max"]),
                      r["probe_failed"], r["probes"], api_base, r["api_worker_fds_max"], limit,
                      base_total, probe.fd_total_max, after_total, c1["api_rejected_per_ip"],
                      c1["api_rejected_busy"], c1["http_timeouts"], st_after,
                      "met" if r["bar_met"] else "NOT met"), flush=True)
        finally:
            srv.stop()
    emit({"scenario": "d5", "per_ip_cap": args.per_ip, "max_conns": args.max_conns,
          "api_workers": args.api_workers, "results": results,
          "bar_met": all(r["bar_met"] for r in results)})


def _r(x):
    return None if x is None else round(x, 1)


def emit(obj):
    print(json.dumps(obj), flush=True)


def main():
    ap = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    ap.add_argument("build")
    ap.add_argument("--only", default="d4,d7,d5", help="scenarios, comma-separated")
    ap.add_argument("--calls", type=int, default=50, help="D4: echo calls during each run")
    ap.add_argument("--flood-seconds", type=int, default=10, help="D4: wrk -d (and call length)")
    ap.add_argument("--wrk-nice", type=int, default=0,
                    help="D4: run wrk at this nice value (an attacker on its own hardware)")
    ap.add_argument("--api-nice", type=int, default=0,
                    help="renice the api workers to this value (an experiment: webhooks "
                    "behind media)")
    ap.add_argument("--duration", type=int, default=60, help="D5: seconds per attack")
    ap.add_argument("--d5-modes", default="H,B,X", help="D5: slowhttptest modes to run")
    ap.add_argument("--connections", type=int, default=500, help="D5: slowhttptest -c")
    ap.add_argument("--d7-requests", type=int, default=100000, help="D7: h2load -n")
    ap.add_argument("--d7-clients", type=int, default=100, help="D7: h2load -c")
    ap.add_argument("--api-workers", type=int, default=2)
    ap.add_argument("--max-conns", type=int, default=512,
                    help="api_max_connections (per api worker; 0: from the open-files limit)")
    ap.add_argument("--per-ip", type=int, default=64,
                    help="api_max_connections_per_ip (per api worker; 0: none)")
    ap.add_argument("--nofile", type=int, default=0,
                    help="start the server with this open-files limit (soft and hard)")
    ap.add_argument("--keep", action="store_true", help="keep the temp dir (logs, wrk scripts)")
    args = ap.parse_args()
    args.build = os.path.abspath(args.build)
    if not os.access(os.path.join(args.build, "voxbridge"), os.X_OK):
        raise SystemExit("no voxbridge in %s" % args.build)
    tmp = tempfile.mkdtemp(prefix="vb-http-load-")
    only = [x.strip().lower() for x in args.only.split(",") if x.strip()]
    try:
        for sc in only:
            {"d4": d4, "d5": d5, "d7": d7}[sc](args, tmp)
    finally:
        if args.keep:
            print("kept", tmp)
        else:
            shutil.rmtree(tmp, ignore_errors=True)


if __name__ == "__main__":
    main()
