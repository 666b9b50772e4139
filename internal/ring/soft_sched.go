package ring

import (
	"sync/atomic"
	"syscall"
	"time"

	"github.com/ringwake/ringwake/sqe"
)

// Request states. Every transition happens under softEngine.mu, except that
// a running request belongs to its worker until the worker takes mu again.
const (
	stLinked      = iota // waits for its chain predecessor (or for admission)
	stQueued             // in the run queue
	stRunning            // inline, or on a worker making its syscall
	stParkedPoll         // waiting for readiness in the poll loop
	stParkedTimer        // TIMEOUT or armed LINK_TIMEOUT waiting for its timer
	stMultiPoll          // multishot POLL_ADD registered in the edge-triggered epoll
	stDone               // CQE posted; nothing touches it any more
)

// Kinds of a running request, for a cancel that finds it running.
const (
	kindUnknown  = iota // not classified yet: treated as interruptible
	kindBlocking        // a syscall that cannot be interrupted
	kindPollable        // never blocks: would-block turns into a park
)

// softReq is one consumed SQE.
type softReq struct {
	s       sqe.SQE // the copy taken at consumption
	state   uint8
	hard    bool     // IOHardlink: a failure does not break the chain
	link    *softReq // chain successor
	lt      *softReq // the LINK_TIMEOUT bounding this request
	owner   *softReq // for a LINK_TIMEOUT: the request it bounds
	prepErr int32    // -errno found at consumption, reported when it runs

	fd    int       // descriptor to use
	fixed *softFile // fixed-table entry held until completion
	buf   []byte    // registered buffer kept reachable until completion
	iov   rawIovec  // single-buffer iovec: on the heap, so its address is stable
	total uint64    // READV/WRITEV byte count, when linked (for short-transfer failure)

	// seq tells one use of this (recycled) request from the next: the run
	// queue and the poll loop's snapshot hold it beside the pointer.
	seq     uint32
	inChain bool // has a chain predecessor, whose link points here

	kind       atomic.Uint32 // kind*, read by cancel while a worker runs it
	cancelReq  bool          // a cancel found it running: give up instead of parking
	classified bool          // rw: fstat done (worker-owned)
	pollable   bool
	stream     bool   // FIFO or socket: the offset is ignored
	off        uint64 // rw: offset used (^0: the file position)
	noNowait   bool   // RWF_NOWAIT refused: wait for readiness, then block
	woke       bool   // the poll loop saw it ready
	pollEv     int16
	mpoll      bool // multishot POLL_ADD
	mfd        int  // its epoll registration: a dup of fd, one per request

	// Parking: the group of its descriptor, while parked in one of its
	// lists or while holding its turn after being woken.
	pgroup       *pollGroup
	pprev, pnext *softReq

	// timers
	dur      time.Duration // relative duration, or
	absNs    int64         // absolute deadline on clock
	clock    int32
	abs      bool
	count    uint32 // multishot TIMEOUT: shots to fire, 0 forever
	shots    uint32
	multi    bool
	timer    *time.Timer
	timerGen uint32

	prevLive, nextLive *softReq
}

type rawIovec struct{ base, len uint64 }

// softRun is a run queue entry: the request, as of one use.
type softRun struct {
	q   *softReq
	seq uint32
}

// maxFreeReqs bounds the recycled-request list per engine.
const maxFreeReqs = 1024

// allocLocked hands out n reset requests, recycled when possible so a busy
// ring allocates nothing per request. Reset under mu: stale references
// (a run queue entry, a timer, the poll loop's snapshot) read the state,
// seq and timer generation under mu and must see either use, whole.
func (e *softEngine) allocLocked(dst []*softReq, n int) []*softReq {
	for i := 0; i < n; i++ {
		var q *softReq
		if k := len(e.free); k > 0 {
			q = e.free[k-1]
			e.free[k-1] = nil
			e.free = e.free[:k-1]
			gen, seq := q.timerGen, q.seq+1
			*q = softReq{}
			// Never reused: a timer armed in an earlier use must not match.
			q.timerGen, q.seq = gen, seq
		} else {
			q = new(softReq)
		}
		q.state = stDone // until admitted
		q.fd, q.mfd = -1, -1
		dst = append(dst, q)
	}
	return dst
}

// recycleLocked takes back a completed request that nothing else points to
// any more except through seq- or generation-checked references: one with
// no chain neighbour and no linked timeout.
func (e *softEngine) recycleLocked(q *softReq) {
	if q.inChain || q.link != nil || q.lt != nil || q.owner != nil || len(e.free) >= maxFreeReqs {
		return
	}
	q.s = sqe.SQE{}
	e.free = append(e.free, q)
}

// softList is an intrusive list of live requests in submission order.
type softList struct{ first, last *softReq }

