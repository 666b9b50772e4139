package ring

import (
	"errors"
	"fmt"
	"sync/atomic"
	"syscall"
	"time"
	"unsafe"

	iosys "github.com/iceber/iouring-go/syscall"
	"github.com/ringwake/ringwake/sqe"
	"golang.org/x/sys/unix"
)

// GetSQE returns the next free SQE, or nil when the SQ is full. The SQE is
// not zeroed: the caller's Prep writes every field. It becomes visible to the
// kernel only at the next Publish. Not safe for concurrent use.
func (r *Ring) GetSQE() *sqe.SQE {
	tail := r.sqeTail
	// The kernel head never passes the published tail, which never passes
	// the local tail, so this difference cannot wrap.
	if tail-atomic.LoadUint32(r.sqHead) >= r.sqEntries {
		return nil
	}
	r.sqeTail = tail + 1
	return r.sqeAt(tail)
}

// GetSQEs is GetSQE for n SQEs at once: the next n free SQEs, as one run
// or, where they wrap around the array, two; ok is false, and nothing is
// taken, if fewer than n are free. Same serialization as GetSQE.
func (r *Ring) GetSQEs(n uint32) (first, second []sqe.SQE, ok bool) {
	tail := r.sqeTail
	if r.sqEntries-(tail-atomic.LoadUint32(r.sqHead)) < n {
		return nil, nil, false
	}
	r.sqeTail = tail + n
	all := unsafe.Slice((*sqe.SQE)(r.sqes), r.sqEntries)
	i := tail & r.sqMask
	k := min(n, r.sqEntries-i)
	return all[i : i+k], all[:n-k], true
}

// Publish makes every SQE obtained from GetSQE so far visible to the kernel
// (and to an SQPOLL thread). The caller must have finished preparing them.
// Not safe for concurrent use with GetSQE.
func (r *Ring) Publish() {
	// Seq-cst store: the SQE writes above are ordered before the kernel
	// can observe the new tail.
	atomic.StoreUint32(r.sqTail, r.sqeTail)
}

// SQPending is the number of published SQEs the kernel has not consumed.
// Safe for concurrent use.
func (r *Ring) SQPending() uint32 {
	// Head first: a Publish between the two loads can then only make the
	// result larger, never wrap it.
	head := atomic.LoadUint32(r.sqHead)
	return atomic.LoadUint32(r.sqTail) - head
}

// SQSpace is the number of SQEs GetSQE can still hand out. Same
// serialization as GetSQE.
func (r *Ring) SQSpace() uint32 {
	return r.sqEntries - (r.sqeTail - atomic.LoadUint32(r.sqHead))
}

// SQDropped counts SQ array entries the kernel skipped as invalid.
func (r *Ring) SQDropped() uint32 { return atomic.LoadUint32(r.sqDropped) }

// NeedWakeup reports that the SQPOLL thread sleeps and must be woken with
// EnterSQWakeup to see new SQEs.
func (r *Ring) NeedWakeup() bool { return atomic.LoadUint32(r.sqFlags)&SQNeedWakeup != 0 }

// CQOverflow reports that the kernel holds CQEs in its overflow list because
// the CQ was full; they reach the CQ at the next GETEVENTS enter.
func (r *Ring) CQOverflow() bool { return atomic.LoadUint32(r.sqFlags)&SQCQOverflow != 0 }

// TaskrunPending reports (with TASKRUN_FLAG) that completion work waits for
// this task to enter the kernel.
func (r *Ring) TaskrunPending() bool { return atomic.LoadUint32(r.sqFlags)&SQTaskrun != 0 }

// Preallocated so that the errors a busy runtime sees routinely (backpressure,
// bounded waits) cost no allocation.
var (
	errEnterAgain = fmt.Errorf("ringwake: io_uring_enter: %w", syscall.EAGAIN)
	errEnterBusy  = fmt.Errorf("ringwake: io_uring_enter: %w", syscall.EBUSY)
	errEnterTime  = fmt.Errorf("ringwake: io_uring_enter: %w", syscall.ETIME)
	errNoExtArg   = fmt.Errorf("ringwake: io_uring_enter: timed wait needs IORING_FEAT_EXT_ARG (Linux 5.11): %w", syscall.ENOTSUP)
)

