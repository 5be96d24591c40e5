#!/usr/bin/env python3
"""Echo-call capacity of one voxbridge on this machine (issue "The spine").

Starts the real server on loopback with an echo assistant, and for each step
places N simultaneous echo calls with voxbridge-callsim (the load generator
runs on the same machine; each call listens 1 s after its last frame, so
audio in flight is counted and "lost" is exact). Prints, per step: calls
answered, frames lost, gaps over 40 ms, outbound frame lateness (p99 of how
long the simulated carrier's playout had been dry when each frame came), the
round trip, the server's CPU per call-second (utime+stime of all its
processes, from /proc), the load generator's, how busy the whole machine was
(/proc/stat), and the PSS of media workers idle and in a call. A step passes
the issue's bar with 0 lost frames and lateness p99 under 20 ms. Not part of
`make check`: run by hand or with `make bench`.

usage: echo_capacity.py BUILD_DIR [--steps 50,100,200,400] [--duration 20]
                        [--calls-per-worker 1] [--brokers 2] [--phases 1]
                        [--sim-nice 0] [--sim-procs 1] [--repeat 1]
"""
import argparse, json, os, resource, signal, socket, subprocess, sys, tempfile, time, urllib.request

CLK = os.sysconf("SC_CLK_TCK")


def free_port():
    s = socket.socket()
    s.bind(("127.0.0.1", 0))
    port = s.getsockname()[1]
    s.close()
    return port


def descendants(root):
    kids = {}
    for pid in os.listdir("/proc"):
        if not pid.isdigit():
            continue
        try:
            with open(f"/proc/{pid}/stat") as f:
                ppid = int(f.read().rsplit(")", 1)[1].split()[1])
            kids.setdefault(ppid, []).append(int(pid))
        except OSError:
            pass
    out, todo = [], [root]
    while todo:
        p = todo.pop()
        out.append(p)
        todo.extend(kids.get(p, []))
    return out


def title(pid):
    try:
        with open(f"/proc/{pid}/cmdline", "rb") as f:
            return f.read().split(b"\0")[0].decode(errors="replace")
    except OSError:
        return ""


def cpu_seconds(root):
    """CPU of the server: every live process, plus what the master collected
    from children it reaped (workers come and go during a step)."""
    total = 0
    for pid in descendants(root):
        try:
            with open(f"/proc/{pid}/stat") as f:
                fields = f.read().rsplit(")", 1)[1].split()
            total += int(fields[11]) + int(fields[12])  # utime + stime
            if pid == root:
                total += int(fields[13]) + int(fields[14])  # cutime + cstime
        except OSError:
            pass
    return total / CLK


def machine_times():
    """(busy, total) jiffies of the whole machine, from /proc/stat."""
    with open("/proc/stat") as f:
        v = [int(x) for x in f.readline().split()[1:]]
    idle = v[3] + v[4]  # idle + iowait
    return sum(v) - idle, sum(v)


def children_cpu():
    r = resource.getrusage(resource.RUSAGE_CHILDREN)
    return r.ru_utime + r.ru_stime


def pss_kib(pid):
    try:
        with open(f"/proc/{pid}/smaps_rollup") as f:
            for line in f:
                if line.startswith("Pss:"):
                    return int(line.split()[1])
    except OSError:
        return None
    return None


