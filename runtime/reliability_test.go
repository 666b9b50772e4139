package runtime_test

// Issue 6, "faults survived" and "bad input": each test drives the runtime
// into one fault and checks the guarantee docs/reliability.md states for it.

import (
	"context"
	"errors"
	"fmt"
	"math"
	"math/rand/v2"
	"os"
	"os/exec"
	"os/signal"
	"path/filepath"
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
	ringwake "github.com/ringwake/ringwake/runtime"
	"github.com/ringwake/ringwake/sqe"
)

// relNewRing is newRing without the cleanup's Close: the fault tests close
// the ring themselves, at the moment the fault needs.
func relNewRing(t *testing.T, cfg ringwake.Config) *ringwake.Ring {
	t.Helper()
	uringtest.Require(t)
	r, err := ringwake.New(cfg)
	if err != nil {
		t.Fatalf("New(%+v): %v", cfg, err)
	}
	t.Cleanup(func() { r.Close() })
	return r
}

// relPipe is a blocking pipe whose descriptors the test closes itself
// (rawPipe's cleanup would close the numbers again, possibly after reuse).
func relPipe(t *testing.T) (rd, wr int) {
	t.Helper()
	var fds [2]int
	if err := unix.Pipe2(fds[:], unix.O_CLOEXEC); err != nil {
		t.Fatalf("pipe2: %v", err)
	}
	return fds[0], fds[1]
}

// TestCloseRacesFullRingAndInFlight: 16,384 requests in flight fill every
// slot (10,000 or more is what the issue asks), callers of every blocking
// kind sleep for a slot, and more callers keep arriving while Close runs.
// Every callback fires exactly once, every blocked call returns an error
// wrapping ErrClosed, and no goroutine is left behind.
func TestCloseRacesFullRingAndInFlight(t *testing.T) {
	uringtest.Require(t)
	leaksBefore := goleak.IgnoreCurrent()
	// NoCacheFastPath: File.ReadAt of cached data would not need a slot.
	r, err := ringwake.New(ringwake.Config{Entries: 16384, NoCacheFastPath: true})
	if err != nil {
		t.Fatal(err)
	}
	t.Cleanup(func() { r.Close() })
	capacity := r.Capacity()
	if capacity < 10000 {
		t.Fatalf("Capacity %d, want at least 10,000 for this test", capacity)
	}
	pr, pw := relPipe(t)
	defer unix.Close(pr)
	defer unix.Close(pw)

	dir := t.TempDir()
	f, err := r.Open(filepath.Join(dir, "blocked"), os.O_RDWR|os.O_CREATE, 0o644)
	if err != nil {
		t.Fatal(err)
	}
	rawF, err := os.Create(filepath.Join(dir, "raw"))
	if err != nil {
		t.Fatal(err)
	}
	defer rawF.Close()
	rawFd := int(rawF.Fd())

	// The files are opened first, since Open needs a slot. Then every slot
	// holds a read of an empty pipe, which only Close can end.
	calls := make([]atomic.Int32, capacity)
	results := make([]atomic.Int32, capacity)
	bufs := make([]byte, capacity)
	var s sqe.SQE
	for i := range capacity {
		s.PrepRead(int32(pr), bufs[i:i+1], 0)
		if err := r.Submit(&s, func(res int32, _ uint32) {
			results[i].Store(res)
			calls[i].Add(1)
		}); err != nil {
			t.Fatalf("Submit %d: %v", i, err)
		}
	}

	type blocked struct {
		name string
		call func() error
	}
	var cbFired atomic.Int64
	kinds := []blocked{
		{"Nop", func() error { return r.Nop(context.Background()) }},
		{"ReadAt", func() error { _, err := r.ReadAt(context.Background(), rawFd, make([]byte, 8), 0); return err }},
		{"WriteAt", func() error { _, err := r.WriteAt(context.Background(), rawFd, []byte("x"), 0); return err }},
		{"Fsync", func() error { return r.Fsync(context.Background(), rawFd, true) }},
		{"ReadAtTimeout", func() error {
			_, err := r.ReadAtTimeout(context.Background(), rawFd, make([]byte, 8), 0, time.Minute)
			return err
		}},
		{"Submit", func() error {
			var s sqe.SQE
			s.PrepNop()
			return r.Submit(&s, func(int32, uint32) { cbFired.Add(1) })
		}},
		{"SubmitBatch", func() error {
			ss := make([]sqe.SQE, 2)
			ss[0].PrepNop()
			ss[1].PrepNop()
			cb := func(int32, uint32) { cbFired.Add(1) }
			return r.SubmitBatch(ss, []func(int32, uint32){cb, cb})
		}},
		{"File.WriteAt", func() error { _, err := f.WriteAt([]byte("y"), 0); return err }},
		{"File.ReadAt", func() error { _, err := f.ReadAt(make([]byte, 1), 0); return err }},
		{"File.Sync", f.Sync},
		{"File.Write", func() error { _, err := f.Write([]byte("z")); return err }},
	}
	const perKind = 6
	var wg sync.WaitGroup
	errs := make([]error, len(kinds)*perKind)
	for i := range errs {
		wg.Add(1)
		go func() {
			defer wg.Done()
			errs[i] = kinds[i%len(kinds)].call()
		}()
	}
	// Only one File.Sync per generation sleeps for a slot (group commit), and
	// SubmitBatch and File.Write callers queue one at a time behind a mutex.
	// The fsync that starts a burst of Syncs needs no slot (it runs on its
	// caller's goroutine), so the Syncs may have no sleeper at all.
	want := uint64(len(errs) - 3*(perKind-1) - 1)
	waitFor(t, "the blocking callers to sleep for a slot", func() bool { return r.Stats().Backlogged >= want })

	// Late arrivals race the Close: each is refused with ErrClosed, or its
	// request is accepted and then its callback fires exactly once.
	const racers = 8
	var accepted atomic.Int64
	var racerFired atomic.Int64
	racerErr := make(chan error, racers)
	start := make(chan struct{})
	var rwg sync.WaitGroup
	for g := range racers {
		rwg.Add(1)
		go func() {
			defer rwg.Done()
			<-start
			for {
				var err error
				if g%2 == 0 {
					var s sqe.SQE
					s.PrepNop()
					if err = r.Submit(&s, func(int32, uint32) { racerFired.Add(1) }); err == nil {
						accepted.Add(1)
					}
				} else {
					err = r.Nop(context.Background())
				}
				if err != nil {
					racerErr <- err
					return
				}
			}
		}()
	}
	close(start)
	runtime.Gosched()
	within(t, "Close with a full ring, a backlog and racing submitters", func() {
		if err := r.Close(); err != nil {
			t.Errorf("Close: %v", err)
		}
	})
	within(t, "the blocked callers after Close", wg.Wait)
	within(t, "the racing submitters after Close", rwg.Wait)

	for i := range calls {
		if n := calls[i].Load(); n != 1 {
			t.Fatalf("in-flight callback %d fired %d times, want exactly once", i, n)
		}
		if res := results[i].Load(); res != -int32(syscall.ECANCELED) {
			t.Fatalf("in-flight pipe read %d: res %d, want -ECANCELED", i, res)
		}
	}
	for i, err := range errs {
		if err == nil && kinds[i%len(kinds)].name == "File.Sync" {
			continue // its fsync ran on its own goroutine: durable, no slot needed
		}
		if !errors.Is(err, ringwake.ErrClosed) {
			t.Errorf("blocked %s (#%d): %v, want an error wrapping ErrClosed", kinds[i%len(kinds)].name, i, err)
		}
	}
	if n := cbFired.Load(); n != 0 {
		t.Errorf("%d callbacks fired for Submits that were refused at Close", n)
	}
	close(racerErr)
	for err := range racerErr {
		if !errors.Is(err, ringwake.ErrClosed) {
			t.Errorf("racing submitter: %v, want ErrClosed", err)
		}
	}
	if a, fired := accepted.Load(), racerFired.Load(); a != fired {
		t.Errorf("racing submitters: %d Submits accepted, %d callbacks fired", a, fired)
	}
	if err := f.Close(); err != nil {
		t.Errorf("File.Close after the ring closed: %v", err)
	}
	// The poller and every caller are gone, not merely returned.
	goleak.VerifyNone(t, leaksBefore)
}

