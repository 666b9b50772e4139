package main

import (
	"context"
	"fmt"
	"slices"
	"strconv"
	"strings"
	"time"

	"github.com/ringwake/ringwake/bench"
)

// cpeakWorkloads are the workloads bench/reference/peak.c runs; fsync is
// not one: its write-then-fsync pairs have no batched C counterpart here.
var cpeakWorkloads = []string{"nop", "randread", "randwrite", "read", "write", "randrw"}

// batches is the submit and complete batch of the cpeak and fio engines,
// capped at the depth as fio's t/io_uring caps them.
func (c *config) batches() (submit, complete int) {
	return min(c.submitBatch, c.qd), min(c.completeBatch, c.qd)
}

// cpeakMode is cpeak's mode column: its batch shape, then the features.
func (c *config) cpeakMode() string {
	s, cb := c.batches()
	m := fmt.Sprintf("s%dc%d", s, cb) + c.feat.suffix()
	if c.cpeakPlain {
		m += "+plainring"
	}
	return m
}

// cpeakArgs is peak.c's command line for plan p: the same file, block size,
// depth, seed (hence the same offsets per in-flight slot and the same written
// data), length and io_uring features as the other engines.
func cpeakArgs(e *env, p *plan) []string {
	sb, cb := e.cfg.batches()
	args := []string{"-w", p.workload, "-q", strconv.Itoa(p.qd), "-s", strconv.Itoa(sb), "-c", strconv.Itoa(cb),
		"-S", strconv.FormatUint(p.seed, 10), "-g", strconv.FormatUint(p.tag, 10)}
	if e.tgt != nil {
		args = append(args, "-f", e.tgt.path, "-b", strconv.FormatInt(p.bs, 10), "-N", strconv.FormatInt(p.nblocks, 10))
		if e.tgt.direct {
			args = append(args, "-D")
		}
	}
	f := e.cfg.feat
	if f.fixedbufs {
		args = append(args, "-F")
	}
	if f.registerfiles {
		args = append(args, "-R")
	}
	if f.sqpoll {
		args = append(args, "-P", strconv.FormatInt(f.sqpollIdle.Milliseconds(), 10))
	}
	if e.cfg.cpeakPlain {
		args = append(args, "-x")
	}
	return append(args, lengthArgs(e, p)...)
}

// cpeakOut is peak.c's one line of results.
type cpeakOut struct {
	ops          int64
	seconds, cpu float64
	lat          latency
	enters       int64
	setup        uint64
	regring      bool
	written      []int64
}

func parseCpeak(out string) (*cpeakOut, error) {
	line := firstLine(out)
	kv := map[string]string{}
	for _, f := range strings.Fields(line) {
		k, v, _ := strings.Cut(f, "=")
		kv[k] = v
	}
	var o cpeakOut
	var errs []string
	num := func(k string, dst *int64) {
		n, err := strconv.ParseInt(kv[k], 0, 64)
		if err != nil {
			errs = append(errs, k)
		}
		*dst = n
	}
	flt := func(k string, dst *float64) {
		x, err := strconv.ParseFloat(kv[k], 64)
		if err != nil {
			errs = append(errs, k)
		}
		*dst = x
	}
	var setup, regring int64
	num("ops", &o.ops)
	flt("seconds", &o.seconds)
	flt("cpu_s", &o.cpu)
	num("p50", &o.lat.P50)
	num("p99", &o.lat.P99)
	num("p999", &o.lat.P999)
	num("max", &o.lat.Max)
	num("enters", &o.enters)
	num("setup", &setup)
	num("regring", &regring)
	o.setup, o.regring = uint64(setup), regring == 1
	if w, ok := kv["written"]; !ok {
		errs = append(errs, "written")
	} else if w != "" {
		for _, s := range strings.Split(w, ",") {
			off, err := strconv.ParseInt(s, 10, 64)
			if err != nil {
				errs = append(errs, "written")
				break
			}
			o.written = append(o.written, off)
		}
	}
	if len(errs) > 0 {
		return nil, fmt.Errorf("C reference: cannot parse %s in %q", strings.Join(errs, ", "), line)
	}
	return &o, nil
}

// setupNames names the io_uring setup flags peak.c may set.
func setupNames(flags uint64) string {
	var ns []string
	for _, f := range []struct {
		bit  uint64
		name string
	}{{1 << 1, "SQPOLL"}, {1 << 8, "COOP_TASKRUN"}, {1 << 12, "SINGLE_ISSUER"}, {1 << 13, "DEFER_TASKRUN"}} {
		if flags&f.bit != 0 {
			ns = append(ns, f.name)
		}
	}
	if len(ns) == 0 {
		return "none"
	}
	return strings.Join(ns, "|")
}

// runCpeak builds bench/reference/peak.c and runs it on the run's file: the
// C liburing anchor every other engine's IOPS is compared with. Its CPU per
// op is what the C process used over its measured loop (getrusage, io-wq
// workers included), so compiling and starting it do not count.
func runCpeak(ctx context.Context, e *env, p *plan, mode string) (*result, []int64, error) {
	if !slices.Contains(cpeakWorkloads, p.workload) {
		return nil, nil, skipf("n/a for %s (the C anchor runs %s)", p.workload, strings.Join(cpeakWorkloads, ", "))
	}
	bin, cleanup, err := buildC(ctx, e, "cpeak", "peak", bench.PeakC)
	if err != nil {
		return nil, nil, err
	}
	defer cleanup()
	out, _, err := runC(ctx, e, "cpeak", p, bin, cpeakArgs(e, p))
	if err != nil {
		return nil, nil, err
	}
	o, err := parseCpeak(out)
	if err != nil {
		return nil, nil, err
	}
	sb, cb := e.cfg.batches()
	regring := "not registered"
	if o.regring {
		regring = "registered"
	}
	e.verbosef("cpeak/%s: %d requests in flight, submitted %d at a time, at least %d reaped per wait: %d requests in %d io_uring_enter calls (%.1f per enter); ring setup flags %s, ring descriptor %s",
		mode, p.qd, sb, cb, o.ops, o.enters, float64(o.ops)/float64(max(o.enters, 1)), setupNames(o.setup), regring)
	if p.needsWriteBuf() {
		e.verbosef("cpeak/%s: writes the same headers and pattern as the Go engines: its sampled blocks are read back", mode)
	}
	r := e.newResult("cpeak", mode)
	r.finish(o.ops, time.Duration(o.seconds*float64(time.Second)), time.Duration(o.cpu*float64(time.Second)))
	if o.ops > 0 {
		lat := o.lat
		r.Lat = &lat
	}
	return r, o.written, nil
}
