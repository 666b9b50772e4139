#!/bin/sh
# Regenerates the benchmark tables of docs/benchmarks.md: describes the
# machine, runs every workload RUNS times with `uringbench -json` (each run
# has all engines one after another on the same file), and prints markdown
# tables of the per-engine medians with the targets checked. Every table
# has each row's CPU per op and, where cpeak ran (the C liburing loop at the
# same depth, the anchor: where it is slow, the device is the limit), each
# row's IOPS ratio to it.
#
#   bench/run.sh > /tmp/tables.md
#
# Environment: TIME (per engine, default 5s), RUNS (default 3), BENCH_DIR
# (where the scratch file goes, default: the repository root, i.e. the file
# system under test), SCENARIOS (default: all of them but depths, see
# below), DEPTHS (for the depths scenario, default "1 8 32 128").
#
# The depths scenario runs randread and randwrite, page-cached and O_DIRECT,
# at each depth of DEPTHS with the ring (block and callback), cpeak and fio:
# 16 tables by default, about RUNS x 16 x 4 x TIME.
#
#   TIME=2s RUNS=3 SCENARIOS=depths bench/run.sh
#
# The features scenario measures -fixedbufs, -registerfiles and -sqpoll
# (randread 4k O_DIRECT qd 32, ring and fio) in one table: each run goes
# through every variant in turn, so that the machine's drift over the
# minutes of the scenario weighs on all of them alike.
#
#   TIME=3s SCENARIOS=features bench/run.sh
set -eu

cd "$(dirname "$0")/.."
repo=$(pwd)
TIME=${TIME:-5s}
RUNS=${RUNS:-3}
BENCH_DIR=${BENCH_DIR:-$repo}
SCENARIOS=${SCENARIOS:-"randread-direct randread-warm randread-cached nop randwrite read write randrw fsync features"}
DEPTHS=${DEPTHS:-"1 8 32 128"}

sudo=""
[ "$(id -u)" -eq 0 ] || sudo=sudo
need=""
command -v fio >/dev/null 2>&1 || need="$need fio"
command -v gcc >/dev/null 2>&1 || need="$need gcc"
if ! echo '#include <liburing.h>' | gcc -E - >/dev/null 2>&1; then need="$need liburing-dev"; fi
if [ -n "$need" ]; then
	echo "installing:$need" >&2
	$sudo apt-get update >&2
	$sudo apt-get install -y $need >&2
fi

tmp=$(mktemp -d)
file="$BENCH_DIR/uringbench-run-$$.dat"
trap 'rm -rf "$tmp"; rm -f "$file"' EXIT INT TERM
go build -o "$tmp/uringbench" ./cmd/uringbench
go build -o "$tmp/mdtable" ./bench/mdtable

# measure NAME ARGS...: RUNS runs of uringbench into $tmp/NAME.N.json. The
# scratch file is created and filled by the first run and kept for the rest.
# Even runs take the engines in reverse order: the host's I/O budget drifts
# over seconds, and an engine that always ran first or last would carry
# that drift alone (mdtable keeps the first run's row order). ENGINES, when
# set, is the engine list of odd runs (default: uringbench's all).
measure() {
	name=$1
	shift
	i=1
	while [ "$i" -le "$RUNS" ]; do
		order=""
		[ -z "${ENGINES:-}" ] || order="-engine $ENGINES"
		if [ $((i % 2)) -eq 0 ]; then
			order="-engine cpeak,fio,gofile,ring"
			case " $* " in *" nop "*) order="-engine cref,cpeak,fio,gofile,ring" ;; esac
			[ -z "${ENGINES:-}" ] || order="-engine $(echo "$ENGINES" | tr , '\n' | tac | paste -sd,)"
		fi
		echo "running $name $i/$RUNS: uringbench -time $TIME $* $order" >&2
		# -force: the script made up this file's name and only uringbench wrote it,
		# but a file system without user xattrs would hide that from the next run.
		# $order is split into words on purpose.
		# shellcheck disable=SC2086
		"$tmp/uringbench" -json -time "$TIME" -file "$file" -keep -force "$@" $order >"$tmp/$name.$i.json"
		i=$((i + 1))
	done
}

