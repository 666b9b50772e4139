// Command pebblebench measures Pebble on pebblevfs against Pebble on
// vfs.Default, in the same run, interleaved, and prints the median of each
// and their ratio:
//
//   - synced writes: writers goroutines each Set with Sync: true into a fresh
//     database (Pebble groups the WAL syncs of concurrent commits);
//   - random point reads: readers goroutines Get random keys of a database
//     built once (with vfs.Default), after every file of it has been evicted
//     from the page cache (fsync, then posix_fadvise(DONTNEED)), with an 8 MiB
//     block cache, so that most Gets read from the device.
//
// Each round runs every workload on both file systems, alternating which
// goes first.
//
//	flock -x /tmp/ringwake-cpu.lock go run ./cmd/pebblebench -dir /var/tmp/pebblebench
package main

import (
	"bytes"
	"context"
	"encoding/binary"
	"errors"
	"flag"
	"fmt"
	"io"
	"math/rand/v2"
	"os"
	"path/filepath"
	"runtime"
	"slices"
	"sync"
	"sync/atomic"
	"syscall"
	"time"

	"github.com/cockroachdb/pebble/v2"
	"github.com/cockroachdb/pebble/v2/vfs"
	"golang.org/x/sys/unix"

	"github.com/ringwake/ringwake/contrib/pebblevfs"
	ringwake "github.com/ringwake/ringwake/runtime"
)

type config struct {
	dir       string
	rounds    int
	writers   int
	perWriter int
	keys      int // keys in the read database
	valueSize int
	readers   int
	reads     int // Gets per read phase, over all readers
	entries   uint32
	only      string // run only the workload of this name ("" for all)
	calls     bool   // print the write phases' call counts and times
}

func main() {
	var c config
	flag.StringVar(&c.dir, "dir", filepath.Join(os.TempDir(), "pebblebench"), "scratch directory (removed at the end)")
	flag.IntVar(&c.rounds, "rounds", 3, "rounds; each runs every workload on both file systems")
	flag.IntVar(&c.writers, "writers", 64, "goroutines making synced writes")
	flag.IntVar(&c.perWriter, "writes", 1000, "synced Sets per writer per phase")
	flag.IntVar(&c.keys, "keys", 1_000_000, "keys in the read database")
	flag.IntVar(&c.valueSize, "value", 512, "value size in bytes")
	flag.IntVar(&c.readers, "readers", 64, "goroutines making point reads")
	flag.IntVar(&c.reads, "reads", 100_000, "Gets per read phase")
	entries := flag.Uint("entries", 256, "ring entries")
	flag.StringVar(&c.only, "only", "", `run one workload: "writes" or "reads" (default both)`)
	flag.BoolVar(&c.calls, "calls", false, "after each write phase, print the count and mean time of the WAL's and the other files' writes and syncs")
	flag.Parse()
	c.entries = uint32(*entries)
	if err := run(c, os.Stdout); err != nil {
		fmt.Fprintln(os.Stderr, "pebblebench:", err)
		os.Exit(1)
	}
}

// result is one phase on one file system.
type result struct {
	opsPerSec float64
	cpuPerOp  time.Duration // user+system CPU of the process per operation
	calls     string        // -calls: the phase's call counts and times
}

type fsMaker struct {
	name string
	// make returns the file system, what to call after the phase, and a
	// line about the ring's work (empty for vfs.Default).
	make func() (vfs.FS, func() (string, error), error)
}

