// The slot table. A request lives in a slot from the submitter's publish to
// its owner's release; user_data carries the slot index and generation (a
// SubmitAndWait chunk's requests share their head's, see memberBit).
//
// Invariant: slot.tag (gen<<2 | state) is the one word submitter and reaper
// synchronise on. Every other slot field is written before the tag store
// that publishes it and read after the tag load that checks it, so a
// completion whose generation or state does not match is never delivered.

package poller

import (
	"runtime"
	"sync/atomic"
	"unsafe"

	"github.com/ringwake/ringwake/sqe"
	"github.com/ringwake/ringwake/waitqueue"
	"golang.org/x/sys/unix"
)

// user_data layout: bit 63 marks the runtime's own requests (cancels), whose
// completions need no delivery; bits 32..62 hold the slot generation.
const (
	internalTag = uint64(1) << 63
	// pauseTag marks an internal timeout pausing a slot's request; the low
	// 32 bits carry the slot's index.
	pauseTag = uint64(1) << 62
	genMask  = uint32(1)<<31 - 1
)

// slot states, kept with the generation in slot.tag (gen<<2 | state).
const (
	slotFree     = 0 // never used yet
	slotInFlight = 1 // published; the kernel may still write the buffer
	slotDone     = 2 // completion delivered; kept after the release, until the next use
)

// Slot is one request. The poller fires entry with the completion; the
// fields below are written by the submitter before the tag store that
// publishes them, and read by the poller after the tag load that checks them.
type Slot struct {
	entry waitqueue.Entry
	tag   atomic.Uint64 // gen<<2 | state: the one word both sides synchronise on
	idx   uint32
	gen   uint32

	res   int32
	flags uint32
	ch    chan struct{} // blocking requests park here; cap 1, one send per request
	done  func(res int32, flags uint32)
	// keep holds the buffer the kernel reads or writes: reachable, so the GC
	// cannot free it, and on the heap (it escapes through here), so it never moves.
	keep  unsafe.Pointer
	batch *batchWaiter  // a SubmitAndWait chunk's head: the chunk's waiter (its members name this slot)
	ts    unix.Timespec // a linked timeout's duration, read by the kernel at submission

	// A lone request (Submit, or Do without a timeout) keeps its SQE, so that
	// the poller can submit it again if the kernel cancels it on its own.
	sqe       sqe.SQE
	lone      bool
	retries   uint8
	cancelGen uint64 // p.cancelGen when published: a later cancel may be behind an ECANCELED
	// A callback's request the kernel keeps canceling waits out a pause
	// (see pauseLocked): how many it has had, and the one the kernel is
	// timing, read by the kernel when the timeout is submitted.
	pauses  uint8
	pause   unix.Timespec
	noPause bool // SubmitNoPause: delivers the ECANCELED past the immediate retries
}

// takeSlotLocked pops a free slot unless sleepers queue for one: they were
// first, and a newcomer that overtook them would wake one of them for nothing.
func (p *Poller) takeSlotLocked() (uint32, bool) {
	n := len(p.free)
	if n == 0 || p.backlog.Active() {
		return 0, false
	}
	idx := p.free[n-1]
	p.free = p.free[:n-1]
	return idx, true
}

// writeLocked writes s into the next SQE under the slot's new generation; the
// caller publishes. The SQ always has room: slots never outnumber SQ
// entries. lone says the request is linked to nothing, so that the poller
// may submit it again if the kernel cancels it on its own.
func (p *Poller) writeLocked(slot *Slot, s *sqe.SQE, lone bool) uint64 {
	ud := p.writeSlotLocked(slot, s, lone)
	p.pending.Add(1)
	p.stats.submitted.Add(1)
	return ud
}

// writeSlotLocked is writeLocked without the counters, which a caller
// writing many SQEs at once adds up itself, before it publishes.
func (p *Poller) writeSlotLocked(slot *Slot, s *sqe.SQE, lone bool) uint64 {
	if cancels(s.Opcode) {
		p.cancelGen.Add(1)
	}
	slot.lone, slot.retries, slot.pauses, slot.noPause, slot.cancelGen = lone, 0, 0, false, p.cancelGen.Load()
	if lone {
		slot.sqe = *s // only a lone request is ever submitted again
	}
	slot.gen = (slot.gen + 1) & genMask
	ud := uint64(slot.gen)<<32 | uint64(slot.idx)
	// The tag store orders every slot field above before the poller's tag load.
	slot.tag.Store(uint64(slot.gen)<<2 | slotInFlight)
	q := p.getSQELocked()
	*q = *s
	q.UserData = ud
	p.lastSQE = q
	if isBlockIO(s.Opcode) && !p.ioPending.Load() {
		p.ioPending.Store(true)
	}
	return ud
}

// getSQELocked returns a free SQE. Requests never fill the SQ on their own,
// but internal cancels may: then the SQ is flushed to the kernel, which
// consumes entries synchronously unless SQPOLL is on.
func (p *Poller) getSQELocked() *sqe.SQE {
	if q := p.ring.GetSQE(); q != nil {
		return q // the common case, small enough to inline at every caller
	}
	return p.flushForSQELocked()
}

// flushForSQELocked is getSQELocked's rare path: the SQ is full of cancels.
func (p *Poller) flushForSQELocked() *sqe.SQE {
	for {
		if q := p.ring.GetSQE(); q != nil {
			return q
		}
		p.submit()
		runtime.Gosched()
	}
}

func packKey(res int32, flags uint32) uint64 { return uint64(uint32(res)) | uint64(flags)<<32 }

func unpackKey(key uint64) (int32, uint32) { return int32(uint32(key)), uint32(key >> 32) }
