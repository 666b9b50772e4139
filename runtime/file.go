package runtime

import (
	"context"
	"errors"
	"io"
	"os"
	"runtime"
	"sync"
	"sync/atomic"
	"syscall"
	"time"
	"unsafe"

	"golang.org/x/sys/unix"

	"github.com/ringwake/ringwake/poller"
	"github.com/ringwake/ringwake/sqe"
	"github.com/ringwake/ringwake/waitqueue"
)

// File is the drop-in for *os.File in storage code: io.Reader, io.ReaderAt,
// io.Writer, io.WriterAt, io.Seeker and io.Closer with os.File's semantics
// (ReadAt fills p or returns an error, io.EOF at the end; Write writes all of
// p or returns an error), plus Sync, Stat, Name and Fd. Every read and write
// goes through the ring. Concurrent Syncs are group-committed: one fsync in
// flight at a time, and its completion wakes every Sync it covers at once.
type File struct {
	r    *Ring
	os   *os.File // owns the descriptor: Stat, and close(2) once no request uses it
	fd   int
	name string

	// refs counts calls using fd, with fileClosing set by Close: the
	// reference count of internal/poll's fdMutex, without its read/write
	// lock bits. fd is closed only when the count drops to zero.
	refs    atomic.Int64
	drained chan struct{}

	// fastRead: try preadv2(RWF_NOWAIT) before the ring (Config.NoCacheFastPath);
	// cleared for good when the file system refuses RWF_NOWAIT.
	fastRead atomic.Bool

	rmu, wmu   sync.Mutex // Read and Write use the kernel's file position: one at a time each
	appendMode bool       // O_APPEND: the kernel ignores WriteAt's offset, so WriteAt is refused

	gs  groupSync // Sync: fsync
	gsd groupSync // SyncData: fdatasync

	// syncErr is the first failure of either group: a failed fsync or
	// fdatasync fails every later Sync and SyncData alike.
	syncErr atomic.Pointer[error]
}

const fileClosing = int64(1) << 62

var (
	_ io.Reader   = (*File)(nil)
	_ io.ReaderAt = (*File)(nil)
	_ io.Writer   = (*File)(nil)
	_ io.WriterAt = (*File)(nil)
	_ io.Seeker   = (*File)(nil)
	_ io.Closer   = (*File)(nil)
)

// Open opens name with os.OpenFile's flag and perm, through the ring
// (IORING_OP_OPENAT), and returns a File whose I/O goes through r.
func (r *Ring) Open(name string, flag int, perm os.FileMode) (*File, error) {
	fd, err := r.openat(context.Background(), "open", unix.AT_FDCWD, name, flag, syscallMode(perm))
	if err != nil {
		return nil, err
	}
	return r.newFile(fd, name, flag), nil
}

// NewFile wraps an open descriptor, which the File then owns (Close closes it).
func (r *Ring) NewFile(fd uintptr, name string) *File {
	fl, err := unix.FcntlInt(fd, unix.F_GETFL, 0)
	if err != nil {
		// Unknown flags: assume O_DIRECT (no fast path), not O_APPEND.
		fl = unix.O_DIRECT
	}
	return r.newFile(int(fd), name, fl)
}

func (r *Ring) newFile(fd int, name string, flag int) *File {
	f := &File{r: r, os: os.NewFile(uintptr(fd), name), fd: fd, name: name, drained: make(chan struct{}), appendMode: flag&os.O_APPEND != 0}
	// An O_DIRECT read with RWF_NOWAIT still waits for the device; the
	// flags are the ones the File was opened with (setting O_DIRECT later
	// with fcntl on Fd() is not supported).
	f.fastRead.Store(r.fastReads && flag&unix.O_DIRECT == 0)
	shard := r.pick()
	f.gs.init(f, shard, 0, "sync")
	f.gsd.init(f, shard, sqe.FsyncDatasync, "fdatasync")
	return f
}

// errFileClosed is what calls on a closed File, and calls a Close cut short,
// return: errors.Is matches os.ErrClosed, as with os.File, and ErrClosed.
var errFileClosed error = fileClosedError{}

type fileClosedError struct{}

func (fileClosedError) Error() string { return "ringwake: file already closed" }
func (fileClosedError) Is(target error) bool {
	return target == os.ErrClosed || target == ErrClosed
}

func (f *File) closing() bool { return f.refs.Load()&fileClosing != 0 }

