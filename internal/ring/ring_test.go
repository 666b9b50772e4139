package ring

import (
	"errors"
	"fmt"
	"runtime"
	"strings"
	"sync"
	"sync/atomic"
	"syscall"
	"testing"
	"time"
	"unsafe"

	"golang.org/x/sys/unix"

	"github.com/ringwake/ringwake/sqe"
)

func TestABILayout(t *testing.T) {
	checks := []struct {
		name      string
		got, want uintptr
	}{
		{"sizeof(io_uring_cqe)", unsafe.Sizeof(CQE{}), 16},
		{"offsetof(cqe.res)", unsafe.Offsetof(CQE{}.Res), 8},
		{"offsetof(cqe.flags)", unsafe.Offsetof(CQE{}.Flags), 12},
		{"sizeof(io_uring_params)", unsafe.Sizeof(params{}), 120},
		{"offsetof(params.features)", unsafe.Offsetof(params{}.features), 20},
		{"offsetof(params.sq_off)", unsafe.Offsetof(params{}.sqOff), 40},
		{"offsetof(params.cq_off)", unsafe.Offsetof(params{}.cqOff), 80},
		{"sizeof(io_sqring_offsets)", unsafe.Sizeof(sqringOffsets{}), 40},
		{"offsetof(sq_off.array)", unsafe.Offsetof(sqringOffsets{}.array), 24},
		{"sizeof(io_cqring_offsets)", unsafe.Sizeof(cqringOffsets{}), 40},
		{"offsetof(cq_off.cqes)", unsafe.Offsetof(cqringOffsets{}.cqes), 20},
		{"offsetof(cq_off.flags)", unsafe.Offsetof(cqringOffsets{}.flags), 24},
		{"sizeof(io_uring_getevents_arg)", unsafe.Sizeof(geteventsArg{}), 24},
		{"offsetof(getevents_arg.ts)", unsafe.Offsetof(geteventsArg{}.ts), 16},
		{"offsetof(extArg.arg)", unsafe.Offsetof(extArg{}.arg), 0},
		{"sizeof(__kernel_timespec)", unsafe.Sizeof(timespec{}), 16},
		{"sizeof(io_uring_rsrc_register)", unsafe.Sizeof(rsrcRegister{}), 32},
		{"sizeof(io_uring_files_update)", unsafe.Sizeof(filesUpdate{}), 16},
		{"offsetof(files_update.fds)", unsafe.Offsetof(filesUpdate{}.fds), 8},
		{"sizeof(io_uring_probe_op)", unsafe.Sizeof(probeOp{}), 8},
		{"offsetof(io_uring_probe.ops)", unsafe.Offsetof(probeArg{}.ops), 16},
		{"sizeof(unix.Iovec)", unsafe.Sizeof(unix.Iovec{}), 16},
	}
	for _, c := range checks {
		if c.got != c.want {
			t.Errorf("%s = %d, want %d", c.name, c.got, c.want)
		}
	}
}

func TestNopRoundTripEveryBatchSize(t *testing.T) { roundTripEveryBatchSize(t, newRing) }

// roundTripEveryBatchSize submits and reaps NOP batches of every size from 1
// to the SQ size, alternating Submit and SubmitAndWait, on rings made by
// newR: the kernel's and the software one.
func roundTripEveryBatchSize(t *testing.T, newR func(testing.TB, Params) *Ring) {
	for _, entries := range []uint32{8, 64} {
		t.Run(fmt.Sprint(entries), func(t *testing.T) {
			r := newR(t, Params{Entries: entries})
			if r.SQEntries() != entries || r.CQEntries() != 2*entries {
				t.Fatalf("SQ/CQ entries %d/%d, want %d/%d", r.SQEntries(), r.CQEntries(), entries, 2*entries)
			}
			base := uint64(1) << 40
			for n := 1; n <= int(entries); n++ {
				nopRoundTrip(t, r, base, n, n%2 == 0)
				base += uint64(n)
				if p, q, s := r.SQPending(), r.CQReady(), r.SQSpace(); p != 0 || q != 0 || s != entries {
					t.Fatalf("after batch %d: pending %d ready %d space %d", n, p, q, s)
				}
			}
		})
	}
}

