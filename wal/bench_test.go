package wal

import (
	"context"
	"encoding/binary"
	"fmt"
	"os"
	"path/filepath"
	"sync"
	"sync/atomic"
	"testing"
	"time"

	"github.com/HdrHistogram/hdrhistogram-go"
	"golang.org/x/sys/unix"

	"github.com/ringwake/ringwake/internal/uringtest"
)

// BenchmarkAppend measures durable appends of 128-byte records with 1, 16,
// 64 and 256 concurrent appenders, for this package and two os.File
// baselines, in the same run:
//
//	wal            this package, default Options (O_DIRECT where supported)
//	wal-recycle    this package in steady state: a checkpointer truncates
//	               it, and the next segment is a recycled spare from before
//	               the timer starts (openWALRecycleBench)
//	wal-buffered   this package, Direct: DirectOff
//	mutex-sync     (a) os.File.Write + File.Sync per append under a mutex
//	group-commit   (b) one committer goroutine takes every pending append,
//	               writes them with one write and fdatasyncs once
//
// Each op is one durable append. Besides ns/op it reports appends/s, the
// p50/p99 latency of single appends in microseconds, and records per
// fsync/fdatasync. WAL_BENCH_VARIANTS=1 adds design experiments:
// wal-nooverlap, wal-nosettle, wal-skipzero, wal-noslices (the next segment
// is not zero-filled during the run), wal-ring (every commit through the
// ring, as for appenders whose ctx can end) and group-commit-prealloc
// (baseline (b) writing in place into a fallocated file).
func BenchmarkAppend(b *testing.B) {
	uringtest.Require(b)
	impls := []struct {
		name string
		open func(b *testing.B, dir string) appender
	}{
		{"wal", func(b *testing.B, dir string) appender { return openWALBench(b, dir, Options{}) }},
		{"wal-recycle", openWALRecycleBench},
		{"wal-buffered", func(b *testing.B, dir string) appender { return openWALBench(b, dir, Options{Direct: DirectOff}) }},
		{"mutex-sync", openMutexSync},
		{"group-commit", openGroupCommit},
	}
	if os.Getenv("WAL_BENCH_VARIANTS") != "" {
		// Design experiments, kept out of the default run (docs/wal.md).
		impls = append(impls,
			struct {
				name string
				open func(b *testing.B, dir string) appender
			}{"wal-nooverlap", func(b *testing.B, dir string) appender {
				return openWALBench(b, dir, Options{noOverlap: true})
			}},
			struct {
				name string
				open func(b *testing.B, dir string) appender
			}{"wal-nosettle", func(b *testing.B, dir string) appender {
				return openWALBench(b, dir, Options{noSettle: true})
			}},
			struct {
				name string
				open func(b *testing.B, dir string) appender
			}{"wal-skipzero", func(b *testing.B, dir string) appender {
				return openWALBench(b, dir, Options{SkipZeroFill: true})
			}},
			struct {
				name string
				open func(b *testing.B, dir string) appender
			}{"wal-noslices", func(b *testing.B, dir string) appender {
				return openWALBench(b, dir, Options{noZeroSlices: true})
			}},
			struct {
				name string
				open func(b *testing.B, dir string) appender
			}{"wal-ring", func(b *testing.B, dir string) appender {
				return openWALBench(b, dir, Options{noInline: true})
			}},
			struct {
				name string
				open func(b *testing.B, dir string) appender
			}{"group-commit-prealloc", func(b *testing.B, dir string) appender {
				return openGroupCommitOpts(b, dir, true)
			}})
	}
	for _, n := range []int{1, 16, 64, 256} {
		for _, impl := range impls {
			b.Run(fmt.Sprintf("%s/appenders=%d", impl.name, n), func(b *testing.B) {
				runAppendBench(b, n, impl.open(b, b.TempDir()))
			})
		}
	}
}

// appender is one implementation under test.
type appender interface {
	append(rec []byte) error
	close() error
	stats() Stats // Appends and Syncs, for records per fsync
}

const benchRecordSize = 128

