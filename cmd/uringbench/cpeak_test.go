package main

import (
	"bytes"
	"context"
	"os/exec"
	"path/filepath"
	"regexp"
	"slices"
	"strconv"
	"strings"
	"sync"
	"testing"

	"github.com/ringwake/ringwake/bench"
	"github.com/ringwake/ringwake/internal/uringtest"
)

var (
	cOnce sync.Once
	cErr  string
)

// haveC reports whether gcc and liburing's header are here to build the C
// anchors. In CI (.ci/run installs both) their absence fails t.
func haveC(t *testing.T) bool {
	t.Helper()
	cOnce.Do(func() {
		if _, err := exec.LookPath("gcc"); err != nil {
			cErr = "gcc not on PATH"
			return
		}
		cmd := exec.Command("gcc", "-E", "-")
		cmd.Stdin = strings.NewReader("#include <liburing.h>\n")
		if out, err := cmd.CombinedOutput(); err != nil {
			cErr = "liburing.h not found: " + firstLine(string(out))
		}
	})
	if cErr != "" && uringtest.InCI() {
		t.Fatalf("CI must build the C anchors: %s (apt-get install gcc liburing-dev)", cErr)
	}
	return cErr == ""
}

func requireC(t *testing.T) {
	t.Helper()
	if !haveC(t) {
		t.Skipf("C anchors cannot be built here (%s); set CI=true to make this a failure", cErr)
	}
}

// buildPeak compiles bench/reference/peak.c as uringbench does.
func buildPeak(t *testing.T) string {
	t.Helper()
	requireC(t)
	e := &env{cfg: &config{}, stderr: &bytes.Buffer{}}
	bin, cleanup, err := buildC(context.Background(), e, "cpeak", "peak", bench.PeakC)
	if err != nil {
		t.Fatalf("build peak.c: %v", err)
	}
	t.Cleanup(cleanup)
	return bin
}

// TestCpeakOffsetsAreTheGoEngines: the C anchor's in-flight slot 0 draws the
// same blocks as a Go engine's slot 0 (newRNG(seed, 0), a kind draw first for
// randrw), so that every engine reads the same parts of the file.
func TestCpeakOffsetsAreTheGoEngines(t *testing.T) {
	bin := buildPeak(t)
	const n, nblocks, bs = 64, 1000003, 4096
	for _, tc := range []struct {
		workload string
		seed     uint64
	}{{"randread", 1}, {"randread", 77}, {"randrw", 5}} {
		out, err := exec.Command(bin, "-w", tc.workload, "-f", "unused", "-b", strconv.Itoa(bs), "-N", strconv.Itoa(nblocks),
			"-S", strconv.FormatUint(tc.seed, 10), "-O", strconv.Itoa(n)).Output()
		if err != nil {
			t.Fatalf("%s: %v", tc.workload, err)
		}
		p := newPlan(tc.workload, bs, nblocks, 32, 0, tc.seed)
		r := newRNG(tc.seed, 0)
		var want []string
		for i := int64(0); i < n; i++ {
			p.kind(&r)
			want = append(want, strconv.FormatInt(p.offset(i, &r), 10))
		}
		if got := strings.Fields(string(out)); !slices.Equal(got, want) {
			t.Errorf("%s seed %d: peak.c draws %v, the Go engines %v", tc.workload, tc.seed, got, want)
		}
	}
}

// TestRNGStreamsIndependent: neighbouring in-flight slots must not draw the
// same blocks. With streams started at seed ^ (s+1)*gamma, stream s+1 is
// stream s one draw ahead for small seeds.
func TestRNGStreamsIndependent(t *testing.T) {
	for seed := uint64(0); seed < 8; seed++ {
		for s := 0; s < 32; s++ {
			a, b := newRNG(seed, s), newRNG(seed, s+1)
			a.next()
			same := 0
			for range 16 {
				if a.next() == b.next() {
					same++
				}
			}
			if same > 0 {
				t.Fatalf("seed %d: stream %d repeats stream %d one draw later (%d of 16 draws)", seed, s+1, s, same)
			}
		}
	}
}

