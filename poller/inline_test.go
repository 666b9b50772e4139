package poller

import (
	"bytes"
	"context"
	"errors"
	"os"
	"sync"
	"sync/atomic"
	"syscall"
	"testing"
	"time"
	"unsafe"

	"golang.org/x/sys/unix"

	"github.com/ringwake/ringwake/sqe"
)

// readInline starts a blocking pipe read that reaps inline (the poller is
// asleep and ctx cannot end) and returns once the caller holds the role.
func readInline(t *testing.T, p *Poller, fd int, buf []byte) <-chan int32 {
	t.Helper()
	settle(t, p)
	if st := p.state.Load(); st != pollerParked {
		t.Fatalf("poller state %d before the inline read, want parked", st)
	}
	before := p.Stats().Inline
	got := make(chan int32, 1)
	go func() {
		var s sqe.SQE
		s.PrepRead(int32(fd), buf, 0)
		res, _, err := p.Do(context.Background(), &s, unsafe.Pointer(&buf[0]))
		if err != nil && !errors.Is(err, ErrClosed) {
			t.Errorf("inline read: %v", err)
		}
		got <- res
	}()
	waitFor(t, "the caller to reap inline", func() bool {
		return p.state.Load() == pollerLent && p.Stats().Inline == before+1
	})
	return got
}

// await returns what ch delivers, failing the test if nothing comes.
func await(t *testing.T, ch <-chan int32, what string) int32 {
	t.Helper()
	select {
	case res := <-ch:
		return res
	case <-time.After(30 * time.Second):
		t.Fatalf("%s never returned", what)
		return 0
	}
}

// An inline reaper runs the callbacks of requests others submit meanwhile.
// A callback's Submit that finds no slot must defer, as on the poller,
// rather than sleep: the reaper it runs on is the only one freeing slots.
// (Before the reaper was known to onPoller, this test hung.)
func TestInlineCallbackSubmitDefers(t *testing.T) {
	p := newPoller(t, Config{Entries: 2})
	if p.Capacity() != 2 {
		t.Fatalf("Capacity %d, want 2", p.Capacity())
	}
	pr, pw := rawPipe(t)
	got := readInline(t, p, pr, make([]byte, 1)) // slot 1 of 2

	var fired atomic.Int32
	allFired := make(chan struct{})
	var nop sqe.SQE
	nop.PrepNop()
	var leaf func(int32, uint32)
	leaf = func(res int32, _ uint32) {
		if res != 0 {
			t.Errorf("NOP res %d", res)
		}
		if fired.Add(1) == 3 {
			close(allFired)
		}
	}
	// The NOP's slot is freed before its callback runs; the callback then
	// takes it with its first Submit and finds none for the second.
	root := func(res int32, _ uint32) {
		leaf(res, 0)
		for range 2 {
			if err := p.Submit(&nop, leaf); err != nil {
				t.Errorf("Submit from a callback: %v", err)
			}
		}
	}
	if err := p.Submit(&nop, root); err != nil {
		t.Fatal(err)
	}
	waitFor(t, "the deferred submission", func() bool { return p.Stats().Deferred > 0 })
	if fired.Load() < 1 || p.state.Load() != pollerLent {
		t.Fatalf("callbacks fired %d, poller state %d: want the root's callback run by the inline reaper", fired.Load(), p.state.Load())
	}
	if _, err := unix.Write(pw, []byte{7}); err != nil {
		t.Fatal(err)
	}
	if res := await(t, got, "the inline read"); res != 1 {
		t.Errorf("inline read res %d, want 1", res)
	}
	select {
	case <-allFired:
	case <-time.After(30 * time.Second):
		t.Fatalf("%d of 3 callbacks fired", fired.Load())
	}
}

