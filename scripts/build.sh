#!/bin/sh
# Configures and builds voxbridge out of tree in ./_build (or $1).
set -e
top=$(cd "$(dirname "$0")/.." && pwd)
build=${1:-$top/_build}
cd "$top"
[ -x configure ] || autoreconf -fi >/dev/null
mkdir -p "$build"
cd "$build"
[ -f Makefile ] || "$top/configure" -q $VB_CONFIGURE_FLAGS
make -j"$(nproc)" >/dev/null
echo "built in $build"
