package runtime_test

import (
	"context"
	"errors"
	"math/rand/v2"
	"os"
	goruntime "runtime"
	"sync"
	"sync/atomic"
	"syscall"
	"testing"
	"time"

	"github.com/ringwake/ringwake/internal/uringtest"
	ringwake "github.com/ringwake/ringwake/runtime"
	"github.com/ringwake/ringwake/sqe"
)

// Config.MaxWorkers reaches every shard's ring: the kernel reads back the
// limits New set. New runs on this locked thread, so the thread is among
// the ring's submitters and its io-wq carries the caps.
func TestMaxWorkersReadBack(t *testing.T) {
	goruntime.LockOSThread()
	defer goruntime.UnlockOSThread()
	for _, shards := range []int{1, 2} {
		r := newRing(t, ringwake.Config{Entries: 8, Shards: shards, MaxWorkers: [2]uint32{2, 3}})
		want := [2]uint32{2, 3}
		if r.Backend() == ringwake.BackendFallback {
			want = [2]uint32{} // ignored: its pool is bounded by Entries
		}
		got, err := ringwake.IOWQLimits(r)
		if err != nil {
			t.Fatalf("reading the io-wq limits back: %v", err)
		}
		if len(got) != shards {
			t.Fatalf("%d shards read back, want %d", len(got), shards)
		}
		for i, l := range got {
			if l != want {
				t.Fatalf("Shards %d: shard %d io-wq limits %v; want %v", shards, i, l, want)
			}
		}
	}
	if _, err := ringwake.New(ringwake.Config{Entries: 8, MaxWorkers: [2]uint32{1 << 31, 0}}); err == nil {
		t.Fatal("New with a MaxWorkers limit above INT_MAX succeeded")
	}
	if _, err := ringwake.New(ringwake.Config{Shards: -1}); !errors.Is(err, syscall.EINVAL) {
		t.Fatalf("New with Shards -1 = %v; want EINVAL", err)
	}
}

