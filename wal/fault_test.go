package wal

import (
	"context"
	"errors"
	"math"
	"strings"
	"sync"
	"sync/atomic"
	"syscall"
	"testing"
	"time"

	"github.com/ringwake/ringwake/internal/faultfs"
)

// TestFaultDisk runs 64 appenders on faultfs until the disk starts failing
// under them: every write or every fdatasync to a segment fails with EIO or
// ENOSPC (a fault on log/*.wal, or a space budget), or the fsyncs that
// prepare the next segment fail, or writes and fdatasyncs fail at random
// from a seed. The log must refuse to
// acknowledge: every Append from the failure on returns an error wrapping
// the errno that names the operation, none succeeds for an LSN past the
// first that failed, and Close and later Appends report it. Then the power
// is cut, the disk heals, and the log reopens with every acknowledged record
// (checkPowerLoss) and appends again.
func TestFaultDisk(t *testing.T) {
	seed := powerLossSeed(t)
	for _, tc := range []struct {
		name   string
		inject func(f *faultfs.FS) error
		errno  syscall.Errno
		ops    []string // the operations the error may name
	}{
		{"write-EIO", func(f *faultfs.FS) error {
			return f.Inject(faultfs.Fault{Op: faultfs.OpWrite, Path: "log/*.wal"})
		}, syscall.EIO, []string{"write"}},
		{"fdatasync-EIO", func(f *faultfs.FS) error {
			return f.Inject(faultfs.Fault{Op: faultfs.OpFdatasync, Path: "log/*.wal"})
		}, syscall.EIO, []string{"fdatasync"}},
		{"write-ENOSPC", func(f *faultfs.FS) error {
			// A little room: the failure lands on a write, a zero-fill or
			// a segment's fallocate, wherever the budget runs out.
			return f.SetSpaceBudget(40 << 10)
		}, syscall.ENOSPC, []string{"write", "preallocate", "zero-fill"}},
		{"fdatasync-ENOSPC", func(f *faultfs.FS) error {
			return f.Inject(faultfs.Fault{Op: faultfs.OpFdatasync, Path: "log/*.wal", Err: syscall.ENOSPC})
		}, syscall.ENOSPC, []string{"fdatasync"}},
		// Preparing the next segment: its fsync, and the directory's
		// fsync that makes its name durable. The log fails when it needs
		// that segment, and must not write into it.
		{"segment-fsync-EIO", func(f *faultfs.FS) error {
			return f.Inject(faultfs.Fault{Op: faultfs.OpFsync, Path: "log/*.wal"})
		}, syscall.EIO, []string{"fsync"}},
		{"directory-fsync-EIO", func(f *faultfs.FS) error {
			return f.Inject(faultfs.Fault{Op: faultfs.OpDirSync, Path: "log"})
		}, syscall.EIO, []string{"fsync directory"}},
		{"seeded-EIO", func(f *faultfs.FS) error {
			return f.Inject(faultfs.Fault{Op: faultfs.OpWrite | faultfs.OpFdatasync, Path: "log/*.wal", Rate: 0.05, Seed: seed})
		}, syscall.EIO, []string{"write", "fdatasync"}},
	} {
		for _, direct := range []bool{true, false} {
			name := tc.name + "/buffered"
			if direct {
				name = tc.name + "/direct"
			}
			t.Run(name, func(t *testing.T) {
				ffs, dir := newFaultLog(t, faultfs.Config{})
				o := crashOptions(direct)
				l := openT(t, dir, o)
				if l.Direct() != direct {
					l.Close()
					t.Fatalf("Direct() = %v on the FUSE mount; want %v", l.Direct(), direct)
				}
				p := &powerLedger{acked: map[uint64]crashID{}}
				var mu sync.Mutex
				var errs []error
				minFailed := uint64(math.MaxUint64)
				var wg sync.WaitGroup
				for g := range crashWriters {
					wg.Add(1)
					go func() {
						defer wg.Done()
						for i := 0; ; i++ {
							lsn, err := l.Append(context.Background(), crashRecord(seed, g, i))
							if err == nil {
								p.ack(lsn, crashID{seed, g, i})
								continue
							}
							mu.Lock()
							errs = append(errs, err)
							if lsn != 0 {
								minFailed = min(minFailed, lsn)
							}
							mu.Unlock()
							return
						}
					}()
				}
				waitFor(t, "some appends durable", func() bool { return l.DurableLSN() > 300 })
				if err := tc.inject(ffs); err != nil {
					t.Fatal(err)
				}
				wg.Wait()

				if len(errs) != crashWriters {
					t.Fatalf("%d appenders saw an error, want all %d", len(errs), crashWriters)
				}
				checkErr := func(what string, err error) {
					t.Helper()
					if !errors.Is(err, tc.errno) || !containsAny(err.Error(), tc.ops) {
						t.Fatalf("%s: %v; want %v from %s", what, err, tc.errno, strings.Join(tc.ops, " or "))
					}
				}
				for _, err := range errs {
					checkErr("Append", err)
				}
				var maxAcked uint64
				for lsn := range p.acked {
					maxAcked = max(maxAcked, lsn)
				}
				if maxAcked >= minFailed {
					t.Fatalf("LSN %d acknowledged after LSN %d failed", maxAcked, minFailed)
				}
				_, err := l.Append(context.Background(), []byte("later"))
				checkErr("Append after the failure", err)
				checkErr("Close", l.Close())
				if d := l.DurableLSN(); d != maxAcked {
					t.Fatalf("DurableLSN %d after Close, highest acknowledged %d", d, maxAcked)
				}
				p.claimed = l.DurableLSN()
				st, err := ffs.Stats()
				if err != nil {
					t.Fatal(err)
				}
				if st.Injected+st.NoSpace == 0 {
					t.Fatal("no fault was injected")
				}

				// Power cut, then the disk heals.
				if _, err := ffs.Cut(); err != nil {
					t.Fatal(err)
				}
				if err := ffs.ClearFaults(); err != nil {
					t.Fatal(err)
				}
				l = openT(t, ffs.Path("log"), o)
				defer l.Close()
				first, last, checked, err := checkPowerLoss(l, p)
				if err != nil {
					t.Fatalf("after the fault and a cut: %v", err)
				}
				if lsn, err := l.Append(context.Background(), crashRecord(seed, crashWriters, 0)); err != nil || lsn != last+1 {
					t.Fatalf("Append after reopen: LSN %d, %v; want %d", lsn, err, last+1)
				}
				t.Logf("%d acknowledged, the first failure at LSN %d (%d requests failed, %d with ENOSPC); after the cut the log holds %d..%d (%d records checked); Append error: %v",
					len(p.acked), minFailed, st.Injected+st.NoSpace, st.NoSpace, first, last, checked, errs[0])
			})
		}
	}
}