func run(c config, out io.Writer) error {
	if err := os.MkdirAll(c.dir, 0o755); err != nil {
		return err
	}
	defer os.RemoveAll(c.dir)
	fss := []fsMaker{
		{"ringwake", func() (vfs.FS, func() (string, error), error) {
			r, err := ringwake.New(ringwake.Config{Entries: c.entries})
			if err != nil {
				return nil, nil, err
			}
			return pebblevfs.New(r), func() (string, error) {
				st := r.Stats()
				line := fmt.Sprintf("  ring: %d requests, %.1f submitted per enter, %.1f completions per wait in the kernel, %d reaped inline",
					st.Submitted, float64(st.Submitted)/float64(max(st.Enters, 1)),
					float64(st.Completed)/float64(max(st.Waits, 1)), st.Inline)
				return line, r.Close()
			}, nil
		}},
		{"vfs.Default", func() (vfs.FS, func() (string, error), error) {
			return vfs.Default, func() (string, error) { return "", nil }, nil
		}},
	}

	fmt.Fprintf(out, "GOMAXPROCS %d, %d rounds, synced writes: %d writers x %d Sets; reads: %d readers, %d Gets after fadvise(DONTNEED)\n",
		runtime.GOMAXPROCS(0), c.rounds, c.writers, c.perWriter, c.readers, c.reads)

	readDir := filepath.Join(c.dir, "read")
	all := []struct {
		flag, name string
		run        func(fsys vfs.FS, round int) (result, error)
	}{
		{"writes", "synced writes", func(fsys vfs.FS, round int) (result, error) {
			dir := filepath.Join(c.dir, fmt.Sprintf("write-%d", round))
			defer os.RemoveAll(dir)
			return syncedWrites(fsys, dir, c)
		}},
		{"reads", "random reads", func(fsys vfs.FS, round int) (result, error) {
			return randomReads(fsys, readDir, c, round)
		}},
	}
	workloads := all[:0]
	for _, w := range all {
		if c.only == "" || c.only == w.flag {
			workloads = append(workloads, w)
		}
	}
	if len(workloads) == 0 {
		return fmt.Errorf("-only %q: no such workload (writes, reads)", c.only)
	}
	if c.only != "writes" {
		start := time.Now()
		if err := load(readDir, c); err != nil {
			return fmt.Errorf("loading the read database: %w", err)
		}
		size, files := dirSize(readDir)
		fmt.Fprintf(out, "read database: %d keys, %d-byte values, %.0f MiB in %d files, built in %v\n",
			c.keys, c.valueSize, float64(size)/(1<<20), files, time.Since(start).Round(time.Second))
	}
	res := map[string]map[string][]result{}
	for _, w := range workloads {
		res[w.name] = map[string][]result{}
	}
	for round := range c.rounds {
		for _, w := range workloads {
			order := []fsMaker{fss[0], fss[1]}
			if round%2 == 1 {
				order[0], order[1] = order[1], order[0]
			}
			for _, m := range order {
				fsys, closeFS, err := m.make()
				if err != nil {
					return err
				}
				r, err := w.run(fsys, round)
				ringLine, cerr := closeFS()
				if err == nil {
					err = cerr
				}
				if err != nil {
					return fmt.Errorf("%s on %s: %w", w.name, m.name, err)
				}
				res[w.name][m.name] = append(res[w.name][m.name], r)
				fmt.Fprintf(out, "round %d %-13s %-11s %9.0f ops/s  %6.1f µs CPU/op\n",
					round+1, w.name, m.name, r.opsPerSec, float64(r.cpuPerOp)/1e3)
				for _, line := range []string{ringLine, r.calls} {
					if line != "" {
						fmt.Fprintln(out, line)
					}
				}
			}
		}
	}

	fmt.Fprintf(out, "\n| workload | ringwake ops/s | vfs.Default ops/s | ratio (median of per-round ratios) | CPU/op ringwake | CPU/op vfs.Default |\n|---|---|---|---|---|---|\n")
	for _, w := range workloads {
		rw, df := res[w.name]["ringwake"], res[w.name]["vfs.Default"]
		var ratios []float64
		for i := range rw {
			ratios = append(ratios, rw[i].opsPerSec/df[i].opsPerSec)
		}
		fmt.Fprintf(out, "| %s | %.0f | %.0f | %.2fx | %.1f µs | %.1f µs |\n", w.name,
			median(rw, func(r result) float64 { return r.opsPerSec }),
			median(df, func(r result) float64 { return r.opsPerSec }),
			medianOf(ratios),
			median(rw, func(r result) float64 { return float64(r.cpuPerOp) / 1e3 }),
			median(df, func(r result) float64 { return float64(r.cpuPerOp) / 1e3 }))
	}
	return nil
}

func median(rs []result, f func(result) float64) float64 {
	v := make([]float64, len(rs))
	for i, r := range rs {
		v[i] = f(r)
	}
	return medianOf(v)
}

func medianOf(v []float64) float64 {
	if len(v) == 0 {
		return 0
	}
	v = slices.Clone(v)
	slices.Sort(v)
	if len(v)%2 == 1 {
		return v[len(v)/2]
	}
	return (v[len(v)/2-1] + v[len(v)/2]) / 2
}

func key(i int) []byte { return []byte(fmt.Sprintf("key-%010d", i)) }

// fillValue writes a value for key i: incompressible bytes, so the
// database's size on disk is what the flags say.
func fillValue(b []byte, i int, gen uint64) {
	rng := rand.New(rand.NewPCG(uint64(i), gen))
	for j := 0; j+8 <= len(b); j += 8 {
		binary.LittleEndian.PutUint64(b[j:], rng.Uint64())
	}
}

func options(fsys vfs.FS, cache int64) (*pebble.Options, func()) {
	c := pebble.NewCache(cache)
	return &pebble.Options{FS: fsys, Cache: c, Logger: quiet{}}, c.Unref
}

type quiet struct{}

func (quiet) Infof(string, ...any)         {}
func (quiet) Errorf(f string, args ...any) { fmt.Fprintf(os.Stderr, "pebble: "+f+"\n", args...) }
func (quiet) Fatalf(f string, args ...any) {
	fmt.Fprintf(os.Stderr, "pebble: "+f+"\n", args...)
	os.Exit(1)
}

