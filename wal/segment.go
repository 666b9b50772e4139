// Segment files: preparing the next one off the commit path, and recovery
// at Open. Invariant: records go only into a segment whose file (its space
// preallocated where the file system allows) and directory entry are
// fsynced; recovery makes every record it keeps durable and zeroes (or cuts)
// everything after the last one that verifies before the log appends again.

package wal

import (
	"context"
	"errors"
	"fmt"
	"io"
	"io/fs"
	"math"
	"os"
	"path/filepath"
	"slices"
	"sync"
	"syscall"

	"golang.org/x/sys/unix"

	ringwake "github.com/ringwake/ringwake/runtime"
	"github.com/ringwake/ringwake/sqe"
)

// prepNextLocked starts preparing the segment after the current one, unless
// one is prepared or being prepared already. now says the log needs it at
// once: it is then zero-filled whole before it is ready, since no commits
// are left to carry its zero-fill in slices.
func (l *Log) prepNextLocked(now bool) {
	if l.next != nil {
		return
	}
	seg := &segment{idx: l.cur.idx + 1, size: l.opts.SegmentSize, zeroNow: now}
	if len(l.spares) > 0 && l.spares[0].idx == seg.idx {
		seg.spare = l.spares[0]
		l.spares = l.spares[1:]
	}
	l.next = seg
	l.startPrepLocked(seg)
}

func (l *Log) startPrepLocked(seg *segment) {
	l.prepWG.Add(1)
	go l.prepare(seg)
}

// prepare creates seg's file off the commit path; a write waiting for the
// segment goes down as soon as it is ready. A failure is recorded on the
// segment and becomes the log's sticky error only when a record needs it.
func (l *Log) prepare(seg *segment) {
	defer l.prepWG.Done()
	var f *ringwake.File
	var err error
	recycled := false
	if seg.spare != nil {
		f, recycled, err = l.openSpare(seg)
	} else {
		f, err = l.createSegment(seg.idx, seg.size, seg.zeroNow)
	}
	l.mu.Lock()
	if err != nil {
		seg.err = err
	} else {
		seg.f, seg.fd, seg.ready = f, int32(f.Fd()), true
		if recycled {
			seg.zeroed = seg.size // all written blocks already: no zero slices
			l.stats.recycled.Add(1)
		}
	}
	l.finishLocked(wakes{})
}

// openSegment opens a segment file for the pipeline's writes, with O_DIRECT
// when the log uses it; flag adds to O_RDWR.
func (l *Log) openSegment(path string, flag int) (*ringwake.File, error) {
	flag |= os.O_RDWR
	if l.direct {
		flag |= syscall.O_DIRECT
	}
	return l.ring.Open(path, flag, 0o644)
}

// createSegment creates segment idx, preallocates it (zero-filling it whole
// if zero is set) and makes it durable in the directory, all through the
// ring.
func (l *Log) createSegment(idx uint64, size int64, zero bool) (*ringwake.File, error) {
	path := filepath.Join(l.dir, segName(idx))
	// A fresh inode, never the one a name may still point at: after a
	// TruncateFront whose directory fsync failed, path can be a renamed old
	// segment whose old name is the durable one, and truncating it would
	// wipe that segment's records from under the name a crash brings back.
	if err := os.Remove(path); err != nil && !errors.Is(err, fs.ErrNotExist) {
		return nil, fmt.Errorf("wal: create segment: %w", err)
	}
	f, err := l.openSegment(path, os.O_CREATE|os.O_EXCL)
	if err != nil {
		return nil, fmt.Errorf("wal: create segment: %w", err)
	}
	fail := func(op string, err error) (*ringwake.File, error) {
		f.Close()
		os.Remove(path) // give back what a partial preallocation took
		return nil, fmt.Errorf("wal: %s %s: %w", op, path, err)
	}
	if err := l.fallocate(int(f.Fd()), size); err != nil && !errors.Is(err, syscall.EOPNOTSUPP) {
		return fail("preallocate", err)
	}
	ctx := context.Background()
	if zero && !l.opts.SkipZeroFill {
		if err := l.zeroRange(ctx, int(f.Fd()), 0, size); err != nil {
			return fail("zero-fill", err)
		}
	}
	// fsync, not fdatasync: the new size and allocation are metadata.
	if err := l.ring.Fsync(ctx, int(f.Fd()), false); err != nil {
		return fail("fsync", err)
	}
	if err := l.ring.Fsync(ctx, int(l.dirf.Fd()), false); err != nil {
		return fail("fsync directory of", err)
	}
	return f, nil
}

