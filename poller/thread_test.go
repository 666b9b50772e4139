package poller

import (
	"context"
	"runtime"
	"sync"
	"sync/atomic"
	"testing"
	"time"

	"golang.org/x/sys/unix"

	"github.com/ringwake/ringwake/sqe"
)

// nopChains keeps n chains of NOPs in flight, each resubmitting from its
// callback until it has completed per of them, while (with churn) 8
// goroutines keep the scheduler moving, and returns the OS threads the
// callbacks of the second half ran on.
func nopChains(t *testing.T, p *Poller, n, per int, churn bool) map[int]bool {
	t.Helper()
	var mu sync.Mutex
	tids := map[int]bool{}
	stop := make(chan struct{})
	var bg sync.WaitGroup
	for g := 0; churn && g < 8; g++ {
		bg.Add(1)
		go func() {
			defer bg.Done()
			for {
				select {
				case <-stop:
					return
				default:
					runtime.Gosched()
				}
			}
		}()
	}
	var done sync.WaitGroup
	var failed atomic.Bool
	// Started in one batch, so that the ring is n deep from the first enter.
	first := make([]sqe.SQE, n)
	fires := make([]func(int32, uint32), n)
	for c := 0; c < n; c++ {
		done.Add(1)
		left := per
		var fire func(int32, uint32)
		fire = func(int32, uint32) {
			left--
			if left < per/2 {
				tid := unix.Gettid()
				mu.Lock()
				tids[tid] = true
				mu.Unlock()
			}
			if left == 0 {
				done.Done()
				return
			}
			var s sqe.SQE
			s.PrepNop()
			if err := p.Submit(&s, fire); err != nil {
				failed.Store(true)
				done.Done()
			}
		}
		first[c].PrepNop()
		fires[c] = fire
	}
	if err := p.SubmitBatch(first, fires); err != nil {
		t.Fatal(err)
	}
	done.Wait()
	close(stop)
	bg.Wait()
	if failed.Load() {
		t.Fatal("a resubmission failed")
	}
	return tids
}

func atLeastTwoPs(t *testing.T) {
	if runtime.GOMAXPROCS(0) < 2 {
		prev := runtime.GOMAXPROCS(2)
		t.Cleanup(func() { runtime.GOMAXPROCS(prev) })
	}
}

// With more than one P and many requests in flight the poller keeps one OS
// thread: every callback (callbacks run on the poller goroutine) sees the
// same thread id however busy the scheduler is, and Stats counts one lock.
// SharedThread, the software ring and SQPOLL do without.
func TestPollerDedicatedThread(t *testing.T) {
	atLeastTwoPs(t)
	p := newPoller(t, Config{Entries: 64})
	tids := nopChains(t, p, 32, 400, true)
	if len(tids) != 1 {
		t.Errorf("callbacks ran on %d OS threads, want 1 (the poller's own)", len(tids))
	}
	if n := p.Stats().ThreadLocks; n != 1 {
		t.Errorf("ThreadLocks = %d, want 1", n)
	}
	for _, cfg := range []Config{{Entries: 64, SharedThread: true}, {Entries: 64, Soft: true}, {Entries: 64, SQPoll: true}} {
		p := newPoller(t, cfg)
		nopChains(t, p, 32, 50, false)
		if n := p.Stats().ThreadLocks; n != 0 {
			t.Errorf("%+v: ThreadLocks = %d, want 0", cfg, n)
		}
	}
}

// One blocking request at a time wakes a goroutine per completion: a locked
// poller would leave it to another P's thread and pay two futex wake-ups per
// park, so the poller stays an ordinary goroutine. One chain of callbacks
// wakes nobody, and the poller takes its thread.
func TestPollerThreadFollowsTheLoad(t *testing.T) {
	atLeastTwoPs(t)
	p := newPoller(t, Config{Entries: 64})
	for i := 0; i < 2000; i++ {
		var s sqe.SQE
		s.PrepNop()
		if _, _, err := p.Do(context.Background(), &s, nil); err != nil {
			t.Fatal(err)
		}
	}
	if n := p.Stats().ThreadLocks; n != 0 {
		t.Errorf("ThreadLocks = %d after 2000 sequential blocking NOPs, want 0", n)
	}
	nopChains(t, p, 1, 2000, false)
	if n := p.Stats().ThreadLocks; n == 0 {
		t.Error("ThreadLocks = 0 after a chain of 2000 callbacks, want a lock")
	}
}

// With one P the poller must yield for submitters to run, so it does not
// lock a thread; when GOMAXPROCS grows it does, from its next wake-up on.
func TestPollerThreadFollowsGOMAXPROCS(t *testing.T) {
	defer runtime.GOMAXPROCS(runtime.GOMAXPROCS(1))
	p := newPoller(t, Config{Entries: 64})
	nopChains(t, p, 32, 50, true)
	if n := p.Stats().ThreadLocks; n != 0 {
		t.Fatalf("ThreadLocks = %d at GOMAXPROCS=1, want 0", n)
	}
	runtime.GOMAXPROCS(2)
	// The poller parks once nothing is in flight; the next request wakes it.
	waitUntil(t, func() bool { return p.state.Load() == pollerParked })
	tids := nopChains(t, p, 32, 400, true)
	if n := p.Stats().ThreadLocks; n != 1 {
		t.Errorf("ThreadLocks = %d after GOMAXPROCS went to 2, want 1", n)
	}
	if len(tids) != 1 {
		t.Errorf("callbacks ran on %d OS threads after the lock, want 1", len(tids))
	}
}

// waitUntil polls cond for up to 10 s.
func waitUntil(t *testing.T, cond func() bool) {
	t.Helper()
	deadline := time.Now().Add(10 * time.Second)
	for !cond() {
		if time.Now().After(deadline) {
			t.Fatal("condition not reached in 10 s")
		}
		time.Sleep(time.Millisecond)
	}
}
