#!/bin/sh
# Cluster queue (issue 12), every figure from one redis-server on loopback
# started here (no persistence), in one run:
#  1. the round trip: N no-op tasks (100,000) put, run and joined by the
#     main process alone, with 1 and with 2 `pyqhost --worker` processes,
#     the median of 3 runs each (alternating), next to redis-benchmark's XADD on the same
#     server (50 clients, one at a time and pipelined 16 deep);
#  2. CPU-bound tasks (2,000 of about 2 ms of Lua each): a local queue, the
#     cluster queue in one process, and main + 1 worker process (the
#     speed-up two cores give), with the CPU seconds each process and
#     Redis spent;
#  3. Redis commands per task: CONFIG RESETSTAT before a run of (1), INFO
#     commandstats after, total and per command (the bench's own CONFIG
#     and INFO left out).
# A worker process starts before its run's main process and finds the job
# by polling (every 0.2 s), as it would in production: that wait counts.
# Meant for a Release build (`make bench`); the workers' and main's CPU
# seconds come from the shell's `times`.
#   sh bench/cluster.sh [build-dir] [tasks] [cpu-tasks]
set -eu
build=${1:-build}
n=${2:-100000}
ncpu=${3:-2000}
runs=3
here=$(dirname "$0")
dir=$(mktemp -d)
. "$here/lib.sh"
trap 'stop_redis; rm -rf "$dir"' EXIT
start_redis "$dir"
port=$rport
url=$redis
cli () { redis-cli -p "$port" "$@"; }

# seconds of CPU from `times`' children line: "0m1.230000s 0m0.450000s"
cpu_of () { [ -f "$1" ] || { echo 0; return; }; tail -1 "$1" | tr "ms" "  " | awk '{ printf "%.3f", $1 * 60 + $2 + $3 * 60 + $4 }'; }
redis_cpu () { cli info cpu | tr -d '\r' | awk -F: '/^used_cpu_(sys|user):/ { s += $2 } END { printf "%.3f", s }'; }

# run TAG WORKERS ARGS...: the main process with WORKERS worker processes;
# leaves main's "key value" lines in $dir/TAG.out, the CPU seconds of
# main, the workers and Redis in $dir/TAG.cpu, the command counts in
# $dir/TAG.cmd (command calls, one a line)
run () {
  tag=$1 w=$2
  shift 2
  i=0
  pids=
  while [ $i -lt "$w" ]; do
    ( "$build/pyqhost" --worker "$url" "$here/cluster.lua" >/dev/null 2>&1; times > "$dir/$tag.w$i" ) &
    pids="$pids $!"
    i=$((i + 1))
  done
  [ "$w" -gt 0 ] && sleep 0.5
  cli config resetstat >/dev/null
  r0=$(redis_cpu)
  ( "$build/pyqhost" "$here/cluster.lua" "$@" > "$dir/$tag.out"; times > "$dir/$tag.m" )
  # a worker that never saw the job (it ended between two of its polls)
  # would wait for the next one for ever: 3 s, then it is stopped
  i=0
  while [ -n "$pids" ] && [ $i -lt 30 ] && for p in $pids; do kill -0 "$p" 2>/dev/null && break; done; do
    sleep 0.1
    i=$((i + 1))
  done
  for p in $pids; do
    if kill -0 "$p" 2>/dev/null; then
      echo "bench/cluster.sh: a worker process of $tag did not end; stopped" >&2
      pkill -TERM -P "$p" 2>/dev/null || true
    fi
  done
  wait
  r1=$(redis_cpu)
  cli info commandstats | tr -d '\r' |
    sed -n 's/^cmdstat_\([a-z|]*\):calls=\([0-9]*\),.*/\1 \2/p' | { grep -Ev '^(config|info)[| ]' || true; } > "$dir/$tag.cmd"
  wc=0
  i=0
  while [ $i -lt "$w" ]; do
    wc=$(echo "$wc $(cpu_of "$dir/$tag.w$i")" | awk '{ printf "%.3f", $1 + $2 }')
    i=$((i + 1))
  done
  echo "$(cpu_of "$dir/$tag.m") $wc $(echo "$r0 $r1" | awk '{ printf "%.3f", $2 - $1 }')" > "$dir/$tag.cpu"
}
val () { awk -v k="$2" '$1 == k { print $2 }' "$dir/$1.out"; }
median () { sort -n | awk '{ v[NR] = $1 } END { print v[int((NR + 1) / 2)] }'; }

for p in 1 16; do
  redis-benchmark -p "$port" -n "$n" -c 50 -P $p -q xadd benchstream '*' f v 2>/dev/null |
    tr '\r' '\n' | sed -n 's/.*: \([0-9.]*\) requests per second.*/\1/p' | tail -1 > "$dir/xadd$p"
  cli del benchstream >/dev/null
