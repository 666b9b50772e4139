package pebblevfs

import (
	"io"
	"os"
	"path/filepath"
	"strings"
	"sync"

	"github.com/cockroachdb/pebble/v2/vfs"

	"github.com/ringwake/ringwake/sqe"
	"golang.org/x/sys/unix"
)

// Write-behind for the WAL and the MANIFEST. Pebble appends a batch of
// commits to its WAL and then syncs it, on one goroutine, while every
// synced commit waits. Write only copies into the file's buffer; Sync and
// SyncData hand what is pending to the kernel with one pwritev2 of flag
// RWF_DSYNC (RWF_SYNC for Sync) on the caller's goroutine: the write and
// its flush in one system call. This follows the rule the File's group
// commit keeps for the fsync that starts a burst: an operation the kernel
// cannot do asynchronously, on which the caller blocks anyway, is made
// directly. Neither half is asynchronous here: fsync never is, and a file
// system that cannot write to the page cache without blocking (ext4) has
// io_uring hand every buffered write to an io-wq worker. Through the ring
// the pair waits for a worker thread and then for the poller and a wake-up
// back, which on Pebble's synced writes cost about a tenth of its rate
// (docs/pebble.md).
//
// Pebble documents that a write made without Sync may be lost if the
// process crashes (its WriteOptions.Sync): its own LogWriter already holds
// such data in memory. Write-behind holds at most behindCap bytes, and
// every call that looks at the file (Read, ReadAt, WriteAt, Stat, SyncTo,
// Fd, Close) writes them first, through the ring, so through the vfs.File
// nothing can tell the difference.

// behindCap is the most a write-behind file holds before writing it down:
// Pebble's WAL writes about 11 KiB per commit group; a writer that does not
// sync (Sync: false commits) has its data written every 256 KiB.
const behindCap = 256 << 10

// writesBehind reports whether name is a WAL or a MANIFEST, the files
// Pebble appends to and syncs on the commit path.
func writesBehind(name string) bool {
	return filepath.Ext(name) == ".log" || strings.HasPrefix(filepath.Base(name), "MANIFEST-")
}

// writeSync writes p at off with a pwritev2 of flags (RWF_DSYNC or
// RWF_SYNC); a test replaces it to see and alter what goes to the kernel.
var writeSync = func(fd int, p []byte, off int64, flags int) (int, error) {
	return unix.Pwritev2(fd, [][]byte{p}, off, flags)
}

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
// write carrying RWF_SYNC, or the File's group-committed fsync when
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
		done, err := b.writeSyncLocked(flags, op)
		if done || err != nil {
			return err
		}
		// A file that takes no flags with its writes (a device, not a
		// file system's file): written through the ring, synced below.
		if err := b.flushLocked(); err != nil {
			return err
		}
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

// writeSyncLocked writes buf and flushes it (fdatasync's or fsync's
// guarantee, as flags say) with one system call per write, until all of it
// is down: a short write is followed by one for the rest, which carries
// the flush again and so covers the bytes before it too. done is false,
// with a nil error and buf still pending, if the file refuses the flag.
func (b *behindFile) writeSyncLocked(flags uint32, op string) (done bool, err error) {
	rwf := unix.RWF_DSYNC
	if flags&sqe.FsyncDatasync == 0 {
		rwf = unix.RWF_SYNC
	}
	for len(b.buf) > 0 {
		n, err := writeSync(b.f.fd, b.buf, b.off, rwf)
		if err == unix.EOPNOTSUPP && n <= 0 {
			return false, nil
		}
		if err == nil && n == 0 {
			err = io.ErrShortWrite
		}
		if err != nil {
			b.err = &os.PathError{Op: "write+" + op, Path: b.f.Name(), Err: err}
			return false, b.err
		}
		b.off += int64(n)
		b.buf = b.buf[:copy(b.buf, b.buf[n:])]
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
