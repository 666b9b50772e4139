// Command uringbench runs a storage workload on ringwake and on the
// alternatives (the standard library's os.File, fio's io_uring engine, and C
// liburing programs) one after another on the same file, and prints the
// comparison: IOPS, MiB/s, latency percentiles, CPU per op, and each row's
// IOPS ratio to the first row and to cpeak.
//
//	go run ./cmd/uringbench                                  # randread 4k qd 32, every engine
//	go run ./cmd/uringbench -workload nop -mode callback     # ringwake vs C liburing
//	go run ./cmd/uringbench -workload randwrite -bs 16k -qd 8 -json
//	go run ./cmd/uringbench -engine ring,fio -fixedbufs      # registered buffers, ringwake and fio
//	go run ./cmd/uringbench -direct -engine ring,cpeak,fio -mode all
//	go run ./cmd/uringbench -workload mixed -direct -qd 4             # foreground reads vs a background writer, with and without I/O classes
//	go run ./cmd/uringbench -workload calibrate -direct               # the device's ringwake.IOCost
//
// The ring engine runs in block mode (a goroutine per in-flight request,
// each calling ReadAt/WriteAt), callback mode (Submit callbacks refill the
// queue) and batch mode (a goroutine per 32 in flight, each running batches
// of 32 with Ring.Do; NOPs with Ring.SubmitAndWait).
//
// cpeak is the anchor: a C program on liburing (bench/reference/peak.c,
// built with gcc at run time) keeping -qd requests in flight on the same
// file with the same offsets, submitting -submit-batch at a time and, with
// the queue full, waiting for -complete-batch completions and reaping all
// that have arrived (fio's t/io_uring shape, on a ring set up as t/io_uring
// sets it up). Where cpeak is slow the device is the limit, and no engine's
// IOPS says anything about its own cost there. fio runs in the same batch
// shape (iodepth_batch_submit, iodepth_batch_complete_min/max), since its
// one-request-per-enter default is CPU-bound before the device is.
//
// -fixedbufs (one registered buffer per in-flight request), -registerfiles
// (the file through the registered file table) and -sqpoll (a kernel thread
// polls the submission queue; -sqpoll-idle, 2ms by default, is how long it
// spins idle) apply to the ring engine, to fio as fixedbufs=1,
// registerfiles=1 and sqthread_poll=1 (with which fio registers its file
// too), and to cpeak; they show in the mode column, such as
// block+fixedbufs, and -v shows the kernel's fdinfo confirming them. They
// are refused (exit 2) where they would measure nothing or the blocking API
// cannot express them: -fixedbufs or -registerfiles with nop, an -engine
// list without ring, fio or cpeak, and in block mode -fixedbufs with
// -registerfiles, or -registerfiles with fsync (use -mode callback). Batch
// mode skips its row under -fixedbufs and -registerfiles: Ring.Do takes
// plain descriptors and buffers.
//
// Exit status: 0 on success, 1 when a run fails, 2 for bad flags (one line on
// stderr, before any work starts).
package main

import (
	"context"
	"errors"
	"flag"
	"fmt"
	"io"
	"os"
	"os/signal"
	"slices"
	"syscall"
	"time"
)

func main() {
	ctx, stop := signal.NotifyContext(context.Background(), os.Interrupt, syscall.SIGTERM)
	code := run(ctx, os.Args[1:], os.Stdout, os.Stderr)
	stop()
	os.Exit(code)
}

// skipError marks an engine that cannot run here (binary missing, kernel
// refusal, workload not applicable): one line on stderr, and the run goes on.
type skipError struct{ msg string }

func (e *skipError) Error() string { return e.msg }

func skipf(format string, args ...any) error {
	return &skipError{fmt.Sprintf(format, args...)}
}

// env is what one invocation shares across its engines.
type env struct {
	cfg      *config
	tgt      *target // nil for nop
	stderr   io.Writer
	progress bool
	nonce    uint64
	pattern  []byte
}

func (e *env) note(msg string) { fmt.Fprintf(e.stderr, "uringbench: %s\n", msg) }

func (e *env) verbosef(format string, args ...any) {
	if e.cfg.verbose {
		fmt.Fprintf(e.stderr, "uringbench: "+format+"\n", args...)
	}
}

// newPlan returns the shared op plan for the run'th engine run.
func (e *env) newPlan(run int) *plan {
	c := e.cfg
	var nblocks int64
	if e.tgt != nil {
		nblocks = e.tgt.size / c.bs
	}
	p := newPlan(c.workload, c.bs, nblocks, c.qd, c.ops, c.seed)
	p.tag = e.nonce<<8 | uint64(run+1)
	p.pattern = e.pattern
	return p
}

type engineFunc func(ctx context.Context, e *env, p *plan, mode string) (*result, []int64, error)

type engineRun struct {
	name, mode string
	fn         engineFunc
}

// engineRuns expands -engine and -mode into the runs to do, in order.
func (e *env) engineRuns() []engineRun {
	var runs []engineRun
	for _, name := range e.cfg.engines {
		switch name {
		case "ring":
			for _, m := range e.cfg.modes {
				runs = append(runs, engineRun{"ring", m + e.cfg.feat.suffix(), runRing})
			}
		case "gofile":
			runs = append(runs, engineRun{"gofile", "block", runGofile})
		case "fio":
			runs = append(runs, engineRun{"fio", "io_uring" + e.cfg.feat.forFio().suffix(), runFio})
		case "cpeak":
			if !slices.Contains(cpeakWorkloads, e.cfg.workload) && !e.cfg.explicit["engine"] {
				continue
			}
			runs = append(runs, engineRun{"cpeak", e.cfg.cpeakMode(), runCpeak})
		case "cref":
			if e.cfg.workload != "nop" && !e.cfg.explicit["engine"] {
				continue // a nop-only reference has nothing to say about file I/O
			}
			runs = append(runs, engineRun{"cref", "batch", runCref})
		}
	}
	return runs
}

