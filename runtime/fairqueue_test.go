package runtime

import (
	"fmt"
	"math/rand/v2"
	"testing"
)

// refFQ is the reference the fair queue is checked against: start-time fair
// queueing written as plainly as possible, with slices for queues, no
// wait queues, locks or channels. Each class keeps the finish tag of its
// last admitted request and the clock when it last became backlogged; its
// head starts at the larger of the two. A class's share of the capacity
// is computed afresh from the classes with requests queued or in flight.
type refFQ struct {
	capacity, inflight, v uint64
	classes               []refClass
	admitted              []int // ids, in admission order
}

type refClass struct {
	shares, lastF, actV uint64
	costIn              uint64
	queue               []refReq
}

type refReq struct {
	id   int
	cost uint64
}

func (r *refFQ) queued() int {
	n := 0
	for _, c := range r.classes {
		n += len(c.queue)
	}
	return n
}

// fits: within capacity, or alone, or k below its share of the capacity
// (k counts as active) with the total within twice the capacity.
func (r *refFQ) fits(k int, cost uint64) bool {
	if r.inflight == 0 || r.inflight+cost <= r.capacity {
		return true
	}
	var active uint64
	for j, c := range r.classes {
		if j == k || len(c.queue) > 0 || c.costIn > 0 {
			active += c.shares
		}
	}
	share := r.capacity * r.classes[k].shares / active
	return r.inflight+cost <= 2*r.capacity && r.classes[k].costIn+cost <= share
}

func (r *refFQ) start(k int) uint64 { return max(r.classes[k].lastF, r.classes[k].actV) }

func (r *refFQ) admit(k int, q refReq) {
	s := r.start(k)
	r.v = s
	r.classes[k].lastF = s + q.cost*vscale/r.classes[k].shares
	r.inflight += q.cost
	r.classes[k].costIn += q.cost
	r.admitted = append(r.admitted, q.id)
}

func (r *refFQ) arrive(k int, q refReq) {
	c := &r.classes[k]
	if len(c.queue) == 0 {
		c.actV = max(c.actV, r.v)
	}
	if r.queued() == 0 && r.fits(k, q.cost) {
		r.admit(k, q)
		return
	}
	c.queue = append(c.queue, q)
	r.dispatch()
}

func (r *refFQ) dispatch() {
	for {
		best := -1
		for k := range r.classes {
			if len(r.classes[k].queue) > 0 && (best < 0 || r.start(k) < r.start(best)) {
				best = k
			}
		}
		if best < 0 || !r.fits(best, r.classes[best].queue[0].cost) {
			return
		}
		q := r.classes[best].queue[0]
		r.classes[best].queue = r.classes[best].queue[1:]
		r.admit(best, q)
	}
}

func (r *refFQ) complete(k int, cost uint64) {
	r.inflight -= cost
	r.classes[k].costIn -= cost
	r.dispatch()
}

func (r *refFQ) cancel(id int) {
	for k := range r.classes {
		for i, q := range r.classes[k].queue {
			if q.id == id {
				r.classes[k].queue = append(r.classes[k].queue[:i:i], r.classes[k].queue[i+1:]...)
				r.dispatch()
				return
			}
		}
	}
}

// TestFairQueueModel drives the fair queue and the reference with the same
// random arrivals, completions and cancellations (no goroutines: the fair
// queue's wake-ups land in the waiters' channels) and checks after every
// step that both admitted the same requests in the same order, and that
// the cost in flight stayed within twice the capacity unless a request ran
// alone.
func TestFairQueueModel(t *testing.T) {
	for seed := range uint64(200) {
		t.Run(fmt.Sprint(seed), func(t *testing.T) { fairQueueModel(t, seed) })
	}
}

