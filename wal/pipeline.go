package wal

import (
	"context"
	"errors"
	"fmt"
	"io"
	"math"
	"sync"
	"syscall"
	"time"
	"unsafe"

	"github.com/ringwake/ringwake/sqe"
	"github.com/ringwake/ringwake/waitqueue"
)

// batch is one batch buffer: a stretch of the log, in memory, at file
// offset off of segment seg. buf[0:n] is filled; buf[0:done] is in the file.
// Appenders only ever write at buf[n:], so the bytes a write in flight reads
// never change under it (O_DIRECT's DMA reads them from this memory).
type batch struct {
	buf    []byte
	seg    *segment
	off    int64
	n      int
	done   int
	recs   int    // records framed in this buffer
	last   uint64 // LSN of the last record in or before this buffer
	sealed bool   // full or closed by recEnd: takes no more records
	eos    bool   // ends with recEnd
}

// tailInit is how the next buffer to become fill starts: at off in seg, with
// pre[:preLen] already in place, a copy of the partial last block the
// previous buffer ended with (O_DIRECT rewrites that block whole), or the
// header block of a new segment.
type tailInit struct {
	seg     *segment
	off     int64
	pre     [blockSize]byte
	preLen  int
	written bool // pre is a tail the previous buffer writes, not a header still to write
}

// writeOp is the write in flight: buf[start:end] of b (the last block padded
// through scratch under O_DIRECT), length bytes in all.
type writeOp struct {
	b          *batch
	start, end int
	length     int
	cover      uint64 // the last LSN whose record the write completes
	final      bool   // it carries its segment's recEnd
	linked     bool   // an fdatasync is linked behind it
}

// syncOp is the fdatasync in flight.
type syncOp struct {
	seg     *segment
	cover   uint64 // LSN durable once it succeeds
	final   bool   // covers its segment's recEnd: the segment is complete
	linked  bool
	invalid bool     // its linked write failed or was short: its result proves nothing
	took    segCover // the unsynced entry a linked fdatasync took over
	hasTook bool     // took is set
	wrote   bool     // its linked write's completion was seen
	early   bool     // completed before its linked write's completion was seen
	earlyRe int32    // that completion's result
}

// segCover is written data of seg that no fdatasync covers yet.
type segCover struct {
	seg   *segment
	cover uint64
	final bool
}

// plan is what kickLocked decided to submit, submitted after l.mu is released.
type plan struct {
	n     int
	ss    [4]sqe.SQE
	dones [4]func(res int32, flags uint32)
}

// wakes is who to wake once l.mu is released.
type wakes struct {
	commit   bool   // broadcast on commitQ with key
	key      uint64 // the durable LSN, or math.MaxUint64 on failure
	space    int    // exclusive waiters to wake on spaceQ (one per freed buffer)
	spaceAll bool   // wake every space waiter (failure)
}

var errNoSpace = errors.New("wal: no buffer space")

// Append adds record to the log and returns its LSN once an fdatasync has
// covered it. Concurrent Appends share writes and fdatasyncs. When ctx ends
// first, Append returns ctx.Err(); if the record was already queued, its LSN
// comes back with the error and the record may still become durable. After a
// write or fdatasync failed, Append returns that failure (errors.Is works
// with the errno) until the log is reopened. record is copied: the caller may
// reuse it once Append returns.
func (l *Log) Append(ctx context.Context, record []byte) (uint64, error) {
	if ctx == nil {
		return 0, errors.New("wal: Append with a nil context")
	}
	if len(record) > l.maxRec {
		return 0, fmt.Errorf("%w: %d bytes, at most %d", ErrTooLarge, len(record), l.maxRec)
	}
	if err := ctx.Err(); err != nil {
		return 0, err
	}
	l.mu.Lock()
	lsn, err := l.reserveLocked(record)
	if err != errNoSpace {
		l.finishLocked(wakes{})
	} else {
		l.mu.Unlock()
		l.stats.spaceWaits.Add(1)
		werr := l.spaceQ.WaitExclusive(ctx, func() bool {
			l.mu.Lock()
			defer l.mu.Unlock()
			lsn, err = l.reserveLocked(record)
			return err != errNoSpace
		})
		if werr != nil {
			return 0, werr
		}
		var wk wakes
		l.mu.Lock()
		if err == nil && l.fill != nil {
			// One wake-up per freed buffer: pass it on while the buffer has room.
			wk.space = 1
		}
		l.finishLocked(wk)
	}
	if err != nil {
		return 0, err
	}
	if err := l.waitDurable(ctx, lsn); err != nil {
		return lsn, err
	}
	return lsn, nil
}

