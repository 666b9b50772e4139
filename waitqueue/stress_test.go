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
				case calls > 2 && !ok:
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
// unit or sees stop, and counts the wake-ups that found nothing. Within one
// Wait call the first two cond calls are the fast path and the re-check
// after queueing; every later call follows exactly one wake-up.
type herdCond struct {
	sem      *semaphore
	stop     *atomic.Bool
	rechecks *atomic.Int64 // re-checks after queueing, over all sleepers
	calls    int
	futile   int
}

func (h *herdCond) cond() bool {
	h.calls++
	ok := h.stop.Load() || h.sem.take()
	switch {
	case h.calls == 2:
		h.rechecks.Add(1)
	case h.calls > 2 && !ok:
		h.futile++
	}
	return ok
}

// runHerd is the thundering-herd scenario shared with the benchmark: n
// sleepers loop taking units (exclusive: WaitExclusive, else Wait); the
// waker releases one unit and calls WakeUp, waits for the taker's
// acknowledgement, and then until the taker is queued again, so no sleeper
// can take a unit it was not woken for. It returns the total number of
// wake-ups that found nothing.
func runHerd(tb testing.TB, n, wakes int, exclusive bool) (futile int) {
	var q Queue
	var sem semaphore
	var stop atomic.Bool
	var rechecks atomic.Int64
	ack := make(chan struct{})
	ctx := context.Background()
	futiles := make([]int, n)
	var wg sync.WaitGroup
	for i := range n {
		wg.Go(func() {
			h := &herdCond{sem: &sem, stop: &stop, rechecks: &rechecks}
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
	for i := range wakes {
		for rechecks.Load() < int64(n+i) {
			runtime.Gosched()
		}
		sem.release(&q)
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
