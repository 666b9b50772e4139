// The issue stage: kickLocked decides, under l.mu, the pipeline's next
// requests and finishLocked submits them once l.mu is released. Invariant:
// at most one write and one fdatasync are in flight; writes go down strictly
// in log order; an fdatasync is linked behind a write only when it covers
// every written byte.

package wal

import (
	"errors"
	"fmt"
	"math"
	"syscall"
	"time"
	"unsafe"

	"golang.org/x/sys/unix"

	"github.com/ringwake/ringwake/sqe"
)

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
	wlen  int32   // the bytes its write carries, if it has one
	niov  int     // its write as l.iov[:niov]
	dsync bool    // its linked fdatasync need cover only its write (inline.go)
	zero  [4]bool // the entry is part of a zero-fill slice
	// merged: its first entry is a write carrying its fdatasync
	// (RWF_DSYNC), which stands for the linked pair (ringDsync).
	merged bool
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
//     fdatasync is in flight it goes down alone (unless noOverlap, or the
//     caller could make the commit inline: see below), otherwise linked to
//     an fdatasync of its segment in the same submission;
//   - one fdatasync at a time: when none is in flight and written data is not
//     yet covered, for the oldest such segment, unless a write to that same
//     segment is in flight (its completion links or issues the fdatasync);
//   - with a write to the current segment, maybe a slice of the next
//     segment's zero-fill (prepZeroLocked).
//
// Nothing starts after a failure or while the log settles (settle.go).
//
// inline says the caller is an appender that would make a commit itself
// (inline.go). It then writes nothing alone while an fdatasync is in
// flight: the records wait for the next commit, which an appender makes
// inline, as a write and its fdatasync, once the fdatasync completes. A
// write alone would leave its fdatasync to the completion, on the ring
// (measured: about 10% fewer appends/s at 16-256 appenders, bench/walpebble).
func (l *Log) kickLocked(inline bool) (p plan) {
	if l.err != nil || l.hold || l.settling {
		return
	}
	if l.writing == nil && (!l.syncing || !(l.opts.noOverlap || inline)) {
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
	l.sealGenLocked()
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
		l.iov[0].Base, l.iov[0].Len = unsafe.SliceData(b.buf[start:]), uint64(end-start)
		p.niov = 1
		l.w.length = end - start
	default:
		// The partial last block goes from scratch, zero-padded: appenders
		// keep filling it in buf while the write is in flight.
		copy(l.scratch, b.buf[full:end])
		clear(l.scratch[end-full:])
		if full == start {
			s.PrepWrite(fd, l.scratch, off)
			l.iov[0].Base, l.iov[0].Len = unsafe.SliceData(l.scratch), blockSize
			p.niov = 1
		} else {
			l.iov[0].Base, l.iov[0].Len = unsafe.SliceData(b.buf[start:]), uint64(full-start)
			l.iov[1].Base, l.iov[1].Len = unsafe.SliceData(l.scratch), blockSize
			s.PrepWritev(fd, l.iov[:], off)
			p.niov = 2
		}
		l.w.length = full + blockSize - start
	}
	p.wlen = int32(l.w.length)
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
	// Under O_DIRECT, with nothing written before it left unsynced, the
	// fdatasync need cover only this write: an inline commit may make both
	// one pwritev2(RWF_DSYNC) (inline.go).
	p.dsync = l.direct && !l.s.hasTook && !l.noDsync.Load()
	l.stats.linked.Add(1)
	l.prepSync(b.seg, p)
}

func (l *Log) prepSync(seg *segment, p *plan) {
	l.syncStart = time.Now()
	p.ss[p.n].PrepFsync(seg.fd, sqe.FsyncDatasync)
	p.dones[p.n] = l.onSync
	p.n++
	l.stats.syncs.Add(1)
}

var errInjectedSubmit = errors.New("injected submission failure")

// ringDsync turns a commit whose fdatasync need cover only its write
// (plan.dsync: O_DIRECT, nothing earlier left unsynced) into one write with
// RWF_DSYNC. Through the ring an fdatasync always goes to an io-wq worker
// thread, while an O_DIRECT write with RWF_DSYNC completes in the kernel
// without one, as fast as the pwritev2(RWF_DSYNC) an inline commit makes
// (78-81 µs at p50 for a 4 KiB overwrite, against 126-141 µs for the
// write and its linked fdatasync), and no thread waits in it.
func (l *Log) ringDsync(p plan) plan {
	l.dsyncPlan = p
	q := p
	q.ss[0].Flags &^= sqe.IOLink
	q.ss[0].OpFlags = unix.RWF_DSYNC
	q.dones[0] = l.onDsync
	q.n = 1 + copy(q.ss[1:], p.ss[2:p.n])
	copy(q.dones[1:], p.dones[2:p.n])
	copy(q.zero[1:], p.zero[2:p.n])
	q.merged = true
	return q
}

