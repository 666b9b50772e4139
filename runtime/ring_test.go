package runtime_test

import (
	"bytes"
	"context"
	"errors"
	"io"
	"os"
	"path/filepath"
	"syscall"
	"testing"
	"time"

	"golang.org/x/sys/unix"

	"github.com/ringwake/ringwake/internal/uringtest"
	ringwake "github.com/ringwake/ringwake/runtime"
)

func TestNewDefaultsAndCapacity(t *testing.T) {
	r := newRing(t, ringwake.Config{})
	if got := r.Capacity(); got != 256 {
		t.Errorf("Capacity with Entries 0 = %d, want 256", got)
	}
	r2 := newRing(t, ringwake.Config{Entries: 100})
	if got := r2.Capacity(); got != 128 {
		t.Errorf("Capacity with Entries 100 = %d, want 128 (next power of two)", got)
	}
}

func TestNop(t *testing.T) {
	r := newRing(t, ringwake.Config{Entries: 8})
	before := r.Stats()
	for i := 0; i < 100; i++ {
		if err := r.Nop(context.Background()); err != nil {
			t.Fatalf("Nop %d: %v", i, err)
		}
	}
	after := r.Stats()
	if d := after.Submitted - before.Submitted; d < 100 {
		t.Errorf("Stats.Submitted moved by %d over 100 Nops", d)
	}
	if d := after.Completed - before.Completed; d < 100 {
		t.Errorf("Stats.Completed moved by %d over 100 Nops", d)
	}
}

func TestReadWriteAtRoundTrip(t *testing.T) {
	r := newRing(t, ringwake.Config{Entries: 8})
	ctx := context.Background()
	f, err := os.Create(filepath.Join(t.TempDir(), "rw"))
	if err != nil {
		t.Fatal(err)
	}
	defer f.Close()
	fd := int(f.Fd())
	want := pattern(1, 10000)
	n, err := r.WriteAt(ctx, fd, want, 123)
	if err != nil || n != len(want) {
		t.Fatalf("WriteAt = %d, %v; want %d, nil", n, err, len(want))
	}
	got := make([]byte, len(want))
	if err := readFullAt(ctx, r, fd, got, 123); err != nil {
		t.Fatalf("ReadAt: %v", err)
	}
	equalBytes(t, "ReadAt after WriteAt", got, want)

	// The file holds 123+10000 bytes: a read across the end is short, at the end empty.
	n, err = r.ReadAt(ctx, fd, make([]byte, 100), 123+10000-40)
	if err != nil || n != 40 {
		t.Errorf("ReadAt across EOF = %d, %v; want 40, nil", n, err)
	}
	n, err = r.ReadAt(ctx, fd, make([]byte, 100), 123+10000)
	if err != nil || n != 0 {
		t.Errorf("ReadAt at EOF = %d, %v; want 0, nil", n, err)
	}

	// The data went to the file itself, not only through the ring.
	osGot := make([]byte, len(want))
	if _, err := f.ReadAt(osGot, 123); err != nil {
		t.Fatal(err)
	}
	equalBytes(t, "os.File.ReadAt after ring WriteAt", osGot, want)
}

// closedFd returns a descriptor number that was valid and has just been closed.
func closedFd(t *testing.T) int {
	t.Helper()
	f, err := os.Create(filepath.Join(t.TempDir(), "closed"))
	if err != nil {
		t.Fatal(err)
	}
	fd, err := unix.Dup(int(f.Fd()))
	f.Close()
	if err != nil {
		t.Fatal(err)
	}
	if err := unix.Close(fd); err != nil {
		t.Fatal(err)
	}
	return fd
}