// reserveLocked frames record into the fill buffer and gives it the next
// LSN, sealing the buffer or rolling the segment when it does not fit.
func (l *Log) reserveLocked(record []byte) (uint64, error) {
	need := recHdrSize + len(record)
	for {
		switch {
		case l.err != nil:
			return 0, l.err
		case l.closing:
			return 0, ErrClosed
		}
		b := l.fill
		if b == nil {
			return 0, errNoSpace
		}
		// Both checks keep room for a recEnd header after the record.
		if b.off+int64(b.n+need+recHdrSize) > b.seg.size {
			if b.recs == 0 && b.off == 0 && b.n == blockSize {
				// An empty new segment: only an older, smaller segment size could get here.
				return 0, fmt.Errorf("%w: %d bytes do not fit in a %d-byte segment", ErrTooLarge, len(record), b.seg.size)
			}
			l.rollLocked(b)
			continue
		}
		if b.n+need+recHdrSize > len(b.buf) {
			l.sealLocked(b)
			continue
		}
		lsn := l.nextLSN
		l.nextLSN++
		b.n += putRecord(b.buf[b.n:], lsn, recData, record)
		b.recs++
		b.last = lsn
		l.stats.appends.Add(1)
		if l.settling {
			l.settleSeen++
			if l.settleTarget > 0 && l.settleSeen >= l.settleTarget {
				l.endSettleLocked(true) // the crowd is back: this appender's kick commits it
			}
		}
		return lsn, nil
	}
}

// sealLocked closes the full fill buffer; the next one continues the segment.
func (l *Log) sealLocked(b *batch) {
	b.sealed = true
	l.fill = nil
	t := &l.tail
	t.seg, t.written = b.seg, true
	if l.direct {
		a := int(alignDown(int64(b.n)))
		t.off = b.off + int64(a)
		t.preLen = copy(t.pre[:], b.buf[a:b.n])
	} else {
		t.off, t.preLen = b.off+int64(b.n), 0
	}
	l.reapLocked()
}

// rollLocked closes the fill buffer with recEnd and moves the log to the
// next segment, whose header the next buffer starts with.
func (l *Log) rollLocked(b *batch) {
	b.n += putRecord(b.buf[b.n:], l.nextLSN, recEnd, nil)
	b.eos, b.sealed = true, true
	l.fill = nil
	if l.next == nil {
		l.prepNextLocked(true) // not started yet: the new segment's records wait for it
	}
	seg := l.next
	l.next = nil
	seg.firstLSN = l.nextLSN
	l.rolled = append(l.rolled, l.cur)
	l.cur = seg
	l.starts = append(l.starts, seg.firstLSN)
	l.stats.rolls.Add(1)
	t := &l.tail
	t.seg, t.off, t.preLen, t.written = seg, 0, blockSize, false
	segHeader{idx: seg.idx, firstLSN: seg.firstLSN, size: seg.size}.encode(t.pre[:])
	l.zeroDue = 0
	l.prepNextLocked(false) // now: it has the whole life of this one to be zero-filled
	l.reapLocked()
}

// installFillLocked makes a free buffer the fill buffer, if there is none.
func (l *Log) installFillLocked() bool {
	if l.fill != nil || len(l.free) == 0 {
		return false
	}
	b := l.free[len(l.free)-1]
	l.free = l.free[:len(l.free)-1]
	t := &l.tail
	*b = batch{buf: b.buf, seg: t.seg, off: t.off, last: l.nextLSN - 1}
	b.n = copy(b.buf, t.pre[:t.preLen])
	if t.written {
		b.done = b.n
	}
	l.queue = append(l.queue, b)
	l.fill = b
	return true
}