func fairQueueModel(t *testing.T, seed uint64) {
	rng := rand.New(rand.NewPCG(seed, 42))
	capacity := uint64(1 + rng.IntN(1000))
	fq := newFairQueue(capacity)
	ref := &refFQ{capacity: capacity}
	nclass := 1 + rng.IntN(6)
	classes := make([]*fqClass, nclass)
	for k := range classes {
		shares := uint32(1 + rng.IntN(1000))
		classes[k] = fq.addClass(shares)
		ref.classes = append(ref.classes, refClass{shares: uint64(shares)})
	}
	type req struct {
		id, k    int
		cost     uint64
		w        *fqWaiter // nil once admitted at arrival
		admitted bool
	}
	var all []*req
	var queued, inflight []*req
	var order []int // the fair queue's admissions
	collect := func() {
		// A dispatch admits in order of its walk; recover that order from
		// the reference's, and check the set is the same.
		still := queued[:0]
		got := map[int]bool{}
		for _, q := range queued {
			select {
			case <-q.w.ch:
				if !q.w.admitted {
					t.Fatalf("req %d woken but not admitted", q.id)
				}
				q.admitted = true
				got[q.id] = true
				inflight = append(inflight, q)
			default:
				still = append(still, q)
			}
		}
		queued = still
		for _, id := range ref.admitted[len(order):] {
			if !got[id] {
				t.Fatalf("reference admitted %d, the fair queue did not (admitted %v)", id, got)
			}
			delete(got, id)
			order = append(order, id)
		}
		if len(got) > 0 {
			t.Fatalf("fair queue admitted %v, the reference did not", got)
		}
		if fq.inflight != ref.inflight {
			t.Fatalf("in flight %d, reference %d", fq.inflight, ref.inflight)
		}
		if fq.inflight > 2*capacity && len(inflight) > 1 {
			t.Fatalf("in flight %d > twice the capacity %d with %d requests", fq.inflight, capacity, len(inflight))
		}
		if len(queued) > 0 && len(inflight) == 0 {
			t.Fatalf("not work-conserving: %d queued, none in flight", len(queued))
		}
		if fq.waiting != len(queued) {
			t.Fatalf("waiting %d, queued %d", fq.waiting, len(queued))
		}
	}
	for step := range 400 {
		switch op := rng.IntN(10); {
		case op < 5: // arrival
			k := rng.IntN(nclass)
			cost := uint64(1 + rng.IntN(int(capacity)*3/2+1))
			q := &req{id: len(all), k: k, cost: cost}
			all = append(all, q)
			w := fqWaiterPool.Get().(*fqWaiter)
			w.cost = cost
			now, err := fq.arrive(classes[k], w)
			if err != nil {
				t.Fatal(err)
			}
			ref.arrive(k, refReq{id: q.id, cost: cost})
			if now {
				q.admitted = true
				inflight = append(inflight, q)
				if ref.admitted[len(ref.admitted)-1] != q.id {
					t.Fatalf("step %d: req %d admitted at once, the reference queued it", step, q.id)
				}
				order = append(order, q.id)
			} else {
				q.w = w
				queued = append(queued, q)
			}
		case op < 8 && len(inflight) > 0: // completion
			i := rng.IntN(len(inflight))
			q := inflight[i]
			inflight = append(inflight[:i], inflight[i+1:]...)
			fq.release(classes[q.k], q.cost)
			ref.complete(q.k, q.cost)
		case len(queued) > 0: // cancellation of a queued request
			i := rng.IntN(len(queued))
			q := queued[i]
			if fq.cancel(q.w) {
				t.Fatalf("step %d: cancel of req %d found it admitted", step, q.id)
			}
			queued = append(queued[:i], queued[i+1:]...)
			ref.cancel(q.id)
		}
		collect()
	}
	// Close wakes every queued request exactly once, closed.
	fq.close()
	for _, q := range queued {
		select {
		case <-q.w.ch:
			if !q.w.closed || q.w.admitted {
				t.Fatalf("req %d: closed %v admitted %v", q.id, q.w.closed, q.w.admitted)
			}
		default:
			t.Fatalf("req %d not woken by close", q.id)
		}
		if len(q.w.ch) != 0 {
			t.Fatalf("req %d woken twice", q.id)
		}
	}
	if _, err := fq.arrive(classes[0], &fqWaiter{cost: 1}); err != ErrClosed {
		t.Fatalf("arrive after close: %v, want ErrClosed", err)
	}
}

