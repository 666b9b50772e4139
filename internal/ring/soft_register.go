package ring

import (
	"syscall"
	"unsafe"

	"github.com/ringwake/ringwake/sqe"
	"golang.org/x/sys/unix"
)

// Kernel limits the software ring enforces alike (IORING_MAX_FIXED_FILES,
// IORING_MAX_REG_BUFFERS, and the 1 GiB cap on one registered buffer).
const (
	softMaxFiles   = 1 << 20
	softMaxBuffers = 1 << 14
	softMaxBufLen  = 1 << 30
)

// softFile is one fixed-file slot: a dup of the registered descriptor, so
// the submitter may close its own (as io_uring allows). Requests hold a
// reference, so an update or unregister never closes a descriptor a worker
// is using.
//
// Closing a dup drops the process's POSIX (fcntl F_SETLK) record locks on
// that file, as closing any descriptor of it does: with the software ring,
// do not unregister or replace a file while relying on such locks (OFD and
// flock locks are unaffected).
type softFile struct {
	fd   int
	refs int
	gone bool // out of the table: closed when the last request lets go
}

func dupFile(fd int32) (*softFile, syscall.Errno) {
	nfd, err := unix.FcntlInt(uintptr(int(fd)), unix.F_DUPFD_CLOEXEC, 0)
	if err != nil {
		return nil, err.(syscall.Errno)
	}
	return &softFile{fd: nfd}, 0
}

// dropLocked takes f out of the table. Under filesMu.
func (f *softFile) dropLocked() {
	f.gone = true
	if f.refs == 0 {
		syscall.Close(f.fd)
	}
}

func (e *softEngine) getFixed(idx int32) (*softFile, syscall.Errno) {
	e.filesMu.Lock()
	defer e.filesMu.Unlock()
	if uint32(idx) >= uint32(len(e.files)) || e.files[idx] == nil {
		return nil, syscall.EBADF
	}
	f := e.files[idx]
	f.refs++
	return f, 0
}

func (e *softEngine) releaseFixed(f *softFile) {
	e.filesMu.Lock()
	f.refs--
	if f.gone && f.refs == 0 {
		syscall.Close(f.fd)
	}
	e.filesMu.Unlock()
}

func (e *softEngine) dropFilesLocked() {
	for _, f := range e.files {
		if f != nil {
			f.dropLocked()
		}
	}
	e.files = nil
}

func (e *softEngine) registerFiles(fds []int32) error {
	e.filesMu.Lock()
	defer e.filesMu.Unlock()
	if e.files != nil {
		return registerError("files", syscall.EBUSY)
	}
	if len(fds) > softMaxFiles {
		return registerError("files", syscall.EMFILE)
	}
	table := make([]*softFile, len(fds))
	for i, fd := range fds {
		if fd == -1 {
			continue
		}
		f, errno := dupFile(fd)
		if errno != 0 {
			for _, g := range table[:i] {
				if g != nil {
					g.dropLocked()
				}
			}
			return registerError("files", errno)
		}
		table[i] = f
	}
	e.files = table
	return nil
}

func (e *softEngine) registerFilesSparse(n uint32) error {
	e.filesMu.Lock()
	defer e.filesMu.Unlock()
	if e.files != nil {
		return registerError("files2 sparse", syscall.EBUSY)
	}
	if n > softMaxFiles {
		return registerError("files2 sparse", syscall.EMFILE)
	}
	e.files = make([]*softFile, n)
	return nil
}

func (e *softEngine) updateFiles(off uint32, fds []int32) (int, error) {
	e.filesMu.Lock()
	defer e.filesMu.Unlock()
	if e.files == nil {
		return 0, registerError("files update", syscall.ENXIO)
	}
	if uint64(off)+uint64(len(fds)) > uint64(len(e.files)) {
		return 0, registerError("files update", syscall.EINVAL)
	}
	done := 0
	for i, fd := range fds {
		slot := &e.files[int(off)+i]
		switch fd {
		case RegisterFilesSkip:
		case -1:
			if *slot != nil {
				(*slot).dropLocked()
				*slot = nil
			}
		default:
			f, errno := dupFile(fd)
			if errno != 0 {
				// As the kernel: the count done so far, else the error.
				if done > 0 {
					return done, nil
				}
				return 0, registerError("files update", errno)
			}
			if *slot != nil {
				(*slot).dropLocked()
			}
			*slot = f
		}
		done++
	}
	return done, nil
}

