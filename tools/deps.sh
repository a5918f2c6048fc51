#!/bin/sh
# Installs the Debian 12 packages pyqhost needs that are missing:
# `tools/deps.sh` for building and testing (the sanitizers come with gcc;
# lua-check is luacheck, the CTest test `luacheck`; redis-server is started
# by the cluster specs on loopback ports; nginx-light serves the HTTP/2 test
# and the benchmark; python3-httpbin under gunicorn is the HTTP test service
# of tests/http), `tools/deps.sh
# bench` adds wrk and perf (profiling), `tools/deps.sh fuzz` clang and its
# libFuzzer runtime.
# Nothing is downloaded but Debian packages.
set -e
pkgs="cmake gcc make pkg-config liblua5.4-dev libuv1-dev libcurl4-openssl-dev libsqlite3-dev libreadline-dev libxml2-dev libhiredis-dev redis-server lua-busted lua-check lua-cjson python3 openssl nginx-light valgrind python3-httpbin gunicorn"
[ "${1:-}" = bench ] && pkgs="$pkgs wrk linux-perf"
[ "${1:-}" = fuzz ] && pkgs="$pkgs clang libclang-rt-14-dev"
missing=""
for p in $pkgs; do
  dpkg-query -W -f='${Status}' "$p" 2>/dev/null | grep -q "install ok installed" ||
    missing="$missing $p"
done
[ -z "$missing" ] && exit 0
echo "tools/deps.sh: installing$missing"
sudo=""
[ "$(id -u)" = 0 ] || sudo=sudo
$sudo apt-get update -qq
DEBIAN_FRONTEND=noninteractive $sudo apt-get install -y -qq --no-install-recommends $missing
