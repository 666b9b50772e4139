package wal

import (
	"bytes"
	"context"
	"errors"
	"fmt"
	"math"
	"os"
	"path/filepath"
	"runtime/debug"
	"slices"
	"sync"
	"syscall"
	"testing"
	"time"

	"go.uber.org/goleak"
)

// FuzzLog decodes a sequence of operations from the input and runs it on a
// log with 16 KiB segments, against a model: the record of every LSN, the
// truncation floor (the highest LSN a TruncateFront succeeded with), the
// durable LSN, and the records whose Append failed after they were queued.
// Operations: Appends of 0-3000 byte records, of records just at and just
// past MaxRecordSize, and of 2-8 records from as many goroutines at once;
// TruncateFront with LSNs near, well below and past DurableLSN()+1; Replay;
// Appends, a Replay and a TruncateFront all at once; Close and Open; a
// "crash" (Close, then the last record on disk truncated, zeroed or
// bit-flipped, then Open); and injected write or fdatasync failures (EIO,
// sticky until a reopen) and kernel cancels (retried).
//
// Invariants: no panic, no hang, no goroutine left; LSNs given out in order
// without a gap; DurableLSN as the model says; Replay returns records in
// LSN order without a gap, each exactly as appended, ending at DurableLSN
// and starting at or below max(1, floor) (one that runs during Appends ends
// at or past the DurableLSN it began with); a TruncateFront past
// DurableLSN()+1 fails and moves nothing; a record past MaxRecordSize fails
// with ErrTooLarge and changes nothing; after an injected failure every
// Append fails with the same error until a reopen, which brings back every
// acknowledged record and, of the failed ones, at most those that reached
// the disk; after a crash the log ends exactly before the damaged record;
// no more spares than MaxSpareSegments, no file below the first segment.
//
// Input: byte 0 is the configuration (bit 0: Direct default, else
// DirectOff; bit 1: 8 KiB buffers, else 4 KiB; bits 2-3: MaxSpareSegments
// 0 (the default, 2), 1, -1 or 3; bit 4: SkipZeroFill). Then operations, at
// most fuzzMaxOps: an op byte (taken modulo fzNumOps) and its argument bytes
// (missing ones read as 0):
//
//	fzAppend0..3   size lo, size hi (size = (lo | hi<<8) % 3001), content seed
//	fzAppendMax    b: b odd: MaxRecordSize+1+b/2 bytes (ErrTooLarge); even: MaxRecordSize-(b/2)%8
//	fzConcurrent   n (2 + n%7 goroutines), size lo, size hi, content seed
//	fzTruncate     b: b>>6 picks DurableLSN()+1-(b&63), 1+(b&63)*DurableLSN()/63, DurableLSN()+2+(b&63), or b&63
//	fzReplay       -
//	fzReopen       -
//	fzCrash        kind (%3: truncate, zero 1-4 bytes, flip), pos lo, pos hi
//	fzInject       b: b%5 picks failNextWrite, failNextSync, cancelNextWrite, cancelNextSync, cancelAlways
//	fzCanceledCtx  - (an Append with a canceled context)
//	fzMixed        n, size lo, size hi: 2 + n%3 Appends, a Replay and, if n&0x80,
//	               TruncateFront(DurableLSN()+1-(n>>3&7)), all at once
func FuzzLog(f *testing.F) {
	for _, s := range fuzzSeeds() {
		f.Add(s)
	}
	f.Fuzz(func(t *testing.T, data []byte) {
		if len(data) < 1 {
			return
		}
		leaks := goleak.IgnoreCurrent()
		fz := newFuzzLog(t, data)
		fz.run()
		goleak.VerifyNone(t, leaks)
	})
}

const (
	fuzzMaxOps     = 100
	fuzzMaxRecord  = 3000
	fuzzOpDeadline = 30 * time.Second // a hang, not a slow disk
)

const (
	fzAppend0 = iota
	fzAppend1
	fzAppend2
	fzAppend3
	fzAppendMax
	fzConcurrent
	fzTruncate
	fzReplay
	fzReopen
	fzCrash
	fzInject
	fzCanceledCtx
	fzMixed
	fzNumOps
)

var fzOpNames = [...]string{"append", "append", "append", "append", "append-max", "concurrent", "truncate", "replay", "reopen", "crash", "inject", "canceled-ctx", "mixed"}

var injectBits = [...]uint32{failNextWrite, failNextSync, cancelNextWrite, cancelNextSync, cancelAlways}