# The variants of the features scenario: a name, then uringbench's flags.
# -fixedbufs with -registerfiles runs in callback mode only: the blocking API
# has no call that takes both.
features_variants="base:
fixedbufs:-fixedbufs
registerfiles:-registerfiles
sqpoll:-sqpoll
all:-fixedbufs -registerfiles -sqpoll -mode callback"

# measure_features NAME ARGS...: RUNS rounds, each running every variant of
# $features_variants with ARGS, into $tmp/NAME.N.json: one JSON array per
# round holding every variant's rows (their modes tell them apart).
measure_features() {
	name=$1
	shift
	i=1
	while [ "$i" -le "$RUNS" ]; do
		parts=""
		echo "$features_variants" | while IFS=: read -r v flags; do
			echo "running $name $i/$RUNS $v: uringbench -time $TIME $* $flags" >&2
			# $flags is split into words on purpose.
			# shellcheck disable=SC2086
			"$tmp/uringbench" -json -time "$TIME" -file "$file" -keep -force "$@" $flags >"$tmp/$name-$v.$i.part"
		done
		for v in $(echo "$features_variants" | cut -d: -f1); do
			parts="$parts $tmp/$name-$v.$i.part"
		done
		# shellcheck disable=SC2086
		merge_json $parts >"$tmp/$name.$i.json"
		i=$((i + 1))
	done
}

# merge_json FILE...: the rows of uringbench -json outputs as one array.
# uringbench prints "[" and "]" on lines of their own, objects between them.
merge_json() {
	echo "["
	sep=""
	for f in "$@"; do
		[ -z "$sep" ] || echo ","
		sed '1d;$d' "$f"
		sep=1
	done
	echo "]"
}

# table NAME TITLE [mdtable flags]: the medians of NAME's runs.
table() {
	name=$1 title=$2
	shift 2
	"$tmp/mdtable" -title "$title" "$@" "$tmp/$name".*.json
}

echo "### Machine"
echo
echo "- CPU: $(nproc) x $(sed -n 's/^model name[[:space:]]*: //p' /proc/cpuinfo | head -1), clocksource $(cat /sys/devices/system/clocksource/clocksource0/current_clocksource 2>/dev/null || echo unknown)"
echo "- Memory: $(awk '/MemTotal/ {printf "%.1f GiB", $2 / 1048576}' /proc/meminfo)"
echo "- Kernel: $(uname -sr)"
echo "- File system of the scratch file: $(df -T "$BENCH_DIR" | awk 'NR == 2 {print $2 " on " $1}')"
echo "- Load average before the run: $(cut -d' ' -f1-3 /proc/loadavg)"
echo "- $(go version | cut -d' ' -f3-), $(fio --version), liburing-dev $(dpkg-query -W -f='${Version}' liburing-dev 2>/dev/null || echo unknown), $(gcc --version | head -1)"
echo "- Each table: median of $RUNS runs of \`uringbench -time $TIME\`, every engine in every run (in reverse order in even runs), same file (256 MiB)."
echo

