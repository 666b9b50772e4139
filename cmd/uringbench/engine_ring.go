package main

import (
	"context"
	"errors"
	"fmt"
	"os"
	"sync"
	"sync/atomic"
	"syscall"

	"github.com/HdrHistogram/hdrhistogram-go"
	ringwake "github.com/ringwake/ringwake/runtime"
	"github.com/ringwake/ringwake/sqe"
)

// runRing measures ringwake in one of its two modes on a ring of its own.
func runRing(ctx context.Context, e *env, p *plan, mode string) (*result, []int64, error) {
	r, err := ringwake.New(ringwake.Config{Entries: uint32(p.qd)})
	if errors.Is(err, ringwake.ErrUnsupported) {
		return nil, nil, skipf("io_uring refused by the kernel, skipped (%v)", err)
	}
	if err != nil {
		return nil, nil, err
	}
	defer r.Close()
	fd := -1
	if e.tgt != nil {
		f, err := os.OpenFile(e.tgt.path, e.tgt.openFlags(), 0)
		if err != nil {
			return nil, nil, err
		}
		defer f.Close()
		fd = int(f.Fd())
	}
	var m *measured
	if mode == "callback" {
		m, err = p.runCallback(ctx, e, r, int32(fd))
	} else {
		m, err = p.runBlocking(ctx, e, "ring/block", func() opFunc { return ringOp(r, fd) })
	}
	if err != nil {
		return nil, nil, err
	}
	e.verbosef("ring/%s: %.3f heap allocations per op", mode, float64(m.allocs)/float64(max(m.ops, 1)))
	st := r.Stats()
	e.verbosef("ring/%s: %d requests in %d io_uring_enter calls (%.1f per enter), %d waits for completions, %d submitters backlogged",
		mode, st.Submitted, st.Enters, float64(st.Submitted)/float64(max(st.Enters, 1)), st.Waits, st.Backlogged)
	res := e.newResult("ring", mode)
	res.Lat = latencyOf(m.hist)
	res.finish(m.ops, m.elapsed, m.cpu)
	return res, m.written, nil
}

// ringOp issues each op with ringwake's blocking API, as most Go code would.
// The context is Background: the run ends by the plan's stop flag, and a
// cancelable context would add its cost to every op.
func ringOp(r *ringwake.Ring, fd int) opFunc {
	ctx := context.Background()
	return func(k opKind, buf []byte, off int64) error {
		switch k {
		case opNop:
			return r.Nop(ctx)
		case opRead:
			n, err := r.ReadAt(ctx, fd, buf, off)
			if err == nil && n != len(buf) {
				err = fmt.Errorf("short read: %d of %d bytes at %d", n, len(buf), off)
			}
			return err
		default:
			n, err := r.WriteAt(ctx, fd, buf, off)
			if err == nil && n != len(buf) {
				err = fmt.Errorf("short write: %d of %d bytes at %d", n, len(buf), off)
			}
			if err == nil && k == opWriteSync {
				err = r.Fsync(ctx, fd, false)
			}
			return err
		}
	}
}

// cbRun keeps qd requests in flight with Submit callbacks, refilling from the
// callback: how fio drives io_uring. Every field but inflight, err and the
// plan's counters is touched by one goroutine at a time: by the priming
// goroutine before a slot's first Submit, by the poller goroutine after.
type cbRun struct {
	p     *plan
	r     *ringwake.Ring
	fd    int32
	slots []cbSlot
	hist  *hdrhistogram.Histogram
	ops   int64

	inflight atomic.Int64 // slots still in flight; the one that takes it to 0 closes done
	done     chan struct{}

	errMu sync.Mutex
	err   error
}

// cbSlot is one in-flight request, reused for every op it carries.
type cbSlot struct {
	sqe     sqe.SQE
	rng     rng
	rbuf    []byte
	wbuf    []byte
	start   int64
	off     int64
	kind    opKind
	syncing bool // an opWriteSync slot whose write is done and fsync in flight
	smp     samples
	count   uint64 // ops this slot carried, for latency sampling
	cb      func(res int32, flags uint32)
}