func TestBadDescriptors(t *testing.T) {
	r := newRing(t, ringwake.Config{Entries: 8})
	ctx := context.Background()
	buf := make([]byte, 64)
	for _, tc := range []struct {
		name string
		fd   int
	}{{"closed", closedFd(t)}, {"minus one", -1}} {
		t.Run(tc.name, func(t *testing.T) {
			check := func(op string, err error) {
				t.Helper()
				if !errors.Is(err, syscall.EBADF) {
					t.Errorf("%s on fd %d: err = %v, want errors.Is EBADF", op, tc.fd, err)
				}
				var oe *ringwake.OpError
				if !errors.As(err, &oe) || oe.Fd != tc.fd {
					t.Errorf("%s on fd %d: err = %#v, want an *OpError naming fd %d", op, tc.fd, err, tc.fd)
				}
			}
			n, err := r.ReadAt(ctx, tc.fd, buf, 0)
			if n != 0 {
				t.Errorf("ReadAt n = %d", n)
			}
			check("ReadAt", err)
			n, err = r.WriteAt(ctx, tc.fd, buf, 0)
			if n != 0 {
				t.Errorf("WriteAt n = %d", n)
			}
			check("WriteAt", err)
			check("Fsync", r.Fsync(ctx, tc.fd, false))
			check("Fsync(datasync)", r.Fsync(ctx, tc.fd, true))
		})
	}
	// The ring is unharmed by the failures.
	if err := r.Nop(ctx); err != nil {
		t.Fatalf("Nop after EBADF: %v", err)
	}
}

func TestNegativeOffsetsNeverReachTheKernel(t *testing.T) {
	r := newRing(t, ringwake.Config{Entries: 8})
	ctx := context.Background()
	fd := openRead(t, dataFile(t, pattern(2, 4096)))
	buf := make([]byte, 16)
	before := r.Stats().Submitted
	for _, off := range []int64{-1, -2, -4096, -1 << 62} {
		n, err := r.ReadAt(ctx, fd, buf, off)
		if n != 0 || !errors.Is(err, syscall.EINVAL) {
			t.Errorf("ReadAt(off %d) = %d, %v; want 0 and an error wrapping EINVAL", off, n, err)
		}
		n, err = r.WriteAt(ctx, fd, buf, off)
		if n != 0 || !errors.Is(err, syscall.EINVAL) {
			t.Errorf("WriteAt(off %d) = %d, %v; want 0 and an error wrapping EINVAL", off, n, err)
		}
	}
	if after := r.Stats().Submitted; after != before {
		t.Errorf("negative offsets submitted %d requests to the kernel", after-before)
	}

	f, err := r.Open(filepath.Join(t.TempDir(), "neg"), os.O_RDWR|os.O_CREATE, 0o644)
	if err != nil {
		t.Fatal(err)
	}
	defer f.Close()
	before = r.Stats().Submitted
	if n, err := f.ReadAt(buf, -1); n != 0 || err == nil {
		t.Errorf("File.ReadAt(-1) = %d, %v; want 0 and an error", n, err)
	}
	if n, err := f.WriteAt(buf, -1); n != 0 || err == nil {
		t.Errorf("File.WriteAt(-1) = %d, %v; want 0 and an error", n, err)
	}
	if after := r.Stats().Submitted; after != before {
		t.Errorf("File negative offsets submitted %d requests", after-before)
	}
}

func TestNilAndEmptyBuffers(t *testing.T) {
	r := newRing(t, ringwake.Config{Entries: 8})
	ctx := context.Background()
	name := dataFile(t, pattern(3, 100))
	wf, err := os.OpenFile(name, os.O_RDWR, 0)
	if err != nil {
		t.Fatal(err)
	}
	defer wf.Close()
	fd := int(wf.Fd())
	var oe *ringwake.OpError
	for _, b := range [][]byte{nil, {}, make([]byte, 10)[10:]} {
		n, err := r.ReadAt(ctx, fd, b, 0)
		if n != 0 || (err != nil && !errors.As(err, &oe)) {
			t.Errorf("ReadAt(len 0, nil=%v) = %d, %v; want 0 and nil or an *OpError", b == nil, n, err)
		}
		n, err = r.WriteAt(ctx, fd, b, 0)
		if n != 0 || (err != nil && !errors.As(err, &oe)) {
			t.Errorf("WriteAt(len 0, nil=%v) = %d, %v; want 0 and nil or an *OpError", b == nil, n, err)
		}
	}

	f, err := r.Open(name, os.O_RDWR, 0)
	if err != nil {
		t.Fatal(err)
	}
	defer f.Close()
	for _, b := range [][]byte{nil, {}} {
		if n, err := f.Read(b); n != 0 || err != nil {
			t.Errorf("File.Read(empty) = %d, %v; want 0, nil as os.File", n, err)
		}
		if n, err := f.ReadAt(b, 0); n != 0 || err != nil {
			t.Errorf("File.ReadAt(empty) = %d, %v; want 0, nil as os.File", n, err)
		}
		if n, err := f.Write(b); n != 0 || err != nil {
			t.Errorf("File.Write(empty) = %d, %v; want 0, nil as os.File", n, err)
		}
		if n, err := f.WriteAt(b, 0); n != 0 || err != nil {
			t.Errorf("File.WriteAt(empty) = %d, %v; want 0, nil as os.File", n, err)
		}
	}
	// Nothing was written by the empty writes.
	got, err := os.ReadFile(name)
	if err != nil {
		t.Fatal(err)
	}
	equalBytes(t, "file after empty writes", got, pattern(3, 100))
}

