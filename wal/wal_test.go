package wal

import (
	"bytes"
	"context"
	"encoding/binary"
	"errors"
	"fmt"
	"hash/crc32"
	"runtime"
	"sync"
	"testing"
	"time"

	"github.com/ringwake/ringwake/internal/uringtest"
)

// Small segments and buffers, so tests roll segments and seal buffers often
// and zero-fill little.
var small = Options{SegmentSize: 64 << 10, BufferSize: 8 << 10}

func modes(o Options) map[string]Options {
	direct, buffered := o, o
	direct.Direct, buffered.Direct = DirectAuto, DirectOff
	return map[string]Options{"direct": direct, "buffered": buffered}
}

func openT(t testing.TB, dir string, o Options) *Log {
	t.Helper()
	uringtest.Require(t)
	l, err := Open(dir, o)
	if err != nil {
		t.Fatalf("Open(%s): %v", dir, err)
	}
	return l
}

// testRecord is self-describing: writer, sequence number, a length that
// varies with them, and a checksum, so any replayed record can be checked
// for being exactly what some writer appended.
func testRecord(g, n int) []byte {
	size := 16 + (g*131+n*37)%700
	r := make([]byte, size)
	binary.LittleEndian.PutUint32(r[0:], uint32(g))
	binary.LittleEndian.PutUint32(r[4:], uint32(n))
	for i := 12; i < size; i++ {
		r[i] = byte(g*7 + n*13 + i)
	}
	binary.LittleEndian.PutUint32(r[8:], crc32.ChecksumIEEE(r[12:]))
	return r
}

// checkTestRecord returns the writer and sequence number of r, or an error
// if r is not exactly a testRecord.
func checkTestRecord(r []byte) (g, n int, err error) {
	if len(r) < 12 {
		return 0, 0, fmt.Errorf("record of %d bytes", len(r))
	}
	g, n = int(binary.LittleEndian.Uint32(r[0:])), int(binary.LittleEndian.Uint32(r[4:]))
	if !bytes.Equal(r, testRecord(g, n)) {
		return g, n, fmt.Errorf("record (%d, %d) differs from what was appended", g, n)
	}
	return g, n, nil
}

type replayed struct {
	lsn uint64
	rec []byte
}

func replayAll(t testing.TB, l *Log) []replayed {
	t.Helper()
	var out []replayed
	err := l.Replay(func(lsn uint64, rec []byte) error {
		if len(out) > 0 && lsn != out[len(out)-1].lsn+1 {
			return fmt.Errorf("LSN %d after %d", lsn, out[len(out)-1].lsn)
		}
		out = append(out, replayed{lsn, bytes.Clone(rec)})
		return nil
	})
	if err != nil {
		t.Fatalf("Replay: %v", err)
	}
	return out
}

// appendConcurrently appends n records from each of g goroutines and returns
// the record each LSN was given.
func appendConcurrently(t testing.TB, l *Log, writers, n int) map[uint64][]byte {
	t.Helper()
	var mu sync.Mutex
	got := map[uint64][]byte{}
	var wg sync.WaitGroup
	for g := range writers {
		wg.Add(1)
		go func() {
			defer wg.Done()
			for i := range n {
				r := testRecord(g, i)
				lsn, err := l.Append(context.Background(), r)
				if err != nil {
					t.Errorf("Append: %v", err)
					return
				}
				mu.Lock()
				if _, dup := got[lsn]; dup {
					t.Errorf("LSN %d given twice", lsn)
				}
				got[lsn] = r
				mu.Unlock()
			}
		}()
	}
	wg.Wait()
	return got
}