func syscallMode(m os.FileMode) uint32 {
	o := uint32(m.Perm())
	if m&os.ModeSetuid != 0 {
		o |= syscall.S_ISUID
	}
	if m&os.ModeSetgid != 0 {
		o |= syscall.S_ISGID
	}
	if m&os.ModeSticky != 0 {
		o |= syscall.S_ISVTX
	}
	return o
}

func (f *File) incref(op string) error {
	if f == nil {
		return &os.PathError{Op: op, Path: "", Err: os.ErrInvalid}
	}
	for {
		old := f.refs.Load()
		if old&fileClosing != 0 {
			return &os.PathError{Op: op, Path: f.name, Err: errFileClosed}
		}
		if f.refs.CompareAndSwap(old, old+1) {
			return nil
		}
	}
}

func (f *File) decref() {
	if f.refs.Add(-1) == fileClosing {
		close(f.drained) // the last call after Close: the descriptor is free
	}
}

// Name returns the name the file was opened with.
func (f *File) Name() string { return f.name }

// Fd returns the descriptor, valid until Close; after Close it returns
// ^uintptr(0), as os.File does, not a number the next open may reuse.
func (f *File) Fd() uintptr {
	if f.closing() {
		return ^uintptr(0)
	}
	return uintptr(f.fd)
}

// Stat returns the file's FileInfo.
func (f *File) Stat() (os.FileInfo, error) {
	if err := f.incref("stat"); err != nil {
		return nil, err
	}
	defer f.decref()
	return f.os.Stat()
}

func (f *File) pathErr(op string, err error) error {
	var oe *OpError
	if errors.As(err, &oe) {
		err = oe.Err
	}
	if errors.Is(err, syscall.ECANCELED) && f.closing() {
		err = errFileClosed // Close canceled the request
	}
	return &os.PathError{Op: op, Path: f.name, Err: err}
}

// pread is one read through the ring; off -1 means the file position.
func (f *File) pread(ctx context.Context, p []byte, off uint64) (int, error) {
	if f.fastRead.Load() && len(p) > 0 {
		n, errno := preadNowait(f.fd, p, off)
		switch errno {
		case 0:
			return n, nil // maybe short, as any pread: the callers loop
		case syscall.EAGAIN:
			// Not (all) in the page cache: the ring waits for the device.
		case syscall.EOPNOTSUPP, syscall.EINVAL, syscall.ENOSYS:
			f.fastRead.Store(false) // RWF_NOWAIT refused here: stop trying
		}
		// Any other error is left to the ring's read to report.
	}
	var s sqe.SQE
	s.PrepRead(int32(f.fd), p, off)
	res, err := f.r.do(ctx, "read", f.fd, &s, unsafe.Pointer(unsafe.SliceData(p)))
	return int(res), err
}

// preadNowait is preadv2(fd, p, off, RWF_NOWAIT) on the calling goroutine:
// the data if the page cache has it, else EAGAIN without waiting. off -1
// reads at the file position. The iovec lives on the stack: no allocation.
func preadNowait(fd int, p []byte, off uint64) (int, syscall.Errno) {
	iov := unix.Iovec{Base: unsafe.SliceData(p)}
	iov.SetLen(len(p))
	n, _, errno := unix.Syscall6(unix.SYS_PREADV2, uintptr(fd), uintptr(unsafe.Pointer(&iov)), 1,
		uintptr(off), 0, unix.RWF_NOWAIT)
	runtime.KeepAlive(p)
	if errno != 0 {
		return 0, errno
	}
	return int(n), 0
}

func (f *File) pwrite(ctx context.Context, p []byte, off uint64) (int, error) {
	var s sqe.SQE
	s.PrepWrite(int32(f.fd), p, off)
	res, err := f.r.do(ctx, "write", f.fd, &s, unsafe.Pointer(unsafe.SliceData(p)))
	return int(res), err
}

const filePosition = ^uint64(0)

// errWriteAtInAppendMode is os.File's answer too: with O_APPEND the kernel
// would ignore the offset and append, misplacing the data silently.
var errWriteAtInAppendMode = errors.New("os: invalid use of WriteAt on file opened with O_APPEND")

