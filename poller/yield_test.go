package poller

import (
	"context"
	"errors"
	"runtime"
	"sync"
	"sync/atomic"
	"testing"
	"time"

	"github.com/ringwake/ringwake/internal/uringtest"
	"github.com/ringwake/ringwake/sqe"
)

// A blocking caller that yields for its completion delivers it itself when
// the poller does not: here the poller is held right after the submit that
// completed the caller's NOP, before it reaps, and Do must still return.
// Without the caller's reap each attempt parks until the hold ends. An
// attempt whose caller used up its yields before the poller even submitted
// (a slow wake-up) parks too, so the test makes several.
func TestYieldingCallerReaps(t *testing.T) {
	type hold struct{ entered, release chan struct{} }
	var cur atomic.Pointer[hold]
	submitHook = func() {
		if h := cur.Swap(nil); h != nil {
			close(h.entered)
			<-h.release
		}
	}
	t.Cleanup(func() { submitHook = nil }) // after Close: the poller reads it
	p := newPoller(t, Config{Entries: 8})
	var pending *hold
	t.Cleanup(func() { // before Close, which waits for the poller
		if pending != nil {
			close(pending.release)
		}
	})
	const attempts = 20
	for a := range attempts {
		settle(t, p)
		// A caller whose yields found nothing in an earlier attempt (the
		// poller submitted late) lowered the score: callers would then park
		// at once, and no later attempt could show one reaping.
		p.yieldScore.Store(0)
		h := &hold{make(chan struct{}), make(chan struct{})}
		pending = h
		cur.Store(h)
		before := p.Stats().CallerReaps
		// A ctx that can end: the call may not reap inline, which would
		// need no poller either.
		ctx, cancel := context.WithCancel(context.Background())
		done := make(chan int32, 1)
		go func() { done <- cancelableNop(ctx, t, p) }()
		var res int32
		returned := false
		select {
		case res = <-done:
			returned = true
		case <-time.After(200 * time.Millisecond):
		}
		entered := false
		select {
		case <-h.entered:
			entered = true
		default:
		}
		if !entered && returned && cur.CompareAndSwap(h, nil) {
			// The caller's kick submitted it (it found the poller waiting
			// in the kernel), so the poller held nothing: try again.
			pending = nil
			cancel()
			if res != 0 {
				t.Fatalf("NOP res %d", res)
			}
			continue
		}
		if !entered && !returned {
			t.Fatalf("attempt %d: the NOP neither completed nor reached the poller's submit", a)
		}
		<-h.entered // taken by the hook: at once, or just now
		close(h.release)
		pending = nil
		if !returned {
			res = await(t, done, "the NOP after the poller's hold")
		}
		cancel()
		if res != 0 {
			t.Fatalf("NOP res %d", res)
		}
		if returned {
			if d := p.Stats().CallerReaps - before; d == 0 {
				t.Errorf("Do returned while the poller was held, but Stats.CallerReaps did not move")
			}
			return
		}
	}
	t.Fatalf("in %d attempts no caller took its own completion while the poller was held", attempts)
}

// cancelableNop is a blocking NOP whose ctx can end, so that it never reaps
// inline; it reports an error with t.Errorf (it may run off the test's
// goroutine) and returns the result.
func cancelableNop(ctx context.Context, t *testing.T, p *Poller) int32 {
	var s sqe.SQE
	s.PrepNop()
	res, _, err := p.Do(ctx, &s, nil)
	if err != nil {
		t.Errorf("Do(NOP): %v", err)
	}
	return res
}

// Close while callers on a busy ring yield and reap: each call returns its
// result or ErrClosed, none hangs, and no caller reads the CQ after Close
// unmapped the ring (Close holds reapLock for good first; a read after the
// unmap would fault). Some calls' ctx can end and some cannot, so inline
// reapers, yielding reapers and the poller all race Close.
func TestCloseWhileCallersYield(t *testing.T) {
	uringtest.Require(t)
	const callers = 16
	var reaps uint64
	for it := range 200 {
		p, err := New(Config{Entries: 32})
		if err != nil {
			t.Fatal(err)
		}
		var wg sync.WaitGroup
		var calls atomic.Int64
		for c := range callers {
			wg.Go(func() {
				ctx := context.Background()
				if c%2 == 0 {
					var cancel context.CancelFunc
					ctx, cancel = context.WithCancel(ctx)
					defer cancel()
				}
				for {
					var s sqe.SQE
					s.PrepNop()
					res, _, err := p.Do(ctx, &s, nil)
					if errors.Is(err, ErrClosed) {
						return
					}
					if err != nil || res != 0 {
						t.Errorf("round %d: Do(NOP) = %d, %v", it, res, err)
						return
					}
					calls.Add(1)
				}
			})
		}
		for calls.Load() < int64(it%8)*callers {
			runtime.Gosched()
		}
		if err := p.Close(); err != nil {
			t.Fatal(err)
		}
		wg.Wait()
		if t.Failed() {
			return
		}
		reaps += p.Stats().CallerReaps
	}
	// Otherwise the test shows nothing about callers that reap. (With one
	// P a caller's yields rarely outlast the poller's turn.)
	if reaps == 0 && runtime.GOMAXPROCS(0) > 1 {
		t.Error("no caller reaped in any round")
	}
	t.Logf("batches reaped by yielding callers: %d", reaps)
}