// TestCQOverflowTinyCQ: a ring whose CQ holds 4 completions gets bursts of
// 100 times that. Every completion is delivered exactly once.
func TestCQOverflowTinyCQ(t *testing.T) {
	r := newRing(t, ringwake.Config{Entries: 4, CQEntries: 4})
	if c := r.Capacity(); c != 4 {
		t.Fatalf("Capacity = %d, want 4", c)
	}
	before := r.Stats()

	// Multishot timeouts post completions while the poller sits in slow
	// callbacks. The kernel never overflows a multishot's intermediate
	// completion: with the CQ full it ends the request early with its final
	// one. Resubmitting what is left, each chain must total exactly 100
	// shots: a lost completion stalls a chain, a duplicate overshoots.
	t.Run("multishot", func(t *testing.T) {
		defer relLogOverflows(t, r)()
		overflowsBefore := r.Stats().Overflows
		const chains, shots = 4, 100 // 400 completions, 100x the CQ
		ts := &unix.Timespec{Nsec: 20_000}
		var mu sync.Mutex
		got := make([]int, chains)
		finals := make([]int, chains)
		var after atomic.Int64
		done := make(chan int, chains)
		var submit func(c int, count uint32)
		submit = func(c int, count uint32) {
			var s sqe.SQE
			s.PrepTimeout(ts, count, sqe.TimeoutMultishot)
			var fin atomic.Bool
			if err := r.Submit(&s, func(res int32, flags uint32) {
				if fin.Load() {
					after.Add(1)
					return
				}
				if res != -int32(syscall.ETIME) {
					t.Errorf("chain %d: shot res %d, want -ETIME", c, res)
				}
				mu.Lock()
				got[c]++
				n := got[c]
				mu.Unlock()
				if n%8 == 0 {
					// Slow the poller so the timers outrun it and the CQ fills.
					time.Sleep(300 * time.Microsecond)
				}
				if flags&sqe.CQEFMore != 0 {
					return
				}
				fin.Store(true)
				mu.Lock()
				finals[c]++
				mu.Unlock()
				switch {
				case n < shots:
					submit(c, uint32(shots-n))
				case n == shots:
					done <- c
				default:
					t.Errorf("chain %d: %d shots delivered, %d asked for", c, n, shots)
					done <- c
				}
			}); err != nil {
				t.Errorf("chain %d: Submit: %v", c, err)
				done <- c
			}
		}
		for c := range chains {
			submit(c, shots)
		}
		within(t, "every multishot chain to deliver its shots", func() {
			for range chains {
				<-done
			}
		})
		// One more round trip: anything delivered twice would show by now.
		if err := r.Nop(context.Background()); err != nil {
			t.Fatal(err)
		}
		runtime.KeepAlive(ts)
		mu.Lock()
		defer mu.Unlock()
		for c := range chains {
			if got[c] != shots {
				t.Errorf("chain %d: %d shots delivered, want exactly %d", c, got[c], shots)
			}
		}
		if n := after.Load(); n != 0 {
			t.Errorf("%d completions delivered after their request's final one", n)
		}
		t.Logf("final completions per chain: %v (more than 1: ended early by a full CQ and resubmitted)", finals)
		// Each early end posts its final completion with the CQ full, onto the
		// kernel's overflow list, which the poller must flush. The portable
		// engine has no such list.
		if r.Backend() == ringwake.BackendIOUring && r.Stats().Overflows == overflowsBefore {
			t.Errorf("the CQ never overflowed (final completions per chain %v): the test did not exercise the overflow path", finals)
		}
	})

	// Blocking reads with a kernel timeout post two completions per slot (the
	// read and its LINK_TIMEOUT, which takes none), so 4 slots can post up to
	// 8 completions at once into a CQ of 4, while slow callbacks keep the
	// poller from reaping. Whether the CQ overflows here depends on timing, so
	// only exactly-once delivery is asserted.
	t.Run("burst", func(t *testing.T) {
		defer relLogOverflows(t, r)()
		const readers, perReader = 16, 25
		const submitters, perSubmitter = 8, 50
		content := pattern(61, 4096)
		fd := openRead(t, dataFile(t, content))
		fired := make([]atomic.Int32, submitters*perSubmitter)
		var wg sync.WaitGroup
		for g := range readers {
			wg.Add(1)
			go func() {
				defer wg.Done()
				buf := make([]byte, 512)
				for i := range perReader {
					off := int64((g*perReader + i) % 8 * 512)
					n, err := r.ReadAtTimeout(context.Background(), fd, buf, off, time.Minute)
					if err != nil || n != len(buf) {
						t.Errorf("reader %d: ReadAtTimeout = %d, %v", g, n, err)
						return
					}
					if crc(buf) != crc(content[off:off+512]) {
						t.Errorf("reader %d: read %d returned the wrong bytes", g, i)
						return
					}
				}
			}()
		}
		for g := range submitters {
			wg.Add(1)
			go func() {
				defer wg.Done()
				for i := range perSubmitter {
					k := g*perSubmitter + i
					var s sqe.SQE
					s.PrepNop()
					if err := r.Submit(&s, func(res int32, _ uint32) {
						if res != 0 {
							t.Errorf("NOP %d: res %d", k, res)
						}
						if k%4 == 0 {
							time.Sleep(200 * time.Microsecond)
						}
						fired[k].Add(1)
					}); err != nil {
						t.Errorf("Submit %d: %v", k, err)
					}
				}
			}()
		}
		within(t, "the burst", wg.Wait)
		waitFor(t, "every NOP callback", func() bool {
			for i := range fired {
				if fired[i].Load() == 0 {
					return false
				}
			}
			return true
		})
		if err := r.Nop(context.Background()); err != nil {
			t.Fatal(err)
		}
		for i := range fired {
			if n := fired[i].Load(); n != 1 {
				t.Errorf("NOP %d: callback fired %d times, want exactly once", i, n)
			}
		}
	})

	st := r.Stats()
	t.Logf("overflow flushes %d, stale %d, completed %d, enters %d", st.Overflows-before.Overflows, st.Stale-before.Stale, st.Completed-before.Completed, st.Enters-before.Enters)
	if st.Stale != before.Stale {
		t.Errorf("%d completions were dropped as stale: every one here belongs to a live request", st.Stale-before.Stale)
	}
}

