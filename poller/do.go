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
	"runtime"
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
// flight when the caller's own request is done. A call on a busy ring
// yields a few times before it parks, and reaps between yields (yieldFor).
func (p *Poller) Do(ctx context.Context, s *sqe.SQE, keep unsafe.Pointer) (int32, uint32, error) {
	return p.DoTimeout(ctx, s, keep, 0)
}

// ErrTimeout is returned (wrapped) by DoTimeout when the kernel canceled the
// request because its linked timeout expired. It wraps os.ErrDeadlineExceeded.
var ErrTimeout = fmt.Errorf("ringwake: linked timeout expired: %w", os.ErrDeadlineExceeded)

// DoTimeout is Do with a deadline enforced by the kernel: s is linked to an
// IORING_OP_LINK_TIMEOUT of d, so when d elapses first the kernel cancels it
// and DoTimeout returns ErrTimeout, with no timer or cancel round trip in Go.
// d <= 0 means no timeout. A request with no timeout that the kernel keeps
// canceling on its own is submitted again, with pauses, for about a second
// (maxBackoffs) before its ECANCELED is returned.
func (p *Poller) DoTimeout(ctx context.Context, s *sqe.SQE, keep unsafe.Pointer, d time.Duration) (int32, uint32, error) {
	if err := validate(s); err != nil {
		return 0, 0, err
	}
	for attempt := 0; ; attempt++ {
		res, flags, spent, err := p.doOnce(ctx, s, keep, d)
		if !spent || attempt == maxBackoffs {
			return res, flags, err
		}
		// The kernel canceled the request on its own maxRetries times in a
		// row (a storm of signals outlasting the poller's retries): it never
		// ran, and this caller can wait, so it is submitted again after a
		// pause that lets the storm pass. The pause is here, in Go, rather
		// than a timeout linked ahead of the request in the kernel: a request
		// waiting in a link escapes a cancel by user_data (ENOENT), and a
		// ctx that ended meanwhile would then wait for it to complete.
		if err := pauseFor(ctx, attempt); err != nil {
			return res, flags, err
		}
		p.stats.retried.Add(1)
	}
}

// pauseFor sleeps the attempt'th pause before a request the kernel keeps
// canceling is submitted again (backoffBase, doubling, up to backoffMax),
// or returns ctx.Err() when ctx ends first.
func pauseFor(ctx context.Context, attempt int) error {
	pause := pauseLen(attempt)
	done := ctx.Done()
	if done == nil {
		time.Sleep(pause)
		return nil
	}
	t := time.NewTimer(pause)
	defer t.Stop()
	select {
	case <-t.C:
		return nil
	case <-done:
		return ctx.Err()
	}
}

// A request the kernel canceled on its own past the poller's maxRetries is
// submitted again up to maxBackoffs times, pausing from backoffBase,
// doubling, to backoffMax between them: about a second in all. A blocking
// call and a batch pause on the caller's goroutine, a callback's request
// in the kernel (pauseLocked).
const maxBackoffs = 100

// Variables only so that tests can stretch a pause.
var (
	backoffBase = 50 * time.Microsecond
	backoffMax  = 10 * time.Millisecond
)

// pauseLen is the n'th pause (from 0) before a request the kernel keeps
// canceling is submitted again.
func pauseLen(n int) time.Duration { return min(backoffBase<<min(n, 10), backoffMax) }

