package runtime

import (
	"math/rand/v2"

	"github.com/ringwake/ringwake/poller"
)

// Choosing a shard for a request, with no cache line that every submitter
// writes: a sync.Pool keeps one shardHint per P in effect (its per-P
// private slot, reached without an atomic read-modify-write), and a shard's
// poller, before it runs callbacks, marks the P it runs on as its own. A
// callback's Submit therefore stays on its shard, and a goroutine on that P
// submits where its completion will be reaped on the same P.

// shardHint is the shard a P's submissions go to.
type shardHint struct{ i uint32 }

// routing is how a sharded Ring picks a shard; routeHint outside benchmarks.
type routing uint8

const (
	routeHint       routing = iota // the P's hint (see above)
	routeRoundRobin                // a shared atomic counter: one cache line all submitters write
	routeRandom                    // math/rand/v2, whose state is per-M
)

// pick is the shard for the next request.
func (r *Ring) pick() *poller.Poller {
	if r.shards == nil {
		return r.p
	}
	return r.pickShard()
}

func (r *Ring) pickShard() *poller.Poller {
	switch r.route {
	case routeRoundRobin:
		return r.shards[r.rr.Add(1)%uint32(len(r.shards))]
	case routeRandom:
		return r.shards[rand.Uint32N(uint32(len(r.shards)))]
	}
	h := r.hints.Get().(*shardHint)
	i := h.i
	r.hints.Put(h)
	return r.shards[i]
}

// newHint gives a P with no hint (a new P, or after a GC emptied the pool)
// the next shard in turn.
func (r *Ring) newHint() any {
	return &shardHint{i: r.nextHint.Add(1) % uint32(len(r.shards))}
}

// markP returns shard i's poller.Config.OnCallbacks: the P the reaper runs
// on now submits to shard i.
func (r *Ring) markP(i int) func() {
	return func() {
		h := r.hints.Get().(*shardHint)
		h.i = uint32(i)
		r.hints.Put(h)
	}
}

// cancelFd cancels every request on fd, on every shard.
func (r *Ring) cancelFd(fd int32) {
	for _, p := range r.shardList() {
		p.CancelFd(fd)
	}
}
