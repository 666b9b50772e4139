package main

import (
	"fmt"
	"path/filepath"
	"slices"
	"strings"
	"testing"

	"github.com/ringwake/ringwake/internal/uringtest"
)

// TestMixedWorkload: -workload mixed runs the three phases and reports a row
// per class and phase, foreground reads of -bs at -qd and background writes
// of -bg-bs at -bg-qd, each with ops and latencies; the table form ends
// with the ratios the phases are for.
func TestMixedWorkload(t *testing.T) {
	uringtest.Require(t)
	file := filepath.Join(t.TempDir(), "f.dat")
	args := []string{"-workload", "mixed", "-time", "150ms", "-qd", "2", "-bg-qd", "3", "-bg-bs", "64k", "-size", "4m", "-file", file}
	code, stdout, stderr := cli(t, append(args, "-json")...)
	if code != 0 {
		t.Fatalf("exit %d: %s", code, stderr)
	}
	rs := decode(t, stdout)
	if got := engineKeys(rs); !slices.Equal(got, []string{"fg/alone", "fg/no-classes", "bg/no-classes", "fg/classes", "bg/classes"}) {
		t.Fatalf("rows %v", got)
	}
	for _, r := range rs {
		if r.Engine == "fg" {
			sane(t, r, "randread", 4096, 2, 0)
		} else {
			sane(t, r, "randwrite", 64<<10, 3, 0)
		}
	}
	code, stdout, stderr = cli(t, append(args, "-slices", "3", "-v")...)
	if code != 0 || !strings.Contains(stdout, "fg p99: alone") || !strings.Contains(stdout, "bg MiB/s with classes") {
		t.Fatalf("exit %d, table:\n%s\n%s", code, stdout, stderr)
	}
	// The phases take turns, each slice in the next of their orders.
	var turns []string
	for _, line := range strings.Split(stderr, "\n") {
		if _, turn, ok := strings.Cut(line, "mixed: slice "); ok {
			turns = append(turns, turn)
		}
	}
	want := []string{
		"1, phase alone", "1, phase no-classes", "1, phase classes",
		"2, phase no-classes", "2, phase classes", "2, phase alone",
		"3, phase classes", "3, phase alone", "3, phase no-classes",
	}
	if !slices.Equal(turns, want) {
		t.Fatalf("turns %q, want %q", turns, want)
	}
}

// TestMixedFlagsRefused: the background writer's flags are checked before
// any work.
func TestMixedFlagsRefused(t *testing.T) {
	for _, args := range [][]string{
		{"-workload", "mixed", "-bg-qd", "0"},
		{"-workload", "mixed", "-bg-bs", "1000"},
		{"-workload", "mixed", "-size", "64k"},
		{"-workload", "mixed", "-ops", "10"},
		{"-workload", "mixed", "-slices", "0"},
		{"-workload", "calibrate", "-json"},
	} {
		if code, _, stderr := cli(t, args...); code != 2 || !strings.Contains(stderr, "uringbench:") {
			t.Errorf("%v: exit %d (%s), want 2", args, code, stderr)
		}
	}
}

// TestCalibrate: -workload calibrate prints an IOCost with every field set
// and a capacity of twice a lone read's latency.
func TestCalibrate(t *testing.T) {
	uringtest.Require(t)
	file := filepath.Join(t.TempDir(), "f.dat")
	code, stdout, stderr := cli(t, "-workload", "calibrate", "-time", "400ms", "-size", "4m", "-file", file)
	if code != 0 {
		t.Fatalf("exit %d: %s", code, stderr)
	}
	var m struct{ ro, wo, rk, wk, c uint64 }
	i := strings.Index(stdout, "ringwake.IOCost{")
	if i < 0 {
		t.Fatalf("no IOCost in:\n%s", stdout)
	}
	if _, err := fmt.Sscanf(stdout[i:], "ringwake.IOCost{ReadOp: %d, WriteOp: %d, ReadKiB: %d, WriteKiB: %d, Capacity: %d}", &m.ro, &m.wo, &m.rk, &m.wk, &m.c); err != nil {
		t.Fatalf("%v in:\n%s", err, stdout)
	}
	if m.ro == 0 || m.wo == 0 || m.rk == 0 || m.wk == 0 || m.c == 0 {
		t.Fatalf("IOCost %+v: every field must be set", m)
	}
	// The capacity is twice the lone read's latency (printed in µs).
	var lone float64
	j := strings.Index(stdout, "# a lone 4k read, p50: ")
	if j < 0 {
		t.Fatalf("no lone read latency in:\n%s", stdout)
	}
	if _, err := fmt.Sscanf(stdout[j:], "# a lone 4k read, p50: %fµs", &lone); err != nil {
		t.Fatalf("%v in:\n%s", err, stdout)
	}
	if d := float64(m.c) - 2*lone*1e3; d < -1e3 || d > 1e3 {
		t.Fatalf("capacity %d ns, want twice the lone read's %.0fµs", m.c, lone)
	}
}
