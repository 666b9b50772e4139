package faultfs

import (
	"context"
	"path/filepath"
	"syscall"

	"github.com/hanwen/go-fuse/v2/fs"
	"github.com/hanwen/go-fuse/v2/fuse"
	"golang.org/x/sys/unix"
)

// node is a file or directory of a mount: go-fuse's loopback node, with
// every request that changes something recorded in (or refused by) the
// durable model, and every node made here so that each carries its inode.
type node struct {
	*fs.LoopbackNode
	m  *mount
	st *inode
}

// Every operation that could create or change a file outside the model is
// overridden; what loopback still serves (Getattr, Readlink, Statfs, Lseek)
// only reads.
var (
	_ fs.NodeLookuper        = (*node)(nil)
	_ fs.NodeCreater         = (*node)(nil)
	_ fs.NodeMkdirer         = (*node)(nil)
	_ fs.NodeMknoder         = (*node)(nil)
	_ fs.NodeSymlinker       = (*node)(nil)
	_ fs.NodeLinker          = (*node)(nil)
	_ fs.NodeTmpfiler        = (*node)(nil)
	_ fs.NodeUnlinker        = (*node)(nil)
	_ fs.NodeRmdirer         = (*node)(nil)
	_ fs.NodeRenamer         = (*node)(nil)
	_ fs.NodeOpener          = (*node)(nil)
	_ fs.NodeOpendirHandler  = (*node)(nil)
	_ fs.NodeSetattrer       = (*node)(nil)
	_ fs.NodeCopyFileRanger  = (*node)(nil)
	_ fs.FileReader          = (*handle)(nil)
	_ fs.FileWriter          = (*handle)(nil)
	_ fs.FileFsyncer         = (*handle)(nil)
	_ fs.FileAllocater       = (*handle)(nil)
	_ fs.FilePassthroughFder = (*handle)(nil)
	_ fs.FileReaddirenter    = (*dirHandle)(nil)
	_ fs.FileFsyncdirer      = (*dirHandle)(nil)
)

// path is the node's path in the backing directory.
func (n *node) path() string { return filepath.Join(n.m.disk, n.Path(nil)) }

// name is the node's path relative to the mount point, for fault patterns.
func (n *node) name() string { return n.Path(nil) }

// child returns the inode for the entry name of n whose lstat is st.
func (n *node) child(ctx context.Context, st *syscall.Stat_t, in *inode) *fs.Inode {
	c := &node{LoopbackNode: &fs.LoopbackNode{RootData: n.RootData}, m: n.m, st: in}
	return n.NewInode(ctx, c, fs.StableAttr{Mode: st.Mode & syscall.S_IFMT, Ino: st.Ino, Gen: in.gen})
}

func (n *node) Lookup(ctx context.Context, name string, out *fuse.EntryOut) (*fs.Inode, syscall.Errno) {
	if n.m.dead.Load() {
		return nil, syscall.EIO
	}
	var st syscall.Stat_t
	if err := syscall.Lstat(filepath.Join(n.path(), name), &st); err != nil {
		return nil, errnoOf(err)
	}
	out.Attr.FromStat(&st)
	return n.child(ctx, &st, n.m.inodeOf(&st)), 0
}

func (n *node) Create(ctx context.Context, name string, flags uint32, mode uint32, out *fuse.EntryOut) (*fs.Inode, fs.FileHandle, uint32, syscall.Errno) {
	if errno := n.m.enter(); errno != 0 {
		return nil, nil, 0, errno
	}
	defer n.m.exit()
	p := filepath.Join(n.path(), name)
	var old syscall.Stat_t
	existed := syscall.Lstat(p, &old) == nil
	fd, err := syscall.Open(p, backingFlags(flags)|syscall.O_CREAT, mode)
	if err != nil {
		return nil, nil, 0, errnoOf(err)
	}
	var st syscall.Stat_t
	if err := syscall.Fstat(fd, &st); err != nil {
		syscall.Close(fd)
		return nil, nil, 0, errnoOf(err)
	}
	var in *inode
	if existed && old.Ino == st.Ino {
		in = n.m.inodeOf(&st)
		if flags&syscall.O_TRUNC != 0 {
			in.changed(0, old.Size)
		}
	} else {
		in = n.m.newInode(&st)
	}
	out.Attr.FromStat(&st)
	ch := n.child(ctx, &st, in)
	return ch, n.m.newHandle(fd, ch.Operations().(*node)), n.m.openFlags(), 0
}

