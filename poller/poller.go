// Package poller is ringwake's engine: any goroutine submits to an io_uring
// ring, and one poller goroutine per ring reaps completions in batches and
// fires the wait-queue entry each submitter registered for its request.
//
// A request lives in a slot of a fixed table. Its io_uring user_data is the
// slot index in the low 32 bits and the slot's generation above, so the
// poller finds the request without a map or a lock, and a stale or duplicate
// completion (wrong generation, or a slot not in flight) is counted and
// dropped, never delivered. Each slot carries a waitqueue.Entry; the poller
// calls its Func with the completion's result and flags packed in the key,
// exactly as the kernel's __wake_up_common calls wait_queue_entry.func.
//
// The number of slots equals the submission queue size, so a request that
// holds a slot always finds room in the SQ, and the completion queue (twice
// as large by default) cannot overflow in normal use. When every slot is in
// flight, submitters sleep on an exclusive wait queue and each freed slot is
// handed to exactly one of them, in FIFO order.
package poller

import (
	"context"
	"errors"
	"fmt"
	"os"
	"runtime"
	"sync"
	"sync/atomic"
	"syscall"
	"time"
	"unsafe"

	"golang.org/x/sys/unix"

	"github.com/ringwake/ringwake/internal/ring"
	"github.com/ringwake/ringwake/sqe"
	"github.com/ringwake/ringwake/waitqueue"
)

// ErrClosed is returned for work submitted to, or cut short by, a closed poller.
var ErrClosed = errors.New("ringwake: ring closed")

// Config sets up the ring under a poller.
type Config struct {
	Entries      uint32        // SQ size and the number of requests in flight; 0 means 256
	CQEntries    uint32        // 0 means 2*Entries
	SQPoll       bool          // a kernel thread polls the SQ (costs a core while busy)
	SQThreadIdle time.Duration // SQPOLL idle time before the kernel thread sleeps
	CoopTaskrun  bool          // IORING_SETUP_COOP_TASKRUN|TASKRUN_FLAG: fewer IPIs, completions run at the next enter
	Soft         bool          // run on ring.NewSoft, the portable engine, instead of the kernel's io_uring
	// IOPerEnter is the most SQEs one io_uring_enter carries while reads or
	// writes are among them: the kernel holds back (plugs) the block I/O of a
	// larger submission until its end, which on virtio-blk here cost a
	// quarter of the random-read IOPS at 32 in flight. Submissions without
	// block I/O (NOPs, fsync, timeouts) still go in one enter. 0 means 4;
	// a negative value means no limit.
	IOPerEnter int
	// SharedThread keeps the poller an ordinary goroutine that yields its P
	// while it spins. By default, when GOMAXPROCS > 1 and the ring is the
	// kernel's without SQPOLL, the poller locks itself to one OS thread
	// while the ring is busy (see dedicatedThread).
	SharedThread bool

	// OnCallbackPanic receives the value of a panic raised by a Submit
	// callback; the poller has recovered and goes on. Nil re-panics the value
	// on a new goroutine, which crashes the program as an unrecovered panic
	// would, so a bug is never silent.
	OnCallbackPanic func(v any)
}

// Stats counts what the poller has seen since it started.
type Stats struct {
	Submitted  uint64 // requests published to the SQ (internal cancels included)
	Completed  uint64 // completions delivered to their entries
	Stale      uint64 // completions whose slot generation did not match: dropped
	Enters     uint64 // io_uring_enter calls made by the poller
	Waits      uint64 // times the poller blocked in the kernel for completions
	Parks      uint64 // times the poller parked with nothing in flight
	Overflows  uint64 // CQ overflow flushes
	Backlogged uint64 // submitters that slept for a free slot
	Deferred   uint64 // callback submissions queued because no slot was free
	// Retried counts requests the kernel canceled on its own (ECANCELED
	// with no cancel from the runtime or the caller behind it) that the
	// poller submitted again.
	Retried uint64
	// Inline counts blocking calls that reaped their own completion on
	// their own goroutine while the poller slept (see Poller.Do).
	Inline uint64
	// ThreadLocks counts the times the poller locked an OS thread for
	// itself: at the start of each busy period that called for it (see
	// Config.SharedThread); it lets go at every park.
	ThreadLocks uint64
}

// user_data layout: bit 63 marks the runtime's own requests (cancels), whose
// completions need no delivery; bits 32..62 hold the slot generation.
const (
	internalTag = uint64(1) << 63
	genMask     = uint32(1)<<31 - 1
)

// slot states, kept with the generation in slot.tag (gen<<2 | state).
const (
	slotFree     = 0
	slotInFlight = 1 // published; the kernel may still write the buffer
	slotDone     = 2 // completion delivered; the owner has not released it yet
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
	keep unsafe.Pointer
	ts   unix.Timespec // a linked timeout's duration, read by the kernel at submission

	// A lone request (Submit, or Do without a timeout) keeps its SQE, so that
	// the poller can submit it again if the kernel cancels it on its own.
	sqe       sqe.SQE
	lone      bool
	retries   uint8
	cancelGen uint64 // p.cancelGen when published: a later cancel may be behind an ECANCELED
}

