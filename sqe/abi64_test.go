//go:build amd64 || arm64 || loong64 || mips64 || mips64le || ppc64 || ppc64le || riscv64 || s390x

package sqe

import (
	"math"
	"testing"
	"unsafe"

	"golang.org/x/sys/unix"
)

// These tests need a 64-bit platform: a slice longer than 4 GiB, and the
// kernel's 64-bit timespec layout that unix.Timespec only has there.

// A buffer longer than Len can express is clamped to MaxUint32 bytes. The
// buffer is inaccessible reserved address space, so the test costs no memory.
func TestHugeBufferIsClamped(t *testing.T) {
	const size = 1<<32 + 1<<16
	huge, err := unix.Mmap(-1, 0, size, unix.PROT_NONE, unix.MAP_PRIVATE|unix.MAP_ANONYMOUS|unix.MAP_NORESERVE)
	if err != nil {
		t.Fatalf("reserving %d bytes of address space: %v", size, err)
	}
	defer func() {
		if err := unix.Munmap(huge); err != nil {
			t.Errorf("munmap: %v", err)
		}
	}()
	base := uint64(uintptr(unsafe.Pointer(unsafe.SliceData(huge))))
	for name, prep := range map[string]func(*SQE){
		"PrepRead":       func(s *SQE) { s.PrepRead(3, huge, 0) },
		"PrepWrite":      func(s *SQE) { s.PrepWrite(3, huge, 0) },
		"PrepReadFixed":  func(s *SQE) { s.PrepReadFixed(3, huge, 0, 0) },
		"PrepWriteFixed": func(s *SQE) { s.PrepWriteFixed(3, huge, 0, 0) },
		"PrepSend":       func(s *SQE) { s.PrepSend(3, huge, 0) },
		"PrepRecv":       func(s *SQE) { s.PrepRecv(3, huge, 0) },
	} {
		s := dirty()
		prep(s)
		if s.Len != math.MaxUint32 || s.Addr != base {
			t.Errorf("%s(%d bytes): Len %d Addr %#x, want %d %#x", name, size, s.Len, s.Addr, uint32(math.MaxUint32), base)
		}
	}
	// One byte short of the limit is passed through unchanged.
	s := dirty()
	s.PrepRead(3, huge[:math.MaxUint32-1], 0)
	if s.Len != math.MaxUint32-1 {
		t.Errorf("PrepRead(MaxUint32-1 bytes): Len %d", s.Len)
	}
}

// PrepTimeout and PrepLinkTimeout hand a *unix.Timespec to the kernel as a
// struct __kernel_timespec, which is two 64-bit words.
func TestTimespecIsKernelTimespec(t *testing.T) {
	var ts unix.Timespec
	if unsafe.Sizeof(ts) != 16 || unsafe.Offsetof(ts.Nsec) != 8 {
		t.Fatalf("unix.Timespec is %d bytes with Nsec at %d; the kernel wants 16 with tv_nsec at 8",
			unsafe.Sizeof(ts), unsafe.Offsetof(ts.Nsec))
	}
}
