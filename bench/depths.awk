# depths.awk condenses the tables of bench/run.sh's depths scenario (one per
# workload, cache state and depth) into one table per workload and cache
# state, a row per depth: each engine's median IOPS with its ratio to cpeak
# in the same runs (the median of per-run ratios, as the tables have it),
# then each engine's CPU per op (µs, the tables' CPU s/Mop).
#
#   TIME=1s RUNS=3 SCENARIOS=depths bench/run.sh | awk -f bench/depths.awk
#
# It reads the markdown run.sh prints: a "#### TITLE" line per table, whose
# title names the workload, "O_DIRECT" or "buffered" and "qd N", then rows
# "| engine/mode | IOPS | ... | CPU s/Mop | vs first | vs cpeak |".
function k(x) {
	x += 0
	if (x >= 1000000) return sprintf("%.2fM", x / 1000000)
	if (x >= 1000) return sprintf("%.1fk", x / 1000)
	return sprintf("%d", x)
}
function short(e) {
	sub(/^ring\//, "", e)
	sub(/\/io_uring$/, "", e)
	sub(/\/block$/, "", e) # gofile/block
	return e
}
function trim(s) { gsub(/^[ \t]+|[ \t]+$/, "", s); return s }
/^#### / {
	w = $2
	cache = index($0, "O_DIRECT") ? "O_DIRECT" : "page cache"
	match($0, /qd [0-9]+/)
	qd = substr($0, RSTART + 3, RLENGTH - 3) + 0
	cur = w " 4k, " cache
	if (!(cur in seen)) { seen[cur] = 1; order[++ngroups] = cur }
	if (!((cur, qd) in seenqd)) { seenqd[cur, qd] = 1; depths[cur] = depths[cur] " " qd }
	next
}
/^\| (ring|cpeak|fio|gofile)\// && cur != "" {
	n = split($0, f, "|")
	eng = trim(f[2])
	sub(/\/s[0-9]+c[0-9]+$/, "", eng) # cpeak's batch shape varies with the depth
	iops[cur, qd, eng] = trim(f[3])
	cpu[cur, qd, eng] = trim(f[10])
	vs[cur, qd, eng] = trim(f[n - 1])
}
END {
	# A fixed order: ringwake's modes, then the anchors.
	split("ring/block ring/callback ring/batch gofile/block fio/io_uring cpeak", all, " ")
	for (i = 1; i in all; i++)
		for (key in iops) {
			split(key, kk, SUBSEP)
			if (kk[3] == all[i]) { engines[++nengines] = all[i]; break }
		}
	for (g = 1; g <= ngroups; g++) {
		cur = order[g]
		printf "\n#### %s\n\n| qd |", cur
		for (e = 1; e <= nengines; e++) printf " %s IOPS |", short(engines[e])
		for (e = 1; e <= nengines; e++) printf " %s CPU µs/op |", short(engines[e])
		printf "\n|--:|"
		for (e = 1; e <= 2 * nengines; e++) printf "--:|"
		printf "\n"
		nd = split(trim(depths[cur]), ds, " ")
		for (d = 1; d <= nd; d++) {
			q = ds[d]
			printf "| %s |", q
			for (e = 1; e <= nengines; e++) {
				x = iops[cur, q, engines[e]]
				if (x == "") printf " - |"
				else if (engines[e] == "cpeak") printf " %s |", k(x)
				else printf " %s (%s) |", k(x), vs[cur, q, engines[e]]
			}
			for (e = 1; e <= nengines; e++) {
				x = cpu[cur, q, engines[e]]
				printf " %s |", x == "" ? "-" : sprintf("%.2f", x + 0)
			}
			printf "\n"
		}
	}
}
