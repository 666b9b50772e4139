// Command schedlat measures how long goroutines blocked in ringwake.File
// reads wait between the poller waking them and running: it keeps -qd
// goroutines reading 4 KiB at random offsets of -file (O_DIRECT) for
// -time under runtime/trace, then prints the IOPS and the command that
// turns the trace into a scheduler-latency profile, whose total divided by
// the ops is the wait per read (docs/design.md, "The poller's own thread").
//
//	go run ./bench/schedlat -file big.dat -trace /tmp/t.out [-shared]
//	go tool trace -pprof=sched /tmp/t.out > /tmp/sched.pb && go tool pprof -top /tmp/sched.pb
package main

import (
	"errors"
	"flag"
	"fmt"
	"math/rand/v2"
	"os"
	"runtime/trace"
	"sync"
	"sync/atomic"
	"syscall"
	"time"

	ringwake "github.com/ringwake/ringwake/runtime"
)

func main() {
	if err := run(); err != nil {
		fmt.Fprintln(os.Stderr, "schedlat:", err)
		os.Exit(1)
	}
}

func run() error {
	file := flag.String("file", "", "file to read (at least 4 KiB; O_DIRECT)")
	out := flag.String("trace", "schedlat.trace", "execution trace output")
	qd := flag.Int("qd", 32, "goroutines, one read in flight each")
	dur := flag.Duration("time", 2*time.Second, "how long to read")
	shared := flag.Bool("shared", false, "ringwake.Config.SharedThread")
	flag.Parse()
	if *file == "" || *qd < 1 {
		return errors.New("want -file and -qd >= 1")
	}
	r, err := ringwake.New(ringwake.Config{Entries: uint32(*qd), SharedThread: *shared})
	if err != nil {
		return err
	}
	defer r.Close()
	f, err := r.Open(*file, os.O_RDONLY|syscall.O_DIRECT, 0)
	if err != nil {
		return err
	}
	defer f.Close()
	st, err := f.Stat()
	if err != nil {
		return err
	}
	blocks := st.Size() / 4096
	if blocks < 1 {
		return fmt.Errorf("%s: smaller than 4 KiB", *file)
	}
	tf, err := os.Create(*out)
	if err != nil {
		return err
	}
	defer tf.Close()
	if err := trace.Start(tf); err != nil {
		return err
	}
	var stop atomic.Bool
	var ops atomic.Int64
	errs := make(chan error, *qd)
	var wg sync.WaitGroup
	for g := 0; g < *qd; g++ {
		wg.Add(1)
		go func() {
			defer wg.Done()
			buf := ringwake.AlignedBuffer(4096, 4096)
			rng := rand.New(rand.NewPCG(uint64(g), 1))
			for !stop.Load() {
				if _, err := f.ReadAt(buf, rng.Int64N(blocks)*4096); err != nil {
					errs <- err
					return
				}
				ops.Add(1)
			}
		}()
	}
	time.Sleep(*dur)
	stop.Store(true)
	wg.Wait()
	trace.Stop()
	close(errs)
	if err := <-errs; err != nil {
		return err
	}
	n := ops.Load()
	fmt.Printf("%d reads, %.0f IOPS, shared thread %v; per-read scheduler wait = (total of:\n", n, float64(n)/dur.Seconds(), *shared)
	fmt.Printf("  go tool trace -pprof=sched %s > sched.pb && go tool pprof -top sched.pb\n) / %d\n", *out, n)
	return nil
}
