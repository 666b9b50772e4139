package runtime

import (
	"context"
	"errors"
	goruntime "runtime"
	"sync"
	"sync/atomic"
	"syscall"
	"time"
	"unsafe"

	"github.com/ringwake/ringwake/poller"
	"github.com/ringwake/ringwake/sqe"
)

// IOCost is the capacity model of a Ring's I/O scheduler, used once a class
// is registered (NewClass): each request costs tokens, from its direction
// and size, and the scheduler lets at most Capacity tokens be in flight at
// the device, so that requests queue in ringwake, where shares apply, and
// not in the device's queue, where they cannot. A token is a nanosecond of
// device time when the device is saturated (Seastar's model): a request
// costs 1/IOPS plus its size over the bandwidth, each measured at full
// depth, so the cost in flight is how long the device takes to drain it,
// and Capacity is the latency goal: how much of others' work a request may
// find ahead of it. Zero fields take the defaults (DefaultIOCost);
// `uringbench -workload calibrate` measures a device and prints the values
// for it.
type IOCost struct {
	// ReadOp and WriteOp are the tokens of one read or write request;
	// fsync, fallocate and sync_file_range cost WriteOp, a NOP nothing and
	// any other request ReadOp. Vectored reads and writes cost one op.
	ReadOp, WriteOp uint32
	// ReadKiB and WriteKiB are the tokens of each KiB read or written.
	ReadKiB, WriteKiB uint32
	// Capacity is the cost allowed in flight at once. A request is always
	// admitted when nothing is in flight, however large, and a class below
	// its share of the capacity may take up to twice it (see NewClass).
	Capacity uint64
}

// DefaultIOCost is the model used where Config.IOCost leaves a field zero:
// `uringbench -workload calibrate` on the disk measured in
// docs/benchmarks.md (a 4 KiB read costs 19 µs of device time at full
// depth, a 128 KiB write 70 µs), with its capacity, twice a lone 4 KiB
// read's latency: see "I/O classes" in docs/design.md.
var DefaultIOCost = IOCost{ReadOp: 15500, WriteOp: 20500, ReadKiB: 920, WriteKiB: 390, Capacity: 290000}

func (m IOCost) withDefaults() IOCost {
	d := DefaultIOCost
	if m.ReadOp != 0 {
		d.ReadOp = m.ReadOp
	}
	if m.WriteOp != 0 {
		d.WriteOp = m.WriteOp
	}
	if m.ReadKiB != 0 {
		d.ReadKiB = m.ReadKiB
	}
	if m.WriteKiB != 0 {
		d.WriteKiB = m.WriteKiB
	}
	if m.Capacity != 0 {
		d.Capacity = m.Capacity
	}
	return d
}

// cost is a request's tokens and the bytes it moves.
func (m *IOCost) cost(s *sqe.SQE) (tokens, bytes uint64) {
	n := uint64(s.Len)
	switch s.Opcode {
	case sqe.OpNop:
		return 0, 0
	case sqe.OpRead, sqe.OpReadFixed:
		return uint64(m.ReadOp) + n*uint64(m.ReadKiB)/1024, n
	case sqe.OpWrite, sqe.OpWriteFixed:
		return uint64(m.WriteOp) + n*uint64(m.WriteKiB)/1024, n
	case sqe.OpWritev, sqe.OpWritevFixed, sqe.OpFsync, sqe.OpFallocate, sqe.OpSyncFileRange:
		return uint64(m.WriteOp), 0
	}
	return uint64(m.ReadOp), 0
}

// DefaultShares are the shares of the default class, where I/O with no
// class runs once any class is registered.
const DefaultShares = 100

// Class is an I/O class of a Ring: requests made with a ctx from WithClass
// queue in it, FIFO, and the ring's scheduler admits them to the device in
// proportion to the class's shares among the classes that have requests
// waiting. A class alone gets the whole device.
type Class struct {
	name   string
	shares uint32
	r      *Ring
	fc     *fqClass
}

// ClassStats are a class's counters since it was registered.
type ClassStats struct {
	Name   string
	Shares uint32
	// Ops counts requests admitted (a SubmitAndWait or Do call counts each
	// of its requests); Bytes the bytes their reads and writes asked for.
	Ops, Bytes uint64
	// Queued is the time requests spent waiting for admission, summed.
	Queued time.Duration
	// InFlight is how many admissions have not completed yet (a batch is
	// one).
	InFlight int64
}

// Name returns the name the class was registered with.
func (c *Class) Name() string { return c.name }

// Shares returns the class's shares.
func (c *Class) Shares() uint32 { return c.shares }

// Stats returns the class's counters.
func (c *Class) Stats() ClassStats {
	return ClassStats{
		Name: c.name, Shares: c.shares,
		Ops: c.fc.ops.Load(), Bytes: c.fc.bytes.Load(),
		Queued:   time.Duration(c.fc.queuedNs.Load()),
		InFlight: c.fc.inflight.Load(),
	}
}

