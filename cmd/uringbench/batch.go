package main

import (
	"context"
	"fmt"

	ringwake "github.com/ringwake/ringwake/runtime"
	"github.com/ringwake/ringwake/sqe"
)

// batchSize is how many ops one batch-mode goroutine sends per Ring.Do: a
// multi-get's or a B-tree level's worth, as a storage engine would.
const batchSize = 32

// batchGroups splits qd in-flight requests into the batch-mode goroutines'
// batch sizes: as many batches of batchSize as fit, then the rest, so that
// qd requests are in flight whatever the depth.
func batchGroups(qd int) []int {
	var gs []int
	for qd > 0 {
		n := min(qd, batchSize)
		gs = append(gs, n)
		qd -= n
	}
	return gs
}

// batcher is one batch-mode goroutine: it claims a batch of ops, runs them
// with one Ring.Do (one Ring.SubmitAndWait of NOPs for nop), and starts
// over. Op j of its batch is in-flight slot first+j: its buffers and random
// stream are that slot's, as in the other modes.
type batcher struct {
	tally
	batch []ringwake.Op
	ss    []sqe.SQE // nop: the batch's NOPs
	res   []int32
	rngs  []rng
	rbufs [][]byte
	wbufs [][]byte
}

// runBatch drives the plan with batchGroups(qd) goroutines, each waiting for
// a whole batch before it sends the next: how a storage engine fetches a
// set of blocks it needs together. An op's latency is its batch's, from the
// call to its return.
func (p *plan) runBatch(ctx context.Context, e *env, label string, rio ringIO) (*measured, error) {
	if rio.fb != nil || rio.ff != nil {
		return nil, skipf("batch mode: Ring.Do takes plain descriptors and buffers, not -fixedbufs or -registerfiles")
	}
	if p.workload == "fsync" {
		return nil, skipf("batch mode: n/a for fsync (Ring.Do runs reads and writes)")
	}
	gs := batchGroups(p.qd)
	bp := newBufferPool(p)
	bs := make([]batcher, len(gs))
	slot := 0
	for g, n := range gs {
		b := &bs[g]
		b.hist = newHist()
		b.batch = make([]ringwake.Op, n)
		b.rngs = make([]rng, n)
		b.rbufs, b.wbufs = make([][]byte, n), make([][]byte, n)
		if p.workload == "nop" {
			b.ss, b.res = make([]sqe.SQE, n), make([]int32, n)
			for j := range b.ss {
				b.ss[j].PrepNop()
			}
		}
		for j := range n {
			b.rngs[j] = newRNG(p.seed, slot)
			b.rbufs[j], b.wbufs[j] = bp.slot(p, slot)
			b.batch[j].Fd = rio.fd
			slot++
		}
	}
	e.verbosef("%s: %d goroutines, batches of %v ops per Ring.Do%s", label, len(gs), gs,
		map[bool]string{true: " (nop: Ring.SubmitAndWait of NOPs)", false: ""}[p.workload == "nop"])
	m := p.runGoroutines(ctx, e, label, len(bs), func(i int) { bs[i].loop(p, rio.r) })
	for i := range bs {
		if err := m.merge(&bs[i].tally); err != nil {
			return nil, err
		}
	}
	return m, nil
}

func (b *batcher) loop(p *plan, r *ringwake.Ring) {
	ctx := context.Background() // as in block mode: the plan's stop flag ends the run
	for {
		n := 0
		for n < len(b.batch) {
			seq, ok := p.claim()
			if !ok {
				break
			}
			if b.ss == nil {
				b.prep(p, n, seq)
			}
			n++
		}
		if n == 0 {
			return
		}
		t := now()
		if err := b.run(ctx, r, n); err != nil {
			b.err = err
			p.stop.Store(true)
			return
		}
		lat := min(max(now()-t, histMin), histMax)
		// One histogram entry per op, all at the batch's latency.
		if err := b.hist.RecordValues(lat, int64(n)); err != nil {
			b.err = err
			p.stop.Store(true)
			return
		}
		b.ops += int64(n)
		for j := range n {
			if b.batch[j].Write {
				b.smp.add(b.batch[j].Off)
			}
		}
	}
}

// prep fills op j of the batch for op number seq.
func (b *batcher) prep(p *plan, j int, seq int64) {
	op := &b.batch[j]
	k := p.kind(&b.rngs[j])
	op.Off = p.offset(seq, &b.rngs[j])
	op.Write = k != opRead
	op.Buf = b.rbufs[j]
	if op.Write {
		op.Buf = b.wbufs[j]
		stamp(op.Buf, op.Off, p.tag)
	}
}

// run sends the batch's first n ops and checks every result, short
// transfers included.
func (b *batcher) run(ctx context.Context, r *ringwake.Ring, n int) error {
	if b.ss != nil {
		if err := r.SubmitAndWait(ctx, b.ss[:n], b.res[:n]); err != nil {
			return err
		}
		for j, res := range b.res[:n] {
			if res != 0 {
				return fmt.Errorf("nop %d of a batch: result %d", j, res)
			}
		}
		return nil
	}
	if err := r.Do(ctx, b.batch[:n]); err != nil {
		return err
	}
	for j := range n {
		if op := &b.batch[j]; op.N != len(op.Buf) {
			return fmt.Errorf("short %s: %d of %d bytes at %d", opName(op.Write), op.N, len(op.Buf), op.Off)
		}
	}
	return nil
}

func opName(write bool) string {
	if write {
		return "write"
	}
	return "read"
}
