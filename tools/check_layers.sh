#!/bin/sh
# check_layers.sh -- no file in host/ includes a header of a layer above it.
#
# The layers, lowest first, and what each may include besides its own
# folder (a header of its own folder is included without a folder name):
#   core    (nothing)            loop, fibers, wait protocol, timers, log
#   lua     core                 Lua-facing glue: tasks, guards, checks
#   report  core lua             progress and summary
#   json    core lua             the JSON codec and JSON Lines files
#   sqlite  core lua json        SQLite databases, grouped commits, pyq.sqlite
#   http    core lua report json libcurl on libuv, requests, pyq.http
#   queue   core lua report      pyq.Queue, workers, backends
#   html    core lua             pyq.html: libxml2 documents, XPath, CSS
#   store   core lua report json sqlite queue   the job store: keyed tasks
#                                in SQLite, hooked into the queue
#   redis   core lua             hiredis on the loop: connections, commands
#   cluster core lua report json queue redis   pyq.Queue on Redis Streams,
#                                hooked into the queue; the worker role
#   host/*.c                     puts them together: may include anything
# A lower layer that needs something from a higher one takes a hook the
# higher one registers (h->tasks, h->before_output, pyq_report_section).
# Usage: tools/check_layers.sh [host-dir]; exits 1 listing each violation.
root=${1:-$(dirname "$0")/../host}
allowed () {
  case $1 in
    core) echo "" ;;
    lua) echo "core" ;;
    report) echo "core lua" ;;
    json) echo "core lua" ;;
    sqlite) echo "core lua json" ;;
    http) echo "core lua report json" ;;
    queue) echo "core lua report" ;;
    html) echo "core lua" ;;
    store) echo "core lua report json sqlite queue" ;;
    redis) echo "core lua" ;;
    cluster) echo "core lua report json queue redis" ;;
    *) echo "?" ;;
  esac
}
bad=0
for dir in "$root"/*/; do
  layer=$(basename "$dir")
  ok=$(allowed "$layer")
  if [ "$ok" = "?" ]; then
    echo "check_layers: host/$layer/ is not a known layer (add it here)"
    bad=1
    continue
  fi
  for f in "$dir"*.c "$dir"*.h; do
    [ -e "$f" ] || continue
    grep -nE '^#[[:space:]]*include[[:space:]]+"' "$f" | while IFS= read -r line; do
      inc=$(printf '%s\n' "$line" | sed 's/^[0-9]*:#[[:space:]]*include[[:space:]]*"\([^"]*\)".*/\1/')
      case $inc in
        ../*) echo "host/$layer/$(basename "$f"):${line%%:*}: \"$inc\": name the layer, not a relative path" ;;
        */*)
          to=${inc%%/*}
          case " $ok " in
            *" $to "*) ;;
            *) echo "host/$layer/$(basename "$f"):${line%%:*}: includes $inc: $layer may not call up into $to" ;;
          esac ;;
        *) [ -e "$dir$inc" ] || echo "host/$layer/$(basename "$f"):${line%%:*}: \"$inc\" is not in host/$layer/" ;;
      esac
    done
  done
done > "${TMPDIR:-/tmp}/check_layers.$$"
if [ -s "${TMPDIR:-/tmp}/check_layers.$$" ]; then
  cat "${TMPDIR:-/tmp}/check_layers.$$"
  bad=1
fi
rm -f "${TMPDIR:-/tmp}/check_layers.$$"
[ $bad -eq 0 ] && echo "check_layers: host/ respects its layers"
exit $bad
