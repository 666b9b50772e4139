package main

import (
	"context"
	"errors"
	"fmt"
	"strconv"
	"strings"
	"sync"
	"sync/atomic"
	"syscall"
	"time"

	"github.com/HdrHistogram/hdrhistogram-go"
	ringwake "github.com/ringwake/ringwake/runtime"
	"github.com/ringwake/ringwake/sqe"
)

// runRing measures ringwake in one of its modes on a ring of its own.
// mode is the row's label: "block", "callback" or "batch", then the features.
func runRing(ctx context.Context, e *env, p *plan, mode string) (*result, []int64, error) {
	base, _, _ := strings.Cut(mode, "+")
	feat := e.cfg.feat
	cfg := ringwake.Config{Entries: uint32(p.qd), IOPerEnter: e.cfg.ioPerEnter, NoCacheFastPath: !e.cfg.cacheFastPath, SharedThread: e.cfg.sharedThread,
		Shards: e.cfg.shards, MaxWorkers: e.cfg.maxWorkers}
	if feat.sqpoll {
		cfg.SQPoll, cfg.SQThreadIdle = true, feat.sqpollIdle
	}
	before := ringFds()
	r, err := ringwake.New(cfg)
	if errors.Is(err, ringwake.ErrUnsupported) {
		return nil, nil, skipf("io_uring refused by the kernel, skipped (%v)", err)
	}
	if err != nil {
		return nil, nil, err
	}
	defer r.Close()
	if feat.any() && r.Backend() != ringwake.BackendIOUring {
		return nil, nil, skipf("-%s measures an io_uring feature, and this ring runs on the %s engine: skipped", feat.names()[0], r.Backend())
	}
	rfd, haveRfd := newRingFd(before, ringFds())
	fd := -1
	var f *ringwake.File
	if e.tgt != nil {
		// A ringwake.File, as an application would hold: block mode reads
		// and writes through its io.ReaderAt/io.WriterAt methods.
		f, err = r.Open(e.tgt.path, e.tgt.openFlags(), 0)
		if err != nil {
			return nil, nil, err
		}
		defer f.Close()
		fd = int(f.Fd())
	}
	rio := ringIO{r: r, f: f, fd: fd, sqeFd: int32(fd)}
	if feat.fixedbufs {
		rio.fb, err = r.RegisterBuffers(p.qd, p.fixedBufSize())
		if err != nil {
			return nil, nil, fmt.Errorf("-fixedbufs: %w%s", err, memlockHint(err))
		}
	}
	if feat.registerfiles {
		rio.ff, err = r.RegisterFile(fd)
		if err != nil {
			return nil, nil, fmt.Errorf("-registerfiles: %w", err)
		}
		rio.sqeFd = rio.ff.Index()
	}
	if feat.any() {
		var how []string
		if feat.fixedbufs {
			how = append(how, fmt.Sprintf("RegisterBuffers(%d, %s), READ_FIXED/WRITE_FIXED with buffer index = slot", p.qd, formatBytes(int64(p.fixedBufSize()))))
		}
		if feat.registerfiles {
			how = append(how, fmt.Sprintf("RegisterFile: the file is index %d of the registered table, IOSQE_FIXED_FILE on every request", rio.ff.Index()))
		}
		if feat.sqpoll {
			idle := feat.sqpollIdle.String()
			if feat.sqpollIdle == 0 {
				idle = "0 (the kernel's default, 1s)"
			}
			how = append(how, "IORING_SETUP_SQPOLL, sq_thread_idle "+idle)
		}
		e.verbosef("ring/%s: %s", mode, strings.Join(how, "; "))
	}
	if err := e.confirmFeatures(mode, rfd, haveRfd, p.qd); err != nil {
		return nil, nil, err
	}
	var m *measured
	switch base {
	case "callback":
		m, err = p.runCallback(ctx, e, "ring/"+mode, rio)
	case "batch":
		m, err = p.runBatch(ctx, e, "ring/"+mode, rio)
	default:
		m, err = p.runBlocking(ctx, e, "ring/"+mode, rio.bp(p), rio.blockingOp)
	}
	if err != nil {
		return nil, nil, err
	}
	e.verbosef("ring/%s: %.3f heap allocations per op", mode, float64(m.allocs)/float64(max(m.ops, 1)))
	st := r.Stats()
	if e.cfg.shards > 1 {
		var per []string
		for _, s := range r.ShardStats() {
			per = append(per, strconv.FormatUint(s.Completed, 10))
		}
		e.verbosef("ring/%s: completions per shard: %s", mode, strings.Join(per, " "))
	}
	e.verbosef("ring/%s: %d requests in %d io_uring_enter calls (%.1f per enter), %d waits for completions, %d parks, %d calls reaped inline, %d batches reaped by yielding callers, %d submitters backlogged, poller thread locks: %d",
		mode, st.Submitted, st.Enters, float64(st.Submitted)/float64(max(st.Enters, 1)), st.Waits, st.Parks, st.Inline, st.CallerReaps, st.Backlogged, st.ThreadLocks)
	res := e.newResult("ring", mode)
	res.Lat = latencyOf(m.hist)
	res.finish(m.ops, m.elapsed, m.cpu)
	res.Threads = m.threads
	return res, m.written, nil
}

