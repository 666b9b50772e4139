package pebblevfs_test

import (
	"bytes"
	"errors"
	"io"
	"os"
	"path/filepath"
	"syscall"
	"testing"

	"github.com/cockroachdb/pebble/v2/vfs"

	"github.com/ringwake/ringwake/contrib/pebblevfs"
)

// blocks writes n 4 KiB blocks of distinct bytes to f, as Pebble's sstable
// writer does, and returns what it wrote.
func blocks(t *testing.T, f vfs.File, n int) []byte {
	t.Helper()
	var all []byte
	for i := range n {
		b := bytes.Repeat([]byte{byte(i)}, 4096)
		if _, err := f.Write(b); err != nil {
			t.Fatal(err)
		}
		all = append(all, b...)
	}
	return all
}

// TestTableWritesCoalesce: a table file's 4 KiB writes reach the ring 256
// KiB at a time, a WAL's one request per write; every call that looks at
// the file sees all that was written.
func TestTableWritesCoalesce(t *testing.T) {
	r := newRing(t)
	fsys := pebblevfs.New(r)
	dir := t.TempDir()

	tbl, err := fsys.Create(filepath.Join(dir, "000007.sst"), vfs.WriteCategoryUnspecified)
	if err != nil {
		t.Fatal(err)
	}
	before := r.Stats().Submitted
	want := blocks(t, tbl, 200) // 800 KiB: three full buffers and a part
	if got := r.Stats().Submitted - before; got != 3 {
		t.Fatalf("200 writes of 4 KiB to a table: %d ring requests, want 3 (one per 256 KiB)", got)
	}
	// Stat, ReadAt and a direct read of the path see the unflushed tail.
	fi, err := tbl.Stat()
	if err != nil {
		t.Fatal(err)
	}
	if fi.Size() != int64(len(want)) {
		t.Fatalf("Stat size %d after writing %d bytes", fi.Size(), len(want))
	}
	more := blocks(t, tbl, 3)
	want = append(want, more...)
	got := make([]byte, len(want))
	if _, err := tbl.ReadAt(got, 0); err != nil {
		t.Fatal(err)
	}
	if !bytes.Equal(got, want) {
		t.Fatal("ReadAt does not return what was written")
	}
	more = blocks(t, tbl, 2)
	want = append(want, more...)
	if _, err := tbl.WriteAt([]byte("head"), 0); err != nil {
		t.Fatal(err)
	}
	copy(want, "head")
	if _, err := tbl.SyncTo(int64(len(want))); err != nil {
		t.Fatal(err)
	}
	if err := tbl.Sync(); err != nil {
		t.Fatal(err)
	}
	tail := blocks(t, tbl, 1) // flushed by Close
	want = append(want, tail...)
	if err := tbl.Close(); err != nil {
		t.Fatal(err)
	}
	disk, err := os.ReadFile(filepath.Join(dir, "000007.sst"))
	if err != nil {
		t.Fatal(err)
	}
	if !bytes.Equal(disk, want) {
		t.Fatalf("file holds %d bytes, not the %d written", len(disk), len(want))
	}
	if _, err := tbl.Write([]byte("x")); !errors.Is(err, os.ErrClosed) {
		t.Fatalf("Write after Close: %v, want os.ErrClosed", err)
	}
	if err := tbl.Close(); err == nil {
		t.Fatal("second Close succeeded")
	}

	// A WAL is not buffered: Pebble syncs right after writing it.
	wal, err := fsys.Create(filepath.Join(dir, "000008.log"), vfs.WriteCategoryUnspecified)
	if err != nil {
		t.Fatal(err)
	}
	defer wal.Close()
	before = r.Stats().Submitted
	blocks(t, wal, 10)
	if got := r.Stats().Submitted - before; got < 10 {
		t.Fatalf("10 writes to a WAL: %d ring requests", got)
	}
}

// TestTableReadsOwnWrites: Read at the file position after writes, as a
// reader of a file it wrote would.
func TestTableReadsOwnWrites(t *testing.T) {
	r := newRing(t)
	fsys := pebblevfs.New(r)
	name := filepath.Join(t.TempDir(), "000001.blob")
	f, err := fsys.Create(name, vfs.WriteCategoryUnspecified)
	if err != nil {
		t.Fatal(err)
	}
	defer f.Close()
	want := blocks(t, f, 5)
	// A second descriptor on the file sees the bytes once Fd was asked for.
	f.Fd()
	disk, err := os.ReadFile(name)
	if err != nil {
		t.Fatal(err)
	}
	if !bytes.Equal(disk, want) {
		t.Fatalf("after Fd the file holds %d bytes, %d were written", len(disk), len(want))
	}
	// The position is at the end: Read finds nothing more.
	if n, err := f.Read(make([]byte, 10)); n != 0 || err != io.EOF {
		t.Fatalf("Read at the end: %d, %v", n, err)
	}
}

// TestTableWriteErrorSticky: a flush that fails fails the Sync that caused
// it, every later Write and Sync, and Close, as bufio.Writer's error does:
// Pebble must not finish a table whose bytes did not all reach the kernel.
func TestTableWriteErrorSticky(t *testing.T) {
	r := newRing(t)
	rf, err := r.Open("/dev/full", os.O_WRONLY, 0)
	if err != nil {
		t.Fatal(err)
	}
	f := pebblevfs.TableFile(r, rf)
	if _, err := f.Write(make([]byte, 4096)); err != nil {
		t.Fatalf("buffered Write: %v", err)
	}
	if err := f.SyncData(); !errors.Is(err, syscall.ENOSPC) {
		t.Fatalf("SyncData after a write to /dev/full: %v, want ENOSPC", err)
	}
	if _, err := f.Write([]byte("x")); !errors.Is(err, syscall.ENOSPC) {
		t.Fatalf("Write after the failure: %v, want ENOSPC", err)
	}
	if err := f.Sync(); !errors.Is(err, syscall.ENOSPC) {
		t.Fatalf("Sync after the failure: %v, want ENOSPC", err)
	}
	if err := f.Close(); !errors.Is(err, syscall.ENOSPC) {
		t.Fatalf("Close after the failure: %v, want ENOSPC", err)
	}
}