// Child processes re-executed by TestCallbackPanicDefaultCrashes.
const (
	relPanicChildEnv = "RINGWAKE_RELIABILITY_PANIC_CHILD"
	relPanicValue    = "reliability-test-boom"
)

// TestCallbackPanicDefaultCrashes: with no OnCallbackPanic, a panicking
// callback must crash the program (as an unrecovered panic would), naming
// the panic, rather than be swallowed. The test re-executes itself: the
// child submits the callback, the parent checks that the child died of it.
func TestCallbackPanicDefaultCrashes(t *testing.T) {
	if os.Getenv(relPanicChildEnv) == "1" {
		relPanicChild(t)
		return
	}
	uringtest.Require(t)
	ctx, cancel := context.WithTimeout(context.Background(), 2*time.Minute)
	defer cancel()
	cmd := exec.CommandContext(ctx, os.Args[0], "-test.run=^TestCallbackPanicDefaultCrashes$", "-test.count=1", "-test.v")
	cmd.Env = append(os.Environ(), relPanicChildEnv+"=1")
	out, err := cmd.CombinedOutput()
	var ee *exec.ExitError
	if !errors.As(err, &ee) {
		t.Fatalf("child: %v, want it to die of the panic; output:\n%s", err, out)
	}
	if code := ee.ExitCode(); code != 2 {
		t.Errorf("child exit code %d, want 2 (an unrecovered panic)", code)
	}
	msg := "panic: ringwake: panic in a Submit callback: " + relPanicValue
	if !strings.Contains(string(out), msg) {
		t.Errorf("child output lacks %q:\n%s", msg, out)
	}
	if strings.Contains(string(out), "child still alive") {
		t.Errorf("the child outlived the panic:\n%s", out)
	}
}

func relPanicChild(t *testing.T) {
	r, err := ringwake.New(ringwake.Config{Entries: 4})
	if err != nil {
		t.Fatalf("child: New: %v", err)
	}
	var s sqe.SQE
	s.PrepNop()
	if err := r.Submit(&s, func(int32, uint32) { panic(relPanicValue) }); err != nil {
		t.Fatalf("child: Submit: %v", err)
	}
	// The crash comes from another goroutine; keep the ring busy meanwhile.
	deadline := time.Now().Add(30 * time.Second)
	for time.Now().Before(deadline) {
		if err := r.Nop(context.Background()); err != nil {
			t.Fatalf("child: Nop: %v", err)
		}
		time.Sleep(time.Millisecond)
	}
	t.Fatal("child still alive 30 s after a callback panicked with no OnCallbackPanic")
}

// TestCallbackPanicHookKeepsServing: with OnCallbackPanic set, a third of
// the callbacks panic while blocking callers and other callbacks run on the
// same ring. Each panic is reported once, every other callback fires once,
// every blocking call succeeds.
func TestCallbackPanicHookKeepsServing(t *testing.T) {
	const submitters, perSubmitter = 8, 150
	const total = submitters * perSubmitter
	reported := make([]atomic.Int32, total)
	var bogus atomic.Int32
	r := newRing(t, ringwake.Config{Entries: 8, OnCallbackPanic: func(v any) {
		var k int
		if _, err := fmt.Sscanf(fmt.Sprint(v), "panic %d", &k); err != nil || k < 0 || k >= total {
			bogus.Add(1)
			return
		}
		reported[k].Add(1)
	}})
	content := pattern(62, 2048)
	fd := openRead(t, dataFile(t, content))
	fired := make([]atomic.Int32, total)
	var wg sync.WaitGroup
	wg.Add(total)
	for g := range submitters {
		go func() {
			for i := range perSubmitter {
				k := g*perSubmitter + i
				var s sqe.SQE
				s.PrepNop()
				if err := r.Submit(&s, func(int32, uint32) {
					defer wg.Done()
					fired[k].Add(1)
					if k%3 == 0 {
						panic(fmt.Sprintf("panic %d", k))
					}
				}); err != nil {
					t.Errorf("Submit %d: %v", k, err)
					wg.Done()
				}
			}
		}()
	}
	var bwg sync.WaitGroup
	for g := range 4 {
		bwg.Add(1)
		go func() {
			defer bwg.Done()
			buf := make([]byte, len(content))
			for range 50 {
				if n, err := r.ReadAt(context.Background(), fd, buf, 0); err != nil || n != len(buf) || crc(buf) != crc(content) {
					t.Errorf("blocking reader %d: ReadAt = %d, %v", g, n, err)
					return
				}
			}
		}()
	}
	within(t, "callbacks and blocking callers beside panicking callbacks", func() {
		wg.Wait()
		bwg.Wait()
	})
	for k := range total {
		if n := fired[k].Load(); n != 1 {
			t.Errorf("callback %d fired %d times", k, n)
		}
		want := int32(0)
		if k%3 == 0 {
			want = 1
		}
		if n := reported[k].Load(); n != want {
			t.Errorf("callback %d: panic reported %d times, want %d", k, n, want)
		}
	}
	if n := bogus.Load(); n != 0 {
		t.Errorf("OnCallbackPanic got %d values that no callback raised", n)
	}
}

