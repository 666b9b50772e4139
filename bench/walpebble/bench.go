package main

import (
	"context"
	"errors"
	"fmt"
	"os"
	"path/filepath"
	"slices"
	"strconv"
	"strings"
	"sync"
	"sync/atomic"
	"time"

	"github.com/cockroachdb/pebble/v2/record"
	"github.com/cockroachdb/pebble/v2/vfs"
	"golang.org/x/sys/unix"

	"github.com/ringwake/ringwake/wal"
)

// recordSize is the size of every appended record.
const recordSize = 128

// appendLog is one write-ahead log under test: append returns once rec is
// durable.
type appendLog interface {
	append(rec []byte) error
	syncs() uint64 // fdatasyncs so far
	close() error
}

// statser is a log with counters of its own, printed with -raw.
type statser interface{ stats() wal.Stats }

// impl opens a log for one measured window, in a directory of its own
// (fresh) or in state kept across windows (recycled).
type impl struct {
	name string
	open func(dir string) (appendLog, error)
	done func() error // releases state kept across windows
}

// --- Pebble ---

// pebbleSem is the semaphore Pebble's commit pipeline takes before queueing a
// sync (commitPipeline.logSyncQSem); the LogWriter's sync queue pops it.
var pebbleSem = make(chan struct{}, record.SyncConcurrency-1)

// pebbleLog is record.LogWriter driven the way Pebble's commit pipeline
// drives it: SyncRecord under a mutex (commitPipeline.mu), then a wait on
// the WaitGroup the flush loop releases once an fdatasync covered it.
type pebbleLog struct {
	mu sync.Mutex
	w  *record.LogWriter
	f  *countingFile
}

// countingFile counts the fdatasyncs Pebble's syncing file makes: its Sync
// calls SyncData on the file it wraps, which is this one.
type countingFile struct {
	vfs.File
	n atomic.Uint64
}

func (f *countingFile) SyncData() error { f.n.Add(1); return f.File.SyncData() }
func (f *countingFile) Sync() error     { f.n.Add(1); return f.File.Sync() }

// pebbleWALFile wraps f the way Pebble's WAL manager does
// (wal/standalone_manager.go): a syncing file, whose Sync is fdatasync,
// preallocating 110% of the default 4 MiB memtable at a time.
func newPebbleLog(f vfs.File) *pebbleLog {
	cf := &countingFile{File: f}
	sf := vfs.NewSyncingFile(cf, vfs.SyncingFileOptions{PreallocateSize: 4<<20 + 4<<20/10})
	w := record.NewLogWriter(sf, 1, record.LogWriterConfig{
		QueueSemChan:        pebbleSem,
		WriteWALSyncOffsets: func() bool { return false }, // Pebble's default format
	})
	return &pebbleLog{w: w, f: cf}
}

func (p *pebbleLog) append(rec []byte) error {
	var wg sync.WaitGroup
	var err error
	wg.Add(1)
	pebbleSem <- struct{}{}
	p.mu.Lock()
	_, werr := p.w.SyncRecord(rec, &wg, &err)
	p.mu.Unlock()
	if werr != nil {
		<-pebbleSem
		return werr
	}
	wg.Wait()
	return err
}

func (p *pebbleLog) syncs() uint64 { return p.f.n.Load() }
func (p *pebbleLog) close() error  { return p.w.Close() }

// pebbleFresh writes each window to a new log file (vfs.Default.Create).
func pebbleFresh() impl {
	return impl{name: "pebble", open: func(dir string) (appendLog, error) {
		f, err := vfs.Default.Create(filepath.Join(dir, "000001.log"), vfs.WriteCategoryUnspecified)
		if err != nil {
			return nil, err
		}
		return newPebbleLog(f), nil
	}, done: func() error { return nil }}
}

// pebbleRecycled writes each window to a recycled log file: one file of
// size bytes, written and synced once, renamed to a new log number before
// every window (vfs.Default.ReuseForWrite), as Pebble recycles obsolete
// logs by default. Overwriting written blocks inside the file's size, its
// fdatasyncs carry no metadata.
func pebbleRecycled(root string, size int64) impl {
	dir := filepath.Join(root, "pebble-recycled")
	num := 0
	name := func() string { return filepath.Join(dir, fmt.Sprintf("%06d.log", num)) }
	return impl{name: "pebble-recycled", open: func(string) (appendLog, error) {
		if num == 0 {
			if err := writeFile(dir, name(), size); err != nil {
				return nil, err
			}
		}
		old := name()
		num++
		f, err := vfs.Default.ReuseForWrite(old, name(), vfs.WriteCategoryUnspecified)
		if err != nil {
			return nil, err
		}
		return newPebbleLog(f), nil
	}, done: func() error { return os.RemoveAll(dir) }}
}

