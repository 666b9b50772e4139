// The zero-fill stage: slices of the next segment's zero-fill ride along
// with the current segment's writes. Invariant: a slice never touches the
// segment records are written to, at most one is in flight, and a failed
// slice only stops the zero-fill, never the log.

package wal

import (
	"syscall"

	"github.com/ringwake/ringwake/sqe"
)

// Zero-fill: the next segment is overwritten with zeros while the current
// one fills, in slices that ride along with the commits, so that it is all
// written blocks by the time the log rolls into it. Slicing it keeps the
// extra I/O from landing on a few commits as a burst; writing it to the next
// segment's inode, not ahead in the current one, keeps its extent
// conversions out of the current segment's fdatasyncs (ext4 commits the
// journal for an fdatasync only when the inode synced has metadata pending).
const (
	minZeroChunk = 16 << 10
	maxZeroChunk = 1 << 20
)

// prepZeroLocked adds to p a slice of the next segment's zero-fill, owed in
// proportion to the n bytes this write adds to the current segment: what
// the next segment still lacks, over the room left in the current one
// (less an eighth of it), plus a quarter. What a write owes while a slice is in flight is owed still, and
// the next slice is the larger: a slice's completion can come many commits
// later (one appender committing inline at GOMAXPROCS=1 leaves the poller
// few chances to run), and dropping those debts left the next segment a
// few percent zero-filled at the roll.
func (l *Log) prepZeroLocked(b *batch, n int, p *plan) {
	z := l.next
	if l.opts.SkipZeroFill || l.opts.noZeroSlices || z == nil || !z.ready || z.zeroed >= z.size || b.seg != l.cur || n <= 0 {
		return
	}
	// Paced to be done with an eighth of the current segment to go, so the
	// last slice's completion has time to come in before the roll.
	left := max(b.seg.size-b.seg.size/8-(b.off+int64(b.n)), blockSize)
	l.zeroDue += float64(n) * float64(z.size-z.zeroed) / float64(left) * 1.25
	if z.zeroing || (l.zeroDue < minZeroChunk && left > minZeroChunk) {
		return
	}
	chunk := min(alignUp(int64(l.zeroDue)), maxZeroChunk, z.size-z.zeroed)
	l.zeroDue = max(0, l.zeroDue-float64(chunk))
	z.zeroing = true
	l.zeroSeg = z
	l.stats.zeroSlices.Add(1)
	s := &p.ss[p.n]
	fd := z.fd
	if l.testFail.Load()&failNextZero != 0 && l.testFail.And(^failNextZero)&failNextZero != 0 {
		fd = -1 // the kernel fails it (EBADF), and breaks the link after it
	}
	s.PrepWrite(fd, zeroBlock()[:chunk], uint64(z.zeroed))
	if l.direct {
		p.dones[p.n], p.zero[p.n] = l.onZero, true
		p.n++
		return
	}
	// Buffered zeros would sit dirty in the page cache until the roll, and
	// the new segment's first fdatasync would write them all: push each
	// slice out now.
	s.Flags |= sqe.IOLink
	p.dones[p.n], p.zero[p.n] = l.onZeroWrite, true
	p.n++
	p.ss[p.n].PrepSyncFileRange(z.fd, uint32(chunk), uint64(z.zeroed), syncFileRangeWrite|syncFileRangeWaitAfter)
	p.dones[p.n], p.zero[p.n] = l.onZero, true
	p.n++
}

const (
	syncFileRangeWrite     = 2 // SYNC_FILE_RANGE_WRITE
	syncFileRangeWaitAfter = 4 // SYNC_FILE_RANGE_WAIT_AFTER
)

// zeroWriteDone is the buffered-mode zero write, linked to a sync_file_range
// whose completion (zeroDone) ends the slice.
func (l *Log) zeroWriteDone(res int32, _ uint32) {
	l.mu.Lock()
	l.zeroRes = res
	l.mu.Unlock()
}

// zeroDone ends a zero-fill slice. A failure stops the zero-fill of that
// segment, nothing more: it is only an optimization, and a device that
// fails it will fail the log's own writes too.
func (l *Log) zeroDone(res int32, _ uint32) {
	l.mu.Lock()
	z := l.zeroSeg
	if !l.direct && (res >= 0 || l.zeroRes < 0) {
		// The write's own result; when it failed, the linked
		// sync_file_range's ECANCELED is only the broken link.
		res = l.zeroRes
	}
	z.zeroing = false
	l.zeroSeg = nil
	if res == -int32(syscall.ECANCELED) {
		// Canceled by the kernel before it ran (kernelCanceledLocked): the
		// next slice covers the same range.
	} else if res > 0 {
		z.zeroed += int64(res)
	} else {
		z.zeroed = z.size
	}
	l.finishLocked(wakes{})
}
