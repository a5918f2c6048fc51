#!/bin/sh
# luacheck.sh -- luacheck (Debian lua-check) over lualib/, scripts/ and
# tests/ with the project's .luacheckrc; exits 1 on any warning (the CTest
# test `luacheck`).  Without luacheck it exits 77, which CTest reports as
# skipped: tools/deps.sh installs it, so CI always runs it.
# Usage: tools/luacheck.sh [source-dir]
root=${1:-$(dirname "$0")/..}
if ! command -v luacheck >/dev/null 2>&1; then
  echo "luacheck: not installed (Debian package lua-check; tools/deps.sh installs it): skipped"
  exit 77
fi
cd "$root" || exit 2
luacheck --config .luacheckrc --no-cache --no-color --codes --quiet lualib scripts tests
