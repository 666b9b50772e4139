// The submission path shared by every goroutine.
//
// Invariant: publish, then kick. A submitter publishes its SQE under mu and
// then loads the poller's state; the poller stores its sleeping state and
// then re-checks the SQ. With sequentially consistent atomics on both sides,
// either the poller sees the new SQE or the submitter sees it asleep and
// wakes it (or, when it sleeps in the kernel, submits itself). Enters that
// submit are serialised by submitMu.

package poller

import (
	"context"
	"errors"
	"fmt"

	"github.com/ringwake/ringwake/sqe"
)

// validate rejects what must never reach the kernel through Submit.
func validate(s *sqe.SQE) error {
	if s == nil {
		return errors.New("ringwake: Submit with a nil SQE")
	}
	if s.Flags&(sqe.IOLink|sqe.IOHardlink) != 0 {
		// A lone linked SQE would chain to whatever another goroutine submits next.
		return errors.New("ringwake: Submit: IOLink/IOHardlink need a chain submitted as one batch")
	}
	if s.Flags&sqe.CQESkipSuccess != 0 {
		// No completion on success: the slot would never be freed nor the callback fire.
		return errors.New("ringwake: Submit: CQESkipSuccess is not supported: every request must complete")
	}
	return nil
}

// Submit copies s into the ring and arranges for done to run on the
// goroutine that reaps (the poller, or an inline reaper: see Do) with the
// completion's result and flags, exactly once (for a multishot request:
// once per completion, the last without CQEFMore).
// It sleeps while every slot is in flight. done must not block; it may
// call Submit again to refill, at most once per completion it receives.
func (p *Poller) Submit(s *sqe.SQE, done func(res int32, flags uint32)) error {
	return p.submitOne(s, done, false)
}

// SubmitNoPause is Submit for a caller with a faster way around a storm of
// signals than waiting it out (File's group fsync makes its fsync
// directly): past the immediate retries, a request the kernel keeps
// canceling on its own completes with -ECANCELED instead of pausing.
func (p *Poller) SubmitNoPause(s *sqe.SQE, done func(res int32, flags uint32)) error {
	return p.submitOne(s, done, true)
}

func (p *Poller) submitOne(s *sqe.SQE, done func(res int32, flags uint32), noPause bool) error {
	if err := validate(s); err != nil {
		return err
	}
	if done == nil {
		return errors.New("ringwake: Submit with a nil callback")
	}
	p.mu.Lock()
	if p.closing {
		p.mu.Unlock()
		return ErrClosed
	}
	idx, ok := p.takeSlotLocked()
	if !ok {
		if p.onPoller() {
			// Published as linked (not lone), a deferred request is never
			// retried, so noPause has nothing to change there.
			p.deferLocked([]sqe.SQE{*s}, []func(int32, uint32){done})
			p.mu.Unlock()
			return nil
		}
		p.mu.Unlock()
		var err error
		if idx, err = p.waitSlot(context.Background()); err != nil {
			return err
		}
		p.mu.Lock()
		if p.closing {
			p.releaseLocked(idx)
			p.mu.Unlock()
			return ErrClosed
		}
	}
	slot := &p.slots[idx]
	slot.entry.Func = fireCallback
	slot.done = done
	p.writeLocked(slot, s, true)
	slot.noPause = noPause
	p.ring.Publish()
	p.mu.Unlock()
	p.kick()
	return nil
}

// MaxBatch is the most SQEs SubmitBatch takes at once.
const MaxBatch = 64

