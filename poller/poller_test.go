package poller

import (
	"context"
	"errors"
	"sync"
	"sync/atomic"
	"syscall"
	"testing"
	"time"
	"unsafe"

	"go.uber.org/goleak"
	"golang.org/x/sys/unix"

	"github.com/ringwake/ringwake/internal/uringtest"
	"github.com/ringwake/ringwake/sqe"
)

func TestMain(m *testing.M) { goleak.VerifyTestMain(m) }

func newPoller(t *testing.T, cfg Config) *Poller {
	t.Helper()
	uringtest.Require(t)
	p, err := New(cfg)
	if err != nil {
		t.Fatalf("New(%+v): %v", cfg, err)
	}
	t.Cleanup(func() {
		if err := p.Close(); err != nil {
			t.Errorf("Close: %v", err)
		}
	})
	return p
}

// rawPipe is a blocking pipe, so io_uring reads on it wait for data.
func rawPipe(t *testing.T) (rd, wr int) {
	t.Helper()
	var fds [2]int
	if err := unix.Pipe2(fds[:], unix.O_CLOEXEC); err != nil {
		t.Fatal(err)
	}
	t.Cleanup(func() {
		unix.Close(fds[0])
		unix.Close(fds[1])
	})
	return fds[0], fds[1]
}

func waitFor(t *testing.T, what string, cond func() bool) {
	t.Helper()
	deadline := time.Now().Add(30 * time.Second)
	for !cond() {
		if time.Now().After(deadline) {
			t.Fatalf("gave up waiting for %s", what)
		}
		time.Sleep(time.Millisecond)
	}
}

func nop(t *testing.T, p *Poller) {
	t.Helper()
	var s sqe.SQE
	s.PrepNop()
	res, _, err := p.Do(context.Background(), &s, nil)
	if err != nil || res != 0 {
		t.Fatalf("Do(NOP) = %d, %v", res, err)
	}
}

// flush makes the poller reap everything the kernel has completed so far
// (the NOP's batch includes every earlier CQE), then settles.
func flush(t *testing.T, p *Poller) {
	t.Helper()
	nop(t, p)
	settle(t, p)
}

// settle waits until the poller sleeps, parked or in the kernel: it then has
// finished its last batch, counters included, which a woken Do does not wait for.
func settle(t *testing.T, p *Poller) {
	t.Helper()
	waitFor(t, "the poller to sleep", func() bool { return p.state.Load() != pollerRunning })
}

// inject publishes a NOP with a crafted user_data behind the poller's back,
// as a stale or duplicate completion would look, and has the kernel consume it.
func inject(t *testing.T, p *Poller, ud uint64) {
	t.Helper()
	p.mu.Lock()
	q := p.ring.GetSQE()
	if q == nil {
		p.mu.Unlock()
		t.Fatal("SQ full")
	}
	q.PrepNop()
	q.UserData = ud
	p.ring.Publish()
	p.mu.Unlock()
	waitFor(t, "the kernel to consume the injected SQE", func() bool {
		p.ring.Submit()
		return p.ring.SQPending() == 0
	})
}

func userData(gen, idx uint32) uint64 { return uint64(gen&genMask)<<32 | uint64(idx) }

// inFlightSlot returns the index and generation of the one slot in flight.
func inFlightSlot(t *testing.T, p *Poller) (uint32, uint32) {
	t.Helper()
	p.mu.Lock()
	defer p.mu.Unlock()
	found := -1
	for i := range p.slots {
		if p.slots[i].tag.Load()&3 == slotInFlight {
			if found >= 0 {
				t.Fatalf("slots %d and %d both in flight", found, i)
			}
			found = i
		}
	}
	if found < 0 {
		t.Fatal("no slot in flight")
	}
	return uint32(found), p.slots[found].gen
}