func enterError(errno syscall.Errno) error {
	switch errno {
	case syscall.EAGAIN:
		return errEnterAgain
	case syscall.EBUSY:
		return errEnterBusy
	case syscall.ETIME:
		return errEnterTime
	}
	return fmt.Errorf("ringwake: io_uring_enter: %w", errno)
}

// Enter is io_uring_enter(2): submit up to toSubmit published SQEs and, with
// EnterGetEvents, wait until minComplete CQEs are ready. EINTR is retried; it
// is only returned by the kernel when nothing was submitted, so a retry never
// submits twice. Safe for concurrent use (the kernel serializes submission).
func (r *Ring) Enter(toSubmit, minComplete, flags uint32) (int, error) {
	if r.soft != nil {
		return r.soft.enter(toSubmit, minComplete, flags, 0, false)
	}
	for {
		n, _, errno := unix.Syscall6(iosys.SYS_IO_URING_ENTER, uintptr(r.fd),
			uintptr(toSubmit), uintptr(minComplete), uintptr(flags), 0, 0)
		if errno == 0 {
			return int(n), nil
		}
		if errno != syscall.EINTR {
			return 0, enterError(errno)
		}
	}
}

// EnterTimeout is Enter with the wait bounded by timeout (EnterExtArg is
// added to flags). A wait that times out returns an error wrapping
// syscall.ETIME, unless SQEs were submitted in the same call, in which case
// the kernel reports only their count. After an EINTR the wait goes on
// until timeout after the first interruption, so the call waits at most
// twice timeout in all: the clock is read only when a signal interrupts,
// not on every call.
func (r *Ring) EnterTimeout(toSubmit, minComplete, flags uint32, timeout time.Duration) (int, error) {
	if r.soft != nil {
		return r.soft.enter(toSubmit, minComplete, flags, timeout, true)
	}
	if r.features&FeatExtArg == 0 {
		return 0, errNoExtArg
	}
	var deadline time.Time
	var a extArg
	a.arg.sigmaskSz = nsig8
	a.arg.ts = &a.ts
	for {
		if timeout < 0 {
			timeout = 0
		}
		a.ts = timespec{sec: int64(timeout / time.Second), nsec: int64(timeout % time.Second)}
		n, _, errno := unix.Syscall6(iosys.SYS_IO_URING_ENTER, uintptr(r.fd),
			uintptr(toSubmit), uintptr(minComplete), uintptr(flags|EnterExtArg),
			uintptr(unsafe.Pointer(&a)), unsafe.Sizeof(a.arg))
		if errno == 0 {
			return int(n), nil
		}
		if errno != syscall.EINTR {
			return 0, enterError(errno)
		}
		if deadline.IsZero() {
			deadline = time.Now().Add(timeout)
		}
		timeout = time.Until(deadline)
	}
}

// needsFlush reports kernel-held completion state that only an enter with
// GETEVENTS moves into the CQ: overflowed CQEs, or deferred task work.
func (r *Ring) needsFlush() bool {
	return atomic.LoadUint32(r.sqFlags)&(SQCQOverflow|SQTaskrun) != 0
}

// Submit hands the published SQEs to the kernel and returns how many it
// consumed. It does not Publish on the caller's behalf: SQEs prepared after
// GetSQE are submitted once the caller's Publish made them visible, which
// keeps Submit safe to call from any goroutine while another one prepares
// SQEs under the caller's lock.
//
// Without SQPOLL it enters with SQPending() (adding GETEVENTS when the kernel
// holds overflowed CQEs or task work) and does no syscall when there is
// nothing to do. With SQPOLL it enters only to wake a sleeping SQ thread or
// to flush, and reports the SQEs published since the last submit as
// consumed: each published SQE is counted by exactly one submit, even when
// the SQ thread took it before the call.
//
// EAGAIN and EBUSY (the kernel is short of request memory or completion
// space) come back as errors wrapping them: the caller reaps completions
// and retries; Submit itself never spins.
func (r *Ring) Submit() (int, error) {
	pending := r.SQPending()
	var flags uint32
	if r.needsFlush() {
		flags = EnterGetEvents
	}
	if r.flags&SetupSQPoll != 0 {
		if r.NeedWakeup() {
			flags |= EnterSQWakeup
		}
		if flags == 0 {
			return r.sqPollReport(), nil
		}
		if _, err := r.Enter(pending, 0, flags); err != nil {
			return 0, err
		}
		return r.sqPollReport(), nil
	}
	if pending == 0 && flags == 0 {
		return 0, nil
	}
	return r.Enter(pending, 0, flags)
}