// Read reads up to len(p) bytes at the file position, as os.File.Read.
func (f *File) Read(p []byte) (int, error) {
	if err := f.incref("read"); err != nil {
		return 0, err
	}
	defer f.decref()
	if len(p) == 0 {
		return 0, nil
	}
	f.rmu.Lock()
	n, err := f.pread(context.Background(), p, filePosition)
	f.rmu.Unlock()
	if err != nil {
		return 0, f.pathErr("read", err)
	}
	if n == 0 {
		return 0, io.EOF
	}
	return n, nil
}

// ReadAt reads len(p) bytes at off: it fills p or returns an error, io.EOF
// when the file ends first, as os.File.ReadAt.
func (f *File) ReadAt(p []byte, off int64) (int, error) {
	return f.ReadAtContext(context.Background(), p, off)
}

// ReadAtContext is ReadAt with a context: when ctx ends, the read in flight is
// canceled and the call returns once the kernel has let go of p.
func (f *File) ReadAtContext(ctx context.Context, p []byte, off int64) (int, error) {
	if err := f.incref("read"); err != nil {
		return 0, err
	}
	defer f.decref()
	if off < 0 {
		return 0, &os.PathError{Op: "readat", Path: f.name, Err: errors.New("negative offset")}
	}
	n := 0
	for n < len(p) {
		m, err := f.pread(ctx, p[n:], uint64(off)+uint64(n))
		if err != nil {
			return n, f.pathErr("read", err)
		}
		if m == 0 {
			return n, io.EOF
		}
		n += m
	}
	return n, nil
}

// Write writes all of p at the file position (at the end with O_APPEND), or
// returns an error, as os.File.Write.
func (f *File) Write(p []byte) (int, error) {
	if err := f.incref("write"); err != nil {
		return 0, err
	}
	defer f.decref()
	f.wmu.Lock()
	defer f.wmu.Unlock()
	return f.writeAll(context.Background(), p, -1)
}

// writeAll repeats pwrite until all of p is written, at off onwards, or at
// the file position when off is -1.
func (f *File) writeAll(ctx context.Context, p []byte, off int64) (int, error) {
	n := 0
	for n < len(p) {
		at := filePosition
		if off >= 0 {
			at = uint64(off) + uint64(n)
		}
		m, err := f.pwrite(ctx, p[n:], at)
		if err != nil {
			return n, f.pathErr("write", err)
		}
		if m == 0 {
			return n, &os.PathError{Op: "write", Path: f.name, Err: io.ErrShortWrite}
		}
		n += m
	}
	return n, nil
}

// WriteAt writes all of p at off or returns an error, as os.File.WriteAt.
func (f *File) WriteAt(p []byte, off int64) (int, error) {
	return f.WriteAtContext(context.Background(), p, off)
}

// WriteAtContext is WriteAt with a context (see ReadAtContext).
func (f *File) WriteAtContext(ctx context.Context, p []byte, off int64) (int, error) {
	if err := f.incref("write"); err != nil {
		return 0, err
	}
	defer f.decref()
	if off < 0 {
		return 0, &os.PathError{Op: "writeat", Path: f.name, Err: errors.New("negative offset")}
	}
	if f.appendMode {
		return 0, &os.PathError{Op: "writeat", Path: f.name, Err: errWriteAtInAppendMode}
	}
	return f.writeAll(ctx, p, off)
}

// Seek sets the file position for the next Read or Write, as os.File.Seek.
func (f *File) Seek(offset int64, whence int) (int64, error) {
	if err := f.incref("seek"); err != nil {
		return 0, err
	}
	defer f.decref()
	// Through os.File: a directory's Seek also drops what ReadDir buffered.
	return f.os.Seek(offset, whence)
}

// Close cancels the requests still in flight on the file, waits until none
// uses the descriptor, then closes it. Calls after Close fail with ErrClosed.
func (f *File) Close() error {
	if f == nil {
		return os.ErrInvalid
	}
	for {
		old := f.refs.Load()
		if old&fileClosing != 0 {
			return &os.PathError{Op: "close", Path: f.name, Err: ErrClosed}
		}
		if f.refs.CompareAndSwap(old, old|fileClosing) {
			if old == 0 {
				close(f.drained)
			}
			break
		}
	}
	// A request published after a cancel escapes it: cancel again until drained.
	t := time.NewTicker(10 * time.Millisecond)
	defer t.Stop()
	for {
		select {
		case <-f.drained:
			return f.os.Close()
		default:
		}
		f.r.cancelFd(int32(f.fd))
		select {
		case <-f.drained:
			return f.os.Close()
		case <-t.C:
		}
	}
}

