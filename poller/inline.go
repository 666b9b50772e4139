// Inline reaping: a blocking caller that finds the ring idle does the
// poller's job on its own goroutine.
//
// Invariant: one reaper at a time. The role moves only by CAS from
// pollerParked to pollerLent, and back either by handBack (the poller is
// woken for what is pending) or by a store to pollerParked followed by a
// re-check, so a request published meanwhile always has a reaper.

package poller

import (
	"errors"
	"syscall"
	"time"

	"github.com/ringwake/ringwake/internal/ring"
)

// reapInline is the poller's loop run by a blocking caller, on its own
// goroutine, until that caller's request is done: the poller is parked
// (state pollerLent, CASed from pollerParked by the caller), so the CQ
// and the poller's scratch are this goroutine's alone. A request
// published alone on a sleeping ring then costs one enter to submit and
// one to wait, as in C, instead of a wake-up of the poller and another of
// the caller; at depth 1 that took blocking O_DIRECT reads from 0.67-0.73x
// fio's rate to 0.98-1.0x (docs/benchmarks.md).
//
// On the way out the role goes back: to the poller, woken, when anything
// is still pending or the ring is closing; else the state returns to
// pollerParked, re-checked after the store as park does, so that a
// request published meanwhile is never left without a reaper.
func (p *Poller) reapInline(slot *Slot) {
	// Held like a kick's direct submit: Close unmaps under the write lock.
	p.unmapMu.RLock()
	p.stats.inline.Add(1)
	stuck := false          // a submit made no progress: wait (bounded) before the next
	for len(slot.ch) == 0 { // wakeBlocked filled it: our completion is in
		if p.pending.Load() >= lockDepth {
			p.shallow.Store(false) // a crowd joined: the poller serves the next spell
		}
		if n := p.ring.PeekBatch(p.cqes); n > 0 {
			p.dispatch(p.cqes[:n])
			continue
		}
		if p.ring.CQOverflow() || p.closed.Load() {
			break // the poller's business
		}
		if n := p.ring.SQPending(); n > 0 && !stuck {
			p.stats.enters.Add(1)
			p.submit()
			stuck = p.ring.SQPending() >= n // EAGAIN: no memory for requests now
			continue
		}
		stuck = false
		p.stats.enters.Add(1)
		p.stats.waits.Add(1)
		// Bounded for the same reason as the poller's wait: a kick whose
		// submit failed is retried on the next round.
		if _, err := p.ring.EnterTimeout(0, 1, ring.EnterGetEvents, 100*time.Millisecond); err != nil &&
			!errors.Is(err, syscall.ETIME) && !errors.Is(err, syscall.EINTR) {
			break // EBUSY and the like: the poller sorts them out
		}
	}
	p.reaperGoid.Store(0)
	if p.pending.Load() > 0 || p.closed.Load() || p.ring.SQPending() > 0 || p.ring.CQReady() > 0 || p.ring.CQOverflow() {
		p.handBack()
	} else {
		if inlineExitHook != nil {
			inlineExitHook()
		}
		p.state.Store(pollerParked)
		// A submitter that saw pollerLent submitted on its own: if one did
		// after the checks above, it is pending now and needs the poller.
		if (p.pending.Load() > 0 || p.closed.Load()) && p.state.CompareAndSwap(pollerParked, pollerLent) {
			p.handBack()
		}
	}
	p.unmapMu.RUnlock()
}

// inlineExitHook, set only by tests, runs between an inline reaper's last
// look at what is pending and its return of the state to pollerParked.
var inlineExitHook func()

// handBack returns the role lent to an inline reaper to the poller, which
// has been waiting in park for a token that only this sends.
func (p *Poller) handBack() {
	p.state.Store(pollerRunning)
	select {
	case p.wake <- struct{}{}:
	default:
	}
}
