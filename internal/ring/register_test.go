package ring

import (
	"bytes"
	"errors"
	"runtime"
	"strings"
	"syscall"
	"testing"
	"unsafe"

	"github.com/ringwake/ringwake/sqe"
	"golang.org/x/sys/unix"
)

func TestRegisteredBufferReadFixed(t *testing.T) {
	r := newRing(t, Params{Entries: 8})
	want := pattern(4096)
	f := patternFile(t, want)
	buf := make([]byte, 4096)
	if err := r.RegisterBuffers([][]byte{buf}); err != nil {
		t.Fatalf("RegisterBuffers: %v", err)
	}
	s := mustGetSQE(t, r)
	*s = sqe.SQE{
		Opcode:   opReadFixed,
		Fd:       int32(f.Fd()),
		Addr:     uint64(uintptr(unsafe.Pointer(&buf[0]))),
		Len:      uint32(len(buf)),
		BufIndex: 0,
		UserData: 1,
	}
	r.Publish()
	if _, err := r.SubmitAndWait(1); err != nil {
		t.Fatalf("SubmitAndWait: %v", err)
	}
	c := reap(t, r, 1)[0]
	if c.UserData != 1 || c.Res != int32(len(want)) {
		t.Fatalf("READ_FIXED CQE %+v, want res %d", c, len(want))
	}
	if !bytes.Equal(buf, want) {
		t.Fatal("READ_FIXED delivered the wrong bytes")
	}
	if err := r.UnregisterBuffers(); err != nil {
		t.Fatalf("UnregisterBuffers: %v", err)
	}
	err := r.UnregisterBuffers()
	if !errors.Is(err, syscall.ENXIO) || !strings.Contains(err.Error(), "io_uring_register") {
		t.Fatalf("second UnregisterBuffers = %v; want an io_uring_register error wrapping ENXIO", err)
	}
}

func TestRegisterBuffersRejectsEmpty(t *testing.T) {
	r := newRing(t, Params{Entries: 4})
	if err := r.RegisterBuffers(nil); err == nil {
		t.Fatal("RegisterBuffers(nil) succeeded")
	}
	err := r.RegisterBuffers([][]byte{make([]byte, 4096), {}})
	if err == nil || !strings.Contains(err.Error(), "buffer 1 is empty") {
		t.Fatalf("RegisterBuffers with an empty buffer = %v; want a clear error naming it", err)
	}
}

func TestRegisteredFiles(t *testing.T) {
	r := newRing(t, Params{Entries: 8})
	want := pattern(1000)
	f := patternFile(t, want)
	buf := make([]byte, len(want))

	// readIndex reads through fixed-file slot idx.
	readIndex := func(idx int32) CQE {
		t.Helper()
		clear(buf)
		s := mustGetSQE(t, r)
		prepRead(s, idx, buf, 0, uint64(idx)+100)
		s.Flags = iosqeFixedFile
		r.Publish()
		if _, err := r.SubmitAndWait(1); err != nil {
			t.Fatalf("SubmitAndWait: %v", err)
		}
		c := reap(t, r, 1)[0]
		runtime.KeepAlive(buf)
		return c
	}

	if err := r.RegisterFiles([]int32{-1, int32(f.Fd())}); err != nil {
		t.Fatalf("RegisterFiles: %v", err)
	}
	if c := readIndex(1); c.Res != int32(len(want)) || !bytes.Equal(buf, want) {
		t.Fatalf("fixed-file READ via slot 1: %+v", c)
	}
	if c := readIndex(0); c.Res != -int32(syscall.EBADF) {
		t.Fatalf("READ via empty slot 0: res %d, want -EBADF", c.Res)
	}
	if err := r.UnregisterFiles(); err != nil {
		t.Fatalf("UnregisterFiles: %v", err)
	}

	if err := r.RegisterFilesSparse(4); err != nil {
		t.Fatalf("RegisterFilesSparse: %v", err)
	}
	if c := readIndex(2); c.Res != -int32(syscall.EBADF) {
		t.Fatalf("READ via a sparse slot before UpdateFiles: res %d, want -EBADF", c.Res)
	}
	n, err := r.UpdateFiles(2, []int32{int32(f.Fd())})
	if err != nil || n != 1 {
		t.Fatalf("UpdateFiles = %d, %v; want 1, nil", n, err)
	}
	if c := readIndex(2); c.Res != int32(len(want)) || !bytes.Equal(buf, want) {
		t.Fatalf("fixed-file READ via updated slot 2: %+v", c)
	}
	if _, err := r.UpdateFiles(9, []int32{int32(f.Fd())}); !errors.Is(err, syscall.EINVAL) {
		t.Fatalf("UpdateFiles past the table = %v; want EINVAL", err)
	}
	if err := r.UnregisterFiles(); err != nil {
		t.Fatalf("UnregisterFiles: %v", err)
	}
	if err := r.RegisterFiles(nil); err == nil {
		t.Fatal("RegisterFiles(nil) succeeded")
	}
	if err := r.RegisterFilesSparse(0); err == nil {
		t.Fatal("RegisterFilesSparse(0) succeeded")
	}
}

