// Blocking calls: the submitter parks on its slot's channel until the
// reaper fires the slot's entry (wakeBlocked, the kernel's
// default_wake_function).
//
// Invariant: a blocking call returns only after its completion arrived,
// canceled or not, so the kernel has let go of the buffer before the caller
// can reuse or drop it.

package poller

import (
	"context"
	"fmt"
	"os"
	"syscall"
	"time"
	"unsafe"

	"github.com/ringwake/ringwake/sqe"
	"github.com/ringwake/ringwake/waitqueue"
	"golang.org/x/sys/unix"
)

// wakeBlocked is the wake function of a request whose submitter parks: the
// kernel's default_wake_function, with a channel send for try_to_wake_up.
func wakeBlocked(e *waitqueue.Entry, key uint64) int {
	s := e.Private.(*Slot)
	s.res, s.flags = unpackKey(key)
	s.ch <- struct{}{}
	return 1
}

// Do submits s, parks until its completion and returns the result. keep is
// the memory the kernel uses (the buffer): it stays reachable and unmoved until
// the kernel lets go of it. When ctx ends first the request is canceled in the
// kernel and Do returns ctx.Err() only after the completion arrived, unless the
// request completed anyway, whose result is then returned.
//
// A call that finds the poller asleep with nothing in flight, and whose ctx
// cannot end (ctx.Done() == nil), reaps inline: it submits and waits in
// io_uring_enter on its own goroutine and takes its completion there, with
// no goroutine woken on either side. Completions of requests others submit
// meanwhile are delivered from there too (callbacks included, one reaper
// at a time as always), and the poller takes over for what is still in
// flight when the caller's own request is done.
func (p *Poller) Do(ctx context.Context, s *sqe.SQE, keep unsafe.Pointer) (int32, uint32, error) {
	return p.DoTimeout(ctx, s, keep, 0)
}

// ErrTimeout is returned (wrapped) by DoTimeout when the kernel canceled the
// request because its linked timeout expired. It wraps os.ErrDeadlineExceeded.
var ErrTimeout = fmt.Errorf("ringwake: linked timeout expired: %w", os.ErrDeadlineExceeded)

// DoTimeout is Do with a deadline enforced by the kernel: s is linked to an
// IORING_OP_LINK_TIMEOUT of d, so when d elapses first the kernel cancels it
// and DoTimeout returns ErrTimeout, with no timer or cancel round trip in Go.
// d <= 0 means no timeout.
func (p *Poller) DoTimeout(ctx context.Context, s *sqe.SQE, keep unsafe.Pointer, d time.Duration) (int32, uint32, error) {
	if err := validate(s); err != nil {
		return 0, 0, err
	}
	if p.closed.Load() {
		return 0, 0, ErrClosed
	}
	idx, err := p.acquire(ctx)
	if err != nil {
		return 0, 0, err
	}
	slot := &p.slots[idx]
	slot.entry.Func = wakeBlocked
	slot.keep = keep
	ud := p.writeLocked(slot, s, d <= 0)
	if d > 0 {
		p.linkTimeoutLocked(slot, d)
	}
	p.ring.Publish()
	p.mu.Unlock()
	done := ctx.Done()
	if p.inlineOK && d <= 0 && done == nil && p.shallow.Load() && p.state.CompareAndSwap(pollerParked, pollerLent) {
		p.reapInline(slot.ch, nil)
	} else {
		p.kick()
	}

	if done == nil {
		<-slot.ch
	} else {
		select {
		case <-slot.ch:
		case <-done:
			p.cancel(ud)
			<-slot.ch // the kernel has let go of the buffer only now
			if slot.res == -int32(syscall.ECANCELED) || slot.res == -int32(syscall.EINTR) {
				err = ctx.Err()
			}
		}
	}
	res, flags := slot.res, slot.flags
	if err == nil && res == -int32(syscall.ECANCELED) {
		if p.closed.Load() {
			err = ErrClosed
		} else if d > 0 {
			err = ErrTimeout
		}
	}
	p.release(idx)
	return res, flags, err
}

// linkTimeoutLocked links the SQE just written for slot to a LINK_TIMEOUT of
// d. The pair is published together, so the link cannot break in between.
func (p *Poller) linkTimeoutLocked(slot *Slot, d time.Duration) {
	p.lastSQE.Flags |= sqe.IOLink
	slot.ts = unix.NsecToTimespec(int64(d))
	p.internalLocked(func(q *sqe.SQE) { q.PrepLinkTimeout(&slot.ts, 0) })
}