// Poller owns one ring and the goroutine that reaps it.
type Poller struct {
	ring  *ring.Ring
	cfg   Config
	slots []Slot

	// mu serialises the SQ producer side (GetSQE/Publish), the free list and
	// the backlog queue, so a slot and its SQE are taken in one critical section.
	mu      sync.Mutex
	batchMu sync.Mutex // one SubmitBatch at a time holds slots while waiting for more
	lastSQE *sqe.SQE   // under mu: the SQE writeLocked filled last, not yet published

	// Callbacks run on the poller, which must never sleep for a slot: what
	// they submit with none free is deferred (under mu): it queues for
	// slots in the backlog FIFO like a sleeper, and is published when it
	// has them all.
	deferred    []*deferredReq
	published   bool        // under mu: a deferred request was just published; kick after unlock
	inCallbacks atomic.Bool // the poller (or an inline reaper) is running callbacks
	pollerGoid  atomic.Uint64
	// reaperGoid is the goroutine reaping inline (state pollerLent), once a
	// callback has to run on it; 0 otherwise.
	reaperGoid atomic.Uint64
	inlineOK   bool        // blocking calls may reap inline (not under SQPOLL or the software ring)
	shallow    atomic.Bool // the poller's last busy spell stayed below lockDepth in flight
	free       []uint32
	backlog    waitqueue.Queue // exclusive sleepers waiting for a slot
	closing    bool            // under mu: no SQE is published after it is set

	// submitMu serialises the enters that submit (ring.SubmitChunks reads
	// published SQEs, whose slots another enter would hand back).
	submitMu  sync.Mutex
	ioChunk   uint32      // SQEs per enter while block I/O is pending; 0: no limit
	ioPending atomic.Bool // a read or write was published since the last submit

	closed  atomic.Bool
	pending atomic.Int64 // SQEs published whose final CQE has not been reaped
	// cancelGen moves before every cancel the runtime publishes or passes
	// on (ctx, File.Close, Close, a caller's cancel opcode), so an
	// ECANCELED on a request published at the current value came from the
	// kernel alone.
	cancelGen atomic.Uint64
	state     atomic.Int32 // pollerRunning, pollerParked or pollerInKernel
	wake      chan struct{}
	stopped   chan struct{}
	closeMu   sync.Mutex
	closeErr  error
	unmapMu   sync.RWMutex // kicks outside mu hold it for reading while they touch the ring
	unmapped  bool         // under unmapMu

	stats struct {
		submitted, completed, stale, enters, waits, parks, overflows, backlogged, deferred, threadLocks, retried, inline atomic.Uint64
	}

	// poller-goroutine-only scratch, reused every batch.
	cqes  []ring.CQE
	fired []firedCallback
}

type firedCallback struct {
	done  func(res int32, flags uint32)
	res   int32
	flags uint32
	idx   uint32
	final bool // the request's last completion: its slot is freed before callbacks run
}

const (
	pollerRunning  = iota // will submit and reap before it sleeps again
	pollerParked          // nothing in flight; sleeps on wake
	pollerInKernel        // blocked in io_uring_enter(GETEVENTS); submitters submit themselves
	pollerLent            // parked, its role lent to a blocking caller reaping inline; submitters submit themselves
)

// New sets up the ring and starts the poller goroutine, which Close stops.
func New(cfg Config) (*Poller, error) {
	if cfg.Entries == 0 {
		cfg.Entries = 256
	}
	rp := ring.Params{
		Entries:      cfg.Entries,
		CQEntries:    cfg.CQEntries,
		SQPoll:       cfg.SQPoll,
		SQThreadIdle: cfg.SQThreadIdle,
		CoopTaskrun:  cfg.CoopTaskrun,
		TaskrunFlag:  cfg.CoopTaskrun,
	}
	if rp.CQEntries == 0 {
		rp.CQEntries = 2 * cfg.Entries
	}
	newRing := ring.New
	if cfg.Soft {
		// NewSoft validates rp as New does and drops what it cannot do
		// (SQPOLL, task-run flags); the loop must not act on SQPOLL either.
		newRing = ring.NewSoft
		cfg.SQPoll = false
	}
	r, err := newRing(rp)
	if err != nil {
		return nil, err
	}
	n := r.SQEntries()
	chunk := uint32(4)
	switch {
	case cfg.IOPerEnter < 0:
		chunk = 0
	case cfg.IOPerEnter > 0:
		chunk = uint32(min(cfg.IOPerEnter, int(n)))
	}
	p := &Poller{
		ioChunk: chunk,
		ring:    r,
		cfg:     cfg,
		slots:   make([]Slot, n),
		free:    make([]uint32, 0, n),
		wake:    make(chan struct{}, 1),
		stopped: make(chan struct{}),
		// SQPOLL submits on its own thread, and the software ring completes
		// on its workers: neither gains from a caller waiting in the kernel.
		// The wait is bounded, which needs EXT_ARG (5.11).
		inlineOK: !cfg.SQPoll && !cfg.Soft && r.Features()&ring.FeatExtArg != 0,
	}
	p.shallow.Store(true)
	batch := r.CQEntries()
	if batch > 512 {
		batch = 512
	}
	p.cqes = make([]ring.CQE, batch)
	p.fired = make([]firedCallback, 0, batch)
	for i := int(n) - 1; i >= 0; i-- {
		s := &p.slots[i]
		s.idx = uint32(i)
		s.ch = make(chan struct{}, 1)
		s.entry.Private = s
		p.free = append(p.free, uint32(i))
	}
	go p.loop()
	return p, nil
}

// Soft reports whether the poller runs on the portable engine.
func (p *Poller) Soft() bool { return p.cfg.Soft }

// Ring exposes the underlying ring for registration calls (files, buffers, probe).
func (p *Poller) Ring() *ring.Ring { return p.ring }

// Capacity is how many requests may be in flight at once.
func (p *Poller) Capacity() int { return len(p.slots) }

// Stats returns the poller's counters.
func (p *Poller) Stats() Stats {
	return Stats{
		Submitted:   p.stats.submitted.Load(),
		Completed:   p.stats.completed.Load(),
		Stale:       p.stats.stale.Load(),
		Enters:      p.stats.enters.Load(),
		Waits:       p.stats.waits.Load(),
		Parks:       p.stats.parks.Load(),
		Overflows:   p.stats.overflows.Load(),
		Backlogged:  p.stats.backlogged.Load(),
		Deferred:    p.stats.deferred.Load(),
		ThreadLocks: p.stats.threadLocks.Load(),
		Retried:     p.stats.retried.Load(),
		Inline:      p.stats.inline.Load(),
	}
}

func packKey(res int32, flags uint32) uint64 { return uint64(uint32(res)) | uint64(flags)<<32 }
func unpackKey(key uint64) (int32, uint32)   { return int32(uint32(key)), uint32(key >> 32) }

