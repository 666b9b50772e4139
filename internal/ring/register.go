package ring

import (
	"errors"
	"fmt"
	"math"
	"syscall"
	"unsafe"

	"golang.org/x/sys/unix"
)

func registerError(what string, errno syscall.Errno) error {
	return fmt.Errorf("ringwake: io_uring_register(%s): %w", what, errno)
}

// RegisterFiles installs fds as the ring's fixed-file table; SQEs with
// IOSQE_FIXED_FILE then name a file by its index in fds. An fd of -1 leaves
// that slot empty.
func (r *Ring) RegisterFiles(fds []int32) error {
	if len(fds) == 0 {
		return errors.New("ringwake: RegisterFiles: no files (use RegisterFilesSparse for an empty table)")
	}
	if uint64(len(fds)) > math.MaxUint32 {
		return fmt.Errorf("ringwake: RegisterFiles: %d files is too many", len(fds))
	}
	if r.soft != nil {
		return r.soft.registerFiles(fds)
	}
	if _, errno := r.register(RegFiles, unsafe.Pointer(&fds[0]), uint32(len(fds))); errno != 0 {
		return registerError("files", errno)
	}
	return nil
}

// RegisterFilesSparse installs an empty fixed-file table of n slots, to be
// filled with UpdateFiles (IORING_REGISTER_FILES2, Linux 5.19).
func (r *Ring) RegisterFilesSparse(n uint32) error {
	if n == 0 {
		return errors.New("ringwake: RegisterFilesSparse: zero slots")
	}
	if r.soft != nil {
		return r.soft.registerFilesSparse(n)
	}
	arg := rsrcRegister{nr: n, flags: RsrcRegisterSparse}
	if _, errno := r.register(RegFiles2, unsafe.Pointer(&arg), uint32(unsafe.Sizeof(arg))); errno != 0 {
		return registerError("files2 sparse", errno)
	}
	return nil
}

// UpdateFiles replaces the fixed-file slots starting at off with fds
// (RegisterFilesSkip leaves a slot unchanged, -1 empties it) and returns how
// many slots were updated.
func (r *Ring) UpdateFiles(off uint32, fds []int32) (int, error) {
	if len(fds) == 0 {
		return 0, errors.New("ringwake: UpdateFiles: no files")
	}
	if uint64(len(fds)) > math.MaxUint32 {
		return 0, fmt.Errorf("ringwake: UpdateFiles: %d files is too many", len(fds))
	}
	if r.soft != nil {
		return r.soft.updateFiles(off, fds)
	}
	arg := filesUpdate{offset: off, fds: &fds[0]}
	n, errno := r.register(RegFilesUpdate, unsafe.Pointer(&arg), uint32(len(fds)))
	if errno != 0 {
		return 0, registerError("files update", errno)
	}
	return n, nil
}

// UnregisterFiles removes the fixed-file table.
func (r *Ring) UnregisterFiles() error {
	if r.soft != nil {
		return r.soft.unregisterFiles()
	}
	if _, errno := r.register(RegUnregisterFiles, nil, 0); errno != 0 {
		return registerError("unregister files", errno)
	}
	return nil
}

// RegisterBuffers pins bufs as the ring's fixed buffers; READ_FIXED and
// WRITE_FIXED then name a buffer by its index. The ring keeps bufs reachable
// until UnregisterBuffers or Close, and the caller must not reuse their
// memory for anything else meanwhile.
func (r *Ring) RegisterBuffers(bufs [][]byte) error {
	if len(bufs) == 0 {
		return errors.New("ringwake: RegisterBuffers: no buffers")
	}
	if uint64(len(bufs)) > math.MaxUint32 {
		return fmt.Errorf("ringwake: RegisterBuffers: %d buffers is too many", len(bufs))
	}
	iov := make([]unix.Iovec, len(bufs))
	for i, b := range bufs {
		if len(b) == 0 {
			return fmt.Errorf("ringwake: RegisterBuffers: buffer %d is empty", i)
		}
		iov[i].Base = &b[0]
		iov[i].SetLen(len(b))
	}
	if r.soft != nil {
		return r.soft.registerBuffers(bufs)
	}
	if _, errno := r.register(RegBuffers, unsafe.Pointer(&iov[0]), uint32(len(iov))); errno != 0 {
		return registerError("buffers", errno)
	}
	r.bufs = bufs
	return nil
}

