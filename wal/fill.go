// The fill stage: appenders frame their records into the fill buffer under
// l.mu and get consecutive LSNs. Invariant: records land in buffers in LSN
// order, appenders only ever write at buf[n:] (never under a write in
// flight), and a buffer is sealed, or its segment rolled with recEnd, before
// a record would not fit.

package wal

import (
	"context"
	"errors"
	"fmt"
	"time"
)

// batch is one batch buffer: a stretch of the log, in memory, at file
// offset off of segment seg. buf[0:n] is filled; buf[0:done] is in the file.
// Appenders only ever write at buf[n:], so the bytes a write in flight reads
// never change under it (O_DIRECT's DMA reads them from this memory).
type batch struct {
	buf    []byte
	seg    *segment
	off    int64
	n      int
	done   int
	recs   int    // records framed in this buffer
	last   uint64 // LSN of the last record in or before this buffer
	sealed bool   // full or closed by recEnd: takes no more records
	eos    bool   // ends with recEnd
}

// tailInit is how the next buffer to become fill starts: at off in seg, with
// pre[:preLen] already in place, a copy of the partial last block the
// previous buffer ended with (O_DIRECT rewrites that block whole), or the
// header block of a new segment.
type tailInit struct {
	seg     *segment
	off     int64
	pre     [blockSize]byte
	preLen  int
	written bool // pre is a tail the previous buffer writes, not a header still to write
}

var errNoSpace = errors.New("wal: no buffer space")

// Append adds record to the log and returns its LSN once an fdatasync has
// covered it. Concurrent Appends share writes and fdatasyncs. When ctx ends
// first, Append returns ctx.Err(); if the record was already queued, its LSN
// comes back with the error and the record may still become durable. After a
// write or fdatasync failed, Append returns that failure (errors.Is works
// with the errno) until the log is reopened. record is copied: the caller may
// reuse it once Append returns.
func (l *Log) Append(ctx context.Context, record []byte) (uint64, error) {
	if ctx == nil {
		return 0, errors.New("wal: Append with a nil context")
	}
	if len(record) > l.maxRec {
		return 0, fmt.Errorf("%w: %d bytes, at most %d", ErrTooLarge, len(record), l.maxRec)
	}
	if err := ctx.Err(); err != nil {
		return 0, err
	}
	// Only an appender whose ctx cannot end may block in a system call.
	who := byRing
	if ctx.Done() == nil {
		who = byAppender
	}
	l.mu.Lock()
	lsn, err := l.reserveLocked(record)
	var g *commitGen
	if err == nil {
		g = l.joinGenLocked(lsn)
	}
	if err != errNoSpace {
		l.finish(wakes{}, who)
	} else {
		l.mu.Unlock()
		l.stats.spaceWaits.Add(1)
		werr := l.spaceQ.WaitExclusive(ctx, func() bool {
			l.mu.Lock()
			defer l.mu.Unlock()
			lsn, err = l.reserveLocked(record)
			if err == nil {
				g = l.joinGenLocked(lsn)
			}
			return err != errNoSpace
		})
		if werr != nil {
			return 0, werr
		}
		var wk wakes
		l.mu.Lock()
		if err == nil && l.fill != nil {
			// One wake-up per freed buffer: pass it on while the buffer has room.
			wk.space = 1
		}
		l.finish(wk, who)
	}
	if err != nil {
		return 0, err
	}
	if err := l.waitDurable(ctx, lsn, g); err != nil {
		return lsn, err
	}
	return lsn, nil
}

// reserveLocked frames record into the fill buffer and gives it the next
// LSN, sealing the buffer or rolling the segment when it does not fit.
func (l *Log) reserveLocked(record []byte) (uint64, error) {
	need := recHdrSize + len(record)
	for {
		switch {
		case l.err != nil:
			return 0, l.err
		case l.closing:
			return 0, ErrClosed
		}
		b := l.fill
		if b == nil {
			return 0, errNoSpace
		}
		// Both checks keep room for a recEnd header after the record.
		if b.off+int64(b.n+need+recHdrSize) > b.seg.size {
			if b.recs == 0 && b.off == 0 && b.n == blockSize {
				// An empty new segment: only an older, smaller segment size could get here.
				return 0, fmt.Errorf("%w: %d bytes do not fit in a %d-byte segment", ErrTooLarge, len(record), b.seg.size)
			}
			l.rollLocked(b)
			continue
		}
		if b.n+need+recHdrSize > len(b.buf) {
			l.sealLocked(b)
			continue
		}
		lsn := l.nextLSN
		l.nextLSN++
		b.n += putRecord(b.buf[b.n:], lsn, recData, record)
		b.recs++
		b.last = lsn
		l.stats.appends.Add(1)
		if l.settling {
			l.settleSeen++
			switch {
			case l.settleTarget == 0:
			case l.settleSeen >= l.settleTarget:
				l.endSettleLocked(true) // the crowd is back: this appender's kick commits it
			case time.Until(l.settleDeadline) < 0:
				// Past the deadline, which the sweep (settle.go) checks only
				// every millisecond: the appender that comes first commits,
				// inline. Appenders are
				// coming back: not a settle to back off from. (Until reads
				// only the monotonic clock, where Now reads the wall clock
				// too: this runs for most appends of a crowd, under l.mu.)
				l.endSettleLocked(true)
			}
		}
		return lsn, nil
	}
}

// sealLocked closes the full fill buffer; the next one continues the segment.
func (l *Log) sealLocked(b *batch) {
	b.sealed = true
	l.fill = nil
	t := &l.tail
	t.seg, t.written = b.seg, true
	if l.direct {
		a := int(alignDown(int64(b.n)))
		t.off = b.off + int64(a)
		t.preLen = copy(t.pre[:], b.buf[a:b.n])
	} else {
		t.off, t.preLen = b.off+int64(b.n), 0
	}
	l.reapLocked()
}

// rollLocked closes the fill buffer with recEnd and moves the log to the
// next segment, whose header the next buffer starts with.
func (l *Log) rollLocked(b *batch) {
	b.n += putRecord(b.buf[b.n:], l.nextLSN, recEnd, nil)
	b.eos, b.sealed = true, true
	l.fill = nil
	if l.next == nil {
		l.prepNextLocked(true) // not started yet: the new segment's records wait for it
	}
	seg := l.next
	l.next = nil
	seg.firstLSN = l.nextLSN
	l.rolled = append(l.rolled, l.cur)
	l.cur = seg
	l.starts = append(l.starts, seg.firstLSN)
	l.stats.rolls.Add(1)
	t := &l.tail
	t.seg, t.off, t.preLen, t.written = seg, 0, blockSize, false
	segHeader{idx: seg.idx, firstLSN: seg.firstLSN, size: seg.size}.encode(t.pre[:])
	l.zeroDue = 0
	l.prepNextLocked(false) // now: it has the whole life of this one to be zero-filled
	l.reapLocked()
}

// installFillLocked makes a free buffer the fill buffer, if there is none.
func (l *Log) installFillLocked() bool {
	if l.fill != nil || len(l.free) == 0 {
		return false
	}
	b := l.free[len(l.free)-1]
	l.free = l.free[:len(l.free)-1]
	t := &l.tail
	*b = batch{buf: b.buf, seg: t.seg, off: t.off, last: l.nextLSN - 1}
	b.n = copy(b.buf, t.pre[:t.preLen])
	if t.written {
		b.done = b.n
	}
	l.queue = append(l.queue, b)
	l.fill = b
	return true
}
