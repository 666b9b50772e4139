package runtime

import (
	"context"
	"io"
	"io/fs"
	"os"
	"sync"
	"syscall"
	"time"
	"unsafe"
)

// The rest of *os.File's methods, each with os.File's semantics and errors.
// docs/file.md lists every *os.File method with its counterpart here.

var (
	_ io.ReaderFrom   = (*File)(nil)
	_ io.WriterTo     = (*File)(nil)
	_ io.StringWriter = (*File)(nil)
	_ fs.ReadDirFile  = (*File)(nil)
)

// Truncate changes the size of the file through the ring (ftruncate; the
// plain syscall where the kernel lacks IORING_OP_FTRUNCATE). It does not
// change the file position. The error is an *os.PathError.
func (f *File) Truncate(size int64) error {
	if err := f.incref("truncate"); err != nil {
		return err
	}
	defer f.decref()
	if size < 0 {
		return &os.PathError{Op: "truncate", Path: f.name, Err: syscall.EINVAL}
	}
	if err := f.r.Ftruncate(context.Background(), f.fd, size); err != nil {
		return f.pathErr("truncate", err)
	}
	return nil
}

// SyncData commits the file's data, and the metadata needed to read it
// back (its size), to stable storage: fdatasync(2), group-committed as
// Sync is. A failure of either is sticky for both.
func (f *File) SyncData() error {
	if err := f.incref("fdatasync"); err != nil {
		return err
	}
	defer f.decref()
	return f.gsd.sync()
}

// WriteString is Write of s's bytes, without a copy.
func (f *File) WriteString(s string) (int, error) {
	// The kernel only reads the bytes; string data never moves.
	return f.Write(unsafe.Slice(unsafe.StringData(s), len(s)))
}

// copyChunk is the size of each read and write of a File-to-File copy.
const copyChunk = 1 << 20

var copyBufs = sync.Pool{New: func() any { b := make([]byte, copyChunk); return &b }}

// ReadFrom copies from r until io.EOF into the file at its position (at
// the end with O_APPEND), as os.File.ReadFrom. From another File (or an
// io.LimitedReader of one) the copy keeps a read and a write in flight
// through the ring at once, in chunks of 1 MiB; from anything else it is
// io.Copy.
func (f *File) ReadFrom(r io.Reader) (int64, error) {
	if err := f.incref("write"); err != nil {
		return 0, err
	}
	defer f.decref()
	limit := int64(-1)
	src, ok := r.(*File)
	if lr, isLimited := r.(*io.LimitedReader); isLimited {
		src, ok = lr.R.(*File)
		limit = lr.N
		if ok && src != f {
			if limit <= 0 {
				return 0, nil
			}
			n, err := f.copyFrom(src, limit)
			lr.N -= n
			return n, err
		}
	}
	if ok && src != f {
		return f.copyFrom(src, limit)
	}
	return io.Copy(fileWithoutReadFrom{f}, r)
}

// fileWithoutReadFrom hides ReadFrom, so io.Copy does not call it back.
type fileWithoutReadFrom struct{ f *File }

func (w fileWithoutReadFrom) Write(p []byte) (int, error) { return w.f.Write(p) }

// fileWithoutWriteTo hides WriteTo, so io.Copy does not call it back.
type fileWithoutWriteTo struct{ f *File }

func (r fileWithoutWriteTo) Read(p []byte) (int, error) { return r.f.Read(p) }

// WriteTo copies the file from its position to the end into w, as
// os.File.WriteTo. Into another File it is that File's ReadFrom.
func (f *File) WriteTo(w io.Writer) (int64, error) {
	if err := f.incref("read"); err != nil {
		return 0, err
	}
	defer f.decref()
	if dst, ok := w.(*File); ok && dst != f {
		return dst.ReadFrom(f)
	}
	return io.Copy(w, fileWithoutWriteTo{f})
}

// chunkRead is one filled buffer of a copy, or the read's end.
type chunkRead struct {
	buf *[]byte
	n   int
	err error // io.EOF at the end
}

