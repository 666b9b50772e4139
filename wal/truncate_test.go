package wal

import (
	"bytes"
	"context"
	"errors"
	"fmt"
	"math"
	"os"
	"path/filepath"
	"slices"
	"sync"
	"sync/atomic"
	"testing"

	"github.com/ringwake/ringwake/internal/uringtest"
)

// Segments small enough to roll every few dozen records.
var tiny = Options{SegmentSize: 16 << 10, BufferSize: 4096}

func (l *Log) curIdx() uint64 {
	l.mu.Lock()
	defer l.mu.Unlock()
	return l.cur.idx
}

// segStart is the first LSN of segment idx, which must be in the log.
func (l *Log) segStart(t testing.TB, idx uint64) uint64 {
	t.Helper()
	l.mu.Lock()
	defer l.mu.Unlock()
	if idx < l.firstIdxLocked() || idx > l.cur.idx {
		t.Fatalf("segment %d is not in the log (%d..%d)", idx, l.firstIdxLocked(), l.cur.idx)
	}
	return l.starts[idx-l.firstIdxLocked()]
}

func (l *Log) spareIdxs() []uint64 {
	l.mu.Lock()
	defer l.mu.Unlock()
	var out []uint64
	for _, sp := range l.spares {
		out = append(out, sp.idx)
	}
	return out
}

// segFiles lists the segment indices in dir.
func segFiles(t testing.TB, dir string) []uint64 {
	t.Helper()
	ents, err := os.ReadDir(dir)
	if err != nil {
		t.Fatal(err)
	}
	var idxs []uint64
	for _, e := range ents {
		if idx, ok := parseSegName(e.Name()); ok {
			idxs = append(idxs, idx)
		}
	}
	slices.Sort(idxs)
	return idxs
}

// headerOf decodes the header block of segment file idx.
func headerOf(t testing.TB, dir string, idx uint64) (segHeader, []byte, error) {
	t.Helper()
	b, err := os.ReadFile(filepath.Join(dir, segName(idx)))
	if err != nil {
		t.Fatal(err)
	}
	h, err := decodeSegHeader(b[:blockSize])
	return h, b, err
}

// logWriter appends testRecords of one writer and remembers them by LSN.
type logWriter struct {
	t    testing.TB
	l    *Log
	g, n int
	recs map[uint64][]byte
	rec  func(g, n int) []byte
}

// reopen closes the writer's log and opens dir again; the writer appends
// to the new one, which it returns.
func (w *logWriter) reopen(dir string, o Options) *Log {
	w.t.Helper()
	if err := w.l.Close(); err != nil {
		w.t.Fatal(err)
	}
	w.l = openT(w.t, dir, o)
	return w.l
}

func newLogWriter(t testing.TB, l *Log, g int) *logWriter {
	return &logWriter{t: t, l: l, g: g, recs: map[uint64][]byte{}, rec: testRecord}
}

func (w *logWriter) append() uint64 {
	w.t.Helper()
	r := w.rec(w.g, w.n)
	w.n++
	lsn, err := w.l.Append(context.Background(), r)
	if err != nil {
		w.t.Fatal(err)
	}
	w.recs[lsn] = r
	return lsn
}

// until appends until segment idx is the current one.
func (w *logWriter) until(idx uint64) {
	w.t.Helper()
	for w.l.curIdx() < idx {
		w.append()
	}
}

// expectFrom replays l and checks it returns exactly the records of w from
// LSN from through the durable LSN, in order.
func (w *logWriter) expectFrom(l *Log, from uint64) {
	w.t.Helper()
	recs := replayAll(w.t, l)
	want := l.DurableLSN() - from + 1
	if uint64(len(recs)) != want || (len(recs) > 0 && recs[0].lsn != from) {
		first := uint64(0)
		if len(recs) > 0 {
			first = recs[0].lsn
		}
		w.t.Fatalf("replayed %d records from LSN %d; want %d from %d", len(recs), first, want, from)
	}
	for _, r := range recs {
		if !bytes.Equal(r.rec, w.recs[r.lsn]) {
			w.t.Fatalf("LSN %d: replayed record differs from the appended one", r.lsn)
		}
	}
}