func containsAny(s string, subs []string) bool {
	for _, sub := range subs {
		if strings.Contains(s, sub) {
			return true
		}
	}
	return false
}

// TestFaultTruncateDirSync: while 64 appenders run and a checkpointer
// truncates every 2 ms, the log's directory stops taking fsyncs (every one
// fails with EIO from the 1500th acknowledgement on; file syncs still work).
// TruncateFront returns the error, naming the fsync, and the checkpointer
// goes on; the log fails once it needs a segment it cannot make durable. A
// power cut later, the log must reopen with every acknowledged record from
// the highest truncation point begun.
//
// A TruncateFront whose rename of a segment to a spare is done but whose
// directory fsync failed leaves that segment durable under its old name;
// the log must not then write into the renamed file (createSegment opens
// the spare's name with O_TRUNC, zero-fills and fsyncs it), or the cut
// finds a segment of the log with a zeroed header: Open refuses the log
// (ErrCorrupt) when it is the first segment, and ends the log there,
// deleting the later segments and their acknowledged records, when it is
// not.
func TestFaultTruncateDirSync(t *testing.T) {
	seed := powerLossSeed(t)
	for _, direct := range []bool{true, false} {
		t.Run(map[bool]string{true: "direct", false: "buffered"}[direct], func(t *testing.T) {
			ffs, dir := newFaultLog(t, faultfs.Config{})
			l := openT(t, dir, crashOptions(direct))
			p := &powerLedger{acked: map[uint64]crashID{}}
			stop := make(chan struct{})
			var n atomic.Int64
			var truncErrs []error
			ckptDone := make(chan struct{})
			go func() {
				defer close(ckptDone)
				for !closed(stop) {
					time.Sleep(2 * time.Millisecond)
					d := l.DurableLSN()
					if d <= crashKeep {
						continue
					}
					p.mu.Lock()
					p.from = max(p.from, d-crashKeep)
					p.mu.Unlock()
					if err := l.TruncateFront(d - crashKeep); err != nil {
						truncErrs = append(truncErrs, err)
					}
				}
			}()
			faulted := false
			werr := appendWorkload(l, seed, stop, func(lsn uint64, g, i int) {
				p.ack(lsn, crashID{seed, g, i})
				switch n.Add(1) {
				case 1500:
					if err := ffs.Inject(faultfs.Fault{Op: faultfs.OpDirSync, Path: "log"}); err != nil {
						t.Error(err)
					}
					faulted = true
				case 6000:
					close(stop)
				}
			})
			if !closed(stop) {
				close(stop)
			}
			<-ckptDone
			if _, err := ffs.Cut(); err != nil {
				t.Fatal(err)
			}
			l.Close()
			p.claimed = l.DurableLSN()
			if err := ffs.ClearFaults(); err != nil {
				t.Fatal(err)
			}
			st, err := ffs.Stats()
			if err != nil {
				t.Fatal(err)
			}
			if !faulted || st.Injected == 0 {
				t.Fatalf("no directory fsync failed (%d injected)", st.Injected)
			}
			for _, err := range truncErrs {
				if !errors.Is(err, syscall.EIO) || !strings.Contains(err.Error(), "fsync") {
					t.Fatalf("TruncateFront: %v; want EIO from the directory fsync", err)
				}
			}
			l = openT(t, ffs.Path("log"), crashOptions(direct))
			defer l.Close()
			first, last, checked, err := checkPowerLoss(l, p)
			if err != nil {
				t.Fatalf("after the cut: %v (appends ended with %v)", err, werr)
			}
			t.Logf("%d acknowledged; %d directory fsyncs failed, %d TruncateFronts returned the error; appends ended with %v; after the cut the log holds %d..%d (%d checked), truncated at %d",
				n.Load(), st.Injected, len(truncErrs), werr, first, last, checked, p.from)
		})
	}
}
