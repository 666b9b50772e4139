package main

// -workload mixed: a storage engine's foreground reads against its own
// background writes (a compaction, a flush), in three phases of -time each:
// the foreground alone, both without I/O classes, and both with classes
// (-fg-shares against -bg-shares). The phases take turns in -slices slices
// (each on a ring of its own), so that a slow spell of the device or of the
// machine, which lasts seconds on a shared virtual machine, falls on every
// phase alike instead of on the one that ran then. Each phase prints a row
// per class: IOPS, MiB/s and latency percentiles.
//
// -workload calibrate: measures the device's service times and prints the
// ringwake.IOCost that models it.

import (
	"context"
	"fmt"
	"io"
	"slices"
	"sync"
	"sync/atomic"
	"time"

	"github.com/HdrHistogram/hdrhistogram-go"
	ringwake "github.com/ringwake/ringwake/runtime"
)

// stream is one side of a mixed run: qd goroutines each doing blocking
// reads or writes of bs at random offsets, in its own class (or none).
type stream struct {
	name  string
	write bool
	bs    int64
	qd    int
}

// streamRun is what a stream measured in a phase.
type streamRun struct {
	ops  atomic.Int64
	mu   sync.Mutex
	hist *hdrhistogram.Histogram
	err  error
}

func (sr *streamRun) fail(err error) {
	sr.mu.Lock()
	if sr.err == nil {
		sr.err = err
	}
	sr.mu.Unlock()
}

// newStreamRuns returns one empty streamRun per stream.
func newStreamRuns(n int) []*streamRun {
	runs := make([]*streamRun, n)
	for i := range runs {
		runs[i] = &streamRun{hist: newHist()}
	}
	return runs
}

// mixedPhase runs streams at once on a new ring for d, adding what they do
// to runs (one per stream) and returning the time it took; shares, when not
// nil, registers a class per stream with those shares, whose stats it adds
// to cls.
func (e *env) mixedPhase(ctx context.Context, d time.Duration, streams []stream, shares []uint32, runs []*streamRun, cls []ringwake.ClassStats) (time.Duration, error) {
	c := e.cfg
	r, err := ringwake.New(ringwake.Config{Entries: 256, IOPerEnter: c.ioPerEnter, SharedThread: c.sharedThread, IOCost: ringwake.IOCost{Capacity: c.capacity}})
	if err != nil {
		return 0, err
	}
	defer r.Close()
	f, err := r.Open(e.tgt.path, e.tgt.openFlags(), 0)
	if err != nil {
		return 0, err
	}
	defer f.Close()
	var stop atomic.Bool
	var wg sync.WaitGroup
	for i, s := range streams {
		sr := runs[i]
		sctx := ctx
		if shares != nil {
			cl := r.NewClass(s.name, shares[i])
			sctx = ringwake.WithClass(ctx, cl)
			defer func() {
				st := cl.Stats()
				cls[i].Name = st.Name
				cls[i].Ops += st.Ops
				cls[i].Queued += st.Queued
			}()
		}
		nblocks := uint64(e.tgt.size / s.bs)
		for g := range s.qd {
			wg.Add(1)
			go func() {
				defer wg.Done()
				h := newHist()
				rg := newRNG(c.seed, i*10000+g)
				buf := alignedBuffer(int(s.bs))
				if s.write {
					copy(buf, e.pattern)
				}
				for !stop.Load() && ctx.Err() == nil {
					off := int64(rg.below(nblocks)) * s.bs
					t0 := now()
					var err error
					if s.write {
						// Keep the file's layout: every 4 KiB names its offset.
						for j := int64(0); j < s.bs; j += 4096 {
							stamp(buf[j:], off+j, 0)
						}
						_, err = f.WriteAtContext(sctx, buf, off)
					} else {
						_, err = f.ReadAtContext(sctx, buf, off)
					}
					if err != nil {
						if ctx.Err() == nil {
							sr.fail(fmt.Errorf("%s: %w", s.name, err))
						}
						break
					}
					record(h, now()-t0)
					sr.ops.Add(1)
				}
				sr.mu.Lock()
				sr.hist.Merge(h)
				sr.mu.Unlock()
			}()
		}
	}
	t0 := time.Now()
	select {
	case <-time.After(d):
	case <-ctx.Done():
	}
	stop.Store(true)
	wg.Wait()
	elapsed := time.Since(t0)
	for _, sr := range runs {
		if sr.err != nil {
			return 0, sr.err
		}
	}
	return elapsed, ctx.Err()
}

func (e *env) streamResult(s stream, phase string, sr *streamRun, elapsed time.Duration) *result {
	res := &result{Engine: s.name, Mode: phase, Workload: "randread", BS: s.bs, QD: s.qd, Direct: e.tgt.direct, Lat: latencyOf(sr.hist)}
	if s.write {
		res.Workload = "randwrite"
	}
	res.finish(sr.ops.Load(), elapsed, 0)
	return res
}

