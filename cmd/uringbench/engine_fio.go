package main

import (
	"bytes"
	"context"
	"encoding/json"
	"fmt"
	"os/exec"
	"strconv"
	"strings"
	"time"
)

// fioArgs builds the fio job from the same parameters the other engines
// run with. fio's own hints are switched off (fadvise_hint=0) so that every
// engine meets the same kernel defaults, and norandommap makes fio draw
// offsets with replacement, as the Go engines do.
//
// The job is tuned for peak IOPS at the depth, in cpeak's shape: fio's
// default submits one request per io_uring_enter and is CPU-bound long
// before the device, so it submits -submit-batch at a time
// (iodepth_batch_submit) and, with the queue full, waits for
// -complete-batch completions and reaps up to the depth
// (iodepth_batch_complete_min/max). Polled completions (hipri) stay off:
// no other engine polls.
func fioArgs(e *env, p *plan) []string {
	rw := map[string]string{
		"randread": "randread", "randwrite": "randwrite", "read": "read",
		"write": "write", "randrw": "randrw", "fsync": "write",
	}[p.workload]
	direct, invalidate := "0", "1"
	if e.tgt.direct {
		direct = "1"
	}
	if e.cfg.cache == "warm" {
		invalidate = "0"
	}
	args := []string{
		"--name=uringbench",
		// fio splits filenames at colons unless they are escaped.
		"--filename=" + strings.ReplaceAll(e.tgt.path, ":", `\:`),
		"--ioengine=io_uring",
		"--rw=" + rw,
		"--bs=" + strconv.FormatInt(p.bs, 10),
		"--iodepth=" + strconv.Itoa(p.qd),
		"--size=" + strconv.FormatInt(p.nblocks*p.bs, 10),
		"--direct=" + direct,
		"--invalidate=" + invalidate,
		"--randseed=" + strconv.FormatUint(p.seed, 10),
		"--norandommap=1",
		"--fadvise_hint=0",
		"--allow_file_create=0",
		"--lat_percentiles=1",
		"--percentile_list=50:99:99.9",
		"--output-format=json",
	}
	sb, cb := e.cfg.batches()
	args = append(args, "--iodepth_batch_submit="+strconv.Itoa(sb), "--iodepth_batch_complete_min="+strconv.Itoa(cb),
		"--iodepth_batch_complete_max="+strconv.Itoa(p.qd), "--hipri=0")
	switch p.workload {
	case "randread", "read":
		// fio then cannot write even by mistake: the file may be a user's.
		args = append(args, "--readonly")
	case "randrw":
		args = append(args, "--rwmixread=50", "--unified_rw_reporting=mixed")
	case "fsync":
		args = append(args, "--fsync=1")
	}
	args = append(args, e.cfg.feat.fioArgs()...)
	if p.ops > 0 {
		args = append(args, "--io_size="+strconv.FormatInt(p.ops*p.bs, 10))
	} else {
		args = append(args, "--time_based", "--runtime="+strconv.FormatInt(e.cfg.duration.Milliseconds(), 10)+"ms")
	}
	return args
}

// fioDir is one data direction of a fio job's JSON report.
type fioDir struct {
	TotalIOs int64   `json:"total_ios"`
	IOBytes  int64   `json:"io_bytes"`
	IOPS     float64 `json:"iops"`
	LatNs    struct {
		Max        float64            `json:"max"`
		Percentile map[string]float64 `json:"percentile"`
	} `json:"lat_ns"`
}

type fioReport struct {
	Jobs []struct {
		Error      int     `json:"error"`
		JobRuntime int64   `json:"job_runtime"` // ms
		UsrCPU     float64 `json:"usr_cpu"`     // percent of job_runtime
		SysCPU     float64 `json:"sys_cpu"`
		Read       fioDir  `json:"read"`
		Write      fioDir  `json:"write"`
		Mixed      fioDir  `json:"mixed"`
		Sync       fioDir  `json:"sync"`
	} `json:"jobs"`
}