func runAppendBench(b *testing.B, appenders int, a appender) {
	rec := make([]byte, benchRecordSize)
	// One append first: the log's first segment is ready, the file exists.
	if err := a.append(rec); err != nil {
		b.Fatal(err)
	}
	st0 := a.stats()
	hists := make([]*hdrhistogram.Histogram, appenders)
	var next atomic.Int64
	var wg sync.WaitGroup
	var failed atomic.Pointer[error]
	b.ResetTimer()
	start := time.Now()
	for g := range appenders {
		h := hdrhistogram.New(1, int64(10*time.Second/time.Microsecond), 3)
		hists[g] = h
		wg.Add(1)
		go func() {
			defer wg.Done()
			rec := make([]byte, benchRecordSize)
			binary.LittleEndian.PutUint64(rec, uint64(g))
			for next.Add(1) <= int64(b.N) {
				t0 := time.Now()
				if err := a.append(rec); err != nil {
					failed.Store(&err)
					return
				}
				h.RecordValue(max(1, time.Since(t0).Microseconds()))
			}
		}()
	}
	wg.Wait()
	elapsed := time.Since(start)
	b.StopTimer()
	st := a.stats()
	if err := failed.Load(); err != nil {
		b.Fatal(*err)
	}
	if err := a.close(); err != nil {
		b.Fatal(err)
	}
	all := hdrhistogram.New(1, int64(10*time.Second/time.Microsecond), 3)
	for _, h := range hists {
		all.Merge(h)
	}
	b.ReportMetric(float64(b.N)/elapsed.Seconds(), "appends/s")
	b.ReportMetric(float64(all.ValueAtQuantile(50)), "p50-µs")
	b.ReportMetric(float64(all.ValueAtQuantile(99)), "p99-µs")
	if st.Syncs > st0.Syncs {
		b.ReportMetric(float64(st.Appends-st0.Appends)/float64(st.Syncs-st0.Syncs), "recs/sync")
	}
}

type walBench struct{ l *Log }

func openWALBench(b *testing.B, dir string, o Options) appender {
	l, err := Open(dir, o)
	if err != nil {
		b.Fatal(err)
	}
	return walBench{l}
}

func (w walBench) append(rec []byte) error {
	_, err := w.l.Append(context.Background(), rec)
	return err
}
func (w walBench) close() error { return w.l.Close() }
func (w walBench) stats() Stats { return w.l.Stats() }

// recycleSegmentSize is wal-recycle's segment size. The row must reach
// steady state before its timer starts, and the benchmark function runs
// several times (once per b.N it tries), each with a fresh log: with 8 MiB
// segments the warm-up fills three segments in large records and zero-fills
// a fourth, about 56 MiB of writes, under 0.4 s here (64 MiB segments would
// take seconds per run). At 64 appenders the log then rolls every half
// second or so, so a 2 s run crosses a few rolls and truncations, as a
// long-lived log would.
const recycleSegmentSize = 8 << 20

// walRecycle is the log with a checkpointer goroutine that keeps the last
// two segments: every 5 ms it truncates the log to the current segment's
// predecessor.
type walRecycle struct {
	walBench
	b          *testing.B
	slices0    uint64 // zero slices sent during the warm-up
	stop, done chan struct{}
	err        atomic.Pointer[error]
}

// openWALRecycleBench opens a log and warms it up, outside the timed region,
// until its next segment is a recycled spare, ready: from there on no
// segment is created or zero-filled, which is what the row measures.
func openWALRecycleBench(b *testing.B, dir string) appender {
	l, err := Open(dir, Options{SegmentSize: recycleSegmentSize})
	if err != nil {
		b.Fatal(err)
	}
	w := &walRecycle{walBench: walBench{l}, b: b, stop: make(chan struct{}), done: make(chan struct{})}
	go w.checkpoint()
	big := make([]byte, min(l.MaxRecordSize(), 256<<10)) // fills segments in few appends
	for !l.nextRecycled() {
		if _, err := l.Append(context.Background(), big); err != nil {
			b.Fatal(err)
		}
		if err := w.err.Load(); err != nil {
			b.Fatal(*err)
		}
	}
	w.slices0 = l.stats.zeroSlices.Load()
	return w
}

// nextRecycled reports whether the next segment is a spare, ready to take.
func (l *Log) nextRecycled() bool {
	l.mu.Lock()
	defer l.mu.Unlock()
	return l.next != nil && l.next.spare != nil && l.next.ready
}

func (w *walRecycle) checkpoint() {
	defer close(w.done)
	tick := time.NewTicker(5 * time.Millisecond)
	defer tick.Stop()
	for {
		select {
		case <-w.stop:
			return
		case <-tick.C:
		}
		w.l.mu.Lock()
		var lsn uint64
		if n := len(w.l.starts); n > 2 {
			lsn = w.l.starts[n-2]
		}
		w.l.mu.Unlock()
		if lsn == 0 {
			continue
		}
		if err := w.l.TruncateFront(lsn); err != nil {
			w.err.Store(&err)
			return
		}
	}
}

func (w *walRecycle) close() error {
	close(w.stop)
	<-w.done
	// 0 unless the checkpointer fell behind the rolls: the check that the
	// row measured what it claims to.
	w.b.ReportMetric(float64(w.l.stats.zeroSlices.Load()-w.slices0), "zero-slices")
	if err := w.err.Load(); err != nil {
		w.l.Close()
		return *err
	}
	return w.l.Close()
}