type fuzzLog struct {
	t    *testing.T
	data []byte
	pos  int
	dir  string
	opts Options
	l    *Log
	op   int // index of the operation running, for messages
	nctx int // calls of ctx

	// The model.
	recs    map[uint64][]byte // every record the log holds or held (truncated ones stay)
	floor   uint64            // highest LSN a TruncateFront succeeded with (or failed with on a failed log)
	durable uint64            // highest acknowledged LSN: DurableLSN
	pending map[uint64][]byte // queued records whose Append failed: a reopen may find them
	failed  error             // the sticky error, once an Append saw it
	armed   uint32            // the injected test bit not yet consumed
}

func newFuzzLog(t *testing.T, data []byte) *fuzzLog {
	cfg := data[0]
	o := Options{SegmentSize: 16 << 10, BufferSize: 4096, Direct: DirectOff}
	if cfg&1 != 0 {
		o.Direct = DirectAuto
	}
	if cfg&2 != 0 {
		o.BufferSize = 8192
	}
	o.MaxSpareSegments = [...]int{0, 1, -1, 3}[cfg>>2&3]
	o.SkipZeroFill = cfg&16 != 0
	return &fuzzLog{t: t, data: data, pos: 1, dir: t.TempDir(), opts: o, recs: map[uint64][]byte{}, pending: map[uint64][]byte{}}
}

func (fz *fuzzLog) byte() byte {
	if fz.pos >= len(fz.data) {
		return 0
	}
	b := fz.data[fz.pos]
	fz.pos++
	return b
}

func (fz *fuzzLog) fatalf(format string, args ...any) {
	fz.t.Helper()
	fz.t.Fatalf("op %d: %s", fz.op, fmt.Sprintf(format, args...))
}

func (fz *fuzzLog) run() {
	fz.l = openT(fz.t, fz.dir, fz.opts)
	defer func() {
		if fz.l != nil {
			fz.l.Close()
		}
	}()
	for fz.op = 0; fz.op < fuzzMaxOps && fz.pos < len(fz.data); fz.op++ {
		op := int(fz.byte()) % fzNumOps
		fz.step(op)
		if fz.t.Failed() {
			return
		}
		if d := fz.l.DurableLSN(); d != fz.durable {
			fz.fatalf("after %s: DurableLSN %d, model %d", fzOpNames[op], d, fz.durable)
		}
	}
	fz.checkReplay()
	fz.checkFiles()
	st := fz.l.Stats()
	_, front := fz.front()
	fz.t.Logf("%d ops; last log: %d appends, %d rolls, %d recycled, %d retried; durable %d, floor %d, front %d, files %x, direct %v", fz.op, st.Appends, st.Rolls, st.Recycled, st.Retried, fz.durable, fz.floor, front, segFiles(fz.t, fz.dir), fz.l.Direct())
	fz.closeLog()
	// Everything the model holds survives a last reopen.
	fz.reopen(0)
}

// step decodes the arguments of operation op and runs it.
func (fz *fuzzLog) step(op int) {
	// A hang fails the input (with every goroutine's stack) instead of
	// stalling the fuzzer.
	op0 := fz.op
	watchdog := time.AfterFunc(fuzzOpDeadline, func() {
		debug.SetTraceback("all")
		panic(fmt.Sprintf("FuzzLog: op %d (%s) still running after %v", op0, fzOpNames[op], fuzzOpDeadline))
	})
	defer watchdog.Stop() // also when the op fails the test
	switch op {
	case fzAppend0, fzAppend1, fzAppend2, fzAppend3:
		lo, hi, seed := fz.byte(), fz.byte(), fz.byte()
		fz.appendOne(fuzzRecord(int(lo)|int(hi)<<8, seed, fz.op))
	case fzAppendMax:
		b := int(fz.byte())
		max := fz.l.MaxRecordSize()
		if b&1 != 0 {
			fz.appendTooLarge(max + 1 + b/2)
		} else {
			fz.appendOne(fuzzRecordN(max-(b/2)%8, byte(b), fz.op))
		}
	case fzConcurrent:
		n, lo, hi, seed := fz.byte(), fz.byte(), fz.byte(), fz.byte()
		fz.appendConcurrent(2+int(n)%7, int(lo)|int(hi)<<8, seed)
	case fzTruncate:
		fz.truncate(fz.byte())
	case fzReplay:
		fz.checkReplay()
		fz.checkFiles()
	case fzReopen:
		fz.closeLog()
		fz.reopen(0)
	case fzCrash:
		kind, lo, hi := fz.byte(), fz.byte(), fz.byte()
		fz.crash(kind, int(lo)|int(hi)<<8)
	case fzInject:
		bit := injectBits[int(fz.byte())%len(injectBits)]
		fz.l.testFail.Store(bit) // one bit at a time: their interplay is TestKernelCancelRetried's
		fz.armed = bit
	case fzMixed:
		n, lo, hi := fz.byte(), fz.byte(), fz.byte()
		fz.mixed(n, int(lo)|int(hi)<<8)
	case fzCanceledCtx:
		ctx, cancel := context.WithCancel(context.Background())
		cancel()
		if lsn, err := fz.l.Append(ctx, []byte("canceled")); lsn != 0 || !errors.Is(err, context.Canceled) {
			fz.fatalf("Append with a canceled context: LSN %d, %v", lsn, err)
		}
	}
}