// writeFile creates path with size bytes written and synced (the state of
// a log file Pebble is done with).
func writeFile(dir, path string, size int64) error {
	if err := os.MkdirAll(dir, 0o755); err != nil {
		return err
	}
	f, err := os.Create(path)
	if err != nil {
		return err
	}
	buf := make([]byte, 1<<20)
	for i := range buf {
		buf[i] = byte(i * 7)
	}
	for off := int64(0); off < size; off += int64(len(buf)) {
		if _, err := f.Write(buf); err != nil {
			f.Close()
			return err
		}
	}
	if err := f.Sync(); err != nil {
		f.Close()
		return err
	}
	return f.Close()
}

// --- ringwake wal ---

type walLog struct {
	l    *wal.Log
	keep bool // recycled: the log stays open across windows
}

func (w *walLog) append(rec []byte) error {
	_, err := w.l.Append(context.Background(), rec)
	return err
}

func (w *walLog) syncs() uint64    { return w.l.Stats().Syncs }
func (w *walLog) stats() wal.Stats { return w.l.Stats() }

func (w *walLog) close() error {
	if w.keep {
		return nil
	}
	return w.l.Close()
}

// walFresh opens a new log with wal.Options{} for each window.
func walFresh() impl {
	return impl{name: "wal", open: func(dir string) (appendLog, error) {
		l, err := wal.Open(dir, wal.Options{})
		if err != nil {
			return nil, err
		}
		return &walLog{l: l}, nil
	}, done: func() error { return nil }}
}

// walRecycled is one log, opened once and kept open across windows, with a
// checkpointer that truncates it to the current segment every 5 ms: its
// segments are spares renamed ahead (wal.Options.MaxSpareSegments), so once
// warmed up it creates and zero-fills no segment, which is the steady state
// of a log whose checkpoints keep up.
type walRecycled struct {
	l          *wal.Log
	dir        string
	stop, done chan struct{}
	err        atomic.Pointer[error]
}

func walRecycledImpl(root string) impl {
	w := &walRecycled{dir: filepath.Join(root, "wal-recycled")}
	return impl{name: "wal-recycled", open: func(string) (appendLog, error) {
		if w.l == nil {
			if err := w.start(); err != nil {
				return nil, err
			}
		}
		if err := w.err.Load(); err != nil {
			return nil, *err
		}
		return &walLog{l: w.l, keep: true}, nil
	}, done: w.close}
}

// start opens the log and appends large records until segments have been
// recycled twice: from there on the next segment is always a spare.
func (w *walRecycled) start() error {
	l, err := wal.Open(w.dir, wal.Options{})
	if err != nil {
		return err
	}
	w.l, w.stop, w.done = l, make(chan struct{}), make(chan struct{})
	go w.checkpoint()
	big := make([]byte, min(l.MaxRecordSize(), 256<<10))
	for l.Stats().Recycled < 2 {
		if _, err := l.Append(context.Background(), big); err != nil {
			return err
		}
		if err := w.err.Load(); err != nil {
			return *err
		}
	}
	return nil
}

func (w *walRecycled) checkpoint() {
	defer close(w.done)
	err := every(5*time.Millisecond, w.stop, func() error { return w.l.TruncateFront(w.l.DurableLSN()) })
	if err != nil {
		w.err.Store(&err)
	}
}

// every calls f each period until stop is closed or f fails.
func every(period time.Duration, stop <-chan struct{}, f func() error) error {
	t := time.NewTimer(period)
	defer t.Stop()
	for {
		select {
		case <-stop:
			return nil
		case <-t.C:
			if err := f(); err != nil {
				return err
			}
			t.Reset(period)
		}
	}
}

func (w *walRecycled) close() error {
	if w.l == nil {
		return nil
	}
	close(w.stop)
	<-w.done
	err := w.l.Close()
	if perr := w.err.Load(); perr != nil && err == nil {
		err = *perr
	}
	return errors.Join(err, os.RemoveAll(w.dir))
}

// --- the measurement ---

// result is one window of one implementation at one appender count.
type result struct {
	impl      string
	appenders int
	records   int
	elapsed   time.Duration
	p50, p99  time.Duration
	syncs     uint64        // fdatasyncs the implementation made
	flushes   int64         // flush requests the disk completed (-1: unknown)
	detail    string        // the log's own counters over the window, if it has any
	cpu       time.Duration // the process's user+system CPU time over the window
}

// cpuTime is the process's user+system CPU time so far: per record, it
// shows how close a window came to the machine's CPU limit.
func cpuTime() time.Duration {
	var ru unix.Rusage
	if err := unix.Getrusage(unix.RUSAGE_SELF, &ru); err != nil {
		return 0
	}
	return time.Duration(ru.Utime.Nano() + ru.Stime.Nano())
}

func (r result) perSec(n float64) float64 { return n / r.elapsed.Seconds() }

