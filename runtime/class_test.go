package runtime_test

import (
	"context"
	"errors"
	"math/rand/v2"
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

// classRing is a ring whose one-byte reads cost one token each, with room
// for capacity of them in flight: pipe reads then make the scheduler's
// admissions visible and controllable (a read stays in flight until a byte
// is written).
func classRing(t *testing.T, capacity uint64) *ringwake.Ring {
	return newRing(t, ringwake.Config{IOCost: ringwake.IOCost{ReadOp: 1, ReadKiB: 1, Capacity: capacity}})
}

func writeByte(t *testing.T, fd int) {
	t.Helper()
	if _, err := unix.Write(fd, []byte{1}); err != nil {
		t.Fatalf("write pipe: %v", err)
	}
}

// TestClassCapacityAndWorkConserving: a class alone is admitted up to the
// capacity (all of it), the rest wait in ringwake, and each completion
// admits the next, until every read has read its byte.
func TestClassCapacityAndWorkConserving(t *testing.T) {
	r := classRing(t, 4)
	c := r.NewClass("solo", 10)
	ctx := ringwake.WithClass(context.Background(), c)
	pr, pw := rawPipe(t)
	const n = 12
	var wg sync.WaitGroup
	var bad atomic.Int32
	for range n {
		wg.Add(1)
		go func() {
			defer wg.Done()
			if k, err := r.ReadAt(ctx, pr, make([]byte, 1), 0); k != 1 || err != nil {
				bad.Add(1)
			}
		}()
	}
	waitFor(t, "4 reads admitted", func() bool { return c.Stats().InFlight == 4 })
	time.Sleep(20 * time.Millisecond)
	if st := c.Stats(); st.InFlight != 4 || st.Ops != 4 {
		t.Fatalf("with capacity 4: %+v, want 4 in flight and 4 admitted", st)
	}
	for i := range n {
		writeByte(t, pw)
		want := uint64(min(i+5, n))
		waitFor(t, "next admission", func() bool { return c.Stats().Ops == want })
		if st := c.Stats(); st.InFlight > 4 {
			t.Fatalf("%d in flight, capacity 4", st.InFlight)
		}
	}
	within(t, "readers", wg.Wait)
	st := c.Stats()
	if bad.Load() != 0 || st.Ops != n || st.Bytes != n || st.InFlight != 0 || st.Queued <= 0 {
		t.Fatalf("%d failed reads; stats %+v", bad.Load(), st)
	}
}

// TestClassSharesManyClasses: with one request in flight at a time and
// every class backlogged, admissions follow the shares, within each class
// in arrival order (the reads of a class share one pipe, so a read that
// overtook another would still read one byte; order is checked by the
// fair-queue model test, proportions here end to end).
func TestClassSharesManyClasses(t *testing.T) {
	r := classRing(t, 1)
	shares := []uint32{10, 20, 30, 40, 50, 60, 70, 80}
	type cl struct {
		c      *ringwake.Class
		pr, pw int
	}
	cls := make([]cl, len(shares))
	for i, s := range shares {
		pr, pw := rawPipe(t)
		cls[i] = cl{r.NewClass("c", s), pr, pw}
	}
	// A blocker holds the one slot of capacity while every class queues.
	br, bw := rawPipe(t)
	var wg sync.WaitGroup
	var bad atomic.Int32
	read := func(ctx context.Context, fd int) {
		defer wg.Done()
		if k, err := r.ReadAt(ctx, fd, make([]byte, 1), 0); k != 1 || err != nil {
			bad.Add(1)
		}
	}
	wg.Add(1)
	go read(context.Background(), br)
	waitFor(t, "blocker in flight", func() bool { return ringInFlight(r) == 1 })
	const per = 45 // 360 admissions: about 10 rounds of the shares' sum
	for i := range cls {
		ctx := ringwake.WithClass(context.Background(), cls[i].c)
		for range per {
			wg.Add(1)
			go read(ctx, cls[i].pr)
		}
	}
	waitFor(t, "every class queued", func() bool {
		n := 0
		for i := range cls {
			n += int(cls[i].c.Stats().Ops)
		}
		return n == 0 && ringInFlight(r) == 1
	})
	time.Sleep(50 * time.Millisecond) // the last goroutines reach the queue
	writeByte(t, bw)
	// Serve 180 admissions, one at a time: write to the pipe of the class
	// that holds the slot.
	const steps = 180
	count := make([]int, len(cls))
	for step := range steps {
		total := func() (n int) {
			for i := range cls {
				n += int(cls[i].c.Stats().Ops)
			}
			return n
		}
		waitFor(t, "an admission", func() bool { return total() == step+1 })
		who := -1
		for i := range cls {
			if int(cls[i].c.Stats().Ops) > count[i] {
				who = i
			}
		}
		count[who]++
		writeByte(t, cls[who].pw)
	}
	waitFor(t, "the last admission", func() bool { return ringInFlight(r) == 1 })
	var sum uint32
	for _, s := range shares {
		sum += s
	}
	for i, s := range shares {
		want := float64(steps) * float64(s) / float64(sum)
		if d := float64(count[i]) - want; d > 2 || d < -2 {
			t.Errorf("class of %d shares: %d admissions, want %.1f±2 (all: %v)", s, count[i], want, count)
		}
	}
	// Drain the rest so every reader returns.
	for i := range cls {
		for range per - count[i] {
			writeByte(t, cls[i].pw)
		}
	}
	within(t, "readers", wg.Wait)
	if bad.Load() != 0 {
		t.Fatalf("%d reads failed", bad.Load())
	}
}

// TestClassCancelQueued: a queued request whose ctx ends returns ctx.Err()
// and never reaches the kernel (the byte it would have read is still in the
// pipe), and capacity is not leaked by it.
func TestClassCancelQueued(t *testing.T) {
	r := classRing(t, 1)
	c := r.NewClass("c", 100)
	pr, pw := rawPipe(t)
	first := make(chan error, 1)
	go func() {
		_, err := r.ReadAt(ringwake.WithClass(context.Background(), c), pr, make([]byte, 1), 0)
		first <- err
	}()
	waitFor(t, "first in flight", func() bool { return c.Stats().InFlight == 1 })
	ctx, cancel := context.WithCancel(ringwake.WithClass(context.Background(), c))
	second := make(chan error, 1)
	go func() {
		_, err := r.ReadAt(ctx, pr, make([]byte, 1), 0)
		second <- err
	}()
	time.Sleep(20 * time.Millisecond)
	submitted := r.Stats().Submitted
	cancel()
	if err := <-second; !errors.Is(err, context.Canceled) {
		t.Fatalf("canceled queued read: %v, want context.Canceled", err)
	}
	writeByte(t, pw)
	if err := <-first; err != nil {
		t.Fatal(err)
	}
	// A byte for nobody: it stays in the pipe if the canceled read never ran.
	writeByte(t, pw)
	var b [2]byte
	if n, err := unix.Read(pr, b[:]); n != 1 || err != nil {
		t.Fatalf("pipe holds %d bytes (%v), want the 1 the canceled read must not have taken", n, err)
	}
	if st := c.Stats(); st.Ops != 1 || st.InFlight != 0 {
		t.Fatalf("stats %+v: want 1 admitted, none in flight", st)
	}
	if got := r.Stats().Submitted; got != submitted {
		t.Fatalf("submitted moved from %d to %d: the canceled read reached the ring", submitted, got)
	}
	// Capacity is whole again: a read is admitted at once.
	go unix.Write(pw, []byte{1})
	if _, err := r.ReadAt(ringwake.WithClass(context.Background(), c), pr, make([]byte, 1), 0); err != nil {
		t.Fatal(err)
	}
}

// TestClassCloseQueued: Close ends queued blocking calls with ErrClosed and
// fires queued callbacks exactly once with -ECANCELED; calls after it fail.
func TestClassCloseQueued(t *testing.T) {
	uringtest.Require(t)
	// Not newRing: this test closes the ring itself, and checks that Close.
	r, err := ringwake.New(ringwake.Config{IOCost: ringwake.IOCost{ReadOp: 1, ReadKiB: 1, Capacity: 1}})
	if err != nil {
		t.Fatal(err)
	}
	c := r.NewClass("c", 100)
	ctx := ringwake.WithClass(context.Background(), c)
	pr, _ := rawPipe(t)
	const n = 6
	errs := make(chan error, n)
	read := func() {
		_, err := r.ReadAt(ctx, pr, make([]byte, 1), 0)
		errs <- err
	}
	// A blocking read holds the capacity; everything else queues.
	go read()
	waitFor(t, "one in flight", func() bool { return c.Stats().InFlight == 1 })
	for range n - 1 {
		go read()
	}
	var fired [n]atomic.Int32
	var res [n]atomic.Int32
	for i := range n {
		var s sqe.SQE
		s.PrepRead(int32(pr), make([]byte, 1), 0)
		if err := r.SubmitClass(c, &s, func(r int32, _ uint32) {
			res[i].Store(r)
			fired[i].Add(1)
		}); err != nil {
			t.Fatal(err)
		}
	}
	time.Sleep(20 * time.Millisecond)
	if st := c.Stats(); st.InFlight != 1 {
		t.Fatalf("%+v: want one in flight", st)
	}
	within(t, "Close", func() {
		if err := r.Close(); err != nil {
			t.Errorf("Close: %v", err)
		}
	})
	// Close returns only after every queued callback has fired: they go
	// through the ring (a NOP each) before the ring stops.
	for i := range n {
		if f := fired[i].Load(); f != 1 || res[i].Load() != -int32(syscall.ECANCELED) {
			t.Errorf("callback %d fired %d times with %d, want once with -ECANCELED", i, f, res[i].Load())
		}
	}
	within(t, "queued reads", func() {
		for range n {
			if err := <-errs; !errors.Is(err, ringwake.ErrClosed) {
				t.Errorf("queued read after Close: %v, want ErrClosed", err)
			}
		}
	})
	if _, err := r.ReadAt(ctx, pr, make([]byte, 1), 0); !errors.Is(err, ringwake.ErrClosed) {
		t.Errorf("read after Close: %v", err)
	}
	for i := range n {
		if f := fired[i].Load(); f != 1 {
			t.Errorf("callback %d fired %d times", i, f)
		}
	}
	late := r.NewClass("late", 1)
	if err := r.Nop(ringwake.WithClass(context.Background(), late)); !errors.Is(err, ringwake.ErrClosed) {
		t.Errorf("a class registered after Close: %v, want ErrClosed", err)
	}
}

// TestSubmitClass: callback requests queue without blocking the submitter,
// are admitted within capacity and fire exactly once each; plain Submit
// runs in the default class once classes exist.
func TestSubmitClass(t *testing.T) {
	r := classRing(t, 2)
	c := r.NewClass("cb", 100)
	pr, pw := rawPipe(t)
	const n = 10
	var fired [n]atomic.Int32
	var wg sync.WaitGroup
	for i := range n {
		wg.Add(1)
		var s sqe.SQE
		s.PrepRead(int32(pr), make([]byte, 1), 0)
		done := func(res int32, _ uint32) {
			if res != 1 {
				t.Errorf("callback %d: res %d", i, res)
			}
			fired[i].Add(1)
			wg.Done()
		}
		var err error
		if i%2 == 0 {
			err = r.SubmitClass(c, &s, done)
		} else {
			err = r.Submit(&s, done)
		}
		if err != nil {
			t.Fatal(err)
		}
	}
	waitFor(t, "two in flight", func() bool { return ringInFlight(r) == 2 })
	time.Sleep(20 * time.Millisecond)
	if got := ringInFlight(r); got != 2 {
		t.Fatalf("%d in flight, capacity 2", got)
	}
	for range n {
		writeByte(t, pw)
	}
	within(t, "callbacks", wg.Wait)
	// Close returns only after every queued callback has fired: they go
	// through the ring (a NOP each) before the ring stops.
	for i := range n {
		if f := fired[i].Load(); f != 1 {
			t.Errorf("callback %d fired %d times", i, f)
		}
	}
	if st := c.Stats(); st.Ops != n/2 || st.InFlight != 0 {
		t.Errorf("class stats %+v, want %d ops", st, n/2)
	}
	other := classRing(t, 1).NewClass("other", 1)
	var s sqe.SQE
	s.PrepNop()
	if err := r.SubmitClass(other, &s, func(int32, uint32) {}); !errors.Is(err, syscall.EINVAL) {
		t.Errorf("a class of another ring: %v, want EINVAL", err)
	}
}

// TestSubmitClassShards: on a sharded ring, callback requests in a class
// spread over the shards as Submit's do, the queued ones included (they
// are submitted later, by whichever goroutine's completion admits them).
func TestSubmitClassShards(t *testing.T) {
	r := newRing(t, ringwake.Config{Shards: 2, IOCost: ringwake.IOCost{ReadOp: 1, ReadKiB: 1, Capacity: 2}})
	c := r.NewClass("cb", 100)
	pr, pw := rawPipe(t)
	before := r.ShardStats()
	const n = 16
	var wg sync.WaitGroup
	var bad atomic.Int32
	for range n {
		wg.Add(1)
		var s sqe.SQE
		s.PrepRead(int32(pr), make([]byte, 1), 0)
		if err := r.SubmitClass(c, &s, func(res int32, _ uint32) {
			if res != 1 {
				bad.Add(1)
			}
			wg.Done()
		}); err != nil {
			t.Fatal(err)
		}
	}
	for range n {
		writeByte(t, pw)
	}
	within(t, "callbacks", wg.Wait)
	if bad.Load() != 0 {
		t.Fatalf("%d reads failed", bad.Load())
	}
	var total uint64
	for i, st := range r.ShardStats() {
		got := st.Submitted - before[i].Submitted
		if got == 0 {
			t.Errorf("shard %d: no request of the class submitted", i)
		}
		total += got
	}
	if total != n {
		t.Errorf("%d requests submitted over the shards, want %d", total, n)
	}
}

// TestClassFileAndBatch: File calls with a ctx and batches run in the class
// of their ctx, and return the right data.
func TestClassFileAndBatch(t *testing.T) {
	r := newRing(t, ringwake.Config{NoCacheFastPath: true})
	c := r.NewClass("files", 500)
	ctx := ringwake.WithClass(context.Background(), c)
	data := pattern(7, 64<<10)
	f, err := r.Open(dataFile(t, data), unix.O_RDONLY, 0)
	if err != nil {
		t.Fatal(err)
	}
	defer f.Close()
	got := make([]byte, len(data))
	if _, err := f.ReadAtContext(ctx, got, 0); err != nil {
		t.Fatal(err)
	}
	equalBytes(t, "ReadAtContext", got, data)
	ops := make([]ringwake.Op, 8)
	for i := range ops {
		ops[i] = ringwake.Op{Buf: make([]byte, 4096), Off: int64(i) * 4096}
	}
	if err := f.ReadAtMany(ctx, ops); err != nil {
		t.Fatal(err)
	}
	for i := range ops {
		equalBytes(t, "ReadAtMany", ops[i].Buf, data[i*4096:(i+1)*4096])
	}
	st := c.Stats()
	if st.Ops < 9 || st.Bytes < uint64(len(data))+8*4096 || st.InFlight != 0 {
		t.Fatalf("class stats %+v after a 64 KiB read and 8 batched 4 KiB reads", st)
	}
	// No class in the ctx: the default class, not c.
	if _, err := f.ReadAt(got[:4096], 0); err != nil {
		t.Fatal(err)
	}
	if c.Stats().Ops != st.Ops {
		t.Fatal("a read without the class counted in it")
	}
}

// TestClassStress: many classes, blocking calls, batches and callbacks
// with random cancellation under a small capacity; every call returns,
// every callback fires once, and nothing stays in flight.
func TestClassStress(t *testing.T) {
	// Several requests in flight at once; and each request costing more
	// than the capacity, so that they run one at a time and an admission
	// nobody submits would hang everything.
	t.Run("several", func(t *testing.T) {
		classStress(t, ringwake.IOCost{ReadOp: 100, WriteOp: 100, ReadKiB: 1, WriteKiB: 1, Capacity: 600})
	})
	t.Run("alone", func(t *testing.T) { classStress(t, ringwake.IOCost{Capacity: 600}) })
}

func classStress(t *testing.T, cost ringwake.IOCost) {
	r := newRing(t, ringwake.Config{Entries: 64, IOCost: cost})
	name := dataFile(t, pattern(3, 256<<10))
	fd := openRead(t, name)
	var cls []*ringwake.Class
	for i := range 12 {
		cls = append(cls, r.NewClass("s", uint32(1+i*37)))
	}
	var wg sync.WaitGroup
	var fired, submitted atomic.Int64
	for g := range 24 {
		wg.Add(1)
		go func() {
			defer wg.Done()
			rng := rand.New(rand.NewPCG(uint64(g), 9))
			buf := make([]byte, 8192)
			for range 150 {
				c := cls[rng.IntN(len(cls))]
				ctx := ringwake.WithClass(context.Background(), c)
				var cancel context.CancelFunc = func() {}
				if rng.IntN(4) == 0 {
					ctx, cancel = context.WithTimeout(ctx, time.Duration(rng.IntN(200))*time.Microsecond)
				}
				switch rng.IntN(4) {
				case 0:
					_, err := r.ReadAt(ctx, fd, buf[:1+rng.IntN(8192)], int64(rng.IntN(200<<10)))
					if err != nil && !errors.Is(err, context.DeadlineExceeded) {
						t.Errorf("ReadAt: %v", err)
					}
				case 1:
					err := r.Nop(ctx)
					if err != nil && !errors.Is(err, context.DeadlineExceeded) {
						t.Errorf("Nop: %v", err)
					}
				case 2:
					ops := []ringwake.Op{{Fd: fd, Buf: make([]byte, 4096)}, {Fd: fd, Buf: make([]byte, 4096), Off: 8192}}
					err := r.Do(ctx, ops)
					if err != nil && !errors.Is(err, context.DeadlineExceeded) {
						t.Errorf("Do: %v", err)
					}
				case 3:
					var s sqe.SQE
					p := make([]byte, 4096)
					s.PrepRead(int32(fd), p, 0)
					submitted.Add(1)
					if err := r.SubmitClass(c, &s, func(res int32, _ uint32) {
						_ = p[0]
						if res != 4096 {
							t.Errorf("callback read res %d", res)
						}
						fired.Add(1)
					}); err != nil {
						t.Errorf("SubmitClass: %v", err)
						fired.Add(1)
					}
				}
				cancel()
			}
		}()
	}
	within(t, "workers", wg.Wait)
	waitFor(t, "callbacks", func() bool { return fired.Load() == submitted.Load() })
	for _, c := range cls {
		if st := c.Stats(); st.InFlight != 0 {
			t.Errorf("class %+v still in flight", st)
		}
	}
	time.Sleep(10 * time.Millisecond)
	if fired.Load() != submitted.Load() {
		t.Errorf("callbacks fired %d times for %d requests", fired.Load(), submitted.Load())
	}
}

// TestClassNopAllocs: a request in a class allocates nothing once its ctx
// exists, as without classes.
func TestClassNopAllocs(t *testing.T) {
	r := newRing(t, ringwake.Config{})
	ctx := ringwake.WithClass(context.Background(), r.NewClass("a", 10))
	if err := r.Nop(ctx); err != nil {
		t.Fatal(err)
	}
	if n := testing.AllocsPerRun(200, func() { _ = r.Nop(ctx) }); n != 0 {
		t.Fatalf("%v allocations per classed Nop", n)
	}
}

// ringInFlight is what the ring has published and not yet completed.
func ringInFlight(r *ringwake.Ring) uint64 {
	st := r.Stats()
	return st.Submitted - st.Completed
}

// BenchmarkNopSerialClassed is BenchmarkNopSerial in a class: what the
// scheduler costs once classes are on.
func BenchmarkNopSerialClassed(b *testing.B) {
	r := newRing(b, ringwake.Config{})
	benchNopSerial(b, r, ringwake.WithClass(context.Background(), r.NewClass("bench", 100)))
}

// BenchmarkReadAt4KCachedSerialClassed is BenchmarkReadAt4KCachedSerial in
// a class.
func BenchmarkReadAt4KCachedSerialClassed(b *testing.B) {
	r := newRing(b, ringwake.Config{})
	benchReadCached(b, r, ringwake.WithClass(context.Background(), r.NewClass("bench", 100)))
}
