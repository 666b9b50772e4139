package pebblevfs_test

import (
	"bytes"
	"context"
	"errors"
	"io"
	"os"
	"path/filepath"
	"sync"
	"syscall"
	"testing"

	"github.com/cockroachdb/pebble/v2/vfs"

	"github.com/ringwake/ringwake/contrib/pebblevfs"
	ringwake "github.com/ringwake/ringwake/runtime"
	"github.com/ringwake/ringwake/sqe"
)

// chains records what write-behind submits, then submits it (or what
// alter makes of it).
type chains struct {
	mu    sync.Mutex
	seen  [][]sqe.SQE
	alter func(r *ringwake.Ring, ctx context.Context, ss []sqe.SQE, res []int32) error
}

func recordChains(t *testing.T) *chains {
	c := &chains{}
	restore := pebblevfs.SetSubmitChain(func(r *ringwake.Ring, ctx context.Context, ss []sqe.SQE, res []int32) error {
		c.mu.Lock()
		c.seen = append(c.seen, append([]sqe.SQE(nil), ss...))
		alter := c.alter
		c.mu.Unlock()
		if alter != nil {
			return alter(r, ctx, ss, res)
		}
		return r.SubmitAndWait(ctx, ss, res)
	})
	t.Cleanup(restore)
	return c
}

func (c *chains) take() [][]sqe.SQE {
	c.mu.Lock()
	defer c.mu.Unlock()
	s := c.seen
	c.seen = nil
	return s
}

// checkChain fails unless got is one submission: a write of n bytes at off
// on fd, linked to an fsync (fdatasync when datasync) of the same fd that
// ends the chain.
func checkChain(t *testing.T, got [][]sqe.SQE, fd int, n int, off int64, datasync bool) {
	t.Helper()
	if len(got) != 1 || len(got[0]) != 2 {
		t.Fatalf("submissions %d (sizes %v), want one of a write and an fsync", len(got), sizes(got))
	}
	w, s := got[0][0], got[0][1]
	if w.Opcode != sqe.OpWrite || int(w.Fd) != fd || int(w.Len) != n || int64(w.Off) != off {
		t.Fatalf("first SQE: op %d fd %d len %d off %d, want a write on fd %d of %d bytes at %d", w.Opcode, w.Fd, w.Len, w.Off, fd, n, off)
	}
	if w.Flags&sqe.IOLink == 0 {
		t.Fatal("the write is not linked to the fsync: the kernel may run the fsync before the write completes")
	}
	want := uint32(0)
	if datasync {
		want = sqe.FsyncDatasync
	}
	if s.Opcode != sqe.OpFsync || int(s.Fd) != fd || s.OpFlags != want || s.Flags&(sqe.IOLink|sqe.IOHardlink) != 0 {
		t.Fatalf("second SQE: op %d fd %d flags %#x/%#x, want an fsync (flags %#x) of fd %d ending the chain", s.Opcode, s.Fd, s.OpFlags, s.Flags, want, fd)
	}
}

func sizes(ss [][]sqe.SQE) []int {
	var n []int
	for _, s := range ss {
		n = append(n, len(s))
	}
	return n
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

// TestWriteBehindLinksSync: a WAL's Writes reach no ring and no kernel
// until a sync; SyncData and Sync then hand everything pending to the
// kernel as one submission, the write linked to the fsync, so the fsync
// runs only after the write completed; with nothing pending a sync is the
// File's own.
func TestWriteBehindLinksSync(t *testing.T) {
	r := newRing(t)
	c := recordChains(t)
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
	checkChain(t, c.take(), fd, len(want), 0, true)
	wantFile(t, name, want, "after SyncData")

	_, fsyncs := pebblevfs.FileSyncStats(f)
	if err := f.SyncData(); err != nil {
		t.Fatal(err)
	}
	if got := c.take(); len(got) != 0 {
		t.Fatalf("SyncData with nothing pending submitted %d chains", len(got))
	}
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
	checkChain(t, c.take(), fd, len(more), int64(len(want)), false)
	wantFile(t, name, append(want, more...), "after Sync")
}

// TestWriteBehindShortWrite: when the kernel writes part of the pending
// bytes, it cancels the fsync linked to the write; SyncData must then write
// the rest and sync again before it returns, not report the canceled fsync
// as done or lose the tail.
func TestWriteBehindShortWrite(t *testing.T) {
	r := newRing(t)
	c := recordChains(t)
	c.alter = func(r *ringwake.Ring, ctx context.Context, ss []sqe.SQE, res []int32) error {
		// What the kernel does with a short linked write: the write
		// completes with fewer bytes and the fsync with -ECANCELED.
		w := ss[0]
		w.Len /= 2
		w.Flags &^= sqe.IOLink
		if err := r.SubmitAndWait(ctx, []sqe.SQE{w}, res[:1]); err != nil {
			return err
		}
		res[1] = -int32(syscall.ECANCELED)
		return nil
	}
	name := filepath.Join(t.TempDir(), "000010.log")
	f, err := pebblevfs.New(r).Create(name, vfs.WriteCategoryUnspecified)
	if err != nil {
		t.Fatal(err)
	}
	defer f.Close()
	want := blocks(t, f, 5)
	_, fsyncs := pebblevfs.FileSyncStats(f)
	if err := f.SyncData(); err != nil {
		t.Fatal(err)
	}
	if got := len(c.take()); got != 1 {
		t.Fatalf("%d chains, want 1", got)
	}
	wantFile(t, name, want, "after a short write and SyncData")
	if _, now := pebblevfs.FileSyncStats(f); now != fsyncs+1 {
		t.Fatalf("after a short linked write: %d fdatasyncs of the rest, want 1", now-fsyncs)
	}
}

// TestWriteBehindErrorSticky: a pending write that fails fails the sync
// that carried it, never reported as synced, and every later call,
// including Close; so does an fsync that fails after its write.
func TestWriteBehindErrorSticky(t *testing.T) {
	testDevFullSticky(t, pebblevfs.BehindFile)

	// The write succeeds and the fsync linked to it fails.
	r := newRing(t)
	c := recordChains(t)
	c.alter = func(r *ringwake.Ring, ctx context.Context, ss []sqe.SQE, res []int32) error {
		err := r.SubmitAndWait(ctx, ss, res)
		res[1] = -int32(syscall.EIO)
		return err
	}
	g, err := pebblevfs.New(r).Create(filepath.Join(t.TempDir(), "MANIFEST-000001"), vfs.WriteCategoryUnspecified)
	if err != nil {
		t.Fatal(err)
	}
	if _, err := g.Write([]byte("record")); err != nil {
		t.Fatal(err)
	}
	if err := g.Sync(); !errors.Is(err, syscall.EIO) {
		t.Fatalf("Sync whose fsync failed: %v, want EIO", err)
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
