// Package uringtest lets tests that need io_uring skip cleanly where the
// kernel refuses it, and fail instead when running in CI (CI=true), where a
// refusal means the test environment is broken, not that the feature is absent.
package uringtest

import (
	"errors"
	"os"
	"sync"
	"syscall"
	"testing"
	"unsafe"

	iosys "github.com/iceber/iouring-go/syscall"
	"golang.org/x/sys/unix"
)

var (
	once     sync.Once
	probeErr error
)

// Available reports whether this process may create an io_uring instance,
// and the kernel's refusal when it may not.
func Available() error {
	once.Do(func() {
		var p iosys.IOURingParams
		fd, _, errno := unix.RawSyscall(iosys.SYS_IO_URING_SETUP, 1, uintptr(unsafe.Pointer(&p)), 0)
		if errno != 0 {
			probeErr = errno
			return
		}
		unix.Close(int(fd))
	})
	return probeErr
}

// InCI reports whether the tests run under CI, where nothing may be skipped.
func InCI() bool { return os.Getenv("CI") == "true" }

// Require skips t when the kernel refuses io_uring (ENOSYS, EPERM, or
// io_uring_disabled), except in CI where it fails t.
func Require(t testing.TB) {
	t.Helper()
	err := Available()
	if err == nil {
		return
	}
	if InCI() {
		t.Fatalf("io_uring refused by the kernel in CI: %v", err)
	}
	if errors.Is(err, syscall.ENOSYS) || errors.Is(err, syscall.EPERM) || errors.Is(err, syscall.EACCES) {
		t.Skipf("io_uring unavailable here (%v); set CI=true to make this a failure", err)
	}
	t.Fatalf("io_uring setup failed unexpectedly: %v", err)
}