// TestTruncateFrontRecycles drops three segments: the two oldest become
// spares under the next free indices, the third is deleted; Replay starts at
// the segment holding the truncation point; the log rolls into the spares
// without zero-filling them, and all of it survives a reopen.
func TestTruncateFrontRecycles(t *testing.T) {
	for name, o := range modes(tiny) {
		t.Run(name, func(t *testing.T) {
			dir := t.TempDir()
			l := openT(t, dir, o)
			w := newLogWriter(t, l, 1)
			w.until(6) // segments 1..6, next 7
			from := l.segStart(t, 4)
			lsn := (from + l.segStart(t, 5)) / 2
			if err := l.TruncateFront(lsn); err != nil {
				t.Fatal(err)
			}
			if got, want := segFiles(t, dir), []uint64{4, 5, 6, 7, 8, 9}; !slices.Equal(got, want) {
				t.Fatalf("segment files %v, want %v", got, want)
			}
			for idx, old := range map[uint64]uint64{8: 1, 9: 2} {
				if h, _, err := headerOf(t, dir, idx); err != nil || h.idx != old {
					t.Fatalf("spare %d: header %+v, %v; want segment %d's", idx, h, err, old)
				}
			}
			w.expectFrom(l, from)

			// Rolling into 7 (created and zero-filled) makes 8, a spare, the
			// next segment: no zero slice goes to it.
			w.until(7)
			slices0 := l.stats.zeroSlices.Load()
			if slices0 == 0 {
				t.Fatal("no zero slices while a created segment was next")
			}
			w.until(8)
			if n := l.stats.zeroSlices.Load(); n != slices0 {
				t.Fatalf("%d zero slices sent to a recycled next segment", n-slices0)
			}
			w.until(10)
			if r := l.Stats().Recycled; r != 2 {
				t.Fatalf("Recycled %d, want 2", r)
			}
			w.expectFrom(l, from)
			l = w.reopen(dir, o)
			w.expectFrom(l, from)
			last := l.DurableLSN()
			if lsn := w.append(); lsn != last+1 {
				t.Fatalf("Append after reopen: LSN %d, want %d", lsn, last+1)
			}
			if err := l.Close(); err != nil {
				t.Fatal(err)
			}
		})
	}
}

// TestRecycledStaleRecordsNeverReturned reuses a segment full of records of
// the same size as the new ones, so each stale record sits exactly where a
// new record is due; a few new records go into it, and after a reopen Replay
// returns exactly the records appended, not one stale one.
func TestRecycledStaleRecordsNeverReturned(t *testing.T) {
	for name, o := range modes(tiny) {
		t.Run(name, func(t *testing.T) {
			dir := t.TempDir()
			l := openT(t, dir, o)
			w := newLogWriter(t, l, 2)
			w.rec = func(g, n int) []byte { return bytes.Repeat([]byte{byte(g), byte(n)}, 100) }
			w.until(3) // 1 and 2 full, next 4
			from := l.segStart(t, 3)
			if err := l.TruncateFront(from); err != nil {
				t.Fatal(err)
			}
			if got := l.spareIdxs(); !slices.Equal(got, []uint64{5, 6}) {
				t.Fatalf("spares %v, want [5 6]", got)
			}
			w.until(5) // segment 1's file, renamed to 5
			for l.DurableLSN()+1-l.segStart(t, 5) < 3 {
				w.append()
			}
			n := l.DurableLSN() + 1 - l.segStart(t, 5)
			if err := l.Close(); err != nil {
				t.Fatal(err)
			}
			// The stale record after the new ones is still there: only its
			// LSN keeps it out.
			h, img, err := headerOf(t, dir, 5)
			if err != nil || h.idx != 5 {
				t.Fatalf("segment 5 header %+v, %v", h, err)
			}
			stale := int64(blockSize) + int64(n)*(recHdrSize+200)
			if l.Direct() {
				// The last block was padded with zeros: stale bytes follow it.
				if stale = alignUp(stale); allZero(img[stale : stale+recHdrSize+200]) {
					t.Fatalf("no stale bytes at offset %d of the recycled segment", stale)
				}
			} else if typ := img[stale+7]; typ != recData {
				t.Fatalf("no stale record at offset %d of the recycled segment (type %d)", stale, typ)
			}
			l = openT(t, dir, o)
			w.l = l
			w.expectFrom(l, from)
			w.append()
			if err := l.Close(); err != nil {
				t.Fatal(err)
			}
			l = openT(t, dir, o)
			defer l.Close()
			w.l = l
			w.expectFrom(l, from)
		})
	}
}