// toWriteLocked returns the first buffer with data to write, if any: buffers
// are written strictly in log order.
func (l *Log) toWriteLocked() *batch {
	for _, b := range l.queue {
		if b.done < b.n {
			if b.recs == 0 && !b.eos {
				return nil // a fill buffer holding only a header or a tail copy
			}
			return b
		}
	}
	return nil
}

// kickLocked decides the pipeline's next step and returns what to submit:
//   - one write at a time, in log order, once its segment is ready; while an
//     fdatasync is in flight it goes down alone (unless noOverlap), otherwise
//     linked to an fdatasync of its segment in the same submission;
//   - one fdatasync at a time: when none is in flight and written data is not
//     yet covered, for the oldest such segment, unless a write to that same
//     segment is in flight (its completion links or issues the fdatasync);
//   - with a write to the current segment, maybe a slice of the next
//     segment's zero-fill (prepZeroLocked).
//
// Nothing starts after a failure or while the log settles (settle.go).
func (l *Log) kickLocked() (p plan) {
	if l.err != nil || l.hold || l.settling {
		return
	}
	if l.writing == nil && (!l.syncing || !l.opts.noOverlap) {
		if b := l.toWriteLocked(); b != nil {
			switch {
			case b.seg.ready && !b.seg.zeroing:
				// (A zero-fill write still in flight when its segment became
				// current could land on these records: wait for it.)
				l.prepWriteLocked(b, &p)
			case b.seg.err != nil:
				l.failLocked(b.seg.err)
				return
			}
		}
	}
	if !l.syncing && len(l.unsynced) > 0 {
		u := l.unsynced[0]
		if l.writing == nil || l.writing.seg != u.seg {
			l.unsynced = append(l.unsynced[:0], l.unsynced[1:]...)
			l.syncing = true
			l.s = syncOp{seg: u.seg, cover: u.cover, final: u.final}
			l.prepSync(u.seg, &p)
		}
	}
	return
}

func (l *Log) prepWriteLocked(b *batch, p *plan) {
	start, end := b.done, b.n
	if l.direct {
		start = int(alignDown(int64(start)))
	}
	l.w = writeOp{b: b, start: start, end: end, cover: b.last, final: b.eos}
	l.writing = b
	s := &p.ss[p.n]
	off := uint64(b.off) + uint64(start)
	fd := b.seg.fd
	switch full := int(alignDown(int64(end))); {
	case !l.direct || full == end:
		s.PrepWrite(fd, b.buf[start:end], off)
		l.w.length = end - start
	default:
		// The partial last block goes from scratch, zero-padded: appenders
		// keep filling it in buf while the write is in flight.
		copy(l.scratch, b.buf[full:end])
		clear(l.scratch[end-full:])
		if full == start {
			s.PrepWrite(fd, l.scratch, off)
		} else {
			l.iov[0].Base, l.iov[0].Len = unsafe.SliceData(b.buf[start:]), uint64(full-start)
			l.iov[1].Base, l.iov[1].Len = unsafe.SliceData(l.scratch), blockSize
			s.PrepWritev(fd, l.iov[:], off)
		}
		l.w.length = full + blockSize - start
	}
	p.dones[p.n] = l.onWrite
	p.n++
	l.stats.writes.Add(1)
	defer l.prepZeroLocked(b, end-max(b.done, start), p)
	// Link an fdatasync when it would cover every written byte: a second
	// segment's pending data needs an fdatasync of that segment first.
	if l.syncing || len(l.unsynced) > 1 || (len(l.unsynced) == 1 && l.unsynced[0].seg != b.seg) {
		return
	}
	s.Flags |= sqe.IOLink
	l.w.linked = true
	l.syncing = true
	l.s = syncOp{seg: b.seg, cover: l.w.cover, final: l.w.final, linked: true}
	if len(l.unsynced) == 1 {
		l.s.took, l.s.hasTook = l.unsynced[0], true
		l.unsynced = l.unsynced[:0]
	}
	l.stats.linked.Add(1)
	l.prepSync(b.seg, p)
}