func TestSQFull(t *testing.T) {
	const entries = 8
	r := newRing(t, Params{Entries: entries})
	seen := map[uintptr]bool{}
	for i := 0; i < entries; i++ {
		s := mustGetSQE(t, r)
		if seen[uintptr(unsafe.Pointer(s))] {
			t.Fatalf("GetSQE %d returned an SQE already handed out", i)
		}
		seen[uintptr(unsafe.Pointer(s))] = true
		prepNop(s, uint64(i))
	}
	if s := r.GetSQE(); s != nil {
		t.Fatal("GetSQE returned an SQE with the SQ full")
	}
	if sp := r.SQSpace(); sp != 0 {
		t.Fatalf("SQSpace %d with the SQ full", sp)
	}
	if p := r.SQPending(); p != 0 {
		t.Fatalf("SQPending %d before Publish", p)
	}
	if n, err := r.Submit(); err != nil || n != 0 {
		t.Fatalf("Submit before Publish = %d, %v; want 0, nil", n, err)
	}
	r.Publish()
	if p := r.SQPending(); p != entries {
		t.Fatalf("SQPending %d after Publish, want %d", p, entries)
	}
	if n, err := r.Submit(); err != nil || n != entries {
		t.Fatalf("Submit = %d, %v; want %d", n, err, entries)
	}
	// Consumed SQ slots are free again even before their CQEs are reaped.
	if sp := r.SQSpace(); sp != entries {
		t.Fatalf("SQSpace %d after Submit, want %d", sp, entries)
	}
	checkNops(t, reap(t, r, entries), 0, entries)
	nopRoundTrip(t, r, 100, entries, true)
}

func TestCQOverflow(t *testing.T) {
	for _, size := range []uint32{1, 4} {
		t.Run(fmt.Sprint(size), func(t *testing.T) {
			r := newRing(t, Params{Entries: size, CQEntries: size})
			if r.Features()&FeatNoDrop == 0 {
				t.Skip("kernel lacks IORING_FEAT_NODROP")
			}
			if r.CQEntries() != size {
				t.Fatalf("CQEntries %d, want %d", r.CQEntries(), size)
			}
			total := 10 * int(r.CQEntries())
			seen := make([]bool, total)
			got := 0
			var buf [3]CQE
			record := func(cqes []CQE) {
				for _, c := range cqes {
					if c.UserData >= uint64(total) || seen[c.UserData] {
						t.Fatalf("CQE user data %d unexpected or duplicate", c.UserData)
					}
					if c.Res != 0 {
						t.Fatalf("NOP %d: res %d", c.UserData, c.Res)
					}
					seen[c.UserData] = true
					got++
				}
			}
			sawOverflow, backpressure := false, 0
			next := 0
			for next < total {
				for next < total {
					s := r.GetSQE()
					if s == nil {
						break
					}
					prepNop(s, uint64(next))
					next++
				}
				r.Publish()
				for r.SQPending() > 0 {
					_, err := r.Submit()
					sawOverflow = sawOverflow || r.CQOverflow()
					if err == nil {
						continue
					}
					if !IsBackpressure(err) {
						t.Fatalf("Submit: %v", err)
					}
					// The only reaping during the burst: the kernel asked for it.
					backpressure++
					record(buf[:r.PeekBatch(buf[:])])
					if err := r.FlushOverflow(); err != nil {
						t.Fatalf("FlushOverflow: %v", err)
					}
				}
			}
			for guard := 0; got < total; guard++ {
				if guard > 100*total {
					t.Fatalf("reaped %d of %d after %d rounds (overflow=%v)", got, total, guard, r.CQOverflow())
				}
				if k := r.PeekBatch(buf[:]); k > 0 {
					record(buf[:k])
					continue
				}
				sawOverflow = sawOverflow || r.CQOverflow()
				if err := r.FlushOverflow(); err != nil {
					t.Fatalf("FlushOverflow: %v", err)
				}
				if r.CQReady() == 0 && !r.CQOverflow() && got < total {
					t.Fatalf("%d CQEs lost: CQ empty and no overflow", total-got)
				}
			}
			if !sawOverflow {
				t.Fatal("CQOverflow never reported: the test did not exercise overflow")
			}
			if d := r.CQOverflowCount(); d != 0 {
				t.Fatalf("kernel dropped %d CQEs", d)
			}
			if r.CQOverflow() || r.CQReady() != 0 {
				t.Fatal("completions left after reaping all")
			}
			t.Logf("%d NOPs through a %d-entry CQ, %d backpressure errors", total, size, backpressure)
		})
	}
}