// A request submitted while another caller reaps inline is delivered by
// that caller if it completes first, and otherwise by the poller, which
// gets the role back when the inline caller's own request is done.
func TestInlineHandsBack(t *testing.T) {
	p := newPoller(t, Config{Entries: 8})
	pa, wa := rawPipe(t)
	pb, wb := rawPipe(t)
	gotA := readInline(t, p, pa, make([]byte, 1))

	gotB := make(chan int32, 1)
	go func() {
		var s sqe.SQE
		buf := make([]byte, 1)
		s.PrepRead(int32(pb), buf, 0)
		res, _, err := p.Do(context.Background(), &s, unsafe.Pointer(&buf[0]))
		if err != nil {
			t.Errorf("read B: %v", err)
		}
		gotB <- res
	}()
	waitFor(t, "read B in flight", func() bool { return p.pending.Load() == 2 })
	if _, err := unix.Write(wa, []byte{1}); err != nil {
		t.Fatal(err)
	}
	if res := <-gotA; res != 1 {
		t.Errorf("read A res %d, want 1", res)
	}
	// B is still in flight: the poller must have the role again.
	waitFor(t, "the poller to take over", func() bool { return p.state.Load() != pollerLent })
	if _, err := unix.Write(wb, []byte{2}); err != nil {
		t.Fatal(err)
	}
	if res := await(t, gotB, "read B, after the inline caller left"); res != 1 {
		t.Errorf("read B res %d, want 1", res)
	}
	if n := p.Stats().Inline; n != 1 {
		t.Errorf("Inline = %d, want 1 (B found the role taken)", n)
	}
}

// Close while a caller reaps inline: the caller's request is canceled,
// the role goes back to the poller, which stops, and nothing is left.
func TestInlineClose(t *testing.T) {
	p := newPoller(t, Config{Entries: 8})
	pr, _ := rawPipe(t)
	got := readInline(t, p, pr, make([]byte, 1))
	if err := p.Close(); err != nil {
		t.Fatal(err)
	}
	if res := await(t, got, "the inline read, after Close"); res != -int32(syscall.ECANCELED) && res != -int32(syscall.EINTR) {
		t.Errorf("inline read after Close: res %d, want -ECANCELED", res)
	}
}

// Calls that could go inline but find a request in flight, or a ctx that
// can end, take the ordinary path; sequential ones on a sleeping ring all
// go inline, with the right results.
func TestInlineSequentialReads(t *testing.T) {
	p := newPoller(t, Config{Entries: 8})
	pr, pw := rawPipe(t)
	settle(t, p)
	before := p.Stats()
	const n = 200
	buf := make([]byte, 1)
	for i := range n {
		if _, err := unix.Write(pw, []byte{byte(i)}); err != nil {
			t.Fatal(err)
		}
		var s sqe.SQE
		s.PrepRead(int32(pr), buf, 0)
		res, _, err := p.Do(context.Background(), &s, unsafe.Pointer(&buf[0]))
		if err != nil || res != 1 || buf[0] != byte(i) {
			t.Fatalf("read %d: res %d err %v byte %d", i, res, err, buf[0])
		}
	}
	after := p.Stats()
	if d := after.Inline - before.Inline; d != n {
		t.Errorf("Inline moved by %d over %d sequential reads, want %d", d, n, n)
	}
	if after.Parks != before.Parks {
		t.Errorf("Parks moved by %d: the poller woke for inline reads", after.Parks-before.Parks)
	}
}

