#!/bin/sh
# The device's own trade-off for -workload mixed, measured with fio and no
# Go at all: 4 KiB O_DIRECT random reads at depth 4 alone, then beside a
# writer of 128 KiB O_DIRECT random writes held at a fixed depth (what an
# ideal admission of that many writes gives), and at depth 64 (no classes).
# Each round runs every case in turn and prints, per depth, the reads' p99
# over their p99 alone and the writes' MiB/s over theirs at depth 64: the
# two ratios the I/O classes' targets are stated in.
#
#   bench/mixed-fio.sh                 # ROUNDS=6 rounds of 5 s cases, ~3 min
#
# Environment: ROUNDS (default 6), TIME (seconds per case, default 5),
# DEPTHS (the writer's fixed depths, default "1 2 3"), BENCH_DIR (where the
# 1 GiB scratch file goes, default /var/tmp: the file system under test).
set -eu
ROUNDS=${ROUNDS:-6}
TIME=${TIME:-5}
DEPTHS=${DEPTHS:-"1 2 3"}
dir=${BENCH_DIR:-/var/tmp}
if ! command -v fio >/dev/null 2>&1; then
	apt-get update -qq
	DEBIAN_FRONTEND=noninteractive apt-get install -y -qq fio >/dev/null
fi
f=$dir/ringwake-mixed-fio.dat
rows=$(mktemp)
trap 'rm -f "$f" "$rows"' EXIT
fio --name=fill --filename="$f" --size=1g --rw=write --bs=1m --direct=1 >/dev/null

common="--ioengine=io_uring --direct=1 --filename=$f --size=1g --runtime=$TIME --time_based"

# run [writer depth]: prints "p99_us MiB/s" (MiB/s 0 without a writer).
# fio --minimal: field 30 is the read clat p99 (µs) of the reads' line,
# field 48 the write bandwidth (KiB/s) of the writer's line.
run() {
	if [ $# -eq 0 ]; then
		fio --minimal --name=fg --rw=randread --bs=4k --iodepth=4 $common
	else
		fio --minimal --name=fg --rw=randread --bs=4k --iodepth=4 $common \
			--name=bg --rw=randwrite --bs=128k --iodepth="$1" $common
	fi | awk -F';' '
		$3 == "fg" { split($30, p, "="); p99 = p[2] }
		$3 == "bg" { bw = $48 / 1024 }
		END { printf "%d %.0f\n", p99, bw }'
}

echo "# fio: 4k random reads at depth 4 against 128k random writes; ratios to reads alone (p99) and to writes at depth 64 (MiB/s)"
echo "round depth read_p99_us ratio write_MiB/s ratio"
r=1
while [ "$r" -le "$ROUNDS" ]; do
	set -- $(run)
	alone=$1
	set -- $(run 64)
	full=$2
	echo "$r alone $alone 1.00 - -"
	echo "$r 64 $1 $(awk "BEGIN{printf \"%.2f\", $1/$alone}") $2 1.00"
	for d in $DEPTHS; do
		set -- $(run "$d")
		echo "$r $d $1 $(awk "BEGIN{printf \"%.2f\", $1/$alone}") $2 $(awk "BEGIN{printf \"%.2f\", $2/$full}")"
	done
	r=$((r + 1))
done | tee "$rows"
sort -n -k2 "$rows" | awk '
	$2 != "alone" && $2 != "64" { p[$2] = p[$2] " " $4; w[$2] = w[$2] " " $6; n[$2]++ }
	function median(s,   a, k, i, j, t) {
		k = split(s, a, " ")
		for (i = 1; i <= k; i++) for (j = i + 1; j <= k; j++) if (a[j] < a[i]) { t = a[i]; a[i] = a[j]; a[j] = t }
		return k % 2 ? a[(k + 1) / 2] : (a[k / 2] + a[k / 2 + 1]) / 2
	}
	$2 != "alone" && $2 != "64" && !($2 in seen) { seen[$2] = 1; order[++m] = $2 }
	END { for (i = 1; i <= m; i++) { d = order[i]; printf "depth %s: reads p99 %.2fx alone, writes %.2fx of depth 64 (medians of %d rounds)\n", d, median(p[d]), median(w[d]), n[d] } }'
