package runtime

import (
	"context"
	"fmt"
	"os"
	"sync/atomic"
	"syscall"
	"unsafe"

	"golang.org/x/sys/unix"

	"github.com/ringwake/ringwake/sqe"
)

// File-system operations through the ring: IORING_OP_RENAMEAT and UNLINKAT
// (Linux 5.11), MKDIRAT, SYMLINKAT and LINKAT (5.15), FTRUNCATE (6.9).
// Where the running kernel lacks one (Supports reports false), the plain
// syscall runs instead, on the caller's goroutine, with the same arguments
// and the same errors. The software engine implements them all.
//
// The paths are C strings on the Go heap, which never moves memory; the
// request keeps them reachable until its completion, as it keeps a buffer.

// hiddenOps is a test hook: opcodes (below 64) whose calls take the syscall
// path although the ring has them, as on a kernel whose probe lacks them.
var hiddenOps atomic.Uint64

// viaRing reports whether op goes through the ring.
func (r *Ring) viaRing(op uint8) bool {
	return r.supported(op) && (op >= 64 || hiddenOps.Load()&(1<<op) == 0)
}

// twoPaths keeps both C strings of a two-path request in one heap object
// that the request holds until its completion.
type twoPaths struct{ old, new *byte }

// doPath runs a path request on the ring; keep is its path memory. A ctx
// that has already ended starts nothing: a change to the file system that
// completes before the cancel reaches it would otherwise be reported as
// done.
func (r *Ring) doPath(ctx context.Context, s *sqe.SQE, keep unsafe.Pointer) error {
	if err := ctx.Err(); err != nil {
		return err
	}
	res, _, err := r.pdo(ctx, r.pick(), s, keep, 0)
	if err == nil && res < 0 {
		err = syscall.Errno(-res)
	}
	return err
}

// retryEINTR is the syscall path: fn again while it reports EINTR, as os
// does, after a ctx that already ended.
func retryEINTR(ctx context.Context, fn func() error) error {
	if err := ctx.Err(); err != nil {
		return err
	}
	for {
		if err := fn(); err != syscall.EINTR {
			return err
		}
	}
}

// Renameat is renameat2(2): it renames oldpath (relative to olddirfd, or the
// working directory for unix.AT_FDCWD) to newpath (relative to newdirfd).
// flags are unix.RENAME_NOREPLACE, RENAME_EXCHANGE, RENAME_WHITEOUT. The
// error is an *os.LinkError wrapping the errno.
func (r *Ring) Renameat(ctx context.Context, olddirfd int, oldpath string, newdirfd int, newpath string, flags uint32) error {
	err := r.twoPathOp(ctx, sqe.OpRenameat, oldpath, newpath, func(s *sqe.SQE, o, n *byte) {
		s.PrepRenameat(int32(olddirfd), o, int32(newdirfd), n, flags)
	}, func() error {
		return unix.Renameat2(olddirfd, oldpath, newdirfd, newpath, uint(flags))
	})
	if err != nil {
		return &os.LinkError{Op: "renameat", Old: oldpath, New: newpath, Err: err}
	}
	return nil
}

// Linkat is linkat(2): a new hard link newpath (relative to newdirfd) to
// oldpath (relative to olddirfd); flags may be unix.AT_SYMLINK_FOLLOW. The
// error is an *os.LinkError.
func (r *Ring) Linkat(ctx context.Context, olddirfd int, oldpath string, newdirfd int, newpath string, flags int) error {
	err := r.twoPathOp(ctx, sqe.OpLinkat, oldpath, newpath, func(s *sqe.SQE, o, n *byte) {
		s.PrepLinkat(int32(olddirfd), o, int32(newdirfd), n, uint32(flags))
	}, func() error {
		return unix.Linkat(olddirfd, oldpath, newdirfd, newpath, flags)
	})
	if err != nil {
		return &os.LinkError{Op: "linkat", Old: oldpath, New: newpath, Err: err}
	}
	return nil
}