// copyFrom copies from src's position to f's (limit < 0: to the end of
// src), reading the next chunk while the last one is written. The reads
// run on a goroutine of their own, which copyFrom stops and waits for
// before it returns.
func (f *File) copyFrom(src *File, limit int64) (int64, error) {
	if err := src.incref("read"); err != nil {
		return 0, err
	}
	defer src.decref()
	src.rmu.Lock()
	defer src.rmu.Unlock()
	f.wmu.Lock()
	defer f.wmu.Unlock()

	ctx := context.Background()
	full := make(chan chunkRead, 2)
	free := make(chan *[]byte, 2)
	quit := make(chan struct{})
	var wg sync.WaitGroup
	for range 2 {
		free <- copyBufs.Get().(*[]byte)
	}
	wg.Add(1)
	go func() {
		defer wg.Done()
		defer close(full)
		left := limit
		for left != 0 {
			var buf *[]byte
			select {
			case <-quit:
				return
			default:
			}
			select {
			case buf = <-free:
			case <-quit:
				return
			}
			p := *buf
			if left > 0 && int64(len(p)) > left {
				p = p[:left]
			}
			n, err := src.pread(ctx, p, filePosition)
			switch {
			case err != nil:
				err = src.pathErr("read", err)
			case n == 0:
				err = io.EOF
			}
			full <- chunkRead{buf, n, err}
			if err != nil {
				return
			}
			if left > 0 {
				left -= int64(n)
			}
		}
	}()

	var written int64
	var err error
	for c := range full {
		if err == nil && c.n > 0 {
			var m int
			m, err = f.writeAll(ctx, (*c.buf)[:c.n], -1)
			written += int64(m)
			if err != nil {
				close(quit) // stop reading; drain what was read
			}
		}
		if err == nil && c.err != nil && c.err != io.EOF {
			err = c.err
		}
		free <- c.buf // never blocks: the channel holds every buffer
	}
	wg.Wait()
	for len(free) > 0 {
		copyBufs.Put(<-free)
	}
	return written, err
}

// ReadDir reads the directory's next n entries (all of them for n <= 0), as
// os.File.ReadDir: directories are read with getdents64 on the caller's
// goroutine, since io_uring has no opcode for it.
func (f *File) ReadDir(n int) ([]fs.DirEntry, error) {
	if err := f.incref("readdirent"); err != nil {
		return nil, err
	}
	defer f.decref()
	return f.os.ReadDir(n)
}

// Readdir is os.File.Readdir: the next n entries' FileInfo (from lstat).
func (f *File) Readdir(n int) ([]fs.FileInfo, error) {
	if err := f.incref("readdirent"); err != nil {
		return []fs.FileInfo{}, err
	}
	defer f.decref()
	return f.os.Readdir(n)
}

// Readdirnames is os.File.Readdirnames: the next n entries' names.
func (f *File) Readdirnames(n int) ([]string, error) {
	if err := f.incref("readdirent"); err != nil {
		return []string{}, err
	}
	defer f.decref()
	return f.os.Readdirnames(n)
}

// Chmod changes the file's mode (fchmod(2) on the caller's goroutine:
// io_uring has no opcode for it), as os.File.Chmod.
func (f *File) Chmod(mode os.FileMode) error {
	if err := f.incref("chmod"); err != nil {
		return err
	}
	defer f.decref()
	return f.os.Chmod(mode)
}

// Chown changes the file's owner and group (fchown(2)), as os.File.Chown.
func (f *File) Chown(uid, gid int) error {
	if err := f.incref("chown"); err != nil {
		return err
	}
	defer f.decref()
	return f.os.Chown(uid, gid)
}

// SyscallConn returns a raw connection to the descriptor, as
// os.File.SyscallConn: its Control runs fn with the descriptor, which stays
// open until fn returns even if the File is closed meanwhile.
func (f *File) SyscallConn() (syscall.RawConn, error) {
	if err := f.incref("SyscallConn"); err != nil {
		return nil, err
	}
	defer f.decref()
	rc, err := f.os.SyscallConn()
	if err != nil {
		return nil, err
	}
	return rawConn{f, rc}, nil
}

// rawConn holds a reference on the File around each call, so Close waits
// for it as for any request.
type rawConn struct {
	f  *File
	rc syscall.RawConn
}

func (c rawConn) Control(fn func(fd uintptr)) error {
	if err := c.f.incref("SyscallConn.Control"); err != nil {
		return err
	}
	defer c.f.decref()
	return c.rc.Control(fn)
}

func (c rawConn) Read(fn func(fd uintptr) (done bool)) error {
	if err := c.f.incref("SyscallConn.Read"); err != nil {
		return err
	}
	defer c.f.decref()
	return c.rc.Read(fn)
}

func (c rawConn) Write(fn func(fd uintptr) (done bool)) error {
	if err := c.f.incref("SyscallConn.Write"); err != nil {
		return err
	}
	defer c.f.decref()
	return c.rc.Write(fn)
}

// SetDeadline returns os.ErrNoDeadline, as os.File does for a regular
// file: reads and writes through the ring take a context (ReadAtContext,
// WriteAtContext) or a kernel-enforced timeout (Ring.ReadAtTimeout) instead.
func (f *File) SetDeadline(t time.Time) error { return f.noDeadline("SetDeadline") }

// SetReadDeadline returns os.ErrNoDeadline (see SetDeadline).
func (f *File) SetReadDeadline(t time.Time) error { return f.noDeadline("SetReadDeadline") }

// SetWriteDeadline returns os.ErrNoDeadline (see SetDeadline).
func (f *File) SetWriteDeadline(t time.Time) error { return f.noDeadline("SetWriteDeadline") }

func (f *File) noDeadline(op string) error {
	if err := f.incref(op); err != nil {
		return err
	}
	f.decref()
	return os.ErrNoDeadline
}
