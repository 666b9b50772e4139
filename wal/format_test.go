package wal

import (
	"bytes"
	"errors"
	"fmt"
	"io"
	"testing"
)

func TestRecordFraming(t *testing.T) {
	for _, n := range []int{0, 1, 255, 256, 70000, maxRecLen} {
		payload := bytes.Repeat([]byte{0xa5}, n)
		buf := make([]byte, recHdrSize+n)
		if used := putRecord(buf, 42, recData, payload); used != recHdrSize+n {
			t.Fatalf("putRecord used %d bytes for %d", used, n)
		}
		gotN, typ := recHeader(buf)
		if gotN != n || typ != recData {
			t.Fatalf("header: length %d type %d, want %d %d", gotN, typ, n, recData)
		}
		if le32(buf) != recordCRC(42, buf[4:8], buf[recHdrSize:]) {
			t.Fatal("checksum does not verify")
		}
		// The LSN is part of the checksum: the same bytes at another LSN fail.
		if le32(buf) == recordCRC(43, buf[4:8], buf[recHdrSize:]) {
			t.Fatal("checksum does not depend on the LSN")
		}
	}
}

func TestSegmentHeader(t *testing.T) {
	h := segHeader{idx: 7, firstLSN: 12345, size: 1 << 20}
	b := make([]byte, blockSize)
	h.encode(b)
	got, err := decodeSegHeader(b)
	if err != nil || got != h {
		t.Fatalf("decode: %+v, %v; want %+v", got, err, h)
	}
	for i := 0; i < segHdrLen; i++ {
		c := bytes.Clone(b)
		c[i] ^= 0x04
		if _, err := decodeSegHeader(c); !errors.Is(err, errBadHeader) {
			t.Fatalf("byte %d flipped: %v", i, err)
		}
	}
	if _, err := decodeSegHeader(make([]byte, blockSize)); !errors.Is(err, errBadHeader) {
		t.Fatal("a zero block decoded as a header")
	}
	if _, err := decodeSegHeader(b[:10]); !errors.Is(err, errBadHeader) {
		t.Fatal("a short block decoded as a header")
	}
}

func TestSegName(t *testing.T) {
	if segName(0x1f) != "000000000000001f.wal" {
		t.Fatal(segName(0x1f))
	}
	for name, want := range map[string]uint64{
		"000000000000001f.wal": 0x1f,
		"0000000000000001.wal": 1,
	} {
		if got, ok := parseSegName(name); !ok || got != want {
			t.Errorf("parseSegName(%q) = %d, %v", name, got, ok)
		}
	}
	for _, name := range []string{"0000000000000000.wal", "1.wal", "000000000000001f.log", "00000000000000zz.wal", "LOCK"} {
		if _, ok := parseSegName(name); ok {
			t.Errorf("parseSegName(%q) accepted", name)
		}
	}
}

// memSegment builds a segment image: header, records of the given sizes from
// LSN first, and optionally recEnd.
func memSegment(first uint64, size int64, sizes []int, eos bool) ([]byte, []int64) {
	img := make([]byte, size)
	segHeader{idx: 1, firstLSN: first, size: size}.encode(img)
	off := int64(blockSize)
	var offs []int64
	for i, n := range sizes {
		offs = append(offs, off)
		off += int64(putRecord(img[off:], first+uint64(i), recData, bytes.Repeat([]byte{byte(i)}, n)))
	}
	if eos {
		offs = append(offs, off)
		putRecord(img[off:], first+uint64(len(sizes)), recEnd, nil)
	}
	return img, offs
}

// shortReader serves img at most max bytes per read, as a file would.
func shortReader(img []byte, max int) readFunc {
	return func(p []byte, off int64) (int, error) {
		if off >= int64(len(img)) {
			return 0, io.EOF
		}
		return copy(p[:min(len(p), max)], img[off:]), nil
	}
}