type classKey struct{}

// WithClass returns a ctx whose I/O through any Ring or File call (ReadAt,
// WriteAt, Fsync, Nop, the vectored and file-system calls, SubmitAndWait,
// Do, File.ReadAtContext, ...) is scheduled in c. A class applies only to
// the ring it was registered on; on another ring the request runs in that
// ring's default class. File calls without a ctx (File.ReadAt, Write, Sync)
// run in the default class. A nil c returns ctx unchanged.
func WithClass(ctx context.Context, c *Class) context.Context {
	if c == nil {
		return ctx
	}
	return context.WithValue(ctx, classKey{}, c)
}

// classes is a Ring's scheduler state. sched is nil until the first
// NewClass: until then every call pays one atomic load for it and nothing
// else.
type classes struct {
	sched  atomic.Pointer[scheduler]
	mu     sync.Mutex // NewClass and Close
	closed bool
}

type scheduler struct {
	r    *Ring
	fq   *fairQueue
	cost IOCost
	def  *Class
}

// NewClass registers an I/O class with a share of the ring's device time;
// shares 0 counts as 1. From the first NewClass on, every request of the
// ring goes through the scheduler, and I/O with no class runs in a default
// class of DefaultShares. Registering on a closed ring returns a class
// whose requests fail with ErrClosed.
func (r *Ring) NewClass(name string, shares uint32) *Class {
	r.cls.mu.Lock()
	defer r.cls.mu.Unlock()
	sc := r.cls.sched.Load()
	if sc == nil {
		sc = &scheduler{r: r, cost: r.ioCost.withDefaults()}
		sc.fq = newFairQueue(sc.cost.Capacity)
		sc.fq.flush = sc.flush
		sc.def = sc.newClass("default", DefaultShares)
		if r.cls.closed {
			sc.fq.close()
		}
		r.cls.sched.Store(sc)
	}
	return sc.newClass(name, shares)
}

func (sc *scheduler) newClass(name string, shares uint32) *Class {
	shares = max(shares, 1)
	return &Class{name: name, shares: shares, r: sc.r, fc: sc.fq.addClass(shares)}
}

// closeClasses ends the scheduler: queued requests fail with ErrClosed and
// queued callbacks fire once with -ECANCELED.
func (r *Ring) closeClasses() {
	r.cls.mu.Lock()
	r.cls.closed = true
	sc := r.cls.sched.Load()
	r.cls.mu.Unlock()
	if sc != nil {
		sc.fq.close()
		sc.flush()
	}
}

func (sc *scheduler) classOf(ctx context.Context) *Class {
	if c, ok := ctx.Value(classKey{}).(*Class); ok && c.r == sc.r {
		return c
	}
	return sc.def
}

func (sc *scheduler) release(c *Class, cost uint64) {
	sc.fq.release(c.fc, cost)
	sc.flush()
}

// releaseYield is release for a blocking caller: when the release admitted
// a blocking caller, that one is the next goroutine of this P (a channel
// send readies it there), but it runs only when this one blocks, which a
// caller that goes on to prepare its next request (fill a 128 KiB buffer)
// puts off while the capacity it was admitted to stays idle. Yielding runs
// it now, so it submits at once.
func (sc *scheduler) releaseYield(c *Class, cost uint64) {
	woke := sc.fq.release(c.fc, cost)
	sc.flush()
	if woke {
		goruntime.Gosched()
	}
}

// pdo is p.DoTimeout, behind the scheduler's admission once a class is
// registered. The poller is the caller's choice, so that the hook does not
// decide which of a ring's pollers serves a request.
func (r *Ring) pdo(ctx context.Context, p *poller.Poller, s *sqe.SQE, keep unsafe.Pointer, d time.Duration) (int32, uint32, error) {
	if sc := r.cls.sched.Load(); sc != nil {
		return sc.do(ctx, p, s, keep, d)
	}
	return p.DoTimeout(ctx, s, keep, d)
}

func (sc *scheduler) do(ctx context.Context, p *poller.Poller, s *sqe.SQE, keep unsafe.Pointer, d time.Duration) (int32, uint32, error) {
	c := sc.classOf(ctx)
	cost, n := sc.cost.cost(s)
	if err := sc.fq.admit(ctx, c.fc, cost); err != nil {
		return 0, 0, err
	}
	c.fc.ops.Add(1)
	c.fc.bytes.Add(n)
	res, flags, err := p.DoTimeout(ctx, s, keep, d)
	sc.releaseYield(c, cost)
	return res, flags, err
}

