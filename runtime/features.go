package runtime

import (
	"context"
	"errors"
	"fmt"
	"os"
	"sync"
	"syscall"
	"time"
	"unsafe"

	"golang.org/x/sys/unix"

	"github.com/ringwake/ringwake/poller"
	"github.com/ringwake/ringwake/sqe"
)

// ErrTimeout is returned (wrapped) by the *Timeout calls when the kernel
// canceled the request because its deadline passed. errors.Is(err,
// os.ErrDeadlineExceeded) holds too.
var ErrTimeout = poller.ErrTimeout

// need returns ErrUnsupported naming op when the running kernel lacks it.
func (r *Ring) need(op uint8) error {
	if r.supported(op) {
		return nil
	}
	return unsupported(op)
}

// doTimeout is do with a kernel-enforced deadline (LINK_TIMEOUT).
func (r *Ring) doTimeout(ctx context.Context, op string, fd int, s *sqe.SQE, keep unsafe.Pointer, d time.Duration) (int32, error) {
	if d > 0 {
		if err := r.need(sqe.OpLinkTimeout); err != nil {
			return 0, err
		}
	}
	res, _, err := r.pdo(ctx, r.pick(), s, keep, d)
	if err != nil {
		return 0, &OpError{Op: op, Fd: fd, Err: err}
	}
	if res < 0 {
		return 0, opErr(op, fd, res)
	}
	return res, nil
}

// ReadAtTimeout is ReadAt bounded by d in the kernel: the read is linked to
// an IORING_OP_LINK_TIMEOUT, so when d passes first the kernel cancels it and
// the call fails with ErrTimeout — no Go timer, no cancel round trip.
func (r *Ring) ReadAtTimeout(ctx context.Context, fd int, p []byte, off int64, d time.Duration) (int, error) {
	if err := checkOff("read", fd, off); err != nil {
		return 0, err
	}
	var s sqe.SQE
	s.PrepRead(int32(fd), p, uint64(off))
	res, err := r.doTimeout(ctx, "read", fd, &s, unsafe.Pointer(unsafe.SliceData(p)), d)
	return int(res), err
}

// WriteAtTimeout is WriteAt bounded by d in the kernel (see ReadAtTimeout).
func (r *Ring) WriteAtTimeout(ctx context.Context, fd int, p []byte, off int64, d time.Duration) (int, error) {
	if err := checkOff("write", fd, off); err != nil {
		return 0, err
	}
	var s sqe.SQE
	s.PrepWrite(int32(fd), p, uint64(off))
	res, err := r.doTimeout(ctx, "write", fd, &s, unsafe.Pointer(unsafe.SliceData(p)), d)
	return int(res), err
}

// iovecs builds the iovec array for bufs. The array holds a pointer to each
// buffer, so keeping the array reachable keeps every buffer reachable.
func iovecs(bufs [][]byte) []unix.Iovec {
	iovs := make([]unix.Iovec, 0, len(bufs))
	for _, b := range bufs {
		if len(b) == 0 {
			continue
		}
		iovs = append(iovs, unix.Iovec{Base: &b[0], Len: uint64(len(b))})
	}
	return iovs
}

// ReadvAt is one preadv(2) into bufs at off (net.Buffers style scatter): it
// may be short.
func (r *Ring) ReadvAt(ctx context.Context, fd int, bufs [][]byte, off int64) (int, error) {
	if err := checkOff("readv", fd, off); err != nil {
		return 0, err
	}
	iovs := iovecs(bufs)
	var s sqe.SQE
	s.PrepReadv(int32(fd), iovs, uint64(off))
	res, err := r.do(ctx, "readv", fd, &s, unsafe.Pointer(unsafe.SliceData(iovs)))
	return int(res), err
}

// WritevAt is one pwritev(2) of bufs at off (gather): it may be short.
func (r *Ring) WritevAt(ctx context.Context, fd int, bufs [][]byte, off int64) (int, error) {
	if err := checkOff("writev", fd, off); err != nil {
		return 0, err
	}
	iovs := iovecs(bufs)
	var s sqe.SQE
	s.PrepWritev(int32(fd), iovs, uint64(off))
	res, err := r.do(ctx, "writev", fd, &s, unsafe.Pointer(unsafe.SliceData(iovs)))
	return int(res), err
}