func (n *node) Mkdir(ctx context.Context, name string, mode uint32, out *fuse.EntryOut) (*fs.Inode, syscall.Errno) {
	if errno := n.m.enter(); errno != 0 {
		return nil, errno
	}
	defer n.m.exit()
	p := filepath.Join(n.path(), name)
	if err := syscall.Mkdir(p, mode); err != nil {
		return nil, errnoOf(err)
	}
	var st syscall.Stat_t
	if err := syscall.Lstat(p, &st); err != nil {
		return nil, errnoOf(err)
	}
	in := n.m.newInode(&st)
	out.Attr.FromStat(&st)
	return n.child(ctx, &st, in), 0
}

func (n *node) Mknod(context.Context, string, uint32, uint32, *fuse.EntryOut) (*fs.Inode, syscall.Errno) {
	return nil, syscall.ENOTSUP
}

func (n *node) Symlink(context.Context, string, string, *fuse.EntryOut) (*fs.Inode, syscall.Errno) {
	return nil, syscall.ENOTSUP
}

func (n *node) Link(context.Context, fs.InodeEmbedder, string, *fuse.EntryOut) (*fs.Inode, syscall.Errno) {
	return nil, syscall.ENOTSUP
}

func (n *node) Tmpfile(context.Context, uint32, uint32, *fuse.EntryOut) (*fs.Inode, fs.FileHandle, uint32, syscall.Errno) {
	return nil, nil, 0, syscall.ENOTSUP
}

// CopyFileRange is refused so that the kernel copies through reads and
// writes, which the model sees.
func (n *node) CopyFileRange(context.Context, fs.FileHandle, uint64, *fs.Inode, fs.FileHandle, uint64, uint64, uint64) (uint32, syscall.Errno) {
	return 0, syscall.ENOTSUP
}

func (n *node) Unlink(ctx context.Context, name string) syscall.Errno {
	if errno := n.m.enter(); errno != 0 {
		return errno
	}
	defer n.m.exit()
	return n.LoopbackNode.Unlink(ctx, name)
}

func (n *node) Rmdir(ctx context.Context, name string) syscall.Errno {
	if errno := n.m.enter(); errno != 0 {
		return errno
	}
	defer n.m.exit()
	return n.LoopbackNode.Rmdir(ctx, name)
}

func (n *node) Rename(ctx context.Context, name string, newParent fs.InodeEmbedder, newName string, flags uint32) syscall.Errno {
	if errno := n.m.enter(); errno != 0 {
		return errno
	}
	defer n.m.exit()
	return n.LoopbackNode.Rename(ctx, name, newParent, newName, flags)
}

func (n *node) Setattr(ctx context.Context, f fs.FileHandle, in *fuse.SetAttrIn, out *fuse.AttrOut) syscall.Errno {
	if errno := n.m.enter(); errno != 0 {
		return errno
	}
	defer n.m.exit()
	size, resize := in.GetSize()
	var old syscall.Stat_t
	if resize {
		if err := syscall.Lstat(n.path(), &old); err != nil {
			return errnoOf(err)
		}
	}
	if errno := n.LoopbackNode.Setattr(ctx, f, in, out); errno != 0 {
		return errno
	}
	if resize {
		n.st.changed(min(old.Size, int64(size)), max(old.Size, int64(size)))
	}
	return 0
}

func (n *node) Open(ctx context.Context, flags uint32) (fs.FileHandle, uint32, syscall.Errno) {
	if errno := n.m.enter(); errno != 0 {
		return nil, 0, errno
	}
	defer n.m.exit()
	p := n.path()
	var old syscall.Stat_t
	trunc := flags&syscall.O_TRUNC != 0
	if trunc {
		if err := syscall.Lstat(p, &old); err != nil {
			return nil, 0, errnoOf(err)
		}
	}
	fd, err := syscall.Open(p, backingFlags(flags), 0)
	if err != nil {
		return nil, 0, errnoOf(err)
	}
	if trunc {
		n.st.changed(0, old.Size)
	}
	return n.m.newHandle(fd, n), n.m.openFlags(), 0
}

// backingFlags are the open flags for the backing file: no O_DIRECT (the
// backing file's own durability does not matter, and go-fuse's buffers are
// not aligned), no O_APPEND (the kernel sends offsets), no FMODE_EXEC.
func backingFlags(flags uint32) int {
	return int(flags&^(syscall.O_APPEND|syscall.O_DIRECT|fuse.FMODE_EXEC)) | syscall.O_CLOEXEC
}

func (m *mount) openFlags() uint32 {
	if m.fs.cfg.DirectIO {
		return fuse.FOPEN_DIRECT_IO
	}
	return 0
}

func (n *node) OpendirHandle(ctx context.Context, flags uint32) (fs.FileHandle, uint32, syscall.Errno) {
	if n.m.dead.Load() {
		return nil, 0, syscall.EIO
	}
	ds, errno := fs.NewLoopbackDirStream(n.path())
	if errno != 0 {
		return nil, 0, errno
	}
	return &dirHandle{ds: ds, n: n}, 0, 0
}