// eventfdValue waits (bounded) for efd to become readable and reads it.
func eventfdValue(t *testing.T, efd int) uint64 {
	t.Helper()
	pfd := []unix.PollFd{{Fd: int32(efd), Events: unix.POLLIN}}
	for {
		n, err := unix.Poll(pfd, 5000)
		if err == unix.EINTR {
			continue
		}
		if err != nil {
			t.Fatalf("poll: %v", err)
		}
		if n == 0 {
			t.Fatal("eventfd not readable within 5s of a completion")
		}
		break
	}
	var b [8]byte
	if n, err := unix.Read(efd, b[:]); err != nil || n != 8 {
		t.Fatalf("read eventfd = %d, %v", n, err)
	}
	return *(*uint64)(unsafe.Pointer(&b[0]))
}

func TestEventfd(t *testing.T) {
	r := newRing(t, Params{Entries: 4})
	efd, err := unix.Eventfd(0, unix.EFD_CLOEXEC|unix.EFD_NONBLOCK)
	if err != nil {
		t.Fatal(err)
	}
	defer unix.Close(efd)
	if err := r.RegisterEventfd(efd); err != nil {
		t.Fatalf("RegisterEventfd: %v", err)
	}
	nopRoundTrip(t, r, 1, 1, false)
	if v := eventfdValue(t, efd); v < 1 {
		t.Fatalf("eventfd value %d after a completion", v)
	}

	// Disabled, a completion must not count; re-enabled, the next one does.
	r.SetCQEventfdEnabled(false)
	if *r.cqFlags&CQEventfdDisabled == 0 {
		t.Fatal("SetCQEventfdEnabled(false) did not set CQ_EVENTFD_DISABLED")
	}
	nopRoundTrip(t, r, 2, 1, false)
	r.SetCQEventfdEnabled(true)
	if *r.cqFlags&CQEventfdDisabled != 0 {
		t.Fatal("SetCQEventfdEnabled(true) did not clear CQ_EVENTFD_DISABLED")
	}
	nopRoundTrip(t, r, 3, 1, false)
	if v := eventfdValue(t, efd); v != 1 {
		t.Fatalf("eventfd counted %d signals for one enabled and one disabled completion, want 1", v)
	}

	if err := r.UnregisterEventfd(); err != nil {
		t.Fatalf("UnregisterEventfd: %v", err)
	}
	if err := r.RegisterEventfd(-1); err == nil {
		t.Fatal("RegisterEventfd(-1) succeeded")
	}
}

func TestProbe(t *testing.T) {
	r := newRing(t, Params{Entries: 4})
	if !r.Supports(opNop) || !r.Supports(opRead) || !r.Supports(opReadFixed) {
		t.Fatal("probe denies NOP, READ or READ_FIXED")
	}
	if r.Supports(255) {
		t.Fatal("probe claims opcode 255")
	}
	p, err := r.Probe()
	if err != nil {
		t.Fatalf("Probe: %v", err)
	}
	if p.LastOp() < opRead || p.LastOp() == 255 {
		t.Fatalf("LastOp %d out of range", p.LastOp())
	}
	if !p.Supports(p.LastOp()) || p.Supports(p.LastOp()+1) {
		t.Fatalf("Supports disagrees with LastOp %d", p.LastOp())
	}
	// With SINGLE_ISSUER another thread cannot probe, so the answer must
	// already be cached from New.
	runtime.LockOSThread()
	defer runtime.UnlockOSThread()
	si := newRing(t, Params{Entries: 4, SingleIssuer: true})
	other := make(chan bool)
	go func() {
		runtime.LockOSThread() // a locked goroutine gets a thread of its own
		defer runtime.UnlockOSThread()
		_, err := si.Probe()
		other <- errors.Is(err, syscall.EEXIST) && si.Supports(opRead)
	}()
	if !<-other {
		t.Fatal("SINGLE_ISSUER ring: Supports from another thread lacks the cached probe")
	}
	var nilProbe *Probe
	if nilProbe.Supports(opNop) {
		t.Fatal("nil Probe supports NOP")
	}
}

// The kernel answers IORING_REGISTER_IOWQ_MAX_WORKERS with the calling
// thread's previous limits, and a 0 leaves a limit as it is: a second call
// with zeros reads back what the first set.
func TestSetIOWQMaxWorkersReadsBack(t *testing.T) {
	runtime.LockOSThread() // the limits read back are this thread's io-wq's
	defer runtime.UnlockOSThread()
	r := newRing(t, Params{Entries: 8})
	old, err := r.SetIOWQMaxWorkers([2]uint32{3, 5})
	if err != nil {
		t.Fatalf("SetIOWQMaxWorkers: %v", err)
	}
	if old[0] == 0 || old[1] == 0 {
		t.Fatalf("previous limits %v; want the kernel's nonzero defaults for the thread that created the ring", old)
	}
	got, err := r.SetIOWQMaxWorkers([2]uint32{})
	if err != nil {
		t.Fatalf("SetIOWQMaxWorkers(0, 0): %v", err)
	}
	if got != [2]uint32{3, 5} {
		t.Fatalf("limits read back %v; want [3 5]", got)
	}
	if _, err := r.SetIOWQMaxWorkers([2]uint32{old[0], old[1]}); err != nil {
		t.Fatalf("restoring the limits: %v", err)
	}
	if _, err := r.SetIOWQMaxWorkers([2]uint32{1 << 31, 0}); !errors.Is(err, syscall.EINVAL) {
		t.Fatalf("a limit above INT_MAX = %v; want EINVAL", err)
	}
}