func runFio(ctx context.Context, e *env, p *plan, mode string) (*result, []int64, error) {
	if p.workload == "nop" {
		return nil, nil, skipf("n/a for nop (fio has no io_uring no-op job; its null engine bypasses io_uring)")
	}
	bin, err := exec.LookPath("fio")
	if err != nil {
		return nil, nil, skipf("not on PATH, skipped (Debian: apt-get install fio)")
	}
	args := fioArgs(e, p)
	sb, cb := e.cfg.batches()
	e.verbosef("fio: tuned for peak IOPS at depth %d: %d requests per submission, with the queue full waits for %d completions and reaps up to %d; hipri off; fixedbufs/registerfiles/sqthread_poll as the ring engine's flags", p.qd, sb, cb, p.qd)
	e.verbosef("fio job: %s %s", bin, strings.Join(args, " "))
	if f := e.cfg.feat; f.sqpoll && !f.registerfiles {
		e.verbosef("fio: sqthread_poll=1 makes fio register its file as well (its io_uring engine requires it); the ring engine registers it only with -registerfiles")
	}
	if p.needsWriteBuf() {
		e.verbosef("fio writes its own data: its blocks are not read back by uringbench")
	}
	cmd := exec.CommandContext(ctx, bin, args...)
	var stdout, stderr bytes.Buffer
	cmd.Stdout, cmd.Stderr = &stdout, &stderr
	stopBar := func() {}
	if p.ops == 0 {
		// fio reports nothing while it runs: the bar can only follow the clock.
		stopBar = e.startProgress("fio", &plan{})
	}
	err = cmd.Run()
	stopBar()
	if ctx.Err() != nil {
		return nil, nil, ctx.Err()
	}
	if err != nil {
		return nil, nil, skipf("fio failed (%v): %s", err, firstLine(stderr.String()+stdout.String()))
	}
	r, err := parseFio(e, p, stdout.Bytes())
	if err != nil {
		return nil, nil, err
	}
	r.Mode = mode
	return r, nil, nil
}

// parseFio turns fio's JSON report into a row. fio's percentiles come from
// its own bins and can land above the recorded max, so they are clamped to it.
func parseFio(e *env, p *plan, out []byte) (*result, error) {
	// fio may print notes before the JSON document.
	if i := bytes.IndexByte(out, '{'); i > 0 {
		out = out[i:]
	}
	var rep fioReport
	if err := json.Unmarshal(out, &rep); err != nil {
		return nil, fmt.Errorf("fio: cannot parse its JSON output: %w", err)
	}
	if len(rep.Jobs) != 1 {
		return nil, fmt.Errorf("fio: %d jobs in its report, want 1", len(rep.Jobs))
	}
	j := rep.Jobs[0]
	if j.Error != 0 {
		return nil, fmt.Errorf("fio: job failed with error %d", j.Error)
	}
	d := j.Read
	switch p.workload {
	case "randrw":
		d = j.Mixed
	case "randwrite", "write", "fsync":
		d = j.Write
	}
	if d.IOBytes != d.TotalIOs*p.bs {
		return nil, fmt.Errorf("fio: %d bytes moved by %d ops of %d bytes", d.IOBytes, d.TotalIOs, p.bs)
	}
	lat := fioLatency(d)
	if p.workload == "fsync" {
		// fio times the write and its fsync separately; adding them
		// percentile by percentile approximates the pair the Go engines time.
		s := fioLatency(j.Sync)
		lat = &latency{P50: lat.P50 + s.P50, P99: lat.P99 + s.P99, P999: lat.P999 + s.P999, Max: lat.Max + s.Max}
	}
	r := e.newResult("fio", "io_uring")
	elapsed := time.Duration(j.JobRuntime) * time.Millisecond
	cpu := time.Duration((j.UsrCPU + j.SysCPU) / 100 * float64(elapsed))
	r.finish(d.TotalIOs, elapsed, cpu)
	r.Lat = lat
	return r, nil
}

func fioLatency(d fioDir) *latency {
	mx := int64(d.LatNs.Max)
	pct := func(k string) int64 { return min(int64(d.LatNs.Percentile[k]), mx) }
	return &latency{P50: pct("50.000000"), P99: pct("99.000000"), P999: pct("99.900000"), Max: mx}
}

func firstLine(s string) string {
	s = strings.TrimSpace(s)
	if i := strings.IndexByte(s, '\n'); i >= 0 {
		s = s[:i]
	}
	if s == "" {
		return "no output"
	}
	return s
}
