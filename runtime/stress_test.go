package runtime_test

import (
	"context"
	"errors"
	"fmt"
	"math/rand/v2"
	"os"
	"path/filepath"
	"sync"
	"sync/atomic"
	"syscall"
	"testing"
	"time"

	"golang.org/x/sys/unix"

	ringwake "github.com/ringwake/ringwake/runtime"
	"github.com/ringwake/ringwake/sqe"
)

// TestConcurrentRandomWritesVerified: 64 goroutines, each owning 1 MiB of a
// 64 MiB file, write random 4 KiB-multiple extents, then read everything back
// through the ring and through a fresh descriptor and compare checksums.
func TestConcurrentRandomWritesVerified(t *testing.T) {
	const (
		writers  = 64
		region   = 1 << 20
		block    = 4096
		fileSize = writers * region
		writesPB = 24
	)
	r := newRing(t, ringwake.Config{Entries: 64})
	ctx := context.Background()
	name := filepath.Join(t.TempDir(), "random")
	f, err := r.Open(name, os.O_RDWR|os.O_CREATE|os.O_TRUNC, 0o644)
	if err != nil {
		t.Fatal(err)
	}
	defer f.Close()
	if err := os.Truncate(name, fileSize); err != nil {
		t.Fatal(err)
	}

	// shadow[w] is what region w must hold; sums[w] are the crc32s of the
	// extents as written, checked again on the way back.
	shadow := make([][]byte, writers)
	extents := make([][]extent, writers)
	var wg sync.WaitGroup
	errs := make(chan error, writers)
	for w := range writers {
		shadow[w] = make([]byte, region)
		wg.Add(1)
		go func() {
			defer wg.Done()
			rng := rand.New(rand.NewPCG(uint64(w), 1))
			base := int64(w) * region
			for i := range writesPB {
				blocks := 1 + rng.IntN(8)
				off := rng.IntN(region/block-blocks+1) * block
				data := pattern(uint32(w*1000+i), blocks*block)
				var err error
				if w%2 == 0 {
					_, err = f.WriteAt(data, base+int64(off))
				} else {
					err = writeFullAt(ctx, r, int(f.Fd()), data, base+int64(off))
				}
				if err != nil {
					errs <- fmt.Errorf("writer %d: %w", w, err)
					return
				}
				copy(shadow[w][off:], data)
				extents[w] = append(extents[w], extent{off, len(data), crc(data)})
			}
		}()
	}
	wg.Wait()
	close(errs)
	for err := range errs {
		t.Fatal(err)
	}

	// Read back concurrently through the ring, each goroutine its own region.
	errs = make(chan error, writers)
	for w := range writers {
		wg.Add(1)
		go func() {
			defer wg.Done()
			base := int64(w) * region
			got := make([]byte, region)
			var err error
			if w%2 == 0 {
				err = readFullAt(ctx, r, int(f.Fd()), got, base)
			} else {
				_, err = f.ReadAt(got, base)
			}
			if err != nil {
				errs <- fmt.Errorf("reader %d: %w", w, err)
				return
			}
			if crc(got) != crc(shadow[w]) {
				errs <- fmt.Errorf("region %d: ring read-back checksum %08x, want %08x", w, crc(got), crc(shadow[w]))
				return
			}
			// The last write over each extent decides its content; the
			// extents no later write touched must still match as written.
			for i, e := range extents[w] {
				if overwritten(extents[w][i+1:], e.off, e.n) {
					continue
				}
				if s := crc(got[e.off : e.off+e.n]); s != e.sum {
					errs <- fmt.Errorf("region %d extent %d: checksum %08x, written %08x", w, i, s, e.sum)
					return
				}
			}
		}()
	}
	wg.Wait()
	close(errs)
	for err := range errs {
		t.Error(err)
	}

	fresh, err := os.Open(name)
	if err != nil {
		t.Fatal(err)
	}
	defer fresh.Close()
	got := make([]byte, region)
	for w := range writers {
		if _, err := fresh.ReadAt(got, int64(w)*region); err != nil {
			t.Fatal(err)
		}
		if crc(got) != crc(shadow[w]) {
			t.Errorf("region %d through a fresh os.File: checksum %08x, want %08x", w, crc(got), crc(shadow[w]))
		}
	}
}

// extent is one write: where, how long, and the crc32 of what was written.
type extent struct {
	off, n int
	sum    uint32
}

func overwritten(later []extent, off, n int) bool {
	for _, e := range later {
		if e.off < off+n && off < e.off+e.n {
			return true
		}
	}
	return false
}

