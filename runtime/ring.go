// Package runtime is ringwake's public API: an io_uring ring that any
// goroutine submits to, blocking calls that park the caller until the
// completion arrives, callback submissions that run on the ring's poller
// goroutine, and File, a drop-in for *os.File whose reads and writes go
// through the ring.
//
// Import it under another name, since it shares its name with Go's runtime:
//
//	import ringwake "github.com/ringwake/ringwake/runtime"
package runtime

import (
	"context"
	"errors"
	"fmt"
	"math"
	"os"
	"reflect"
	"sync"
	"sync/atomic"
	"syscall"
	"time"
	"unsafe"

	"golang.org/x/sys/unix"

	"github.com/ringwake/ringwake/poller"
	"github.com/ringwake/ringwake/sqe"
)

var (
	// ErrClosed is returned (wrapped) by calls on a closed Ring or File, and
	// by calls that a Close cut short.
	ErrClosed = poller.ErrClosed
	// ErrUnsupported is returned (wrapped, with the kernel's reason) by New
	// where the kernel refuses io_uring, and by calls whose opcode the
	// running kernel lacks.
	ErrUnsupported = errors.New("ringwake: io_uring unsupported")
)

// Config sets a Ring up.
type Config struct {
	// Entries is the submission queue size and the number of requests that
	// may be in flight at once; 0 means 256. It is rounded up to a power of
	// two and clamped to the kernel's maximum (32768).
	Entries uint32
	// CQEntries is the completion queue size; 0 means 2*Entries, so the CQ
	// cannot overflow in normal use.
	CQEntries uint32
	// SQPoll starts a kernel thread that polls the submission queue, saving
	// the io_uring_enter per batch at the cost of a busy core.
	SQPoll bool
	// SQThreadIdle is how long the SQPOLL thread spins before it sleeps.
	SQThreadIdle time.Duration
	// CoopTaskrun sets IORING_SETUP_COOP_TASKRUN|TASKRUN_FLAG: completions
	// are run when the poller next enters the kernel instead of by an
	// interrupt. Off by default; measure before use.
	CoopTaskrun bool
	// IOPerEnter caps the SQEs handed to the kernel in one io_uring_enter
	// while reads or writes are among them; 0 means 4, negative means no
	// cap. The kernel holds back (plugs) the block I/O of a larger
	// submission until all of it is issued; on the virtio disk measured in
	// docs/benchmarks.md, one enter per 32 random reads lost a quarter of the
	// IOPS that groups of four reach. Submissions without block I/O (NOPs,
	// fsync, timeouts) are never split, and neither is a linked chain.
	IOPerEnter int
	// SharedThread keeps the poller an ordinary goroutine. By default, with
	// GOMAXPROCS > 1, the poller locks one OS thread while the ring is busy
	// (8 requests in flight, or completions that only run callbacks) and
	// spins on it (at most 10 µs) instead of yielding before it sleeps in
	// the kernel, so that the thread that submits is the thread that waits:
	// io_uring hands each completion to its submitting thread, and a poller
	// moving between threads pays an extra cross-CPU wake-up for them (a few
	// percent of 4 KiB O_DIRECT read IOPS at depth 32, and most of their
	// p99.9: docs/benchmarks.md, "What was tried and did not help"). Set it
	// when few requests each wake many goroutines from a callback (a group
	// commit: wal does), which a
	// yielding poller runs on its own P at once where a dedicated one leaves
	// them to another P whose thread must be woken first; or when a P held
	// by the poller's spin costs more, e.g. at GOMAXPROCS=2 with CPU-bound
	// goroutines.
	SharedThread bool
	// NoCacheFastPath sends every File read through the ring. By default a
	// File opened without O_DIRECT first tries preadv2(RWF_NOWAIT) on the
	// calling goroutine, which the kernel answers at once when the data is
	// in the page cache, and with EAGAIN, at the cost of one short syscall,
	// when it is not; then the read goes through the ring. That is the
	// attempt io_uring itself makes at submission, without the round trip
	// through the poller and the wake-up after it (docs/benchmarks.md:
	// cached 4 KiB reads). Ring.ReadAt on a bare descriptor always uses the
	// ring: only a File knows its descriptor is not O_DIRECT, for which
	// RWF_NOWAIT would wait for the device on the caller's thread.
	NoCacheFastPath bool
	// OnCallbackPanic receives the value of a panic raised by a Submit
	// callback, which the poller recovers from. Nil re-panics it on a new
	// goroutine, crashing the program as an unrecovered panic would.
	OnCallbackPanic func(v any)
	// Fallback makes New return a Ring on the portable engine (a bounded pool
	// of goroutines making the plain syscalls, behind the same ring
	// interface and with the same guarantees) where the kernel refuses
	// io_uring, instead of an error wrapping ErrUnsupported. Backend says
	// which engine runs. SQPoll and CoopTaskrun do not apply to it.
	// The environment variable RINGWAKE_BACKEND=fallback forces the portable
	// engine for every ring, to run a program or test suite on it.
	Fallback bool
	// IOCost is the I/O scheduler's capacity model once a class is
	// registered (NewClass); zero fields take DefaultIOCost's.
	IOCost IOCost
	// Shards is the number of kernel rings, each with its own poller, that the
	// Ring spreads its requests over; 0 means 1.
	//
	// One poller carries a few million completions a second on one P; more
	// shards let completions be reaped on several Ps at once. Each shard has
	// Entries slots (Capacity is their sum) and the Config's other settings.
	// Each P deals its requests to the shards in turn, with no counter
	// that every submitter writes, and a callback's Submit goes to its own
	// shard (see shard.go); a SubmitBatch, a SubmitAndWait and a Do go to one shard
	// whole, so a linked chain never straddles two, and a File's Syncs all go
	// to the shard chosen when it was opened, so they still share fsyncs.
	// Registered buffers and files are registered on every shard under the
	// same index. Callbacks of one shard run one at a time, but callbacks of
	// different shards may run at once: with Shards > 1, state that
	// callbacks share needs a lock. The fallback engine runs one pool per
	// shard.
	Shards int
	// MaxWorkers caps the kernel's io-wq worker threads of each shard:
	// [0] bounded (regular files, block devices), [1] unbounded; 0 keeps the
	// kernel's default (IORING_REGISTER_IOWQ_MAX_WORKERS, 5.15).
	//
	// The kernel punts to an io-wq worker every request it cannot finish
	// without blocking, e.g. a read while the device's queue is full, and
	// by default starts up to 4 per CPU (bounded) and RLIMIT_NPROC
	// (unbounded) of them: each an OS thread of the process. A cap keeps
	// the thread count down where many requests are in flight; the
	// requests beyond it wait in the kernel's queue instead. io-wq pools
	// belong to the OS threads that submit (the poller's, and callers
	// reaping inline); the kernel applies the caps to every thread that
	// has submitted to the ring and to each thread whose first io_uring
	// submission comes later, so a thread that had already submitted to
	// another ring keeps that ring's limits. The fallback engine ignores
	// MaxWorkers: its pool of goroutines is bounded by Entries already.
	MaxWorkers [2]uint32
}