// TestTruncateFrontSparesOnReopen: spares left on disk, never written in
// their new place, stay spares after a reopen; one the log had taken (its
// header zeroed, so it may hold records of its new life) is deleted; one
// whose size is not the log's is deleted; and a crash between two renames
// (played by renaming by hand) leaves a log that starts at the next segment.
func TestTruncateFrontSparesOnReopen(t *testing.T) {
	for name, o := range modes(tiny) {
		t.Run(name, func(t *testing.T) {
			dir := t.TempDir()
			l := openT(t, dir, o)
			w := newLogWriter(t, l, 3)
			w.until(4) // next 5
			if err := l.TruncateFront(l.segStart(t, 3)); err != nil {
				t.Fatal(err)
			}
			l = w.reopen(dir, o)
			if got := l.spareIdxs(); !slices.Equal(got, []uint64{6, 7}) {
				t.Fatalf("spares after reopen %v, want [6 7]", got)
			}
			from := l.segStart(t, 3)
			w.expectFrom(l, from)

			// Roll into 5: 6 becomes the next segment, and its header block
			// is zeroed before the log writes to it.
			w.until(5)
			waitFor(t, "the next segment ready", func() bool {
				l.mu.Lock()
				defer l.mu.Unlock()
				return l.next.ready
			})
			if _, img, _ := headerOf(t, dir, 6); !allZero(img[:blockSize]) {
				t.Fatal("a reused spare's header block was not zeroed before use")
			}
			l = w.reopen(dir, o)
			if got := l.spareIdxs(); !slices.Equal(got, []uint64{7}) {
				t.Fatalf("spares after reopen %v, want [7] (6 was taken)", got)
			}
			w.until(8)
			if r := l.Stats().Recycled; r != 1 {
				t.Fatalf("Recycled %d, want 1", r)
			}
			w.expectFrom(l, from)
			if err := l.Close(); err != nil {
				t.Fatal(err)
			}

			// A crash right after TruncateFront renamed segment 3: the log
			// starts at 4, the spare is kept.
			if err := os.Rename(filepath.Join(dir, segName(3)), filepath.Join(dir, segName(10))); err != nil {
				t.Fatal(err)
			}
			l = openT(t, dir, o)
			w.l = l
			if got := l.spareIdxs(); !slices.Equal(got, []uint64{10}) {
				t.Fatalf("spares %v, want [10]", got)
			}
			from = l.segStart(t, 4)
			w.expectFrom(l, from)
			if err := l.Close(); err != nil {
				t.Fatal(err)
			}

			// Another segment size: the spare does not fit and goes.
			o2 := o
			o2.SegmentSize = 32 << 10
			l = openT(t, dir, o2)
			w.l = l
			if got := l.spareIdxs(); len(got) != 0 {
				t.Fatalf("spares %v of another size kept", got)
			}
			if _, err := os.Stat(filepath.Join(dir, segName(10))); !errors.Is(err, os.ErrNotExist) {
				t.Fatalf("spare of another size still on disk: %v", err)
			}
			old := l.curIdx() // 4..old-1 are 16 KiB segments
			w.until(old + 3)
			if err := l.TruncateFront(l.segStart(t, l.curIdx())); err != nil {
				t.Fatal(err)
			}
			// Only the 32 KiB segments became spares; the others were deleted.
			sp := l.spareIdxs()
			if len(sp) == 0 {
				t.Fatal("no spares")
			}
			for _, idx := range sp {
				if h, _, err := headerOf(t, dir, idx); err != nil || h.size != o2.SegmentSize {
					t.Fatalf("spare %d holds segment %+v (%v): a 16 KiB one", idx, h, err)
				}
			}
			for _, idx := range segFiles(t, dir) {
				if h, _, err := headerOf(t, dir, idx); err == nil && h.size != o2.SegmentSize {
					t.Fatalf("a %d-byte segment is still on disk as %d", h.size, idx)
				}
			}
			w.expectFrom(l, l.segStart(t, l.curIdx()))
			if err := l.Close(); err != nil {
				t.Fatal(err)
			}
		})
	}
}