// confirmFeatures checks in the ring's fdinfo that the kernel set up what
// the flags asked for, so that no row is labeled with a feature that was not
// in effect. Without an fdinfo to read, -v says so and the run goes on.
func (e *env) confirmFeatures(mode string, rfd int, ok bool, bufs int) error {
	feat := e.cfg.feat
	if !feat.any() {
		return nil
	}
	if !ok {
		e.verbosef("ring/%s: cannot tell the ring's descriptor apart in /proc/self/fd: features not confirmed", mode)
		return nil
	}
	var err error
	// fdinfo shows the SQPOLL thread only when it gets the ring's lock at
	// once, which a busy submitter can deny it: look again before giving up.
	for range 5 {
		var ri ringInfo
		if ri, err = readRingInfo(rfd); err != nil {
			e.verbosef("ring/%s: cannot read the ring's fdinfo (%v): features not confirmed", mode, err)
			return nil
		}
		if err = checkRingInfo(ri, feat, bufs); err == nil {
			e.verbosef("ring/%s: kernel fdinfo confirms %s (%v)", mode, strings.Join(feat.names(), ", "), ri)
			return nil
		}
		time.Sleep(time.Millisecond)
	}
	return fmt.Errorf("%s asked for, but %w", feat.suffix()[1:], err)
}

// ringIO is how one ring engine run reaches the file: plain descriptor or
// registered file, plain or registered buffers.
type ringIO struct {
	r     *ringwake.Ring
	f     *ringwake.File
	fd    int   // the descriptor, for the calls that take one
	sqeFd int32 // what the SQE's Fd holds: fd, or the registered file's index
	fb    *ringwake.FixedBuffers
	ff    *ringwake.FixedFile
}

// fixedBufSize is one in-flight request's registered buffer: bs, or for
// randrw a read half and a write half, since a read would clobber the
// pattern a later write of the same slot needs.
func (p *plan) fixedBufSize() int {
	if p.needsReadBuf() && p.needsWriteBuf() {
		return 2 * int(p.bs)
	}
	return int(p.bs)
}

// bp returns the buffers of the run: slot i's are carved from registered
// buffer i under -fixedbufs.
func (rio *ringIO) bp(p *plan) *bufferPool {
	if rio.fb == nil {
		return newBufferPool(p)
	}
	return &bufferPool{bs: int(p.bs), fixed: rio.fb}
}

