package main

import (
	"bytes"
	"context"
	"fmt"
	"os"
	"os/exec"
	"path/filepath"
	"strconv"
	"syscall"
	"time"

	"github.com/ringwake/ringwake/bench"
)

// buildC compiles one of bench/reference's C programs (src, embedded) into a
// temporary directory, so that the C anchors run wherever uringbench runs.
// A missing compiler or liburing skips the engine. The caller runs cleanup.
func buildC(ctx context.Context, e *env, engine, name string, src []byte) (bin string, cleanup func(), err error) {
	cc, err := exec.LookPath("gcc")
	if err != nil {
		return "", nil, skipf("gcc not on PATH, C reference skipped (Debian: apt-get install gcc liburing-dev)")
	}
	dir, err := os.MkdirTemp("", "uringbench-"+engine+"-")
	if err != nil {
		return "", nil, err
	}
	cleanup = func() { os.RemoveAll(dir) }
	c, bin := filepath.Join(dir, name+".c"), filepath.Join(dir, name)
	if err := os.WriteFile(c, src, 0o644); err != nil {
		cleanup()
		return "", nil, err
	}
	build := exec.CommandContext(ctx, cc, "-O2", "-o", bin, c, "-luring")
	e.verbosef("%s build: %s", engine, build)
	if out, err := build.CombinedOutput(); err != nil {
		cleanup()
		return "", nil, skipf("cannot build the C reference, skipped (Debian: apt-get install liburing-dev): %s", firstLine(string(out)))
	}
	return bin, cleanup, nil
}

// runC runs a built C reference with args, showing the clock-driven progress
// bar when the run is bounded by time, and returns its stdout and the CPU
// time the whole process used.
func runC(ctx context.Context, e *env, engine string, p *plan, bin string, args []string) (string, time.Duration, error) {
	cmd := exec.CommandContext(ctx, bin, args...)
	e.verbosef("%s run: %s", engine, cmd)
	var stdout, stderr bytes.Buffer
	cmd.Stdout, cmd.Stderr = &stdout, &stderr
	stopBar := func() {}
	if p.ops == 0 {
		stopBar = e.startProgress(engine, &plan{})
	}
	err := cmd.Run()
	stopBar()
	if ctx.Err() != nil {
		return "", 0, ctx.Err()
	}
	if err != nil {
		return "", 0, fmt.Errorf("C reference failed (%v): %s", err, firstLine(stderr.String()))
	}
	var cpu time.Duration
	if ru, ok := cmd.ProcessState.SysUsage().(*syscall.Rusage); ok {
		cpu = time.Duration(ru.Utime.Nano() + ru.Stime.Nano())
	}
	return stdout.String(), cpu, nil
}

// lengthArgs is how a C reference learns the run's length: -n ops or -t seconds.
func lengthArgs(e *env, p *plan) []string {
	if p.ops > 0 {
		return []string{"-n", strconv.FormatInt(p.ops, 10)}
	}
	return []string{"-t", strconv.FormatFloat(e.cfg.duration.Seconds(), 'f', -1, 64)}
}

// runCref builds the C liburing reference (bench/reference/nop.c) in a
// temporary directory and runs it with the same depth and length, so that
// -workload nop compares ringwake with C in one run. It times batches, not
// single ops, so its row has no latencies.
func runCref(ctx context.Context, e *env, p *plan, mode string) (*result, []int64, error) {
	if p.workload != "nop" {
		return nil, nil, skipf("n/a for %s (the C reference runs nop only)", p.workload)
	}
	if e.cfg.feat.sqpoll {
		e.verbosef("cref: the C reference runs without SQPOLL: -sqpoll applies to the ring engine only")
	}
	bin, cleanup, err := buildC(ctx, e, "cref", "nop", bench.NopC)
	if err != nil {
		return nil, nil, err
	}
	defer cleanup()
	out, cpu, err := runC(ctx, e, "cref", p, bin, append([]string{"-q", strconv.Itoa(p.qd)}, lengthArgs(e, p)...))
	if err != nil {
		return nil, nil, err
	}
	var ops int64
	var secs, rate float64
	if _, err := fmt.Sscanf(out, "ops=%d seconds=%g ops_per_s=%g", &ops, &secs, &rate); err != nil {
		return nil, nil, fmt.Errorf("C reference: cannot parse %q: %w", firstLine(out), err)
	}
	r := e.newResult("cref", mode)
	r.finish(ops, time.Duration(secs*float64(time.Second)), cpu)
	return r, nil, nil
}
