// Command walpebble measures ringwake's wal against Pebble's WAL writer
// (record.LogWriter, pebble v2.1.7) side by side: 128-byte records, each
// appender waiting until its record is durable before the next, on a new log
// file and in each one's recycled steady state. It prints records/s, p50 and
// p99 latency, fdatasyncs per second and the disk's flushes per fdatasync,
// as medians over interleaved rounds, with ringwake's ratio to Pebble.
//
//	cd bench/walpebble && go run . -dir /path/on/the/disk/under/test
//
// It lives in a module of its own so that the root module does not depend
// on Pebble.
package main

import (
	"flag"
	"fmt"
	"io"
	"os"
	"runtime/pprof"
	"runtime/trace"
	"slices"
	"strconv"
	"strings"
	"time"
)

func main() {
	dir := flag.String("dir", ".", "directory on the file system under test (scratch files go in a temporary directory under it)")
	counts := flag.String("appenders", "1,16,64,256", "appender counts, comma-separated")
	rounds := flag.Int("rounds", 3, "interleaved rounds (medians are reported)")
	dur := flag.Duration("dur", 3*time.Second, "measured window per implementation, appender count and round")
	recycledSize := flag.Int64("recycled-size", 512<<20, "size of Pebble's recycled log file: larger than a window writes, so no window extends it")
	raw := flag.Bool("raw", false, "also print every window")
	only := flag.String("only", "", "run only these implementations (comma-separated: pebble, wal, pebble-recycled, wal-recycled); the table shows the pairs that both ran")
	cpuprofile := flag.String("cpuprofile", "", "write a CPU profile of the whole run to this file")
	tracefile := flag.String("trace", "", "write a runtime execution trace of the whole run to this file")
	flag.Parse()
	ns, err := parseCounts(*counts)
	// The profile and the trace, where asked for, cover the whole run.
	for _, rec := range []struct {
		path  string
		start func(string) (func() error, error)
	}{{*cpuprofile, startProfile}, {*tracefile, startTrace}} {
		if err != nil || rec.path == "" {
			continue
		}
		var stop func() error
		if stop, err = rec.start(rec.path); err == nil {
			defer func() {
				if serr := stop(); serr != nil {
					fmt.Fprintln(os.Stderr, "walpebble:", serr)
				}
			}()
		}
	}
	if err == nil {
		err = bench(os.Stdout, *dir, ns, *rounds, *dur, *recycledSize, *raw, *only)
	}
	if err != nil {
		fmt.Fprintln(os.Stderr, "walpebble:", err)
		os.Exit(1)
	}
}

func startProfile(path string) (stop func() error, err error) {
	return startRecording(path, pprof.StartCPUProfile, pprof.StopCPUProfile)
}

func startTrace(path string) (stop func() error, err error) {
	return startRecording(path, trace.Start, trace.Stop)
}

// startRecording starts a CPU profile or an execution trace into a new
// file at path; stop ends it and closes the file.
func startRecording(path string, start func(io.Writer) error, end func()) (stop func() error, err error) {
	f, err := os.Create(path)
	if err != nil {
		return nil, err
	}
	if err := start(f); err != nil {
		f.Close()
		return nil, err
	}
	return func() error { end(); return f.Close() }, nil
}

func parseCounts(s string) ([]int, error) {
	var ns []int
	for f := range strings.SplitSeq(s, ",") {
		n, err := strconv.Atoi(strings.TrimSpace(f))
		if err != nil || n < 1 {
			return nil, fmt.Errorf("-appenders: %q is not a positive count", f)
		}
		ns = append(ns, n)
	}
	return ns, nil
}