// psubmitAndWait is p.SubmitAndWait, behind the scheduler's admission
// once a class is registered. A batch is admitted whole, as one request
// of the sum of its costs.
func (r *Ring) psubmitAndWait(ctx context.Context, p *poller.Poller, ss []sqe.SQE, res []int32, keep []unsafe.Pointer) error {
	sc := r.cls.sched.Load()
	if sc == nil {
		return p.SubmitAndWait(ctx, ss, res, keep)
	}
	c := sc.classOf(ctx)
	var cost, n uint64
	for i := range ss {
		t, b := sc.cost.cost(&ss[i])
		cost += t
		n += b
	}
	if err := sc.fq.admit(ctx, c.fc, cost); err != nil {
		return err
	}
	c.fc.ops.Add(uint64(len(ss)))
	c.fc.bytes.Add(n)
	err := p.SubmitAndWait(ctx, ss, res, keep)
	sc.releaseYield(c, cost)
	return err
}

// SubmitClass is Submit with the request scheduled in c (Submit uses the
// default class once a class is registered). It never blocks: a request
// the scheduler cannot admit yet is copied and queued, and submitted when
// admitted, by whichever goroutine's completion made room (the poller,
// from its callbacks, or a blocking caller). An error from that later
// submission reaches done as a negated errno; Close fires done once with
// -ECANCELED for a request still queued. A class of another ring is
// refused with EINVAL. Queued callback requests allocate; admitted at once
// they allocate one closure.
func (r *Ring) SubmitClass(c *Class, s *sqe.SQE, done func(res int32, flags uint32)) error {
	if c == nil || c.r != r {
		return &OpError{Op: "submit", Fd: -1, Err: syscall.EINVAL}
	}
	if s != nil && !r.supported(s.Opcode) {
		return unsupported(s.Opcode)
	}
	return r.submitClass(r.cls.sched.Load(), c, s, done)
}

// classSub is a callback request in the scheduler.
type classSub struct {
	w    fqWaiter
	sc   *scheduler
	c    *Class
	s    sqe.SQE
	done func(res int32, flags uint32)
	fire func(res int32, flags uint32) // complete, bound once
	n    uint64
	// p is the shard picked when the request was made, as Submit picks
	// it: a callback's request stays on its reaper's shard, others spread.
	p *poller.Poller
}

func (r *Ring) submitClass(sc *scheduler, c *Class, s *sqe.SQE, done func(res int32, flags uint32)) error {
	if s == nil || done == nil || s.Flags&(sqe.IOLink|sqe.IOHardlink|sqe.CQESkipSuccess) != 0 {
		return r.pickSpread().Submit(s, done) // the poller's own refusal, with its error
	}
	sub := &classSub{sc: sc, c: c, s: *s, done: done, p: r.pickSpread()}
	sub.fire = sub.complete
	sub.w.e.Func, sub.w.e.Private, sub.w.sub = fqWakeFunc, &sub.w, sub
	var n uint64
	sub.w.cost, n = sc.cost.cost(s)
	sub.n = n
	now, err := sc.fq.arrive(c.fc, &sub.w)
	if err != nil {
		return err
	}
	if now {
		c.fc.ops.Add(1)
		c.fc.bytes.Add(n)
		if err := sub.p.Submit(&sub.s, sub.fire); err != nil {
			sc.release(c, sub.w.cost)
			return err
		}
		return nil
	}
	sc.flush()
	return nil
}

// complete runs on the reaper when an admitted callback request completes.
func (sub *classSub) complete(res int32, flags uint32) {
	sub.sc.release(sub.c, sub.w.cost)
	sub.done(res, flags)
}

// canceled fires done for a request the scheduler's Close ended.
func (sub *classSub) canceled(int32, uint32) {
	sub.done(-int32(syscall.ECANCELED), 0)
}

// flush submits the callback requests dispatches admitted, and ends the
// ones Close woke: a NOP through the ring carries their -ECANCELED, so
// done still runs on the reaper, one callback at a time.
func (sc *scheduler) flush() {
	for _, w := range sc.fq.takeReady() {
		sub := w.sub
		if w.closed {
			sub.s = sqe.SQE{}
			sub.s.PrepNop()
			if sub.p.Submit(&sub.s, sub.canceled) != nil {
				sub.canceled(0, 0) // the ring is closed: no reaper runs any more
			}
			continue
		}
		sub.c.fc.ops.Add(1)
		sub.c.fc.bytes.Add(sub.n)
		if err := sub.p.Submit(&sub.s, sub.fire); err != nil {
			sc.release(sub.c, w.cost)
			sub.done(-errnoOf(err), 0)
		}
	}
}

// errnoOf is the errno a failed submission reports to a callback.
func errnoOf(err error) int32 {
	var e syscall.Errno
	if errors.As(err, &e) {
		return int32(e)
	}
	return int32(syscall.ECANCELED) // closed
}