// TestHugeBuffer hands the kernel a buffer larger than 2 GiB. It is a sparse
// mapping: only the pages actually read into are ever backed by memory.
func TestHugeBuffer(t *testing.T) {
	r := newRing(t, ringwake.Config{Entries: 8})
	ctx := context.Background()
	const size = 2<<30 + 4096
	huge, err := unix.Mmap(-1, 0, size, unix.PROT_READ|unix.PROT_WRITE, unix.MAP_ANON|unix.MAP_PRIVATE|unix.MAP_NORESERVE)
	if err != nil {
		if uringtest.InCI() {
			t.Fatalf("cannot map %d bytes of address space in CI: %v", size, err)
		}
		t.Skipf("cannot map %d bytes of address space: %v", size, err)
	}
	defer unix.Munmap(huge)

	want := pattern(4, 8192)
	name := dataFile(t, want)
	fd := openRead(t, name)
	n, err := r.ReadAt(ctx, fd, huge, 0)
	if err != nil {
		t.Fatalf("ReadAt into 2 GiB+4 KiB: %v", err)
	}
	if n != len(want) {
		t.Fatalf("ReadAt into 2 GiB+4 KiB = %d, want the file's %d bytes", n, len(want))
	}
	equalBytes(t, "huge ReadAt", huge[:n], want)

	f, err := r.Open(name, os.O_RDONLY, 0)
	if err != nil {
		t.Fatal(err)
	}
	defer f.Close()
	clear(huge[:8192])
	n, err = f.ReadAt(huge, 0)
	if n != len(want) || err != io.EOF {
		t.Errorf("File.ReadAt into 2 GiB+4 KiB = %d, %v; want %d, io.EOF", n, err, len(want))
	}
	equalBytes(t, "huge File.ReadAt", huge[:len(want)], want)

	// /dev/null consumes without touching the pages, so the whole mapping can
	// be written: the kernel caps one write at MAX_RW_COUNT (2 GiB - 4 KiB).
	null, err := os.OpenFile(os.DevNull, os.O_WRONLY, 0)
	if err != nil {
		t.Fatal(err)
	}
	defer null.Close()
	n, err = r.WriteAt(ctx, int(null.Fd()), huge, 0)
	if err != nil || n <= 0 || n > size {
		t.Errorf("WriteAt of 2 GiB+4 KiB to /dev/null = %d, %v; want a (short) positive count", n, err)
	}
	nf := r.NewFile(uintptr(mustDup(t, int(null.Fd()))), os.DevNull)
	defer nf.Close()
	n, err = nf.WriteAt(huge, 0)
	if err != nil || n != size {
		t.Errorf("File.WriteAt of 2 GiB+4 KiB to /dev/null = %d, %v; want %d, nil", n, err, size)
	}
}

func mustDup(t testing.TB, fd int) int {
	t.Helper()
	d, err := unix.Dup(fd)
	if err != nil {
		t.Fatal(err)
	}
	return d
}

