// The inline stage: an appender whose kick starts a commit (a write with its
// linked fdatasync, or an fdatasync alone) makes those calls itself, as
// pwrite and fdatasync on its own thread, instead of submitting them to the
// ring; under O_DIRECT, when the fdatasync need cover only the write, both
// as one pwritev2(RWF_DSYNC). Invariant: the calls run in the order the ring
// would run the chain (the fdatasync only after its write completed in full,
// else it counts as canceled, as a broken link), their results go through
// the same completion functions (writeDone, syncDone) as ring completions,
// and the in-flight marks kickLocked set cover them until then, so the
// pipeline cannot tell them from ring requests.

package wal

import (
	"syscall"
	"unsafe"

	"golang.org/x/sys/unix"

	"github.com/ringwake/ringwake/sqe"
)

// Why inline: an fdatasync is never asynchronous in the kernel; through
// io_uring it goes to an io-wq worker thread, and its completion reaches the
// appenders through the ring's poller. A commit made on the appender's own
// thread pays neither hand-off: the calls are those a plain
// write+fdatasync makes, and the appender that made them wakes the ones it
// covered. Only an appender whose ctx cannot end goes inline, since a
// system call cannot be interrupted by a ctx (as the runtime's blocking calls
// reap inline only for such a ctx); the poller never does, so completions
// are never held up behind an fdatasync.

// The write's completion is the inline appender's too: its kick writes
// nothing alone while the fdatasync that follows is in flight. A write
// through the ring would complete on the poller, which in a crowd of
// runnable appenders gets a P late; a commit that finds it still in flight
// waits for it, and its fdatasync then goes through the ring. The records
// that arrived during the write wait for the next inline commit instead
// (bench/walpebble, recycled, together with the broadcast outside the commit
// queue's lock: 1.19x -> 1.41x of Pebble at 64 appenders, 0.90x -> 1.16x at
// 256).

// inlineArch: the raw system calls below pass 64-bit offsets in one word.
const inlineArch = unsafe.Sizeof(uintptr(0)) == 8

// runInline makes the leading commit of p inline, if p starts with one, and
// submits the rest of p (zero-fill slices, another segment's fdatasync) to
// the ring first. bypass: the commit is made directly whatever the options
// say, for a completion while the kernel keeps canceling ring commits.
func (l *Log) runInline(p *plan, bypass bool) {
	k := 0
	switch {
	case !inlineArch || (l.opts.noInline && !bypass) || p.n == 0:
	case p.n >= 2 && isWrite(p.ss[0].Opcode) && p.ss[0].Flags&sqe.IOLink != 0 && p.ss[1].Opcode == sqe.OpFsync:
		k = 2
	case p.ss[0].Opcode == sqe.OpFsync:
		k = 1
	}
	if k == 0 {
		l.submit(*p)
		return
	}
	var rest plan
	rest.n = copy(rest.ss[:], p.ss[k:p.n])
	copy(rest.dones[:], p.dones[k:p.n])
	copy(rest.zero[:], p.zero[k:p.n])
	l.submit(rest)
	l.stats.inline.Add(1)
	s := &p.ss[0]
	if k == 2 {
		want := p.wlen
		dsync := p.dsync
		var res int32
		if dsync {
			res = l.pwriteDsync(s.Fd, p.niov, s.Off)
			if res == -int32(unix.EOPNOTSUPP) || res == -int32(unix.ENOSYS) {
				// A kernel without pwritev2 or RWF_DSYNC: nothing was written.
				l.noDsync.Store(true)
				dsync = false
			}
		}
		op := "write+fdatasync"
		if !dsync {
			res, op = pwrite(s), "write"
		}
		l.writeDoneBy(res, byAppender, op)
		s = &p.ss[1]
		if dsync && res == want {
			// The write carried its fdatasync.
			l.stats.dsync.Add(1)
			l.syncDoneBy(0, true)
			return
		}
		if res != want {
			// The ring would have broken the link: the fdatasync never runs.
			p.dones[1](-int32(syscall.ECANCELED), 0)
			return
		}
	}
	l.syncDoneBy(fdatasync(s.Fd), true)
}

func isWrite(op uint8) bool { return op == sqe.OpWrite || op == sqe.OpWritev }

// pwrite makes the write s describes and returns its result as a CQE would
// carry it: bytes written, or -errno. The memory s points to is the Log's
// (mmap'd buffers, its scratch block and iovec array), reachable and unmoved.
func pwrite(s *sqe.SQE) int32 {
	nr := uintptr(unix.SYS_PWRITE64)
	if s.Opcode == sqe.OpWritev {
		nr = unix.SYS_PWRITEV
	}
	// pwritev takes the offset as low and high words: the high one is 0
	// where a word holds 64 bits (inlineArch).
	return writeCall(nr, uintptr(s.Fd), uintptr(s.Addr), uintptr(s.Len), uintptr(s.Off), 0)
}

// pwriteDsync makes the write in flight, l.iov[:niov] at off, as one
// pwritev2(RWF_DSYNC): the write and an fdatasync of what it wrote in one
// system call, and no return to the scheduler between them. Under O_DIRECT
// that is all a linked fdatasync that took over no earlier write must cover
// (on a device with FUA the kernel may make it a FUA write rather than a
// cache flush, which is why an earlier unsynced write rules it out).
// l.iov is the Log's, stable while the write is in flight.
func (l *Log) pwriteDsync(fd int32, niov int, off uint64) int32 {
	return writeCall(unix.SYS_PWRITEV2, uintptr(fd), uintptr(unsafe.Pointer(&l.iov[0])), uintptr(niov), uintptr(off), unix.RWF_DSYNC)
}

// writeCall makes a pwrite-family system call (offset high word 0), EINTR
// retried, and returns bytes written or -errno.
func writeCall(nr, fd, addr, n, off, flags uintptr) int32 {
	for {
		r, _, e := unix.Syscall6(nr, fd, addr, n, off, 0, flags)
		switch e {
		case 0:
			return int32(r)
		case unix.EINTR:
			continue
		}
		return -int32(e)
	}
}

func fdatasync(fd int32) int32 {
	for {
		switch err := unix.Fdatasync(int(fd)); err {
		case nil:
			return 0
		case unix.EINTR:
			continue
		default:
			if e, ok := err.(syscall.Errno); ok {
				return -int32(e)
			}
			return -int32(syscall.EIO)
		}
	}
}
