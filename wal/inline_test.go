package wal

import (
	"context"
	"errors"
	"strings"
	"syscall"
	"testing"
	"time"
)

// TestInlineCommit checks who makes a lone appender's commits: the appender
// itself when its ctx cannot end (nearly every fdatasync: a commit that
// waits for a segment to be ready is started by the goroutine that prepared
// it), the ring when its ctx can
// end or the log has noInline; and that every record is replayed either way.
func TestInlineCommit(t *testing.T) {
	for mode, o := range modes(small) {
		t.Run(mode, func(t *testing.T) {
			dir := t.TempDir()
			l := openT(t, dir, o)
			n := 0
			appendN := func(ctx context.Context, count int) Stats {
				t.Helper()
				s0 := l.Stats()
				for range count {
					if _, err := l.Append(ctx, testRecord(0, n)); err != nil {
						t.Fatal(err)
					}
					n++
				}
				s := l.Stats()
				s.Syncs -= s0.Syncs
				s.InlineSyncs -= s0.InlineSyncs
				return s
			}
			d0 := l.stats.dsync.Load()
			if s := appendN(context.Background(), 100); 10*s.InlineSyncs < 9*s.Syncs {
				t.Errorf("context.Background: %d of %d fdatasyncs inline, want at least 90%%", s.InlineSyncs, s.Syncs)
			} else if d := l.stats.dsync.Load() - d0; l.Direct() && 10*d < 9*s.InlineSyncs || !l.Direct() && d != 0 {
				t.Errorf("O_DIRECT %v: %d of %d inline commits one pwritev2(RWF_DSYNC), want nearly all under O_DIRECT, none buffered", l.Direct(), d, s.InlineSyncs)
			}
			ctx, cancel := context.WithCancel(context.Background())
			defer cancel()
			if s := appendN(ctx, 100); s.InlineSyncs != 0 || s.Syncs == 0 {
				t.Errorf("a ctx that can end: %d of %d fdatasyncs inline, want none", s.InlineSyncs, s.Syncs)
			}
			if err := l.Close(); err != nil {
				t.Fatal(err)
			}
			ro := o
			ro.noInline = true
			l = openT(t, dir, ro)
			defer l.Close()
			if s := appendN(context.Background(), 50); s.InlineSyncs != 0 || s.Syncs == 0 {
				t.Errorf("noInline: %d of %d fdatasyncs inline, want none", s.InlineSyncs, s.Syncs)
			}
			recs := replayAll(t, l)
			if len(recs) != n {
				t.Fatalf("replayed %d records, appended %d", len(recs), n)
			}
			for i, r := range recs {
				if _, k, err := checkTestRecord(r.rec); err != nil || k != i {
					t.Fatalf("LSN %d: record %d, %v", r.lsn, k, err)
				}
			}
		})
	}
}

// TestDsyncCoversOnlyItsWrite: an inline commit makes its write and
// fdatasync one pwritev2(RWF_DSYNC) only under O_DIRECT and only when the
// fdatasync need cover nothing but that write; with an earlier write left
// unsynced it makes the fdatasync apart, which covers both.
func TestDsyncCoversOnlyItsWrite(t *testing.T) {
	for mode, o := range modes(small) {
		t.Run(mode, func(t *testing.T) {
			o.noSettle = true // a settle would hold the kicks below back
			l := openT(t, t.TempDir(), o)
			defer l.Close()
			if _, err := l.Append(context.Background(), testRecord(0, 0)); err != nil {
				t.Fatal(err)
			}
			commit := func(n int, earlier bool) plan {
				t.Helper()
				l.mu.Lock()
				lsn, err := l.reserveLocked(testRecord(0, n))
				if err != nil {
					l.mu.Unlock()
					t.Fatal(err)
				}
				if earlier {
					// As if a write alone had gone down and no fdatasync
					// covered it yet.
					l.unsynced = append(l.unsynced, segCover{seg: l.cur, cover: l.durable.Load()})
				}
				p := l.kickLocked(true)
				l.mu.Unlock()
				if p.n < 2 {
					t.Fatalf("record %d: the kick planned %d requests, want a write and its fdatasync", n, p.n)
				}
				d0, s0 := l.stats.dsync.Load(), l.Stats()
				l.runInline(&p, false)
				if l.DurableLSN() < lsn {
					t.Fatalf("record %d: durable %d after its commit", n, l.DurableLSN())
				}
				if s := l.Stats(); s.InlineSyncs != s0.InlineSyncs+1 {
					t.Fatalf("record %d: the commit did not go inline", n)
				}
				if d := l.stats.dsync.Load() - d0; d != map[bool]uint64{true: 1}[p.dsync] {
					t.Fatalf("record %d: %d pwritev2(RWF_DSYNC) for a plan with dsync %v", n, d, p.dsync)
				}
				return p
			}
			if p := commit(1, false); p.dsync != l.Direct() {
				t.Errorf("nothing else unsynced, O_DIRECT %v: dsync %v", l.Direct(), p.dsync)
			}
			if p := commit(2, true); p.dsync {
				t.Error("an earlier write unsynced: the commit was one pwritev2(RWF_DSYNC)")
			}
			if len(l.unsynced) != 0 {
				t.Errorf("%d unsynced entries left after the commit that took one over", len(l.unsynced))
			}
		})
	}
}