func TestFsync(t *testing.T) {
	r := newRing(t, ringwake.Config{Entries: 8})
	ctx := context.Background()
	f, err := os.Create(filepath.Join(t.TempDir(), "fsync"))
	if err != nil {
		t.Fatal(err)
	}
	defer f.Close()
	if _, err := f.Write(pattern(5, 4096)); err != nil {
		t.Fatal(err)
	}
	for _, datasync := range []bool{false, true} {
		if err := r.Fsync(ctx, int(f.Fd()), datasync); err != nil {
			t.Errorf("Fsync(datasync=%v): %v", datasync, err)
		}
	}
	// A pipe cannot be synced: the kernel's EINVAL comes back as an error.
	_, w := rawPipe(t)
	if err := r.Fsync(ctx, w, false); !errors.Is(err, syscall.EINVAL) {
		t.Errorf("Fsync on a pipe: %v, want errors.Is EINVAL", err)
	}
}

func TestOpen(t *testing.T) {
	r := newRing(t, ringwake.Config{Entries: 8})
	dir := t.TempDir()
	name := filepath.Join(dir, "excl")
	f, err := r.Open(name, os.O_RDWR|os.O_CREATE|os.O_EXCL, 0o600)
	if err != nil {
		t.Fatalf("first O_CREAT|O_EXCL Open: %v", err)
	}
	defer f.Close()
	st, err := os.Stat(name)
	if err != nil {
		t.Fatal(err)
	}
	if st.Mode().Perm() != 0o600 {
		t.Errorf("created with mode %v, want 0600", st.Mode().Perm())
	}
	f2, err := r.Open(name, os.O_RDWR|os.O_CREATE|os.O_EXCL, 0o600)
	if !errors.Is(err, os.ErrExist) {
		t.Errorf("second O_CREAT|O_EXCL Open: %v, want errors.Is os.ErrExist", err)
	}
	var pe *os.PathError
	if !errors.As(err, &pe) || pe.Path != name {
		t.Errorf("second Open error %#v is not an *os.PathError naming the file", err)
	}
	if f2 != nil {
		t.Errorf("failed Open returned a non-nil *File")
		f2.Close()
	}
	if _, err := r.Open(filepath.Join(dir, "missing"), os.O_RDONLY, 0); !errors.Is(err, os.ErrNotExist) {
		t.Errorf("Open of a missing file: %v, want errors.Is os.ErrNotExist", err)
	}
	if _, err := r.Open("bad\x00name", os.O_RDONLY, 0); err == nil {
		t.Errorf("Open of a name with a NUL succeeded")
	}
	// The descriptor must not leak into exec'd children, as with os.OpenFile.
	flags, err := unix.FcntlInt(f.Fd(), unix.F_GETFD, 0)
	if err != nil {
		t.Fatal(err)
	}
	if flags&unix.FD_CLOEXEC == 0 {
		t.Errorf("Open's descriptor lacks FD_CLOEXEC")
	}
}