// TestFairQueueShares checks the property the reference encodes: classes
// kept backlogged receive device cost in proportion to their shares, and
// FIFO order within a class.
func TestFairQueueShares(t *testing.T) {
	fq := newFairQueue(100)
	shares := []uint32{1000, 50, 300, 100}
	classes := make([]*fqClass, len(shares))
	for k, s := range shares {
		classes[k] = fq.addClass(s)
	}
	got := make([]uint64, len(shares))
	var lastSeq [4]int
	type item struct {
		k, seq int
		cost   uint64
		w      *fqWaiter
	}
	var queued, running []item
	seq := make([]int, len(shares))
	rng := rand.New(rand.NewPCG(1, 2))
	refill := func() {
		// Keep every class backlogged with 4 requests of varied cost.
		for k := range classes {
			for classes[k].q.Len() < 4 {
				cost := uint64(5 + rng.IntN(50))
				w := &fqWaiter{ch: make(chan struct{}, 1), cost: cost}
				w.e.Func, w.e.Private = fqWakeFunc, w
				seq[k]++
				if now, _ := fq.arrive(classes[k], w); now {
					got[k] += cost
					lastSeq[k] = seq[k]
					running = append(running, item{k, seq[k], cost, w})
					continue
				}
				queued = append(queued, item{k, seq[k], cost, w})
			}
		}
	}
	for range 20000 {
		refill()
		still := queued[:0]
		for _, it := range queued {
			if len(it.w.ch) > 0 {
				<-it.w.ch
				if it.seq <= lastSeq[it.k] {
					t.Fatalf("class %d admitted %d after %d", it.k, it.seq, lastSeq[it.k])
				}
				lastSeq[it.k] = it.seq
				got[it.k] += it.cost
				running = append(running, it)
			} else {
				still = append(still, it)
			}
		}
		queued = still
		if len(running) > 0 {
			it := running[0]
			running = running[1:]
			fq.release(classes[it.k], it.cost)
		}
	}
	var total, totalShares uint64
	for k := range got {
		total += got[k]
		totalShares += uint64(shares[k])
	}
	for k := range got {
		want := float64(total) * float64(shares[k]) / float64(totalShares)
		if r := float64(got[k]) / want; r < 0.95 || r > 1.05 {
			t.Errorf("class %d (shares %d): %d of %d cost, %.3fx its share", k, shares[k], got[k], total, r)
		}
	}
	fq.close()
}

// TestFairQueueRebase: when the clock passes vrebase every tag moves back
// by the same amount, and admissions go on in the same order and shares.
func TestFairQueueRebase(t *testing.T) {
	fq := newFairQueue(1)
	classes := []*fqClass{fq.addClass(300), fq.addClass(100)}
	fq.vnow = vrebase - 10
	for _, c := range classes {
		c.vtime = fq.vnow
	}
	// One request in flight at a time (each costs the capacity), both
	// classes kept backlogged.
	running := &fqWaiter{cost: 1000}
	if now, _ := fq.arrive(classes[0], running); !now {
		t.Fatal("first request not admitted at once")
	}
	var got [2]int
	var queued []*fqWaiter
	rebased := false
	for range 400 {
		for _, c := range classes {
			for c.q.Len() < 2 {
				w := &fqWaiter{ch: make(chan struct{}, 1), cost: 1000}
				w.e.Func, w.e.Private = fqWakeFunc, w
				if now, _ := fq.arrive(c, w); now {
					t.Fatal("admitted past the capacity")
				}
				queued = append(queued, w)
			}
		}
		fq.release(running.c, running.cost)
		running = nil
		still := queued[:0]
		for _, w := range queued {
			if len(w.ch) == 0 {
				still = append(still, w)
				continue
			}
			<-w.ch
			if running != nil {
				t.Fatal("two admitted with capacity for one")
			}
			running = w
			if w.c == classes[0] {
				got[0]++
			} else {
				got[1]++
			}
		}
		queued = still
		if running == nil {
			t.Fatal("nothing admitted after a release")
		}
		if fq.vnow > vrebase {
			t.Fatalf("clock %d past vrebase", fq.vnow)
		}
		rebased = rebased || fq.vnow < vrebase/2
	}
	if !rebased {
		t.Fatal("the clock never moved back")
	}
	if got[0] < 3*got[1]-6 || got[0] > 3*got[1]+6 {
		t.Fatalf("admissions %v, want 3:1 across the rebase", got)
	}
	fq.close()
}