// Sync commits the file's data and metadata to stable storage. Concurrent
// Syncs share fsyncs: one that arrives while an fsync is in flight waits for
// the next, which starts as soon as the current one completes and covers
// every Sync that arrived meanwhile. A failed fsync is sticky: every later
// Sync returns its error, since the kernel may have dropped the dirty pages
// it could not write and a later fsync's success would not cover them.
func (f *File) Sync() error {
	if err := f.incref("sync"); err != nil {
		return err
	}
	defer f.decref()
	return f.gs.sync()
}

// SyncStats reports how many Sync and SyncData calls the file served and
// how many fsyncs and fdatasyncs it issued for them.
func (f *File) SyncStats() (syncs, fsyncs uint64) {
	return f.gs.calls.Load() + f.gsd.calls.Load(), f.gs.fsyncs.Load() + f.gsd.fsyncs.Load()
}

// groupSync is group commit: the broadcast half of the wait-queue design.
type groupSync struct {
	f        *File
	op       string // the call's name in errors
	mu       sync.Mutex
	q        waitqueue.Queue // Syncs waiting, non-exclusive: one completion wakes all it covers
	started  uint64          // generation of the newest fsync started
	inflight bool
	again    bool  // a Sync arrived during the fsync in flight: start another at its completion
	err      error // sticky first failure
	s        sqe.SQE
	done     func(res int32, flags uint32) // bound once: no allocation per fsync
	// shard takes every fsync of the File (both groups): chosen once at
	// open, as a Sync's fsync starts from the previous one's completion.
	shard *poller.Poller

	calls, fsyncs atomic.Uint64
	// cancelNext (tests) makes the next ring fsync complete as the kernel's
	// own cancel.
	cancelNext atomic.Bool
}

type syncWaiter struct {
	entry  waitqueue.Entry
	g      *groupSync
	ticket uint64
	err    error
	ch     chan struct{}
}

// syncWake wakes a Sync whose ticket the completed generation covers.
func syncWake(e *waitqueue.Entry, key uint64) int {
	w := e.Private.(*syncWaiter)
	if w.ticket > key {
		return 0
	}
	// Called under g.mu by finish: the sticky error is this generation's result.
	w.err = w.g.err
	w.ch <- struct{}{}
	return 1
}

var autoSyncWake = waitqueue.AutoRemove(syncWake)

func (g *groupSync) init(f *File, shard *poller.Poller, flags uint32, op string) {
	g.f, g.op = f, op
	g.shard = shard
	g.s.PrepFsync(int32(f.fd), flags)
	g.done = g.complete
}

func (g *groupSync) sync() error {
	g.calls.Add(1)
	w := &syncWaiter{g: g, ch: make(chan struct{}, 1)}
	w.entry.Func = autoSyncWake
	w.entry.Private = w
	g.mu.Lock()
	if e := g.f.syncErr.Load(); g.err == nil && e != nil {
		g.err = *e // the other group failed
	}
	if g.err != nil {
		err := g.err
		g.mu.Unlock()
		return err
	}
	start := !g.inflight
	if start {
		g.started++
		g.inflight = true
		w.ticket = g.started
	} else {
		// The fsync in flight may have started before this Sync's writes.
		w.ticket = g.started + 1
		g.again = true
	}
	g.q.Add(&w.entry)
	g.mu.Unlock()
	if start {
		g.inline()
	}
	<-w.ch
	return w.err
}

// inline makes the fsync that starts a burst on the calling goroutine, as
// os.File.Sync does: fsync is never asynchronous in the kernel, so through
// the ring it waits for an io-wq thread, and its completion for the poller
// and a wake-up back, where a direct call only blocks this thread. The
// fsyncs that follow while Syncs keep arriving go through the ring from
// finish, so this caller does not make them.
func (g *groupSync) inline() {
	g.fsyncs.Add(1)
	var err error
	for {
		if g.s.OpFlags&sqe.FsyncDatasync != 0 {
			err = unix.Fdatasync(g.f.fd)
		} else {
			err = unix.Fsync(g.f.fd)
		}
		if err != unix.EINTR {
			break
		}
	}
	if err != nil {
		err = &os.PathError{Op: g.op, Path: g.f.name, Err: err}
	}
	g.finish(err)
}