func TestAppendReplayReopen(t *testing.T) {
	for name, o := range modes(small) {
		t.Run(name, func(t *testing.T) {
			dir := t.TempDir()
			l := openT(t, dir, o)
			if name == "direct" && !l.Direct() {
				t.Logf("the file system under %s refuses O_DIRECT: this ran buffered", dir)
			}
			const writers, each = 8, 150
			got := appendConcurrently(t, l, writers, each)
			if len(got) != writers*each {
				t.Fatalf("%d distinct LSNs for %d appends", len(got), writers*each)
			}
			if d := l.DurableLSN(); d < writers*each {
				t.Fatalf("DurableLSN %d after %d acknowledged appends", d, writers*each)
			}
			st := l.Stats()
			if st.Rolls == 0 || st.Syncs == 0 || st.Appends != writers*each {
				t.Fatalf("stats %+v: want rolls, syncs and %d appends", st, writers*each)
			}
			check := func(l *Log) {
				t.Helper()
				recs := replayAll(t, l)
				if len(recs) != writers*each {
					t.Fatalf("replayed %d records, want %d", len(recs), writers*each)
				}
				for i, r := range recs {
					if r.lsn != uint64(i+1) {
						t.Fatalf("record %d has LSN %d", i, r.lsn)
					}
					if !bytes.Equal(r.rec, got[r.lsn]) {
						t.Fatalf("LSN %d: replayed record differs from the appended one", r.lsn)
					}
				}
			}
			check(l)
			if err := l.Close(); err != nil {
				t.Fatal(err)
			}
			l = openT(t, dir, o)
			check(l)
			lsn, err := l.Append(context.Background(), []byte("after reopen"))
			if err != nil || lsn != writers*each+1 {
				t.Fatalf("Append after reopen: LSN %d, %v; want %d", lsn, err, writers*each+1)
			}
			if err := l.Close(); err != nil {
				t.Fatal(err)
			}
		})
	}
}

func TestReopenWithoutAppends(t *testing.T) {
	dir := t.TempDir()
	for i := 0; i < 3; i++ {
		l := openT(t, dir, small)
		if n := len(replayAll(t, l)); n != 0 {
			t.Fatalf("empty log replayed %d records", n)
		}
		if err := l.Close(); err != nil {
			t.Fatal(err)
		}
	}
	l := openT(t, dir, small)
	defer l.Close()
	if lsn, err := l.Append(context.Background(), nil); err != nil || lsn != 1 {
		t.Fatalf("first Append: LSN %d, %v", lsn, err)
	}
	recs := replayAll(t, l)
	if len(recs) != 1 || len(recs[0].rec) != 0 {
		t.Fatalf("replayed %v, want one empty record", recs)
	}
}

// TestRollBoundaries closes and reopens the log right after every roll, so
// the reopened log sometimes ends exactly with a segment's recEnd.
func TestRollBoundaries(t *testing.T) {
	for name, o := range modes(Options{SegmentSize: 16 << 10, BufferSize: 4096}) {
		t.Run(name, func(t *testing.T) {
			dir := t.TempDir()
			var want [][]byte
			for round := 0; round < 6; round++ {
				l := openT(t, dir, o)
				rolls := l.Stats().Rolls
				for i := 0; l.Stats().Rolls == rolls; i++ {
					r := testRecord(round, i)
					lsn, err := l.Append(context.Background(), r)
					if err != nil {
						t.Fatal(err)
					}
					want = append(want, r)
					if lsn != uint64(len(want)) {
						t.Fatalf("LSN %d, want %d", lsn, len(want))
					}
				}
				if err := l.Close(); err != nil {
					t.Fatal(err)
				}
			}
			l := openT(t, dir, o)
			defer l.Close()
			recs := replayAll(t, l)
			if len(recs) != len(want) {
				t.Fatalf("replayed %d records, want %d", len(recs), len(want))
			}
			for i := range recs {
				if !bytes.Equal(recs[i].rec, want[i]) {
					t.Fatalf("LSN %d differs", recs[i].lsn)
				}
			}
		})
	}
}

func TestReplayWhileAppending(t *testing.T) {
	l := openT(t, t.TempDir(), small)
	defer l.Close()
	ctx, cancel := context.WithCancel(context.Background())
	var wg sync.WaitGroup
	for g := range 8 {
		wg.Add(1)
		go func() {
			defer wg.Done()
			for i := 0; ctx.Err() == nil; i++ {
				if _, err := l.Append(context.Background(), testRecord(g, i)); err != nil {
					t.Errorf("Append: %v", err)
					return
				}
			}
		}()
	}
	for round := 0; round < 20; round++ {
		waitFor(t, "more records durable", func() bool { return l.DurableLSN() >= uint64(round+1)*50 })
		before := l.DurableLSN()
		recs := replayAll(t, l)
		if uint64(len(recs)) < before {
			t.Fatalf("replay returned %d records, %d were durable before it started", len(recs), before)
		}
		for _, r := range recs {
			if _, _, err := checkTestRecord(r.rec); err != nil {
				t.Fatalf("LSN %d: %v", r.lsn, err)
			}
		}
	}
	cancel()
	wg.Wait()
}

