package runtime_test

import (
	"context"
	"io"
	"os"
	"sync"
	"syscall"
	"testing"
	"time"
	"unsafe"

	ringwake "github.com/ringwake/ringwake/runtime"
	"github.com/ringwake/ringwake/sqe"
)

// shardCases are the Rings the sharding benchmarks compare: one shard, and
// two with each way of picking a shard (the per-P hint the Ring uses, a
// shared round-robin counter, a random draw).
var shardCases = []struct {
	name   string
	shards int
	route  int
}{
	{"shards=1", 1, ringwake.RouteHint},
	{"shards=2", 2, ringwake.RouteHint},
	{"shards=2-roundrobin", 2, ringwake.RouteRoundRobin},
	{"shards=2-random", 2, ringwake.RouteRandom},
}

func shardBench(b *testing.B, cfg ringwake.Config, run func(b *testing.B, r *ringwake.Ring)) {
	for _, c := range shardCases {
		b.Run(c.name, func(b *testing.B) {
			cfg := cfg
			cfg.Shards = c.shards
			r := newRing(b, cfg)
			ringwake.SetRouting(r, c.route)
			cpu := startCPU(b)
			run(b, r)
			cpu.report(b)
			reportShardShare(b, r)
		})
	}
}

// BenchmarkShardsNopCallback: 32 NOPs in flight per shard, each callback
// resubmitting from its reaper. Each in-flight NOP is a chain with its own
// count, so the benchmark adds no cache line that both reapers write. A
// shard has room for 64, so that chains dealt unevenly to the shards
// (a goroutine moved to another P while it seeds them) do not queue for
// slots.
func BenchmarkShardsNopCallback(b *testing.B) {
	for _, c := range shardCases {
		b.Run(c.name, func(b *testing.B) {
			r := newRing(b, ringwake.Config{Entries: 64, Shards: c.shards})
			ringwake.SetRouting(r, c.route)
			nopChains(b, r, 32*c.shards)
			reportShardShare(b, r)
		})
	}
}

// nopChains runs chains NOP chains of b.N/chains NOPs each, every callback
// submitting its chain's next NOP. A chain fills 128 bytes, its allocation
// class, so that chains allocated one after another, and dealt to
// alternate shards, share no cache line: a chain's left, written on every
// completion, would otherwise sit beside another shard's chain's SQE,
// which that shard reads on every submission.
type nopChain struct {
	r     *ringwake.Ring
	s     sqe.SQE
	left  int // touched only by the callback of the chain's one NOP in flight
	cb    func(res int32, flags uint32)
	done  *sync.WaitGroup
	errCh chan error
	_     [128 - 104]byte
}

func (c *nopChain) fire(res int32, _ uint32) {
	if res != 0 {
		c.fail(syscall.Errno(-res))
		return
	}
	if c.left--; c.left <= 0 {
		c.done.Done()
		return
	}
	if err := c.r.Submit(&c.s, c.cb); err != nil {
		c.fail(err)
	}
}

func (c *nopChain) fail(err error) {
	select {
	case c.errCh <- err:
	default:
	}
	c.done.Done()
}

func nopChains(b *testing.B, r *ringwake.Ring, chains int) {
	b.ReportAllocs()
	cpu := startCPU(b)
	b.ResetTimer()
	nopChainsN(b, r, chains, b.N)
	b.StopTimer()
	reportOps(b)
	cpu.report(b)
}

// cpuClock is the process's user and system CPU time at a benchmark's start.
type cpuClock struct{ user, sys time.Duration }

func readCPU(b *testing.B) cpuClock {
	var ru syscall.Rusage
	if err := syscall.Getrusage(syscall.RUSAGE_SELF, &ru); err != nil {
		b.Fatal(err)
	}
	return cpuClock{time.Duration(ru.Utime.Nano()), time.Duration(ru.Stime.Nano())}
}

func startCPU(b *testing.B) cpuClock { return readCPU(b) }

// report adds the CPU per op since c, user and kernel apart: on 2 vCPUs a
// second shard can only help by using the second CPU, so time per op alone
// does not tell a cheaper request from a busier machine.
func (c cpuClock) report(b *testing.B) {
	now := readCPU(b)
	n := float64(max(b.N, 1))
	b.ReportMetric(float64(now.user-c.user)/n, "user-ns/op")
	b.ReportMetric(float64(now.sys-c.sys)/n, "sys-ns/op")
}

