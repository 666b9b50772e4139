package runtime

import (
	"context"
	"fmt"
	"io"
	"math"
	"math/bits"
	"os"
	"syscall"
	"unsafe"

	"github.com/ringwake/ringwake/poller"
	"github.com/ringwake/ringwake/sqe"
)

// SubmitAndWait submits ss in order and returns when every one has
// completed; res[i] receives ss[i]'s result (the CQE's res: a byte count,
// or a negated errno). len(res) >= len(ss).
//
// The memory an SQE points to (buffers, iovecs, paths) is the caller's to
// keep alive and unmoved until SubmitAndWait returns: allocate it on the
// heap and keep a reference past the call (runtime.KeepAlive). Do, which
// takes Go slices, does that itself.
//
// Any length goes: ss goes down in chunks of at most 64 SQEs and of the
// free slots, never cutting a link chain (IOLink/IOHardlink; the last SQE
// must not carry one), and the caller sleeps once per chunk, woken by the
// poller once for the whole chunk. On an idle ring, with a ctx that cannot
// end, a chunk is submitted and waited for with one io_uring_enter on the
// caller's goroutine, as liburing's io_uring_submit_and_wait does.
//
// When ctx ends, what is in flight is canceled and SubmitAndWait returns
// ctx.Err() only after the kernel has let go of everything it submitted.
// Close ends a waiting batch with ErrClosed.
func (r *Ring) SubmitAndWait(ctx context.Context, ss []sqe.SQE, res []int32) error {
	for i := range ss {
		if !r.supported(ss[i].Opcode) {
			return unsupported(ss[i].Opcode)
		}
	}
	return r.psubmitAndWait(ctx, r.pick(), ss, res, nil)
}

// Op is one read or write of a batch run by Ring.Do.
type Op struct {
	Fd    int
	Write bool   // false: read into Buf; true: write Buf
	Buf   []byte // read into or written from; its memory stays with the kernel until Do returns
	Off   int64
	N     int   // set by Do: bytes transferred
	Err   error // set by Do: nil, or this op's error (an *OpError wrapping the errno, or io.EOF)
}

// BatchError is what Do returns when some of its ops failed: how many, and
// the first failure, which it wraps (errors.Is(err, syscall.EIO) looks at
// that one; each Op.Err has its own).
type BatchError struct {
	Failed, Total int
	Err           error // the first failed op's Err
}

func (e *BatchError) Error() string {
	return fmt.Sprintf("ringwake: %d of %d operations failed; the first: %v", e.Failed, e.Total, e.Err)
}
func (e *BatchError) Unwrap() error { return e.Err }

// window is how many ops Do carries through the ring at once: one chunk.
const window = poller.MaxBatch

// Do runs every op and returns when all have finished: nil if all
// succeeded, else a *BatchError that says how many failed and wraps the
// first. Each op is one pread or pwrite of Buf at Off on Fd, completed as
// File.ReadAt and File.WriteAt complete them: a short transfer goes on from
// where it stopped, a read that reaches the end of the file first sets N
// and io.EOF, and a write the kernel takes none of sets io.ErrShortWrite.
//
// Ops go through the ring 64 at a time, each group in one submission and
// one wake-up (see SubmitAndWait), or one io_uring_enter on an idle ring.
// Ops that fail the checks (a negative Fd or Off, a write of a nil Buf) get
// their Err and never reach the kernel; the others run. Bufs must not
// overlap another op's that is written into. ctx ends every op still in
// flight (canceled in the kernel) with ctx.Err(), after the kernel has let
// go of its buffer. Do makes no allocation when every op succeeds.
func (r *Ring) Do(ctx context.Context, ops []Op) error {
	return r.runOps(ctx, ops, -1, "")
}

// runOps is Do, on fd instead of each Op.Fd when fd >= 0. only, if set,
// is the one direction the caller allows ("read" or "write").
func (r *Ring) runOps(ctx context.Context, ops []Op, fd int, only string) error {
	failed, first := 0, error(nil)
	for base := 0; base < len(ops); base += window {
		w := ops[base:min(base+window, len(ops))]
		r.runWindow(ctx, w, fd, only)
		for i := range w {
			if w[i].Err != nil {
				if failed++; first == nil {
					first = w[i].Err
				}
			}
		}
	}
	if failed > 0 {
		return &BatchError{Failed: failed, Total: len(ops), Err: first}
	}
	return nil
}

func opName(write bool) string {
	if write {
		return "write"
	}
	return "read"
}

// unset marks a result the kernel never gave (its chunk was not submitted).
const unset = math.MinInt32

