package runtime_test

import (
	"archive/zip"
	"bytes"
	"errors"
	"fmt"
	"io"
	"os"
	"path/filepath"
	"testing"
	"testing/iotest"

	ringwake "github.com/ringwake/ringwake/runtime"
)

func TestFileIotestReader(t *testing.T) {
	r := newRing(t, ringwake.Config{Entries: 16})
	for _, size := range []int{0, 1, 4095, 20 << 10} {
		t.Run(fmt.Sprint(size), func(t *testing.T) {
			content := pattern(uint32(size), size)
			f, err := r.Open(dataFile(t, content), os.O_RDONLY, 0)
			if err != nil {
				t.Fatal(err)
			}
			defer f.Close()
			if err := iotest.TestReader(f, content); err != nil {
				t.Fatalf("iotest.TestReader: %v", err)
			}
		})
	}
}

// TestFileWriterAppend: Write at the file position and with O_APPEND, as os.File.
func TestFileWriterAppend(t *testing.T) {
	r := newRing(t, ringwake.Config{Entries: 16})
	name := filepath.Join(t.TempDir(), "append")
	if err := os.WriteFile(name, []byte("head:"), 0o644); err != nil {
		t.Fatal(err)
	}
	f, err := r.Open(name, os.O_WRONLY|os.O_APPEND, 0)
	if err != nil {
		t.Fatal(err)
	}
	big := pattern(9, 300<<10)
	for _, p := range [][]byte{[]byte("one,"), big, []byte("two")} {
		if n, err := f.Write(p); n != len(p) || err != nil {
			t.Fatalf("Write(%d bytes) = %d, %v", len(p), n, err)
		}
	}
	if err := f.Close(); err != nil {
		t.Fatal(err)
	}
	got, err := os.ReadFile(name)
	if err != nil {
		t.Fatal(err)
	}
	want := append(append([]byte("head:one,"), big...), "two"...)
	equalBytes(t, "appended file", got, want)
}

func TestZipRoundTrip(t *testing.T) {
	r := newRing(t, ringwake.Config{Entries: 16})
	name := filepath.Join(t.TempDir(), "archive.zip")
	entries := []struct {
		name   string
		method uint16
		data   []byte
	}{
		{"empty", zip.Store, nil},
		{"small.txt", zip.Deflate, []byte("hello, ring\n")},
		{"random.bin", zip.Store, pattern(11, 300<<10+17)},
		{"repetitive.txt", zip.Deflate, bytes.Repeat([]byte("group commit "), 20000)},
		{"dir/nested.bin", zip.Deflate, pattern(12, 70000)},
	}

	f, err := r.Open(name, os.O_RDWR|os.O_CREATE|os.O_TRUNC, 0o644)
	if err != nil {
		t.Fatal(err)
	}
	zw := zip.NewWriter(f)
	for _, e := range entries {
		w, err := zw.CreateHeader(&zip.FileHeader{Name: e.name, Method: e.method})
		if err != nil {
			t.Fatal(err)
		}
		if _, err := w.Write(e.data); err != nil {
			t.Fatalf("writing %s: %v", e.name, err)
		}
	}
	if err := zw.Close(); err != nil {
		t.Fatal(err)
	}
	if err := f.Close(); err != nil {
		t.Fatal(err)
	}

	f, err = r.Open(name, os.O_RDONLY, 0)
	if err != nil {
		t.Fatal(err)
	}
	defer f.Close()
	fi, err := f.Stat()
	if err != nil {
		t.Fatal(err)
	}
	zr, err := zip.NewReader(f, fi.Size())
	if err != nil {
		t.Fatalf("zip.NewReader: %v", err)
	}
	if len(zr.File) != len(entries) {
		t.Fatalf("archive has %d entries, want %d", len(zr.File), len(entries))
	}
	for i, zf := range zr.File {
		e := entries[i]
		if zf.Name != e.name || zf.Method != e.method {
			t.Errorf("entry %d is %q method %d, want %q method %d", i, zf.Name, zf.Method, e.name, e.method)
		}
		rc, err := zf.Open()
		if err != nil {
			t.Fatal(err)
		}
		got, err := io.ReadAll(rc) // the zip reader checks the CRC-32 at EOF
		rc.Close()
		if err != nil {
			t.Fatalf("reading %s: %v", zf.Name, err)
		}
		if !bytes.Equal(got, e.data) {
			t.Errorf("entry %s: %d bytes read back, differ from the %d written", zf.Name, len(got), len(e.data))
		}
	}

	// The standard library reads the same archive from an os.File.
	zr2, err := zip.OpenReader(name)
	if err != nil {
		t.Fatalf("zip.OpenReader of the ring-written archive: %v", err)
	}
	defer zr2.Close()
	if len(zr2.File) != len(entries) {
		t.Errorf("os view: %d entries", len(zr2.File))
	}
}

// TestFileWriteAtAppendRefused: os.File refuses WriteAt on an O_APPEND file,
// where Linux's pwrite would silently append at the end instead of writing
// at the offset the caller asked for.
func TestFileWriteAtAppendRefused(t *testing.T) {
	r := newRing(t, ringwake.Config{Entries: 8})
	name := dataFile(t, []byte("0123456789"))
	f, err := r.Open(name, os.O_RDWR|os.O_APPEND, 0)
	if err != nil {
		t.Fatal(err)
	}
	defer f.Close()
	n, err := f.WriteAt([]byte("XX"), 0)
	if err == nil || n != 0 {
		got, _ := os.ReadFile(name)
		t.Errorf("WriteAt(off 0) on an O_APPEND file = %d, %v, leaving %q; os.File refuses it", n, err, got)
	}
}

// TestFileClosedErrors: as with os.File, calls after Close, and a read that
// Close interrupts, fail with an error matching os.ErrClosed (and the
// package's ErrClosed), and Fd reports the descriptor gone.
func TestFileClosedErrors(t *testing.T) {
	r := newRing(t, ringwake.Config{Entries: 8})
	f, err := r.Open(dataFile(t, []byte("x")), os.O_RDWR, 0)
	if err != nil {
		t.Fatal(err)
	}
	if err := f.Close(); err != nil {
		t.Fatal(err)
	}
	if _, err := f.Read(make([]byte, 1)); !errors.Is(err, os.ErrClosed) || !errors.Is(err, ringwake.ErrClosed) {
		t.Errorf("Read after Close: %v; want errors.Is os.ErrClosed and ErrClosed", err)
	}
	if _, err := f.WriteAt([]byte("y"), 0); !errors.Is(err, os.ErrClosed) {
		t.Errorf("WriteAt after Close: %v; want errors.Is os.ErrClosed", err)
	}
	if fd := f.Fd(); fd != ^uintptr(0) {
		t.Errorf("Fd after Close = %d; os.File returns ^uintptr(0), not a number the next open may reuse", fd)
	}

	pr, _ := rawPipe(t)
	pf := r.NewFile(uintptr(mustDup(t, pr)), "pipe")
	res := make(chan error, 1)
	go func() {
		_, err := pf.Read(make([]byte, 1))
		res <- err
	}()
	waitFor(t, "the pipe read to be in flight", func() bool { return r.Stats().Submitted > r.Stats().Completed })
	if err := pf.Close(); err != nil {
		t.Fatalf("Close with a read in flight: %v", err)
	}
	if err := <-res; !errors.Is(err, os.ErrClosed) {
		t.Errorf("read interrupted by Close: %v; want errors.Is os.ErrClosed, as os.File", err)
	}
}
