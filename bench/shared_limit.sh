#!/bin/sh
# The cost of a shared rate limit (issue 12): requests/s of one pyqhost
# process (25 in flight) to nginx serving a 1 KiB file on loopback with no
# limit, with a local http.limit and with a shared one (one EVALSHA per
# request on a loopback redis-server), the limits set far above the rate
# reached; then three processes at once through the shared limit.
#   sh bench/shared_limit.sh [build-dir] [requests]
set -eu
build=${1:-build}
n=${2:-20000}
here=$(cd "$(dirname "$0")" && pwd)
tmp=$(mktemp -d)
. "$here/lib.sh"
trap 'bench_stop; rm -rf "$tmp"' EXIT

if ! [ -x /usr/sbin/nginx ]; then echo "nginx is not installed: skipped"; exit 0; fi
start_redis "$tmp"
start_nginx "$tmp"
run() { "$build/pyqhost" "$here/shared_limit.lua" "$url" "$1" 25 "$2" "$redis" | awk '{ print $2 }'; }
run 2000 none > /dev/null   # warm: first connections, caches
printf "%-52s %12s\n" "measure ($n requests, 25 in flight)" "requests/s"
for mode in none local shared none local shared; do
  printf "%-52s %12s\n" "one process, limit: $mode" "$(run "$n" "$mode")"
done
pids=""
for i in 1 2 3; do run "$n" shared > "$tmp/p$i" & pids="$pids $!"; done
for p in $pids; do wait "$p"; done   # not nginx
total=$(cat "$tmp/p1" "$tmp/p2" "$tmp/p3" | awk '{ s += $1 } END { printf "%.0f", s }')
printf "%-52s %12s\n" "three processes at once, limit: shared (sum)" "$total"
