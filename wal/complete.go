// The completion stage: writeDone and syncDone run on the ring's poller
// and move the pipeline's state. Invariant: durable only moves forward, on
// a successful fdatasync whose linked write (if any) completed in full; a
// failure is sticky; a request the kernel canceled before it ran is issued
// again, nothing else is retried except short writes.

package wal

import (
	"fmt"
	"io"
	"syscall"
)

// Test hooks: make the next write or fdatasync completion fail with EIO, or
// come back ECANCELED as from a kernel-side cancel (cancelAlways keeps doing
// the latter, cancelRing for those through the ring only, the kernel's own
// case); make the next zero-fill write fail in the kernel, or the next
// submission of one fail in SubmitBatch.
const (
	failNextWrite uint32 = 1 << iota
	failNextSync
	cancelNextWrite
	cancelNextSync
	cancelAlways
	failNextZero       // the next zero-fill write goes to fd -1
	failNextZeroSubmit // the next submission holding a zero-fill slice fails
	refuseNextDsync    // the next ring write with RWF_DSYNC reports the flag refused
	cancelRing         // every write and fdatasync through the ring comes back ECANCELED, as under a signal storm
)

// injected applies the test hooks to a write's or fdatasync's result;
// byRing says it went through the ring, which cancelRing needs.
func (l *Log) injected(res int32, bit uint32, byRing bool) int32 {
	if res >= 0 && l.testFail.Load()&bit != 0 && l.testFail.And(^bit)&bit != 0 {
		return -int32(syscall.EIO)
	}
	if res >= 0 && byRing && l.testFail.Load()&cancelRing != 0 {
		return -int32(syscall.ECANCELED)
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
// cancel (without an fdatasync succeeding in between) before the log stops
// sending commits to the ring and makes them directly (bypassRing).
const maxKernelCancels = 8

// maxCancelsBypassed bounds the cancels counted while commits bypass the
// ring, which only ring requests already in flight can meet: past it the
// log gives up with ECANCELED rather than spin.
const maxCancelsBypassed = 64

// kernelCanceledLocked reports whether a write or fdatasync that came back
// ECANCELED may be issued again, and counts it. The log cancels none of
// its own requests (Close waits for them), so an ECANCELED while it is open
// is the kernel's: io-wq cancels work that waits for a worker it cannot
// create (under a storm of signals to the process) or whose submitting
// thread exited. Such a request never ran: running it again is neither a
// retried failure (see failLocked) nor a reordering, since nothing later was
// submitted behind it. Past maxKernelCancels in a row, the commits that
// completions start are made directly (bypassRing): a storm that outlasts
// the retries would otherwise fail the log for requests that never ran.
func (l *Log) kernelCanceledLocked(res int32) bool {
	if res != -int32(syscall.ECANCELED) || l.kernelCancels >= maxCancelsBypassed {
		return false
	}
	l.kernelCancels++
	l.stats.retried.Add(1)
	if l.kernelCancels >= maxKernelCancels {
		l.bypassRing = true
	}
	return true
}

// writeDone runs on the poller when the write in flight completes (or on
// the appender that made it inline).
func (l *Log) writeDone(res int32, _ uint32) { l.writeDoneBy(res, byRing, "write") }

// writeDoneBy is writeDone; a says who made the write, and op how, for
// errors: "write", or "write+fdatasync" when one pwritev2(RWF_DSYNC) made
// it with its fdatasync (inline.go), whose failure may be either's.
func (l *Log) writeDoneBy(res int32, a actor, op string) {
	res = l.injected(res, failNextWrite, a == byRing)
	var wk wakes
	l.mu.Lock()
	l.writeDoneLocked(res, &wk, op)
	if l.s.early {
		// The linked fdatasync's completion was seen first: handle it now.
		l.syncDoneLocked(l.s.earlyRe, &wk)
	}
	l.finish(wk, a)
}

func (l *Log) writeDoneLocked(res int32, wk *wakes, op string) {
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
			l.failLocked(fmt.Errorf("wal: %s %s at offset %d: %d of %d bytes: %w", op, b.seg.name(), b.off+int64(w.start), res, w.length, io.ErrShortWrite))
		} else {
			l.failLocked(fmt.Errorf("wal: %s %s at offset %d: %w", op, b.seg.name(), b.off+int64(w.start), syscall.Errno(-res)))
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
func (l *Log) syncDone(res int32, _ uint32) { l.syncDoneBy(res, false) }

// syncDoneBy is syncDone; direct says the fdatasync was a system call of
// the log's own, not a ring request.
func (l *Log) syncDoneBy(res int32, direct bool) {
	res = l.injected(res, failNextSync, !direct)
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
		l.kernelCancels, l.bypassRing = 0, false
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
