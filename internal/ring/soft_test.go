package ring

import (
	"errors"
	"fmt"
	"runtime"
	"strings"
	"syscall"
	"testing"
	"time"

	"github.com/ringwake/ringwake/sqe"
	"go.uber.org/goleak"
	"golang.org/x/sys/unix"
)

// The software ring needs no kernel support, so none of these tests call
// uringtest.Require: they run everywhere.

func newSoftRing(t testing.TB, p Params) *Ring {
	t.Helper()
	r, err := NewSoft(p)
	if err != nil {
		t.Fatalf("NewSoft(%+v): %v", p, err)
	}
	t.Cleanup(func() {
		if err := r.Close(); err != nil {
			t.Errorf("Close: %v", err)
		}
	})
	return r
}

var neverTrue bool
var heapSink any

// onHeap returns a heap copy of v: the engine reads and writes memory by
// the raw address in the SQE, which must not be a goroutine stack that can
// move under it.
func onHeap[T any](v T) *T {
	p := new(T)
	*p = v
	if neverTrue {
		heapSink = p // never runs, but makes every p escape
	}
	return p
}

func heapBytes(n int) []byte { return *onHeap(make([]byte, n)) }

// submit publishes one SQE prepared by prep with user data ud and submits.
func submit(t testing.TB, r *Ring, ud uint64, prep func(s *sqe.SQE)) {
	t.Helper()
	s := mustGetSQE(t, r)
	prep(s)
	s.UserData = ud
	r.Publish()
	if _, err := r.Submit(); err != nil {
		t.Fatalf("Submit: %v", err)
	}
}

// one submits one SQE and reaps its CQE.
func one(t testing.TB, r *Ring, prep func(s *sqe.SQE)) CQE {
	t.Helper()
	submit(t, r, 0x5eed, prep)
	c := reap(t, r, 1)[0]
	if c.UserData != 0x5eed {
		t.Fatalf("CQE for user data %#x, want 0x5eed", c.UserData)
	}
	return c
}

// byUD indexes CQEs by user data, failing on a duplicate.
func byUD(t testing.TB, cqes []CQE) map[uint64]CQE {
	t.Helper()
	m := make(map[uint64]CQE, len(cqes))
	for _, c := range cqes {
		if _, dup := m[c.UserData]; dup {
			t.Fatalf("user data %#x completed twice", c.UserData)
		}
		m[c.UserData] = c
	}
	return m
}

func wantRes(t testing.TB, what string, c CQE, want int32) {
	t.Helper()
	if c.Res != want {
		t.Fatalf("%s: res %d (%v), want %d (%v)", what, c.Res, resString(c.Res), want, resString(want))
	}
}

func resString(res int32) string {
	if res < 0 {
		return syscall.Errno(-res).Error()
	}
	return fmt.Sprint(res)
}

func blockingPipe(t testing.TB) (rd, wr int) {
	t.Helper()
	var p [2]int
	if err := unix.Pipe2(p[:], unix.O_CLOEXEC); err != nil {
		t.Fatal(err)
	}
	t.Cleanup(func() {
		unix.Close(p[0])
		unix.Close(p[1])
	})
	return p[0], p[1]
}

// waitParked waits until n requests wait in the poll loop.
func waitParked(t testing.TB, r *Ring, n int) {
	t.Helper()
	deadline := time.Now().Add(30 * time.Second)
	for {
		r.soft.mu.Lock()
		got := r.soft.nparked
		r.soft.mu.Unlock()
		if got == n {
			return
		}
		if time.Now().After(deadline) {
			t.Fatalf("%d requests parked, want %d", got, n)
		}
		time.Sleep(time.Millisecond)
	}
}

