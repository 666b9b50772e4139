package runtime

import (
	"math/rand/v2"
	"sync/atomic"
	"unsafe"

	"github.com/ringwake/ringwake/poller"
)

// Choosing a shard for a request, with no cache line that every submitter
// writes.
//
// A callback's Submit goes to the shard whose callbacks are running, where
// its completion comes back to the same reaper without waking another. The
// reaper is told by its stack: while a shard runs callbacks its reaper
// publishes an address on its own goroutine's stack (shardReaper), and a
// Submit made from a callback has its frames a little below that address,
// on the same stack, whichever P or thread the reaper has moved to
// meanwhile. Reading the published addresses costs no write and, on the
// reaper's own shard, no cache miss: each changes once per batch of
// callbacks. Another goroutine whose stack happens to lie within the window
// is routed to that shard too, which is harmless: the routing is a
// preference, never a guarantee (the Group guard in the poller identifies
// the reaper exactly where it matters). A reaper whose stack was copied to
// grow mid-batch is not recognised until its next batch, likewise harmless.
//
// Everything else goes by the P it runs on: a sync.Pool keeps one
// shardHint per P in effect (its per-P private slot, reached without an
// atomic read-modify-write). A blocking call goes to its P's home shard
// (pick), so the callers on one P share one poller, which readies them
// where they ran, and a P's callers never pay for two pollers' spins: on 2
// vCPUs, blocking NOPs at 2 shards ran at 0.75x one shard dealt in turn,
// 1.16x by home shard (medians of 5 rounds). A callback submission from
// outside a reaper (pickSpread) is dealt in turn, so that one goroutine's
// chains spread over the shards.

// shardHint is a P's home shard and its next shard in turn.
type shardHint struct{ next, home uint32 }

// shardReaper is a shard's published stack address, on a cache line of its
// own so that one shard's batches do not invalidate another's.
type shardReaper struct {
	sp atomic.Uintptr // an address on the stack of the goroutine that reaps (or last reaped) its callbacks; 0 after an inline reaper's batch
	_  [cacheLine - 8]byte
}

const cacheLine = 64

// reaperWindow bounds how far below the published address a callback's
// Submit lies on the reaper's stack: the dispatch, the callback and its own
// calls take a few hundred bytes. A callback deeper than that is dealt like
// any other submission. A wider window would let more goroutines whose
// stacks lie just below a reaper's pass for it.
const reaperWindow = 4 << 10

// routing is how a sharded Ring picks a shard; routeHint outside benchmarks.
type routing uint8

const (
	routeHint       routing = iota // callbacks to their shard, else the P's home or turn (see above)
	routeRoundRobin                // a shared atomic counter: one cache line all submitters write
	routeRandom                    // math/rand/v2's per-thread generator, callbacks included
)

// pick is the shard for the next blocking request: a callback's goes to
// its reaper's shard, anything else to the P's home shard.
func (r *Ring) pick() *poller.Poller {
	if r.shards == nil {
		return r.p
	}
	return r.pickShard(false)
}

// pickSpread is pick for callback submissions: from outside a reaper they
// are dealt in turn, so one goroutine's chains spread over the shards.
func (r *Ring) pickSpread() *poller.Poller {
	if r.shards == nil {
		return r.p
	}
	return r.pickShard(true)
}

func (r *Ring) pickShard(spread bool) *poller.Poller {
	n := uint32(len(r.shards))
	switch r.route {
	case routeRoundRobin:
		return r.shards[r.rr.Add(1)%n]
	case routeRandom:
		return r.shards[rand.Uint32N(n)]
	}
	if i, ok := r.reaperShard(); ok {
		return r.shards[i]
	}
	h := r.hints.Get().(*shardHint)
	i := h.home
	if spread {
		if h.next++; h.next >= n {
			h.next = 0
		}
		i = h.next
	}
	r.hints.Put(h)
	return r.shards[i]
}

// reaperShard returns the shard whose callbacks the caller runs, if it
// recognises one (see above).
//
//go:noinline
func (r *Ring) reaperShard() (int, bool) {
	var probe byte
	sp := uintptr(unsafe.Pointer(&probe))
	best, dist := -1, uintptr(reaperWindow)
	for i := range r.reapers {
		// The closest address above: a reaper's own is a few hundred bytes
		// up its stack, and no other reaper's lies between (stacks do
		// not overlap), however the stacks sit in memory.
		if top := r.reapers[i].sp.Load(); top > sp && top-sp < dist {
			best, dist = i, top-sp
		}
	}
	return best, best >= 0
}

// newHint starts a P with no hint (a new P, or after a GC emptied the pool)
// at the next shard in turn.
func (r *Ring) newHint() any {
	i := r.nextHint.Add(1) % uint32(len(r.shards))
	return &shardHint{next: i, home: i}
}

// markReaper returns shard i's poller.Config.OnCallbacks, which runs on
// the reaping goroutine before each batch of callbacks, and after one run
// by a caller reaping inline: it publishes an address on that goroutine's
// stack, which the poller's own goroutine keeps between its batches.
func (r *Ring) markReaper(i int) func(bool) {
	return func(running bool) {
		if !running {
			r.reapers[i].sp.Store(0)
			return
		}
		var probe byte
		// The poller's goroutine publishes the same address batch after
		// batch: written only when it moves, the line stays shared.
		if sp := uintptr(unsafe.Pointer(&probe)); r.reapers[i].sp.Load() != sp {
			r.reapers[i].sp.Store(sp)
		}
	}
}

// cancelFd cancels every request on fd, on every shard.
func (r *Ring) cancelFd(fd int32) {
	for _, p := range r.shardList() {
		p.CancelFd(fd)
	}
}
