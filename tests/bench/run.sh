#!/bin/sh
# Benchmarks (not part of make check): the per-frame DSP costs, then echo-call
# capacity with one call per worker and with 8, the capacity bar as
# docs/benchmarks.md quotes it (400 calls, 8 per worker, calls spread over the
# 20 ms grid, the load generator at nice -10: as root), then the api listener
# under flood and slow attacks (about 8 minutes). Figures go to
# docs/benchmarks.md.
set -e
build=${1:-.}
if [ $# -gt 0 ]; then shift; fi # the rest goes to echo_capacity.py
src=$(cd "$(dirname "$0")/../.." && pwd)
[ -x "$build/tests/bench/bench_dsp" ] && "$build/tests/bench/bench_dsp"
python3 "$src/tests/bench/echo_capacity.py" "$build" --calls-per-worker 1 "$@"
python3 "$src/tests/bench/echo_capacity.py" "$build" --calls-per-worker 8 "$@"
python3 "$src/tests/bench/echo_capacity.py" "$build" --steps 400 --duration 15 \
    --calls-per-worker 8 --sim-nice -10 --phases 10 --repeat 3
python3 "$src/tests/bench/http_load.py" "$build"
