package main

import (
	"bytes"
	"context"
	"encoding/json"
	"errors"
	"fmt"
	"os"
	"os/exec"
	"path/filepath"
	"regexp"
	"runtime"
	"slices"
	"sort"
	"strconv"
	"strings"
	"syscall"
	"testing"
	"unsafe"

	"github.com/ringwake/ringwake/internal/uringtest"
	ringwake "github.com/ringwake/ringwake/runtime"
	"github.com/ringwake/ringwake/sqe"
	"go.uber.org/goleak"
	"golang.org/x/sys/unix"
)

func TestMain(m *testing.M) { goleak.VerifyTestMain(m) }

// cli runs the program in-process, as main would.
func cli(t *testing.T, args ...string) (code int, stdout, stderr string) {
	t.Helper()
	var out, errb bytes.Buffer
	code = run(context.Background(), args, &out, &errb)
	return code, out.String(), errb.String()
}

func decode(t *testing.T, stdout string) []result {
	t.Helper()
	var keys []map[string]json.RawMessage
	if err := json.Unmarshal([]byte(stdout), &keys); err != nil {
		t.Fatalf("stdout is not a JSON array: %v\n%s", err, stdout)
	}
	want := []string{"bs", "cpu_s_per_mop", "direct", "engine", "iops", "lat_ns", "mib_per_s", "mode", "ops", "qd", "seconds", "threads", "workload"}
	for _, obj := range keys {
		var got []string
		for k := range obj {
			got = append(got, k)
		}
		sort.Strings(got)
		if !slices.Equal(got, want) {
			t.Errorf("JSON keys %v, want exactly %v", got, want)
		}
	}
	var rs []result
	if err := json.Unmarshal([]byte(stdout), &rs); err != nil {
		t.Fatal(err)
	}
	return rs
}

// sane checks the fields every row must satisfy.
func sane(t *testing.T, r result, workload string, bs int64, qd int, ops int64) {
	t.Helper()
	name := r.Engine + "/" + r.Mode
	if r.Workload != workload || r.QD != qd {
		t.Errorf("%s: workload %q qd %d, want %q %d", name, r.Workload, r.QD, workload, qd)
	}
	if workload != "nop" && r.BS != bs {
		t.Errorf("%s: bs %d, want %d", name, r.BS, bs)
	}
	if r.Ops <= 0 || (ops > 0 && r.Ops != ops) {
		t.Errorf("%s: ops %d, want %d", name, r.Ops, ops)
	}
	if r.IOPS <= 0 || r.Seconds <= 0 {
		t.Errorf("%s: iops %v seconds %v, want both > 0", name, r.IOPS, r.Seconds)
	}
	if workload != "nop" && r.MiBPerS <= 0 {
		t.Errorf("%s: mib_per_s %v, want > 0", name, r.MiBPerS)
	}
	if r.CPUPerMop < 0 {
		t.Errorf("%s: cpu_s_per_mop %v < 0", name, r.CPUPerMop)
	}
	switch inProcess := r.Engine == "ring" || r.Engine == "gofile"; {
	case inProcess && r.Threads < 2:
		// At least the main thread and the one running the measured loop's Ps.
		t.Errorf("%s: threads %d, want the process's peak OS threads", name, r.Threads)
	case !inProcess && r.Threads != 0:
		t.Errorf("%s: threads %d, want 0 for an engine in another process", name, r.Threads)
	}
	if r.Engine == "cref" {
		if r.Lat != nil {
			t.Errorf("cref: lat_ns %+v, want null (it times batches, not ops)", r.Lat)
		}
		return
	}
	if l := r.Lat; l == nil || l.P50 <= 0 || l.P50 > l.P99 || l.P99 > l.P999 || l.P999 > l.Max {
		t.Errorf("%s: lat_ns %+v, want 0 < p50 <= p99 <= p999 <= max", name, r.Lat)
	}
}

// onFallback reports whether RINGWAKE_BACKEND=fallback puts every ring on
// the software engine, which the feature flags refuse to measure.
func onFallback() bool { return os.Getenv("RINGWAKE_BACKEND") == ringwake.BackendFallback }

func haveFio() bool {
	_, err := exec.LookPath("fio")
	return err == nil
}

// engineKeys lists the rows of rs as engine/mode.
func engineKeys(rs []result) []string {
	var ks []string
	for _, r := range rs {
		ks = append(ks, r.Engine+"/"+r.Mode)
	}
	return ks
}

