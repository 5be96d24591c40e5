#!/bin/sh
# Integration tests of voxbridge: start the real server on loopback ports and
# drive it with voxbridge-callsim and raw sockets. Prints each test's result and
# ends with "N passed, N failed"; exits non-zero if any failed.
#
# usage: tests/integration/run.sh [BUILDDIR [TEST-ID-SUBSTRING...]]
#   BUILDDIR defaults to the current directory (where voxbridge was built);
#   `make integration` in a build directory runs this.
# Needs python3 (standard library only). Env: VOXBRIDGE_BIN, CALLSIM_BIN,
# VB_KEEP=1 (keep each test's temp dir), VB_TEST_TIMEOUT (s per test, 180).
set -e
here=$(cd "$(dirname "$0")" && pwd)
build=${1:-.}
[ $# -gt 0 ] && shift
build=$(cd "$build" && pwd)
if [ ! -x "${VOXBRIDGE_BIN:-$build/voxbridge}" ]; then
    echo "run.sh: no voxbridge in $build (build it first, or pass the build dir)" >&2
    exit 2
fi
command -v python3 >/dev/null || { echo "run.sh: python3 is needed" >&2; exit 2; }
VB_BUILDDIR=$build
VB_SRCDIR=${VB_SRCDIR:-$(cd "$here/../.." && pwd)}
PYTHONDONTWRITEBYTECODE=1  # no __pycache__ in the source tree
export VB_BUILDDIR VB_SRCDIR PYTHONDONTWRITEBYTECODE
cd "$build"
exec python3 -u "$here/run.py" "$@"
