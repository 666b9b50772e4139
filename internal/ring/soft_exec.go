package ring

import (
	"encoding/binary"
	"math"
	"math/bits"
	"sync"
	"syscall"
	"time"
	"unsafe"

	"github.com/ringwake/ringwake/sqe"
	"golang.org/x/sys/unix"
)

// softOps is what the engine implements: Probe and Supports answer from it,
// and any other opcode completes with -EINVAL.
var softOps = func() (t [probeOps]bool) {
	for _, op := range []uint8{
		sqe.OpNop, sqe.OpReadv, sqe.OpWritev, sqe.OpFsync, sqe.OpReadFixed,
		sqe.OpWriteFixed, sqe.OpPollAdd, sqe.OpPollRemove, sqe.OpSyncFileRange,
		sqe.OpTimeout, sqe.OpTimeoutRemove, sqe.OpAsyncCancel, sqe.OpLinkTimeout,
		sqe.OpFallocate, sqe.OpOpenat, sqe.OpClose, sqe.OpStatx, sqe.OpRead,
		sqe.OpWrite, sqe.OpFadvise, sqe.OpFtruncate,
		sqe.OpRenameat, sqe.OpUnlinkat, sqe.OpMkdirat, sqe.OpSymlinkat, sqe.OpLinkat,
	} {
		t[op] = true
	}
	return t
}()

// softSQEFlags are the SQE flags the engine honours; IOSQE_ASYNC changes
// nothing here, every request is already asynchronous.
const softSQEFlags = sqe.FixedFile | sqe.IOLink | sqe.IOHardlink | sqe.Async | sqe.CQESkipSuccess

// uioMaxIOV is UIO_MAXIOV, the most iovecs one readv/writev takes.
const uioMaxIOV = 1024

// opHasFd reports opcodes whose Fd names the file they operate on (as
// opposed to a directory fd, or none), so FixedFile applies to them.
func opHasFd(op uint8) bool {
	switch op {
	case sqe.OpReadv, sqe.OpWritev, sqe.OpFsync, sqe.OpReadFixed, sqe.OpWriteFixed,
		sqe.OpPollAdd, sqe.OpSyncFileRange, sqe.OpFallocate, sqe.OpRead, sqe.OpWrite,
		sqe.OpFadvise, sqe.OpFtruncate:
		return true
	}
	return false
}

func isRWOp(op uint8) bool {
	switch op {
	case sqe.OpReadv, sqe.OpWritev, sqe.OpReadFixed, sqe.OpWriteFixed, sqe.OpRead, sqe.OpWrite:
		return true
	}
	return false
}

func isWriteOp(op uint8) bool {
	return op == sqe.OpWrite || op == sqe.OpWritev || op == sqe.OpWriteFixed
}

// prep does to the copied SQE what the kernel does at submission: resolve the
// fixed file and buffer, read the timespec, validate. A failure is kept as
// the request's result, reported when its turn in the chain comes.
func (e *softEngine) prep(q *softReq) {
	q.hard = q.s.Flags&sqe.IOHardlink != 0
	if errno := e.prepOp(q); errno != 0 {
		q.prepErr = -int32(errno)
	}
}