// TestTruncateFrontNoSpares: with MaxSpareSegments < 0 dropped segments are
// deleted.
func TestTruncateFrontNoSpares(t *testing.T) {
	o := tiny
	o.MaxSpareSegments = -1
	dir := t.TempDir()
	l := openT(t, dir, o)
	defer l.Close()
	w := newLogWriter(t, l, 4)
	w.until(5)
	from := l.segStart(t, 4)
	if err := l.TruncateFront(from); err != nil {
		t.Fatal(err)
	}
	if got, want := segFiles(t, dir), []uint64{4, 5, 6}; !slices.Equal(got, want) {
		t.Fatalf("segment files %v, want %v", got, want)
	}
	w.until(8)
	if r := l.Stats().Recycled; r != 0 {
		t.Fatalf("Recycled %d without spares", r)
	}
	w.expectFrom(l, from)
}

func TestTruncateFrontBadLSN(t *testing.T) {
	dir := t.TempDir()
	l := openT(t, dir, tiny)
	w := newLogWriter(t, l, 5)
	w.until(3)
	d := l.DurableLSN()
	if err := l.TruncateFront(d + 2); err == nil {
		t.Fatalf("TruncateFront(%d) with DurableLSN %d accepted", d+2, d)
	}
	if err := l.TruncateFront(math.MaxUint64); err == nil {
		t.Fatal("TruncateFront(MaxUint64) accepted")
	}
	for _, lsn := range []uint64{0, 1} {
		if err := l.TruncateFront(lsn); err != nil {
			t.Fatalf("TruncateFront(%d): %v", lsn, err)
		}
	}
	if got := segFiles(t, dir); got[0] != 1 {
		t.Fatalf("a no-op truncation removed segments: %v", got)
	}
	// Up to DurableLSN()+1: everything but the current segment goes.
	if err := l.TruncateFront(d + 1); err != nil {
		t.Fatal(err)
	}
	if got := segFiles(t, dir); got[0] != 3 {
		t.Fatalf("segment files %v: want 3 first", got)
	}
	w.expectFrom(l, l.segStart(t, 3))
	if err := l.Close(); err != nil {
		t.Fatal(err)
	}
	if err := l.TruncateFront(d); !errors.Is(err, ErrClosed) {
		t.Fatalf("TruncateFront after Close: %v", err)
	}
}

