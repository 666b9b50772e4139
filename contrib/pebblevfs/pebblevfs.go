// Package pebblevfs runs Pebble (github.com/cockroachdb/pebble/v2) on
// ringwake: New returns a vfs.FS whose files read, write and sync through an
// io_uring ring, and whose renames, links, removals, directory creation and
// stats go through it too.
//
//	r, err := ringwake.New(ringwake.Config{Entries: 256})
//	...
//	db, err := pebble.Open(dir, &pebble.Options{FS: pebblevfs.New(r)})
//
// It is a module of its own, so that ringwake's root module does not depend
// on Pebble.
package pebblevfs

import (
	"bufio"
	"context"
	"errors"
	"io"
	"io/fs"
	"math"
	"os"
	"path/filepath"
	"sync"
	"syscall"
	"unsafe"

	"github.com/cockroachdb/pebble/v2/vfs"
	"golang.org/x/sys/unix"

	ringwake "github.com/ringwake/ringwake/runtime"
)

// New returns a vfs.FS on r. Every file it opens is a *ringwake.File on r;
// the ring must outlive them (close the database before the ring).
func New(r *ringwake.Ring) vfs.FS { return &ringFS{r: r} }

type ringFS struct{ r *ringwake.Ring }

var _ vfs.FS = (*ringFS)(nil)

// Create creates name for reading and writing, as vfs.Default does: an
// existing file is removed first (never truncated: it may be a hard link
// that another name still needs), and the create retried while another
// creator wins the race.
func (f *ringFS) Create(name string, _ vfs.DiskWriteCategory) (vfs.File, error) {
	const flags = os.O_RDWR | os.O_CREATE | os.O_EXCL
	rf, err := f.r.Open(name, flags, 0o666)
	for errors.Is(err, fs.ErrExist) {
		if rerr := f.r.Remove(name); rerr != nil && !errors.Is(rerr, fs.ErrNotExist) {
			return nil, rerr
		}
		rf, err = f.r.Open(name, flags, 0o666)
	}
	if err != nil {
		return nil, err
	}
	return f.wrapWritable(name, rf), nil
}

// wrapWritable wraps a file just created or opened for writing: table and
// blob files get the table buffer, the WAL and the MANIFEST write-behind.
func (f *ringFS) wrapWritable(name string, rf *ringwake.File) vfs.File {
	switch {
	case isTable(name):
		return newTableFile(f.wrap(rf))
	case writesBehind(name):
		return newBehindFile(f.wrap(rf))
	}
	return f.wrap(rf)
}

// Link creates newname as a hard link to oldname (linkat through the ring).
func (f *ringFS) Link(oldname, newname string) error {
	err := f.r.Linkat(context.Background(), unix.AT_FDCWD, oldname, unix.AT_FDCWD, newname, 0)
	if le, ok := err.(*os.LinkError); ok {
		le.Op = "link" // os.Link's name, which vfs.Default returns
	}
	return err
}

// Open opens name read-only and applies opts (the read-pattern hints).
func (f *ringFS) Open(name string, opts ...vfs.OpenOption) (vfs.File, error) {
	return f.open(name, os.O_RDONLY, opts)
}

// OpenReadWrite opens name for reading and writing, creating it if needed.
func (f *ringFS) OpenReadWrite(name string, _ vfs.DiskWriteCategory, opts ...vfs.OpenOption) (vfs.File, error) {
	return f.open(name, os.O_RDWR|os.O_CREATE, opts)
}

func (f *ringFS) open(name string, flags int, opts []vfs.OpenOption) (vfs.File, error) {
	rf, err := f.r.Open(name, flags, 0o666)
	if err != nil {
		return nil, err
	}
	file := f.wrap(rf)
	for _, opt := range opts {
		opt.Apply(file)
	}
	return file, nil
}

// OpenDir opens a directory, to Sync it after creating or renaming entries.
func (f *ringFS) OpenDir(name string) (vfs.File, error) {
	rf, err := f.r.Open(name, os.O_RDONLY, 0)
	if err != nil {
		return nil, err
	}
	return &dir{rf}, nil
}

// Remove removes a file or an empty directory.
func (f *ringFS) Remove(name string) error { return f.r.Remove(name) }

