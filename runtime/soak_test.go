package runtime_test

import (
	"context"
	"encoding/binary"
	"errors"
	"flag"
	"fmt"
	"hash/crc32"
	"math/rand/v2"
	"os"
	"path/filepath"
	"sync"
	"sync/atomic"
	"syscall"
	"testing"
	"time"

	ringwake "github.com/ringwake/ringwake/runtime"
)

// soakFor is how long TestSoak runs, split between its two phases. The
// default keeps it in every `go test` run; a standing soak passes more, e.g.
// go test -run Soak -soak=30s ./runtime/
var soakFor = flag.Duration("soak", 5*time.Second, "duration of TestSoak (split between its phases)")

// A soak block is 4 KiB, self-describing and checksummed, so a block that is
// torn, misplaced or stale is told from the one last written:
//
//	[0:8] magic  [8:16] block index  [16:24] sequence  [24:28] writer
//	[28:4092] random payload  [4092:4096] crc32 of [0:4092]
//
// Sequence 0 is the never-written block: all zeros.
const (
	soakBlock = 4096
	soakMagic = "RWSOAK01"
)

func soakFill(b []byte, idx, seq uint64, writer uint32, rng *rand.Rand) {
	copy(b[0:8], soakMagic)
	binary.LittleEndian.PutUint64(b[8:16], idx)
	binary.LittleEndian.PutUint64(b[16:24], seq)
	binary.LittleEndian.PutUint32(b[24:28], writer)
	for i := 28; i+8 <= soakBlock-4; i += 8 {
		binary.LittleEndian.PutUint64(b[i:], rng.Uint64())
	}
	binary.LittleEndian.PutUint32(b[soakBlock-4:], crc32.ChecksumIEEE(b[:soakBlock-4]))
}

// soakParse returns the block's sequence number, or an error saying what is
// wrong with it.
func soakParse(b []byte, idx uint64) (uint64, error) {
	if string(b[0:8]) != soakMagic {
		for _, c := range b {
			if c != 0 {
				return 0, errors.New("neither a written block nor zeros")
			}
		}
		return 0, nil
	}
	if stored, sum := binary.LittleEndian.Uint32(b[soakBlock-4:]), crc32.ChecksumIEEE(b[:soakBlock-4]); stored != sum {
		return 0, fmt.Errorf("stored checksum %08x, content sums to %08x: torn or corrupted", stored, sum)
	}
	if got := binary.LittleEndian.Uint64(b[8:16]); got != idx {
		return 0, fmt.Errorf("holds block %d: misplaced", got)
	}
	return binary.LittleEndian.Uint64(b[16:24]), nil
}

// TestSoak: nothing acknowledged is ever lost. Phase File: writers put
// sequenced, checksummed blocks through File.WriteAt and WritevAt and Sync at
// random points; every block must read back, through a fresh os.File, as the
// last version written. Phase RingCancel: Ring.WriteAt/ReadAt/Fsync on an
// O_DIRECT file with random context cancellations; a canceled write may or
// may not have happened, but each block must hold one whole version, never a
// torn mix. Zero mismatches is the only passing result.
func TestSoak(t *testing.T) {
	r := newRing(t, ringwake.Config{Entries: 64})
	half := *soakFor / 2
	staleBefore := r.Stats().Stale
	t.Run("File", func(t *testing.T) { soakFile(t, r, half) })
	t.Run("RingCancel", func(t *testing.T) { soakRingCancel(t, r, half) })
	if st := r.Stats(); st.Stale != staleBefore {
		t.Errorf("%d completions dropped as stale during the soak", st.Stale-staleBefore)
	}
}

