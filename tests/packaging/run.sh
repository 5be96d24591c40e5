#!/bin/sh
# The package test: builds the .deb (and the .rpm) from `make dist`, installs the
# .deb, runs the installed server as the voxbridge user against PostgreSQL and
# Redis and under systemd (systemd-nspawn on an overlay of /), reloads it during a
# call, stops it and purges the package. Needs root (dpkg -i, a system account,
# mounts); as anyone else it prints why and counts a skip (--build-only works
# without root when the build tools are installed).
# Ends with "N passed, N failed[, N skipped]"; exits non-zero if any failed.
#
# usage: tests/packaging/run.sh [--build-only=deb|rpm] [BUILDDIR]
#   BUILDDIR: a configured build directory (default: the current one).
#   --build-only: build that package into BUILDDIR/packages and stop.
# Env: VB_KEEP=1 keeps the work directory; VB_PKG_NO_RPM=1, VB_PKG_NO_LINTIAN=1.
set -u
here=$(cd "$(dirname "$0")" && pwd)
only=
case ${1:-} in --build-only=*) only=$1; shift;; esac
build=$(cd "${1:-.}" && pwd) || exit 2
if [ "$(id -u)" != 0 ] && [ -z "$only" ]; then
    echo "SKIP: the package test needs root (dpkg -i, the voxbridge system account);"
    echo "      run it as root: sudo $0 $build"
    echo "0 passed, 0 failed, 1 skipped"
    exit 0
fi
if [ ! -f "$build/config.h" ] || [ ! -f "$build/Makefile" ]; then
    echo "run.sh: $build is not a configured voxbridge build directory" >&2
    exit 2
fi
# The tools it needs (Debian packages; installed when missing).
need="debhelper dpkg-dev fakeroot rpm lintian logrotate python3 util-linux systemd-container curl"
missing=
for p in $need; do
    dpkg-query -W -f='${Status}' "$p" 2>/dev/null | grep -q "install ok installed" ||
        missing="$missing $p"
done
if [ -n "$missing" ] && [ "$(id -u)" = 0 ]; then
    echo "installing:$missing"
    DEBIAN_FRONTEND=noninteractive apt-get install -y -qq --no-install-recommends $missing \
        >/dev/null 2>&1 || { apt-get update -qq >/dev/null 2>&1 &&
        DEBIAN_FRONTEND=noninteractive apt-get install -y -qq --no-install-recommends \
            $missing >/dev/null 2>&1; } || echo "could not install:$missing (checks may fail)"
fi
PYTHONDONTWRITEBYTECODE=1
export PYTHONDONTWRITEBYTECODE
exec python3 -u "$here/pkgtest.py" $only "$build"
