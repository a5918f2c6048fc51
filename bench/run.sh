#!/bin/sh
# Runs the benchmarks side by side: pyqhost against its peers, one run.
#   sh bench/run.sh [build-dir] [scale]
set -eu
build=${1:-build}
scale=${2:-1}
here=$(dirname "$0")
out=$(mktemp -d)
trap 'rm -rf "$out"' EXIT

echo "== queue: pyqhost vs asyncio (scale $scale) =="
"$build/pyqhost" "$here/queue.lua" "$scale" > "$out/pyq"
python3 "$here/queue_asyncio.py" "$scale" > "$out/py"
awk '
  FNR == NR { pyq[$1] = $2; next }
  { py[$1] = $2 }
  END {
    printf "%-34s %14s %14s %9s\n", "measure", "pyqhost", "asyncio", "ratio"
    printf "%-34s %14.0f %14.0f %8.1fx\n", "no-op tasks/s (25 workers)", pyq["noop_tasks_per_s"], py["noop_tasks_per_s"], pyq["noop_tasks_per_s"] / py["noop_tasks_per_s"]
    printf "%-34s %14.0f %14.0f %8.1fx\n", "tasks/s returning a value (join)", pyq["result_tasks_per_s"], py["result_tasks_per_s"], pyq["result_tasks_per_s"] / py["result_tasks_per_s"]
    printf "%-34s %14.1f %14s\n", "bytes per pending task (Lua heap)", pyq["pending_heap_bytes"], "-"
    printf "%-34s %14.1f %14.1f %8.2fx\n", "bytes per pending task (RSS)", pyq["pending_rss_bytes"], py["pending_rss_bytes"], pyq["pending_rss_bytes"] / py["pending_rss_bytes"]
    printf "%-34s %14.3f %14.3f %9s\n", "10 ms sleeps over 1000 workers, s", pyq["sleep_seconds"], py["sleep_seconds"], ""
    printf "%-34s %14.2fx %13.2fx\n", "  against the ideal " pyq["sleep_ideal"] " s", pyq["sleep_seconds"] / pyq["sleep_ideal"], py["sleep_seconds"] / pyq["sleep_ideal"]
  }' "$out/pyq" "$out/py"

echo
echo "== JSON: pyq.json vs lua-cjson (MB/s of JSON text, CPU time, best of 5) =="
mkdir "$out/json"
python3 "$here/json_data.py" "$out/json"
"$build/pyqhost" "$here/json.lua" "$out/json" 20 > "$out/json.txt"
awk '
  { v[$1] = $2 }
  END {
    printf "%-44s %10s %10s %8s\n", "measure", "pyq.json", "cjson", "ratio"
    split("docs_decode docs_encode big_decode big_encode", k, " ")
    name["docs_decode"] = sprintf("decode, 64 match documents (%.1f KB each)", v["docs_bytes"] / 1000)
    name["docs_encode"] = "encode, the same documents"
    name["big_decode"] = sprintf("decode, one %.0f MB array", v["big_bytes"] / 1e6)
    name["big_encode"] = "encode, the same array"
    for (i = 1; i <= 4; i++)
      printf "%-44s %10.1f %10.1f %7.2fx\n", name[k[i]], v["pyq_" k[i] "_mbs"], v["cjson_" k[i] "_mbs"],
             v["pyq_" k[i] "_mbs"] / v["cjson_" k[i] "_mbs"]
  }' "$out/json.txt"
echo

echo "== SQLite: pyq.sqlite vs Python's sqlite3 (200,000 rows, WAL, synchronous=NORMAL) =="
mkdir "$out/sqlite"
"$build/pyqhost" "$here/sqlite.lua" "$out/sqlite" 200000 > "$out/sq.txt"
python3 "$here/sqlite_py.py" "$out/sqlite" 200000 > "$out/sqpy.txt"
awk '
  FNR == NR { pyq[$1] = $2; next }
  { py[$1] = $2 }
  END {
    printf "%-44s %12s %12s %8s\n", "measure", "pyqhost", "python3", "ratio"
    printf "%-44s %12.0f %12.0f %7.2fx\n", "inserts/s, one per task (Queue, 25 workers)", pyq["task_inserts_per_s"], py["executemany_inserts_per_s"], pyq["task_inserts_per_s"] / py["executemany_inserts_per_s"]
    printf "%-44s %12s %12s\n", "  (peer: executemany, one transaction)", "", ""
    printf "%-44s %12.0f %12.0f %7.2fx\n", "inserts/s, a loop of exec / execute", pyq["loop_inserts_per_s"], py["loop_inserts_per_s"], pyq["loop_inserts_per_s"] / py["loop_inserts_per_s"]
  }' "$out/sq.txt" "$out/sqpy.txt"
echo

echo "== job store: keyed tasks vs Python's sqlite3 (100,000 records, WAL, synchronous=NORMAL) =="
mkdir "$out/store"
"$build/pyqhost" "$here/store.lua" "$out/store" 100000 > "$out/st.txt"
python3 "$here/store_py.py" "$out/store" 100000 > "$out/stpy.txt"
awk '
  FNR == NR { pyq[$1] = $2; next }
  { py[$1] = $2 }
  END {
    printf "%-44s %12s %12s %8s\n", "measure", "pyqhost", "python3", "ratio"
    printf "%-44s %12.0f %12.0f %7.2fx\n", "keyed tasks/s, first run (recorded)", pyq["store_first_per_s"], py["executemany_per_s"], pyq["store_first_per_s"] / py["executemany_per_s"]
    printf "%-44s %12s %12s\n", "  (peer: executemany of the same records)", "", ""
    printf "%-44s %12.0f %12.0f %7.2fx\n", "keyed tasks/s, re-run (all skipped)", pyq["store_rerun_per_s"], py["lookups_per_s"], pyq["store_rerun_per_s"] / py["lookups_per_s"]
    printf "%-44s %12s %12s\n", "  (peer: a loop of primary-key reads + json)", "", ""
  }' "$out/st.txt" "$out/stpy.txt"
echo

if [ -f "$here/http.sh" ]; then sh "$here/http.sh" "$build"; fi
if [ -f "$here/download.sh" ]; then sh "$here/download.sh" "$build"; fi
if [ -f "$here/cluster.sh" ]; then
  echo
  echo "== cluster queue: round trip, CPU-bound speed-up, Redis commands per task (one loopback redis-server) =="
  sh "$here/cluster.sh" "$build"
fi
if [ -f "$here/shared_limit.sh" ]; then
  echo
  echo "== shared rate limit: the cost of asking Redis =="
  sh "$here/shared_limit.sh" "$build"
fi
