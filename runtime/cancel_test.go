package runtime_test

import (
	"context"
	"errors"
	"os"
	"path/filepath"
	"sync"
	"sync/atomic"
	"syscall"
	"testing"
	"time"

	"golang.org/x/sys/unix"

	"github.com/ringwake/ringwake/internal/uringtest"
	ringwake "github.com/ringwake/ringwake/runtime"
	"github.com/ringwake/ringwake/sqe"
)

// TestReadOnPipeUsesOffsetZero pins down the kernel behaviour the pipe tests
// rely on: an io_uring read at offset 0 on a pipe reads the stream.
func TestReadOnPipeUsesOffsetZero(t *testing.T) {
	r := newRing(t, ringwake.Config{Entries: 8})
	pr, pw := rawPipe(t)
	if _, err := unix.Write(pw, []byte("abc")); err != nil {
		t.Fatal(err)
	}
	buf := make([]byte, 8)
	n, err := r.ReadAt(context.Background(), pr, buf, 0)
	if err != nil || string(buf[:n]) != "abc" {
		t.Fatalf("ReadAt on a pipe = %d, %v, %q; want abc", n, err, buf[:n])
	}
}

func TestContextCancelReadOnEmptyPipe(t *testing.T) {
	r := newRing(t, ringwake.Config{Entries: 8})
	pr, pw := rawPipe(t)

	for _, tc := range []struct {
		name string
		ctx  func() (context.Context, context.CancelFunc)
		want error
	}{
		{"deadline", func() (context.Context, context.CancelFunc) {
			return context.WithTimeout(context.Background(), 20*time.Millisecond)
		}, context.DeadlineExceeded},
		{"cancel", func() (context.Context, context.CancelFunc) {
			ctx, cancel := context.WithCancel(context.Background())
			time.AfterFunc(20*time.Millisecond, cancel)
			return ctx, cancel
		}, context.Canceled},
	} {
		t.Run(tc.name, func(t *testing.T) {
			ctx, cancel := tc.ctx()
			defer cancel()
			buf := make([]byte, 16)
			for i := range buf {
				buf[i] = 0xAA
			}
			var n int
			var err error
			within(t, "ReadAt on an empty pipe after its ctx ended", func() {
				n, err = r.ReadAt(ctx, pr, buf, 0)
			})
			if n != 0 || !errors.Is(err, tc.want) {
				t.Fatalf("ReadAt = %d, %v; want 0 and errors.Is %v", n, err, tc.want)
			}
			if err := r.Nop(context.Background()); err != nil {
				t.Fatalf("Nop after a canceled read: %v", err)
			}
			// The canceled read must be gone from the kernel: the next byte
			// goes to a fresh read, and the canceled buffer stays untouched.
			if _, err := unix.Write(pw, []byte{'x'}); err != nil {
				t.Fatal(err)
			}
			fresh := make([]byte, 16)
			rctx, rcancel := context.WithTimeout(context.Background(), 30*time.Second)
			defer rcancel()
			n, err = r.ReadAt(rctx, pr, fresh, 0)
			if err != nil || n != 1 || fresh[0] != 'x' {
				t.Fatalf("fresh ReadAt = %d, %v, %q; want the byte the canceled read must not have consumed", n, err, fresh[:n])
			}
			for i, b := range buf {
				if b != 0xAA {
					t.Fatalf("canceled buffer byte %d changed to %#x after ReadAt returned", i, b)
				}
			}
		})
	}

	// A context that has already ended fails the call, or lets it finish: never both, never a hang.
	ctx, cancel := context.WithCancel(context.Background())
	cancel()
	within(t, "ReadAt with a canceled ctx", func() {
		n, err := r.ReadAt(ctx, pr, make([]byte, 4), 0)
		if n != 0 || !errors.Is(err, context.Canceled) {
			t.Errorf("ReadAt on an empty pipe with a canceled ctx = %d, %v; want 0, context.Canceled", n, err)
		}
	})
}