// Symlinkat is symlinkat(2): a symbolic link linkpath (relative to
// newdirfd) whose content is target. The error is an *os.LinkError.
func (r *Ring) Symlinkat(ctx context.Context, target string, newdirfd int, linkpath string) error {
	err := r.twoPathOp(ctx, sqe.OpSymlinkat, target, linkpath, func(s *sqe.SQE, t, l *byte) {
		s.PrepSymlinkat(t, int32(newdirfd), l)
	}, func() error {
		return unix.Symlinkat(target, newdirfd, linkpath)
	})
	if err != nil {
		return &os.LinkError{Op: "symlinkat", Old: target, New: linkpath, Err: err}
	}
	return nil
}

// twoPathOp runs a two-path operation on the ring, or sys where the ring
// lacks op.
func (r *Ring) twoPathOp(ctx context.Context, op uint8, a, b string, prep func(s *sqe.SQE, a, b *byte), sys func() error) error {
	if !r.viaRing(op) {
		return retryEINTR(ctx, sys)
	}
	pa, err := syscall.BytePtrFromString(a)
	if err != nil {
		return err
	}
	pb, err := syscall.BytePtrFromString(b)
	if err != nil {
		return err
	}
	keep := &twoPaths{old: pa, new: pb}
	var s sqe.SQE
	prep(&s, keep.old, keep.new)
	return r.doPath(ctx, &s, unsafe.Pointer(keep))
}

// onePathOp runs a one-path operation on the ring, or sys where the ring
// lacks op. The error is an *os.PathError naming opName and path.
func (r *Ring) onePathOp(ctx context.Context, op uint8, opName, path string, prep func(s *sqe.SQE, p *byte), sys func() error) error {
	var err error
	if !r.viaRing(op) {
		err = retryEINTR(ctx, sys)
	} else {
		var p *byte
		if p, err = syscall.BytePtrFromString(path); err == nil {
			var s sqe.SQE
			prep(&s, p)
			err = r.doPath(ctx, &s, unsafe.Pointer(p))
		}
	}
	if err != nil {
		return &os.PathError{Op: opName, Path: path, Err: err}
	}
	return nil
}

// Unlinkat is unlinkat(2): it removes path (relative to dirfd); with
// unix.AT_REMOVEDIR it removes an empty directory. The error is an
// *os.PathError.
func (r *Ring) Unlinkat(ctx context.Context, dirfd int, path string, flags int) error {
	return r.onePathOp(ctx, sqe.OpUnlinkat, "unlinkat", path, func(s *sqe.SQE, p *byte) {
		s.PrepUnlinkat(int32(dirfd), p, uint32(flags))
	}, func() error { return unix.Unlinkat(dirfd, path, flags) })
}

// Mkdirat is mkdirat(2): it creates directory path (relative to dirfd) with
// mode (before the umask). The error is an *os.PathError.
func (r *Ring) Mkdirat(ctx context.Context, dirfd int, path string, mode uint32) error {
	return r.onePathOp(ctx, sqe.OpMkdirat, "mkdirat", path, func(s *sqe.SQE, p *byte) {
		s.PrepMkdirat(int32(dirfd), p, mode)
	}, func() error { return unix.Mkdirat(dirfd, path, mode) })
}

// Ftruncate is ftruncate(2) on fd: the file's size becomes size.
func (r *Ring) Ftruncate(ctx context.Context, fd int, size int64) error {
	if size < 0 {
		return &OpError{Op: "ftruncate", Fd: fd, Err: fmt.Errorf("negative size %d: %w", size, syscall.EINVAL)}
	}
	if !r.viaRing(sqe.OpFtruncate) {
		if err := retryEINTR(ctx, func() error { return unix.Ftruncate(fd, size) }); err != nil {
			return &OpError{Op: "ftruncate", Fd: fd, Err: err}
		}
		return nil
	}
	if err := ctx.Err(); err != nil {
		return &OpError{Op: "ftruncate", Fd: fd, Err: err}
	}
	var s sqe.SQE
	s.PrepFtruncate(int32(fd), uint64(size))
	_, err := r.do(ctx, "ftruncate", fd, &s, nil)
	return err
}