// TestConcurrentSubmit drives the documented concurrency contract: GetSQE and
// Publish under the caller's lock, Submit from every producer without it,
// and one consumer reaping with bounded waits.
func TestConcurrentSubmit(t *testing.T) {
	concurrentNops(t, newRing(t, Params{Entries: 16}), 4, 400)
}

// concurrentNops has producers goroutines publish perProducer NOPs each
// through a shared lock and submit them, while one consumer reaps: every NOP
// must complete exactly once. Shared by the kernel ring and the software one.
func concurrentNops(t *testing.T, r *Ring, producers, perProducer int) {
	var mu sync.Mutex
	total := producers * perProducer
	seen := make([]atomic.Bool, total)
	errc := make(chan error, producers+1)
	var wg sync.WaitGroup
	for p := 0; p < producers; p++ {
		wg.Add(1)
		go func(p int) {
			defer wg.Done()
			for i := 0; i < perProducer; i++ {
				for {
					mu.Lock()
					s := r.GetSQE()
					if s != nil {
						prepNop(s, uint64(p*perProducer+i))
						r.Publish()
					}
					mu.Unlock()
					if _, err := r.Submit(); err != nil && !IsBackpressure(err) {
						errc <- err
						return
					}
					if s != nil {
						break
					}
					runtime.Gosched()
				}
			}
		}(p)
	}
	wg.Add(1)
	go func() {
		defer wg.Done()
		buf := make([]CQE, 8)
		for got := 0; got < total; {
			k := r.PeekBatch(buf)
			for _, c := range buf[:k] {
				if c.UserData >= uint64(total) || seen[c.UserData].Swap(true) {
					errc <- fmt.Errorf("user data %d unexpected or duplicate", c.UserData)
					return
				}
			}
			got += k
			if k > 0 {
				continue
			}
			if err := r.FlushOverflow(); err != nil {
				errc <- err
				return
			}
			if _, err := r.EnterTimeout(0, 1, EnterGetEvents, 50*time.Millisecond); err != nil && !errors.Is(err, syscall.ETIME) {
				errc <- err
				return
			}
		}
	}()
	wg.Wait()
	close(errc)
	for err := range errc {
		t.Fatal(err)
	}
	for i := range seen {
		if !seen[i].Load() {
			t.Fatalf("NOP %d never completed", i)
		}
	}
}

func TestEnterTimeout(t *testing.T) {
	r := newRing(t, Params{Entries: 4})
	if r.Features()&FeatExtArg == 0 {
		t.Skip("kernel lacks IORING_FEAT_EXT_ARG")
	}
	n, err := r.EnterTimeout(0, 1, EnterGetEvents, 20*time.Millisecond)
	if !errors.Is(err, syscall.ETIME) {
		t.Fatalf("EnterTimeout with nothing in flight = %d, %v; want ETIME", n, err)
	}
	// A negative timeout is a poll, not a hang.
	if _, err := r.EnterTimeout(0, 1, EnterGetEvents, -time.Second); !errors.Is(err, syscall.ETIME) {
		t.Fatalf("EnterTimeout(-1s) = %v; want ETIME", err)
	}
	prepNop(mustGetSQE(t, r), 7)
	r.Publish()
	n, err = r.EnterTimeout(1, 1, EnterGetEvents, 10*time.Second)
	if err != nil || n != 1 {
		t.Fatalf("EnterTimeout submitting one NOP = %d, %v; want 1, nil", n, err)
	}
	checkNops(t, reap(t, r, 1), 7, 1)
}