// TestCloseWithManyInFlight: 10,000 requests in flight, most of them reads
// that could only ever finish by cancellation, then Close.
func TestCloseWithManyInFlight(t *testing.T) {
	const reads, nops = 9000, 1000
	const total = reads + nops
	uringtest.Require(t)
	r, err := ringwake.New(ringwake.Config{Entries: 16384})
	if err != nil {
		t.Fatal(err)
	}
	t.Cleanup(func() { r.Close() })
	pr, _ := rawPipe(t)
	bufs := make([]byte, reads)
	var calls [total]atomic.Int32
	var results [total]atomic.Int32
	var s sqe.SQE
	for i := 0; i < total; i++ {
		if i%10 == 9 {
			s.PrepNop()
		} else {
			s.PrepRead(int32(pr), bufs[i-i/10:i-i/10+1], 0)
		}
		if err := r.Submit(&s, func(res int32, _ uint32) {
			results[i].Store(res)
			calls[i].Add(1)
		}); err != nil {
			t.Fatalf("Submit %d: %v", i, err)
		}
	}
	// Some blocking callers are parked in the kernel when Close comes.
	const blocked = 8
	var wg sync.WaitGroup
	errs := make([]error, blocked)
	for i := range blocked {
		wg.Add(1)
		go func() {
			defer wg.Done()
			_, errs[i] = r.ReadAt(context.Background(), pr, make([]byte, 1), 0)
		}()
	}
	waitFor(t, "the blocking reads to be submitted", func() bool {
		return r.Stats().Submitted >= total+blocked
	})

	var closeErr error
	within(t, "Close with 10,000 requests in flight", func() { closeErr = r.Close() })
	if closeErr != nil {
		t.Fatalf("Close: %v", closeErr)
	}
	wg.Wait()
	for i := range calls {
		if c := calls[i].Load(); c != 1 {
			t.Fatalf("callback %d fired %d times, want exactly once", i, c)
		}
	}
	for i := range results {
		res := results[i].Load()
		if i%10 == 9 {
			if res != 0 && res != -int32(syscall.ECANCELED) {
				t.Errorf("NOP %d: res %d", i, res)
			}
		} else if res != -int32(syscall.ECANCELED) {
			t.Errorf("pipe read %d: res %d, want -ECANCELED", i, res)
		}
	}
	for i, err := range errs {
		if !errors.Is(err, ringwake.ErrClosed) {
			t.Errorf("blocked ReadAt %d: %v, want errors.Is ErrClosed", i, err)
		}
	}
	if got := r.Stats().Completed; got < total+blocked {
		t.Errorf("Stats.Completed = %d, want >= %d", got, total+blocked)
	}
	checkClosed(t, r)
	if err := r.Close(); err != closeErr {
		t.Errorf("second Close = %v, want the first's %v", err, closeErr)
	}
}

// checkClosed asserts that every call on a closed ring fails with ErrClosed.
func checkClosed(t *testing.T, r *ringwake.Ring) {
	t.Helper()
	ctx := context.Background()
	var s sqe.SQE
	fired := make(chan struct{}, 1)
	cb := func(int32, uint32) { fired <- struct{}{} }
	preps := map[string]func(){
		"nop":       func() { s.PrepNop() },
		"read":      func() { s.PrepRead(0, make([]byte, 1), 0) },
		"fsync":     func() { s.PrepFsync(0, 0) },
		"fadvise":   func() { s.PrepFadvise(0, 0, 0, 0) },
		"ftruncate": func() { s.PrepFtruncate(0, 0) },
	}
	for name, prep := range preps {
		prep()
		if err := r.Submit(&s, cb); !errors.Is(err, ringwake.ErrClosed) {
			t.Errorf("Submit(%s) after Close: %v, want errors.Is ErrClosed", name, err)
		}
	}
	select {
	case <-fired:
		t.Errorf("a callback fired for a Submit refused after Close")
	default:
	}
	if err := r.Nop(ctx); !errors.Is(err, ringwake.ErrClosed) {
		t.Errorf("Nop after Close: %v, want errors.Is ErrClosed", err)
	}
	if _, err := r.ReadAt(ctx, 0, make([]byte, 1), 0); !errors.Is(err, ringwake.ErrClosed) {
		t.Errorf("ReadAt after Close: %v, want errors.Is ErrClosed", err)
	}
	if _, err := r.WriteAt(ctx, 1, make([]byte, 1), 0); !errors.Is(err, ringwake.ErrClosed) {
		t.Errorf("WriteAt after Close: %v, want errors.Is ErrClosed", err)
	}
	if err := r.Fsync(ctx, 1, true); !errors.Is(err, ringwake.ErrClosed) {
		t.Errorf("Fsync after Close: %v, want errors.Is ErrClosed", err)
	}
	if _, err := r.Open(filepath.Join(t.TempDir(), "after"), os.O_CREATE|os.O_RDWR, 0o644); !errors.Is(err, ringwake.ErrClosed) {
		t.Errorf("Open after Close: %v, want errors.Is ErrClosed", err)
	}
}

