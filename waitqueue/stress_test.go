package waitqueue

import (
	"context"
	"errors"
	"fmt"
	"math/rand/v2"
	"runtime"
	"sync"
	"sync/atomic"
	"testing"
	"time"
)

// TestWaitExclusiveSemaphoreStress races N exclusive sleepers, each wanting
// one to three units (so a sleeper coming back for more barges past parked
// ones), M releases and random cancellations. Whatever the interleaving:
// every success owns exactly one unit (successes + units left == M), a unit
// is never left free while a sleeper whose ctx is live still sleeps, and when
// M covers every sleeper's wants, every sleeper never canceled gets them all.
func TestWaitExclusiveSemaphoreStress(t *testing.T) {
	rounds := 400
	if testing.Short() {
		rounds = 40
	}
	for round := range rounds {
		r := rand.New(rand.NewPCG(uint64(round), 0xcafe))
		n := 1 + r.IntN(40)
		wants := make([]int, n)
		total := 0
		for i := range wants {
			wants[i] = 1 + r.IntN(3)
			total += wants[i]
		}
		m := r.IntN(2*total + 1)
		if !t.Run(fmt.Sprintf("round=%d/N=%d/M=%d/want=%d", round, n, m, total), func(t *testing.T) {
			semaphoreRound(t, r, wants, m)
		}) {
			return
		}
	}
}

func semaphoreRound(t *testing.T, r *rand.Rand, wants []int, m int) {
	var q Queue
	var sem semaphore
	type sleeper struct {
		ctx      context.Context
		cancel   context.CancelFunc
		doomed   bool // will be canceled by the canceler
		canceled atomic.Bool
		got      int
		err      error
	}
	n, total := len(wants), 0
	sleepers := make([]*sleeper, n)
	for i := range sleepers {
		ctx, cancel := context.WithCancel(context.Background())
		sleepers[i] = &sleeper{ctx: ctx, cancel: cancel, doomed: r.IntN(3) == 0}
		total += wants[i]
	}
	delays := make([]int, n) // Gosched counts, so cancellations land anywhere
	for i := range delays {
		delays[i] = r.IntN(50)
	}
	wakers := 1 + r.IntN(4)

	var live atomic.Int32 // sleepers still wanting units
	live.Store(int32(n))
	var sleepWG, driveWG sync.WaitGroup
	for i, s := range sleepers {
		sleepWG.Go(func() {
			defer live.Add(-1)
			// Yielding inside cond widens the windows where wake-ups race
			// with a queued sleeper's own take: before it, and after it
			// while the sleeper, holding a unit, is still queued.
			take := func() bool {
				if rand.IntN(4) == 0 {
					runtime.Gosched()
				}
				ok := sem.take()
				if ok && rand.IntN(2) == 0 {
					runtime.Gosched()
				}
				return ok
			}
			for s.got < wants[i] {
				if s.err = q.WaitExclusive(s.ctx, take); s.err != nil {
					return
				}
				s.got++
			}
		})
	}
	for w := range wakers {
		driveWG.Go(func() {
			for i := w; i < m; i += wakers {
				if i%3 == 0 {
					runtime.Gosched()
				}
				sem.release(&q)
			}
		})
	}
	driveWG.Go(func() {
		for i, s := range sleepers {
			if s.doomed {
				for range delays[i] {
					runtime.Gosched()
				}
				s.canceled.Store(true)
				s.cancel()
			}
		}
	})
	driveWG.Wait()

	// Every release has happened. From here units only fall, so either
	// every sleeper returns or every unit is taken; a free unit next to a
	// sleeper that stays asleep is a lost wake-up.
	waitFor(t, "no free unit while sleepers sleep", func() bool {
		return live.Load() == 0 || sem.units.Load() == 0
	})
	if m >= total {
		waitFor(t, "every sleeper to return (M covers all wants)", func() bool { return live.Load() == 0 })
	}
	for _, s := range sleepers {
		s.cancel()
	}
	sleepWG.Wait()

	successes := 0
	for i, s := range sleepers {
		successes += s.got
		switch {
		case s.err == nil:
			if s.got != wants[i] {
				t.Fatalf("sleeper %d returned nil with %d of %d units", i, s.got, wants[i])
			}
		case !errors.Is(s.err, context.Canceled):
			t.Fatalf("sleeper %d: unexpected error %v", i, s.err)
		case m >= total && !s.canceled.Load():
			t.Fatalf("sleeper %d was never canceled and M covers all wants, yet it failed: %v", i, s.err)
		}
	}
	if left := int(sem.units.Load()); successes+left != m {
		t.Fatalf("successes %d + units left %d != %d released: a unit was lost or duplicated", successes, left, m)
	}
	if q.Len() != 0 {
		t.Fatalf("%d entries left queued after every Wait returned", q.Len())
	}
}