// fuzzRecord is size bytes (modulo fuzzMaxRecord+1) from seed: all zeros for
// seed 0, else a pattern that differs between operations.
func fuzzRecord(size int, seed byte, op int) []byte {
	return fuzzRecordN(size%(fuzzMaxRecord+1), seed, op)
}

func fuzzRecordN(size int, seed byte, op int) []byte {
	r := make([]byte, size)
	if seed == 0 {
		return r
	}
	for i := range r {
		r[i] = byte(uint(seed)*uint(i+1) + uint(op)*7 + uint(i>>8))
	}
	return r
}

// Every other call gives a ctx that cannot end instead, so that appends
// take both commit paths: through the ring, and inline (inline.go), which
// only an appender whose ctx cannot end takes. A hang there is caught by
// the test's own timeout.
func (fz *fuzzLog) ctx() (context.Context, context.CancelFunc) {
	fz.nctx++
	if fz.nctx%2 == 0 {
		return context.Background(), func() {}
	}
	return context.WithTimeout(context.Background(), fuzzOpDeadline)
}

// appendOne appends rec and checks the outcome against the model: the next
// LSN, durable on return; the sticky error on a failed log; the injected
// failure's error, with the record's LSN, when one is armed.
func (fz *fuzzLog) appendOne(rec []byte) {
	fz.t.Helper()
	ctx, cancel := fz.ctx()
	defer cancel()
	want := fz.durable + 1
	retried := fz.l.Stats().Retried
	lsn, err := fz.l.Append(ctx, rec)
	switch {
	case fz.failed != nil:
		if lsn != 0 || err != fz.failed {
			fz.fatalf("Append on a failed log: LSN %d, %v; want 0 and the sticky %v", lsn, err, fz.failed)
		}
	case fz.armed == failNextWrite || fz.armed == failNextSync || fz.armed == cancelAlways:
		if err == nil || !(errors.Is(err, syscall.EIO) || errors.Is(err, syscall.ECANCELED)) || lsn != want {
			fz.fatalf("Append with %s injected: LSN %d, %v; want LSN %d and EIO or ECANCELED", bitNameFuzz(fz.armed), lsn, err, want)
		}
		fz.failed = err
		fz.pending[lsn] = rec
		fz.armed = 0
	default:
		if err != nil || lsn != want {
			fz.fatalf("Append of %d bytes: LSN %d, %v; want LSN %d", len(rec), lsn, err, want)
		}
		if d := fz.l.DurableLSN(); d != lsn {
			fz.fatalf("Append returned LSN %d, DurableLSN %d", lsn, d)
		}
		fz.acked(lsn, rec)
		fz.consumedCancel(retried)
	}
}

// consumedCancel checks that an armed kernel cancel was consumed and retried
// by the Appends that just succeeded.
func (fz *fuzzLog) consumedCancel(retriedBefore uint64) {
	fz.t.Helper()
	if fz.armed != cancelNextWrite && fz.armed != cancelNextSync {
		return
	}
	if fz.l.testFail.Load() != 0 || fz.l.Stats().Retried == retriedBefore {
		fz.fatalf("%s injected: bits %#x left, Retried %d (was %d)", bitNameFuzz(fz.armed), fz.l.testFail.Load(), fz.l.Stats().Retried, retriedBefore)
	}
	fz.armed = 0
}

func (fz *fuzzLog) acked(lsn uint64, rec []byte) {
	fz.recs[lsn] = rec
	fz.durable = max(fz.durable, lsn)
}

func (fz *fuzzLog) appendTooLarge(size int) {
	fz.t.Helper()
	lsn, err := fz.l.Append(context.Background(), make([]byte, size))
	if lsn != 0 || !errors.Is(err, ErrTooLarge) {
		fz.fatalf("Append of %d bytes (MaxRecordSize %d): LSN %d, %v; want ErrTooLarge", size, fz.l.MaxRecordSize(), lsn, err)
	}
}

