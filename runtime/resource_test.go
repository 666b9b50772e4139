package runtime_test

import (
	"context"
	"syscall"
	"testing"
	"time"

	ringwake "github.com/ringwake/ringwake/runtime"
	"github.com/ringwake/ringwake/sqe"
)

func TestSubmitAllocs(t *testing.T) {
	r := newRing(t, ringwake.Config{Entries: 8})
	var s sqe.SQE
	s.PrepNop()
	done := make(chan int32, 1)
	cb := func(res int32, _ uint32) { done <- res }
	var bad int32
	allocs := testing.AllocsPerRun(1000, func() {
		if err := r.Submit(&s, cb); err != nil {
			panic(err)
		}
		if res := <-done; res != 0 {
			bad = res
		}
	})
	if bad != 0 {
		t.Fatalf("NOP res %d", bad)
	}
	if allocs != 0 {
		t.Errorf("Submit + completion: %v allocs/op, want 0", allocs)
	}
}

func TestReadAtAllocs(t *testing.T) {
	r := newRing(t, ringwake.Config{Entries: 8})
	fd := openRead(t, dataFile(t, pattern(14, 4096)))
	buf := make([]byte, 4096)
	cctx, cancel := context.WithCancel(context.Background())
	defer cancel()
	for _, tc := range []struct {
		name string
		ctx  context.Context
	}{{"Background", context.Background()}, {"WithCancel", cctx}} {
		t.Run(tc.name, func(t *testing.T) {
			var failed error
			allocs := testing.AllocsPerRun(1000, func() {
				if n, err := r.ReadAt(tc.ctx, fd, buf, 0); err != nil || n != len(buf) {
					failed = err
				}
			})
			if failed != nil {
				t.Fatal(failed)
			}
			if allocs != 0 {
				t.Errorf("ReadAt with a %s ctx: %v allocs/op, want 0", tc.name, allocs)
			}
		})
	}
	nopAllocs := testing.AllocsPerRun(1000, func() { r.Nop(cctx) })
	t.Logf("Nop: %v allocs/op", nopAllocs)
	if nopAllocs != 0 {
		t.Errorf("Nop: %v allocs/op, want 0", nopAllocs)
	}
}

func cpuTime(t *testing.T) time.Duration {
	t.Helper()
	var ru syscall.Rusage
	if err := syscall.Getrusage(syscall.RUSAGE_SELF, &ru); err != nil {
		t.Fatal(err)
	}
	return time.Duration(ru.Utime.Nano() + ru.Stime.Nano())
}

// TestIdleRingsCostNoCPU is a resource assertion: rings with nothing to do
// must not poll. The bound is generous; a spinning poller burns a whole
// second per second.
func TestIdleRingsCostNoCPU(t *testing.T) {
	const bound = 50 * time.Millisecond
	rings := make([]*ringwake.Ring, 4)
	for i := range rings {
		rings[i] = newRing(t, ringwake.Config{Entries: 64})
		if err := rings[i].Nop(context.Background()); err != nil {
			t.Fatal(err)
		}
	}
	time.Sleep(50 * time.Millisecond) // let the pollers settle into their idle state
	parks := make([]uint64, len(rings))
	for i, r := range rings {
		parks[i] = r.Stats().Parks
	}
	start := cpuTime(t)
	time.Sleep(time.Second)
	used := cpuTime(t) - start
	t.Logf("4 idle rings: %v of CPU over an idle second", used)
	if used > bound {
		t.Errorf("4 idle rings used %v of CPU in one second, want < %v", used, bound)
	}
	for i, r := range rings {
		if p := r.Stats().Parks; p-parks[i] > 1 {
			t.Errorf("ring %d's poller woke %d times while idle", i, p-parks[i])
		}
	}

	// A request that never completes must not make the poller spin either.
	r := newRing(t, ringwake.Config{Entries: 8})
	pr, _ := rawPipe(t)
	var s sqe.SQE
	s.PrepRead(int32(pr), make([]byte, 1), 0)
	if err := r.Submit(&s, func(int32, uint32) {}); err != nil {
		t.Fatal(err)
	}
	time.Sleep(50 * time.Millisecond)
	start = cpuTime(t)
	time.Sleep(time.Second)
	used = cpuTime(t) - start
	t.Logf("a ring waiting on one read: %v of CPU over a second", used)
	if used > bound {
		t.Errorf("a ring waiting on one read used %v of CPU in one second, want < %v", used, bound)
	}
}