// RemoveAll removes name and everything below it, as os.RemoveAll: nil if
// name does not exist.
func (f *ringFS) RemoveAll(name string) error {
	if name == "" {
		return nil
	}
	if name == "." || filepath.Base(name) == "." {
		return &os.PathError{Op: "RemoveAll", Path: name, Err: syscall.EINVAL}
	}
	return f.removeAll(name)
}

func (f *ringFS) removeAll(name string) error {
	err := f.r.Remove(name)
	if err == nil || errors.Is(err, fs.ErrNotExist) {
		return nil
	}
	st, serr := f.r.Lstat(name)
	if serr != nil {
		if errors.Is(serr, fs.ErrNotExist) {
			return nil
		}
		return serr
	}
	if !st.IsDir() {
		return err
	}
	d, derr := f.r.Open(name, os.O_RDONLY|unix.O_DIRECTORY|unix.O_NOFOLLOW, 0)
	if derr != nil {
		if errors.Is(derr, fs.ErrNotExist) {
			return nil
		}
		return derr
	}
	names, lerr := d.Readdirnames(-1)
	d.Close()
	if lerr != nil {
		return lerr
	}
	for _, n := range names {
		if err := f.removeAll(filepath.Join(name, n)); err != nil {
			return err
		}
	}
	if err := f.r.Remove(name); err != nil && !errors.Is(err, fs.ErrNotExist) {
		return err
	}
	return nil
}

// Rename renames oldname to newname, replacing a file at newname.
func (f *ringFS) Rename(oldname, newname string) error { return f.r.Rename(oldname, newname) }

// ReuseForWrite renames oldname to newname and opens it for writing, as
// vfs.Default does (Pebble recycles WAL files this way).
func (f *ringFS) ReuseForWrite(oldname, newname string, _ vfs.DiskWriteCategory) (vfs.File, error) {
	if err := f.Rename(oldname, newname); err != nil {
		return nil, err
	}
	rf, err := f.r.Open(newname, os.O_RDWR|os.O_CREATE, 0o666)
	if err != nil {
		return nil, err
	}
	return f.wrapWritable(newname, rf), nil
}

// MkdirAll creates dir and the parents it lacks.
func (f *ringFS) MkdirAll(dir string, perm os.FileMode) error { return f.r.MkdirAll(dir, perm) }

// Lock is vfs.Default's: an fcntl lock on name, and the process-wide table
// of names locked, which both file systems must share to refuse a second
// lock on the same database from this process.
func (f *ringFS) Lock(name string) (io.Closer, error) { return vfs.Default.Lock(name) }

// List returns the names in dir, in directory order.
func (f *ringFS) List(dir string) ([]string, error) {
	d, err := f.r.Open(dir, os.O_RDONLY, 0)
	if err != nil {
		return nil, err
	}
	defer d.Close()
	return d.Readdirnames(-1)
}

// Stat is statx through the ring.
func (f *ringFS) Stat(name string) (vfs.FileInfo, error) {
	fi, err := f.r.Stat(name)
	if err != nil {
		return nil, err
	}
	st := fi.Sys().(*unix.Statx_t)
	return fileInfo{fi, deviceID(st.Dev_major, st.Dev_minor)}, nil
}

func (f *ringFS) PathBase(path string) string    { return filepath.Base(path) }
func (f *ringFS) PathJoin(elem ...string) string { return filepath.Join(elem...) }
func (f *ringFS) PathDir(path string) string     { return filepath.Dir(path) }
func (f *ringFS) Unwrap() vfs.FS                 { return nil }
func (f *ringFS) GetDiskUsage(p string) (vfs.DiskUsage, error) {
	return vfs.Default.GetDiskUsage(p) // statfs: no io_uring opcode
}

// fileInfo adds the device to an os.FileInfo.
type fileInfo struct {
	os.FileInfo
	dev vfs.DeviceID
}

func (fi fileInfo) DeviceID() vfs.DeviceID { return fi.dev }

// devID has vfs.DeviceID's layout: Pebble has no constructor for it, and
// its fields are unexported. The size checks below and TestDeviceID (which
// compares with vfs.Default's answer for the same file) hold the two in step.
type devID struct{ major, minor uint32 }

var (
	_ [unsafe.Sizeof(vfs.DeviceID{}) - unsafe.Sizeof(devID{})]struct{}
	_ [unsafe.Sizeof(devID{}) - unsafe.Sizeof(vfs.DeviceID{})]struct{}
)

