#!/bin/sh
# The whole test suite: installs what is needed, builds, runs the unit tests
# (make check) and the integration tests against real processes on loopback,
# and ends with one line "N passed, N failed".
set -u
top=$(cd "$(dirname "$0")/.." && pwd)
build=${VB_BUILDDIR:-$top/_build}
"$top/scripts/deps.sh" || exit 1
"$top/scripts/build.sh" "$build" || exit 1
cd "$build"
make -j"$(nproc)" check >/dev/null 2>&1
unit_pass=$(sed -n 's/^# PASS: *//p' test-suite.log | head -1)
unit_fail=$(( $(sed -n 's/^# FAIL: *//p' test-suite.log | head -1) + $(sed -n 's/^# ERROR: *//p' test-suite.log | head -1) ))
grep -E '^(PASS|FAIL|ERROR)' test-suite.log tests/unit/*.log 2>/dev/null | grep -E 'FAIL|ERROR' | head -20
[ "$unit_fail" = 0 ] || cat test-suite.log | tail -60
echo "unit tests: ${unit_pass:-0} passed, ${unit_fail} failed"
pass=${unit_pass:-0}
fail=$unit_fail

# A suite that ends with "N passed, N failed", logged to LOG and shown; its
# counts are added (no such last line: one failure). Logged to a file, not
# teed to /dev/stderr: when stderr is a file, reopening it writes from offset
# 0 over what was already logged.
suite() {
    log=$1
    shift
    "$@" >"$log" 2>&1
    cat "$log"
    out=$(tail -1 "$log")
    p=$(echo "$out" | sed -n 's/^\([0-9]*\) passed, \([0-9]*\) failed.*/\1/p')
    f=$(echo "$out" | sed -n 's/^\([0-9]*\) passed, \([0-9]*\) failed.*/\2/p')
    [ -n "$p" ] || { p=0; f=1; }
    pass=$((pass + p))
    fail=$((fail + f))
}

# One check: NAME passes when the command succeeds; else the last lines of LOG.
check() {
    name=$1 log=$2 lines=$3
    shift 3
    if "$@"; then
        pass=$((pass + 1)); echo "PASS  $name"
    else
        fail=$((fail + 1)); echo "FAIL  $name"; tail -"$lines" "$log" 2>/dev/null
    fi
}

suite "$build/integration.log" "$top/tests/integration/run.sh" "$build"
# The packages: build the .deb and the rpm, install, run, reload, purge (root
# only; it says why it skips otherwise), and make distcheck.
suite "$build/packaging.log" "$top/tests/packaging/run.sh" "$build"
check "make distcheck" "$build/distcheck.log" 40 \
    sh -c 'make -C "$1" distcheck >"$1/distcheck.log" 2>&1' sh "$build"

# Extra rounds (CI, or VB_FULL=1): the unit tests again under ASan+UBSan, and
# every fuzz target replaying its committed corpus once.
if [ "${CI:-}" = true ] || [ "${VB_FULL:-}" = 1 ]; then
    check "unit tests under ASan+UBSan" "$build-san/test-suite.log" 40 \
        sh -c 'VB_CONFIGURE_FLAGS=--enable-sanitizers "$1/scripts/build.sh" "$2-san" &&
               cd "$2-san" && make -j"$(nproc)" check >/dev/null 2>&1' sh "$top" "$build"
    check "fuzz corpora replay" "$build/fuzz-replay.log" 30 \
        sh -c 'cd "$1" && make fuzz-net-replay fuzz-media-replay >fuzz-replay.log 2>&1' sh "$build"
fi
echo "$pass passed, $fail failed"
[ "$fail" = 0 ]
