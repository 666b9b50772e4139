package runtime_test

import (
	"bytes"
	"context"
	"errors"
	"fmt"
	"os"
	"path/filepath"
	"strings"
	"syscall"
	"testing"
	"time"
	"unsafe"

	"golang.org/x/sys/unix"

	"github.com/ringwake/ringwake/internal/seccomptest"
	ringwake "github.com/ringwake/ringwake/runtime"
	"github.com/ringwake/ringwake/sqe"
)

// seccompChildOK is the line the child prints once every check passed.
const seccompChildOK = "SECCOMP-CHILD-OK"

// TestSeccompChild runs the process where a container's default seccomp
// profile puts it: io_uring_setup fails with EPERM. A filter cannot be
// removed, so run normally this test re-executes the test binary to run
// only itself, and the child installs the filter before anything touches
// io_uring, then checks both behaviours: New without Fallback fails naming
// the cause, New with Fallback serves files, callbacks, cancellation and
// Close on the portable engine.
func TestSeccompChild(t *testing.T) {
	if seccomptest.IsChild() {
		seccompChild(t)
		return
	}
	if err := seccomptest.Supported(); err != nil {
		t.Skipf("%v", err)
	}
	out, err := seccomptest.RunChild(t, "TestSeccompChild")
	if err != nil || !strings.Contains(out, "\n"+seccompChildOK+"\n") || !strings.Contains(out, "--- PASS: TestSeccompChild") {
		t.Fatalf("child under the seccomp filter failed (%v); its output:\n%s", err, out)
	}
	for _, line := range strings.Split(out, "\n") {
		if strings.Contains(line, "seccomp_test.go") {
			t.Log("child:", strings.TrimSpace(line))
		}
	}
}

func seccompChild(t *testing.T) {
	if err := seccomptest.DenyIOUringSetup(syscall.EPERM); err != nil {
		t.Fatalf("installing the filter: %v", err)
	}
	// The filter works, on this thread and any other.
	var p [120]byte
	if _, _, errno := unix.Syscall(unix.SYS_IO_URING_SETUP, 4, uintptr(unsafe.Pointer(&p)), 0); errno != syscall.EPERM {
		t.Fatalf("io_uring_setup under the filter: errno %v, want EPERM", errno)
	}

	_, err := ringwake.New(ringwake.Config{})
	if !errors.Is(err, ringwake.ErrUnsupported) || !errors.Is(err, syscall.EPERM) {
		t.Fatalf("New without Fallback = %v; want an error wrapping ErrUnsupported and EPERM", err)
	}
	if msg := err.Error(); !strings.Contains(msg, "io_uring_setup") || !strings.Contains(msg, "Fallback") {
		t.Fatalf("New's error %q does not name io_uring_setup as the cause and Fallback as the remedy", msg)
	}
	t.Logf("New(Config{}) = %v", err)

	r, err := ringwake.New(ringwake.Config{Entries: 16, Fallback: true})
	if err != nil {
		t.Fatalf("New with Fallback: %v", err)
	}
	defer r.Close()
	if b := r.Backend(); b != ringwake.BackendFallback {
		t.Fatalf("Backend() = %q, want %q", b, ringwake.BackendFallback)
	}

	// A File write, Sync and read back, and the bytes on disk.
	name := filepath.Join(t.TempDir(), "data")
	f, err := r.Open(name, os.O_RDWR|os.O_CREATE, 0o600)
	if err != nil {
		t.Fatalf("Open: %v", err)
	}
	data := pattern(42, 64<<10)
	if n, err := f.Write(data); err != nil || n != len(data) {
		t.Fatalf("File.Write = %d, %v", n, err)
	}
	if err := f.Sync(); err != nil {
		t.Fatalf("File.Sync: %v", err)
	}
	got := make([]byte, len(data))
	if n, err := f.ReadAt(got, 0); err != nil || n != len(data) {
		t.Fatalf("File.ReadAt = %d, %v", n, err)
	}
	equalBytes(t, "File read back", got, data)
	if err := f.Close(); err != nil {
		t.Fatalf("File.Close: %v", err)
	}
	onDisk, err := os.ReadFile(name)
	if err != nil {
		t.Fatal(err)
	}
	equalBytes(t, "file on disk", onDisk, data)

	// A Submit callback.
	var s sqe.SQE
	s.PrepNop()
	res := make(chan int32, 2)
	if err := r.Submit(&s, func(r int32, _ uint32) { res <- r }); err != nil {
		t.Fatalf("Submit: %v", err)
	}
	within(t, "the Submit callback", func() {
		if got := <-res; got != 0 {
			t.Errorf("NOP callback res %d", got)
		}
	})

	// ctx cancellation of a read on an empty pipe, and the ring goes on.
	pr, pw := rawPipe(t)
	ctx, cancel := context.WithTimeout(context.Background(), 20*time.Millisecond)
	defer cancel()
	buf := bytes.Repeat([]byte{0xAA}, 8)
	var n int
	within(t, "a canceled pipe read", func() { n, err = r.ReadAt(ctx, pr, buf, 0) })
	if n != 0 || !errors.Is(err, context.DeadlineExceeded) {
		t.Fatalf("ReadAt of an empty pipe past its deadline = %d, %v", n, err)
	}
	if !bytes.Equal(buf, bytes.Repeat([]byte{0xAA}, 8)) {
		t.Fatal("the canceled read wrote its buffer")
	}
	if _, err := unix.Write(pw, []byte("ok")); err != nil {
		t.Fatal(err)
	}
	if n, err := r.ReadAt(context.Background(), pr, buf, 0); n != 2 || err != nil || string(buf[:2]) != "ok" {
		t.Fatalf("ReadAt after the cancel = %d, %v, %q", n, err, buf[:n])
	}

	// Close: a read still waiting ends with ErrClosed, then calls fail.
	blocked := make(chan error, 1)
	before := r.Stats().Submitted
	go func() {
		_, err := r.ReadAt(context.Background(), pr, make([]byte, 1), 0)
		blocked <- err
	}()
	waitFor(t, "the blocked read to be submitted", func() bool { return r.Stats().Submitted > before })
	if err := r.Close(); err != nil {
		t.Fatalf("Close: %v", err)
	}
	within(t, "the read blocked at Close", func() {
		if err := <-blocked; !errors.Is(err, ringwake.ErrClosed) {
			t.Errorf("read blocked at Close = %v, want ErrClosed", err)
		}
	})
	if err := r.Nop(context.Background()); !errors.Is(err, ringwake.ErrClosed) {
		t.Fatalf("Nop after Close = %v, want ErrClosed", err)
	}
	if err := r.Close(); err != nil {
		t.Fatalf("second Close: %v", err)
	}
	if !t.Failed() {
		fmt.Println(seccompChildOK)
	}
}