// TestSlowCallbackDelaysNoneLost: a callback that blocks for 100 ms is
// misuse (docs/reliability.md): it holds up every completion of the ring,
// since the poller runs it, but loses none. Requests submitted while it
// blocks complete only after it returns, and all of them complete.
func TestSlowCallbackDelaysNoneLost(t *testing.T) {
	const callers, perCaller = 16, 20
	r := newRing(t, ringwake.Config{Entries: 16})
	for round := range 2 {
		entered := make(chan struct{})
		var slowDone atomic.Bool
		var s sqe.SQE
		s.PrepNop()
		if err := r.Submit(&s, func(int32, uint32) {
			close(entered)
			time.Sleep(100 * time.Millisecond)
			slowDone.Store(true)
		}); err != nil {
			t.Fatal(err)
		}
		<-entered
		var early atomic.Int32
		fired := make([]atomic.Int32, callers*perCaller)
		var wg sync.WaitGroup
		for g := range callers {
			wg.Add(1)
			go func() {
				defer wg.Done()
				for i := range perCaller {
					k := g*perCaller + i
					if g%2 == 0 {
						if err := r.Nop(context.Background()); err != nil {
							t.Errorf("Nop: %v", err)
							return
						}
						if !slowDone.Load() {
							early.Add(1)
						}
						continue
					}
					var s sqe.SQE
					s.PrepNop()
					wg.Add(1)
					if err := r.Submit(&s, func(int32, uint32) {
						defer wg.Done()
						if !slowDone.Load() {
							early.Add(1)
						}
						fired[k].Add(1)
					}); err != nil {
						wg.Done()
						t.Errorf("Submit: %v", err)
						return
					}
				}
			}()
		}
		within(t, "every request submitted during the slow callback", wg.Wait)
		if n := early.Load(); n != 0 {
			t.Errorf("round %d: %d completions delivered while the slow callback still ran on the poller", round, n)
		}
		for g := 1; g < callers; g += 2 {
			for i := range perCaller {
				if n := fired[g*perCaller+i].Load(); n != 1 {
					t.Errorf("round %d: callback %d/%d fired %d times", round, g, i, n)
				}
			}
		}
	}
}

// TestSignalStormsNoEINTR: SIGURG and SIGUSR1 are sent to the process as
// fast as two goroutines can while 64 goroutines read, write and sync through
// the ring. io_uring_enter's EINTR must never surface.
func TestSignalStormsNoEINTR(t *testing.T) {
	const workers, ops, block = 64, 16, 4096
	r := newRing(t, ringwake.Config{Entries: 32})
	usr1 := make(chan os.Signal, 64)
	signal.Notify(usr1, syscall.SIGUSR1)
	defer signal.Stop(usr1)

	name := filepath.Join(t.TempDir(), "storm")
	f, err := r.Open(name, os.O_RDWR|os.O_CREATE, 0o644)
	if err != nil {
		t.Fatal(err)
	}
	defer f.Close()
	raw, err := os.OpenFile(name, os.O_RDWR, 0)
	if err != nil {
		t.Fatal(err)
	}
	defer raw.Close()
	fd := int(raw.Fd())
	pr, pw := rawPipe(t)

	stop := make(chan struct{})
	var sent atomic.Int64
	var swg sync.WaitGroup
	for _, sig := range []syscall.Signal{syscall.SIGURG, syscall.SIGUSR1} {
		swg.Add(1)
		go func() {
			defer swg.Done()
			pid := os.Getpid()
			for {
				select {
				case <-stop:
					return
				default:
				}
				if err := syscall.Kill(pid, sig); err != nil {
					t.Errorf("kill %v: %v", sig, err)
					return
				}
				sent.Add(1)
			}
		}()
	}
	swg.Add(1)
	go func() {
		defer swg.Done()
		for {
			select {
			case <-stop:
				return
			case <-usr1:
			}
		}
	}()

	// A pipe reader keeps the poller asleep in io_uring_enter, where the
	// signals land, between bursts of file I/O.
	var pipeErr error
	pipeDone := make(chan struct{})
	go func() {
		defer close(pipeDone)
		b := make([]byte, 1)
		for i := range ops {
			if n, err := r.ReadAt(context.Background(), pr, b, 0); err != nil || n != 1 || b[0] != byte(i) {
				pipeErr = fmt.Errorf("pipe read %d = %d, %v, %d", i, n, err, b[0])
				return
			}
		}
	}()

	var wg sync.WaitGroup
	for w := range workers {
		wg.Add(1)
		go func() {
			defer wg.Done()
			ctx := context.Background()
			off := int64(w) * block
			buf := make([]byte, block)
			for i := range ops {
				data := pattern(uint32(w*ops+i), block)
				var err error
				switch i % 4 {
				case 0:
					if w%2 == 0 {
						err = writeFullAt(ctx, r, fd, data, off)
					} else {
						err = callbackWrite(r, fd, data, off)
					}
				case 1:
					_, err = f.WriteAt(data, off)
				case 2:
					err = writeFullAt(ctx, r, fd, data, off)
					if err == nil {
						err = r.Fsync(ctx, fd, w%2 == 0)
					}
				case 3:
					_, err = f.WriteAt(data, off)
					if err == nil {
						err = f.Sync()
					}
				}
				if err != nil {
					t.Errorf("worker %d op %d: %v", w, i, err)
					return
				}
				if i%2 == 0 {
					err = readFullAt(ctx, r, fd, buf, off)
				} else {
					_, err = f.ReadAt(buf, off)
				}
				if err != nil {
					t.Errorf("worker %d read %d: %v", w, i, err)
					return
				}
				if crc(buf) != crc(data) {
					t.Errorf("worker %d read %d: block differs from what it wrote", w, i)
					return
				}
			}
		}()
	}
	for i := range ops {
		if _, err := unix.Write(pw, []byte{byte(i)}); err != nil {
			t.Fatal(err)
		}
		time.Sleep(time.Millisecond)
	}
	within(t, "the workers under a signal storm", wg.Wait)
	<-pipeDone
	close(stop)
	swg.Wait()
	if pipeErr != nil {
		t.Error(pipeErr)
	}
	t.Logf("%d signals sent during %d ring operations, %d of them submitted again after the kernel canceled them on its own", sent.Load(), r.Stats().Completed, r.Stats().Retried)
	if sent.Load() == 0 {
		t.Error("no signal was sent: the storm did not happen")
	}
}

// callbackWrite writes data at off through a Submit callback and waits for
// it: a callback's request the kernel cancels on its own must come back with
// its real result too, never ECANCELED.
func callbackWrite(r *ringwake.Ring, fd int, data []byte, off int64) error {
	var s sqe.SQE
	s.PrepWrite(int32(fd), data, uint64(off))
	got := make(chan int32, 1)
	if err := r.Submit(&s, func(res int32, _ uint32) { got <- res }); err != nil {
		return err
	}
	switch res := <-got; {
	case res < 0:
		return fmt.Errorf("callback write: %w", syscall.Errno(-res))
	case int(res) != len(data):
		return fmt.Errorf("callback write: %d of %d bytes", res, len(data))
	}
	return nil
}