func TestEveryWorkloadAndEngine(t *testing.T) {
	uringtest.Require(t)
	dir := t.TempDir()
	const ops, qd = 300, 8
	probe := filepath.Join(dir, "probe")
	if err := os.WriteFile(probe, nil, 0o644); err != nil {
		t.Fatal(err)
	}
	_, err := directAlign(probe)
	direct := err == nil
	os.Remove(probe)
	for _, w := range workloads {
		t.Run(w, func(t *testing.T) {
			file := filepath.Join(dir, w+".dat")
			code, stdout, stderr := cli(t, "-workload", w, "-ops", strconv.Itoa(ops), "-qd", strconv.Itoa(qd),
				"-bs", "4k", "-size", "1m", "-file", file, "-json")
			if code != 0 {
				t.Fatalf("exit %d: %s", code, stderr)
			}
			rs := decode(t, stdout)
			for _, r := range rs {
				sane(t, r, w, 4096, qd, ops)
			}
			want := []string{"ring/block", "ring/callback"}
			if w == "nop" {
				for _, n := range []string{"gofile: n/a for nop", "fio: n/a for nop"} {
					if !strings.Contains(stderr, n) {
						t.Errorf("stderr lacks %q: %s", n, stderr)
					}
				}
				if strings.Contains(stderr, "uringbench: cref: ") {
					t.Logf("C reference unavailable here: %s", stderr)
				} else {
					want = append(want, "cref/batch")
				}
			} else {
				want = append(want, "gofile/block")
				if haveFio() {
					want = append(want, "fio/io_uring")
				} else if !strings.Contains(stderr, "fio: not on PATH") {
					t.Errorf("fio missing but not said so: %s", stderr)
				}
			}
			if slices.Contains(cpeakWorkloads, w) && haveC(t) {
				// -engine all runs cpeak after fio and before cref, where it applies.
				i := len(want)
				if w == "nop" {
					i = max(slices.Index(want, "cref/batch"), 0)
				}
				want = slices.Insert(want, i, "cpeak/s4c4")
			}
			if w != "nop" {
				for _, r := range rs {
					if r.Direct != direct {
						t.Errorf("%s/%s: direct %v, want %v (the default uses O_DIRECT where allowed)", r.Engine, r.Mode, r.Direct, direct)
					}
				}
			}
			if got := engineKeys(rs); !slices.Equal(got, want) {
				t.Errorf("engines %v, want %v (stderr: %s)", got, want, stderr)
			}
			if _, err := os.Stat(file); !os.IsNotExist(err) {
				t.Errorf("the file uringbench created is still there without -keep (stat: %v)", err)
			}
		})
	}
}

func TestBufferedWarmAndTimeBound(t *testing.T) {
	uringtest.Require(t)
	file := filepath.Join(t.TempDir(), "f.dat")
	code, stdout, stderr := cli(t, "-workload", "randread", "-direct=false", "-cache", "warm", "-time", "150ms",
		"-qd", "4", "-bs", "8k", "-size", "2m", "-file", file, "-engine", "ring,gofile", "-json")
	if code != 0 {
		t.Fatalf("exit %d: %s", code, stderr)
	}
	rs := decode(t, stdout)
	if got := engineKeys(rs); !slices.Equal(got, []string{"ring/block", "ring/callback", "gofile/block"}) {
		t.Fatalf("engines %v", got)
	}
	for _, r := range rs {
		sane(t, r, "randread", 8192, 4, 0)
		if r.Direct {
			t.Errorf("%s/%s ran O_DIRECT despite -direct=false", r.Engine, r.Mode)
		}
	}
}

// -io-per-enter and -cache-fastpath reach the ring: a warm buffered run with
// the fast path on submits no read to the ring in block mode, one with it off
// submits every one (-v reports the ring's counts).
func TestRingTuningFlags(t *testing.T) {
	uringtest.Require(t)
	file := filepath.Join(t.TempDir(), "f.dat")
	counts := regexp.MustCompile(`ring/block: (\d+) requests in`)
	for _, tc := range []struct {
		args    []string
		viaRing bool
	}{
		{[]string{"-io-per-enter", "-1"}, false},
		{[]string{"-io-per-enter", "1", "-cache-fastpath=false"}, true},
	} {
		args := append([]string{"-workload", "randread", "-direct=false", "-cache", "warm", "-ops", "300",
			"-qd", "4", "-bs", "4k", "-size", "1m", "-file", file, "-keep", "-engine", "ring", "-mode", "block", "-json", "-v"}, tc.args...)
		code, stdout, stderr := cli(t, args...)
		if code != 0 {
			t.Fatalf("%v: exit %d: %s", tc.args, code, stderr)
		}
		for _, r := range decode(t, stdout) {
			sane(t, r, "randread", 4096, 4, 300)
		}
		m := counts.FindStringSubmatch(stderr)
		if m == nil {
			t.Fatalf("%v: no request count in -v output:\n%s", tc.args, stderr)
		}
		n, _ := strconv.Atoi(m[1])
		// Beyond the reads: the openat of the file goes through the ring.
		if tc.viaRing != (n >= 300) || (!tc.viaRing && n > 1) {
			t.Errorf("%v: %d requests through the ring for 300 cached reads", tc.args, n)
		}
	}
}

