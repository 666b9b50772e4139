package runtime_test

import (
	"bytes"
	"context"
	"errors"
	"os"
	"runtime"
	"strings"
	"sync"
	"sync/atomic"
	"syscall"
	"testing"
	"time"

	"go.uber.org/goleak"
	"golang.org/x/sys/unix"

	"github.com/ringwake/ringwake/internal/uringtest"
	"github.com/ringwake/ringwake/poller"
	ringwake "github.com/ringwake/ringwake/runtime"
	"github.com/ringwake/ringwake/sqe"
)

// These tests hold the portable engine to the runtime's guarantees. They
// need no io_uring: RINGWAKE_BACKEND=fallback puts every New on it.

// newFallbackRing is a Ring on the portable engine, closed at cleanup.
func newFallbackRing(t *testing.T, cfg ringwake.Config) *ringwake.Ring {
	t.Helper()
	t.Setenv("RINGWAKE_BACKEND", ringwake.BackendFallback)
	r, err := ringwake.New(cfg)
	if err != nil {
		t.Fatalf("New(%+v) with RINGWAKE_BACKEND=fallback: %v", cfg, err)
	}
	t.Cleanup(func() {
		if err := r.Close(); err != nil {
			t.Errorf("Close: %v", err)
		}
	})
	if b := r.Backend(); b != ringwake.BackendFallback {
		t.Fatalf("Backend() = %q with RINGWAKE_BACKEND=fallback", b)
	}
	return r
}

func TestFallbackBackendSelection(t *testing.T) {
	t.Run("env", func(t *testing.T) {
		for _, cfg := range []ringwake.Config{{}, {Fallback: true}, {Entries: 8, SQPoll: true}} {
			r := newFallbackRing(t, cfg)
			if err := r.Nop(context.Background()); err != nil {
				t.Fatalf("Nop on %+v: %v", cfg, err)
			}
		}
	})
	t.Run("kernel", func(t *testing.T) {
		uringtest.Require(t)
		t.Setenv("RINGWAKE_BACKEND", "")
		// Fallback is a way out where io_uring is refused, not a preference.
		for _, cfg := range []ringwake.Config{{Entries: 8}, {Entries: 8, Fallback: true}} {
			r, err := ringwake.New(cfg)
			if err != nil {
				t.Fatal(err)
			}
			b := r.Backend()
			r.Close()
			if b != ringwake.BackendIOUring {
				t.Fatalf("Backend() = %q for %+v on a kernel with io_uring", b, cfg)
			}
		}
	})
	t.Run("poller", func(t *testing.T) {
		p, err := poller.New(poller.Config{Entries: 4, Soft: true})
		if err != nil {
			t.Fatal(err)
		}
		defer p.Close()
		if !p.Soft() || !p.Ring().Soft() || p.Ring().Fd() != -1 {
			t.Fatalf("poller with Soft: Soft %v, ring Soft %v, Fd %d", p.Soft(), p.Ring().Soft(), p.Ring().Fd())
		}
		var s sqe.SQE
		s.PrepNop()
		if res, _, err := p.Do(context.Background(), &s, nil); res != 0 || err != nil {
			t.Fatalf("Do(NOP) = %d, %v", res, err)
		}
	})
	t.Run("supports", func(t *testing.T) {
		r := newFallbackRing(t, ringwake.Config{Entries: 4})
		for _, op := range []uint8{sqe.OpRead, sqe.OpWrite, sqe.OpFsync, sqe.OpOpenat, sqe.OpLinkTimeout, sqe.OpAsyncCancel} {
			if !r.Supports(op) {
				t.Errorf("fallback lacks %s", sqe.OpName(op))
			}
		}
		// What the engine does not implement is refused up front, by name.
		var s sqe.SQE
		s.PrepSend(0, []byte("x"), 0)
		err := r.Submit(&s, func(int32, uint32) { t.Error("callback of a refused Submit") })
		if !errors.Is(err, ringwake.ErrUnsupported) || !strings.Contains(err.Error(), "SEND") {
			t.Fatalf("Submit(SEND) on the fallback = %v; want ErrUnsupported naming SEND", err)
		}
	})
}