func TestStaleAndDuplicateCompletionsAreDropped(t *testing.T) {
	p := newPoller(t, Config{Entries: 4})
	pr, pw := rawPipe(t)
	flush(t, p) // move the generations off their initial values

	var calls atomic.Int32
	var res atomic.Int32
	buf := make([]byte, 1)
	var s sqe.SQE
	s.PrepRead(int32(pr), buf, 0)
	if err := p.Submit(&s, func(r int32, _ uint32) { res.Store(r); calls.Add(1) }); err != nil {
		t.Fatal(err)
	}
	idx, gen := inFlightSlot(t, p)
	settle(t, p)
	before := p.Stats()

	// Wrong generation (newer and older) on the slot in flight, and an index
	// beyond the table: each is counted and dropped.
	inject(t, p, userData(gen+1, idx))
	inject(t, p, userData(gen-1, idx))
	inject(t, p, userData(gen, uint32(len(p.slots))+3))
	flush(t, p)
	after := p.Stats()
	if d := after.Stale - before.Stale; d != 3 {
		t.Errorf("Stats.Stale moved by %d, want 3", d)
	}
	if d := after.Completed - before.Completed; d != 1 {
		t.Errorf("Stats.Completed moved by %d, want 1 (the flush NOP only)", d)
	}
	if c := calls.Load(); c != 0 {
		t.Fatalf("the in-flight read's callback fired %d times for stale completions", c)
	}

	// The real completion is still delivered, exactly once.
	if _, err := unix.Write(pw, []byte{'z'}); err != nil {
		t.Fatal(err)
	}
	waitFor(t, "the read's callback", func() bool { return calls.Load() > 0 })
	settle(t, p)
	if res.Load() != 1 || buf[0] != 'z' {
		t.Errorf("read callback res %d buf %q, want 1, z", res.Load(), buf)
	}

	// A duplicate of that completion, with the right generation, arrives
	// when the slot is free again: dropped.
	before = p.Stats()
	inject(t, p, userData(gen, idx))
	flush(t, p)
	if d := p.Stats().Stale - before.Stale; d != 1 {
		t.Errorf("duplicate completion: Stats.Stale moved by %d, want 1", d)
	}
	if c := calls.Load(); c != 1 {
		t.Errorf("callback fired %d times, want exactly once", c)
	}

	// A duplicate of a blocking request's completion must not leave a stray
	// wake-up behind for the slot's next owner.
	flush(t, p)
	p.mu.Lock()
	last := p.free[len(p.free)-1]
	lastGen := p.slots[last].gen
	p.mu.Unlock()
	before = p.Stats()
	inject(t, p, userData(lastGen, last))
	flush(t, p)
	if d := p.Stats().Stale - before.Stale; d != 1 {
		t.Errorf("duplicate blocking completion: Stats.Stale moved by %d, want 1", d)
	}
	for i := range p.slots {
		if n := len(p.slots[i].ch); n != 0 {
			t.Errorf("slot %d has %d stray wake-ups", i, n)
		}
	}
	// Stale completions are not counted against what is in flight.
	waitFor(t, "nothing pending", func() bool { return p.pending.Load() == 0 })
	if n := p.pending.Load(); n != 0 {
		t.Errorf("pending = %d after everything completed", n)
	}
}

func TestStatsMove(t *testing.T) {
	p := newPoller(t, Config{Entries: 8})
	if p.Capacity() != 8 {
		t.Errorf("Capacity = %d, want 8", p.Capacity())
	}
	settle(t, p)
	before := p.Stats()
	const n = 50
	for range n {
		nop(t, p)
	}
	settle(t, p)
	after := p.Stats()
	if d := after.Submitted - before.Submitted; d != n {
		t.Errorf("Submitted moved by %d, want %d", d, n)
	}
	if d := after.Completed - before.Completed; d != n {
		t.Errorf("Completed moved by %d, want %d", d, n)
	}
	// Each NOP found the poller asleep with nothing in flight, and its ctx
	// cannot end: it reaped inline, and the poller never woke.
	if d := after.Inline - before.Inline; d != n {
		t.Errorf("Inline moved by %d across %d NOPs on a sleeping ring, want %d", d, n, n)
	}
	// With a ctx that can end the caller parks, and the poller reaps and
	// parks again after each.
	ctx, cancel := context.WithCancel(context.Background())
	defer cancel()
	for range n {
		var s sqe.SQE
		s.PrepNop()
		if res, _, err := p.Do(ctx, &s, nil); err != nil || res != 0 {
			t.Fatalf("Do(NOP) = %d, %v", res, err)
		}
	}
	settle(t, p)
	if got := p.Stats(); got.Parks <= after.Parks {
		t.Errorf("Parks did not move across %d idle gaps", n)
	} else if got.Inline != after.Inline {
		t.Errorf("Inline moved by %d for calls whose ctx can end", got.Inline-after.Inline)
	}
	after = p.Stats()
	if after.Stale != 0 || after.Overflows != 0 || after.Backlogged != 0 {
		t.Errorf("Stale %d, Overflows %d, Backlogged %d; want 0 with nothing wrong", after.Stale, after.Overflows, after.Backlogged)
	}

	// A request that waits in the kernel makes the poller block there.
	pr, pw := rawPipe(t)
	done := make(chan int32, 1)
	var s sqe.SQE
	s.PrepRead(int32(pr), make([]byte, 1), 0)
	if err := p.Submit(&s, func(res int32, _ uint32) { done <- res }); err != nil {
		t.Fatal(err)
	}
	waitFor(t, "the poller to wait in the kernel", func() bool { return p.Stats().Waits > after.Waits })
	if _, err := unix.Write(pw, []byte{1}); err != nil {
		t.Fatal(err)
	}
	if res := <-done; res != 1 {
		t.Errorf("pipe read res %d", res)
	}
	if p.Stats().Enters == 0 {
		t.Errorf("Enters = 0 after the poller waited in the kernel")
	}
}

