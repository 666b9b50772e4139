package poller

import (
	"context"
	"errors"
	"math/rand/v2"
	"syscall"
	"testing"
	"time"
	"unsafe"

	"golang.org/x/sys/unix"

	"github.com/ringwake/ringwake/sqe"
)

// inFlightUD waits for the one request in flight and returns its user_data.
func inFlightUD(t *testing.T, p *Poller) uint64 {
	t.Helper()
	var ud uint64
	waitUntil(t, func() bool {
		for i := range p.slots {
			if tag := p.slots[i].tag.Load(); tag&3 == slotInFlight {
				ud = tag>>2<<32 | uint64(i)
				return true
			}
		}
		return false
	})
	return ud
}

// cancelBehindTheBack cancels ud the way the kernel does on its own (io-wq
// worker creation failing, a submitting thread exiting): an ECANCELED that
// no cancel of the runtime's announced.
func cancelBehindTheBack(p *Poller, ud uint64) {
	p.mu.Lock()
	p.internalLocked(func(q *sqe.SQE) { q.PrepCancel64(ud, 0) })
	p.mu.Unlock()
	p.kick()
}

// doResult is what a blocking call returned.
type doResult struct {
	res int32
	err error
}

// blockingRead starts a blocking 1-byte read of rd with p.Do; its result
// arrives on got, its byte in buf.
func blockingRead(p *Poller, rd int) (buf []byte, got <-chan doResult) {
	buf = make([]byte, 1)
	ch := make(chan doResult, 1)
	go func() {
		var s sqe.SQE
		s.PrepRead(int32(rd), buf, 0)
		res, _, err := p.Do(context.Background(), &s, unsafe.Pointer(&buf[0]))
		ch <- doResult{res, err}
	}()
	return buf, ch
}

// A lone request the kernel cancels on its own is submitted again, so the
// caller gets the result it asked for, once: a blocking read and a callback
// read of an empty pipe, each canceled behind the poller's back, then fed.
func TestKernelCancelIsRetried(t *testing.T) {
	p := newPoller(t, Config{Entries: 8})
	rd, wr := rawPipe(t)
	buf, got := blockingRead(p, rd)
	cancelBehindTheBack(p, inFlightUD(t, p))
	waitUntil(t, func() bool { return p.Stats().Retried == 1 })
	if _, err := unix.Write(wr, []byte{7}); err != nil {
		t.Fatal(err)
	}
	if r := <-got; r.err != nil || r.res != 1 || buf[0] != 7 {
		t.Fatalf("blocking read after a kernel cancel = %d, %v, byte %d; want 1 byte, 7", r.res, r.err, buf[0])
	}

	fired := make(chan int32, 2)
	cbuf := make([]byte, 1)
	var s sqe.SQE
	s.PrepRead(int32(rd), cbuf, 0)
	if err := p.Submit(&s, func(res int32, _ uint32) { fired <- res }); err != nil {
		t.Fatal(err)
	}
	cancelBehindTheBack(p, inFlightUD(t, p))
	waitUntil(t, func() bool { return p.Stats().Retried == 2 })
	if _, err := unix.Write(wr, []byte{9}); err != nil {
		t.Fatal(err)
	}
	if res := <-fired; res != 1 || cbuf[0] != 9 {
		t.Fatalf("callback read after a kernel cancel = %d, byte %d; want 1 byte, 9", res, cbuf[0])
	}
	select {
	case res := <-fired:
		t.Fatalf("callback fired twice (second: %d)", res)
	default:
	}
}

// A blocking request the kernel cancels on its own more often than the
// poller retries it (a storm that outlasts them) is submitted again by its
// caller after a pause, so it still returns what was asked for: a blocking
// read of an empty pipe canceled behind the poller's back maxRetries+3
// times, then fed.
func TestKernelCancelPastRetriesBacksOff(t *testing.T) {
	p := newPoller(t, Config{Entries: 8})
	rd, wr := rawPipe(t)
	buf, got := blockingRead(p, rd)
	for i := uint64(1); i <= maxRetries+3; i++ {
		cancelBehindTheBack(p, inFlightUD(t, p))
		waitUntil(t, func() bool { return p.Stats().Retried == i || len(got) > 0 })
		select {
		case r := <-got:
			t.Fatalf("Do returned %d, %v after %d kernel cancels; want it to wait for the pipe", r.res, r.err, i)
		default:
		}
	}
	if _, err := unix.Write(wr, []byte{5}); err != nil {
		t.Fatal(err)
	}
	if r := <-got; r.err != nil || r.res != 1 || buf[0] != 5 {
		t.Fatalf("blocking read after %d kernel cancels = %d, %v, byte %d; want 1 byte, 5", maxRetries+3, r.res, r.err, buf[0])
	}
}

