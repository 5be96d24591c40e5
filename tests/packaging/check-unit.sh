#!/bin/sh
# make check: `systemd-analyze verify` on the unit this build installs, with its
# ExecStart/ExecReload pointed at the binary just built (the installed path does
# not exist yet). Skipped (77) where systemd-analyze is missing.
set -u
unit=packaging/systemd/voxbridge.service
command -v systemd-analyze >/dev/null || { echo "SKIP: no systemd-analyze"; exit 77; }
[ -f "$unit" ] || { echo "FAIL: $unit was not generated"; exit 1; }
tmp=$(mktemp -d) || exit 1
trap 'rm -rf "$tmp"' EXIT
sbin=$(sed -n 's|^ExecStart=\(.*\)/voxbridge .*|\1|p' "$unit")
sed "s|$sbin/voxbridge|$(pwd)/voxbridge|g" "$unit" > "$tmp/voxbridge.service"
for key in Type=notify 'ExecReload=/bin/kill -HUP $MAINPID' KillMode=mixed User=voxbridge \
           NoNewPrivileges=yes ProtectSystem=strict PrivateTmp=yes ProtectHome=yes; do
    grep -qxF "$key" "$unit" || { echo "FAIL: $unit has no line '$key'"; exit 1; }
done
# --man=no: the man pages named by Documentation= are not installed yet.
if ! out=$(systemd-analyze verify --man=no "$tmp/voxbridge.service" 2>&1) || [ -n "$out" ]; then
    echo "FAIL: systemd-analyze verify:"; echo "$out"; exit 1
fi
echo "systemd-analyze verify: $unit is clean"