// TestSyncSurvivesKernelCancel: a group-commit fsync through the ring that
// the kernel cancels on its own (as under a signal storm, once the poller's
// retries are spent) never ran; the Syncs it would have answered still
// succeed, with the fsync made directly, and later Syncs are unaffected.
func TestSyncSurvivesKernelCancel(t *testing.T) {
	const syncers, rounds = 8, 40
	r := newRing(t, ringwake.Config{Entries: 32})
	f, err := r.Open(filepath.Join(t.TempDir(), "synced"), os.O_RDWR|os.O_CREATE, 0o644)
	if err != nil {
		t.Fatal(err)
	}
	defer f.Close()
	ringwake.CancelNextRingFsync(f)
	// Only a Sync arriving while another's fsync runs makes the next fsync
	// go through the ring: bursts of concurrent Syncs until one has.
	for attempt := 0; ; attempt++ {
		if attempt == 50 {
			t.Fatal("no fsync went through the ring in 50 bursts of concurrent Syncs")
		}
		var wg sync.WaitGroup
		for g := range syncers {
			wg.Add(1)
			go func() {
				defer wg.Done()
				for i := range rounds {
					if _, err := f.WriteAt([]byte{byte(g), byte(i)}, int64(g)*2); err != nil {
						t.Errorf("syncer %d write %d: %v", g, i, err)
						return
					}
					if err := f.Sync(); err != nil {
						t.Errorf("syncer %d sync %d: %v", g, i, err)
						return
					}
				}
			}()
		}
		within(t, "concurrent Syncs", wg.Wait)
		if t.Failed() || ringwake.RingFsyncCanceled(f) {
			break
		}
	}
	if err := f.Sync(); err != nil {
		t.Fatalf("Sync after the canceled fsync: %v", err)
	}
}

// TestFdClosedMidFlight: another goroutine closes descriptors with
// close(2), behind the runtime's back, while reads on them are in flight or
// being submitted. Each read gives EBADF or a complete, correct read; reads
// on the descriptors nobody closes keep returning correct data.
func TestFdClosedMidFlight(t *testing.T) {
	const victims, controls, block = 16, 8, 8192
	r := newRing(t, ringwake.Config{Entries: 32})
	content := pattern(63, 64*block)
	name := dataFile(t, content)
	// Every descriptor exists before the closing starts and none is opened
	// during it, so a closed number is never reused by this test while a
	// stale read could still reach it.
	open := func() int {
		fd, err := unix.Open(name, unix.O_RDONLY|unix.O_CLOEXEC, 0)
		if err != nil {
			t.Fatal(err)
		}
		return fd
	}
	victimFds := make([]int, victims)
	for i := range victimFds {
		victimFds[i] = open()
	}
	controlFds := make([]int, controls)
	for i := range controlFds {
		controlFds[i] = open()
	}
	defer func() {
		for _, fd := range controlFds {
			unix.Close(fd)
		}
	}()
	// Pipe reads stay in flight until data comes: their read end is closed
	// under them too.
	type pipe struct{ rd, wr int }
	pipes := make([]pipe, 4)
	for i := range pipes {
		pipes[i].rd, pipes[i].wr = relPipe(t)
	}

	var ebadf, complete, pipeReads atomic.Int64
	var wg sync.WaitGroup
	stop := make(chan struct{})
	reader := func(fd int, victim bool, seed uint64) {
		defer wg.Done()
		rng := rand.New(rand.NewPCG(seed, 6))
		buf := make([]byte, block)
		for {
			select {
			case <-stop:
				return
			default:
			}
			off := int64(rng.IntN(64)) * block
			for i := range buf {
				buf[i] = 0xEE
			}
			n, err := r.ReadAt(context.Background(), fd, buf, off)
			switch {
			case err == nil:
				if n != block || crc(buf) != crc(content[off:off+block]) {
					t.Errorf("fd %d (victim %v): read at %d = %d bytes, wrong content", fd, victim, off, n)
					return
				}
				complete.Add(1)
			case victim && errors.Is(err, syscall.EBADF):
				ebadf.Add(1)
				for i, b := range buf {
					if b != 0xEE {
						t.Errorf("fd %d: EBADF read wrote byte %d of its buffer", fd, i)
						break
					}
				}
				return // the number is free now: never use it again
			default:
				t.Errorf("fd %d (victim %v): ReadAt: %v", fd, victim, err)
				return
			}
		}
	}
	for i, fd := range victimFds {
		wg.Add(1)
		go reader(fd, true, uint64(i))
	}
	for i, fd := range controlFds {
		wg.Add(1)
		go reader(fd, false, uint64(100+i))
	}
	var pwg sync.WaitGroup
	for i, p := range pipes {
		pwg.Add(1)
		go func() {
			defer pwg.Done()
			b := []byte{0xEE}
			n, err := r.ReadAt(context.Background(), p.rd, b, 0)
			switch {
			case err == nil && n == 1 && b[0] == byte(i+1):
				pipeReads.Add(1)
			case errors.Is(err, syscall.EBADF) && b[0] == 0xEE:
				ebadf.Add(1)
			default:
				t.Errorf("pipe %d: read = %d, %v, byte %#x", i, n, err, b[0])
			}
		}()
	}
	waitFor(t, "reads in flight", func() bool { return complete.Load() > 100 })
	for i, fd := range victimFds {
		if err := unix.Close(fd); err != nil {
			t.Errorf("close victim %d: %v", i, err)
		}
		runtime.Gosched()
	}
	for _, p := range pipes {
		if err := unix.Close(p.rd); err != nil {
			t.Errorf("close pipe read end: %v", err)
		}
	}
	// Data for the pipe reads that were in flight, holding the file open;
	// a read submitted after the close got EBADF and the write then fails
	// with EPIPE, which is fine.
	for i, p := range pipes {
		unix.Write(p.wr, []byte{byte(i + 1)})
	}
	within(t, "the pipe reads", pwg.Wait)
	for _, p := range pipes {
		unix.Close(p.wr)
	}
	// The controls go on a little after the last close, then stop.
	c := complete.Load()
	waitFor(t, "reads after the closes", func() bool { return complete.Load() > c+200 })
	close(stop)
	within(t, "the readers", wg.Wait)
	t.Logf("complete reads %d, EBADF %d, pipe reads completed %d", complete.Load(), ebadf.Load(), pipeReads.Load())
	if ebadf.Load() == 0 {
		t.Error("no read saw EBADF: the victims were never read after their close")
	}
	if err := r.Nop(context.Background()); err != nil {
		t.Fatalf("Nop after the closes: %v", err)
	}
}

