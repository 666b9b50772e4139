package runtime_test

import (
	"context"
	"testing"

	ringwake "github.com/ringwake/ringwake/runtime"
)

// The paths that I/O classes hook, on a ring without classes: each pays
// one atomic load for "is any class registered?". Run side by side with a
// build without the hook (docs/benchmarks.md, I/O classes).

// BenchmarkNopSerial: one goroutine's blocking Nops, each reaped inline.
func BenchmarkNopSerial(b *testing.B) {
	benchNopSerial(b, newRing(b, ringwake.Config{}), context.Background())
}

func benchNopSerial(b *testing.B, r *ringwake.Ring, ctx context.Context) {
	b.ReportAllocs()
	for b.Loop() {
		if err := r.Nop(ctx); err != nil {
			b.Fatal(err)
		}
	}
	reportOps(b)
}

// BenchmarkReadAt4KCachedSerial: one goroutine's Ring.ReadAt of 4 KiB in
// the page cache, through the ring.
func BenchmarkReadAt4KCachedSerial(b *testing.B) {
	benchReadCached(b, newRing(b, ringwake.Config{}), context.Background())
}

func benchReadCached(b *testing.B, r *ringwake.Ring, ctx context.Context) {
	fd := openRead(b, dataFile(b, pattern(1, 1<<20)))
	buf := make([]byte, 4096)
	b.ReportAllocs()
	off := int64(0)
	for b.Loop() {
		if _, err := r.ReadAt(ctx, fd, buf, off); err != nil {
			b.Fatal(err)
		}
		off = (off + 4096) % (1 << 20)
	}
	reportOps(b)
}