// runMixed is -workload mixed.
func (e *env) runMixed(ctx context.Context, stdout io.Writer) error {
	c := e.cfg
	fg := stream{name: "fg", bs: c.bs, qd: c.qd}
	bg := stream{name: "bg", write: true, bs: c.bgBS, qd: c.bgQD}
	phases := []struct {
		name    string
		streams []stream
		shares  []uint32
	}{
		{"alone", []stream{fg}, nil},
		{"no-classes", []stream{fg, bg}, nil},
		{"classes", []stream{fg, bg}, []uint32{c.fgShares, c.bgShares}},
	}
	runs := make([][]*streamRun, len(phases))
	elapsed := make([]time.Duration, len(phases))
	cls := make([]ringwake.ClassStats, 2)
	for i, ph := range phases {
		runs[i] = newStreamRuns(len(ph.streams))
	}
	// Slice k runs the phases in the k-th of their 6 orders, so that over 6
	// slices each phase runs first, second and third alike and follows
	// each other phase as often (a phase of writes leaves the device busy
	// for a while).
	orders := [6][3]int{{0, 1, 2}, {1, 2, 0}, {2, 0, 1}, {0, 2, 1}, {2, 1, 0}, {1, 0, 2}}
	d := max(c.duration/time.Duration(c.slices), time.Millisecond)
	for k := range c.slices {
		for _, i := range orders[k%len(orders)] {
			ph := phases[i]
			e.verbosef("mixed: slice %d, phase %s", k+1, ph.name)
			took, err := e.mixedPhase(ctx, d, ph.streams, ph.shares, runs[i], cls)
			if err != nil {
				return fmt.Errorf("mixed, phase %s: %w", ph.name, err)
			}
			elapsed[i] += took
		}
	}
	for _, st := range cls {
		e.verbosef("class %s: %d ops, queued %s per op on average", st.Name, st.Ops, fmtNs(int64(st.Queued)/max(int64(st.Ops), 1)))
	}
	var rows []*result
	for i, ph := range phases {
		for j, s := range ph.streams {
			rows = append(rows, e.streamResult(s, ph.name, runs[i][j], elapsed[i]))
		}
	}
	if c.json {
		return writeJSON(stdout, rows)
	}
	fmt.Fprintf(stdout, "# mixed: fg %s random reads at qd %d, bg %s random writes at qd %d, %s each phase in %d slices; classes: fg %d shares, bg %d\n",
		formatBytes(fg.bs), fg.qd, formatBytes(bg.bs), bg.qd, c.duration, c.slices, c.fgShares, c.bgShares)
	if err := writeTable(stdout, rows); err != nil {
		return err
	}
	row := func(engine, mode string) *result {
		i := slices.IndexFunc(rows, func(r *result) bool { return r.Engine == engine && r.Mode == mode })
		return rows[i]
	}
	alone, fgNo, fgCl := row("fg", "alone"), row("fg", "no-classes"), row("fg", "classes")
	bgNo, bgCl := row("bg", "no-classes"), row("bg", "classes")
	_, err := fmt.Fprintf(stdout, "fg p99: alone %s, no classes %s (%.2fx alone), classes %s (%.2fx alone); bg MiB/s with classes %.2fx without\n",
		fmtNs(alone.Lat.P99), fmtNs(fgNo.Lat.P99), float64(fgNo.Lat.P99)/float64(alone.Lat.P99),
		fmtNs(fgCl.Lat.P99), float64(fgCl.Lat.P99)/float64(alone.Lat.P99), bgCl.MiBPerS/bgNo.MiBPerS)
	return err
}

// runCalibrate is -workload calibrate: a token is a nanosecond of device
// time at saturation, so 4 KiB and 128 KiB reads and writes at depth 64
// give each direction's per-request and per-KiB tokens (1/IOPS, split
// into a fixed part and a part that grows with size), and a lone 4 KiB
// read's latency (p50 at depth 1), doubled, the capacity: the latency goal
// of the device time a request may find in flight ahead of it.
func (e *env) runCalibrate(ctx context.Context, stdout io.Writer) error {
	d := max(e.cfg.duration/8, 50*time.Millisecond)
	run := func(write bool, bs int64, qd int) (p50ns, nsPerOp float64, err error) {
		s := stream{name: "cal", write: write, bs: bs, qd: qd}
		runs := newStreamRuns(1)
		elapsed, err := e.mixedPhase(ctx, d, []stream{s}, nil, runs, nil)
		if err != nil {
			return 0, 0, err
		}
		ops := max(runs[0].ops.Load(), 1)
		return float64(runs[0].hist.ValueAtQuantile(50)), float64(elapsed.Nanoseconds()) / float64(ops), nil
	}
	lone, _, err := run(false, 4<<10, 1)
	if err != nil {
		return err
	}
	var t [4]float64 // ns per request at depth 64: read 4k, read 128k, write 4k, write 128k
	for i, w := range []bool{false, true} {
		for j, bs := range []int64{4 << 10, 128 << 10} {
			_, ns, err := run(w, bs, 64)
			if err != nil {
				return err
			}
			t[i*2+j] = ns
		}
	}
	perKiB := func(small, large float64) float64 { return max((large-small)/124, 1) }
	rk, wk := perKiB(t[0], t[1]), perKiB(t[2], t[3])
	m := ringwake.IOCost{
		ReadOp: uint32(max(t[0]-4*rk, 1)), WriteOp: uint32(max(t[2]-4*wk, 1)),
		ReadKiB: uint32(rk + 0.5), WriteKiB: uint32(wk + 0.5),
		Capacity: uint64(2 * lone),
	}
	fmt.Fprintf(stdout, "# at depth 64, device time per request: read 4k %.1fµs, read 128k %.1fµs, write 4k %.1fµs, write 128k %.1fµs\n",
		t[0]/1e3, t[1]/1e3, t[2]/1e3, t[3]/1e3)
	fmt.Fprintf(stdout, "# a lone 4k read, p50: %.0fµs\n", lone/1e3)
	_, err = fmt.Fprintf(stdout, "ringwake.IOCost{ReadOp: %d, WriteOp: %d, ReadKiB: %d, WriteKiB: %d, Capacity: %d}\n",
		m.ReadOp, m.WriteOp, m.ReadKiB, m.WriteKiB, m.Capacity)
	return err
}