func (e *softEngine) unregisterFiles() error {
	e.filesMu.Lock()
	defer e.filesMu.Unlock()
	if e.files == nil {
		return registerError("unregister files", syscall.ENXIO)
	}
	e.dropFilesLocked()
	return nil
}

// closeFixed is IORING_OP_CLOSE of fixed slot idx.
func (e *softEngine) closeFixed(idx uint32) syscall.Errno {
	e.filesMu.Lock()
	defer e.filesMu.Unlock()
	switch {
	case e.files == nil:
		return syscall.ENXIO
	case idx >= uint32(len(e.files)):
		return syscall.EINVAL
	case e.files[idx] == nil:
		return syscall.EBADF
	}
	e.files[idx].dropLocked()
	e.files[idx] = nil
	return 0
}

func (e *softEngine) registerBuffers(bufs [][]byte) error {
	e.filesMu.Lock()
	defer e.filesMu.Unlock()
	if e.bufs != nil {
		return registerError("buffers", syscall.EBUSY)
	}
	if len(bufs) > softMaxBuffers {
		return registerError("buffers", syscall.EINVAL)
	}
	for _, b := range bufs {
		if len(b) > softMaxBufLen {
			return registerError("buffers", syscall.EFAULT)
		}
	}
	// A copy of the slice headers: the caller may reuse its slice.
	e.bufs = append([][]byte(nil), bufs...)
	return nil
}

func (e *softEngine) unregisterBuffers() error {
	e.filesMu.Lock()
	defer e.filesMu.Unlock()
	if e.bufs == nil {
		return registerError("unregister buffers", syscall.ENXIO)
	}
	e.bufs = nil
	return nil
}

// getBuf checks that [addr, addr+n) lies in registered buffer idx, as the
// kernel does for READ_FIXED/WRITE_FIXED, and returns the buffer to keep
// reachable while the request runs.
func (e *softEngine) getBuf(idx uint16, addr uint64, n uint32) ([]byte, syscall.Errno) {
	e.filesMu.Lock()
	defer e.filesMu.Unlock()
	if int(idx) >= len(e.bufs) {
		return nil, syscall.EFAULT
	}
	b := e.bufs[idx]
	base := uint64(uintptr(unsafe.Pointer(unsafe.SliceData(b))))
	size := uint64(len(b))
	if addr < base || addr-base > size || uint64(n) > size-(addr-base) {
		return nil, syscall.EFAULT
	}
	return b, 0
}

func (e *softEngine) registerEventfd(fd int) error {
	e.mu.Lock()
	defer e.mu.Unlock()
	if e.eventFd >= 0 {
		return registerError("eventfd", syscall.EBUSY)
	}
	var st unix.Stat_t
	if err := unix.Fstat(fd, &st); err != nil {
		return registerError("eventfd", err.(syscall.Errno))
	}
	// An eventfd is an anonymous inode; anything with a file type is not.
	if st.Mode&unix.S_IFMT != 0 {
		return registerError("eventfd", syscall.EINVAL)
	}
	nfd, err := unix.FcntlInt(uintptr(fd), unix.F_DUPFD_CLOEXEC, 0)
	if err != nil {
		return registerError("eventfd", err.(syscall.Errno))
	}
	e.eventFd = nfd
	return nil
}

func (e *softEngine) unregisterEventfd() error {
	e.mu.Lock()
	defer e.mu.Unlock()
	if e.eventFd < 0 {
		return registerError("unregister eventfd", syscall.ENXIO)
	}
	syscall.Close(e.eventFd)
	e.eventFd = -1
	return nil
}

// probe answers IORING_REGISTER_PROBE from the engine's own table.
func (e *softEngine) probe() *Probe {
	p := &Probe{lastOp: sqe.OpLast - 1}
	for op, ok := range softOps {
		if ok {
			p.flags[op] = ProbeOpSupported
		}
	}
	return p
}