// wakeBlocked is the wake function of a request whose submitter parks: the
// kernel's default_wake_function, with a channel send for try_to_wake_up.
func wakeBlocked(e *waitqueue.Entry, key uint64) int {
	s := e.Private.(*Slot)
	s.res, s.flags = unpackKey(key)
	s.ch <- struct{}{}
	return 1
}

// validate rejects what must never reach the kernel through Submit.
func validate(s *sqe.SQE) error {
	if s == nil {
		return errors.New("ringwake: Submit with a nil SQE")
	}
	if s.Flags&(sqe.IOLink|sqe.IOHardlink) != 0 {
		// A lone linked SQE would chain to whatever another goroutine submits next.
		return errors.New("ringwake: Submit: IOLink/IOHardlink need a chain submitted as one batch")
	}
	if s.Flags&sqe.CQESkipSuccess != 0 {
		// No completion on success: the slot would never be freed nor the callback fire.
		return errors.New("ringwake: Submit: CQESkipSuccess is not supported: every request must complete")
	}
	return nil
}

// Submit copies s into the ring and arranges for done to run on the
// goroutine that reaps (the poller, or an inline reaper: see Do) with the
// completion's result and flags, exactly once (for a multishot request:
// once per completion, the last without CQEFMore).
// It sleeps while every slot is in flight. done must not block; it may
// call Submit again to refill, at most once per completion it receives.
func (p *Poller) Submit(s *sqe.SQE, done func(res int32, flags uint32)) error {
	if err := validate(s); err != nil {
		return err
	}
	if done == nil {
		return errors.New("ringwake: Submit with a nil callback")
	}
	p.mu.Lock()
	if p.closing {
		p.mu.Unlock()
		return ErrClosed
	}
	idx, ok := p.takeSlotLocked()
	if !ok {
		if p.onPoller() {
			p.deferLocked([]sqe.SQE{*s}, []func(int32, uint32){done})
			p.mu.Unlock()
			return nil
		}
		p.mu.Unlock()
		var err error
		if idx, err = p.waitSlot(context.Background()); err != nil {
			return err
		}
		p.mu.Lock()
		if p.closing {
			p.releaseLocked(idx)
			p.mu.Unlock()
			return ErrClosed
		}
	}
	slot := &p.slots[idx]
	slot.entry.Func = fireCallback
	slot.done = done
	p.writeLocked(slot, s, true)
	p.ring.Publish()
	p.mu.Unlock()
	p.kick()
	return nil
}

// onPoller reports whether the caller is a callback running on the poller
// goroutine or on an inline reaper. Only the reaper frees slots, so it must
// never sleep for one. Asked only when no slot is free: the goroutine id
// costs about a microsecond.
func (p *Poller) onPoller() bool {
	if !p.inCallbacks.Load() {
		return false
	}
	g := curGoid()
	return g == p.pollerGoid.Load() || g == p.reaperGoid.Load()
}

// curGoid is the calling goroutine's id, from the header runtime.Stack prints.
func curGoid() uint64 {
	var buf [64]byte
	b := buf[:runtime.Stack(buf[:], false)]
	b = b[len("goroutine "):]
	var id uint64
	for _, c := range b {
		if c < '0' || c > '9' {
			break
		}
		id = id*10 + uint64(c-'0')
	}
	return id
}

// deferredReq is a submission made by a callback when no slot was free. It
// takes its place in the backlog FIFO with one exclusive entry per SQE, each
// of which a freed slot satisfies, and is published whole when the last
// arrives. Queuing behind the sleepers, rather than ahead, keeps resubmitting
// callbacks from starving blocked goroutines.
type deferredReq struct {
	p       *Poller
	ss      []sqe.SQE
	dones   []func(res int32, flags uint32)
	slots   []uint32
	entries []waitqueue.Entry
}

// deferredHandoff is the wake function of a deferred request's entries: it
// runs under p.mu (the releaser holds it), so it may publish.
func deferredHandoff(e *waitqueue.Entry, key uint64) int {
	d := e.Private.(*deferredReq)
	if key == closedKey {
		return 1 // cancelDeferred fires its callbacks
	}
	d.slots = append(d.slots, uint32(key))
	if len(d.slots) == len(d.ss) {
		d.p.publishDeferredLocked(d)
	}
	return 1
}

var autoDeferredHandoff = waitqueue.AutoRemove(deferredHandoff)

// deferLocked queues a callback's submission for the next free slots.
func (p *Poller) deferLocked(ss []sqe.SQE, dones []func(int32, uint32)) {
	d := &deferredReq{p: p, ss: ss, dones: dones, slots: make([]uint32, 0, len(ss))}
	p.deferred = append(p.deferred, d)
	p.stats.deferred.Add(1)
	// Free slots with sleepers queued exist only for an instant; the poller
	// cannot wait behind them, so it takes them.
	for len(d.slots) < len(ss) && len(p.free) > 0 {
		d.slots = append(d.slots, p.free[len(p.free)-1])
		p.free = p.free[:len(p.free)-1]
	}
	if len(d.slots) == len(ss) {
		p.publishDeferredLocked(d)
		return
	}
	d.entries = make([]waitqueue.Entry, len(ss)-len(d.slots))
	for i := range d.entries {
		d.entries[i].Func = autoDeferredHandoff
		d.entries[i].Private = d
		p.backlog.AddExclusive(&d.entries[i])
	}
}

// publishDeferredLocked publishes d into the slots it collected.
func (p *Poller) publishDeferredLocked(d *deferredReq) {
	for i, idx := range d.slots {
		slot := &p.slots[idx]
		slot.entry.Func = fireCallback
		slot.done = d.dones[i]
		p.writeLocked(slot, &d.ss[i], false)
	}
	p.ring.Publish()
	p.published = true
	for i, x := range p.deferred {
		if x == d {
			p.deferred = append(p.deferred[:i], p.deferred[i+1:]...)
			break
		}
	}
}

// MaxBatch is the most SQEs SubmitBatch takes at once.
const MaxBatch = 64

