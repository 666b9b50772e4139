package main

import (
	"strings"
	"testing"
	"time"

	"go.uber.org/goleak"
)

func TestMain(m *testing.M) { goleak.VerifyTestMain(m) }

func TestParse(t *testing.T) {
	r, w, err := parse("      12        3\n")
	if err != nil || r != 12 || w != 3 {
		t.Fatalf("parse = %d, %d, %v; want 12, 3, nil", r, w, err)
	}
	for _, bad := range []string{"", "1", "1 2 3", "a 2", "1 b"} {
		if _, _, err := parse(bad); err == nil {
			t.Errorf("parse(%q) accepted", bad)
		}
	}
}

func TestDist(t *testing.T) {
	var d dist
	for _, v := range []int{0, 4, 0, 8} {
		d.add(v)
	}
	if d.nonePct() != 50 || d.mean() != 3 || d.max != 8 {
		t.Fatalf("none %.1f%%, mean %.1f, max %d; want 50%%, 3, 8", d.nonePct(), d.mean(), d.max)
	}
}

// TestRun samples the device under /var/tmp, and refuses a directory on
// no block device with an error that says so.
func TestRun(t *testing.T) {
	if _, err := inflightPath("/var/tmp"); err != nil {
		if !strings.Contains(err.Error(), "not on a block device") {
			t.Fatalf("inflightPath(/var/tmp): %v", err)
		}
	} else if err := run("/var/tmp", 20*time.Millisecond, time.Millisecond); err != nil {
		t.Fatal(err)
	}
	_, err := inflightPath("/proc")
	if err == nil || !strings.Contains(err.Error(), "not on a block device") {
		t.Fatalf("inflightPath(/proc) = %v, want an error naming no block device", err)
	}
}
