// Package waitqueue is the Linux kernel's wait queue (include/linux/wait.h,
// kernel/sched/wait.c) in Go: a general event-notification mechanism rather
// than only a place to sleep. Each Entry carries a wake function; a waker
// walks the Queue and calls each entry's function, so a path that must not
// block (an I/O completion handler) can still be told when an event happens,
// and each entry decides what "waking" means for it.
//
// Entries are non-exclusive (every one is woken) or exclusive (only as many
// as the waker asks for, which avoids a thundering herd). Non-exclusive
// entries sit before exclusive ones because Add inserts at the head and
// AddExclusive appends at the tail, exactly as add_wait_queue and
// add_wait_queue_exclusive do.
//
// Adding an entry that is already on a queue (this one or another) is a
// no-op: the entry keeps its place and its exclusivity. This is the kernel's
// prepare_to_wait rule ("add only if list_empty"), and it means misuse never
// corrupts a list or panics.
package waitqueue

import (
	"context"
	"errors"
	"sync"
	"sync/atomic"
)

// Func is an entry's wake function. A waker calls it with the queue's lock
// held, passing the key it was given. It must not block and must not call
// methods of the same Queue. As in the kernel it returns > 0 when the call
// counts as a wake-up, 0 when it does not (say the key is not an event this
// entry waits for), and < 0 to stop the walk at this entry (io_uring's own CQ
// waiters do this so a waiter at the head that needs more events is not
// overtaken).
type Func func(e *Entry, key uint64) int

// wqFlagExclusive is the kernel's WQ_FLAG_EXCLUSIVE.
const wqFlagExclusive uint32 = 0x01

// Entry is the kernel's struct wait_queue_entry. The zero value with Func set
// is ready to be added; an Entry must not be copied while it is queued.
// An entry with a nil Func is never woken (its calls count as returning 0).
type Entry struct {
	Func    Func
	Private any // the owner's data, untouched by the queue

	// flags, next and prev are written only under the lock of the queue in q.
	flags      uint32
	next, prev *Entry
	// q is the queue holding the entry, nil when it is on none. It is set
	// under that queue's lock, and cleared last when the entry is unlinked,
	// so a nil load proves no waker will touch the entry again (this is what
	// lets FinishWait skip the lock, like list_empty_careful in finish_wait).
	q atomic.Pointer[Queue]
}

// Queue is the kernel's struct wait_queue_head. The zero value is an empty
// queue ready for use. A Queue must not be copied after first use.
type Queue struct {
	mu sync.Mutex
	// head and tail are guarded by mu.
	head, tail *Entry
	// n counts queued entries. It changes only under mu but is read without
	// it, so a waker on an empty queue pays one atomic load and no lock
	// (the kernel's waitqueue_active/wq_has_sleeper).
	n atomic.Int64
	// waking is true, under mu, while __wake_up_common walks this queue; the
	// AutoRemove wrapper unlinks only then, when it knows mu is held.
	waking bool
}

// Add queues e as a non-exclusive entry at the head (add_wait_queue). It is a
// no-op when e is nil or already on a queue.
func (q *Queue) Add(e *Entry) {
	if e == nil {
		return
	}
	q.mu.Lock()
	q.addLocked(e, 0)
	q.mu.Unlock()
}

// AddExclusive queues e as an exclusive entry at the tail
// (add_wait_queue_exclusive). It is a no-op when e is nil or already on a
// queue.
func (q *Queue) AddExclusive(e *Entry) {
	if e == nil {
		return
	}
	q.mu.Lock()
	q.addLocked(e, wqFlagExclusive)
	q.mu.Unlock()
}

// PrepareToWait is the kernel's prepare_to_wait for a waiter that parks
// itself: it queues e non-exclusively unless e is already queued. Check the
// condition after it returns, sleep until e's Func runs, and call FinishWait
// when done; because the check follows the queueing, a wake-up between the
// check and the sleep is not lost.
func (q *Queue) PrepareToWait(e *Entry) { q.Add(e) }

// PrepareToWaitExclusive is prepare_to_wait_exclusive: like PrepareToWait
// but the entry is exclusive and goes to the tail.
func (q *Queue) PrepareToWaitExclusive(e *Entry) { q.AddExclusive(e) }

// FinishWait is finish_wait: it takes e off q if it is still there. When a
// waker's AutoRemove already took it off, it costs one atomic load and no
// lock. It is a no-op when e is nil or not on q.
func (q *Queue) FinishWait(e *Entry) { q.Remove(e) }

// Remove takes e off q (remove_wait_queue). It is a no-op when e is nil or
// not on q, including when a waker has just auto-removed it.
func (q *Queue) Remove(e *Entry) {
	if e == nil || e.q.Load() != q {
		return
	}
	q.mu.Lock()
	// Re-check under the lock: a walk may have auto-removed e meanwhile.
	if e.q.Load() == q {
		q.unlinkLocked(e)
	}
	q.mu.Unlock()
}