func TestEnterErrorsWrapErrno(t *testing.T) {
	r := newRing(t, Params{Entries: 4})
	// An EXT_ARG enter with no argument is refused by the kernel.
	_, err := r.Enter(0, 1, EnterGetEvents|EnterExtArg)
	if !errors.Is(err, syscall.EFAULT) && !errors.Is(err, syscall.EINVAL) {
		t.Fatalf("Enter with a missing EXT_ARG = %v; want EFAULT or EINVAL", err)
	}
	var errno syscall.Errno
	if !errors.As(err, &errno) {
		t.Fatalf("%v does not wrap a syscall.Errno", err)
	}
	if got := err.Error(); !strings.Contains(got, "io_uring_enter") {
		t.Fatalf("error %q does not name io_uring_enter", got)
	}
}

// TestEnterRetriesEINTR blocks a thread in a GETEVENTS wait, hits it with
// signals, then completes a NOP: the wait must end with the completion, not
// with EINTR.
func TestEnterRetriesEINTR(t *testing.T) {
	r := newRing(t, Params{Entries: 4})
	tidc := make(chan int)
	done := make(chan error, 1)
	go func() {
		runtime.LockOSThread()
		defer runtime.UnlockOSThread()
		tidc <- unix.Gettid()
		_, err := r.Enter(0, 1, EnterGetEvents)
		done <- err
	}()
	tid := <-tidc
	pid := unix.Getpid()
	for i := 0; i < 20; i++ {
		// SIGURG is the runtime's own preemption signal: harmless to Go,
		// and it interrupts the kernel wait.
		if err := unix.Tgkill(pid, tid, unix.SIGURG); err != nil {
			t.Fatalf("tgkill: %v", err)
		}
		time.Sleep(time.Millisecond)
	}
	select {
	case err := <-done:
		t.Fatalf("Enter returned before any completion: %v", err)
	default:
	}
	prepNop(mustGetSQE(t, r), 9)
	r.Publish()
	if _, err := r.Submit(); err != nil {
		t.Fatalf("Submit: %v", err)
	}
	if err := <-done; err != nil {
		t.Fatalf("waiting Enter: %v", err)
	}
	checkNops(t, reap(t, r, 1), 9, 1)
}

func TestCloseIdempotent(t *testing.T) {
	r := newRing(t, Params{Entries: 4})
	if err := r.Close(); err != nil {
		t.Fatalf("Close: %v", err)
	}
	if err := r.Close(); err != nil {
		t.Fatalf("second Close: %v", err)
	}
	if r.Fd() != -1 {
		t.Fatalf("Fd after Close = %d, want -1", r.Fd())
	}
}

func TestNoLeakAcrossNewClose(t *testing.T) {
	newRing(t, Params{Entries: 4}) // also warms up the runtime's own fds
	fds, maps := countFDs(t), countRingMaps(t)
	if maps == 0 {
		t.Fatal("no io_uring mapping found in /proc/self/maps with a ring open")
	}
	for i := 0; i < 100; i++ {
		r, err := New(Params{Entries: 64})
		if err != nil {
			t.Fatalf("New #%d: %v", i, err)
		}
		if i%10 == 0 {
			nopRoundTrip(t, r, 0, 4, true)
		}
		if err := r.Close(); err != nil {
			t.Fatalf("Close #%d: %v", i, err)
		}
	}
	if got := countFDs(t); got != fds {
		t.Fatalf("open fds %d after 100 New/Close, %d before", got, fds)
	}
	if got := countRingMaps(t); got != maps {
		t.Fatalf("io_uring mappings %d after 100 New/Close, %d before", got, maps)
	}
}