// handle is an open file: go-fuse's loopback file (Getattr, Flush,
// Release, Lseek, locks), with reads, writes, syncs and fallocate checked
// for faults and recorded in the model.
type handle struct {
	*fs.LoopbackFile
	fd int // owned by LoopbackFile, which closes it at Release, after every request on it
	n  *node
}

func (m *mount) newHandle(fd int, n *node) *handle {
	return &handle{LoopbackFile: fs.NewLoopbackFile(fd).(*fs.LoopbackFile), fd: fd, n: n}
}

// PassthroughFd says no: with FUSE passthrough the kernel would read and
// write the backing file directly, past the model.
func (h *handle) PassthroughFd() (int, bool) { return -1, false }

func (h *handle) Read(ctx context.Context, buf []byte, off int64) (fuse.ReadResult, syscall.Errno) {
	m := h.n.m
	if m.dead.Load() {
		return nil, syscall.EIO
	}
	m.fs.stats.reads.Add(1)
	if errno := m.fs.check(OpRead, h.n.name); errno != 0 {
		return nil, errno
	}
	n, err := syscall.Pread(h.fd, buf, off)
	if err != nil {
		return nil, errnoOf(err)
	}
	return fuse.ReadResultData(buf[:n]), 0
}

func (h *handle) Write(ctx context.Context, data []byte, off int64) (uint32, syscall.Errno) {
	m := h.n.m
	if errno := m.enter(); errno != 0 {
		return 0, errno
	}
	defer m.exit()
	m.fs.stats.writes.Add(1)
	if errno := m.fs.check(OpWrite, h.n.name); errno != 0 {
		return 0, errno
	}
	if errno := m.fs.spend(int64(len(data))); errno != 0 {
		return 0, errno
	}
	n, err := syscall.Pwrite(h.fd, data, off)
	if n > 0 {
		// Before the reply: a sync the caller issues after this write
		// returns finds it owed.
		h.n.st.changed(off, off+int64(n))
	}
	if err != nil {
		return uint32(max(n, 0)), errnoOf(err)
	}
	return uint32(n), 0
}

func (h *handle) Fsync(ctx context.Context, flags uint32) syscall.Errno {
	m := h.n.m
	if errno := m.enter(); errno != 0 {
		return errno
	}
	defer m.exit()
	op := OpFsync
	if flags&1 != 0 { // FUSE_FSYNC_FDATASYNC
		op = OpFdatasync
		m.fs.stats.fdatasyncs.Add(1)
	} else {
		m.fs.stats.fsyncs.Add(1)
	}
	if errno := m.fs.check(op, h.n.name); errno != 0 {
		h.n.st.forget()
		return errno
	}
	return h.n.st.sync(h.fd)
}

func (h *handle) Allocate(ctx context.Context, off uint64, size uint64, mode uint32) syscall.Errno {
	m := h.n.m
	if errno := m.enter(); errno != 0 {
		return errno
	}
	defer m.exit()
	if errno := m.fs.spend(int64(size)); errno != 0 {
		return errno
	}
	if err := unix.Fallocate(h.fd, mode, int64(off), int64(size)); err != nil {
		return errnoOf(err)
	}
	h.n.st.changed(int64(off), int64(off+size))
	return 0
}

// dirHandle is an open directory: loopback's directory stream, with fsync
// recording the directory's names as durable.
type dirHandle struct {
	ds fs.DirStream
	n  *node
}

func (d *dirHandle) Readdirent(ctx context.Context) (*fuse.DirEntry, syscall.Errno) {
	if d.n.m.dead.Load() {
		return nil, syscall.EIO
	}
	if !d.ds.HasNext() {
		return nil, 0
	}
	e, errno := d.ds.Next()
	return &e, errno
}

func (d *dirHandle) Seekdir(ctx context.Context, off uint64) syscall.Errno {
	if s, ok := d.ds.(fs.FileSeekdirer); ok {
		return s.Seekdir(ctx, off)
	}
	return syscall.ENOTSUP
}

func (d *dirHandle) Releasedir(ctx context.Context, flags uint32) { d.ds.Close() }

func (d *dirHandle) Fsyncdir(ctx context.Context, flags uint32) syscall.Errno {
	m := d.n.m
	if errno := m.enter(); errno != 0 {
		return errno
	}
	defer m.exit()
	m.fs.stats.dirSyncs.Add(1)
	if errno := m.fs.check(OpDirSync, d.n.name); errno != 0 {
		return errno
	}
	return m.syncDir(d.n.st, d.n.path())
}
