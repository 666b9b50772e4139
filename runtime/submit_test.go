package runtime_test

import (
	"bytes"
	"context"
	"errors"
	"runtime"
	"strconv"
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

// goid is the current goroutine's id, from the header of its stack trace.
func goid() uint64 {
	var buf [64]byte
	b := buf[:runtime.Stack(buf[:], false)]
	b = bytes.TrimPrefix(b, []byte("goroutine "))
	if i := bytes.IndexByte(b, ' '); i > 0 {
		b = b[:i]
	}
	id, _ := strconv.ParseUint(string(b), 10, 64)
	return id
}

func TestSubmitCallbacks(t *testing.T) {
	const submitters, perSubmitter = 8, 200
	const total = submitters * perSubmitter
	r := newRing(t, ringwake.Config{Entries: 32})
	content := pattern(13, 1000)
	fd := openRead(t, dataFile(t, content))

	var (
		calls      [total]atomic.Int32
		results    [total]atomic.Int32
		inCallback atomic.Bool
		overlaps   atomic.Int32
		cbGoids    sync.Map
		wg         sync.WaitGroup
	)
	bufs := make([][]byte, total)
	submitterGoids := make([]uint64, submitters)
	wg.Add(total)
	for g := range submitters {
		go func() {
			submitterGoids[g] = goid()
			for k := range perSubmitter {
				i := g*perSubmitter + k
				var s sqe.SQE
				if i%2 == 0 {
					s.PrepNop()
				} else {
					bufs[i] = make([]byte, 4096)
					s.PrepRead(int32(fd), bufs[i], 0)
				}
				err := r.Submit(&s, func(res int32, flags uint32) {
					if inCallback.Swap(true) {
						overlaps.Add(1)
					}
					if i%50 == 0 {
						cbGoids.Store(goid(), true)
					}
					results[i].Store(res)
					calls[i].Add(1)
					inCallback.Store(false)
					wg.Done()
				})
				if err != nil {
					t.Errorf("Submit %d: %v", i, err)
					wg.Done()
				}
			}
		}()
	}
	within(t, "1,600 Submit callbacks", wg.Wait)

	for i := range total {
		if c := calls[i].Load(); c != 1 {
			t.Fatalf("callback %d fired %d times", i, c)
		}
		res := results[i].Load()
		if i%2 == 0 && res != 0 {
			t.Errorf("NOP %d: res %d, want 0", i, res)
		}
		if i%2 == 1 {
			if res != int32(len(content)) {
				t.Errorf("read %d: res %d, want %d", i, res, len(content))
			} else if !bytes.Equal(bufs[i][:res], content) {
				t.Errorf("read %d: wrong bytes", i)
			}
		}
	}
	if n := overlaps.Load(); n != 0 {
		t.Errorf("callbacks ran concurrently %d times: they must all run on the one poller goroutine", n)
	}
	var ids []uint64
	cbGoids.Range(func(k, _ any) bool { ids = append(ids, k.(uint64)); return true })
	if len(ids) != 1 {
		t.Errorf("callbacks ran on goroutines %v, want exactly one (the poller)", ids)
	}
	for _, id := range submitterGoids {
		if len(ids) == 1 && ids[0] == id {
			t.Errorf("a callback ran on its submitter's goroutine %d", id)
		}
	}
}

func TestSubmitResultsAndErrors(t *testing.T) {
	r := newRing(t, ringwake.Config{Entries: 8})
	type result struct {
		res   int32
		flags uint32
	}
	got := make(chan result, 1)
	cb := func(res int32, flags uint32) { got <- result{res, flags} }

	var s sqe.SQE
	s.PrepRead(-1, make([]byte, 8), 0)
	if err := r.Submit(&s, cb); err != nil {
		t.Fatal(err)
	}
	if g := <-got; g.res != -int32(syscall.EBADF) {
		t.Errorf("read of fd -1: res %d, want -EBADF", g.res)
	}

	// UserData belongs to the runtime: whatever the caller put there is ignored.
	s.PrepNop()
	s.UserData = ^uint64(0)
	if err := r.Submit(&s, cb); err != nil {
		t.Fatal(err)
	}
	if g := <-got; g.res != 0 {
		t.Errorf("NOP with caller UserData: res %d", g.res)
	}

	before := r.Stats().Submitted
	if err := r.Submit(nil, cb); err == nil {
		t.Errorf("Submit(nil, f) succeeded")
	}
	s.PrepNop()
	if err := r.Submit(&s, nil); err == nil {
		t.Errorf("Submit(s, nil) succeeded")
	}
	for _, flag := range []uint8{sqe.IOLink, sqe.IOHardlink} {
		s.PrepNop()
		s.Flags = flag
		if err := r.Submit(&s, cb); err == nil {
			t.Errorf("Submit with SQE flag %#x (a link) succeeded", flag)
		}
	}
	s.PrepNop()
	s.Opcode = 250 // beyond any kernel's IORING_OP_LAST
	if err := r.Submit(&s, cb); !errors.Is(err, ringwake.ErrUnsupported) {
		t.Errorf("Submit of opcode 250: %v, want errors.Is ErrUnsupported", err)
	}
	if after := r.Stats().Submitted; after != before {
		t.Errorf("refused Submits reached the ring: Submitted moved by %d", after-before)
	}
	select {
	case g := <-got:
		t.Errorf("a callback fired (res %d) for a refused Submit", g.res)
	default:
	}
	if err := r.Nop(context.Background()); err != nil {
		t.Fatalf("Nop after refused Submits: %v", err)
	}
}

// TestSubmitFromCallback: a callback may resubmit, and on a one-slot ring
// that resubmission must find the slot its own completion just freed.
func TestSubmitFromCallback(t *testing.T) {
	const chain = 500
	r := newRing(t, ringwake.Config{Entries: 1})
	if r.Capacity() != 1 {
		t.Fatalf("Capacity = %d, want 1", r.Capacity())
	}
	var s sqe.SQE
	s.PrepNop()
	var n int
	done := make(chan error, 1)
	var cb func(res int32, flags uint32)
	cb = func(res int32, _ uint32) {
		if res != 0 {
			done <- syscall.Errno(-res)
			return
		}
		if n++; n == chain {
			done <- nil
			return
		}
		if err := r.Submit(&s, cb); err != nil {
			done <- err
		}
	}
	if err := r.Submit(&s, cb); err != nil {
		t.Fatal(err)
	}
	within(t, "a chain of resubmitting callbacks on a one-slot ring", func() {
		if err := <-done; err != nil {
			t.Errorf("chain: %v", err)
		}
	})
	if n != chain {
		t.Errorf("chain ran %d callbacks, want %d", n, chain)
	}
}

// TestSubmitFromCallbackUnderBackpressure: a callback's resubmission must not
// sleep for a slot on the poller goroutine, which alone can free one, even
// while other submitters queue for slots.
func TestSubmitFromCallbackUnderBackpressure(t *testing.T) {
	const chain, callers, perCaller = 300, 8, 100
	r := newRing(t, ringwake.Config{Entries: 2})
	var s sqe.SQE
	s.PrepNop()
	var links atomic.Int32
	done := make(chan error, 1)
	var cb func(res int32, flags uint32)
	cb = func(res int32, _ uint32) {
		if n := links.Add(1); n == chain || res != 0 {
			done <- syscall.Errno(-res)
			return
		}
		if err := r.Submit(&s, cb); err != nil {
			done <- err
		}
	}
	if err := r.Submit(&s, cb); err != nil {
		t.Fatal(err)
	}
	var wg sync.WaitGroup
	var nops atomic.Int32
	for range callers {
		wg.Add(1)
		go func() {
			defer wg.Done()
			for range perCaller {
				if r.Nop(context.Background()) != nil {
					return
				}
				nops.Add(1)
			}
		}()
	}
	select {
	case err := <-done:
		if err != nil && err != syscall.Errno(0) {
			t.Errorf("chain: %v", err)
		}
	case <-time.After(10 * time.Second):
		t.Errorf("ring hung: the resubmitting chain stopped after %d of %d links, %d of %d Nops done, Backlogged %d (the poller sleeps for a slot inside a callback)",
			links.Load(), chain, nops.Load(), callers*perCaller, r.Stats().Backlogged)
		r.Close() // wakes the sleeping poller with ErrClosed, so everything drains
	}
	wg.Wait()
	if !t.Failed() && nops.Load() != callers*perCaller {
		t.Errorf("%d of %d Nops done", nops.Load(), callers*perCaller)
	}
}

// TestSubmitSkipSuccess: IOSQE_CQE_SKIP_SUCCESS asks the kernel to post no
// completion on success, so a callback could never fire and the slot would
// stay in flight forever. Submit must refuse it, or still fire the callback
// exactly once; either way Close must not hang.
func TestSubmitSkipSuccess(t *testing.T) {
	uringtest.Require(t)
	r, err := ringwake.New(ringwake.Config{Entries: 8})
	if err != nil {
		t.Fatal(err)
	}
	var s sqe.SQE
	s.PrepNop()
	s.Flags = sqe.CQESkipSuccess
	fired := make(chan int32, 2)
	if err := r.Submit(&s, func(res int32, _ uint32) { fired <- res }); err == nil {
		select {
		case <-fired:
		case <-time.After(5 * time.Second):
			t.Errorf("Submit accepted a CQE_SKIP_SUCCESS NOP whose callback never fired")
		}
	}
	closed := make(chan error, 1)
	go func() { closed <- r.Close() }()
	select {
	case err := <-closed:
		if err != nil {
			t.Errorf("Close: %v", err)
		}
	case <-time.After(5 * time.Second):
		// The poller and this Close stay behind; goleak will name them too.
		t.Fatalf("Close hangs on a request that will never complete (Stats %+v)", r.Stats())
	}
	if len(fired) > 0 {
		t.Errorf("callback fired more than once")
	}
}

func TestSubmitCallbackPanic(t *testing.T) {
	panics := make(chan any, 4)
	r := newRing(t, ringwake.Config{Entries: 8, OnCallbackPanic: func(v any) { panics <- v }})
	var s sqe.SQE
	s.PrepNop()
	if err := r.Submit(&s, func(int32, uint32) { panic("boom") }); err != nil {
		t.Fatal(err)
	}
	within(t, "the panic report", func() {
		if v := <-panics; v != "boom" {
			t.Errorf("OnCallbackPanic got %v, want boom", v)
		}
	})
	// The poller survived: blocking calls and callbacks still complete.
	if err := r.Nop(context.Background()); err != nil {
		t.Fatalf("Nop after a callback panic: %v", err)
	}
	fired := make(chan int32, 1)
	if err := r.Submit(&s, func(res int32, _ uint32) { fired <- res }); err != nil {
		t.Fatal(err)
	}
	within(t, "a callback after a panic", func() {
		if res := <-fired; res != 0 {
			t.Errorf("NOP after panic: res %d", res)
		}
	})
	select {
	case v := <-panics:
		t.Errorf("unexpected second panic report %v", v)
	default:
	}
}

// TestMultishotCompletions: a multishot timeout posts several completions,
// all to the one callback, with CQEFMore on all but the last.
func TestMultishotCompletions(t *testing.T) {
	const shots = 3
	r := newRing(t, ringwake.Config{Entries: 1})
	if !r.Supports(sqe.OpTimeout) {
		t.Fatal("the kernel lacks IORING_OP_TIMEOUT")
	}
	ts := &unix.Timespec{Nsec: 2_000_000}
	var s sqe.SQE
	s.PrepTimeout(ts, shots, sqe.TimeoutMultishot)
	got := make(chan [2]int64, shots+1)
	if err := r.Submit(&s, func(res int32, flags uint32) { got <- [2]int64{int64(res), int64(flags)} }); err != nil {
		t.Fatal(err)
	}
	for i := range shots {
		var c [2]int64
		within(t, "a multishot completion", func() { c = <-got })
		more := uint32(c[1])&sqe.CQEFMore != 0
		if c[0] != -int64(syscall.ETIME) {
			t.Errorf("shot %d: res %d, want -ETIME", i, c[0])
		}
		if more != (i < shots-1) {
			t.Errorf("shot %d: CQEFMore = %v", i, more)
		}
	}
	runtime.KeepAlive(ts)
	if err := r.Nop(context.Background()); err != nil {
		t.Fatal(err)
	}
	select {
	case c := <-got:
		t.Errorf("a completion after the final one: %v", c)
	default:
	}
}

// TestMultishotKeepsSlot: on a one-slot ring, a multishot poll that has
// posted completions still holds the slot, so a Nop must sleep for it; Close
// ends the poll with a final -ECANCELED and wakes the Nop with ErrClosed.
func TestMultishotKeepsSlot(t *testing.T) {
	r := newRing(t, ringwake.Config{Entries: 1})
	pr, pw := rawPipe(t)
	var s sqe.SQE
	s.PrepPollMultishot(int32(pr), unix.POLLIN)
	got := make(chan [2]int64, 16)
	if err := r.Submit(&s, func(res int32, flags uint32) { got <- [2]int64{int64(res), int64(flags)} }); err != nil {
		t.Fatal(err)
	}
	for i := range 2 {
		if _, err := unix.Write(pw, []byte{'x'}); err != nil {
			t.Fatal(err)
		}
		var c [2]int64
		within(t, "a multishot poll completion", func() { c = <-got })
		if c[0]&unix.POLLIN == 0 || uint32(c[1])&sqe.CQEFMore == 0 {
			t.Fatalf("poll completion %d: res %#x flags %#x, want POLLIN with CQEFMore", i, c[0], c[1])
		}
		if _, err := unix.Read(pr, make([]byte, 1)); err != nil {
			t.Fatal(err)
		}
	}
	nop := make(chan error, 1)
	go func() { nop <- r.Nop(context.Background()) }()
	waitFor(t, "the Nop to sleep or finish", func() bool { return r.Stats().Backlogged > 0 || len(nop) > 0 })
	if len(nop) > 0 {
		t.Fatalf("Nop finished (%v) while the multishot poll held the only slot", <-nop)
	}
	if err := r.Close(); err != nil {
		t.Fatal(err)
	}
	if err := <-nop; !errors.Is(err, ringwake.ErrClosed) {
		t.Errorf("backlogged Nop at Close: %v, want ErrClosed", err)
	}
	var last [2]int64
	within(t, "the multishot's final completion", func() { last = <-got })
	if last[0] != -int64(syscall.ECANCELED) || uint32(last[1])&sqe.CQEFMore != 0 {
		t.Errorf("final completion res %d flags %#x, want -ECANCELED without CQEFMore", last[0], last[1])
	}
	if len(got) != 0 {
		t.Errorf("%d completions after the final one", len(got))
	}
}