// zeroRange overwrites [off, end) of fd with zeros through the ring; off is
// block-aligned under O_DIRECT.
func (l *Log) zeroRange(ctx context.Context, fd int, off, end int64) error {
	z := zeroBlock()
	for off < end {
		n, err := l.ring.WriteAt(ctx, fd, z[:min(int64(len(z)), end-off)], off)
		if err != nil {
			return err
		}
		if n == 0 {
			return io.ErrShortWrite
		}
		off += int64(n)
	}
	return nil
}

// zeroBlock is a shared, block-aligned run of zeros, never written to.
var zeroBlock = sync.OnceValue(func() []byte { return alignedBuf(maxZeroChunk) })

// fallocate preallocates [0, size) of fd through the ring, so that appends
// never fail for space and never extend the file.
func (l *Log) fallocate(fd int, size int64) error {
	var s sqe.SQE
	s.PrepFallocate(int32(fd), 0, 0, uint64(size))
	ch := make(chan int32, 1)
	err := l.ring.Submit(&s, func(res int32, _ uint32) { ch <- res })
	if errors.Is(err, ringwake.ErrUnsupported) {
		return unix.Fallocate(fd, 0, 0, size)
	}
	if err != nil {
		return err
	}
	if res := <-ch; res < 0 {
		return syscall.Errno(-res)
	}
	return nil
}

// recover finds where the log ends, cuts off whatever follows (a torn or
// corrupt tail, segments after it) and sets up the position of the next
// record. Every record it keeps is made durable.
func (l *Log) recover() error {
	ents, err := os.ReadDir(l.dir)
	if err != nil {
		return fmt.Errorf("wal: %w", err)
	}
	var idxs []uint64
	for _, e := range ents {
		if idx, ok := parseSegName(e.Name()); ok && e.Type().IsRegular() {
			idxs = append(idxs, idx)
		}
	}
	slices.Sort(idxs)

	l.starts = nil
	next := uint64(1)
	var cur *segment // where the next record goes
	var curEnd int64 // its offset, when cur is an existing file
	keep := 0        // idxs[:keep] hold the log
	if len(idxs) > 0 {
		var want uint64 // first LSN the next segment must start with; 0: any
		for i, idx := range idxs {
			if i > 0 && idx != idxs[i-1]+1 {
				break // a missing segment ends the log
			}
			r, err := l.scanFile(idx, want)
			if err != nil {
				return err
			}
			if r.hdrErr != nil {
				if i == 0 && (idx != 1 || l.headerVerifies(idxs[1:])) {
					// Only a new log's first segment can lack its header (its
					// first write never completed). Starting over here would
					// give out LSNs the log gave out before.
					return fmt.Errorf("%w: %s: %w: the log's first segment, which a complete segment follows or which follows truncated ones", ErrCorrupt, segName(idx), r.hdrErr)
				}
				break // its first write never completed: it and all later go
			}
			l.starts = append(l.starts, r.hdr.firstLSN)
			keep, next = i+1, r.next
			if !r.eos {
				cur = &segment{idx: idx, size: r.hdr.size, firstLSN: r.hdr.firstLSN}
				curEnd = r.end
				break
			}
			want = r.next
		}
		if keep == 0 {
			// Not even the first segment has a header: the log is empty.
			next = 1
		}
		if cur == nil {
			idx := idxs[0]
			if keep > 0 {
				idx = idxs[keep-1] + 1
			}
			cur = &segment{idx: idx, size: l.opts.SegmentSize, firstLSN: next}
			l.starts = append(l.starts, next)
		}
	} else {
		cur = &segment{idx: 1, size: l.opts.SegmentSize, firstLSN: 1}
		l.starts = append(l.starts, 1)
	}
	// Files past the log's end go, except spares TruncateFront left (only
	// past the segment the log continues in, and only if the log kept a
	// segment: their stale LSNs are all below its first, so below the next
	// LSN). isSpare and truncate.go say why those were never written since.
	spareFrom := cur.idx + 1
	if curEnd == 0 {
		spareFrom = cur.idx // a new segment can reuse a spare under its own name
	}
	for _, idx := range idxs[keep:] {
		if keep > 0 && idx >= spareFrom && len(l.spares) < l.maxSpares() && l.isSpare(idx) {
			l.spares = append(l.spares, readySpare(idx))
			continue
		}
		if err := os.Remove(filepath.Join(l.dir, segName(idx))); err != nil {
			return fmt.Errorf("wal: cut the log: %w", err)
		}
	}
	if curEnd == 0 && len(l.spares) > 0 && l.spares[0].idx == cur.idx {
		cur.spare = l.spares[0]
		l.spares = l.spares[1:]
	}

	l.nextLSN = next
	l.durable.Store(next - 1)
	l.cur = cur
	t := &l.tail
	t.seg = cur
	if curEnd == 0 {
		// A new segment: its header goes down with its first records.
		t.off, t.preLen, t.written = 0, blockSize, false
		segHeader{idx: cur.idx, firstLSN: cur.firstLSN, size: cur.size}.encode(t.pre[:])
	} else if err := l.reopenTail(cur, curEnd); err != nil {
		return err
	}
	if len(idxs) > keep+len(l.spares) || curEnd == 0 {
		if err := l.ring.Fsync(context.Background(), int(l.dirf.Fd()), false); err != nil {
			return fmt.Errorf("wal: fsync %s: %w", l.dir, err)
		}
	}
	return nil
}

