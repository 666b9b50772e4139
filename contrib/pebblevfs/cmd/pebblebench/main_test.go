package main

import (
	"bytes"
	"regexp"
	"strconv"
	"testing"

	"go.uber.org/goleak"

	"github.com/ringwake/ringwake/internal/uringtest"
)

func TestMain(m *testing.M) { goleak.VerifyTestMain(m) }

// TestRunSmall runs the whole benchmark at a toy size: both workloads on
// both file systems, every read value checked, and the summary table.
func TestRunSmall(t *testing.T) {
	uringtest.Require(t)
	var out bytes.Buffer
	err := run(config{
		dir: t.TempDir() + "/bench", rounds: 2, writers: 4, perWriter: 5,
		keys: 3000, valueSize: 100, readers: 4, reads: 400, entries: 32,
	}, &out)
	if err != nil {
		t.Fatalf("%v\n%s", err, out.String())
	}
	for _, re := range []string{
		`(?m)^round 2 synced writes +vfs.Default +\d+ ops/s`,
		`(?m)^round 1 random reads +ringwake +\d+ ops/s`,
		`(?m)^\| synced writes \| \d+ \| \d+ \| \d+\.\d\dx \|`,
		`(?m)^\| random reads \| \d+ \| \d+ \| \d+\.\d\dx \|`,
		`(?m)^  ring: \d+ requests, \d+\.\d submitted per enter`,
	} {
		if !regexp.MustCompile(re).Match(out.Bytes()) {
			t.Errorf("output lacks %s:\n%s", re, out.String())
		}
	}
}

// TestRunOnly: -only writes runs the write workload alone and builds no
// read database; an unknown name is an error. With -calls each write phase
// reports the WAL's writes and syncs: a writer's 3 synced Sets wait for one
// sync each, so at least 3 of both.
func TestRunOnly(t *testing.T) {
	uringtest.Require(t)
	var out bytes.Buffer
	c := config{
		dir: t.TempDir() + "/bench", rounds: 1, writers: 2, perWriter: 3,
		keys: 3000, valueSize: 100, readers: 2, reads: 10, entries: 32, only: "writes", calls: true,
	}
	if err := run(c, &out); err != nil {
		t.Fatalf("%v\n%s", err, out.String())
	}
	if !regexp.MustCompile(`(?m)^\| synced writes \|`).Match(out.Bytes()) {
		t.Errorf("no synced writes row:\n%s", out.String())
	}
	calls := regexp.MustCompile(`(?m)^  calls: WAL writes (\d+) × \d+\.\d µs \(\d+ B on average\), WAL syncs (\d+) × `)
	if m := calls.FindAllSubmatch(out.Bytes(), -1); len(m) != 2 {
		t.Errorf("want a calls line after each of the 2 write phases:\n%s", out.String())
	} else {
		for _, line := range m {
			for i, what := range []string{"writes", "syncs"} {
				if n, _ := strconv.Atoi(string(line[i+1])); n < 3 {
					t.Errorf("%d WAL %s for 3 synced Sets in a row:\n%s", n, what, line[0])
				}
			}
		}
	}
	for _, absent := range []string{"random reads", "read database"} {
		if bytes.Contains(out.Bytes(), []byte(absent)) {
			t.Errorf("-only writes printed %q:\n%s", absent, out.String())
		}
	}
	c.only = "scans"
	if err := run(c, &out); err == nil {
		t.Error("-only scans: no error")
	}
}