def median(xs):
    xs = sorted(x for x in xs if x is not None)
    return xs[len(xs) // 2] if xs else None


def start_server(build, tmp, args, max_calls):
    api, media = free_port(), free_port()
    workers = max_calls // args.calls_per_worker + 4
    conf = os.path.join(tmp, "vb.conf")
    with open(conf, "w") as f:
        f.write(f"""listen_api = 127.0.0.1:{api}
listen_media = 127.0.0.1:{media}
public_url = http://127.0.0.1:{api}
public_media_url = ws://127.0.0.1:{media}
twilio_auth_token = bench-token
state_dir = {tmp}/state
workers = {min(workers, 64)}
workers_min_spare = 8
workers_max = {workers}
calls_per_worker = {args.calls_per_worker}
brokers = {args.brokers}
api_workers = 2
log_level = warn
assistant.echo.mode = echo
number.+15550000001 = echo
""")
    log = open(os.path.join(tmp, "server.log"), "w")
    proc = subprocess.Popen([os.path.join(build, "voxbridge"), "-c", conf], stderr=log)
    for _ in range(100):
        try:
            urllib.request.urlopen(f"http://127.0.0.1:{api}/health/live", timeout=1)
            return proc, api
        except OSError:
            time.sleep(0.1)
    raise SystemExit("server did not come up; see " + log.name)


def worker_pss(root):
    return [pss_kib(p) for p in descendants(root) if title(p) == "voxbridge: worker"]


def start_callsim(build, api, n, args):
    nice = ["nice", "-n", str(args.sim_nice)] if args.sim_nice else []
    return subprocess.Popen(
        nice + [os.path.join(build, "voxbridge-callsim"), "--url", f"http://127.0.0.1:{api}",
         "--token", "bench-token", "--to", "+15550000001", "--calls", str(n),
         "--duration", str(args.duration), "--ramp-ms", str(args.ramp_ms),
         "--phases", str(args.phases), "--tail-ms", "1000", "--quiet"],
        stdout=subprocess.PIPE, stderr=subprocess.DEVNULL, text=True)


def merge_summaries(sums):
    """One summary from several load generators' JSON summaries: counts add up; a
    percentile is the largest of theirs, an upper bound of the whole's (at most 1 % of
    each part lies above its own p99, so at most 1 % of the whole above the largest)."""
    total = lambda k: sum(s.get(k) or 0 for s in sums)
    worst = lambda get: max((get(s) for s in sums if get(s) is not None), default=None)
    return {
        "answered": total("answered"), "frames_sent": total("frames_sent"),
        "frames_received": total("frames_received"), "gaps_over_40ms": total("gaps_over_40ms"),
        "underrun_ms": total("underrun_ms"), "late_frames": total("late_frames"),
        "max_gap_ms": worst(lambda s: s.get("max_gap_ms")),
        "lateness_p99_ms": worst(lambda s: s.get("lateness_ms", {}).get("p99")),
        "send_lag_max_ms": worst(lambda s: s.get("send_lag_max_ms")),
        "rtt_p99_ms": worst(lambda s: s["rtt_ms"]["p99"]),
    }


def run_step(build, proc, api, n, args):
    idle = median(worker_pss(proc.pid))
    cpu0 = cpu_seconds(proc.pid)
    sim0, m0 = children_cpu(), machine_times()
    shares = [n // args.sim_procs + (i < n % args.sim_procs) for i in range(args.sim_procs)]
    sims = [start_callsim(build, api, k, args) for k in shares if k > 0]
    time.sleep(args.ramp_ms * max(shares) / 1000 + args.duration / 2)
    busy = median(worker_pss(proc.pid))
    outs = [sim.communicate(timeout=args.duration * 3 + n)[0] for sim in sims]
    cpu1 = cpu_seconds(proc.pid)
    sim1, m1 = children_cpu(), machine_times()
    s = merge_summaries([json.loads(out.strip().splitlines()[-1]) for out in outs])
    call_seconds = max(1e-9, s["answered"] * args.duration)
    return {
        "calls": n, "answered": s["answered"],
        "lost_frames": s["frames_sent"] - s["frames_received"],
        "gaps_over_40ms": s["gaps_over_40ms"], "max_gap_ms": s["max_gap_ms"],
        "underrun_ms": s["underrun_ms"], "late_frames": s["late_frames"],
        "lateness_p99_ms": s["lateness_p99_ms"], "send_lag_max_ms": s["send_lag_max_ms"],
        "rtt_p99_ms": s["rtt_p99_ms"],
        "cpu_ms_per_call_second": round((cpu1 - cpu0) * 1000 / call_seconds, 2),
        "callsim_cpu_ms_per_call_second": round((sim1 - sim0) * 1000 / call_seconds, 2),
        "machine_busy_pct": round(100.0 * (m1[0] - m0[0]) / max(1, m1[1] - m0[1]), 1),
        "worker_pss_idle_kib": idle, "worker_pss_in_call_kib": busy,
    }


def bar_met(r):
    """The issue's bar: every call answered, 0 lost frames, lateness p99 under 20 ms."""
    p99 = r.get("lateness_p99_ms")
    return (r["answered"] == r["calls"] and r["lost_frames"] == 0 and p99 is not None
            and p99 < 20)


def main():
    ap = argparse.ArgumentParser()
    ap.add_argument("build")
    ap.add_argument("--steps", default="50,100,200,300,400")
    ap.add_argument("--duration", type=int, default=20)
    ap.add_argument("--ramp-ms", type=int, default=10)
    ap.add_argument("--calls-per-worker", type=int, default=1)
    ap.add_argument("--brokers", type=int, default=2)
    ap.add_argument("--phases", type=int, default=1,
                    help="callsim --phases: spread the calls' frames over N phases")
    ap.add_argument("--sim-nice", type=int, default=0,
                    help="run the load generator at this nice value (negative: as root)")
    ap.add_argument("--sim-procs", type=int, default=1,
                    help="split the calls over N load-generator processes (a carrier has "
                         "many media servers; one process is one of a few hundred the "
                         "scheduler shares the cores between)")
    ap.add_argument("--repeat", type=int, default=1,
                    help="run each step N times and say in how many the bar was met "
                         "(near the knee one run decides nothing)")
    args = ap.parse_args()
    if args.sim_procs < 1:
        ap.error("--sim-procs must be at least 1")
    steps = [int(x) for x in args.steps.split(",")]
    tmp = tempfile.mkdtemp(prefix="vb-bench-")
    proc, api = start_server(args.build, tmp, args, max(steps))
    try:
        for n in steps:
            met = 0
            for _ in range(args.repeat):
                r = run_step(args.build, proc, api, n, args)
                r["bar_met"] = bar_met(r)
                met += r["bar_met"]
                print(json.dumps(r), flush=True)
                time.sleep(2)
            if args.repeat > 1:
                print(json.dumps({"calls": n, "runs": args.repeat, "bar_met_runs": met}),
                      flush=True)
    finally:
        proc.send_signal(signal.SIGQUIT)
        proc.wait(timeout=30)


if __name__ == "__main__":
    main()