done
xadd1=$(cat "$dir/xadd1")
xadd16=$(cat "$dir/xadd16")

echo "1. round trip: $n no-op tasks (workers = 50 per process), median of $runs runs, alternating"
k=0
while [ $k -lt $runs ]; do   # alternating, so that the others' load falls on each alike
  for w in 0 1 2; do
    run "noop$w.$k" $w noop "$url" "$n"
    echo "$(val "noop$w.$k" tasks_per_s) $k" >> "$dir/rates$w"
  done
  k=$((k + 1))
done
printf "%-32s %9s %15s %10s %11s %8s %8s %8s\n" "setup" "tasks/s" "(min - max)" "/ XADD -P1" "/ XADD -P16" "main cpu" "workers" "redis"
for w in 0 1 2; do
  med=$(awk '{ print $1 }' "$dir/rates$w" | median)
  range=$(sort -n "$dir/rates$w" | awk 'NR == 1 { a = $1 } { b = $1 } END { printf "(%d - %d)", a, b }')
  k=$(awk -v m="$med" '$1 == m { print $2; exit }' "$dir/rates$w")
  cp "$dir/noop$w.$k.cmd" "$dir/noop$w.cmd"
  set -- $(cat "$dir/noop$w.$k.cpu")
  printf "%-32s %9.0f %15s %9.2fx %10.2fx %7.2fs %7.2fs %7.2fs\n" "main + $w worker processes" "$med" "$range" \
    "$(echo "$med $xadd1" | awk '{ print $1 / $2 }')" "$(echo "$med $xadd16" | awk '{ print $1 / $2 }')" "$1" "$2" "$3"
done
printf "%-32s %9.0f\n" "redis-benchmark XADD -c 50 -P 1" "$xadd1"
printf "%-32s %9.0f\n" "redis-benchmark XADD -c 50 -P 16" "$xadd16"

echo
echo "2. CPU-bound: $ncpu tasks of ~2 ms of Lua each (workers = 50 per process), best of $runs"
iters=$("$build/pyqhost" "$here/cluster.lua" calibrate 2 | awk '{ print $2 }')
printf "%-40s %8s %8s %10s %9s %9s %9s\n" "setup" "seconds" "speed-up" "by workers" "main cpu" "workers" "redis"
best () {   # best TAG: the run of the fewest seconds among TAG.0 .. TAG.(runs-1)
  for k in $(seq 0 $((runs - 1))); do echo "$(val "$1.$k" seconds) $k"; done | sort -n | head -1 | awk '{ print $2 }'
}
k=0
while [ $k -lt $runs ]; do   # alternating, so that the others' load falls on each alike
  run "local.$k" 0 cpu local "$ncpu" "$iters"
  run "one.$k" 0 cpu "$url" "$ncpu" "$iters"
  run "two.$k" 1 cpu "$url" "$ncpu" "$iters"
  k=$((k + 1))
done
base=$(val "local.$(best local)" seconds)
for t in "local:local queue, one process (no Redis)" "one:cluster queue, main alone" "two:cluster queue, main + 1 worker process"; do
  tag=${t%%:*}
  k=$(best "$tag")
  s=$(val "$tag.$k" seconds)
  set -- $(cat "$dir/$tag.$k.cpu")
  printf "%-40s %8.3f %7.2fx %10s %8.2fs %8.2fs %8.2fs\n" "${t#*:}" "$s" \
    "$(echo "$base $s" | awk '{ print $1 / $2 }')" "$(val "$tag.$k" elsewhere)" "$1" "$2" "$3"
done
k=$(best two)
echo "  main + 1 worker, from the put of the first task: main ran tasks from $(val "two.$k" main_first) s to" \
  "$(val "two.$k" main_last) s, $(val "two.$k" main_busy) s inside them; the worker process from" \
  "$(val "two.$k" workers_first) s to $(val "two.$k" workers_last) s, $(val "two.$k" workers_busy) s inside them" \
  "(time inside tasks over CPU time: other processes had the core)"
echo "  (speed-up: the local queue's seconds / the setup's; by workers: tasks a worker process ran)"

echo
echo "3. Redis commands per task, the median run of (1) (CONFIG RESETSTAT before, INFO commandstats after)"
for w in 0 1 2; do
  awk -v n="$n" -v w="$w" '
    { t += $2; c[$1] = $2; o[++m] = $1 }
    END {
      s = ""
      for (i = 1; i <= m; i++) if (c[o[i]] / n >= 0.0005) s = s sprintf(" %s %.3f", o[i], c[o[i]] / n)
      printf "%-40s %6.3f  (%s )\n", "main + " w " worker processes", t / n, substr(s, 2)
    }' "$dir/noop$w.cmd"
done