// doOnce is one submission of DoTimeout. spent reports a request the
// kernel canceled on its own each time the poller submitted it.
func (p *Poller) doOnce(ctx context.Context, s *sqe.SQE, keep unsafe.Pointer, d time.Duration) (res int32, flags uint32, spent bool, err error) {
	if p.closed.Load() {
		return 0, 0, false, ErrClosed
	}
	idx, err := p.acquire(ctx)
	if err != nil {
		return 0, 0, false, err
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

	if len(slot.ch) == 0 {
		p.yieldFor(slot.ch, done)
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
	res, flags = slot.res, slot.flags
	if err == nil && res == -int32(syscall.ECANCELED) {
		if p.closed.Load() {
			err = ErrClosed
		} else if d > 0 {
			err = ErrTimeout
		} else {
			// Read before the release: the slot is this caller's until then.
			spent = slot.lone && slot.retries >= maxRetries && slot.cancelGen == p.cancelGen.Load()
		}
	}
	p.release(idx)
	return res, flags, spent, err
}

// linkTimeoutLocked links the SQE just written for slot to a LINK_TIMEOUT of
// d. The pair is published together, so the link cannot break in between.
func (p *Poller) linkTimeoutLocked(slot *Slot, d time.Duration) {
	p.lastSQE.Flags |= sqe.IOLink
	slot.ts = unix.NsecToTimespec(int64(d))
	p.internalLocked(func(q *sqe.SQE) { q.PrepLinkTimeout(&slot.ts, 0) })
}

// A caller whose request is in flight on a busy ring yields its P a few
// times before it parks, while that pays. The goroutines it lets run are
// the other callers, publishing their next requests and taking their own
// completions, and a completion that arrives meanwhile is taken with no
// park and no wake-up. A parked caller costs more than its own switch: the
// poller readies it onto the poller's P, so the scheduler wakes the idle P
// to steal it (a cross-CPU wake-up), whose thread sleeps again once the
// batch is done; callers that yield keep both Ps busy instead, and no P is
// idle to be woken. Where completions take longer than the yields last (a
// disk), the score turns negative and callers park at once, but for one
// call in yieldProbe, which finds out whether that changed.
//
// A yielding caller also reaps: after each yield that did not bring its
// completion it takes what is in the CQ and delivers it (reap), unless
// another reaper holds the CQ. On two Ps the poller's P is the bottleneck
// of cached reads (the kernel runs each read in the enter that submits it,
// on the poller's thread), and a completion delivered by the caller's own
// goroutine needs neither the poller scheduled nor a goroutine readied on
// its P: cached reads at depth 32 run at about 1.0x cpeak this way, where
// a caller that only yields gets 0.86-0.93x (docs/design.md). The callers it wakes meanwhile
// are readied onto its P, and callbacks may run on it (onPoller treats it
// as the reaper while they do).
//
// Yielding pays even when most callers park in the end (it keeps both Ps
// busy), so a completion found counts yieldWin and one not found counts 1:
// callers yield while more than about one in yieldWin+1 find theirs. On
// cached reads at depth 32 that kept them yielding (0.70x callback mode,
// from 0.49x; scoring 1 for 1 parked them half the time, 0.53x); on
// O_DIRECT reads on a disk no caller finds its completion and they park
// as before.
const (
	yieldRounds = 100
	yieldWin    = 8
	yieldProbe  = 256
	yieldMax    = 64 // the score's bounds, so a change of workload shows soon
)

// yieldFor yields while ch is empty, up to yieldRounds times, unless the
// score says it has not paid lately; done ends it early.
func (p *Poller) yieldFor(ch chan struct{}, done <-chan struct{}) {
	if p.yieldScore.Load() < 0 && p.yieldProbes.Add(1)%yieldProbe != 0 {
		return
	}
	for range yieldRounds {
		runtime.Gosched()
		// Still empty: deliver what has completed, ours perhaps, instead
		// of waiting for the poller to be scheduled.
		if len(ch) == 0 {
			if n, _, _ := p.reap(true); n > 0 {
				p.stats.callerReaps.Add(1)
			}
		}
		if len(ch) > 0 {
			if p.yieldScore.Add(yieldWin) > yieldMax {
				p.yieldScore.Store(yieldMax)
			}
			return
		}
		select {
		case <-done:
			return
		default:
		}
	}
	if p.yieldScore.Add(-1) < -yieldMax {
		p.yieldScore.Store(-yieldMax)
	}
}