// bench runs rounds rounds; each round runs every appender count, and for
// each count all four implementations one after another, so the machine's
// drift weighs on all alike. Every other round runs them in reverse order,
// so neither log always runs right after the other's window.
func bench(out io.Writer, dir string, counts []int, rounds int, d time.Duration, recycledSize int64, raw bool, only string) (err error) {
	root, err := os.MkdirTemp(dir, "walpebble-")
	if err != nil {
		return err
	}
	impls := []impl{pebbleFresh(), walFresh(), pebbleRecycled(root, recycledSize), walRecycledImpl(root)}
	defer func() {
		for _, im := range impls {
			if derr := im.done(); err == nil {
				err = derr
			}
		}
		if rerr := os.RemoveAll(root); err == nil {
			err = rerr
		}
	}()
	all := map[string][]result{}
	key := func(name string, n int) string { return fmt.Sprintf("%s/%d", name, n) }
	for round := range rounds {
		order := slices.Clone(impls)
		if round%2 == 1 {
			slices.Reverse(order)
		}
		for _, n := range counts {
			for _, im := range order {
				if only != "" && !slices.Contains(strings.Split(only, ","), im.name) {
					continue
				}
				r, err := run(root, im, n, d)
				if err != nil {
					return err
				}
				if raw {
					fmt.Fprintf(out, "round %d %-16s appenders=%-3d %9.0f rec/s p50 %6.0fµs p99 %6.0fµs %7.0f syncs/s flushes/sync %s cpu %.1fµs/rec %.2f cores %s\n",
						round+1, r.impl, n, r.perSec(float64(r.records)), us(r.p50), us(r.p99), r.perSec(float64(r.syncs)), flushRatio(r),
						us(r.cpu)/float64(max(r.records, 1)), r.cpu.Seconds()/r.elapsed.Seconds(), r.detail)
				}
				all[key(im.name, n)] = append(all[key(im.name, n)], r)
			}
		}
	}
	fmt.Fprintf(out, "\n%d-byte records, durable before the next; medians of %d rounds of %v (write cache: %v)\n\n", recordSize, rounds, d, writeCache(root))
	fmt.Fprintln(out, "| appenders | log | Pebble rec/s | wal rec/s | ratio | Pebble p50/p99 µs | wal p50/p99 µs | Pebble syncs/s | wal syncs/s | flushes/sync Pebble, wal |")
	fmt.Fprintln(out, "|---:|---|---:|---:|---:|---:|---:|---:|---:|---:|")
	for _, kind := range [][2]string{{"pebble", "wal"}, {"pebble-recycled", "wal-recycled"}} {
		for _, n := range counts {
			if len(all[key(kind[0], n)]) == 0 || len(all[key(kind[1], n)]) == 0 {
				continue // -only left one of the pair out
			}
			p, w := summarize(all[key(kind[0], n)]), summarize(all[key(kind[1], n)])
			label := "new"
			if kind[1] == "wal-recycled" {
				label = "recycled"
			}
			fmt.Fprintf(out, "| %d | %s | %s | %s | %.2fx | %.0f / %.0f | %.0f / %.0f | %.0f | %.0f | %s, %s |\n",
				n, label, kilo(p.rate), kilo(w.rate), w.rate/p.rate, p.p50, p.p99, w.p50, w.p99, p.syncRate, w.syncRate, p.flushes, w.flushes)
		}
	}
	return nil
}

// summary is the medians of one implementation's windows at one count.
type summary struct {
	rate, p50, p99, syncRate float64
	flushes                  string
}

func summarize(rs []result) summary {
	med := func(f func(r result) float64) float64 {
		v := make([]float64, len(rs))
		for i, r := range rs {
			v[i] = f(r)
		}
		slices.Sort(v)
		return v[len(v)/2]
	}
	s := summary{
		rate:     med(func(r result) float64 { return r.perSec(float64(r.records)) }),
		p50:      med(func(r result) float64 { return us(r.p50) }),
		p99:      med(func(r result) float64 { return us(r.p99) }),
		syncRate: med(func(r result) float64 { return r.perSec(float64(r.syncs)) }),
		flushes:  "?",
	}
	if rs[0].flushes >= 0 {
		s.flushes = fmt.Sprintf("%.2f", med(func(r result) float64 { return float64(r.flushes) / float64(max(r.syncs, 1)) }))
	}
	return s
}

func flushRatio(r result) string {
	if r.flushes < 0 {
		return "?"
	}
	return fmt.Sprintf("%.2f", float64(r.flushes)/float64(max(r.syncs, 1)))
}

func us(d time.Duration) float64 { return float64(d) / float64(time.Microsecond) }

func kilo(v float64) string {
	if v >= 1000 {
		return fmt.Sprintf("%.1fk", v/1000)
	}
	return fmt.Sprintf("%.0f", v)
}
