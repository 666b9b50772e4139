// Package seccomptest puts a test process where container runtimes put it:
// under a seccomp filter whose default profile refuses io_uring_setup(2)
// with EPERM. Since a filter can never be removed, the test re-executes its
// own binary and installs the filter in the child (RunChild, IsChild).
package seccomptest

import (
	"context"
	"errors"
	"fmt"
	"os"
	"os/exec"
	"runtime"
	"strings"
	"syscall"
	"testing"
	"time"
	"unsafe"

	"golang.org/x/sys/unix"
)

// EnvChild marks the re-executed test binary.
const EnvChild = "RINGWAKE_SECCOMP_CHILD"

// Offsets in struct seccomp_data, which the filter loads.
const (
	offNr   = 0
	offArch = 4
)

// auditArch is the AUDIT_ARCH_* value the kernel reports for this binary's
// syscalls, or 0 where this package does not know it.
func auditArch() uint32 {
	switch runtime.GOARCH {
	case "amd64":
		return unix.AUDIT_ARCH_X86_64
	case "arm64":
		return unix.AUDIT_ARCH_AARCH64
	}
	return 0
}

// Supported reports why DenyIOUringSetup cannot run here, or nil.
func Supported() error {
	if auditArch() == 0 {
		return fmt.Errorf("seccomptest: no filter for GOARCH=%s (amd64 and arm64 only)", runtime.GOARCH)
	}
	return nil
}

// Filter is the classic BPF program: a syscall of this architecture
// numbered io_uring_setup gets errno, anything else is allowed, as in the
// default profiles of Docker and containerd. A syscall made with another
// ABI (a 32-bit one) is let through: it is not this binary's.
func Filter(errno syscall.Errno) []unix.SockFilter {
	return []unix.SockFilter{
		{Code: unix.BPF_LD | unix.BPF_W | unix.BPF_ABS, K: offArch},
		{Code: unix.BPF_JMP | unix.BPF_JEQ | unix.BPF_K, Jt: 0, Jf: 3, K: auditArch()},
		{Code: unix.BPF_LD | unix.BPF_W | unix.BPF_ABS, K: offNr},
		{Code: unix.BPF_JMP | unix.BPF_JEQ | unix.BPF_K, Jt: 0, Jf: 1, K: unix.SYS_IO_URING_SETUP},
		{Code: unix.BPF_RET | unix.BPF_K, K: unix.SECCOMP_RET_ERRNO | uint32(errno)&unix.SECCOMP_RET_DATA},
		{Code: unix.BPF_RET | unix.BPF_K, K: unix.SECCOMP_RET_ALLOW},
	}
}

// DenyIOUringSetup installs Filter(errno) on every thread of the process,
// for good: SECCOMP_FILTER_FLAG_TSYNC reaches the threads the Go runtime
// already runs, and threads it starts later inherit the filter.
func DenyIOUringSetup(errno syscall.Errno) error {
	if err := Supported(); err != nil {
		return err
	}
	prog := Filter(errno)
	fprog := unix.SockFprog{Len: uint16(len(prog)), Filter: &prog[0]}
	// NO_NEW_PRIVS is per thread and seccomp checks it on the calling
	// thread: both calls must run on the same one. TSYNC then sets it on
	// the others.
	runtime.LockOSThread()
	defer runtime.UnlockOSThread()
	if err := unix.Prctl(unix.PR_SET_NO_NEW_PRIVS, 1, 0, 0, 0); err != nil {
		return fmt.Errorf("seccomptest: prctl(PR_SET_NO_NEW_PRIVS): %w", err)
	}
	tid, _, e := unix.Syscall(unix.SYS_SECCOMP, unix.SECCOMP_SET_MODE_FILTER,
		unix.SECCOMP_FILTER_FLAG_TSYNC, uintptr(unsafe.Pointer(&fprog)))
	runtime.KeepAlive(prog)
	if e != 0 {
		return fmt.Errorf("seccomptest: seccomp(SET_MODE_FILTER, TSYNC): %w", e)
	}
	if tid != 0 {
		return fmt.Errorf("seccomptest: seccomp(SET_MODE_FILTER, TSYNC): thread %d could not be synchronized", tid)
	}
	return nil
}

// IsChild reports whether this process is the re-executed child.
func IsChild() bool { return os.Getenv(EnvChild) == "1" }

// RunChild re-executes the running test binary to run only the test named
// name, with EnvChild set and env added (RINGWAKE_BACKEND is removed, so
// the child's rings are what the kernel allows). It returns the child's
// combined output and its exit error.
func RunChild(t testing.TB, name string, env ...string) (string, error) {
	t.Helper()
	ctx, cancel := context.WithTimeout(context.Background(), 5*time.Minute)
	defer cancel()
	cmd := exec.CommandContext(ctx, os.Args[0],
		"-test.run=^"+name+"$", "-test.v", "-test.count=1", "-test.timeout=4m")
	for _, kv := range os.Environ() {
		if !strings.HasPrefix(kv, "RINGWAKE_BACKEND=") && !strings.HasPrefix(kv, EnvChild+"=") {
			cmd.Env = append(cmd.Env, kv)
		}
	}
	cmd.Env = append(cmd.Env, EnvChild+"=1")
	cmd.Env = append(cmd.Env, env...)
	out, err := cmd.CombinedOutput()
	if ctx.Err() != nil {
		err = errors.Join(err, ctx.Err())
	}
	return string(out), err
}