// The main calls on a 2-shard Ring: blocking reads and writes, a linked
// chain through SubmitBatch, SubmitAndWait, Do, registered buffers and
// files, and the counters (Stats is the sum of ShardStats).
func TestShardedAPI(t *testing.T) {
	r := newRing(t, ringwake.Config{Entries: 16, Shards: 2})
	if got := len(r.ShardStats()); got != 2 {
		t.Fatalf("ShardStats has %d shards, want 2", got)
	}
	if r.Capacity() != 32 {
		t.Fatalf("Capacity %d, want 2 shards of 16", r.Capacity())
	}
	want := pattern(7, 64<<10)
	name := dataFile(t, want)
	fd := openRead(t, name)
	ctx := context.Background()
	// Enough calls from enough goroutines that both shards serve some.
	var wg sync.WaitGroup
	for g := range 8 {
		wg.Add(1)
		go func() {
			defer wg.Done()
			buf := make([]byte, 4096)
			for i := range 50 {
				off := int64((g*50+i)%16) * 4096
				if n, err := r.ReadAt(ctx, fd, buf, off); err != nil || n != 4096 {
					t.Errorf("ReadAt(%d) = %d, %v", off, n, err)
					return
				}
				equalBytes(t, "ReadAt", buf, want[off:off+4096])
				goruntime.Gosched()
			}
		}()
	}
	within(t, "8 goroutines reading", wg.Wait)

	// A write linked to its fdatasync: one chain, one shard.
	wf, err := os.Create(t.TempDir() + "/w")
	if err != nil {
		t.Fatal(err)
	}
	defer wf.Close()
	data := pattern(9, 4096)
	ss := writeSyncChain(int(wf.Fd()), data)
	res := make(chan int32, 2)
	done := func(r int32, _ uint32) { res <- r }
	if err := r.SubmitBatch(ss, []func(int32, uint32){done, done}); err != nil {
		t.Fatalf("SubmitBatch: %v", err)
	}
	if a, b := <-res, <-res; !(a == 4096 && b == 0 || a == 0 && b == 4096) {
		t.Fatalf("linked write+fdatasync results %d, %d; want 4096 and 0", a, b)
	}
	goruntime.KeepAlive(data)

	// SubmitAndWait of a batch larger than one shard's slots.
	bufs := make([][]byte, 40)
	batch := make([]sqe.SQE, 40)
	out := make([]int32, 40)
	for i := range batch {
		bufs[i] = make([]byte, 512)
		batch[i].PrepRead(int32(fd), bufs[i], uint64(i*512))
	}
	if err := r.SubmitAndWait(ctx, batch, out); err != nil {
		t.Fatalf("SubmitAndWait: %v", err)
	}
	for i := range batch {
		if out[i] != 512 {
			t.Fatalf("SubmitAndWait read %d: res %d, want 512", i, out[i])
		}
		equalBytes(t, "SubmitAndWait read", bufs[i], want[i*512:(i+1)*512])
	}

	ops := make([]ringwake.Op, 20)
	for i := range ops {
		ops[i] = ringwake.Op{Fd: fd, Buf: make([]byte, 3000), Off: int64(i * 3000)}
	}
	if err := r.Do(ctx, ops); err != nil {
		t.Fatalf("Do: %v", err)
	}
	for i := range ops {
		equalBytes(t, "Do read", ops[i].Buf, want[i*3000:(i+1)*3000])
	}

	// Registered buffers and files: every shard has them under one index.
	fb, err := r.RegisterBuffers(2, 4096)
	if err != nil {
		t.Fatalf("RegisterBuffers: %v", err)
	}
	ff, err := r.RegisterFile(fd)
	if err != nil {
		t.Fatalf("RegisterFile: %v", err)
	}
	// Each loop's calls alternate between the shards.
	for i := range 40 {
		off := int64(i%16) * 4096
		b := fb.Buf(i % 2)
		if n, err := fb.ReadAt(ctx, fd, i%2, b, off); err != nil || n != 4096 {
			t.Fatalf("fixed-buffer ReadAt %d = %d, %v", i, n, err)
		}
		equalBytes(t, "fixed-buffer ReadAt", b, want[off:off+4096])
	}
	buf := make([]byte, 4096)
	for i := range 40 {
		off := int64(i%16) * 4096
		if n, err := ff.ReadAt(ctx, buf, off); err != nil || n != 4096 {
			t.Fatalf("fixed-file ReadAt %d = %d, %v", i, n, err)
		}
		equalBytes(t, "fixed-file ReadAt", buf, want[off:off+4096])
	}
	if err := ff.Unregister(); err != nil {
		t.Fatalf("FixedFile.Unregister: %v", err)
	}
	if err := fb.Unregister(); err != nil {
		t.Fatalf("FixedBuffers.Unregister: %v", err)
	}

	per := r.ShardStats()
	sum := r.Stats()
	if per[0].Submitted+per[1].Submitted != sum.Submitted || per[0].Completed+per[1].Completed != sum.Completed {
		t.Fatalf("Stats %+v is not the sum of ShardStats %+v", sum, per)
	}
	for i, s := range per {
		if s.Completed == 0 {
			t.Errorf("shard %d completed nothing: %+v", i, per)
		}
	}
}

// A File's concurrent Syncs on a sharded Ring still share fsyncs.
func TestShardedGroupCommit(t *testing.T) {
	const writers, rounds = 32, 10
	syncs, fsyncs := groupCommit(t, newRing(t, ringwake.Config{Entries: 64, Shards: 2}), writers, rounds)
	if syncs != writers*rounds {
		t.Errorf("SyncStats syncs = %d, want %d", syncs, writers*rounds)
	}
	if fsyncs == 0 || fsyncs >= syncs/2 {
		t.Errorf("SyncStats fsyncs = %d for %d Syncs: want at least one and fewer than half", fsyncs, syncs)
	}
}

// Exactly once across shards: callback chains that resubmit from their
// callbacks (on rings small enough that callbacks find no slot and defer),
// blocking calls canceled by their contexts, and reads of a pipe that never
// complete on their own, all cut short by Close. Every request whose Submit
// succeeded fires exactly once; none that failed fires.
//
// Under round robin, callbacks submit to the other shard too, and with no
// slot free there they must defer, not sleep: two reapers asleep on each
// other's shards would never wake.
func TestShardsExactlyOnceStress(t *testing.T) {
	for round := range 3 {
		shardsStress(t, round, ringwake.RouteHint)
		shardsStress(t, round, ringwake.RouteRoundRobin)
	}
}

type onceToken struct{ fired atomic.Int32 }

