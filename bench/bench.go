// Package bench holds what the benchmark tooling shares: the C liburing
// reference programs, embedded so that cmd/uringbench can build them
// wherever it runs, and the median that bench/mdtable and bench/ab report.
package bench

import (
	_ "embed"
	"slices"
)

// NopC is the source of reference/nop.c, the C liburing NOP loop that
// `uringbench -workload nop` compares ringwake against.
//
//go:embed reference/nop.c
var NopC []byte

// PeakC is the source of reference/peak.c, the C liburing loop that keeps a
// queue depth of reads or writes in flight, submitting and reaping in
// batches: `uringbench -engine cpeak`, the anchor the other engines' IOPS
// are compared with.
//
//go:embed reference/peak.c
var PeakC []byte

// Median is the median of xs (the mean of the middle two for an even
// count), 0 for none; xs is not modified.
func Median(xs []float64) float64 {
	if len(xs) == 0 {
		return 0
	}
	s := slices.Clone(xs)
	slices.Sort(s)
	n := len(s)
	if n%2 == 1 {
		return s[n/2]
	}
	return (s[n/2-1] + s[n/2]) / 2
}
