package main

import (
	"errors"
	"flag"
	"fmt"
	"io"
	"math"
	"slices"
	"strconv"
	"strings"
	"time"
)

// Workloads, in the order -h lists them.
var workloads = []string{"nop", "randread", "randwrite", "read", "write", "randrw", "fsync"}

// classWorkloads run on ringwake alone, for -time, with their own output:
// mixed (I/O classes) and calibrate (the device's ringwake.IOCost).
var classWorkloads = []string{"mixed", "calibrate"}

// Ring engine modes, in the order -mode all runs them.
var ringModes = []string{"block", "callback", "batch"}

// Engines in the order -engine all runs them; the first one present is the
// base of the ratio column.
var engineNames = []string{"ring", "gofile", "fio", "cpeak", "cref"}

const (
	// maxQD allows the many-goroutine runs (10,000 blocking readers) and
	// keeps a callback slot's index within 16 bits.
	maxQD = 16384
	// maxBS keeps one request well within the SQE's 32-bit length.
	maxBS = 16 << 20
	// maxBuffers bounds a run's buffers: a read and a write buffer per slot.
	maxBuffers = 1 << 30
)

// directMode is tri-state because the default run picks O_DIRECT only where
// the file system allows it, while an explicit -direct must not silently
// degrade to buffered I/O.
type directMode int

const (
	directAuto directMode = iota
	directOn
	directOff
)

// config is the validated command line.
type config struct {
	workload string
	bs       int64
	qd       int
	size     int64
	file     string
	direct   directMode
	duration time.Duration
	ops      int64
	modes    []string // ring modes, in run order
	engines  []string // in run order
	explicit map[string]bool
	json     bool
	seed     uint64
	keep     bool
	force    bool
	verbose  bool
	cache    string
	cpuprof  string
	memprof  string
	feat     features // io_uring features for the ring and fio engines

	submitBatch   int  // cpeak and fio: requests per submission
	completeBatch int  // cpeak and fio: completions waited for once the queue is full
	cpeakPlain    bool // cpeak: a ring without t/io_uring's setup flags

	ioPerEnter    int       // ringwake.Config.IOPerEnter
	cacheFastPath bool      // !ringwake.Config.NoCacheFastPath
	sharedThread  bool      // ringwake.Config.SharedThread
	shards        int       // ringwake.Config.Shards
	maxWorkers    [2]uint32 // ringwake.Config.MaxWorkers

	// -workload mixed: the background writer and the classes' shares;
	// capacity is ringwake.IOCost.Capacity (0: the default).
	bgBS               int64
	bgQD               int
	fgShares, bgShares uint32
	capacity           uint64
	// slices is how many turns the mixed phases take (see runMixed).
	slices int
}

// usageError is a bad command line: exit status 2, reported before any work.
type usageError struct{ msg string }

func (e *usageError) Error() string { return e.msg }

func usagef(format string, args ...any) error {
	return &usageError{fmt.Sprintf(format, args...)}
}

// sizeValue is a byte count flag that takes k/m/g/t suffixes (powers of 1024).
type sizeValue int64

func (v *sizeValue) String() string { return formatBytes(int64(*v)) }

func (v *sizeValue) Set(s string) error {
	n, err := parseSize(s)
	if err != nil {
		return err
	}
	*v = sizeValue(n)
	return nil
}

// parseSize reads "4096", "4k", "4K", "4KiB", "256m", "1g", "1t".
func parseSize(s string) (int64, error) {
	t := strings.ToLower(strings.TrimSpace(s))
	t = strings.TrimSuffix(t, "ib")
	t = strings.TrimSuffix(t, "b")
	shift := 0
	if n := len(t); n > 0 {
		switch t[n-1] {
		case 'k':
			shift = 10
		case 'm':
			shift = 20
		case 'g':
			shift = 30
		case 't':
			shift = 40
		}
		if shift != 0 {
			t = t[:n-1]
		}
	}
	n, err := strconv.ParseInt(t, 10, 64)
	if err != nil || n < 0 {
		return 0, fmt.Errorf("%q is not a size (examples: 4096, 4k, 256m, 1g)", s)
	}
	if n > math.MaxInt64>>shift {
		return 0, fmt.Errorf("size %q is too large", s)
	}
	return n << shift, nil
}