func (e *softEngine) prepOp(q *softReq) syscall.Errno {
	s := &q.s
	if s.Flags&^softSQEFlags != 0 || s.Personality != 0 || !softOps[s.Opcode] {
		return syscall.EINVAL
	}
	switch {
	case opHasFd(s.Opcode) && s.Flags&sqe.FixedFile != 0:
		f, errno := e.getFixed(s.Fd)
		if errno != 0 {
			return errno
		}
		q.fixed, q.fd = f, f.fd
	case opHasFd(s.Opcode):
		if s.Fd < 0 {
			return syscall.EBADF
		}
		q.fd = int(s.Fd)
	case s.Flags&sqe.FixedFile != 0 && s.Opcode == sqe.OpClose:
		return syscall.EBADF
	case s.Flags&sqe.FixedFile != 0 && isPathOp(s.Opcode):
		return syscall.EBADF // io_uring/fs.c refuses a fixed directory fd so
	case s.Flags&sqe.FixedFile != 0:
		return syscall.EINVAL
	}
	switch s.Opcode {
	case sqe.OpNop:
		if s.OpFlags&^nopInjectResult != 0 {
			return syscall.EINVAL
		}
	case sqe.OpReadFixed, sqe.OpWriteFixed:
		b, errno := e.getBuf(s.BufIndex, s.Addr, s.Len)
		if errno != 0 {
			return errno
		}
		q.buf = b
	case sqe.OpReadv, sqe.OpWritev:
		if s.Len > uioMaxIOV {
			return syscall.EINVAL
		}
		if s.Flags&sqe.IOLink != 0 && !q.hard {
			return e.prepIovTotal(q)
		}
	case sqe.OpFsync:
		if s.OpFlags&^sqe.FsyncDatasync != 0 {
			return syscall.EINVAL
		}
	case sqe.OpTimeout, sqe.OpLinkTimeout:
		return e.prepTimeout(q)
	case sqe.OpPollAdd:
		// Updates are not implemented, nor a level-triggered multishot.
		if s.Len&^(sqe.PollAddLevel|sqe.PollAddMulti) != 0 || s.Len == sqe.PollAddLevel|sqe.PollAddMulti {
			return syscall.EINVAL
		}
		q.mpoll = s.Len&sqe.PollAddMulti != 0
		ev := s.OpFlags
		if isBigEndian {
			ev = ev<<16 | ev>>16
		}
		q.pollEv = int16(uint16(ev))
	case sqe.OpOpenat:
		// Installing straight into the fixed table is not implemented.
		if s.SpliceFdIn != 0 {
			return syscall.EINVAL
		}
	case sqe.OpRenameat, sqe.OpUnlinkat, sqe.OpMkdirat, sqe.OpSymlinkat, sqe.OpLinkat:
		return prepPathOp(s)
	case sqe.OpClose:
		if s.Off != 0 || s.Addr != 0 || s.Len != 0 || s.OpFlags != 0 || s.BufIndex != 0 ||
			(s.SpliceFdIn != 0 && s.Fd != 0) {
			return syscall.EINVAL
		}
	}
	return 0
}

// prepIovTotal reads the iovec array of a linked READV/WRITEV to know what
// a short transfer is.
func (e *softEngine) prepIovTotal(q *softReq) syscall.Errno {
	raw := make([]byte, 16*int(q.s.Len))
	if errno := e.copier.copyIn(raw, q.s.Addr); errno != 0 {
		return errno
	}
	for i := 0; i < len(raw); i += 16 {
		q.total += binary.NativeEndian.Uint64(raw[i+8:])
	}
	return 0
}

