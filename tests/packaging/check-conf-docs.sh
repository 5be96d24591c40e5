#!/bin/sh
# make check: every key of `voxbridge --config-keys` must be documented in
# voxbridge.conf(5) (man/voxbridge.conf.5) and docs/configuration.md, with the same
# reload/restart class (on failure, `make update-conf-docs` regenerates both), and
# every option and command of `voxbridge --help` must be in voxbridge(8), and every
# option of `voxbridge-callsim --help` in voxbridge-callsim(1).
# Run from the build dir (where ./voxbridge is); $srcdir is the source tree.
set -u
srcdir=${srcdir:-.}
bin=${VOXBRIDGE_BIN:-./voxbridge}
man=$srcdir/man/voxbridge.conf.5
md=$srcdir/docs/configuration.md
for f in "$bin" "$man" "$md"; do
    [ -e "$f" ] || { echo "FAIL: $f is missing"; exit 1; }
done
table=$("$bin" --config-keys) || { echo "FAIL: $bin --config-keys exited $?"; exit 1; }
[ -n "$table" ] || { echo "FAIL: $bin --config-keys printed nothing"; exit 1; }
# The man page with groff's escapes undone, one ".B key" line followed by "(class...".
man_plain=$(sed -e 's/\\-/-/g' -e 's/\\e/\\/g' -e 's/^\\&//' "$man")
fails=0 n=0
tab=$(printf '\t')
while IFS="$tab" read -r name def class doc; do
    [ -n "$name" ] || continue
    n=$((n + 1))
    man_class=$(printf '%s\n' "$man_plain" | awk -v k="$name" '
        found { sub(/^\(/, ""); sub(/[,)].*/, ""); print; exit }
        $0 == ".B " k { found = 1 }')
    if [ -z "$man_class" ]; then
        echo "FAIL: key $name is missing from man/voxbridge.conf.5"; fails=$((fails + 1))
    elif [ "$man_class" != "$class" ]; then
        echo "FAIL: key $name is '$man_class' in man/voxbridge.conf.5 but '$class' in the code"
        fails=$((fails + 1))
    fi
    md_line=$(grep -F "| \`$name\` |" "$md" | head -1)
    if [ -z "$md_line" ]; then
        echo "FAIL: key $name is missing from docs/configuration.md"; fails=$((fails + 1))
    elif ! printf '%s\n' "$md_line" | grep -q "| $class |"; then
        echo "FAIL: key $name is not marked '$class' in docs/configuration.md"
        fails=$((fails + 1))
    fi
done <<TABLE
$table
TABLE
# Keys the pages name that the code no longer has.
for k in $(printf '%s\n' "$man_plain" | sed -n 's/^\.B \([a-zA-Z0-9_.]*\)$/\1/p'); do
    printf '%s\n' "$table" | cut -f1 | grep -qxF "$k" || {
        echo "FAIL: man/voxbridge.conf.5 documents $k, which voxbridge does not know"
        fails=$((fails + 1)); }
done
# voxbridge(8): each -x / --long option and each command word of the usage text.
man8=$srcdir/man/voxbridge.8
usage=$("$bin" --help 2>&1)
man8_plain=$(sed -e 's/\\-/-/g' "$man8")
words=$(printf '%s\n' "$usage" | awk '
    { sub(/^ *usage:/, ""); sub(/^ */, "") }
    $1 != "voxbridge" { next }
    $2 !~ /^[-[]/ { print $2 }
    { for (i = 2; i <= NF; i++) { w = $i; gsub(/[][|]/, "", w)
        if (w ~ /^(-[A-Za-z]|--[a-z][a-z-]*)$/) print w } }' | sort -u)
[ -n "$words" ] || { echo "FAIL: no options found in 'voxbridge --help'"; fails=$((fails + 1)); }
for w in $words; do
    printf '%s\n' "$man8_plain" | grep -qE -- "(^|[ \"])$w([ ,\"]|\$)" || {
        echo "FAIL: '$w' (from voxbridge --help) is missing from man/voxbridge.8"
        fails=$((fails + 1)); }
done
# voxbridge-callsim(1): each --option of `voxbridge-callsim --help`.
callsim=${CALLSIM_BIN:-./voxbridge-callsim}
man1_plain=$(sed -e 's/\\-/-/g' "$srcdir/man/voxbridge-callsim.1")
copts=$("$callsim" --help 2>&1 | sed -n 's/^  *\(--[a-z][a-z-]*\).*/\1/p' | sort -u)
[ -n "$copts" ] || { echo "FAIL: no options found in 'voxbridge-callsim --help'"; fails=$((fails + 1)); }
for o in $copts; do
    printf '%s\n' "$man1_plain" | grep -qE -- "^\.BI? $o( |\$)" || {
        echo "FAIL: '$o' (from voxbridge-callsim --help) is missing from man/voxbridge-callsim.1"
        fails=$((fails + 1)); }
done
if [ "$fails" -ne 0 ]; then
    echo "$fails problem(s); run 'make update-conf-docs' in a build dir and commit the result"
    exit 1
fi
echo "all $n config keys are documented in voxbridge.conf(5) and docs/configuration.md"
echo "voxbridge(8) has every option and command of --help:" $words
echo "voxbridge-callsim(1) has its" $(echo $copts | wc -w) "options"
