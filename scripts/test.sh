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
# (tee to a file, not to /dev/stderr: when stderr is a file, reopening it
# writes from offset 0 over what was already logged)
"$top/tests/integration/run.sh" "$build" >"$build/integration.log" 2>&1
cat "$build/integration.log"
out=$(tail -1 "$build/integration.log")
int_pass=$(echo "$out" | sed -n 's/^\([0-9]*\) passed, \([0-9]*\) failed.*/\1/p')
int_fail=$(echo "$out" | sed -n 's/^\([0-9]*\) passed, \([0-9]*\) failed.*/\2/p')
[ -n "$int_pass" ] || { int_pass=0; int_fail=1; }
# The packages: build the .deb and the rpm, install, run, reload, purge (root
# only; it says why it skips otherwise), and make distcheck.
"$top/tests/packaging/run.sh" "$build" >"$build/packaging.log" 2>&1
cat "$build/packaging.log"
out=$(tail -1 "$build/packaging.log")
pkg_pass=$(echo "$out" | sed -n 's/^\([0-9]*\) passed, \([0-9]*\) failed.*/\1/p')
pkg_fail=$(echo "$out" | sed -n 's/^\([0-9]*\) passed, \([0-9]*\) failed.*/\2/p')
[ -n "$pkg_pass" ] || { pkg_pass=0; pkg_fail=1; }
int_pass=$((int_pass + pkg_pass))
int_fail=$((int_fail + pkg_fail))
if make -C "$build" distcheck >"$build/distcheck.log" 2>&1; then
    int_pass=$((int_pass + 1)); echo "PASS  make distcheck"
else
    int_fail=$((int_fail + 1)); echo "FAIL  make distcheck"; tail -40 "$build/distcheck.log"
fi

# Extra rounds (CI, or VB_FULL=1): the unit tests again under ASan+UBSan, and
# every fuzz target replaying its committed corpus once.
extra_pass=0
extra_fail=0
if [ "${CI:-}" = true ] || [ "${VB_FULL:-}" = 1 ]; then
    if VB_CONFIGURE_FLAGS=--enable-sanitizers "$top/scripts/build.sh" "$build-san" &&
        (cd "$build-san" && make -j"$(nproc)" check >/dev/null 2>&1); then
        extra_pass=$((extra_pass + 1)); echo "PASS  unit tests under ASan+UBSan"
    else
        extra_fail=$((extra_fail + 1)); echo "FAIL  unit tests under ASan+UBSan"
        tail -40 "$build-san/test-suite.log" 2>/dev/null
    fi
    if (cd "$build" && make fuzz-net-replay fuzz-media-replay >fuzz-replay.log 2>&1); then
        extra_pass=$((extra_pass + 1)); echo "PASS  fuzz corpora replay"
    else
        extra_fail=$((extra_fail + 1)); echo "FAIL  fuzz corpora replay"
        tail -30 "$build/fuzz-replay.log"
    fi
fi
pass=$(( ${unit_pass:-0} + int_pass + extra_pass ))
fail=$(( unit_fail + int_fail + extra_fail ))
echo "$pass passed, $fail failed"
[ "$fail" = 0 ]
