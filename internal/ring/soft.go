package ring

import (
	"errors"
	"fmt"
	"runtime"
	"sync"
	"sync/atomic"
	"syscall"
	"time"
	"unsafe"

	"github.com/ringwake/ringwake/sqe"
)

// The software ring ("soft") is the fallback where the kernel refuses
// io_uring (seccomp EPERM, io_uring_disabled, ENOSYS). NewSoft returns an
// ordinary *Ring whose SQ, SQE array and CQ live in Go memory with the same
// head/tail words and masks the kernel would map, so GetSQE, Publish,
// SQPending, PeekBatch and CQReady run the very same code on both engines.
// Only the kernel's side differs: Enter hands the consumed SQEs to a bounded
// pool of worker goroutines that make the plain syscalls, and completions are
// posted into the Go CQ as the kernel would post them.
//
// Differences from io_uring, all deliberate:
//   - Descriptors are resolved when a request runs, not when it is
//     submitted: closing an fd with requests in flight on it can make them
//     fail with EBADF (or, if the number is reused, reach the new file).
//     Fixed files are the exception: the table holds its own dup.
//   - Memory an SQE points to must stay valid until its CQE, except the
//     timespec of TIMEOUT and LINK_TIMEOUT, which is read during Enter as the
//     kernel reads it at submission (no IORING_FEAT_SUBMIT_STABLE).
//   - Regular-file I/O, fsync and the other blocking calls cannot be
//     interrupted once running (as in io_uring): a cancel answers -EALREADY
//     and Close waits for them. Requests on pollable descriptors (pipes,
//     sockets, character devices, eventfds) never block a worker: they wait
//     for readiness in one poll(2) loop and are cancelable.
//   - At most max(4, 2*GOMAXPROCS) (and never more than 64) blocking calls
//     run at once; the rest queue FIFO.
//   - TIMEOUT with a completion count, IODrain, buffer selection and the
//     other multishot opcodes are not implemented and complete with
//     -EINVAL; multishot TIMEOUT and POLL_ADD are (a multishot ends early,
//     with its final CQE, when the CQ is full, as in the kernel). Every SQE
//     is consumed (SUBMIT_ALL behaviour).
//   - SQPOLL, the task-run flags and SINGLE_ISSUER have no meaning here and
//     are reported in DroppedFlags; with SQPoll requested the SQ permanently
//     reports SQNeedWakeup, so a caller following the SQPOLL protocol enters
//     for every batch and nothing waits for a kernel thread that does not exist.

// softShared stands in for the kernel-shared ring pages. Each word written
// by a different party sits on its own cache line: the producer writes
// sqTail, the engine sqHead and cqTail, the consumer cqHead.
type softShared struct {
	sqHead     uint32
	_          [60]byte
	sqTail     uint32
	_          [60]byte
	sqFlags    uint32
	sqDropped  uint32
	_          [56]byte
	cqHead     uint32
	_          [60]byte
	cqTail     uint32
	_          [60]byte
	cqFlags    uint32
	cqOverflow uint32
}

// softSetupFlags are the setup flags whose meaning the software ring keeps.
const softSetupFlags = SetupClamp | SetupCQSize | SetupNoSQArray

// softFeatures: CQEs are never dropped, EnterTimeout works, and offset -1
// means the file position.
const softFeatures = FeatNoDrop | FeatExtArg | FeatRWCurPos

// softEnterFlags are the io_uring_enter flags Enter accepts on a soft ring.
const softEnterFlags = EnterGetEvents | EnterSQWakeup | EnterSQWait | EnterNoIOWait

// maxSoftWorkers bounds the pool whatever GOMAXPROCS says: workers block in
// syscalls, so more of them than this buys nothing but threads.
const maxSoftWorkers = 64

// defaultSoftWorkers lets a deep queue of regular-file I/O reach the device
// (a worker per request in flight, as many as the SQ holds), within the bound;
// workers start lazily, so an idle ring holds none.
func defaultSoftWorkers(sq uint32) int {
	return min(max(4, 2*runtime.GOMAXPROCS(0), int(sq)), maxSoftWorkers)
}

var errSoftClosed = fmt.Errorf("ringwake: io_uring_enter: ring closed: %w", syscall.EBADF)