func (l *softList) push(q *softReq) {
	q.prevLive, q.nextLive = l.last, nil
	if l.last != nil {
		l.last.nextLive = q
	} else {
		l.first = q
	}
	l.last = q
}

func (l *softList) remove(q *softReq) {
	if q.prevLive != nil {
		q.prevLive.nextLive = q.nextLive
	} else if l.first == q {
		l.first = q.nextLive
	}
	if q.nextLive != nil {
		q.nextLive.prevLive = q.prevLive
	} else if l.last == q {
		l.last = q.prevLive
	}
	q.prevLive, q.nextLive = nil, nil
}

// scheduleLocked makes q (a chain head, or the successor of a completed
// request) runnable: inline requests complete here, and whatever needs a
// worker goes to the run queue.
func (e *softEngine) scheduleLocked(q *softReq) {
	if w := e.readyLocked(q); w != nil {
		e.pushRunLocked(w)
	}
}

// readyLocked runs q and its successors as far as possible without a worker
// and returns the first request that needs one (its state still to be set
// by the caller), or nil when the chain parked or ended.
func (e *softEngine) readyLocked(q *softReq) *softReq {
	for q != nil {
		if lt := q.lt; lt != nil && lt.state == stLinked {
			// Armed when the op becomes runnable, so queueing time counts.
			e.armLocked(lt)
		}
		var res int32
		switch {
		case e.closing:
			res = -int32(syscall.ECANCELED)
		case q.prepErr != 0:
			res = q.prepErr
		case q.s.Opcode == sqe.OpNop:
			res = q.nopResult()
		case q.s.Opcode == sqe.OpAsyncCancel:
			q.state = stRunning // never matches itself
			res = e.cancelLocked(q)
		case q.s.Opcode == sqe.OpPollRemove, q.s.Opcode == sqe.OpTimeoutRemove:
			q.state = stRunning
			res = e.removeLocked(q)
		case q.s.Opcode == sqe.OpTimeout:
			e.armLocked(q)
			return nil
		case q.s.Opcode == sqe.OpPollAdd && q.mpoll:
			var armed bool
			if res, armed = e.armMultiLocked(q); armed {
				return nil
			}
		case q.s.Opcode == sqe.OpPollAdd:
			if errno := e.parkLocked(q, q.pollEv); errno != 0 {
				res = -int32(errno)
				break
			}
			return nil
		default:
			return q
		}
		q.state = stRunning
		q = e.completeLocked(q, res)
	}
	return nil
}

func (q *softReq) nopResult() int32 {
	if q.s.OpFlags&nopInjectResult != 0 {
		return int32(q.s.Len)
	}
	return 0
}

// nopInjectResult is IORING_NOP_INJECT_RESULT: the NOP completes with Len.
const nopInjectResult = 1 << 0

// pushRunLocked queues q for a worker, starting one if none is idle.
func (e *softEngine) pushRunLocked(q *softReq) {
	q.state = stQueued
	e.runq = append(e.runq, softRun{q, q.seq})
	if e.idle > 0 {
		e.workCond.Signal()
	}
	// A signaled worker still counts as idle until it runs: start another
	// when more is queued than the idle ones can take.
	if len(e.runq)-e.runHead > e.idle && e.workers < e.maxWork {
		e.workers++
		e.wg.Add(1)
		go e.worker()
	}
}

// popRunLocked takes the oldest request still queued (canceled ones stay
// in the slice until they reach its head).
func (e *softEngine) popRunLocked() *softReq {
	for e.runHead < len(e.runq) {
		r := e.runq[e.runHead]
		e.runq[e.runHead] = softRun{}
		e.runHead++
		if q := r.q; q.seq == r.seq && q.state == stQueued {
			e.compactRunLocked()
			return q
		}
	}
	e.runq, e.runHead = e.runq[:0], 0
	return nil
}

// compactRunLocked reuses the front of the slice once half of it is spent.
func (e *softEngine) compactRunLocked() {
	if e.runHead > 64 && e.runHead*2 >= len(e.runq) {
		n := copy(e.runq, e.runq[e.runHead:])
		clear(e.runq[n:])
		e.runq, e.runHead = e.runq[:n], 0
	}
}

// worker runs queued requests until Close. A chain continues on the worker
// that completed its predecessor.
func (e *softEngine) worker() {
	defer e.wg.Done()
	e.mu.Lock()
	for {
		q := e.popRunLocked()
		if q == nil {
			if e.closing {
				e.workers--
				e.mu.Unlock()
				return
			}
			e.idle++
			e.workCond.Wait()
			e.idle--
			continue
		}
		for q != nil {
			q.state = stRunning
			if !isRWOp(q.s.Opcode) {
				q.kind.Store(kindBlocking)
			}
			e.mu.Unlock()
			res, park := e.execute(q)
			e.mu.Lock()
			if park != 0 {
				// Would block: park, unless a cancel came meanwhile.
				res = -int32(syscall.ECANCELED)
				if !q.cancelReq && !e.closing {
					errno := e.parkLocked(q, park)
					if errno == 0 {
						break // the poll loop requeues it when it is ready
					}
					res = -int32(errno)
				}
			}
			q = e.readyLocked(e.completeLocked(q, res))
		}
	}
}