func TestSoftGeometryAndFlags(t *testing.T) {
	r := newSoftRing(t, Params{Entries: 100, SQPoll: true, CoopTaskrun: true, NoSQArray: true})
	if r.SQEntries() != 128 || r.CQEntries() != 256 {
		t.Fatalf("SQ/CQ %d/%d, want 128/256 (same rounding as New)", r.SQEntries(), r.CQEntries())
	}
	if r.Fd() != -1 || !r.Soft() {
		t.Fatalf("Fd %d Soft %v, want -1 true", r.Fd(), r.Soft())
	}
	if r.SetupFlags()&SetupNoSQArray == 0 || r.SetupFlags()&(SetupSQPoll|SetupCoopTaskrun) != 0 {
		t.Fatalf("SetupFlags %#x", r.SetupFlags())
	}
	if r.DroppedFlags()&(SetupSQPoll|SetupCoopTaskrun) != SetupSQPoll|SetupCoopTaskrun {
		t.Fatalf("DroppedFlags %#x lacks SQPOLL and COOP_TASKRUN", r.DroppedFlags())
	}
	// With SQPoll asked for, a caller following the SQPOLL protocol must
	// still enter: the SQ says its (nonexistent) thread needs a wakeup.
	if !r.NeedWakeup() {
		t.Fatal("NeedWakeup false on a soft ring set up with SQPoll")
	}
	nopRoundTrip(t, r, 1, 8, false)
	if r.Features()&(FeatNoDrop|FeatExtArg) != FeatNoDrop|FeatExtArg {
		t.Fatalf("Features %#x lack NODROP or EXT_ARG", r.Features())
	}
	if _, err := NewSoft(Params{Entries: 8, CQEntries: 4}); err == nil {
		t.Fatal("NewSoft accepted a CQ smaller than the SQ")
	}
	if _, err := NewSoft(Params{DeferTaskrun: true}); err == nil {
		t.Fatal("NewSoft accepted DeferTaskrun without SingleIssuer")
	}
	// Params are validated as New validates them, though SQPoll is dropped.
	if _, err := NewSoft(Params{SQPoll: true, SQThreadIdle: -1}); err == nil {
		t.Fatal("NewSoft accepted a negative SQThreadIdle")
	}
}

func TestSoftNopRoundTripEveryBatchSize(t *testing.T) { roundTripEveryBatchSize(t, newSoftRing) }

func TestSoftSQFull(t *testing.T) {
	const entries = 8
	r := newSoftRing(t, Params{Entries: entries})
	for i := 0; i < entries; i++ {
		prepNop(mustGetSQE(t, r), uint64(i))
	}
	if s := r.GetSQE(); s != nil {
		t.Fatal("GetSQE returned an SQE with the SQ full")
	}
	if n, err := r.Submit(); err != nil || n != 0 {
		t.Fatalf("Submit before Publish = %d, %v; want 0, nil", n, err)
	}
	r.Publish()
	if n, err := r.Submit(); err != nil || n != entries {
		t.Fatalf("Submit = %d, %v; want %d", n, err, entries)
	}
	if sp := r.SQSpace(); sp != entries {
		t.Fatalf("SQSpace %d after Submit, want %d", sp, entries)
	}
	checkNops(t, reap(t, r, entries), 0, entries)
}

// TestSoftCQOverflow bursts 100 times the CQ size without reaping: every
// completion must arrive exactly once, through the overflow list.
func TestSoftCQOverflow(t *testing.T) {
	for _, size := range []uint32{1, 4} {
		t.Run(fmt.Sprint(size), func(t *testing.T) {
			r := newSoftRing(t, Params{Entries: size, CQEntries: size})
			total := 100 * int(r.CQEntries())
			for next := 0; next < total; {
				for ; next < total; next++ {
					s := r.GetSQE()
					if s == nil {
						break
					}
					prepNop(s, uint64(next))
				}
				r.Publish()
				if _, err := r.Submit(); err != nil {
					t.Fatalf("Submit: %v", err)
				}
			}
			if !r.CQOverflow() {
				t.Fatal("CQOverflow not reported after a burst 100x the CQ")
			}
			checkNops(t, reap(t, r, total), 0, total)
			if r.CQOverflow() || r.CQReady() != 0 || r.CQOverflowCount() != 0 {
				t.Fatal("overflow state left after reaping everything")
			}
		})
	}
}

// TestSoftConcurrentSubmit: producers publish under a lock and all call
// Submit concurrently; one consumer reaps. Each SQE is consumed once.
func TestSoftConcurrentSubmit(t *testing.T) {
	concurrentNops(t, newSoftRing(t, Params{Entries: 16}), 4, 500)
}

