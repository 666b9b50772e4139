package faultfs

import (
	"bytes"
	"errors"
	"os"
	"syscall"
	"testing"
	"unsafe"

	"go.uber.org/goleak"
	"golang.org/x/sys/unix"
)

func TestMain(m *testing.M) { goleak.VerifyTestMain(m) }

func writeFile(t *testing.T, p string, data []byte, syncFile bool) {
	t.Helper()
	f, err := os.OpenFile(p, os.O_RDWR|os.O_CREATE|os.O_TRUNC, 0o644)
	if err != nil {
		t.Fatal(err)
	}
	defer f.Close()
	if _, err := f.Write(data); err != nil {
		t.Fatal(err)
	}
	if syncFile {
		if err := unix.Fdatasync(int(f.Fd())); err != nil {
			t.Fatal(err)
		}
	}
}

func must(t *testing.T, err error) {
	t.Helper()
	if err != nil {
		t.Fatal(err)
	}
}

func stats(t *testing.T, f *FS) Stats {
	t.Helper()
	st, err := f.Stats()
	must(t, err)
	return st
}

func cut(t *testing.T, f *FS) CutReport {
	t.Helper()
	rep, err := f.Cut()
	if err != nil {
		t.Fatal(err)
	}
	return rep
}

// expectFile checks the file name under f's (current) mount point.
func expectFile(t *testing.T, f *FS, name string, want []byte) {
	t.Helper()
	p := f.Path(name)
	got, err := os.ReadFile(p)
	if want == nil {
		if !errors.Is(err, os.ErrNotExist) {
			t.Fatalf("%s after the cut: %d bytes, %v; want it gone", p, len(got), err)
		}
		return
	}
	if err != nil {
		t.Fatalf("%s after the cut: %v", p, err)
	}
	if !bytes.Equal(got, want) {
		t.Fatalf("%s after the cut: %q; want %q", p, trim(got), trim(want))
	}
}

func trim(b []byte) []byte {
	if len(b) > 40 {
		return b[:40]
	}
	return b
}

// TestPowerLossFileSync: a file's contents survive as of its last
// fdatasync; what was written, truncated or fallocated after it is gone,
// whether the file stayed open or not.
func TestPowerLossFileSync(t *testing.T) {
	f := New(t, Config{})
	p := f.Path("a")
	writeFile(t, p, []byte("durable"), true)
	must(t, f.SyncDir(""))
	fh, err := os.OpenFile(p, os.O_RDWR, 0)
	if err != nil {
		t.Fatal(err)
	}
	defer fh.Close()
	if _, err := fh.WriteAt([]byte("lost and longer"), 0); err != nil {
		t.Fatal(err)
	}
	if err := unix.Fallocate(int(fh.Fd()), 0, 0, 1<<16); err != nil {
		t.Fatal(err)
	}
	rep := cut(t, f)
	if rep.DroppedBytes < 1<<16 {
		t.Errorf("cut reports %d bytes dropped; want at least the 64 KiB fallocated", rep.DroppedBytes)
	}
	// The open file is on the dead mount.
	if _, err := fh.WriteAt([]byte("x"), 0); !errors.Is(err, syscall.EIO) {
		t.Fatalf("write to a file open across the cut: %v; want EIO", err)
	}
	expectFile(t, f, "a", []byte("durable"))

	// Synced after a truncate: the truncate is durable.
	writeFile(t, f.Path("a"), []byte("abc"), true)
	expectFile(t, f, "a", []byte("abc"))
	cut(t, f)
	expectFile(t, f, "a", []byte("abc"))
}