// roundTrip32 is the benchmark's unit of work: 32 NOPs submitted and reaped
// with one io_uring_enter.
func roundTrip32(r *Ring, dst []CQE) error {
	for i := 0; i < 32; i++ {
		s := r.GetSQE()
		if s == nil {
			return errors.New("SQ full")
		}
		prepNop(s, uint64(i))
	}
	r.Publish()
	if _, err := r.SubmitAndWait(32); err != nil {
		return err
	}
	for got := 0; got < 32; {
		k := r.PeekBatch(dst[got:])
		if k == 0 {
			if _, err := r.Enter(0, uint32(32-got), EnterGetEvents); err != nil {
				return err
			}
		}
		got += k
	}
	return nil
}

func TestRoundTripAllocationFree(t *testing.T) {
	r := newRing(t, Params{Entries: 64})
	dst := make([]CQE, 32)
	var err error
	allocs := testing.AllocsPerRun(200, func() {
		if e := roundTrip32(r, dst); e != nil {
			err = e
		}
	})
	if err != nil {
		t.Fatal(err)
	}
	if allocs != 0 {
		t.Fatalf("NOP batch round trip allocates %.1f times, want 0", allocs)
	}
	if r.Features()&FeatExtArg != 0 {
		allocs = testing.AllocsPerRun(20, func() {
			if _, e := r.EnterTimeout(0, 1, EnterGetEvents, 0); !errors.Is(e, syscall.ETIME) {
				err = e
			}
		})
		if err != nil {
			t.Fatal(err)
		}
		if allocs != 0 {
			t.Fatalf("timed-out EnterTimeout allocates %.1f times, want 0", allocs)
		}
	}
}

func BenchmarkNopBatch32(b *testing.B) {
	r := newRing(b, Params{Entries: 64})
	dst := make([]CQE, 32)
	b.ReportAllocs()
	for b.Loop() {
		if err := roundTrip32(r, dst); err != nil {
			b.Fatal(err)
		}
	}
	b.ReportMetric(float64(b.N)*32/b.Elapsed().Seconds(), "ops/s")
}

// GetSQEs hands out n SQEs as the GetSQE calls would, in one run or two
// where they wrap, and takes nothing when fewer than n are free.
func TestGetSQEsWrap(t *testing.T) {
	const entries = 8
	r := newRing(t, Params{Entries: entries})
	base := unsafe.Pointer(r.GetSQE()) // position 0
	r.Publish()
	if _, err := r.SubmitAndWait(1); err != nil {
		t.Fatal(err)
	}
	at := func(s *sqe.SQE) int { return int((uintptr(unsafe.Pointer(s)) - uintptr(base)) / sqe.Size) }
	a, b, ok := r.GetSQEs(5) // positions 1..5
	if !ok || len(a) != 5 || len(b) != 0 || at(&a[0]) != 1 {
		t.Fatalf("GetSQEs(5) = %d+%d SQEs from %d, %v; want 5+0 from 1", len(a), len(b), at(&a[0]), ok)
	}
	if _, _, ok := r.GetSQEs(4); ok {
		t.Fatal("GetSQEs(4) with 3 free succeeded")
	}
	for i := range a {
		prepNop(&a[i], uint64(i))
	}
	r.Publish()
	if _, err := r.SubmitAndWait(5); err != nil {
		t.Fatal(err)
	}
	a, b, ok = r.GetSQEs(6) // positions 6, 7, then 0..3
	if !ok || len(a) != 2 || len(b) != 4 || at(&a[0]) != 6 || at(&b[0]) != 0 {
		t.Fatalf("GetSQEs(6) after wrap = %d+%d, %v; want 2 from 6 + 4 from 0", len(a), len(b), ok)
	}
	if sp := r.SQSpace(); sp != 2 {
		t.Fatalf("SQSpace %d after taking 6 of 8, want 2", sp)
	}
}
