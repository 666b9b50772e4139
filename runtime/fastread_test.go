package runtime_test

import (
	"bytes"
	"io"
	"os"
	"strings"
	"syscall"
	"testing"
	"unsafe"

	"golang.org/x/sys/unix"

	ringwake "github.com/ringwake/ringwake/runtime"
)

// openFile opens name on r, closed at the end of the test.
func openFile(t *testing.T, r *ringwake.Ring, name string, flag int) *ringwake.File {
	t.Helper()
	f, err := r.Open(name, flag, 0)
	if err != nil {
		t.Fatal(err)
	}
	t.Cleanup(func() { f.Close() })
	return f
}

// submitted is how many requests the ring has published so far.
func submitted(r *ringwake.Ring) uint64 { return r.Stats().Submitted }

// readBlocks reads every 4 KiB block of f in a scrambled order and checks
// each against want.
func readBlocks(t *testing.T, f *ringwake.File, want []byte) {
	t.Helper()
	buf := make([]byte, 4096)
	nb := len(want) / 4096
	for i := 0; i < nb; i++ {
		blk := (i * 37) % nb
		off := int64(blk) * 4096
		if n, err := f.ReadAt(buf, off); err != nil || n != len(buf) {
			t.Fatalf("ReadAt(%d) = %d, %v", off, n, err)
		}
		if !bytes.Equal(buf, want[off:off+4096]) {
			t.Fatalf("block %d differs from the file's data", blk)
		}
	}
}

// Data in the page cache is read on the caller's goroutine (preadv2
// RWF_NOWAIT): the ring sees none of those reads, unless the fast path is
// off, when it sees every one; an O_DIRECT File never takes it.
func TestFileReadCacheFastPath(t *testing.T) {
	want := pattern(11, 1<<20)
	name := dataFile(t, want) // just written: every page is in the cache
	nb := uint64(len(want) / 4096)
	for _, tc := range []struct {
		name      string
		cfg       ringwake.Config
		flag      int
		viaRing   uint64
		alignedIO bool
	}{
		{"default", ringwake.Config{}, os.O_RDONLY, 0, false},
		{"NoCacheFastPath", ringwake.Config{NoCacheFastPath: true}, os.O_RDONLY, nb, false},
		{"O_DIRECT", ringwake.Config{}, os.O_RDONLY | syscall.O_DIRECT, nb, true},
	} {
		t.Run(tc.name, func(t *testing.T) {
			r := newRing(t, tc.cfg)
			f := openFile(t, r, name, tc.flag)
			before := submitted(r)
			if tc.alignedIO {
				buf := ringwake.AlignedBuffer(4096, 4096)
				for blk := uint64(0); blk < nb; blk++ {
					off := int64(blk) * 4096
					if n, err := f.ReadAt(buf, off); err != nil || n != 4096 || !bytes.Equal(buf, want[off:off+4096]) {
						t.Fatalf("O_DIRECT ReadAt(%d) = %d, %v (or wrong data)", off, n, err)
					}
				}
			} else {
				readBlocks(t, f, want)
			}
			if got := submitted(r) - before; got != tc.viaRing {
				t.Fatalf("%d of %d reads went through the ring, want %d", got, nb, tc.viaRing)
			}
		})
	}
}

// Read uses the file position: the fast path must advance it as the ring's
// read does, so reading to EOF yields the file exactly once.
func TestFileReadFastPathAdvancesPosition(t *testing.T) {
	want := pattern(12, 300_001)
	name := dataFile(t, want)
	r := newRing(t, ringwake.Config{})
	f := openFile(t, r, name, os.O_RDONLY)
	before := submitted(r)
	got, err := io.ReadAll(io.LimitReader(f, int64(len(want))+10))
	if err != nil || !bytes.Equal(got, want) {
		t.Fatalf("ReadAll: %d bytes, %v; want the file's %d bytes", len(got), err, len(want))
	}
	if n := submitted(r) - before; n != 0 {
		t.Fatalf("%d reads of cached data went through the ring", n)
	}
	if n, err := f.Read(make([]byte, 10)); n != 0 || err != io.EOF {
		t.Fatalf("Read at EOF = %d, %v; want 0, EOF", n, err)
	}
}

// Data not in the page cache makes RWF_NOWAIT fail with EAGAIN; the read
// then goes through the ring and returns the right bytes.
func TestFileReadUncachedGoesThroughRing(t *testing.T) {
	want := pattern(13, 4<<20)
	name := dataFile(t, want)
	// Write back and drop the file's pages.
	of, err := os.Open(name)
	if err != nil {
		t.Fatal(err)
	}
	defer of.Close()
	if err := of.Sync(); err != nil {
		t.Fatal(err)
	}
	if err := unix.Fadvise(int(of.Fd()), 0, 0, unix.FADV_DONTNEED); err != nil {
		t.Fatal(err)
	}
	cached := residentPages(t, of, len(want))

	r := newRing(t, ringwake.Config{})
	f := openFile(t, r, name, os.O_RDONLY)
	before := submitted(r)
	readBlocks(t, f, want)
	viaRing := submitted(r) - before
	t.Logf("%d of %d pages cached after DONTNEED; %d reads went through the ring", cached, len(want)/4096, viaRing)
	if cached == 0 && viaRing == 0 {
		t.Fatal("no page was cached, yet no read went through the ring")
	}
}

// residentPages counts the file's pages in the page cache (mincore).
func residentPages(t *testing.T, f *os.File, size int) int {
	t.Helper()
	m, err := unix.Mmap(int(f.Fd()), 0, size, unix.PROT_READ, unix.MAP_SHARED)
	if err != nil {
		t.Fatal(err)
	}
	defer unix.Munmap(m)
	vec := make([]byte, (size+4095)/4096)
	if _, _, errno := unix.Syscall(unix.SYS_MINCORE, uintptr(unsafe.Pointer(&m[0])), uintptr(len(m)), uintptr(unsafe.Pointer(&vec[0]))); errno != 0 {
		t.Fatal("mincore:", errno)
	}
	n := 0
	for _, v := range vec {
		n += int(v & 1)
	}
	return n
}

// A file system without RWF_NOWAIT (procfs answers EOPNOTSUPP) is read
// through the ring, correctly, every time.
func TestFileReadNoNowaitSupport(t *testing.T) {
	r := newRing(t, ringwake.Config{})
	f := openFile(t, r, "/proc/self/status", os.O_RDONLY)
	for i := 0; i < 3; i++ {
		buf := make([]byte, 64)
		n, err := f.ReadAt(buf, 0)
		if (err != nil && err != io.EOF) || !strings.HasPrefix(string(buf[:n]), "Name:") {
			t.Fatalf("ReadAt %d = %d, %v: %q", i, n, err, buf[:n])
		}
	}
}

func TestFileReadFastPathAllocationFree(t *testing.T) {
	want := pattern(14, 64<<10)
	r := newRing(t, ringwake.Config{})
	f := openFile(t, r, dataFile(t, want), os.O_RDONLY)
	buf := make([]byte, 4096)
	allocs := testing.AllocsPerRun(200, func() {
		if n, err := f.ReadAt(buf, 8192); err != nil || n != len(buf) {
			t.Fatalf("ReadAt = %d, %v", n, err)
		}
	})
	if allocs != 0 {
		t.Fatalf("%.1f allocations per cached ReadAt, want 0", allocs)
	}
}