func TestSoftEnterTimeoutAndErrors(t *testing.T) {
	r := newSoftRing(t, Params{Entries: 4})
	if _, err := r.EnterTimeout(0, 1, EnterGetEvents, 20*time.Millisecond); !errors.Is(err, syscall.ETIME) {
		t.Fatalf("EnterTimeout with nothing in flight = %v; want ETIME", err)
	}
	if _, err := r.EnterTimeout(0, 1, EnterGetEvents, -time.Second); !errors.Is(err, syscall.ETIME) {
		t.Fatalf("EnterTimeout(-1s) = %v; want ETIME", err)
	}
	prepNop(mustGetSQE(t, r), 7)
	r.Publish()
	if n, err := r.EnterTimeout(1, 1, EnterGetEvents, 10*time.Second); err != nil || n != 1 {
		t.Fatalf("EnterTimeout submitting one NOP = %d, %v", n, err)
	}
	checkNops(t, reap(t, r, 1), 7, 1)

	_, err := r.Enter(0, 1, EnterGetEvents|EnterExtArg)
	if !errors.Is(err, syscall.EINVAL) || !strings.Contains(err.Error(), "io_uring_enter") {
		t.Fatalf("Enter with EXT_ARG and no argument = %v; want an io_uring_enter error wrapping EINVAL", err)
	}
	var errno syscall.Errno
	if !errors.As(err, &errno) {
		t.Fatalf("%v does not wrap a syscall.Errno", err)
	}
}

// TestSoftEnterWaitsForCompletion: a GETEVENTS wait blocks until a worker
// posts, and a timed wait that sees the completion returns no error.
func TestSoftEnterWaitsForCompletion(t *testing.T) {
	r := newSoftRing(t, Params{Entries: 4})
	rd, wr := blockingPipe(t)
	buf := heapBytes(4)
	submit(t, r, 1, func(s *sqe.SQE) { s.PrepRead(int32(rd), buf, 0) })
	done := make(chan error, 1)
	go func() {
		_, err := r.Enter(0, 1, EnterGetEvents)
		done <- err
	}()
	select {
	case err := <-done:
		t.Fatalf("Enter returned before any completion: %v", err)
	case <-time.After(20 * time.Millisecond):
	}
	if _, err := unix.Write(wr, []byte("abcd")); err != nil {
		t.Fatal(err)
	}
	if err := <-done; err != nil {
		t.Fatalf("Enter: %v", err)
	}
	c := reap(t, r, 1)[0]
	wantRes(t, "pipe read", c, 4)
	if string(buf) != "abcd" {
		t.Fatalf("read %q", buf)
	}
}

func TestSoftCloseIdempotent(t *testing.T) {
	r := newSoftRing(t, Params{Entries: 4})
	nopRoundTrip(t, r, 0, 4, true)
	if err := r.Close(); err != nil {
		t.Fatalf("Close: %v", err)
	}
	if err := r.Close(); err != nil {
		t.Fatalf("second Close: %v", err)
	}
	if r.Fd() != -1 {
		t.Fatalf("Fd after Close = %d", r.Fd())
	}
}