// completeLocked posts q's CQE and returns its chain successor if that is
// now runnable. A failed request (negative result, short transfer, as the
// kernel counts it) fails the rest of an IOLink chain with -ECANCELED.
func (e *softEngine) completeLocked(q *softReq, res int32) *softReq {
	if q.state == stDone {
		return nil
	}
	// A request canceled while it waited for its predecessor does not
	// start its successors: the predecessor does, when it completes.
	active := q.state != stLinked
	e.retireLocked(q, res)
	next := q.link
	if next == nil {
		e.recycleLocked(q)
		return nil
	}
	if e.closing || (!q.hard && q.failed(res)) {
		e.failChainLocked(next)
		return nil
	}
	if !active {
		return nil
	}
	for next != nil && next.state == stDone {
		next = next.link
	}
	return next
}

// failChainLocked completes every request from n on with -ECANCELED.
func (e *softEngine) failChainLocked(n *softReq) {
	for ; n != nil; n = n.link {
		if n.state != stDone {
			e.retireLocked(n, -int32(syscall.ECANCELED))
		}
	}
}

// retireLocked posts q's one CQE and releases what it holds.
func (e *softEngine) retireLocked(q *softReq, res int32) {
	switch q.state {
	case stParkedPoll:
		e.unparkLocked(q)
	case stMultiPoll:
		e.disarmMultiLocked(q)
	}
	e.releaseTurnLocked(q)
	q.state = stDone
	e.stopTimerLocked(q)
	e.live.remove(q)
	if q.fixed != nil {
		e.releaseFixed(q.fixed)
		q.fixed = nil
	}
	q.buf = nil
	if q.s.Flags&sqe.CQESkipSuccess == 0 || res < 0 {
		e.postLocked(q.s.UserData, res, 0)
	}
	if lt := q.lt; lt != nil {
		q.lt = nil
		if lt.state != stDone {
			e.retireLocked(lt, -int32(syscall.ECANCELED))
		}
	}
}

// failed is the kernel's notion of failure for links: an error, or a read
// or write that moved fewer bytes than asked.
func (q *softReq) failed(res int32) bool {
	if res < 0 {
		return !(q.s.Opcode == sqe.OpTimeout && res == -int32(syscall.ETIME) && q.s.OpFlags&sqe.TimeoutETimeSuccess != 0)
	}
	switch q.s.Opcode {
	case sqe.OpRead, sqe.OpWrite, sqe.OpReadFixed, sqe.OpWriteFixed:
		return uint32(res) < q.s.Len
	case sqe.OpReadv, sqe.OpWritev:
		return uint64(res) < q.total
	}
	return false
}

// cancelLocked executes an ASYNC_CANCEL: 0 when it canceled one request,
// -ENOENT when nothing matched, -EALREADY when the match is running and
// cannot be interrupted; with ALL (or ANY) the number of matches.
func (e *softEngine) cancelLocked(c *softReq) int32 {
	flags := c.s.OpFlags
	const known = sqe.AsyncCancelAll | sqe.AsyncCancelFd | sqe.AsyncCancelAny |
		sqe.AsyncCancelFdFixed | sqe.AsyncCancelUserdata | sqe.AsyncCancelOp
	if flags&^known != 0 ||
		(flags&sqe.AsyncCancelAny != 0 && flags&(sqe.AsyncCancelFd|sqe.AsyncCancelOp) != 0) ||
		(flags&sqe.AsyncCancelFdFixed != 0 && flags&sqe.AsyncCancelFd == 0) {
		return -int32(syscall.EINVAL)
	}
	all := flags&(sqe.AsyncCancelAll|sqe.AsyncCancelAny) != 0
	match := func(t *softReq) bool {
		if flags&sqe.AsyncCancelAny != 0 {
			return true
		}
		if flags&sqe.AsyncCancelFd != 0 {
			fixed := flags&sqe.AsyncCancelFdFixed != 0
			if !opHasFd(t.s.Opcode) || (t.s.Flags&sqe.FixedFile != 0) != fixed || t.s.Fd != c.s.Fd {
				return false
			}
		}
		if flags&sqe.AsyncCancelOp != 0 && uint32(t.s.Opcode) != c.s.Len {
			return false
		}
		if (flags&sqe.AsyncCancelUserdata != 0 || flags&(sqe.AsyncCancelFd|sqe.AsyncCancelOp) == 0) &&
			t.s.UserData != c.s.Addr {
			return false
		}
		return true
	}
	if !all {
		t := e.findLocked(c, match)
		if t == nil {
			return -int32(syscall.ENOENT)
		}
		return e.cancelOneLocked(t)
	}
	// Collected first: each cancel may complete (and unlink) others.
	var matches []*softReq
	for t := e.live.first; t != nil; t = t.nextLive {
		if cancelable(c, t) && match(t) {
			matches = append(matches, t)
		}
	}
	n := int32(0)
	for _, t := range matches {
		if t.state != stDone {
			e.cancelOneLocked(t)
			n++
		}
	}
	return n
}