// runWindow runs at most window ops to their end: rounds of one
// SubmitAndWait each, the next round carrying what came back short.
func (r *Ring) runWindow(ctx context.Context, ops []Op, fd int, only string) {
	var ss [window]sqe.SQE
	var res [window]int32
	var keep [window]unsafe.Pointer
	var at [window]uint8 // ss[j] is ops[at[j]]
	var live uint64      // ops with I/O still to do
	for i := range ops {
		op := &ops[i]
		op.N, op.Err = 0, nil
		opFd := op.Fd
		if fd >= 0 {
			opFd = fd
		}
		name := opName(op.Write)
		switch {
		case only != "" && name != only:
			op.Err = &OpError{Op: name, Fd: opFd, Err: fmt.Errorf("a %s in a batch of %ss: %w", name, only, syscall.EINVAL)}
		case opFd < 0:
			op.Err = &OpError{Op: name, Fd: opFd, Err: syscall.EBADF}
		case op.Off < 0:
			op.Err = &OpError{Op: name, Fd: opFd, Err: fmt.Errorf("negative offset %d: %w", op.Off, syscall.EINVAL)}
		case op.Write && op.Buf == nil:
			op.Err = &OpError{Op: name, Fd: opFd, Err: fmt.Errorf("write of a nil buffer: %w", syscall.EINVAL)}
		case len(op.Buf) > 0:
			live |= 1 << i
		}
	}
	shard := r.pick() // every round of one Do on one shard: its window stays whole
	for live != 0 {
		k := 0
		for m := live; m != 0; m &= m - 1 {
			i := bits.TrailingZeros64(m)
			op := &ops[i]
			opFd := op.Fd
			if fd >= 0 {
				opFd = fd
			}
			p := op.Buf[op.N:]
			if op.Write {
				ss[k].PrepWrite(int32(opFd), p, uint64(op.Off)+uint64(op.N))
			} else {
				ss[k].PrepRead(int32(opFd), p, uint64(op.Off)+uint64(op.N))
			}
			keep[k] = unsafe.Pointer(unsafe.SliceData(p))
			res[k] = unset
			at[k] = uint8(i)
			k++
		}
		err := r.psubmitAndWait(ctx, shard, ss[:k], res[:k], keep[:k])
		for j := range k {
			i := int(at[j])
			op := &ops[i]
			opFd := op.Fd
			if fd >= 0 {
				opFd = fd
			}
			switch n := res[j]; {
			case err != nil && (n == unset || n == -int32(syscall.ECANCELED) || n == -int32(syscall.EINTR)):
				op.Err = &OpError{Op: opName(op.Write), Fd: opFd, Err: err}
			case n < 0:
				op.Err = opErr(opName(op.Write), opFd, n)
			case n == 0 && op.Write:
				op.Err = &OpError{Op: "write", Fd: opFd, Err: io.ErrShortWrite}
			case n == 0:
				op.Err = io.EOF
			default:
				op.N += int(n)
				if op.N < len(op.Buf) {
					continue // short: the next round carries the rest
				}
			}
			live &^= 1 << i
		}
		if err != nil {
			for m := live; m != 0; m &= m - 1 {
				i := bits.TrailingZeros64(m)
				ops[i].Err = &OpError{Op: opName(ops[i].Write), Fd: ops[i].Fd, Err: err}
			}
			return
		}
	}
}

// ReadAtMany reads every op's Buf at its Off from f (Op.Fd is ignored and
// Op.Write must be false), as Ring.Do does: one submission and one wake-up
// for up to 64 reads. Each op ends as File.ReadAt would: full, or N and
// io.EOF at the end of the file, or an error. It holds the file open for
// the whole batch: a Close meanwhile waits for it (or cancels what is in
// flight, which then fails with os.ErrClosed).
func (f *File) ReadAtMany(ctx context.Context, ops []Op) error {
	return f.many(ctx, ops, "read")
}

// WriteAtMany writes every op's Buf at its Off to f (Op.Fd is ignored and
// Op.Write must be true), as Ring.Do does. It refuses a file opened with
// O_APPEND, as WriteAt does.
func (f *File) WriteAtMany(ctx context.Context, ops []Op) error {
	if f != nil && f.appendMode {
		return &os.PathError{Op: "writeat", Path: f.name, Err: errWriteAtInAppendMode}
	}
	return f.many(ctx, ops, "write")
}

func (f *File) many(ctx context.Context, ops []Op, only string) error {
	if err := f.incref(only); err != nil {
		return err
	}
	defer f.decref()
	err := f.r.runOps(ctx, ops, f.fd, only)
	if be, ok := err.(*BatchError); ok {
		// As File.ReadAt reports them: *os.PathError, and os.ErrClosed
		// for what a Close canceled; io.EOF stays itself.
		be.Err = nil
		for i := range ops {
			if e := ops[i].Err; e != nil && e != io.EOF {
				ops[i].Err = f.pathErr(only, e)
			}
			if be.Err == nil {
				be.Err = ops[i].Err
			}
		}
	}
	return err
}
