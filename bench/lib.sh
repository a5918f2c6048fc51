# bench/lib.sh: what the benchmark scripts share, sourced (POSIX sh): a
# free loopback port, nginx serving one 1 KiB JSON file, a redis-server
# without persistence.  Each server keeps its files in the caller's
# temporary directory; the caller's EXIT trap calls bench_stop, then
# removes that directory.

free_port() {
  python3 -c 'import socket; s=socket.socket(); s.bind(("127.0.0.1", 0)); print(s.getsockname()[1])'
}

# start_nginx DIR: nginx on a free port serving DIR/www/doc.json (1 KiB);
# sets url and nginx_pid.  Keep-alive without limit: the benchmark
# measures requests, not connection set-up.
start_nginx() {
  nport=$(free_port)
  mkdir -p "$1/www"
  python3 -c 'import json; print(json.dumps({"id": 1, "pad": "x" * 990})[:1023])' > "$1/www/doc.json"
  cat > "$1/nginx.conf" <<CONF
daemon off;
worker_processes 1;
pid $1/nginx.pid;
error_log $1/error.log;
events { worker_connections 4096; }
http {
  access_log off;
  keepalive_requests 10000000;
  client_body_temp_path $1; proxy_temp_path $1; fastcgi_temp_path $1;
  uwsgi_temp_path $1; scgi_temp_path $1;
  server { listen 127.0.0.1:$nport; root $1/www; default_type application/json; }
}
CONF
  /usr/sbin/nginx -c "$1/nginx.conf" -p "$1" & nginx_pid=$!
  until python3 -c "import socket; socket.create_connection(('127.0.0.1', $nport), 1)" 2>/dev/null; do
    sleep 0.05
  done
  url="http://127.0.0.1:$nport/doc.json"
}

# start_redis DIR: redis-server on a free port, no persistence, its pid
# and log in DIR; returns once it answers; sets rport and redis.
start_redis() {
  rport=$(free_port)
  redis-server --port "$rport" --bind 127.0.0.1 --save '' --appendonly no --daemonize yes \
    --pidfile "$1/redis.pid" --logfile "$1/redis.log" --dir "$1"
  until redis-cli -p "$rport" ping >/dev/null 2>&1; do sleep 0.05; done
  redis="redis://127.0.0.1:$rport/0"
}

# stop_redis: SHUTDOWN returns once the server is gone, so nothing writes
# into the directory the caller removes next.
stop_redis() {
  [ -n "${rport:-}" ] || return 0
  redis-cli -p "$rport" shutdown nosave >/dev/null 2>&1 || true
  rport=""
}

bench_stop() {
  [ -n "${nginx_pid:-}" ] && kill "$nginx_pid" 2>/dev/null || true
  nginx_pid=""
  stop_redis
}
