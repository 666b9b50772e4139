package poller

import (
	"context"
	"errors"
	"sync"
	"syscall"
	"testing"
	"time"
	"unsafe"

	"github.com/ringwake/ringwake/sqe"
)

func nops(n int) []sqe.SQE {
	ss := make([]sqe.SQE, n)
	for i := range ss {
		ss[i].PrepNop()
	}
	return ss
}

// More SQEs than slots go down in chunks; every result comes back, and
// every slot is free again afterwards.
func TestSubmitAndWaitChunks(t *testing.T) {
	p := newPoller(t, Config{Entries: 8})
	ss := nops(100)
	res := make([]int32, len(ss))
	for i := range res {
		res[i] = 7
	}
	before := p.Stats().Submitted
	if err := p.SubmitAndWait(context.Background(), ss, res, nil); err != nil {
		t.Fatal(err)
	}
	for i, r := range res {
		if r != 0 {
			t.Fatalf("res[%d] = %d, want 0", i, r)
		}
	}
	if got := p.Stats().Submitted - before; got != 100 {
		t.Fatalf("submitted %d, want 100", got)
	}
	// The reaper drops pending after the batch that woke us (dispatch), so
	// it may still be on its way there.
	waitFor(t, "nothing pending", func() bool { return p.pending.Load() == 0 })
	p.mu.Lock()
	free := len(p.free)
	p.mu.Unlock()
	if free != p.Capacity() {
		t.Fatalf("%d of %d slots free after the batch", free, p.Capacity())
	}
}

// On a sleeping ring a batch is submitted and waited for in one enter on
// the caller's goroutine: no wake-up of the poller, no second syscall.
func TestSubmitAndWaitInlineOneEnter(t *testing.T) {
	p := newPoller(t, Config{})
	if !p.inlineOK {
		t.Skip("this kernel has no bounded wait (EXT_ARG): no inline reaping")
	}
	for range 3 {
		settle(t, p)
		if st := p.state.Load(); st != pollerParked {
			t.Fatalf("state %d, want parked", st)
		}
		before := p.Stats()
		res := make([]int32, 32)
		if err := p.SubmitAndWait(context.Background(), nops(32), res, nil); err != nil {
			t.Fatal(err)
		}
		after := p.Stats()
		if after.Inline != before.Inline+1 || after.Enters != before.Enters+1 {
			t.Fatalf("inline %d->%d, enters %d->%d: want one inline batch in one enter",
				before.Inline, after.Inline, before.Enters, after.Enters)
		}
	}
}

// A ctx that ends cancels what is in flight and returns only once every
// completion arrived: the slots are free and nothing is pending.
func TestSubmitAndWaitCancel(t *testing.T) {
	p := newPoller(t, Config{Entries: 16})
	rd, _ := rawPipe(t)
	bufs := make([][]byte, 5)
	ss := make([]sqe.SQE, len(bufs))
	keep := make([]unsafe.Pointer, len(bufs))
	for i := range bufs {
		bufs[i] = make([]byte, 8)
		ss[i].PrepRead(int32(rd), bufs[i], 0)
		keep[i] = unsafe.Pointer(&bufs[i][0])
	}
	res := make([]int32, len(ss))
	ctx, cancel := context.WithTimeout(context.Background(), 50*time.Millisecond)
	defer cancel()
	err := p.SubmitAndWait(ctx, ss, res, keep)
	if !errors.Is(err, context.DeadlineExceeded) {
		t.Fatalf("err = %v, want DeadlineExceeded", err)
	}
	for i, r := range res {
		if r != -int32(syscall.ECANCELED) && r != -int32(syscall.EINTR) {
			t.Fatalf("res[%d] = %d, want -ECANCELED", i, r)
		}
	}
	waitFor(t, "nothing pending", func() bool { return p.pending.Load() == 0 })
}

// Close ends a waiting batch with ErrClosed.
func TestSubmitAndWaitClose(t *testing.T) {
	p, err := New(Config{Entries: 16})
	if err != nil {
		t.Skip(err)
	}
	rd, _ := rawPipe(t)
	buf := make([]byte, 8)
	ss := make([]sqe.SQE, 3)
	for i := range ss {
		ss[i].PrepRead(int32(rd), buf, 0)
	}
	errc := make(chan error, 1)
	go func() {
		errc <- p.SubmitAndWait(context.Background(), ss, make([]int32, 3), []unsafe.Pointer{unsafe.Pointer(&buf[0]), nil, nil})
	}()
	waitFor(t, "the batch in flight", func() bool { return p.pending.Load() == 3 })
	if err := p.Close(); err != nil {
		t.Fatal(err)
	}
	select {
	case err := <-errc:
		if !errors.Is(err, ErrClosed) {
			t.Fatalf("err = %v, want ErrClosed", err)
		}
	case <-time.After(30 * time.Second):
		t.Fatal("the batch never returned")
	}
	if err := p.SubmitAndWait(context.Background(), nops(1), make([]int32, 1), nil); !errors.Is(err, ErrClosed) {
		t.Fatalf("after Close: %v, want ErrClosed", err)
	}
}

