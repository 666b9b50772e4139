// Backpressure: submitters that find every slot in flight sleep on an
// exclusive wait queue (the backlog), FIFO.
//
// Invariant: one freed slot, exactly one wake-up. releaseLocked hands a
// freed slot straight to the first sleeper (or deferred callback request)
// instead of the free list, and takeSlotLocked never lets a newcomer
// overtake a sleeper, so nobody is woken for a slot someone else took.

package poller

import (
	"context"

	"github.com/ringwake/ringwake/waitqueue"
)

// backlogWaiter is a submitter asleep for a slot. handoff gives it one
// directly, so a wake-up is never for nothing.
type backlogWaiter struct {
	entry waitqueue.Entry
	ch    chan struct{}
	idx   uint32
	got   bool
	shut  bool
}

const closedKey = ^uint64(0)

func handoff(e *waitqueue.Entry, key uint64) int {
	w := e.Private.(*backlogWaiter)
	if key == closedKey {
		w.shut = true
	} else {
		w.idx, w.got = uint32(key), true
	}
	w.ch <- struct{}{}
	return 1
}

var autoHandoff = waitqueue.AutoRemove(handoff)

// waitSlot sleeps, FIFO and exclusive, until a freed slot is handed over.
func (p *Poller) waitSlot(ctx context.Context) (uint32, error) {
	w := &backlogWaiter{ch: make(chan struct{}, 1)}
	w.entry.Func = autoHandoff
	w.entry.Private = w
	p.mu.Lock()
	if p.closing {
		p.mu.Unlock()
		return 0, ErrClosed
	}
	if idx, ok := p.takeSlotLocked(); ok {
		p.mu.Unlock()
		return idx, nil
	}
	p.backlog.AddExclusive(&w.entry)
	p.stats.backlogged.Add(1)
	p.mu.Unlock()
	select {
	case <-w.ch:
	case <-ctx.Done():
		p.mu.Lock()
		p.backlog.Remove(&w.entry)
		got, idx := w.got, w.idx
		p.mu.Unlock()
		if got {
			// Chosen at the moment ctx ended: pass the slot on, not swallow it.
			p.release(idx)
		}
		if w.shut {
			return 0, ErrClosed
		}
		return 0, ctx.Err()
	}
	if w.shut {
		return 0, ErrClosed
	}
	return w.idx, nil
}

// acquire returns a slot with p.mu held, sleeping for one while all are in
// flight. It fails with ErrClosed once Close has begun.
func (p *Poller) acquire(ctx context.Context) (uint32, error) {
	p.mu.Lock()
	idx, ok := p.takeSlotLocked()
	if !ok {
		p.mu.Unlock()
		var err error
		if idx, err = p.waitSlot(ctx); err != nil {
			return 0, err
		}
		p.mu.Lock()
	}
	if p.closing {
		p.releaseLocked(idx)
		p.mu.Unlock()
		return 0, ErrClosed
	}
	return idx, nil
}

// acquireAll fills idxs with slots, sleeping for each while all are in
// flight, and returns with p.mu held; on failure it holds none.
func (p *Poller) acquireAll(ctx context.Context, idxs []uint32) error {
	// One caller at a time may hold some slots while it waits for the rest:
	// two doing so could each wait forever for the other's.
	p.batchMu.Lock()
	defer p.batchMu.Unlock()
	for i := range idxs {
		idx, err := p.acquire(ctx)
		if err != nil {
			p.mu.Lock()
			published := false
			for _, j := range idxs[:i] {
				published = p.releaseLocked(j) || published
			}
			p.mu.Unlock()
			if published {
				p.kick()
			}
			return err
		}
		idxs[i] = idx
		if i < len(idxs)-1 {
			p.mu.Unlock()
		}
	}
	return nil
}

func (p *Poller) release(idx uint32) {
	p.mu.Lock()
	published := p.releaseLocked(idx)
	p.mu.Unlock()
	if published {
		p.kick()
	}
}

// releaseAllLocked is releaseLocked for a chunk's slots, whose fields the
// chunk never wrote (its head's it clears itself): with nobody in the
// backlog, they go back to the free list at once.
func (p *Poller) releaseAllLocked(idxs []uint32) bool {
	if p.backlog.Active() {
		published := false
		for _, idx := range idxs {
			published = p.releaseLocked(idx) || published
		}
		return published
	}
	p.free = append(p.free, idxs...)
	published := p.published
	p.published = false
	return published
}

// releaseLocked frees a slot, handing it to the first in the backlog FIFO
// (a sleeping submitter or a deferred callback submission: one freed slot,
// exactly one wake-up), else to the free list. It reports whether a deferred
// request was published, which the caller kicks after unlocking.
func (p *Poller) releaseLocked(idx uint32) bool {
	s := &p.slots[idx]
	s.keep, s.done, s.batch = nil, nil, nil
	// The tag stays as it is (slotDone, or slotFree before a first use): a
	// slot is never released in flight, and only slotInFlight is ever
	// tested, so a store here would be one more atomic per request for nothing.
	if !(p.backlog.Active() && p.backlog.WakeUp(uint64(idx)) > 0) {
		p.free = append(p.free, idx)
	}
	published := p.published
	p.published = false
	return published
}
