package wal

import (
	"bytes"
	"context"
	"errors"
	"math"
	"os"
	"strings"
	"sync"
	"syscall"
	"testing"

	"golang.org/x/sys/unix"

	"github.com/ringwake/ringwake/internal/uringtest"
)

// TestStickyFailure makes one write, or one fdatasync, fail with EIO while 64
// appenders run. The failure must be sticky: every Append not yet answered,
// and every later one, returns it; no record with an LSN above the first
// failed one is reported durable, even though the kernel completed the
// request behind the injected failure (and, for a write, the fdatasync
// linked to it) successfully; and after a reopen every acknowledged record
// is there.
func TestStickyFailure(t *testing.T) {
	for _, tc := range []struct {
		op  string
		bit uint32
	}{{"write", failNextWrite}, {"fdatasync", failNextSync}} {
		for mode, o := range modes(small) {
			t.Run(tc.op+"/"+mode, func(t *testing.T) {
				dir := t.TempDir()
				l := openT(t, dir, o)
				var mu sync.Mutex
				acked := map[uint64][]byte{}
				var failed []uint64 // LSNs of queued records that failed
				var errs []error
				var wg sync.WaitGroup
				for g := range 64 {
					wg.Add(1)
					go func() {
						defer wg.Done()
						for i := 0; ; i++ {
							r := testRecord(g, i)
							lsn, err := l.Append(context.Background(), r)
							mu.Lock()
							if err == nil {
								acked[lsn] = r
							} else {
								errs = append(errs, err)
								if lsn != 0 {
									failed = append(failed, lsn)
								}
							}
							mu.Unlock()
							if err != nil {
								return
							}
						}
					}()
				}
				waitFor(t, "some appends durable", func() bool { return l.DurableLSN() > 300 })
				l.testFail.Or(tc.bit)
				wg.Wait()

				if len(errs) != 64 {
					t.Fatalf("%d appenders saw an error, want all 64", len(errs))
				}
				for _, err := range errs {
					if !errors.Is(err, syscall.EIO) || !strings.Contains(err.Error(), tc.op) {
						t.Fatalf("Append error %q: want EIO from the %s", err, tc.op)
					}
				}
				var maxAcked uint64
				for lsn := range acked {
					maxAcked = max(maxAcked, lsn)
				}
				minFailed := uint64(math.MaxUint64)
				for _, lsn := range failed {
					minFailed = min(minFailed, lsn)
				}
				if maxAcked >= minFailed {
					t.Fatalf("LSN %d reported durable after LSN %d failed", maxAcked, minFailed)
				}
				if _, err := l.Append(context.Background(), []byte("later")); !errors.Is(err, syscall.EIO) {
					t.Fatalf("Append after the failure: %v", err)
				}
				if err := l.Close(); !errors.Is(err, syscall.EIO) {
					t.Fatalf("Close after the failure: %v", err)
				}
				// Close waited for every request in flight, including any
				// that completed successfully after the failure.
				if d := l.DurableLSN(); d != maxAcked {
					t.Fatalf("DurableLSN %d after Close, highest acknowledged %d", d, maxAcked)
				}

				l = openT(t, dir, o)
				defer l.Close()
				recs := replayAll(t, l)
				for _, r := range recs {
					if _, _, err := checkTestRecord(r.rec); err != nil {
						t.Fatalf("LSN %d: %v", r.lsn, err)
					}
				}
				for lsn, r := range acked {
					if lsn > uint64(len(recs)) || !bytes.Equal(recs[lsn-1].rec, r) {
						t.Fatalf("acknowledged LSN %d missing or changed after reopen", lsn)
					}
				}
				if _, err := l.Append(context.Background(), []byte("reopened")); err != nil {
					t.Fatalf("Append after reopen: %v", err)
				}
			})
		}
	}
}