// Backend names of the engines behind a Ring.
const (
	BackendIOUring  = "io_uring"
	BackendFallback = "fallback"
)

// Ring is an io_uring instance with its poller goroutine, or several
// (Config.Shards). It is safe for concurrent use by any number of
// goroutines.
type Ring struct {
	p *poller.Poller // shard 0: the only one unless Config.Shards > 1
	// shards is every shard, p first, when there are more than one; nil
	// otherwise, so an unsharded Ring takes no extra step (see pick).
	shards    []*poller.Poller
	route     routing
	hints     sync.Pool     // *shardHint, one per P in effect (see pickShard)
	nextHint  atomic.Uint32 // assigns a shard to a P the pool has no hint for: cold
	rr        atomic.Uint32 // routeRoundRobin only: the shared counter measured against hints
	reapers   []shardReaper // per shard: where its reaper's stack is while it runs callbacks
	files     fileTable
	fastReads bool // Files opened without O_DIRECT try preadv2(RWF_NOWAIT) first
	cls       classes
	ioCost    IOCost
}

// Stats are a poller's counters.
type Stats = poller.Stats

// New sets up a ring and starts its poller. Where the kernel refuses
// io_uring (ENOSYS, EPERM from a seccomp profile or io_uring_disabled),
// the error wraps both ErrUnsupported and the kernel's errno.
func New(cfg Config) (*Ring, error) {
	if cfg.Shards < 0 || cfg.Shards > maxShards {
		return nil, fmt.Errorf("ringwake: Config.Shards %d: want 0..%d: %w", cfg.Shards, maxShards, syscall.EINVAL)
	}
	n := max(cfg.Shards, 1)
	pc := poller.Config{
		Entries:         cfg.Entries,
		CQEntries:       cfg.CQEntries,
		SQPoll:          cfg.SQPoll,
		SQThreadIdle:    cfg.SQThreadIdle,
		CoopTaskrun:     cfg.CoopTaskrun,
		IOPerEnter:      cfg.IOPerEnter,
		SharedThread:    cfg.SharedThread,
		OnCallbackPanic: cfg.OnCallbackPanic,
		Soft:            os.Getenv("RINGWAKE_BACKEND") == BackendFallback,
	}
	r := &Ring{fastReads: !cfg.NoCacheFastPath, ioCost: cfg.IOCost}
	if n > 1 {
		pc.Group = new(poller.Group)
		r.shards = make([]*poller.Poller, 0, n)
		r.hints.New = r.newHint
		r.reapers = make([]shardReaper, n)
	}
	for i := range n {
		if r.shards != nil {
			pc.OnCallbacks = r.markReaper(i)
		}
		p, err := poller.New(pc)
		if err != nil && refused(err) && i == 0 {
			if !cfg.Fallback {
				return nil, fmt.Errorf("%w (io_uring_setup refused: %v; Config.Fallback runs on the portable engine instead): %w", ErrUnsupported, err, err)
			}
			pc.Soft = true
			p, err = poller.New(pc)
		}
		if err == nil {
			if err = setMaxWorkers(p, cfg.MaxWorkers); err != nil {
				p.Close()
			}
		}
		if err != nil {
			if r.p != nil {
				r.Close()
			}
			return nil, err
		}
		if i == 0 {
			r.p = p
		}
		if r.shards != nil {
			r.shards = append(r.shards, p)
		}
	}
	return r, nil
}