func TestCloseIdleAndTwice(t *testing.T) {
	uringtest.Require(t)
	r, err := ringwake.New(ringwake.Config{Entries: 4})
	if err != nil {
		t.Fatal(err)
	}
	t.Cleanup(func() { r.Close() })
	if err := r.Nop(context.Background()); err != nil {
		t.Fatal(err)
	}
	err1 := r.Close()
	if err1 != nil {
		t.Fatalf("Close: %v", err1)
	}
	if err2 := r.Close(); err2 != err1 {
		t.Errorf("second Close = %v, want %v", err2, err1)
	}
	checkClosed(t, r)
}

// TestCloseWakesBacklog: submitters asleep for a slot wake with ErrClosed.
func TestCloseWakesBacklog(t *testing.T) {
	uringtest.Require(t)
	r, err := ringwake.New(ringwake.Config{Entries: 4})
	if err != nil {
		t.Fatal(err)
	}
	t.Cleanup(func() { r.Close() })
	pr, _ := rawPipe(t)
	var inflight atomic.Int32
	for range r.Capacity() {
		var s sqe.SQE
		s.PrepRead(int32(pr), make([]byte, 1), 0)
		if err := r.Submit(&s, func(res int32, _ uint32) { inflight.Add(1) }); err != nil {
			t.Fatal(err)
		}
	}
	const sleepers = 10
	errs := make(chan error, 2*sleepers)
	for range sleepers {
		go func() { errs <- r.Nop(context.Background()) }()
		go func() {
			var s sqe.SQE
			s.PrepNop()
			err := r.Submit(&s, func(int32, uint32) {
				errs <- errors.New("callback fired for a Submit that was asleep at Close")
			})
			if err != nil {
				errs <- err
			}
		}()
	}
	waitFor(t, "20 submitters to sleep for a slot", func() bool { return r.Stats().Backlogged >= 2*sleepers })
	within(t, "Close with a backlog", func() {
		if err := r.Close(); err != nil {
			t.Errorf("Close: %v", err)
		}
	})
	for range 2 * sleepers {
		if err := <-errs; !errors.Is(err, ringwake.ErrClosed) {
			t.Errorf("backlogged call: %v, want errors.Is ErrClosed", err)
		}
	}
	if got := inflight.Load(); got != int32(r.Capacity()) {
		t.Errorf("%d of %d in-flight callbacks fired", got, r.Capacity())
	}
}

