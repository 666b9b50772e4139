// Command ab compares variants of one uringbench workload in interleaved
// rounds: every round runs each variant once (one uringbench invocation,
// one engine row), in reverse order every other round, so that the host's
// drift over the minutes of a comparison weighs on all variants alike. It
// prints each round's IOPS and, per variant, the median over rounds of its
// IOPS divided by the first variant's in the same round, the figure
// docs/benchmarks.md quotes for A/B sets.
//
//	go run ./bench/ab -rounds 6 -time 2s \
//	  'fio: -engine fio' \
//	  'block: -engine ring -mode block' \
//	  'shared: -engine ring -mode block -shared-thread' \
//	  'one P: GOMAXPROCS=1 -engine ring -mode block'
//
// A variant is "NAME: [VAR=VALUE ...] uringbench flags"; the environment
// assignments apply to that invocation only, except UB=PATH, which runs
// that variant with another uringbench binary (an older build, say:
// 'before: UB=/tmp/uringbench-old -engine ring -mode block'). -args holds the flags every
// variant shares (default: randread 4k qd 32 O_DIRECT).
package main

import (
	"encoding/json"
	"errors"
	"flag"
	"fmt"
	"io"
	"os"
	"os/exec"
	"path/filepath"
	"slices"
	"strings"

	"github.com/ringwake/ringwake/bench"
)

type variant struct {
	name  string
	bin   string // UB=PATH: this variant's uringbench binary (another build, to compare code)
	env   []string
	flags []string
}

// parseVariant splits "NAME: VAR=VALUE ... -flag ..." into its parts. The
// assignment UB=PATH is not an environment variable: it names the
// uringbench binary this variant runs, so that two builds can be compared
// in the same rounds.
func parseVariant(s string) (variant, error) {
	name, rest, ok := strings.Cut(s, ":")
	name = strings.TrimSpace(name)
	if !ok || name == "" {
		return variant{}, fmt.Errorf("variant %q: want NAME: [VAR=VALUE ...] flags", s)
	}
	v := variant{name: name}
	for _, w := range strings.Fields(rest) {
		if k, val, isEnv := strings.Cut(w, "="); isEnv && !strings.HasPrefix(w, "-") && k != "" && strings.ToUpper(k) == k {
			if k == "UB" {
				v.bin = val
				continue
			}
			v.env = append(v.env, w)
			continue
		}
		v.flags = append(v.flags, w)
	}
	if len(v.flags) == 0 {
		return variant{}, fmt.Errorf("variant %q: no uringbench flags (give at least -engine)", s)
	}
	return v, nil
}

// result is one uringbench row.
type result struct {
	IOPS float64 `json:"iops"`
	Lat  struct {
		P999 float64 `json:"p999"`
	} `json:"lat_ns"`
}

// order is the variants' run order in round r (0-based).
func order(n, r int) []int {
	idx := make([]int, n)
	for i := range idx {
		idx[i] = i
	}
	if r%2 == 1 {
		slices.Reverse(idx)
	}
	return idx
}

// summary is, per variant, the median over rounds of its IOPS over the
// first variant's in the same round, and its median IOPS and p99.9 (ms).
func summary(w io.Writer, vs []variant, iops, p999 [][]float64) {
	for i, v := range vs {
		ratios := make([]float64, len(iops[i]))
		for r := range ratios {
			ratios[r] = iops[i][r] / iops[0][r]
		}
		fmt.Fprintf(w, "%-24s median %8.0f IOPS  vs %s %.3fx (rounds %s)  p99.9 median %.2f ms\n",
			v.name, bench.Median(iops[i]), vs[0].name, bench.Median(ratios), join(ratios, "%.2f"), bench.Median(p999[i]))
	}
}

func join(xs []float64, f string) string {
	s := make([]string, len(xs))
	for i, x := range xs {
		s[i] = fmt.Sprintf(f, x)
	}
	return strings.Join(s, " ")
}

func main() {
	if err := run(os.Args[1:], os.Stdout, os.Stderr); err != nil {
		fmt.Fprintln(os.Stderr, "ab:", err)
		os.Exit(2)
	}
}

func run(args []string, stdout, stderr io.Writer) error {
	fs := flag.NewFlagSet("ab", flag.ContinueOnError)
	fs.SetOutput(stderr)
	rounds := fs.Int("rounds", 6, "rounds; each runs every variant once")
	dur := fs.String("time", "2s", "uringbench -time per variant and round")
	common := fs.String("args", "-workload randread -bs 4k -qd 32 -direct", "uringbench flags every variant shares")
	bin := fs.String("uringbench", "", "uringbench binary (default: built from ./cmd/uringbench)")
	dir := fs.String("dir", ".", "directory of the scratch file")
	if err := fs.Parse(args); err != nil {
		return err
	}
	if fs.NArg() < 2 || *rounds < 1 {
		return errors.New("want -rounds >= 1 and at least two variants")
	}
	var vs []variant
	for _, a := range fs.Args() {
		v, err := parseVariant(a)
		if err != nil {
			return err
		}
		vs = append(vs, v)
	}
	tmp, err := os.MkdirTemp("", "ab")
	if err != nil {
		return err
	}
	defer os.RemoveAll(tmp)
	if *bin == "" {
		*bin = filepath.Join(tmp, "uringbench")
		build := exec.Command("go", "build", "-o", *bin, "./cmd/uringbench")
		build.Stderr = stderr
		if err := build.Run(); err != nil {
			return fmt.Errorf("go build ./cmd/uringbench (run ab from the repository root): %w", err)
		}
	}
	file := filepath.Join(*dir, fmt.Sprintf("ab-%d.dat", os.Getpid()))
	defer os.Remove(file)
	iops := make([][]float64, len(vs))
	p999 := make([][]float64, len(vs))
	for r := 0; r < *rounds; r++ {
		for _, i := range order(len(vs), r) {
			v := vs[i]
			argv := append([]string{"-json", "-time", *dur, "-file", file, "-keep", "-force"}, strings.Fields(*common)...)
			b := *bin
			if v.bin != "" {
				b = v.bin
			}
			cmd := exec.Command(b, append(argv, v.flags...)...)
			cmd.Env = append(os.Environ(), v.env...)
			cmd.Stderr = stderr
			out, err := cmd.Output()
			if err != nil {
				return fmt.Errorf("%s: %w", v.name, err)
			}
			var rows []result
			if err := json.Unmarshal(out, &rows); err != nil || len(rows) != 1 {
				return fmt.Errorf("%s: want one uringbench row (one engine, one mode), got %q", v.name, out)
			}
			iops[i] = append(iops[i], rows[0].IOPS)
			p999[i] = append(p999[i], rows[0].Lat.P999/1e6)
		}
		line := make([]float64, len(vs))
		for i := range vs {
			line[i] = iops[i][r]
		}
		fmt.Fprintf(stdout, "round %d: %s\n", r+1, join(line, "%.0f"))
	}
	summary(stdout, vs, iops, p999)
	return nil
}