// frame is the baselines' record framing: the same 8-byte length + CRC-32C
// header as the log's, so every implementation does the same CPU work.
func frame(dst []byte, lsn uint64, rec []byte) []byte {
	var h [recHdrSize]byte
	n := len(rec)
	h[4], h[5], h[6], h[7] = byte(n), byte(n>>8), byte(n>>16), recData
	binary.LittleEndian.PutUint32(h[0:4], recordCRC(lsn, h[4:8], rec))
	dst = append(dst, h[:]...)
	return append(dst, rec...)
}

// mutexSync is baseline (a): one Write and one Sync per append, under a mutex.
type mutexSync struct {
	mu  sync.Mutex
	f   *os.File
	lsn uint64
	buf []byte
}

func openMutexSync(b *testing.B, dir string) appender {
	f, err := os.OpenFile(filepath.Join(dir, "log"), os.O_WRONLY|os.O_CREATE|os.O_APPEND, 0o644)
	if err != nil {
		b.Fatal(err)
	}
	return &mutexSync{f: f}
}

func (m *mutexSync) append(rec []byte) error {
	m.mu.Lock()
	defer m.mu.Unlock()
	m.lsn++
	m.buf = frame(m.buf[:0], m.lsn, rec)
	if _, err := m.f.Write(m.buf); err != nil {
		return err
	}
	return m.f.Sync()
}

func (m *mutexSync) close() error { return m.f.Close() }
func (m *mutexSync) stats() Stats {
	m.mu.Lock()
	defer m.mu.Unlock()
	return Stats{Appends: m.lsn, Syncs: m.lsn}
}

// groupCommit is baseline (b): appenders queue their records; one committer
// goroutine takes every pending one, writes them in one write and
// fdatasyncs once, then answers them all.
type groupCommit struct {
	f       *os.File
	mu      sync.Mutex
	pending []*gcReq
	kick    chan struct{}
	stop    chan struct{}
	done    chan struct{}
	reqs    sync.Pool

	appends, syncs atomic.Uint64
}

type gcReq struct {
	rec []byte
	err chan error
}

func openGroupCommit(b *testing.B, dir string) appender { return openGroupCommitOpts(b, dir, false) }

// openGroupCommitOpts with prealloc fallocates the file first and writes in
// place, as the log does, instead of appending.
func openGroupCommitOpts(b *testing.B, dir string, prealloc bool) appender {
	f, err := os.OpenFile(filepath.Join(dir, "log"), os.O_WRONLY|os.O_CREATE|os.O_APPEND, 0o644)
	if prealloc {
		f.Close()
		f, err = os.OpenFile(filepath.Join(dir, "log"), os.O_WRONLY|os.O_CREATE, 0o644)
		if err == nil {
			err = unix.Fallocate(int(f.Fd()), 0, 0, DefaultSegmentSize)
		}
		if err == nil {
			err = f.Sync()
		}
	}
	if err != nil {
		b.Fatal(err)
	}
	g := &groupCommit{f: f, kick: make(chan struct{}, 1), stop: make(chan struct{}), done: make(chan struct{})}
	g.reqs.New = func() any { return &gcReq{err: make(chan error, 1)} }
	go g.commit(prealloc)
	return g
}

func (g *groupCommit) append(rec []byte) error {
	r := g.reqs.Get().(*gcReq)
	r.rec = rec
	g.mu.Lock()
	g.pending = append(g.pending, r)
	first := len(g.pending) == 1
	g.mu.Unlock()
	if first {
		select {
		case g.kick <- struct{}{}:
		default:
		}
	}
	err := <-r.err
	r.rec = nil
	g.reqs.Put(r)
	return err
}

func (g *groupCommit) commit(inPlace bool) {
	defer close(g.done)
	var batch []*gcReq
	var buf []byte
	var lsn uint64
	var off int64
	for {
		g.mu.Lock()
		batch, g.pending = g.pending, batch[:0]
		g.mu.Unlock()
		if len(batch) == 0 {
			select {
			case <-g.kick:
				continue
			case <-g.stop:
				return
			}
		}
		buf = buf[:0]
		for _, r := range batch {
			lsn++
			buf = frame(buf, lsn, r.rec)
		}
		var err error
		if inPlace {
			_, err = g.f.WriteAt(buf, off)
			off += int64(len(buf))
		} else {
			_, err = g.f.Write(buf)
		}
		if err == nil {
			err = unix.Fdatasync(int(g.f.Fd()))
		}
		g.syncs.Add(1)
		g.appends.Add(uint64(len(batch)))
		for _, r := range batch {
			r.err <- err
		}
	}
}

func (g *groupCommit) stats() Stats {
	return Stats{Appends: g.appends.Load(), Syncs: g.syncs.Load()}
}

func (g *groupCommit) close() error {
	close(g.stop)
	<-g.done
	return g.f.Close()
}