for s in $SCENARIOS; do
	ENGINES=""
	case $s in
	randread-direct)
		measure "$s" -workload randread -bs 4k -qd 32 -direct
		table "$s" "randread 4k O_DIRECT qd 32 (\`uringbench -workload randread -bs 4k -qd 32 -direct\`)" \
			-target "ring/block iops >= 0.8 cpeak/s4c4" -target "ring/callback iops >= 0.95 fio/io_uring" \
			-target "ring/block cpu <= 1.3 ring/callback" \
			-target "ring/block iops >= 2.5 gofile/block" -target "ring/callback iops >= 2.5 gofile/block" \
			-target "ring/block cpu <= 1.5 fio/io_uring" -target "ring/callback cpu <= 1.5 fio/io_uring"
		;;
	randread-cached)
		ENGINES=ring,cpeak,fio
		measure "$s" -workload randread -bs 4k -qd 32 -direct=false -cache warm -cache-fastpath=false -size 1g
		table "$s" "randread 4k buffered through the ring, file in page cache, qd 32 (\`uringbench -workload randread -bs 4k -qd 32 -direct=false -cache warm -cache-fastpath=false -size 1g -engine ring,cpeak,fio\`)" \
			-target "ring/block iops >= 0.8 ring/callback" -target "ring/block iops >= 1.0 cpeak/s4c4"
		;;
	depths)
		ENGINES=ring,cpeak,fio
		for w in randread randwrite; do
			for q in $DEPTHS; do
				# cpeak's batches are capped at the depth, and its mode says so.
				b=$((q < 4 ? q : 4))
				measure "$s-$w-direct-$q" -workload "$w" -bs 4k -qd "$q" -direct
				table "$s-$w-direct-$q" "$w 4k O_DIRECT qd $q (\`uringbench -workload $w -bs 4k -qd $q -direct -engine ring,cpeak,fio\`)" \
					-target "ring/block iops >= 0.8 cpeak/s${b}c$b" -target "ring/block cpu <= 1.3 ring/callback"
				measure "$s-$w-cached-$q" -workload "$w" -bs 4k -qd "$q" -direct=false -cache warm -cache-fastpath=false
				table "$s-$w-cached-$q" "$w 4k buffered through the ring, page cache warm, qd $q (\`uringbench -workload $w -bs 4k -qd $q -direct=false -cache warm -cache-fastpath=false -engine ring,cpeak,fio\`)" \
					-target "ring/block iops >= 0.8 ring/callback" -target "ring/block iops >= 1.0 cpeak/s${b}c$b"
			done
		done
		;;
	randread-warm)
		measure "$s" -workload randread -bs 4k -qd 32 -direct=false -cache warm
		table "$s" "randread 4k buffered, file in page cache, qd 32 (\`uringbench -workload randread -bs 4k -qd 32 -direct=false -cache warm\`)" \
			-target "ring/block iops >= 0.8 gofile/block" -target "ring/callback iops >= 0.8 gofile/block"
		;;
	nop)
		measure "$s" -workload nop -qd 32
		table "$s" "nop qd 32 (\`uringbench -workload nop -qd 32\`)" \
			-target "ring/callback iops >= 0.5 cref/batch"
		echo "C reference alone (\`bench/reference/run.sh\`):"
		echo
		echo '```'
		secs=$(echo "$TIME" | sed -n 's/^\([0-9.]*\)s$/\1/p')
		bench/reference/run.sh "${secs:-5}" 32 2>&1 | tail -1
		echo '```'
		echo
		;;
	features)
		measure_features "$s" -workload randread -bs 4k -qd 32 -direct -engine ring,fio,cpeak
		table "$s" "io_uring features, randread 4k O_DIRECT qd 32 (\`uringbench -workload randread -bs 4k -qd 32 -direct -engine ring,fio,cpeak\` plus nothing, \`-fixedbufs\`, \`-registerfiles\`, \`-sqpoll\`, \`-fixedbufs -registerfiles -sqpoll -mode callback\`)"
		echo "Rows: ring/MODE and fio/io_uring, each followed by +FEATURE where the variant turned one on; fio registers its file whenever it polls with an SQ thread, hence fio/io_uring+registerfiles+sqpoll. \"vs first\" is against ring/block without features, \"vs cpeak\" against cpeak without features."
		echo
		;;
	randwrite | read | write | randrw | fsync)
		measure "$s" -workload "$s" -bs 4k -qd 32 -direct
		table "$s" "$s 4k O_DIRECT qd 32 (\`uringbench -workload $s -bs 4k -qd 32 -direct\`)"
		;;
	*)
		echo "bench/run.sh: unknown scenario $s" >&2
		exit 2
		;;
	esac
done
