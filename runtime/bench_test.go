package runtime_test

import (
	"context"
	"errors"
	"math/rand/v2"
	"os"
	"path/filepath"
	"runtime"
	"sync/atomic"
	"syscall"
	"testing"
	"unsafe"

	"github.com/ringwake/ringwake/internal/uringtest"
	ringwake "github.com/ringwake/ringwake/runtime"
	"github.com/ringwake/ringwake/sqe"
)

func reportOps(b *testing.B) {
	b.ReportMetric(float64(b.N)/b.Elapsed().Seconds(), "ops/s")
}

// BenchmarkNopCallbackQD32: one submitter keeps 32 NOPs in flight; each
// completion's callback resubmits until b.N have completed.
func BenchmarkNopCallbackQD32(b *testing.B) {
	const depth = 32
	b.ReportAllocs()
	r := newRing(b, ringwake.Config{Entries: depth})
	var s sqe.SQE
	s.PrepNop()
	var issued, completed atomic.Int64
	n := int64(b.N)
	done := make(chan error, 1)
	var cb func(res int32, flags uint32)
	cb = func(res int32, _ uint32) {
		if res != 0 {
			select {
			case done <- syscall.Errno(-res):
			default:
			}
			return
		}
		if issued.Add(1) <= n {
			if err := r.Submit(&s, cb); err != nil {
				select {
				case done <- err:
				default:
				}
				return
			}
		}
		if completed.Add(1) == n {
			done <- nil
		}
	}
	b.ResetTimer()
	for range min(depth, n) {
		issued.Add(1)
		if err := r.Submit(&s, cb); err != nil {
			b.Fatal(err)
		}
	}
	if err := <-done; err != nil {
		b.Fatal(err)
	}
	b.StopTimer()
	reportOps(b)
}

// BenchmarkNopBlocking256: 256 goroutines each doing blocking Nops.
func BenchmarkNopBlocking256(b *testing.B) {
	nopBlocking256(b, newRing(b, ringwake.Config{Entries: 256}))
}

func nopBlocking256(b *testing.B, r *ringwake.Ring) {
	b.ReportAllocs()
	b.SetParallelism(max(1, 256/runtime.GOMAXPROCS(0)))
	ctx := context.Background()
	b.ResetTimer()
	b.RunParallel(func(pb *testing.PB) {
		for pb.Next() {
			if err := r.Nop(ctx); err != nil {
				b.Error(err)
				return
			}
		}
	})
	b.StopTimer()
	reportOps(b)
}

const (
	benchFileSize = 256 << 20
	benchBlock    = 4096
	benchDepth    = 32
)

// benchData returns the 256 MiB file the read benchmarks share, written once
// per test binary with real data, so that O_DIRECT reads hit the device
// rather than unwritten extents.
func benchData(b *testing.B) string {
	benchFile.mu.Lock()
	defer benchFile.mu.Unlock()
	if benchFile.path != "" {
		return benchFile.path
	}
	dir, err := os.MkdirTemp("", "ringwake-bench-")
	if err != nil {
		b.Fatal(err)
	}
	benchFile.dir = dir
	name := filepath.Join(dir, "data")
	f, err := os.Create(name)
	if err != nil {
		b.Fatal(err)
	}
	chunk := make([]byte, 1<<20)
	for off := 0; off < benchFileSize; off += len(chunk) {
		fillPattern(chunk, uint32(off>>20))
		if _, err := f.Write(chunk); err != nil {
			f.Close()
			b.Fatal(err)
		}
	}
	if err := f.Sync(); err != nil {
		b.Fatal(err)
	}
	if err := f.Close(); err != nil {
		b.Fatal(err)
	}
	benchFile.path = name
	benchFile.size = benchFileSize
	return name
}

// openDirect opens the benchmark file with O_DIRECT, or buffered (logged)
// where the file system refuses O_DIRECT.
func openDirect(b *testing.B) *os.File {
	name := benchData(b)
	f, err := os.OpenFile(name, os.O_RDONLY|syscall.O_DIRECT, 0)
	if errors.Is(err, syscall.EINVAL) {
		b.Logf("O_DIRECT refused here (%v): reading buffered, from the page cache", err)
		f, err = os.Open(name)
	}
	if err != nil {
		b.Fatal(err)
	}
	b.Cleanup(func() { f.Close() })
	return f
}