// TestCpeakEngine runs the C anchor on every workload it supports beside the
// ring's callback mode, and checks its rows (latencies included) and that
// the blocks it wrote are read back with the run's tag and pattern.
func TestCpeakEngine(t *testing.T) {
	uringtest.Require(t)
	requireC(t)
	dir := t.TempDir()
	const ops, qd = 400, 8
	for _, w := range cpeakWorkloads {
		t.Run(w, func(t *testing.T) {
			file := filepath.Join(dir, w+".dat")
			code, stdout, stderr := cli(t, "-workload", w, "-ops", strconv.Itoa(ops), "-qd", strconv.Itoa(qd),
				"-bs", "4k", "-size", "1m", "-file", file, "-engine", "cpeak,ring", "-mode", "callback", "-json", "-v")
			if code != 0 {
				t.Fatalf("exit %d: %s", code, stderr)
			}
			rs := decode(t, stdout)
			if got := engineKeys(rs); !slices.Equal(got, []string{"cpeak/s4c4", "ring/callback"}) {
				t.Fatalf("rows %v (stderr: %s)", got, stderr)
			}
			for _, r := range rs {
				sane(t, r, w, 4096, qd, ops)
			}
			if c := rs[0].CPUPerMop; c <= 0 {
				t.Errorf("cpeak: cpu_s_per_mop %v, want > 0", c)
			}
			if strings.Contains(w, "write") || w == "randrw" {
				if !regexp.MustCompile(`cpeak/s4c4: [1-8] written blocks read back and verified`).MatchString(stderr) {
					t.Errorf("cpeak's writes not verified: %s", stderr)
				}
			}
			m := regexp.MustCompile(`cpeak/s4c4: 8 requests in flight, submitted 4 at a time, at least 4 reaped per wait: (\d+) requests in (\d+) io_uring_enter calls`).FindStringSubmatch(stderr)
			if m == nil {
				t.Fatalf("-v does not describe cpeak's batches: %s", stderr)
			}
			// Submitting 4 at a time takes at least ops/4 enters.
			if n, _ := strconv.Atoi(m[2]); n < ops/4 {
				t.Errorf("%s requests in %d enters: batches larger than 4", m[1], n)
			}
		})
	}
}

// TestCpeakFlags: the batch shape, the io_uring features and -cpeak-plain
// reach the C program and show in the mode column and in -v.
func TestCpeakFlags(t *testing.T) {
	uringtest.Require(t)
	requireC(t)
	file := filepath.Join(t.TempDir(), "f.dat")
	for _, tc := range []struct {
		args  []string
		mode  string
		setup string
	}{
		{[]string{"-submit-batch", "2", "-complete-batch", "1"}, "s2c1", "ring setup flags COOP_TASKRUN|SINGLE_ISSUER|DEFER_TASKRUN, ring descriptor registered"},
		{[]string{"-submit-batch", "64", "-complete-batch", "64"}, "s8c8", ""},
		{[]string{"-cpeak-plain"}, "s4c4+plainring", "ring setup flags none, ring descriptor not registered"},
		{[]string{"-fixedbufs", "-registerfiles"}, "s4c4+fixedbufs+registerfiles", ""},
		{[]string{"-sqpoll"}, "s4c4+sqpoll", "SQPOLL"},
	} {
		args := append([]string{"-workload", "randwrite", "-ops", "300", "-qd", "8", "-bs", "4k", "-size", "1m", "-file", file, "-keep",
			"-engine", "cpeak", "-json", "-v"}, tc.args...)
		code, stdout, stderr := cli(t, args...)
		if code != 0 {
			t.Fatalf("%v: exit %d: %s", tc.args, code, stderr)
		}
		rs := decode(t, stdout)
		if got := engineKeys(rs); !slices.Equal(got, []string{"cpeak/" + tc.mode}) {
			t.Errorf("%v: rows %v, want cpeak/%s", tc.args, got, tc.mode)
		}
		if !strings.Contains(stderr, tc.setup) {
			t.Errorf("%v: -v lacks %q: %s", tc.args, tc.setup, stderr)
		}
		if !strings.Contains(stderr, "written blocks read back and verified") {
			t.Errorf("%v: writes not verified: %s", tc.args, stderr)
		}
	}
	// -fixedbufs is passed as -F: check the command line too.
	_, _, stderr := cli(t, "-workload", "randread", "-ops", "100", "-qd", "4", "-size", "1m", "-file", file, "-keep", "-engine", "cpeak", "-v", "-fixedbufs", "-registerfiles")
	if !regexp.MustCompile(`cpeak run: .*peak -w randread -q 4 -s 4 -c 4 .* -F -R -n 100`).MatchString(stderr) {
		t.Errorf("cpeak's command line does not carry the flags: %s", stderr)
	}
}