// TestDiskFull: on a 1 MiB tmpfs, File.Write and WriteAt (File's and the
// Ring's) fail with ENOSPC once it is full, and once a file is deleted the
// same ring writes, syncs and reads back a new file.
func TestDiskFull(t *testing.T) {
	uringtest.Require(t)
	if os.Geteuid() != 0 {
		if uringtest.InCI() {
			t.Fatal("the disk-full test needs root to mount a tmpfs, and CI must run it")
		}
		t.Skip("not root: cannot mount the 1 MiB tmpfs this test fills (it runs in CI as root)")
	}
	dir := filepath.Join(t.TempDir(), "tiny")
	if err := os.Mkdir(dir, 0o755); err != nil {
		t.Fatal(err)
	}
	if err := unix.Mount("tmpfs", dir, "tmpfs", 0, "size=1m"); err != nil {
		t.Fatalf("mount a 1 MiB tmpfs on %s: %v", dir, err)
	}
	t.Cleanup(func() {
		if err := unix.Unmount(dir, 0); err != nil {
			t.Errorf("unmount %s: %v", dir, err)
			unix.Unmount(dir, unix.MNT_DETACH)
		}
	})
	r := newRing(t, ringwake.Config{Entries: 8})
	chunk := pattern(64, 64<<10)
	const limit = 4 << 20 // far beyond the 1 MiB: a sign ENOSPC never came

	fill := func(name string, write func(f *ringwake.File, off int64) (int, error)) *ringwake.File {
		t.Helper()
		f, err := r.Open(filepath.Join(dir, name), os.O_RDWR|os.O_CREATE, 0o644)
		if err != nil {
			t.Fatalf("Open %s: %v", name, err)
		}
		var off int64
		for {
			n, err := write(f, off)
			off += int64(n)
			if err != nil {
				if !errors.Is(err, syscall.ENOSPC) {
					t.Fatalf("%s: write at %d: %v, want ENOSPC", name, off, err)
				}
				var pe *os.PathError
				if !errors.As(err, &pe) {
					t.Errorf("%s: ENOSPC error %#v is not an *os.PathError", name, err)
				}
				break
			}
			if off > limit {
				t.Fatalf("%s: %d bytes written to a 1 MiB tmpfs without ENOSPC", name, off)
			}
		}
		t.Logf("%s: ENOSPC after %d bytes", name, off)
		return f
	}
	a := fill("a", func(f *ringwake.File, _ int64) (int, error) { return f.Write(chunk) })
	if err := a.Close(); err != nil {
		t.Fatal(err)
	}
	if err := os.Remove(filepath.Join(dir, "a")); err != nil {
		t.Fatal(err)
	}
	b := fill("b", func(f *ringwake.File, off int64) (int, error) { return f.WriteAt(chunk, off) })
	// Full: the Ring's WriteAt to another file fails the same way.
	c, err := os.Create(filepath.Join(dir, "c"))
	if err != nil {
		t.Fatal(err)
	}
	if _, err := r.WriteAt(context.Background(), int(c.Fd()), chunk, 0); !errors.Is(err, syscall.ENOSPC) {
		t.Errorf("Ring.WriteAt on a full tmpfs: %v, want ENOSPC", err)
	}
	c.Close()
	if err := b.Close(); err != nil {
		t.Fatal(err)
	}
	if err := os.Remove(filepath.Join(dir, "b")); err != nil {
		t.Fatal(err)
	}

	// Space is back: the same ring writes and syncs a new file.
	d, err := r.Open(filepath.Join(dir, "d"), os.O_RDWR|os.O_CREATE, 0o644)
	if err != nil {
		t.Fatal(err)
	}
	want := pattern(65, 512<<10)
	if n, err := d.WriteAt(want, 0); err != nil || n != len(want) {
		t.Fatalf("WriteAt after space was freed = %d, %v", n, err)
	}
	if err := d.Sync(); err != nil {
		t.Fatalf("Sync after space was freed: %v", err)
	}
	if err := d.Close(); err != nil {
		t.Fatal(err)
	}
	got, err := os.ReadFile(filepath.Join(dir, "d"))
	if err != nil {
		t.Fatal(err)
	}
	equalBytes(t, "file written after ENOSPC", got, want)
	if err := os.Remove(filepath.Join(dir, "c")); err != nil {
		t.Fatal(err)
	}
}