func (g *groupSync) submit() {
	g.fsyncs.Add(1)
	// Past the immediate retries a canceled fsync comes back at once
	// rather than after pauses: complete then makes it directly.
	if err := g.shard.SubmitNoPause(&g.s, g.done); err != nil {
		g.finish(&os.PathError{Op: g.op, Path: g.f.name, Err: err})
	}
}

// complete runs on the poller when the fsync in flight completes.
func (g *groupSync) complete(res int32, _ uint32) {
	if g.cancelNext.Load() && g.cancelNext.CompareAndSwap(true, false) {
		res = -int32(syscall.ECANCELED)
	}
	if res == -int32(syscall.ECANCELED) && !g.f.closing() {
		// The fsync never ran, and not for File.Close: the kernel canceled
		// it on its own (no io-wq worker could be made under a storm of
		// signals, past the poller's retries), or the ring is closing. The
		// descriptor is open (the waiting Syncs hold it), so the fsync is
		// made directly, off the poller. The goroutine's owners are those
		// waiters: none returns before its finish.
		go g.inline()
		return
	}
	var err error
	if res < 0 {
		err = &os.PathError{Op: g.op, Path: g.f.name, Err: syscall.Errno(-res)}
	}
	g.finish(err)
}

// finish ends generation g.started with err and starts the next fsync if a
// Sync is waiting for one. Waiters read their error after the wake-up send.
func (g *groupSync) finish(err error) {
	g.mu.Lock()
	if err != nil && g.err == nil {
		g.err = err
		g.f.syncErr.CompareAndSwap(nil, &err)
	}
	gen := g.started
	next := g.again && g.err == nil
	if g.err != nil {
		gen = ^uint64(0) // a sticky failure answers every waiter
	}
	g.q.WakeUpAll(gen)
	g.again = false
	if next {
		g.started++
	} else {
		g.inflight = false
	}
	g.mu.Unlock()
	if next {
		g.submit()
	}
}

// consume drops the first n bytes from bufs, after a short vectored transfer.
func consume(bufs [][]byte, n int) [][]byte {
	for len(bufs) > 0 && n >= len(bufs[0]) {
		n -= len(bufs[0])
		bufs = bufs[1:]
	}
	if len(bufs) > 0 && n > 0 {
		first := bufs[0][n:]
		bufs = append([][]byte{first}, bufs[1:]...)
	}
	return bufs
}

func total(bufs [][]byte) int {
	n := 0
	for _, b := range bufs {
		n += len(b)
	}
	return n
}

// ReadvAt fills every buffer of bufs, in order, from off (scatter), or
// returns an error, io.EOF when the file ends first.
func (f *File) ReadvAt(ctx context.Context, bufs [][]byte, off int64) (int, error) {
	if err := f.incref("readv"); err != nil {
		return 0, err
	}
	defer f.decref()
	if off < 0 {
		return 0, &os.PathError{Op: "readv", Path: f.name, Err: errors.New("negative offset")}
	}
	want, n := total(bufs), 0
	for n < want {
		m, err := f.r.ReadvAt(ctx, f.fd, bufs, off+int64(n))
		if err != nil {
			return n, f.pathErr("readv", err)
		}
		if m == 0 {
			return n, io.EOF
		}
		n += m
		bufs = consume(bufs, m)
	}
	return n, nil
}

// WritevAt writes every buffer of bufs, in order, at off (gather), or
// returns an error.
func (f *File) WritevAt(ctx context.Context, bufs [][]byte, off int64) (int, error) {
	if err := f.incref("writev"); err != nil {
		return 0, err
	}
	defer f.decref()
	if off < 0 {
		return 0, &os.PathError{Op: "writev", Path: f.name, Err: errors.New("negative offset")}
	}
	want, n := total(bufs), 0
	for n < want {
		m, err := f.r.WritevAt(ctx, f.fd, bufs, off+int64(n))
		if err != nil {
			return n, f.pathErr("writev", err)
		}
		if m == 0 {
			return n, &os.PathError{Op: "writev", Path: f.name, Err: io.ErrShortWrite}
		}
		n += m
		bufs = consume(bufs, m)
	}
	return n, nil
}

// Fallocate preallocates [off, off+n) through the ring (see Ring.Fallocate).
func (f *File) Fallocate(mode uint32, off, n int64) error {
	if err := f.incref("fallocate"); err != nil {
		return err
	}
	defer f.decref()
	if err := f.r.Fallocate(context.Background(), f.fd, mode, off, n); err != nil {
		return f.pathErr("fallocate", err)
	}
	return nil
}
