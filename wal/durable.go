// The wake stage: appenders wait on the commit queue for their LSN to be
// durable, and each fdatasync completion wakes the ones it covered with one
// broadcast. Invariant: a waiter queues before it checks, so no wake-up is
// lost, and returns success only for an LSN at or below durable.

package wal

import (
	"context"
	"sync"
	"sync/atomic"

	"github.com/ringwake/ringwake/waitqueue"
)

// wakes is who to wake once l.mu is released.
type wakes struct {
	commit   bool   // broadcast on commitQ with key
	key      uint64 // the durable LSN, or math.MaxUint64 on failure
	space    int    // exclusive waiters to wake on spaceQ (one per freed buffer)
	spaceAll bool   // wake every space waiter (failure)
}

func (l *Log) wake(wk wakes) (woken int) {
	if wk.commit {
		// The walk only collects the waiters it takes off the queue
		// (commitWake); their wake-ups are sent once the queue's lock is
		// released, so the woken, re-appending, can queue again at once.
		l.wakeMu.Lock()
		woken = l.commitQ.WakeUpAll(wk.key)
		var g *wakeGroup
		if len(l.woken) > 0 {
			g = &wakeGroup{ws: l.woken}
			l.woken = make([]*commitWaiter, 0, cap(g.ws))
		}
		l.wakeMu.Unlock()
		// Counted before any send: a woken appender may read Stats.
		l.stats.wakeups.Add(uint64(woken))
		if g != nil {
			l.stats.collected.Add(1)
			l.helping.Store(g)
			g.send()
			l.helping.CompareAndSwap(g, nil)
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

// wakeGroup is the waiters one broadcast took off the commit queue, to be
// sent their wake-ups. The waker sends them all; waiters it already woke
// help as they leave (helpWake), so the sends, and the woken goroutines'
// run queues, spread over the Ps instead of all falling on the waker's.
type wakeGroup struct {
	ws   []*commitWaiter
	next atomic.Int64 // index of the next waiter to send to
}

// send sends wake-ups until none is left to send.
func (g *wakeGroup) send() {
	for {
		i := int(g.next.Add(1) - 1)
		if i >= len(g.ws) {
			return
		}
		select {
		case g.ws[i].ch <- struct{}{}:
		default:
		}
	}
}

// helpWake lends a hand to a broadcast still sending.
func (l *Log) helpWake() {
	if g := l.helping.Load(); g != nil {
		g.send()
	}
}

// commitWaiter is an appender waiting for its record to be durable.
type commitWaiter struct {
	e   waitqueue.Entry
	lsn uint64
	ch  chan struct{}
	log *Log
}

// commitWake is the commit queue's wake function: the key is the durable LSN,
// and a waiter whose record it does not cover stays queued.
var commitWake = waitqueue.AutoRemove(func(e *waitqueue.Entry, key uint64) int {
	w := e.Private.(*commitWaiter)
	if key < w.lsn {
		return 0
	}
	// Under the queue's lock, within l.wake's wakeMu: l.woken is that
	// broadcast's.
	w.log.woken = append(w.log.woken, w)
	return 1
})

var waiterPool = sync.Pool{New: func() any {
	w := &commitWaiter{ch: make(chan struct{}, 1)}
	w.e.Func = commitWake
	w.e.Private = w
	return w
}}

// waitDurable sleeps until lsn is durable, the log fails, or ctx ends.
func (l *Log) waitDurable(ctx context.Context, lsn uint64) error {
	if l.durable.Load() >= lsn {
		return nil
	}
	w := waiterPool.Get().(*commitWaiter)
	w.lsn, w.log = lsn, l
	done := ctx.Done()
	var err error
	for {
		// prepare_to_wait: queue first, then check, so no wake-up is lost.
		l.commitQ.Add(&w.e)
		if l.durable.Load() >= lsn || l.failed.Load() {
			break
		}
		if done == nil {
			<-w.ch // a plain receive: cheaper than a select, in a crowd
		} else {
			select {
			case <-w.ch:
			case <-done:
				err = ctx.Err()
			}
			if err != nil {
				break
			}
		}
		// The wake-up took the entry off the queue: check before queueing
		// it again, as the wake-up almost always means the record is durable.
		if l.durable.Load() >= lsn || l.failed.Load() {
			break
		}
	}
	l.commitQ.FinishWait(&w.e)
	select {
	case <-w.ch:
	default:
	}
	w.log = nil
	waiterPool.Put(w)
	l.helpWake()
	switch {
	case l.durable.Load() >= lsn:
		// Durable before any failure: durable never moves once the log failed.
		return nil
	case l.failed.Load():
		l.mu.Lock()
		defer l.mu.Unlock()
		return l.err
	}
	return err
}
