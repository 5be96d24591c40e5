#!/bin/sh
# The demo: installs what is needed, builds, starts voxbridge on loopback with
# a demo config under ./_state, places a simulated Twilio call with
# voxbridge-callsim and prints what happened. Stops the server at the end.
set -e
top=$(cd "$(dirname "$0")/.." && pwd)
build=${VB_BUILDDIR:-$top/_build}
state=$top/_state
"$top/scripts/deps.sh"
"$top/scripts/build.sh" "$build"
mkdir -p "$state"
token=demo-$(od -An -N8 -tx1 /dev/urandom | tr -d ' \n')
cat > "$state/voxbridge.conf" <<CONF
listen_api = 127.0.0.1:18080
listen_media = 127.0.0.1:18081
public_url = http://127.0.0.1:18080
public_media_url = ws://127.0.0.1:18081
twilio_auth_token = $token
state_dir = $state
workers = 2
brokers = 1
log_level = notice
assistant.echo.mode = echo
assistant.echo.echo_delay_ms = 0
number.+15550000001 = echo
CONF
"$build/voxbridge" -t -c "$state/voxbridge.conf"
"$build/voxbridge" -c "$state/voxbridge.conf" 2>"$state/voxbridge.log" &
pid=$!
trap 'kill -TERM $pid 2>/dev/null; wait $pid 2>/dev/null' EXIT INT TERM
for i in $(seq 50); do
    curl -sf http://127.0.0.1:18080/health/live >/dev/null 2>&1 && break
    sleep 0.1
done
echo "voxbridge is up (pid $pid); placing a simulated call to the echo assistant..."
"$build/voxbridge-callsim" --url http://127.0.0.1:18080 --token "$token" \
    --to +15550000001 --from +15551230001 --duration 6 --out "$state/agent.wav" --quiet \
    | tee "$state/summary.json" | python3 -c '
import json, sys
s = json.loads(sys.stdin.read().strip().splitlines()[-1])
print("answered %d of %d call(s); frames sent %d, received back %d; round trip p50 %s ms"
      % (s["answered"], s["calls"], s["frames_sent"], s["frames_received"], s["rtt_ms"]["p50"]))'
echo "what the agent said back: $state/agent.wav; server log: $state/voxbridge.log"
echo "call records: $state/spool/events.jsonl"
tail -2 "$state/spool/events.jsonl"
