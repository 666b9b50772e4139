// Close.
//
// Invariant: Close returns only after the kernel completed every request
// (so let go of every buffer) and the poller stopped; the ring is unmapped
// under unmapMu's write lock, which excludes direct submitters and inline
// reapers.

package poller

import (
	"runtime"

	"github.com/ringwake/ringwake/sqe"
)

// Close stops new work, wakes every backlogged submitter with ErrClosed,
// cancels what is in flight, waits until the kernel has completed (and so
// let go of the buffers of) every request, stops the poller and unmaps the
// ring. Every callback still fires exactly once, most with -ECANCELED.
func (p *Poller) Close() error {
	p.closeMu.Lock()
	defer p.closeMu.Unlock()
	if p.closed.Load() {
		return p.closeErr
	}
	p.mu.Lock()
	p.closing = true
	p.closed.Store(true)
	p.backlog.WakeUpAll(closedKey)
	if p.pending.Load() > 0 {
		p.internalLocked(func(q *sqe.SQE) { q.PrepCancel64(0, sqe.AsyncCancelAny) })
	}
	p.mu.Unlock()
	p.kick()
	// Wake a parked poller so it notices the close.
	if p.state.CompareAndSwap(pollerParked, pollerRunning) {
		select {
		case p.wake <- struct{}{}:
		default:
		}
	}
	<-p.stopped
	// Held for good: a caller still yielding in yieldFor reads the CQ only
	// under it.
	for !p.reapLock.CompareAndSwap(false, true) {
		runtime.Gosched()
	}
	p.unmapMu.Lock()
	p.unmapped = true
	p.closeErr = p.ring.Close()
	p.unmapMu.Unlock()
	return p.closeErr
}