// TestBadInput: hostile or mistaken arguments each give a clear error (or
// the documented harmless result) and never a panic, and the ring stays
// usable after every one.
func TestBadInput(t *testing.T) {
	r := newRing(t, ringwake.Config{Entries: 8})
	ctx := context.Background()
	dir := t.TempDir()
	content := pattern(66, 3*4096)
	name := dataFile(t, content)
	fd := openRead(t, name)
	dirFd, err := unix.Open(dir, unix.O_RDONLY|unix.O_DIRECTORY|unix.O_CLOEXEC, 0)
	if err != nil {
		t.Fatal(err)
	}
	defer unix.Close(dirFd)
	dirFile, err := r.Open(dir, os.O_RDONLY, 0)
	if err != nil {
		t.Fatalf("Open of a directory: %v", err)
	}
	defer dirFile.Close()

	// O_DIRECT needs buffer, offset and length aligned to the logical block size.
	direct, err := os.OpenFile(filepath.Join(dir, "direct"), os.O_RDWR|os.O_CREATE|syscall.O_DIRECT, 0o644)
	if err != nil {
		t.Fatalf("O_DIRECT open on %s: %v", dir, err)
	}
	defer direct.Close()
	dfd := int(direct.Fd())
	aligned := ringwake.AlignedBuffer(3*4096, 4096)
	if n, err := r.WriteAt(ctx, dfd, aligned[:2*4096], 0); err != nil || n != 2*4096 {
		t.Fatalf("aligned O_DIRECT WriteAt = %d, %v", n, err)
	}
	dirF, err := r.Open(filepath.Join(dir, "direct"), os.O_RDWR|syscall.O_DIRECT, 0)
	if err != nil {
		t.Fatal(err)
	}
	defer dirF.Close()

	// A mapping larger than 2 GiB that costs nothing until touched: readable
	// only, so the kernel cannot store into it.
	const huge = 2<<30 + 4096
	ro, err := unix.Mmap(-1, 0, huge, unix.PROT_READ, unix.MAP_ANON|unix.MAP_PRIVATE|unix.MAP_NORESERVE)
	if err != nil {
		t.Fatalf("map %d bytes: %v", huge, err)
	}
	defer unix.Munmap(ro)
	rw, err := unix.Mmap(-1, 0, huge, unix.PROT_READ|unix.PROT_WRITE, unix.MAP_ANON|unix.MAP_PRIVATE|unix.MAP_NORESERVE)
	if err != nil {
		t.Fatalf("map %d bytes: %v", huge, err)
	}
	defer unix.Munmap(rw)

	// Last of the descriptors: no later open in this test reuses its number.
	gone := closedFd(t)

	var s sqe.SQE
	s.PrepNop()
	var unknown sqe.SQE
	unknown.PrepNop()
	unknown.Opcode = 250
	var unknownFired atomic.Int32

	n0 := func(n int, err error) error {
		if n != 0 {
			return badCount{n, err}
		}
		return err
	}
	for _, tc := range []struct {
		name string
		call func() error
		want error  // errors.Is target; nil: the call must succeed
		text string // the error message must say this
	}{
		{"ReadAt fd -1", func() error { return n0(r.ReadAt(ctx, -1, make([]byte, 8), 0)) }, syscall.EBADF, "fd -1"},
		{"WriteAt fd -1", func() error { return n0(r.WriteAt(ctx, -1, make([]byte, 8), 0)) }, syscall.EBADF, "fd -1"},
		{"Fsync fd -1", func() error { return r.Fsync(ctx, -1, false) }, syscall.EBADF, "fsync"},
		{"ReadAt closed fd", func() error { return n0(r.ReadAt(ctx, gone, make([]byte, 8), 0)) }, syscall.EBADF, "read"},
		{"WriteAt closed fd", func() error { return n0(r.WriteAt(ctx, gone, make([]byte, 8), 0)) }, syscall.EBADF, "write"},
		{"ReadAt directory fd", func() error { return n0(r.ReadAt(ctx, dirFd, make([]byte, 8), 0)) }, syscall.EISDIR, "read"},
		{"File.ReadAt directory", func() error { return n0(dirFile.ReadAt(make([]byte, 8), 0)) }, syscall.EISDIR, dir},
		{"File.Read directory", func() error { return n0(dirFile.Read(make([]byte, 8))) }, syscall.EISDIR, dir},
		{"WriteAt read-only fd", func() error { return n0(r.WriteAt(ctx, fd, make([]byte, 8), 0)) }, syscall.EBADF, "write"},
		{"ReadAt negative offset", func() error { return n0(r.ReadAt(ctx, fd, make([]byte, 8), -1)) }, syscall.EINVAL, "negative offset"},
		{"WriteAt negative offset", func() error { return n0(r.WriteAt(ctx, fd, make([]byte, 8), math.MinInt64)) }, syscall.EINVAL, "negative offset"},
		{"ReadvAt negative offset", func() error { return n0(r.ReadvAt(ctx, fd, [][]byte{make([]byte, 8)}, -4096)) }, syscall.EINVAL, "negative offset"},
		{"ReadAt nil buffer", func() error { return n0(r.ReadAt(ctx, fd, nil, 0)) }, nil, ""},
		{"ReadAt empty buffer", func() error { return n0(r.ReadAt(ctx, fd, []byte{}, 0)) }, nil, ""},
		{"ReadAt huge writable buffer", func() error {
			n, err := r.ReadAt(ctx, fd, rw, 0)
			if err == nil && (n != len(content) || crc(rw[:n]) != crc(content)) {
				return fmt.Errorf("read %d bytes of %d, content ok %v", n, len(content), crc(rw[:n]) == crc(content))
			}
			return err
		}, nil, ""},
		{"ReadAt huge read-only buffer", func() error { return n0(r.ReadAt(ctx, fd, ro, 0)) }, syscall.EFAULT, "read"},
		{"File.ReadAt huge read-only buffer", func() error {
			f, err := r.Open(name, os.O_RDONLY, 0)
			if err != nil {
				return err
			}
			defer f.Close()
			return n0(f.ReadAt(ro, 0))
		}, syscall.EFAULT, name},
		{"O_DIRECT ReadAt unaligned buffer", func() error { return n0(r.ReadAt(ctx, dfd, aligned[1:4097], 0)) }, syscall.EINVAL, "read"},
		{"O_DIRECT ReadAt unaligned offset", func() error { return n0(r.ReadAt(ctx, dfd, aligned[:4096], 1)) }, syscall.EINVAL, "read"},
		{"O_DIRECT ReadAt unaligned length", func() error { return n0(r.ReadAt(ctx, dfd, aligned[:4095], 0)) }, syscall.EINVAL, "read"},
		{"O_DIRECT WriteAt unaligned buffer", func() error { return n0(r.WriteAt(ctx, dfd, aligned[1:4097], 0)) }, syscall.EINVAL, "write"},
		{"O_DIRECT WriteAt unaligned offset", func() error { return n0(r.WriteAt(ctx, dfd, aligned[:4096], 512+1)) }, syscall.EINVAL, "write"},
		{"O_DIRECT WriteAt unaligned length", func() error { return n0(r.WriteAt(ctx, dfd, aligned[:100], 0)) }, syscall.EINVAL, "write"},
		{"O_DIRECT File.WriteAt unaligned buffer", func() error { return n0(dirF.WriteAt(aligned[7:4096+7], 0)) }, syscall.EINVAL, dirF.Name()},
		{"O_DIRECT File.ReadAt unaligned offset", func() error { return n0(dirF.ReadAt(aligned[:4096], 3)) }, syscall.EINVAL, dirF.Name()},
		// A failed call returns n == 0 (io.ReaderAt: 0 <= n <= len(p)), never
		// the kernel's negative result, which would panic a caller's p[:n].
		{"ReadAtTimeout fd -1", func() error { return n0(r.ReadAtTimeout(ctx, -1, make([]byte, 8), 0, time.Minute)) }, syscall.EBADF, "fd -1"},
		{"WriteAtTimeout fd -1", func() error { return n0(r.WriteAtTimeout(ctx, -1, make([]byte, 8), 0, time.Minute)) }, syscall.EBADF, "fd -1"},
		{"ReadvAt fd -1", func() error { return n0(r.ReadvAt(ctx, -1, [][]byte{make([]byte, 8)}, 0)) }, syscall.EBADF, "fd -1"},
		{"WritevAt fd -1", func() error { return n0(r.WritevAt(ctx, -1, [][]byte{make([]byte, 8)}, 0)) }, syscall.EBADF, "fd -1"},
		{"FixedBuffers.ReadAt fd -1", func() error {
			fb, err := r.RegisterBuffers(1, 4096)
			if err != nil {
				return fmt.Errorf("RegisterBuffers: %v", err) // not EBADF: fails the case
			}
			defer fb.Unregister()
			return n0(fb.ReadAt(ctx, -1, 0, fb.Buf(0)[:8], 0))
		}, syscall.EBADF, "fd -1"},
		{"FixedFile.WriteAt read-only", func() error {
			ff, err := r.RegisterFile(fd)
			if err != nil {
				return fmt.Errorf("RegisterFile: %v", err)
			}
			defer ff.Unregister()
			return n0(ff.WriteAt(ctx, make([]byte, 8), 0))
		}, syscall.EBADF, "write"},
		{"ReadvAt more buffers than IOV_MAX", func() error {
			bufs := make([][]byte, 2000)
			for i := range bufs {
				bufs[i] = make([]byte, 1)
			}
			return n0(r.ReadvAt(ctx, fd, bufs, 0))
		}, syscall.EINVAL, "readv"},
		{"ReadvAt no buffers", func() error { return n0(r.ReadvAt(ctx, fd, nil, 0)) }, nil, ""},
		{"Open empty name", func() error { _, err := r.Open("", os.O_RDONLY, 0); return err }, os.ErrNotExist, "open"},
		{"Submit undefined SQE flag", func() error {
			// Refused, or failed by the kernel with -EINVAL: either way an error, never a hang.
			bad := s
			bad.Flags = 0x80
			res := make(chan int32, 1)
			if err := r.Submit(&bad, func(v int32, _ uint32) { res <- v }); err != nil {
				return err
			}
			if v := <-res; v < 0 {
				return syscall.Errno(-v)
			}
			return nil
		}, errAny, ""},
		{"Submit nil SQE", func() error { return r.Submit(nil, func(int32, uint32) {}) }, errAny, "nil SQE"},
		{"Submit nil callback", func() error { return r.Submit(&s, nil) }, errAny, "nil callback"},
		{"Submit unknown opcode 250", func() error {
			return r.Submit(&unknown, func(int32, uint32) { unknownFired.Add(1) })
		}, ringwake.ErrUnsupported, "250"},
		{"SubmitBatch unknown opcode 250", func() error {
			return r.SubmitBatch([]sqe.SQE{unknown}, []func(int32, uint32){func(int32, uint32) { unknownFired.Add(1) }})
		}, ringwake.ErrUnsupported, "250"},
	} {
		t.Run(tc.name, func(t *testing.T) {
			var err error
			func() {
				defer func() {
					if v := recover(); v != nil {
						t.Fatalf("panicked: %v", v)
					}
				}()
				err = tc.call()
			}()
			var bc badCount
			if errors.As(err, &bc) {
				t.Fatalf("returned n = %d with error %v: a failed call must return n == 0 (0 <= n <= len(p), as io.ReaderAt and io.WriterAt promise)", bc.n, bc.err)
			}
			switch {
			case tc.want == nil:
				if err != nil {
					t.Fatalf("error %v, want success", err)
				}
			case tc.want == errAny:
				if err == nil {
					t.Fatal("succeeded, want an error")
				}
			case !errors.Is(err, tc.want):
				t.Fatalf("error %v, want one wrapping %v", err, tc.want)
			}
			if tc.text != "" && !strings.Contains(err.Error(), tc.text) {
				t.Errorf("error %q does not say %q", err, tc.text)
			}
			if strings.HasPrefix(tc.name, "O_DIRECT") && !strings.Contains(err.Error(), "align") {
				// A suggestion, not a failure (runtime-bugs.md): EINVAL is all the kernel says.
				t.Logf("error %q does not mention the O_DIRECT alignment rule", err)
			}
			if err := r.Nop(ctx); err != nil {
				t.Fatalf("Nop after the bad call: %v", err)
			}
		})
	}
	if n := unknownFired.Load(); n != 0 {
		t.Errorf("%d callbacks fired for refused unknown-opcode submissions", n)
	}
}