func deviceID(major, minor uint32) vfs.DeviceID {
	d := devID{major, minor}
	return *(*vfs.DeviceID)(unsafe.Pointer(&d))
}

func (f *ringFS) wrap(rf *ringwake.File) *file {
	fl := &file{File: rf, r: f.r, fd: int(rf.Fd())}
	fl.syncRange = syncRangeWorks(fl.fd)
	return fl
}

// file is a vfs.File on a *ringwake.File: Read, ReadAt, Write, WriteAt,
// Sync (group-committed fsync), SyncData (group-committed fdatasync) and
// Close are the File's, through the ring.
type file struct {
	*ringwake.File
	r         *ringwake.Ring
	fd        int
	syncRange bool // sync_file_range does what it says on this file system
}

var _ vfs.File = (*file)(nil)

// Stat adds the device to the File's FileInfo.
func (f *file) Stat() (vfs.FileInfo, error) { return statFile(f.File) }

func statFile(rf *ringwake.File) (vfs.FileInfo, error) {
	fi, err := rf.Stat()
	if err != nil {
		return nil, err
	}
	st := fi.Sys().(*syscall.Stat_t)
	return fileInfo{fi, deviceID(unix.Major(st.Dev), unix.Minor(st.Dev))}, nil
}

// Preallocate reserves [off, off+n) without changing the file's size
// (fallocate with FALLOC_FL_KEEP_SIZE, through the ring).
func (f *file) Preallocate(off, n int64) error {
	if n <= 0 {
		return nil
	}
	return f.File.Fallocate(unix.FALLOC_FL_KEEP_SIZE, off, n)
}

// maxRange is the most one SQE's 32-bit length field describes, rounded
// down to a page.
const maxRange = math.MaxUint32 &^ 4095

// SyncTo starts writeback of the file's first length bytes and waits for
// writeback already under way (sync_file_range with WAIT_BEFORE|WRITE,
// through the ring): no durability, so fullSync is false. Where
// sync_file_range does not work (file systems other than ext2/3/4, as
// vfs.Default decides), it is SyncData, a full sync.
func (f *file) SyncTo(length int64) (fullSync bool, err error) {
	if !f.syncRange {
		if err := f.SyncData(); err != nil {
			return false, err
		}
		return true, nil
	}
	ctx := context.Background()
	const flags = unix.SYNC_FILE_RANGE_WAIT_BEFORE | unix.SYNC_FILE_RANGE_WRITE
	for off := int64(0); off < length; off += maxRange {
		n := uint32(min(length-off, maxRange))
		if err := f.r.SyncFileRange(ctx, f.fd, off, n, flags); err != nil {
			return false, err
		}
	}
	return false, nil
}

// Prefetch asks the kernel to read [off, off+n) into the page cache
// (fadvise WILLNEED, through the ring).
func (f *file) Prefetch(off, n int64) error {
	ctx := context.Background()
	for n > 0 {
		m := min(n, maxRange)
		if err := f.r.Fadvise(ctx, f.fd, off, uint32(m), unix.FADV_WILLNEED); err != nil {
			return err
		}
		off, n = off+m, n-m
	}
	return nil
}

// syncRangeWorks is vfs.Default's test: sync_file_range only on ext2/3/4,
// where it is known to write (ZFS, for one, ignores it), and only where the
// kernel has it.
func syncRangeWorks(fd int) bool {
	var st unix.Statfs_t
	if err := unix.Fstatfs(fd, &st); err != nil {
		return false
	}
	const extMagic = 0xef53
	return st.Type == extMagic && unix.SyncFileRange(fd, 0, 0, 0) != unix.ENOSYS
}

// dir is a directory opened to be synced.
type dir struct{ *ringwake.File }

var _ vfs.File = (*dir)(nil)

func (d *dir) Stat() (vfs.FileInfo, error)    { return statFile(d.File) }
func (d *dir) Preallocate(int64, int64) error { return nil }
func (d *dir) Prefetch(int64, int64) error    { return nil }
func (d *dir) SyncData() error                { return d.Sync() }
func (d *dir) SyncTo(int64) (bool, error)     { return false, nil }

// tableBuffer is the write buffer in front of a table or blob file that
// Create makes. Pebble's sstable writer hands its file one block, about
// 4 KiB, per Write (through a 4 KiB bufio.Writer), and a buffered write on a
// file system that cannot write the page cache without blocking (ext4) goes
// from the ring to an io-wq thread whatever its size: a thread hand-off and
// a completion per block, where write(2) costs a system call. 256 KiB per
// ring write makes that hand-off 64 times rarer.
const tableBuffer = 256 << 10

