// Batches from one goroutine: SubmitAndWait publishes many requests and
// sleeps once for all of them.
//
// Invariant: one wake-up per chunk. Every request of a chunk shares one
// batchWaiter; the reaper counts its final completions down (once per run
// of them in a CQ batch, see countDown) and sends the single token when the
// count reaches zero, so the caller is woken once, after the kernel has
// let go of every buffer of the chunk.

package poller

import (
	"context"
	"errors"
	"fmt"
	"sync"
	"sync/atomic"
	"syscall"
	"unsafe"

	"github.com/ringwake/ringwake/sqe"
)

// batchWaiter is the one wait-queue entry behind a chunk: left counts the
// completions still to come.
type batchWaiter struct {
	left atomic.Int32
	ch   chan struct{} // cap 1: one send per chunk
}

// batchWaiters keeps SubmitAndWait free of allocations: a waiter goes back
// only once its chunk is over and its token consumed.
var batchWaiters = sync.Pool{New: func() any { return &batchWaiter{ch: make(chan struct{}, 1)} }}

// SubmitAndWait submits ss in order and returns when every one of them has
// completed, with res[i] holding ss[i]'s result (the CQE's res). keep, when
// not nil, holds for each SQE the memory the kernel uses (keep[i] for ss[i]),
// which stays reachable and unmoved until the completion; other memory an
// SQE points to is the caller's to keep alive until SubmitAndWait returns.
//
// ss goes down in chunks of at most MaxBatch SQEs, and of no more slots
// than are free: a chunk never waits for slots while it holds some, except
// a link chain, which must go down whole. The caller sleeps once per chunk.
// On a sleeping ring (as for Do) a chunk is submitted and waited for with
// one io_uring_enter on the caller's goroutine.
//
// When ctx ends, what is in flight is canceled and SubmitAndWait returns
// ctx.Err() once every completion arrived, with the results so far in res
// (-ECANCELED for what was canceled; SQEs never submitted keep their res).
// Close ends a waiting batch with ErrClosed.
func (p *Poller) SubmitAndWait(ctx context.Context, ss []sqe.SQE, res []int32, keep []unsafe.Pointer) error {
	if err := p.checkBatch(ss, res, keep); err != nil {
		return err
	}
	if p.closed.Load() {
		return ErrClosed
	}
	w := batchWaiters.Get().(*batchWaiter)
	defer batchWaiters.Put(w)
	for i := 0; i < len(ss); {
		var k []unsafe.Pointer
		if keep != nil {
			k = keep[i:]
		}
		n, err := p.chunk(ctx, w, ss[i:], res[i:], k)
		if err != nil {
			return err
		}
		i += n
	}
	return nil
}

// checkBatch rejects what must never reach the kernel through SubmitAndWait.
func (p *Poller) checkBatch(ss []sqe.SQE, res []int32, keep []unsafe.Pointer) error {
	switch {
	case len(res) < len(ss):
		return fmt.Errorf("ringwake: SubmitAndWait: %d SQEs but room for %d results", len(ss), len(res))
	case keep != nil && len(keep) < len(ss):
		return fmt.Errorf("ringwake: SubmitAndWait: %d SQEs but %d buffers to keep", len(ss), len(keep))
	case len(ss) > 0 && ss[len(ss)-1].Flags&linkFlags != 0:
		return errors.New("ringwake: SubmitAndWait: the last SQE carries a link flag and would chain to an unrelated request")
	}
	most := min(MaxBatch, len(p.slots))
	chain := 0
	for i := range ss {
		if ss[i].Flags&sqe.CQESkipSuccess != 0 {
			return fmt.Errorf("ringwake: SubmitAndWait: SQE %d: CQESkipSuccess is not supported: every request must complete", i)
		}
		if chain++; ss[i].Flags&linkFlags == 0 {
			chain = 0
		} else if chain >= most {
			return fmt.Errorf("ringwake: SubmitAndWait: a link chain of more than %d SQEs, more than the ring takes at once", most)
		}
	}
	return nil
}

const linkFlags = sqe.IOLink | sqe.IOHardlink

// chunk publishes the longest prefix of ss that fits the free slots
// (without cutting a link chain), waits for all of it and reports its length.
func (p *Poller) chunk(ctx context.Context, w *batchWaiter, ss []sqe.SQE, res []int32, keep []unsafe.Pointer) (int, error) {
	var idxs [MaxBatch]uint32
	var uds [MaxBatch]uint64
	want := min(len(ss), MaxBatch, len(p.slots))
	head := 1 // the leading chain, which must have all its slots at once
	for head < want && ss[head-1].Flags&linkFlags != 0 {
		head++
	}
	var got int
	if head == 1 {
		idx, err := p.acquire(ctx)
		if err != nil {
			return 0, err
		}
		idxs[0], got = idx, 1
	} else {
		if err := p.acquireAll(ctx, idxs[:head]); err != nil {
			return 0, err
		}
		got = head
	}
	for got < want {
		idx, ok := p.takeSlotLocked()
		if !ok {
			break
		}
		idxs[got] = idx
		got++
	}
	n := got
	for n > head && ss[n-1].Flags&linkFlags != 0 {
		n-- // the chunk ends at a chain's end
	}
	published := false
	for _, idx := range idxs[n:got] {
		published = p.releaseLocked(idx) || published
	}
	w.left.Store(int32(n))
	// The chunk is one caller, not n, to the crowd rule (see batchExtra).
	p.batchExtra.Add(int64(n - 1))
	for j := range n {
		slot := &p.slots[idxs[j]]
		slot.entry.Func = nil // dispatch counts batch slots down itself (countDown)
		slot.batch = w
		if keep != nil {
			slot.keep = keep[j]
		}
		lone := ss[j].Flags&linkFlags == 0 && (j == 0 || ss[j-1].Flags&linkFlags == 0)
		uds[j] = p.writeSlotLocked(slot, &ss[j], lone)
	}
	p.pending.Add(int64(n))
	p.stats.submitted.Add(uint64(n))
	p.ring.Publish()
	p.mu.Unlock()
	done := ctx.Done()
	if p.inlineOK && done == nil && p.shallow.Load() && p.state.CompareAndSwap(pollerParked, pollerLent) {
		p.reapInline(w.ch, &w.left)
	} else {
		p.kick()
	}
	var err error
	if done == nil {
		<-w.ch
	} else {
		select {
		case <-w.ch:
		case <-done:
			for j := range n {
				if p.slots[idxs[j]].tag.Load() == uds[j]>>32<<2|slotInFlight {
					p.cancel(uds[j])
				}
			}
			<-w.ch // the kernel has let go of every buffer only now
			err = ctx.Err()
		}
	}
	p.batchExtra.Add(-int64(n - 1))
	closed := false
	for j := range n {
		res[j] = p.slots[idxs[j]].res
		closed = closed || res[j] == -int32(syscall.ECANCELED)
	}
	if err == nil && closed && p.closed.Load() {
		err = ErrClosed
	}
	p.mu.Lock()
	for _, idx := range idxs[:n] {
		published = p.releaseLocked(idx) || published
	}
	p.mu.Unlock()
	if published {
		p.kick()
	}
	return n, err
}