// TestNonExclusiveWakeUpIsAHerd is the contrast to the herd test: with
// non-exclusive sleepers one WakeUp wakes every one of them, and all but the
// taker find nothing.
func TestNonExclusiveWakeUpIsAHerd(t *testing.T) {
	const n = 50
	var q Queue
	var sem semaphore
	var rechecks, futile, took atomic.Int64
	ctx, cancel := context.WithCancel(context.Background())
	var wg sync.WaitGroup
	for range n {
		wg.Go(func() {
			calls := 0
			err := q.Wait(ctx, func() bool {
				calls++
				ok := sem.take()
				switch {
				case calls == 2:
					rechecks.Add(1)
				case afterWake(calls) && !ok:
					futile.Add(1)
				}
				return ok
			})
			if err == nil {
				took.Add(1)
			}
		})
	}
	waitFor(t, "all sleepers to park", func() bool { return rechecks.Load() == n })
	sem.release(&q)
	waitFor(t, "every sleeper to wake", func() bool { return took.Load()+futile.Load() >= n })
	gotTook, gotFutile := took.Load(), futile.Load() // before cancel's re-checks add to futile
	cancel()
	wg.Wait()
	if gotTook != 1 || gotFutile != n-1 {
		t.Fatalf("took %d, woken for nothing %d; want 1 and %d", gotTook, gotFutile, n-1)
	}
}

// TestBroadcastWakesAll parks 10,000 sleepers on one queue and releases them
// all with a single WakeUpAll.
func TestBroadcastWakesAll(t *testing.T) {
	n := 10000
	if testing.Short() {
		n = 1000
	}
	var q Queue
	var flag atomic.Bool
	var checked atomic.Int64
	var returned atomic.Int64
	var wg sync.WaitGroup
	errs := make(chan error, n)
	for range n {
		wg.Go(func() {
			calls := 0
			err := q.Wait(context.Background(), func() bool {
				calls++
				if calls == 2 {
					checked.Add(1) // queued and re-checked: about to park
				}
				return flag.Load()
			})
			if err != nil {
				errs <- err
			}
			returned.Add(1)
		})
	}
	waitFor(t, "all sleepers to queue", func() bool { return checked.Load() == int64(n) })
	if q.Len() != n {
		t.Fatalf("Len %d with %d sleepers queued", q.Len(), n)
	}
	flag.Store(true)
	if woken := q.WakeUpAll(0); woken != n {
		t.Fatalf("WakeUpAll woke %d of %d", woken, n)
	}
	waitFor(t, "all sleepers to return after one WakeUpAll", func() bool { return returned.Load() == int64(n) })
	wg.Wait()
	close(errs)
	for err := range errs {
		t.Fatal(err)
	}
	if q.Len() != 0 {
		t.Fatalf("%d entries left", q.Len())
	}
}

// herdCond is a sleeper's cond for the thundering-herd scenario: it takes a
// unit or sees stop, counts the wake-ups that found nothing, and adds to a
// shared count of parked sleepers, which the waker lowers by the number each
// WakeUp reports woken. Within one Wait call (without
// cancellation) cond runs on the fast path, after queueing, and then in
// pairs: right after each wake-up, and after queueing again when that found
// nothing. So the odd calls from the third on are exactly the ones that
// follow a wake-up, and a false even call means the sleeper is about to park.
type herdCond struct {
	sem    *semaphore
	stop   *atomic.Bool
	asleep *atomic.Int64
	calls  int
	futile int
}

// afterWake reports whether the n-th cond call of a Wait follows a wake-up.
func afterWake(n int) bool { return n > 2 && n%2 == 1 }

func (h *herdCond) cond() bool {
	h.calls++
	ok := h.stop.Load() || h.sem.take()
	switch {
	case afterWake(h.calls) && !ok:
		h.futile++
	case h.calls%2 == 0 && !ok:
		h.asleep.Add(1) // the waker takes it back when it wakes this sleeper
	}
	return ok
}