// load builds the read database with vfs.Default: keys in order, in
// batches without the WAL, then one compaction, so both file systems read
// the same files.
func load(dir string, c config) error {
	opts, unref := options(vfs.Default, 64<<20)
	defer unref()
	opts.DisableWAL = true
	db, err := pebble.Open(dir, opts)
	if err != nil {
		return err
	}
	v := make([]byte, c.valueSize)
	b := db.NewBatch()
	for i := range c.keys {
		fillValue(v, i, 1)
		if err := b.Set(key(i), v, nil); err != nil {
			return err
		}
		if b.Len() > 4<<20 {
			if err := b.Commit(pebble.NoSync); err != nil {
				return err
			}
			b = db.NewBatch()
		}
	}
	if err := b.Commit(pebble.NoSync); err != nil {
		return err
	}
	if err := db.Flush(); err != nil {
		return err
	}
	if err := db.Compact(context.Background(), key(0), key(c.keys), true); err != nil {
		return err
	}
	return db.Close()
}

func dirSize(dir string) (int64, int) {
	var size int64
	var files int
	filepath.WalkDir(dir, func(_ string, d os.DirEntry, err error) error {
		if err == nil && d.Type().IsRegular() {
			if fi, err := d.Info(); err == nil {
				size += fi.Size()
				files++
			}
		}
		return nil
	})
	return size, files
}

// evict drops every file under dir from the page cache: fsync (dirty
// pages cannot be dropped), then posix_fadvise(DONTNEED) on the whole file.
func evict(dir string) error {
	return filepath.WalkDir(dir, func(path string, d os.DirEntry, err error) error {
		if err != nil || !d.Type().IsRegular() {
			return err
		}
		fd, err := unix.Open(path, unix.O_RDONLY|unix.O_CLOEXEC, 0)
		if err == unix.ENOENT {
			return nil // an obsolete file the database just deleted
		}
		if err != nil {
			return err
		}
		defer unix.Close(fd)
		if err := unix.Fsync(fd); err != nil {
			return err
		}
		return unix.Fadvise(fd, 0, 0, unix.FADV_DONTNEED)
	})
}

// measure runs fn, which makes ops operations, and reports its rate and
// the process's CPU per operation.
func measure(ops int, fn func() error) (result, error) {
	var ru0, ru1 syscall.Rusage
	syscall.Getrusage(syscall.RUSAGE_SELF, &ru0)
	t0 := time.Now()
	err := fn()
	elapsed := time.Since(t0)
	syscall.Getrusage(syscall.RUSAGE_SELF, &ru1)
	cpu := time.Duration(ru1.Utime.Nano()-ru0.Utime.Nano()) + time.Duration(ru1.Stime.Nano()-ru0.Stime.Nano())
	return result{opsPerSec: float64(ops) / elapsed.Seconds(), cpuPerOp: cpu / time.Duration(ops)}, err
}

// syncedWrites opens a fresh database on fsys and has c.writers goroutines
// each make c.perWriter Sets with Sync: true.
func syncedWrites(fsys vfs.FS, dir string, c config) (res result, err error) {
	if c.calls {
		st := &callStats{}
		fsys = countingFS{fsys, st}
		defer func() { res.calls = st.String() }()
	}
	opts, unref := options(fsys, 8<<20)
	defer unref()
	db, err := pebble.Open(dir, opts)
	if err != nil {
		return result{}, err
	}
	r, err := measure(c.writers*c.perWriter, func() error {
		var wg sync.WaitGroup
		errs := make(chan error, c.writers)
		for w := range c.writers {
			wg.Add(1)
			go func() {
				defer wg.Done()
				v := make([]byte, c.valueSize)
				for i := range c.perWriter {
					fillValue(v, i, uint64(w))
					if err := db.Set(key(w*c.perWriter+i), v, pebble.Sync); err != nil {
						errs <- err
						return
					}
				}
			}()
		}
		wg.Wait()
		close(errs)
		return <-errs
	})
	return r, errors.Join(err, db.Close())
}

// randomReads opens the read database on fsys with an 8 MiB block cache,
// evicts its files from the page cache, and has c.readers goroutines Get
// c.reads random keys between them, checking every value.
func randomReads(fsys vfs.FS, dir string, c config, round int) (result, error) {
	opts, unref := options(fsys, 8<<20)
	defer unref()
	db, err := pebble.Open(dir, opts)
	if err != nil {
		return result{}, err
	}
	if err := evict(dir); err != nil {
		db.Close()
		return result{}, err
	}
	var next atomic.Int64
	r, err := measure(c.reads, func() error {
		var wg sync.WaitGroup
		errs := make(chan error, c.readers)
		for g := range c.readers {
			wg.Add(1)
			go func() {
				defer wg.Done()
				rng := rand.New(rand.NewPCG(uint64(round), uint64(g)))
				want := make([]byte, c.valueSize)
				for next.Add(1) <= int64(c.reads) {
					i := rng.IntN(c.keys)
					got, closer, err := db.Get(key(i))
					if err != nil {
						errs <- fmt.Errorf("Get(%s): %w", key(i), err)
						return
					}
					fillValue(want, i, 1)
					ok := bytes.Equal(got, want)
					closer.Close()
					if !ok {
						errs <- fmt.Errorf("Get(%s): wrong value", key(i))
						return
					}
				}
			}()
		}
		wg.Wait()
		close(errs)
		return <-errs
	})
	return r, errors.Join(err, db.Close())
}