// dsyncDone completes a write that carried its fdatasync (ringDsync) as
// the ring would complete the linked pair: the write's result, then the
// fdatasync's, canceled when the write fell short (a broken link). A
// kernel that refuses the flag wrote nothing: the pair goes down instead.
// want is read first: the write's completion may start the next commit,
// whose submission rewrites dsyncPlan.
func (l *Log) dsyncDone(res int32, _ uint32) {
	if res >= 0 && l.testFail.Load()&refuseNextDsync != 0 && l.testFail.And(^refuseNextDsync)&refuseNextDsync != 0 {
		res = -int32(unix.EOPNOTSUPP) // tests: as a kernel refusing the flag (the write went down; its retry rewrites the same bytes)
	}
	if res == -int32(unix.EOPNOTSUPP) {
		l.noDsync.Store(true)
		// The pair alone: the zero-fill slices that rode along went down.
		pair := l.dsyncPlan
		pair.n = 2
		l.submit(pair)
		return
	}
	want := l.dsyncPlan.wlen
	l.writeDoneBy(res, byRing, "write+fdatasync")
	if res == want {
		l.stats.dsync.Add(1)
		l.syncDoneBy(0, false)
		return
	}
	l.syncDone(-int32(syscall.ECANCELED), 0)
}

// submit sends what kickLocked decided, as one submission.
func (l *Log) submit(p plan) {
	if p.n == 0 {
		return
	}
	if p.dsync && !l.noDsync.Load() && p.n >= 2 && isWrite(p.ss[0].Opcode) && p.ss[0].Flags&sqe.IOLink != 0 && p.ss[1].Opcode == sqe.OpFsync {
		p = l.ringDsync(p)
	}
	var err error
	if p.zero[p.n-1] && l.testFail.Load()&failNextZeroSubmit != 0 && l.testFail.And(^failNextZeroSubmit)&failNextZeroSubmit != 0 {
		err = errInjectedSubmit
	} else {
		err = l.ring.SubmitBatch(p.ss[:p.n], p.dones[:p.n])
	}
	if err != nil {
		// Nothing went down: undo the in-flight marks and fail.
		l.mu.Lock()
		for i := 0; i < p.n; i++ {
			switch {
			case p.zero[i]:
				if z := l.zeroSeg; z != nil {
					z.zeroing, l.zeroSeg = false, nil
				}
			case p.ss[i].Opcode == sqe.OpFsync:
				l.syncing = false
			default:
				l.writing = nil
				if i == 0 && p.merged {
					l.syncing = false
				}
			}
		}
		l.failLocked(fmt.Errorf("wal: submit: %w", err))
		l.finishLocked(wakes{})
	}
}

// finishLocked ends every critical section that may have moved the
// pipeline: it takes the next step, wakes whoever must be woken once l.mu is
// released, and submits. It unlocks l.mu.
func (l *Log) finishLocked(wk wakes) int { return l.finish(wk, byRing) }

// actor is who runs finish, which decides what the kick may do.
type actor uint8

const (
	// byRing: a ring completion, a segment's preparation, an appender whose
	// ctx can end: whatever the kick starts goes to the ring.
	byRing actor = iota
	// byAppender: an appender that may make the commit it starts itself
	// (inline.go).
	byAppender
)

func (l *Log) finish(wk wakes, a actor) int {
	// A completion's kick while the kernel keeps canceling ring commits
	// (kernelCanceledLocked) plans as an inline appender would, and the
	// commit is made directly, on a goroutine of its own: a completion
	// must not block in an fdatasync.
	bypass := a == byRing && l.bypassRing && inlineArch
	p := l.kickLocked(bypass || (a != byRing && !l.opts.noInline))
	if l.failWake {
		// A failure wakes everyone: commit waiters with a key that reaches
		// them all (they find the error), and every space waiter.
		l.failWake = false
		l.sealGenLocked()
		wk.commit, wk.key, wk.spaceAll = true, math.MaxUint64, true
	}
	l.checkDrainedLocked()
	l.mu.Unlock()
	n := l.wake(wk)
	if p.n == 0 {
		// Most kicks start nothing: return before passing on the plan,
		// which is copied by value (3-4% of the CPU of 256 appenders).
		return n
	}
	switch {
	case a == byAppender:
		l.runInline(&p, false)
	case bypass:
		// Owned by the Log: the in-flight marks kickLocked set hold Close
		// until its completions ran, and Close waits for it to return.
		// A copy of its own, so that p stays on the stack of every other
		// finish.
		d := new(plan)
		*d = p
		l.directWG.Add(1)
		go func() {
			defer l.directWG.Done()
			l.runInline(d, true)
		}()
	default:
		l.submit(p)
	}
	return n
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
