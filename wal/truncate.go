// TruncateFront and spare segments. Invariant: segments are dropped oldest
// first, each followed by a directory fsync, so a crash leaves a contiguous
// run of intact segments; a spare's stale records never verify again (see
// below).

package wal

import (
	"context"
	"fmt"
	"os"
	"path/filepath"

	ringwake "github.com/ringwake/ringwake/runtime"
)

// Truncation and recycling.
//
// TruncateFront drops whole segments from the front of the log, oldest
// first, and renames each (up to MaxSpareSegments of them) to a segment index
// the log has not reached yet, a spare: when the log prepares that index as
// its next segment, it reuses the file instead of creating, preallocating and
// zero-filling a new one. A spare's stale records cannot come back:
//
//   - its header names its old index, which is always below its new one, so
//     the header never verifies under the new name, and recovery ends the log
//     before such a file (it never reads its records);
//   - the log writes a fresh header with the first records it puts in it;
//   - every stale record's checksum is seeded with its old LSN, and all of
//     those are below the LSNs the log gives out once the file is reused
//     (they were durable when it was truncated, so recovery keeps every
//     later record), so none verifies where a new record is due, and a scan
//     stops at the first stale one as at a torn tail.
//
// Before the log writes a reused file, its header block is overwritten with
// zeros and fdatasynced (openSpare). So a file past the log's end whose
// header still verifies under an older index was never written in its new
// place, and recovery can keep it as a spare; a file whose header block was
// zeroed may hold records of its new life that a crash left behind, which
// could verify if the file came back under the same index with the same
// LSNs, so recovery deletes it, as it always deleted files past the end.

// spare is a segment file TruncateFront renamed to index idx.
type spare struct {
	idx  uint64
	done chan struct{} // closed once the rename is durable, or failed
	err  error         // why it failed; set before done closes
}

func readySpare(idx uint64) *spare {
	sp := &spare{idx: idx, done: make(chan struct{})}
	close(sp.done)
	return sp
}

func (l *Log) maxSpares() int { return max(0, l.opts.MaxSpareSegments) }