// UnregisterBuffers removes the fixed buffers.
func (r *Ring) UnregisterBuffers() error {
	if r.soft != nil {
		return r.soft.unregisterBuffers()
	}
	if _, errno := r.register(RegUnregisterBuffers, nil, 0); errno != 0 {
		return registerError("unregister buffers", errno)
	}
	r.bufs = nil
	return nil
}

// RegisterEventfd makes the kernel signal fd whenever it posts CQEs (unless
// disabled with SetCQEventfdEnabled).
func (r *Ring) RegisterEventfd(fd int) error {
	if fd < 0 || fd > math.MaxInt32 {
		return fmt.Errorf("ringwake: RegisterEventfd: bad fd %d", fd)
	}
	if r.soft != nil {
		return r.soft.registerEventfd(fd)
	}
	efd := int32(fd)
	if _, errno := r.register(RegEventfd, unsafe.Pointer(&efd), 1); errno != 0 {
		return registerError("eventfd", errno)
	}
	return nil
}

// UnregisterEventfd removes the registered eventfd.
func (r *Ring) UnregisterEventfd() error {
	if r.soft != nil {
		return r.soft.unregisterEventfd()
	}
	if _, errno := r.register(RegUnregisterEventfd, nil, 0); errno != 0 {
		return registerError("unregister eventfd", errno)
	}
	return nil
}

// Probe is the kernel's answer to IORING_REGISTER_PROBE: which opcodes this
// kernel implements.
type Probe struct {
	lastOp uint8
	flags  [probeOps]uint16
}

// Supports reports whether the kernel implements op. A nil Probe supports
// nothing.
func (p *Probe) Supports(op uint8) bool {
	return p != nil && op <= p.lastOp && p.flags[op]&ProbeOpSupported != 0
}

// LastOp is the highest opcode the kernel knows (IORING_OP_LAST - 1).
func (p *Probe) LastOp() uint8 {
	if p == nil {
		return 0
	}
	return p.lastOp
}

// Probe asks the kernel which opcodes it supports.
func (r *Ring) Probe() (*Probe, error) {
	if r.soft != nil {
		return r.soft.probe(), nil
	}
	// The kernel insists the probe buffer arrives zeroed.
	arg := new(probeArg)
	if _, errno := r.register(RegProbe, unsafe.Pointer(arg), probeOps); errno != 0 {
		return nil, registerError("probe", errno)
	}
	p := &Probe{lastOp: arg.lastOp}
	for i := 0; i < int(arg.opsLen) && i < probeOps; i++ {
		op := arg.ops[i]
		p.flags[op.op] = op.flags
	}
	return p, nil
}

// Supports reports whether the kernel implements op, from the probe New ran
// once on the creating thread (false if that probe failed). Safe for
// concurrent use.
func (r *Ring) Supports(op uint8) bool { return r.probe.Supports(op) }

// SetIOWQMaxWorkers caps the io-wq worker threads that run this ring's
// requests the kernel cannot finish without blocking (IORING_REGISTER_IOWQ_MAX_WORKERS,
// Linux 5.15): limits[0] for bounded work (regular files, block devices),
// limits[1] for unbounded work (sockets, pipes); a 0 leaves that limit as it
// is. io-wq pools belong to the threads that submit: the kernel applies the
// caps to every thread that has submitted to the ring and to each thread
// that first submits to an io_uring afterwards. It returns the calling
// thread's previous limits, or zeros when that thread has no io-wq yet. On
// the software ring it does nothing and returns zeros: its pool of
// goroutines is bounded by the ring's size already.
func (r *Ring) SetIOWQMaxWorkers(limits [2]uint32) ([2]uint32, error) {
	if r.soft != nil {
		return [2]uint32{}, nil
	}
	arg := limits
	if _, errno := r.register(RegIOWQMaxWorkers, unsafe.Pointer(&arg), 2); errno != 0 {
		return [2]uint32{}, registerError("iowq max workers", errno)
	}
	return arg, nil
}