// -shared-thread reaches the ring: -v reports how often the poller locked
// an OS thread, which it does by default (GOMAXPROCS > 1) as soon as its
// completions wake no goroutine, as in callback mode.
func TestSharedThreadFlag(t *testing.T) {
	uringtest.Require(t)
	if runtime.GOMAXPROCS(0) < 2 {
		defer runtime.GOMAXPROCS(runtime.GOMAXPROCS(2))
	}
	locks := regexp.MustCompile(`ring/callback: .*poller thread locks: (\d+)`)
	for _, shared := range []bool{false, true} {
		code, _, stderr := cli(t, "-workload", "nop", "-ops", "2000", "-engine", "ring", "-mode", "callback", "-v",
			"-shared-thread="+strconv.FormatBool(shared))
		if code != 0 {
			t.Fatalf("-shared-thread=%v: exit %d: %s", shared, code, stderr)
		}
		m := locks.FindStringSubmatch(stderr)
		if m == nil {
			t.Fatalf("-shared-thread=%v: -v does not report the poller's thread locks:\n%s", shared, stderr)
		}
		if n, _ := strconv.Atoi(m[1]); (n > 0) == shared {
			t.Errorf("-shared-thread=%v: %d thread locks", shared, n)
		}
	}
}

// -shards spreads the ring engine's requests over its shards (every shard
// completes some, in both modes) and -max-workers is accepted.
func TestShardsFlag(t *testing.T) {
	uringtest.Require(t)
	per := regexp.MustCompile(`ring/(block|callback): completions per shard: (\d+) (\d+)\n`)
	code, stdout, stderr := cli(t, "-workload", "nop", "-ops", "4000", "-qd", "16", "-engine", "ring", "-v", "-json",
		"-shards", "2", "-max-workers", "4")
	if code != 0 {
		t.Fatalf("exit %d: %s", code, stderr)
	}
	for _, r := range decode(t, stdout) {
		sane(t, r, "nop", 0, 16, 4000)
	}
	ms := per.FindAllStringSubmatch(stderr, -1)
	if len(ms) != 2 {
		t.Fatalf("-v reports per-shard completions for %d modes, want 2:\n%s", len(ms), stderr)
	}
	for _, m := range ms {
		if m[2] == "0" || m[3] == "0" {
			t.Errorf("ring/%s: completions per shard %s %s: want both shards used", m[1], m[2], m[3])
		}
	}
}

func TestTableOutput(t *testing.T) {
	uringtest.Require(t)
	file := filepath.Join(t.TempDir(), "f.dat")
	code, stdout, stderr := cli(t, "-ops", "200", "-size", "1m", "-file", file, "-engine", "gofile,ring", "-mode", "callback")
	if code != 0 {
		t.Fatalf("exit %d: %s", code, stderr)
	}
	lines := strings.Split(strings.TrimSpace(stdout), "\n")
	if len(lines) != 4 {
		t.Fatalf("want a header line, a title row and 2 engine rows, got:\n%s", stdout)
	}
	if !strings.HasPrefix(lines[0], "randread bs 4 KiB qd 32, file "+file) {
		t.Errorf("header %q does not describe the run", lines[0])
	}
	for _, col := range []string{"IOPS", "MiB/s", "p50", "p99", "p99.9", "max", "CPU s/Mop", "threads", "vs first"} {
		if !strings.Contains(lines[1], col) {
			t.Errorf("title row %q lacks %q", lines[1], col)
		}
	}
	if f := strings.Fields(lines[2]); f[0] != "gofile" || f[len(f)-1] != "1.00x" {
		t.Errorf("first row %q: want gofile with ratio 1.00x", lines[2])
	}
	if f := strings.Fields(lines[3]); f[0] != "ring" || f[1] != "callback" || !strings.HasSuffix(f[len(f)-1], "x") {
		t.Errorf("second row %q: want ring callback with a ratio", lines[3])
	}
}

func TestBadFlagsExitTwo(t *testing.T) {
	dir := t.TempDir()
	for _, args := range [][]string{
		{"-bs", "0"},
		{"-bs", "1000", "-direct"},
		{"-bs", "4k", "-size", "1k"},
		{"-bs", "banana"},
		{"-workload", "scan"},
		{"-engine", "ring,spdk"},
		{"-mode", "poll"},
		{"-qd", "0"},
		{"-shards", "0"},
		{"-max-workers", "-1"},
		{"-ops", "-5"},
		{"-time", "0s"},
		{"-cache", "lukewarm"},
		{"-direct", "-cache", "warm"},
		{"-no-such-flag"},
		{"randread"},
		{"-file", filepath.Join(dir, "no", "such", "dir", "f.dat")},
		{"-file", dir},
		{"-workload", "nop", "-fixedbufs"},
		{"-workload", "nop", "-registerfiles", "-mode", "callback"},
		{"-fixedbufs", "-registerfiles"},
		{"-fixedbufs", "-registerfiles", "-mode", "block"},
		{"-registerfiles", "-workload", "fsync"},
		{"-engine", "gofile", "-sqpoll"},
		{"-engine", "gofile,cref", "-fixedbufs"},
		{"-sqpoll-idle", "5ms"},
		{"-sqpoll", "-sqpoll-idle", "-1ms"},
		{"-sqpoll-idle", "soon", "-sqpoll"},
		{"-submit-batch", "0"},
		{"-complete-batch", "-1"},
		{"-mode", "block,poll"},
	} {
		code, stdout, stderr := cli(t, args...)
		if code != 2 {
			t.Errorf("%q: exit %d, want 2 (stderr %q)", args, code, stderr)
		}
		if stdout != "" || strings.Count(stderr, "\n") != 1 || !strings.HasPrefix(stderr, "uringbench: ") {
			t.Errorf("%q: want one line on stderr and nothing on stdout, got stdout %q stderr %q", args, stdout, stderr)
		}
	}
	if entries, _ := os.ReadDir(dir); len(entries) != 0 {
		t.Errorf("a refused run left files behind: %v", entries)
	}
}

