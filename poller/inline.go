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
	"runtime"
	"sync/atomic"
	"syscall"
	"time"

	"github.com/ringwake/ringwake/internal/ring"
)

// reapInline is the poller's loop run by a blocking caller, on its own
// goroutine, until that caller's requests are done (ch, which their wake
// function fills, holds a token): the poller is parked (state pollerLent,
// CASed from pollerParked by the caller). It reaps under reapLock like
// every reaper, and a caller yielding meanwhile may deliver a batch too.
// left is the number of the caller's completions still to come (nil: one).
//
// The first enter submits and waits for all of them at once, as liburing's
// io_uring_submit_and_wait does: a lone request or a batch published on a
// sleeping ring costs one syscall and no goroutine woken on either side.
// That enter holds submitMu, so that no chunked submit (which reads the
// flags of published SQEs to keep link chains whole) runs inside it, and it
// is bounded by inlineHold, so that a submitter that needs submitMu while
// the caller waits (its request may be what the caller's wait depends on,
// a write into the pipe the caller reads) is held up briefly, never for
// good. Later waits submit nothing and hold no lock.
//
// On the way out the role goes back: to the poller, woken, when anything
// is still pending or the ring is closing; else the state returns to
// pollerParked, re-checked after the store as park does, so that a
// request published meanwhile is never left without a reaper.
func (p *Poller) reapInline(ch chan struct{}, left *atomic.Int32) {
	// Held like a kick's direct submit: Close unmaps under the write lock.
	p.unmapMu.RLock()
	p.stats.inline.Add(1)
	want := func() uint32 {
		if left == nil {
			return 1
		}
		return uint32(max(left.Load(), 1))
	}
	first := true
	stuck := false     // a submit made no progress: wait (bounded) before the next
	for len(ch) == 0 { // the wake function filled it: our completions are in
		if p.pending.Load()-p.batchExtra.Load() >= lockDepth {
			p.shallow.Store(false) // a crowd joined: the poller serves the next spell
		}
		if n, _, busy := p.reap(true); n > 0 || busy {
			if busy {
				runtime.Gosched() // a yielding caller is delivering: ours may be in its batch
			}
			continue
		}
		if p.ring.CQOverflow() || p.closed.Load() {
			break // the poller's business
		}
		if n := p.ring.SQPending(); n > 0 && !stuck {
			p.stats.enters.Add(1)
			if first {
				first = false
				p.stats.waits.Add(1)
				p.submitAndWait(want())
			} else {
				p.submit()
			}
			stuck = p.ring.SQPending() >= n // EAGAIN: no memory for requests now
			continue
		}
		stuck = false
		p.stats.enters.Add(1)
		p.stats.waits.Add(1)
		// Bounded for the same reason as the poller's wait: a kick whose
		// submit failed is retried on the next round.
		if _, err := p.ring.EnterTimeout(0, want(), ring.EnterGetEvents, 100*time.Millisecond); err != nil &&
			!errors.Is(err, syscall.ETIME) && !errors.Is(err, syscall.EINTR) {
			break // EBUSY and the like: the poller sorts them out
		}
	}
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

// inlineHold bounds the first, submitting wait of an inline reaper, during
// which it holds submitMu.
const inlineHold = time.Millisecond

// submitAndWait submits everything published and waits for want
// completions in one enter (see reapInline). Errors are the next round's
// business: what was not submitted is still pending, and the loop looks
// at the CQ again either way.
func (p *Poller) submitAndWait(want uint32) {
	p.submitMu.Lock()
	// Cleared before the SQ is read, as submit does.
	if p.ioPending.Load() {
		p.ioPending.Store(false)
	}
	p.ring.EnterTimeout(p.ring.SQPending(), want, ring.EnterGetEvents, inlineHold)
	p.submitMu.Unlock()
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