// badCount is a TestBadInput call that returned a count other than 0
// (with or without an error) where 0 is the only right answer.
type badCount struct {
	n   int
	err error
}

func (b badCount) Error() string { return fmt.Sprintf("n = %d, err = %v", b.n, b.err) }

// errAny in a TestBadInput case accepts any non-nil error.
var errAny = errors.New("any error")

// TestConfigEntriesClamped: absurd ring sizes are not errors: 0 means the
// default of 256, sizes beyond the kernel's maximum are clamped to it
// (32768), and a CQ smaller than the SQ is refused.
func TestConfigEntriesClamped(t *testing.T) {
	uringtest.Require(t)
	for _, tc := range []struct {
		cfg  ringwake.Config
		want int // Capacity; 0: New must fail
	}{
		{ringwake.Config{}, 256},
		{ringwake.Config{Entries: 1}, 1},
		{ringwake.Config{Entries: 3}, 4},
		{ringwake.Config{Entries: 1 << 20}, 32768},
		{ringwake.Config{Entries: math.MaxUint32}, 32768},
		{ringwake.Config{Entries: 4, CQEntries: math.MaxUint32}, 4},
		{ringwake.Config{Entries: 1 << 20, CQEntries: 1 << 20}, 32768},
		{ringwake.Config{Entries: 64, CQEntries: 16}, 0},
		{ringwake.Config{Entries: 1 << 20, CQEntries: 4096}, 0},
	} {
		t.Run(fmt.Sprintf("Entries=%d,CQEntries=%d", tc.cfg.Entries, tc.cfg.CQEntries), func(t *testing.T) {
			var r *ringwake.Ring
			var err error
			func() {
				defer func() {
					if v := recover(); v != nil {
						t.Fatalf("New panicked: %v", v)
					}
				}()
				r, err = ringwake.New(tc.cfg)
			}()
			if tc.want == 0 {
				if err == nil {
					r.Close()
					t.Fatalf("New succeeded, want an error")
				}
				if !strings.Contains(err.Error(), "CQEntries") {
					t.Errorf("error %q does not name CQEntries", err)
				}
				return
			}
			if err != nil {
				t.Fatalf("New: %v", err)
			}
			defer r.Close()
			if c := r.Capacity(); c != tc.want {
				t.Errorf("Capacity = %d, want %d", c, tc.want)
			}
			if err := r.Nop(context.Background()); err != nil {
				t.Errorf("Nop: %v", err)
			}
		})
	}
}

// relLogOverflows logs how many CQ overflow flushes the poller made until
// the returned function runs.
func relLogOverflows(t *testing.T, r *ringwake.Ring) func() {
	before := r.Stats().Overflows
	return func() { t.Logf("CQ overflow flushes: %d", r.Stats().Overflows-before) }
}