// SubmitBatch submits ss in order as one unit: no other goroutine's SQE lands
// between them and the kernel sees them all at once, so IOLink/IOHardlink
// chains stay whole (the last SQE must not carry a link flag). dones[i] fires
// for ss[i] as with Submit; a broken link completes with -ECANCELED.
func (p *Poller) SubmitBatch(ss []sqe.SQE, dones []func(res int32, flags uint32)) error {
	k := len(ss)
	switch {
	case k == 0:
		return nil
	case k != len(dones):
		return fmt.Errorf("ringwake: SubmitBatch: %d SQEs but %d callbacks", k, len(dones))
	case k > MaxBatch || k > len(p.slots):
		return fmt.Errorf("ringwake: SubmitBatch: %d SQEs, more than the ring takes at once (%d)", k, min(MaxBatch, len(p.slots)))
	case ss[k-1].Flags&(sqe.IOLink|sqe.IOHardlink) != 0:
		return errors.New("ringwake: SubmitBatch: the last SQE carries a link flag and would chain to an unrelated request")
	}
	for i := range dones {
		if dones[i] == nil {
			return fmt.Errorf("ringwake: SubmitBatch: callback %d is nil", i)
		}
		if ss[i].Flags&sqe.CQESkipSuccess != 0 {
			return fmt.Errorf("ringwake: SubmitBatch: SQE %d: CQESkipSuccess is not supported: every request must complete", i)
		}
	}
	if p.onPoller() {
		p.mu.Lock()
		defer p.mu.Unlock()
		if p.closing {
			return ErrClosed
		}
		p.deferLocked(append([]sqe.SQE{}, ss...), append([]func(int32, uint32){}, dones...))
		return nil
	}
	var idxs [MaxBatch]uint32
	if err := p.acquireAll(context.Background(), idxs[:k]); err != nil {
		return err
	}
	for i := 0; i < k; i++ {
		slot := &p.slots[idxs[i]]
		slot.entry.Func = fireCallback
		slot.done = dones[i]
		p.writeLocked(slot, &ss[i], false)
	}
	p.ring.Publish()
	p.mu.Unlock()
	p.kick()
	return nil
}

// submit hands the published SQEs to the kernel, in chunks of ioChunk when
// block I/O is among them (see Config.IOPerEnter).
func (p *Poller) submit() {
	p.submitMu.Lock()
	chunk := uint32(0)
	if p.ioPending.Load() {
		// Cleared before the SQ is read: a read published after this
		// point sets it again for the next submit.
		p.ioPending.Store(false)
		chunk = p.ioChunk
	}
	p.ring.SubmitChunks(chunk)
	p.submitMu.Unlock()
}

// kick makes sure what was just published reaches the kernel. The state
// load pairs with the poller's store before its last look at the SQ
// (sequentially consistent atomics on both sides): either the poller sees
// the new SQE, or this sees the poller's sleeping state.
func (p *Poller) kick() {
	switch p.state.Load() {
	case pollerRunning:
	case pollerParked:
		if p.state.CompareAndSwap(pollerParked, pollerRunning) {
			select {
			case p.wake <- struct{}{}:
			default:
			}
		}
	case pollerInKernel, pollerLent:
		// The poller (or the caller it lent its role to) sleeps until a
		// completion; submit directly rather than wake it for the
		// submission. A failure (EBUSY: the CQ is backed up, so the reaper
		// is about to wake) is left to the reaper's next round.
		// The read lock keeps Close from unmapping the ring under this call.
		p.unmapMu.RLock()
		if !p.unmapped {
			p.submit()
		}
		p.unmapMu.RUnlock()
	}
}

// cancels reports the opcodes that end other requests with ECANCELED.
func cancels(op uint8) bool {
	switch op {
	case sqe.OpAsyncCancel, sqe.OpTimeoutRemove, sqe.OpPollRemove, sqe.OpLinkTimeout:
		return true
	}
	return false
}

// isBlockIO reports the opcodes the kernel plugs the block layer for.
func isBlockIO(op uint8) bool {
	switch op {
	case sqe.OpRead, sqe.OpWrite, sqe.OpReadv, sqe.OpWritev, sqe.OpReadFixed,
		sqe.OpWriteFixed, sqe.OpReadvFixed, sqe.OpWritevFixed:
		return true
	}
	return false
}

// cancel asks the kernel to cancel the request with user_data ud.
func (p *Poller) cancel(ud uint64) {
	p.cancelGen.Add(1)
	p.internal(func(q *sqe.SQE) { q.PrepCancel64(ud, 0) })
}

// CancelFd asks the kernel to cancel every request in flight on fd (File.Close).
func (p *Poller) CancelFd(fd int32) {
	p.cancelGen.Add(1)
	p.internal(func(q *sqe.SQE) { q.PrepCancelFd(fd, sqe.AsyncCancelAll) })
}

// internal publishes a request of the runtime's own, which takes no slot and
// whose completion is only counted. After Close has begun it does nothing:
// Close has queued a cancel of everything already.
func (p *Poller) internal(prep func(q *sqe.SQE)) {
	p.mu.Lock()
	if p.closing {
		p.mu.Unlock()
		return
	}
	p.internalLocked(prep)
	p.mu.Unlock()
	p.kick()
}

func (p *Poller) internalLocked(prep func(q *sqe.SQE)) {
	q := p.getSQELocked()
	prep(q)
	q.UserData = internalTag
	p.pending.Add(1)
	p.ring.Publish()
	p.stats.submitted.Add(1)
}
