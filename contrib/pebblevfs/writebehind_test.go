package pebblevfs_test

import (
	"bytes"
	"errors"
	"io"
	"os"
	"path/filepath"
	"sync"
	"syscall"
	"testing"

	"github.com/cockroachdb/pebble/v2/vfs"

	"golang.org/x/sys/unix"

	"github.com/ringwake/ringwake/contrib/pebblevfs"
)

// syncCall is one write-behind sync's system call.
type syncCall struct {
	fd, n int
	off   int64
	flags int
}

// syncs records write-behind's write+flush calls, then makes them (or
// what alter makes of them).
type syncs struct {
	mu    sync.Mutex
	seen  []syncCall
	alter func(fd int, p []byte, off int64, flags int) (int, error)
}

func recordSyncs(t *testing.T) *syncs {
	c := &syncs{}
	restore := pebblevfs.SetWriteSync(func(fd int, p []byte, off int64, flags int) (int, error) {
		c.mu.Lock()
		c.seen = append(c.seen, syncCall{fd, len(p), off, flags})
		alter := c.alter
		c.mu.Unlock()
		if alter != nil {
			return alter(fd, p, off, flags)
		}
		return unix.Pwritev2(fd, [][]byte{p}, off, flags)
	})
	t.Cleanup(restore)
	return c
}

func (c *syncs) take() []syncCall {
	c.mu.Lock()
	defer c.mu.Unlock()
	s := c.seen
	c.seen = nil
	return s
}

// checkSyncs fails unless got is want: each a write of n bytes at off on
// fd that carries the flush flags says.
func checkSyncs(t *testing.T, got []syncCall, want ...syncCall) {
	t.Helper()
	if len(got) != len(want) {
		t.Fatalf("%d write+flush calls %v, want %v", len(got), got, want)
	}
	for i := range want {
		if got[i] != want[i] {
			t.Fatalf("write+flush call %d: %+v, want %+v (RWF_DSYNC %#x, RWF_SYNC %#x)", i, got[i], want[i], unix.RWF_DSYNC, unix.RWF_SYNC)
		}
	}
}

// wantFile fails unless the file name holds exactly want (nothing, for
// nil), read back through another descriptor at the moment when says.
func wantFile(t *testing.T, name string, want []byte, when string) {
	t.Helper()
	got, err := os.ReadFile(name)
	if err != nil {
		t.Fatal(err)
	}
	if !bytes.Equal(got, want) {
		t.Fatalf("%s the file holds %d bytes, want the %d written", when, len(got), len(want))
	}
}

// TestWriteBehindSyncWritesAndFlushes: a WAL's Writes reach no ring and
// no kernel until a sync; SyncData and Sync then hand everything pending to
// the kernel in one write that carries the flush (RWF_DSYNC, RWF_SYNC), so
// nothing is reported synced that the flush did not cover; with nothing
// pending a sync is the File's own.
func TestWriteBehindSyncWritesAndFlushes(t *testing.T) {
	r := newRing(t)
	c := recordSyncs(t)
	fsys := pebblevfs.New(r)
	name := filepath.Join(t.TempDir(), "000009.log")
	f, err := fsys.Create(name, vfs.WriteCategoryUnspecified)
	if err != nil {
		t.Fatal(err)
	}
	defer f.Close()
	fd := int(f.Fd())

	before := r.Stats().Submitted
	want := append(bytes.Repeat([]byte("a"), 10<<10), bytes.Repeat([]byte("b"), 32<<10)...)
	for _, p := range [][]byte{want[:10<<10], want[10<<10 : 20<<10], want[20<<10:]} {
		if n, err := f.Write(p); n != len(p) || err != nil {
			t.Fatalf("Write: %d, %v", n, err)
		}
	}
	if got := r.Stats().Submitted - before; got != 0 {
		t.Fatalf("3 Writes made %d ring requests, want none before a sync", got)
	}
	wantFile(t, name, nil, "before a sync (write-behind)")

	if err := f.SyncData(); err != nil {
		t.Fatal(err)
	}
	checkSyncs(t, c.take(), syncCall{fd, len(want), 0, unix.RWF_DSYNC})
	wantFile(t, name, want, "after SyncData")

	_, fsyncs := pebblevfs.FileSyncStats(f)
	if err := f.SyncData(); err != nil {
		t.Fatal(err)
	}
	checkSyncs(t, c.take())
	if _, now := pebblevfs.FileSyncStats(f); now != fsyncs+1 {
		t.Fatalf("SyncData with nothing pending: %d fdatasyncs of the File, want 1", now-fsyncs)
	}

	more := bytes.Repeat([]byte("c"), 5000)
	if _, err := f.Write(more); err != nil {
		t.Fatal(err)
	}
	if err := f.Sync(); err != nil {
		t.Fatal(err)
	}
	checkSyncs(t, c.take(), syncCall{fd, len(more), int64(len(want)), unix.RWF_SYNC})
	wantFile(t, name, append(want, more...), "after Sync")
}