// TestNoSpace runs the log on a 1 MiB tmpfs until it is full: the segment
// that does not fit fails with ENOSPC, which is then sticky; every record
// acknowledged before is intact after a reopen.
func TestNoSpace(t *testing.T) {
	uringtest.Require(t)
	if os.Geteuid() != 0 {
		if uringtest.InCI() {
			t.Fatal("TestNoSpace mounts a tmpfs and needs root in CI")
		}
		t.Skip("mounting a 1 MiB tmpfs needs root; set CI=true to make this a failure")
	}
	mnt := t.TempDir()
	if err := unix.Mount("tmpfs", mnt, "tmpfs", 0, "size=1m"); err != nil {
		t.Fatalf("mount tmpfs on %s: %v", mnt, err)
	}
	// Cleanups run last-in first-out: this one before TempDir's removal.
	t.Cleanup(func() {
		if err := unix.Unmount(mnt, 0); err != nil {
			t.Errorf("unmount %s: %v", mnt, err)
		}
	})
	o := Options{SegmentSize: 256 << 10, BufferSize: 16 << 10}
	l := openT(t, mnt, o)
	var acked [][]byte
	var err error
	for i := 0; err == nil; i++ {
		if i > 10_000 {
			t.Fatal("a 1 MiB file system never filled up")
		}
		r := testRecord(5, i)
		if _, err = l.Append(context.Background(), r); err == nil {
			acked = append(acked, r)
		}
	}
	if !errors.Is(err, syscall.ENOSPC) {
		t.Fatalf("Append on a full file system: %v, want ENOSPC", err)
	}
	if len(acked) < 100 {
		t.Fatalf("only %d records fit in 1 MiB", len(acked))
	}
	if _, err := l.Append(context.Background(), []byte("x")); !errors.Is(err, syscall.ENOSPC) {
		t.Fatalf("Append after ENOSPC: %v", err)
	}
	if err := l.Close(); !errors.Is(err, syscall.ENOSPC) {
		t.Fatalf("Close after ENOSPC: %v", err)
	}

	l = openT(t, mnt, o)
	defer l.Close()
	recs := replayAll(t, l)
	if len(recs) != len(acked) {
		t.Fatalf("replayed %d records, %d were acknowledged", len(recs), len(acked))
	}
	for i := range recs {
		if !bytes.Equal(recs[i].rec, acked[i]) {
			t.Fatalf("LSN %d differs", recs[i].lsn)
		}
	}
	// Still no room for the next segment.
	if _, err := l.Append(context.Background(), []byte("x")); !errors.Is(err, syscall.ENOSPC) {
		t.Fatalf("Append on the reopened full log: %v", err)
	}
}

// TestKernelCancelRetried: a write or fdatasync the kernel cancels before it
// runs (ECANCELED without the log having canceled anything) is submitted
// again: the appends it carried succeed, the log does not fail, and every
// record replays. A kernel that cancels every request makes the log fail
// with ECANCELED after maxKernelCancels, stickily, as any other error.
func TestKernelCancelRetried(t *testing.T) {
	for mode, o := range modes(small) {
		t.Run(mode, func(t *testing.T) {
			dir := t.TempDir()
			l := openT(t, dir, o)
			w := newLogWriter(t, l, 9)
			w.append()
			for i, bit := range []uint32{cancelNextWrite, cancelNextSync, cancelNextWrite | cancelNextSync} {
				before := l.Stats().Retried
				l.testFail.Or(bit)
				var wg sync.WaitGroup
				lsns := make(chan uint64, 16)
				for g := range 16 {
					wg.Add(1)
					go func() {
						defer wg.Done()
						r := testRecord(100+g, i)
						lsn, err := l.Append(context.Background(), r)
						if err != nil {
							t.Errorf("Append with a kernel-canceled %s: %v", bitName(bit), err)
							return
						}
						lsns <- lsn
						if _, _, err := checkTestRecord(r); err != nil {
							t.Error(err)
						}
					}()
				}
				wg.Wait()
				close(lsns)
				if t.Failed() {
					return
				}
				if l.testFail.Load()&bit != 0 {
					t.Fatalf("%s: the injected cancel was never consumed", bitName(bit))
				}
				if got := l.Stats().Retried; got == before {
					t.Fatalf("%s: Stats.Retried stayed at %d", bitName(bit), got)
				}
				for lsn := range lsns {
					if lsn > l.DurableLSN() {
						t.Fatalf("LSN %d acknowledged above DurableLSN %d", lsn, l.DurableLSN())
					}
				}
			}
			if err := l.Close(); err != nil {
				t.Fatal(err)
			}
			l = openT(t, dir, o)
			recs := replayAll(t, l)
			if len(recs) != 1+3*16 {
				t.Fatalf("replayed %d records, want %d", len(recs), 1+3*16)
			}
			for _, r := range recs {
				if _, _, err := checkTestRecord(r.rec); err != nil {
					t.Fatalf("LSN %d: %v", r.lsn, err)
				}
			}

			// Every request canceled, even those made directly: bounded,
			// then sticky.
			l.testFail.Or(cancelAlways)
			if _, err := l.Append(context.Background(), []byte("never")); !errors.Is(err, syscall.ECANCELED) {
				t.Fatalf("Append with every request canceled: %v; want ECANCELED", err)
			}
			if got := l.Stats().Retried; got != maxCancelsBypassed {
				t.Fatalf("Stats.Retried %d, want %d", got, maxCancelsBypassed)
			}
			l.testFail.And(^cancelAlways)
			if _, err := l.Append(context.Background(), []byte("later")); !errors.Is(err, syscall.ECANCELED) {
				t.Fatalf("Append after the log gave up: %v; want the sticky ECANCELED", err)
			}
			if err := l.Close(); !errors.Is(err, syscall.ECANCELED) {
				t.Fatalf("Close: %v", err)
			}
		})
	}
}

