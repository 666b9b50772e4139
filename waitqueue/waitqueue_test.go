package waitqueue

import (
	"context"
	"errors"
	"slices"
	"sync"
	"sync/atomic"
	"testing"
	"time"

	"go.uber.org/goleak"
)

func TestMain(m *testing.M) { goleak.VerifyTestMain(m) }

// recorder builds entries whose Funcs log their name and key and return a
// fixed result.
type recorder struct {
	calls []string
	keys  []uint64
}

func (r *recorder) entry(name string, ret int) *Entry {
	return &Entry{Private: name, Func: func(e *Entry, key uint64) int {
		r.calls = append(r.calls, e.Private.(string))
		r.keys = append(r.keys, key)
		return ret
	}}
}

func (r *recorder) take() []string {
	c := r.calls
	r.calls, r.keys = nil, nil
	return c
}

func order(t *testing.T, q *Queue) []string {
	t.Helper()
	var out []string
	q.mu.Lock()
	defer q.mu.Unlock()
	for e := q.head; e != nil; e = e.next {
		out = append(out, e.Private.(string))
	}
	return out
}

func TestZeroValueQueue(t *testing.T) {
	var q Queue
	if q.Active() || q.Len() != 0 {
		t.Fatalf("zero Queue: Active()=%v Len()=%d", q.Active(), q.Len())
	}
	if n := q.WakeUp(1) + q.WakeUpNr(3, 1) + q.WakeUpAll(1); n != 0 {
		t.Fatalf("wake-ups on an empty queue reported %d", n)
	}
	e := &Entry{Func: func(*Entry, uint64) int { return 1 }}
	q.Remove(e)
	q.FinishWait(e)
	q.Add(nil)
	q.AddExclusive(nil)
	q.Remove(nil)
	if q.Len() != 0 {
		t.Fatalf("no-ops changed Len to %d", q.Len())
	}
}

func TestNonExclusiveBeforeExclusive(t *testing.T) {
	var q Queue
	var r recorder
	q.AddExclusive(r.entry("x1", 1))
	q.Add(r.entry("a", 1))
	q.AddExclusive(r.entry("x2", 1))
	q.Add(r.entry("b", 1))
	if got, want := order(t, &q), []string{"b", "a", "x1", "x2"}; !slices.Equal(got, want) {
		t.Fatalf("queue order %v, want %v", got, want)
	}
	if n := q.WakeUp(7); n != 3 {
		t.Fatalf("WakeUp returned %d, want 3 (two non-exclusive, one exclusive)", n)
	}
	if got, want := r.calls, []string{"b", "a", "x1"}; !slices.Equal(got, want) {
		t.Fatalf("WakeUp called %v, want %v", got, want)
	}
	if !slices.Equal(r.keys, []uint64{7, 7, 7}) {
		t.Fatalf("keys passed %v, want all 7", r.keys)
	}
	r.take()
	if n := q.WakeUpNr(2, 0); n != 4 || !slices.Equal(r.take(), []string{"b", "a", "x1", "x2"}) {
		t.Fatalf("WakeUpNr(2) returned %d", n)
	}
	if q.Len() != 4 {
		t.Fatalf("entries without AutoRemove left the queue: Len()=%d", q.Len())
	}
}

func TestExclusiveThatDeclinesDoesNotCount(t *testing.T) {
	var q Queue
	var r recorder
	q.AddExclusive(r.entry("no", 0))
	q.AddExclusive(r.entry("yes", 1))
	q.AddExclusive(r.entry("later", 1))
	if n := q.WakeUp(0); n != 1 {
		t.Fatalf("WakeUp returned %d, want 1", n)
	}
	if got := r.take(); !slices.Equal(got, []string{"no", "yes"}) {
		t.Fatalf("called %v: a declining exclusive entry must not use up nr", got)
	}
}

func TestNegativeStopsWalk(t *testing.T) {
	var q Queue
	var r recorder
	q.AddExclusive(r.entry("stop", -1))
	q.AddExclusive(r.entry("behind", 1))
	q.Add(r.entry("front", 1))
	if n := q.WakeUpAll(0); n != 1 {
		t.Fatalf("WakeUpAll returned %d, want 1", n)
	}
	if got := r.take(); !slices.Equal(got, []string{"front", "stop"}) {
		t.Fatalf("called %v: the walk must stop at the entry returning < 0", got)
	}
}

