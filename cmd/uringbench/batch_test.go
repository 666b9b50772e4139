package main

import (
	"path/filepath"
	"regexp"
	"slices"
	"strconv"
	"strings"
	"testing"

	"github.com/ringwake/ringwake/internal/uringtest"
)

func TestBatchGroups(t *testing.T) {
	for qd, want := range map[int][]int{1: {1}, 8: {8}, 32: {32}, 40: {32, 8}, 128: {32, 32, 32, 32}} {
		if got := batchGroups(qd); !slices.Equal(got, want) {
			t.Errorf("batchGroups(%d) = %v, want %v", qd, got, want)
		}
	}
}

// TestBatchMode runs -mode batch on every workload Ring.Do serves (nop
// through SubmitAndWait): the rows, the goroutines and their batches, and
// the written blocks read back.
func TestBatchMode(t *testing.T) {
	uringtest.Require(t)
	dir := t.TempDir()
	const ops, qd = 400, 40
	for _, w := range []string{"randread", "randwrite", "read", "write", "randrw", "nop"} {
		t.Run(w, func(t *testing.T) {
			code, stdout, stderr := cli(t, "-workload", w, "-ops", strconv.Itoa(ops), "-qd", strconv.Itoa(qd), "-bs", "4k", "-size", "1m",
				"-file", filepath.Join(dir, w+".dat"), "-engine", "ring", "-mode", "batch", "-json", "-v")
			if code != 0 {
				t.Fatalf("exit %d: %s", code, stderr)
			}
			rs := decode(t, stdout)
			if got := engineKeys(rs); !slices.Equal(got, []string{"ring/batch"}) {
				t.Fatalf("rows %v: %s", got, stderr)
			}
			sane(t, rs[0], w, 4096, qd, ops)
			if !strings.Contains(stderr, "ring/batch: 2 goroutines, batches of [32 8] ops per Ring.Do") {
				t.Errorf("-v does not show 2 goroutines with batches of 32 and 8: %s", stderr)
			}
			if strings.Contains(w, "write") || w == "randrw" {
				if !regexp.MustCompile(`ring/batch: [1-9][0-9]* written blocks read back and verified`).MatchString(stderr) {
					t.Errorf("batch writes not verified: %s", stderr)
				}
			}
		})
	}
}

// TestBatchModeDoesNotAllocate: one allocation per batch would be 1/32 per
// op; the run's setup is a few hundred over 20000 ops. Under the race
// detector the ring's pooled batch waiters are dropped now and then, about
// 0.016 allocations per op, which the bound leaves room for.
func TestBatchModeDoesNotAllocate(t *testing.T) {
	uringtest.Require(t)
	code, _, stderr := cli(t, "-ops", "20000", "-size", "4m", "-file", filepath.Join(t.TempDir(), "a.dat"), "-engine", "ring", "-mode", "batch", "-v")
	if code != 0 {
		t.Fatalf("exit %d: %s", code, stderr)
	}
	m := regexp.MustCompile(`ring/batch: ([0-9.]+) heap allocations per op`).FindStringSubmatch(stderr)
	if m == nil {
		t.Fatalf("-v reports no allocation count: %s", stderr)
	}
	limit := 0.01
	if raceEnabled {
		limit = 0.03
	}
	if v, _ := strconv.ParseFloat(m[1], 64); v > limit {
		t.Errorf("%v heap allocations per op in batch mode", v)
	}
}

// TestModeAll: -mode all is block, callback and batch, in that order; batch
// mode skips, saying why, where Ring.Do cannot express the run.
func TestModeAll(t *testing.T) {
	uringtest.Require(t)
	dir := t.TempDir()
	code, stdout, stderr := cli(t, "-workload", "randread", "-ops", "200", "-qd", "4", "-size", "1m", "-file", filepath.Join(dir, "a.dat"),
		"-engine", "ring", "-mode", "all", "-json")
	if code != 0 {
		t.Fatalf("exit %d: %s", code, stderr)
	}
	if got := engineKeys(decode(t, stdout)); !slices.Equal(got, []string{"ring/block", "ring/callback", "ring/batch"}) {
		t.Errorf("rows %v", got)
	}
	for _, tc := range []struct {
		args []string
		why  string
	}{
		{[]string{"-workload", "fsync"}, "batch mode: n/a for fsync"},
		{[]string{"-fixedbufs"}, "batch mode: Ring.Do takes plain descriptors and buffers"},
	} {
		if onFallback() && tc.args[0] == "-fixedbufs" {
			continue // the fallback engine skips every feature run before the mode matters
		}
		args := append([]string{"-ops", "100", "-qd", "4", "-size", "1m", "-file", filepath.Join(dir, "b.dat"), "-keep", "-engine", "ring",
			"-mode", "callback,batch", "-json"}, tc.args...)
		code, stdout, stderr := cli(t, args...)
		if code != 0 {
			t.Fatalf("%v: exit %d: %s", tc.args, code, stderr)
		}
		if rs := decode(t, stdout); len(rs) != 1 || !strings.HasPrefix(rs[0].Mode, "callback") {
			t.Errorf("%v: rows %v, want the callback row only", tc.args, engineKeys(rs))
		}
		if !strings.Contains(stderr, tc.why) {
			t.Errorf("%v: stderr lacks %q: %s", tc.args, tc.why, stderr)
		}
	}
}
