// The on-disk format: segment names, headers and record framing.
// Invariant: a record verifies only at the LSN it was written for (the LSN
// seeds its CRC-32C), and a segment header only under the index it was
// written for, so neither a stale record nor a renamed file can pass for a
// current one.

package wal

import (
	"encoding/binary"
	"errors"
	"fmt"
	"hash/crc32"
	"strconv"
	"strings"
)

// On-disk format (docs/wal.md has the full description).
//
// A segment file is named %016x.wal after its index (1, 2, ...). Its first
// blockSize bytes are the segment header; records follow back to back from
// offset blockSize. Every record has an 8-byte header:
//
//	[0:4] CRC-32C (Castagnoli) of the record's LSN (8 bytes, little-endian)
//	      followed by bytes [4:8+len) of the record
//	[4:7] payload length, 24-bit little-endian
//	[7]   type: recData or recEnd
//	[8:]  payload
//
// A zero type byte (preallocated or zeroed space) is the end of the data.
// recEnd closes a segment: the log continues in the next one, whose first
// record has the LSN recEnd's CRC was seeded with. A record whose CRC does
// not match, or that runs past the segment, is a torn or corrupt tail.
const (
	blockSize  = 4096 // O_DIRECT alignment unit, and the size of a segment header
	recHdrSize = 8
	maxRecLen  = 1<<24 - 1 // the 24-bit length field

	recData byte = 1
	recEnd  byte = 2

	segMagic   = "ringwal\x00"
	segVersion = 1
	segHdrLen  = 44 // bytes of the header that carry data; the rest of the block is zero
)

var castagnoli = crc32.MakeTable(crc32.Castagnoli)

// recordCRC is the checksum of a record: its LSN is mixed in, so a
// well-formed record left behind at a position where a different LSN is due
// (stale bytes in a recycled buffer, say) does not verify.
func recordCRC(lsn uint64, hdr4 []byte, payload []byte) uint32 {
	var l [8]byte
	binary.LittleEndian.PutUint64(l[:], lsn)
	c := crc32.Update(0, castagnoli, l[:])
	c = crc32.Update(c, castagnoli, hdr4)
	return crc32.Update(c, castagnoli, payload)
}

// putRecord frames payload as a record of type typ at dst[0:], which must have
// room for recHdrSize+len(payload) bytes, and returns the bytes used.
//
// It computes recordCRC with the LSN's bytes laid in dst's header first: a
// slice handed to crc32 escapes, and dst is already on the heap where a
// local array would be allocated for every record.
func putRecord(dst []byte, lsn uint64, typ byte, payload []byte) int {
	n := len(payload)
	binary.LittleEndian.PutUint64(dst[0:8], lsn)
	c := crc32.Update(0, castagnoli, dst[0:8])
	dst[4], dst[5], dst[6], dst[7] = byte(n), byte(n>>8), byte(n>>16), typ
	c = crc32.Update(c, castagnoli, dst[4:8])
	copy(dst[recHdrSize:], payload)
	binary.LittleEndian.PutUint32(dst[0:4], crc32.Update(c, castagnoli, dst[recHdrSize:recHdrSize+n]))
	return recHdrSize + n
}

// recHeader decodes the length and type of a record header.
func recHeader(h []byte) (n int, typ byte) {
	return int(h[4]) | int(h[5])<<8 | int(h[6])<<16, h[7]
}

// segHeader is the first block of a segment.
type segHeader struct {
	idx      uint64 // the segment's index, also in its file name
	firstLSN uint64 // LSN of its first record
	size     int64  // capacity: records never extend past it
}

// encode writes the header into a zeroed blockSize block.
func (h segHeader) encode(b []byte) {
	clear(b[:blockSize])
	copy(b[0:8], segMagic)
	binary.LittleEndian.PutUint32(b[8:12], segVersion)
	binary.LittleEndian.PutUint32(b[12:16], blockSize)
	binary.LittleEndian.PutUint64(b[16:24], h.idx)
	binary.LittleEndian.PutUint64(b[24:32], h.firstLSN)
	binary.LittleEndian.PutUint64(b[32:40], uint64(h.size))
	binary.LittleEndian.PutUint32(b[40:44], crc32.Checksum(b[0:40], castagnoli))
}

var errBadHeader = errors.New("wal: bad segment header")

// decodeSegHeader checks and decodes a segment header block.
func decodeSegHeader(b []byte) (segHeader, error) {
	if len(b) < segHdrLen {
		return segHeader{}, fmt.Errorf("%w: %d bytes", errBadHeader, len(b))
	}
	if string(b[0:8]) != segMagic {
		return segHeader{}, fmt.Errorf("%w: no magic", errBadHeader)
	}
	if got, want := binary.LittleEndian.Uint32(b[40:44]), crc32.Checksum(b[0:40], castagnoli); got != want {
		return segHeader{}, fmt.Errorf("%w: checksum %08x, want %08x", errBadHeader, got, want)
	}
	if v := binary.LittleEndian.Uint32(b[8:12]); v != segVersion {
		return segHeader{}, fmt.Errorf("%w: version %d, this package reads %d", errBadHeader, v, segVersion)
	}
	if bs := binary.LittleEndian.Uint32(b[12:16]); bs != blockSize {
		return segHeader{}, fmt.Errorf("%w: block size %d", errBadHeader, bs)
	}
	h := segHeader{
		idx:      binary.LittleEndian.Uint64(b[16:24]),
		firstLSN: binary.LittleEndian.Uint64(b[24:32]),
		size:     int64(binary.LittleEndian.Uint64(b[32:40])),
	}
	if h.size < minSegmentSize || h.size%blockSize != 0 || h.firstLSN == 0 {
		return segHeader{}, fmt.Errorf("%w: size %d, first LSN %d", errBadHeader, h.size, h.firstLSN)
	}
	return h, nil
}

func segName(idx uint64) string { return fmt.Sprintf("%016x.wal", idx) }

// parseSegName returns the index a segment file name carries.
func parseSegName(name string) (uint64, bool) {
	hex, ok := strings.CutSuffix(name, ".wal")
	if !ok || len(hex) != 16 {
		return 0, false
	}
	idx, err := strconv.ParseUint(hex, 16, 64)
	return idx, err == nil && idx > 0
}

func alignDown(n int64) int64 { return n &^ (blockSize - 1) }
func alignUp(n int64) int64   { return (n + blockSize - 1) &^ (blockSize - 1) }