// TestBackpressure: 2,000 blocking callers on a 16-entry ring whose slots are
// all taken. Every caller must sleep exactly once and then finish: a caller
// woken without a slot would sleep again and show in Stats.Backlogged.
func TestBackpressure(t *testing.T) {
	const callers = 2000
	r := newRing(t, ringwake.Config{Entries: 16})
	ctx := context.Background()
	capacity := r.Capacity()
	if capacity != 16 {
		t.Fatalf("Capacity = %d, want 16", capacity)
	}
	content := pattern(7, 512)
	fd := openRead(t, dataFile(t, content))
	pr, pw := rawPipe(t)

	// Hold every slot with a read of an empty pipe.
	var holders sync.WaitGroup
	for range capacity {
		holders.Add(1)
		go func() {
			defer holders.Done()
			b := make([]byte, 1)
			if n, err := r.ReadAt(ctx, pr, b, 0); n != 1 || err != nil {
				t.Errorf("slot-holding pipe read = %d, %v", n, err)
			}
		}()
	}
	waitFor(t, "every slot to be in flight", func() bool { return r.Stats().Submitted >= uint64(capacity) })
	before := r.Stats()
	if before.Backlogged != 0 {
		t.Fatalf("Backlogged = %d before the callers started", before.Backlogged)
	}

	var done atomic.Int64
	var failures atomic.Int64
	var wg sync.WaitGroup
	for i := range callers {
		wg.Add(1)
		go func() {
			defer wg.Done()
			if i%8 == 0 {
				b := make([]byte, len(content))
				n, err := r.ReadAt(ctx, fd, b, 0)
				if err != nil || n != len(content) || crc(b) != crc(content) {
					failures.Add(1)
					t.Errorf("caller %d ReadAt = %d, %v (crc ok %v)", i, n, err, crc(b[:n]) == crc(content))
					return
				}
			} else if err := r.Nop(ctx); err != nil {
				failures.Add(1)
				t.Errorf("caller %d Nop: %v", i, err)
				return
			}
			done.Add(1)
		}()
	}
	waitFor(t, "all 2,000 callers to sleep for a slot", func() bool { return r.Stats().Backlogged >= callers })

	if _, err := unix.Write(pw, make([]byte, capacity)); err != nil {
		t.Fatal(err)
	}
	within(t, "2,000 backlogged callers", wg.Wait)
	holders.Wait()

	after := r.Stats()
	t.Logf("backlogged %d, submitted %d, completed %d", after.Backlogged, after.Submitted-before.Submitted, after.Completed-before.Completed)
	if got := done.Load(); got != callers || failures.Load() != 0 {
		t.Fatalf("%d of %d callers finished, %d failed", got, callers, failures.Load())
	}
	if after.Backlogged != callers {
		t.Errorf("Stats.Backlogged = %d, want exactly %d: every caller sleeps once and each wake-up carries a slot", after.Backlogged, callers)
	}
	if got := after.Completed - before.Completed; got < callers+uint64(capacity) {
		t.Errorf("Stats.Completed moved by %d, want >= %d", got, callers+capacity)
	}
}

// TestBacklogNotStarvedByCallbacks: callbacks that resubmit on every
// completion, more of them than the ring has slots, must not take every
// freed slot: submitters asleep for a slot were first and must get their
// turn while the callbacks keep going.
func TestBacklogNotStarvedByCallbacks(t *testing.T) {
	const chains, callers, perCaller = 4, 4, 50
	r := newRing(t, ringwake.Config{Entries: 2})
	var s sqe.SQE
	s.PrepNop()
	var stop atomic.Bool
	var chainOps atomic.Int64
	var chainWG sync.WaitGroup
	var cb func(res int32, flags uint32)
	cb = func(res int32, _ uint32) {
		chainOps.Add(1)
		if stop.Load() {
			chainWG.Done()
			return
		}
		if err := r.Submit(&s, cb); err != nil {
			t.Errorf("resubmit: %v", err)
			chainWG.Done()
		}
	}
	for range chains {
		chainWG.Add(1)
		if err := r.Submit(&s, cb); err != nil {
			t.Fatal(err)
		}
	}
	var nops atomic.Int64
	var wg sync.WaitGroup
	for range callers {
		wg.Add(1)
		go func() {
			defer wg.Done()
			for range perCaller {
				if err := r.Nop(context.Background()); err != nil {
					t.Errorf("Nop: %v", err)
					return
				}
				nops.Add(1)
			}
		}()
	}
	finished, ok := waitUpTo(wg.Wait, 10*time.Second)
	if !ok {
		t.Errorf("blocking callers starved: %d of %d Nops done while resubmitting callbacks completed %d requests (Stats %+v)",
			nops.Load(), callers*perCaller, chainOps.Load(), r.Stats())
	}
	stop.Store(true)
	<-finished
	chainWG.Wait()
}

// TestGroupCommit: 64 writers, each WriteAt of its own block followed by
// Sync, 20 rounds. Concurrent Syncs must share fsyncs, and every write a
// Sync acknowledged must be in the file.
func TestGroupCommit(t *testing.T) {
	const writers, rounds = 64, 20
	syncs, fsyncs := groupCommit(t, newRing(t, ringwake.Config{Entries: 128}), writers, rounds)
	t.Logf("Syncs %d, fsyncs %d (%.1f Syncs per fsync)", syncs, fsyncs, float64(syncs)/float64(max(fsyncs, 1)))
	if syncs != writers*rounds {
		t.Errorf("SyncStats syncs = %d, want %d", syncs, writers*rounds)
	}
	if fsyncs == 0 || fsyncs >= syncs/2 {
		t.Errorf("SyncStats fsyncs = %d for %d Syncs: want at least one and fewer than half", fsyncs, syncs)
	}
}

