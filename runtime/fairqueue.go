package runtime

// The fair queue in front of the ring: I/O classes with shares, start-time
// fair queueing across classes, FIFO within a class, and a cap on the cost
// in flight at the device (Seastar's I/O scheduler, in Go).
//
// Invariants (tested by TestFairQueueModel and the class tests):
//   - A request is admitted at most once, and a queued request ends exactly
//     one way: admitted (its caller submits it), canceled (its ctx ended
//     while it waited; never submitted) or closed (ErrClosed).
//   - Within a class, requests are admitted in arrival order.
//   - Across classes the backlogged class with the smallest virtual time
//     goes next; admitting a request of cost c charges its class c/shares.
//   - The cost in flight stays within capacity, with two exceptions. A
//     request is always admitted when nothing is in flight (a request larger
//     than the capacity runs alone), so the queue is work-conserving:
//     whenever requests wait, something is in flight. And a class below its
//     share of the capacity (its shares over those of the active classes,
//     the ones with requests queued or in flight) is admitted past the
//     capacity, up to twice it: a class with many shares never waits for
//     capacity that classes with few hold, which is what keeps its latency.
//   - A request that does not fit blocks those behind it in the order,
//     so small requests cannot starve a large one.

import (
	"context"
	"math/bits"
	"sync"
	"sync/atomic"
	"time"

	"github.com/ringwake/ringwake/waitqueue"
)

// vscale is the virtual time of one token at one share: fine enough that
// cost*vscale/shares keeps the ratio of shares up to 65536.
const vscale = 1 << 16

// vrebase bounds virtual times: when the clock passes it, every class is
// moved back by the same amount (relative order unchanged), so uint64 never
// wraps however long the ring runs.
const vrebase = 1 << 62

// wake keys of the fair queue's entries.
const (
	fqKeyAdmit = 1
	fqKeyClose = 2
)

// fairQueue admits requests of its classes to the device.
type fairQueue struct {
	mu       sync.Mutex
	capacity uint64 // cost allowed in flight; a lone request may exceed it
	inflight uint64 // cost admitted and not yet released
	waiting  int    // requests queued in every class
	vnow     uint64 // virtual time: the start tag of the last admission
	// active is the sum of the shares of the classes with requests queued
	// or in flight: a class's share of the capacity is its shares over it.
	active  uint64
	closed  bool
	classes []*fqClass // in registration order: ties go to the earlier one
	// ready holds callback requests admitted (or closed) by a dispatch:
	// they are submitted by whoever ran it, once fq.mu is released, since
	// a submission may wait for a slot. nready mirrors len(ready).
	ready  []*fqWaiter
	nready atomic.Int32
	// flush, when set, submits the ready callback requests: admit calls it
	// after a dispatch of its own (its arrival's or its cancel's), which
	// may have admitted some, before it blocks.
	flush func()
	// wokeBlocked, under fq.mu, says a dispatch since the last release
	// woke a blocking caller (see release).
	wokeBlocked bool
}

// fqClass is one class's queue and accounts.
type fqClass struct {
	fq     *fairQueue
	shares uint64
	// vtime is, under fq.mu, the class's finish tag: the virtual time at
	// which its next request starts if it stays backlogged.
	vtime uint64
	// costIn is the cost the class has in flight, under fq.mu; busy says
	// its shares count in fq.active.
	costIn uint64
	busy   bool
	// q holds the class's waiting requests, exclusive entries in FIFO
	// order: a dispatch wakes exactly its head.
	q waitqueue.Queue

	ops, bytes, queuedNs atomic.Uint64
	inflight             atomic.Int64
}

// fqWaiter is one queued request.
type fqWaiter struct {
	e    waitqueue.Entry
	ch   chan struct{} // cap 1: the one wake-up (admitted or closed)
	c    *fqClass
	cost uint64
	// admitted and closed are written under fq.mu by the wake function
	// and read under fq.mu, or after the wake-up on ch.
	admitted, closed bool
	// sub, for a callback request, is what to submit once admitted; such a
	// waiter goes to fq.ready instead of being woken on ch.
	sub *classSub
}

