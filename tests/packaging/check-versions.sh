#!/bin/sh
# make check: the Debian changelog and the RPM spec carry the version configure
# was given (AC_INIT), so a release never builds packages with a stale version.
# Run from the build dir (where ./voxbridge is); $srcdir is the source tree.
set -u
srcdir=${srcdir:-.}
bin=${VOXBRIDGE_BIN:-./voxbridge}
want=$("$bin" -V | sed -n 's/^voxbridge //p')
[ -n "$want" ] || { echo "FAIL: '$bin -V' printed no version"; exit 1; }
deb=$(sed -n '1s/^voxbridge (\([^)]*\)).*/\1/p' "$srcdir/packaging/deb/changelog")
deb_upstream=${deb%-*}
rpm=$(sed -n 's/^Version:[[:space:]]*//p' "$srcdir/packaging/rpm/voxbridge.spec" | head -1)
fails=0
if [ "$deb_upstream" != "$want" ]; then
    echo "FAIL: packaging/deb/changelog is at $deb, voxbridge -V says $want"
    echo "      (add an entry: dch -c packaging/deb/changelog -v $want-1)"
    fails=1
fi
if [ "$rpm" != "$want" ]; then
    echo "FAIL: packaging/rpm/voxbridge.spec has Version: $rpm, voxbridge -V says $want"
    fails=1
fi
[ "$fails" = 0 ] && echo "deb $deb and rpm $rpm match voxbridge $want"
exit "$fails"