// groupCommit runs writers goroutines on a File of r, each writing its own
// 4 KiB block and calling Sync, rounds times. Every Sync must succeed, and
// every block a Sync acknowledged must be in the file, read back through a
// fresh os.File. It returns the File's SyncStats.
func groupCommit(t *testing.T, r *ringwake.Ring, writers, rounds int) (syncs, fsyncs uint64) {
	t.Helper()
	const block = 4096
	name := filepath.Join(t.TempDir(), "journal")
	f, err := r.Open(name, os.O_RDWR|os.O_CREATE|os.O_TRUNC, 0o644)
	if err != nil {
		t.Fatal(err)
	}
	defer f.Close()
	acked := make([]atomic.Int32, writers) // rounds whose Sync returned nil
	var wg sync.WaitGroup
	for w := range writers {
		wg.Add(1)
		go func() {
			defer wg.Done()
			for round := range rounds {
				seq := uint32(round*writers + w)
				if _, err := f.WriteAt(pattern(seq, block), int64(seq)*block); err != nil {
					t.Errorf("writer %d round %d: WriteAt: %v", w, round, err)
					return
				}
				if err := f.Sync(); err != nil {
					t.Errorf("writer %d round %d: Sync: %v", w, round, err)
					return
				}
				acked[w].Add(1)
			}
		}()
	}
	within(t, fmt.Sprintf("%d writers with Sync", writers), wg.Wait)
	syncs, fsyncs = f.SyncStats()

	fresh, err := os.Open(name)
	if err != nil {
		t.Fatal(err)
	}
	defer fresh.Close()
	got := make([]byte, block)
	verified := 0
	for w := range writers {
		for round := range int(acked[w].Load()) {
			seq := uint32(round*writers + w)
			if _, err := fresh.ReadAt(got, int64(seq)*block); err != nil {
				t.Fatalf("block %d: %v", seq, err)
			}
			equalBytes(t, fmt.Sprintf("acknowledged block %d", seq), got, pattern(seq, block))
			verified++
		}
	}
	if verified != writers*rounds {
		t.Fatalf("verified %d blocks, want %d", verified, writers*rounds)
	}
	return syncs, fsyncs
}

// TestGroupCommitSmallRing: group commit on a ring far smaller than the
// number of writers, so Syncs and writes queue for slots while the fsync
// completion starts the next fsync from the poller.
func TestGroupCommitSmallRing(t *testing.T) {
	const writers, rounds, block = 16, 10, 4096
	r := newRing(t, ringwake.Config{Entries: 2})
	name := filepath.Join(t.TempDir(), "journal")
	f, err := r.Open(name, os.O_RDWR|os.O_CREATE|os.O_TRUNC, 0o644)
	if err != nil {
		t.Fatal(err)
	}
	defer f.Close()
	var acked atomic.Int32
	var wg sync.WaitGroup
	for w := range writers {
		wg.Add(1)
		go func() {
			defer wg.Done()
			for round := range rounds {
				off := int64(round*writers+w) * block
				if _, err := f.WriteAt(pattern(uint32(round*writers+w), block), off); err != nil {
					return
				}
				if err := f.Sync(); err != nil {
					return
				}
				acked.Add(1)
			}
		}()
	}
	if finished, ok := waitUpTo(wg.Wait, 10*time.Second); !ok {
		syncs, fsyncs := f.SyncStats()
		t.Errorf("ring hung: %d of %d Syncs acknowledged (Syncs %d, fsyncs %d, Backlogged %d): the fsync completion sleeps for a slot on the poller",
			acked.Load(), writers*rounds, syncs, fsyncs, r.Stats().Backlogged)
		r.Close()
		<-finished
		return
	}
	if n := acked.Load(); n != writers*rounds {
		t.Fatalf("%d of %d Syncs acknowledged", n, writers*rounds)
	}
	got, err := os.ReadFile(name)
	if err != nil {
		t.Fatal(err)
	}
	for i := range writers * rounds {
		if crc(got[i*block:(i+1)*block]) != crc(pattern(uint32(i), block)) {
			t.Fatalf("block %d: acknowledged write lost", i)
		}
	}
}

// TestSyncErrorIsSticky: a failed fsync fails every later Sync, since the
// kernel may have dropped the pages it could not write.
func TestSyncErrorIsSticky(t *testing.T) {
	r := newRing(t, ringwake.Config{Entries: 8})
	_, pw := rawPipe(t)
	f := r.NewFile(uintptr(mustDup(t, pw)), "pipe")
	defer f.Close()
	for i := range 3 {
		if err := f.Sync(); !errors.Is(err, syscall.EINVAL) {
			t.Fatalf("Sync %d on a pipe: %v; want the first fsync's EINVAL", i, err)
		}
	}
	if syncs, fsyncs := f.SyncStats(); syncs != 3 || fsyncs != 1 {
		t.Errorf("SyncStats = %d, %d; want 3 Syncs answered by the one failed fsync", syncs, fsyncs)
	}
}