func TestHelp(t *testing.T) {
	code, stdout, stderr := cli(t, "-h")
	if code != 0 || stdout != "" || !strings.Contains(stderr, "-workload") {
		t.Errorf("-h: exit %d, stdout %q, stderr %q", code, stdout, stderr)
	}
}

func TestParseSize(t *testing.T) {
	for in, want := range map[string]int64{
		"512": 512, "4k": 4096, "4K": 4096, "4KiB": 4096, "4kb": 4096, "256m": 256 << 20, "1g": 1 << 30, "2t": 2 << 40, "0": 0,
	} {
		if got, err := parseSize(in); err != nil || got != want {
			t.Errorf("parseSize(%q) = %d, %v; want %d", in, got, err, want)
		}
	}
	for _, in := range []string{"", "k", "-4k", "4x", "1.5m", "99999999999t"} {
		if got, err := parseSize(in); err == nil {
			t.Errorf("parseSize(%q) = %d, want an error", in, got)
		}
	}
}

func TestValidate(t *testing.T) {
	ok := func() *config {
		return &config{workload: "randread", bs: 4096, qd: 32, size: 1 << 20, duration: 1, cache: "cold", submitBatch: 4, completeBatch: 4}
	}
	if err := ok().validate(); err != nil {
		t.Fatalf("valid config refused: %v", err)
	}
	for name, mut := range map[string]func(c *config){
		"workload":     func(c *config) { c.workload = "trim" },
		"bs zero":      func(c *config) { c.bs = 0 },
		"bs huge":      func(c *config) { c.bs = maxBS + 512 },
		"bs unaligned": func(c *config) { c.bs, c.direct = 4000, directOn },
		"size < bs":    func(c *config) { c.size = 2048 },
		"qd":           func(c *config) { c.qd = maxQD + 1 },
		"submit batch": func(c *config) { c.submitBatch = 0 },
		"buffers":      func(c *config) { c.qd, c.bs, c.size = maxQD, maxBS, 1<<40 },
		"no end":       func(c *config) { c.duration = 0 },
		"cache":        func(c *config) { c.cache = "hot" },
		"warm direct":  func(c *config) { c.cache, c.direct = "warm", directOn },
	} {
		c := ok()
		mut(c)
		var ue *usageError
		if err := c.validate(); !errors.As(err, &ue) {
			t.Errorf("%s: validate() = %v, want a usage error", name, err)
		}
	}
	// nop touches no file, so the file flags do not matter to it.
	c := ok()
	c.workload, c.bs, c.size = "nop", 0, 0
	if err := c.validate(); err != nil {
		t.Errorf("nop with bs 0: %v", err)
	}
	// Unaligned bs is fine for buffered I/O.
	c = ok()
	c.bs, c.direct = 1000, directAuto
	if err := c.validate(); err != nil {
		t.Errorf("bs 1000 without -direct: %v", err)
	}
}

func TestRefusesForeignFile(t *testing.T) {
	uringtest.Require(t)
	file := filepath.Join(t.TempDir(), "precious.db")
	data := bytes.Repeat([]byte("user data "), 200000) // 2 MB
	if err := os.WriteFile(file, data, 0o644); err != nil {
		t.Fatal(err)
	}
	unchanged := func(what string) {
		t.Helper()
		got, err := os.ReadFile(file)
		if err != nil || !bytes.Equal(got, data) {
			t.Fatalf("%s changed the user's file (err %v)", what, err)
		}
	}
	for _, w := range []string{"randwrite", "write", "randrw", "fsync"} {
		code, _, stderr := cli(t, "-workload", w, "-ops", "50", "-size", "1m", "-file", file)
		if code != 2 || !strings.Contains(stderr, "-force") || strings.Count(stderr, "\n") != 1 {
			t.Errorf("%s on a foreign file: exit %d, stderr %q; want 2 and one line naming -force", w, code, stderr)
		}
		unchanged(w)
	}
	// Reading is harmless, and the file is larger than -size.
	if code, _, stderr := cli(t, "-workload", "randread", "-ops", "50", "-size", "1m", "-file", file, "-engine", "ring,gofile,fio"); code != 0 {
		t.Fatalf("randread on a foreign file: exit %d: %s", code, stderr)
	}
	unchanged("randread")
	if code, _, stderr := cli(t, "-workload", "read", "-ops", "50", "-size", "4m", "-file", file); code != 2 || !strings.Contains(stderr, "less than -size") {
		t.Errorf("-size beyond a foreign file: exit %d, stderr %q", code, stderr)
	}
	// -force is the user's explicit consent.
	if code, _, stderr := cli(t, "-workload", "randwrite", "-ops", "50", "-size", "1m", "-file", file, "-force", "-engine", "gofile"); code != 0 {
		t.Fatalf("randwrite -force: exit %d: %s", code, stderr)
	}
	if got, _ := os.ReadFile(file); bytes.Equal(got, data) {
		t.Error("randwrite -force left the file as it was")
	}
	if _, err := os.Stat(file); err != nil {
		t.Errorf("uringbench removed a file it did not create: %v", err)
	}
}