// cancelable: a cancel never matches itself, a completed request, or a
// linked timeout, which lives and dies with its op.
func cancelable(c, t *softReq) bool {
	return t != c && t.owner == nil && t.state != stDone
}

// findLocked is the oldest live request other than c that matches.
func (e *softEngine) findLocked(c *softReq, match func(*softReq) bool) *softReq {
	for t := e.live.first; t != nil; t = t.nextLive {
		if cancelable(c, t) && match(t) {
			return t
		}
	}
	return nil
}

// removeLocked executes POLL_REMOVE and TIMEOUT_REMOVE (no updates): the
// poll or timeout with user_data Addr completes with -ECANCELED.
func (e *softEngine) removeLocked(c *softReq) int32 {
	op := uint8(sqe.OpPollAdd)
	if c.s.Opcode == sqe.OpTimeoutRemove {
		op = sqe.OpTimeout
		if c.s.OpFlags != 0 {
			return -int32(syscall.EINVAL)
		}
	} else if c.s.Len != 0 {
		return -int32(syscall.EINVAL)
	}
	t := e.findLocked(c, func(t *softReq) bool {
		return t.s.Opcode == op && t.s.UserData == c.s.Addr
	})
	if t != nil && (t.state == stParkedPoll || t.state == stParkedTimer || t.state == stMultiPoll) {
		return e.cancelOneLocked(t)
	}
	// None, or not armed yet (waiting in a chain): the kernel would not
	// find it either.
	return -int32(syscall.ENOENT)
}

// cancelOneLocked cancels t wherever it is: at once unless it is running,
// in which case a pollable request gives up at its next would-block point
// and a blocking one just completes (-EALREADY, as io-wq work in the kernel).
func (e *softEngine) cancelOneLocked(t *softReq) int32 {
	switch t.state {
	case stDone:
		return -int32(syscall.ENOENT)
	case stRunning:
		t.cancelReq = true
		if t.kind.Load() == kindBlocking {
			return -int32(syscall.EALREADY)
		}
		return 0
	}
	e.scheduleLocked(e.completeLocked(t, -int32(syscall.ECANCELED)))
	return 0
}

// armLocked starts q's timer (TIMEOUT or LINK_TIMEOUT) and parks q on it.
func (e *softEngine) armLocked(q *softReq) {
	q.state = stParkedTimer
	d := q.dur
	if q.abs {
		d = time.Duration(q.absNs - clockNow(q.clock))
	}
	q.timerGen++
	gen := q.timerGen
	e.timers.Add(1)
	q.timer = time.AfterFunc(max(d, 0), func() { e.timerFired(q, gen) })
}

// stopTimerLocked disarms q's timer; a timer that already fired finds q
// done (or re-armed under a new generation) and does nothing.
func (e *softEngine) stopTimerLocked(q *softReq) {
	if q.timer != nil {
		if q.timer.Stop() {
			e.timers.Done()
		}
		q.timer = nil
	}
}

func (e *softEngine) timerFired(q *softReq, gen uint32) {
	defer e.timers.Done()
	e.mu.Lock()
	defer e.mu.Unlock()
	if q.state != stParkedTimer || q.timerGen != gen {
		return
	}
	q.timer = nil
	if owner := q.owner; owner != nil {
		// A linked timeout: cancel its op. The timeout's own result is
		// -ETIME, or the cancel's failure (-EALREADY: the op runs on).
		owner.lt = nil
		res := e.cancelOneLocked(owner)
		if res == 0 {
			res = -int32(syscall.ETIME)
		}
		e.retireLocked(q, res)
		return
	}
	if q.multi {
		q.shots++
		// With the CQ full the kernel ends a multishot early, with its
		// final CQE, rather than overflow: so does this.
		if (q.count == 0 || q.shots < q.count) && e.cqRoomLocked() {
			e.postLocked(q.s.UserData, -int32(syscall.ETIME), CQEFMore)
			e.armLocked(q)
			return
		}
	}
	e.scheduleLocked(e.completeLocked(q, -int32(syscall.ETIME)))
}