var tableWriters = sync.Pool{New: func() any { return bufio.NewWriterSize(nil, tableBuffer) }}

// isTable reports whether name is one of Pebble's table or blob files,
// which Pebble writes once, front to back, through its objstorage writer,
// then syncs and closes before any other use.
func isTable(name string) bool {
	ext := filepath.Ext(name)
	return ext == ".sst" || ext == ".blob"
}

// tableFile is a table or blob file being written: Write fills a buffer
// that goes down through the ring when full. Like the 4 KiB buffer Pebble
// already keeps in front of it, data written but not yet flushed has not
// reached the kernel; every call that looks at or syncs the file (Read,
// ReadAt, WriteAt, Stat, Sync, SyncData, SyncTo, Fd, Close) flushes first,
// so none of them can tell the difference. A flush that fails fails every
// later call, as bufio.Writer's, and Close.
type tableFile struct {
	flushFirst
	mu sync.Mutex
	bw *bufio.Writer // nil once closed
}

var _ vfs.File = (*tableFile)(nil)

func newTableFile(f *file) *tableFile {
	bw := tableWriters.Get().(*bufio.Writer)
	bw.Reset(f)
	t := &tableFile{bw: bw}
	t.flushFirst = flushFirst{f, t.flushBuffer}
	return t
}

func (t *tableFile) Write(p []byte) (int, error) {
	t.mu.Lock()
	defer t.mu.Unlock()
	if t.bw == nil {
		return t.f.Write(p) // closed: the File's error
	}
	return t.bw.Write(p)
}

// flushBuffer writes the buffer through the ring.
func (t *tableFile) flushBuffer() error {
	t.mu.Lock()
	defer t.mu.Unlock()
	if t.bw == nil {
		return nil
	}
	return t.bw.Flush()
}

func (t *tableFile) Close() error {
	t.mu.Lock()
	bw := t.bw
	t.bw = nil
	t.mu.Unlock()
	var err error
	if bw != nil {
		err = bw.Flush()
		bw.Reset(nil) // drops the file and any sticky error
		tableWriters.Put(bw)
	}
	if cerr := t.f.Close(); err == nil {
		err = cerr
	}
	return err
}

func (t *tableFile) Read(p []byte) (int, error) {
	if err := t.flushBuffer(); err != nil {
		return 0, err
	}
	return t.f.Read(p)
}

func (t *tableFile) Sync() error {
	if err := t.flushBuffer(); err != nil {
		return err
	}
	return t.f.Sync()
}

func (t *tableFile) SyncData() error {
	if err := t.flushBuffer(); err != nil {
		return err
	}
	return t.f.SyncData()
}

// flushFirst has the calls that look at a buffered file: each writes what
// is pending (flush) first, then is the File's. tableFile and behindFile
// embed it.
type flushFirst struct {
	f     *file
	flush func() error
}

func (x flushFirst) ReadAt(p []byte, off int64) (int, error) {
	if err := x.flush(); err != nil {
		return 0, err
	}
	return x.f.ReadAt(p, off)
}

func (x flushFirst) WriteAt(p []byte, off int64) (int, error) {
	if err := x.flush(); err != nil {
		return 0, err
	}
	return x.f.WriteAt(p, off)
}

func (x flushFirst) Stat() (vfs.FileInfo, error) {
	if err := x.flush(); err != nil {
		return nil, err
	}
	return x.f.Stat()
}

func (x flushFirst) SyncTo(length int64) (bool, error) {
	if err := x.flush(); err != nil {
		return false, err
	}
	return x.f.SyncTo(length)
}

// Fd flushes first, so that whatever the caller does with the descriptor
// sees every byte written; a failed flush is reported by the next call.
func (x flushFirst) Fd() uintptr {
	_ = x.flush()
	return x.f.Fd()
}

// Preallocate and Prefetch do not need what is pending: an allocation with
// KEEP_SIZE changes neither the size nor the data.
func (x flushFirst) Preallocate(off, n int64) error { return x.f.Preallocate(off, n) }
func (x flushFirst) Prefetch(off, n int64) error    { return x.f.Prefetch(off, n) }