// xattrs reports whether dir's file system keeps user extended attributes.
func xattrs(t *testing.T, dir string) bool {
	p := filepath.Join(dir, "xattr-probe")
	if err := os.WriteFile(p, nil, 0o644); err != nil {
		t.Fatal(err)
	}
	defer os.Remove(p)
	return unix.Setxattr(p, "user.probe", []byte("1"), 0) == nil
}

func TestKeepThenReuse(t *testing.T) {
	uringtest.Require(t)
	dir := t.TempDir()
	file := filepath.Join(dir, "scratch.dat")
	code, _, stderr := cli(t, "-workload", "randread", "-ops", "50", "-size", "1m", "-file", file, "-keep", "-engine", "gofile")
	if code != 0 || !strings.Contains(stderr, "kept "+file) {
		t.Fatalf("-keep: exit %d, stderr %q", code, stderr)
	}
	fi, err := os.Stat(file)
	if err != nil || fi.Size() != 1<<20 {
		t.Fatalf("kept file: %v, size %v; want 1 MiB filled", err, fi)
	}
	code, _, stderr = cli(t, "-workload", "randwrite", "-ops", "50", "-size", "1m", "-file", file, "-engine", "gofile")
	if xattrs(t, dir) {
		if code != 0 {
			t.Errorf("rerun on the file uringbench kept: exit %d: %s", code, stderr)
		}
		if _, err := os.Stat(file); err != nil {
			t.Errorf("a file kept by an earlier run was removed: %v", err)
		}
	} else if code != 2 {
		t.Errorf("without xattrs the kept file cannot be told apart and needs -force: exit %d", code)
	}
}

func TestDefaultFileInWorkingDir(t *testing.T) {
	dir := t.TempDir()
	t.Chdir(dir)
	code, _, stderr := cli(t, "-ops", "100", "-size", "1m", "-engine", "gofile", "-v")
	if code != 0 {
		t.Fatalf("exit %d: %s", code, stderr)
	}
	if !regexp.MustCompile(`file \./uringbench-\d+\.dat`).MatchString(stderr) {
		t.Errorf("-v does not name a temporary file in the working directory: %s", stderr)
	}
	if entries, _ := os.ReadDir(dir); len(entries) != 0 {
		t.Errorf("temporary file left behind: %v", entries)
	}
}

func TestDirectRefused(t *testing.T) {
	orig := directProbe
	t.Cleanup(func() { directProbe = orig })
	directProbe = func(string) (int64, error) { return 0, fmt.Errorf("open(O_DIRECT): %w", syscall.EINVAL) }
	dir := t.TempDir()

	code, _, stderr := cli(t, "-direct", "-ops", "50", "-size", "1m", "-file", filepath.Join(dir, "a.dat"))
	if code != 2 || !strings.Contains(stderr, "refuses O_DIRECT") || strings.Count(stderr, "\n") != 1 {
		t.Errorf("explicit -direct where refused: exit %d, stderr %q", code, stderr)
	}
	code, stdout, stderr := cli(t, "-ops", "50", "-size", "1m", "-file", filepath.Join(dir, "b.dat"), "-engine", "gofile", "-json")
	if code != 0 || !strings.Contains(stderr, "running buffered") {
		t.Fatalf("default run where O_DIRECT is refused: exit %d, stderr %q", code, stderr)
	}
	if rs := decode(t, stdout); len(rs) != 1 || rs[0].Direct {
		t.Errorf("fallback run: %+v, want one buffered row", rs)
	}
	if entries, _ := os.ReadDir(dir); len(entries) != 0 {
		t.Errorf("files left behind: %v", entries)
	}
}

func TestVerifyCatchesBadBlocks(t *testing.T) {
	file := filepath.Join(t.TempDir(), "v.dat")
	p := newPlan("randwrite", 4096, 4, 1, 0, 7)
	p.tag = 0xabc
	r := newRNG(7, 0)
	p.pattern = make([]byte, 4096)
	fillRandom(p.pattern, &r)
	img := make([]byte, 4*4096)
	for i := int64(0); i < 4; i++ {
		blk := img[i*4096 : (i+1)*4096]
		copy(blk, p.pattern)
		stamp(blk, i*4096, p.tag)
	}
	if err := os.WriteFile(file, img, 0o644); err != nil {
		t.Fatal(err)
	}
	tg := &target{path: file, size: int64(len(img))}
	if err := tg.verify(p, []int64{0, 4096, 8192, 12288}); err != nil {
		t.Fatalf("intact blocks: %v", err)
	}
	for name, corrupt := range map[string]func(b []byte){
		"misplaced": func(b []byte) { stamp(b[4096:], 0, p.tag) },
		"stale":     func(b []byte) { stamp(b[4096:], 4096, p.tag+1) },
		"body":      func(b []byte) { b[4096+100] ^= 0xff },
	} {
		bad := bytes.Clone(img)
		corrupt(bad)
		if err := os.WriteFile(file, bad, 0o644); err != nil {
			t.Fatal(err)
		}
		if err := tg.verify(p, []int64{4096}); err == nil {
			t.Errorf("%s block passed verification", name)
		}
	}
}

