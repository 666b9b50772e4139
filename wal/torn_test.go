package wal

import (
	"bytes"
	"context"
	"errors"
	"math"
	"os"
	"path/filepath"
	"slices"
	"testing"
)

// segRecord is where a record sits on disk.
type segRecord struct {
	path string
	off  int64 // of its header
	n    int   // payload length
}

// recordsOnDisk lists the records of a closed log's segment files in LSN
// order, by reading them directly.
func recordsOnDisk(t *testing.T, dir string) []segRecord {
	t.Helper()
	idxs := segFiles(t, dir)
	var out []segRecord
	for _, idx := range idxs {
		path := filepath.Join(dir, segName(idx))
		f, err := os.Open(path)
		if err != nil {
			t.Fatal(err)
		}
		off := int64(blockSize)
		r, err := scanSegment(newWindow(f.ReadAt), idx, 0, math.MaxUint64, func(lsn uint64, rec []byte) error {
			out = append(out, segRecord{path, off, len(rec)})
			off += recHdrSize + int64(len(rec))
			return nil
		})
		f.Close()
		if err != nil {
			t.Fatal(err)
		}
		if r.hdrErr != nil || !r.eos {
			break
		}
	}
	return out
}

func patchFile(t *testing.T, path string, off int64, fn func(b []byte)) {
	t.Helper()
	b, err := os.ReadFile(path)
	if err != nil {
		t.Fatal(err)
	}
	fn(b[off:])
	if err := os.WriteFile(path, b, 0o644); err != nil {
		t.Fatal(err)
	}
}

// writeLog appends records 0..n-1 of writer g and closes the log.
func writeLog(t *testing.T, dir string, o Options, g, n int) [][]byte {
	t.Helper()
	l := openT(t, dir, o)
	var recs [][]byte
	for i := range n {
		r := testRecord(g, i)
		if _, err := l.Append(context.Background(), r); err != nil {
			t.Fatal(err)
		}
		recs = append(recs, r)
	}
	if err := l.Close(); err != nil {
		t.Fatal(err)
	}
	return recs
}

// expectLog reopens the log and checks it holds exactly want, then appends
// extra and checks it lands right after, across another reopen.
func expectLog(t *testing.T, dir string, o Options, want [][]byte, extra []byte) {
	t.Helper()
	check := func(l *Log, want [][]byte) {
		t.Helper()
		recs := replayAll(t, l)
		if len(recs) != len(want) {
			t.Fatalf("replayed %d records, want %d", len(recs), len(want))
		}
		for i := range want {
			if recs[i].lsn != uint64(i+1) || !bytes.Equal(recs[i].rec, want[i]) {
				t.Fatalf("record %d (LSN %d) differs", i, recs[i].lsn)
			}
		}
	}
	l := openT(t, dir, o)
	check(l, want)
	lsn, err := l.Append(context.Background(), extra)
	if err != nil || lsn != uint64(len(want)+1) {
		t.Fatalf("Append after the cut: LSN %d, %v; want %d", lsn, err, len(want)+1)
	}
	if err := l.Close(); err != nil {
		t.Fatal(err)
	}
	l = openT(t, dir, o)
	defer l.Close()
	check(l, append(slices.Clip(want), extra))
}

// TestTornTail damages the last record in each way a crash or the medium
// could, and checks Open detects it by the checksum, cuts it off, never
// returns it, and lets new records follow the last good one.
func TestTornTail(t *testing.T) {
	damages := map[string]func(t *testing.T, r segRecord){
		"truncate inside the record": func(t *testing.T, r segRecord) {
			if err := os.Truncate(r.path, r.off+recHdrSize+int64(r.n)/2); err != nil {
				t.Fatal(err)
			}
		},
		"truncate inside the header": func(t *testing.T, r segRecord) {
			if err := os.Truncate(r.path, r.off+3); err != nil {
				t.Fatal(err)
			}
		},
		"zero its last bytes": func(t *testing.T, r segRecord) {
			patchFile(t, r.path, r.off+recHdrSize+int64(r.n)-5, func(b []byte) { clear(b[:5]) })
		},
		"flip a payload bit": func(t *testing.T, r segRecord) {
			patchFile(t, r.path, r.off+recHdrSize+int64(r.n)/2, func(b []byte) { b[0] ^= 0x10 })
		},
		"flip a length bit": func(t *testing.T, r segRecord) {
			patchFile(t, r.path, r.off+4, func(b []byte) { b[0] ^= 0x01 })
		},
		"flip a checksum bit": func(t *testing.T, r segRecord) {
			patchFile(t, r.path, r.off, func(b []byte) { b[2] ^= 0x80 })
		},
	}
	for mode, o := range modes(small) {
		for name, damage := range damages {
			t.Run(mode+"/"+name, func(t *testing.T) {
				dir := t.TempDir()
				recs := writeLog(t, dir, o, 1, 40)
				onDisk := recordsOnDisk(t, dir)
				if len(onDisk) != len(recs) {
					t.Fatalf("%d records on disk, %d appended", len(onDisk), len(recs))
				}
				damage(t, onDisk[len(onDisk)-1])
				expectLog(t, dir, o, recs[:len(recs)-1], []byte("next"))
			})
		}
	}
}