func (fz *fuzzLog) appendConcurrent(n, size int, seed byte) {
	fz.t.Helper()
	ctx, cancel := fz.ctx()
	defer cancel()
	type result struct {
		lsn uint64
		err error
		rec []byte
	}
	res := make([]result, n)
	retried := fz.l.Stats().Retried
	var wg sync.WaitGroup
	for g := range n {
		rec := fuzzRecord(size+g*977, seed+byte(g), fz.op*8+g)
		wg.Add(1)
		go func() {
			defer wg.Done()
			lsn, err := fz.l.Append(ctx, rec)
			res[g] = result{lsn, err, rec}
		}()
	}
	wg.Wait()
	first := fz.durable + 1
	seen := map[uint64]bool{}
	switch {
	case fz.failed != nil:
		for _, r := range res {
			if r.lsn != 0 || r.err != fz.failed {
				fz.fatalf("concurrent Append on a failed log: LSN %d, %v; want 0 and the sticky %v", r.lsn, r.err, fz.failed)
			}
		}
	case fz.armed == failNextWrite || fz.armed == failNextSync || fz.armed == cancelAlways:
		// The first write or fdatasync fails: no Append can succeed, each
		// returns the sticky error, with its LSN if it had queued.
		for _, r := range res {
			if r.err == nil || !(errors.Is(r.err, syscall.EIO) || errors.Is(r.err, syscall.ECANCELED)) {
				fz.fatalf("concurrent Append with %s injected: LSN %d, %v", bitNameFuzz(fz.armed), r.lsn, r.err)
			}
			if fz.failed == nil {
				fz.failed = r.err
			} else if r.err != fz.failed {
				fz.fatalf("concurrent Appends failed with different errors: %v, %v", fz.failed, r.err)
			}
			if r.lsn != 0 {
				if r.lsn < first || r.lsn >= first+uint64(n) || seen[r.lsn] {
					fz.fatalf("failed concurrent Append: LSN %d (a duplicate, or outside %d..%d)", r.lsn, first, first+uint64(n)-1)
				}
				seen[r.lsn] = true
				fz.pending[r.lsn] = r.rec
			}
		}
		fz.armed = 0
	default:
		for _, r := range res {
			if r.err != nil {
				fz.fatalf("concurrent Append of %d bytes: LSN %d, %v", len(r.rec), r.lsn, r.err)
			}
			if r.lsn < first || r.lsn >= first+uint64(n) || seen[r.lsn] {
				fz.fatalf("concurrent Append: LSN %d (a duplicate, or outside %d..%d)", r.lsn, first, first+uint64(n)-1)
			}
			seen[r.lsn] = true
			fz.acked(r.lsn, r.rec)
		}
		if d := fz.l.DurableLSN(); d != first+uint64(n)-1 {
			fz.fatalf("%d concurrent Appends from LSN %d: DurableLSN %d", n, first, d)
		}
		fz.consumedCancel(retried)
	}
}

// mixed runs Appends, a Replay and maybe a TruncateFront at once, on a
// healthy log (else it is a plain Replay).
func (fz *fuzzLog) mixed(n byte, size int) {
	fz.t.Helper()
	if fz.failed != nil || fz.armed != 0 {
		fz.checkReplay()
		return
	}
	ctx, cancel := fz.ctx()
	defer cancel()
	k := 2 + int(n)%3
	d0 := fz.DurableLSNChecked()
	var truncLSN uint64
	if n&0x80 != 0 {
		truncLSN = d0 + 1 - min(d0, uint64(n>>3&7))
	}
	type result struct {
		lsn uint64
		err error
		rec []byte
	}
	res := make([]result, k)
	var rp []replayed
	var replayErr, truncErr error
	var wg sync.WaitGroup
	for g := range k {
		rec := fuzzRecord(size+g*1553, byte(g+1)*29, fz.op*8+g)
		wg.Add(1)
		go func() {
			defer wg.Done()
			lsn, err := fz.l.Append(ctx, rec)
			res[g] = result{lsn, err, rec}
		}()
	}
	wg.Add(1)
	go func() {
		defer wg.Done()
		replayErr = fz.l.Replay(func(lsn uint64, rec []byte) error {
			rp = append(rp, replayed{lsn, bytes.Clone(rec)})
			return nil
		})
	}()
	if truncLSN != 0 {
		wg.Add(1)
		go func() {
			defer wg.Done()
			truncErr = fz.l.TruncateFront(truncLSN)
		}()
	}
	wg.Wait()
	if truncErr != nil {
		fz.fatalf("TruncateFront(%d) during Appends, DurableLSN %d before: %v", truncLSN, d0, truncErr)
	}
	fz.floor = max(fz.floor, truncLSN)
	got := map[uint64][]byte{}
	for _, r := range res {
		if r.err != nil || r.lsn <= d0 || r.lsn > d0+uint64(k) || got[r.lsn] != nil {
			fz.fatalf("Append during a Replay: LSN %d, %v (a duplicate, or outside %d..%d)", r.lsn, r.err, d0+1, d0+uint64(k))
		}
		got[r.lsn] = r.rec
		fz.acked(r.lsn, r.rec)
	}
	if d := fz.l.DurableLSN(); d != d0+uint64(k) {
		fz.fatalf("%d Appends from LSN %d: DurableLSN %d", k, d0+1, d)
	}
	if replayErr != nil {
		fz.fatalf("Replay during Appends: %v", replayErr)
	}
	from := max(fz.floor, 1)
	for i, r := range rp {
		if i > 0 && r.lsn != rp[i-1].lsn+1 {
			fz.fatalf("Replay during Appends: LSN %d after %d", r.lsn, rp[i-1].lsn)
		}
		if want, ok := fz.recs[r.lsn]; !ok || !bytes.Equal(r.rec, want) {
			fz.fatalf("Replay during Appends: LSN %d (%d bytes) is not what was appended (known: %v)", r.lsn, len(r.rec), ok)
		}
	}
	switch m := len(rp); {
	case m > 0 && rp[m-1].lsn < d0:
		fz.fatalf("Replay during Appends ended at LSN %d, DurableLSN was %d when it began", rp[m-1].lsn, d0)
	case d0 >= from && (m == 0 || rp[0].lsn > from):
		fz.fatalf("Replay during Appends returned %d records; want every one from %d to at least %d", m, from, d0)
	}
}