// formatBytes prints n in the largest binary unit that divides it exactly.
func formatBytes(n int64) string {
	units := []string{"B", "KiB", "MiB", "GiB", "TiB"}
	u := 0
	for u < len(units)-1 && n != 0 && n%1024 == 0 {
		n /= 1024
		u++
	}
	return fmt.Sprintf("%d %s", n, units[u])
}

// parseFlags turns args into a validated config. Every error it returns is a
// *usageError; flag.ErrHelp is returned as is.
func parseFlags(args []string, stderr io.Writer) (*config, error) {
	fs := flag.NewFlagSet("uringbench", flag.ContinueOnError)
	// The flag package's own error text plus the full usage is many lines; we
	// print one line ourselves.
	fs.SetOutput(io.Discard)
	bs := sizeValue(4 << 10)
	bgBS := sizeValue(128 << 10)
	size := sizeValue(256 << 20)
	var (
		workload = fs.String("workload", "randread", "one of "+strings.Join(append(workloads, classWorkloads...), "|")+" (fsync: write -bs then fsync, per op; mixed: -bs reads at -qd against -bg-bs writes at -bg-qd, without and with I/O classes; calibrate: prints the device's ringwake.IOCost)")
		qd       = fs.Int("qd", 32, "requests in flight (goroutines in block mode)")
		file     = fs.String("file", "", "file or block device to run on (default: a temporary file in the working directory, removed afterwards unless -keep)")
		direct   = fs.Bool("direct", false, "O_DIRECT with aligned buffers (default: on where the file system allows it)")
		dur      = fs.Duration("time", 5*time.Second, "run time per engine")
		ops      = fs.Int64("ops", 0, "stop each engine after this many ops instead of after -time")
		mode     = fs.String("mode", "both", "ring engine mode: block (a goroutine per request, blocking calls), callback (Submit callbacks refill the queue), batch (a goroutine per 32 in flight, Ring.Do batches of 32), both (block,callback), all (block,callback,batch), or a comma-separated list")
		engine   = fs.String("engine", "all", "comma-separated engines to run in order: ring, gofile, fio, cpeak (C liburing loop at the depth, batched like fio's t/io_uring), cref (C liburing NOP reference, nop only), or all")
		sBatch   = fs.Int("submit-batch", 4, "cpeak and fio engines: requests prepared per submission (fio iodepth_batch_submit; capped at -qd)")
		cBatch   = fs.Int("complete-batch", 4, "cpeak and fio engines: once the queue is full, completions waited for before reaping every one that has arrived (fio iodepth_batch_complete_min, with _max = -qd; capped at -qd)")
		plain    = fs.Bool("cpeak-plain", false, "cpeak engine: a plain ring instead of t/io_uring's COOP_TASKRUN|SINGLE_ISSUER|DEFER_TASKRUN and registered ring descriptor")
		jsonOut  = fs.Bool("json", false, "print a JSON array, one object per engine, instead of the table")
		seed     = fs.Uint64("seed", 1, "seed for random offsets and the data pattern")
		keep     = fs.Bool("keep", false, "keep the file uringbench created")
		force    = fs.Bool("force", false, "allow writing workloads on a file uringbench did not create (destroys its contents)")
		verbose  = fs.Bool("v", false, "print the decisions taken, the fio job and the C reference build")
		cpuprof  = fs.String("cpuprofile", "", "write a CPU profile of the whole run to this file")
		memprof  = fs.String("memprofile", "", "write an allocation profile to this file at the end (every allocation sampled)")
		cache    = fs.String("cache", "cold", "page cache state before each engine for buffered runs: cold (dropped with posix_fadvise DONTNEED) or warm (the whole file read in first)")
		fixed    = fs.Bool("fixedbufs", false, "ring and fio engines: one registered buffer per in-flight request (READ_FIXED/WRITE_FIXED; fio fixedbufs=1)")
		regfiles = fs.Bool("registerfiles", false, "ring and fio engines: the file goes through the registered file table (IOSQE_FIXED_FILE; fio registerfiles=1)")
		sqpoll   = fs.Bool("sqpoll", false, "ring and fio engines: a kernel thread polls the submission queue (IORING_SETUP_SQPOLL; fio sqthread_poll=1, which also registers fio's file)")
		sqIdle   = fs.Duration("sqpoll-idle", defaultSQPollIdle, "with -sqpoll: how long the ring's SQPOLL thread spins without work before it sleeps (ms granularity; 0 is the kernel's default, 1s, which fio uses)")
		perEnter = fs.Int("io-per-enter", 0, "ring engine: most reads/writes per io_uring_enter (ringwake.Config.IOPerEnter; 0 is ringwake's default, 4; -1 means no cap)")
		shared   = fs.Bool("shared-thread", false, "ring engine: the poller stays an ordinary goroutine instead of locking an OS thread (ringwake.Config.SharedThread)")
		bgQD     = fs.Int("bg-qd", 64, "mixed: the background writer's depth (goroutines)")
		fgShares = fs.Uint("fg-shares", 1000, "mixed: the foreground class's shares")
		bgShares = fs.Uint("bg-shares", 50, "mixed: the background class's shares")
		capacity = fs.Uint64("capacity", 0, "mixed: ringwake.IOCost.Capacity, the cost in flight at the device (0: ringwake's default)")
		nslices  = fs.Int("slices", 6, "mixed: the phases take turns in this many slices of -time/slices each, in a rotating order, so that a slow spell of the device or the machine falls on every phase alike")
		shards   = fs.Int("shards", 1, "ring engine: kernel rings, each with its own poller, the Ring spreads its requests over (ringwake.Config.Shards)")
		maxWork  = fs.Int("max-workers", 0, "ring engine: cap on each shard's io-wq worker threads, bounded and unbounded alike (ringwake.Config.MaxWorkers; 0 keeps the kernel's default)")
		fastPath = fs.Bool("cache-fastpath", true, "ring engine, block mode: buffered reads try preadv2(RWF_NOWAIT) before the ring, as ringwake.File does by default; false sends every read through the ring")
	)
	fs.Var(&bs, "bs", "block size per request (units k/m/g)")
	fs.Var(&bgBS, "bg-bs", "mixed: the background writer's block size")
	fs.Var(&size, "size", "bytes of the file to run on (units k/m/g)")
	fs.Usage = func() {}
	if err := fs.Parse(args); err != nil {
		if errors.Is(err, flag.ErrHelp) {
			fs.SetOutput(stderr)
			fmt.Fprintln(stderr, "usage: uringbench [flags]\n\nRuns a storage workload on ringwake and on the alternatives, side by side.")
			fs.PrintDefaults()
			return nil, err
		}
		return nil, &usageError{err.Error()}
	}
	if fs.NArg() > 0 {
		return nil, usagef("unexpected argument %q (all options are flags)", fs.Arg(0))
	}
	c := &config{
		workload: *workload,
		bs:       int64(bs),
		qd:       *qd,
		size:     int64(size),
		file:     *file,
		duration: *dur,
		ops:      *ops,
		json:     *jsonOut,
		seed:     *seed,
		keep:     *keep,
		force:    *force,
		verbose:  *verbose,
		cache:    *cache,
		cpuprof:  *cpuprof,
		memprof:  *memprof,
		explicit: map[string]bool{},
		feat:     features{fixedbufs: *fixed, registerfiles: *regfiles, sqpoll: *sqpoll, sqpollIdle: *sqIdle},

		submitBatch:   *sBatch,
		completeBatch: *cBatch,
		cpeakPlain:    *plain,

		ioPerEnter:    *perEnter,
		cacheFastPath: *fastPath,
		sharedThread:  *shared,

		bgBS:       int64(bgBS),
		bgQD:       *bgQD,
		fgShares:   uint32(*fgShares),
		bgShares:   uint32(*bgShares),
		capacity:   *capacity,
		slices:     *nslices,
		shards:     *shards,
		maxWorkers: [2]uint32{uint32(max(*maxWork, 0)), uint32(max(*maxWork, 0))},
	}
	if *shards < 1 || *shards > 1024 {
		return nil, usagef("-shards %d: want 1..1024", *shards)
	}
	if *maxWork < 0 || *maxWork > 1<<20 {
		return nil, usagef("-max-workers %d: want 0..%d", *maxWork, 1<<20)
	}
	fs.Visit(func(f *flag.Flag) { c.explicit[f.Name] = true })
	switch {
	case !c.explicit["direct"]:
		c.direct = directAuto
	case *direct:
		c.direct = directOn
	default:
		c.direct = directOff
	}
	switch *mode {
	case "both":
		c.modes = []string{"block", "callback"}
	case "all":
		c.modes = ringModes
	default:
		for _, m := range strings.Split(*mode, ",") {
			m = strings.TrimSpace(m)
			if !slices.Contains(ringModes, m) {
				return nil, usagef("unknown -mode %q (want block, callback, batch, both, all or a list)", m)
			}
			if !slices.Contains(c.modes, m) {
				c.modes = append(c.modes, m)
			}
		}
	}
	if *engine == "all" {
		c.engines = engineNames
	} else {
		seen := map[string]bool{}
		for _, e := range strings.Split(*engine, ",") {
			e = strings.TrimSpace(e)
			if !slices.Contains(engineNames, e) {
				return nil, usagef("unknown -engine %q (want all or a list of %s)", e, strings.Join(engineNames, ", "))
			}
			if !seen[e] {
				seen[e] = true
				c.engines = append(c.engines, e)
			}
		}
	}
	return c, c.validate()
}

