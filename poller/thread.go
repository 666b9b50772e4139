// The poller's OS thread policy: when it locks a thread for itself.
//
// Invariant: the thread is held only while requests are in flight; it is
// let go at every park, when no task work can be stranded on it.

package poller

import (
	"runtime"
	"sync/atomic"
	"time"
)

// dedicatedThread reports whether the poller may keep one OS thread while
// the ring is busy. io_uring completes a request by queueing task work on
// the thread that submitted it, and that thread must run it before the CQE
// is posted. A poller goroutine that Go moves between threads (it yields,
// it parks) leaves its completions queued on threads that are asleep or
// busy, often on the other CPU: each wake-up is an IPI, and the thread then
// wakes the poller with another. On the 2-vCPU VM of docs/benchmarks.md
// that cost blocking O_DIRECT reads at depth 32 2-13% of their IOPS and
// most of their p99.9.
//
// A locked poller does not yield, so the goroutines it wakes run on other
// Ps, whose threads may have to be woken first, and parking it costs two
// futex wake-ups (the scheduler hands the P to another thread when it
// parks, and back when it is readied). So it takes the thread only once
// requests are deep in flight (lockDepth) or its completions wake no
// goroutine (callbacks, which run on the poller anyway), and lets go
// whenever it parks: nothing is in flight then, so no task work is
// stranded, and an unlocked park is an ordinary one. One blocking reader at
// a time ran at 0.42x fio's IOPS on an always-locked poller, 0.60-0.74x on
// a yielding one or this one. Keeping the thread through parks after a deep
// spell costs about a third more cross-CPU wake-ups and 2-3x the p99.9 of
// deep blocking reads, for the same IOPS.
//
// With a single P the goroutine stays on one thread anyway and must yield
// for the submitters to run; the software ring has no task work, and under
// SQPOLL the kernel's SQ thread is the submitter.
func (p *Poller) dedicatedThread() bool {
	return !p.cfg.SharedThread && !p.cfg.Soft && !p.cfg.SQPoll && runtime.GOMAXPROCS(0) > 1
}

// lockDepth is the number of requests in flight from which the poller
// keeps its thread although its completions wake goroutines.
const lockDepth = 8

// pollerThread tracks whether the poller goroutine holds its OS thread.
type pollerThread struct {
	locked bool
	locks  *atomic.Uint64
}

func (t *pollerThread) adjust(want bool) {
	switch {
	case want && !t.locked:
		runtime.LockOSThread()
		t.locks.Add(1)
	case !want && t.locked:
		runtime.UnlockOSThread()
	}
	t.locked = want
}

// share lets go of the thread and yields once the poller has held both
// for lockedSlice since from. Goroutines readied onto this P while the
// poller holds it (callers it woke, one the wake-up that brought it here
// put off) are served only by this P while the other has work of its own:
// without it they wait until the poller parks or sysmon preempts it (10 ms
// and more). Once blocking callers were woken or found reaping, the loop
// calls it on every pass until the poller parks, whatever the pass did: a
// poller that only submits while yielding callers reap keeps its P as
// surely as one that wakes them (a slice of 250 µs cut cached reads'
// p99.9 from 1.05 ms to 0.33 ms but cost 7% of their IOPS). A poller that
// only runs callbacks keeps its thread: their task work stays on it.
func (t *pollerThread) share(from *time.Time) {
	if !t.locked {
		return
	}
	if now := time.Now(); now.Sub(*from) >= lockedSlice {
		t.adjust(false)
		runtime.Gosched()
		*from = time.Now()
	}
}