// TestCanceledBacklogWaiterPassesSlotOn: a submitter whose ctx ends while it
// sleeps for a slot leaves, and the ring keeps its full capacity.
func TestCanceledBacklogWaiterPassesSlotOn(t *testing.T) {
	r := newRing(t, ringwake.Config{Entries: 4})
	pr, pw := rawPipe(t)
	capacity := r.Capacity()
	fill := func() (*sync.WaitGroup, error) { return pipeReads(t, r, pr, capacity) }
	drain := func(wg *sync.WaitGroup) {
		if _, err := unix.Write(pw, make([]byte, capacity)); err != nil {
			t.Fatal(err)
		}
		within(t, "pipe reads to complete", wg.Wait)
	}

	wg, err := fill()
	if err != nil {
		t.Fatal(err)
	}
	backlogged := r.Stats().Backlogged
	ctx, cancel := context.WithCancel(context.Background())
	res := make(chan error, 1)
	go func() { res <- r.Nop(ctx) }()
	waitFor(t, "the Nop to sleep for a slot", func() bool { return r.Stats().Backlogged > backlogged })
	cancel()
	if err := <-res; !errors.Is(err, context.Canceled) {
		t.Errorf("backlogged Nop after cancel: %v, want context.Canceled", err)
	}
	drain(wg)

	// Every slot is still there: capacity reads fit in at once again. A lost
	// slot shows as a refill that sleeps.
	before := r.Stats().Backlogged
	type filled struct {
		wg  *sync.WaitGroup
		err error
	}
	refilled := make(chan filled, 1)
	go func() {
		wg, err := fill()
		refilled <- filled{wg, err}
	}()
	waitFor(t, "the refill to finish or sleep", func() bool {
		return len(refilled) == 1 || r.Stats().Backlogged > before
	})
	if r.Stats().Backlogged > before {
		t.Errorf("refilling %d slots slept for a slot: the canceled waiter lost one", capacity)
		if _, err := unix.Write(pw, make([]byte, capacity)); err != nil {
			t.Fatal(err)
		}
	}
	f := <-refilled
	if f.err != nil {
		t.Fatal(f.err)
	}
	drain(f.wg)
}

// TestCancelRaceLosesNoBytes: reads with very short deadlines race a slow
// writer. A read that reports its ctx's error must not have consumed
// anything, and one that returns data returns all it consumed: every byte
// written is read exactly once, in order.
func TestCancelRaceLosesNoBytes(t *testing.T) {
	const total = 600
	r := newRing(t, ringwake.Config{Entries: 8})
	pr, pw := rawPipe(t)
	writerDone := make(chan error, 1)
	go func() {
		for i := range total {
			if _, err := unix.Write(pw, []byte{byte(i % 251)}); err != nil {
				writerDone <- err
				return
			}
			if i%3 == 0 {
				time.Sleep(50 * time.Microsecond)
			}
		}
		writerDone <- nil
	}()
	var got []byte
	var canceled, untouchedChecks int
	buf := make([]byte, 16)
	for i := 0; len(got) < total; i++ {
		for j := range buf {
			buf[j] = 0xEE
		}
		var ctx context.Context
		var cancel context.CancelFunc
		if i%50 == 49 || i > 100000 {
			// Now and then (and in the end) wait for data, so the test always finishes.
			ctx, cancel = context.WithTimeout(context.Background(), 30*time.Second)
		} else {
			ctx, cancel = context.WithTimeout(context.Background(), time.Duration(1+i%40)*5*time.Microsecond)
		}
		n, err := r.ReadAt(ctx, pr, buf, 0)
		cancel()
		switch {
		case err == nil:
			if n <= 0 {
				t.Fatalf("read %d: %d bytes and no error", i, n)
			}
			got = append(got, buf[:n]...)
		case errors.Is(err, context.DeadlineExceeded):
			canceled++
			if n != 0 {
				t.Fatalf("read %d: %d bytes with %v", i, n, err)
			}
			for j, b := range buf {
				if b != 0xEE {
					t.Fatalf("read %d failed with %v but wrote byte %d of its buffer: the data is lost", i, err, j)
				}
			}
			untouchedChecks++
		default:
			t.Fatalf("read %d: %v", i, err)
		}
	}
	if err := <-writerDone; err != nil {
		t.Fatal(err)
	}
	t.Logf("%d reads canceled by their deadline", canceled)
	if len(got) != total {
		t.Fatalf("read %d bytes, %d written", len(got), total)
	}
	for i, b := range got {
		if b != byte(i%251) {
			t.Fatalf("byte %d is %d, want %d: a canceled read consumed data", i, b, i%251)
		}
	}
	if canceled == 0 {
		t.Log("no read was canceled this run; the race was not exercised")
	}
}

