package runtime

import (
	"math/rand/v2"

	"github.com/ringwake/ringwake/poller"
)

// Choosing a shard for a request, with no cache line that every submitter
// writes: a sync.Pool keeps one shardHint per P in effect (its per-P
// private slot, reached without an atomic read-modify-write). Outside
// callbacks a P deals its requests to the shards in turn, so even one
// goroutine's submissions spread; while a shard's reaper runs callbacks it
// marks its P as its own, so a callback's Submit stays on its shard, where
// its completion comes back to the same reaper without waking another.

// shardHint is a P's shard state: next in turn, and the shard whose
// callbacks run on the P now (plus one; 0: none).
type shardHint struct{ next, reaping uint32 }

// routing is how a sharded Ring picks a shard; routeHint outside benchmarks.
type routing uint8

const (
	routeHint       routing = iota // the P's hint (see above)
	routeRoundRobin                // a shared atomic counter: one cache line all submitters write
	routeRandom                    // math/rand/v2's per-thread generator, callbacks included
)

// pick is the shard for the next request.
func (r *Ring) pick() *poller.Poller {
	if r.shards == nil {
		return r.p
	}
	return r.pickShard()
}

func (r *Ring) pickShard() *poller.Poller {
	n := uint32(len(r.shards))
	switch r.route {
	case routeRoundRobin:
		return r.shards[r.rr.Add(1)%n]
	case routeRandom:
		return r.shards[rand.Uint32N(n)]
	}
	h := r.hints.Get().(*shardHint)
	i := h.reaping - 1
	if h.reaping == 0 {
		h.next++
		if h.next >= n {
			h.next = 0
		}
		i = h.next
	}
	r.hints.Put(h)
	return r.shards[i]
}

// newHint starts a P with no hint (a new P, or after a GC emptied the pool)
// at the next shard in turn.
func (r *Ring) newHint() any {
	return &shardHint{next: r.nextHint.Add(1) % uint32(len(r.shards))}
}

// markP returns shard i's poller.Config.OnCallbacks: while its callbacks
// run, the P the reaper runs on submits to shard i. A reaper moved to
// another P mid-batch leaves a mark behind, which costs locality only: the
// next batch on that P replaces it.
func (r *Ring) markP(i int) func(bool) {
	return func(running bool) {
		h := r.hints.Get().(*shardHint)
		if running {
			h.reaping = uint32(i) + 1
		} else {
			h.reaping = 0
		}
		r.hints.Put(h)
	}
}

// cancelFd cancels every request on fd, on every shard.
func (r *Ring) cancelFd(fd int32) {
	for _, p := range r.shardList() {
		p.CancelFd(fd)
	}
}
