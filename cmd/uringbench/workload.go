package main

import (
	"encoding/binary"
	"fmt"
	"math/bits"
	"sync/atomic"
	"time"
	"unsafe"
)

type opKind uint8

const (
	opNop opKind = iota
	opRead
	opWrite
	opWriteSync // a write followed by an fsync, timed as one op
)

// rng is splitmix64: a few instructions per draw and no allocation, so the
// offset choice does not weigh on the measured loop.
type rng uint64

// newRNG returns stream number stream of seed.
//
// Stream s starts at seed ^ mix((s+1)*gamma), not seed ^ (s+1)*gamma: since
// every draw adds gamma to the state, the latter makes stream s+1 a copy of
// stream s shifted by one draw (for small seeds), so that neighbouring
// in-flight slots would hit the same blocks. bench/reference/peak.c derives
// its streams the same way.
func newRNG(seed uint64, stream int) rng {
	r := rng(seed ^ mix(uint64(stream+1)*0x9e3779b97f4a7c15))
	r.next()
	return r
}

func (r *rng) next() uint64 {
	*r += 0x9e3779b97f4a7c15
	return mix(uint64(*r))
}

// mix is splitmix64's finalizer.
func mix(z uint64) uint64 {
	z = (z ^ (z >> 30)) * 0xbf58476d1ce4e5b9
	z = (z ^ (z >> 27)) * 0x94d049bb133111eb
	return z ^ (z >> 31)
}

// below returns a uniform number in [0, n) (Lemire's multiply-shift; the
// bias for n far below 2^64 is negligible for choosing blocks).
func (r *rng) below(n uint64) uint64 {
	hi, _ := bits.Mul64(r.next(), n)
	return hi
}

// plan is what every engine shares about the ops to issue, so that they all
// run the same workload.
type plan struct {
	workload string
	bs       int64
	nblocks  int64 // offsets are multiples of bs below nblocks*bs
	qd       int
	ops      int64 // 0: run until stop
	seed     uint64
	tag      uint64 // stamped into written blocks to tell this engine's writes apart
	pattern  []byte // body of every written block

	// Decoded once from workload, so the per-op path does not compare strings.
	kind0      opKind
	mixed      bool // randrw: each op is a read or a write at random
	sequential bool
	needSeq    bool

	// sampleMask thins latency sampling to one op in sampleMask+1. Only nop
	// uses it: a clock read costs about 50 ns on this kind of VM, a third of
	// a NOP round trip, and the C reference reads the clock once per batch.
	sampleMask uint64

	// seq hands out sequence numbers: op count for -ops, offset for sequential workloads.
	seq  atomic.Int64
	stop atomic.Bool
}

func newPlan(workload string, bs, nblocks int64, qd int, ops int64, seed uint64) *plan {
	p := &plan{workload: workload, bs: bs, nblocks: nblocks, qd: qd, ops: ops, seed: seed}
	switch workload {
	case "nop":
		p.kind0 = opNop
		p.sampleMask = 15
	case "randread", "read":
		p.kind0 = opRead
	case "randwrite", "write":
		p.kind0 = opWrite
	case "fsync":
		p.kind0 = opWriteSync
	case "randrw":
		p.mixed = true
	}
	p.sequential = workload == "read" || workload == "write" || workload == "fsync"
	// Random workloads run by time need no sequence number, which keeps a
	// contended atomic off their hot path.
	p.needSeq = p.sequential || ops > 0
	return p
}

// kind returns the op for a draw (randrw mixes reads and writes 50/50, like
// fio's default rwmixread).
func (p *plan) kind(r *rng) opKind {
	if !p.mixed {
		return p.kind0
	}
	if r.next()&1 == 0 {
		return opRead
	}
	return opWrite
}

// claim reserves the next op. ok is false when the run is over.
func (p *plan) claim() (n int64, ok bool) {
	if p.stop.Load() {
		return 0, false
	}
	if !p.needSeq {
		return 0, true
	}
	n = p.seq.Add(1) - 1
	if p.ops > 0 && n >= p.ops {
		return 0, false
	}
	return n, true
}

// offset returns where op number n goes.
func (p *plan) offset(n int64, r *rng) int64 {
	switch {
	case p.nblocks == 0: // nop
		return 0
	case p.sequential:
		return (n % p.nblocks) * p.bs
	}
	return int64(r.below(uint64(p.nblocks))) * p.bs
}

// Every written block starts with a header naming its offset and the tag of
// the engine run that wrote it; the rest is the plan's pattern.
const headerLen = 16

func stamp(buf []byte, off int64, tag uint64) {
	if len(buf) < headerLen {
		return
	}
	binary.LittleEndian.PutUint64(buf[0:], uint64(off))
	binary.LittleEndian.PutUint64(buf[8:], tag)
}

// checkBlock verifies one block read back after a writing run.
func (p *plan) checkBlock(buf []byte, off int64) error {
	if len(buf) >= headerLen {
		gotOff := int64(binary.LittleEndian.Uint64(buf[0:]))
		gotTag := binary.LittleEndian.Uint64(buf[8:])
		if gotOff != off || gotTag != p.tag {
			return fmt.Errorf("block at %d: header says offset %d tag %#x, want offset %d tag %#x", off, gotOff, gotTag, off, p.tag)
		}
	}
	for i := headerLen; i < len(buf); i++ {
		if buf[i] != p.pattern[i] {
			return fmt.Errorf("block at %d: byte %d is %#02x, want %#02x", off, i, buf[i], p.pattern[i])
		}
	}
	return nil
}

// fillRandom fills b from r.
func fillRandom(b []byte, r *rng) {
	for i := 0; i < len(b); i += 8 {
		var w [8]byte
		binary.LittleEndian.PutUint64(w[:], r.next())
		copy(b[i:], w[:])
	}
}

// alignedBuffer returns n bytes starting at a 4096-byte boundary, which
// satisfies O_DIRECT's memory alignment on every Linux file system.
func alignedBuffer(n int) []byte {
	const align = 4096
	b := make([]byte, n+align)
	shift := 0
	if r := int(uintptr(unsafe.Pointer(&b[0])) % align); r != 0 {
		shift = align - r
	}
	return b[shift : shift+n : shift+n]
}

// sampleCap is how many written offsets each worker remembers for the
// verification pass: enough to catch misplaced or lost writes, few enough to
// read back in a blink.
const sampleCap = 8

type samples struct {
	n   int
	off [sampleCap]int64
}

func (s *samples) add(off int64) {
	if s.n < sampleCap {
		s.off[s.n] = off
		s.n++
	}
}

// epoch anchors now(): time.Since reads the monotonic clock without allocating.
var epoch = time.Now()

func now() int64 { return int64(time.Since(epoch)) }
