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
	cc, err := exec.LookPath("gcc")
	if err != nil {
		return nil, nil, skipf("gcc not on PATH, C reference skipped (Debian: apt-get install gcc liburing-dev)")
	}
	dir, err := os.MkdirTemp("", "uringbench-cref-")
	if err != nil {
		return nil, nil, err
	}
	defer os.RemoveAll(dir)
	src, bin := filepath.Join(dir, "nop.c"), filepath.Join(dir, "nop")
	if err := os.WriteFile(src, bench.NopC, 0o644); err != nil {
		return nil, nil, err
	}
	build := exec.CommandContext(ctx, cc, "-O2", "-o", bin, src, "-luring")
	e.verbosef("cref build: %s", build)
	if out, err := build.CombinedOutput(); err != nil {
		return nil, nil, skipf("cannot build the C reference, skipped (Debian: apt-get install liburing-dev): %s", firstLine(string(out)))
	}
	args := []string{"-q", strconv.Itoa(p.qd)}
	if p.ops > 0 {
		args = append(args, "-n", strconv.FormatInt(p.ops, 10))
	} else {
		args = append(args, "-t", strconv.FormatFloat(e.cfg.duration.Seconds(), 'f', -1, 64))
	}
	cmd := exec.CommandContext(ctx, bin, args...)
	e.verbosef("cref run: %s", cmd)
	var stdout, stderr bytes.Buffer
	cmd.Stdout, cmd.Stderr = &stdout, &stderr
	stopBar := func() {}
	if p.ops == 0 {
		stopBar = e.startProgress("cref", &plan{})
	}
	err = cmd.Run()
	stopBar()
	if ctx.Err() != nil {
		return nil, nil, ctx.Err()
	}
	if err != nil {
		return nil, nil, fmt.Errorf("C reference failed (%v): %s", err, firstLine(stderr.String()))
	}
	var ops int64
	var secs, rate float64
	if _, err := fmt.Sscanf(stdout.String(), "ops=%d seconds=%g ops_per_s=%g", &ops, &secs, &rate); err != nil {
		return nil, nil, fmt.Errorf("C reference: cannot parse %q: %w", firstLine(stdout.String()), err)
	}
	var cpu time.Duration
	if ru, ok := cmd.ProcessState.SysUsage().(*syscall.Rusage); ok {
		cpu = time.Duration(ru.Utime.Nano() + ru.Stime.Nano())
	}
	r := e.newResult("cref", mode)
	r.finish(ops, time.Duration(secs*float64(time.Second)), cpu)
	return r, nil, nil
}
