#!/bin/sh
# Builds the C liburing references uringbench compares ringwake with, against
# Debian's liburing-dev:
#   nop.c   the NOP loop (`uringbench -workload nop`, engine cref);
#   peak.c  reads or writes at a queue depth, submitted and reaped in batches
#           (`uringbench -engine cpeak`; usage in its opening comment).
#
#   bench/reference/run.sh [seconds per run, default 5] [queue depth, default 32]
#       runs the NOP loop 3 times and prints the median rate;
#   bench/reference/run.sh peak PEAK-FLAGS...
#       runs peak.c once, such as
#       bench/reference/run.sh peak -w randread -f FILE -b 4096 -N 65536 -q 32 -s 4 -c 4 -D -t 5
set -eu

here=$(cd "$(dirname "$0")" && pwd)

sudo=""
[ "$(id -u)" -eq 0 ] || sudo=sudo
if ! command -v gcc >/dev/null 2>&1 || ! echo '#include <liburing.h>' | gcc -E - >/dev/null 2>&1; then
	$sudo apt-get update
	$sudo apt-get install -y gcc liburing-dev
fi

tmp=$(mktemp -d)
trap 'rm -rf "$tmp"' EXIT INT TERM
gcc -O2 -Wall -o "$tmp/nop" "$here/nop.c" -luring
gcc -O2 -Wall -o "$tmp/peak" "$here/peak.c" -luring

if [ "${1:-}" = peak ]; then
	shift
	"$tmp/peak" "$@"
	exit
fi

secs=${1:-5}
depth=${2:-32}
for i in 1 2 3; do
	"$tmp/nop" -t "$secs" -q "$depth"
done | tee "$tmp/runs"

median=$(sed -n 's/.*ops_per_s=\([0-9]*\).*/\1/p' "$tmp/runs" | sort -n | sed -n 2p)
version=$(dpkg-query -W -f='${Version}' liburing-dev 2>/dev/null || echo unknown)
echo "median ops_per_s=$median (3 runs of ${secs}s, depth $depth, liburing-dev $version, gcc -O2)"
