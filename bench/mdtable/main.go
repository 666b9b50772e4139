// Command mdtable turns repeated `uringbench -json` runs of one workload into
// a markdown table of per-engine medians, for docs/benchmarks.md, and checks
// the targets it is given. bench/run.sh drives it. When the runs hold a
// cpeak row (the C liburing loop at the same depth), a "vs cpeak" column
// gives every row's IOPS divided by cpeak's in the same run, median over runs.
//
//	mdtable -title "randread 4k O_DIRECT qd 32" \
//	  -target "ring/block iops >= 0.95 fio/io_uring" run1.json run2.json run3.json
package main

import (
	"encoding/json"
	"errors"
	"flag"
	"fmt"
	"io"
	"os"
	"slices"
	"strconv"
	"strings"

	"github.com/ringwake/ringwake/bench"
)

// row mirrors the fields of uringbench's JSON this table uses.
type row struct {
	Engine   string  `json:"engine"`
	Mode     string  `json:"mode"`
	Workload string  `json:"workload"`
	Ops      int64   `json:"ops"`
	IOPS     float64 `json:"iops"`
	MiBPerS  float64 `json:"mib_per_s"`
	Lat      *struct {
		P50  float64 `json:"p50"`
		P99  float64 `json:"p99"`
		P999 float64 `json:"p999"`
		Max  float64 `json:"max"`
	} `json:"lat_ns"`
	CPUPerMop float64 `json:"cpu_s_per_mop"`
}

// series is one engine's values across runs.
type series struct {
	key                                  string
	iops, mib, p50, p99, p999, max, cpus []float64
	run                                  []int // the run each iops value comes from
	lat                                  bool
}

type targets []string

func (t *targets) String() string     { return strings.Join(*t, "; ") }
func (t *targets) Set(s string) error { *t = append(*t, s); return nil }

func main() { os.Exit(run(os.Args[1:], os.Stdout, os.Stderr)) }

func run(args []string, stdout, stderr io.Writer) int {
	fs := flag.NewFlagSet("mdtable", flag.ContinueOnError)
	fs.SetOutput(stderr)
	title := fs.String("title", "", "heading printed above the table")
	var tg targets
	fs.Var(&tg, "target", `a check such as "ring/block iops >= 0.95 fio/io_uring" or "ring/callback cpu <= 1.5 fio/io_uring" (repeatable)`)
	if err := fs.Parse(args); err != nil {
		return 2
	}
	if fs.NArg() == 0 {
		fmt.Fprintln(stderr, "mdtable: give the JSON files of the runs")
		return 2
	}
	ss, err := load(fs.Args())
	if err != nil {
		fmt.Fprintf(stderr, "mdtable: %v\n", err)
		return 1
	}
	if *title != "" {
		fmt.Fprintf(stdout, "#### %s\n\n", *title)
	}
	writeTable(stdout, ss, len(fs.Args()))
	// A missed target is reported, not fatal: the page shows what was measured.
	for _, t := range tg {
		line, err := check(ss, t)
		if err != nil {
			fmt.Fprintf(stderr, "mdtable: %v\n", err)
			return 2
		}
		fmt.Fprintln(stdout, line)
	}
	if len(tg) > 0 {
		fmt.Fprintln(stdout)
	}
	return 0
}

// load reads every run and groups the rows by engine/mode, in the order of
// the first run.
func load(paths []string) ([]*series, error) {
	var ss []*series
	byKey := map[string]*series{}
	for i, p := range paths {
		b, err := os.ReadFile(p)
		if err != nil {
			return nil, err
		}
		var rows []row
		if err := json.Unmarshal(b, &rows); err != nil {
			return nil, fmt.Errorf("%s: %w", p, err)
		}
		for _, r := range rows {
			k := r.Engine + "/" + r.Mode
			s := byKey[k]
			if s == nil {
				s = &series{key: k}
				byKey[k] = s
				ss = append(ss, s)
			}
			s.iops = append(s.iops, r.IOPS)
			s.run = append(s.run, i)
			s.mib = append(s.mib, r.MiBPerS)
			s.cpus = append(s.cpus, r.CPUPerMop)
			if r.Lat != nil {
				s.lat = true
				s.p50 = append(s.p50, r.Lat.P50)
				s.p99 = append(s.p99, r.Lat.P99)
				s.p999 = append(s.p999, r.Lat.P999)
				s.max = append(s.max, r.Lat.Max)
			}
		}
	}
	if len(ss) == 0 {
		return nil, errors.New("no rows in the runs")
	}
	return ss, nil
}