// TestBacklogFIFO: on a one-slot ring, submitters asleep for the slot get it
// in the order they went to sleep.
func TestBacklogFIFO(t *testing.T) {
	const sleepers = 20
	p := newPoller(t, Config{Entries: 1})
	pr, pw := rawPipe(t)
	var order []int // appended by callbacks, which all run on the poller goroutine
	var wg sync.WaitGroup
	var s sqe.SQE
	s.PrepRead(int32(pr), make([]byte, 1), 0)
	wg.Add(1)
	if err := p.Submit(&s, func(int32, uint32) { wg.Done() }); err != nil {
		t.Fatal(err)
	}
	for i := range sleepers {
		wg.Add(1)
		go func() {
			var s sqe.SQE
			s.PrepNop()
			if err := p.Submit(&s, func(int32, uint32) { order = append(order, i); wg.Done() }); err != nil {
				t.Errorf("Submit %d: %v", i, err)
				wg.Done()
			}
		}()
		waitFor(t, "the submitter to sleep", func() bool { return p.Stats().Backlogged == uint64(i+1) })
	}
	if _, err := unix.Write(pw, []byte{1}); err != nil {
		t.Fatal(err)
	}
	wg.Wait()
	for i, v := range order {
		if v != i {
			t.Fatalf("slots went to sleepers in order %v, want FIFO", order)
		}
	}
	if len(order) != sleepers {
		t.Fatalf("%d of %d sleepers ran", len(order), sleepers)
	}
	if b := p.Stats().Backlogged; b != sleepers {
		t.Errorf("Backlogged = %d, want %d: a sleeper was woken without a slot", b, sleepers)
	}
}

func TestCancelFd(t *testing.T) {
	p := newPoller(t, Config{Entries: 8})
	pr, _ := rawPipe(t)
	var wg sync.WaitGroup
	var canceled atomic.Int32
	for range 4 {
		wg.Add(1)
		var s sqe.SQE
		s.PrepRead(int32(pr), make([]byte, 1), 0)
		if err := p.Submit(&s, func(res int32, _ uint32) {
			if res == -int32(syscall.ECANCELED) {
				canceled.Add(1)
			}
			wg.Done()
		}); err != nil {
			t.Fatal(err)
		}
	}
	p.CancelFd(int32(pr))
	wg.Wait()
	if n := canceled.Load(); n != 4 {
		t.Errorf("%d of 4 reads on the fd canceled", n)
	}
	nop(t, p)
}

func TestDoCancelWaitsForKernel(t *testing.T) {
	p := newPoller(t, Config{Entries: 8})
	pr, pw := rawPipe(t)
	buf := []byte{0xAA}
	var s sqe.SQE
	s.PrepRead(int32(pr), buf, 0)
	ctx, cancel := context.WithTimeout(context.Background(), 10*time.Millisecond)
	defer cancel()
	res, _, err := p.Do(ctx, &s, unsafe.Pointer(&buf[0]))
	if !errors.Is(err, context.DeadlineExceeded) || res != -int32(syscall.ECANCELED) {
		t.Fatalf("Do on an empty pipe past its deadline = %d, %v", res, err)
	}
	if _, err := unix.Write(pw, []byte{'q'}); err != nil {
		t.Fatal(err)
	}
	got := make([]byte, 1)
	s.PrepRead(int32(pr), got, 0)
	if res, _, err := p.Do(context.Background(), &s, unsafe.Pointer(&got[0])); res != 1 || err != nil || got[0] != 'q' {
		t.Fatalf("read after cancel = %d, %v, %q", res, err, got)
	}
	if buf[0] != 0xAA {
		t.Errorf("the canceled read wrote its buffer")
	}
}

