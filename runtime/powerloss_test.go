package runtime_test

import (
	"bytes"
	"errors"
	"fmt"
	"io"
	"math/rand/v2"
	"os"
	"strconv"
	"sync"
	"syscall"
	"testing"
	"time"

	"github.com/ringwake/ringwake/internal/faultfs"
	ringwake "github.com/ringwake/ringwake/runtime"
)

// File's group commit on internal/faultfs, a FUSE file system whose Cut
// drops whatever no fsync made durable and which fails chosen requests.

// syncBlock is version v of writer w's 4 KiB block.
func syncBlock(w, v int) []byte { return pattern(uint32(w)<<16|uint32(v), 4096) }

// TestPowerLossFileSync: 64 writers each rewrite their own 4 KiB block of a
// File and call Sync, concurrently (group commit), until the power is cut at
// a seeded moment; 12 rounds, a new file each, every other cut keeping a
// random half of the unsynced pages. After every cut, each block must hold
// the version its last acknowledged Sync covered or a later one its writer
// wrote, whole: what a Sync acknowledged survives.
func TestPowerLossFileSync(t *testing.T) {
	const writers, rounds, block = 64, 12, 4096
	r := newRing(t, ringwake.Config{Entries: 128})
	ffs := faultfs.New(t, faultfs.Config{})
	base := uint64(time.Now().UnixNano())
	if s := os.Getenv("FILE_POWERLOSS_SEED"); s != "" {
		base, _ = strconv.ParseUint(s, 10, 64)
	}
	t.Logf("base seed %d (FILE_POWERLOSS_SEED reproduces the run)", base)
	var totalAcked, totalFsyncs int
	for round := range rounds {
		seed := base + uint64(round)
		rng := rand.New(rand.NewPCG(seed, 0))
		cutAt := 1 + rng.IntN(20*writers)
		delay := time.Duration(rng.IntN(2000)) * time.Microsecond
		name := ffs.Path(fmt.Sprintf("journal-%d", round))
		f, err := r.Open(name, os.O_RDWR|os.O_CREATE|os.O_TRUNC, 0o644)
		if err != nil {
			t.Fatal(err)
		}
		if err := f.Sync(); err != nil {
			t.Fatal(err)
		}
		if err := ffs.SyncDir(""); err != nil {
			t.Fatal(err)
		}

		var mu sync.Mutex
		acked := make([]int, writers)   // last version a Sync acknowledged
		written := make([]int, writers) // last version whose WriteAt began
		for w := range writers {
			acked[w], written[w] = -1, -1
		}
		n := 0
		trigger := make(chan struct{})
		var wg sync.WaitGroup
		for w := range writers {
			wg.Add(1)
			go func() {
				defer wg.Done()
				for v := 0; ; v++ {
					mu.Lock()
					written[w] = v
					mu.Unlock()
					if _, err := f.WriteAt(syncBlock(w, v), int64(w)*block); err != nil {
						return
					}
					if err := f.Sync(); err != nil {
						return
					}
					mu.Lock()
					acked[w] = v
					if n++; n == cutAt {
						close(trigger)
					}
					mu.Unlock()
				}
			}()
		}
		<-trigger
		time.Sleep(delay)
		keep := float64(round%2) / 2 // every other cut keeps half the unsynced pages
		rep, err := ffs.CutKeeping(keep, seed)
		if err != nil {
			t.Fatal(err)
		}
		wg.Wait()
		syncs, fsyncs := f.SyncStats()
		if err := f.Sync(); !errors.Is(err, syscall.EIO) {
			t.Fatalf("Sync after the cut: %v; want EIO", err)
		}
		f.Close()

		got, err := os.ReadFile(ffs.Path(fmt.Sprintf("journal-%d", round))) // on the new mount
		if err != nil {
			t.Fatalf("round %d (seed %d): the file after the cut: %v", round, seed, err)
		}
		for w := range writers {
			b := make([]byte, block)
			if off := w * block; off < len(got) {
				copy(b, got[off:])
			}
			ok := acked[w] < 0 && bytes.Equal(b, make([]byte, block))
			for v := max(acked[w], 0); v <= written[w] && !ok; v++ {
				ok = bytes.Equal(b, syncBlock(w, v))
			}
			if !ok {
				t.Fatalf("round %d (seed %d): writer %d's block is not a version from %d (acknowledged) to %d (written)", round, seed, w, acked[w], written[w])
			}
		}
		totalAcked += n
		totalFsyncs += int(fsyncs)
		t.Logf("round %d (seed %d): cut after %d acknowledged Syncs (%d Syncs, %d fsyncs), dropping %d bytes, keeping %d", round, seed, n, syncs, fsyncs, rep.DroppedBytes, rep.KeptBytes)
	}
	t.Logf("%d rounds: %d Syncs acknowledged by %d fsyncs, every acknowledged block intact after its cut", rounds, totalAcked, totalFsyncs)
}