// DurableLSNChecked is DurableLSN, checked against the model.
func (fz *fuzzLog) DurableLSNChecked() uint64 {
	fz.t.Helper()
	d := fz.l.DurableLSN()
	if d != fz.durable {
		fz.fatalf("DurableLSN %d, model %d", d, fz.durable)
	}
	return d
}

// front is the log's first segment and first LSN.
func (fz *fuzzLog) front() (idx, lsn uint64) {
	l := fz.l
	l.mu.Lock()
	defer l.mu.Unlock()
	return l.firstIdxLocked(), l.starts[0]
}

func (fz *fuzzLog) truncate(b byte) {
	fz.t.Helper()
	d := fz.l.DurableLSN()
	v := uint64(b & 63)
	var lsn uint64
	switch b >> 6 {
	case 0:
		lsn = d + 1 - min(d, v)
	case 1:
		lsn = 1 + v*d/63
	case 2:
		lsn = d + 2 + v
	case 3:
		lsn = v
	}
	filesBefore := segFiles(fz.t, fz.dir)
	fi, fl := fz.front()
	err := fz.l.TruncateFront(lsn)
	switch {
	case lsn > d+1:
		if err == nil {
			fz.fatalf("TruncateFront(%d) with DurableLSN %d: no error", lsn, d)
		}
		// (A segment being prepared may appear meanwhile; none may go.)
		files := segFiles(fz.t, fz.dir)
		for _, idx := range filesBefore {
			if !slices.Contains(files, idx) {
				fz.fatalf("TruncateFront(%d) failed (%v) but segment files went from %x to %x", lsn, err, filesBefore, files)
			}
		}
		if i, l := fz.front(); i != fi || l != fl {
			fz.fatalf("TruncateFront(%d) failed (%v) but the front moved from segment %d (LSN %d) to %d (LSN %d)", lsn, err, fi, fl, i, l)
		}
		return
	case err != nil && fz.failed == nil:
		fz.fatalf("TruncateFront(%d) with DurableLSN %d: %v", lsn, d, err)
	}
	// On a failed log an error may come after some segments went: the
	// floor moves anyway (a weaker check of Replay's start).
	fz.floor = max(fz.floor, lsn)
	l := fz.l
	l.mu.Lock()
	defer l.mu.Unlock()
	// The contract: the first segment kept starts at or below the floor...
	if l.starts[0] > max(fz.floor, 1) {
		fz.fatalf("TruncateFront(%d): the log starts at LSN %d, above the floor %d", lsn, l.starts[0], fz.floor)
	}
	// ... and no segment all below lsn was kept for no documented reason: it
	// is the current one, or its successor holds no durable record.
	if err == nil && l.firstIdxLocked() < l.cur.idx && l.starts[1] <= lsn && l.starts[1] <= l.durable.Load() {
		fz.fatalf("TruncateFront(%d) returned, but kept segment %d whose successor starts at LSN %d (durable %d)", lsn, l.firstIdxLocked(), l.starts[1], l.durable.Load())
	}
}