var fqWaiterPool = sync.Pool{New: func() any {
	w := &fqWaiter{ch: make(chan struct{}, 1)}
	w.e.Func = fqWakeFunc
	w.e.Private = w
	return w
}}

// fqWakeFunc runs under fq.mu (every walk of a class's queue is made with
// it held) and the queue's lock. It admits the head if its cost fits, and
// otherwise stops the walk, leaving it at the head.
var fqWakeFunc = waitqueue.AutoRemove(func(e *waitqueue.Entry, key uint64) int {
	w := e.Private.(*fqWaiter)
	fq := w.c.fq
	if key == fqKeyClose {
		w.closed = true
	} else {
		if !fq.fitsLocked(w.c, w.cost) {
			return -1
		}
		fq.chargeLocked(w.c, w.cost)
		w.admitted = true
	}
	fq.waiting--
	if w.sub != nil {
		fq.ready = append(fq.ready, w)
		fq.nready.Store(int32(len(fq.ready)))
		return 1
	}
	fq.wokeBlocked = true
	w.ch <- struct{}{}
	return 1
})

// takeReady returns the callback requests dispatches have admitted or
// closed, for the caller to submit or end.
func (fq *fairQueue) takeReady() []*fqWaiter {
	if fq.nready.Load() == 0 {
		return nil
	}
	fq.mu.Lock()
	r := fq.ready
	fq.ready = nil
	fq.nready.Store(0)
	fq.mu.Unlock()
	return r
}

func (fq *fairQueue) flushReady() {
	if fq.flush != nil && fq.nready.Load() != 0 {
		fq.flush()
	}
}

func newFairQueue(capacity uint64) *fairQueue {
	if capacity == 0 {
		capacity = 1
	}
	return &fairQueue{capacity: capacity}
}

// addClass registers a class; shares 0 counts as 1.
func (fq *fairQueue) addClass(shares uint32) *fqClass {
	c := &fqClass{fq: fq, shares: uint64(max(shares, 1))}
	fq.mu.Lock()
	c.vtime = fq.vnow
	fq.classes = append(fq.classes, c)
	fq.mu.Unlock()
	return c
}

// fitsLocked says whether a request of cost in c may be admitted now: it
// fits in the capacity, or nothing is in flight, or c stays below its
// share of the capacity and the total within twice it.
func (fq *fairQueue) fitsLocked(c *fqClass, cost uint64) bool {
	if fq.inflight == 0 || fq.inflight+cost <= fq.capacity {
		return true
	}
	if fq.active == 0 || fq.inflight+cost-fq.capacity > fq.capacity {
		return false
	}
	// c's share, capacity·shares/active, in 128 bits: hi < shares <= active.
	hi, lo := bits.Mul64(fq.capacity, c.shares)
	share, _ := bits.Div64(hi, lo, fq.active)
	return c.costIn+cost <= share
}

// busyLocked counts c's shares in fq.active once it has requests queued or
// in flight; idleLocked stops counting them when it has neither.
func (fq *fairQueue) busyLocked(c *fqClass) {
	if !c.busy {
		c.busy = true
		fq.active += c.shares
	}
}

func (fq *fairQueue) idleLocked(c *fqClass) {
	if c.busy && c.costIn == 0 && !c.q.Active() {
		c.busy = false
		fq.active -= c.shares
	}
}

// chargeLocked admits a request of cost to c: it starts at c's tag, which
// becomes the clock, and moves c's tag by cost/shares.
func (fq *fairQueue) chargeLocked(c *fqClass, cost uint64) {
	fq.inflight += cost
	c.costIn += cost
	fq.vnow = c.vtime
	c.vtime += cost * vscale / c.shares
	c.inflight.Add(1)
	if fq.vnow > vrebase {
		shift := fq.vnow
		for _, k := range fq.classes {
			k.vtime -= min(k.vtime, shift)
		}
		fq.vnow = 0
	}
}