// prepTimeout validates a TIMEOUT or LINK_TIMEOUT and reads its timespec now,
// as the kernel does: the caller may reuse it once Enter returns.
func (e *softEngine) prepTimeout(q *softReq) syscall.Errno {
	s := &q.s
	link := s.Opcode == sqe.OpLinkTimeout
	allowed := sqe.TimeoutAbs | sqe.TimeoutClockMask
	if !link {
		allowed |= sqe.TimeoutETimeSuccess | sqe.TimeoutMultishot
	}
	if s.OpFlags&^allowed != 0 || s.Len != 1 || s.BufIndex != 0 || s.SpliceFdIn != 0 ||
		bits.OnesCount32(s.OpFlags&sqe.TimeoutClockMask) > 1 {
		return syscall.EINVAL
	}
	q.multi = s.OpFlags&sqe.TimeoutMultishot != 0
	q.abs = s.OpFlags&sqe.TimeoutAbs != 0
	switch {
	case q.multi && q.abs, link && s.Off != 0:
		return syscall.EINVAL
	case q.multi:
		q.count = uint32(min(s.Off, math.MaxUint32))
	case s.Off != 0:
		// Completion after a count of other CQEs is not implemented.
		return syscall.EINVAL
	}
	var raw [16]byte
	if errno := e.copier.copyIn(raw[:], s.Addr); errno != 0 {
		return errno
	}
	sec := int64(binary.NativeEndian.Uint64(raw[0:]))
	nsec := int64(binary.NativeEndian.Uint64(raw[8:]))
	if sec < 0 || nsec < 0 {
		return syscall.EINVAL
	}
	ns := int64(math.MaxInt64) // saturate: a timeout of centuries is "never"
	if sec < math.MaxInt64/int64(time.Second) {
		if whole := sec * int64(time.Second); nsec <= math.MaxInt64-whole {
			ns = whole + nsec
		}
	}
	if q.abs {
		q.absNs = ns
		q.clock = unix.CLOCK_MONOTONIC
		switch {
		case s.OpFlags&sqe.TimeoutBoottime != 0:
			q.clock = unix.CLOCK_BOOTTIME
		case s.OpFlags&sqe.TimeoutRealtime != 0:
			q.clock = unix.CLOCK_REALTIME
		}
	} else {
		q.dur = time.Duration(ns)
	}
	return 0
}

func clockNow(clock int32) int64 {
	var ts unix.Timespec
	unix.ClockGettime(clock, &ts)
	return ts.Nano()
}

// execute makes q's syscall on a worker. park != 0 asks the worker to park
// q until its descriptor is ready for those events.
func (e *softEngine) execute(q *softReq) (res int32, park int16) {
	s := &q.s
	fd := uintptr(q.fd)
	switch s.Opcode {
	case sqe.OpRead, sqe.OpWrite, sqe.OpReadFixed, sqe.OpWriteFixed, sqe.OpReadv, sqe.OpWritev:
		return e.execRW(q)
	case sqe.OpFsync:
		nr := uintptr(unix.SYS_FSYNC)
		if s.OpFlags&sqe.FsyncDatasync != 0 {
			nr = unix.SYS_FDATASYNC
		}
		return sysRetry(nr, fd, 0, 0, 0), 0
	case sqe.OpSyncFileRange:
		return sysRetry(unix.SYS_SYNC_FILE_RANGE, fd, uintptr(s.Off), uintptr(s.Len), uintptr(s.OpFlags)), 0
	case sqe.OpFallocate:
		return sysRetry(unix.SYS_FALLOCATE, fd, uintptr(s.Len), uintptr(s.Off), uintptr(s.Addr)), 0
	case sqe.OpFadvise:
		return sysRetry(unix.SYS_FADVISE64, fd, uintptr(s.Off), uintptr(s.Len), uintptr(s.OpFlags)), 0
	case sqe.OpFtruncate:
		return sysRetry(unix.SYS_FTRUNCATE, fd, uintptr(s.Off), 0, 0), 0
	case sqe.OpOpenat:
		return sysRetry(unix.SYS_OPENAT, uintptr(int(s.Fd)), uintptr(s.Addr), uintptr(s.OpFlags|unix.O_LARGEFILE), uintptr(s.Len)), 0
	case sqe.OpStatx:
		r, _, errno := unix.Syscall6(unix.SYS_STATX, uintptr(int(s.Fd)), uintptr(s.Addr), uintptr(s.OpFlags), uintptr(s.Len), uintptr(s.Off), 0)
		return sysRes(r, errno), 0
	case sqe.OpRenameat, sqe.OpUnlinkat, sqe.OpMkdirat, sqe.OpSymlinkat, sqe.OpLinkat:
		return execPathOp(s), 0
	case sqe.OpClose:
		if s.SpliceFdIn != 0 {
			return -int32(e.closeFixed(uint32(s.SpliceFdIn) - 1)), 0
		}
		// Never retried: on Linux the descriptor is gone even after EINTR.
		r, _, errno := unix.Syscall(unix.SYS_CLOSE, uintptr(int(s.Fd)), 0, 0)
		return sysRes(r, errno), 0
	}
	return -int32(syscall.EINVAL), 0
}

