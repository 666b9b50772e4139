package main

import (
	"bytes"
	"encoding/json"
	"fmt"
	"io"
	"os"
	goruntime "runtime"
	"slices"
	"strconv"
	"strings"
	"time"
	"unicode/utf8"

	"github.com/HdrHistogram/hdrhistogram-go"
	"golang.org/x/sys/unix"
)

// latency is the lat_ns JSON object.
type latency struct {
	P50  int64 `json:"p50"`
	P99  int64 `json:"p99"`
	P999 int64 `json:"p999"`
	Max  int64 `json:"max"`
}

// result is one engine's row; its JSON form has exactly the keys the issue
// lists. Lat is null for an engine that does not time single ops (cref).
type result struct {
	Engine    string   `json:"engine"`
	Mode      string   `json:"mode"`
	Workload  string   `json:"workload"`
	BS        int64    `json:"bs"`
	QD        int      `json:"qd"`
	Direct    bool     `json:"direct"`
	Ops       int64    `json:"ops"`
	Seconds   float64  `json:"seconds"`
	IOPS      float64  `json:"iops"`
	MiBPerS   float64  `json:"mib_per_s"`
	Lat       *latency `json:"lat_ns"`
	CPUPerMop float64  `json:"cpu_s_per_mop"`
	// Threads is the peak number of OS threads of this process during the
	// run (ring and gofile engines: the Go runtime's, the io-wq workers
	// and SQPOLL threads the kernel starts for the process); 0 for engines
	// that run in another process (fio, cpeak, cref).
	Threads int `json:"threads"`
}

// Latencies from 1ns to 100s at 3 significant digits: 0.1% resolution over
// the whole range, about 240 KiB of counters per histogram.
const (
	histMin    = 1
	histMax    = int64(100 * time.Second)
	histDigits = 3
)

func newHist() *hdrhistogram.Histogram {
	return hdrhistogram.New(histMin, histMax, histDigits)
}

// record adds one latency; out-of-range values are clamped, not dropped, so
// the op count and the histogram count always agree.
func record(h *hdrhistogram.Histogram, ns int64) {
	h.RecordValue(min(max(ns, histMin), histMax))
}

func latencyOf(h *hdrhistogram.Histogram) *latency {
	return &latency{
		P50:  h.ValueAtQuantile(50),
		P99:  h.ValueAtQuantile(99),
		P999: h.ValueAtQuantile(99.9),
		Max:  h.Max(),
	}
}

// cpuTime returns the process's user+system CPU time: it includes the
// runtime's poller goroutine and the kernel's io_uring worker threads, which
// belong to the process.
func cpuTime() time.Duration {
	var ru unix.Rusage
	if err := unix.Getrusage(unix.RUSAGE_SELF, &ru); err != nil {
		return 0
	}
	return time.Duration(ru.Utime.Nano() + ru.Stime.Nano())
}

// meter brackets the measured part of an engine run.
type meter struct {
	t0       time.Time
	cpu0     time.Duration
	mallocs0 uint64
	threads  *threadPeak
}

func startMeter() meter {
	var ms goruntime.MemStats
	goruntime.ReadMemStats(&ms)
	return meter{t0: time.Now(), cpu0: cpuTime(), mallocs0: ms.Mallocs, threads: startThreadPeak()}
}

// threadSample is how often threadPeak reads the thread count: io-wq
// workers live for seconds once started, so a few ms misses none that
// matters, and one read of /proc/self/status costs about 20 µs.
const threadSample = 2 * time.Millisecond

// threadPeak samples the process's OS thread count (the Threads: line of
// /proc/self/status) until stop, and keeps the highest.
type threadPeak struct {
	stopCh chan struct{}
	done   chan int
}

func startThreadPeak() *threadPeak {
	t := &threadPeak{stopCh: make(chan struct{}), done: make(chan int, 1)}
	// One descriptor and one buffer for every sample: the measured loops'
	// allocation count covers the whole process, this goroutine included.
	f, err := os.Open("/proc/self/status")
	go func() {
		if err != nil {
			<-t.stopCh
			t.done <- 0
			return
		}
		defer f.Close()
		buf := make([]byte, 8192)
		peak := osThreads(f, buf)
		tick := time.NewTicker(threadSample)
		defer tick.Stop()
		for {
			select {
			case <-t.stopCh:
				t.done <- max(peak, osThreads(f, buf))
				return
			case <-tick.C:
				peak = max(peak, osThreads(f, buf))
			}
		}
	}()
	return t
}

// stop ends the sampling and returns the peak.
func (t *threadPeak) stop() int {
	close(t.stopCh)
	return <-t.done
}

var threadsKey = []byte("\nThreads:")

