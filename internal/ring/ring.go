package ring

import (
	"errors"
	"fmt"
	"math"
	"math/bits"
	"sync/atomic"
	"syscall"
	"time"
	"unsafe"

	"github.com/ringwake/ringwake/sqe"
	"golang.org/x/sys/unix"
)

// Params configures New. The zero value is a 256-entry ring with no optional
// flags.
type Params struct {
	// Entries is the SQ size; 0 means 256. It is rounded up to a power of
	// two and clamped to MaxEntries.
	Entries uint32
	// CQEntries is the CQ size; 0 means twice the SQ size. It is rounded up
	// to a power of two and clamped to MaxCQEntries, and after rounding it
	// must not be smaller than the SQ size.
	CQEntries uint32
	// SQPoll starts a kernel thread that polls the SQ (IORING_SETUP_SQPOLL).
	// The kernel refuses the task-run flags with it, so New drops
	// CoopTaskrun, TaskrunFlag and DeferTaskrun when SQPoll is set and
	// reports them in DroppedFlags.
	SQPoll bool
	// SQThreadIdle is how long the SQPOLL thread spins without work before
	// it sleeps and sets SQNeedWakeup; millisecond granularity, 0 means the
	// kernel default.
	SQThreadIdle time.Duration
	// SQThreadCPU pins the SQPOLL thread (IORING_SETUP_SQ_AFF) when
	// SQThreadCPUSet is true and SQThreadCPU >= 0.
	SQThreadCPU    int
	SQThreadCPUSet bool
	// CoopTaskrun: completions are not pushed with an IPI; they are run when
	// the submitting task next enters the kernel.
	CoopTaskrun bool
	// TaskrunFlag makes the kernel set SQTaskrun when completion work is
	// pending; it needs CoopTaskrun or DeferTaskrun.
	TaskrunFlag bool
	// SingleIssuer promises that only the thread calling New submits: any
	// other thread gets EEXIST from a submitting Enter and from every
	// register call (it may still wait with GETEVENTS unless DeferTaskrun).
	// Callers lock the OS thread.
	SingleIssuer bool
	// DeferTaskrun defers completion work until the issuer thread enters
	// with GETEVENTS; requires SingleIssuer, and only that thread may then
	// wait for completions.
	DeferTaskrun bool
	// NoSQArray drops the SQ indirection array; SQEs are consumed in ring
	// order.
	NoSQArray bool
}

// dropOrder is the order New gives up optional setup flags when the kernel
// answers EINVAL: newest kernel feature first, so an older kernel loses only
// what it does not know.
var dropOrder = [...]uint32{
	SetupNoSQArray,
	SetupDeferTaskrun,
	SetupSingleIssuer,
	SetupTaskrunFlag,
	SetupCoopTaskrun,
	SetupSubmitAll,
	SetupSQAff,
	SetupSQPoll,
	SetupClamp,
	SetupCQSize,
}

// Ring is one io_uring instance and its mapped rings.
type Ring struct {
	fd       int
	flags    uint32
	dropped  uint32
	features uint32
	closed   bool

	// Submission side. sqeTail is the caller-serialized local tail; the
	// kernel sees it only through Publish's store into *sqTail.
	sqHead    *uint32
	sqTail    *uint32
	sqFlags   *uint32
	sqDropped *uint32
	sqMask    uint32
	sqEntries uint32
	sqeTail   uint32
	sqes      unsafe.Pointer // [sqEntries]sqe.SQE in the SQE mmap

	// sqReported is the published tail the last SQPOLL Submit counted up
	// to: the SQ thread consumes entries at its own pace, so the count a
	// submit reports is what was published since, not what is still
	// pending (which the thread may already have taken).
	sqReported atomic.Uint32

	// Completion side. cqHeadLocal is owned by the single consumer and
	// mirrors *cqHead, which only the consumer writes.
	cqHead      *uint32
	cqTail      *uint32
	cqFlags     *uint32
	cqOverflow  *uint32
	cqMask      uint32
	cqEntries   uint32
	cqHeadLocal uint32
	cqeSlice    []CQE // the CQE array in the CQ ring mmap

	ringMem []byte // SQ ring, and CQ ring too under FEAT_SINGLE_MMAP
	cqMem   []byte // CQ ring when mapped separately
	sqeMem  []byte

	// bufs keeps registered buffers reachable: the kernel holds their pages.
	bufs [][]byte

	// probe is taken once in New, on the creating thread: with
	// SINGLE_ISSUER any other thread's register call fails with EEXIST.
	// Immutable afterwards; nil if the kernel refused the probe.
	probe *Probe

	// soft is the software engine standing in for the kernel (NewSoft);
	// nil on an io_uring ring.
	soft *softEngine
}