// blockingOp issues slot's ops with ringwake's blocking API, as most Go code
// would. The context is Background: the run ends by the plan's stop flag,
// and a cancelable context would add its cost to every op.
func (rio *ringIO) blockingOp(slot int) opFunc {
	ctx := context.Background()
	r, f, fd, fb, ff := rio.r, rio.f, rio.fd, rio.fb, rio.ff
	read := func(buf []byte, off int64) (int, error) { return f.ReadAtContext(ctx, buf, off) }
	write := func(buf []byte, off int64) (int, error) { return f.WriteAtContext(ctx, buf, off) }
	// validateFeatures refuses fb and ff together for this mode.
	switch {
	case fb != nil:
		read = func(buf []byte, off int64) (int, error) { return fb.ReadAt(ctx, fd, slot, buf, off) }
		write = func(buf []byte, off int64) (int, error) { return fb.WriteAt(ctx, fd, slot, buf, off) }
	case ff != nil:
		read = func(buf []byte, off int64) (int, error) { return ff.ReadAt(ctx, buf, off) }
		write = func(buf []byte, off int64) (int, error) { return ff.WriteAt(ctx, buf, off) }
	}
	return func(k opKind, buf []byte, off int64) error {
		switch k {
		case opNop:
			return r.Nop(ctx)
		case opRead:
			n, err := read(buf, off)
			if err == nil && n != len(buf) {
				err = fmt.Errorf("short read: %d of %d bytes at %d", n, len(buf), off)
			}
			return err
		default:
			n, err := write(buf, off)
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
	fd    int32 // the SQE's Fd: a descriptor, or a registered file's index
	sqeFl uint8 // sqe.FixedFile under -registerfiles
	fixed bool  // READ_FIXED/WRITE_FIXED from registered buffer slot i
	slots []cbSlot
	hist  *hdrhistogram.Histogram
	// histMu guards hist on a sharded ring, whose shards run callbacks at
	// the same time; nil with one shard, whose callbacks run one at a time.
	histMu *sync.Mutex

	inflight atomic.Int64 // slots still in flight; the one that takes it to 0 closes done
	done     chan struct{}

	errMu sync.Mutex
	err   error
}

// cbSlot is one in-flight request, reused for every op it carries.
type cbSlot struct {
	sqe     sqe.SQE
	id      uint16 // the slot's index, which is its registered buffer's index
	rng     rng
	rbuf    []byte
	wbuf    []byte
	start   int64
	off     int64
	kind    opKind
	syncing bool // an opWriteSync slot whose write is done and fsync in flight
	smp     samples
	count   uint64 // ops this slot carried, for latency sampling
	ops     int64  // ops this slot completed, summed at the end
	cb      func(res int32, flags uint32)
}

func (p *plan) runCallback(ctx context.Context, e *env, label string, rio ringIO) (*measured, error) {
	c := &cbRun{p: p, r: rio.r, fd: rio.sqeFd, fixed: rio.fb != nil, slots: make([]cbSlot, p.qd), hist: newHist(), done: make(chan struct{})}
	if e.cfg.shards > 1 {
		c.histMu = new(sync.Mutex)
	}
	if rio.ff != nil {
		c.sqeFl = sqe.FixedFile
	}
	bp := rio.bp(p)
	for i := range c.slots {
		s := &c.slots[i]
		s.id = uint16(i) // qd <= maxQD < 1<<16
		s.rng = newRNG(p.seed, i)
		s.rbuf, s.wbuf = bp.slot(p, i)
		// One closure per slot, made here once: the refill path allocates nothing.
		id := i
		s.cb = func(res int32, _ uint32) { c.complete(id, res) }
	}
	stopBar := e.startProgress(label, p)
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
	m := &measured{hist: c.hist}
	for i := range c.slots {
		m.ops += c.slots[i].ops
	}
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
	if s.kind != opRead && s.kind != opNop {
		stamp(s.wbuf, s.off, p.tag)
	}
	c.prep(s)
	s.start = start
	return c.r.Submit(&s.sqe, s.cb)
}

// prep fills s.sqe for the slot's op with the run's features.
func (c *cbRun) prep(s *cbSlot) {
	switch {
	case s.kind == opNop:
		s.sqe.PrepNop()
		return
	case s.syncing:
		s.sqe.PrepFsync(c.fd, 0)
	case s.kind == opRead && c.fixed:
		s.sqe.PrepReadFixed(c.fd, s.rbuf, uint64(s.off), s.id)
	case s.kind == opRead:
		s.sqe.PrepRead(c.fd, s.rbuf, uint64(s.off))
	case c.fixed:
		s.sqe.PrepWriteFixed(c.fd, s.wbuf, uint64(s.off), s.id)
	default:
		s.sqe.PrepWrite(c.fd, s.wbuf, uint64(s.off))
	}
	s.sqe.Flags |= c.sqeFl
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
		c.prep(s)
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
		if c.histMu != nil {
			c.histMu.Lock()
			record(c.hist, t-s.start)
			c.histMu.Unlock()
		} else {
			record(c.hist, t-s.start)
		}
	}
	s.ops++
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
