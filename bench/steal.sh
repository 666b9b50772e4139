#!/bin/bash
# steal.sh CMD [ARGS...]: runs CMD and prints what the whole guest spent
# around it: steal time (a vCPU ready but not run by the host), context
# switches, and the resched (RES) and function-call (CAL) IPIs of
# /proc/interrupts, summed over CPUs. CMD's output goes to stdout after.
# It counts the cross-vCPU wake-ups behind block mode's gap (docs/design.md,
# "A caller on a busy ring yields before it parks").
set -euo pipefail
[ $# -ge 1 ] || { echo "usage: $0 CMD [ARGS...]" >&2; exit 2; }
snap() {
	# steal is the 8th value of the cpu line, in USER_HZ ticks
	awk '/^cpu /{print $9} /^ctxt/{print $2}' /proc/stat
	awk '$1=="RES:"||$1=="CAL:"{s=0; for(i=2;i<=NF;i++){if($i ~ /^[0-9]+$/) s+=$i; else break}; print s}' /proc/interrupts
}
hz=$(getconf CLK_TCK)
out=$(mktemp)
trap 'rm -f "$out"' EXIT
mapfile -t a < <(snap)
rc=0
"$@" >"$out" 2>&1 || rc=$?
mapfile -t b < <(snap)
echo "steal_ms=$(( (b[0]-a[0]) * 1000 / hz )) ctxt=$((b[1]-a[1])) RES=$((b[2]-a[2])) CAL=$((b[3]-a[3]))"
cat "$out"
exit $rc
