#!/bin/sh
# Benchmarks (not part of make check): the per-frame DSP costs, then echo-call
# capacity with one call per worker and with 8. Figures go to docs/benchmarks.md.
set -e
build=${1:-.}
src=$(cd "$(dirname "$0")/../.." && pwd)
[ -x "$build/tests/bench/bench_dsp" ] && "$build/tests/bench/bench_dsp"
python3 "$src/tests/bench/echo_capacity.py" "$build" --calls-per-worker 1 "$@"
python3 "$src/tests/bench/echo_capacity.py" "$build" --calls-per-worker 8 "$@"