func TestCloseCancelsAndRefuses(t *testing.T) {
	uringtest.Require(t)
	p, err := New(Config{Entries: 8})
	if err != nil {
		t.Fatal(err)
	}
	pr, _ := rawPipe(t)
	var calls [8]atomic.Int32
	var results [8]atomic.Int32
	for i := range 8 {
		var s sqe.SQE
		s.PrepRead(int32(pr), make([]byte, 1), 0)
		if err := p.Submit(&s, func(res int32, _ uint32) { results[i].Store(res); calls[i].Add(1) }); err != nil {
			t.Fatal(err)
		}
	}
	err1 := p.Close()
	if err1 != nil {
		t.Fatalf("Close: %v", err1)
	}
	for i := range calls {
		if c, r := calls[i].Load(), results[i].Load(); c != 1 || r != -int32(syscall.ECANCELED) {
			t.Errorf("request %d: %d callbacks, res %d; want one -ECANCELED", i, c, r)
		}
	}
	var s sqe.SQE
	s.PrepNop()
	if err := p.Submit(&s, func(int32, uint32) { t.Error("callback after Close") }); !errors.Is(err, ErrClosed) {
		t.Errorf("Submit after Close: %v", err)
	}
	if _, _, err := p.Do(context.Background(), &s, nil); !errors.Is(err, ErrClosed) {
		t.Errorf("Do after Close: %v", err)
	}
	if err2 := p.Close(); err2 != err1 {
		t.Errorf("second Close = %v, want %v", err2, err1)
	}
}

// TestCloseRacesSubmit: a Submit that goes in just before Close must still
// complete and fire its callback before Close returns. Two goroutines submit
// NOPs to a one-slot ring, so the last one usually waits for a slot and is
// published only as the poller finishes the one before, while Close runs.
// Found by FuzzOps (runtime/testdata/fuzz/FuzzOps/5014d22b3585ebfc): the
// poller read pending (0, the earlier NOP done) before closed (already
// true), and left with the last NOP and Close's cancel in flight. Under
// -race (as CI runs it) the old order failed 3 of 3 runs; without, the
// window rarely opens.
func TestCloseRacesSubmit(t *testing.T) {
	uringtest.Require(t)
	for it := range 10000 {
		p, err := New(Config{Entries: 1})
		if err != nil {
			t.Fatal(err)
		}
		var accepted, fired atomic.Int64
		nops := func(n int) {
			for range n {
				var s sqe.SQE
				s.PrepNop()
				if err := p.Submit(&s, func(int32, uint32) { fired.Add(1) }); err != nil {
					t.Error(err)
					return
				}
				accepted.Add(1)
			}
		}
		var wg sync.WaitGroup
		wg.Add(2)
		go func() { defer wg.Done(); nops(1) }()
		go func() { defer wg.Done(); nops(2) }()
		wg.Wait()
		if err := p.Close(); err != nil {
			t.Fatal(err)
		}
		if a, f := accepted.Load(), fired.Load(); a != f {
			t.Fatalf("round %d: %d Submits accepted, %d callbacks fired before Close returned", it, a, f)
		}
	}
}

// TestCQOverflowRecovered: more completions than the CQ holds pile up while
// the poller sleeps; the kernel keeps the excess on its overflow list, and
// the poller must flush it and deliver everything.
func TestCQOverflowRecovered(t *testing.T) {
	p := newPoller(t, Config{Entries: 4, CQEntries: 4})
	if n := p.ring.CQEntries(); n != 4 {
		t.Fatalf("CQ has %d entries, want 4", n)
	}
	flush(t, p)
	before := p.Stats()
	const injected = 12 // three CQs' worth, all stale: nothing to deliver
	for range injected {
		inject(t, p, userData(0, uint32(len(p.slots))))
	}
	if !p.ring.CQOverflow() {
		t.Fatalf("the CQ did not overflow with %d completions in a 4-entry CQ", injected)
	}
	// The NOP's completion queues behind the overflow: it arrives only if the
	// poller flushes the overflow list.
	done := make(chan error, 1)
	go func() {
		var s sqe.SQE
		s.PrepNop()
		_, _, err := p.Do(context.Background(), &s, nil)
		done <- err
	}()
	select {
	case err := <-done:
		if err != nil {
			t.Fatalf("NOP behind the overflow: %v", err)
		}
	case <-time.After(30 * time.Second):
		t.Fatal("a NOP behind an overflowed CQ never completed")
	}
	settle(t, p)
	after := p.Stats()
	if d := after.Stale - before.Stale; d != injected {
		t.Errorf("Stale moved by %d, want %d: overflowed completions were lost", d, injected)
	}
	if after.Overflows == before.Overflows {
		t.Errorf("Stats.Overflows did not move")
	}
}