// SubmitBatch submits ss in order as one unit: no other goroutine's SQE lands
// between them and the kernel sees them all at once, so IOLink/IOHardlink
// chains stay whole (the last SQE must not carry a link flag). dones[i] fires
// for ss[i] as with Submit; a broken link completes with -ECANCELED.
func (p *Poller) SubmitBatch(ss []sqe.SQE, dones []func(res int32, flags uint32)) error {
	k := len(ss)
	switch {
	case k == 0:
		return nil
	case k != len(dones):
		return fmt.Errorf("ringwake: SubmitBatch: %d SQEs but %d callbacks", k, len(dones))
	case k > MaxBatch || k > len(p.slots):
		return fmt.Errorf("ringwake: SubmitBatch: %d SQEs, more than the ring takes at once (%d)", k, min(MaxBatch, len(p.slots)))
	case ss[k-1].Flags&(sqe.IOLink|sqe.IOHardlink) != 0:
		return errors.New("ringwake: SubmitBatch: the last SQE carries a link flag and would chain to an unrelated request")
	}
	for i := range dones {
		if dones[i] == nil {
			return fmt.Errorf("ringwake: SubmitBatch: callback %d is nil", i)
		}
		if ss[i].Flags&sqe.CQESkipSuccess != 0 {
			return fmt.Errorf("ringwake: SubmitBatch: SQE %d: CQESkipSuccess is not supported: every request must complete", i)
		}
	}
	if p.onPoller() {
		p.mu.Lock()
		defer p.mu.Unlock()
		if p.closing {
			return ErrClosed
		}
		p.deferLocked(append([]sqe.SQE{}, ss...), append([]func(int32, uint32){}, dones...))
		return nil
	}
	// One batch at a time may hold some slots while it waits for the rest:
	// two doing so could each wait forever for the other's.
	p.batchMu.Lock()
	defer p.batchMu.Unlock()
	var idxs [MaxBatch]uint32
	for i := 0; i < k; i++ {
		idx, err := p.acquire(context.Background())
		if err != nil {
			p.mu.Lock()
			published := false
			for _, j := range idxs[:i] {
				published = p.releaseLocked(j) || published
			}
			p.mu.Unlock()
			if published {
				p.kick()
			}
			return err
		}
		idxs[i] = idx
		if i < k-1 {
			p.mu.Unlock()
		}
	}
	for i := 0; i < k; i++ {
		slot := &p.slots[idxs[i]]
		slot.entry.Func = fireCallback
		slot.done = dones[i]
		p.writeLocked(slot, &ss[i], false)
	}
	p.ring.Publish()
	p.mu.Unlock()
	p.kick()
	return nil
}

// acquire returns a slot with p.mu held, sleeping for one while all are in
// flight. It fails with ErrClosed once Close has begun.
func (p *Poller) acquire(ctx context.Context) (uint32, error) {
	p.mu.Lock()
	idx, ok := p.takeSlotLocked()
	if !ok {
		p.mu.Unlock()
		var err error
		if idx, err = p.waitSlot(ctx); err != nil {
			return 0, err
		}
		p.mu.Lock()
	}
	if p.closing {
		p.releaseLocked(idx)
		p.mu.Unlock()
		return 0, ErrClosed
	}
	return idx, nil
}

// fireCallback is the wake function of a Submit request. The poller does not
// call it through the queue: dispatch copies done out and frees the slot
// before any callback runs.
func fireCallback(e *waitqueue.Entry, key uint64) int {
	s := e.Private.(*Slot)
	res, flags := unpackKey(key)
	s.done(res, flags)
	return 1
}

// Do submits s, parks until its completion and returns the result. keep is
// the memory the kernel uses (the buffer): it stays reachable and unmoved until
// the kernel lets go of it. When ctx ends first the request is canceled in the
// kernel and Do returns ctx.Err() only after the completion arrived, unless the
// request completed anyway, whose result is then returned.
//
// A call that finds the poller asleep with nothing in flight, and whose ctx
// cannot end (ctx.Done() == nil), reaps inline: it submits and waits in
// io_uring_enter on its own goroutine and takes its completion there, with
// no goroutine woken on either side. Completions of requests others submit
// meanwhile are delivered from there too (callbacks included, one reaper
// at a time as always), and the poller takes over for what is still in
// flight when the caller's own request is done.
func (p *Poller) Do(ctx context.Context, s *sqe.SQE, keep unsafe.Pointer) (int32, uint32, error) {
	return p.DoTimeout(ctx, s, keep, 0)
}

// ErrTimeout is returned (wrapped) by DoTimeout when the kernel canceled the
// request because its linked timeout expired. It wraps os.ErrDeadlineExceeded.
var ErrTimeout = fmt.Errorf("ringwake: linked timeout expired: %w", os.ErrDeadlineExceeded)

// DoTimeout is Do with a deadline enforced by the kernel: s is linked to an
// IORING_OP_LINK_TIMEOUT of d, so when d elapses first the kernel cancels it
// and DoTimeout returns ErrTimeout, with no timer or cancel round trip in Go.
// d <= 0 means no timeout.
func (p *Poller) DoTimeout(ctx context.Context, s *sqe.SQE, keep unsafe.Pointer, d time.Duration) (int32, uint32, error) {
	if err := validate(s); err != nil {
		return 0, 0, err
	}
	if p.closed.Load() {
		return 0, 0, ErrClosed
	}
	idx, err := p.acquire(ctx)
	if err != nil {
		return 0, 0, err
	}
	slot := &p.slots[idx]
	slot.entry.Func = wakeBlocked
	slot.keep = keep
	ud := p.writeLocked(slot, s, d <= 0)
	if d > 0 {
		p.linkTimeoutLocked(slot, d)
	}
	p.ring.Publish()
	p.mu.Unlock()
	done := ctx.Done()
	if p.inlineOK && d <= 0 && done == nil && p.shallow.Load() && p.state.CompareAndSwap(pollerParked, pollerLent) {
		p.reapInline(slot)
	} else {
		p.kick()
	}

	if done == nil {
		<-slot.ch
	} else {
		select {
		case <-slot.ch:
		case <-done:
			p.cancel(ud)
			<-slot.ch // the kernel has let go of the buffer only now
			if slot.res == -int32(syscall.ECANCELED) || slot.res == -int32(syscall.EINTR) {
				err = ctx.Err()
			}
		}
	}
	res, flags := slot.res, slot.flags
	if err == nil && res == -int32(syscall.ECANCELED) {
		if p.closed.Load() {
			err = ErrClosed
		} else if d > 0 {
			err = ErrTimeout
		}
	}
	p.release(idx)
	return res, flags, err
}