func TestMeasuredLoopsDoNotAllocate(t *testing.T) {
	uringtest.Require(t)
	file := filepath.Join(t.TempDir(), "a.dat")
	code, _, stderr := cli(t, "-ops", "20000", "-size", "4m", "-file", file, "-engine", "ring,gofile", "-mode", "callback", "-v")
	if code != 0 {
		t.Fatalf("exit %d: %s", code, stderr)
	}
	m := regexp.MustCompile(`(ring/callback|gofile): ([0-9.]+) heap allocations per op`).FindAllStringSubmatch(stderr, -1)
	if len(m) != 2 {
		t.Fatalf("-v reports no allocation counts: %s", stderr)
	}
	// The feature paths prepare different SQEs and must stay as lean. The
	// fallback engine skips feature runs, as TestFeatureFlags checks.
	if !onFallback() {
		code, _, stderr = cli(t, "-ops", "20000", "-size", "4m", "-file", file, "-engine", "ring", "-mode", "callback", "-fixedbufs", "-registerfiles", "-v")
		if code != 0 {
			t.Fatalf("exit %d: %s", code, stderr)
		}
		mf := regexp.MustCompile(`(ring/callback\+fixedbufs\+registerfiles): ([0-9.]+) heap allocations per op`).FindAllStringSubmatch(stderr, -1)
		if len(mf) != 1 {
			t.Fatalf("-v reports no allocation count for the features run: %s", stderr)
		}
		m = append(m, mf...)
	}
	for _, x := range m {
		// A per-op allocation would show as >= 1; the rest is run setup and
		// the Go runtime's own bookkeeping.
		if v, _ := strconv.ParseFloat(x[2], 64); v > 0.05 {
			t.Errorf("%s: %v heap allocations per op in the measured loop", x[1], v)
		}
	}
}

func TestNoProgressBarOffTerminal(t *testing.T) {
	file := filepath.Join(t.TempDir(), "p.dat")
	code, _, stderr := cli(t, "-time", "1200ms", "-size", "1m", "-file", file, "-engine", "gofile", "-direct=false")
	if code != 0 {
		t.Fatalf("exit %d: %s", code, stderr)
	}
	if stderr != "" {
		t.Errorf("stderr is not a terminal, yet got %q", stderr)
	}
}

func TestFioJobMirrorsFlags(t *testing.T) {
	c, err := parseFlags([]string{"-workload", "randread", "-bs", "16k", "-qd", "7", "-size", "3m", "-seed", "9", "-time", "2s"}, &bytes.Buffer{})
	if err != nil {
		t.Fatal(err)
	}
	e := &env{cfg: c, tgt: &target{path: "/data/a:b.dat", size: 3 << 20, direct: true}}
	p := e.newPlan(0)
	args := strings.Join(fioArgs(e, p), " ")
	for _, want := range []string{
		"--ioengine=io_uring", "--rw=randread", "--bs=16384", "--iodepth=7", "--size=3145728", "--direct=1",
		"--randseed=9", "--readonly", "--time_based", "--runtime=2000ms", `--filename=/data/a\:b.dat`, "--invalidate=1",
	} {
		if !strings.Contains(args, want) {
			t.Errorf("fio job %q lacks %q", args, want)
		}
	}
	c.workload, c.ops, c.cache = "fsync", 100, "warm"
	e.tgt.direct, e.tgt.writes = false, true
	args = strings.Join(fioArgs(e, e.newPlan(0)), " ")
	for _, want := range []string{"--rw=write", "--fsync=1", "--io_size=1638400", "--direct=0", "--invalidate=0"} {
		if !strings.Contains(args, want) {
			t.Errorf("fio job %q lacks %q", args, want)
		}
	}
	if strings.Contains(args, "--readonly") || strings.Contains(args, "--time_based") {
		t.Errorf("fsync fio job %q is read-only or time-based", args)
	}
}