// Fallocate is fallocate(2) through the ring: mode 0 allocates [off, off+n)
// and extends the file; unix.FALLOC_FL_KEEP_SIZE, PUNCH_HOLE etc. as usual.
func (r *Ring) Fallocate(ctx context.Context, fd int, mode uint32, off, n int64) error {
	if off < 0 || n <= 0 {
		return &OpError{Op: "fallocate", Fd: fd, Err: fmt.Errorf("offset %d, length %d: %w", off, n, syscall.EINVAL)}
	}
	if err := r.need(sqe.OpFallocate); err != nil {
		return err
	}
	var s sqe.SQE
	s.PrepFallocate(int32(fd), mode, uint64(off), uint64(n))
	_, err := r.do(ctx, "fallocate", fd, &s, nil)
	return err
}

// SyncFileRange is sync_file_range(2) through the ring (flags are
// unix.SYNC_FILE_RANGE_*). It starts or waits for writeback of a range; it is
// not a durability barrier: use Fsync for that.
func (r *Ring) SyncFileRange(ctx context.Context, fd int, off int64, n uint32, flags uint32) error {
	if err := checkOff("sync_file_range", fd, off); err != nil {
		return err
	}
	if err := r.need(sqe.OpSyncFileRange); err != nil {
		return err
	}
	var s sqe.SQE
	s.PrepSyncFileRange(int32(fd), n, uint64(off), flags)
	_, err := r.do(ctx, "sync_file_range", fd, &s, nil)
	return err
}

// Fadvise is posix_fadvise(2) through the ring (advice is unix.FADV_*).
func (r *Ring) Fadvise(ctx context.Context, fd int, off int64, n uint32, advice uint32) error {
	if err := checkOff("fadvise", fd, off); err != nil {
		return err
	}
	if err := r.need(sqe.OpFadvise); err != nil {
		return err
	}
	var s sqe.SQE
	s.PrepFadvise(int32(fd), uint64(off), n, advice)
	_, err := r.do(ctx, "fadvise", fd, &s, nil)
	return err
}

// statxReq keeps a statx request's path and result buffer in one heap object
// the kernel writes into until the completion.
type statxReq struct {
	stat unix.Statx_t
	path *byte
}

// Statx is statx(2) through the ring: dirfd (unix.AT_FDCWD for the working
// directory), path, flags (unix.AT_*), mask (unix.STATX_*).
func (r *Ring) Statx(ctx context.Context, dirfd int, path string, flags, mask uint32) (*unix.Statx_t, error) {
	if err := r.need(sqe.OpStatx); err != nil {
		return nil, err
	}
	p, err := syscall.BytePtrFromString(path)
	if err != nil {
		return nil, &os.PathError{Op: "statx", Path: path, Err: err}
	}
	req := &statxReq{path: p}
	var s sqe.SQE
	s.PrepStatx(int32(dirfd), p, flags, mask, &req.stat)
	res, _, err := r.pdo(ctx, r.pick(), &s, unsafe.Pointer(req), 0)
	if err == nil && res < 0 {
		err = syscall.Errno(-res)
	}
	if err != nil {
		return nil, &os.PathError{Op: "statx", Path: path, Err: err}
	}
	return &req.stat, nil
}

// Openat is openat(2) through the ring; it returns the new descriptor.
func (r *Ring) Openat(ctx context.Context, dirfd int, path string, flags int, mode uint32) (int, error) {
	return r.openat(ctx, "openat", dirfd, path, flags, mode)
}

// CloseFd is close(2) through the ring. Unlike File.Close it does not wait
// for requests in flight on fd: the caller must know there are none.
func (r *Ring) CloseFd(ctx context.Context, fd int) error {
	if err := r.need(sqe.OpClose); err != nil {
		return err
	}
	var s sqe.SQE
	s.PrepClose(int32(fd))
	_, err := r.do(ctx, "close", fd, &s, nil)
	return err
}

// AlignedBuffer returns a zeroed buffer of size bytes whose first byte is
// aligned to align (a power of two; 4096 suits O_DIRECT on every common
// file system). It lives on the Go heap, which never moves memory.
func AlignedBuffer(size, align int) []byte {
	if size <= 0 || align <= 0 || align&(align-1) != 0 {
		return nil
	}
	b := make([]byte, size+align)
	shift := (align - int(uintptr(unsafe.Pointer(&b[0]))&uintptr(align-1))) & (align - 1)
	return b[shift : shift+size : shift+size]
}