// TestWriteBehindShortWrite: when the kernel writes part of the pending
// bytes, SyncData must write the rest, again with the flush, before it
// returns, not report the tail as synced or lose it.
func TestWriteBehindShortWrite(t *testing.T) {
	r := newRing(t)
	c := recordSyncs(t)
	c.alter = func(fd int, p []byte, off int64, flags int) (int, error) {
		if off == 0 {
			p = p[:len(p)/2]
		}
		return unix.Pwritev2(fd, [][]byte{p}, off, flags)
	}
	name := filepath.Join(t.TempDir(), "000010.log")
	f, err := pebblevfs.New(r).Create(name, vfs.WriteCategoryUnspecified)
	if err != nil {
		t.Fatal(err)
	}
	defer f.Close()
	want := blocks(t, f, 5)
	if err := f.SyncData(); err != nil {
		t.Fatal(err)
	}
	fd, half := int(f.Fd()), len(want)/2
	checkSyncs(t, c.take(), syncCall{fd, len(want), 0, unix.RWF_DSYNC}, syncCall{fd, len(want) - half, int64(half), unix.RWF_DSYNC})
	wantFile(t, name, want, "after a short write and SyncData")
}

// TestWriteBehindErrorSticky: a pending write that fails fails the sync
// that carried it, never reported as synced, and every later call,
// including Close; so does a write whose flush fails.
func TestWriteBehindErrorSticky(t *testing.T) {
	testDevFullSticky(t, pebblevfs.BehindFile)

	r := newRing(t)
	c := recordSyncs(t)
	c.alter = func(int, []byte, int64, int) (int, error) { return 0, syscall.EIO }
	g, err := pebblevfs.New(r).Create(filepath.Join(t.TempDir(), "MANIFEST-000001"), vfs.WriteCategoryUnspecified)
	if err != nil {
		t.Fatal(err)
	}
	if _, err := g.Write([]byte("record")); err != nil {
		t.Fatal(err)
	}
	if err := g.Sync(); !errors.Is(err, syscall.EIO) {
		t.Fatalf("Sync whose write+fsync failed: %v, want EIO", err)
	}
	if err := g.SyncData(); !errors.Is(err, syscall.EIO) {
		t.Fatalf("SyncData after a failed fsync: %v, want EIO (sticky)", err)
	}
	if err := g.Close(); !errors.Is(err, syscall.EIO) {
		t.Fatalf("Close after a failed fsync: %v, want EIO", err)
	}
}