// TestFairQueueShareOfCapacity: a class with many shares is admitted past
// the capacity that a class with few holds, up to its share of it (here
// 1000/1050 of 100 = 95), while the class with few waits for the capacity.
func TestFairQueueShareOfCapacity(t *testing.T) {
	fq := newFairQueue(100)
	fg, bg := fq.addClass(1000), fq.addClass(50)
	arrive := func(c *fqClass, cost uint64) *fqWaiter {
		w := &fqWaiter{ch: make(chan struct{}, 1), cost: cost}
		w.e.Func, w.e.Private = fqWakeFunc, w
		if now, err := fq.arrive(c, w); err != nil {
			t.Fatal(err)
		} else if now {
			w.admitted = true
			w.ch <- struct{}{}
		}
		return w
	}
	admitted := func(w *fqWaiter) bool { return len(w.ch) > 0 && w.admitted }
	b1, b2, b3 := arrive(bg, 40), arrive(bg, 40), arrive(bg, 40)
	if !admitted(b1) || !admitted(b2) || admitted(b3) {
		t.Fatal("bg: want two of 40 admitted within capacity 100, the third queued")
	}
	f1, f2, f3, f4 := arrive(fg, 30), arrive(fg, 30), arrive(fg, 30), arrive(fg, 30)
	if !admitted(f1) || !admitted(f2) || !admitted(f3) {
		t.Fatalf("fg below its share (95) waited for bg's capacity: in flight %d", fq.inflight)
	}
	if admitted(f4) || fq.inflight != 170 {
		t.Fatalf("fg past its share: 4th admitted %v, in flight %d, want 170", admitted(f4), fq.inflight)
	}
	fq.release(bg, 40) // 130 in flight: fg's head would take it to 120 of its 95
	if admitted(f4) || admitted(b3) {
		t.Fatal("admitted past the capacity and past the share")
	}
	fq.release(fg, 30) // fg 60 in flight: its head fits its share again
	if !admitted(f4) || admitted(b3) {
		t.Fatalf("after a fg completion: fg head admitted %v, bg head %v; want true, false", admitted(f4), admitted(b3))
	}
	fq.release(fg, 30)
	fq.release(fg, 30)
	fq.release(fg, 30) // 40 in flight: bg's head fits the capacity
	if !admitted(b3) {
		t.Fatal("bg's head not admitted within capacity")
	}
	if fq.active != 50 {
		t.Fatalf("active shares %d with only bg in flight, want 50", fq.active)
	}
	fq.close()
}

// TestFairQueueReleaseReportsWake: release reports whether its dispatch
// admitted a blocking caller (the caller then yields so that one submits
// at once), and not when it admitted nothing or only a callback request,
// which the releaser submits itself.
func TestFairQueueReleaseReportsWake(t *testing.T) {
	fq := newFairQueue(10)
	c := fq.addClass(100)
	queue := func(sub *classSub) *fqWaiter {
		w := &fqWaiter{ch: make(chan struct{}, 1), cost: 10, sub: sub}
		w.e.Func, w.e.Private = fqWakeFunc, w
		if now, err := fq.arrive(c, w); err != nil || now {
			t.Fatalf("arrive: admitted at once %v, err %v; want queued", now, err)
		}
		return w
	}
	if now, err := fq.arrive(c, &fqWaiter{cost: 10}); !now || err != nil {
		t.Fatalf("first arrival: admitted %v, err %v", now, err)
	}
	cb := queue(&classSub{})
	blk := queue(nil)
	if fq.release(c, 10) {
		t.Fatal("release that admitted a callback request reported a blocking caller woken")
	}
	if got := fq.takeReady(); len(got) != 1 || got[0] != cb || !cb.admitted {
		t.Fatalf("ready %v, want the callback request admitted", got)
	}
	if !fq.release(c, 10) {
		t.Fatal("release that admitted a blocking caller did not report it")
	}
	if len(blk.ch) != 1 || !blk.admitted {
		t.Fatal("blocking caller not woken admitted")
	}
	if fq.release(c, 10) {
		t.Fatal("release that admitted nothing reported a wake-up")
	}
	fq.close()
}