// validate checks what can be checked without touching the file system.
func (c *config) validate() error {
	if !slices.Contains(workloads, c.workload) && !slices.Contains(classWorkloads, c.workload) {
		return usagef("unknown -workload %q (want one of %s)", c.workload, strings.Join(append(workloads, classWorkloads...), ", "))
	}
	if slices.Contains(classWorkloads, c.workload) && c.ops > 0 {
		return usagef("-ops does not apply to -workload %s, which runs for -time", c.workload)
	}
	if c.workload == "calibrate" && c.json {
		return usagef("-json does not apply to -workload calibrate")
	}
	if c.qd < 1 || c.qd > maxQD {
		return usagef("-qd %d out of range (1 to %d)", c.qd, maxQD)
	}
	if c.ops < 0 {
		return usagef("-ops %d is negative", c.ops)
	}
	if c.ops == 0 && c.duration <= 0 {
		return usagef("-time %v must be positive (or give -ops)", c.duration)
	}
	if c.submitBatch < 1 || c.completeBatch < 1 {
		return usagef("-submit-batch %d and -complete-batch %d must be at least 1", c.submitBatch, c.completeBatch)
	}
	if c.cache != "cold" && c.cache != "warm" {
		return usagef("unknown -cache %q (want cold or warm)", c.cache)
	}
	if err := c.validateFeatures(); err != nil {
		return err
	}
	if c.workload == "nop" {
		// nop touches no file: -bs, -size, -direct and -file do not apply.
		return nil
	}
	if c.bs <= 0 {
		return usagef("-bs must be positive")
	}
	if c.bs > maxBS {
		return usagef("-bs %s is larger than %s", formatBytes(c.bs), formatBytes(maxBS))
	}
	if buf := 2 * int64(c.qd) * c.bs; buf > maxBuffers {
		return usagef("-qd %d with -bs %s needs %s of buffers, more than %s", c.qd, formatBytes(c.bs), formatBytes(buf), formatBytes(maxBuffers))
	}
	if c.direct == directOn && c.bs%512 != 0 {
		return usagef("-bs %d is not a multiple of 512, which -direct requires", c.bs)
	}
	if c.direct == directOn && c.cache == "warm" {
		return usagef("-cache warm contradicts -direct: O_DIRECT bypasses the page cache")
	}
	if c.workload == "mixed" && (c.bgBS <= 0 || c.bgBS > maxBS || c.bgQD < 1 || c.bgQD > maxQD || c.bgBS%512 != 0) {
		return usagef("mixed: -bg-bs %s and -bg-qd %d out of range", formatBytes(c.bgBS), c.bgQD)
	}
	if c.workload == "mixed" && (c.slices < 1 || c.slices > 1000) {
		return usagef("mixed: -slices %d out of range (1 to 1000)", c.slices)
	}
	if (c.workload == "mixed" || c.workload == "calibrate") && c.size < max(c.bgBS, 128<<10) {
		return usagef("-size %s is smaller than the background writes", formatBytes(c.size))
	}
	if c.size < c.bs {
		return usagef("-size %s is smaller than -bs %s", formatBytes(c.size), formatBytes(c.bs))
	}
	return nil
}

// writes reports whether the workload modifies the file.
func (c *config) writes() bool {
	switch c.workload {
	case "randwrite", "write", "randrw", "fsync", "mixed", "calibrate":
		return true
	}
	return false
}

// random reports whether offsets are drawn at random rather than in sequence.
func (c *config) random() bool {
	switch c.workload {
	case "randread", "randwrite", "randrw":
		return true
	}
	return false
}