func TestParseCpeak(t *testing.T) {
	o, err := parseCpeak("ops=1000 seconds=0.5 ops_per_s=2000 cpu_s=0.25 p50=100 p99=200 p999=300 max=400 enters=250 setup=0x3100 regring=1 written=4096,0\n")
	if err != nil {
		t.Fatal(err)
	}
	if o.ops != 1000 || o.seconds != 0.5 || o.cpu != 0.25 || o.lat != (latency{100, 200, 300, 400}) || o.enters != 250 ||
		o.setup != 0x3100 || !o.regring || !slices.Equal(o.written, []int64{4096, 0}) {
		t.Errorf("parsed %+v", o)
	}
	if got := setupNames(o.setup); got != "COOP_TASKRUN|SINGLE_ISSUER|DEFER_TASKRUN" {
		t.Errorf("setup flags %q", got)
	}
	for _, bad := range []string{
		"",
		"ops=1000 seconds=0.5",
		"ops=x seconds=0.5 cpu_s=0.25 p50=100 p99=200 p999=300 max=400 enters=250 setup=0 regring=0 written=",
		"ops=1 seconds=0.5 cpu_s=0.25 p50=100 p99=200 p999=300 max=400 enters=250 setup=0 regring=0 written=1,x",
	} {
		if _, err := parseCpeak(bad); err == nil {
			t.Errorf("parseCpeak(%q) accepted", bad)
		}
	}
}

// TestTableRatiosToCpeak: with a cpeak row, the table adds each row's IOPS
// ratio to it; without one, the column is absent.
func TestTableRatiosToCpeak(t *testing.T) {
	rs := []*result{
		{Engine: "ring", Mode: "block", Workload: "randread", IOPS: 300, CPUPerMop: 3.5},
		{Engine: "cpeak", Mode: "s4c4", Workload: "randread", IOPS: 400, CPUPerMop: 2},
		{Engine: "fio", Mode: "io_uring", Workload: "randread", IOPS: 200, CPUPerMop: 2.5},
	}
	var b bytes.Buffer
	if err := writeTable(&b, rs); err != nil {
		t.Fatal(err)
	}
	lines := strings.Split(strings.TrimSpace(b.String()), "\n")
	if !strings.HasSuffix(lines[0], "vs first  vs cpeak") {
		t.Fatalf("title %q lacks a vs cpeak column", lines[0])
	}
	for i, want := range [][2]string{{"3.500", "0.75x"}, {"2.000", "1.00x"}, {"2.500", "0.50x"}} {
		f := strings.Fields(lines[i+1])
		if f[len(f)-1] != want[1] || f[len(f)-4] != want[0] {
			t.Errorf("row %q: want CPU %s and %s of cpeak", lines[i+1], want[0], want[1])
		}
	}
	b.Reset()
	if err := writeTable(&b, []*result{rs[0], rs[2]}); err != nil {
		t.Fatal(err)
	}
	if strings.Contains(b.String(), "cpeak") {
		t.Errorf("a table without cpeak has a cpeak column:\n%s", b.String())
	}
}

func TestModeFlag(t *testing.T) {
	for in, want := range map[string][]string{
		"both":                 {"block", "callback"},
		"all":                  {"block", "callback", "batch"},
		"batch":                {"batch"},
		"callback,batch,block": {"callback", "batch", "block"},
	} {
		c, err := parseFlags([]string{"-mode", in}, &bytes.Buffer{})
		if err != nil || !slices.Equal(c.modes, want) {
			t.Errorf("-mode %s: modes %v (%v), want %v", in, c.modes, err, want)
		}
	}
}

// TestFioJobTuned: fio runs in cpeak's batch shape, capped at the depth.
func TestFioJobTuned(t *testing.T) {
	for _, tc := range []struct {
		args []string
		want []string
	}{
		{nil, []string{"--iodepth=32", "--iodepth_batch_submit=4", "--iodepth_batch_complete_min=4", "--iodepth_batch_complete_max=32", "--hipri=0"}},
		{[]string{"-qd", "2", "-submit-batch", "8"}, []string{"--iodepth=2", "--iodepth_batch_submit=2", "--iodepth_batch_complete_min=2", "--iodepth_batch_complete_max=2"}},
		{[]string{"-qd", "128", "-submit-batch", "32", "-complete-batch", "16"}, []string{"--iodepth_batch_submit=32", "--iodepth_batch_complete_min=16", "--iodepth_batch_complete_max=128"}},
	} {
		c, err := parseFlags(tc.args, &bytes.Buffer{})
		if err != nil {
			t.Fatal(err)
		}
		e := &env{cfg: c, tgt: &target{path: "/data/f", size: 1 << 20, direct: true}}
		args := fioArgs(e, e.newPlan(0))
		for _, w := range tc.want {
			if !slices.Contains(args, w) {
				t.Errorf("%v: fio job %v lacks %s", tc.args, args, w)
			}
		}
	}
}
