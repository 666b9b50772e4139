package ring

import (
	"syscall"
	"unsafe"

	iosys "github.com/iceber/iouring-go/syscall"
	"golang.org/x/sys/unix"
)

// The ABI structs below carry user pointers as Go pointer fields, which is
// only the kernel's __u64 on 64-bit platforms.
var _ [unsafe.Sizeof(uintptr(0)) - 8]struct{}

// sqringOffsets is struct io_sqring_offsets.
type sqringOffsets struct {
	head, tail, ringMask, ringEntries uint32
	flags, dropped, array, resv1      uint32
	userAddr                          uint64
}

// cqringOffsets is struct io_cqring_offsets.
type cqringOffsets struct {
	head, tail, ringMask, ringEntries uint32
	overflow, cqes, flags, resv1      uint32
	userAddr                          uint64
}

// params is struct io_uring_params (120 bytes).
type params struct {
	sqEntries    uint32
	cqEntries    uint32
	flags        uint32
	sqThreadCPU  uint32
	sqThreadIdle uint32
	features     uint32
	wqFd         uint32
	resv         [3]uint32
	sqOff        sqringOffsets
	cqOff        cqringOffsets
}

// CQE is the kernel's struct io_uring_cqe (16 bytes, no CQE32).
type CQE struct {
	UserData uint64
	Res      int32
	Flags    uint32
}

// timespec is struct __kernel_timespec.
type timespec struct {
	sec  int64
	nsec int64
}

// geteventsArg is struct io_uring_getevents_arg (24 bytes).
type geteventsArg struct {
	sigmask     uint64
	sigmaskSz   uint32
	minWaitUsec uint32
	ts          *timespec
}

// extArg keeps the timespec inside the object whose address is passed to the
// syscall, so the one pointer the compiler pins also covers what ts points at.
type extArg struct {
	arg geteventsArg
	ts  timespec
}

// rsrcRegister is struct io_uring_rsrc_register (32 bytes).
type rsrcRegister struct {
	nr    uint32
	flags uint32
	resv2 uint64
	data  uint64
	tags  uint64
}

// filesUpdate is struct io_uring_files_update (16 bytes).
type filesUpdate struct {
	offset uint32
	resv   uint32
	fds    *int32
}

// probeOp is struct io_uring_probe_op (8 bytes).
type probeOp struct {
	op    uint8
	resv  uint8
	flags uint16
	resv2 uint32
}

// probeOps is how many ops a probe asks for; the kernel clamps to IORING_OP_LAST.
const probeOps = 256

// probeArg is struct io_uring_probe followed by its flexible ops array.
type probeArg struct {
	lastOp uint8
	opsLen uint8
	resv   uint16
	resv2  [3]uint32
	ops    [probeOps]probeOp
}

// nsig8 is _NSIG/8, the kernel's sigset size on Linux.
const nsig8 = 8

// sysSetup is io_uring_setup(2); a variable so tests can make the "kernel"
// refuse chosen flags and exercise the fallback without an old kernel.
var sysSetup = func(entries uint32, p *params) (int, syscall.Errno) {
	fd, _, errno := unix.Syscall(iosys.SYS_IO_URING_SETUP, uintptr(entries), uintptr(unsafe.Pointer(p)), 0)
	if errno != 0 {
		return -1, errno
	}
	return int(fd), 0
}

// sysMmap is mmap(2) of one ring region; a variable so tests can fail each
// mapping in turn and check New's cleanup.
var sysMmap = func(fd int, offset int64, length int) ([]byte, error) {
	return unix.Mmap(fd, offset, length, unix.PROT_READ|unix.PROT_WRITE, unix.MAP_SHARED|unix.MAP_POPULATE)
}

// register is io_uring_register(2) with EINTR retried, returning the raw result.
func (r *Ring) register(op uint8, arg unsafe.Pointer, nr uint32) (int, syscall.Errno) {
	for {
		n, _, errno := unix.Syscall6(iosys.SYS_IO_URING_REGISTER, uintptr(r.fd), uintptr(op), uintptr(arg), uintptr(nr), 0, 0)
		if errno == syscall.EINTR {
			continue
		}
		if errno != 0 {
			return 0, errno
		}
		return int(n), 0
	}
}