// activateLocked is a class becoming backlogged: an idle class does not
// bank the time it was idle (start-time fair queueing's max(v, F)).
func (fq *fairQueue) activateLocked(c *fqClass) {
	if c.vtime < fq.vnow {
		c.vtime = fq.vnow
	}
}

// dispatchLocked admits requests while the head of the backlogged class
// with the smallest tag fits.
func (fq *fairQueue) dispatchLocked() {
	for fq.waiting > 0 {
		var next *fqClass
		for _, c := range fq.classes {
			if c.q.Active() && (next == nil || c.vtime < next.vtime) {
				next = c
			}
		}
		if next == nil || next.q.WakeUp(fqKeyAdmit) == 0 {
			return
		}
	}
}

// arrive admits a request of cost in c at once (true) when nothing waits
// and it fits; else it queues w, which is woken when admitted or closed,
// possibly before arrive returns. ErrClosed once the queue is closed.
func (fq *fairQueue) arrive(c *fqClass, w *fqWaiter) (bool, error) {
	w.c = c
	fq.mu.Lock()
	defer fq.mu.Unlock()
	if fq.closed {
		return false, ErrClosed
	}
	fq.busyLocked(c)
	if fq.waiting == 0 && fq.fitsLocked(c, w.cost) {
		fq.activateLocked(c)
		fq.chargeLocked(c, w.cost)
		return true, nil
	}
	if !c.q.Active() {
		fq.activateLocked(c)
	}
	w.admitted, w.closed = false, false
	c.q.AddExclusive(&w.e)
	fq.waiting++
	fq.dispatchLocked()
	return false, nil
}

// release returns the capacity of an admitted request of cost in c and
// admits what now fits. It reports whether that woke a blocking caller.
func (fq *fairQueue) release(c *fqClass, cost uint64) bool {
	c.inflight.Add(-1)
	fq.mu.Lock()
	fq.inflight -= cost
	c.costIn -= cost
	fq.idleLocked(c)
	fq.wokeBlocked = false
	fq.dispatchLocked()
	woke := fq.wokeBlocked
	fq.mu.Unlock()
	return woke
}

// cancel takes a queued w off its class. It reports whether w had been
// admitted meanwhile (the caller then owns that admission: it submits or
// releases it); a closed w reports false.
func (fq *fairQueue) cancel(w *fqWaiter) bool {
	fq.mu.Lock()
	defer fq.mu.Unlock()
	if w.admitted || w.closed {
		return w.admitted
	}
	w.c.q.Remove(&w.e)
	fq.waiting--
	fq.idleLocked(w.c)
	// The head may have been what blocked the others.
	fq.dispatchLocked()
	return false
}

// close ends the queue: every queued request is woken closed, and later
// arrivals fail with ErrClosed.
func (fq *fairQueue) close() {
	fq.mu.Lock()
	fq.closed = true
	for _, c := range fq.classes {
		c.q.WakeUpAll(fqKeyClose)
	}
	fq.mu.Unlock()
}

// admit blocks until a request of cost in c is admitted: nil, then the
// caller must release it once the request completes; ctx.Err() when ctx
// ends first (nothing to release); ErrClosed when the queue closes.
func (fq *fairQueue) admit(ctx context.Context, c *fqClass, cost uint64) error {
	w := fqWaiterPool.Get().(*fqWaiter)
	w.cost = cost
	now, err := fq.arrive(c, w)
	if now || err != nil {
		fqWaiterPool.Put(w)
		return err
	}
	fq.flushReady()
	start := time.Now()
	select {
	case <-w.ch:
	case <-ctx.Done():
		if fq.cancel(w) {
			// Admitted as ctx ended: it never reaches the ring.
			<-w.ch
			fq.release(c, cost)
		} else if w.closed {
			<-w.ch
		}
		fq.flushReady()
		// A canceled, closed or released waiter holds nothing more.
		c.queuedNs.Add(uint64(time.Since(start)))
		fqWaiterPool.Put(w)
		return ctx.Err()
	}
	c.queuedNs.Add(uint64(time.Since(start)))
	closed := w.closed
	fqWaiterPool.Put(w)
	if closed {
		return ErrClosed
	}
	return nil
}
