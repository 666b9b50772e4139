// Reading a segment's records back in order, for recovery and Replay.
// Invariant: a scan yields records only up to the first that does not
// verify, the clean end (zeros) or an end-of-segment record, never past
// them; and it reads only block-aligned ranges into block-aligned memory, so
// the same scan runs on an O_DIRECT descriptor.

package wal

import (
	"errors"
	"fmt"
	"io"
	"unsafe"
)

// readFunc is one read of p at off, which may be short; 0 bytes means the end
// of the file.
type readFunc func(p []byte, off int64) (int, error)

// window is a block-aligned view of a file, refilled as the scan moves on.
// Offsets, lengths and the buffer address are all multiples of blockSize, so
// the same reads work on an O_DIRECT descriptor.
type window struct {
	read readFunc
	buf  []byte
	off  int64 // file offset of buf[0]
	n    int   // valid bytes in buf
	eof  int64 // where the file ended, once a read found it; -1 before
}

const windowSize = 1 << 20

func newWindow(read readFunc) *window {
	return &window{read: read, buf: alignedBuf(windowSize), eof: -1}
}

// alignedBuf returns n bytes (rounded up to a block) of Go memory starting
// at a block boundary. The GC does not move heap objects, and the ring keeps
// the buffer reachable while a read uses it.
func alignedBuf(n int) []byte {
	n = int(alignUp(int64(n)))
	b := make([]byte, n+blockSize)
	skip := int(-uintptr(unsafe.Pointer(unsafe.SliceData(b))) & (blockSize - 1))
	return b[skip : skip+n : skip+n]
}

// at returns the n bytes at off, or nil when the file ends before off+n.
func (w *window) at(off int64, n int) ([]byte, error) {
	end := off + int64(n)
	if off >= w.off && end <= w.off+int64(w.n) {
		return w.buf[off-w.off : end-w.off], nil
	}
	if w.eof >= 0 && end > w.eof {
		return nil, nil
	}
	start := alignDown(off)
	if need := int(end - start); need > len(w.buf) {
		w.buf = alignedBuf(need)
	}
	got := 0
	for got < len(w.buf) {
		m, err := w.read(w.buf[got:], start+int64(got))
		if err != nil && !errors.Is(err, io.EOF) {
			w.n = 0
			return nil, readErr{err}
		}
		if m <= 0 {
			w.eof = start + int64(got)
			break
		}
		got += m
		if got%blockSize != 0 {
			// A short read that ends off a block boundary is the end of the
			// file, and an O_DIRECT read could not go on from there anyway.
			w.eof = start + int64(got)
			break
		}
	}
	w.off, w.n = start, got
	if end > start+int64(got) {
		return nil, nil
	}
	return w.buf[off-start : end-start], nil
}

// scanResult is what a scan of one segment found.
type scanResult struct {
	hdr    segHeader
	hdrErr error  // the header is missing or invalid: nothing in the segment counts
	end    int64  // offset just past the last good record (past recEnd if eos)
	next   uint64 // LSN the next record has
	eos    bool   // closed by recEnd: the log continues in the next segment
	torn   error  // set when the scan stopped at a torn or corrupt record
}

// errTorn marks a record that does not verify: a write cut short by a crash,
// or corruption.
var errTorn = errors.New("wal: torn or corrupt record")

// scanSegment reads the records of segment idx in order. wantFirst, unless 0,
// is the LSN its first record must have. fn, unless nil, is called with each
// record whose LSN is at most upto; the scan stops after upto.
func scanSegment(w *window, idx, wantFirst, upto uint64, fn func(lsn uint64, rec []byte) error) (r scanResult, err error) {
	hb, err := w.at(0, blockSize)
	if err != nil {
		return r, err
	}
	if hb == nil {
		r.hdrErr = fmt.Errorf("%w: file shorter than a block", errBadHeader)
		return r, nil
	}
	h, err := decodeSegHeader(hb)
	switch {
	case err != nil:
		r.hdrErr = err
		return r, nil
	case h.idx != idx:
		r.hdrErr = fmt.Errorf("%w: index %d in file %s", errBadHeader, h.idx, segName(idx))
		return r, nil
	case wantFirst != 0 && h.firstLSN != wantFirst:
		r.hdrErr = fmt.Errorf("%w: first LSN %d, want %d", errBadHeader, h.firstLSN, wantFirst)
		return r, nil
	}
	r.hdr = h
	off, lsn := int64(blockSize), h.firstLSN
	// Named results: every return below reports where the scan stopped.
	defer func() { r.end, r.next = off, lsn }()
	for lsn <= upto {
		// The writer always leaves room for a recEnd header.
		if off+recHdrSize > h.size {
			r.torn = fmt.Errorf("%w: LSN %d at offset %d: no room left in a %d-byte segment", errTorn, lsn, off, h.size)
			return r, nil
		}
		hdr, err := w.at(off, recHdrSize)
		if err != nil {
			return r, err
		}
		if hdr == nil {
			r.torn = fmt.Errorf("%w: LSN %d at offset %d: the file ends", errTorn, lsn, off)
			return r, nil
		}
		n, typ := recHeader(hdr)
		if typ == 0 && allZero(hdr) {
			return r, nil // clean end: the log ends here
		}
		limit := h.size - recHdrSize // a data record leaves room for recEnd
		if typ == recEnd {
			limit = h.size
		}
		if (typ != recData && typ != recEnd) || (typ == recEnd && n != 0) || off+recHdrSize+int64(n) > limit {
			r.torn = fmt.Errorf("%w: LSN %d at offset %d: type %d, length %d", errTorn, lsn, off, typ, n)
			return r, nil
		}
		rec, err := w.at(off, recHdrSize+n)
		if err != nil {
			return r, err
		}
		if rec == nil {
			r.torn = fmt.Errorf("%w: LSN %d at offset %d: the file ends inside it", errTorn, lsn, off)
			return r, nil
		}
		if got, want := le32(rec), recordCRC(lsn, rec[4:8], rec[recHdrSize:]); got != want {
			r.torn = fmt.Errorf("%w: LSN %d at offset %d: checksum %08x, want %08x", errTorn, lsn, off, got, want)
			return r, nil
		}
		if typ == recEnd {
			off += recHdrSize
			r.eos = true
			return r, nil
		}
		if fn != nil {
			if err := fn(lsn, rec[recHdrSize:]); err != nil {
				return r, err
			}
		}
		off += recHdrSize + int64(n)
		lsn++
	}
	return r, nil
}

func le32(b []byte) uint32 {
	return uint32(b[0]) | uint32(b[1])<<8 | uint32(b[2])<<16 | uint32(b[3])<<24
}

func allZero(b []byte) bool {
	for _, c := range b {
		if c != 0 {
			return false
		}
	}
	return true
}