func TestAutoRemoveDuringWalkAndReAdd(t *testing.T) {
	var q Queue
	var r recorder
	es := make([]*Entry, 4)
	for i, name := range []string{"a", "b", "c", "d"} {
		es[i] = r.entry(name, 1)
		if i != 2 { // c stays queued after being woken
			es[i].Func = AutoRemove(es[i].Func)
		}
		q.AddExclusive(es[i])
	}
	if n := q.WakeUpAll(0); n != 4 {
		t.Fatalf("WakeUpAll returned %d, want 4", n)
	}
	if got := r.take(); !slices.Equal(got, []string{"a", "b", "c", "d"}) {
		t.Fatalf("removals during the walk broke it: called %v", got)
	}
	if got := order(t, &q); !slices.Equal(got, []string{"c"}) || q.Len() != 1 {
		t.Fatalf("left %v (Len %d), want [c]", got, q.Len())
	}
	q.Add(es[0]) // re-adding an entry that was woken and removed
	if got := order(t, &q); !slices.Equal(got, []string{"a", "c"}) {
		t.Fatalf("after re-add: %v", got)
	}
}

func TestAutoRemoveKeepsEntryThatDeclines(t *testing.T) {
	var q Queue
	var r recorder
	declines, stops := r.entry("declines", 0), r.entry("stops", -1)
	declines.Func, stops.Func = AutoRemove(declines.Func), AutoRemove(stops.Func)
	q.Add(stops)
	q.Add(declines)
	if n := q.WakeUpAll(0); n != 0 {
		t.Fatalf("WakeUpAll returned %d", n)
	}
	if q.Len() != 2 {
		t.Fatalf("AutoRemove took off an entry whose Func returned <= 0: Len %d", q.Len())
	}
	if AutoRemove(nil) != nil {
		t.Fatal("AutoRemove(nil) should stay nil so the entry is never woken")
	}
}

func TestAutoRemoveOutsideWalkOnlyCallsFn(t *testing.T) {
	var q Queue
	calls := 0
	e := &Entry{Func: AutoRemove(func(*Entry, uint64) int { calls++; return 1 })}
	q.Add(e)
	if ret := e.Func(e, 0); ret != 1 || calls != 1 {
		t.Fatalf("direct call returned %d after %d calls", ret, calls)
	}
	if q.Len() != 1 || e.q.Load() != &q {
		t.Fatal("a direct call outside a walk unlinked the entry without the lock")
	}
}

func TestAddQueuedEntryIsNoOp(t *testing.T) {
	var q, other Queue
	var r recorder
	a, x := r.entry("a", 1), r.entry("x", 1)
	q.Add(a)
	q.AddExclusive(x)
	q.AddExclusive(a) // keeps its place and stays non-exclusive
	q.Add(x)          // stays exclusive at the tail
	other.Add(a)
	other.PrepareToWaitExclusive(x)
	if q.Len() != 2 || other.Len() != 0 {
		t.Fatalf("Len q=%d other=%d, want 2 and 0", q.Len(), other.Len())
	}
	if got := order(t, &q); !slices.Equal(got, []string{"a", "x"}) {
		t.Fatalf("order %v", got)
	}
	other.Remove(a) // not on other: must not touch q's list
	if q.Len() != 2 {
		t.Fatalf("Remove on the wrong queue changed q: Len %d", q.Len())
	}
	if n := q.WakeUp(0); n != 2 {
		t.Fatalf("WakeUp returned %d: a's exclusivity changed", n)
	}
}

func TestNilFuncNeverWoken(t *testing.T) {
	var q Queue
	var r recorder
	q.AddExclusive(&Entry{})
	q.AddExclusive(r.entry("x", 1))
	if n := q.WakeUp(0); n != 1 || !slices.Equal(r.take(), []string{"x"}) {
		t.Fatalf("WakeUp returned %d; an entry with nil Func must be skipped", n)
	}
}

func TestFuncPanicLeavesQueueUsable(t *testing.T) {
	var q Queue
	e := &Entry{Func: func(*Entry, uint64) int { panic("boom") }}
	q.Add(e)
	func() {
		defer func() {
			if recover() == nil {
				t.Fatal("the Func's panic was swallowed")
			}
		}()
		q.WakeUp(0)
	}()
	q.Remove(e) // would deadlock if the walk kept the lock
	if q.Len() != 0 || q.waking {
		t.Fatalf("after a panicking walk: Len %d waking %v", q.Len(), q.waking)
	}
}

func TestPrepareToWaitFinishWait(t *testing.T) {
	var q Queue
	var ready atomic.Bool
	woke := make(chan struct{}, 1)
	e := &Entry{Func: AutoRemove(func(*Entry, uint64) int {
		select {
		case woke <- struct{}{}:
		default:
		}
		return 1
	})}
	// The runtime's parking pattern: queue, check, sleep, finish.
	done := make(chan bool)
	go func() {
		for {
			q.PrepareToWaitExclusive(e)
			if ready.Load() {
				break
			}
			<-woke
		}
		q.FinishWait(e)
		done <- true
	}()
	for q.Len() == 0 {
		time.Sleep(time.Millisecond)
	}
	ready.Store(true)
	q.WakeUp(0)
	<-done
	if q.Len() != 0 || e.q.Load() != nil {
		t.Fatal("FinishWait left the entry queued")
	}
	q.FinishWait(e) // already off: no-op
	q.PrepareToWait(e)
	q.PrepareToWait(e)
	if q.Len() != 1 {
		t.Fatalf("PrepareToWait twice queued %d entries", q.Len())
	}
	q.FinishWait(e)
	if q.Len() != 0 {
		t.Fatal("FinishWait did not remove a queued entry")
	}
}