// TestSoftCloseCancelsEverything: Close with reads parked on an empty pipe,
// a queued chain, a timer and NOPs: every request gets exactly one CQE
// (-ECANCELED for what was waiting), no goroutine is left, and no canceled
// read consumes data written afterwards.
func TestSoftCloseCancelsEverything(t *testing.T) {
	defer goleak.VerifyNone(t, goleak.IgnoreCurrent())
	r, err := NewSoft(Params{Entries: 64, CQEntries: 128})
	if err != nil {
		t.Fatal(err)
	}
	defer r.Close()
	rd, wr := blockingPipe(t)
	const reads = 40
	bufs := make([][]byte, reads)
	for i := range bufs {
		bufs[i] = heapBytes(8)
		buf := bufs[i]
		submit(t, r, uint64(i), func(s *sqe.SQE) { s.PrepRead(int32(rd), buf, 0) })
	}
	for i := 0; i < 10; i++ {
		submit(t, r, 100+uint64(i), func(s *sqe.SQE) { s.PrepNop() })
	}
	ts := onHeap(unix.NsecToTimespec(int64(time.Hour)))
	submit(t, r, 200, func(s *sqe.SQE) { s.PrepTimeout(ts, 0, 0) })
	// A chain: a read that waits, then a NOP that must never run.
	chainBuf := heapBytes(8)
	s1, s2 := mustGetSQE(t, r), mustGetSQE(t, r)
	s1.PrepRead(int32(rd), chainBuf, 0)
	s1.Flags |= sqe.IOLink
	s1.UserData = 300
	s2.PrepNop()
	s2.UserData = 301
	r.Publish()
	if _, err := r.Submit(); err != nil {
		t.Fatal(err)
	}
	waitParked(t, r, reads+1)

	if err := r.soft.close(); err != nil {
		t.Fatalf("engine close: %v", err)
	}
	got := byUD(t, reap(t, r, reads+10+1+2))
	for i := 0; i < reads; i++ {
		wantRes(t, fmt.Sprintf("read %d", i), got[uint64(i)], -int32(syscall.ECANCELED))
	}
	for i := 0; i < 10; i++ {
		wantRes(t, "NOP", got[100+uint64(i)], 0)
	}
	wantRes(t, "timeout", got[200], -int32(syscall.ECANCELED))
	wantRes(t, "chained read", got[300], -int32(syscall.ECANCELED))
	wantRes(t, "chained NOP", got[301], -int32(syscall.ECANCELED))

	if _, err := unix.Write(wr, []byte("x")); err != nil {
		t.Fatal(err)
	}
	b := make([]byte, 1)
	if n, err := unix.Read(rd, b); n != 1 || err != nil || b[0] != 'x' {
		t.Fatalf("byte written after Close: read %d %v %q; a canceled read took it", n, err, b)
	}
	for i, buf := range bufs {
		if string(buf) != string(make([]byte, 8)) {
			t.Fatalf("canceled read %d wrote its buffer: %q", i, buf)
		}
	}
	// After Close every wait fails instead of hanging.
	if _, err := r.Enter(0, 1, EnterGetEvents); !errors.Is(err, syscall.EBADF) {
		t.Fatalf("Enter after engine close = %v, want EBADF", err)
	}
	runtime.KeepAlive(ts)
}

// TestSoftCloseWaitsForBlockingCall: a worker blocked in a call that cannot
// be interrupted (openat of a FIFO with no writer) is waited for, and its
// result delivered.
func TestSoftCloseWaitsForBlockingCall(t *testing.T) {
	defer goleak.VerifyNone(t, goleak.IgnoreCurrent())
	r, err := NewSoft(Params{Entries: 8})
	if err != nil {
		t.Fatal(err)
	}
	defer r.Close()
	unblock := blockedOpen(t, r, 1)
	// A cancel cannot interrupt it: -EALREADY, as for io-wq work.
	c := one(t, r, func(s *sqe.SQE) { s.PrepCancel64(1, 0) })
	wantRes(t, "cancel of a blocked openat", c, -int32(syscall.EALREADY))

	unblocked := make(chan struct{})
	go func() {
		defer close(unblocked)
		// Unblock the openat only once Close is under way.
		for {
			r.soft.mu.Lock()
			closing := r.soft.closing
			r.soft.mu.Unlock()
			if closing {
				break
			}
			time.Sleep(time.Millisecond)
		}
		unblock()
	}()
	if err := r.soft.close(); err != nil {
		t.Fatalf("engine close: %v", err)
	}
	<-unblocked
	c = reap(t, r, 1)[0]
	if c.UserData != 1 || c.Res < 0 {
		t.Fatalf("openat CQE %+v, want a descriptor", c)
	}
	unix.Close(int(c.Res))
}

// waitRunning waits until n requests are on workers.
func waitRunning(t testing.TB, r *Ring, n int) {
	t.Helper()
	deadline := time.Now().Add(30 * time.Second)
	for {
		got := 0
		r.soft.mu.Lock()
		for q := r.soft.live.first; q != nil; q = q.nextLive {
			if q.state == stRunning {
				got++
			}
		}
		r.soft.mu.Unlock()
		if got == n {
			return
		}
		if time.Now().After(deadline) {
			t.Fatalf("%d requests running, want %d", got, n)
		}
		time.Sleep(time.Millisecond)
	}
}

