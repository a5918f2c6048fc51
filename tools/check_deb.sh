#!/bin/sh
# check_deb.sh -- the Debian package works outside the checkout.
#   tools/check_deb.sh build-deb/pyqhost_*.deb
# Shows its control data and contents (dpkg -I, dpkg -c), checks the files
# a user relies on are in it and that its dependencies came from
# dpkg-shlibdeps, unpacks it under a scratch root (dpkg -x: no root, no
# system change) and runs, from a directory outside the checkout, with
# nothing of the build tree in reach: pyqhost -V, the quickstart example
# shipped in the package, and pyqhost init.
set -eu
deb=$(readlink -f "$1")
scratch=$(mktemp -d)
trap 'rm -rf "$scratch"' EXIT
dpkg -I "$deb" > "$scratch/info"
dpkg -c "$deb" > "$scratch/contents"
cat "$scratch/info"
grep -q '^ Depends: .*libcurl4' "$scratch/info" ||
  { echo "check_deb: no libcurl dependency (dpkg-shlibdeps)"; exit 1; }
for f in ./usr/bin/pyqhost ./usr/share/man/man1/pyqhost.1 \
         ./usr/share/pyqhost/lualib/pyq/init.lua \
         ./usr/share/doc/pyqhost/examples/quickstart.lua; do
  grep -q " $f\$" "$scratch/contents" || { echo "check_deb: $f is missing"; exit 1; }
done
dpkg -x "$deb" "$scratch/root"
bin="$scratch/root/usr/bin/pyqhost"
mkdir "$scratch/work"
cd "$scratch/work"
env -i PATH=/usr/bin:/bin HOME="$scratch/work" "$bin" -V
env -i PATH=/usr/bin:/bin HOME="$scratch/work" "$bin" \
  "$scratch/root/usr/share/doc/pyqhost/examples/quickstart.lua" > quickstart.out
tail -3 quickstart.out
env -i PATH=/usr/bin:/bin HOME="$scratch/work" "$bin" init job
test -s job/job.lua && test -s job/.luarc.json && test -s job/.luacheckrc
env -i PATH=/usr/bin:/bin "$bin" -e 'assert(loadfile("job/job.lua")); print("job.lua compiles")'
echo "check_deb: $(basename "$deb") is whole and runs outside the checkout"