// TestPowerLossDirSync: names are durable as of their directory's last
// fsync. A new file fsynced without its directory vanishes; an unlinked or
// renamed one comes back under its old name.
func TestPowerLossDirSync(t *testing.T) {
	f := New(t, Config{})
	if err := os.Mkdir(f.Path("d"), 0o755); err != nil {
		t.Fatal(err)
	}
	must(t, f.SyncDir(""))
	writeFile(t, f.Path("d/kept"), []byte("kept"), true)
	writeFile(t, f.Path("d/renamed"), []byte("renamed"), true)
	writeFile(t, f.Path("d/unlinked"), []byte("unlinked"), true)
	must(t, f.SyncDir("d"))

	writeFile(t, f.Path("d/new"), []byte("new"), true) // file synced, directory not
	if err := os.Rename(f.Path("d/renamed"), f.Path("d/moved")); err != nil {
		t.Fatal(err)
	}
	if err := os.Remove(f.Path("d/unlinked")); err != nil {
		t.Fatal(err)
	}
	rep := cut(t, f)
	expectFile(t, f, "d/kept", []byte("kept"))
	expectFile(t, f, "d/new", nil)
	expectFile(t, f, "d/moved", nil)
	expectFile(t, f, "d/renamed", []byte("renamed"))
	expectFile(t, f, "d/unlinked", []byte("unlinked"))
	if rep.LostNames != 2 || rep.RevivedNames != 2 {
		t.Errorf("cut reports %d names lost, %d revived; want 2 (new, moved) and 2 (renamed, unlinked)", rep.LostNames, rep.RevivedNames)
	}

	// The same steps with the directory fsynced: all durable.
	writeFile(t, f.Path("d/new"), []byte("new"), true)
	if err := os.Rename(f.Path("d/renamed"), f.Path("d/moved")); err != nil {
		t.Fatal(err)
	}
	if err := os.Remove(f.Path("d/unlinked")); err != nil {
		t.Fatal(err)
	}
	must(t, f.SyncDir("d"))
	cut(t, f)
	expectFile(t, f, "d/new", []byte("new"))
	expectFile(t, f, "d/moved", []byte("renamed"))
	expectFile(t, f, "d/renamed", nil)
	expectFile(t, f, "d/unlinked", nil)

	// A name made durable before its file was ever synced: an empty file.
	writeFile(t, f.Path("d/unsynced"), []byte("data"), false)
	must(t, f.SyncDir("d"))
	cut(t, f)
	expectFile(t, f, "d/unsynced", []byte{})
}

// TestPowerLossFailedSync: writes a failed fdatasync should have covered are
// not covered by the next one that succeeds (Linux marks the pages clean):
// a cut loses them, though reads returned them until then.
func TestPowerLossFailedSync(t *testing.T) {
	f := New(t, Config{})
	p := f.Path("a")
	writeFile(t, p, nil, true)
	must(t, f.SyncDir(""))
	must(t, f.Inject(Fault{Op: OpFdatasync, Count: 1}))
	fh, err := os.OpenFile(p, os.O_RDWR, 0)
	if err != nil {
		t.Fatal(err)
	}
	defer fh.Close()
	if _, err := fh.Write([]byte("written")); err != nil {
		t.Fatal(err)
	}
	if err := unix.Fdatasync(int(fh.Fd())); !errors.Is(err, syscall.EIO) {
		t.Fatalf("fdatasync with a fault: %v; want EIO", err)
	}
	if err := unix.Fdatasync(int(fh.Fd())); err != nil {
		t.Fatalf("fdatasync after the fault retired: %v", err)
	}
	expectFile(t, f, "a", []byte("written"))
	cut(t, f)
	// The size was synced by the second fdatasync, the data by neither.
	expectFile(t, f, "a", make([]byte, len("written")))
}