// checkReplay replays the log and checks it against the model.
func (fz *fuzzLog) checkReplay() {
	fz.t.Helper()
	d := fz.l.DurableLSN()
	var got []uint64
	err := fz.l.Replay(func(lsn uint64, rec []byte) error {
		if n := len(got); n > 0 && lsn != got[n-1]+1 {
			return fmt.Errorf("LSN %d after %d", lsn, got[n-1])
		}
		want, ok := fz.recs[lsn]
		if !ok {
			return fmt.Errorf("LSN %d (%d bytes) was never appended", lsn, len(rec))
		}
		if !bytes.Equal(rec, want) {
			return fmt.Errorf("LSN %d: %d bytes differ from the %d appended", lsn, len(rec), len(want))
		}
		got = append(got, lsn)
		return nil
	})
	if err != nil {
		fz.fatalf("Replay (DurableLSN %d, floor %d): %v", d, fz.floor, err)
	}
	from := max(fz.floor, 1)
	switch {
	case len(got) > 0 && got[len(got)-1] != d:
		fz.fatalf("Replay ended at LSN %d, DurableLSN %d", got[len(got)-1], d)
	case d >= from && (len(got) == 0 || got[0] > from):
		first := uint64(0)
		if len(got) > 0 {
			first = got[0]
		}
		fz.fatalf("Replay returned %d records from LSN %d; want every one from %d to %d", len(got), first, from, d)
	}
}

// checkFiles checks the directory against the log: no segment file below
// the first, at most MaxSpareSegments beyond the next segment.
func (fz *fuzzLog) checkFiles() {
	fz.t.Helper()
	l := fz.l
	l.mu.Lock()
	first, cur := l.firstIdxLocked(), l.cur.idx
	l.mu.Unlock()
	spares := 0
	for _, idx := range segFiles(fz.t, fz.dir) {
		switch {
		case idx < first:
			fz.fatalf("segment file %d below the log's first segment %d", idx, first)
		case idx > cur+1:
			spares++
		}
	}
	if spares > l.maxSpares() {
		fz.fatalf("%d segment files past the next segment (%d); MaxSpareSegments %d", spares, cur+1, l.opts.MaxSpareSegments)
	}
}

func (fz *fuzzLog) closeLog() {
	fz.t.Helper()
	st := fz.l.Stats()
	fz.t.Logf("op %d: closing after %d appends, %d rolls, %d recycled, %d retried", fz.op, st.Appends, st.Rolls, st.Recycled, st.Retried)
	err := fz.l.Close()
	fz.l = nil
	if err != fz.failed {
		fz.fatalf("Close: %v; want %v", err, fz.failed)
	}
}

// reopen opens the log again; cutAt, unless 0, is the LSN of the record
// the crash damaged, where the log must now end. It updates the model and
// checks the log against it.
func (fz *fuzzLog) reopen(cutAt uint64) {
	fz.t.Helper()
	l, err := Open(fz.dir, fz.opts)
	if err != nil {
		fz.fatalf("Open: %v", err)
	}
	fz.l = l
	d := l.DurableLSN()
	if cutAt != 0 {
		if d != cutAt-1 {
			fz.fatalf("reopened after damaging LSN %d: DurableLSN %d", cutAt, d)
		}
	} else if d < fz.durable || d > fz.durable+uint64(len(fz.pending)) {
		fz.fatalf("reopened: DurableLSN %d; want %d plus at most %d failed Appends", d, fz.durable, len(fz.pending))
	}
	// Failed Appends whose records reached the disk are in the log now.
	for lsn := fz.durable + 1; lsn <= d; lsn++ {
		rec, ok := fz.pending[lsn]
		if !ok {
			fz.fatalf("reopened: DurableLSN %d, but LSN %d was never given out", d, lsn)
		}
		fz.recs[lsn] = rec
	}
	for lsn := range fz.recs {
		if lsn > d {
			delete(fz.recs, lsn)
		}
	}
	fz.durable, fz.failed, fz.armed = d, nil, 0
	clear(fz.pending)
	fz.checkReplay()
	fz.checkFiles()
}

// diskRecord is a record found on disk by reading the closed log's files.
type diskRecord struct {
	lsn  uint64
	path string
	off  int64
	rec  []byte
}