// New sets up a ring. Optional flags the kernel rejects with EINVAL are
// dropped one at a time, newest first, and the setup retried; SetupFlags and
// DroppedFlags tell what happened. Refusal of io_uring itself (ENOSYS, EPERM,
// EACCES) and every other failure return an error wrapping the errno.
func New(p Params) (*Ring, error) {
	sq, cq, flags, dropped, err := p.resolve()
	if err != nil {
		return nil, err
	}
	var kp params
	fd := -1
	for {
		kp = params{flags: flags}
		if flags&SetupCQSize != 0 {
			kp.cqEntries = cq
		}
		if flags&SetupSQPoll != 0 {
			kp.sqThreadIdle = idleMillis(p.SQThreadIdle)
		}
		if flags&SetupSQAff != 0 {
			kp.sqThreadCPU = uint32(p.SQThreadCPU)
		}
		var errno syscall.Errno
		fd, errno = sysSetup(sq, &kp)
		if errno == 0 {
			break
		}
		if errno == syscall.EINVAL {
			if f := nextDrop(flags); f != 0 {
				flags, dropped = fixDeps(flags&^f, dropped|f)
				continue
			}
		}
		return nil, fmt.Errorf("ringwake: io_uring_setup(entries=%d, flags=%#x): %w", sq, flags, errno)
	}
	r := &Ring{fd: fd, flags: flags, dropped: dropped, features: kp.features}
	if err := r.mapRings(&kp); err != nil {
		r.unmap()
		unix.Close(fd)
		return nil, err
	}
	r.probe, _ = r.Probe()
	return r, nil
}

// resolve validates p and computes the SQ/CQ sizes and the flags to try.
func (p *Params) resolve() (sq, cq, flags, dropped uint32, err error) {
	if p.SQThreadIdle < 0 {
		return 0, 0, 0, 0, fmt.Errorf("ringwake: Params.SQThreadIdle %v is negative", p.SQThreadIdle)
	}
	pin := p.SQThreadCPUSet && p.SQThreadCPU >= 0
	if pin && !p.SQPoll {
		return 0, 0, 0, 0, errors.New("ringwake: Params.SQThreadCPU needs SQPoll")
	}
	if pin && p.SQThreadCPU > math.MaxInt32 {
		return 0, 0, 0, 0, fmt.Errorf("ringwake: Params.SQThreadCPU %d out of range", p.SQThreadCPU)
	}
	if p.DeferTaskrun && !p.SingleIssuer {
		return 0, 0, 0, 0, errors.New("ringwake: Params.DeferTaskrun needs SingleIssuer")
	}
	if p.TaskrunFlag && !p.CoopTaskrun && !p.DeferTaskrun {
		return 0, 0, 0, 0, errors.New("ringwake: Params.TaskrunFlag needs CoopTaskrun or DeferTaskrun")
	}
	sq = p.Entries
	if sq == 0 {
		sq = 256
	}
	sq = roundEntries(sq, MaxEntries)
	flags = SetupClamp
	if p.CQEntries != 0 {
		cq = roundEntries(p.CQEntries, MaxCQEntries)
		if cq < sq {
			return 0, 0, 0, 0, fmt.Errorf("ringwake: Params.CQEntries %d (rounded %d) is smaller than the SQ size %d", p.CQEntries, cq, sq)
		}
		flags |= SetupCQSize
	}
	if p.SQPoll {
		flags |= SetupSQPoll
		if pin {
			flags |= SetupSQAff
		}
	}
	if p.CoopTaskrun {
		flags |= SetupCoopTaskrun
	}
	if p.TaskrunFlag {
		flags |= SetupTaskrunFlag
	}
	if p.SingleIssuer {
		flags |= SetupSingleIssuer
	}
	if p.DeferTaskrun {
		flags |= SetupDeferTaskrun
	}
	if p.NoSQArray {
		flags |= SetupNoSQArray
	}
	if flags&SetupSQPoll != 0 {
		// The kernel refuses IPI-avoidance flags with SQPOLL: completions
		// are already run by the SQ thread, so they would mean nothing.
		ipi := flags & (SetupCoopTaskrun | SetupTaskrunFlag | SetupDeferTaskrun)
		flags &^= ipi
		dropped |= ipi
	}
	return sq, cq, flags, dropped, nil
}