// linkTimeoutLocked links the SQE just written for slot to a LINK_TIMEOUT of
// d. The pair is published together, so the link cannot break in between.
func (p *Poller) linkTimeoutLocked(slot *Slot, d time.Duration) {
	p.lastSQE.Flags |= sqe.IOLink
	slot.ts = unix.NsecToTimespec(int64(d))
	p.internalLocked(func(q *sqe.SQE) { q.PrepLinkTimeout(&slot.ts, 0) })
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
	if cancels(s.Opcode) {
		p.cancelGen.Add(1)
	}
	slot.lone, slot.retries, slot.cancelGen = lone, 0, p.cancelGen.Load()
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
	p.pending.Add(1)
	p.stats.submitted.Add(1)
	return ud
}

// getSQELocked returns a free SQE. Requests never fill the SQ on their own,
// but internal cancels may: then the SQ is flushed to the kernel, which
// consumes entries synchronously unless SQPOLL is on.
func (p *Poller) getSQELocked() *sqe.SQE {
	for {
		if q := p.ring.GetSQE(); q != nil {
			return q
		}
		p.submit()
		runtime.Gosched()
	}
}

// submit hands the published SQEs to the kernel, in chunks of ioChunk when
// block I/O is among them (see Config.IOPerEnter).
func (p *Poller) submit() {
	p.submitMu.Lock()
	chunk := uint32(0)
	if p.ioPending.Load() {
		// Cleared before the SQ is read: a read published after this
		// point sets it again for the next submit.
		p.ioPending.Store(false)
		chunk = p.ioChunk
	}
	p.ring.SubmitChunks(chunk)
	p.submitMu.Unlock()
}

// cancels reports the opcodes that end other requests with ECANCELED.
func cancels(op uint8) bool {
	switch op {
	case sqe.OpAsyncCancel, sqe.OpTimeoutRemove, sqe.OpPollRemove, sqe.OpLinkTimeout:
		return true
	}
	return false
}

// maxRetries bounds how often one request is submitted again after the
// kernel canceled it on its own.
const maxRetries = 8

// retryLocked submits again a lone request that the kernel completed with
// ECANCELED although no cancel was published since it was: the kernel
// does that to work waiting for an io-wq worker when it cannot create one
// (under a storm of signals to the process, fork-style creation fails with
// ERESTARTNOINTR, and after three tries the waiting work is canceled) and
// to a thread's requests when the thread exits. Such a request never ran,
// so running it again is what the caller asked for. It reports whether the
// request went back to the SQ; the slot stays in flight under its tag.
func (p *Poller) retryLocked(s *Slot, ud uint64) bool {
	if p.closing || !s.lone || s.retries >= maxRetries || s.cancelGen != p.cancelGen.Load() {
		return false
	}
	s.retries++
	q := p.getSQELocked()
	*q = s.sqe
	q.UserData = ud
	p.pending.Add(1)
	p.ring.Publish()
	p.stats.retried.Add(1)
	p.stats.submitted.Add(1)
	return true
}

// isBlockIO reports the opcodes the kernel plugs the block layer for.
func isBlockIO(op uint8) bool {
	switch op {
	case sqe.OpRead, sqe.OpWrite, sqe.OpReadv, sqe.OpWritev, sqe.OpReadFixed,
		sqe.OpWriteFixed, sqe.OpReadvFixed, sqe.OpWritevFixed:
		return true
	}
	return false
}

// cancel asks the kernel to cancel the request with user_data ud.
func (p *Poller) cancel(ud uint64) {
	p.cancelGen.Add(1)
	p.internal(func(q *sqe.SQE) { q.PrepCancel64(ud, 0) })
}

// CancelFd asks the kernel to cancel every request in flight on fd (File.Close).
func (p *Poller) CancelFd(fd int32) {
	p.cancelGen.Add(1)
	p.internal(func(q *sqe.SQE) { q.PrepCancelFd(fd, sqe.AsyncCancelAll) })
}

// internal publishes a request of the runtime's own, which takes no slot and
// whose completion is only counted. After Close has begun it does nothing:
// Close has queued a cancel of everything already.
func (p *Poller) internal(prep func(q *sqe.SQE)) {
	p.mu.Lock()
	if p.closing {
		p.mu.Unlock()
		return
	}
	p.internalLocked(prep)
	p.mu.Unlock()
	p.kick()
}

func (p *Poller) internalLocked(prep func(q *sqe.SQE)) {
	q := p.getSQELocked()
	prep(q)
	q.UserData = internalTag
	p.pending.Add(1)
	p.ring.Publish()
	p.stats.submitted.Add(1)
}

// backlogWaiter is a submitter asleep for a slot. handoff gives it one
// directly, so a wake-up is never for nothing.
type backlogWaiter struct {
	entry waitqueue.Entry
	ch    chan struct{}
	idx   uint32
	got   bool
	shut  bool
}

const closedKey = ^uint64(0)

func handoff(e *waitqueue.Entry, key uint64) int {
	w := e.Private.(*backlogWaiter)
	if key == closedKey {
		w.shut = true
	} else {
		w.idx, w.got = uint32(key), true
	}
	w.ch <- struct{}{}
	return 1
}

var autoHandoff = waitqueue.AutoRemove(handoff)

