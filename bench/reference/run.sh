#!/bin/sh
# Builds bench/reference/nop.c (the C liburing NOP loop uringbench compares
# ringwake with) against Debian's liburing-dev, runs it 3 times and prints
# the median rate.
#
#   bench/reference/run.sh [seconds per run, default 5] [queue depth, default 32]
set -eu

here=$(cd "$(dirname "$0")" && pwd)
secs=${1:-5}
depth=${2:-32}

sudo=""
[ "$(id -u)" -eq 0 ] || sudo=sudo
if ! command -v gcc >/dev/null 2>&1 || ! echo '#include <liburing.h>' | gcc -E - >/dev/null 2>&1; then
	$sudo apt-get update
	$sudo apt-get install -y gcc liburing-dev
fi

tmp=$(mktemp -d)
trap 'rm -rf "$tmp"' EXIT INT TERM
gcc -O2 -Wall -o "$tmp/nop" "$here/nop.c" -luring

for i in 1 2 3; do
	"$tmp/nop" -t "$secs" -q "$depth"
done | tee "$tmp/runs"

median=$(sed -n 's/.*ops_per_s=\([0-9]*\).*/\1/p' "$tmp/runs" | sort -n | sed -n 2p)
version=$(dpkg-query -W -f='${Version}' liburing-dev 2>/dev/null || echo unknown)
echo "median ops_per_s=$median (3 runs of ${secs}s, depth $depth, liburing-dev $version, gcc -O2)"