// TestWriteBehindReadsOwnWrites: through the same vfs.File every read, Stat
// and the descriptor see what Write took before any sync; a buffer that
// fills goes down on its own; Close writes the rest; a reused WAL writes
// behind too.
func TestWriteBehindReadsOwnWrites(t *testing.T) {
	r := newRing(t)
	fsys := pebblevfs.New(r)
	dir := t.TempDir()
	name := filepath.Join(dir, "000011.log")
	f, err := fsys.Create(name, vfs.WriteCategoryUnspecified)
	if err != nil {
		t.Fatal(err)
	}
	want := blocks(t, f, 3)
	fi, err := f.Stat()
	if err != nil {
		t.Fatal(err)
	}
	if fi.Size() != int64(len(want)) {
		t.Fatalf("Stat size %d after writing %d bytes", fi.Size(), len(want))
	}
	want = append(want, blocks(t, f, 2)...)
	got := make([]byte, len(want))
	if _, err := f.ReadAt(got, 0); err != nil || !bytes.Equal(got, want) {
		t.Fatalf("ReadAt does not return what was written (%v)", err)
	}
	// Read goes on from the position, which Write moved to the end.
	want = append(want, blocks(t, f, 1)...)
	if n, err := f.Read(make([]byte, 10)); n != 0 || err != io.EOF {
		t.Fatalf("Read at the end: %d, %v", n, err)
	}
	if _, err := f.WriteAt([]byte("head"), 0); err != nil {
		t.Fatal(err)
	}
	copy(want, "head")
	want = append(want, blocks(t, f, 1)...)
	f.Fd()
	wantFile(t, name, want, "after Fd")

	// 80 writes of 4 KiB fill the 256 KiB buffer once: one ring write.
	before := r.Stats().Submitted
	want = append(want, blocks(t, f, 80)...)
	if n := r.Stats().Submitted - before; n != 1 {
		t.Fatalf("320 KiB of Writes made %d ring requests, want 1 (a full buffer)", n)
	}
	// A Write larger than the buffer goes down at once, after what is pending.
	big := bytes.Repeat([]byte("B"), 300<<10)
	if n, err := f.Write(big); n != len(big) || err != nil {
		t.Fatalf("big Write: %d, %v", n, err)
	}
	want = append(want, big...)
	wantFile(t, name, want, "after a big Write")
	want = append(want, blocks(t, f, 2)...)
	if err := f.Close(); err != nil {
		t.Fatal(err)
	}
	wantFile(t, name, want, "after Close")
	if _, err := f.Write([]byte("x")); !errors.Is(err, os.ErrClosed) {
		t.Fatalf("Write after Close: %v, want os.ErrClosed", err)
	}
	if err := f.Close(); err == nil {
		t.Fatal("second Close succeeded")
	}

	// Pebble recycles a WAL: the reused file writes behind from offset 0.
	reused := filepath.Join(dir, "000012.log")
	g, err := fsys.ReuseForWrite(name, reused, vfs.WriteCategoryUnspecified)
	if err != nil {
		t.Fatal(err)
	}
	before = r.Stats().Submitted
	head := blocks(t, g, 2)
	if n := r.Stats().Submitted - before; n != 0 {
		t.Fatalf("writes to a reused WAL made %d ring requests before a sync", n)
	}
	if err := g.SyncData(); err != nil {
		t.Fatal(err)
	}
	if err := g.Close(); err != nil {
		t.Fatal(err)
	}
	wantFile(t, reused, append(head, want[len(head):]...), "after closing the reused WAL (new bytes over the old),")
}

// TestWriteBehindNames: the WAL and the MANIFEST write behind, tables keep
// their buffer, other files (OPTIONS, markers) write through at once.
func TestWriteBehindNames(t *testing.T) {
	r := newRing(t)
	fsys := pebblevfs.New(r)
	dir := t.TempDir()
	for _, tc := range []struct {
		name     string
		requests uint64
	}{
		{"000001.log", 0},
		{"MANIFEST-000002", 0},
		{"000003.sst", 0},
		{"OPTIONS-000004", 1},
		{"marker.manifest.000001.MANIFEST-000002", 1},
	} {
		f, err := fsys.Create(filepath.Join(dir, tc.name), vfs.WriteCategoryUnspecified)
		if err != nil {
			t.Fatal(err)
		}
		before := r.Stats().Submitted
		blocks(t, f, 1)
		if n := r.Stats().Submitted - before; n != tc.requests {
			t.Errorf("%s: a 4 KiB Write made %d ring requests, want %d", tc.name, n, tc.requests)
		}
		if err := f.Close(); err != nil {
			t.Fatal(err)
		}
	}
}