// maxShards bounds Config.Shards: each shard is a kernel ring, a poller
// goroutine and, while busy, an OS thread.
const maxShards = 1024

// setMaxWorkers applies Config.MaxWorkers to one shard's ring.
func setMaxWorkers(p *poller.Poller, limits [2]uint32) error {
	if limits == ([2]uint32{}) {
		return nil
	}
	for _, l := range limits {
		if l > math.MaxInt32 {
			return fmt.Errorf("ringwake: Config.MaxWorkers %v: a limit above %d: %w", limits, math.MaxInt32, syscall.EINVAL)
		}
	}
	if _, err := p.Ring().SetIOWQMaxWorkers(limits); err != nil {
		if errors.Is(err, syscall.EINVAL) {
			return fmt.Errorf("%w (Config.MaxWorkers needs IORING_REGISTER_IOWQ_MAX_WORKERS, Linux 5.15): %w", ErrUnsupported, err)
		}
		return err
	}
	return nil
}

// refused tells io_uring being unavailable (no syscall, a seccomp profile,
// the io_uring_disabled sysctl) from a setup that merely failed.
func refused(err error) bool {
	return errors.Is(err, syscall.ENOSYS) || errors.Is(err, syscall.EPERM) || errors.Is(err, syscall.EACCES)
}

// shardList is every shard's poller.
func (r *Ring) shardList() []*poller.Poller {
	if r.shards == nil {
		return []*poller.Poller{r.p}
	}
	return r.shards
}

// Backend says which engine runs the ring: BackendIOUring or BackendFallback.
func (r *Ring) Backend() string {
	if r.p.Soft() {
		return BackendFallback
	}
	return BackendIOUring
}

// Close cancels what is in flight, waits until the kernel has let go of
// every buffer, fires every outstanding callback exactly once (with
// -ECANCELED for what was canceled), wakes every blocked caller with
// ErrClosed, stops the poller and releases the ring; on a sharded Ring,
// every shard's. It is idempotent.
func (r *Ring) Close() error {
	r.closeClasses()
	if r.shards == nil {
		return r.p.Close()
	}
	var errs []error
	for _, p := range r.shards {
		errs = append(errs, p.Close())
	}
	return errors.Join(errs...)
}

