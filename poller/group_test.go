package poller

import (
	"sync"
	"testing"
	"time"

	"github.com/ringwake/ringwake/sqe"
	"golang.org/x/sys/unix"
)

// Two shards of one Group, each full, each of whose reapers runs a callback
// that submits to the other: every request completes. Each shard holds two
// requests that free no slot while the callbacks run, a multishot poll
// (its completions carry CQEFMore and keep the slot) and a pipe read. The
// poll's first completion runs a callback that submits a NOP to the other
// shard, which has no slot free. Were that reaper to sleep for the slot, as
// an ordinary submitter does, the two reapers would sleep on each other's
// shards, and only they free slots: the pipe reads' completions would never
// be reaped. The Group makes each defer instead, as it does on its own
// shard, and the deferred NOPs go in when the pipe reads free their slots.
func TestGroupCrossShardCallbacksDoNotDeadlock(t *testing.T) {
	g := new(Group)
	var shards [2]*Poller
	for i := range shards {
		shards[i] = newPoller(t, Config{Entries: 2, Group: g})
		if n := shards[i].Capacity(); n != 2 {
			t.Fatalf("shard %d has %d slots, want 2", i, n)
		}
	}
	var (
		nops    sync.WaitGroup // the cross-shard NOPs
		reads   sync.WaitGroup // the pipe reads
		crossed [2]chan error  // each poll's first callback's Submit to the other shard
		wr, ev  [2]int
	)
	nops.Add(2)
	reads.Add(2)
	for i, p := range shards {
		other := shards[1-i]
		evRd, evWr := rawPipe(t)
		dataRd, dataWr := rawPipe(t)
		wr[i] = dataWr
		crossed[i] = make(chan error, 1)
		var poll sqe.SQE
		poll.PrepPollMultishot(int32(evRd), unix.POLLIN)
		first := true
		if err := p.Submit(&poll, func(res int32, flags uint32) {
			if !first || res < 0 {
				return // later events, and -ECANCELED at Close
			}
			first = false
			var s sqe.SQE
			s.PrepNop()
			crossed[i] <- other.Submit(&s, func(res int32, _ uint32) {
				if res != 0 {
					t.Errorf("cross-shard NOP from shard %d: res %d", i, res)
				}
				nops.Done()
			})
		}); err != nil {
			t.Fatalf("shard %d: poll: %v", i, err)
		}
		buf := make([]byte, 1)
		var rd sqe.SQE
		rd.PrepRead(int32(dataRd), buf, 0)
		if err := p.Submit(&rd, func(res int32, _ uint32) {
			if res != 1 {
				t.Errorf("shard %d: pipe read: res %d, want 1", i, res)
			}
			reads.Done()
		}); err != nil {
			t.Fatalf("shard %d: pipe read: %v", i, err)
		}
		t.Cleanup(func() { _ = buf[0] }) // in flight until the read completes or Close cancels it
		ev[i] = evWr
	}
	// Both shards are full before either poll fires: a callback that found
	// the other shard not yet full would take a slot there, and the test's
	// own Submit would then sleep for one.
	for i := range ev {
		if _, err := unix.Write(ev[i], []byte{1}); err != nil {
			t.Fatal(err)
		}
	}
	// Both shards are full now, and each poll has fired (or is about to):
	// each cross-shard Submit either returned (deferred) or sleeps.
	deadline := time.After(10 * time.Second)
	for i := range crossed {
		select {
		case err := <-crossed[i]:
			if err != nil {
				t.Fatalf("shard %d's callback: Submit to the other shard: %v", i, err)
			}
		case <-deadline:
			// Two reapers asleep on each other's shards: close both at
			// once, which wakes them with ErrClosed, so the test fails
			// rather than hangs.
			var wg sync.WaitGroup
			for _, p := range shards {
				wg.Add(1)
				go func() { defer wg.Done(); p.Close() }()
			}
			wg.Wait()
			t.Fatalf("shard %d's callback still sleeps in Submit to the other, full, shard after 10s: the reapers deadlocked", i)
		}
	}
	for i, p := range shards {
		if st := p.Stats(); st.Deferred != 1 || st.Backlogged != 0 {
			t.Errorf("shard %d: Deferred %d, Backlogged %d; want the other's callback deferred once, never asleep", i, st.Deferred, st.Backlogged)
		}
		if _, err := unix.Write(wr[i], []byte{1}); err != nil {
			t.Fatal(err)
		}
	}
	waitGroupWithin(t, "the pipe reads", &reads)
	waitGroupWithin(t, "the deferred cross-shard NOPs", &nops)
}

func waitGroupWithin(t *testing.T, what string, wg *sync.WaitGroup) {
	t.Helper()
	done := make(chan struct{})
	go func() { wg.Wait(); close(done) }()
	select {
	case <-done:
	case <-time.After(10 * time.Second):
		t.Fatalf("%s did not complete within 10s", what)
	}
}