// waitFor polls cond: tests use it to reach a state, never to time anything.
func waitFor(t testing.TB, what string, cond func() bool) {
	t.Helper()
	deadline := time.Now().Add(30 * time.Second)
	for !cond() {
		if time.Now().After(deadline) {
			t.Fatalf("gave up waiting for %s", what)
		}
		runtime.Gosched()
		time.Sleep(time.Millisecond)
	}
}

func (l *Log) setHold(hold bool) {
	l.mu.Lock()
	l.hold = hold
	if hold {
		l.mu.Unlock()
		return
	}
	l.finishLocked(wakes{})
}

// TestGroupCommitOneBroadcast holds the pipeline while 64 appenders queue,
// then lets it go: one write linked to one fdatasync covers them all, and
// its completion wakes all 64 with a single broadcast.
func TestGroupCommitOneBroadcast(t *testing.T) {
	for name, o := range modes(Options{SegmentSize: 1 << 20}) {
		// The broadcast wakes the appenders' generation at once: each of
		// them must get its wake-up, in a crowd and in one larger than a
		// Go run queue holds.
		for _, n := range []int{64, 320} {
			t.Run(fmt.Sprintf("%s/%d", name, n), func(t *testing.T) { groupCommitOneBroadcast(t, o, n) })
		}
	}
}

func groupCommitOneBroadcast(t *testing.T, o Options, n int) {
	l := openT(t, t.TempDir(), o)
	defer l.Close()
	l.setHold(true)
	errs := make(chan error, n)
	for g := range n {
		go func() {
			_, err := l.Append(context.Background(), testRecord(g, 0))
			errs <- err
		}()
	}
	waitFor(t, "the appenders queued", func() bool { return l.Stats().Appends == uint64(n) })
	if st := l.Stats(); st.Writes != 0 || st.Syncs != 0 || st.Appends != uint64(n) {
		t.Fatalf("while held: %+v", st)
	}
	l.setHold(false)
	for i := range n {
		select {
		case err := <-errs:
			if err != nil {
				t.Fatal(err)
			}
		case <-time.After(30 * time.Second):
			t.Fatalf("%d of %d appenders returned: a wake-up was lost", i, n)
		}
	}
	st := l.Stats()
	if st.Writes != 1 || st.Syncs != 1 || st.LinkedSyncs != 1 || st.Wakeups != uint64(n) || st.DurableLSN != uint64(n) {
		t.Fatalf("stats %+v: want 1 write linked to 1 fdatasync waking %d", st, n)
	}
	if c := l.stats.collected.Load(); c != 1 {
		t.Fatalf("%d broadcasts woke generations, want 1", c)
	}
	if q := l.commitQ.Len(); q != 0 {
		t.Fatalf("%d generations left on the commit queue", q)
	}
}

// TestFailureWakesOpenGeneration: appenders whose records no write has
// taken yet wait in the open generation, which is on no queue; a failure
// then must still wake them all, with the error, rather than leave them
// waiting for a commit that never comes.
func TestFailureWakesOpenGeneration(t *testing.T) {
	l := openT(t, t.TempDir(), small)
	l.setHold(true)
	const n = 8
	errs := make(chan error, n)
	for g := range n {
		go func() {
			_, err := l.Append(context.Background(), testRecord(g, 0))
			errs <- err
		}()
	}
	waitFor(t, "the appenders queued", func() bool { return l.Stats().Appends == n })
	injected := errors.New("injected failure")
	l.mu.Lock()
	l.failLocked(injected)
	l.finishLocked(wakes{})
	for i := range n {
		select {
		case err := <-errs:
			if !errors.Is(err, injected) {
				t.Fatalf("Append: %v, want the injected failure", err)
			}
		case <-time.After(30 * time.Second):
			t.Fatalf("%d of %d appenders returned: the open generation was not woken", i, n)
		}
	}
	if err := l.Close(); !errors.Is(err, injected) {
		t.Fatalf("Close: %v, want the injected failure", err)
	}
}

