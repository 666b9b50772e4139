package main

import (
	"bytes"
	"encoding/json"
	"os"
	"path/filepath"
	"strings"
	"testing"

	"go.uber.org/goleak"
)

func TestMain(m *testing.M) { goleak.VerifyTestMain(m) }

// writeRun writes one uringbench -json array with a ring and a fio row.
func writeRun(t *testing.T, dir string, i int, ringIOPS, fioIOPS, ringCPU, fioCPU float64) string {
	t.Helper()
	rows := []map[string]any{
		{"engine": "ring", "mode": "block", "workload": "randread", "iops": ringIOPS, "mib_per_s": ringIOPS * 4096 / (1 << 20),
			"lat_ns": map[string]int{"p50": 1000 * i, "p99": 2000 * i, "p999": 3000 * i, "max": 4000 * i}, "cpu_s_per_mop": ringCPU},
		{"engine": "fio", "mode": "io_uring", "workload": "randread", "iops": fioIOPS, "mib_per_s": fioIOPS * 4096 / (1 << 20),
			"lat_ns": map[string]int{"p50": 1, "p99": 2, "p999": 3, "max": 4}, "cpu_s_per_mop": fioCPU},
	}
	return writeRows(t, filepath.Join(dir, "run"+string(rune('0'+i))+".json"), rows)
}

// writeRows writes rows as one uringbench -json array to path.
func writeRows(t *testing.T, path string, rows []map[string]any) string {
	t.Helper()
	b, err := json.Marshal(rows)
	if err != nil {
		t.Fatal(err)
	}
	if err := os.WriteFile(path, b, 0o644); err != nil {
		t.Fatal(err)
	}
	return path
}

func TestTableAndTargets(t *testing.T) {
	dir := t.TempDir()
	files := []string{
		writeRun(t, dir, 1, 900, 1000, 2, 1),
		writeRun(t, dir, 2, 1200, 1000, 3, 1),
		writeRun(t, dir, 3, 1000, 1100, 1, 1),
	}
	var out, errb bytes.Buffer
	args := append([]string{"-title", "randread", "-target", "ring/block iops >= 0.95 fio/io_uring",
		"-target", "ring/block cpu <= 1.5 fio/io_uring", "-target", "gofile/block iops >= 2.5 fio/io_uring"}, files...)
	if code := run(args, &out, &errb); code != 0 {
		t.Fatalf("exit %d, stderr %q", code, errb.String())
	}
	s := out.String()
	for _, want := range []string{
		"#### randread",
		"| ring/block | 1000 | 900–1200 |",
		"| fio/io_uring | 1000 | 1000–1100 |",
		"| 2.0µs | 4.0µs | 6.0µs | 8.0µs | 2.000 | 1.00x |", // ring medians: run 2's latencies
		"ring/block IOPS / fio/io_uring IOPS = 1.00 (target >= 0.95): met",
		"ring/block CPU per op / fio/io_uring CPU per op = 2.00 (target <= 1.5): NOT met",
		"gofile/block IOPS / fio/io_uring IOPS: not measured",
	} {
		if !strings.Contains(s, want) {
			t.Errorf("output lacks %q:\n%s", want, s)
		}
	}
}

// TestVsCpeak: the cpeak column is the median of per-run ratios, not the
// ratio of medians, and appears only when a cpeak row does.
func TestVsCpeak(t *testing.T) {
	dir := t.TempDir()
	var files []string
	for i, v := range [][2]float64{{500, 1000}, {1000, 1000}, {900, 1000}, {800, 400}} {
		rows := []map[string]any{
			{"engine": "ring", "mode": "block", "iops": v[0], "cpu_s_per_mop": 1.0},
			{"engine": "cpeak", "mode": "s4c4", "iops": v[1], "cpu_s_per_mop": 2.0},
		}
		files = append(files, writeRows(t, filepath.Join(dir, "c"+string(rune('0'+i))+".json"), rows))
	}
	var out, errb bytes.Buffer
	if code := run(files, &out, &errb); code != 0 {
		t.Fatalf("exit %d, stderr %q", code, errb.String())
	}
	// Per-run ratios 0.5, 1.0, 0.9, 2.0: median 0.95. Medians 850 and 1000: 0.85.
	for _, want := range []string{"| vs first | vs cpeak |", "| 1.000 | 1.00x | 0.95x |", "| 2.000 | 1.18x | 1.00x |"} {
		if !strings.Contains(out.String(), want) {
			t.Errorf("output lacks %q:\n%s", want, out.String())
		}
	}
	out.Reset()
	if code := run([]string{writeRun(t, dir, 1, 1, 1, 1, 1)}, &out, &errb); code != 0 || strings.Contains(out.String(), "cpeak") {
		t.Errorf("exit %d; a table without cpeak rows has a cpeak column:\n%s", code, out.String())
	}
}

func TestBadInput(t *testing.T) {
	dir := t.TempDir()
	bad := filepath.Join(dir, "bad.json")
	if err := os.WriteFile(bad, []byte("not json"), 0o644); err != nil {
		t.Fatal(err)
	}
	good := writeRun(t, dir, 1, 1, 1, 1, 1)
	for _, c := range []struct {
		args []string
		code int
	}{
		{nil, 2},
		{[]string{bad}, 1},
		{[]string{filepath.Join(dir, "missing.json")}, 1},
		{[]string{"-target", "ring/block iops > 1 fio/io_uring", good}, 2},
	} {
		var out, errb bytes.Buffer
		if code := run(c.args, &out, &errb); code != c.code {
			t.Errorf("run(%q) = %d, want %d (stderr %q)", c.args, code, c.code, errb.String())
		}
		if errb.Len() == 0 {
			t.Errorf("run(%q) said nothing on stderr", c.args)
		}
	}
}