// Cancels the runtime or its caller asked for are delivered, not retried:
// a ctx ending, and a cancel opcode a caller submits.
func TestRequestedCancelIsNotRetried(t *testing.T) {
	p := newPoller(t, Config{Entries: 8})
	rd, _ := rawPipe(t)
	buf := make([]byte, 1)

	ctx, cancel := context.WithCancel(context.Background())
	errc := make(chan error, 1)
	go func() {
		var s sqe.SQE
		s.PrepRead(int32(rd), buf, 0)
		_, _, err := p.Do(ctx, &s, unsafe.Pointer(&buf[0]))
		errc <- err
	}()
	inFlightUD(t, p)
	cancel()
	if err := <-errc; !errors.Is(err, context.Canceled) {
		t.Errorf("Do after its ctx ended: %v, want context.Canceled", err)
	}

	fired := make(chan int32, 1)
	var s sqe.SQE
	s.PrepRead(int32(rd), buf, 0)
	if err := p.Submit(&s, func(res int32, _ uint32) { fired <- res }); err != nil {
		t.Fatal(err)
	}
	ud := inFlightUD(t, p)
	var c sqe.SQE
	c.PrepCancel64(ud, 0)
	if err := p.Submit(&c, func(int32, uint32) {}); err != nil {
		t.Fatal(err)
	}
	if res := <-fired; res != -int32(syscall.ECANCELED) {
		t.Errorf("read canceled by a caller's cancel opcode = %d, want -ECANCELED", res)
	}
	if n := p.Stats().Retried; n != 0 {
		t.Errorf("Retried = %d, want 0", n)
	}
}

// A batch member the kernel cancels on its own is submitted again by its
// caller once the rest of the chunk is done, so SubmitAndWait still returns
// what was asked for: a NOP, a read of an empty pipe canceled behind the
// poller's back and then fed, a NOP.
func TestKernelCancelOfBatchMemberIsRetried(t *testing.T) {
	p := newPoller(t, Config{Entries: 8})
	rd, wr := rawPipe(t)
	buf := make([]byte, 1)
	ss := make([]sqe.SQE, 3)
	ss[0].PrepNop()
	ss[1].PrepRead(int32(rd), buf, 0)
	ss[2].PrepNop()
	res := []int32{-1, -1, -1}
	errc := make(chan error, 1)
	go func() {
		errc <- p.SubmitAndWait(context.Background(), ss, res, []unsafe.Pointer{nil, unsafe.Pointer(&buf[0]), nil})
	}()
	// The chunk's head slot carries the generation its members' user_data share.
	head := inFlightUD(t, p)
	waitUntil(t, func() bool { return p.pending.Load() == 1 }) // the NOPs are in
	cancelBehindTheBack(p, head>>32<<32|uint64(memberBit|1<<memberShift)|head&uint64(memberIdx))
	waitUntil(t, func() bool { return p.Stats().Retried == 1 && p.pending.Load() == 1 })
	if _, err := unix.Write(wr, []byte{7}); err != nil {
		t.Fatal(err)
	}
	if err := <-errc; err != nil {
		t.Fatal(err)
	}
	if res[0] != 0 || res[1] != 1 || res[2] != 0 || buf[0] != 7 {
		t.Fatalf("res %v, byte %d: want [0 1 0], 7", res, buf[0])
	}
	if n := p.Stats().Retried; n != 1 {
		t.Fatalf("Retried = %d, want 1", n)
	}
}

// A callback's request the kernel cancels on its own more often than the
// poller retries it at once is paused in the kernel and submitted again, so
// the callback still gets what was asked for, once: a read of an empty pipe
// canceled behind the poller's back maxRetries+3 times, then fed.
func TestKernelCancelOfCallbackPastRetriesPauses(t *testing.T) {
	p := newPoller(t, Config{Entries: 8})
	rd, wr := rawPipe(t)
	buf, fired := callbackRead(t, p.Submit, rd)
	for i := uint64(1); i <= maxRetries+3; i++ {
		cancelBehindTheBack(p, inFlightUD(t, p))
		waitUntil(t, func() bool { return p.Stats().Retried == i || len(fired) > 0 })
		select {
		case res := <-fired:
			t.Fatalf("callback fired with %d after %d kernel cancels; want it to wait for the pipe", res, i)
		default:
		}
	}
	if _, err := unix.Write(wr, []byte{3}); err != nil {
		t.Fatal(err)
	}
	if res := <-fired; res != 1 || buf[0] != 3 {
		t.Fatalf("callback read after %d kernel cancels = %d, byte %d; want 1 byte, 3", maxRetries+3, res, buf[0])
	}
	waitUntil(t, func() bool { return p.pending.Load() == 0 })
	select {
	case res := <-fired:
		t.Fatalf("callback fired twice (second: %d)", res)
	default:
	}
}