// TestInlineFailure: failures of inline calls take the ring's paths. A
// failed write or fdatasync is sticky and named; a write the "kernel"
// canceled is made again, its fdatasync counted as canceled with it, and
// the Append succeeds.
func TestInlineFailure(t *testing.T) {
	for _, tc := range []struct {
		name, op string
		bit      uint32
	}{
		{"write-EIO", "write", failNextWrite},
		{"fdatasync-EIO", "fdatasync", failNextSync},
		{"write-canceled", "", cancelNextWrite},
		{"fdatasync-canceled", "", cancelNextSync},
	} {
		for mode, o := range modes(small) {
			t.Run(tc.name+"/"+mode, func(t *testing.T) {
				l := openT(t, t.TempDir(), o)
				defer l.Close()
				for i := range 5 {
					if _, err := l.Append(context.Background(), testRecord(0, i)); err != nil {
						t.Fatal(err)
					}
				}
				s0 := l.Stats()
				l.testFail.Or(tc.bit)
				_, err := l.Append(context.Background(), testRecord(0, 5))
				if l.Stats().InlineSyncs == s0.InlineSyncs {
					t.Fatal("the commit did not go inline")
				}
				if tc.op == "" {
					if err != nil || l.Stats().Retried != s0.Retried+1 {
						t.Fatalf("after a canceled request: %v, %d retried", err, l.Stats().Retried-s0.Retried)
					}
					return
				}
				if !errors.Is(err, syscall.EIO) || !strings.Contains(err.Error(), tc.op) {
					t.Fatalf("Append: %v, want EIO from the %s", err, tc.op)
				}
				if _, err := l.Append(context.Background(), testRecord(0, 6)); !errors.Is(err, syscall.EIO) {
					t.Fatalf("Append after the failure: %v", err)
				}
			})
		}
	}
}

// TestSubmitFailureUndo: an inline commit sends the zero-fill slice that
// rides with it to the ring apart from the write, which the appender then
// makes itself. When that submission fails, the log fails (stickily, the
// error naming the submission), and the undo clears the slice's mark only:
// Close must not wait forever for a slice that never went down, nor take
// the inline write in flight for finished.
func TestSubmitFailureUndo(t *testing.T) {
	for mode, o := range modes(small) {
		t.Run(mode, func(t *testing.T) {
			l := openT(t, t.TempDir(), o)
			l.testFail.Or(failNextZeroSubmit)
			var err error
			for i := 0; err == nil && i < 1000; i++ {
				_, err = l.Append(context.Background(), testRecord(0, i))
			}
			if !errors.Is(err, errInjectedSubmit) || !strings.Contains(err.Error(), "submit") {
				t.Fatalf("Append: %v, want the injected submission failure", err)
			}
			if l.Stats().InlineSyncs == 0 {
				t.Fatal("no commit went inline")
			}
			closed := make(chan error, 1)
			go func() { closed <- l.Close() }()
			select {
			case err := <-closed:
				if !errors.Is(err, errInjectedSubmit) {
					t.Fatalf("Close: %v, want the sticky error", err)
				}
			case <-time.After(10 * time.Second):
				t.Fatal("Close did not return: a mark of the failed submission was left set")
			}
		})
	}
}

// TestRingDsync checks a commit through the ring under O_DIRECT, with
// nothing earlier left unsynced: one write carrying RWF_DSYNC, not a write
// and a linked fdatasync (which an io-wq worker would run); then a kernel
// refusing the flag, after which commits are the write and its fdatasync
// again; and that every record is replayed either way.
func TestRingDsync(t *testing.T) {
	dir := t.TempDir()
	o := small
	o.Direct, o.noInline = DirectOn, true
	l := openT(t, dir, o)
	defer l.Close()
	n := 0
	appendN := func(count int) (syncs, dsyncs uint64) {
		t.Helper()
		s0, d0 := l.Stats().Syncs, l.stats.dsync.Load()
		for range count {
			if _, err := l.Append(context.Background(), testRecord(0, n)); err != nil {
				t.Fatal(err)
			}
			n++
		}
		return l.Stats().Syncs - s0, l.stats.dsync.Load() - d0
	}
	if s, d := appendN(100); s == 0 || 10*d < 9*s {
		t.Errorf("ring commits: %d of %d fdatasyncs carried by their write (RWF_DSYNC), want nearly all", d, s)
	}
	l.testFail.Or(refuseNextDsync)
	if s, d := appendN(100); s == 0 || d != 0 || !l.noDsync.Load() {
		t.Errorf("after a refused RWF_DSYNC: %d of %d fdatasyncs carried by their write, noDsync %v; want none, true", d, s, l.noDsync.Load())
	}
	if recs := replayAll(t, l); len(recs) != n {
		t.Fatalf("replayed %d records, appended %d", len(recs), n)
	}
}
