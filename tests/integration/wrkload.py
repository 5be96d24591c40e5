"""wrk driven with Twilio webhooks (fault matrix D4): the Lua script that
cycles through prepared requests and counts the status codes, forged
signatures of every kind, and wrk's summary as a dict. Used by
test_http_abuse.py and tests/bench/http_load.py."""

import json
import subprocess

from wsclient import twilio_signature

WRK_LUA = r"""
-- written by wrkload.py: cycles through signed webhooks and
-- counts the status codes it gets back.
local reqs = {
%s
}
local threads = {}
local nthreads = 0

function setup(thread)
  thread:set("id", nthreads)
  nthreads = nthreads + 1
  table.insert(threads, thread)
end

function init(args)
  counts = {}
  built = {}
  for i, r in ipairs(reqs) do
    local h = {["Content-Type"] = "application/x-www-form-urlencoded"}
    if r[3] ~= nil then h["X-Twilio-Signature"] = r[3] end
    built[i] = wrk.format("POST", r[1], h, r[2])
  end
  idx = (id * 997) %% #built
end

function request()
  idx = idx %% #built + 1
  return built[idx]
end

function response(status, headers, body)
  counts[status] = (counts[status] or 0) + 1
end

function done(summary, latency, requests)
  local agg = {}
  for _, t in ipairs(threads) do
    local c = t:get("counts")
    for k, v in pairs(c) do agg[k] = (agg[k] or 0) + v end
  end
  local parts = {}
  for k, v in pairs(agg) do table.insert(parts, string.format('"%%d":%%d', k, v)) end
  local e = summary.errors
  io.write(string.format('VBJSON {"requests":%%d,"duration_us":%%d,"status":{%%s},' ..
    '"errors":{"connect":%%d,"read":%%d,"write":%%d,"status":%%d,"timeout":%%d},' ..
    '"latency_us":{"p50":%%d,"p99":%%d,"max":%%d}}\n',
    summary.requests, summary.duration, table.concat(parts, ","), e.connect, e.read,
    e.write, e.status, e.timeout, latency:percentile(50), latency:percentile(99), latency.max))
end
"""


def forged_signature(token, url, params, i):
    """The I-th of four kinds of bad X-Twilio-Signature (None: no header):
    the wrong token, none at all, truncated, and a good one over other
    parameters than those sent."""
    kind = i % 4
    if kind == 0:
        return twilio_signature("not-the-token", url, params)
    if kind == 1:
        return None
    if kind == 2:
        return twilio_signature(token, url, params)[:20]
    return twilio_signature(token, url, dict(params, To="+15550009999"))


def lua_str(s):
    return '"' + s.replace("\\", "\\\\").replace('"', '\\"') + '"'


def write_script(path, reqs):
    """REQS: (path, form body, signature or None) to cycle through."""
    rows = []
    for p, b, s in reqs:
        rows.append("  {%s, %s, %s}," % (lua_str(p), lua_str(b),
                                          lua_str(s) if s is not None else "nil"))
    with open(path, "w") as f:
        f.write(WRK_LUA % "\n".join(rows))


def run(script, url, seconds, threads=2, conns=64, nice=0):
    """wrk's summary: requests, rps, status {code: n}, errors, latency_us."""
    cmd = ["wrk", "-t%d" % threads, "-c%d" % conns, "-d%ds" % seconds, "--timeout", "5s",
           "-s", script, url]
    if nice:
        cmd = ["nice", "-n", str(nice)] + cmd
    p = subprocess.run(cmd, stdout=subprocess.PIPE, stderr=subprocess.STDOUT, text=True,
                       timeout=seconds + 60)
    for line in p.stdout.splitlines():
        if line.startswith("VBJSON "):
            r = json.loads(line[7:])
            r["rps"] = round(r["requests"] / max(1e-9, r["duration_us"] / 1e6), 1)
            r["status"] = {int(k): v for k, v in r["status"].items()}
            return r
    raise RuntimeError("wrk gave no summary:\n" + p.stdout[-2000:])