// waitSlot sleeps, FIFO and exclusive, until a freed slot is handed over.
func (p *Poller) waitSlot(ctx context.Context) (uint32, error) {
	w := &backlogWaiter{ch: make(chan struct{}, 1)}
	w.entry.Func = autoHandoff
	w.entry.Private = w
	p.mu.Lock()
	if p.closing {
		p.mu.Unlock()
		return 0, ErrClosed
	}
	if idx, ok := p.takeSlotLocked(); ok {
		p.mu.Unlock()
		return idx, nil
	}
	p.backlog.AddExclusive(&w.entry)
	p.stats.backlogged.Add(1)
	p.mu.Unlock()
	select {
	case <-w.ch:
	case <-ctx.Done():
		p.mu.Lock()
		p.backlog.Remove(&w.entry)
		got, idx := w.got, w.idx
		p.mu.Unlock()
		if got {
			// Chosen at the moment ctx ended: pass the slot on, not swallow it.
			p.release(idx)
		}
		if w.shut {
			return 0, ErrClosed
		}
		return 0, ctx.Err()
	}
	if w.shut {
		return 0, ErrClosed
	}
	return w.idx, nil
}

func (p *Poller) release(idx uint32) {
	p.mu.Lock()
	published := p.releaseLocked(idx)
	p.mu.Unlock()
	if published {
		p.kick()
	}
}

// releaseLocked frees a slot, handing it to the first in the backlog FIFO
// (a sleeping submitter or a deferred callback submission: one freed slot,
// exactly one wake-up), else to the free list. It reports whether a deferred
// request was published, which the caller kicks after unlocking.
func (p *Poller) releaseLocked(idx uint32) bool {
	s := &p.slots[idx]
	s.keep, s.done = nil, nil
	s.tag.Store(uint64(s.gen) << 2) // slotFree
	if !(p.backlog.Active() && p.backlog.WakeUp(uint64(idx)) > 0) {
		p.free = append(p.free, idx)
	}
	published := p.published
	p.published = false
	return published
}

// kick makes sure what was just published reaches the kernel. The state
// load pairs with the poller's store before its last look at the SQ
// (sequentially consistent atomics on both sides): either the poller sees
// the new SQE, or this sees the poller's sleeping state.
func (p *Poller) kick() {
	switch p.state.Load() {
	case pollerRunning:
	case pollerParked:
		if p.state.CompareAndSwap(pollerParked, pollerRunning) {
			select {
			case p.wake <- struct{}{}:
			default:
			}
		}
	case pollerInKernel, pollerLent:
		// The poller (or the caller it lent its role to) sleeps until a
		// completion; submit directly rather than wake it for the
		// submission. A failure (EBUSY: the CQ is backed up, so the reaper
		// is about to wake) is left to the reaper's next round.
		// The read lock keeps Close from unmapping the ring under this call.
		p.unmapMu.RLock()
		if !p.unmapped {
			p.submit()
		}
		p.unmapMu.RUnlock()
	}
}

// loop is the poller goroutine: submit what is pending, reap a batch, fire
// its entries, and sleep only when there is nothing to do.
func (p *Poller) loop() {
	defer close(p.stopped)
	p.pollerGoid.Store(curGoid())
	th := pollerThread{locks: &p.stats.threadLocks}
	defer th.adjust(false)
	dedicated := p.dedicatedThread()
	woke := true  // the last batch woke a parked goroutine: assumed until one did not
	deep := false // lockDepth requests were in flight since the last park
	spins := 0
	var spinFrom time.Time
	yielded := false
	for {
		inFlight := p.pending.Load()
		deep = deep || inFlight >= lockDepth
		// See dedicatedThread for when the thread is taken and let go.
		if dedicated && !th.locked && inFlight > 0 && (deep || !woke) {
			th.adjust(true)
		}
		if n := p.ring.PeekBatch(p.cqes); n > 0 {
			woke = p.dispatch(p.cqes[:n])
			spins = 0
			continue
		}
		if p.ring.CQOverflow() {
			p.stats.overflows.Add(1)
			p.ring.FlushOverflow()
			continue
		}
		if n := p.ring.SQPending(); n > 0 {
			if !p.cfg.SQPoll {
				// Goroutines the last batch woke are queued behind us: let them
				// run and publish their next requests first, so one enter
				// carries them all instead of one each. With nothing runnable
				// Gosched returns at once. A dedicated thread does not yield:
				// they run on the other Ps meanwhile.
				if !yielded && !th.locked && n < uint32(len(p.slots)) {
					yielded = true
					runtime.Gosched()
					continue
				}
				yielded = false
				p.stats.enters.Add(1)
				p.submit()
				continue
			}
			// The SQ thread consumes on its own; enter only to wake it.
			if p.ring.NeedWakeup() {
				p.stats.enters.Add(1)
				p.submit()
			}
		}
		// closed before pending: once Close has begun no request is added
		// (Close's own cancel only while others are pending), so pending
		// read after it can only fall. Read the other way round, a Submit
		// that went in just before Close could be left in flight.
		closed := p.closed.Load()
		idle := p.pending.Load() == 0
		if idle && closed {
			p.cancelDeferred()
			return
		}
		// Nothing to reap or submit: keep looking (letting the goroutines
		// just woken run, unless the thread is dedicated) for at least two
		// rounds and spinWait before sleeping. Those goroutines publish their
		// next requests within microseconds, often after the batch that woke
		// them left nothing in flight, and a dedicated thread pays two
		// futex wake-ups to park and be woken.
		if spins == 0 {
			spinFrom = time.Now()
		}
		if spins < 2 || time.Since(spinFrom) < spinWait {
			spins++
			if !th.locked {
				runtime.Gosched()
			}
			continue
		}
		spins = 0
		if idle {
			th.adjust(false) // nothing in flight: no task work to strand
			// A spell that ran deep was a crowd of callers: the next one to
			// find the ring asleep is likely one of them, and the poller
			// serves a crowd better than an inline reaper does.
			p.shallow.Store(!deep)
			deep = false
			p.park()
			if dedicated = p.dedicatedThread(); !dedicated {
				th.adjust(false) // GOMAXPROCS went to 1 meanwhile: yield again
			}
			continue
		}
		p.state.Store(pollerInKernel)
		if (p.ring.SQPending() > 0 && !p.cfg.SQPoll) || p.ring.CQReady() > 0 {
			p.state.Store(pollerRunning)
			continue
		}
		p.stats.enters.Add(1)
		p.stats.waits.Add(1)
		// Bounded so that a kick whose submit failed (EAGAIN) is retried soon.
		p.ring.EnterTimeout(0, 1, ring.EnterGetEvents, 100*time.Millisecond)
		p.state.Store(pollerRunning)
	}
}