// Zero-fill: the next segment is overwritten with zeros while the current
// one fills, in slices that ride along with the commits, so that it is all
// written blocks by the time the log rolls into it. Slicing it keeps the
// extra I/O from landing on a few commits as a burst; writing it to the next
// segment's inode, not ahead in the current one, keeps its extent
// conversions out of the current segment's fdatasyncs (ext4 commits the
// journal for an fdatasync only when the inode synced has metadata pending).
const (
	minZeroChunk = 16 << 10
	maxZeroChunk = 1 << 20
)

// prepZeroLocked adds to p a slice of the next segment's zero-fill, owed in
// proportion to the n bytes this write adds to the current segment: what
// the next segment still lacks, over the room left in the current one, plus
// a quarter.
func (l *Log) prepZeroLocked(b *batch, n int, p *plan) {
	z := l.next
	if l.opts.SkipZeroFill || l.opts.noZeroSlices || z == nil || !z.ready || z.zeroing || z.zeroed >= z.size || b.seg != l.cur || n <= 0 {
		return
	}
	left := max(b.seg.size-(b.off+int64(b.n)), blockSize)
	l.zeroDue += float64(n) * float64(z.size-z.zeroed) / float64(left) * 1.25
	if l.zeroDue < minZeroChunk && left > minZeroChunk {
		return
	}
	chunk := min(alignUp(int64(l.zeroDue)), maxZeroChunk, z.size-z.zeroed)
	l.zeroDue = max(0, l.zeroDue-float64(chunk))
	z.zeroing = true
	l.zeroSeg = z
	l.stats.zeroSlices.Add(1)
	s := &p.ss[p.n]
	fd := z.fd
	if l.testFail.Load()&failNextZero != 0 && l.testFail.And(^failNextZero)&failNextZero != 0 {
		fd = -1 // the kernel fails it (EBADF), and breaks the link after it
	}
	s.PrepWrite(fd, zeroBlock()[:chunk], uint64(z.zeroed))
	if l.direct {
		p.dones[p.n] = l.onZero
		p.n++
		return
	}
	// Buffered zeros would sit dirty in the page cache until the roll, and
	// the new segment's first fdatasync would write them all: push each
	// slice out now.
	s.Flags |= sqe.IOLink
	p.dones[p.n] = l.onZeroWrite
	p.n++
	p.ss[p.n].PrepSyncFileRange(z.fd, uint32(chunk), uint64(z.zeroed), syncFileRangeWrite|syncFileRangeWaitAfter)
	p.dones[p.n] = l.onZero
	p.n++
}

const (
	syncFileRangeWrite     = 2 // SYNC_FILE_RANGE_WRITE
	syncFileRangeWaitAfter = 4 // SYNC_FILE_RANGE_WAIT_AFTER
)

// zeroWriteDone is the buffered-mode zero write, linked to a sync_file_range
// whose completion (zeroDone) ends the slice.
func (l *Log) zeroWriteDone(res int32, _ uint32) {
	l.mu.Lock()
	l.zeroRes = res
	l.mu.Unlock()
}

// zeroDone ends a zero-fill slice. A failure stops the zero-fill of that
// segment, nothing more: it is only an optimization, and a device that
// fails it will fail the log's own writes too.
func (l *Log) zeroDone(res int32, _ uint32) {
	l.mu.Lock()
	z := l.zeroSeg
	if !l.direct && (res >= 0 || l.zeroRes < 0) {
		// The write's own result; when it failed, the linked
		// sync_file_range's ECANCELED is only the broken link.
		res = l.zeroRes
	}
	z.zeroing = false
	l.zeroSeg = nil
	if res == -int32(syscall.ECANCELED) {
		// Canceled by the kernel before it ran (kernelCanceledLocked): the
		// next slice covers the same range.
	} else if res > 0 {
		z.zeroed += int64(res)
	} else {
		z.zeroed = z.size
	}
	l.finishLocked(wakes{})
}