// Close ends a callback request's pause at once: the callback fires exactly
// once, with -ECANCELED, and Close returns without waiting the pause out.
func TestCloseEndsCallbackPause(t *testing.T) {
	base, most := backoffBase, backoffMax
	backoffBase, backoffMax = time.Hour, time.Hour
	// Registered first, so it runs after the poller has stopped.
	t.Cleanup(func() { backoffBase, backoffMax = base, most })
	p := newPoller(t, Config{Entries: 8})
	rd, _ := rawPipe(t)
	_, fired := callbackRead(t, p.Submit, rd)
	var ud uint64
	for i := uint64(1); i <= maxRetries+1; i++ {
		ud = inFlightUD(t, p)
		cancelBehindTheBack(p, ud)
		if i <= maxRetries {
			waitUntil(t, func() bool { return p.Stats().Retried == i })
		}
	}
	// Paused, the timeout in the kernel.
	waitUntil(t, func() bool {
		p.mu.Lock()
		defer p.mu.Unlock()
		return p.slots[uint32(ud)].pauses == 1 && p.ring.SQPending() == 0
	})
	if len(fired) > 0 {
		t.Fatalf("callback fired with %d during its pause", <-fired)
	}
	doneClosing := make(chan error, 1)
	go func() { doneClosing <- p.Close() }()
	select {
	case err := <-doneClosing:
		if err != nil {
			t.Fatal(err)
		}
	case <-time.After(10 * time.Second):
		t.Fatal("Close waited for an hour's pause")
	}
	if res := <-fired; res != -int32(syscall.ECANCELED) {
		t.Fatalf("paused callback after Close = %d, want -ECANCELED", res)
	}
	if len(fired) > 0 {
		t.Fatalf("callback fired twice (second: %d)", <-fired)
	}
}

// A batch member the kernel cancels on its own more often than it is
// submitted again at once is submitted again after pauses, so SubmitAndWait
// still returns what was asked for.
func TestKernelCancelOfBatchMemberPastRetriesPauses(t *testing.T) {
	p := newPoller(t, Config{Entries: 8})
	rd, wr := rawPipe(t)
	buf := make([]byte, 1)
	ss := make([]sqe.SQE, 1)
	ss[0].PrepRead(int32(rd), buf, 0)
	res := []int32{-1}
	errc := make(chan error, 1)
	go func() {
		errc <- p.SubmitAndWait(context.Background(), ss, res, []unsafe.Pointer{unsafe.Pointer(&buf[0])})
	}()
	for i := uint64(1); i <= maxRetries+3; i++ {
		head := inFlightUD(t, p)
		cancelBehindTheBack(p, head>>32<<32|uint64(memberBit)|head&uint64(memberIdx))
		waitUntil(t, func() bool { return p.Stats().Retried == i || len(errc) > 0 })
		if len(errc) > 0 {
			t.Fatalf("SubmitAndWait returned %v, res %d after %d kernel cancels; want it to wait for the pipe", <-errc, res[0], i)
		}
	}
	if _, err := unix.Write(wr, []byte{4}); err != nil {
		t.Fatal(err)
	}
	if err := <-errc; err != nil {
		t.Fatal(err)
	}
	if res[0] != 1 || buf[0] != 4 {
		t.Fatalf("res %d, byte %d: want 1, 4", res[0], buf[0])
	}
}