// dedicatedThread reports whether the poller may keep one OS thread while
// the ring is busy. io_uring completes a request by queueing task work on
// the thread that submitted it, and that thread must run it before the CQE
// is posted. A poller goroutine that Go moves between threads (it yields,
// it parks) leaves its completions queued on threads that are asleep or
// busy, often on the other CPU: each wake-up is an IPI, and the thread then
// wakes the poller with another. On the 2-vCPU VM of docs/benchmarks.md
// that cost blocking O_DIRECT reads at depth 32 2-13% of their IOPS and
// most of their p99.9.
//
// A locked poller does not yield, so the goroutines it wakes run on other
// Ps, whose threads may have to be woken first, and parking it costs two
// futex wake-ups (the scheduler hands the P to another thread when it
// parks, and back when it is readied). So it takes the thread only once
// requests are deep in flight (lockDepth) or its completions wake no
// goroutine (callbacks, which run on the poller anyway), and lets go
// whenever it parks: nothing is in flight then, so no task work is
// stranded, and an unlocked park is an ordinary one. One blocking reader at
// a time ran at 0.42x fio's IOPS on an always-locked poller, 0.60-0.74x on
// a yielding one or this one. Keeping the thread through parks after a deep
// spell, as session 3 did, cost about a third more cross-CPU wake-ups and
// 2-3x the p99.9 of deep blocking reads, for the same IOPS
// (docs/benchmarks.md).
//
// With a single P the goroutine stays on one thread anyway and must yield
// for the submitters to run; the software ring has no task work, and under
// SQPOLL the kernel's SQ thread is the submitter.
func (p *Poller) dedicatedThread() bool {
	return !p.cfg.SharedThread && !p.cfg.Soft && !p.cfg.SQPoll && runtime.GOMAXPROCS(0) > 1
}

// lockDepth is the number of requests in flight from which the poller
// keeps its thread although its completions wake goroutines.
const lockDepth = 8

// pollerThread tracks whether the poller goroutine holds its OS thread.
type pollerThread struct {
	locked bool
	locks  *atomic.Uint64
}

func (t *pollerThread) adjust(want bool) {
	switch {
	case want && !t.locked:
		runtime.LockOSThread()
		t.locks.Add(1)
	case !want && t.locked:
		runtime.UnlockOSThread()
	}
	t.locked = want
}

// spinWait is how long the poller keeps looking for completions before it
// blocks in the kernel. A completion that lands meanwhile is reaped without
// the poller's thread going to sleep and being woken, and without the P
// hand-offs around a blocking syscall: on this 2-vCPU VM, randread O_DIRECT
// block mode went from 0.86–0.98x fio to 0.96–1.12x with it (4 rounds, same
// minutes; 30 µs was no better). It costs at most that much CPU per wait.
const spinWait = 10 * time.Microsecond

// park sleeps until a submitter or Close kicks. The re-check after the state
// store closes the window in which a kick would have seen pollerRunning.
func (p *Poller) park() {
	p.state.Store(pollerParked)
	if p.pending.Load() > 0 || p.closed.Load() {
		if p.state.CompareAndSwap(pollerParked, pollerRunning) {
			return
		}
		<-p.wake // a kicker won the CAS: consume its token
		return
	}
	p.stats.parks.Add(1)
	<-p.wake
	p.state.Store(pollerRunning)
}

// dispatch delivers a batch and reports whether it woke a parked
// goroutine. Callback slots are freed under one lock before any callback
// runs, so a callback that resubmits finds a slot.
func (p *Poller) dispatch(cqes []ring.CQE) (woke bool) {
	fired := p.fired[:0]
	var done int64 // final completions of published SQEs, for pending
	var delivered, stale uint64
	var freed bool
	for i := range cqes {
		c := &cqes[i]
		more := c.Flags&ring.CQEFMore != 0
		if c.UserData&internalTag != 0 {
			if !more {
				done++
			}
			continue
		}
		idx := uint32(c.UserData)
		gen := uint32(c.UserData>>32) & genMask
		if idx >= uint32(len(p.slots)) {
			stale++
			continue
		}
		s := &p.slots[idx]
		if s.tag.Load() != uint64(gen)<<2|slotInFlight {
			// Never delivered, and not counted against pending: no SQE of ours is behind it.
			stale++
			continue
		}
		if !more {
			done++
		}
		if c.Res == -int32(syscall.ECANCELED) && !more && s.lone {
			p.mu.Lock()
			again := p.retryLocked(s, c.UserData)
			p.mu.Unlock()
			if again {
				continue
			}
		}
		if s.done != nil {
			delivered++
			fired = append(fired, firedCallback{s.done, c.Res, c.Flags, idx, !more})
			if !more {
				s.tag.Store(uint64(gen)<<2 | slotDone)
				freed = true
			}
			continue
		}
		if !more {
			s.tag.Store(uint64(gen)<<2 | slotDone)
		}
		// Counted before the wake: the woken goroutine may read Stats at once.
		p.stats.completed.Add(1)
		s.entry.Func(&s.entry, packKey(c.Res, c.Flags))
		woke = true
	}
	if freed {
		p.mu.Lock()
		for i := range fired {
			if fired[i].final {
				p.releaseLocked(fired[i].idx)
			}
		}
		p.mu.Unlock()
	}
	p.stats.completed.Add(delivered) // callbacks: counted before any runs
	// pending drops only after the batch's slots are consistent again, so
	// Close never sees zero while a callback still has to run.
	if len(fired) > 0 {
		if p.state.Load() == pollerLent && p.reaperGoid.Load() == 0 {
			// Callbacks on a caller's goroutine: a Submit they make with no
			// slot free must defer, as on the poller, not sleep (onPoller).
			p.reaperGoid.Store(curGoid())
		}
		p.inCallbacks.Store(true)
		for i := range fired {
			p.call(fired[i].done, fired[i].res, fired[i].flags)
			fired[i].done = nil
		}
		p.inCallbacks.Store(false)
	}
	p.pending.Add(-done)
	p.fired = fired[:0]
	if stale > 0 {
		p.stats.stale.Add(stale)
	}
	return woke
}

