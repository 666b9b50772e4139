package poller

import (
	"context"
	"runtime"
	"sync"
	"testing"
	"time"

	"golang.org/x/sys/unix"

	"github.com/ringwake/ringwake/sqe"
)

// callbackThreads runs rounds of 32 NOPs whose callbacks record the OS
// thread they run on, while 8 goroutines keep the scheduler busy with
// blocking NOPs, and returns the distinct thread ids seen.
func callbackThreads(t *testing.T, p *Poller, rounds int) map[int]bool {
	t.Helper()
	var mu sync.Mutex
	tids := map[int]bool{}
	stop := make(chan struct{})
	var churn sync.WaitGroup
	for g := 0; g < 8; g++ {
		churn.Add(1)
		go func() {
			defer churn.Done()
			for {
				select {
				case <-stop:
					return
				default:
				}
				var s sqe.SQE
				s.PrepNop()
				if _, _, err := p.Do(context.Background(), &s, nil); err != nil {
					t.Error(err)
					return
				}
			}
		}()
	}
	for r := 0; r < rounds; r++ {
		var wg sync.WaitGroup
		for i := 0; i < 32; i++ {
			wg.Add(1)
			var s sqe.SQE
			s.PrepNop()
			err := p.Submit(&s, func(int32, uint32) {
				tid := unix.Gettid()
				mu.Lock()
				tids[tid] = true
				mu.Unlock()
				wg.Done()
			})
			if err != nil {
				t.Fatal(err)
			}
		}
		wg.Wait()
		runtime.Gosched()
	}
	close(stop)
	churn.Wait()
	return tids
}

// With more than one P the poller keeps one OS thread: every callback, which
// runs on the poller goroutine, sees the same thread id however busy the
// scheduler is, and Stats counts one lock. SharedThread and the software
// ring do without.
func TestPollerDedicatedThread(t *testing.T) {
	if runtime.GOMAXPROCS(0) < 2 {
		defer runtime.GOMAXPROCS(runtime.GOMAXPROCS(2))
	}
	p := newPoller(t, Config{Entries: 64})
	tids := callbackThreads(t, p, 200)
	if len(tids) != 1 {
		t.Errorf("callbacks ran on %d OS threads, want 1 (the poller's own)", len(tids))
	}
	if n := p.Stats().ThreadLocks; n != 1 {
		t.Errorf("ThreadLocks = %d, want 1", n)
	}
	for _, cfg := range []Config{{Entries: 64, SharedThread: true}, {Entries: 64, Soft: true}, {Entries: 64, SQPoll: true}} {
		p := newPoller(t, cfg)
		callbackThreads(t, p, 20)
		if n := p.Stats().ThreadLocks; n != 0 {
			t.Errorf("%+v: ThreadLocks = %d, want 0", cfg, n)
		}
	}
}

// With one P the poller must yield for submitters to run, so it does not
// lock a thread; when GOMAXPROCS grows it locks one the next time it wakes.
func TestPollerThreadFollowsGOMAXPROCS(t *testing.T) {
	defer runtime.GOMAXPROCS(runtime.GOMAXPROCS(1))
	p := newPoller(t, Config{Entries: 64})
	callbackThreads(t, p, 20)
	if n := p.Stats().ThreadLocks; n != 0 {
		t.Fatalf("ThreadLocks = %d at GOMAXPROCS=1, want 0", n)
	}
	runtime.GOMAXPROCS(2)
	// The poller parks once nothing is in flight; the next request wakes it.
	waitUntil(t, func() bool { return p.Stats().Parks > 0 && p.state.Load() == pollerParked })
	tids := callbackThreads(t, p, 50)
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
