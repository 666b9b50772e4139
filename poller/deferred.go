// Submissions made by callbacks when no slot is free.
//
// Invariant: the goroutine that reaps (the poller, or an inline reaper)
// never sleeps for a slot, since only it frees them. What a callback
// submits with none free queues in the backlog FIFO behind the sleepers and
// is published when it has all its slots; at Close it completes with
// -ECANCELED, so each callback still fires exactly once.

package poller

import (
	"runtime"
	"syscall"

	"github.com/ringwake/ringwake/sqe"
	"github.com/ringwake/ringwake/waitqueue"
)

// onPoller reports whether the caller is a callback running on the poller
// goroutine or on an inline reaper, of this poller or of another shard of
// its Group. Only the reaper frees slots, so it must never sleep for one.
// Asked only when no slot is free: the goroutine id costs about a
// microsecond.
func (p *Poller) onPoller() bool {
	if p.cfg.Group != nil {
		return p.cfg.Group.reaping(curGoid())
	}
	if !p.inCallbacks.Load() {
		return false
	}
	return p.reaping(curGoid())
}

// reaping reports whether goroutine g runs this poller's callbacks now.
func (p *Poller) reaping(g uint64) bool {
	return p.inCallbacks.Load() && (g == p.pollerGoid.Load() || g == p.reaperGoid.Load())
}

// curGoid is the calling goroutine's id, from the header runtime.Stack prints.
func curGoid() uint64 {
	var buf [64]byte
	b := buf[:runtime.Stack(buf[:], false)]
	b = b[len("goroutine "):]
	var id uint64
	for _, c := range b {
		if c < '0' || c > '9' {
			break
		}
		id = id*10 + uint64(c-'0')
	}
	return id
}

// deferredReq is a submission made by a callback when no slot was free. It
// takes its place in the backlog FIFO with one exclusive entry per SQE, each
// of which a freed slot satisfies, and is published whole when the last
// arrives. Queuing behind the sleepers, rather than ahead, keeps resubmitting
// callbacks from starving blocked goroutines.
type deferredReq struct {
	p       *Poller
	ss      []sqe.SQE
	dones   []func(res int32, flags uint32)
	slots   []uint32
	entries []waitqueue.Entry
}

// deferredHandoff is the wake function of a deferred request's entries: it
// runs under p.mu (the releaser holds it), so it may publish.
func deferredHandoff(e *waitqueue.Entry, key uint64) int {
	d := e.Private.(*deferredReq)
	if key == closedKey {
		return 1 // cancelDeferred fires its callbacks
	}
	d.slots = append(d.slots, uint32(key))
	if len(d.slots) == len(d.ss) {
		d.p.publishDeferredLocked(d)
	}
	return 1
}

var autoDeferredHandoff = waitqueue.AutoRemove(deferredHandoff)

// deferLocked queues a callback's submission for the next free slots.
func (p *Poller) deferLocked(ss []sqe.SQE, dones []func(int32, uint32)) {
	d := &deferredReq{p: p, ss: ss, dones: dones, slots: make([]uint32, 0, len(ss))}
	p.deferred = append(p.deferred, d)
	p.stats.deferred.Add(1)
	// Free slots with sleepers queued exist only for an instant; the poller
	// cannot wait behind them, so it takes them.
	for len(d.slots) < len(ss) && len(p.free) > 0 {
		d.slots = append(d.slots, p.free[len(p.free)-1])
		p.free = p.free[:len(p.free)-1]
	}
	if len(d.slots) == len(ss) {
		p.publishDeferredLocked(d)
		return
	}
	d.entries = make([]waitqueue.Entry, len(ss)-len(d.slots))
	for i := range d.entries {
		d.entries[i].Func = autoDeferredHandoff
		d.entries[i].Private = d
		p.backlog.AddExclusive(&d.entries[i])
	}
}

// publishDeferredLocked publishes d into the slots it collected.
func (p *Poller) publishDeferredLocked(d *deferredReq) {
	for i, idx := range d.slots {
		slot := &p.slots[idx]
		slot.entry.Func = fireCallback
		slot.done = d.dones[i]
		p.writeLocked(slot, &d.ss[i], false)
	}
	p.ring.Publish()
	p.published = true
	for i, x := range p.deferred {
		if x == d {
			p.deferred = append(p.deferred[:i], p.deferred[i+1:]...)
			break
		}
	}
}

// cancelDeferred completes the callbacks' submissions that never got a slot
// before Close, with -ECANCELED, so each callback still fires exactly once.
func (p *Poller) cancelDeferred() {
	p.mu.Lock()
	deferred := p.deferred
	p.deferred = nil
	p.mu.Unlock()
	p.inCallbacks.Store(true)
	for _, d := range deferred {
		for _, done := range d.dones {
			p.call(done, -int32(syscall.ECANCELED), 0)
		}
	}
	p.inCallbacks.Store(false)
}