// TestFeatureFlags runs every feature flag for a few hundred ops in both ring
// modes (and in fio, where it is installed) and checks the rows' modes, the
// kernel's own account of the ring (fdinfo), and for writing workloads the
// data written through registered buffers and files.
func TestFeatureFlags(t *testing.T) {
	uringtest.Require(t)
	dir := t.TempDir()
	const ops, qd = 300, 8
	for _, tc := range []struct {
		name     string
		args     []string
		workload string
		ring     []string // ring rows' modes
		fio      string   // fio's mode, "" when fio does not run
	}{
		{"fixedbufs", []string{"-fixedbufs"}, "randread",
			[]string{"block+fixedbufs", "callback+fixedbufs"}, "io_uring+fixedbufs"},
		{"registerfiles", []string{"-registerfiles"}, "randread",
			[]string{"block+registerfiles", "callback+registerfiles"}, "io_uring+registerfiles"},
		{"sqpoll", []string{"-sqpoll"}, "randread",
			[]string{"block+sqpoll", "callback+sqpoll"}, "io_uring+registerfiles+sqpoll"},
		{"sqpoll idle", []string{"-sqpoll", "-sqpoll-idle", "0"}, "randread",
			[]string{"block+sqpoll", "callback+sqpoll"}, "io_uring+registerfiles+sqpoll"},
		{"fixedbufs randrw", []string{"-fixedbufs"}, "randrw",
			[]string{"block+fixedbufs", "callback+fixedbufs"}, "io_uring+fixedbufs"},
		{"registerfiles randwrite", []string{"-registerfiles"}, "randwrite",
			[]string{"block+registerfiles", "callback+registerfiles"}, "io_uring+registerfiles"},
		{"fixedbufs fsync", []string{"-fixedbufs"}, "fsync",
			[]string{"block+fixedbufs", "callback+fixedbufs"}, "io_uring+fixedbufs"},
		{"registerfiles fsync callback", []string{"-registerfiles", "-mode", "callback"}, "fsync",
			[]string{"callback+registerfiles"}, "io_uring+registerfiles"},
		{"all callback", []string{"-fixedbufs", "-registerfiles", "-sqpoll", "-mode", "callback"}, "randwrite",
			[]string{"callback+fixedbufs+registerfiles+sqpoll"}, "io_uring+fixedbufs+registerfiles+sqpoll"},
		{"sqpoll nop", []string{"-sqpoll"}, "nop",
			[]string{"block+sqpoll", "callback+sqpoll"}, ""},
	} {
		t.Run(tc.name, func(t *testing.T) {
			file := filepath.Join(dir, strings.ReplaceAll(tc.name, " ", "-")+".dat")
			args := append([]string{"-workload", tc.workload, "-ops", strconv.Itoa(ops), "-qd", strconv.Itoa(qd),
				"-bs", "4k", "-size", "1m", "-file", file, "-engine", "ring,fio", "-json", "-v"}, tc.args...)
			code, stdout, stderr := cli(t, args...)
			if onFallback() {
				// The software engine has no SQPOLL thread nor kernel
				// registrations: its rows would be mislabeled, so they go.
				if !strings.Contains(stderr, "runs on the fallback engine: skipped") {
					t.Errorf("RINGWAKE_BACKEND=fallback: the ring rows were not skipped: %s", stderr)
				}
				if tc.fio == "" {
					if code != 1 || !strings.Contains(stderr, "no engine could run") {
						t.Errorf("exit %d, want 1 with no engine left: %s", code, stderr)
					}
					return
				}
				tc.ring = nil
			}
			if code != 0 {
				t.Fatalf("%q: exit %d: %s", args, code, stderr)
			}
			rs := decode(t, stdout)
			var want []string
			for _, m := range tc.ring {
				want = append(want, "ring/"+m)
				// The kernel, not uringbench, says the features were in effect.
				if !strings.Contains(stderr, "ring/"+m+": kernel fdinfo confirms ") {
					t.Errorf("ring/%s: no fdinfo confirmation on stderr: %s", m, stderr)
				}
			}
			if tc.fio != "" && haveFio() {
				want = append(want, "fio/"+tc.fio)
			}
			if got := engineKeys(rs); !slices.Equal(got, want) {
				t.Fatalf("rows %v, want %v (stderr: %s)", got, want, stderr)
			}
			for _, r := range rs {
				sane(t, r, tc.workload, 4096, qd, ops)
			}
			if tc.workload != "randread" && tc.workload != "nop" {
				for _, m := range tc.ring {
					re := regexp.MustCompile(regexp.QuoteMeta("ring/"+m) + `: [1-9][0-9]* written blocks read back and verified`)
					if !re.MatchString(stderr) {
						t.Errorf("ring/%s: writes not verified: %s", m, stderr)
					}
				}
			}
		})
	}
}

