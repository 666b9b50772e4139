package main

import (
	"context"
	"sync"
	"time"

	"github.com/HdrHistogram/hdrhistogram-go"
	ringwake "github.com/ringwake/ringwake/runtime"
)

// opFunc performs one op with a blocking call and reports any failure,
// short transfers included.
type opFunc func(k opKind, buf []byte, off int64) error

// measured is what a driver hands back to its engine.
type measured struct {
	ops     int64
	hist    *hdrhistogram.Histogram
	written []int64
	elapsed time.Duration
	cpu     time.Duration
	allocs  uint64 // heap allocations of the whole process during the run
	threads int    // peak OS threads of the process during the run
}

// tally is what one goroutine of a run counts, merged at the end.
type tally struct {
	hist *hdrhistogram.Histogram
	ops  int64
	smp  samples
	err  error
}

// merge adds t to m, or returns the goroutine's error.
func (m *measured) merge(t *tally) error {
	if t.err != nil {
		return t.err
	}
	m.ops += t.ops
	m.hist.Merge(t.hist)
	m.written = append(m.written, t.smp.off[:t.smp.n]...)
	return nil
}

type worker struct {
	tally
	rng  rng
	rbuf []byte
	wbuf []byte
}

// needsWriteBuf reports whether workers need a buffer that keeps the write
// pattern; reads into it would clobber the pattern, hence two buffers.
func (p *plan) needsWriteBuf() bool {
	switch p.workload {
	case "randwrite", "write", "randrw", "fsync":
		return true
	}
	return false
}

func (p *plan) needsReadBuf() bool {
	switch p.workload {
	case "randread", "read", "randrw":
		return true
	}
	return false
}

// bufferPool carves every in-flight slot's buffers from one aligned
// allocation per run, or under -fixedbufs from slot i's registered buffer.
type bufferPool struct {
	mem   []byte
	bs    int
	fixed *ringwake.FixedBuffers
}

func newBufferPool(p *plan) *bufferPool {
	bp := &bufferPool{bs: int(p.bs)}
	if p.workload != "nop" {
		bp.mem = alignedBuffer(2 * p.qd * int(p.bs))
	}
	return bp
}

// slot returns the read and write buffers of in-flight slot i.
func (bp *bufferPool) slot(p *plan, i int) (rbuf, wbuf []byte) {
	mem, base := bp.mem, 2*i*bp.bs
	if bp.fixed != nil {
		// fixedBufSize sized buffer i for exactly the halves used below.
		mem, base = bp.fixed.Buf(i), 0
	}
	if mem == nil {
		return nil, nil
	}
	if p.needsReadBuf() {
		rbuf = mem[base : base+bp.bs : base+bp.bs]
		base += bp.bs
	}
	if p.needsWriteBuf() {
		wbuf = mem[base : base+bp.bs : base+bp.bs]
		copy(wbuf, p.pattern)
	}
	return rbuf, wbuf
}

// runBlocking drives the plan with qd goroutines each issuing one blocking
// op at a time: how most Go code does I/O. Each goroutine keeps its own
// histogram so that recording takes no lock; they are merged at the end.
// Goroutine i uses bp's slot i and the opFunc mk(i) returns.
func (p *plan) runBlocking(ctx context.Context, e *env, label string, bp *bufferPool, mk func(slot int) opFunc) (*measured, error) {
	ws := make([]worker, p.qd)
	dos := make([]opFunc, p.qd)
	for i := range ws {
		ws[i].rng = newRNG(p.seed, i)
		ws[i].rbuf, ws[i].wbuf = bp.slot(p, i)
		ws[i].hist = newHist()
		dos[i] = mk(i)
	}
	m := p.runGoroutines(ctx, e, label, len(ws), func(i int) { ws[i].loop(p, dos[i]) })
	for i := range ws {
		if err := m.merge(&ws[i].tally); err != nil {
			return nil, err
		}
	}
	return m, nil
}

// runGoroutines runs loop(0) to loop(n-1) on goroutines of their own, each
// until the plan ends, and measures them from the first start to the last
// return. The caller merges what the loops counted into the result.
func (p *plan) runGoroutines(ctx context.Context, e *env, label string, n int, loop func(i int)) *measured {
	stopBar := e.startProgress(label, p)
	defer stopBar()
	var wg sync.WaitGroup
	mt := startMeter()
	for i := range n {
		wg.Add(1)
		go func() {
			defer wg.Done()
			loop(i)
		}()
	}
	p.waitEnd(ctx, e.cfg.duration, func() { wg.Wait() })
	m := &measured{hist: newHist()}
	mt.stop(m)
	return m
}

// waitEnd returns once wait has returned, having set p.stop after d (when
// the run is bounded by time) or when ctx ends.
func (p *plan) waitEnd(ctx context.Context, d time.Duration, wait func()) {
	done := make(chan struct{})
	go func() {
		wait()
		close(done)
	}()
	var timeout <-chan time.Time
	if p.ops == 0 {
		t := time.NewTimer(d)
		defer t.Stop()
		timeout = t.C
	}
	select {
	case <-done:
		return
	case <-timeout:
	case <-ctx.Done():
	}
	p.stop.Store(true)
	<-done
}

func (w *worker) loop(p *plan, do opFunc) {
	// One clock read per sampled op: an op's end is the next one's start, so
	// the claim and the offset draw (tens of ns) count in the next op's latency.
	t := now()
	timed := true // t is the current op's start
	for count := uint64(1); ; count++ {
		n, ok := p.claim()
		if !ok {
			return
		}
		sampled := count&p.sampleMask == 0
		if sampled && !timed {
			t = now()
		}
		k := p.kind(&w.rng)
		off := p.offset(n, &w.rng)
		buf, writes := w.rbuf, k == opWrite || k == opWriteSync
		if writes {
			buf = w.wbuf
			stamp(buf, off, p.tag)
		}
		if err := do(k, buf, off); err != nil {
			w.err = err
			p.stop.Store(true)
			return
		}
		if timed = sampled; sampled {
			end := now()
			record(w.hist, end-t)
			t = end
		}
		w.ops++
		if writes {
			w.smp.add(off)
		}
	}
}