// reapInline is the poller's loop run by a blocking caller, on its own
// goroutine, until that caller's request is done: the poller is parked
// (state pollerLent, CASed from pollerParked by the caller), so the CQ
// and the poller's scratch are this goroutine's alone. A request
// published alone on a sleeping ring then costs one enter to submit and
// one to wait, as in C, instead of a wake-up of the poller and another of
// the caller; at depth 1 that took blocking O_DIRECT reads from 0.67-0.73x
// fio's rate to 0.98-1.0x (docs/benchmarks.md).
//
// On the way out the role goes back: to the poller, woken, when anything
// is still pending or the ring is closing; else the state returns to
// pollerParked, re-checked after the store as park does, so that a
// request published meanwhile is never left without a reaper.
func (p *Poller) reapInline(slot *Slot) {
	// Held like a kick's direct submit: Close unmaps under the write lock.
	p.unmapMu.RLock()
	p.stats.inline.Add(1)
	stuck := false          // a submit made no progress: wait (bounded) before the next
	for len(slot.ch) == 0 { // wakeBlocked filled it: our completion is in
		if p.pending.Load() >= lockDepth {
			p.shallow.Store(false) // a crowd joined: the poller serves the next spell
		}
		if n := p.ring.PeekBatch(p.cqes); n > 0 {
			p.dispatch(p.cqes[:n])
			continue
		}
		if p.ring.CQOverflow() || p.closed.Load() {
			break // the poller's business
		}
		if n := p.ring.SQPending(); n > 0 && !stuck {
			p.stats.enters.Add(1)
			p.submit()
			stuck = p.ring.SQPending() >= n // EAGAIN: no memory for requests now
			continue
		}
		stuck = false
		p.stats.enters.Add(1)
		p.stats.waits.Add(1)
		// Bounded for the same reason as the poller's wait: a kick whose
		// submit failed is retried on the next round.
		if _, err := p.ring.EnterTimeout(0, 1, ring.EnterGetEvents, 100*time.Millisecond); err != nil &&
			!errors.Is(err, syscall.ETIME) && !errors.Is(err, syscall.EINTR) {
			break // EBUSY and the like: the poller sorts them out
		}
	}
	p.reaperGoid.Store(0)
	if p.pending.Load() > 0 || p.closed.Load() || p.ring.SQPending() > 0 || p.ring.CQReady() > 0 || p.ring.CQOverflow() {
		p.handBack()
	} else {
		if inlineExitHook != nil {
			inlineExitHook()
		}
		p.state.Store(pollerParked)
		// A submitter that saw pollerLent submitted on its own: if one did
		// after the checks above, it is pending now and needs the poller.
		if (p.pending.Load() > 0 || p.closed.Load()) && p.state.CompareAndSwap(pollerParked, pollerLent) {
			p.handBack()
		}
	}
	p.unmapMu.RUnlock()
}

// inlineExitHook, set only by tests, runs between an inline reaper's last
// look at what is pending and its return of the state to pollerParked.
var inlineExitHook func()

// handBack returns the role lent to an inline reaper to the poller, which
// has been waiting in park for a token that only this sends.
func (p *Poller) handBack() {
	p.state.Store(pollerRunning)
	select {
	case p.wake <- struct{}{}:
	default:
	}
}

// cancelDeferred completes the callbacks' submissions that never got a slot
// before Close, with -ECANCELED, so each callback still fires exactly once.
func (p *Poller) cancelDeferred() {
	p.mu.Lock()
	deferred := p.deferred
	p.deferred = nil
	p.mu.Unlock()
	p.inCallbacks.Store(true)
	for _, d := range deferred {
		for _, done := range d.dones {
			p.call(done, -int32(syscall.ECANCELED), 0)
		}
	}
	p.inCallbacks.Store(false)
}

// call runs one callback, containing its panic so one bad callback cannot
// take the poller, and every other request, down with it.
func (p *Poller) call(done func(int32, uint32), res int32, flags uint32) {
	defer func() {
		if v := recover(); v != nil {
			if h := p.cfg.OnCallbackPanic; h != nil {
				h(v)
				return
			}
			go func() { panic(fmt.Sprintf("ringwake: panic in a Submit callback: %v", v)) }()
		}
	}()
	done(res, flags)
}

// Close stops new work, wakes every backlogged submitter with ErrClosed,
// cancels what is in flight, waits until the kernel has completed (and so
// let go of the buffers of) every request, stops the poller and unmaps the
// ring. Every callback still fires exactly once, most with -ECANCELED.
func (p *Poller) Close() error {
	p.closeMu.Lock()
	defer p.closeMu.Unlock()
	if p.closed.Load() {
		return p.closeErr
	}
	p.mu.Lock()
	p.closing = true
	p.closed.Store(true)
	p.backlog.WakeUpAll(closedKey)
	if p.pending.Load() > 0 {
		p.internalLocked(func(q *sqe.SQE) { q.PrepCancel64(0, sqe.AsyncCancelAny) })
	}
	p.mu.Unlock()
	p.kick()
	// Wake a parked poller so it notices the close.
	if p.state.CompareAndSwap(pollerParked, pollerRunning) {
		select {
		case p.wake <- struct{}{}:
		default:
		}
	}
	<-p.stopped
	p.unmapMu.Lock()
	p.unmapped = true
	p.closeErr = p.ring.Close()
	p.unmapMu.Unlock()
	return p.closeErr
}
