package waitqueue

import (
	"context"
	"runtime"
	"sync"
	"sync/atomic"
	"testing"
	"time"
)

// BenchmarkWakeOneLatency is a ping-pong between two goroutines: each op is
// one round trip, i.e. two wake-one hand-offs.
func BenchmarkWakeOneLatency(b *testing.B) {
	b.Run("impl=waitqueue", func(b *testing.B) {
		var qPing, qPong Queue
		var seq atomic.Int64
		ctx := context.Background()
		n := int64(b.N)
		done := make(chan struct{})
		go func() {
			defer close(done)
			for i := int64(1); i <= n; i++ {
				if err := qPong.WaitExclusive(ctx, func() bool { return seq.Load() >= 2*i-1 }); err != nil {
					b.Error(err)
					return
				}
				seq.Store(2 * i)
				qPing.WakeUp(0)
			}
		}()
		b.ResetTimer()
		for i := int64(1); i <= n; i++ {
			seq.Store(2*i - 1)
			qPong.WakeUp(0)
			if err := qPing.WaitExclusive(ctx, func() bool { return seq.Load() >= 2*i }); err != nil {
				b.Fatal(err)
			}
		}
		<-done
	})
	b.Run("impl=cond", func(b *testing.B) {
		var mu sync.Mutex
		ping, pong := sync.NewCond(&mu), sync.NewCond(&mu)
		seq := 0
		n := b.N
		done := make(chan struct{})
		go func() {
			defer close(done)
			mu.Lock()
			defer mu.Unlock()
			for i := 1; i <= n; i++ {
				for seq < 2*i-1 {
					pong.Wait()
				}
				seq = 2 * i
				ping.Signal()
			}
		}()
		b.ResetTimer()
		mu.Lock()
		for i := 1; i <= n; i++ {
			seq = 2*i - 1
			pong.Signal()
			for seq < 2*i {
				ping.Wait()
			}
		}
		mu.Unlock()
		<-done
	})
	b.Run("impl=chan", func(b *testing.B) {
		ping, pong := make(chan struct{}), make(chan struct{})
		n := b.N
		go func() {
			for range n {
				<-pong
				ping <- struct{}{}
			}
		}()
		b.ResetTimer()
		for range n {
			pong <- struct{}{}
			<-ping
		}
	})
}

// BenchmarkWakeOneThroughput: one producer releases b.N units one at a
// time, each followed by a wake-one; four consumers take them. Each op is
// one unit handed over.
func BenchmarkWakeOneThroughput(b *testing.B) {
	const consumers = 4
	b.Run("impl=waitqueue", func(b *testing.B) {
		var q Queue
		var sem semaphore
		var stop atomic.Bool
		var consumed atomic.Int64
		ctx := context.Background()
		cond := func() bool { return sem.take() || stop.Load() }
		var wg sync.WaitGroup
		for range consumers {
			wg.Go(func() {
				for {
					if err := q.WaitExclusive(ctx, cond); err != nil {
						b.Error(err)
						return
					}
					if stop.Load() {
						return
					}
					consumed.Add(1)
				}
			})
		}
		b.ResetTimer()
		for range b.N {
			sem.release(&q)
		}
		for consumed.Load() < int64(b.N) {
			runtime.Gosched()
		}
		b.StopTimer()
		stop.Store(true)
		q.WakeUpAll(0)
		wg.Wait()
	})
	b.Run("impl=cond", func(b *testing.B) {
		var mu sync.Mutex
		c := sync.NewCond(&mu)
		units, consumed := 0, 0
		stop := false
		var wg sync.WaitGroup
		for range consumers {
			wg.Go(func() {
				mu.Lock()
				defer mu.Unlock()
				for {
					for units == 0 && !stop {
						c.Wait()
					}
					if stop {
						return
					}
					units--
					consumed++
				}
			})
		}
		b.ResetTimer()
		for range b.N {
			mu.Lock()
			units++
			c.Signal()
			mu.Unlock()
		}
		for {
			mu.Lock()
			finished := consumed == b.N
			mu.Unlock()
			if finished {
				break
			}
			runtime.Gosched()
		}
		b.StopTimer()
		mu.Lock()
		stop = true
		c.Broadcast()
		mu.Unlock()
		wg.Wait()
	})
	b.Run("impl=chan", func(b *testing.B) {
		ch := make(chan struct{}, 128)
		var wg sync.WaitGroup
		var consumed atomic.Int64
		for range consumers {
			wg.Go(func() {
				for range ch {
					consumed.Add(1)
				}
			})
		}
		b.ResetTimer()
		for range b.N {
			ch <- struct{}{}
		}
		for consumed.Load() < int64(b.N) {
			runtime.Gosched()
		}
		b.StopTimer()
		close(ch)
		wg.Wait()
	})
}