// TestFallbackCallbacksExactlyOnce: NOPs, file reads and pipe reads through
// Submit on an 8-slot ring: every callback exactly once, with its result.
func TestFallbackCallbacksExactlyOnce(t *testing.T) {
	const n = 3000
	r := newFallbackRing(t, ringwake.Config{Entries: 8})
	content := pattern(3, 4096)
	fd := openRead(t, dataFile(t, content))
	pr, pw := rawPipe(t)
	if _, err := unix.Write(pw, make([]byte, n/3)); err != nil {
		t.Fatal(err)
	}
	calls := make([]atomic.Int32, n)
	bad := make([]atomic.Int32, n)
	bufs := make([][]byte, n)
	var wg sync.WaitGroup
	wg.Add(n)
	for i := range n {
		var s sqe.SQE
		want := int32(0)
		switch i % 3 {
		case 0:
			s.PrepNop()
		case 1:
			bufs[i] = make([]byte, len(content))
			s.PrepRead(int32(fd), bufs[i], 0)
			want = int32(len(content))
		case 2:
			bufs[i] = make([]byte, 1)
			s.PrepRead(int32(pr), bufs[i], 0)
			want = 1
		}
		if err := r.Submit(&s, func(res int32, _ uint32) {
			if calls[i].Add(1) == 1 {
				defer wg.Done()
			}
			if res != want {
				bad[i].Store(res)
			}
		}); err != nil {
			t.Fatalf("Submit %d: %v", i, err)
		}
	}
	within(t, "every callback", wg.Wait)
	// A round trip after the last: a late duplicate would have shown.
	if err := r.Nop(context.Background()); err != nil {
		t.Fatal(err)
	}
	for i := range n {
		if c := calls[i].Load(); c != 1 {
			t.Fatalf("request %d: callback fired %d times", i, c)
		}
		if res := bad[i].Load(); res != 0 {
			t.Fatalf("request %d: res %d", i, res)
		}
		if i%3 == 1 && !bytes.Equal(bufs[i], content) {
			t.Fatalf("file read %d returned the wrong bytes", i)
		}
	}
}

// TestFallbackContextCancel: a read of an empty pipe returns promptly when
// its ctx ends (cancel, deadline, or the in-engine linked timeout), leaves
// its buffer alone, and the ring and the pipe keep working.
func TestFallbackContextCancel(t *testing.T) {
	r := newFallbackRing(t, ringwake.Config{Entries: 4})
	pr, pw := rawPipe(t)
	for _, tc := range []struct {
		name string
		read func(buf []byte) (int, error)
		want error
	}{
		{"cancel", func(buf []byte) (int, error) {
			ctx, cancel := context.WithCancel(context.Background())
			time.AfterFunc(20*time.Millisecond, cancel)
			return r.ReadAt(ctx, pr, buf, 0)
		}, context.Canceled},
		{"deadline", func(buf []byte) (int, error) {
			ctx, cancel := context.WithTimeout(context.Background(), 20*time.Millisecond)
			defer cancel()
			return r.ReadAt(ctx, pr, buf, 0)
		}, context.DeadlineExceeded},
		{"linked timeout", func(buf []byte) (int, error) {
			return r.ReadAtTimeout(context.Background(), pr, buf, 0, 20*time.Millisecond)
		}, os.ErrDeadlineExceeded},
	} {
		t.Run(tc.name, func(t *testing.T) {
			buf := bytes.Repeat([]byte{0xAA}, 16)
			var n int
			var err error
			within(t, "a read of an empty pipe after its ctx ended", func() { n, err = tc.read(buf) })
			if n != 0 || !errors.Is(err, tc.want) {
				t.Fatalf("read = %d, %v; want 0 and %v", n, err, tc.want)
			}
			if !bytes.Equal(buf, bytes.Repeat([]byte{0xAA}, 16)) {
				t.Fatal("the canceled read wrote its buffer")
			}
			if err := r.Nop(context.Background()); err != nil {
				t.Fatalf("Nop after the cancel: %v", err)
			}
			// The canceled read is gone: the next byte goes to a fresh one.
			if _, err := unix.Write(pw, []byte{'x'}); err != nil {
				t.Fatal(err)
			}
			fresh := make([]byte, 16)
			if n, err := r.ReadAt(context.Background(), pr, fresh, 0); n != 1 || err != nil || fresh[0] != 'x' {
				t.Fatalf("fresh read = %d, %v, %q", n, err, fresh[:n])
			}
		})
	}
}

