// Delivering completions: a batch of CQEs to their slots' entries.
//
// Invariant: exactly once. The CQ is read by one reaper at a time, whoever
// holds reapLock (the poller, an inline reaper, a yielding caller). A CQE
// is delivered only if its slot is in flight under its generation; a
// request's last CQE moves the slot out of flight before anyone is woken,
// and callback slots are freed under one lock before any callback runs, so
// a callback that resubmits finds a slot.

package poller

import (
	"fmt"
	"syscall"

	"github.com/ringwake/ringwake/internal/ring"
	"github.com/ringwake/ringwake/waitqueue"
	"golang.org/x/sys/unix"
)

type firedCallback struct {
	done  func(res int32, flags uint32)
	res   int32
	flags uint32
	idx   uint32
	final bool // the request's last completion: its slot is freed before callbacks run
}

// reap takes one batch of completions off the CQ and delivers it, unless
// another goroutine holds the reaper's lock (busy). guest says the caller
// is not the poller goroutine: a blocking caller reaping inline or while
// it yields, whose callbacks then run on its goroutine.
func (p *Poller) reap(guest bool) (n int, woke, busy bool) {
	// The CQ is read only under the lock, which Close takes for good
	// before it unmaps the ring: a caller whose completion another reaper
	// delivered meanwhile may still be on its way in.
	if !p.reapLock.CompareAndSwap(false, true) {
		return 0, false, true
	}
	if n = p.ring.PeekBatch(p.cqes); n > 0 {
		woke = p.dispatch(p.cqes[:n], guest)
	}
	p.reapLock.Store(false)
	return n, woke, false
}