// Link chains stay whole across chunks, and a chain longer than the ring
// is refused before anything is submitted.
func TestSubmitAndWaitChains(t *testing.T) {
	p := newPoller(t, Config{Entries: 4})
	// Chains of 3 (NOP linked to NOP linked to NOP) on a 4-slot ring: each
	// chunk holds one whole chain, never a part of the next.
	ss := nops(12)
	for i := range ss {
		if i%3 != 2 {
			ss[i].Flags |= sqe.IOLink
		}
	}
	res := make([]int32, len(ss))
	if err := p.SubmitAndWait(context.Background(), ss, res, nil); err != nil {
		t.Fatal(err)
	}
	for i, r := range res {
		if r != 0 {
			t.Fatalf("res[%d] = %d, want 0 (a broken link gives -ECANCELED)", i, r)
		}
	}
	long := nops(6)
	for i := range 5 {
		long[i].Flags |= sqe.IOLink
	}
	before := p.Stats().Submitted
	if err := p.SubmitAndWait(context.Background(), long, make([]int32, 6), nil); err == nil {
		t.Fatal("a chain of 6 on a 4-slot ring was accepted")
	}
	if p.Stats().Submitted != before {
		t.Fatal("a refused chain reached the ring")
	}
}

func TestSubmitAndWaitBadInput(t *testing.T) {
	p := newPoller(t, Config{Entries: 8})
	before := p.Stats().Submitted
	skip := nops(2)
	skip[1].Flags |= sqe.CQESkipSuccess
	last := nops(2)
	last[1].Flags |= sqe.IOLink
	for name, call := range map[string]func() error{
		"short res": func() error { return p.SubmitAndWait(context.Background(), nops(3), make([]int32, 2), nil) },
		"short keep": func() error {
			return p.SubmitAndWait(context.Background(), nops(3), make([]int32, 3), make([]unsafe.Pointer, 1))
		},
		"skip success":    func() error { return p.SubmitAndWait(context.Background(), skip, make([]int32, 2), nil) },
		"last links":      func() error { return p.SubmitAndWait(context.Background(), last, make([]int32, 2), nil) },
		"nil res, no sqe": func() error { return p.SubmitAndWait(context.Background(), nil, nil, nil) },
	} {
		err := call()
		if (err == nil) != (name == "nil res, no sqe") {
			t.Errorf("%s: err = %v", name, err)
		}
	}
	if p.Stats().Submitted != before {
		t.Fatal("refused input reached the ring")
	}
}

// Batches from several goroutines at once, mixed with lone blocking calls
// and callbacks, on a small ring: every request completes exactly once with
// its own result.
func TestSubmitAndWaitStress(t *testing.T) {
	p := newPoller(t, Config{Entries: 16})
	var wg sync.WaitGroup
	var cbs sync.WaitGroup
	deadline := time.Now().Add(time.Second)
	for g := range 6 {
		wg.Add(1)
		go func() {
			defer wg.Done()
			for i := 0; time.Now().Before(deadline); i++ {
				switch (g + i) % 3 {
				case 0:
					n := 1 + (g*7+i)%40
					ss := nops(n)
					res := make([]int32, n)
					for j := range res {
						res[j] = 99
					}
					var err error
					if i%5 == 0 {
						ctx, cancel := context.WithTimeout(context.Background(), time.Duration(i%3)*time.Microsecond)
						err = p.SubmitAndWait(ctx, ss, res, nil)
						cancel()
						if err != nil && !errors.Is(err, context.DeadlineExceeded) {
							t.Errorf("batch: %v", err)
							return
						}
						continue
					}
					if err = p.SubmitAndWait(context.Background(), ss, res, nil); err != nil {
						t.Errorf("batch: %v", err)
						return
					}
					for j, r := range res {
						if r != 0 {
							t.Errorf("res[%d] = %d", j, r)
							return
						}
					}
				case 1:
					nop(t, p)
				case 2:
					cbs.Add(1)
					var once sync.Once
					var s sqe.SQE
					s.PrepNop()
					if err := p.Submit(&s, func(res int32, _ uint32) {
						fired := false
						once.Do(func() { fired = true })
						if !fired {
							t.Error("callback fired twice")
						}
						cbs.Done()
					}); err != nil {
						t.Errorf("Submit: %v", err)
						cbs.Done()
						return
					}
				}
			}
		}()
	}
	wg.Wait()
	cbs.Wait()
	waitFor(t, "nothing pending", func() bool { return p.pending.Load() == 0 })
}