// Through SubmitNoPause a callback gets the -ECANCELED of a request the
// kernel keeps canceling once the immediate retries are spent, unpaused.
func TestSubmitNoPauseDeliversCancel(t *testing.T) {
	p := newPoller(t, Config{Entries: 8})
	rd, _ := rawPipe(t)
	_, fired := callbackRead(t, p.SubmitNoPause, rd)
	for i := uint64(1); i <= maxRetries; i++ {
		cancelBehindTheBack(p, inFlightUD(t, p))
		waitUntil(t, func() bool { return p.Stats().Retried == i })
	}
	cancelBehindTheBack(p, inFlightUD(t, p))
	if res := <-fired; res != -int32(syscall.ECANCELED) {
		t.Fatalf("callback after %d kernel cancels = %d, want -ECANCELED", maxRetries+1, res)
	}
	waitUntil(t, func() bool { return p.pending.Load() == 0 })
	if n := p.Stats().Retried; n != maxRetries || len(fired) > 0 {
		t.Fatalf("Retried = %d (want %d), %d more callbacks", n, maxRetries, len(fired))
	}
}

// callbackRead submits a 1-byte read of rd through submit; its results
// arrive on fired, its byte in buf.
func callbackRead(t *testing.T, submit func(*sqe.SQE, func(int32, uint32)) error, rd int) (buf []byte, fired chan int32) {
	t.Helper()
	fired = make(chan int32, 2)
	buf = make([]byte, 1)
	var s sqe.SQE
	s.PrepRead(int32(rd), buf, 0)
	if err := submit(&s, func(res int32, _ uint32) { fired <- res }); err != nil {
		t.Fatal(err)
	}
	return buf, fired
}

// TestKernelCancelChaos cancels requests behind the poller's back at random
// while callbacks, blocking calls and batch members wait on pipes, some
// past their immediate retries and into pauses, then feeds the pipes: each
// caller gets its byte, exactly once. A second round closes the poller in
// the middle of the chaos: each gets its byte or -ECANCELED, exactly once,
// and Close returns.
func TestKernelCancelChaos(t *testing.T) {
	base := backoffBase
	backoffBase = 20 * time.Microsecond // many pauses, short ones
	t.Cleanup(func() { backoffBase = base })
	for _, closeMidway := range []bool{false, true} {
		const callbacks, blocking = 12, 4
		p := newPoller(t, Config{Entries: 32})
		type reader struct {
			wr    int
			buf   []byte
			fired chan int32
		}
		var rs []reader
		for range callbacks {
			rd, wr := rawPipe(t)
			buf, fired := callbackRead(t, p.Submit, rd)
			rs = append(rs, reader{wr, buf, fired})
		}
		for range blocking {
			rd, wr := rawPipe(t)
			buf, got := blockingRead(p, rd)
			fired := make(chan int32, 2)
			go func() {
				r := <-got
				if r.err != nil && !errors.Is(r.err, ErrClosed) {
					t.Errorf("blocking read: %v", r.err)
				}
				if r.err != nil {
					r.res = -int32(syscall.ECANCELED)
				}
				fired <- r.res
			}()
			rs = append(rs, reader{wr, buf, fired})
		}
		rng := rand.New(rand.NewPCG(1, uint64(len(rs))))
		for n := 0; n < 300; n++ {
			var uds []uint64
			for i := range p.slots {
				if tag := p.slots[i].tag.Load(); tag&3 == slotInFlight {
					uds = append(uds, tag>>2<<32|uint64(i))
				}
			}
			if len(uds) > 0 {
				cancelBehindTheBack(p, uds[rng.IntN(len(uds))])
			}
			if closeMidway && n == 150 {
				if err := p.Close(); err != nil {
					t.Fatal(err)
				}
				break
			}
			time.Sleep(20 * time.Microsecond)
		}
		for i, r := range rs {
			if _, err := unix.Write(r.wr, []byte{byte(i + 1)}); err != nil {
				t.Fatal(err)
			}
		}
		for i, r := range rs {
			var res int32
			select {
			case res = <-r.fired:
			case <-time.After(10 * time.Second):
				t.Fatalf("closeMidway=%v: reader %d never completed", closeMidway, i)
			}
			switch {
			case res == 1 && r.buf[0] == byte(i+1):
			case closeMidway && res == -int32(syscall.ECANCELED):
			default:
				t.Fatalf("closeMidway=%v: reader %d got %d, byte %d; want 1 byte, %d", closeMidway, i, res, r.buf[0], i+1)
			}
		}
		if !closeMidway {
			waitUntil(t, func() bool { return p.pending.Load() == 0 })
		} else if err := p.Close(); err != nil {
			t.Fatal(err)
		}
		for i, r := range rs {
			if len(r.fired) > 0 {
				t.Fatalf("closeMidway=%v: reader %d completed twice (second: %d)", closeMidway, i, <-r.fired)
			}
		}
		t.Logf("closeMidway=%v: %d submitted again after kernel cancels", closeMidway, p.Stats().Retried)
	}
}