// dispatch delivers a batch and reports whether it woke a parked
// goroutine. Callback slots are freed under one lock before any callback
// runs, so a callback that resubmits finds a slot.
func (p *Poller) dispatch(cqes []ring.CQE, guest bool) (woke bool) {
	fired := p.fired[:0]
	var done int64 // final completions of published SQEs, for pending
	var delivered, stale uint64
	var freed bool
	// A batch's completions count down its waiter once per run of them,
	// not once each: one atomic for the chunk instead of one per request.
	var bw *batchWaiter
	var bn int32
	var counted uint64 // completed, not yet added to stats: added before any wake
	var chunkUD uint64 // bw's members' user_data, less their index: checked already
	resume := p.resume[:0]
	republished := false // retries or resumes published: a guest kicks them
	for i := range cqes {
		c := &cqes[i]
		more := c.Flags&ring.CQEFMore != 0
		if c.UserData&internalTag != 0 {
			if !more {
				done++
			}
			if c.UserData&pauseTag != 0 {
				resume = append(resume, uint32(c.UserData))
			}
			continue
		}
		idx := uint32(c.UserData)
		if idx&memberBit != 0 {
			// A chunk's completions come in runs: the first of a run checks
			// the head, the others only that they are of the same chunk.
			if j := int(idx &^ memberBit >> memberShift); c.UserData&^memberJ == chunkUD && c.Res >= 0 && !more && j < bw.n {
				bw.res[j] = c.Res
				done++
				counted++
				bn++
				continue
			}
			b := p.member(c, idx&memberIdx, uint32(c.UserData>>32)&genMask, more)
			switch {
			case b == nil:
				stale++
				continue
			case more:
				continue
			}
			done++
			counted++
			if b != bw {
				p.countDown(bw, bn, &counted)
				bw, bn = b, 0
				chunkUD = c.UserData &^ memberJ
			}
			bn++
			woke = true
			continue
		}
		gen := uint32(c.UserData>>32) & genMask
		if idx >= uint32(len(p.slots)) {
			stale++
			continue
		}
		s := &p.slots[idx]
		if s.tag.Load() != uint64(gen)<<2|slotInFlight || s.batch != nil {
			// Never delivered, and not counted against pending: no SQE of
			// ours is behind it (a chunk's head never is: its members are).
			stale++
			continue
		}
		if !more {
			done++
		}
		if c.Res == -int32(syscall.ECANCELED) && !more && s.lone {
			p.mu.Lock()
			again := p.retryLocked(s, c.UserData)
			p.mu.Unlock()
			if again {
				republished = true
				continue
			}
		}
		if s.done != nil {
			delivered++
			fired = append(fired, firedCallback{s.done, c.Res, c.Flags, idx, !more})
			if !more {
				s.tag.Store(uint64(gen)<<2 | slotDone)
				freed = true
			}
			continue
		}
		if !more {
			s.tag.Store(uint64(gen)<<2 | slotDone)
		}
		// Counted before the wake: the woken goroutine may read Stats at once.
		p.stats.completed.Add(counted + 1)
		counted = 0
		s.entry.Func(&s.entry, packKey(c.Res, c.Flags))
		woke = true
	}
	p.countDown(bw, bn, &counted)
	if len(resume) > 0 {
		p.mu.Lock()
		for _, idx := range resume {
			if p.resumeLocked(idx) {
				republished = true
				continue
			}
			// The owed completion, delivered here: the slot is freed below.
			done++
			delivered++
			fired = append(fired, firedCallback{p.slots[idx].done, -int32(syscall.ECANCELED), 0, idx, true})
			freed = true
		}
		p.mu.Unlock()
		p.resume = resume[:0]
	}
	if freed {
		p.mu.Lock()
		for i := range fired {
			if fired[i].final {
				p.releaseLocked(fired[i].idx)
			}
		}
		p.mu.Unlock()
	}
	p.stats.completed.Add(delivered) // callbacks: counted before any runs
	// pending drops only after the batch's slots are consistent again, so
	// Close never sees zero while a callback still has to run.
	if len(fired) > 0 {
		if guest {
			// Callbacks on a caller's goroutine: a Submit they make with no
			// slot free must defer, as on the poller, not sleep (onPoller).
			p.reaperGoid.Store(curGoid())
		}
		if f := p.cfg.OnCallbacks; f != nil {
			f(true)
		}
		p.inCallbacks.Store(true)
		for i := range fired {
			p.call(fired[i].done, fired[i].res, fired[i].flags)
			fired[i].done = nil
		}
		p.inCallbacks.Store(false)
		if f := p.cfg.OnCallbacks; f != nil && guest {
			f(false)
		}
		if guest {
			p.reaperGoid.Store(0)
		}
	}
	p.pending.Add(-done)
	p.fired = fired[:0]
	if republished && guest {
		// The poller may sleep in the kernel until a completion that is
		// not coming: submit now, as any submitter would.
		p.kick()
	}
	if stale > 0 {
		p.stats.stale.Add(stale)
	}
	return woke
}

// countDown delivers n completions of b's chunk, waking its caller with
// the chunk's last; *counted goes to stats first, since the woken caller
// may read Stats at once.
func (p *Poller) countDown(b *batchWaiter, n int32, counted *uint64) {
	if b == nil {
		return
	}
	p.stats.completed.Add(*counted)
	*counted = 0
	if b.left.Add(-n) == 0 {
		if h := b.head; h != nil {
			h.tag.Store(uint64(h.gen)<<2 | slotDone)
		}
		b.ch <- struct{}{}
	}
}

// member delivers a completion of a SubmitAndWait chunk's request into its
// waiter: the waiter, or nil for a stale completion (not the head's
// generation in flight, or an index past the chunk). A lone member the
// kernel canceled on its own is marked for its caller to submit again
// (again), which the caller does once the chunk is over: only it holds the
// SQE.
func (p *Poller) member(c *ring.CQE, idx, gen uint32, more bool) *batchWaiter {
	if idx >= uint32(len(p.slots)) {
		return nil
	}
	h := &p.slots[idx]
	if h.tag.Load() != uint64(gen)<<2|slotInFlight {
		return nil
	}
	b := h.batch
	j := uint32(c.UserData) &^ memberBit >> memberShift
	if b == nil || int(j) >= b.n {
		return nil
	}
	if c.Res == -int32(syscall.ECANCELED) && !more && b.retry && b.lone&(1<<j) != 0 &&
		!p.closed.Load() && b.cancelGen == p.cancelGen.Load() {
		b.again |= 1 << j
	}
	b.res[j] = c.Res
	return b
}