// roundEntries rounds n up to a power of two no larger than max.
func roundEntries(n, max uint32) uint32 {
	if n >= max {
		return max
	}
	return 1 << bits.Len32(n-1)
}

// idleMillis converts d to the kernel's sq_thread_idle milliseconds, rounding
// a positive sub-millisecond value up so it does not become "default".
func idleMillis(d time.Duration) uint32 {
	if d <= 0 {
		return 0
	}
	ms := (d + time.Millisecond - 1) / time.Millisecond
	if ms > math.MaxUint32 {
		return math.MaxUint32
	}
	return uint32(ms)
}

// nextDrop is the newest optional flag still set, or 0.
func nextDrop(flags uint32) uint32 {
	for _, f := range dropOrder {
		if flags&f != 0 {
			return f
		}
	}
	return 0
}

// fixDeps drops flags that became invalid because a flag they need was
// dropped, so a retry is not refused for a combination the caller never asked for.
func fixDeps(flags, dropped uint32) (uint32, uint32) {
	needs := func(f, need uint32) {
		if flags&f != 0 && flags&need == 0 {
			flags &^= f
			dropped |= f
		}
	}
	needs(SetupDeferTaskrun, SetupSingleIssuer)
	needs(SetupTaskrunFlag, SetupCoopTaskrun|SetupDeferTaskrun)
	needs(SetupSQAff, SetupSQPoll)
	return flags, dropped
}