// TestSpaceWaitersExclusive fills every buffer while I/O is held: later
// appenders sleep for space on the exclusive queue, and all complete, in
// order, once buffers free up.
func TestSpaceWaitersExclusive(t *testing.T) {
	for name, o := range modes(Options{SegmentSize: 1 << 20, BufferSize: 4096, Buffers: 2}) {
		t.Run(name, func(t *testing.T) {
			l := openT(t, t.TempDir(), o)
			defer l.Close()
			l.setHold(true)
			// A few 1500-byte records fill the two 4 KiB buffers.
			rec := func(i int) []byte { return bytes.Repeat([]byte{byte(i)}, 1500) }
			const n = 12
			type res struct {
				i   int
				lsn uint64
				err error
			}
			results := make(chan res, n)
			for i := range n {
				go func() {
					lsn, err := l.Append(context.Background(), rec(i))
					results <- res{i, lsn, err}
				}()
			}
			asleep := 0
			waitFor(t, "every appender queued or asleep for space", func() bool {
				asleep = l.spaceQ.Len()
				return asleep > 0 && int(l.Stats().Appends)+asleep == n
			})
			if st := l.Stats(); st.SpaceWaits != uint64(asleep) || st.Writes != 0 {
				t.Fatalf("while held, %d asleep: %+v", asleep, st)
			}
			// A canceled space waiter leaves without appending.
			ctx, cancel := context.WithCancel(context.Background())
			late := make(chan error, 1)
			go func() {
				_, err := l.Append(ctx, rec(99))
				late <- err
			}()
			waitFor(t, "the late appender asleep", func() bool { return l.spaceQ.Len() == asleep+1 })
			cancel()
			if err := <-late; !errors.Is(err, context.Canceled) {
				t.Fatalf("canceled space waiter: %v", err)
			}
			l.setHold(false)
			byLSN := map[uint64]int{}
			for range n {
				r := <-results
				if r.err != nil {
					t.Fatal(r.err)
				}
				byLSN[r.lsn] = r.i
			}
			recs := replayAll(t, l)
			if len(recs) != n {
				t.Fatalf("replayed %d records, want %d (the canceled one must not be there)", len(recs), n)
			}
			for _, r := range recs {
				if !bytes.Equal(r.rec, rec(byLSN[r.lsn])) {
					t.Fatalf("LSN %d holds the wrong record", r.lsn)
				}
			}
		})
	}
}

func TestAppendContextEndsWhileWaiting(t *testing.T) {
	l := openT(t, t.TempDir(), small)
	l.setHold(true)
	ctx, cancel := context.WithCancel(context.Background())
	done := make(chan error, 1)
	var lsn uint64
	go func() {
		var err error
		lsn, err = l.Append(ctx, []byte("queued"))
		done <- err
	}()
	waitFor(t, "the append queued", func() bool { return l.Stats().Appends == 1 })
	cancel()
	if err := <-done; !errors.Is(err, context.Canceled) || lsn != 1 {
		t.Fatalf("Append: LSN %d, %v; want 1 and context.Canceled", lsn, err)
	}
	l.setHold(false)
	if err := l.Close(); err != nil {
		t.Fatal(err)
	}
	// The record was queued: Close wrote it.
	l = openT(t, l.dir, small)
	defer l.Close()
	if recs := replayAll(t, l); len(recs) != 1 || string(recs[0].rec) != "queued" {
		t.Fatalf("replayed %v", recs)
	}
}

func TestAppendBadInput(t *testing.T) {
	l := openT(t, t.TempDir(), Options{SegmentSize: 1 << 20, BufferSize: 4096})
	defer l.Close()
	max := l.MaxRecordSize()
	if max != 4096-2*recHdrSize {
		t.Fatalf("MaxRecordSize %d", max)
	}
	if _, err := l.Append(context.Background(), make([]byte, max+1)); !errors.Is(err, ErrTooLarge) {
		t.Fatalf("oversized record: %v", err)
	}
	var nilCtx context.Context // a nil context must be refused, not panic
	if _, err := l.Append(nilCtx, []byte("x")); err == nil {
		t.Fatal("nil context accepted")
	}
	ctx, cancel := context.WithCancel(context.Background())
	cancel()
	if _, err := l.Append(ctx, []byte("x")); !errors.Is(err, context.Canceled) {
		t.Fatalf("canceled context: %v", err)
	}
	if lsn, err := l.Append(context.Background(), make([]byte, max)); err != nil || lsn != 1 {
		t.Fatalf("largest record: LSN %d, %v", lsn, err)
	}
	if err := l.Replay(nil); err == nil {
		t.Fatal("Replay(nil) accepted")
	}
}

