#!/bin/sh
# HTTP benchmarks (run by bench/run.sh): pyqhost against a C-only libcurl +
# libuv loop and wrk, on loopback.
#   1. nginx serving a 1 KiB JSON file, 25 in flight;
#   2. 10,000 requests to the fixture API answering after 50 ms, 500 in flight.
set -eu
build=${1:-build}
here=$(cd "$(dirname "$0")" && pwd)
n=${HTTP_N:-200000}
tmp=$(mktemp -d)
api_pid=""
. "$here/lib.sh"
cleanup() {
  bench_stop
  [ -n "$api_pid" ] && kill "$api_pid" 2>/dev/null || true
  rm -rf "$tmp"
}
trap cleanup EXIT
field() { awk -v k="$1" '$1 == k { print $2 }' "$2"; }

if command -v nginx >/dev/null 2>&1 || [ -x /usr/sbin/nginx ]; then
  start_nginx "$tmp"
  "$build/http_loop" "$url" 20000 25 > /dev/null   # warm: first connections, caches
  echo
  echo "== HTTP: nginx, 1 KiB JSON, 25 in flight, $n requests =="
  "$build/pyqhost" "$here/http.lua" "$url" "$n" 25 > "$tmp/pyq"
  "$build/http_loop" "$url" "$n" 25 > "$tmp/c"
  wrk_rps="-"
  if command -v wrk >/dev/null 2>&1; then
    wrk_rps=$(wrk -t1 -c25 -d5s "$url" | awk '/Requests\/sec/ { printf "%.0f", $2 }')
  fi
  p=$(field requests_per_s "$tmp/pyq"); c=$(field requests_per_s "$tmp/c")
  printf "%-36s %12s req/s\n" "pyqhost Queue{workers=25}" "$p"
  printf "%-36s %12s req/s\n" "C loop (libcurl multi + libuv)" "$c"
  printf "%-36s %12s req/s\n" "wrk -c25 (the server's limit)" "$wrk_rps"
  awk -v p="$p" -v c="$c" 'BEGIN { printf "pyqhost / C loop: %.2fx\n", p / c }'
  echo
  echo "== HTTP: the response cache, 20,000 distinct 1 KiB answers, Queue{workers=25} =="
  "$build/pyqhost" "$here/cache.lua" "$url" 20000 25 "$tmp/cache.sqlite" live > "$tmp/live"
  "$build/pyqhost" "$here/cache.lua" "$url" 20000 25 "$tmp/cache.sqlite" replay > "$tmp/replay"
  l=$(field requests_per_s "$tmp/live"); r=$(field requests_per_s "$tmp/replay")
  printf "%-36s %12s req/s\n" "live from nginx (no cache)" "$l"
  printf "%-36s %12s req/s\n" "replayed from the cache" "$r"
  printf "%-36s %12s bytes\n" "cache file (WAL checkpointed)" "$(stat -c %s "$tmp/cache.sqlite")"
  awk -v r="$r" -v l="$l" 'BEGIN { printf "replay / live: %.2fx\n", r / l }'
  if command -v redis-server >/dev/null 2>&1; then   # the same, the cache in Redis on loopback
    start_redis "$tmp"
    "$build/pyqhost" "$here/cache.lua" "$url" 20000 25 "redis://127.0.0.1:$rport/1" replay > "$tmp/rreplay" || true
    stop_redis
    rr=$(field requests_per_s "$tmp/rreplay")
    printf "%-36s %12s req/s\n" "replayed from the cache in Redis" "$rr"
    awk -v r="$rr" -v l="$l" 'BEGIN { if (r > 0) printf "Redis replay / live: %.2fx\n", r / l }'
  fi
else
  echo "nginx not found: skipping the nginx benchmark (tools/deps.sh bench installs it)"
fi

port=$(free_port)
python3 "$here/../tests/fixtures/api.py" --port "$port" --latency 50 > /dev/null & api_pid=$!
sleep 1
url="http://127.0.0.1:$port/lol/summoner/v4/summoners/bench"
echo
echo "== HTTP: 10,000 requests, server answers after 50 ms, 500 in flight (ideal 1.0 s) =="
# a cold server answers its first thousands slower: whoever went first lost
"$build/http_loop" "$url" 5000 500 > /dev/null
"$build/pyqhost" "$here/http.lua" "$url" 10000 500 > "$tmp/pyq"
"$build/http_loop" "$url" 10000 500 > "$tmp/c"
p=$(field seconds "$tmp/pyq"); c=$(field seconds "$tmp/c")
printf "%-36s %8s s\n" "pyqhost Queue{workers=500}" "$p"
printf "%-36s %8s s\n" "C loop, 500 in flight" "$c"
awk -v p="$p" -v c="$c" 'BEGIN { printf "pyqhost / C loop time: %.2fx\n", p / c }'