// TestSoftWorkersBoundedAndNeverHeldByPipes: with two workers and more
// reads parked on empty pipes than workers, regular-file I/O still runs,
// and the pool never grows past its bound.
func TestSoftWorkersBoundedAndNeverHeldByPipes(t *testing.T) {
	r := newSoftRing(t, Params{Entries: 128})
	r.soft.maxWork = 2
	rd, wr := blockingPipe(t)
	const reads = 20
	for i := 0; i < reads; i++ {
		buf := heapBytes(1)
		submit(t, r, 1000+uint64(i), func(s *sqe.SQE) { s.PrepRead(int32(rd), buf, 0) })
	}
	waitParked(t, r, reads)
	want := pattern(4096)
	f := patternFile(t, want)
	var bufs [][]byte
	for i := 0; i < 50; i++ {
		buf := heapBytes(len(want))
		bufs = append(bufs, buf)
		submit(t, r, uint64(i), func(s *sqe.SQE) { s.PrepRead(int32(f.Fd()), buf, 0) })
	}
	got := byUD(t, reap(t, r, 50))
	for i := 0; i < 50; i++ {
		wantRes(t, "file read", got[uint64(i)], int32(len(want)))
		if string(bufs[i]) != string(want) {
			t.Fatalf("file read %d: wrong bytes", i)
		}
	}
	r.soft.mu.Lock()
	workers := r.soft.workers
	r.soft.mu.Unlock()
	if workers > 2 {
		t.Fatalf("%d workers, bound 2", workers)
	}
	// Each byte written satisfies exactly one parked read.
	if _, err := unix.Write(wr, make([]byte, reads)); err != nil {
		t.Fatal(err)
	}
	got = byUD(t, reap(t, r, reads))
	total := int32(0)
	for _, c := range got {
		total += c.Res
	}
	if total != reads {
		t.Fatalf("parked reads got %d bytes in all, want %d", total, reads)
	}
}

// TestSoftManyParkedOnOneFd: thousands of reads wait on one pipe. Each
// byte written completes exactly one of them, and the rest stay parked
// (the poll set holds the descriptor once, and a wakeup does not stampede).
func TestSoftManyParkedOnOneFd(t *testing.T) {
	const reads = 4096
	r := newSoftRing(t, Params{Entries: reads, CQEntries: 2 * reads})
	rd, wr := blockingPipe(t)
	bufs := make([][]byte, reads)
	for i := range bufs {
		bufs[i] = heapBytes(1)
		buf := bufs[i]
		prepRead(mustGetSQE(t, r), int32(rd), buf, 0, 1<<20+uint64(i))
	}
	r.Publish()
	if n, err := r.Submit(); err != nil || n != reads {
		t.Fatalf("Submit = %d, %v", n, err)
	}
	waitParked(t, r, reads)
	r.soft.mu.Lock()
	groups := len(r.soft.groups)
	r.soft.mu.Unlock()
	if groups != 1 {
		t.Fatalf("%d poll groups for one descriptor", groups)
	}
	const bytes = 100
	if _, err := unix.Write(wr, make([]byte, bytes)); err != nil {
		t.Fatal(err)
	}
	for _, c := range reap(t, r, bytes) {
		wantRes(t, "pipe read", c, 1)
	}
	waitParked(t, r, reads-bytes)
	if r.CQReady() != 0 {
		t.Fatalf("%d more completions than bytes written", r.CQReady())
	}
	res, got := cancel(t, r, reads-bytes, func(s *sqe.SQE) { s.PrepCancelFd(int32(rd), sqe.AsyncCancelAll) })
	if res != reads-bytes || len(got) != reads-bytes {
		t.Fatalf("cancel ALL on the pipe: %d, %d CQEs; want %d", res, len(got), reads-bytes)
	}
}