// TestTruncateFrontConcurrent truncates and replays while 8 goroutines
// append across many rolls; afterwards, and after a reopen, every record
// from the last truncation point on is there, and the log did recycle.
func TestTruncateFrontConcurrent(t *testing.T) {
	for name, o := range modes(tiny) {
		t.Run(name, func(t *testing.T) {
			dir := t.TempDir()
			l := openT(t, dir, o)
			stop := make(chan struct{})
			var truncated atomic.Uint64
			var wg sync.WaitGroup
			wg.Add(2)
			go func() {
				defer wg.Done()
				for {
					select {
					case <-stop:
						return
					default:
					}
					if d := l.DurableLSN(); d > 40 {
						if err := l.TruncateFront(d - 40); err != nil {
							t.Errorf("TruncateFront: %v", err)
							return
						}
						truncated.Store(d - 40)
					}
				}
			}()
			go func() {
				defer wg.Done()
				for {
					select {
					case <-stop:
						return
					default:
					}
					var prev uint64
					err := l.Replay(func(lsn uint64, rec []byte) error {
						if prev != 0 && lsn != prev+1 {
							return fmt.Errorf("LSN %d after %d", lsn, prev)
						}
						prev = lsn
						_, _, err := checkTestRecord(rec)
						return err
					})
					if err != nil {
						t.Errorf("Replay: %v", err)
						return
					}
				}
			}()
			got := appendConcurrently(t, l, 8, 150)
			close(stop)
			wg.Wait()
			if l.Stats().Recycled == 0 {
				t.Fatal("no segment was recycled")
			}
			from := truncated.Load()
			check := func(l *Log) {
				t.Helper()
				recs := replayAll(t, l)
				if len(recs) == 0 || recs[0].lsn > from || recs[len(recs)-1].lsn != 8*150 {
					t.Fatalf("replayed %d records; want LSNs from at most %d to %d", len(recs), from, 8*150)
				}
				for _, r := range recs {
					if !bytes.Equal(r.rec, got[r.lsn]) {
						t.Fatalf("LSN %d differs", r.lsn)
					}
				}
			}
			check(l)
			if err := l.Close(); err != nil {
				t.Fatal(err)
			}
			l = openT(t, dir, o)
			defer l.Close()
			check(l)
		})
	}
}

// TestTruncateFrontWaitsForReplay: a TruncateFront started while a Replay
// runs moves nothing until the Replay returns; a Replay inside the running
// one's fn still runs (it does not wait for the TruncateFront, which waits
// for it); a Replay after the TruncateFront starts at the new front.
func TestTruncateFrontWaitsForReplay(t *testing.T) {
	dir := t.TempDir()
	l := openT(t, dir, tiny)
	defer l.Close()
	w := newLogWriter(t, l, 6)
	w.until(4)
	from := l.segStart(t, 3)
	truncated := make(chan error, 1)
	calls := 0
	err := l.Replay(func(lsn uint64, rec []byte) error {
		if calls++; calls > 1 {
			return nil
		}
		go func() { truncated <- l.TruncateFront(from) }()
		waitFor(t, "TruncateFront waiting", func() bool {
			l.mu.Lock()
			defer l.mu.Unlock()
			return l.truncating
		})
		n := 0
		if err := l.Replay(func(uint64, []byte) error { n++; return nil }); err != nil || uint64(n) != l.DurableLSN() {
			t.Errorf("Replay inside Replay: %d records, %v; want %d", n, err, l.DurableLSN())
		}
		if got := segFiles(t, dir); got[0] != 1 {
			t.Errorf("segments %v moved while a Replay ran", got)
		}
		return nil
	})
	if err != nil || uint64(calls) != l.DurableLSN() {
		t.Fatalf("Replay: %d records, %v", calls, err)
	}
	if err := <-truncated; err != nil {
		t.Fatal(err)
	}
	if got := segFiles(t, dir); got[0] != 3 {
		t.Fatalf("segment files %v after TruncateFront: want 3 first", got)
	}
	w.expectFrom(l, from)
}

// wouldRoll reports whether a record of n bytes would roll the log into a
// new segment.
func (l *Log) wouldRoll(n int) bool {
	l.mu.Lock()
	defer l.mu.Unlock()
	used := l.tail.off + int64(l.tail.preLen)
	if b := l.fill; b != nil {
		used = b.off + int64(b.n)
	}
	return used+int64(2*recHdrSize+n) > l.cur.size
}

func (l *Log) first() uint64 {
	l.mu.Lock()
	defer l.mu.Unlock()
	return l.firstIdxLocked()
}