func (l *Log) prepSync(seg *segment, p *plan) {
	l.syncStart = time.Now()
	p.ss[p.n].PrepFsync(seg.fd, sqe.FsyncDatasync)
	p.dones[p.n] = l.onSync
	p.n++
	l.stats.syncs.Add(1)
}

// submit sends what kickLocked decided, as one submission.
func (l *Log) submit(p plan) {
	if p.n == 0 {
		return
	}
	if err := l.ring.SubmitBatch(p.ss[:p.n], p.dones[:p.n]); err != nil {
		// Nothing went down: undo the in-flight marks and fail.
		l.mu.Lock()
		for i := 0; i < p.n; i++ {
			if p.ss[i].Opcode == sqe.OpFsync {
				l.syncing = false
			} else {
				l.writing = nil
			}
		}
		l.failLocked(fmt.Errorf("wal: submit: %w", err))
		l.finishLocked(wakes{})
	}
}

// finishLocked ends every critical section that may have moved the
// pipeline: it takes the next step, wakes whoever must be woken once l.mu is
// released, and submits. It unlocks l.mu.
func (l *Log) finishLocked(wk wakes) int {
	p := l.kickLocked()
	if l.failWake {
		// A failure wakes everyone: commit waiters with a key that reaches
		// them all (they find the error), and every space waiter.
		l.failWake = false
		wk.commit, wk.key, wk.spaceAll = true, math.MaxUint64, true
	}
	l.checkDrainedLocked()
	l.mu.Unlock()
	n := l.wake(wk)
	l.submit(p)
	return n
}

// Test hooks: make the next write or fdatasync completion fail with EIO, or
// come back ECANCELED as from a kernel-side cancel (cancelAlways keeps doing
// the latter); make the next zero-fill write fail in the kernel.
const (
	failNextWrite uint32 = 1 << iota
	failNextSync
	cancelNextWrite
	cancelNextSync
	cancelAlways
	failNextZero // the next zero-fill write goes to fd -1
)

func (l *Log) injected(res int32, bit uint32) int32 {
	if res >= 0 && l.testFail.Load()&bit != 0 && l.testFail.And(^bit)&bit != 0 {
		return -int32(syscall.EIO)
	}
	cbit := cancelNextWrite
	if bit == failNextSync {
		cbit = cancelNextSync
	}
	if res >= 0 && (l.testFail.Load()&cancelAlways != 0 || (l.testFail.Load()&cbit != 0 && l.testFail.And(^cbit)&cbit != 0)) {
		return -int32(syscall.ECANCELED)
	}
	return res
}

// maxKernelCancels is how many commit requests in a row the kernel may
// cancel (without an fdatasync succeeding in between) before the log
// gives up with ECANCELED.
const maxKernelCancels = 8

// kernelCanceledLocked reports whether a write or fdatasync that came back
// ECANCELED may be submitted again, and counts it. The log cancels none of
// its own requests (Close waits for them), so an ECANCELED while it is open
// is the kernel's: io-wq cancels work that waits for a worker it cannot
// create (under a storm of signals to the process) or whose submitting
// thread exited. Such a request never ran: running it again is neither a
// retried failure (see failLocked) nor a reordering, since nothing later was
// submitted behind it.
func (l *Log) kernelCanceledLocked(res int32) bool {
	if res != -int32(syscall.ECANCELED) || l.kernelCancels >= maxKernelCancels {
		return false
	}
	l.kernelCancels++
	l.stats.retried.Add(1)
	return true
}

// writeDone runs on the poller when the write in flight completes.
func (l *Log) writeDone(res int32, _ uint32) {
	res = l.injected(res, failNextWrite)
	var wk wakes
	l.mu.Lock()
	l.writeDoneLocked(res, &wk)
	if l.s.early {
		// The linked fdatasync's completion was seen first: handle it now.
		l.syncDoneLocked(l.s.earlyRe, &wk)
	}
	l.finishLocked(wk)
}