func TestSoftNoLeakAcrossNewClose(t *testing.T) {
	defer goleak.VerifyNone(t, goleak.IgnoreCurrent())
	fds := countFDs(t)
	var p [2]int
	if err := unix.Pipe2(p[:], unix.O_CLOEXEC); err != nil {
		t.Fatal(err)
	}
	rd, wr := p[0], p[1]
	efd, err := unix.Eventfd(0, unix.EFD_CLOEXEC|unix.EFD_NONBLOCK)
	if err != nil {
		t.Fatal(err)
	}
	for i := 0; i < 50; i++ {
		r, err := NewSoft(Params{Entries: 16})
		if err != nil {
			t.Fatal(err)
		}
		// Exercise everything that takes a descriptor or a goroutine: the
		// poll loop (a parked read), the timer (a timeout), a registered
		// file table and eventfd, the copier pipe fallback.
		r.soft.copier.noVM = i%2 == 0
		if err := r.RegisterFiles([]int32{int32(rd), int32(wr)}); err != nil {
			t.Fatal(err)
		}
		if err := r.RegisterEventfd(efd); err != nil {
			t.Fatal(err)
		}
		buf := heapBytes(1)
		submit(t, r, 1, func(s *sqe.SQE) {
			s.PrepRead(0, buf, 0)
			s.Flags |= sqe.FixedFile
		})
		ts := onHeap(unix.NsecToTimespec(int64(time.Hour)))
		submit(t, r, 2, func(s *sqe.SQE) { s.PrepTimeout(ts, 0, 0) })
		nopRoundTrip(t, r, 10, 4, true)
		waitParked(t, r, 1)
		if err := r.Close(); err != nil {
			t.Fatalf("Close #%d: %v", i, err)
		}
	}
	unix.Close(efd)
	unix.Close(rd)
	unix.Close(wr)
	if got := countFDs(t); got != fds {
		t.Fatalf("open fds %d after 50 NewSoft/Close, %d before", got, fds)
	}
}

// TestSoftRoundTripAllocationFree: the engine recycles its requests and
// its waiters, so NOP batches and file reads cost no allocation.
func TestSoftRoundTripAllocationFree(t *testing.T) {
	r := newSoftRing(t, Params{Entries: 64})
	dst := make([]CQE, 32)
	var err error
	if a := testing.AllocsPerRun(200, func() {
		if e := roundTrip32(r, dst); e != nil {
			err = e
		}
	}); err != nil || a != 0 {
		t.Fatalf("NOP batch round trip: %v allocs, err %v", a, err)
	}
	f := patternFile(t, pattern(4096))
	buf := heapBytes(4096)
	if a := testing.AllocsPerRun(200, func() {
		prepRead(r.GetSQE(), int32(f.Fd()), buf, 0, 1)
		r.Publish()
		if _, e := r.SubmitAndWait(1); e != nil {
			err = e
		}
		if r.PeekBatch(dst[:1]) != 1 || dst[0].Res != 4096 {
			err = fmt.Errorf("read CQE %+v", dst[0])
		}
	}); err != nil || a != 0 {
		t.Fatalf("file read round trip: %v allocs, err %v", a, err)
	}
}

func BenchmarkSoftNopBatch32(b *testing.B) {
	r := newSoftRing(b, Params{Entries: 64})
	dst := make([]CQE, 32)
	b.ReportAllocs()
	for b.Loop() {
		if err := roundTrip32(r, dst); err != nil {
			b.Fatal(err)
		}
	}
	b.ReportMetric(float64(b.N)*32/b.Elapsed().Seconds(), "ops/s")
}

// BenchmarkPread4KQD32 compares the engines on 4 KiB reads of a cached
// file, 32 in flight per batch.
func BenchmarkPread4KQD32(b *testing.B) {
	for _, engine := range []string{"kernel", "soft"} {
		b.Run(engine, func(b *testing.B) {
			var r *Ring
			if engine == "soft" {
				r = newSoftRing(b, Params{Entries: 64})
			} else {
				r = newRing(b, Params{Entries: 64})
			}
			f := patternFile(b, pattern(1<<20))
			bufs := make([][]byte, 32)
			for i := range bufs {
				bufs[i] = heapBytes(4096)
			}
			dst := make([]CQE, 32)
			b.ReportAllocs()
			for b.Loop() {
				for i, buf := range bufs {
					prepRead(r.GetSQE(), int32(f.Fd()), buf, uint64(i)*4096, uint64(i))
				}
				r.Publish()
				if _, err := r.SubmitAndWait(32); err != nil {
					b.Fatal(err)
				}
				for got := 0; got < 32; {
					k := r.PeekBatch(dst[got:])
					if k == 0 {
						if _, err := r.Enter(0, uint32(32-got), EnterGetEvents); err != nil {
							b.Fatal(err)
						}
					}
					got += k
				}
			}
			b.ReportMetric(float64(b.N)*32/b.Elapsed().Seconds(), "reads/s")
		})
	}
}
