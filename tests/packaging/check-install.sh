#!/bin/sh
# make check: `make install DESTDIR=...` lays out what mk/packaging.mk promises
# under the configured directories, installs every migration of sql/, keeps an
# edited config on a second install, and `make uninstall` leaves no file behind.
# Run from the build dir; $srcdir is the source tree.
set -u
srcdir=${srcdir:-.}
dest=$(mktemp -d) || exit 1
trap 'chmod -R u+w "$dest" 2>/dev/null; rm -rf "$dest"' EXIT
unset MAKEFLAGS MFLAGS MAKELEVEL
# The configured directories, as make sees them.
vars=$(make -s -f - print-dirs <<'MK'
include Makefile
print-dirs:
	@echo "prefix=$(prefix) sbindir=$(sbindir) bindir=$(bindir) sysconfdir=$(sysconfdir) localstatedir=$(localstatedir) pkgdatadir=$(pkgdatadir) mandir=$(mandir) docdir=$(docdir) unitdir=$(systemdsystemunitdir) sysusersdir=$(sysusersdir) tmpfilesdir=$(tmpfilesdir)"
MK
)
vars=$(printf '%s\n' "$vars" | grep '^prefix=')
[ -n "$vars" ] || { echo "FAIL: cannot read the directories from the Makefile"; exit 1; }
eval "$vars"
fails=0
fail() { echo "FAIL: $*"; fails=$((fails + 1)); }
make -s install DESTDIR="$dest" >"$dest.log" 2>&1 || { cat "$dest.log"; rm -f "$dest.log"; fail "make install exited non-zero"; exit 1; }
rm -f "$dest.log"
d=$dest
for f in "$sbindir/voxbridge" "$bindir/voxbridge-callsim" "$sysconfdir/voxbridge/voxbridge.conf" \
         "$sysconfdir/logrotate.d/voxbridge" "$mandir/man8/voxbridge.8" "$mandir/man5/voxbridge.conf.5" \
         "$mandir/man1/voxbridge-callsim.1" "$docdir/operations.md" "$docdir/configuration.md"; do
    [ -f "$d$f" ] || fail "make install did not install $f"
done
case $unitdir in no) ;; *) [ -f "$d$unitdir/voxbridge.service" ] || fail "no $unitdir/voxbridge.service";; esac
case $sysusersdir in no) ;; *) [ -f "$d$sysusersdir/voxbridge.conf" ] || fail "no $sysusersdir/voxbridge.conf";; esac
case $tmpfilesdir in no) ;; *) [ -f "$d$tmpfilesdir/voxbridge.conf" ] || fail "no $tmpfilesdir/voxbridge.conf";; esac
for dir in "$localstatedir/lib/voxbridge" "$localstatedir/log/voxbridge"; do
    [ -d "$d$dir" ] || fail "make install did not create $dir"
done
for m in "$srcdir"/sql/*.sql; do
    [ -f "$m" ] || continue
    [ -f "$d$pkgdatadir/sql/$(basename "$m")" ] ||
        fail "migration $(basename "$m") is not installed in $pkgdatadir/sql (add it to dist_sql_DATA)"
done
# Nothing outside the configured directories.
outside=$(cd "$d" && find . -type f | sed 's|^\.||' | while read -r f; do
    case $f in "$prefix"/*|"$sysconfdir"/*|"$localstatedir"/*|"$unitdir"/*|"$sysusersdir"/*|"$tmpfilesdir"/*) ;;
        *) echo "$f";; esac; done)
[ -z "$outside" ] && [ "$prefix" != "" ] || fail "installed outside the configured directories: $outside"
conf=$d$sysconfdir/voxbridge/voxbridge.conf
mode=$(stat -c %a "$conf")
[ "$mode" = 640 ] || fail "voxbridge.conf is mode $mode, not 640 (it holds secrets)"
grep -q "^state_dir = $localstatedir/lib/voxbridge\$" "$conf" ||
    fail "the installed config's state_dir is not $localstatedir/lib/voxbridge"
grep -q "^ExecStart=$sbindir/voxbridge -c $sysconfdir/voxbridge/voxbridge.conf\$" \
    "$d$unitdir/voxbridge.service" 2>/dev/null || [ "$unitdir" = no ] ||
    fail "the unit's ExecStart is not $sbindir/voxbridge -c $sysconfdir/voxbridge/voxbridge.conf"
# An edited config survives a second install, and uninstall keeps it.
echo "# edited by check-install.sh" >> "$conf"
make -s install DESTDIR="$dest" >/dev/null 2>&1 || fail "a second make install failed"
tail -1 "$conf" | grep -q "edited by check-install" || fail "a second make install overwrote the edited config"
make -s uninstall DESTDIR="$dest" >/dev/null 2>&1 || fail "make uninstall failed"
left=$(cd "$d" && find . -type f | sed 's|^\.||')
[ "$left" = "$sysconfdir/voxbridge/voxbridge.conf" ] ||
    fail "after make uninstall, expected only the edited config to stay; found: $left"
# and an unedited one goes
sed -i '$d' "$conf"
make -s uninstall DESTDIR="$dest" >/dev/null 2>&1
left=$(cd "$d" && find . -type f)
[ -z "$left" ] || fail "make uninstall left files: $left"
[ "$fails" = 0 ] || exit 1
echo "make install DESTDIR: layout under $prefix, $sysconfdir, $localstatedir; config kept; uninstall clean"