// TestCorruptRecordCutsTheRest corrupts a record in the middle: everything
// from it on is cut, and stays cut when new records of the same sizes are
// appended in its place (the old ones would verify at their old LSNs if
// they were still on disk right behind). In buffered mode only the zeroing
// at the cut stops them; under O_DIRECT each write's zero padding to the end
// of its block also hides them, unless a write ends exactly where a stale
// record starts.
func TestCorruptRecordCutsTheRest(t *testing.T) {
	for mode, o := range modes(small) {
		t.Run(mode, func(t *testing.T) {
			dir := t.TempDir()
			l := openT(t, dir, o)
			// 60 records of 300 bytes: the stale ones span several blocks
			// past the cut, beyond the partial block O_DIRECT rewrites.
			rec := func(i int) []byte { return bytes.Repeat([]byte{byte(i)}, 300) }
			var recs [][]byte
			for i := range 60 {
				if _, err := l.Append(context.Background(), rec(i)); err != nil {
					t.Fatal(err)
				}
				recs = append(recs, rec(i))
			}
			if err := l.Close(); err != nil {
				t.Fatal(err)
			}
			onDisk := recordsOnDisk(t, dir)
			r := onDisk[10]
			patchFile(t, r.path, r.off+recHdrSize+3, func(b []byte) { b[0] ^= 1 })
			// Record 11 (LSN 11) is gone; a new one of the same size takes
			// its LSN and its place, and the old 12.. must not come back.
			expectLog(t, dir, o, recs[:10], rec(200))
			l = openT(t, dir, o)
			defer l.Close()
			if n := len(replayAll(t, l)); n != 11 {
				t.Fatalf("replayed %d records, want 11", n)
			}
		})
	}
}

// TestTornSegmentHeader damages the header of a later segment: the log ends
// with the segment before, the later ones are removed, and the log goes on.
func TestTornSegmentHeader(t *testing.T) {
	for mode, o := range modes(Options{SegmentSize: 16 << 10, BufferSize: 4096}) {
		t.Run(mode, func(t *testing.T) {
			dir := t.TempDir()
			recs := writeLog(t, dir, o, 2, 100)
			onDisk := recordsOnDisk(t, dir)
			var segs []string
			inFirst := 0
			for _, r := range onDisk {
				if !slices.Contains(segs, r.path) {
					segs = append(segs, r.path)
				}
				if r.path == segs[0] {
					inFirst++
				}
			}
			if len(segs) < 3 {
				t.Fatalf("only %d segments", len(segs))
			}
			patchFile(t, segs[1], 20, func(b []byte) { b[0] ^= 0xff })
			expectLog(t, dir, o, recs[:inFirst], []byte("next"))
			if _, err := os.Stat(segs[2]); err == nil {
				// It exists again only if the log grew back into it: it must
				// then hold a header for the new records, not the old ones.
				f, err := os.Open(segs[2])
				if err != nil {
					t.Fatal(err)
				}
				defer f.Close()
				r, err := scanSegment(newWindow(f.ReadAt), 3, 0, math.MaxUint64, nil)
				if err != nil || r.hdrErr == nil {
					t.Fatalf("old segment 3 survived the cut: %+v, %v", r, err)
				}
			}
		})
	}
}

// TestReplayReportsCorruption corrupts a durable record under an open log:
// Replay reports it as ErrCorrupt instead of skipping it or stopping quietly.
func TestReplayReportsCorruption(t *testing.T) {
	dir := t.TempDir()
	o := Options{SegmentSize: 1 << 20, Direct: DirectOff}
	l := openT(t, dir, o)
	defer l.Close()
	for i := range 20 {
		if _, err := l.Append(context.Background(), testRecord(3, i)); err != nil {
			t.Fatal(err)
		}
	}
	r := recordsOnDisk(t, dir)[5]
	f, err := os.OpenFile(r.path, os.O_RDWR, 0)
	if err != nil {
		t.Fatal(err)
	}
	if _, err := f.WriteAt([]byte{0xee}, r.off+recHdrSize+2); err != nil {
		t.Fatal(err)
	}
	f.Close()
	n := 0
	err = l.Replay(func(uint64, []byte) error { n++; return nil })
	if !errors.Is(err, ErrCorrupt) || !errors.Is(err, errTorn) || n != 5 {
		t.Fatalf("Replay over a corrupt durable record: %v after %d records", err, n)
	}
	stop := errors.New("stop")
	if err := l.Replay(func(uint64, []byte) error { return stop }); err != stop {
		t.Fatalf("Replay did not return fn's error as is: %v", err)
	}
}