func TestFileStatNameFdSeek(t *testing.T) {
	r := newRing(t, ringwake.Config{Entries: 8})
	name := filepath.Join(t.TempDir(), "seek")
	f, err := r.Open(name, os.O_RDWR|os.O_CREATE|os.O_TRUNC, 0o644)
	if err != nil {
		t.Fatal(err)
	}
	if f.Name() != name {
		t.Errorf("Name = %q, want %q", f.Name(), name)
	}
	var st1, st2 unix.Stat_t
	if err := unix.Fstat(int(f.Fd()), &st1); err != nil {
		t.Fatalf("Fstat(Fd()): %v", err)
	}
	if err := unix.Stat(name, &st2); err != nil {
		t.Fatal(err)
	}
	if st1.Ino != st2.Ino || st1.Dev != st2.Dev {
		t.Errorf("Fd() names inode %d, the file is inode %d", st1.Ino, st2.Ino)
	}

	if n, err := f.Write([]byte("hello, world")); n != 12 || err != nil {
		t.Fatalf("Write = %d, %v", n, err)
	}
	fi, err := f.Stat()
	if err != nil {
		t.Fatal(err)
	}
	if fi.Size() != 12 || fi.Name() != "seek" || !fi.Mode().IsRegular() {
		t.Errorf("Stat = size %d name %q mode %v; want 12, seek, regular", fi.Size(), fi.Name(), fi.Mode())
	}
	// Write advanced the position Read and Seek share.
	if pos, err := f.Seek(0, io.SeekCurrent); pos != 12 || err != nil {
		t.Errorf("Seek(0, Current) after Write = %d, %v; want 12", pos, err)
	}
	if pos, err := f.Seek(0, io.SeekStart); pos != 0 || err != nil {
		t.Fatalf("Seek(0, Start) = %d, %v", pos, err)
	}
	buf := make([]byte, 5)
	if n, err := f.Read(buf); n != 5 || err != nil || string(buf) != "hello" {
		t.Errorf("Read = %d, %v, %q; want 5, nil, hello", n, err, buf)
	}
	if pos, err := f.Seek(-5, io.SeekEnd); pos != 7 || err != nil {
		t.Errorf("Seek(-5, End) = %d, %v; want 7", pos, err)
	}
	if n, err := f.Read(buf); n != 5 || err != nil || string(buf) != "world" {
		t.Errorf("Read after Seek = %d, %v, %q; want world", n, err, buf)
	}
	if n, err := f.Read(buf); n != 0 || err != io.EOF {
		t.Errorf("Read at end = %d, %v; want 0, io.EOF", n, err)
	}
	if _, err := f.Seek(-100, io.SeekStart); err == nil {
		t.Errorf("Seek to a negative position succeeded")
	}
	if _, err := f.Seek(0, 42); err == nil {
		t.Errorf("Seek with whence 42 succeeded")
	}
	n, err := f.ReadAt(make([]byte, 20), 0)
	if n != 12 || err != io.EOF {
		t.Errorf("ReadAt past the end = %d, %v; want 12, io.EOF", n, err)
	}

	if err := f.Close(); err != nil {
		t.Fatalf("Close: %v", err)
	}
	if err := f.Close(); !errors.Is(err, ringwake.ErrClosed) {
		t.Errorf("second Close: %v, want errors.Is ErrClosed", err)
	}
	for op, err := range map[string]error{
		"Read":    second(f.Read(buf)),
		"ReadAt":  second(f.ReadAt(buf, 0)),
		"Write":   second(f.Write(buf)),
		"WriteAt": second(f.WriteAt(buf, 0)),
		"Seek":    second(f.Seek(0, io.SeekStart)),
		"Stat":    second(f.Stat()),
		"Sync":    f.Sync(),
	} {
		if !errors.Is(err, ringwake.ErrClosed) {
			t.Errorf("%s after Close: %v, want errors.Is ErrClosed", op, err)
		}
	}
	if f.Name() != name {
		t.Errorf("Name after Close = %q", f.Name())
	}
}

func second[T any](_ T, err error) error { return err }

// TestNilFile: methods on a nil *File fail like os.File's, without a panic.
func TestNilFile(t *testing.T) {
	var f *ringwake.File
	if _, err := f.Read(make([]byte, 1)); err == nil {
		t.Errorf("Read on a nil *File succeeded")
	}
	if err := f.Close(); err == nil {
		t.Errorf("Close on a nil *File succeeded")
	}
}

// TestUnmappedBuffer: a buffer whose pages are gone comes back as EFAULT
// from the kernel, not as a crash.
func TestUnmappedBuffer(t *testing.T) {
	r := newRing(t, ringwake.Config{Entries: 8})
	ctx := context.Background()
	fd := openRead(t, dataFile(t, pattern(15, 8192)))
	m, err := unix.Mmap(-1, 0, 8192, unix.PROT_READ|unix.PROT_WRITE, unix.MAP_ANON|unix.MAP_PRIVATE)
	if err != nil {
		t.Fatal(err)
	}
	gone := m[:8192:8192]
	if err := unix.Munmap(m); err != nil {
		t.Fatal(err)
	}
	if n, err := r.ReadAt(ctx, fd, gone, 0); n != 0 || !errors.Is(err, syscall.EFAULT) {
		t.Errorf("ReadAt into unmapped memory = %d, %v; want 0, EFAULT", n, err)
	}
	f, err := os.Create(filepath.Join(t.TempDir(), "efault"))
	if err != nil {
		t.Fatal(err)
	}
	defer f.Close()
	if n, err := r.WriteAt(ctx, int(f.Fd()), gone, 0); n != 0 || !errors.Is(err, syscall.EFAULT) {
		t.Errorf("WriteAt from unmapped memory = %d, %v; want 0, EFAULT", n, err)
	}
	if err := r.Nop(ctx); err != nil {
		t.Fatal(err)
	}
}