// TestKernelCancelStorm: while the kernel cancels every write and
// fdatasync through the ring (as io-wq does under a storm of signals that
// outlasts the retries), appenders whose ctx can end, whose commits go
// through the ring, still get their records durable: past maxKernelCancels
// the commits are made directly, and once the storm ends they go through
// the ring again. Every acknowledged record replays.
func TestKernelCancelStorm(t *testing.T) {
	for mode, o := range modes(small) {
		t.Run(mode, func(t *testing.T) {
			dir := t.TempDir()
			l := openT(t, dir, o)
			ctx, cancel := context.WithCancel(context.Background())
			defer cancel()
			appendAll := func(round, n int) {
				t.Helper()
				var wg sync.WaitGroup
				for g := range n {
					wg.Add(1)
					go func() {
						defer wg.Done()
						lsn, err := l.Append(ctx, testRecord(g, round))
						if err != nil {
							t.Errorf("round %d: Append: %v", round, err)
						} else if lsn > l.DurableLSN() {
							t.Errorf("round %d: LSN %d acknowledged above DurableLSN %d", round, lsn, l.DurableLSN())
						}
					}()
				}
				wg.Wait()
				if t.Failed() {
					t.FailNow()
				}
			}
			appendAll(0, 8)
			s0 := l.Stats()
			l.testFail.Or(cancelRing)
			for round := 1; round <= 3; round++ {
				appendAll(round, 16)
			}
			s1 := l.Stats()
			if got := s1.Retried - s0.Retried; got < maxKernelCancels {
				t.Fatalf("Stats.Retried rose by %d under the storm, want at least %d", got, maxKernelCancels)
			}
			if s1.InlineSyncs == s0.InlineSyncs {
				t.Fatal("no commit was made directly under the storm")
			}
			l.testFail.And(^cancelRing)
			appendAll(4, 16)
			s2 := l.Stats()
			if s2.Retried != s1.Retried {
				t.Fatalf("Stats.Retried rose by %d after the storm", s2.Retried-s1.Retried)
			}
			if s2.Syncs-s1.Syncs == s2.InlineSyncs-s1.InlineSyncs {
				t.Fatalf("after the storm every fdatasync (%d) was still made directly", s2.Syncs-s1.Syncs)
			}
			if err := l.Close(); err != nil {
				t.Fatal(err)
			}
			l = openT(t, dir, o)
			defer l.Close()
			if recs := replayAll(t, l); len(recs) != 8+4*16 {
				t.Fatalf("replayed %d records, want %d", len(recs), 8+4*16)
			}
		})
	}
}

func bitName(bit uint32) string {
	switch bit {
	case cancelNextWrite:
		return "write"
	case cancelNextSync:
		return "fdatasync"
	}
	return "write and fdatasync"
}

// TestZeroFillFailureStops: a zero-fill slice whose write fails stops the
// zero-fill of that segment (it is only an optimization) and nothing else:
// no slice is sent to it again, and appends go on. In buffered mode the
// write is linked to a sync_file_range, which then comes back ECANCELED;
// that must not pass for a kernel-side cancel, which would send the slice
// again with every commit.
func TestZeroFillFailureStops(t *testing.T) {
	for mode, o := range modes(Options{SegmentSize: 1 << 20}) {
		t.Run(mode, func(t *testing.T) {
			l := openT(t, t.TempDir(), o)
			defer l.Close()
			w := newLogWriter(t, l, 10)
			waitFor(t, "the next segment prepared", func() bool {
				l.mu.Lock()
				defer l.mu.Unlock()
				return l.next != nil && l.next.ready
			})
			l.testFail.Or(failNextZero)
			for range 300 {
				w.append()
			}
			if l.testFail.Load()&failNextZero != 0 {
				t.Fatal("no zero-fill write was sent in 300 appends")
			}
			if n := l.stats.zeroSlices.Load(); n != 1 {
				t.Fatalf("%d zero-fill slices sent to the next segment after the first failed, want 1", n)
			}
			w.expectFrom(l, 1)
		})
	}
}
