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
nginx_pid=""
cleanup() {
  [ -n "$nginx_pid" ] && kill "$nginx_pid" 2>/dev/null || true
  [ -f "$tmp/redis.pid" ] && kill "$(cat "$tmp/redis.pid")" 2>/dev/null || true
  rm -rf "$tmp"
}
trap cleanup EXIT
free_port() { python3 -c 'import socket; s=socket.socket(); s.bind(("127.0.0.1", 0)); print(s.getsockname()[1])'; }

if ! [ -x /usr/sbin/nginx ]; then echo "nginx is not installed: skipped"; exit 0; fi
rport=$(free_port)
redis-server --port "$rport" --bind 127.0.0.1 --save '' --appendonly no --daemonize yes \
  --pidfile "$tmp/redis.pid" --logfile "$tmp/redis.log" --dir "$tmp"
until redis-cli -p "$rport" ping >/dev/null 2>&1; do sleep 0.05; done
port=$(free_port)
mkdir -p "$tmp/www"
python3 -c 'import json; print(json.dumps({"id": 1, "pad": "x" * 990})[:1023])' > "$tmp/www/doc.json"
cat > "$tmp/nginx.conf" <<CONF
daemon off;
worker_processes 1;
pid $tmp/nginx.pid;
error_log $tmp/error.log;
events { worker_connections 4096; }
http {
  access_log off;
  keepalive_requests 10000000;
  client_body_temp_path $tmp; proxy_temp_path $tmp; fastcgi_temp_path $tmp;
  uwsgi_temp_path $tmp; scgi_temp_path $tmp;
  server { listen 127.0.0.1:$port; root $tmp/www; default_type application/json; }
}
CONF
/usr/sbin/nginx -c "$tmp/nginx.conf" -p "$tmp" & nginx_pid=$!
sleep 0.5
url="http://127.0.0.1:$port/doc.json"
redis="redis://127.0.0.1:$rport/0"
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
