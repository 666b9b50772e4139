package pebblevfs

import (
	"context"
	"io"
	"os"
	"path/filepath"
	"runtime"
	"strings"
	"sync"
	"syscall"

	"github.com/cockroachdb/pebble/v2/vfs"

	ringwake "github.com/ringwake/ringwake/runtime"
	"github.com/ringwake/ringwake/sqe"
)

// Write-behind for the WAL and the MANIFEST. Pebble appends a batch of
// commits to its WAL and then syncs it, on one goroutine, while every
// synced commit waits. On a file system that cannot write to the page cache
// without blocking (ext4), io_uring hands every buffered write to an io-wq
// worker, so each of Pebble's writes (about 1.5 per sync) would cost a trip
// through a worker thread and a completion of its own before the sync.
// Here Write only copies into the file's buffer; Sync and SyncData hand
// the buffer to the kernel as one write linked (IOSQE_IO_LINK) to the
// fsync, in one submission: the kernel starts the fsync only after the
// write has completed in full, in the same worker, and the caller is woken
// once, by the fsync's completion.
//
// Pebble documents that a write made without Sync may be lost if the
// process crashes (its WriteOptions.Sync): its own LogWriter already holds
// such data in memory. Write-behind holds at most behindCap bytes, and
// every call that looks at the file (Read, ReadAt, WriteAt, Stat, SyncTo,
// Fd, Close) writes them first, so through the vfs.File nothing can tell
// the difference.

// behindCap is the most a write-behind file holds before writing it down:
// Pebble's WAL writes about 11 KiB per commit group; a writer that does not
// sync (Sync: false commits) has its data written every 256 KiB.
const behindCap = 256 << 10

// writesBehind reports whether name is a WAL or a MANIFEST, the files
// Pebble appends to and syncs on the commit path.
func writesBehind(name string) bool {
	return filepath.Ext(name) == ".log" || strings.HasPrefix(filepath.Base(name), "MANIFEST-")
}

// submitChain submits a linked write and fsync; a test replaces it to see
// and alter what goes to the kernel.
var submitChain = (*ringwake.Ring).SubmitAndWait

// behindFile is a WAL or MANIFEST being written (see above). The file
// position is its own (off): Write appends there and Read reads there, as
// one position of an *os.File would; the *ringwake.File underneath only
// sees writes and reads at explicit offsets.
type behindFile struct {
	flushFirst // ReadAt, WriteAt, Stat, SyncTo, Fd, Preallocate, Prefetch

	mu  sync.Mutex
	buf []byte // written by Write, not yet handed to the kernel; starts at off
	off int64  // file offset of buf[0]: the position once buf is written
	// err is the first failure: the kernel may have dropped pages it could
	// not write, so no later call succeeds. buf is never touched again
	// after one, in case a failed submission left it with the kernel.
	err    error
	closed bool
	ss     [2]sqe.SQE
	res    [2]int32
}

var _ vfs.File = (*behindFile)(nil)

// newBehindFile puts write-behind in front of f, a file just created or
// opened for writing, at offset 0.
func newBehindFile(f *file) *behindFile {
	b := &behindFile{}
	b.flushFirst = flushFirst{f, b.flushBuffer}
	return b
}

func (b *behindFile) Write(p []byte) (int, error) {
	b.mu.Lock()
	defer b.mu.Unlock()
	if b.closed {
		return b.f.Write(p) // the File's os.ErrClosed
	}
	if b.err != nil {
		return 0, b.err
	}
	if len(b.buf)+len(p) > behindCap {
		if err := b.flushLocked(); err != nil {
			return 0, err
		}
		if len(p) >= behindCap {
			// Too big to hold: written at once, without a copy.
			n, err := b.f.WriteAt(p, b.off)
			b.off += int64(n)
			if err != nil {
				b.err = err
			}
			return n, err
		}
	}
	b.buf = append(b.buf, p...)
	return len(p), nil
}