// diskRecords reads the closed log's records from its files, as recovery
// would: from the first segment file on, while each ends with an
// end-of-segment record and the next index follows.
func (fz *fuzzLog) diskRecords() []diskRecord {
	fz.t.Helper()
	var out []diskRecord
	var want uint64
	idxs := segFiles(fz.t, fz.dir)
	for i, idx := range idxs {
		if i > 0 && idx != idxs[i-1]+1 {
			break
		}
		path := filepath.Join(fz.dir, segName(idx))
		f, err := os.Open(path)
		if err != nil {
			fz.fatalf("%v", err)
		}
		off := int64(blockSize)
		r, err := scanSegment(newWindow(f.ReadAt), idx, want, math.MaxUint64, func(lsn uint64, rec []byte) error {
			out = append(out, diskRecord{lsn, path, off, bytes.Clone(rec)})
			off += recHdrSize + int64(len(rec))
			return nil
		})
		f.Close()
		if err != nil {
			fz.fatalf("scan %s: %v", path, err)
		}
		if r.hdrErr != nil || !r.eos {
			break
		}
		want = r.next
	}
	return out
}

// crash closes the log, damages the last record on disk the way a torn
// write or the medium could, and reopens: the log must end right before it.
func (fz *fuzzLog) crash(kind byte, pos int) {
	fz.t.Helper()
	fz.closeLog()
	recs := fz.diskRecords()
	for i, r := range recs {
		if i > 0 && r.lsn != recs[i-1].lsn+1 {
			fz.fatalf("on disk: LSN %d after %d", r.lsn, recs[i-1].lsn)
		}
		want, ok := fz.recs[r.lsn]
		if r.lsn > fz.durable {
			want, ok = fz.pending[r.lsn]
		}
		if !ok || !bytes.Equal(r.rec, want) {
			fz.fatalf("on disk: LSN %d (%d bytes) is not what was appended (known: %v)", r.lsn, len(r.rec), ok)
		}
	}
	if len(recs) == 0 {
		// Nothing to damage: the log is new, or holds no record because
		// TruncateFront dropped every segment with one and a crash cut the
		// rest.
		if fz.durable >= max(fz.floor, 1) {
			fz.fatalf("no record on disk, DurableLSN was %d, floor %d", fz.durable, fz.floor)
		}
		fz.reopen(0)
		return
	}
	last := recs[len(recs)-1]
	if last.lsn < fz.durable {
		fz.fatalf("the last record on disk is LSN %d, DurableLSN was %d", last.lsn, fz.durable)
	}
	n := int64(recHdrSize + len(last.rec))
	at := last.off + int64(pos)%n
	switch kind % 3 {
	case 0: // a write cut short: the file ends inside the record
		if err := os.Truncate(last.path, at); err != nil {
			fz.fatalf("%v", err)
		}
	case 1: // 1-4 bytes zeroed (a burst CRC-32C always detects), or a flip if they were zero
		end := min(at+1+int64(kind>>2)%4, last.off+n)
		fz.patch(last.path, at, end, func(b []byte) {
			if allZero(b) {
				b[0] = 0xff
			} else {
				clear(b)
			}
		})
	case 2: // bits flipped in one byte
		mask := kind >> 2
		if mask == 0 {
			mask = 1
		}
		fz.patch(last.path, at, at+1, func(b []byte) { b[0] ^= mask })
	}
	// The last record, or an Append that failed, is gone from the model.
	for lsn := range fz.recs {
		if lsn >= last.lsn {
			delete(fz.recs, lsn)
		}
	}
	for lsn, rec := range fz.pending {
		if lsn < last.lsn {
			fz.recs[lsn] = rec
		}
	}
	clear(fz.pending)
	fz.durable = last.lsn - 1
	fz.reopen(last.lsn)
}

// patch reads [from, to) of the file at path, lets fn change it, and writes
// it back; fn must change something.
func (fz *fuzzLog) patch(path string, from, to int64, fn func(b []byte)) {
	fz.t.Helper()
	f, err := os.OpenFile(path, os.O_RDWR, 0)
	if err != nil {
		fz.fatalf("%v", err)
	}
	defer f.Close()
	b := make([]byte, to-from)
	if _, err := f.ReadAt(b, from); err != nil {
		fz.fatalf("read %s at %d: %v", path, from, err)
	}
	old := bytes.Clone(b)
	fn(b)
	if bytes.Equal(b, old) {
		fz.fatalf("damage at %s:%d changed nothing", path, from)
	}
	if _, err := f.WriteAt(b, from); err != nil {
		fz.fatalf("write %s at %d: %v", path, from, err)
	}
}

func bitNameFuzz(bit uint32) string {
	switch bit {
	case failNextWrite:
		return "failNextWrite"
	case failNextSync:
		return "failNextSync"
	case cancelNextWrite:
		return "cancelNextWrite"
	case cancelNextSync:
		return "cancelNextSync"
	case cancelAlways:
		return "cancelAlways"
	}
	return fmt.Sprintf("bits %#x", bit)
}