// fireCallback is the wake function of a Submit request. The poller does not
// call it through the queue: dispatch copies done out and frees the slot
// before any callback runs.
func fireCallback(e *waitqueue.Entry, key uint64) int {
	s := e.Private.(*Slot)
	res, flags := unpackKey(key)
	s.done(res, flags)
	return 1
}

// call runs one callback, containing its panic so one bad callback cannot
// take the poller, and every other request, down with it.
func (p *Poller) call(done func(int32, uint32), res int32, flags uint32) {
	defer func() {
		if v := recover(); v != nil {
			if h := p.cfg.OnCallbackPanic; h != nil {
				h(v)
				return
			}
			go func() { panic(fmt.Sprintf("ringwake: panic in a Submit callback: %v", v)) }()
		}
	}()
	done(res, flags)
}

// maxRetries bounds how often one request is submitted again at once after
// the kernel canceled it on its own; past it a blocking caller pauses on
// its own goroutine (DoTimeout, again) and a callback's request is paused
// in the kernel (pauseLocked).
const maxRetries = 8

// retryLocked submits again a lone request that the kernel completed with
// ECANCELED although no cancel was published since it was: the kernel
// does that to work waiting for an io-wq worker when it cannot create one
// (under a storm of signals to the process, fork-style creation fails with
// ERESTARTNOINTR, and after three tries the waiting work is canceled) and
// to a thread's requests when the thread exits. Such a request never ran,
// so running it again is what the caller asked for. It reports whether the
// request goes back to the SQ, now or after a pause; the slot stays in
// flight under its tag.
func (p *Poller) retryLocked(s *Slot, ud uint64) bool {
	if p.closing || !s.lone || s.cancelGen != p.cancelGen.Load() {
		return false
	}
	if s.retries >= maxRetries {
		if s.done == nil || s.noPause || s.pauses >= maxBackoffs {
			return false // a blocking caller pauses on its own goroutine
		}
		p.pauseLocked(s)
		return true
	}
	s.retries++
	p.pending.Add(1)
	p.resubmitLocked(s, ud)
	return true
}

// resubmitLocked publishes the kept copy of s's request again under ud.
func (p *Poller) resubmitLocked(s *Slot, ud uint64) {
	q := p.getSQELocked()
	*q = s.sqe
	q.UserData = ud
	p.ring.Publish()
	p.stats.retried.Add(1)
	p.stats.submitted.Add(1)
}

// pauseLocked holds back a callback's request that the kernel canceled on
// its own maxRetries times in a row (a storm outlasting the immediate
// retries), as DoTimeout pauses a blocking caller: an IORING_OP_TIMEOUT of
// the pause (backoffBase, doubling to backoffMax, maxBackoffs of them at
// most) goes in its place, and the timeout's completion (pauseTag)
// resumes it. The kernel times the pause, so whoever reaps sees it end,
// and Close's cancel of everything ends it at once. pending counts the
// request's completion as owed throughout.
func (p *Poller) pauseLocked(s *Slot) {
	s.pause = unix.NsecToTimespec(int64(pauseLen(int(s.pauses))))
	s.pauses++
	q := p.getSQELocked()
	q.PrepTimeout(&s.pause, 0, 0)
	q.UserData = internalTag | pauseTag | uint64(s.idx)
	p.pending.Add(2) // the timeout's completion, and the request's
	p.ring.Publish()
	p.stats.submitted.Add(1)
}

// resumeLocked ends slot idx's pause: it submits the request again and
// reports true, unless the ring began closing or a cancel was published
// meanwhile (the request must not run then): it moves the slot out of
// flight and reports false, and the caller delivers -ECANCELED.
func (p *Poller) resumeLocked(idx uint32) bool {
	s := &p.slots[idx]
	if p.closing || s.cancelGen != p.cancelGen.Load() {
		s.tag.Store(uint64(s.gen)<<2 | slotDone)
		return false
	}
	p.resubmitLocked(s, uint64(s.gen)<<32|uint64(idx))
	return true
}