// SubmitChunks is Submit with at most chunk SQEs per io_uring_enter (chunk 0:
// no limit). The kernel plugs the block layer for a submission of more than
// two SQEs and dispatches the plugged I/O only at its end; on virtio-blk here
// one plug of 32 random reads cost a quarter of the IOPS that groups of four
// reach (docs/benchmarks.md). A link chain is never cut: an enter that ends
// inside a chain would end the chain there, so a chunk stretches to the
// chain's last SQE. When a chunk completed within its enter (page-cache
// hits, NOPs), nothing of it went to a device and the rest goes in one enter.
// The SQPOLL thread and the software engine consume the SQ
// themselves; for them this is Submit.
//
// Callers serialize SubmitChunks with every other submitting Enter on the
// ring: it reads the flags of published SQEs, whose slots another enter
// would hand back to the producer.
func (r *Ring) SubmitChunks(chunk uint32) (int, error) {
	if chunk == 0 || r.soft != nil || r.flags&SetupSQPoll != 0 {
		return r.Submit()
	}
	total := 0
	for {
		head := atomic.LoadUint32(r.sqHead)
		pending := atomic.LoadUint32(r.sqTail) - head
		var flags uint32
		if r.needsFlush() {
			flags = EnterGetEvents
		}
		if pending == 0 && flags == 0 {
			return total, nil
		}
		n := min(pending, chunk)
		for n < pending && r.sqeAt(head+n-1).Flags&(sqe.IOLink|sqe.IOHardlink) != 0 {
			n++
		}
		if chunkHook != nil {
			chunkHook(n)
		}
		before := atomic.LoadUint32(r.cqTail)
		got, err := r.Enter(n, 0, flags)
		total += got
		if err != nil || got == 0 || n == pending {
			return total, err
		}
		if atomic.LoadUint32(r.cqTail)-before >= uint32(got) {
			// Completed during the enter (page-cache hits, NOPs): nothing
			// went to a device, and the rest likely will not either.
			n, err := r.Submit()
			return total + n, err
		}
	}
}

// chunkHook, set only by tests, sees the size of each chunked enter.
var chunkHook func(n uint32)

// sqeAt is the SQE at ring position pos.
func (r *Ring) sqeAt(pos uint32) *sqe.SQE {
	return (*sqe.SQE)(unsafe.Add(r.sqes, uintptr(pos&r.sqMask)*sqe.Size))
}

// SubmitAndWait is Submit plus waiting for waitNr ready CQEs, in one
// io_uring_enter with GETEVENTS (and SQ_WAKEUP when an SQPOLL thread sleeps).
// Same publication rule and error contract as Submit.
func (r *Ring) SubmitAndWait(waitNr uint32) (int, error) {
	flags := EnterGetEvents
	if r.flags&SetupSQPoll != 0 {
		if r.NeedWakeup() {
			flags |= EnterSQWakeup
		}
		if _, err := r.Enter(r.SQPending(), waitNr, flags); err != nil {
			return 0, err
		}
		return r.sqPollReport(), nil
	}
	return r.Enter(r.SQPending(), waitNr, flags)
}

// sqPollReport counts the SQEs published since the last SQPOLL submit. The
// CAS makes concurrent submits count each SQE once, and one that read an
// older tail than another already reported counts nothing.
func (r *Ring) sqPollReport() int {
	for {
		from := r.sqReported.Load()
		tail := atomic.LoadUint32(r.sqTail)
		if int32(tail-from) <= 0 {
			return 0
		}
		if r.sqReported.CompareAndSwap(from, tail) {
			return int(tail - from)
		}
	}
}

// IsBackpressure reports whether err from Submit or SubmitAndWait means "reap
// completions, then retry" (EAGAIN or EBUSY).
func IsBackpressure(err error) bool {
	return errors.Is(err, syscall.EAGAIN) || errors.Is(err, syscall.EBUSY)
}