// TestPowerLossKeepsSomePages: CutKeeping lets each unsynced page of a
// synced file survive whole or not at all, about as often as asked and the
// same ones for the same seed; nothing past the durable size survives.
func TestPowerLossKeepsSomePages(t *testing.T) {
	const pages = 64
	f := New(t, Config{})
	kept := func(seed uint64) []bool {
		writeFile(t, f.Path("a"), make([]byte, pages*4096), true)
		must(t, f.SyncDir(""))
		fh, err := os.OpenFile(f.Path("a"), os.O_RDWR, 0)
		if err != nil {
			t.Fatal(err)
		}
		defer fh.Close()
		// One write across all the pages, and one past the durable size.
		if _, err := fh.WriteAt(bytes.Repeat([]byte{1}, pages*4096+100), 0); err != nil {
			t.Fatal(err)
		}
		rep, err := f.CutKeeping(0.5, seed)
		must(t, err)
		got, err := os.ReadFile(f.Path("a"))
		must(t, err)
		if len(got) != pages*4096 {
			t.Fatalf("%d bytes after the cut; want the durable size %d", len(got), pages*4096)
		}
		var k []bool
		for pg := range pages {
			b := got[pg*4096 : (pg+1)*4096]
			old, new := bytes.Equal(b, make([]byte, 4096)), bytes.Equal(b, bytes.Repeat([]byte{1}, 4096))
			if !old && !new {
				t.Fatalf("page %d is torn", pg)
			}
			k = append(k, new)
		}
		if n := int64(count(k)) * 4096; rep.KeptBytes != n {
			t.Errorf("CutReport.KeptBytes = %d; %d bytes were kept", rep.KeptBytes, n)
		}
		return k
	}
	a, b, c := kept(1), kept(1), kept(2)
	if n := count(a); n < 16 || n > 48 {
		t.Errorf("kept %d of %d pages at 0.5", n, pages)
	}
	if !equalBools(a, b) || equalBools(a, c) {
		t.Errorf("seed 1 kept %v then %v; seed 2 %v", a, b, c)
	}
}

// TestFaultInjection: faults by path, by count (Skip and Count) and from a
// seed, on reads, writes and syncs, with the errno chosen; and ENOSPC past a
// space budget. ClearFaults heals the disk.
func TestFaultInjection(t *testing.T) {
	f := New(t, Config{DirectIO: true})
	a, b := f.Path("a.wal"), f.Path("b.log")
	writeFile(t, a, []byte("aaaa"), true)
	writeFile(t, b, []byte("bbbb"), true)
	open := func(p string) *os.File {
		fh, err := os.OpenFile(p, os.O_RDWR, 0)
		if err != nil {
			t.Fatal(err)
		}
		t.Cleanup(func() { fh.Close() })
		return fh
	}
	fa, fb := open(a), open(b)
	buf := make([]byte, 4)

	// By path and count: the second and third writes to *.wal fail.
	must(t, f.Inject(Fault{Op: OpWrite, Path: "*.wal", Skip: 1, Count: 2}))
	var errs []error
	for range 4 {
		_, err := fa.WriteAt([]byte("x"), 0)
		errs = append(errs, err)
		if _, err := fb.WriteAt([]byte("y"), 0); err != nil {
			t.Fatalf("write to b.log: %v", err)
		}
	}
	if errs[0] != nil || !errors.Is(errs[1], syscall.EIO) || !errors.Is(errs[2], syscall.EIO) || errs[3] != nil {
		t.Fatalf("writes to a.wal: %v; want ok, EIO, EIO, ok", errs)
	}

	// Reads (uncached under DirectIO) and syncs, another errno.
	must(t, f.Inject(Fault{Op: OpRead, Path: "b.log", Count: 1, Err: syscall.EBADMSG}))
	if _, err := fb.ReadAt(buf, 0); !errors.Is(err, syscall.EBADMSG) {
		t.Fatalf("read with a fault: %v", err)
	}
	if _, err := fb.ReadAt(buf, 0); err != nil {
		t.Fatalf("read after the fault retired: %v", err)
	}
	must(t, f.Inject(Fault{Op: OpFsync, Count: 1}))
	if err := fa.Sync(); !errors.Is(err, syscall.EIO) {
		t.Fatalf("fsync with a fault: %v", err)
	}
	must(t, f.Inject(Fault{Op: OpDirSync, Count: 1}))
	d, err := os.Open(f.Dir())
	if err != nil {
		t.Fatal(err)
	}
	if err := d.Sync(); !errors.Is(err, syscall.EIO) {
		t.Fatalf("directory fsync with a fault: %v", err)
	}
	d.Close()

	// From a seed: the same seed fails the same requests.
	pattern := func(seed uint64) []bool {
		must(t, f.ClearFaults())
		must(t, f.Inject(Fault{Op: OpWrite, Rate: 0.3, Seed: seed}))
		var got []bool
		for range 64 {
			_, err := fb.WriteAt([]byte("z"), 0)
			got = append(got, err != nil)
		}
		return got
	}
	p1, p2, p3 := pattern(7), pattern(7), pattern(8)
	failed := count(p1)
	if failed < 5 || failed > 40 {
		t.Errorf("rate 0.3 failed %d of 64 writes", failed)
	}
	if !equalBools(p1, p2) || equalBools(p1, p3) {
		t.Errorf("seeded faults: seed 7 twice %v / %v, seed 8 %v", p1, p2, p3)
	}

	// ENOSPC past the budget.
	must(t, f.ClearFaults())
	must(t, f.SetSpaceBudget(10))
	if _, err := fb.WriteAt(make([]byte, 8), 0); err != nil {
		t.Fatalf("write within the budget: %v", err)
	}
	if _, err := fb.WriteAt(make([]byte, 8), 0); !errors.Is(err, syscall.ENOSPC) {
		t.Fatalf("write past the budget: %v; want ENOSPC", err)
	}
	if err := unix.Fallocate(int(fb.Fd()), 0, 0, 4096); !errors.Is(err, syscall.ENOSPC) {
		t.Fatalf("fallocate past the budget: %v; want ENOSPC", err)
	}
	must(t, f.ClearFaults())
	if _, err := fb.WriteAt(make([]byte, 8), 0); err != nil {
		t.Fatalf("write after ClearFaults: %v", err)
	}
	st := stats(t, f)
	if want := int64(2 + 1 + 1 + 1 + 2*failed + count(p3)); st.Injected != want {
		t.Errorf("Stats().Injected = %d; want %d", st.Injected, want)
	}
	if st.NoSpace != 2 {
		t.Errorf("Stats().NoSpace = %d; want 2", st.NoSpace)
	}
}