func TestCloseSemantics(t *testing.T) {
	dir := t.TempDir()
	l := openT(t, dir, Options{SegmentSize: 1 << 20, BufferSize: 4096, Buffers: 2})
	l.setHold(true)
	big := make([]byte, 3000)
	const n = 8
	results := make(chan error, n)
	for range n {
		go func() {
			_, err := l.Append(context.Background(), big)
			results <- err
		}()
	}
	asleep := 0
	waitFor(t, "every appender queued or asleep for space", func() bool {
		asleep = l.spaceQ.Len()
		return asleep > 0 && int(l.Stats().Appends)+asleep == n
	})
	// Close refuses the space waiters and writes what is queued (it lifts
	// the test's hold).
	if err := l.Close(); err != nil {
		t.Fatal(err)
	}
	var ok, refused int
	for range n {
		switch err := <-results; {
		case err == nil:
			ok++
		case errors.Is(err, ErrClosed):
			refused++
		default:
			t.Fatalf("Append at Close: %v", err)
		}
	}
	if refused != asleep || ok != n-asleep {
		t.Fatalf("%d written, %d refused; %d were asleep for space", ok, refused, asleep)
	}
	if _, err := l.Append(context.Background(), big); !errors.Is(err, ErrClosed) {
		t.Fatalf("Append after Close: %v", err)
	}
	if err := l.Replay(func(uint64, []byte) error { return nil }); !errors.Is(err, ErrClosed) {
		t.Fatalf("Replay after Close: %v", err)
	}
	if err := l.Close(); !errors.Is(err, ErrClosed) {
		t.Fatalf("second Close: %v", err)
	}
	l = openT(t, dir, Options{})
	defer l.Close()
	if recs := replayAll(t, l); len(recs) != ok {
		t.Fatalf("replayed %d records, %d were acknowledged", len(recs), ok)
	}
}

func TestDirectoryLocked(t *testing.T) {
	dir := t.TempDir()
	l := openT(t, dir, small)
	if _, err := Open(dir, small); !errors.Is(err, ErrLocked) {
		t.Fatalf("second Open: %v", err)
	}
	if err := l.Close(); err != nil {
		t.Fatal(err)
	}
	openT(t, dir, small).Close()
}

func TestOptionsValidation(t *testing.T) {
	for _, o := range []Options{
		{SegmentSize: 4096},
		{SegmentSize: 100_000},
		{SegmentSize: -1},
		{BufferSize: 100},
		{BufferSize: -4096},
		{Buffers: 1},
		{Buffers: 1000},
		{Direct: DirectMode(7)},
	} {
		if _, err := Open(t.TempDir(), o); err == nil {
			t.Errorf("Open accepted %+v", o)
		}
	}
	if _, err := Open("", Options{}); err == nil {
		t.Error("Open accepted an empty directory name")
	}
	o, err := Options{BufferSize: 5000}.normalize()
	if err != nil || o.BufferSize != 8192 || o.SegmentSize != DefaultSegmentSize || o.Buffers != DefaultBuffers {
		t.Errorf("normalize: %+v, %v", o, err)
	}
}

func TestDirectFallback(t *testing.T) {
	saved := probeDirect
	probeDirect = func(string) (bool, error) { return false, nil }
	defer func() { probeDirect = saved }()
	uringtest.Require(t)
	if _, err := Open(t.TempDir(), Options{Direct: DirectOn}); err == nil {
		t.Fatal("DirectOn accepted where O_DIRECT is refused")
	}
	l := openT(t, t.TempDir(), small)
	defer l.Close()
	if l.Direct() {
		t.Fatal("O_DIRECT in use where it is refused")
	}
	if _, err := l.Append(context.Background(), []byte("buffered")); err != nil {
		t.Fatal(err)
	}
}