// run is the whole program behind main, returning the exit status.
func run(ctx context.Context, args []string, stdout, stderr io.Writer) int {
	cfg, err := parseFlags(args, stderr)
	if errors.Is(err, flag.ErrHelp) {
		return 0
	}
	if err != nil {
		fmt.Fprintf(stderr, "uringbench: %v\n", err)
		return 2
	}
	if cfg.cpuprof != "" || cfg.memprof != "" {
		stop, err := startProfiles(cfg.cpuprof, cfg.memprof)
		if err != nil {
			fmt.Fprintf(stderr, "uringbench: %v\n", err)
			return 2
		}
		defer func() {
			if err := stop(); err != nil {
				fmt.Fprintf(stderr, "uringbench: %v\n", err)
			}
		}()
	}
	e := &env{cfg: cfg, stderr: stderr, nonce: uint64(time.Now().UnixNano()) & (1<<56 - 1)}
	e.progress = !cfg.json && isTerminal(stderr)
	if cfg.workload != "nop" {
		e.tgt, err = openTarget(cfg, e.note)
		if err != nil {
			fmt.Fprintf(stderr, "uringbench: %v\n", err)
			return 2
		}
		defer func() {
			if err := e.tgt.remove(); err != nil {
				e.note(fmt.Sprintf("cannot remove %s: %v", e.tgt.path, err))
			}
			if e.tgt.created && cfg.keep {
				e.note("kept " + e.tgt.path)
			}
		}()
		e.pattern = alignedBuffer(int(cfg.bs))
		r := newRNG(cfg.seed, -1)
		fillRandom(e.pattern, &r)
		e.verbosef("%s, %s of %s blocks, %s", e.tgt.describe(), cfg.workload, formatBytes(cfg.bs), e.cacheState())
		if err := e.tgt.fill(cfg.seed); err != nil {
			fmt.Fprintf(stderr, "uringbench: %v\n", err)
			return 1
		}
	}
	switch cfg.workload {
	case "mixed", "calibrate":
		run := e.runMixed
		if cfg.workload == "calibrate" {
			run = e.runCalibrate
		}
		if err := run(ctx, stdout); err != nil {
			fmt.Fprintf(stderr, "uringbench: %v\n", err)
			return 1
		}
		return 0
	}
	results, err := e.runAll(ctx)
	if err != nil {
		fmt.Fprintf(stderr, "uringbench: %v\n", err)
		return 1
	}
	if cfg.json {
		err = writeJSON(stdout, results)
	} else {
		fmt.Fprintln(stdout, e.header())
		err = writeTable(stdout, results)
	}
	if err != nil {
		fmt.Fprintf(stderr, "uringbench: %v\n", err)
		return 1
	}
	return 0
}

// runAll runs every engine in order and verifies what the writing ones wrote.
func (e *env) runAll(ctx context.Context) ([]*result, error) {
	var results []*result
	for i, er := range e.engineRuns() {
		if err := ctx.Err(); err != nil {
			return nil, fmt.Errorf("interrupted")
		}
		label := er.name + "/" + er.mode
		if e.tgt != nil {
			if err := e.tgt.setCache(e.cfg.cache); err != nil {
				return nil, err
			}
		}
		p := e.newPlan(i)
		res, written, err := er.fn(ctx, e, p, er.mode)
		var skip *skipError
		if errors.As(err, &skip) {
			e.note(er.name + ": " + skip.msg)
			continue
		}
		if err != nil {
			return nil, fmt.Errorf("%s: %w", label, err)
		}
		if ctx.Err() != nil {
			return nil, fmt.Errorf("interrupted")
		}
		if e.tgt != nil && len(written) > 0 {
			if err := e.tgt.verify(p, written); err != nil {
				return nil, fmt.Errorf("%s: %w", label, err)
			}
			e.verbosef("%s: %d written blocks read back and verified", label, len(written))
		}
		results = append(results, res)
	}
	if len(results) == 0 {
		return nil, errors.New("no engine could run")
	}
	return results, nil
}

func (e *env) newResult(engine, mode string) *result {
	return &result{
		Engine:   engine,
		Mode:     mode,
		Workload: e.cfg.workload,
		BS:       e.cfg.bs,
		QD:       e.cfg.qd,
		Direct:   e.tgt != nil && e.tgt.direct,
	}
}

// header is the table's first line: what was measured, and from which
// page cache state every engine started.
func (e *env) header() string {
	c := e.cfg
	s := fmt.Sprintf("%s qd %d", c.workload, c.qd)
	if e.tgt != nil {
		s = fmt.Sprintf("%s bs %s qd %d, %s, %s", c.workload, formatBytes(c.bs), c.qd, e.tgt.describe(), e.cacheState())
	}
	if c.ops > 0 {
		return s + fmt.Sprintf(", %d ops per engine", c.ops)
	}
	return s + fmt.Sprintf(", %v per engine", c.duration)
}

func (e *env) cacheState() string {
	if e.cfg.cache == "warm" && !e.tgt.direct {
		return "whole file read into the page cache before each engine"
	}
	return "page cache dropped (fdatasync + posix_fadvise DONTNEED) before each engine"
}
