#!/bin/sh
# The demo: installs what is needed (scripts/deps.sh), builds, starts a private
# PostgreSQL and Redis and voxbridge on loopback with everything under ./_state,
# seeds an offline `local` assistant (a hair salon answering from
# tests/data/demo_intents.json) and its number, then places a simulated Twilio
# call whose caller speaks three lines (espeak-ng) and waits for each answer.
# Prints the conversation as both sides heard it: the caller's lines, what the
# agent recognised of each (from PostgreSQL's transcript_turns) and what it
# said, with the reply times. Stops everything it started. Safe to run again.
#
# Env: VB_BUILDDIR (default ./_build), VB_DEMO_PORT (first of 4 loopback ports,
# default 18080: voxbridge api and media, PostgreSQL, Redis).
set -e
top=$(cd "$(dirname "$0")/.." && pwd)
build=${VB_BUILDDIR:-$top/_build}
state=$top/_state
port=${VB_DEMO_PORT:-18080}
api_port=$port media_port=$((port + 1)) pg_port=$((port + 2)) redis_port=$((port + 3))
number=+15550000001
pg_user=voxbridge-demo # the OS account PostgreSQL runs as when we are root

"$top/scripts/deps.sh"
"$top/scripts/build.sh" "$build"
mkdir -p "$state"