// NewSoft sets up a software ring with the geometry New would give p: the
// same Params validation, SQ and CQ sizes and the same Ring API, executed by
// a bounded pool of goroutines making plain syscalls instead of the kernel.
// Fd is -1. Close stops the pool.
func NewSoft(p Params) (*Ring, error) {
	sq, cq, flags, dropped, err := p.resolve()
	if err != nil {
		return nil, err
	}
	if cq == 0 {
		cq = 2 * sq
	}
	keep := flags & softSetupFlags
	dropped |= flags &^ keep
	e := newSoftEngine(sq, cq)
	if p.SQPoll {
		e.sh.sqFlags = SQNeedWakeup
	}
	r := &Ring{fd: -1, flags: keep, dropped: dropped, features: softFeatures, soft: e}
	r.sqHead = &e.sh.sqHead
	r.sqTail = &e.sh.sqTail
	r.sqFlags = &e.sh.sqFlags
	r.sqDropped = &e.sh.sqDropped
	r.sqMask = sq - 1
	r.sqEntries = sq
	r.sqes = unsafe.Pointer(&e.sqes[0])
	r.cqHead = &e.sh.cqHead
	r.cqTail = &e.sh.cqTail
	r.cqFlags = &e.sh.cqFlags
	r.cqOverflow = &e.sh.cqOverflow
	r.cqMask = cq - 1
	r.cqEntries = cq
	r.cqeSlice = e.cqes
	r.probe = e.probe()
	return r, nil
}

// Soft reports whether r runs on the software engine.
func (r *Ring) Soft() bool { return r.soft != nil }

// softEngine is the software ring's "kernel".
type softEngine struct {
	sh     *softShared
	sqes   []sqe.SQE
	cqes   []CQE
	sqMask uint32
	cqMask uint32
	cqSize uint32

	// subMu serializes SQ consumption: the poller and any submitter may
	// call Enter at once, and each SQE must be taken exactly once.
	subMu sync.Mutex
	batch []*softReq // consumption scratch, under subMu

	// mu guards everything below, every request's state and the CQ tail.
	mu          sync.Mutex
	workCond    sync.Cond // idle workers wait here for the run queue
	closing     bool
	overflow    []CQE     // CQEs that found the CQ full, in posting order
	live        softList  // every request not yet completed, in submission order
	runq        []softRun // FIFO; entries no longer queued are skipped on pop
	runHead     int
	workers     int
	idle        int
	maxWork     int
	groups      map[int]*pollGroup // parked requests by descriptor
	nparked     int
	pollOn      bool
	wakeFd      int              // eventfd that interrupts the poll loop, -1 until it starts
	epFd        int              // edge-triggered epoll of the multishot polls, in the poll loop's set
	mpolls      map[int]*softReq // multishot polls by their registered dup
	eventFd     int              // registered eventfd (our dup), -1 if none
	free        []*softReq
	waiters     []*softWaiter // Enter calls waiting for CQEs
	idleWaiters []*softWaiter

	wg     sync.WaitGroup // workers and the poll loop
	timers sync.WaitGroup // armed timers whose function may still run

	// filesMu guards the fixed tables; taken after mu, never before it.
	filesMu sync.Mutex
	files   []*softFile // nil: no table registered
	bufs    [][]byte    // nil: no buffers registered

	copier softCopier
}

func newSoftEngine(sq, cq uint32) *softEngine {
	e := &softEngine{
		sh:      new(softShared),
		sqes:    make([]sqe.SQE, sq),
		cqes:    make([]CQE, cq),
		sqMask:  sq - 1,
		cqMask:  cq - 1,
		cqSize:  cq,
		maxWork: defaultSoftWorkers(sq),
		wakeFd:  -1,
		epFd:    -1,
		eventFd: -1,
	}
	e.workCond.L = &e.mu
	e.copier.pipe = [2]int{-1, -1}
	return e
}

// enter is Enter and EnterTimeout for the software ring.
func (e *softEngine) enter(toSubmit, minComplete, flags uint32, timeout time.Duration, timed bool) (int, error) {
	if flags&^softEnterFlags != 0 {
		// EXT_ARG without its argument, registered rings and the rest.
		return 0, enterError(syscall.EINVAL)
	}
	n := 0
	if toSubmit > 0 {
		n = e.submit(toSubmit)
	}
	if flags&EnterGetEvents == 0 {
		return n, nil
	}
	var w *softWaiter
	defer func() {
		if w != nil {
			e.putWaiter(w)
		}
	}()
	for {
		e.mu.Lock()
		e.flushOverflowLocked()
		if e.cqReady() >= minComplete {
			e.mu.Unlock()
			return n, nil
		}
		if e.closing {
			e.mu.Unlock()
			return n, errSoftClosed
		}
		if timed && timeout <= 0 {
			e.mu.Unlock()
			return softTimedOut(n)
		}
		if w == nil {
			w = e.getWaiterLocked()
			if timed {
				w.timer.Reset(timeout)
			}
		}
		if !w.queued {
			w.queued = true
			e.waiters = append(e.waiters, w)
		}
		e.mu.Unlock()
		if !timed {
			<-w.ch
			continue
		}
		select {
		case <-w.ch:
		case <-w.timer.C:
			return softTimedOut(n)
		}
	}
}

