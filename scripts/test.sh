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
out=$("$top/tests/integration/run.sh" "$build" 2>&1 | tee /dev/stderr | tail -1)
int_pass=$(echo "$out" | sed -n 's/^\([0-9]*\) passed, \([0-9]*\) failed.*/\1/p')
int_fail=$(echo "$out" | sed -n 's/^\([0-9]*\) passed, \([0-9]*\) failed.*/\2/p')
[ -n "$int_pass" ] || { int_pass=0; int_fail=1; }
pass=$(( ${unit_pass:-0} + int_pass ))
fail=$(( unit_fail + int_fail ))
echo "$pass passed, $fail failed"
[ "$fail" = 0 ]