func (p *plan) runCallback(ctx context.Context, e *env, r *ringwake.Ring, fd int32) (*measured, error) {
	c := &cbRun{p: p, r: r, fd: fd, slots: make([]cbSlot, p.qd), hist: newHist(), done: make(chan struct{})}
	bp := newBufferPool(p)
	for i := range c.slots {
		s := &c.slots[i]
		s.rng = newRNG(p.seed, i)
		s.rbuf, s.wbuf = bp.slot(p, i)
		// One closure per slot, made here once: the refill path allocates nothing.
		id := i
		s.cb = func(res int32, _ uint32) { c.complete(id, res) }
	}
	stopBar := e.startProgress("ring/callback", p)
	defer stopBar()
	mt := startMeter()
	// Claim every first op before the first Submit: callbacks start firing
	// while the later slots are still being primed.
	seqs := make([]int64, 0, len(c.slots))
	for range c.slots {
		n, ok := p.claim()
		if !ok {
			break
		}
		seqs = append(seqs, n)
	}
	c.inflight.Store(int64(len(seqs)))
	if len(seqs) == 0 {
		close(c.done)
	}
	for i, n := range seqs {
		if err := c.issue(&c.slots[i], n, now()); err != nil {
			c.fail(err)
			for range seqs[i:] {
				c.retire()
			}
			break
		}
	}
	p.waitEnd(ctx, e.cfg.duration, func() { <-c.done })
	m := &measured{hist: c.hist, ops: c.ops}
	mt.stop(m)
	c.errMu.Lock()
	err := c.err
	c.errMu.Unlock()
	if err != nil {
		return nil, err
	}
	for i := range c.slots {
		s := &c.slots[i]
		m.written = append(m.written, s.smp.off[:s.smp.n]...)
	}
	return m, nil
}

// issue prepares slot s for op number n and submits it; start is when the
// op's clock starts, or -1 when its latency is not sampled.
func (c *cbRun) issue(s *cbSlot, n int64, start int64) error {
	p := c.p
	s.kind = p.kind(&s.rng)
	s.off = p.offset(n, &s.rng)
	s.syncing = false
	switch s.kind {
	case opNop:
		s.sqe.PrepNop()
	case opRead:
		s.sqe.PrepRead(c.fd, s.rbuf, uint64(s.off))
	default:
		stamp(s.wbuf, s.off, p.tag)
		s.sqe.PrepWrite(c.fd, s.wbuf, uint64(s.off))
	}
	s.start = start
	return c.r.Submit(&s.sqe, s.cb)
}

// complete runs on the poller goroutine for every completion of slot id.
func (c *cbRun) complete(id int, res int32) {
	s := &c.slots[id]
	if err := s.check(res, c.p.bs); err != nil {
		c.fail(err)
		c.retire()
		return
	}
	if s.kind == opWriteSync && !s.syncing {
		s.syncing = true
		s.sqe.PrepFsync(c.fd, 0)
		if err := c.r.Submit(&s.sqe, s.cb); err != nil {
			c.fail(err)
			c.retire()
		}
		return
	}
	// One clock read per sampled op: this op's end is the next one's start.
	var t int64 = -1
	if s.start >= 0 {
		t = now()
		record(c.hist, t-s.start)
	}
	c.ops++
	if s.kind == opWrite || s.kind == opWriteSync {
		s.smp.add(s.off)
	}
	n, ok := c.p.claim()
	if !ok {
		c.retire()
		return
	}
	s.count++
	if s.count&c.p.sampleMask != 0 {
		t = -1 // not sampled: no clock read
	} else if t < 0 {
		t = now()
	}
	if err := c.issue(s, n, t); err != nil {
		c.fail(err)
		c.retire()
	}
}

// check maps a completion to an error, short transfers included.
func (s *cbSlot) check(res int32, bs int64) error {
	want := int32(bs)
	if s.kind == opNop || s.syncing {
		want = 0
	}
	if res == want {
		return nil
	}
	op := [...]string{opNop: "nop", opRead: "read", opWrite: "write", opWriteSync: "write"}[s.kind]
	if s.syncing {
		op = "fsync"
	}
	if res < 0 {
		return fmt.Errorf("%s at %d: %w", op, s.off, syscall.Errno(-res))
	}
	return fmt.Errorf("short %s: %d of %d bytes at %d", op, res, want, s.off)
}

func (c *cbRun) retire() {
	if c.inflight.Add(-1) == 0 {
		close(c.done)
	}
}

func (c *cbRun) fail(err error) {
	c.errMu.Lock()
	if c.err == nil {
		c.err = err
	}
	c.errMu.Unlock()
	c.p.stop.Store(true)
}
