#!/bin/sh
# A 1 GiB download to disk on loopback: pyq.http's output = path against
# the curl binary's -o (the same libcurl), best of 3 runs each, alternated.
#   sh bench/download.sh [build-dir] [MiB]
set -eu
build=${1:-build}
mib=${2:-1024}
here=$(dirname "$0")
out=$(mktemp -d)
PYTHONDONTWRITEBYTECODE=1 python3 "$here/../tests/fixtures/bytes_server.py" \
  --port-file "$out/port" --pid-file "$out/pid" --lifetime 600
pid=$(cat "$out/pid")
trap 'kill -- -"$pid" 2>/dev/null; rm -rf "$out"' EXIT
url="http://127.0.0.1:$(cat "$out/port")/bytes/$((mib * 1048576))"
cat > "$out/get.lua" <<LUA
local t = pyq.now()
local res = pyq.http.get(arg[1], { output = arg[2], timeout = 600 })
assert(res.size == $((mib * 1048576)), "short download")
print(pyq.now() - t)
LUA
# each side times its transfer itself: no process start-up counted
runs=""
for i in 1 2 3; do
  s=$("$build/pyqhost" "$out/get.lua" "$url" "$out/pyq.bin")
  rm -f "$out/pyq.bin"
  c=$(curl -s -o "$out/curl.bin" -w '%{time_total}' "$url")
  rm -f "$out/curl.bin"
  runs="$runs $s $c"
done
echo "== download: $mib MiB to disk on loopback, best of 3 =="
echo "$runs" | awk -v m="$mib" '{
  p = $1; c = $2
  for (i = 3; i < NF; i += 2) { if ($i < p) p = $i; if ($(i + 1) < c) c = $(i + 1) }
  printf "%-44s %10s %10s %8s\n", "measure", "pyqhost", "curl -o", "ratio"
  printf "%-44s %10.0f %10.0f %7.2fx\n", "MiB/s (output = path vs curl -o)", m / p, m / c, c / p
}'