// fuzzSeed builds an input: a configuration byte, then operations.
type fuzzSeed []byte

func (s fuzzSeed) append(size int, seed byte) fuzzSeed {
	return append(s, fzAppend0, byte(size), byte(size>>8), seed)
}
func (s fuzzSeed) appends(n, size int) fuzzSeed {
	for i := range n {
		s = s.append(size+i*131%700, byte(i+1))
	}
	return s
}
func (s fuzzSeed) concurrent(n int, size int, seed byte) fuzzSeed {
	return append(s, fzConcurrent, byte(n-2), byte(size), byte(size>>8), seed)
}
func (s fuzzSeed) op(op byte, args ...byte) fuzzSeed { return append(append(s, op), args...) }

// fuzzSeeds are the hand-made inputs: rolls into recycled segments with
// truncations in between, reopens with spares present, crash tails in each
// way, failures and cancels, bad sizes and LSNs. Byte 0 of each picks the
// configuration (bit 0: Direct default).
func fuzzSeeds() [][]byte {
	var out [][]byte
	add := func(s fuzzSeed) { out = append(out, []byte(s)) }
	for _, cfg := range []byte{0, 1} {
		// Several segments, truncating to the durable LSN after each few
		// appends: spares are made and rolled into; a reopen with spares.
		s := fuzzSeed{cfg}
		for range 5 {
			s = s.appends(6, 2500).op(fzTruncate, 0) // DurableLSN()+1
		}
		s = s.op(fzReplay).op(fzReopen).appends(8, 2900).op(fzReplay)
		add(s)

		// Truncate behind the end, reopen with spares, crash tails of each kind.
		s = fuzzSeed{cfg}.appends(12, 1800).op(fzTruncate, 1<<6|40).op(fzTruncate, 2<<6|3).op(fzReopen)
		s = s.appends(6, 1200).op(fzCrash, 0, 100, 0).appends(3, 700).op(fzCrash, 1|4<<2, 5, 0)
		s = s.appends(3, 10).op(fzCrash, 2|0x10<<2, 3, 0).op(fzReplay)
		add(s)

		// A crash cutting the only record of the current segment, a zero-size
		// record, a record of all zeros, MaxRecordSize and past it.
		s = fuzzSeed{cfg}.appends(5, 3000).op(fzTruncate, 0).append(0, 0).append(2000, 0)
		s = s.op(fzAppendMax, 0).op(fzAppendMax, 1).op(fzAppendMax, 201).op(fzCrash, 0, 0, 0).op(fzReplay)
		add(s)
	}
	// Concurrent appends across rolls; failures (sticky until reopen) and
	// kernel cancels (retried); a crash on a failed log.
	add(fuzzSeed{0}.concurrent(8, 1500, 3).concurrent(5, 2900, 4).op(fzTruncate, 0).op(fzInject, 2).append(100, 1).op(fzInject, 3).concurrent(4, 50, 2).op(fzReplay))
	add(fuzzSeed{1}.appends(4, 900).op(fzInject, 0).append(300, 9).append(10, 1).op(fzTruncate, 0).op(fzReplay).op(fzReopen).append(5, 5))
	add(fuzzSeed{0}.appends(4, 900).op(fzInject, 1).concurrent(6, 700, 1).op(fzCrash, 1, 7, 0).append(5, 5).op(fzReplay))
	add(fuzzSeed{1 | 2 | 1<<2}.appends(3, 2000).op(fzInject, 4).append(1, 1).append(2, 2).op(fzCanceledCtx).op(fzReopen).appends(10, 3000))
	// Appends, Replays and truncations at once, across rolls into spares.
	s := fuzzSeed{1}
	for i := range 12 {
		s = s.op(fzMixed, byte(i)|0x80, 0xb8, 0x0b).append(2000, byte(i))
	}
	add(s.op(fzReopen).op(fzMixed, 2, 0, 4))
	// Other configurations: 8 KiB buffers, one spare, no spares, three, SkipZeroFill.
	for _, cfg := range []byte{2 | 4, 1 | 8, 12 | 16, 1 | 2 | 16} {
		s := fuzzSeed{cfg}
		for i := range 4 {
			s = s.appends(7, 2200).concurrent(3, 1000, byte(i)).op(fzTruncate, 1<<6|50)
		}
		add(s.op(fzReopen).op(fzTruncate, 0).appends(4, 2800).op(fzCrash, 0, 9, 0))
	}
	return out
}
