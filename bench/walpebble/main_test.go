package main

import (
	"bytes"
	"fmt"
	"os"
	"slices"
	"strings"
	"testing"
	"time"

	"go.uber.org/goleak"

	"github.com/ringwake/ringwake/internal/uringtest"
)

func TestMain(m *testing.M) { goleak.VerifyTestMain(m) }

// TestSmoke runs every implementation briefly and checks that each window
// appended records and made fdatasyncs, at most one per record, that the
// disk saw a flush for about every fdatasync counted (where it has a write
// cache), and that the report prints a row per count and log kind.
func TestSmoke(t *testing.T) {
	uringtest.Require(t)
	root := t.TempDir()
	impls := []impl{pebbleFresh(), walFresh(), pebbleRecycled(root, 32<<20), walRecycledImpl(root)}
	defer func() {
		for _, im := range impls {
			if err := im.done(); err != nil {
				t.Error(err)
			}
		}
	}()
	cache := writeCache(root)
	for _, n := range []int{1, 8} {
		for _, im := range impls {
			r, err := run(root, im, n, 150*time.Millisecond)
			if err != nil {
				t.Fatal(err)
			}
			t.Logf("%s appenders=%d: %d records, %d syncs, %d flushes", r.impl, n, r.records, r.syncs, r.flushes)
			if r.records == 0 || r.syncs == 0 {
				t.Errorf("%s appenders=%d: %d records, %d fdatasyncs: want both above 0", im.name, n, r.records, r.syncs)
			}
			if r.syncs > uint64(r.records)+1 {
				t.Errorf("%s appenders=%d: %d fdatasyncs for %d records", im.name, n, r.syncs, r.records)
			}
			if cache && r.flushes >= 0 && float64(r.flushes) < 0.9*float64(r.syncs) {
				t.Errorf("%s appenders=%d: the disk completed %d flushes for %d fdatasyncs", im.name, n, r.flushes, r.syncs)
			}
		}
	}
	var out bytes.Buffer
	if err := bench(&out, t.TempDir(), []int{2}, 2, 50*time.Millisecond, 16<<20, true, ""); err != nil {
		t.Fatal(err)
	}
	if got := strings.Count(out.String(), "\n| 2 |"); got != 2 {
		t.Errorf("report has %d rows for 2 appenders, want 2 (new, recycled):\n%s", got, out.String())
	}
	// The second round runs the logs in the first round's reverse order.
	var order [2][]string
	for _, line := range strings.Split(out.String(), "\n") {
		var round int
		var name string
		if n, _ := fmt.Sscanf(line, "round %d %s", &round, &name); n == 2 && round >= 1 && round <= 2 {
			order[round-1] = append(order[round-1], name)
		}
	}
	rev := slices.Clone(order[1])
	slices.Reverse(rev)
	if len(order[0]) != 4 || !slices.Equal(order[0], rev) {
		t.Errorf("rounds ran the logs in orders %v and %v, want four, then the same reversed", order[0], order[1])
	}
}

// TestStartTrace checks that -trace writes an execution trace: a file
// that starts with the runtime's trace header and holds the run's events.
func TestStartTrace(t *testing.T) {
	path := t.TempDir() + "/trace.out"
	stop, err := startTrace(path)
	if err != nil {
		t.Fatal(err)
	}
	done := make(chan struct{})
	go func() { close(done) }()
	<-done
	if err := stop(); err != nil {
		t.Fatal(err)
	}
	b, err := os.ReadFile(path)
	if err != nil {
		t.Fatal(err)
	}
	if !bytes.HasPrefix(b, []byte("go 1.")) || len(b) < 64 {
		t.Errorf("trace file: %d bytes starting %q, want a Go execution trace", len(b), b[:min(len(b), 16)])
	}
}