// TestCloseRacesSubmitters: Close while goroutines keep submitting. Every
// Submit either fails with ErrClosed or gets exactly one callback, and every
// blocking call returns.
func TestCloseRacesSubmitters(t *testing.T) {
	const submitters, maxPer = 8, 5000
	uringtest.Require(t)
	r, err := ringwake.New(ringwake.Config{Entries: 64})
	if err != nil {
		t.Fatal(err)
	}
	t.Cleanup(func() { r.Close() })
	pr, _ := rawPipe(t)
	var accepted, fired atomic.Int64
	counts := make([][]atomic.Int32, submitters)
	var wg sync.WaitGroup
	for g := range submitters {
		counts[g] = make([]atomic.Int32, maxPer)
		wg.Add(1)
		go func() {
			defer wg.Done()
			for i := range maxPer {
				var err error
				switch {
				case i%2 == 0:
					var s sqe.SQE
					s.PrepNop()
					err = r.Submit(&s, func(int32, uint32) { counts[g][i].Add(1); fired.Add(1) })
					if err == nil {
						accepted.Add(1)
					}
				case i%50 == 1:
					// Reads of an empty pipe pile up until Close cancels them.
					var s sqe.SQE
					s.PrepRead(int32(pr), make([]byte, 1), 0)
					err = r.Submit(&s, func(int32, uint32) { counts[g][i].Add(1); fired.Add(1) })
					if err == nil {
						accepted.Add(1)
					}
				default:
					err = r.Nop(context.Background())
				}
				if err != nil {
					if !errors.Is(err, ringwake.ErrClosed) {
						t.Errorf("submitter %d call %d: %v, want ErrClosed", g, i, err)
					}
					return
				}
			}
		}()
	}
	waitFor(t, "some traffic", func() bool { return r.Stats().Completed > 200 })
	within(t, "Close racing submitters", func() {
		if err := r.Close(); err != nil {
			t.Errorf("Close: %v", err)
		}
	})
	within(t, "submitters after Close", wg.Wait)
	if a, f := accepted.Load(), fired.Load(); a != f {
		t.Errorf("%d Submits accepted, %d callbacks fired", a, f)
	}
	for g := range counts {
		for i := range counts[g] {
			if c := counts[g][i].Load(); c > 1 {
				t.Fatalf("submitter %d request %d: %d callbacks", g, i, c)
			}
		}
	}
}

// TestCapacityInFlight: at least Config.Entries requests can be in flight at
// once without anyone sleeping, and the next one sleeps.
func TestCapacityInFlight(t *testing.T) {
	r := newRing(t, ringwake.Config{Entries: 100})
	capacity := r.Capacity()
	if capacity < 100 {
		t.Fatalf("Capacity = %d for Entries 100", capacity)
	}
	pr, pw := rawPipe(t)
	wg, err := pipeReads(t, r, pr, capacity)
	if err != nil {
		t.Fatal(err)
	}
	if b := r.Stats().Backlogged; b != 0 {
		t.Fatalf("%d submitters slept with only %d requests in flight", b, capacity)
	}
	nop := make(chan error, 1)
	go func() { nop <- r.Nop(context.Background()) }()
	waitFor(t, "the Nop beyond capacity to sleep", func() bool { return r.Stats().Backlogged == 1 })
	if _, err := unix.Write(pw, make([]byte, capacity)); err != nil {
		t.Fatal(err)
	}
	within(t, "reads and the Nop", func() {
		wg.Wait()
		if err := <-nop; err != nil {
			t.Errorf("Nop: %v", err)
		}
	})
	if o := r.Stats().Overflows; o != 0 {
		t.Errorf("CQ overflowed %d times with capacity completions at once", o)
	}
}

