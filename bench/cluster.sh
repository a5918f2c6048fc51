#!/bin/sh
# Cluster queue (issue 12): 100,000 no-op tasks put, run and joined through
# one redis-server on loopback, by the main process alone and with 1 and 2
# `pyqhost --worker` processes, next to redis-benchmark's XADD rate on the
# same server in the same run (50 clients, pipelined 16 deep and not).
#   sh bench/cluster.sh [build-dir] [tasks]
set -eu
build=${1:-build}
n=${2:-100000}
here=$(dirname "$0")
dir=$(mktemp -d)
port=$(python3 -c 'import socket; s=socket.socket(); s.bind(("127.0.0.1", 0)); print(s.getsockname()[1])')
redis-server --port "$port" --bind 127.0.0.1 --save '' --appendonly no --daemonize yes \
  --pidfile "$dir/redis.pid" --logfile "$dir/redis.log" --dir "$dir"
trap 'kill $(cat "$dir/redis.pid") 2>/dev/null; rm -rf "$dir"' EXIT
until redis-cli -p "$port" ping >/dev/null 2>&1; do sleep 0.05; done
url="redis://127.0.0.1:$port/0"
printf "%-44s %12s\n" "measure" "per second"
for w in 0 1 2; do
  i=0
  while [ $i -lt $w ]; do
    "$build/pyqhost" --worker "$url" "$here/cluster.lua" >/dev/null 2>&1 &
    i=$((i + 1))
  done
  [ $w -gt 0 ] && sleep 0.5
  r=$("$build/pyqhost" "$here/cluster.lua" "$url" "$n" | awk '{print $2}')
  printf "%-44s %12s\n" "no-op tasks, main + $w worker processes" "$r"
  wait
done
for p in 16 1; do
  r=$(redis-benchmark -p "$port" -n "$n" -c 50 -P $p -q xadd benchstream '*' f v 2>/dev/null |
      tr '\r' '\n' | sed -n 's/.*: \([0-9.]*\) requests per second.*/\1/p' | tail -1)
  printf "%-44s %12s\n" "redis-benchmark XADD, 50 clients, -P $p" "$r"
done
