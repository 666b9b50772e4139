package runtime

// IOWQLimits reads back the io-wq limits of the calling OS thread through
// each shard's ring, changing nothing (a 0 leaves a limit as it is).
func IOWQLimits(r *Ring) ([][2]uint32, error) {
	var out [][2]uint32
	for _, p := range r.shardList() {
		l, err := p.Ring().SetIOWQMaxWorkers([2]uint32{})
		if err != nil {
			return nil, err
		}
		out = append(out, l)
	}
	return out, nil
}

// Routing modes for the benchmarks that compare them.
const (
	RouteHint       = int(routeHint)
	RouteRoundRobin = int(routeRoundRobin)
	RouteRandom     = int(routeRandom)
)

// SetRouting sets how r picks a shard; call it before any request.
func SetRouting(r *Ring, mode int) { r.route = routing(mode) }