// headerVerifies reports whether the first of idxs, if any, is a segment
// file whose header verifies under its own index.
func (l *Log) headerVerifies(idxs []uint64) bool {
	if len(idxs) == 0 {
		return false
	}
	h, _, ok := l.fileHeader(idxs[0])
	return ok && h.idx == idxs[0]
}

// fileHeader reads and decodes the header of segment file idx, with the
// file's size; ok is false if it cannot be read or does not decode.
func (l *Log) fileHeader(idx uint64) (h segHeader, size int64, ok bool) {
	f, err := os.Open(filepath.Join(l.dir, segName(idx)))
	if err != nil {
		return h, 0, false
	}
	defer f.Close()
	fi, err := f.Stat()
	if err != nil {
		return h, 0, false
	}
	b := make([]byte, blockSize)
	if _, err := f.ReadAt(b, 0); err != nil {
		return h, 0, false
	}
	h, err = decodeSegHeader(b)
	return h, fi.Size(), err == nil
}

// scanFile scans segment idx and makes what it holds durable (the crashed
// writer may have left it in the page cache only).
func (l *Log) scanFile(idx, want uint64) (scanResult, error) {
	path := filepath.Join(l.dir, segName(idx))
	f, err := l.ring.Open(path, os.O_RDONLY, 0)
	if err != nil {
		return scanResult{}, fmt.Errorf("wal: recover: %w", err)
	}
	defer f.Close()
	ctx := context.Background()
	fd := int(f.Fd())
	w := newWindow(func(p []byte, off int64) (int, error) { return l.ring.ReadAt(ctx, fd, p, off) })
	r, err := scanSegment(w, idx, want, math.MaxUint64, nil)
	if err != nil {
		return r, fmt.Errorf("wal: recover: read %s: %w", path, err)
	}
	if r.hdrErr == nil {
		if err := l.ring.Fsync(ctx, fd, true); err != nil {
			return r, fmt.Errorf("wal: recover: fdatasync %s: %w", path, err)
		}
	}
	return r, nil
}

// reopenTail opens the segment the log ends in for writing, cuts it at end
// (zeroing everything after, so no stale record can ever follow a later
// append), and sets the tail up for the next buffer. The cut overwrites the
// rest with zeros, which also leaves it written blocks (see SkipZeroFill),
// or with SkipZeroFill truncates and preallocates it again.
func (l *Log) reopenTail(seg *segment, end int64) error {
	path := filepath.Join(l.dir, seg.name())
	f, err := l.openSegment(path, 0)
	if err != nil {
		return fmt.Errorf("wal: recover: %w", err)
	}
	fd := int(f.Fd())
	fail := func(op string, err error) error {
		f.Close()
		return fmt.Errorf("wal: recover: %s %s: %w", op, path, err)
	}
	ctx := context.Background()
	t := &l.tail
	t.written = true
	if l.direct {
		// O_DIRECT rewrites the partial last block whole: keep its bytes.
		a := alignDown(end)
		blk := alignedBuf(blockSize)
		if _, err := l.ring.ReadAt(ctx, fd, blk, a); err != nil {
			return fail("read", err)
		}
		t.off, t.preLen = a, copy(t.pre[:], blk[:end-a])
	} else {
		t.off, t.preLen = end, 0
	}
	if l.opts.SkipZeroFill {
		if err := unix.Ftruncate(fd, end); err != nil {
			return fail("truncate", err)
		}
		if err := l.fallocate(fd, seg.size); err != nil && !errors.Is(err, syscall.EOPNOTSUPP) {
			return fail("preallocate", err)
		}
	} else {
		from := end
		if l.direct && t.preLen > 0 {
			// The partial block: its good bytes, then zeros.
			blk := alignedBuf(blockSize)
			copy(blk, t.pre[:t.preLen])
			if _, err := l.ring.WriteAt(ctx, fd, blk, t.off); err != nil {
				return fail("zero", err)
			}
			from = t.off + blockSize
		}
		if err := l.zeroRange(ctx, fd, from, seg.size); err != nil {
			return fail("zero", err)
		}
	}
	// fsync: a truncate, a preallocation or writes past the old size are metadata.
	if err := l.ring.Fsync(ctx, fd, false); err != nil {
		return fail("fsync", err)
	}
	seg.f, seg.fd, seg.ready = f, int32(fd), true
	return nil
}