// flushLocked writes buf through the ring, without a sync.
func (b *behindFile) flushLocked() error {
	if b.err != nil || len(b.buf) == 0 {
		return b.err
	}
	n, err := b.f.WriteAt(b.buf, b.off)
	b.off += int64(n)
	if err != nil {
		b.err = err
		return err
	}
	b.buf = b.buf[:0]
	return nil
}

func (b *behindFile) flushBuffer() error {
	b.mu.Lock()
	defer b.mu.Unlock()
	return b.flushLocked()
}

// Sync makes every byte written durable with its metadata: the pending
// write linked to an fsync, or the File's group-committed fsync when
// nothing is pending.
func (b *behindFile) Sync() error { return b.sync(0, "sync") }

// SyncData makes every byte written durable (fdatasync), as Sync.
func (b *behindFile) SyncData() error { return b.sync(sqe.FsyncDatasync, "fdatasync") }

func (b *behindFile) sync(flags uint32, op string) error {
	b.mu.Lock()
	defer b.mu.Unlock()
	if b.err != nil {
		return b.err
	}
	if len(b.buf) > 0 && !b.closed {
		done, err := b.chainLocked(flags, op)
		if done || err != nil {
			return err
		}
		// The write came back short, so the kernel canceled the fsync
		// linked to it: the rest went down on its own, and the File's
		// fsync below covers it.
	}
	var err error
	if flags&sqe.FsyncDatasync != 0 {
		err = b.f.SyncData()
	} else {
		err = b.f.Sync()
	}
	if err != nil && !b.closed {
		b.err = err
	}
	return err
}

// chainLocked submits buf's write linked to an fsync with flags, as one
// submission, and waits for both. done reports that the fsync ran and
// covered buf; false with a nil error means the write was short and the
// rest of buf has since been written without a sync.
func (b *behindFile) chainLocked(flags uint32, op string) (done bool, err error) {
	fd := int32(b.f.fd)
	b.ss[0].PrepWrite(fd, b.buf, uint64(b.off))
	b.ss[0].Flags |= sqe.IOLink // the fsync starts only once the write completed in full
	b.ss[1].PrepFsync(fd, flags)
	b.res = [2]int32{}
	serr := submitChain(b.f.r, context.Background(), b.ss[:], b.res[:])
	// The kernel has let go of buf once SubmitAndWait returned without an
	// error; after an error buf is never reused (b.err).
	runtime.KeepAlive(b.buf)
	name := b.f.Name()
	if serr != nil {
		b.err = &os.PathError{Op: "write", Path: name, Err: serr}
		return false, b.err
	}
	w := b.res[0]
	switch {
	case w < 0:
		b.err = &os.PathError{Op: "write", Path: name, Err: syscall.Errno(-w)}
		return false, b.err
	case int(w) < len(b.buf):
		b.off += int64(w)
		n := copy(b.buf, b.buf[w:])
		b.buf = b.buf[:n]
		return false, b.flushLocked()
	}
	b.off += int64(len(b.buf))
	b.buf = b.buf[:0]
	if s := b.res[1]; s < 0 {
		b.err = &os.PathError{Op: op, Path: name, Err: syscall.Errno(-s)}
		return false, b.err
	}
	return true, nil
}

// Read reads at the file position, after what Write left pending, as
// os.File.Read.
func (b *behindFile) Read(p []byte) (int, error) {
	b.mu.Lock()
	defer b.mu.Unlock()
	if err := b.flushLocked(); err != nil {
		return 0, err
	}
	if len(p) == 0 {
		return 0, nil
	}
	n, err := b.f.ReadAt(p, b.off)
	b.off += int64(n)
	if err == io.EOF && n > 0 {
		err = nil // a short Read is not an end
	}
	return n, err
}

// Close writes what is pending (without a sync, as closing an *os.File
// does not sync) and closes the file; a write that failed, now or before,
// fails Close.
func (b *behindFile) Close() error {
	b.mu.Lock()
	var err error
	if !b.closed {
		err = b.flushLocked()
		b.closed = true
	}
	b.mu.Unlock()
	if cerr := b.f.Close(); err == nil {
		err = cerr
	}
	return err
}