func soakFile(t *testing.T, r *ringwake.Ring, d time.Duration) {
	const writers, blocks = 16, 1024
	name := filepath.Join(t.TempDir(), "soak-file")
	f, err := r.Open(name, os.O_RDWR|os.O_CREATE|os.O_TRUNC, 0o644)
	if err != nil {
		t.Fatal(err)
	}
	defer f.Close()
	if err := os.Truncate(name, blocks*soakBlock); err != nil {
		t.Fatal(err)
	}
	// last[b] is the sequence of the last write of block b that returned;
	// acked[b] the last one a Sync returned after. Writer b%writers alone
	// touches block b, so neither needs a lock.
	last := make([]uint64, blocks)
	acked := make([]uint64, blocks)
	var ops, syncs, checked atomic.Int64
	deadline := time.Now().Add(d)
	var wg sync.WaitGroup
	for w := range writers {
		wg.Add(1)
		go func() {
			defer wg.Done()
			rng := rand.New(rand.NewPCG(uint64(w), 0x50a4))
			fresh, err := os.Open(name)
			if err != nil {
				t.Error(err)
				return
			}
			defer fresh.Close()
			buf := make([]byte, soakBlock)
			check := make([]byte, soakBlock)
			for time.Now().Before(deadline) {
				b := uint64(w + writers*rng.IntN(blocks/writers))
				seq := last[b] + 1
				soakFill(buf, b, seq, uint32(w), rng)
				var err error
				if w%3 == 0 {
					// The same block as two gathered halves.
					_, err = f.WritevAt(context.Background(), [][]byte{buf[:1000], buf[1000:]}, int64(b)*soakBlock)
				} else {
					_, err = f.WriteAt(buf, int64(b)*soakBlock)
				}
				if err != nil {
					t.Errorf("writer %d: block %d seq %d: %v", w, b, seq, err)
					return
				}
				last[b] = seq
				ops.Add(1)
				if rng.IntN(16) != 0 {
					continue
				}
				if err := f.Sync(); err != nil {
					t.Errorf("writer %d: Sync: %v", w, err)
					return
				}
				syncs.Add(1)
				for i := uint64(w); i < blocks; i += writers {
					acked[i] = last[i]
				}
				// Spot-check a few acknowledged blocks right away.
				for range 4 {
					i := uint64(w + writers*rng.IntN(blocks/writers))
					if _, err := fresh.ReadAt(check, int64(i)*soakBlock); err != nil {
						t.Errorf("writer %d: fresh read of block %d: %v", w, i, err)
						return
					}
					seq, err := soakParse(check, i)
					if err != nil || seq != acked[i] {
						t.Errorf("writer %d: acknowledged block %d: sequence %d (%v), want %d", w, i, seq, err, acked[i])
						return
					}
					checked.Add(1)
				}
			}
		}()
	}
	wg.Wait()
	if t.Failed() {
		return
	}
	if err := f.Sync(); err != nil {
		t.Fatalf("final Sync: %v", err)
	}
	copy(acked, last)

	fresh, err := os.Open(name)
	if err != nil {
		t.Fatal(err)
	}
	defer fresh.Close()
	buf := make([]byte, soakBlock)
	mismatches, written := 0, 0
	for b := uint64(0); b < blocks; b++ {
		if _, err := fresh.ReadAt(buf, int64(b)*soakBlock); err != nil {
			t.Fatalf("fresh read of block %d: %v", b, err)
		}
		seq, err := soakParse(buf, b)
		if err != nil || seq != acked[b] {
			mismatches++
			if mismatches <= 10 {
				t.Errorf("block %d: sequence %d (%v), acknowledged %d", b, seq, err, acked[b])
			}
		}
		if acked[b] > 0 {
			written++
		}
	}
	syncCalls, fsyncs := f.SyncStats()
	t.Logf("File phase: %d writes, %d Syncs (%d fsyncs), %d spot checks, %d blocks verified (%d written), %d mismatches",
		ops.Load(), syncCalls, fsyncs, checked.Load(), blocks, written, mismatches)
	if ops.Load() == 0 || syncs.Load() == 0 {
		t.Errorf("the soak did nothing: %d writes, %d Syncs", ops.Load(), syncs.Load())
	}
}

// soakState is what a block may hold: one sequence once a write or read has
// settled it, several while canceled writes leave it open.
type soakState struct {
	maybe []uint64
	next  uint64 // the next sequence to write
	acked uint64 // settled sequence when an Fsync last returned
}

func (s *soakState) has(seq uint64) bool {
	for _, m := range s.maybe {
		if m == seq {
			return true
		}
	}
	return false
}