// TruncateFront tells the log that records below lsn are no longer needed
// (a checkpoint covers them). Every segment whose records are all below lsn,
// other than the current one, leaves the log: Replay, and recovery after a
// reopen, start at the first segment kept, so they return at least every
// record from lsn on, and possibly records below lsn that share that
// segment. A dropped segment becomes a spare for reuse (see
// Options.MaxSpareSegments) or is deleted.
//
// lsn may be at most DurableLSN()+1; a larger one is an error. Segments go
// oldest first, and the directory is fsynced after each, so a crash at any
// point leaves a log that starts at some segment and holds every record from
// there on; it returns once the change is durable. A segment whose
// end-of-segment record is not yet durable is waited for; one whose
// successor holds no durable record yet is kept (a later call drops it). It runs
// concurrently with Append, but moves no segment while a Replay runs: it
// waits for Replays in progress, and Replays that start meanwhile wait for
// it unless another Replay is still running. It returns ErrClosed once Close
// has begun, and the log's sticky error if the log failed before a segment
// it had to drop was complete.
func (l *Log) TruncateFront(lsn uint64) error {
	l.mu.Lock()
	if l.closing {
		l.mu.Unlock()
		return ErrClosed
	}
	l.truncWG.Add(1)
	l.mu.Unlock()
	defer l.truncWG.Done()
	if d := l.durable.Load(); lsn > d+1 {
		return fmt.Errorf("wal: TruncateFront(%d): beyond the durable LSN %d + 1", lsn, d)
	}
	l.truncMu.Lock()
	defer l.truncMu.Unlock()
	ctx := context.Background()
	for {
		l.mu.Lock()
		idx := l.firstIdxLocked()
		// The segment after idx becomes the first: its header must be
		// durable (it is once its first record is), or a crash would
		// leave a log whose first segment has none, which recovery
		// refuses rather than start the LSNs over.
		if idx >= l.cur.idx || l.starts[1] > lsn || l.starts[1] > l.durable.Load() {
			l.mu.Unlock()
			return nil
		}
		l.mu.Unlock()
		// Only TruncateFront moves the front: idx stays the first segment.
		path := filepath.Join(l.dir, segName(idx))
		fi, err := os.Stat(path)
		if err != nil {
			return fmt.Errorf("wal: TruncateFront: %w", err)
		}

		l.mu.Lock()
		// Its file stays open until its end-of-segment record is durable: a
		// write may still be in flight to it.
		for l.openLocked(idx) && l.err == nil {
			l.cond.Wait()
		}
		if l.openLocked(idx) {
			err := l.err
			l.mu.Unlock()
			return fmt.Errorf("wal: TruncateFront: %w", err)
		}
		// A Replay may be reading it. Replays that start from now on wait,
		// unless one is still running (then they join it: a Replay inside
		// another's fn must not wait for a TruncateFront that waits for the
		// outer one).
		l.truncating = true
		for l.replays > 0 {
			l.cond.Wait()
		}
		var sp *spare
		// A file of another size (from before a reopen with another
		// SegmentSize) is not reused: new segments have this size.
		if fi.Size() == l.opts.SegmentSize && len(l.spares) < l.maxSpares() {
			t := l.cur.idx + 1 // l.next's index: it is always prepared
			if n := len(l.spares); n > 0 {
				t = max(t, l.spares[n-1].idx)
			}
			sp = &spare{idx: t + 1, done: make(chan struct{})}
			l.spares = append(l.spares, sp)
		}
		l.mu.Unlock()

		if sp != nil {
			err = os.Rename(path, filepath.Join(l.dir, segName(sp.idx)))
		} else {
			err = os.Remove(path)
		}
		moved := err == nil
		if moved {
			// Before the next segment goes, and before the log may write
			// the spare under its new name: a crash must not find the
			// log's segments with a hole, nor a spare's new records under
			// its old name.
			if err = l.ring.Fsync(ctx, int(l.dirf.Fd()), false); err != nil {
				err = fmt.Errorf("wal: TruncateFront: fsync %s: %w", l.dir, err)
			}
		} else {
			err = fmt.Errorf("wal: TruncateFront: %w", err)
		}

		l.mu.Lock()
		if moved {
			l.starts = l.starts[1:]
		}
		l.truncating = false
		l.cond.Broadcast()
		if sp != nil {
			sp.err = err
			close(sp.done)
			if err != nil {
				// prepare falls back to creating the file should the log
				// have taken it already; otherwise forget it.
				for i, s := range l.spares {
					if s == sp {
						l.spares = append(l.spares[:i], l.spares[i+1:]...)
						break
					}
				}
			}
		}
		l.mu.Unlock()
		if err != nil {
			return err
		}
	}
}

// openLocked reports whether segment idx's file is still open for the
// pipeline: rolled, its end-of-segment record not yet durable.
func (l *Log) openLocked(idx uint64) bool {
	for _, s := range l.rolled {
		if s.idx == idx {
			return true
		}
	}
	return false
}

// openSpare opens the spare seg reuses, once TruncateFront's rename of it is
// durable, and zeroes its header block (durably) before the log writes
// anything else to it; see the comment at the top. It reports whether it
// reused the spare; if the rename failed, it creates the segment instead.
func (l *Log) openSpare(seg *segment) (*ringwake.File, bool, error) {
	<-seg.spare.done
	if seg.spare.err != nil {
		f, err := l.createSegment(seg.idx, seg.size, seg.zeroNow)
		return f, false, err
	}
	path := filepath.Join(l.dir, seg.name())
	f, err := l.openSegment(path, 0)
	if err != nil {
		return nil, false, fmt.Errorf("wal: reuse segment: %w", err)
	}
	ctx := context.Background()
	fd := int(f.Fd())
	if err := l.zeroRange(ctx, fd, 0, blockSize); err != nil {
		f.Close()
		return nil, false, fmt.Errorf("wal: reuse segment %s: zero its header: %w", path, err)
	}
	if err := l.ring.Fsync(ctx, fd, true); err != nil {
		f.Close()
		return nil, false, fmt.Errorf("wal: reuse segment %s: fdatasync: %w", path, err)
	}
	return f, true, nil
}

// isSpare reports whether segment file idx, past the log's end, is a spare
// TruncateFront left that was never written under this name: its header
// verifies and names an older index, and it has this log's segment size.
func (l *Log) isSpare(idx uint64) bool {
	h, size, ok := l.fileHeader(idx)
	return ok && size == l.opts.SegmentSize && h.idx < idx && h.size == l.opts.SegmentSize
}