func (l *Log) writeDoneLocked(res int32, wk *wakes) {
	w := &l.w
	b := w.b
	l.writing = nil
	if w.linked {
		l.s.wrote = true
	}
	if res < 0 || int(res) < w.length {
		if w.linked {
			// The kernel cancels the linked fdatasync; should it run anyway,
			// its success must not count for this write.
			l.s.invalid = true
		}
		if l.kernelCanceledLocked(res) {
			return // as a short write of nothing: the next kick writes it again
		}
		if res >= 0 && l.shortWrites < maxShortWrites {
			// b.done did not move: the next kick writes the same bytes
			// again (and any appended since), which is idempotent.
			l.shortWrites++
			return
		}
		if res >= 0 {
			l.failLocked(fmt.Errorf("wal: write %s at offset %d: %d of %d bytes: %w", b.seg.name(), b.off+int64(w.start), res, w.length, io.ErrShortWrite))
		} else {
			l.failLocked(fmt.Errorf("wal: write %s at offset %d: %w", b.seg.name(), b.off+int64(w.start), syscall.Errno(-res)))
		}
		return
	}
	l.shortWrites = 0
	b.done = w.end
	if !w.linked {
		if n := len(l.unsynced); n > 0 && l.unsynced[n-1].seg == b.seg {
			u := &l.unsynced[n-1]
			u.cover, u.final = max(u.cover, w.cover), u.final || w.final
		} else {
			l.unsynced = append(l.unsynced, segCover{seg: b.seg, cover: w.cover, final: w.final})
		}
	}
	wk.space += l.reapLocked()
}

// reapLocked frees the sealed buffers at the front of the queue whose data is
// all written: the fdatasync needs the page cache or the device, not this
// memory. It returns how many free buffers became fill buffers (at most one).
func (l *Log) reapLocked() int {
	for len(l.queue) > 0 {
		b := l.queue[0]
		if !b.sealed || b.done < b.n || b == l.writing {
			break
		}
		l.queue = append(l.queue[:0], l.queue[1:]...)
		l.free = append(l.free, b)
	}
	if l.installFillLocked() {
		return 1
	}
	return 0
}

// maxShortWrites is how many short writes in a row are retried before the
// log fails with io.ErrShortWrite.
const maxShortWrites = 3

// syncDone runs on the poller when the fdatasync in flight completes.
func (l *Log) syncDone(res int32, _ uint32) {
	res = l.injected(res, failNextSync)
	l.mu.Lock()
	if l.s.linked && !l.s.wrote {
		// A linked fdatasync starts after its write completes, so its
		// completion should never come first; if it does, wait for the write's.
		l.s.early, l.s.earlyRe = true, res
		l.mu.Unlock()
		return
	}
	var wk wakes
	l.syncDoneLocked(res, &wk)
	settle := wk.commit && l.err == nil && l.startSettleLocked()
	epoch := l.settleEpoch
	woken := l.finishLocked(wk)
	if settle {
		l.settleArm(epoch, woken)
	}
}