// A few callers at a shallow depth keep taking the role in turn while
// callbacks resubmit and other calls are canceled: every read returns its
// own bytes, every callback fires exactly once, and the ring ends with
// nothing pending. Run under -race it also checks the hand-overs of the
// poller's scratch between goroutines.
func TestInlineStress(t *testing.T) {
	p := newPoller(t, Config{Entries: 16})
	f, err := os.CreateTemp(t.TempDir(), "inline")
	if err != nil {
		t.Fatal(err)
	}
	defer f.Close()
	const blocks, bs = 64, 512
	data := make([]byte, blocks*bs)
	for i := range data {
		data[i] = byte(i*7 + i/bs)
	}
	if _, err := f.Write(data); err != nil {
		t.Fatal(err)
	}
	fd := int32(f.Fd())

	const readers, perReader, chains, perChain = 3, 400, 2, 300
	var wg sync.WaitGroup
	for g := range readers {
		wg.Add(1)
		go func() {
			defer wg.Done()
			buf := make([]byte, bs)
			for i := range perReader {
				if i%20 == 19 {
					// A pause now and then lets the ring go idle and the
					// poller park, so that the next call takes the role even
					// while the others keep the ring busy (they yield rather
					// than park on a busy ring).
					time.Sleep(200 * time.Microsecond)
				}
				b := (g*31 + i*17) % blocks
				var s sqe.SQE
				s.PrepRead(fd, buf, uint64(b*bs))
				res, _, err := p.Do(context.Background(), &s, unsafe.Pointer(&buf[0]))
				if err != nil || res != bs || !bytes.Equal(buf, data[b*bs:(b+1)*bs]) {
					t.Errorf("reader %d read %d (block %d): res %d err %v, bytes match %v", g, i, b, res, err, bytes.Equal(buf, data[b*bs:(b+1)*bs]))
					return
				}
			}
		}()
	}
	// Calls whose ctx can end, half of them canceled at once: they take
	// the ordinary path, against the inline reapers.
	wg.Add(1)
	go func() {
		defer wg.Done()
		for i := range perReader {
			ctx, cancel := context.WithCancel(context.Background())
			if i%2 == 0 {
				cancel()
			}
			var s sqe.SQE
			s.PrepNop()
			res, _, err := p.Do(ctx, &s, nil)
			cancel()
			if err == nil && res != 0 || err != nil && !errors.Is(err, context.Canceled) {
				t.Errorf("cancelable NOP %d: res %d err %v", i, res, err)
				return
			}
		}
	}()
	var fired, submitted atomic.Int64
	var chainWG sync.WaitGroup
	var nop sqe.SQE
	nop.PrepNop()
	for range chains {
		chainWG.Add(1)
		left := perChain
		var cb func(int32, uint32)
		cb = func(res int32, _ uint32) {
			fired.Add(1)
			if res != 0 {
				t.Errorf("chained NOP res %d", res)
			}
			if left--; left == 0 {
				chainWG.Done()
				return
			}
			submitted.Add(1)
			if err := p.Submit(&nop, cb); err != nil {
				t.Errorf("resubmit: %v", err)
				chainWG.Done()
			}
		}
		submitted.Add(1)
		if err := p.Submit(&nop, cb); err != nil {
			t.Fatal(err)
		}
	}
	wg.Wait()
	chainWG.Wait()
	if fired.Load() != submitted.Load() || fired.Load() != chains*perChain {
		t.Errorf("callbacks fired %d for %d submitted, want %d", fired.Load(), submitted.Load(), chains*perChain)
	}
	waitFor(t, "nothing pending", func() bool { return p.pending.Load() == 0 })
	st := p.Stats()
	if st.Stale != 0 {
		t.Errorf("%d stale completions", st.Stale)
	}
	if st.Inline == 0 {
		t.Errorf("no call reaped inline in %d shallow calls (Stats %+v)", readers*perReader, st)
	}
	t.Logf("Stats %+v", st)
}

// A request published while the inline reaper is on its way out (after
// its last look at what is pending, before the state is parked again)
// was submitted directly on seeing pollerLent: the reaper's re-check after
// the store must give the role back to the poller for it.
func TestInlineExitRace(t *testing.T) {
	p := newPoller(t, Config{Entries: 8})
	settle(t, p)
	late := make(chan int32, 1)
	armed := true
	inlineExitHook = func() {
		if !armed {
			return
		}
		armed = false
		go func() {
			ctx, cancel := context.WithCancel(context.Background())
			defer cancel()
			late <- cancelableNop(ctx, t, p)
		}()
		// Submitted directly, its completion waiting for a reaper (or
		// taken by the late caller itself while it yielded).
		waitFor(t, "the late NOP submitted", func() bool {
			return (p.pending.Load() == 1 && p.ring.SQPending() == 0) || len(late) == 1
		})
	}
	t.Cleanup(func() { inlineExitHook = nil })
	nop(t, p) // reaps inline, and on its way out meets the late NOP
	if armed {
		t.Fatal("the first NOP did not reap inline")
	}
	if res := await(t, late, "the NOP published as the inline reaper left"); res != 0 {
		t.Errorf("late NOP res %d", res)
	}
}
