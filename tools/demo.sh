#!/bin/sh
# `make run`'s second half: starts the fixture API on a free loopback port,
# runs scripts/pull_puuids.lua against it, and stops the server.
set -eu
export PYTHONDONTWRITEBYTECODE=1   # no __pycache__ in the checkout
build=${1:-build}
dir=$(mktemp -d)
trap 'kill $(cat "$dir/pid" 2>/dev/null) 2>/dev/null; rm -rf "$dir"' EXIT
python3 tests/fixtures/api.py --daemon --port-file "$dir/port" --pid-file "$dir/pid" \
  --entries 50 --latency 20
base="http://127.0.0.1:$(cat "$dir/port")"
echo
echo "== scripts/pull_puuids.lua against the fixture API at $base =="
"$build/pyqhost" scripts/pull_puuids.lua "$base"