// Stats returns the poller's counters: on a sharded Ring, the sum of every
// shard's.
func (r *Ring) Stats() Stats {
	if r.shards == nil {
		return r.p.Stats()
	}
	var sum Stats
	sv := reflect.ValueOf(&sum).Elem()
	for _, st := range r.ShardStats() {
		v := reflect.ValueOf(st)
		for i := range sv.NumField() {
			sv.Field(i).SetUint(sv.Field(i).Uint() + v.Field(i).Uint())
		}
	}
	return sum
}

// ShardStats returns each shard's counters; Stats returns their sum.
func (r *Ring) ShardStats() []Stats {
	ps := r.shardList()
	out := make([]Stats, len(ps))
	for i, p := range ps {
		out[i] = p.Stats()
	}
	return out
}

// Capacity is how many requests may be in flight at once: Entries (rounded
// as Config says) per shard.
func (r *Ring) Capacity() int {
	n := 0
	for _, p := range r.shardList() {
		n += p.Capacity()
	}
	return n
}

// Supports reports whether the running kernel implements opcode op.
func (r *Ring) Supports(op uint8) bool { return r.p.Ring().Supports(op) }

// Submit copies s into the ring (its UserData belongs to the runtime) and
// fires done on the goroutine that reaps the ring, with the completion's
// res and flags: exactly once per completion, or once with res = -ECANCELED
// if the ring closes first. That goroutine is the poller, or, while the
// poller sleeps, a blocking call reaping its own request inline (see
// ReadAt); either way one at a time, never two callbacks at once. done must not block; it may call Submit to refill, at most
// once per completion it receives, since a Submit that finds every slot in
// flight sleeps. The caller keeps any memory s points to alive until done has
// run. Linked SQEs (IOLink, IOHardlink) are refused: a lone link would chain
// to another goroutine's request. A request the kernel cancels on its own
// (it never ran: io-wq could not start a worker under a storm of signals)
// is submitted again, at once and then after pauses, for about a second
// before done gets -ECANCELED, as blocking calls are (docs/reliability.md).
func (r *Ring) Submit(s *sqe.SQE, done func(res int32, flags uint32)) error {
	if s != nil && !r.supported(s.Opcode) {
		return unsupported(s.Opcode)
	}
	if sc := r.cls.sched.Load(); sc != nil {
		return r.submitClass(sc, sc.def, s, done)
	}
	return r.pickSpread().Submit(s, done)
}

func (r *Ring) supported(op uint8) bool {
	// Every kernel with the ring layout we require has these; skip the probe.
	if op <= sqe.OpWrite {
		return true
	}
	return r.p.Ring().Supports(op)
}

func unsupported(op uint8) error {
	return fmt.Errorf("%w: the kernel lacks opcode %s", ErrUnsupported, sqe.OpName(op))
}

// OpError is a failed ring call: the operation, its descriptor, and the
// cause, a syscall.Errno for kernel errors (errors.Is(err, syscall.EBADF)).
type OpError struct {
	Op  string
	Fd  int
	Err error
}

func (e *OpError) Error() string {
	return fmt.Sprintf("ringwake: %s fd %d: %v", e.Op, e.Fd, e.Err)
}
func (e *OpError) Unwrap() error { return e.Err }

// do runs one blocking request and maps the kernel result to Go's
// conventions. keep is the memory the kernel uses until the completion.
func (r *Ring) do(ctx context.Context, op string, fd int, s *sqe.SQE, keep unsafe.Pointer) (int32, error) {
	res, _, err := r.pdo(ctx, r.pick(), s, keep, 0)
	if err != nil {
		return 0, &OpError{Op: op, Fd: fd, Err: err}
	}
	if res < 0 {
		return 0, opErr(op, fd, res)
	}
	return res, nil
}

// errDirectAlign explains the usual EINVAL on an O_DIRECT descriptor.
var errDirectAlign = fmt.Errorf("%w (O_DIRECT needs the buffer address, offset and length aligned to the device's logical block size, usually 512 or 4096 bytes; AlignedBuffer makes such buffers)", syscall.EINVAL)

func opErr(op string, fd int, res int32) error {
	errno := syscall.Errno(-res)
	if errno == syscall.EINVAL && fd >= 0 {
		// Only on this error path: one fcntl to tell a misaligned O_DIRECT transfer apart.
		if fl, err := unix.FcntlInt(uintptr(fd), unix.F_GETFL, 0); err == nil && fl&unix.O_DIRECT != 0 {
			return &OpError{Op: op, Fd: fd, Err: errDirectAlign}
		}
	}
	return &OpError{Op: op, Fd: fd, Err: errno}
}

