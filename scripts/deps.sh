#!/bin/sh
# Installs the Debian 12 packages voxbridge needs to build, test and run its
# offline demo. Uses sudo when not root. Safe to run again.
set -e
PKGS="build-essential autoconf automake libtool pkg-config
  libevent-dev libssl-dev libpq-dev libhiredis-dev libjansson-dev libcurl4-openssl-dev
  libopus-dev libspeexdsp-dev libwslay-dev libcmocka-dev
  espeak-ng libespeak-ng-dev pocketsphinx libpocketsphinx-dev pocketsphinx-en-us
  postgresql redis-server sox python3 procps curl openssl clang libclang-rt-14-dev
  faketime wrk nghttp2-client slowhttptest"
SUDO=""
if [ "$(id -u)" != 0 ]; then SUDO=sudo; fi
missing=""
for p in $PKGS; do
    dpkg-query -W -f='${Status}' "$p" 2>/dev/null | grep -q "install ok installed" || missing="$missing $p"
done
if [ -n "$missing" ]; then
    echo "installing:$missing"
    $SUDO apt-get update -qq
    DEBIAN_FRONTEND=noninteractive $SUDO apt-get install -y -qq $missing
fi