// runHerd is the thundering-herd scenario shared with the benchmark: n
// sleepers loop taking units (exclusive: WaitExclusive, else Wait). Before
// each wake-up the waker waits until all n are parked, then releases one unit
// and calls WakeUp, and waits for the taker's acknowledgement; so every
// wake-up meets the full herd, and no sleeper can take a unit it was not
// woken for. It returns the total number of wake-ups that found nothing.
func runHerd(tb testing.TB, n, wakes int, exclusive bool) (futile int) {
	var q Queue
	var sem semaphore
	var stop atomic.Bool
	var asleep atomic.Int64
	ack := make(chan struct{})
	ctx := context.Background()
	futiles := make([]int, n)
	var wg sync.WaitGroup
	for i := range n {
		wg.Go(func() {
			h := &herdCond{sem: &sem, stop: &stop, asleep: &asleep}
			for {
				h.calls = 0
				var err error
				if exclusive {
					err = q.WaitExclusive(ctx, h.cond)
				} else {
					err = q.Wait(ctx, h.cond)
				}
				if err != nil {
					tb.Error(err)
					return
				}
				if stop.Load() {
					break
				}
				ack <- struct{}{}
			}
			futiles[i] = h.futile
		})
	}
	for range wakes {
		for asleep.Load() != int64(n) {
			runtime.Gosched()
		}
		sem.units.Add(1)
		asleep.Add(-int64(q.WakeUp(0)))
		<-ack
	}
	stop.Store(true)
	q.WakeUpAll(0)
	wg.Wait()
	for _, f := range futiles {
		futile += f
	}
	return futile
}

// TestExclusiveWakeUpNoThunderingHerd asserts that exclusive WakeUp never
// wakes a sleeper for nothing in the herd scenario.
func TestExclusiveWakeUpNoThunderingHerd(t *testing.T) {
	n, wakes := 200, 2000
	if testing.Short() {
		n, wakes = 50, 200
	}
	deadline := time.AfterFunc(2*time.Minute, func() { panic("herd scenario hung") })
	defer deadline.Stop()
	if futile := runHerd(t, n, wakes, true); futile != 0 {
		t.Fatalf("%d sleepers woken for nothing by %d exclusive WakeUps", futile, wakes)
	}
}

// TestConcurrentEntryOps hammers the raw entry API from several goroutines:
// owners add, move and remove their entries across two queues while wakers
// walk them with AutoRemove entries leaving mid-walk. Under -race this checks
// the lock-free paths (Remove's fast path, the CAS in add); at the end each
// list must be consistent and agree with Len and with every entry's record.
func TestConcurrentEntryOps(t *testing.T) {
	const owners, perOwner, steps = 4, 4, 3000
	var qs [2]Queue
	var woken atomic.Int64
	entries := make([]*Entry, owners*perOwner)
	ids := make(map[*Entry]int, len(entries))
	for i := range entries {
		fn := func(*Entry, uint64) int { woken.Add(1); return 1 }
		if i%2 == 0 {
			fn = AutoRemove(fn)
		}
		entries[i] = &Entry{Func: fn}
		ids[entries[i]] = i
	}
	var stop atomic.Bool
	var owned, wakers sync.WaitGroup
	for o := range owners {
		owned.Go(func() {
			r := rand.New(rand.NewPCG(uint64(o), 9))
			mine := entries[o*perOwner : (o+1)*perOwner]
			// Keep going until the wakers have met a queued entry: without
			// -race the owners can finish before a waker is even scheduled.
			for i := 0; i < steps || (woken.Load() == 0 && i < 1000*steps); i++ {
				e, q := mine[r.IntN(perOwner)], &qs[r.IntN(2)]
				switch r.IntN(5) {
				case 0:
					q.Add(e)
				case 1:
					q.AddExclusive(e)
				case 2:
					q.PrepareToWaitExclusive(e)
				case 3:
					q.Remove(e)
				default:
					q.FinishWait(e)
				}
			}
		})
	}
	for w := range 2 {
		wakers.Go(func() {
			for i := 0; !stop.Load(); i++ {
				q := &qs[(w+i)%2]
				switch i % 3 {
				case 0:
					q.WakeUp(uint64(i))
				case 1:
					q.WakeUpNr(2, uint64(i))
				default:
					q.WakeUpAll(uint64(i))
				}
			}
		})
	}
	owned.Wait()
	stop.Store(true)
	wakers.Wait()
	if woken.Load() == 0 {
		t.Fatal("no Func ever ran: the wakers never met a queued entry")
	}
	onQueue := [2]int{}
	for qi := range qs {
		got, err := qs[qi].snapshot(ids)
		if err != nil {
			t.Fatalf("q%d: %v", qi, err)
		}
		if len(got) != qs[qi].Len() {
			t.Fatalf("q%d lists %d entries but Len is %d", qi, len(got), qs[qi].Len())
		}
		onQueue[qi] = len(got)
	}
	recorded := [2]int{}
	for _, e := range entries {
		for qi := range qs {
			if e.q.Load() == &qs[qi] {
				recorded[qi]++
			}
		}
	}
	if recorded != onQueue {
		t.Fatalf("entries record %v per queue, lists hold %v", recorded, onQueue)
	}
}
