package ring

import (
	"syscall"

	"github.com/ringwake/ringwake/sqe"
	"golang.org/x/sys/unix"
)

// isPathOp reports the directory operations.
func isPathOp(op uint8) bool {
	switch op {
	case sqe.OpRenameat, sqe.OpUnlinkat, sqe.OpMkdirat, sqe.OpSymlinkat, sqe.OpLinkat:
		return true
	}
	return false
}

// prepPathOp validates the directory operations (RENAMEAT, UNLINKAT,
// MKDIRAT, SYMLINKAT, LINKAT) as the kernel's io_uring/fs.c does: the SQE
// fields an operation does not use must be zero.
func prepPathOp(s *sqe.SQE) syscall.Errno {
	if s.BufIndex != 0 || s.SpliceFdIn != 0 {
		return syscall.EINVAL
	}
	switch s.Opcode {
	case sqe.OpUnlinkat:
		if s.Off != 0 || s.Len != 0 || s.OpFlags&^unix.AT_REMOVEDIR != 0 {
			return syscall.EINVAL
		}
	case sqe.OpMkdirat:
		if s.Off != 0 || s.OpFlags != 0 {
			return syscall.EINVAL
		}
	case sqe.OpSymlinkat:
		if s.Len != 0 || s.OpFlags != 0 {
			return syscall.EINVAL
		}
	}
	return 0
}

// execPathOp makes the directory operation's syscall. The paths go to the
// kernel as the raw addresses the SQE carries, as OPENAT's does; the
// submitter keeps them alive until the completion. A directory fd in Fd (or
// Len, for the second path) is sign-extended so that AT_FDCWD survives.
func execPathOp(s *sqe.SQE) int32 {
	dfd := uintptr(int(s.Fd))
	newDfd := uintptr(int(int32(s.Len)))
	switch s.Opcode {
	case sqe.OpRenameat:
		return sysRetry5(unix.SYS_RENAMEAT2, dfd, uintptr(s.Addr), newDfd, uintptr(s.Off), uintptr(s.OpFlags))
	case sqe.OpUnlinkat:
		return sysRetry(unix.SYS_UNLINKAT, dfd, uintptr(s.Addr), uintptr(s.OpFlags), 0)
	case sqe.OpMkdirat:
		return sysRetry(unix.SYS_MKDIRAT, dfd, uintptr(s.Addr), uintptr(s.Len), 0)
	case sqe.OpSymlinkat:
		return sysRetry(unix.SYS_SYMLINKAT, uintptr(s.Addr), dfd, uintptr(s.Off), 0)
	case sqe.OpLinkat:
		return sysRetry5(unix.SYS_LINKAT, dfd, uintptr(s.Addr), newDfd, uintptr(s.Off), uintptr(s.OpFlags))
	}
	return -int32(syscall.EINVAL)
}

// sysRetry5 is sysRetry for the five-argument calls.
func sysRetry5(nr, a1, a2, a3, a4, a5 uintptr) int32 {
	for {
		r, _, errno := unix.Syscall6(nr, a1, a2, a3, a4, a5, 0)
		if errno != syscall.EINTR {
			return sysRes(r, errno)
		}
	}
}