// TestFaultFileSync: the first fsync fails with EIO while 64 writers wait
// in Sync. The failure is sticky: every Sync it covers and every later one
// returns it (an *os.PathError naming "sync" and the file), one fsync is
// issued in all, and another File on the same ring syncs as before.
func TestFaultFileSync(t *testing.T) {
	const writers = 64
	r := newRing(t, ringwake.Config{Entries: 128})
	ffs := faultfs.New(t, faultfs.Config{})
	name := ffs.Path("failing")
	f, err := r.Open(name, os.O_RDWR|os.O_CREATE, 0o644)
	if err != nil {
		t.Fatal(err)
	}
	defer f.Close()
	other, err := r.Open(ffs.Path("other"), os.O_RDWR|os.O_CREATE, 0o644)
	if err != nil {
		t.Fatal(err)
	}
	defer other.Close()
	if err := ffs.Inject(faultfs.Fault{Op: faultfs.OpFsync, Path: "failing", Count: 1}); err != nil {
		t.Fatal(err)
	}
	errs := make([]error, writers)
	var wg sync.WaitGroup
	for w := range writers {
		wg.Add(1)
		go func() {
			defer wg.Done()
			if _, err := f.WriteAt(syncBlock(w, 0), int64(w)*4096); err != nil {
				errs[w] = err
				return
			}
			errs[w] = f.Sync()
		}()
	}
	wg.Wait()
	check := func(what string, err error) {
		t.Helper()
		var pe *os.PathError
		if !errors.Is(err, syscall.EIO) || !errors.As(err, &pe) || pe.Op != "sync" || pe.Path != name {
			t.Fatalf("%s: %v; want an *os.PathError for sync %s wrapping EIO", what, err, name)
		}
	}
	for w, err := range errs {
		check(fmt.Sprintf("writer %d's Sync", w), err)
	}
	// The fault is gone, yet the File keeps its failure.
	check("Sync after the failure", f.Sync())
	if syncs, fsyncs := f.SyncStats(); syncs != writers+1 || fsyncs != 1 {
		t.Fatalf("SyncStats = %d Syncs, %d fsyncs; want %d answered by the one failed fsync", syncs, fsyncs, writers+1)
	}
	if _, err := other.WriteAt([]byte("ok"), 0); err != nil {
		t.Fatal(err)
	}
	if err := other.Sync(); err != nil {
		t.Fatalf("Sync of another File after the failure: %v", err)
	}
}

// TestFaultFileReadWrite: eight goroutines each write and read back their
// own File; every write to file 3 and every read of file 5 fail with EIO.
// Exactly those callers get the error, as an *os.PathError naming the
// operation and the file; the six others see none; once the disk heals,
// files 3 and 5 work again.
func TestFaultFileReadWrite(t *testing.T) {
	const files, iters = 8, 50
	r := newRing(t, ringwake.Config{Entries: 64})
	// DirectIO: every read reaches the file system, none is served from
	// the page cache.
	ffs := faultfs.New(t, faultfs.Config{DirectIO: true})
	fs := make([]*ringwake.File, files)
	for i := range fs {
		f, err := r.Open(ffs.Path(fmt.Sprintf("f%d", i)), os.O_RDWR|os.O_CREATE, 0o644)
		if err != nil {
			t.Fatal(err)
		}
		defer f.Close()
		fs[i] = f
	}
	for _, ft := range []faultfs.Fault{
		{Op: faultfs.OpWrite, Path: "f3"},
		{Op: faultfs.OpRead, Path: "f5"},
	} {
		if err := ffs.Inject(ft); err != nil {
			t.Fatal(err)
		}
	}
	errs := make([]error, files)
	var wg sync.WaitGroup
	for i := range files {
		wg.Add(1)
		go func() {
			defer wg.Done()
			buf := make([]byte, 4096)
			for v := range iters {
				want := syncBlock(i, v)
				if _, err := fs[i].WriteAt(want, 0); err != nil {
					errs[i] = err
					return
				}
				if _, err := fs[i].ReadAt(buf, 0); err != nil && err != io.EOF {
					errs[i] = err
					return
				}
				if !bytes.Equal(buf, want) {
					errs[i] = fmt.Errorf("f%d: read back differs at version %d", i, v)
					return
				}
			}
		}()
	}
	wg.Wait()
	for i, err := range errs {
		var pe *os.PathError
		switch i {
		case 3, 5:
			op := map[int]string{3: "write", 5: "read"}[i]
			if !errors.Is(err, syscall.EIO) || !errors.As(err, &pe) || pe.Op != op || pe.Path != fs[i].Name() {
				t.Errorf("f%d: %v; want an *os.PathError for %s %s wrapping EIO", i, err, op, fs[i].Name())
			}
		default:
			if err != nil {
				t.Errorf("f%d, with no fault: %v", i, err)
			}
		}
	}
	if err := ffs.ClearFaults(); err != nil {
		t.Fatal(err)
	}
	buf := make([]byte, 2)
	for _, i := range []int{3, 5} {
		if _, err := fs[i].WriteAt([]byte("ok"), 0); err != nil {
			t.Fatalf("f%d after the disk healed: %v", i, err)
		}
		if _, err := fs[i].ReadAt(buf, 0); err != nil || string(buf) != "ok" {
			t.Fatalf("f%d after the disk healed: %q, %v", i, buf, err)
		}
	}
}