// softWaiter is an Enter call waiting for CQEs. The engine keeps them, with
// their channel and timer, for the next wait: the poller's every wait costs
// no allocation. (Not a sync.Pool, which drops items at random under -race.)
type softWaiter struct {
	ch     chan struct{} // cap 1: a post never blocks on it
	timer  *time.Timer   // stopped while kept
	queued bool          // in e.waiters, under mu
}

func (e *softEngine) getWaiterLocked() *softWaiter {
	if n := len(e.idleWaiters); n > 0 {
		w := e.idleWaiters[n-1]
		e.idleWaiters[n-1] = nil
		e.idleWaiters = e.idleWaiters[:n-1]
		return w
	}
	t := time.NewTimer(time.Hour)
	t.Stop()
	return &softWaiter{ch: make(chan struct{}, 1), timer: t}
}

// putWaiter keeps w for the next wait, out of the waiter list, its timer
// stopped and its channel empty, so that wait starts clean. Since Go 1.23
// a stopped timer's channel delivers nothing stale.
func (e *softEngine) putWaiter(w *softWaiter) {
	w.timer.Stop()
	e.mu.Lock()
	if w.queued {
		for i, x := range e.waiters {
			if x == w {
				last := len(e.waiters) - 1
				e.waiters[i] = e.waiters[last]
				e.waiters[last] = nil
				e.waiters = e.waiters[:last]
				break
			}
		}
		w.queued = false
	}
	// Out of the list under mu, no post can reach w any more.
	select {
	case <-w.ch:
	default:
	}
	if len(e.idleWaiters) < 8 {
		e.idleWaiters = append(e.idleWaiters, w)
	}
	e.mu.Unlock()
}

// softTimedOut is the kernel's answer to a timed wait that expired: the
// submitted count if anything was submitted, else ETIME.
func softTimedOut(n int) (int, error) {
	if n > 0 {
		return n, nil
	}
	return 0, errEnterTime
}

// cqReady counts CQEs the consumer has not released, against the shared
// head as the kernel does. Under mu.
func (e *softEngine) cqReady() uint32 {
	return atomic.LoadUint32(&e.sh.cqTail) - atomic.LoadUint32(&e.sh.cqHead)
}

// submit consumes up to toSubmit published SQEs and admits them.
func (e *softEngine) submit(toSubmit uint32) int {
	e.subMu.Lock()
	defer e.subMu.Unlock()
	head := atomic.LoadUint32(&e.sh.sqHead)
	// The acquire load of the tail orders the SQE reads after the
	// producer's writes, which Publish released.
	n := min(atomic.LoadUint32(&e.sh.sqTail)-head, toSubmit)
	if n == 0 {
		return 0
	}
	e.mu.Lock()
	batch := e.allocLocked(e.batch[:0], int(n))
	e.mu.Unlock()
	for i := uint32(0); i < n; i++ {
		q := batch[i]
		q.s = e.sqes[(head+i)&e.sqMask]
		// The slot is the producer's again once the copy is taken.
		atomic.StoreUint32(&e.sh.sqHead, head+i+1)
		e.prep(q)
	}
	e.mu.Lock()
	e.admitLocked(batch)
	e.mu.Unlock()
	clear(batch)
	e.batch = batch[:0]
	return int(n)
}

// admitLocked links the batch into chains and starts each chain once it is
// whole: a head started earlier could complete before its successor is
// linked to it.
func (e *softEngine) admitLocked(batch []*softReq) {
	var head, tail *softReq
	open, afterOp := false, false
	for _, q := range batch {
		q.state = stLinked
		e.live.push(q)
		lt := q.s.Opcode == sqe.OpLinkTimeout
		switch {
		case open && lt && afterOp && tail.lt == nil:
			// A LINK_TIMEOUT right after a linked op bounds that op; the
			// chain continues past it only if it carries a link flag itself.
			tail.lt, q.owner = q, tail
			q.inChain = true
		case open:
			if lt && q.prepErr == 0 {
				q.prepErr = -int32(syscall.EINVAL)
			}
			tail.link, tail = q, q
			q.inChain = true
		default:
			if lt && q.prepErr == 0 {
				q.prepErr = -int32(syscall.EINVAL)
			}
			head, tail = q, q
		}
		afterOp = q.owner == nil
		open = q.s.Flags&(sqe.IOLink|sqe.IOHardlink) != 0
		if !open {
			e.scheduleLocked(head)
			head = nil
		}
	}
	// A chain cut at the end of the batch runs as it is, as in the kernel.
	e.scheduleLocked(head)
}