// alignedBlock is one 4 KiB buffer at a 4 KiB-aligned address, as O_DIRECT needs.
func alignedBlock() []byte {
	raw := make([]byte, 2*benchBlock)
	skip := int((benchBlock - uintptr(unsafe.Pointer(&raw[0]))%benchBlock) % benchBlock)
	return raw[skip : skip+benchBlock : skip+benchBlock]
}

func benchRandomReads(b *testing.B, read func(p []byte, off int64) (int, error)) {
	b.ReportAllocs()
	b.SetParallelism(max(1, benchDepth/runtime.GOMAXPROCS(0)))
	b.ResetTimer()
	b.RunParallel(func(pb *testing.PB) {
		buf := alignedBlock()
		for pb.Next() {
			off := rand.Int64N(benchFileSize/benchBlock) * benchBlock
			if n, err := read(buf, off); err != nil || n != benchBlock {
				b.Errorf("read at %d = %d, %v", off, n, err)
				return
			}
		}
	})
	b.StopTimer()
	reportOps(b)
}

// BenchmarkReadAt4KDirectQD32: 32 goroutines reading random aligned 4 KiB
// blocks through the ring; compare with BenchmarkOSFileReadAt4KDirectQD32.
func BenchmarkReadAt4KDirectQD32(b *testing.B) {
	uringtest.Require(b)
	f := openDirect(b)
	r := newRing(b, ringwake.Config{Entries: 64})
	fd := int(f.Fd())
	ctx := context.Background()
	benchRandomReads(b, func(p []byte, off int64) (int, error) { return r.ReadAt(ctx, fd, p, off) })
}

// BenchmarkOSFileReadAt4KDirectQD32 is the baseline: os.File.ReadAt, one
// blocking pread per goroutine, 32 goroutines.
func BenchmarkOSFileReadAt4KDirectQD32(b *testing.B) {
	uringtest.Require(b) // the same environment as its ring counterpart
	f := openDirect(b)
	benchRandomReads(b, f.ReadAt)
}

// The aligned buffer must really be aligned, or O_DIRECT reads fail with EINVAL.
func TestAlignedBlock(t *testing.T) {
	for range 10 {
		p := alignedBlock()
		if len(p) != benchBlock || uintptr(unsafe.Pointer(&p[0]))%benchBlock != 0 {
			t.Fatalf("alignedBlock: len %d at %p", len(p), &p[0])
		}
	}
}

// BenchmarkSubmitAndWaitNop32: one goroutine submits 32 NOPs and waits for
// them, over and over: liburing's submit_and_wait(32) loop
// (bench/reference/nop.c) in Go.
func BenchmarkSubmitAndWaitNop32(b *testing.B) {
	r := newRing(b, ringwake.Config{Entries: 64})
	ss := make([]sqe.SQE, 32)
	res := make([]int32, 32)
	for i := range ss {
		ss[i].PrepNop()
	}
	ctx := context.Background()
	b.ReportAllocs()
	b.ResetTimer()
	for i := 0; i < b.N; i += len(ss) {
		if err := r.SubmitAndWait(ctx, ss, res); err != nil {
			b.Fatal(err)
		}
	}
	b.StopTimer()
	reportOps(b)
}

// BenchmarkDo4KDirect32: one goroutine reads 32 random 4 KiB O_DIRECT
// blocks per Do.
func BenchmarkDo4KDirect32(b *testing.B) {
	uringtest.Require(b)
	f := openDirect(b)
	r := newRing(b, ringwake.Config{Entries: 64})
	ops := make([]ringwake.Op, 32)
	for i := range ops {
		ops[i] = ringwake.Op{Fd: int(f.Fd()), Buf: alignedBlock()}
	}
	ctx := context.Background()
	b.ReportAllocs()
	b.ResetTimer()
	for i := 0; i < b.N; i += len(ops) {
		for j := range ops {
			ops[j].Off = rand.Int64N(benchFileSize/benchBlock) * benchBlock
		}
		if err := r.Do(ctx, ops); err != nil {
			b.Fatal(err)
		}
	}
	b.StopTimer()
	reportOps(b)
}