// median of xs; the mean of the middle two for an even count.

// anchor is the first cpeak row (the C liburing loop at the depth), which
// the "vs cpeak" column compares every row with; nil without one.
func anchor(ss []*series) *series {
	for _, s := range ss {
		if strings.HasPrefix(s.key, "cpeak/") {
			return s
		}
	}
	return nil
}

// ratioTo is the median over runs of s's IOPS divided by a's in the same
// run, so that the host's drift between runs cancels out; 0 when they share
// no run.
func ratioTo(s, a *series) float64 {
	byRun := map[int]float64{}
	for i, r := range a.run {
		byRun[r] = a.iops[i]
	}
	var rs []float64
	for i, r := range s.run {
		if b := byRun[r]; b > 0 {
			rs = append(rs, s.iops[i]/b)
		}
	}
	return bench.Median(rs)
}

func writeTable(w io.Writer, ss []*series, runs int) {
	a := anchor(ss)
	title, rule := "", ""
	if a != nil {
		title, rule = " vs cpeak |", "--:|"
	}
	fmt.Fprintf(w, "| engine/mode | IOPS (median of %d) | IOPS min–max | MiB/s | p50 | p99 | p99.9 | max | CPU s/Mop | vs first |%s\n", runs, title)
	fmt.Fprintln(w, "|---|--:|--:|--:|--:|--:|--:|--:|--:|--:|"+rule)
	base := bench.Median(ss[0].iops)
	for _, s := range ss {
		lat := "- | - | - | -"
		if s.lat {
			lat = strings.Join([]string{ns(bench.Median(s.p50)), ns(bench.Median(s.p99)), ns(bench.Median(s.p999)), ns(bench.Median(s.max))}, " | ")
		}
		mib := "-"
		if m := bench.Median(s.mib); m > 0 {
			mib = fmt.Sprintf("%.1f", m)
		}
		ratio := "-"
		if base > 0 {
			ratio = fmt.Sprintf("%.2fx", bench.Median(s.iops)/base)
		}
		vsC := ""
		if a != nil {
			vsC = " - |"
			if r := ratioTo(s, a); r > 0 {
				vsC = fmt.Sprintf(" %.2fx |", r)
			}
		}
		fmt.Fprintf(w, "| %s | %.0f | %.0f–%.0f | %s | %s | %.3f | %s |%s\n", s.key, bench.Median(s.iops),
			slices.Min(s.iops), slices.Max(s.iops), mib, lat, bench.Median(s.cpus), ratio, vsC)
	}
	fmt.Fprintln(w)
}

func ns(v float64) string {
	switch {
	case v >= 1e9:
		return fmt.Sprintf("%.2fs", v/1e9)
	case v >= 1e6:
		return fmt.Sprintf("%.2fms", v/1e6)
	case v >= 1e3:
		return fmt.Sprintf("%.1fµs", v/1e3)
	}
	return fmt.Sprintf("%.0fns", v)
}

// check evaluates "A metric op factor B": metric is iops or cpu, op >= or <=;
// the ratio of A's median to B's is compared with factor.
func check(ss []*series, t string) (string, error) {
	f := strings.Fields(t)
	if len(f) != 5 || (f[1] != "iops" && f[1] != "cpu") || (f[2] != ">=" && f[2] != "<=") {
		return "", fmt.Errorf("target %q: want \"ENGINE/MODE iops|cpu >=|<= FACTOR ENGINE/MODE\"", t)
	}
	factor, err := strconv.ParseFloat(f[3], 64)
	if err != nil {
		return "", fmt.Errorf("target %q: %v", t, err)
	}
	get := func(key string) (float64, bool) {
		for _, s := range ss {
			if s.key == key {
				if f[1] == "iops" {
					return bench.Median(s.iops), true
				}
				return bench.Median(s.cpus), true
			}
		}
		return 0, false
	}
	a, okA := get(f[0])
	b, okB := get(f[4])
	metric := map[string]string{"iops": "IOPS", "cpu": "CPU per op"}[f[1]]
	if !okA || !okB || b == 0 {
		return fmt.Sprintf("- %s %s / %s %s: not measured (target %s %s)", f[0], metric, f[4], metric, f[2], f[3]), nil
	}
	r := a / b
	met := r >= factor
	if f[2] == "<=" {
		met = r <= factor
	}
	verdict := "met"
	if !met {
		verdict = "NOT met"
	}
	return fmt.Sprintf("- %s %s / %s %s = %.2f (target %s %s): %s", f[0], metric, f[4], metric, r, f[2], f[3], verdict), nil
}