func TestNewBadConfig(t *testing.T) {
	for _, cfg := range []ringwake.Config{
		{Entries: 64, CQEntries: 16},
		{SQPoll: true, SQThreadIdle: -1},
	} {
		r, err := newRingErr(t, cfg)
		if err == nil {
			r.Close()
			t.Errorf("New(%+v) succeeded", cfg)
		}
	}
	r, err := newRingErr(t, ringwake.Config{Entries: 1 << 20})
	if err != nil {
		t.Logf("New with 1M entries: %v", err)
		return
	}
	defer r.Close()
	if c := r.Capacity(); c < 4096 || c > 1<<20 {
		t.Errorf("Capacity for Entries 1<<20 = %d", c)
	}
	if err := r.Nop(context.Background()); err != nil {
		t.Fatal(err)
	}
}

func newRingErr(t *testing.T, cfg ringwake.Config) (*ringwake.Ring, error) {
	t.Helper()
	uringtest.Require(t)
	return ringwake.New(cfg)
}

// A File read alone on an idle ring (io.ReaderAt: its ctx cannot end) reaps
// inline, on the reader's goroutine; one whose ctx can end parks for the
// poller. Both return the same bytes.
func TestReadAtInline(t *testing.T) {
	r := newRing(t, ringwake.Config{})
	// The fallback backend's workers complete requests: nothing to reap inline.
	wantInline := uint64(0)
	if r.Backend() == ringwake.BackendIOUring {
		wantInline = 64
	}
	path := filepath.Join(t.TempDir(), "f")
	want := bytes.Repeat([]byte("ringwake"), 512)
	if err := os.WriteFile(path, want, 0o600); err != nil {
		t.Fatal(err)
	}
	f, err := r.Open(path, os.O_RDONLY, 0)
	if err != nil {
		t.Fatal(err)
	}
	defer f.Close()
	got := make([]byte, len(want))
	// Make the poller go to sleep first: a read whose ctx can end goes
	// through it, and it parks once the ring is idle (between page-cache
	// reads it might otherwise keep spinning, and never be found asleep).
	ctx, cancel := context.WithCancel(context.Background())
	defer cancel()
	parks := r.Stats().Parks
	if _, err := r.ReadAt(ctx, int(f.Fd()), got[:64], 0); err != nil {
		t.Fatal(err)
	}
	for deadline := time.Now().Add(30 * time.Second); r.Stats().Parks == parks; time.Sleep(time.Millisecond) {
		if time.Now().After(deadline) {
			t.Fatal("the poller never parked")
		}
	}
	before := r.Stats().Inline
	const n = 64
	for i := range n {
		off := int64(i*64) % int64(len(want)-64)
		if _, err := r.ReadAt(context.Background(), int(f.Fd()), got[:64], off); err != nil {
			t.Fatal(err)
		}
		if !bytes.Equal(got[:64], want[off:off+64]) {
			t.Fatalf("read %d at %d: wrong bytes", i, off)
		}
	}
	if d := r.Stats().Inline - before; d != wantInline {
		t.Errorf("Stats.Inline moved by %d over %d sequential reads on an idle %s ring, want %d", d, n, r.Backend(), wantInline)
	}
	before = r.Stats().Inline
	if _, err := r.ReadAt(ctx, int(f.Fd()), got[:64], 0); err != nil || !bytes.Equal(got[:64], want[:64]) {
		t.Fatalf("ReadAt with a cancelable ctx: %v", err)
	}
	if d := r.Stats().Inline - before; d != 0 {
		t.Errorf("a ReadAt whose ctx can end reaped inline (Stats.Inline moved by %d)", d)
	}
}
