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
	"math/bits"
	"sync"
	"sync/atomic"
	"syscall"
	"unsafe"

	"github.com/ringwake/ringwake/sqe"
)

// batchWaiter is the one wait-queue entry behind a chunk: left counts the
// completions still to come. A chunk's requests share its first slot (the
// head): their user_data name the head and their index in the chunk
// (member), so that only the head is written and tagged for the whole
// chunk, and each completion goes straight into res. The chunk's other
// slots are held only to keep the count of requests in flight within the
// SQ and CQ, and are never written.
type batchWaiter struct {
	left atomic.Int32
	ch   chan struct{} // cap 1: one send per chunk
	head *Slot         // tagged in flight until the chunk's last completion
	// Written by the submitter before the head's tag store, read by the
	// reaper after its tag load; res and again the other way, before the
	// send on ch.
	n         int
	lone      uint64 // member j is linked to nothing: bit j
	cancelGen uint64 // p.cancelGen once the chunk was written; no member is a cancel
	retry     bool   // no member is a cancel, so a lone member's ECANCELED may be the kernel's own
	again     uint64 // member j was canceled by the kernel on its own: bit j, to submit again
	res       [MaxBatch]int32
	// keep holds what each member's kernel side uses, reachable (on the
	// heap, as the waiter is) until the chunk's last completion.
	keep [MaxBatch]unsafe.Pointer
}

// Member user_data: the head slot's index, the member's index in the chunk
// and memberBit in the low word (slots never number more than 1<<16, since
// the SQ does not), the head's generation in the high word.
const (
	memberBit   = uint32(1) << 31
	memberShift = 16
	memberIdx   = uint32(1)<<memberShift - 1
	memberJ     = uint64(1<<31-1) &^ uint64(memberIdx) // the member's index bits
)

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
		if err == nil && w.again != 0 {
			err = p.again(ctx, w, ss[i:], res[i:], k)
		}
		if err != nil {
			return err
		}
		i += n
	}
	return nil
}

// again submits again, each on its own, the members of the chunk just
// done that the kernel canceled on its own (see retryLocked): at once up to
// maxRetries times, then after pauses as DoTimeout does, maxBackoffs more
// times at most; what is still canceled then keeps -ECANCELED. A ctx that
// ends during a pause returns ctx.Err().
func (p *Poller) again(ctx context.Context, w *batchWaiter, ss []sqe.SQE, res []int32, keep []unsafe.Pointer) error {
	again := w.again
	for try := 0; again != 0 && try < maxRetries+maxBackoffs; try++ {
		if try >= maxRetries {
			if err := pauseFor(ctx, try-maxRetries); err != nil {
				return err
			}
		}
		var left uint64
		for m := again; m != 0; m &= m - 1 {
			j := bits.TrailingZeros64(m)
			var k []unsafe.Pointer
			if keep != nil {
				k = keep[j : j+1]
			}
			p.stats.retried.Add(1)
			if _, err := p.chunk(ctx, w, ss[j:j+1], res[j:j+1], k); err != nil {
				return err
			}
			left |= w.again << j
		}
		again = left
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
	want := min(len(ss), MaxBatch, len(p.slots))
	lead := 1 // the leading chain, which must have all its slots at once
	for lead < want && ss[lead-1].Flags&linkFlags != 0 {
		lead++
	}
	var got int
	if lead == 1 {
		idx, err := p.acquire(ctx)
		if err != nil {
			return 0, err
		}
		idxs[0], got = idx, 1
	} else {
		if err := p.acquireAll(ctx, idxs[:lead]); err != nil {
			return 0, err
		}
		got = lead
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
	for n > lead && ss[n-1].Flags&linkFlags != 0 {
		n-- // the chunk ends at a chain's end
	}
	published := false
	for _, idx := range idxs[n:got] {
		published = p.releaseLocked(idx) || published
	}
	w.left.Store(int32(n))
	// The chunk is one caller, not n, to the crowd rule (see batchExtra).
	p.batchExtra.Add(int64(n - 1))
	head := &p.slots[idxs[0]]
	w.head, w.n, w.again, w.lone, w.retry = head, n, 0, 0, true
	if keep != nil {
		copy(w.keep[:n], keep)
	}
	blockIO := false
	for j := range n {
		blockIO = blockIO || isBlockIO(ss[j].Opcode)
		if ss[j].Flags&linkFlags == 0 && (j == 0 || ss[j-1].Flags&linkFlags == 0) {
			w.lone |= 1 << j
		}
		if cancels(ss[j].Opcode) {
			// A member's ECANCELED may then be this cancel's doing.
			w.retry = false
			p.cancelGen.Add(1)
		}
	}
	w.cancelGen = p.cancelGen.Load()
	head.batch = w // dispatch fires no entry for a member: it counts the chunk down (countDown)
	head.gen = (head.gen + 1) & genMask
	ud := uint64(head.gen)<<32 | uint64(memberBit|head.idx)
	// The tag store orders every field above before the reaper's tag load.
	head.tag.Store(uint64(head.gen)<<2 | slotInFlight)
	if first, second, ok := p.ring.GetSQEs(uint32(n)); ok {
		copy(first, ss)
		copy(second, ss[len(first):n])
		for j := range first {
			first[j].UserData = ud | uint64(j)<<memberShift
		}
		for j := range second {
			second[j].UserData = ud | uint64(len(first)+j)<<memberShift
		}
	} else {
		for j := range n { // internal cancels took SQEs: flushed as they fill
			q := p.getSQELocked()
			*q = ss[j]
			q.UserData = ud | uint64(j)<<memberShift
		}
	}
	p.lastSQE = nil // nothing links to a chunk's last SQE
	if blockIO && !p.ioPending.Load() {
		p.ioPending.Store(true)
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
			if head.tag.Load() == ud>>32<<2|slotInFlight {
				// Members already completed are not found: a harmless miss.
				for j := range n {
					p.cancel(ud | uint64(j)<<memberShift)
				}
			}
			<-w.ch // the kernel has let go of every buffer only now
			err = ctx.Err()
		}
	}
	p.batchExtra.Add(-int64(n - 1))
	if keep != nil {
		clear(w.keep[:n])
	}
	copy(res[:n], w.res[:n])
	closed := false
	for j := range n {
		closed = closed || res[j] == -int32(syscall.ECANCELED)
	}
	if err == nil && closed && p.closed.Load() {
		err = ErrClosed
	}
	p.mu.Lock()
	head.batch = nil // the slot may next hold a single request, whose completion names it
	published = p.releaseAllLocked(idxs[:n]) || published
	p.mu.Unlock()
	if published {
		p.kick()
	}
	return n, err
}