func (l *Log) syncDoneLocked(res int32, wk *wakes) {
	s := l.s
	l.syncing = false
	l.s = syncOp{}
	switch {
	case s.invalid:
		// Its write failed or fell short: what it took over is still unsynced.
		if s.hasTook {
			l.unsynced = append([]segCover{s.took}, l.unsynced...)
		}
	case l.kernelCanceledLocked(res):
		// It never ran: what it was to cover is unsynced again, ahead of
		// anything written since, and the next kick syncs it.
		u := segCover{seg: s.seg, cover: s.cover, final: s.final || (s.hasTook && s.took.final)}
		if len(l.unsynced) > 0 && l.unsynced[0].seg == u.seg {
			u.cover, u.final = max(u.cover, l.unsynced[0].cover), u.final || l.unsynced[0].final
			l.unsynced[0] = u
		} else {
			l.unsynced = append([]segCover{u}, l.unsynced...)
		}
	case res < 0:
		l.failLocked(fmt.Errorf("wal: fdatasync %s: %w", s.seg.name(), syscall.Errno(-res)))
	case l.err != nil:
		// Sticky: a success after a failure proves nothing for the records
		// the failure may have lost, so it is not reported.
	default:
		l.kernelCancels = 0
		if s.cover > l.durable.Load() {
			l.durable.Store(s.cover)
		}
		wk.commit, wk.key = true, l.durable.Load()
		if s.final {
			// The segment's recEnd is durable: its file is done with.
			for i, r := range l.rolled {
				if r == s.seg {
					l.rolled = append(l.rolled[:i], l.rolled[i+1:]...)
					// Nothing is in flight on it; File.Close does not block then.
					r.f.Close()
					r.f = nil
					l.cond.Broadcast() // TruncateFront may be waiting to drop it
					break
				}
			}
		}
	}
}

// failLocked makes err the Log's sticky error; finishLocked wakes everyone.
func (l *Log) failLocked(err error) {
	if l.err == nil {
		l.err = err
		l.failed.Store(true)
		l.failWake = true
		l.cond.Broadcast()
	}
}

func (l *Log) wake(wk wakes) (woken int) {
	if wk.commit {
		woken = l.commitQ.WakeUpAll(wk.key)
		l.stats.wakeups.Add(uint64(woken))
	}
	switch {
	case wk.spaceAll:
		l.spaceQ.WakeUpAll(0)
	case wk.space > 0:
		l.spaceQ.WakeUpNr(wk.space, 0)
	}
	return woken
}

// drainedLocked reports whether Close has nothing left to wait for.
func (l *Log) drainedLocked() bool {
	if l.writing != nil || l.syncing || l.zeroSeg != nil {
		return false
	}
	return l.err != nil || (l.toWriteLocked() == nil && len(l.unsynced) == 0)
}

func (l *Log) checkDrainedLocked() {
	if l.drainCh != nil && l.drainedLocked() {
		close(l.drainCh)
		l.drainCh = nil
	}
}

// commitWaiter is an appender waiting for its record to be durable.
type commitWaiter struct {
	e   waitqueue.Entry
	lsn uint64
	ch  chan struct{}
}

// commitWake is the commit queue's wake function: the key is the durable LSN,
// and a waiter whose record it does not cover stays queued.
var commitWake = waitqueue.AutoRemove(func(e *waitqueue.Entry, key uint64) int {
	w := e.Private.(*commitWaiter)
	if key < w.lsn {
		return 0
	}
	select {
	case w.ch <- struct{}{}:
	default:
	}
	return 1
})

var waiterPool = sync.Pool{New: func() any {
	w := &commitWaiter{ch: make(chan struct{}, 1)}
	w.e.Func = commitWake
	w.e.Private = w
	return w
}}

// waitDurable sleeps until lsn is durable, the log fails, or ctx ends.
func (l *Log) waitDurable(ctx context.Context, lsn uint64) error {
	if l.durable.Load() >= lsn {
		return nil
	}
	w := waiterPool.Get().(*commitWaiter)
	w.lsn = lsn
	done := ctx.Done()
	var err error
	for {
		// prepare_to_wait: queue first, then check, so no wake-up is lost.
		l.commitQ.Add(&w.e)
		if l.durable.Load() >= lsn || l.failed.Load() {
			break
		}
		select {
		case <-w.ch:
			continue
		case <-done:
			err = ctx.Err()
		}
		break
	}
	l.commitQ.FinishWait(&w.e)
	select {
	case <-w.ch:
	default:
	}
	waiterPool.Put(w)
	switch {
	case l.durable.Load() >= lsn:
		// Durable before any failure: durable never moves once the log failed.
		return nil
	case l.failed.Load():
		l.mu.Lock()
		defer l.mu.Unlock()
		return l.err
	}
	return err
}
