// The settle stage: the commit delay after an fdatasync. Invariant: a
// settle only delays I/O, never drops it: it ends when the woken crowd is
// back, when the first appender arrives after half the recent fdatasync
// latency, or by the sweep (a Go timer), whichever is first.

package wal

import "time"

// Settling is the pipeline's commit delay. With one fdatasync in flight, a
// closed-loop crowd of appenders splits in two halves that alternate: the
// half an fdatasync wakes re-appends while the next fdatasync, started at
// once for the other half, is already in flight, so every fdatasync covers
// only half of them. After an fdatasync completes and its broadcast woke W
// appenders, the pipeline starts no new I/O until W more records arrived (the
// appender that brings the W-th submits the write and its linked fdatasync)
// or until half the recent fdatasync latency has passed, whichever is first:
// the first appender to arrive after that time ends the settle and commits,
// and the sweep (below) ends it should nobody arrive.
// W counts the appender that made the fdatasync inline (inline.go), which
// comes back too: it is a member of the generation it committed
// (durable.go). Where the woken do not come back (an open
// loop), a settle times out with fewer than half of them back, and settling
// backs off: it is skipped for 1, 2, 4, ... up to 64 fdatasyncs, so such
// workloads pay the delay on at most one fdatasync in 64.

const (
	settleMin        = 10 * time.Microsecond
	settleMax        = time.Millisecond
	settleMaxBackoff = 64
)

// startSettleLocked decides, when an fdatasync has completed, whether to
// settle before the next, and begins the settle if so.
func (l *Log) startSettleLocked() bool {
	if d := time.Since(l.syncStart); l.syncEWMA == 0 {
		l.syncEWMA = d
	} else {
		l.syncEWMA += (d - l.syncEWMA) / 8
	}
	if l.closing || l.opts.noSettle {
		return false
	}
	if l.settleSkip > 0 {
		l.settleSkip--
		return false
	}
	l.settling = true
	l.settleEpoch++
	l.settleSeen, l.settleTarget = 0, 0
	return true
}

// settleArm runs once the broadcast woke woken appenders: it sets the
// target, or ends the settle at once if there is nobody to wait for, and
// otherwise sets its deadline for the sweep. When more records already wait
// for a commit than the fdatasync woke appenders (a crowd that takes longer
// to come back than an fdatasync takes), waiting for the woken would leave
// the device idle under them: the first appender to arrive commits them
// instead. Records that arrived before the target
// was set wait for the next arrival too: ending the settle here would leave
// the commit to this goroutine, which is a ring completion or an appender
// that already has its record durable.
func (l *Log) settleArm(epoch uint64, woken int) {
	l.mu.Lock()
	if !l.settling || l.settleEpoch != epoch {
		l.mu.Unlock()
		return
	}
	target := woken
	pending := int(l.nextLSN-1-l.durable.Load()) - l.settleSeen
	if woken > 0 && pending >= woken {
		target = 1
	}
	if woken == 0 || l.closing {
		l.endSettleLocked(true)
		l.finishLocked(wakes{})
		return
	}
	l.settleTarget = target
	d := settleDelay(l.syncEWMA, woken, pending)
	if l.settleFor > 0 {
		d = l.settleFor
	}
	l.settleDeadline = time.Now().Add(d)
	l.sweepWanted = true
	if !l.sweepArmed {
		l.armSweepLocked()
	}
	l.mu.Unlock()
}

// settleDelay is how long a settle waits for the woken crowd at most: half
// the recent fdatasync latency, shortened in proportion to the records that
// already wait when they are a quarter of the woken or more. Those missed
// the commit that just completed (a crowd that takes longer to come back
// than an fdatasync takes, as 256 appenders on 2 vCPUs): they have waited
// a whole cycle already, and the settle adds to their wait, the p99. Below
// a quarter (16-64 appenders, mostly) the delay stays whole: a shortened one
// there ends settles before the crowd is back.
func settleDelay(ewma time.Duration, woken, pending int) time.Duration {
	d := min(max(ewma/2, settleMin), settleMax)
	if 4*pending >= woken && pending < woken {
		d = max(d*time.Duration(woken-pending)/time.Duration(woken), settleMin)
	}
	return d
}

// The sweep is what ends a settle nobody comes back for. A closed-loop
// crowd never needs it: its settles end by arrivals (the target, or the
// first arrival past the deadline); at 16-256 appenders a timeout ends
// fewer than 1 settle in 200. A timeout per settle through the ring cost
// every commit a submission that wakes the poller and a completion that
// wakes it again. So one Go timer sweeps instead, every sweepPeriod while
// settles keep beginning, and stops when they stop: a settle found overdue
// at two firings in a row is ended, at most 2*sweepPeriod after its
// deadline. (docs/wal.md has the measurements, and those of a Go timer
// reset per settle and of one ring timeout shared by the settles, which
// both lost at some count.)
const sweepPeriod = time.Millisecond

// armSweepLocked starts the sweep's timer.
func (l *Log) armSweepLocked() {
	l.sweepArmed, l.sweepWanted = true, false
	if l.sweep == nil {
		l.sweep = time.AfterFunc(sweepPeriod, l.settleSweep)
		return
	}
	l.sweep.Reset(sweepPeriod)
}

// settleSweep is the sweep's timer firing: it ends a settle it found
// overdue at its last firing too, and fires again while a settle is on or
// began since it last fired.
func (l *Log) settleSweep() {
	l.mu.Lock()
	l.sweepArmed = false
	if l.closing {
		l.cond.Broadcast() // Close waits for a sweep already firing
		l.mu.Unlock()
		return
	}
	if l.sweepWanted || l.settling {
		l.armSweepLocked()
	}
	if l.settling && l.settleTarget > 0 && time.Until(l.settleDeadline) < 0 {
		if l.sweepLook == l.settleEpoch {
			// Overdue at the last firing too: nobody is coming to end it.
			l.endSettleLocked(2*l.settleSeen >= l.settleTarget)
			l.finishLocked(wakes{})
			return
		}
		// Overdue by less than a period, maybe by microseconds (a settle
		// shortened for stragglers): an arrival ends it unless nobody
		// comes. Ended here, with few of the crowd back yet, it would
		// count as a miss and hold the next settles back.
		l.sweepLook = l.settleEpoch
	}
	l.mu.Unlock()
}

// stopSweepLocked is Close's: once it returns, no sweep runs. l.mu is held.
func (l *Log) stopSweepLocked() {
	if l.sweepArmed && l.sweep.Stop() {
		l.sweepArmed = false
	}
	for l.sweepArmed {
		l.cond.Wait() // it fired: it finds closing set
	}
}

// endSettleLocked ends the settle; a settle most of the crowd did not come
// back for makes the next ones rarer.
func (l *Log) endSettleLocked(useful bool) {
	l.settling = false
	if useful {
		l.settleBackoff = 0
		return
	}
	l.settleBackoff = min(max(1, 2*l.settleBackoff), settleMaxBackoff)
	l.settleSkip = l.settleBackoff
	l.stats.settleMisses.Add(1)
}