// FixedBuffers is a pool of aligned buffers registered with the ring
// (IORING_REGISTER_BUFFERS): the kernel pins and maps them once, so
// READ_FIXED/WRITE_FIXED skip the per-request page pinning. A ring has at
// most one registered set.
type FixedBuffers struct {
	r    *Ring
	bufs [][]byte
	free chan int
}

// RegisterBuffers registers count aligned buffers of size bytes each.
func (r *Ring) RegisterBuffers(count, size int) (*FixedBuffers, error) {
	if count <= 0 || count > 16384 || size <= 0 || size > 1<<30 {
		return nil, fmt.Errorf("ringwake: RegisterBuffers(%d, %d): want 1..16384 buffers of 1 B..1 GiB: %w", count, size, syscall.EINVAL)
	}
	if err := r.need(sqe.OpReadFixed); err != nil {
		return nil, err
	}
	fb := &FixedBuffers{r: r, bufs: make([][]byte, count), free: make(chan int, count)}
	for i := range fb.bufs {
		fb.bufs[i] = AlignedBuffer(size, 4096)
		fb.free <- i
	}
	// Every shard gets the set under the same indexes, so a fixed read or
	// write goes to whichever shard its caller picks.
	for i, p := range r.shardList() {
		if err := p.Ring().RegisterBuffers(fb.bufs); err != nil {
			for _, q := range r.shardList()[:i] {
				q.Ring().UnregisterBuffers()
			}
			return nil, err
		}
	}
	return fb, nil
}

// Len is the number of buffers.
func (fb *FixedBuffers) Len() int { return len(fb.bufs) }

// Buf returns buffer i.
func (fb *FixedBuffers) Buf(i int) []byte { return fb.bufs[i] }

// Get takes a free buffer, waiting for one while all are in use.
func (fb *FixedBuffers) Get(ctx context.Context) (int, []byte, error) {
	select {
	case i := <-fb.free:
		return i, fb.bufs[i], nil
	case <-ctx.Done():
		return -1, nil, ctx.Err()
	}
}

// Put returns buffer i to the pool.
func (fb *FixedBuffers) Put(i int) { fb.free <- i }

// Unregister releases the registration (on every shard). No request may use
// the buffers then.
func (fb *FixedBuffers) Unregister() error {
	var errs []error
	for _, p := range fb.r.shardList() {
		errs = append(errs, p.Ring().UnregisterBuffers())
	}
	return errors.Join(errs...)
}

// within reports whether p lies inside registered buffer i: the kernel
// refuses anything else with EFAULT, but the error is clearer here.
func (fb *FixedBuffers) within(i int, p []byte) bool {
	if i < 0 || i >= len(fb.bufs) || len(p) == 0 {
		return false
	}
	b := fb.bufs[i]
	start := uintptr(unsafe.Pointer(&b[0]))
	q := uintptr(unsafe.Pointer(&p[0]))
	return q >= start && q+uintptr(len(p)) <= start+uintptr(len(b))
}

// ReadAt reads into p, which must lie inside buffer i, at off in fd
// (IORING_OP_READ_FIXED). One read: it may be short.
func (fb *FixedBuffers) ReadAt(ctx context.Context, fd int, i int, p []byte, off int64) (int, error) {
	return fb.rw(ctx, "read_fixed", fd, i, p, off, false)
}

// WriteAt writes p, which must lie inside buffer i, at off in fd
// (IORING_OP_WRITE_FIXED). One write: it may be short.
func (fb *FixedBuffers) WriteAt(ctx context.Context, fd int, i int, p []byte, off int64) (int, error) {
	return fb.rw(ctx, "write_fixed", fd, i, p, off, true)
}

func (fb *FixedBuffers) rw(ctx context.Context, op string, fd, i int, p []byte, off int64, write bool) (int, error) {
	if err := checkOff(op, fd, off); err != nil {
		return 0, err
	}
	if !fb.within(i, p) {
		return 0, &OpError{Op: op, Fd: fd, Err: fmt.Errorf("buffer is not inside registered buffer %d: %w", i, syscall.EFAULT)}
	}
	var s sqe.SQE
	if write {
		s.PrepWriteFixed(int32(fd), p, uint64(off), uint16(i))
	} else {
		s.PrepReadFixed(int32(fd), p, uint64(off), uint16(i))
	}
	res, err := fb.r.do(ctx, op, fd, &s, unsafe.Pointer(unsafe.SliceData(p)))
	return int(res), err
}