// postLocked posts one CQE, behind the overflow list when the CQ is full or
// the list is not empty, so CQEs keep their order.
func (e *softEngine) postLocked(ud uint64, res int32, flags uint32) {
	c := CQE{UserData: ud, Res: res, Flags: flags}
	if len(e.overflow) == 0 {
		tail := atomic.LoadUint32(&e.sh.cqTail)
		// The acquire load of the head orders this slot write after the
		// consumer's copy of what the slot held before.
		if tail-atomic.LoadUint32(&e.sh.cqHead) < e.cqSize {
			e.cqes[tail&e.cqMask] = c
			atomic.StoreUint32(&e.sh.cqTail, tail+1)
			e.notifyLocked()
			return
		}
		atomic.OrUint32(&e.sh.sqFlags, SQCQOverflow)
	}
	e.overflow = append(e.overflow, c)
	e.notifyLocked()
}

// cqRoomLocked reports that a CQE posted now lands in the CQ, not in the
// overflow list.
func (e *softEngine) cqRoomLocked() bool {
	return len(e.overflow) == 0 && e.cqReady() < e.cqSize
}

// flushOverflowLocked moves as many overflowed CQEs into the CQ as fit.
func (e *softEngine) flushOverflowLocked() {
	if len(e.overflow) == 0 {
		return
	}
	tail := atomic.LoadUint32(&e.sh.cqTail)
	head := atomic.LoadUint32(&e.sh.cqHead)
	n := 0
	for n < len(e.overflow) && tail-head < e.cqSize {
		e.cqes[tail&e.cqMask] = e.overflow[n]
		tail++
		n++
	}
	if n == 0 {
		return
	}
	atomic.StoreUint32(&e.sh.cqTail, tail)
	rest := copy(e.overflow, e.overflow[n:])
	e.overflow = e.overflow[:rest]
	if rest == 0 {
		e.overflow = nil
		atomic.AndUint32(&e.sh.sqFlags, ^SQCQOverflow)
	}
	e.notifyLocked()
}

// notifyLocked wakes Enter waiters and signals the registered eventfd.
func (e *softEngine) notifyLocked() {
	for i, w := range e.waiters {
		w.queued = false
		select {
		case w.ch <- struct{}{}:
		default:
		}
		e.waiters[i] = nil
	}
	e.waiters = e.waiters[:0]
	// Written under mu: UnregisterEventfd closes the dup under mu, so the
	// number written to is never one that was reused meanwhile.
	if e.eventFd >= 0 && atomic.LoadUint32(&e.sh.cqFlags)&CQEventfdDisabled == 0 {
		one := [8]byte{1}
		if isBigEndian {
			one = [8]byte{7: 1}
		}
		rawWrite(e.eventFd, one[:])
	}
}

// close cancels what can be canceled, waits for the running requests and
// every goroutine of the engine, and releases its descriptors. Idempotent.
func (e *softEngine) close() error {
	e.mu.Lock()
	if e.closing {
		e.mu.Unlock()
		return nil
	}
	e.closing = true
	var all []*softReq
	for q := e.live.first; q != nil; q = q.nextLive {
		all = append(all, q)
	}
	for _, q := range all {
		if q.state != stDone && q.owner == nil {
			e.cancelOneLocked(q)
		}
	}
	e.notifyLocked()
	e.workCond.Broadcast()
	e.wakePollLocked()
	e.mu.Unlock()

	e.wg.Wait()
	e.timers.Wait()

	var errs []error
	e.mu.Lock()
	if e.wakeFd >= 0 {
		errs = append(errs, closeFd("poll eventfd", e.wakeFd), closeFd("epoll", e.epFd))
		e.wakeFd, e.epFd = -1, -1
	}
	if e.eventFd >= 0 {
		errs = append(errs, closeFd("registered eventfd", e.eventFd))
		e.eventFd = -1
	}
	e.mu.Unlock()
	e.filesMu.Lock()
	e.dropFilesLocked()
	e.bufs = nil
	e.filesMu.Unlock()
	errs = append(errs, e.copier.close())
	return errors.Join(errs...)
}

func closeFd(what string, fd int) error {
	if err := syscall.Close(fd); err != nil {
		return fmt.Errorf("ringwake: close(%s): %w", what, err)
	}
	return nil
}

// isBigEndian decides how the poll mask sits in the SQE and how an eventfd
// counter is written.
var isBigEndian = func() bool {
	x := uint16(1)
	return *(*byte)(unsafe.Pointer(&x)) == 0
}()