// TestSettleWaitsForTheCrowd checks the commit delay: after an fdatasync woke
// W appenders, no I/O starts until W more records arrived, and the W-th
// appender submits one write and one fdatasync for all of them. A settle the
// crowd does not come back for times out, and the next one is skipped.
func TestSettleWaitsForTheCrowd(t *testing.T) {
	l := openT(t, t.TempDir(), Options{SegmentSize: 1 << 20})
	defer l.Close()
	l.mu.Lock()
	l.settleFor = time.Minute // only arrivals end a settle here
	l.mu.Unlock()
	appendN := func(round, n int) chan error {
		errs := make(chan error, n)
		for g := range n {
			go func() {
				_, err := l.Append(context.Background(), testRecord(g, round))
				errs <- err
			}()
		}
		return errs
	}
	wait := func(errs chan error, n int) {
		t.Helper()
		for range n {
			if err := <-errs; err != nil {
				t.Fatal(err)
			}
		}
	}
	const w = 8
	l.setHold(true)
	errs := appendN(0, w)
	waitFor(t, "8 appenders queued", func() bool { return l.Stats().Appends == w })
	l.setHold(false)
	wait(errs, w)
	settling := func(target int) func() bool {
		return func() bool {
			l.mu.Lock()
			defer l.mu.Unlock()
			return l.settling && l.settleTarget == target
		}
	}
	waitFor(t, "a settle waiting for 8", settling(w))
	st := l.Stats()
	if st.Writes != 1 || st.Syncs != 1 {
		t.Fatalf("first round: %+v", st)
	}
	errs = appendN(1, w-1)
	waitFor(t, "7 appenders queued", func() bool { return l.Stats().Appends == 2*w-1 })
	if s := l.Stats(); s.Writes != 1 || s.Syncs != 1 {
		t.Fatalf("I/O started while settling with 7 of 8 back: %+v", s)
	}
	// The settle after this round arms with a short timeout: nobody comes
	// back for it.
	l.mu.Lock()
	l.settleFor = time.Millisecond
	l.mu.Unlock()
	last := appendN(2, 1)
	wait(errs, w-1)
	wait(last, 1)
	if s := l.Stats(); s.Writes != 2 || s.Syncs != 2 || s.LinkedSyncs != 2 || s.DurableLSN != 2*w {
		t.Fatalf("second round: %+v; want one more write linked to one fdatasync", s)
	}
	waitFor(t, "the settle to time out", func() bool { return l.Stats().SettleMiss == 1 })
	l.mu.Lock()
	skip := l.settleSkip
	l.mu.Unlock()
	if skip != 1 {
		t.Fatalf("settleSkip %d after the first miss, want 1", skip)
	}
	wait(appendN(3, 1), 1)
	l.mu.Lock()
	skip, settled := l.settleSkip, l.settling
	l.mu.Unlock()
	if skip != 0 || settled {
		t.Fatalf("the completion after a miss: settleSkip %d, settling %v; want it skipped", skip, settled)
	}
}

// TestSettleSweep checks how settles end in a closed-loop crowd: by
// arrivals, with no ring request per settle (the commits are inline, so the
// ring sees next to nothing), and that the sweep that ends settles nobody
// comes back for stops once settles stop.
func TestSettleSweep(t *testing.T) {
	l := openT(t, t.TempDir(), Options{SegmentSize: 16 << 20, SkipZeroFill: true})
	defer l.Close()
	const crowd, rounds = 8, 200
	st0, rs0 := l.Stats(), l.ring.Stats()
	errs := make(chan error, crowd)
	for g := range crowd {
		go func() {
			for n := range rounds {
				if _, err := l.Append(context.Background(), testRecord(g, n)); err != nil {
					errs <- err
					return
				}
			}
			errs <- nil
		}()
	}
	for range crowd {
		if err := <-errs; err != nil {
			t.Fatal(err)
		}
	}
	st, rs := l.Stats(), l.ring.Stats()
	syncs, submitted := st.Syncs-st0.Syncs, rs.Submitted-rs0.Submitted
	if syncs < 10 || st.InlineSyncs-st0.InlineSyncs < syncs/2 {
		t.Fatalf("%d fdatasyncs, %d inline: not a crowd committing inline", syncs, st.InlineSyncs-st0.InlineSyncs)
	}
	if submitted > syncs/4 {
		t.Fatalf("%d ring requests for %d fdatasyncs: the settles cost the ring a request each", submitted, syncs)
	}
	waitFor(t, "the sweep to stop", func() bool {
		l.mu.Lock()
		defer l.mu.Unlock()
		return !l.sweepArmed && !l.settling
	})
}

