// The wake stage: appenders wait for their LSN to be durable in
// generations, and each fdatasync completion wakes the generations it
// covered with one broadcast on the commit queue. Invariant: an appender
// joins its generation under l.mu in the same critical section that gives
// it its LSN, and the generation is on the commit queue before any write
// holding that LSN is prepared, so no wake-up is lost; a generation is
// woken only once its last LSN is durable (or the log failed).

package wal

import (
	"context"

	"github.com/ringwake/ringwake/waitqueue"
)

// wakes is who to wake once l.mu is released.
type wakes struct {
	commit   bool   // broadcast on commitQ with key
	key      uint64 // the durable LSN, or math.MaxUint64 on failure
	space    int    // exclusive waiters to wake on spaceQ (one per freed buffer)
	spaceAll bool   // wake every space waiter (failure)
}

// wake wakes whoever wk names and returns how many appenders the commit
// broadcast woke.
func (l *Log) wake(wk wakes) (woken int) {
	if wk.commit {
		// The walk only collects the generations it takes off the queue
		// (genWake); their channels are closed once the queue's lock is
		// released.
		l.wakeMu.Lock()
		l.commitQ.WakeUpAll(wk.key)
		gens := l.wokenGens
		l.wokenGens = nil
		l.wakeMu.Unlock()
		for _, g := range gens {
			woken += g.n
		}
		// Counted before any wake-up: a woken appender may read Stats.
		l.stats.wakeups.Add(uint64(woken))
		if len(gens) > 0 {
			l.stats.collected.Add(1)
		}
		for _, g := range gens {
			close(g.ch)
		}
	}
	switch {
	case wk.spaceAll:
		l.spaceQ.WakeUpAll(0)
	case wk.space > 0:
		l.spaceQ.WakeUpNr(wk.space, 0)
	}
	return woken
}

// commitGen is a generation of appenders: those whose records were
// appended between two writes being prepared. It waits on the commit queue
// as one entry keyed by its last LSN, and closing its channel wakes every
// member at once. An fdatasync covers a crowd's records in one or two
// generations, so the broadcast's walk visits those rather than an entry
// per appender, and the runtime readies the members in one loop (closing a
// channel) rather than one send each: at 64 and 256 appenders, the walk
// and the sends were most of the serial work between an fdatasync's
// return and the crowd's (docs/wal.md).
type commitGen struct {
	e      waitqueue.Entry
	ch     chan struct{} // closed when maxLSN is durable or the log failed
	maxLSN uint64        // the last member's LSN; final once queued
	n      int           // members, for the settle's count of the woken
	log    *Log
}

// genWake is the commit queue's wake function: the key is the durable LSN,
// and a generation whose last record it does not cover stays queued.
var genWake = waitqueue.AutoRemove(func(e *waitqueue.Entry, key uint64) int {
	g := e.Private.(*commitGen)
	if key < g.maxLSN {
		return 0
	}
	// Under the queue's lock, within l.wake's wakeMu: wokenGens is that
	// broadcast's.
	g.log.wokenGens = append(g.log.wokenGens, g)
	return 1
})

// joinGenLocked makes the appender of lsn, just reserved, a member of the
// open generation.
func (l *Log) joinGenLocked(lsn uint64) *commitGen {
	g := l.gen
	if g == nil {
		g = &commitGen{ch: make(chan struct{}), log: l}
		g.e.Func = genWake
		g.e.Private = g
		l.gen = g
	}
	g.maxLSN = lsn
	g.n++
	return g
}

// sealGenLocked queues the open generation on the commit queue. It runs
// before every write is prepared (the write may hold its records) and
// before a failure's broadcast (which must reach every member).
func (l *Log) sealGenLocked() {
	if g := l.gen; g != nil {
		l.gen = nil
		l.commitQ.Add(&g.e)
	}
}

// waitDurable sleeps until lsn, whose appender is a member of g, is
// durable, the log fails, or ctx ends.
func (l *Log) waitDurable(ctx context.Context, lsn uint64, g *commitGen) error {
	if l.durable.Load() < lsn && !l.failed.Load() {
		if done := ctx.Done(); done == nil {
			<-g.ch // a plain receive: cheaper than a select, in a crowd
		} else {
			select {
			case <-g.ch:
			case <-done:
				if l.durable.Load() < lsn && !l.failed.Load() {
					return ctx.Err()
				}
			}
		}
	}
	if l.durable.Load() >= lsn {
		// Durable before any failure: durable never moves once the log failed.
		return nil
	}
	// g was woken by a failure: the broadcast that covers lsn comes after
	// durable moved past it.
	l.mu.Lock()
	defer l.mu.Unlock()
	return l.err
}