// TestSubmitKickRacesClose: a Submit whose publication finds the poller
// asleep in the kernel submits to the ring itself after releasing the lock.
// Nothing orders that io_uring_enter before Close's unmap: under -race this
// shows as a data race on the ring's fields; without it, a submitter
// descheduled at that point dereferences an unmapped ring. Only the race
// detector can see it deterministically: CI runs this with -race.
func TestSubmitKickRacesClose(t *testing.T) {
	for i := range 5 {
		uringtest.Require(t)
		r, err := ringwake.New(ringwake.Config{Entries: 8})
		if err != nil {
			t.Fatal(err)
		}
		pr, _ := rawPipe(t)
		var y sqe.SQE
		y.PrepRead(int32(pr), make([]byte, 1), 0)
		if err := r.Submit(&y, func(int32, uint32) {}); err != nil {
			r.Close()
			t.Fatal(err)
		}
		w0 := r.Stats().Waits
		waitFor(t, "the poller to wait in the kernel", func() bool { return r.Stats().Waits > w0 })
		fired := make(chan int32, 1)
		release := make(chan struct{})
		submitted := make(chan error, 1)
		go func() {
			var s sqe.SQE
			s.PrepNop()
			submitted <- r.Submit(&s, func(res int32, _ uint32) { fired <- res })
			// Park without synchronising with anyone, as a submitter that is
			// descheduled right after its Submit would be.
			<-release
		}()
		// The callback orders the poller before this goroutine, never the
		// submitter's enter: Close must wait for that enter on its own.
		if res := <-fired; res != 0 {
			t.Errorf("round %d: NOP res %d", i, res)
		}
		if err := r.Close(); err != nil {
			t.Errorf("round %d: Close: %v", i, err)
		}
		close(release)
		if err := <-submitted; err != nil {
			t.Errorf("round %d: Submit: %v", i, err)
		}
	}
}

// TestCloseWithResubmittingCallbacks: callbacks that resubmit on every
// completion, on a ring too small for them and for the blocking callers
// competing for slots, then Close. Every Submit the ring accepted, from a
// callback or not, gets exactly one callback; every blocking call returns.
func TestCloseWithResubmittingCallbacks(t *testing.T) {
	const chains, callers = 4, 8
	uringtest.Require(t)
	r, err := ringwake.New(ringwake.Config{Entries: 2})
	if err != nil {
		t.Fatal(err)
	}
	t.Cleanup(func() { r.Close() })
	var accepted, fired, canceled atomic.Int64
	var s sqe.SQE
	s.PrepNop()
	var cb func(res int32, flags uint32)
	cb = func(res int32, _ uint32) {
		fired.Add(1)
		if res == -int32(syscall.ECANCELED) {
			canceled.Add(1)
		}
		if err := r.Submit(&s, cb); err == nil {
			accepted.Add(1)
		} else if !errors.Is(err, ringwake.ErrClosed) {
			t.Errorf("resubmit: %v", err)
		}
	}
	for range chains {
		if err := r.Submit(&s, cb); err != nil {
			t.Fatal(err)
		}
		accepted.Add(1)
	}
	var wg sync.WaitGroup
	for range callers {
		wg.Add(1)
		go func() {
			defer wg.Done()
			for {
				if err := r.Nop(context.Background()); err != nil {
					if !errors.Is(err, ringwake.ErrClosed) {
						t.Errorf("Nop: %v", err)
					}
					return
				}
			}
		}()
	}
	waitFor(t, "traffic with callbacks waiting for slots", func() bool {
		st := r.Stats()
		return st.Completed > 2000 && st.Backlogged > 0
	})
	within(t, "Close with resubmitting callbacks", func() {
		if err := r.Close(); err != nil {
			t.Errorf("Close: %v", err)
		}
	})
	within(t, "blocking callers after Close", wg.Wait)
	st := r.Stats()
	t.Logf("accepted %d, fired %d (%d canceled), deferred %d, backlogged %d", accepted.Load(), fired.Load(), canceled.Load(), st.Deferred, st.Backlogged)
	if a, f := accepted.Load(), fired.Load(); a != f {
		t.Errorf("%d submissions accepted, %d callbacks fired: want one each", a, f)
	}
}