// run measures im with appenders closed-loop appenders for d: each appends
// a record and waits until it is durable before the next.
func run(root string, im impl, appenders int, d time.Duration) (result, error) {
	dir, err := os.MkdirTemp(root, im.name+"-")
	if err != nil {
		return result{}, err
	}
	defer os.RemoveAll(dir)
	lg, err := im.open(dir)
	if err != nil {
		return result{}, fmt.Errorf("%s: open: %w", im.name, err)
	}
	rec := make([]byte, recordSize)
	if err := lg.append(rec); err != nil { // the file exists, the first segment is ready
		lg.close()
		return result{}, fmt.Errorf("%s: %w", im.name, err)
	}
	disk := newFlushCounter(dir)
	quiesce(dir)
	lats := make([][]time.Duration, appenders)
	var stop atomic.Bool
	var wg sync.WaitGroup
	var failed atomic.Pointer[error]
	start := make(chan struct{})
	for g := range appenders {
		wg.Add(1)
		go func() {
			defer wg.Done()
			rec := make([]byte, recordSize)
			copy(rec, strconv.Itoa(g))
			l := make([]time.Duration, 0, 4096)
			<-start
			for !stop.Load() {
				t0 := time.Now()
				if err := lg.append(rec); err != nil {
					failed.Store(&err)
					break
				}
				l = append(l, time.Since(t0))
			}
			lats[g] = l
		}()
	}
	s0, f0, c0 := lg.syncs(), disk.read(), cpuTime()
	var st0 wal.Stats
	if s, ok := lg.(statser); ok {
		st0 = s.stats()
	}
	t0 := time.Now()
	close(start)
	time.Sleep(d)
	stop.Store(true)
	wg.Wait()
	r := result{impl: im.name, appenders: appenders, elapsed: time.Since(t0), cpu: cpuTime() - c0}
	r.syncs, r.flushes = lg.syncs()-s0, disk.since(f0)
	if s, ok := lg.(statser); ok {
		st := s.stats()
		r.detail = fmt.Sprintf("inline %d, linked %d, writes %d, settle misses %d, woken %d, rolls %d, recycled %d",
			st.InlineSyncs-st0.InlineSyncs, st.LinkedSyncs-st0.LinkedSyncs, st.Writes-st0.Writes, st.SettleMiss-st0.SettleMiss,
			st.Wakeups-st0.Wakeups, st.Rolls-st0.Rolls, st.Recycled-st0.Recycled)
	}
	cerr := lg.close()
	if err := failed.Load(); err != nil {
		return r, fmt.Errorf("%s: append: %w", im.name, *err)
	}
	if cerr != nil {
		return r, fmt.Errorf("%s: close: %w", im.name, cerr)
	}
	all := slices.Concat(lats...)
	slices.Sort(all)
	r.records = len(all)
	if len(all) > 0 {
		r.p50, r.p99 = all[len(all)/2], all[len(all)*99/100]
	}
	return r, nil
}

// flushCounter reads the flush requests completed by the disk under a
// directory from /sys/dev/block/MAJ:MIN/stat (field 16), the whole disk's
// for a partition.
type flushCounter struct{ path string }

func newFlushCounter(dir string) flushCounter {
	var st unix.Stat_t
	if err := unix.Stat(dir, &st); err != nil {
		return flushCounter{}
	}
	p := fmt.Sprintf("/sys/dev/block/%d:%d", unix.Major(st.Dev), unix.Minor(st.Dev))
	if _, err := os.Stat(filepath.Join(p, "partition")); err == nil {
		p = filepath.Join(p, "..")
	}
	return flushCounter{path: filepath.Join(p, "stat")}
}

func (c flushCounter) read() int64 {
	if c.path == "" {
		return -1
	}
	b, err := os.ReadFile(c.path)
	if err != nil {
		return -1
	}
	f := strings.Fields(string(b))
	if len(f) < 17 {
		return -1 // a kernel older than 5.5 does not count flushes
	}
	n, err := strconv.ParseInt(f[15], 10, 64)
	if err != nil {
		return -1
	}
	return n
}

func (c flushCounter) since(f0 int64) int64 {
	f1 := c.read()
	if f0 < 0 || f1 < 0 {
		return -1
	}
	return f1 - f0
}

// writeCache reports whether the disk under dir has a volatile write cache
// (an fdatasync then sends it a flush).
func writeCache(dir string) bool {
	c := newFlushCounter(dir)
	if c.path == "" {
		return false
	}
	b, err := os.ReadFile(filepath.Join(filepath.Dir(c.path), "queue", "write_cache"))
	return err == nil && strings.TrimSpace(string(b)) == "write back"
}

// quiesce lets the device finish what earlier windows left it (write-back,
// the discards of deleted files on a file system mounted with discard)
// before a window starts, so that no window pays for its predecessor.
func quiesce(dir string) {
	if fd, err := unix.Open(dir, unix.O_RDONLY|unix.O_DIRECTORY, 0); err == nil {
		unix.Syncfs(fd)
		unix.Close(fd)
	}
	time.Sleep(250 * time.Millisecond)
}
