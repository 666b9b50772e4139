package waitqueue_test

import (
	"context"
	"fmt"
	"sync"
	"sync/atomic"

	"github.com/ringwake/ringwake/waitqueue"
)

// A waker walks the queue: every non-exclusive entry is called, then exclusive
// entries until one accepts. Each Func decides what waking means; here it
// accepts only the key it waits for.
func ExampleQueue_WakeUp() {
	var q waitqueue.Queue
	watch := func(name string, want uint64) *waitqueue.Entry {
		return &waitqueue.Entry{Private: name, Func: func(e *waitqueue.Entry, key uint64) int {
			if key != want {
				fmt.Printf("%s: not my event\n", e.Private)
				return 0
			}
			fmt.Printf("%s: woken\n", e.Private)
			return 1
		}}
	}
	q.Add(watch("logger", 1))
	q.AddExclusive(watch("worker-a", 2))
	q.AddExclusive(watch("worker-b", 1))
	q.AddExclusive(watch("worker-c", 1))

	n := q.WakeUp(1)
	fmt.Println("woken:", n)
	// Output:
	// logger: woken
	// worker-a: not my event
	// worker-b: woken
	// woken: 2
}

// AutoRemove takes an entry off the queue in the walk that wakes it, so a
// one-shot notification needs no Remove.
func ExampleAutoRemove() {
	var q waitqueue.Queue
	once := &waitqueue.Entry{Func: waitqueue.AutoRemove(func(*waitqueue.Entry, uint64) int { return 1 })}
	q.Add(once)
	fmt.Println(q.Len(), q.WakeUpAll(0), q.Len(), q.WakeUpAll(0))
	// Output: 1 1 0 0
}

// WaitExclusive turns the queue into a semaphore without a thundering herd:
// each release wakes one sleeper, and a cond that returns true has taken a
// unit.
func ExampleQueue_WaitExclusive() {
	var q waitqueue.Queue
	var units atomic.Int64
	take := func() bool {
		for {
			u := units.Load()
			if u == 0 {
				return false
			}
			if units.CompareAndSwap(u, u-1) {
				return true
			}
		}
	}
	var done atomic.Int64
	var wg sync.WaitGroup
	for range 3 {
		wg.Go(func() {
			if err := q.WaitExclusive(context.Background(), take); err == nil {
				done.Add(1)
			}
		})
	}
	for range 3 {
		units.Add(1) // publish the unit before waking, so no wake-up is lost
		q.WakeUp(0)
	}
	wg.Wait()
	fmt.Println("acquired:", done.Load(), "left:", units.Load())
	// Output: acquired: 3 left: 0
}

// Wait returns ctx.Err() when the context ends before cond holds.
func ExampleQueue_Wait() {
	var q waitqueue.Queue
	ctx, cancel := context.WithCancel(context.Background())
	cancel()
	err := q.Wait(ctx, func() bool { return false })
	fmt.Println(err, q.Len())
	// Output: context canceled 0
}

// The runtime's building block for a waiter that parks itself: queue the
// entry, check the condition, sleep until the entry's Func runs, finish.
func ExampleQueue_PrepareToWait() {
	var q waitqueue.Queue
	var ready atomic.Bool
	wake := make(chan struct{}, 1)
	e := &waitqueue.Entry{Func: waitqueue.AutoRemove(func(*waitqueue.Entry, uint64) int {
		select {
		case wake <- struct{}{}:
			return 1
		default:
			return 0
		}
	})}
	done := make(chan struct{})
	go func() {
		defer close(done)
		for {
			q.PrepareToWait(e)
			if ready.Load() {
				break
			}
			<-wake
		}
		q.FinishWait(e)
		fmt.Println("ready")
	}()
	ready.Store(true)
	q.WakeUp(0)
	<-done
	fmt.Println("queued:", q.Len())
	// Output:
	// ready
	// queued: 0
}