func TestWaitArguments(t *testing.T) {
	var q Queue
	ctx := context.Background()
	if err := q.Wait(ctx, nil); err == nil {
		t.Fatal("Wait with nil cond returned nil")
	}
	var nilCtx context.Context // a nil context is an error, not a panic
	if err := q.WaitExclusive(nilCtx, func() bool { return true }); err == nil {
		t.Fatal("WaitExclusive with nil ctx returned nil")
	}
	canceled, cancel := context.WithCancel(ctx)
	cancel()
	if err := q.Wait(canceled, func() bool { return true }); err != nil {
		t.Fatalf("cond already true must win over a canceled ctx: %v", err)
	}
	if err := q.WaitExclusive(canceled, func() bool { return false }); !errors.Is(err, context.Canceled) {
		t.Fatalf("canceled ctx: got %v", err)
	}
	if q.Len() != 0 {
		t.Fatal("a Wait that returned left an entry queued")
	}
}

// waitFor polls f, failing the test after a generous bound (a hang, not a
// timing assertion).
func waitFor(t *testing.T, what string, f func() bool) {
	t.Helper()
	deadline := time.Now().Add(30 * time.Second)
	for !f() {
		if time.Now().After(deadline) {
			t.Fatalf("gave up waiting for %s", what)
		}
		time.Sleep(100 * time.Microsecond)
	}
}

func TestWaitSleepsUntilCondAndReQueues(t *testing.T) {
	var q Queue
	var flag atomic.Bool
	var calls atomic.Int32
	errc := make(chan error)
	go func() {
		errc <- q.Wait(context.Background(), func() bool { calls.Add(1); return flag.Load() })
	}()
	waitFor(t, "the waiter to queue", func() bool { return calls.Load() >= 2 })
	// A wake-up while cond is false must put the waiter back to sleep.
	if n := q.WakeUpAll(0); n != 1 {
		t.Fatalf("WakeUpAll returned %d, want 1", n)
	}
	waitFor(t, "the waiter to re-check and re-queue", func() bool { return calls.Load() >= 4 && q.Len() == 1 })
	select {
	case err := <-errc:
		t.Fatalf("Wait returned %v while cond was false", err)
	default:
	}
	flag.Store(true)
	q.WakeUpAll(0)
	if err := <-errc; err != nil {
		t.Fatal(err)
	}
	if q.Len() != 0 {
		t.Fatal("entry left queued")
	}
}

func TestWaitCanceledLeavesQueueEmpty(t *testing.T) {
	var q Queue
	ctx, cancel := context.WithCancel(context.Background())
	errc := make(chan error)
	go func() { errc <- q.WaitExclusive(ctx, func() bool { return false }) }()
	waitFor(t, "the waiter to queue", func() bool { return q.Len() == 1 })
	cancel()
	if err := <-errc; !errors.Is(err, context.Canceled) {
		t.Fatalf("got %v, want context.Canceled", err)
	}
	if q.Len() != 0 {
		t.Fatal("canceled waiter left its entry queued")
	}
}

// semaphore is the cond a resource-taking waiter uses: true means it took
// a unit and owns it.
type semaphore struct{ units atomic.Int64 }

func (s *semaphore) take() bool {
	for {
		u := s.units.Load()
		if u <= 0 {
			return false
		}
		if s.units.CompareAndSwap(u, u-1) {
			return true
		}
	}
}

func (s *semaphore) release(q *Queue) {
	s.units.Add(1)
	q.WakeUp(0)
}

func TestWaitExclusiveWakesOne(t *testing.T) {
	var q Queue
	var sem semaphore
	const n = 3
	ctx, cancel := context.WithCancel(context.Background())
	defer cancel()
	var got atomic.Int32
	var wg sync.WaitGroup
	for range n {
		wg.Go(func() {
			if q.WaitExclusive(ctx, sem.take) == nil {
				got.Add(1)
			}
		})
	}
	waitFor(t, "all waiters to queue", func() bool { return q.Len() == n })
	sem.release(&q)
	waitFor(t, "one waiter to take the unit", func() bool { return got.Load() == 1 })
	if q.Len() != n-1 {
		t.Fatalf("Len %d after one exclusive wake-up, want %d", q.Len(), n-1)
	}
	cancel()
	wg.Wait()
	if got.Load() != 1 || sem.units.Load() != 0 {
		t.Fatalf("successes %d, units left %d", got.Load(), sem.units.Load())
	}
}