// Active reports whether any entry is queued, without taking the lock
// (waitqueue_active). A waker that made a condition true with an atomic
// operation or under a mutex and then sees false here may skip the wake-up:
// a waiter queues itself before checking the condition, so it will see it.
func (q *Queue) Active() bool { return q.n.Load() != 0 }

// Len returns the number of queued entries.
func (q *Queue) Len() int { return int(q.n.Load()) }

// WakeUp walks the queue calling every non-exclusive entry's Func and stops
// after the first exclusive entry whose Func returns > 0 (wake_up, nr = 1).
// It returns how many Funcs returned > 0.
func (q *Queue) WakeUp(key uint64) int {
	if q.n.Load() == 0 {
		return 0
	}
	return q.wakeUpCommon(1, key)
}

// WakeUpNr walks from the head calling each entry's Func. A call that
// returns > 0 on an exclusive entry uses up one of nr; the walk stops when nr
// reaches zero, or at the first Func that returns < 0. nr <= 0 means no
// limit. It returns how many Funcs returned > 0.
func (q *Queue) WakeUpNr(nr int, key uint64) int {
	if q.n.Load() == 0 {
		return 0
	}
	return q.wakeUpCommon(nr, key)
}

// WakeUpAll is WakeUpNr with no limit (wake_up_all).
func (q *Queue) WakeUpAll(key uint64) int {
	if q.n.Load() == 0 {
		return 0
	}
	return q.wakeUpCommon(0, key)
}

// wakeUpCommon is the kernel's __wake_up_common under wq_head->lock.
func (q *Queue) wakeUpCommon(nrExclusive int, key uint64) int {
	q.mu.Lock()
	// The deferred unlock keeps the queue usable if a Func panics.
	defer q.endWalk()
	q.waking = true
	woken := 0
	// list_for_each_entry_safe: next is read before the call because the
	// Func (via AutoRemove) may unlink curr; it can unlink nothing else.
	for curr := q.head; curr != nil; {
		next := curr.next
		// Read flags before the call: once an auto-removed entry is off the
		// list its owner may re-add it and change them.
		flags := curr.flags
		ret := 0
		if fn := curr.Func; fn != nil {
			ret = fn(curr, key)
		}
		if ret < 0 {
			break
		}
		if ret > 0 {
			woken++
			// nr_exclusive == 0 goes negative and never reaches zero:
			// no limit, as in the kernel's !--nr_exclusive.
			if flags&wqFlagExclusive != 0 {
				nrExclusive--
				if nrExclusive == 0 {
					break
				}
			}
		}
		curr = next
	}
	return woken
}

func (q *Queue) endWalk() {
	q.waking = false
	q.mu.Unlock()
}

// AutoRemove wraps fn so that an entry whose fn returns > 0 is taken off the
// queue during the same walk (autoremove_wake_function); the walk continues
// safely past it. Called other than by a Queue's wake-up walk, the wrapper
// only calls fn.
func AutoRemove(fn Func) Func {
	if fn == nil {
		return nil
	}
	return func(e *Entry, key uint64) int {
		ret := fn(e, key)
		if ret > 0 {
			// The walker holds q.mu exactly when q.waking is set.
			if q := e.q.Load(); q != nil && q.waking {
				q.unlinkLocked(e)
			}
		}
		return ret
	}
}

// addLocked is __add_wait_queue / __add_wait_queue_entry_tail.
func (q *Queue) addLocked(e *Entry, flags uint32) {
	// The CAS makes an entry join at most one queue even if two goroutines
	// add it to different queues at once.
	if !e.q.CompareAndSwap(nil, q) {
		return
	}
	e.flags = flags
	if flags&wqFlagExclusive != 0 {
		e.prev, e.next = q.tail, nil
		if q.tail != nil {
			q.tail.next = e
		} else {
			q.head = e
		}
		q.tail = e
	} else {
		e.prev, e.next = nil, q.head
		if q.head != nil {
			q.head.prev = e
		} else {
			q.tail = e
		}
		q.head = e
	}
	q.n.Add(1)
}

// unlinkLocked is list_del_init; e must be on q and q.mu held.
func (q *Queue) unlinkLocked(e *Entry) {
	if e.prev != nil {
		e.prev.next = e.next
	} else {
		q.head = e.next
	}
	if e.next != nil {
		e.next.prev = e.prev
	} else {
		q.tail = e.prev
	}
	e.next, e.prev = nil, nil
	q.n.Add(-1)
	// Last write to e by the waker side; see Entry.q.
	e.q.Store(nil)
}

// errNilCond and errNilContext report bad arguments to Wait instead of a panic.
var (
	errNilCond    = errors.New("waitqueue: Wait called with a nil cond")
	errNilContext = errors.New("waitqueue: Wait called with a nil context")
)

// waiter is one sleeping Wait call: its entry, the channel it parks on and
// the key of the wake-up it received, kept so an exclusive waiter that does
// not use a wake-up can pass the same one on.
type waiter struct {
	e   Entry
	ch  chan struct{} // cap 1: holds at most one pending wake-up
	key uint64        // written by the waker after its send, read only after FinishWait
}