pgbin=/usr/lib/postgresql/15/bin
[ -x "$pgbin/initdb" ] || pgbin=$(ls -d /usr/lib/postgresql/*/bin 2>/dev/null | sort -V | tail -1)
[ -x "$pgbin/initdb" ] || { echo "demo: PostgreSQL server binaries not found" >&2; exit 1; }

python3 - $api_port $media_port $pg_port $redis_port <<'PY' || exit 1
import socket, sys
for p in sys.argv[1:]:
    s = socket.socket()
    try:
        s.bind(("127.0.0.1", int(p)))
    except OSError:
        sys.exit("demo: port %s on 127.0.0.1 is in use (another demo? set VB_DEMO_PORT)" % p)
    finally:
        s.close()
PY

# ---- stop what we started, however we leave --------------------------------
vb_pid="" redis_started="" pg_started=""
cleanup() {
    set +e
    if [ -n "$vb_pid" ]; then
        kill -TERM "$vb_pid" 2>/dev/null
        wait "$vb_pid" 2>/dev/null
    fi
    if [ -n "$redis_started" ] && [ -f "$state/redis/redis.pid" ]; then
        kill -TERM "$(cat "$state/redis/redis.pid")" 2>/dev/null
    fi
    if [ -n "$pg_started" ]; then
        as_pg "$pgbin/pg_ctl" -D "$pgdata" -m fast -w stop >/dev/null 2>&1
    fi
}
trap cleanup EXIT
trap 'exit 130' INT TERM

# ---- PostgreSQL: initdb once, then start (never as root) -------------------
pgdata=$state/pg
as_pg() { "$@"; }
if [ "$(id -u)" = 0 ]; then
    id "$pg_user" >/dev/null 2>&1 ||
        useradd --system --no-create-home --shell /usr/sbin/nologin "$pg_user"
    as_pg() { runuser -u "$pg_user" -- "$@"; }
    mkdir -p "$pgdata"
    chown "$pg_user" "$pgdata"
    chmod 700 "$pgdata"
    if ! as_pg test -w "$pgdata"; then
        # the clone is somewhere the account cannot reach (e.g. under /root)
        pgdata=/var/tmp/voxbridge-demo-pg
        mkdir -p "$pgdata"
        chown "$pg_user" "$pgdata"
        chmod 700 "$pgdata"
        echo "demo: PostgreSQL's data goes to $pgdata ($pg_user cannot reach $state)"
    fi
fi
if [ ! -f "$pgdata/PG_VERSION" ]; then
    echo "demo: creating a PostgreSQL cluster in $pgdata"
    as_pg "$pgbin/initdb" -D "$pgdata" -U voxbridge --auth=trust -E UTF8 --locale=C \
        >"$state/initdb.log" 2>&1 || { cat "$state/initdb.log" >&2; exit 1; }
fi
if as_pg "$pgbin/pg_ctl" -D "$pgdata" status >/dev/null 2>&1; then
    echo "demo: stopping a PostgreSQL left running by an earlier demo"
    as_pg "$pgbin/pg_ctl" -D "$pgdata" -m fast -w stop >/dev/null
fi
as_pg "$pgbin/pg_ctl" -D "$pgdata" -l "$pgdata/postgres.log" -w -t 30 \
    -o "-c listen_addresses=127.0.0.1 -c port=$pg_port -c unix_socket_directories=''" \
    start >/dev/null || { tail -20 "$pgdata/postgres.log" >&2; exit 1; }
pg_started=1
psql() { "$pgbin/psql" -X -q -h 127.0.0.1 -p "$pg_port" -U voxbridge "$@"; }
if [ -z "$(psql -d postgres -tAc "SELECT 1 FROM pg_database WHERE datname = 'voxbridge'")" ]; then
    psql -d postgres -c "CREATE DATABASE voxbridge"
fi

# ---- Redis --------------------------------------------------------------------
mkdir -p "$state/redis"
redis-server --port "$redis_port" --bind 127.0.0.1 --save "" --appendonly no \
    --dir "$state/redis" --logfile "$state/redis/redis.log" \
    --pidfile "$state/redis/redis.pid" --daemonize yes
redis_started=1

# ---- voxbridge: config, migrations, the demo assistant, start ----------------
token=demo-$(od -An -N8 -tx1 /dev/urandom | tr -d ' \n')
cat >"$state/voxbridge.conf" <<CONF
# written by scripts/demo.sh
listen_api = 127.0.0.1:$api_port
listen_media = 127.0.0.1:$media_port
public_url = http://127.0.0.1:$api_port
public_media_url = ws://127.0.0.1:$media_port
twilio_auth_token = $token
state_dir = $state
database_url = postgresql://voxbridge@127.0.0.1:$pg_port/voxbridge
redis_url = redis://127.0.0.1:$redis_port/0
workers = 2
brokers = 1
log_level = info
CONF
"$build/voxbridge" -t -c "$state/voxbridge.conf" >/dev/null
VOXBRIDGE_SQL_DIR=$top/sql "$build/voxbridge" migrate -c "$state/voxbridge.conf"
psql -d voxbridge -v intents="$(cat "$top/tests/data/demo_intents.json")" \
    -v number="$number" -f "$top/scripts/seed-demo.sql"

"$build/voxbridge" -c "$state/voxbridge.conf" 2>"$state/voxbridge.log" &
vb_pid=$!
up=""
for i in $(seq 100); do
    if curl -sf "http://127.0.0.1:$api_port/health/live" >/dev/null 2>&1; then
        up=1
        break
    fi
    sleep 0.1
done
[ -n "$up" ] || { echo "demo: voxbridge did not start:" >&2; tail "$state/voxbridge.log" >&2; exit 1; }

# ---- the call -------------------------------------------------------------------
echo "voxbridge is up (pid $vb_pid); calling $number, the offline demo assistant..."
set +e
"$build/voxbridge-callsim" --url "http://127.0.0.1:$api_port" --token "$token" \
    --to "$number" --from +15551230001 --out "$state/heard.wav" --quiet \
    --say "What are your opening hours?" \
    --say "Where are you located?" \
    --say "Goodbye." >"$state/summary.json"
cs=$?
set -e

# ---- the conversation as both sides heard it -------------------------------------
VB_PSQL="$pgbin/psql" VB_PG_PORT=$pg_port python3 - "$state/summary.json" <<'PY'
import json, os, subprocess, sys, time

def sql(q):
    p = subprocess.run([os.environ["VB_PSQL"], "-X", "-q", "-h", "127.0.0.1", "-p",
                        os.environ["VB_PG_PORT"], "-U", "voxbridge", "-d", "voxbridge",
                        "-A", "-t", "-F", "\x1f", "-c", q], capture_output=True, text=True)
    return [l.split("\x1f") for l in p.stdout.splitlines() if l]

lines = open(sys.argv[1]).read().strip().splitlines()
if not lines:
    sys.exit("demo: callsim printed no summary")
s = json.loads(lines[-1])
pc = (s.get("per_call") or [{}])[0]
cid = pc.get("call_id", "")
said = pc.get("turns", [])
# the store writes records to PostgreSQL within a moment of the call's end
for _ in range(50):
    turns = sql("SELECT speaker, text, intent, start_ms, v2v_ms FROM transcript_turns"
                " WHERE call_id = '%s' ORDER BY seq" % cid) if cid else []
    ended = sql("SELECT status, end_reason FROM calls WHERE id = '%s'"
                " AND ended_at IS NOT NULL" % cid) if cid else []
    if ended:
        break
    time.sleep(0.2)

print("\nThe conversation (caller lines spoken by callsim; the agent's side from "
      "PostgreSQL's transcript_turns):\n")
n = 0
for speaker, text, intent, start_ms, v2v in turns:
    at = "%6.1f s" % (int(start_ms) / 1000.0) if start_ms else "       "
    if speaker == "agent":
        print("%s  agent   %s" % (at, text))
        continue
    line = said[n] if n < len(said) else {}
    n += 1
    print("%s  caller  said:  %s" % (at, line.get("text", "?")))
    print("                  agent heard: %s  -> %s" % (text, intent or "no intent (fallback)"))
    if line.get("reply_ms") is not None:
        print("                  answered %.0f ms after the caller stopped speaking"
              % line["reply_ms"])
if not turns:
    print("  (no turns in PostgreSQL for call %s)" % cid)
print()
r = s.get("reply_ms", {})
print("call %s: %s, %s; reply time p50 %s ms, max %s ms over %s lines" % (
    cid, "answered" if s.get("answered") else "not answered",
    "the agent hung up after its goodbye" if pc.get("agent_hung_up")
    else "closed %s %s" % (pc.get("close_code"), pc.get("close_reason", "")),
    r.get("p50"), r.get("max"), r.get("n")))
if ended:
    print("call record: status %s, end reason %r" % (ended[0][0], ended[0][1]))
PY
echo "what the caller heard: $state/heard.wav; callsim summary: $state/summary.json;"
echo "server log: $state/voxbridge.log"
exit $cs