// TestTruncateFrontKeepsHeaderlessSuccessor: right after a roll the new
// current segment holds no durable record, so its header may not be on
// disk. TruncateFront(DurableLSN()+1) may not drop the segment before it
// then: a crash would leave a log whose only segment has no header, and
// its LSNs would start over at 1. Once the new segment's first record is
// durable, the old one goes.
func TestTruncateFrontKeepsHeaderlessSuccessor(t *testing.T) {
	for name, o := range modes(tiny) {
		t.Run(name, func(t *testing.T) {
			dir := t.TempDir()
			l := openT(t, dir, o)
			defer l.Close()
			w := newLogWriter(t, l, 6)
			w.until(3)
			big := bytes.Repeat([]byte{0xb1}, l.MaxRecordSize())
			for !l.wouldRoll(len(big)) {
				w.append()
			}
			old := l.curIdx()
			l.setHold(true)
			appended := make(chan error, 1)
			go func() {
				_, err := l.Append(context.Background(), big)
				appended <- err
			}()
			waitFor(t, "the roll", func() bool { return l.curIdx() == old+1 })
			d := l.DurableLSN()
			if got := l.segStart(t, old+1); got != d+1 {
				t.Fatalf("new segment starts at LSN %d, durable LSN %d", got, d)
			}
			truncated := make(chan error, 1)
			go func() { truncated <- l.TruncateFront(d + 1) }()
			var err error
			waitFor(t, "TruncateFront to return while the new segment has no durable record", func() bool {
				select {
				case err = <-truncated:
					return true
				default:
					return false
				}
			})
			if err != nil {
				t.Fatal(err)
			}
			if got := l.first(); got != old {
				t.Fatalf("first segment %d; want %d, the one before the header-less current segment", got, old)
			}
			l.setHold(false)
			if err := <-appended; err != nil {
				t.Fatal(err)
			}
			if err := l.TruncateFront(l.DurableLSN()); err != nil {
				t.Fatal(err)
			}
			if got := l.first(); got != old+1 {
				t.Fatalf("first segment %d after the new one's first record is durable; want %d", got, old+1)
			}
			next := l.DurableLSN() + 1
			if err := l.Close(); err != nil {
				t.Fatal(err)
			}
			l = openT(t, dir, o)
			defer l.Close()
			lsn, err := l.Append(context.Background(), []byte("after reopen"))
			if err != nil || lsn != next {
				t.Fatalf("Append after reopen: LSN %d, %v; want LSN %d", lsn, err, next)
			}
		})
	}
}

// TestOpenRefusesDamagedFirstSegment: a first segment whose header does not
// verify is taken for a new log's unfinished first write only when it is
// segment 1 and no complete segment follows it. Otherwise (after a
// truncation, or with segment 2 intact) Open fails with ErrCorrupt rather
// than start the log over at LSN 1 and delete what follows.
func TestOpenRefusesDamagedFirstSegment(t *testing.T) {
	damage := func(t *testing.T, dir string, idx uint64) {
		t.Helper()
		path := filepath.Join(dir, segName(idx))
		f, err := os.OpenFile(path, os.O_RDWR, 0)
		if err != nil {
			t.Fatal(err)
		}
		defer f.Close()
		if _, err := f.WriteAt([]byte("garbage!"), 0); err != nil {
			t.Fatal(err)
		}
	}
	refused := func(t *testing.T, dir, what string) {
		t.Helper()
		uringtest.Require(t)
		if l, err := Open(dir, tiny); !errors.Is(err, ErrCorrupt) {
			if err == nil {
				l.Close()
			}
			t.Fatalf("Open with %s: %v; want ErrCorrupt", what, err)
		}
	}
	t.Run("truncated", func(t *testing.T) {
		dir := t.TempDir()
		l := openT(t, dir, tiny)
		w := newLogWriter(t, l, 7)
		w.until(5)
		if err := l.TruncateFront(l.segStart(t, 3)); err != nil {
			t.Fatal(err)
		}
		if err := l.Close(); err != nil {
			t.Fatal(err)
		}
		damage(t, dir, 3)
		refused(t, dir, "the first kept segment's header damaged")
		if got := segFiles(t, dir); !slices.Contains(got, 4) {
			t.Fatalf("segment files %v after the refused Open: segment 4 is gone", got)
		}
	})
	t.Run("segment 2 intact", func(t *testing.T) {
		dir := t.TempDir()
		l := openT(t, dir, tiny)
		w := newLogWriter(t, l, 8)
		w.until(3)
		if err := l.Close(); err != nil {
			t.Fatal(err)
		}
		damage(t, dir, 1)
		refused(t, dir, "segment 1's header damaged and segment 2 intact")
	})
}