// FixedFile is a descriptor registered with the ring (IORING_REGISTER_FILES):
// requests name it by index with the FixedFile flag, sparing the kernel a
// file-table lookup and reference count per request.
type FixedFile struct {
	r   *Ring
	idx int32
	fd  int
}

// fileTable is the ring's sparse registered-file table, set up on first use.
type fileTable struct {
	mu   sync.Mutex
	init bool
	used []bool
}

const fixedFileSlots = 1024

// RegisterFile registers fd (which stays owned by the caller and must stay
// open while the FixedFile is used) and returns its handle.
func (r *Ring) RegisterFile(fd int) (*FixedFile, error) {
	if fd < 0 {
		return nil, fmt.Errorf("ringwake: RegisterFile(%d): %w", fd, syscall.EBADF)
	}
	t := &r.files
	t.mu.Lock()
	defer t.mu.Unlock()
	if !t.init {
		for i, p := range r.shardList() {
			if err := p.Ring().RegisterFilesSparse(fixedFileSlots); err != nil {
				for _, q := range r.shardList()[:i] {
					q.Ring().UnregisterFiles()
				}
				return nil, err
			}
		}
		t.init = true
		t.used = make([]bool, fixedFileSlots)
	}
	for i, u := range t.used {
		if u {
			continue
		}
		if err := r.updateFile(i, int32(fd)); err != nil {
			return nil, err
		}
		t.used[i] = true
		return &FixedFile{r: r, idx: int32(i), fd: fd}, nil
	}
	return nil, fmt.Errorf("ringwake: RegisterFile: all %d registered-file slots in use: %w", fixedFileSlots, syscall.ENFILE)
}

// updateFile sets slot i of every shard's registered-file table to fd (-1
// empties it); on a failure, the shards already set get the slot emptied.
func (r *Ring) updateFile(i int, fd int32) error {
	for k, p := range r.shardList() {
		if _, err := p.Ring().UpdateFiles(uint32(i), []int32{fd}); err != nil {
			for _, q := range r.shardList()[:k] {
				q.Ring().UpdateFiles(uint32(i), []int32{-1})
			}
			return err
		}
	}
	return nil
}

// Index is the handle's slot in the registered-file table (the SQE's Fd when
// it carries sqe.FixedFile).
func (f *FixedFile) Index() int32 { return f.idx }

// Unregister removes the descriptor from the table; the caller still owns it.
func (f *FixedFile) Unregister() error {
	t := &f.r.files
	t.mu.Lock()
	defer t.mu.Unlock()
	if f.idx < 0 || !t.used[f.idx] {
		return errors.New("ringwake: FixedFile already unregistered")
	}
	if err := f.r.updateFile(int(f.idx), -1); err != nil {
		return err
	}
	t.used[f.idx] = false
	f.idx = -1
	return nil
}

// ReadAt is one read through the registered descriptor: it may be short.
func (f *FixedFile) ReadAt(ctx context.Context, p []byte, off int64) (int, error) {
	if err := checkOff("read", f.fd, off); err != nil {
		return 0, err
	}
	var s sqe.SQE
	s.PrepRead(f.idx, p, uint64(off))
	s.Flags |= sqe.FixedFile
	res, err := f.r.do(ctx, "read", f.fd, &s, unsafe.Pointer(unsafe.SliceData(p)))
	return int(res), err
}

// WriteAt is one write through the registered descriptor: it may be short.
func (f *FixedFile) WriteAt(ctx context.Context, p []byte, off int64) (int, error) {
	if err := checkOff("write", f.fd, off); err != nil {
		return 0, err
	}
	var s sqe.SQE
	s.PrepWrite(f.idx, p, uint64(off))
	s.Flags |= sqe.FixedFile
	res, err := f.r.do(ctx, "write", f.fd, &s, unsafe.Pointer(unsafe.SliceData(p)))
	return int(res), err
}

// Fsync is fsync(2), or fdatasync(2) when datasync is set, through the
// registered descriptor.
func (f *FixedFile) Fsync(ctx context.Context, datasync bool) error {
	var s sqe.SQE
	var flags uint32
	if datasync {
		flags = sqe.FsyncDatasync
	}
	s.PrepFsync(f.idx, flags)
	s.Flags |= sqe.FixedFile
	_, err := f.r.do(ctx, "fsync", f.fd, &s, nil)
	return err
}