// TestWaitExclusivePassesOnStolenWakeup builds the interleaving in which a
// waiter leaves with cond true while holding a wake-up meant for a unit it
// did not take: B is woken for unit 1, which A took, and goes back to sleep;
// the wake-up for unit 2 then reaches A, which is about to return. Unless A
// passes it on, B sleeps forever next to a free unit.
func TestWaitExclusivePassesOnStolenWakeup(t *testing.T) {
	var q Queue
	var sem semaphore
	ctx := context.Background()
	var bCalls atomic.Int32
	bTake := func() bool { bCalls.Add(1); return sem.take() }
	bErr := make(chan error)
	go func() { bErr <- q.WaitExclusive(ctx, bTake) }()
	waitFor(t, "B to queue", func() bool { return bCalls.Load() == 2 && q.Len() == 1 })

	aCalls := 0
	aTake := func() bool {
		aCalls++
		if aCalls != 2 { // the fast path; A is queued behind B only on call 2
			return false
		}
		sem.units.Add(1)
		if !sem.take() { // A takes unit 1 itself
			t.Error("A could not take unit 1")
		}
		q.WakeUp(0) // ...and its wake-up goes to B, at the head
		// B's call 3 follows the wake-up and call 4 the re-queue.
		waitFor(t, "B to find nothing and re-queue", func() bool { return bCalls.Load() == 4 && q.Len() == 2 })
		sem.release(&q) // unit 2; its wake-up reaches A, now at the head
		return true
	}
	if err := q.WaitExclusive(ctx, aTake); err != nil {
		t.Fatal(err)
	}
	select {
	case err := <-bErr:
		if err != nil {
			t.Fatal(err)
		}
	case <-time.After(30 * time.Second):
		t.Fatal("B never got unit 2: A swallowed the wake-up")
	}
	if sem.units.Load() != 0 || q.Len() != 0 {
		t.Fatalf("units left %d, Len %d", sem.units.Load(), q.Len())
	}
}

// TestWaitExclusiveCancelRace cancels the head waiter at the moment a unit
// is released: whichever way the race goes, exactly one of the two waiters
// owns the unit.
func TestWaitExclusiveCancelRace(t *testing.T) {
	rounds := 300
	if testing.Short() {
		rounds = 50
	}
	for range rounds {
		var q Queue
		var sem semaphore
		ctxA, cancelA := context.WithCancel(context.Background())
		ctxB, cancelB := context.WithCancel(context.Background())
		errA, errB := make(chan error, 1), make(chan error, 1)
		go func() { errA <- q.WaitExclusive(ctxA, sem.take) }()
		waitFor(t, "A to queue", func() bool { return q.Len() == 1 })
		go func() { errB <- q.WaitExclusive(ctxB, sem.take) }()
		waitFor(t, "B to queue", func() bool { return q.Len() == 2 })
		go cancelA()
		sem.release(&q)
		a := <-errA
		var b error
		if a == nil {
			cancelB() // the unit is A's; B would sleep forever otherwise
			b = <-errB
		} else {
			select {
			case b = <-errB:
			case <-time.After(30 * time.Second):
				t.Fatal("A was canceled and B never got the unit: wake-up swallowed")
			}
			cancelB()
		}
		cancelA()
		wins := 0
		for _, err := range []error{a, b} {
			switch {
			case err == nil:
				wins++
			case !errors.Is(err, context.Canceled):
				t.Fatalf("unexpected error %v", err)
			}
		}
		if wins != 1 || sem.units.Load() != 0 {
			t.Fatalf("successes %d, units left %d: want exactly one owner", wins, sem.units.Load())
		}
	}
}

func TestWaitCondPanicLeavesNoEntry(t *testing.T) {
	var q Queue
	var sem semaphore
	calls := 0
	func() {
		defer func() {
			if recover() == nil {
				t.Fatal("cond's panic was swallowed")
			}
		}()
		_ = q.WaitExclusive(context.Background(), func() bool {
			calls++
			if calls == 2 { // queued by now
				panic("cond")
			}
			return false
		})
	}()
	if q.Len() != 0 {
		t.Fatal("a panicking cond left its entry queued, where it would absorb an exclusive wake-up")
	}
	// The queue still hands units to live waiters.
	errc := make(chan error)
	go func() { errc <- q.WaitExclusive(context.Background(), sem.take) }()
	waitFor(t, "the waiter to queue", func() bool { return q.Len() == 1 })
	sem.release(&q)
	if err := <-errc; err != nil {
		t.Fatal(err)
	}
}
