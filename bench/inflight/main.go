// Command inflight samples how many reads and writes the block device
// under a directory has in flight (/sys/dev/block/MAJ:MIN/inflight) while a
// benchmark runs beside it, and prints how often the device held none and
// how many it held on average: what separates engines that tie on paper
// when the disk is the limit (docs/benchmarks.md).
//
//	go run ./cmd/uringbench -engine ring -mode block -time 10s &
//	sleep 6; go run ./bench/inflight -for 3s
//
// Sampling costs a read of a sysfs file per -every (default 50 µs); on two
// cores that takes a few percent from what it measures.
package main

import (
	"errors"
	"flag"
	"fmt"
	"os"
	"strconv"
	"strings"
	"syscall"
	"time"

	"golang.org/x/sys/unix"
)

func main() {
	dir := flag.String("dir", "/var/tmp", "a directory on the file system whose device is sampled")
	dur := flag.Duration("for", 3*time.Second, "how long to sample")
	every := flag.Duration("every", 50*time.Microsecond, "pause between samples")
	flag.Parse()
	if err := run(*dir, *dur, *every); err != nil {
		fmt.Fprintln(os.Stderr, "inflight:", err)
		os.Exit(1)
	}
}

func run(dir string, dur, every time.Duration) error {
	path, err := inflightPath(dir)
	if err != nil {
		return err
	}
	f, err := os.Open(path)
	if err != nil {
		return err
	}
	defer f.Close()
	var reads, writes dist
	buf := make([]byte, 64)
	for end := time.Now().Add(dur); time.Now().Before(end); time.Sleep(every) {
		n, err := f.ReadAt(buf, 0)
		if err != nil && n == 0 {
			return err
		}
		r, w, err := parse(string(buf[:n]))
		if err != nil {
			return err
		}
		reads.add(r)
		writes.add(w)
	}
	fmt.Printf("%s, %d samples\n", path, reads.n)
	fmt.Printf("reads:  none in flight %.1f%% of samples, mean %.1f, max %d\n", reads.nonePct(), reads.mean(), reads.max)
	fmt.Printf("writes: none in flight %.1f%% of samples, mean %.1f, max %d\n", writes.nonePct(), writes.mean(), writes.max)
	return nil
}

// inflightPath is the inflight file of the device (or partition) holding dir.
func inflightPath(dir string) (string, error) {
	var st unix.Stat_t
	if err := unix.Stat(dir, &st); err != nil {
		return "", &os.PathError{Op: "stat", Path: dir, Err: err}
	}
	p := fmt.Sprintf("/sys/dev/block/%d:%d/inflight", unix.Major(st.Dev), unix.Minor(st.Dev))
	if _, err := os.Stat(p); err != nil {
		if errors.Is(err, syscall.ENOENT) {
			return "", fmt.Errorf("%s is not on a block device (%s missing)", dir, p)
		}
		return "", err
	}
	return p, nil
}

// parse reads the two counts of an inflight file: "reads writes\n".
func parse(s string) (reads, writes int, err error) {
	fs := strings.Fields(s)
	if len(fs) != 2 {
		return 0, 0, fmt.Errorf("inflight: want two counts, got %q", s)
	}
	if reads, err = strconv.Atoi(fs[0]); err != nil {
		return 0, 0, fmt.Errorf("inflight: %w", err)
	}
	if writes, err = strconv.Atoi(fs[1]); err != nil {
		return 0, 0, fmt.Errorf("inflight: %w", err)
	}
	return reads, writes, nil
}

// dist accumulates samples of one count.
type dist struct {
	n, none, sum, max int
}

func (d *dist) add(v int) {
	d.n++
	d.sum += v
	if v == 0 {
		d.none++
	}
	d.max = max(d.max, v)
}

func (d *dist) nonePct() float64 {
	if d.n == 0 {
		return 0
	}
	return 100 * float64(d.none) / float64(d.n)
}

func (d *dist) mean() float64 {
	if d.n == 0 {
		return 0
	}
	return float64(d.sum) / float64(d.n)
}
