package runtime_test

import (
	goruntime "runtime"
	"testing"

	ringwake "github.com/ringwake/ringwake/runtime"
)

// Config.MaxWorkers reaches every shard's ring: the kernel reads back the
// limits New set. New runs on this locked thread, so the thread is among
// the ring's submitters and its io-wq carries the caps.
func TestMaxWorkersReadBack(t *testing.T) {
	goruntime.LockOSThread()
	defer goruntime.UnlockOSThread()
	r := newRing(t, ringwake.Config{Entries: 8, MaxWorkers: [2]uint32{2, 3}})
	want := [2]uint32{2, 3}
	if r.Backend() == ringwake.BackendFallback {
		want = [2]uint32{} // ignored: its pool is bounded by Entries
	}
	got, err := ringwake.IOWQLimits(r)
	if err != nil {
		t.Fatalf("reading the io-wq limits back: %v", err)
	}
	for i, l := range got {
		if l != want {
			t.Fatalf("shard %d io-wq limits %v; want %v", i, l, want)
		}
	}
	if _, err := ringwake.New(ringwake.Config{Entries: 8, MaxWorkers: [2]uint32{1 << 31, 0}}); err == nil {
		t.Fatal("New with a MaxWorkers limit above INT_MAX succeeded")
	}
}
