// The poller goroutine's loop and how it sleeps.
//
// Invariant: the poller sleeps only after storing its state and re-checking
// the queues (the other half of submit.go's publish-then-kick), and it stops
// only when Close has begun and nothing is pending, read in that order.

package poller

import (
	"runtime"
	"time"

	"github.com/ringwake/ringwake/internal/ring"
)

const (
	pollerRunning  = iota // will submit and reap before it sleeps again
	pollerParked          // nothing in flight; sleeps on wake
	pollerInKernel        // blocked in io_uring_enter(GETEVENTS); submitters submit themselves
	pollerLent            // parked, its role lent to a blocking caller reaping inline; submitters submit themselves
)

// loop is the poller goroutine: submit what is pending, reap a batch, fire
// its entries, and sleep only when there is nothing to do.
func (p *Poller) loop() {
	defer close(p.stopped)
	p.pollerGoid.Store(curGoid())
	th := pollerThread{locks: &p.stats.threadLocks}
	defer th.adjust(false)
	dedicated := p.dedicatedThread()
	woke := true  // the last batch woke a parked goroutine: assumed until one did not
	deep := false // lockDepth requests were in flight since the last park
	spins := 0
	var spinFrom time.Time
	yielded := false
	var lockedFrom time.Time // when the thread was last taken or the P last yielded
	callers := false         // blocking callers were woken or reaped since the last park
	for {
		if callers {
			th.share(&lockedFrom)
		}
		inFlight := p.pending.Load()
		deep = deep || inFlight-p.batchExtra.Load() >= lockDepth
		// See dedicatedThread for when the thread is taken and let go.
		if dedicated && !th.locked && inFlight > 0 && (deep || !woke) {
			th.adjust(true)
			lockedFrom = time.Now()
		}
		n, w, busy := p.reap(false)
		if n > 0 {
			woke = w
			callers = callers || w
			spins = 0
			continue
		}
		if !busy && p.ring.CQOverflow() {
			p.stats.overflows.Add(1)
			p.ring.FlushOverflow()
			continue
		}
		if n := p.ring.SQPending(); n > 0 {
			if !p.cfg.SQPoll {
				// Goroutines the last batch woke are queued behind us: let them
				// run and publish their next requests first, so one enter
				// carries them all instead of one each. With nothing runnable
				// Gosched returns at once. A dedicated thread does not yield:
				// they run on the other Ps meanwhile.
				if !yielded && !th.locked && n < uint32(len(p.slots)) {
					yielded = true
					runtime.Gosched()
					continue
				}
				yielded = false
				p.stats.enters.Add(1)
				p.submit()
				if submitHook != nil {
					submitHook()
				}
				continue
			}
			// The SQ thread consumes on its own; enter only to wake it.
			if p.ring.NeedWakeup() {
				p.stats.enters.Add(1)
				p.submit()
			}
		}
		if busy {
			callers = true
			// A caller is delivering a batch: look again soon, without
			// sleeping in the kernel for completions it may be taking.
			if !th.locked {
				runtime.Gosched()
			}
			continue
		}
		// closed before pending: once Close has begun no request is added
		// (Close's own cancel only while others are pending), so pending
		// read after it can only fall. Read the other way round, a Submit
		// that went in just before Close could be left in flight.
		closed := p.closed.Load()
		idle := p.pending.Load() == 0
		if idle && closed {
			p.cancelDeferred()
			return
		}
		// Nothing to reap or submit: keep looking (letting the goroutines
		// just woken run, unless the thread is dedicated) for at least two
		// rounds and spinWait before sleeping. Those goroutines publish their
		// next requests within microseconds, often after the batch that woke
		// them left nothing in flight, and a dedicated thread pays two
		// futex wake-ups to park and be woken.
		if spins == 0 {
			spinFrom = time.Now()
		}
		if spins < 2 || time.Since(spinFrom) < spinWait {
			spins++
			if !th.locked {
				runtime.Gosched()
			}
			continue
		}
		spins = 0
		if idle {
			th.adjust(false) // nothing in flight: no task work to strand
			// A spell that ran deep was a crowd of callers: the next one to
			// find the ring asleep is likely one of them, and the poller
			// serves a crowd better than an inline reaper does.
			p.shallow.Store(!deep)
			deep = false
			callers = false
			p.park()
			if dedicated = p.dedicatedThread(); !dedicated {
				th.adjust(false) // GOMAXPROCS went to 1 meanwhile: yield again
			}
			continue
		}
		p.state.Store(pollerInKernel)
		if (p.ring.SQPending() > 0 && !p.cfg.SQPoll) || p.ring.CQReady() > 0 {
			p.state.Store(pollerRunning)
			continue
		}
		p.stats.enters.Add(1)
		p.stats.waits.Add(1)
		// Bounded so that a kick whose submit failed (EAGAIN) is retried soon.
		p.ring.EnterTimeout(0, 1, ring.EnterGetEvents, 100*time.Millisecond)
		p.state.Store(pollerRunning)
	}
}

// lockedSlice bounds how long a poller holding its thread keeps its P
// from the goroutines queued on it (see loop).
const lockedSlice = time.Millisecond

// park sleeps until a submitter or Close kicks. The re-check after the state
// store closes the window in which a kick would have seen pollerRunning.
func (p *Poller) park() {
	p.state.Store(pollerParked)
	if p.pending.Load() > 0 || p.closed.Load() {
		if p.state.CompareAndSwap(pollerParked, pollerRunning) {
			return
		}
		<-p.wake // a kicker won the CAS: consume its token
		return
	}
	p.stats.parks.Add(1)
	<-p.wake
	p.state.Store(pollerRunning)
}

// spinWait is how long the poller keeps looking for completions before it
// blocks in the kernel. A completion that lands meanwhile is reaped without
// the poller's thread going to sleep and being woken, and without the P
// hand-offs around a blocking syscall: on this 2-vCPU VM, randread O_DIRECT
// block mode went from 0.86–0.98x fio to 0.96–1.12x with it (4 rounds, same
// minutes; 30 µs was no better). It costs at most that much CPU per wait.
const spinWait = 10 * time.Microsecond

// submitHook, set only by tests, runs after the poller's own submit and
// before it reaps what that submit completed.
var submitHook func()