// wakeWaiter is the default_wake_function of Wait's entries. It reports a
// wake-up only when it delivered one, so a waiter with a wake-up already
// pending can never absorb a second one.
func wakeWaiter(e *Entry, key uint64) int {
	w := e.Private.(*waiter)
	select {
	case w.ch <- struct{}{}:
		// Safe to write after the send: the receiver is parked on ch and
		// only reads key after Remove/FinishWait has synchronized with this
		// walk through q.mu or Entry.q.
		w.key = key
		return 1
	default:
		return 0
	}
}

// waiterWake is built once so Wait allocates no closure.
var waiterWake = AutoRemove(wakeWaiter)

// waiterPool recycles waiters: one is returned only once it is off every
// queue with its channel drained, so no waker can reach it again.
var waiterPool = sync.Pool{New: func() any {
	w := &waiter{ch: make(chan struct{}, 1)}
	w.e.Func = waiterWake
	w.e.Private = w
	return w
}}

// Wait sleeps until cond() returns true and then returns nil, or returns
// ctx.Err() when ctx ends first (wait_event_interruptible with ctx as the
// signal). It queues a non-exclusive entry, so every wake-up reaches it.
// cond is re-checked after the entry is queued, so no wake-up between the
// check and the sleep is lost; whenever a cond call returns true, Wait
// returns nil, so cond may take a resource. cond runs on the caller's
// goroutine without the queue's lock; the waker must make it true with an
// atomic operation or under a mutex before calling a WakeUp function.
func (q *Queue) Wait(ctx context.Context, cond func() bool) error {
	return q.wait(ctx, cond, false)
}

// WaitExclusive is Wait with an exclusive entry at the tail
// (wait_event_interruptible_exclusive): a WakeUp reaches only one exclusive
// waiter. A waiter chosen by a wake-up never swallows it: if its ctx ends at
// the same moment it returns nil when cond() holds, and otherwise passes the
// wake-up to the next exclusive waiter.
func (q *Queue) WaitExclusive(ctx context.Context, cond func() bool) error {
	return q.wait(ctx, cond, true)
}

// wait is ___wait_event with an autoremove entry: prepare_to_wait_event,
// check the condition, sleep, and finish_wait.
func (q *Queue) wait(ctx context.Context, cond func() bool, exclusive bool) error {
	if cond == nil {
		return errNilCond
	}
	if ctx == nil {
		return errNilContext
	}
	if cond() {
		return nil
	}
	if err := ctx.Err(); err != nil {
		return err
	}
	w := waiterPool.Get().(*waiter)
	ok, err := q.sleep(ctx, w, cond, exclusive)
	if ok {
		// Only a normal return recycles w; after a panic in cond it is
		// dequeued but dropped.
		waiterPool.Put(w)
	}
	return err
}

// sleep is the slow path of wait, with one waiter for the whole call. It
// reports whether it returned normally, leaving w off the queue and drained.
func (q *Queue) sleep(ctx context.Context, w *waiter, cond func() bool, exclusive bool) (ok bool, err error) {
	// A panicking cond must not leave an entry behind to absorb an
	// exclusive wake-up meant for a live waiter.
	defer func() {
		if !ok {
			q.finish(w, exclusive)
		}
	}()
	done := ctx.Done()
	for {
		// Always locks: the entry may be queued again only once the walker
		// that woke it has unlinked it.
		if exclusive {
			q.PrepareToWaitExclusive(&w.e)
		} else {
			q.PrepareToWait(&w.e)
		}
		if cond() {
			q.finish(w, exclusive)
			return true, nil
		}
		if done == nil {
			<-w.ch
		} else {
			select {
			case <-w.ch:
			case <-done:
				// The kernel's prepare_to_wait_event rule: an exclusive
				// waiter chosen by a wake-up must consume the condition if
				// it can, so re-check once the entry is off the queue and
				// no new wake-up can reach it.
				q.FinishWait(&w.e)
				took := cond()
				q.passOn(w, exclusive)
				if took {
					return true, nil
				}
				return true, ctx.Err()
			}
		}
		// Woken: the wake function (autoremove) took the entry off, so the
		// condition can be checked before paying to queue it again; when
		// another waiter stole it, the loop queues and checks again.
		if cond() {
			q.finish(w, exclusive)
			return true, nil
		}
	}
}

// finish dequeues w once cond has returned true, then passes on any
// wake-up that reached it.
func (q *Queue) finish(w *waiter, exclusive bool) {
	q.FinishWait(&w.e)
	q.passOn(w, exclusive)
}

// passOn hands a wake-up that reached the dequeued waiter w after it last
// queued itself to the next exclusive waiter: w is leaving without sleeping
// on it, and it may stand for a resource another waiter needs (w can have
// taken a different unit than the one the wake-up announced, while the
// waiter that unit was meant for found nothing and went back to sleep).
// Passing on can cost a spurious wake-up, never a lost one.
func (q *Queue) passOn(w *waiter, exclusive bool) {
	// After FinishWait no walk can reach the entry, so the channel is final.
	select {
	case <-w.ch:
		if exclusive {
			q.WakeUp(w.key)
		}
	default:
	}
}