// TestFallbackCloseWithManyInFlight: Close with pipe reads that never
// complete, NOPs and blocked callers in flight: every callback fires exactly
// once before Close returns, every blocked call returns ErrClosed, and no
// goroutine of the engine is left.
func TestFallbackCloseWithManyInFlight(t *testing.T) {
	defer goleak.VerifyNone(t, goleak.IgnoreCurrent())
	t.Setenv("RINGWAKE_BACKEND", ringwake.BackendFallback)
	r, err := ringwake.New(ringwake.Config{Entries: 1024})
	if err != nil {
		t.Fatal(err)
	}
	defer r.Close()
	var fds [2]int
	if err := unix.Pipe2(fds[:], unix.O_CLOEXEC); err != nil {
		t.Fatal(err)
	}
	defer unix.Close(fds[0])
	defer unix.Close(fds[1])
	pr := fds[0]

	const reads, nops, callers = 600, 400, 16
	calls := make([]atomic.Int32, reads+nops)
	results := make([]atomic.Int32, reads+nops)
	bufs := make([]byte, reads)
	// The engine writes through the raw address in the SQE: keep the
	// buffer off the goroutine stack, which may move.
	var pin runtime.Pinner
	pin.Pin(&bufs[0])
	defer pin.Unpin()
	for i := range reads + nops {
		var s sqe.SQE
		if i < reads {
			s.PrepRead(int32(pr), bufs[i:i+1], 0)
		} else {
			s.PrepNop()
		}
		if err := r.Submit(&s, func(res int32, _ uint32) {
			results[i].Store(res)
			calls[i].Add(1)
		}); err != nil {
			t.Fatalf("Submit %d: %v", i, err)
		}
	}
	blocked := make(chan error, callers)
	before := r.Stats().Submitted
	for range callers {
		go func() {
			_, err := r.ReadAt(context.Background(), pr, make([]byte, 1), 0)
			blocked <- err
		}()
	}
	waitFor(t, "the blocked callers to submit", func() bool { return r.Stats().Submitted >= before+callers })

	within(t, "Close", func() {
		if err := r.Close(); err != nil {
			t.Errorf("Close: %v", err)
		}
	})
	for i := range reads + nops {
		if c := calls[i].Load(); c != 1 {
			t.Fatalf("request %d: callback fired %d times by the time Close returned", i, c)
		}
		want := int32(0)
		if i < reads {
			want = -int32(syscall.ECANCELED)
		}
		if res := results[i].Load(); res != want {
			t.Fatalf("request %d: res %d, want %d", i, res, want)
		}
	}
	for range callers {
		if err := <-blocked; !errors.Is(err, ringwake.ErrClosed) {
			t.Fatalf("caller blocked at Close: %v, want ErrClosed", err)
		}
	}
}

// TestFallbackBackpressure: 500 goroutines on a 16-slot ring whose slots
// are all held: every caller sleeps for a slot, then all complete.
func TestFallbackBackpressure(t *testing.T) {
	const callers = 500
	r := newFallbackRing(t, ringwake.Config{Entries: 16})
	if c := r.Capacity(); c != 16 {
		t.Fatalf("Capacity = %d, want 16", c)
	}
	content := pattern(5, 1024)
	fd := openRead(t, dataFile(t, content))
	pr, pw := rawPipe(t)
	var holders sync.WaitGroup
	for range 16 {
		holders.Add(1)
		go func() {
			defer holders.Done()
			if n, err := r.ReadAt(context.Background(), pr, make([]byte, 1), 0); n != 1 || err != nil {
				t.Errorf("slot-holding read = %d, %v", n, err)
			}
		}()
	}
	waitFor(t, "every slot in flight", func() bool { return r.Stats().Submitted >= 16 })

	var failures atomic.Int64
	var wg sync.WaitGroup
	for i := range callers {
		wg.Add(1)
		go func() {
			defer wg.Done()
			if i%4 == 0 {
				b := make([]byte, len(content))
				if n, err := r.ReadAt(context.Background(), fd, b, 0); err != nil || n != len(content) || crc(b) != crc(content) {
					failures.Add(1)
					t.Errorf("caller %d: ReadAt = %d, %v", i, n, err)
				}
				return
			}
			if err := r.Nop(context.Background()); err != nil {
				failures.Add(1)
				t.Errorf("caller %d: Nop: %v", i, err)
			}
		}()
	}
	waitFor(t, "all 500 callers to sleep for a slot", func() bool { return r.Stats().Backlogged >= callers })
	if _, err := unix.Write(pw, make([]byte, 16)); err != nil {
		t.Fatal(err)
	}
	within(t, "500 backlogged callers", wg.Wait)
	within(t, "the slot holders", holders.Wait)
	if f := failures.Load(); f != 0 {
		t.Fatalf("%d callers failed", f)
	}
}

// TestFallbackGroupCommitNoLostWrites: writers WriteAt their own blocks and
// Sync concurrently; fsyncs are shared, and every block a Sync
// acknowledged is in the file, read back through a fresh os.File.
func TestFallbackGroupCommitNoLostWrites(t *testing.T) {
	const writers, rounds = 32, 10
	syncs, fsyncs := groupCommit(t, newFallbackRing(t, ringwake.Config{Entries: 64}), writers, rounds)
	t.Logf("Syncs %d, fsyncs %d", syncs, fsyncs)
	if syncs != writers*rounds || fsyncs == 0 || fsyncs >= syncs {
		t.Fatalf("SyncStats = %d Syncs, %d fsyncs: want %d Syncs sharing fewer fsyncs", syncs, fsyncs, writers*rounds)
	}
}