// sysRetry is a syscall retried on EINTR, for the calls where EINTR means
// nothing happened.
func sysRetry(nr, a1, a2, a3, a4 uintptr) int32 {
	for {
		r, _, errno := unix.Syscall6(nr, a1, a2, a3, a4, 0, 0)
		if errno != syscall.EINTR {
			return sysRes(r, errno)
		}
	}
}

func sysRes(r uintptr, errno syscall.Errno) int32 {
	if errno != 0 {
		return -int32(errno)
	}
	return int32(r)
}

// execRW runs a read or write. On a regular file or block device it is one
// blocking preadv2/pwritev2. On a pollable descriptor it is a nonblocking
// attempt; would-block parks the request for readiness, so no worker ever
// waits on a pipe or socket and a cancel always finds it interruptible.
func (e *softEngine) execRW(q *softReq) (int32, int16) {
	write := isWriteOp(q.s.Opcode)
	if !q.classified {
		var st unix.Stat_t
		if err := unix.Fstat(q.fd, &st); err != nil {
			q.kind.Store(kindBlocking)
			return -int32(err.(syscall.Errno)), 0
		}
		q.classified = true
		q.off = q.s.Off
		switch st.Mode & unix.S_IFMT {
		case unix.S_IFIFO, unix.S_IFSOCK:
			// Streams: io_uring ignores the offset, as read(2) does.
			q.pollable, q.stream, q.off = true, true, ^uint64(0)
		case unix.S_IFCHR, 0: // 0: anonymous inodes (eventfd, timerfd, ...)
			q.pollable = true
		}
		if q.pollable {
			q.kind.Store(kindPollable)
		} else {
			q.kind.Store(kindBlocking)
		}
	}
	flags := int(q.s.OpFlags)
	if !q.pollable {
		return q.rw(write, q.off, flags), 0
	}
	events := int16(unix.POLLIN)
	if write {
		events = unix.POLLOUT
	}
	woke := q.woke
	q.woke = false
	if q.noNowait {
		if !woke {
			return 0, events
		}
		// Ready, but the file cannot do a nonblocking attempt: this one may
		// block if another reader takes the data first.
		return q.rwAnyOffset(write, flags), 0
	}
	res := q.rwAnyOffset(write, flags|unix.RWF_NOWAIT)
	if flags&unix.RWF_NOWAIT != 0 {
		return res, 0 // the submitter asked for EAGAIN
	}
	switch res {
	case -int32(syscall.EOPNOTSUPP):
		q.noNowait = true
		return 0, events
	case -int32(syscall.EAGAIN):
		fl, err := unix.FcntlInt(uintptr(q.fd), unix.F_GETFL, 0)
		if err == nil && fl&unix.O_NONBLOCK != 0 {
			// The descriptor's owner asked for EAGAIN; io_uring honours it.
			return res, 0
		}
		return 0, events
	}
	return res, 0
}

// rwAnyOffset is rw on a pollable descriptor: an offset it cannot seek to
// (a character device) is dropped, as io_uring ignores it there.
func (q *softReq) rwAnyOffset(write bool, flags int) int32 {
	res := q.rw(write, q.off, flags)
	if res == -int32(syscall.ESPIPE) && q.off != ^uint64(0) {
		q.off = ^uint64(0)
		res = q.rw(write, q.off, flags)
	}
	return res
}

