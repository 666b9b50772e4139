// Replay: the durable records, in order. Invariant: Replay yields only
// records at or below the durable LSN it read when it started, each
// verified again, and no segment file is renamed or removed while it reads
// (TruncateFront waits for Replays in progress).

package wal

import (
	"context"
	"errors"
	"fmt"
	"os"
	"path/filepath"
	"syscall"
)

// Replay calls fn with every durable record, in LSN order: those Open found
// and those appended since, up to the durable LSN at the moment Replay
// starts. After TruncateFront(lsn) it starts at the first segment the log
// kept, so it returns at least every record from lsn on, and possibly some
// below it (those sharing that segment). record is valid only during the
// call. Replay stops at, and returns, fn's first error. Each record's
// checksum is verified again; a durable record that no longer verifies is
// reported as ErrCorrupt. Appends may run concurrently, and TruncateFront
// moves no segment while a Replay runs; fn must not call Close or
// TruncateFront (which would wait for it).
func (l *Log) Replay(fn func(lsn uint64, record []byte) error) error {
	if fn == nil {
		return errors.New("wal: Replay with a nil function")
	}
	l.mu.Lock()
	// A TruncateFront is about to move the first segment, or moving it:
	// wait, unless Replays are running, which it waits for.
	for l.truncating && l.replays == 0 && !l.closing {
		l.cond.Wait()
	}
	if l.closing {
		l.mu.Unlock()
		return ErrClosed
	}
	upto := l.durable.Load()
	first, last, want := l.firstIdxLocked(), l.cur.idx, l.starts[0]
	l.replayWG.Add(1)
	// TruncateFront moves no segment file while a Replay reads them.
	l.replays++
	l.mu.Unlock()
	defer func() {
		l.mu.Lock()
		if l.replays--; l.replays == 0 {
			l.cond.Broadcast()
		}
		l.mu.Unlock()
		l.replayWG.Done()
	}()

	ctx := context.Background()
	for idx := first; idx <= last && want <= upto; idx++ {
		path := filepath.Join(l.dir, segName(idx))
		flag := os.O_RDONLY
		if l.direct {
			// Reads see what O_DIRECT wrote without going through a page
			// cache that could hold a stale copy of the last block.
			flag |= syscall.O_DIRECT
		}
		l.readSem <- struct{}{} // the open takes a ring slot too
		f, err := l.ring.Open(path, flag, 0)
		<-l.readSem
		if err != nil {
			return fmt.Errorf("wal: replay: %w", err)
		}
		fd := int(f.Fd())
		w := newWindow(func(p []byte, off int64) (int, error) {
			l.readSem <- struct{}{}
			defer func() { <-l.readSem }()
			return l.ring.ReadAt(ctx, fd, p, off)
		})
		r, err := scanSegment(w, idx, want, upto, fn)
		f.Close()
		switch {
		case err != nil && !isReadErr(err):
			return err // fn's error, as it is
		case err != nil:
			return fmt.Errorf("wal: replay: read %s: %w", path, err)
		case r.hdrErr != nil:
			return fmt.Errorf("%w: %s: %w", ErrCorrupt, path, r.hdrErr)
		case r.next <= upto && !r.eos:
			reason := r.torn
			if reason == nil {
				reason = fmt.Errorf("the segment ends at LSN %d", r.next)
			}
			return fmt.Errorf("%w: %s: %w", ErrCorrupt, path, reason)
		}
		want = r.next
	}
	return nil
}

// readErr marks an I/O error from the window, so Replay can tell it from an
// error of fn's.
type readErr struct{ err error }

func (e readErr) Error() string { return e.err.Error() }
func (e readErr) Unwrap() error { return e.err }

func isReadErr(err error) bool {
	var re readErr
	return errors.As(err, &re)
}