// Nop sends a no-op through the ring and waits for its completion.
func (r *Ring) Nop(ctx context.Context) error {
	var s sqe.SQE
	s.PrepNop()
	_, err := r.do(ctx, "nop", -1, &s, nil)
	return err
}

func checkOff(op string, fd int, off int64) error {
	if off < 0 {
		// io_uring reads -1 as "the file position": a negative offset must never reach it.
		return &OpError{Op: op, Fd: fd, Err: fmt.Errorf("negative offset %d: %w", off, syscall.EINVAL)}
	}
	return nil
}

// ReadAt is one pread(2) of p at off through the ring: it may be short, and
// returns 0, nil at the end of the file. When ctx ends first, the read is
// canceled and ReadAt returns ctx.Err() only after the kernel has let go of
// p, so p may be reused at once.
//
// Like every blocking call, a ReadAt that finds the ring idle (its poller
// asleep after a spell of fewer than 8 requests in flight) and whose ctx
// cannot end (context.Background(), as File.ReadAt uses) submits and waits
// on its own goroutine: two io_uring_enter calls and no goroutine woken, as
// a C program would do it. Stats.Inline counts those calls.
func (r *Ring) ReadAt(ctx context.Context, fd int, p []byte, off int64) (int, error) {
	if err := checkOff("read", fd, off); err != nil {
		return 0, err
	}
	var s sqe.SQE
	s.PrepRead(int32(fd), p, uint64(off))
	res, err := r.do(ctx, "read", fd, &s, unsafe.Pointer(unsafe.SliceData(p)))
	if err != nil {
		return 0, err
	}
	return int(res), nil
}

// WriteAt is one pwrite(2) of p at off through the ring: it may be short.
func (r *Ring) WriteAt(ctx context.Context, fd int, p []byte, off int64) (int, error) {
	if err := checkOff("write", fd, off); err != nil {
		return 0, err
	}
	var s sqe.SQE
	s.PrepWrite(int32(fd), p, uint64(off))
	res, err := r.do(ctx, "write", fd, &s, unsafe.Pointer(unsafe.SliceData(p)))
	if err != nil {
		return 0, err
	}
	return int(res), nil
}

// Fsync is fsync(2), or fdatasync(2) when datasync is set, through the ring.
func (r *Ring) Fsync(ctx context.Context, fd int, datasync bool) error {
	var s sqe.SQE
	var flags uint32
	if datasync {
		flags = sqe.FsyncDatasync
	}
	s.PrepFsync(int32(fd), flags)
	_, err := r.do(ctx, "fsync", fd, &s, nil)
	return err
}

// openat is openat(2) through the ring; op names the call in errors.
func (r *Ring) openat(ctx context.Context, op string, dirfd int, name string, flag int, perm uint32) (int, error) {
	path, err := syscall.BytePtrFromString(name)
	if err != nil {
		return -1, &os.PathError{Op: op, Path: name, Err: err}
	}
	var s sqe.SQE
	s.PrepOpenat(int32(dirfd), path, uint32(flag|syscall.O_CLOEXEC), perm)
	res, _, err := r.pdo(ctx, r.pick(), &s, unsafe.Pointer(path), 0)
	if err == nil && res < 0 {
		err = syscall.Errno(-res)
	}
	if err != nil {
		return -1, &os.PathError{Op: op, Path: name, Err: err}
	}
	return int(res), nil
}

// SubmitBatch submits ss in order as one unit, with one io_uring_enter at
// most: no other goroutine's SQE lands between them, so IOLink and
// IOHardlink chains (say a write linked to its fdatasync) stay whole. The
// last SQE must not carry a link flag. dones[i] fires for ss[i] as with
// Submit; a request whose link broke completes with -ECANCELED. At most
// poller.MaxBatch (64) SQEs, and no more than the ring's capacity.
func (r *Ring) SubmitBatch(ss []sqe.SQE, dones []func(res int32, flags uint32)) error {
	for i := range ss {
		if !r.supported(ss[i].Opcode) {
			return unsupported(ss[i].Opcode)
		}
	}
	return r.pickSpread().SubmitBatch(ss, dones)
}