// TestSettleSweepTwoLooks checks that the sweep leaves a settle overdue by
// less than a period to the arrivals (a shortened settle may be overdue
// after microseconds), and ends it, as a miss, when it finds it overdue at
// the next firing too.
func TestSettleSweepTwoLooks(t *testing.T) {
	l := openT(t, t.TempDir(), Options{SegmentSize: 1 << 20})
	defer l.Close()
	settling := func() bool {
		l.mu.Lock()
		defer l.mu.Unlock()
		return l.settling
	}
	l.mu.Lock()
	l.sweep = time.AfterFunc(time.Hour, func() {}) // the test fires the sweep itself
	l.settling = true
	l.settleEpoch++
	l.settleSeen, l.settleTarget = 0, 8
	l.settleDeadline = time.Now().Add(-time.Microsecond)
	l.mu.Unlock()
	l.settleSweep()
	if !settling() || l.Stats().SettleMiss != 0 {
		t.Fatalf("the first firing past the deadline ended the settle (misses %d)", l.Stats().SettleMiss)
	}
	l.settleSweep()
	if settling() || l.Stats().SettleMiss != 1 {
		t.Fatalf("the second firing past the deadline: settling %v, misses %d; want it ended as a miss", settling(), l.Stats().SettleMiss)
	}
	l.mu.Lock()
	l.sweep.Stop()
	l.sweepArmed = false // its func is not settleSweep: Close must not wait for it
	l.mu.Unlock()
}

// TestSettleDelay checks the settle's timeout: half the fdatasync latency
// (within bounds), shortened in proportion to the records already waiting
// once they are a quarter of the woken crowd or more.
func TestSettleDelay(t *testing.T) {
	const ewma = 400 * time.Microsecond
	for _, c := range []struct {
		ewma           time.Duration
		woken, pending int
		want           time.Duration
	}{
		{ewma, 100, 0, 200 * time.Microsecond},
		{ewma, 100, 24, 200 * time.Microsecond}, // under a quarter: whole
		{ewma, 100, 25, 150 * time.Microsecond},
		{ewma, 100, 50, 100 * time.Microsecond},
		{ewma, 100, 99, settleMin},
		{ewma, 100, 100, 200 * time.Microsecond}, // target 1 instead (settleArm)
		{0, 10, 0, settleMin},
		{time.Hour, 10, 0, settleMax},
	} {
		if got := settleDelay(c.ewma, c.woken, c.pending); got != c.want {
			t.Errorf("settleDelay(%v, woken %d, pending %d) = %v, want %v", c.ewma, c.woken, c.pending, got, c.want)
		}
	}
}

// TestZeroFillPaced checks that the next segment is zero-filled, in slices
// riding along with the commits, before the log rolls into it; and not at
// all with SkipZeroFill. Also at GOMAXPROCS=1, where one appender committing
// inline leaves the poller, which completes the slices, few chances to run.
func TestZeroFillPaced(t *testing.T) {
	for _, procs := range []int{runtime.GOMAXPROCS(0), 1} {
		prev := runtime.GOMAXPROCS(procs)
		testZeroFillPaced(t, procs)
		runtime.GOMAXPROCS(prev)
	}
}

func testZeroFillPaced(t *testing.T, procs int) {
	for name, o := range modes(Options{SegmentSize: 512 << 10, BufferSize: 16 << 10}) {
		for _, skip := range []bool{false, true} {
			o.SkipZeroFill = skip
			t.Run(fmt.Sprintf("procs=%d/%s/skip=%v", procs, name, skip), func(t *testing.T) {
				l := openT(t, t.TempDir(), o)
				defer l.Close()
				var zeroed, size int64
				for i := 0; l.Stats().Rolls == 0; i++ {
					l.mu.Lock()
					if l.next != nil {
						zeroed, size = l.next.zeroed, l.next.size
					}
					l.mu.Unlock()
					if _, err := l.Append(context.Background(), testRecord(6, i)); err != nil {
						t.Fatal(err)
					}
				}
				// With one P a slice's completion waits for the poller to get
				// it, up to a hundred appends here under -race: the last slice
				// may still be in flight at the roll.
				want := size
				if procs == 1 {
					want = size * 3 / 4
				}
				switch {
				case skip && zeroed != 0:
					t.Fatalf("SkipZeroFill, yet %d bytes of the next segment were zeroed", zeroed)
				case !skip && (size == 0 || zeroed < want):
					t.Fatalf("the log rolled into a segment zero-filled up to %d of %d bytes, want at least %d", zeroed, size, want)
				}
				if n := len(replayAll(t, l)); uint64(n) != l.Stats().Appends {
					t.Fatalf("replayed %d of %d records", n, l.Stats().Appends)
				}
			})
		}
	}
}