func shardsStress(t *testing.T, round, route int) {
	uringtest.Require(t)
	r, err := ringwake.New(ringwake.Config{Entries: 8, Shards: 2})
	if err != nil {
		t.Fatalf("New: %v", err)
	}
	t.Cleanup(func() { r.Close() }) // Close is idempotent: this covers a failure before the Close below
	ringwake.SetRouting(r, route)
	pr, _ := rawPipe(t)
	var (
		mu     sync.Mutex
		live   []*onceToken // Submit succeeded: must fire exactly once
		wg     sync.WaitGroup
		closed atomic.Bool
	)
	var submit func()
	submit = func() {
		tk := new(onceToken)
		var s sqe.SQE
		s.PrepNop()
		err := r.Submit(&s, func(res int32, _ uint32) {
			if n := tk.fired.Add(1); n != 1 {
				t.Errorf("callback fired %d times", n)
			}
			if res == 0 && !closed.Load() {
				submit() // refill from the reaper, which must never sleep for a slot
			}
		})
		if err == nil {
			mu.Lock()
			live = append(live, tk)
			mu.Unlock()
		} else if !errors.Is(err, ringwake.ErrClosed) {
			t.Errorf("Submit: %v", err)
		}
	}
	for range 12 {
		submit()
	}
	// Pipe reads: in flight on both shards until Close cancels them.
	for range 6 {
		tk := new(onceToken)
		var s sqe.SQE
		s.PrepRead(int32(pr), make([]byte, 1), 0)
		if err := r.Submit(&s, func(res int32, _ uint32) {
			if n := tk.fired.Add(1); n != 1 {
				t.Errorf("pipe read callback fired %d times", n)
			}
		}); err != nil {
			t.Fatalf("pipe read Submit: %v", err)
		}
		mu.Lock()
		live = append(live, tk)
		mu.Unlock()
	}
	for g := range 16 {
		wg.Add(1)
		go func() {
			defer wg.Done()
			for i := 0; ; i++ {
				ctx, cancel := context.WithTimeout(context.Background(), time.Duration(rand.IntN(50))*time.Microsecond)
				err := r.Nop(ctx)
				cancel()
				switch {
				case err == nil, errors.Is(err, context.DeadlineExceeded):
				case errors.Is(err, ringwake.ErrClosed):
					return
				default:
					t.Errorf("goroutine %d Nop %d: %v", g, i, err)
					return
				}
			}
		}()
	}
	time.Sleep(time.Duration(20+10*round) * time.Millisecond)
	per := r.ShardStats()
	closed.Store(true)
	if err := r.Close(); err != nil {
		t.Fatalf("Close: %v", err)
	}
	within(t, "blocking callers after Close", wg.Wait)
	mu.Lock()
	defer mu.Unlock()
	for i, tk := range live {
		if n := tk.fired.Load(); n != 1 {
			t.Fatalf("request %d of %d fired %d times, want exactly once", i, len(live), n)
		}
	}
	for i, s := range per {
		if s.Completed == 0 {
			t.Errorf("shard %d completed nothing before Close: %+v", i, per)
		}
	}
}

// A callback's Submit goes to the shard whose reaper runs the callback: one
// chain of NOPs, each submitted from its predecessor's callback, completes
// on one shard. Dealt in turn instead, like other submissions, the chain
// would split about evenly. Stacks that grow during the first callbacks can
// hide a reaper for the rest of its batch (see shard.go), so the chain is
// measured after a warm-up, and a few strays are allowed.
func TestShardCallbacksStayOnShard(t *testing.T) {
	r := newRing(t, ringwake.Config{Entries: 8, Shards: 2})
	chain := func(n int) {
		done := make(chan struct{})
		var s sqe.SQE
		s.PrepNop()
		left := n
		var cb func(res int32, _ uint32)
		cb = func(res int32, _ uint32) {
			if res != 0 {
				t.Errorf("NOP: %v", syscall.Errno(-res))
			}
			if left--; left == 0 || res != 0 {
				close(done)
				return
			}
			if err := r.Submit(&s, cb); err != nil {
				t.Errorf("Submit from a callback: %v", err)
				close(done)
			}
		}
		if err := r.Submit(&s, cb); err != nil {
			t.Fatalf("Submit: %v", err)
		}
		within(t, "the chain", func() { <-done })
	}
	chain(200)
	before := r.ShardStats()
	const n = 4000
	chain(n)
	after := r.ShardStats()
	top := uint64(0)
	for i := range after {
		top = max(top, after[i].Completed-before[i].Completed)
	}
	if top < n*98/100 {
		t.Errorf("busiest shard completed %d of the chain's %d NOPs, want nearly all (before %+v, after %+v)", top, n, before, after)
	}
}