// reportShardShare adds the busiest shard's share of the completions: a
// share well above 1/Shards means one shard carried the run alone for a
// while.
func reportShardShare(b *testing.B, r *ringwake.Ring) {
	var total, top uint64
	for _, st := range r.ShardStats() {
		total += st.Completed
		top = max(top, st.Completed)
	}
	if total > 0 {
		b.ReportMetric(float64(top)/float64(total), "top-shard-share")
	}
}

// nopChainsN runs n NOPs on r in chains chains and waits for them.
func nopChainsN(b *testing.B, r *ringwake.Ring, chains, n int) {
	if sz := unsafe.Sizeof(nopChain{}); sz != 128 {
		b.Fatalf("nopChain is %d bytes, want 128 (see its padding)", sz)
	}
	var wg sync.WaitGroup
	errCh := make(chan error, 1)
	cs := make([]*nopChain, chains)
	per := max(1, n/chains)
	for i := range cs {
		c := &nopChain{r: r, left: per, done: &wg, errCh: errCh}
		c.s.PrepNop()
		c.cb = c.fire
		cs[i] = c
	}
	wg.Add(chains)
	for i, c := range cs {
		if err := r.Submit(&c.s, c.cb); err != nil {
			b.Error(err)
			wg.Add(i - chains)
			break
		}
	}
	wg.Wait()
	select {
	case err := <-errCh:
		b.Error(err)
	default:
	}
}

// BenchmarkShardsNopBlocking256: 256 goroutines doing blocking Nops.
func BenchmarkShardsNopBlocking256(b *testing.B) {
	shardBench(b, ringwake.Config{Entries: 256}, nopBlocking256)
}

// BenchmarkShardsReadAt4KCachedQD32: 32 goroutines reading random 4 KiB
// blocks of a file in the page cache through the ring (Ring.ReadAt on a
// bare descriptor never takes File's RWF_NOWAIT fast path).
func BenchmarkShardsReadAt4KCachedQD32(b *testing.B) {
	f := openCached(b)
	fd := int(f.Fd())
	ctx := context.Background()
	shardBench(b, ringwake.Config{Entries: 64}, func(b *testing.B, r *ringwake.Ring) {
		benchRandomReads(b, func(p []byte, off int64) (int, error) { return r.ReadAt(ctx, fd, p, off) })
	})
}

// BenchmarkShardsReadAt4KDirectQD32: 32 goroutines reading random 4 KiB
// O_DIRECT blocks.
func BenchmarkShardsReadAt4KDirectQD32(b *testing.B) {
	f := openDirect(b)
	fd := int(f.Fd())
	ctx := context.Background()
	shardBench(b, ringwake.Config{Entries: 64}, func(b *testing.B, r *ringwake.Ring) {
		benchRandomReads(b, func(p []byte, off int64) (int, error) { return r.ReadAt(ctx, fd, p, off) })
	})
}

// openCached opens the benchmark file buffered and reads it once, so that
// its pages are in the page cache.
func openCached(b *testing.B) *os.File {
	f, err := os.Open(benchData(b))
	if err != nil {
		b.Fatal(err)
	}
	b.Cleanup(func() { f.Close() })
	if _, err := io.Copy(io.Discard, f); err != nil {
		b.Fatal(err)
	}
	return f
}

// BenchmarkTwoRingsNopCallback is the bound sharding aims at: two
// independent Rings of one shard, 32 NOP chains each, run at once.
func BenchmarkTwoRingsNopCallback(b *testing.B) {
	r1 := newRing(b, ringwake.Config{Entries: 64})
	r2 := newRing(b, ringwake.Config{Entries: 64})
	var wg sync.WaitGroup
	half := b.N / 2
	cpu := startCPU(b)
	b.ResetTimer()
	for _, r := range []*ringwake.Ring{r1, r2} {
		wg.Add(1)
		go func() {
			defer wg.Done()
			nopChainsN(b, r, 32, half)
		}()
	}
	wg.Wait()
	b.StopTimer()
	reportOps(b)
	cpu.report(b)
}