// Rename renames (moves) oldpath to newpath, as os.Rename: an existing
// newpath that is not a directory is replaced; one that is a directory is
// refused with EEXIST (os checks that first, and so does Rename). The error
// is an *os.LinkError.
func (r *Ring) Rename(oldpath, newpath string) error {
	ctx := context.Background()
	if nst, err := r.lstat(ctx, newpath); err == nil && nst.Mode&unix.S_IFMT == unix.S_IFDIR {
		ost, err := r.lstat(ctx, oldpath)
		if err != nil {
			return &os.LinkError{Op: "rename", Old: oldpath, New: newpath, Err: err}
		}
		if newpath == oldpath || !sameStatx(nst, ost) {
			return &os.LinkError{Op: "rename", Old: oldpath, New: newpath, Err: syscall.EEXIST}
		}
	}
	if err := r.Renameat(ctx, unix.AT_FDCWD, oldpath, unix.AT_FDCWD, newpath, 0); err != nil {
		err.(*os.LinkError).Op = "rename"
		return err
	}
	return nil
}

// Remove removes the named file or (empty) directory, as os.Remove. The
// error is an *os.PathError.
func (r *Ring) Remove(name string) error {
	ctx := context.Background()
	e := r.Unlinkat(ctx, unix.AT_FDCWD, name, 0)
	if e == nil {
		return nil
	}
	e1 := r.Unlinkat(ctx, unix.AT_FDCWD, name, unix.AT_REMOVEDIR)
	if e1 == nil {
		return nil
	}
	// Both failed. As os.Remove: rmdir of a file says ENOTDIR on every
	// Unix, so any other rmdir error is the real one.
	err := e.(*os.PathError).Err
	if err1 := e1.(*os.PathError).Err; err1 != syscall.ENOTDIR {
		err = err1
	}
	return &os.PathError{Op: "remove", Path: name, Err: err}
}

// Mkdir creates a directory named name with perm (before the umask), as
// os.Mkdir. The error is an *os.PathError.
func (r *Ring) Mkdir(name string, perm os.FileMode) error {
	if err := r.Mkdirat(context.Background(), unix.AT_FDCWD, name, syscallMode(perm)); err != nil {
		err.(*os.PathError).Op = "mkdir"
		return err
	}
	return nil
}

// MkdirAll creates a directory named path along with any parents it lacks,
// as os.MkdirAll: nil if path is already a directory, an *os.PathError
// wrapping ENOTDIR if it is something else.
func (r *Ring) MkdirAll(path string, perm os.FileMode) error {
	ctx := context.Background()
	// Fast path: path already exists.
	st, err := r.stat(ctx, path, 0)
	if err == nil {
		if st.Mode&unix.S_IFMT == unix.S_IFDIR {
			return nil
		}
		return &os.PathError{Op: "mkdir", Path: path, Err: syscall.ENOTDIR}
	}
	// Make sure the parent exists, then create path.
	i := len(path) - 1
	for i >= 0 && path[i] == '/' {
		i--
	}
	for i >= 0 && path[i] != '/' {
		i--
	}
	if i < 0 {
		i = 0
	}
	if parent := path[:i]; len(parent) > 0 {
		if err := r.MkdirAll(parent, perm); err != nil {
			return err
		}
	}
	if err := r.Mkdir(path, perm); err != nil {
		// "foo/." and the like: the directory may exist after all.
		if st, err1 := r.lstat(ctx, path); err1 == nil && st.Mode&unix.S_IFMT == unix.S_IFDIR {
			return nil
		}
		return err
	}
	return nil
}