// TestFeatureSQEs checks the SQE each feature makes the callback engine send.
func TestFeatureSQEs(t *testing.T) {
	buf := alignedBuffer(8192)
	rbuf, wbuf := buf[:4096], buf[4096:]
	for _, tc := range []struct {
		name    string
		c       *cbRun
		kind    opKind
		syncing bool
		op      uint8
		fd      int32
		flags   uint8
		index   uint16
		addr    *byte
	}{
		{"read", &cbRun{fd: 7}, opRead, false, sqe.OpRead, 7, 0, 0, &rbuf[0]},
		{"write", &cbRun{fd: 7}, opWrite, false, sqe.OpWrite, 7, 0, 0, &wbuf[0]},
		{"read fixed", &cbRun{fd: 7, fixed: true}, opRead, false, sqe.OpReadFixed, 7, 0, 5, &rbuf[0]},
		{"write fixed", &cbRun{fd: 7, fixed: true}, opWriteSync, false, sqe.OpWriteFixed, 7, 0, 5, &wbuf[0]},
		{"read registered file", &cbRun{fd: 2, sqeFl: sqe.FixedFile}, opRead, false, sqe.OpRead, 2, sqe.FixedFile, 0, &rbuf[0]},
		{"fsync registered file", &cbRun{fd: 2, sqeFl: sqe.FixedFile, fixed: true}, opWriteSync, true, sqe.OpFsync, 2, sqe.FixedFile, 0, nil},
		{"both", &cbRun{fd: 2, sqeFl: sqe.FixedFile, fixed: true}, opRead, false, sqe.OpReadFixed, 2, sqe.FixedFile, 5, &rbuf[0]},
		{"nop", &cbRun{fd: 2, sqeFl: sqe.FixedFile, fixed: true}, opNop, false, sqe.OpNop, -1, 0, 0, nil},
	} {
		s := &cbSlot{id: 5, rbuf: rbuf, wbuf: wbuf, kind: tc.kind, syncing: tc.syncing, off: 8192}
		s.sqe.Flags = 0xff // prep must not keep stale flags from the slot's last op
		tc.c.prep(s)
		q := &s.sqe
		var addr uint64
		if tc.addr != nil {
			addr = uint64(uintptr(unsafe.Pointer(tc.addr)))
		}
		if q.Opcode != tc.op || q.Fd != tc.fd || q.Flags != tc.flags || q.BufIndex != tc.index || q.Addr != addr {
			t.Errorf("%s: opcode %s fd %d flags %#x buf_index %d addr %#x; want %s fd %d flags %#x buf_index %d addr %#x",
				tc.name, sqe.OpName(q.Opcode), q.Fd, q.Flags, q.BufIndex, q.Addr, sqe.OpName(tc.op), tc.fd, tc.flags, tc.index, addr)
		}
		if tc.addr != nil && (q.Len != 4096 || q.Off != 8192) {
			t.Errorf("%s: len %d off %d, want 4096 at 8192", tc.name, q.Len, q.Off)
		}
	}
}

func TestParseRingInfo(t *testing.T) {
	const sample = "pos:\t0\nflags:\t02000002\nSqMask:\t0x7\nSqThread:\t4242\nSqThreadCpu:\t1\n" +
		"UserFiles:\t1024\n    0: f.dat\n    1: <none>\nUserBufs:\t2\n    0: 0xc000100000/4096\n    1: 0xc000101000/4096\nPollList:\n"
	ri, err := parseRingInfo(sample)
	if err != nil || ri != (ringInfo{sqThread: 4242, userFiles: 1024, userBufs: 2}) {
		t.Fatalf("parseRingInfo = %+v, %v", ri, err)
	}
	if err := checkRingInfo(ri, features{fixedbufs: true, registerfiles: true, sqpoll: true}, 2); err != nil {
		t.Errorf("a ring with every feature refused: %v", err)
	}
	for name, c := range map[string]struct {
		ri   ringInfo
		f    features
		bufs int
	}{
		"no sq thread": {ringInfo{sqThread: -1}, features{sqpoll: true}, 0},
		"no files":     {ringInfo{sqThread: -1}, features{registerfiles: true}, 0},
		"few buffers":  {ringInfo{sqThread: -1, userBufs: 4}, features{fixedbufs: true}, 8},
	} {
		if err := checkRingInfo(c.ri, c.f, c.bufs); err == nil {
			t.Errorf("%s: checkRingInfo accepted %+v for %+v", name, c.ri, c.f)
		}
	}
	if _, err := parseRingInfo("pos:\t0\nSqThread:\t-1\n"); err == nil {
		t.Error("an fdinfo without UserFiles and UserBufs parsed")
	}
	if _, err := parseRingInfo("SqThread:\tx\nUserFiles:\t0\nUserBufs:\t0\n"); err == nil {
		t.Error("a malformed SqThread line parsed")
	}
}

func TestFioFeatureOptions(t *testing.T) {
	c, err := parseFlags([]string{"-fixedbufs", "-sqpoll", "-engine", "ring,fio,gofile"}, &bytes.Buffer{})
	if err != nil {
		t.Fatal(err)
	}
	e := &env{cfg: c, tgt: &target{path: "/data/f", size: 1 << 20, direct: true}}
	args := strings.Join(fioArgs(e, e.newPlan(0)), " ")
	for _, want := range []string{"--ioengine=io_uring", "--fixedbufs=1", "--sqthread_poll=1"} {
		if !strings.Contains(args, want) {
			t.Errorf("fio job %q lacks %q", args, want)
		}
	}
	if strings.Contains(args, "--registerfiles") {
		t.Errorf("fio job %q registers files the flags did not ask for", args)
	}
	var modes []string
	for _, r := range e.engineRuns() {
		modes = append(modes, r.name+"/"+r.mode)
	}
	want := []string{"ring/block+fixedbufs+sqpoll", "ring/callback+fixedbufs+sqpoll", "fio/io_uring+fixedbufs+registerfiles+sqpoll", "gofile/block"}
	if !slices.Equal(modes, want) {
		t.Errorf("runs %v, want %v", modes, want)
	}
	if c.feat.sqpollIdle != defaultSQPollIdle {
		t.Errorf("-sqpoll-idle defaults to %v, want %v", c.feat.sqpollIdle, defaultSQPollIdle)
	}
}