func scanImage(t *testing.T, img []byte) (scanResult, []int) {
	t.Helper()
	var sizes []int
	r, err := scanSegment(newWindow(shortReader(img, 3*blockSize)), 1, 0, ^uint64(0), func(lsn uint64, rec []byte) error {
		for _, c := range rec {
			if c != byte(len(sizes)) {
				return fmt.Errorf("LSN %d: wrong content", lsn)
			}
		}
		sizes = append(sizes, len(rec))
		return nil
	})
	if err != nil {
		t.Fatal(err)
	}
	return r, sizes
}

func TestScanSegment(t *testing.T) {
	// Larger than the scan window, and straddling its reads.
	sizes := []int{0, 10, 5000, windowSize + 3*blockSize, 7, 100}
	const size = 4 << 20

	img, offs := memSegment(100, size, sizes, false)
	r, got := scanImage(t, img)
	if r.hdrErr != nil || r.torn != nil || r.eos || fmt.Sprint(got) != fmt.Sprint(sizes) || r.next != 100+uint64(len(sizes)) {
		t.Fatalf("clean end: %+v, sizes %v", r, got)
	}
	if want := offs[len(offs)-1] + recHdrSize + 100; r.end != want {
		t.Fatalf("end %d, want %d", r.end, want)
	}

	img, offs = memSegment(100, size, sizes, true)
	r, _ = scanImage(t, img)
	if !r.eos || r.torn != nil || r.end != offs[len(offs)-1]+recHdrSize {
		t.Fatalf("recEnd: %+v", r)
	}

	// Every way of damaging the last record ends the scan before it.
	last := offs[len(sizes)-1] // the last data record
	for name, damage := range map[string]func(b []byte) []byte{
		"payload bit": func(b []byte) []byte { b[last+recHdrSize+50] ^= 1; return b },
		"length bit":  func(b []byte) []byte { b[last+4] ^= 2; return b },
		"huge length": func(b []byte) []byte { b[last+6] = 0xff; return b },
		"crc bit":     func(b []byte) []byte { b[last+1] ^= 0x80; return b },
		"bad type":    func(b []byte) []byte { b[last+7] = 9; return b },
		"zero tail":   func(b []byte) []byte { clear(b[last+recHdrSize+90 : last+recHdrSize+100]); return b },
		"cut short":   func(b []byte) []byte { return b[:last+recHdrSize+20] },
		"cut header":  func(b []byte) []byte { return b[:last+3] },
	} {
		img, _ := memSegment(100, size, sizes, false)
		r, got := scanImage(t, damage(img))
		if r.torn == nil || !errors.Is(r.torn, errTorn) || len(got) != len(sizes)-1 || r.end != last || r.next != 100+uint64(len(sizes)-1) {
			t.Errorf("%s: %+v after %d records", name, r, len(got))
		}
	}

	// A header that is not this segment's means nothing in it counts.
	img, _ = memSegment(100, size, sizes, false)
	r, err := scanSegment(newWindow(shortReader(img, blockSize)), 2, 0, ^uint64(0), nil)
	if err != nil || r.hdrErr == nil {
		t.Fatalf("wrong index: %+v, %v", r, err)
	}
	r, err = scanSegment(newWindow(shortReader(img, blockSize)), 1, 99, ^uint64(0), nil)
	if err != nil || r.hdrErr == nil {
		t.Fatalf("wrong first LSN: %+v, %v", r, err)
	}
	// upto stops the scan without reading further.
	r, err = scanSegment(newWindow(shortReader(img, blockSize)), 1, 100, 101, nil)
	if err != nil || r.next != 102 || r.torn != nil {
		t.Fatalf("upto: %+v, %v", r, err)
	}
	// A read error is reported as such.
	boom := errors.New("boom")
	_, err = scanSegment(newWindow(func([]byte, int64) (int, error) { return 0, boom }), 1, 0, ^uint64(0), nil)
	if !errors.Is(err, boom) || !isReadErr(err) {
		t.Fatalf("read error: %v", err)
	}
}