// osThreads reads the Threads: count of /proc/self/status (opened as f)
// into buf, without allocating; 0 if unreadable.
func osThreads(f *os.File, buf []byte) int {
	n, err := f.ReadAt(buf, 0)
	if n == 0 && err != nil {
		return 0
	}
	b := buf[:n]
	i := bytes.Index(b, threadsKey)
	if i < 0 {
		return 0
	}
	v := 0
	for _, c := range b[i+len(threadsKey):] {
		switch {
		case c == ' ' || c == '\t':
		case c >= '0' && c <= '9':
			v = v*10 + int(c-'0')
		default:
			return v
		}
	}
	return v
}

// stop fills m's elapsed, cpu and allocs. The heap allocation count is there
// to keep the measured loops honest: it should stay far below one per op.
func (mt meter) stop(m *measured) {
	m.elapsed = time.Since(mt.t0)
	m.cpu = cpuTime() - mt.cpu0
	var ms goruntime.MemStats
	goruntime.ReadMemStats(&ms)
	m.allocs = ms.Mallocs - mt.mallocs0
	m.threads = mt.threads.stop()
}

// finish fills the derived fields of r.
func (r *result) finish(ops int64, elapsed, cpu time.Duration) {
	r.Ops = ops
	r.Seconds = elapsed.Seconds()
	if r.Seconds > 0 {
		r.IOPS = float64(ops) / r.Seconds
	}
	if r.Workload != "nop" {
		r.MiBPerS = r.IOPS * float64(r.BS) / (1 << 20)
	}
	if ops > 0 {
		r.CPUPerMop = cpu.Seconds() / float64(ops) * 1e6
	}
}

func writeJSON(w io.Writer, rs []*result) error {
	if rs == nil {
		rs = []*result{}
	}
	b, err := json.MarshalIndent(rs, "", "  ")
	if err != nil {
		return err
	}
	_, err = fmt.Fprintf(w, "%s\n", b)
	return err
}

// writeTable prints one row per engine, with each engine's IOPS ratio to the
// first and, when cpeak ran, to cpeak's (the C anchor): names left-aligned,
// numbers right-aligned.
func writeTable(w io.Writer, rs []*result) error {
	title := []string{"engine", "mode", "IOPS", "MiB/s", "p50", "p99", "p99.9", "max", "CPU s/Mop", "threads", "vs first"}
	var anchor *result
	if i := slices.IndexFunc(rs, func(r *result) bool { return r.Engine == "cpeak" }); i >= 0 {
		anchor = rs[i]
		title = append(title, "vs cpeak")
	}
	ratio := func(r, base *result) string {
		if base.IOPS <= 0 {
			return "-"
		}
		return fmt.Sprintf("%.2fx", r.IOPS/base.IOPS)
	}
	rows := [][]string{title}
	for _, r := range rs {
		mib := "-"
		if r.Workload != "nop" {
			mib = fmt.Sprintf("%.1f", r.MiBPerS)
		}
		lat := []string{"-", "-", "-", "-"}
		if r.Lat != nil {
			lat = []string{fmtNs(r.Lat.P50), fmtNs(r.Lat.P99), fmtNs(r.Lat.P999), fmtNs(r.Lat.Max)}
		}
		row := []string{r.Engine, r.Mode, fmt.Sprintf("%.0f", r.IOPS), mib}
		row = append(row, lat...)
		threads := "-"
		if r.Threads > 0 {
			threads = strconv.Itoa(r.Threads)
		}
		row = append(row, fmt.Sprintf("%.3f", r.CPUPerMop), threads, ratio(r, rs[0]))
		if anchor != nil {
			row = append(row, ratio(r, anchor))
		}
		rows = append(rows, row)
	}
	width := make([]int, len(rows[0]))
	for _, row := range rows {
		for i, cell := range row {
			width[i] = max(width[i], utf8.RuneCountInString(cell))
		}
	}
	var b strings.Builder
	for _, row := range rows {
		for i, cell := range row {
			pad := strings.Repeat(" ", width[i]-utf8.RuneCountInString(cell))
			if i > 0 {
				b.WriteString("  ")
			}
			if i < 2 {
				b.WriteString(cell + pad)
			} else {
				b.WriteString(pad + cell)
			}
		}
		b.WriteString("\n")
	}
	_, err := io.WriteString(w, b.String())
	return err
}

// fmtNs prints a latency with about three significant digits in a human unit.
func fmtNs(ns int64) string {
	units := []string{"ns", "µs", "ms", "s"}
	v, u := float64(ns), 0
	for v >= 1000 && u < len(units)-1 {
		v /= 1000
		u++
	}
	switch {
	case u == 0 || v >= 100:
		return fmt.Sprintf("%.0f%s", v, units[u])
	case v >= 10:
		return fmt.Sprintf("%.1f%s", v, units[u])
	default:
		return fmt.Sprintf("%.2f%s", v, units[u])
	}
}
