package main

import (
	"bytes"
	"io"
	"slices"
	"strings"
	"testing"

	"go.uber.org/goleak"
)

func TestMain(m *testing.M) { goleak.VerifyTestMain(m) }

func TestParseVariant(t *testing.T) {
	v, err := parseVariant("one P: GOMAXPROCS=1 RINGWAKE_BACKEND=fallback -engine ring -mode block -io-per-enter=2")
	if err != nil {
		t.Fatal(err)
	}
	if v.name != "one P" {
		t.Errorf("name %q", v.name)
	}
	if !slices.Equal(v.env, []string{"GOMAXPROCS=1", "RINGWAKE_BACKEND=fallback"}) {
		t.Errorf("env %q", v.env)
	}
	if !slices.Equal(v.flags, []string{"-engine", "ring", "-mode", "block", "-io-per-enter=2"}) {
		t.Errorf("flags %q", v.flags)
	}
	v, err = parseVariant("before: UB=/tmp/ub-old GOMAXPROCS=1 -engine ring")
	if err != nil {
		t.Fatal(err)
	}
	if v.bin != "/tmp/ub-old" || !slices.Equal(v.env, []string{"GOMAXPROCS=1"}) || !slices.Equal(v.flags, []string{"-engine", "ring"}) {
		t.Errorf("UB= variant parsed as bin %q env %q flags %q", v.bin, v.env, v.flags)
	}
	for _, bad := range []string{"-engine fio", ": -engine fio", "name: GOMAXPROCS=1", "name:"} {
		if _, err := parseVariant(bad); err == nil {
			t.Errorf("%q accepted", bad)
		}
	}
}

// Odd rounds reverse the order, so no variant always runs first.
func TestOrder(t *testing.T) {
	if got := order(3, 0); !slices.Equal(got, []int{0, 1, 2}) {
		t.Errorf("round 0: %v", got)
	}
	if got := order(3, 1); !slices.Equal(got, []int{2, 1, 0}) {
		t.Errorf("round 1: %v", got)
	}
}

// The ratio is taken round by round, then the median: a round where the
// host was slow for everyone does not count against a variant.
func TestSummaryRatiosPerRound(t *testing.T) {
	vs := []variant{{name: "fio"}, {name: "block"}}
	iops := [][]float64{{100, 50, 200}, {90, 60, 100}}
	p999 := [][]float64{{1, 2, 3}, {4, 5, 6}}
	var b bytes.Buffer
	summary(&b, vs, iops, p999)
	out := b.String()
	// block/fio per round: 0.90, 1.20, 0.50 -> median 0.90; median IOPS 90.
	if !strings.Contains(out, "block") || !strings.Contains(out, "vs fio 0.900x (rounds 0.90 1.20 0.50)") ||
		!strings.Contains(out, "median       90 IOPS") || !strings.Contains(out, "p99.9 median 5.00 ms") {
		t.Errorf("summary:\n%s", out)
	}
}

func TestRunRejectsBadArguments(t *testing.T) {
	for _, args := range [][]string{{"fio: -engine fio"}, {"-rounds", "0", "a: -engine fio", "b: -engine ring"}, {"a: -engine fio", "bad"}} {
		if err := run(args, io.Discard, io.Discard); err == nil {
			t.Errorf("%q accepted", args)
		}
	}
}