func count(b []bool) int {
	n := 0
	for _, x := range b {
		if x {
			n++
		}
	}
	return n
}

func equalBools(a, b []bool) bool {
	if len(a) != len(b) {
		return false
	}
	for i := range a {
		if a[i] != b[i] {
			return false
		}
	}
	return true
}

// TestFaultDirectOpen: the mount takes O_DIRECT (aligned reads and writes
// go through uncached) and its writes are modelled like any other.
func TestFaultDirectOpen(t *testing.T) {
	f := New(t, Config{})
	p := f.Path("direct")
	fd, err := unix.Open(p, unix.O_RDWR|unix.O_CREAT|unix.O_DIRECT|unix.O_CLOEXEC, 0o644)
	if err != nil {
		t.Fatalf("open O_DIRECT on the mount: %v", err)
	}
	defer unix.Close(fd)
	buf := alignedBlock()
	copy(buf, "direct")
	if _, err := unix.Pwrite(fd, buf, 0); err != nil {
		t.Fatalf("O_DIRECT write: %v", err)
	}
	if err := unix.Fdatasync(fd); err != nil {
		t.Fatal(err)
	}
	must(t, f.SyncDir(""))
	if _, err := unix.Pwrite(fd, alignedBlock(), 4096); err != nil {
		t.Fatal(err)
	}
	cut(t, f)
	expectFile(t, f, "direct", buf)
	if st := stats(t, f); st.Fdatasyncs != 1 || st.Writes < 2 {
		t.Errorf("Stats: %+v", st)
	}
}

func alignedBlock() []byte {
	b := make([]byte, 8192)
	off := int(4096 - uintptr(unsafe.Pointer(&b[0]))%4096)
	return b[off%4096 : off%4096+4096]
}