const (
	herdSleepers = 1000
	herdWakes    = 10000
)

// BenchmarkThunderingHerd: 1,000 sleepers, 10,000 single wake-ups per op,
// each releasing one unit to a fully parked herd (see runHerd). futile/wake
// counts sleepers woken that found nothing; exclusive WakeUp must report 0,
// Broadcast 999. ns/wake includes the taker's hand-back to the waker.
func BenchmarkThunderingHerd(b *testing.B) {
	report := func(b *testing.B, elapsed time.Duration, futile int) {
		wakes := float64(b.N * herdWakes)
		b.ReportMetric(float64(elapsed.Nanoseconds())/wakes, "ns/wake")
		b.ReportMetric(float64(futile)/wakes, "futile/wake")
	}
	b.Run("impl=waitqueue-exclusive", func(b *testing.B) {
		futile := 0
		start := time.Now()
		for range b.N {
			futile += runHerd(b, herdSleepers, herdWakes, true)
		}
		report(b, time.Since(start), futile)
		if futile != 0 {
			b.Fatalf("exclusive WakeUp woke %d sleepers for nothing", futile)
		}
	})
	b.Run("impl=waitqueue-nonexclusive", func(b *testing.B) {
		futile := 0
		start := time.Now()
		for range b.N {
			futile += runHerd(b, herdSleepers, herdWakes, false)
		}
		report(b, time.Since(start), futile)
	})
	b.Run("impl=cond-broadcast", func(b *testing.B) {
		futile := 0
		start := time.Now()
		for range b.N {
			futile += runHerdCond(b, herdSleepers, herdWakes, true)
		}
		report(b, time.Since(start), futile)
	})
	b.Run("impl=cond-signal", func(b *testing.B) {
		futile := 0
		start := time.Now()
		for range b.N {
			futile += runHerdCond(b, herdSleepers, herdWakes, false)
		}
		report(b, time.Since(start), futile)
	})
}

// runHerdCond is runHerd with a sync.Cond: the waker signals or broadcasts
// under the mutex after releasing a unit.
func runHerdCond(tb testing.TB, n, wakes int, broadcast bool) (futile int) {
	var mu sync.Mutex
	c := sync.NewCond(&mu)
	units := 0
	stop := false
	// Sleepers add themselves under mu before c.Wait, so all counted ones
	// are on the Cond's list; the waker takes back those it wakes.
	var asleep atomic.Int64
	ack := make(chan struct{})
	var wg sync.WaitGroup
	for range n {
		wg.Go(func() {
			mu.Lock()
			defer mu.Unlock()
			for {
				for units == 0 && !stop {
					asleep.Add(1)
					c.Wait()
					if units == 0 && !stop {
						futile++ // guarded by mu
					}
				}
				if stop {
					return
				}
				units--
				mu.Unlock()
				ack <- struct{}{}
				mu.Lock()
			}
		})
	}
	for range wakes {
		for asleep.Load() != int64(n) {
			runtime.Gosched()
		}
		mu.Lock()
		units++
		if broadcast {
			c.Broadcast()
			asleep.Store(0)
		} else {
			c.Signal()
			asleep.Add(-1)
		}
		mu.Unlock()
		<-ack
	}
	mu.Lock()
	stop = true
	c.Broadcast()
	mu.Unlock()
	wg.Wait()
	return futile
}

// BenchmarkWakeUpEmpty: the cost to a waker when nobody waits, the common
// case on a completion path.
func BenchmarkWakeUpEmpty(b *testing.B) {
	b.Run("impl=waitqueue", func(b *testing.B) {
		var q Queue
		for b.Loop() {
			q.WakeUp(0)
		}
	})
	b.Run("impl=cond-signal", func(b *testing.B) {
		c := sync.NewCond(&sync.Mutex{})
		for b.Loop() {
			c.Signal()
		}
	})
}

// BenchmarkWakeUpOneEntry: lock, walk and one Func call, the poller's cost
// per woken entry excluding what the Func does.
func BenchmarkWakeUpOneEntry(b *testing.B) {
	var q Queue
	q.Add(&Entry{Func: func(*Entry, uint64) int { return 1 }})
	for b.Loop() {
		q.WakeUp(0)
	}
}