// mapRings maps the SQ ring, CQ ring and SQE array and caches pointers to the
// shared words. On error the caller unmaps whatever was mapped.
func (r *Ring) mapRings(p *params) error {
	sqSize := int(p.sqOff.array) + int(p.sqEntries)*4
	if r.flags&SetupNoSQArray != 0 {
		// No array: the ring ends with the SQ/CQ heads and the CQE array.
		sqSize = 0
	}
	cqSize := int(p.cqOff.cqes) + int(p.cqEntries)*int(unsafe.Sizeof(CQE{}))
	single := r.features&FeatSingleMmap != 0
	if single && cqSize > sqSize {
		sqSize = cqSize
	}
	var err error
	if r.ringMem, err = sysMmap(r.fd, int64(offSQRing), sqSize); err != nil {
		return fmt.Errorf("ringwake: mmap(sq ring, %d bytes): %w", sqSize, err)
	}
	cqMem := r.ringMem
	if !single {
		if r.cqMem, err = sysMmap(r.fd, int64(offCQRing), cqSize); err != nil {
			return fmt.Errorf("ringwake: mmap(cq ring, %d bytes): %w", cqSize, err)
		}
		cqMem = r.cqMem
	}
	sqeSize := int(p.sqEntries) * sqe.Size
	if r.sqeMem, err = sysMmap(r.fd, int64(offSQEs), sqeSize); err != nil {
		return fmt.Errorf("ringwake: mmap(sqes, %d bytes): %w", sqeSize, err)
	}

	sqw := func(off uint32) *uint32 { return (*uint32)(unsafe.Pointer(&r.ringMem[off])) }
	cqw := func(off uint32) *uint32 { return (*uint32)(unsafe.Pointer(&cqMem[off])) }
	r.sqHead = sqw(p.sqOff.head)
	r.sqTail = sqw(p.sqOff.tail)
	r.sqFlags = sqw(p.sqOff.flags)
	r.sqDropped = sqw(p.sqOff.dropped)
	r.sqMask = *sqw(p.sqOff.ringMask)
	r.sqEntries = *sqw(p.sqOff.ringEntries)
	r.sqes = unsafe.Pointer(&r.sqeMem[0])
	r.cqHead = cqw(p.cqOff.head)
	r.cqTail = cqw(p.cqOff.tail)
	r.cqFlags = cqw(p.cqOff.flags)
	r.cqOverflow = cqw(p.cqOff.overflow)
	r.cqMask = *cqw(p.cqOff.ringMask)
	r.cqEntries = *cqw(p.cqOff.ringEntries)
	r.cqeSlice = unsafe.Slice((*CQE)(unsafe.Pointer(&cqMem[p.cqOff.cqes])), r.cqEntries)

	if r.flags&SetupNoSQArray == 0 {
		// Identity mapping, written once: slot i always names SQE i, so
		// submission only ever moves the tail.
		arr := unsafe.Slice((*uint32)(unsafe.Pointer(&r.ringMem[p.sqOff.array])), r.sqEntries)
		for i := range arr {
			arr[i] = uint32(i)
		}
	}
	// Nothing has been submitted yet, so both local indexes start where the
	// kernel says the rings are.
	r.sqeTail = *r.sqTail
	r.sqReported.Store(r.sqeTail)
	r.cqHeadLocal = *r.cqHead
	return nil
}

// unmap releases whatever mappings exist.
func (r *Ring) unmap() {
	for _, m := range []*[]byte{&r.sqeMem, &r.cqMem, &r.ringMem} {
		if *m != nil {
			unix.Munmap(*m)
			*m = nil
		}
	}
}

// Close unmaps the rings and closes the fd; in-flight requests are
// cancelled by the kernel. Close is idempotent but must not run concurrently
// with any other method, and no other method may be called after it.
func (r *Ring) Close() error {
	if r.closed {
		return nil
	}
	r.closed = true
	if r.soft != nil {
		err := r.soft.close()
		r.sqHead, r.sqTail, r.sqFlags, r.sqDropped = nil, nil, nil, nil
		r.cqHead, r.cqTail, r.cqFlags, r.cqOverflow = nil, nil, nil, nil
		r.sqes, r.cqeSlice = nil, nil
		return err
	}
	r.unmap()
	r.sqHead, r.sqTail, r.sqFlags, r.sqDropped = nil, nil, nil, nil
	r.cqHead, r.cqTail, r.cqFlags, r.cqOverflow = nil, nil, nil, nil
	r.sqes, r.cqeSlice = nil, nil
	r.bufs = nil
	fd := r.fd
	r.fd = -1
	if err := unix.Close(fd); err != nil {
		return fmt.Errorf("ringwake: close(ring fd): %w", err)
	}
	return nil
}

// Fd is the ring's file descriptor (-1 after Close).
func (r *Ring) Fd() int { return r.fd }

// SetupFlags are the IORING_SETUP_* flags the kernel accepted.
func (r *Ring) SetupFlags() uint32 { return r.flags }

// DroppedFlags are the requested setup flags New gave up: rejected by the
// kernel with EINVAL, or invalid in combination with SQPoll.
func (r *Ring) DroppedFlags() uint32 { return r.dropped }

// Features are the IORING_FEAT_* flags the kernel reported.
func (r *Ring) Features() uint32 { return r.features }

// SQEntries is the SQ size the kernel allocated.
func (r *Ring) SQEntries() uint32 { return r.sqEntries }

// CQEntries is the CQ size the kernel allocated.
func (r *Ring) CQEntries() uint32 { return r.cqEntries }