// rw is one preadv2/pwritev2: offset ^0 (-1) means the file position, and
// flags are the SQE's RWF_* flags. The buffer addresses go to the kernel as
// the raw integers the SQE carries.
func (q *softReq) rw(write bool, off uint64, flags int) int32 {
	nr := uintptr(unix.SYS_PREADV2)
	if write {
		nr = unix.SYS_PWRITEV2
	}
	vectored := q.s.Opcode == sqe.OpReadv || q.s.Opcode == sqe.OpWritev
	for {
		var r uintptr
		var errno syscall.Errno
		if vectored {
			r, _, errno = unix.Syscall6(nr, uintptr(q.fd), uintptr(q.s.Addr), uintptr(q.s.Len), uintptr(off), 0, uintptr(flags))
		} else {
			q.iov = rawIovec{base: q.s.Addr, len: uint64(q.s.Len)}
			r, _, errno = unix.Syscall6(nr, uintptr(q.fd), uintptr(unsafe.Pointer(&q.iov)), 1, uintptr(off), 0, uintptr(flags))
		}
		if errno != syscall.EINTR {
			return sysRes(r, errno)
		}
	}
}

// rawWrite writes b to fd, ignoring the result: used for eventfd counters,
// which cannot fail short of a bad descriptor.
func rawWrite(fd int, b []byte) {
	for {
		_, err := unix.Write(fd, b)
		if err != unix.EINTR {
			return
		}
	}
}

// softCopier copies submitter memory named by a raw SQE address into Go
// memory without turning the integer into a pointer: the kernel does the
// copy, so a bad address is EFAULT, as with io_uring, never a crash.
type softCopier struct {
	mu   sync.Mutex
	noVM bool   // process_vm_readv refused (seccomp): use the pipe
	pipe [2]int // read end, write end; -1 until first needed
}

func (c *softCopier) copyIn(dst []byte, addr uint64) syscall.Errno {
	if len(dst) == 0 {
		return 0
	}
	c.mu.Lock()
	defer c.mu.Unlock()
	if !c.noVM {
		local := []unix.Iovec{{Base: &dst[0]}}
		local[0].SetLen(len(dst))
		remote := []unix.RemoteIovec{{Base: uintptr(addr), Len: len(dst)}}
		n, err := unix.ProcessVMReadv(unix.Getpid(), local, remote, 0)
		switch {
		case err == nil && n == len(dst):
			return 0
		case err == nil:
			return syscall.EFAULT // the range runs into unmapped memory
		case err == syscall.ENOSYS || err == syscall.EPERM:
			c.noVM = true
		default:
			return err.(syscall.Errno)
		}
	}
	if c.pipe[0] < 0 {
		var p [2]int
		if err := unix.Pipe2(p[:], unix.O_CLOEXEC); err != nil {
			return err.(syscall.Errno)
		}
		c.pipe = p
	}
	// Through a pipe, a page at a time (PIPE_BUF is at least that, and the
	// pipe is drained at once, so neither side ever blocks).
	for off := 0; off < len(dst); {
		chunk := min(len(dst)-off, 4096)
		var r uintptr
		var errno syscall.Errno
		for {
			r, _, errno = unix.Syscall(unix.SYS_WRITE, uintptr(c.pipe[1]), uintptr(addr)+uintptr(off), uintptr(chunk))
			if errno != syscall.EINTR {
				break
			}
		}
		if errno != 0 {
			return errno
		}
		for got := 0; got < int(r); {
			n, err := unix.Read(c.pipe[0], dst[off+got:off+int(r)])
			if err == unix.EINTR {
				continue
			}
			if err != nil {
				return err.(syscall.Errno)
			}
			got += n
		}
		if int(r) < chunk {
			return syscall.EFAULT
		}
		off += chunk
	}
	return 0
}

func (c *softCopier) close() error {
	c.mu.Lock()
	defer c.mu.Unlock()
	var err error
	for i, fd := range c.pipe {
		if fd >= 0 {
			if e := closeFd("copy pipe", fd); e != nil && err == nil {
				err = e
			}
			c.pipe[i] = -1
		}
	}
	return err
}