// Truncate changes the size of the named file, as os.Truncate. On the ring
// it is an open for writing, an ftruncate and a close (io_uring has no
// truncate by name); where the ring lacks FTRUNCATE it is truncate(2). The
// error is an *os.PathError.
func (r *Ring) Truncate(name string, size int64) error {
	ctx := context.Background()
	if !r.viaRing(sqe.OpFtruncate) || !r.viaRing(sqe.OpOpenat) {
		if err := retryEINTR(ctx, func() error { return unix.Truncate(name, size) }); err != nil {
			return &os.PathError{Op: "truncate", Path: name, Err: err}
		}
		return nil
	}
	if size < 0 {
		return &os.PathError{Op: "truncate", Path: name, Err: syscall.EINVAL}
	}
	// O_NONBLOCK: a FIFO without a reader must not hang the open, where
	// truncate(2) fails at once.
	fd, err := r.openat(ctx, "truncate", unix.AT_FDCWD, name, unix.O_WRONLY|unix.O_NONBLOCK|unix.O_NOCTTY, 0)
	if err != nil {
		switch err.(*os.PathError).Err {
		case syscall.ENXIO:
			// A FIFO or socket: truncate(2) says what it is not.
			err.(*os.PathError).Err = syscall.EINVAL
		case syscall.EWOULDBLOCK:
			// A lease the open would wait for: truncate(2) waits for it.
			if err := retryEINTR(ctx, func() error { return unix.Truncate(name, size) }); err != nil {
				return &os.PathError{Op: "truncate", Path: name, Err: err}
			}
			return nil
		}
		return err
	}
	err = r.Ftruncate(ctx, fd, size)
	cerr := unix.Close(fd)
	if err == nil {
		err = cerr
	}
	if err != nil {
		if oe, ok := err.(*OpError); ok {
			err = oe.Err
		}
		return &os.PathError{Op: "truncate", Path: name, Err: err}
	}
	return nil
}

// stat is statx(2) of path with flags (0 follows a final symlink,
// unix.AT_SYMLINK_NOFOLLOW does not): on the ring where it has STATX, else
// on the caller's goroutine. The error is the bare errno.
func (r *Ring) stat(ctx context.Context, path string, flags int) (*unix.Statx_t, error) {
	const mask = unix.STATX_BASIC_STATS
	if r.viaRing(sqe.OpStatx) {
		st, err := r.Statx(ctx, unix.AT_FDCWD, path, uint32(flags), mask)
		if err != nil {
			return nil, err.(*os.PathError).Err
		}
		return st, nil
	}
	st := new(unix.Statx_t)
	if err := retryEINTR(ctx, func() error { return unix.Statx(unix.AT_FDCWD, path, flags, mask, st) }); err != nil {
		return nil, err
	}
	return st, nil
}

func (r *Ring) lstat(ctx context.Context, path string) (*unix.Statx_t, error) {
	return r.stat(ctx, path, unix.AT_SYMLINK_NOFOLLOW)
}

// sameStatx is os.SameFile for statx results.
func sameStatx(a, b *unix.Statx_t) bool {
	return a.Ino == b.Ino && a.Dev_major == b.Dev_major && a.Dev_minor == b.Dev_minor
}

// Stat returns the FileInfo of the named file, following symbolic links,
// as os.Stat: statx(2) through the ring. Its Sys is the *unix.Statx_t.
func (r *Ring) Stat(name string) (os.FileInfo, error) {
	st, err := r.stat(context.Background(), name, 0)
	if err != nil {
		return nil, &os.PathError{Op: "stat", Path: name, Err: err}
	}
	return &statxInfo{name: basename(name), st: *st}, nil
}

// Lstat is Stat without following a final symbolic link, as os.Lstat.
func (r *Ring) Lstat(name string) (os.FileInfo, error) {
	st, err := r.lstat(context.Background(), name)
	if err != nil {
		return nil, &os.PathError{Op: "lstat", Path: name, Err: err}
	}
	return &statxInfo{name: basename(name), st: *st}, nil
}
