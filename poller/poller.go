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
//
// The files, by concern: poller.go (Config, Stats, the Poller and New),
// slots.go (the slot table and its tag), submit.go (Submit, SubmitBatch,
// the enter that submits, kick), do.go (blocking calls), backlog.go
// (sleeping for a slot), deferred.go (callbacks' submissions with no slot
// free), loop.go (the poller goroutine and how it sleeps), thread.go (its
// OS thread policy), inline.go (a blocking caller reaping on its own
// goroutine), dispatch.go (delivering completions), close.go (Close). Each
// opens with the invariant it keeps.
package poller

import (
	"errors"
	"sync"
	"sync/atomic"
	"time"

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

	// Group joins the poller to the other shards of one ring: a callback
	// of any of them that submits to this one with no slot free defers
	// instead of sleeping, as on its own poller, since a reaper that slept
	// on another shard could wait on one whose reaper waits on it.
	Group *Group
	// OnCallbacks, if set, runs on the reaping goroutine before (with true)
	// each batch of callbacks, and after it (false) on a caller reaping
	// inline: the poller's own goroutine runs nothing but batches, so it
	// stays the reaper between them. A sharded ring marks the reaper's
	// stack as this shard's, so what the callbacks submit stays on it.
	OnCallbacks func(running bool)
}

// Group is the set of pollers behind one sharded ring (Config.Group).
type Group struct {
	mu sync.Mutex
	ps []*Poller
}

func (g *Group) add(p *Poller) {
	g.mu.Lock()
	g.ps = append(g.ps, p)
	g.mu.Unlock()
}

// reaping reports whether goroutine gid runs callbacks of a poller of g.
func (g *Group) reaping(gid uint64) bool {
	g.mu.Lock()
	defer g.mu.Unlock()
	for _, p := range g.ps {
		if p.reaping(gid) {
			return true
		}
	}
	return false
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
	// CallerReaps counts batches of completions that a blocking caller
	// took off the CQ and delivered while it yielded for its own (see
	// Poller.Do), instead of the poller.
	CallerReaps uint64
	// ThreadLocks counts the times the poller locked an OS thread for
	// itself: at the start of each busy period that called for it (see
	// Config.SharedThread); it lets go at every park.
	ThreadLocks uint64
}

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
		CallerReaps: p.stats.callerReaps.Load(),
	}
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
	// yieldScore rises when a blocking caller's yields found its completion
	// and falls when they did not; below zero callers park at once, but for
	// one in yieldProbe (yieldProbes counts them). See yieldFor.
	yieldScore  atomic.Int32
	yieldProbes atomic.Uint32
	// batchExtra is the SubmitAndWait requests in flight less one per
	// chunk: pending-batchExtra counts callers, not requests, for the rules
	// that tell a crowd of goroutines (lockDepth) from one with a batch.
	batchExtra atomic.Int64
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
		submitted, completed, stale, enters, waits, parks, overflows, backlogged, deferred, threadLocks, retried, inline, callerReaps atomic.Uint64
	}

	// poller-goroutine-only scratch, reused every batch.
	cqes []ring.CQE
	// reapLock is held by whoever reads the CQ and delivers its batch:
	// the poller, an inline reaper, or a caller yielding for its
	// completion (reap). One reaper at a time, so each CQE once.
	reapLock atomic.Bool
	fired    []firedCallback
	resume   []uint32 // slots whose pause ended in the batch (pauseLocked)
}

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
	if cfg.Group != nil {
		cfg.Group.add(p)
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