func soakRingCancel(t *testing.T, r *ringwake.Ring, d time.Duration) {
	const workers, blocks = 16, 512
	name := filepath.Join(t.TempDir(), "soak-ring")
	// Whole 4 KiB O_DIRECT writes are all-or-nothing on the block device;
	// buffered ones only promise the acknowledged result.
	strict := true
	f, err := os.OpenFile(name, os.O_RDWR|os.O_CREATE|syscall.O_DIRECT, 0o644)
	if err != nil {
		t.Logf("O_DIRECT unavailable here (%v): buffered, verifying only settled blocks", err)
		strict = false
		f, err = os.OpenFile(name, os.O_RDWR|os.O_CREATE, 0o644)
	}
	if err != nil {
		t.Fatal(err)
	}
	defer f.Close()
	if err := f.Truncate(blocks * soakBlock); err != nil {
		t.Fatal(err)
	}
	fd := int(f.Fd())
	states := make([]soakState, blocks)
	for i := range states {
		states[i] = soakState{maybe: []uint64{0}, next: 1}
	}
	var writes, reads, fsyncs, canceled, canceledWrites, settledNew, settledOld atomic.Int64
	deadline := time.Now().Add(d)
	var wg sync.WaitGroup
	for w := range workers {
		wg.Add(1)
		go func() {
			defer wg.Done()
			rng := rand.New(rand.NewPCG(uint64(w), 0xcafe))
			buf := ringwake.AlignedBuffer(soakBlock, soakBlock)
			for time.Now().Before(deadline) {
				ctx, cancel := soakCtx(rng)
				b := uint64(w + workers*rng.IntN(blocks/workers))
				st := &states[b]
				switch op := rng.IntN(20); {
				case op < 12:
					seq := st.next
					st.next++
					soakFill(buf, b, seq, uint32(w), rng)
					n, err := r.WriteAt(ctx, fd, buf, int64(b)*soakBlock)
					switch {
					case err == nil && n == soakBlock:
						st.maybe = append(st.maybe[:0], seq)
						writes.Add(1)
					case err != nil && ctx.Err() != nil && errors.Is(err, ctx.Err()) && n == 0:
						// Happened or not: the next read or the final check says which.
						st.maybe = append(st.maybe, seq)
						canceled.Add(1)
						canceledWrites.Add(1)
					default:
						t.Errorf("worker %d: WriteAt block %d = %d, %v", w, b, n, err)
						cancel()
						return
					}
				case op < 18:
					clear(buf)
					n, err := r.ReadAt(ctx, fd, buf, int64(b)*soakBlock)
					switch {
					case err == nil && n == soakBlock:
						reads.Add(1)
						if !strict && len(st.maybe) > 1 {
							break
						}
						seq, perr := soakParse(buf, b)
						if perr != nil || !st.has(seq) {
							t.Errorf("worker %d: read of block %d: sequence %d (%v), want one of %v", w, b, seq, perr, st.maybe)
							cancel()
							return
						}
						if len(st.maybe) > 1 {
							if seq == st.maybe[len(st.maybe)-1] {
								settledNew.Add(1)
							} else {
								settledOld.Add(1)
							}
						}
						st.maybe = append(st.maybe[:0], seq)
					case err != nil && ctx.Err() != nil && errors.Is(err, ctx.Err()) && n == 0:
						canceled.Add(1)
					default:
						t.Errorf("worker %d: ReadAt block %d = %d, %v", w, b, n, err)
						cancel()
						return
					}
				default:
					err := r.Fsync(ctx, fd, rng.IntN(2) == 0)
					switch {
					case err == nil:
						fsyncs.Add(1)
						for i := w; i < blocks; i += workers {
							if s := &states[i]; len(s.maybe) == 1 {
								s.acked = s.maybe[0]
							}
						}
					case ctx.Err() != nil && errors.Is(err, ctx.Err()):
						canceled.Add(1)
					default:
						t.Errorf("worker %d: Fsync: %v", w, err)
						cancel()
						return
					}
				}
				cancel()
			}
		}()
	}
	wg.Wait()
	if t.Failed() {
		return
	}
	if err := r.Fsync(context.Background(), fd, false); err != nil {
		t.Fatalf("final Fsync: %v", err)
	}

	fresh, err := os.Open(name)
	if err != nil {
		t.Fatal(err)
	}
	defer fresh.Close()
	buf := make([]byte, soakBlock)
	mismatches, verified, open := 0, 0, 0
	for b := range uint64(blocks) {
		st := &states[b]
		if _, err := fresh.ReadAt(buf, int64(b)*soakBlock); err != nil {
			t.Fatalf("fresh read of block %d: %v", b, err)
		}
		if len(st.maybe) > 1 {
			open++
			if !strict {
				continue
			}
		}
		seq, err := soakParse(buf, b)
		if err != nil || !st.has(seq) || seq < st.acked {
			mismatches++
			if mismatches <= 10 {
				t.Errorf("block %d: sequence %d (%v), want one of %v, at least the acknowledged %d", b, seq, err, st.maybe, st.acked)
			}
			continue
		}
		verified++
	}
	t.Logf("RingCancel phase (O_DIRECT %v): %d writes, %d reads, %d fsyncs, %d canceled (%d writes, of which a later read found %d done and %d not), %d blocks verified (%d still open after a canceled write), %d mismatches",
		strict, writes.Load(), reads.Load(), fsyncs.Load(), canceled.Load(), canceledWrites.Load(), settledNew.Load(), settledOld.Load(), verified, open, mismatches)
	if writes.Load() == 0 || canceled.Load() == 0 {
		t.Errorf("the soak did not mix completed and canceled requests: %d writes, %d canceled", writes.Load(), canceled.Load())
	}
}

// soakCtx returns a context that, one time in three, ends during or
// before the request.
func soakCtx(rng *rand.Rand) (context.Context, context.CancelFunc) {
	switch rng.IntN(6) {
	case 0:
		ctx, cancel := context.WithCancel(context.Background())
		cancel()
		return ctx, cancel
	case 1:
		return context.WithTimeout(context.Background(), time.Duration(rng.IntN(200))*time.Microsecond)
	default:
		return context.Background(), func() {}
	}
}
