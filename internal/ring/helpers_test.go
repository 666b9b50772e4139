package ring

import (
	"bytes"
	"os"
	"path/filepath"
	"runtime"
	"strings"
	"testing"
	"time"
	"unsafe"

	"github.com/ringwake/ringwake/internal/uringtest"
	"github.com/ringwake/ringwake/sqe"
	"go.uber.org/goleak"
)

func TestMain(m *testing.M) { goleak.VerifyTestMain(m) }

// Opcodes and SQE flags written directly, so these tests do not depend on
// package sqe's Prep helpers.
const (
	opNop          = 0
	opReadFixed    = 4
	opRead         = 22
	iosqeFixedFile = 1 << 0
)

func newRing(t testing.TB, p Params) *Ring {
	t.Helper()
	uringtest.Require(t)
	r, err := New(p)
	if err != nil {
		t.Fatalf("New(%+v): %v", p, err)
	}
	t.Cleanup(func() {
		if err := r.Close(); err != nil {
			t.Errorf("Close: %v", err)
		}
	})
	return r
}

func prepNop(s *sqe.SQE, ud uint64) { *s = sqe.SQE{Opcode: opNop, UserData: ud} }

func prepRead(s *sqe.SQE, fd int32, buf []byte, off uint64, ud uint64) {
	*s = sqe.SQE{
		Opcode:   opRead,
		Fd:       fd,
		Addr:     uint64(uintptr(unsafe.Pointer(&buf[0]))),
		Len:      uint32(len(buf)),
		Off:      off,
		UserData: ud,
	}
}

// mustGetSQE fails the test when the SQ is unexpectedly full. With SQPOLL
// the kernel thread moves the SQ head only after it has submitted a whole
// batch, so the batch's completions can be reaped before their entries are
// free again: there it waits for space (SQ_WAIT), as an SQPOLL user must.
func mustGetSQE(t testing.TB, r *Ring) *sqe.SQE {
	t.Helper()
	s := r.GetSQE()
	for tries := 0; s == nil && r.SetupFlags()&SetupSQPoll != 0 && tries < 100; tries++ {
		if _, err := r.Enter(0, 0, EnterSQWait); err != nil {
			t.Fatalf("waiting for SQ space: %v", err)
		}
		s = r.GetSQE()
	}
	if s == nil {
		t.Fatalf("GetSQE: SQ full (space %d, pending %d)", r.SQSpace(), r.SQPending())
	}
	return s
}

// reap collects exactly n CQEs, flushing overflow and waiting (bounded) as
// needed.
func reap(t testing.TB, r *Ring, n int) []CQE {
	t.Helper()
	out := make([]CQE, 0, n)
	buf := make([]CQE, 16)
	for len(out) < n {
		if k := r.PeekBatch(buf); k > 0 {
			out = append(out, buf[:k]...)
			continue
		}
		if r.CQOverflow() {
			if err := r.FlushOverflow(); err != nil {
				t.Fatalf("FlushOverflow: %v", err)
			}
			continue
		}
		if _, err := r.EnterTimeout(0, 1, EnterGetEvents, 10*time.Second); err != nil {
			t.Fatalf("waiting for CQE %d of %d: %v", len(out)+1, n, err)
		}
	}
	if extra := r.PeekBatch(buf); extra != 0 {
		t.Fatalf("reaped %d CQEs more than the %d expected: %+v", extra, n, buf[:extra])
	}
	return out
}

// checkNops asserts cqes are exactly the NOPs with user data base..base+n-1,
// each once, all successful.
func checkNops(t testing.TB, cqes []CQE, base uint64, n int) {
	t.Helper()
	if len(cqes) != n {
		t.Fatalf("got %d CQEs, want %d", len(cqes), n)
	}
	seen := make([]bool, n)
	for _, c := range cqes {
		i := c.UserData - base
		if c.UserData < base || i >= uint64(n) {
			t.Fatalf("CQE with unexpected user data %#x (want %#x..%#x)", c.UserData, base, base+uint64(n)-1)
		}
		if seen[i] {
			t.Fatalf("user data %#x completed twice", c.UserData)
		}
		seen[i] = true
		if c.Res != 0 {
			t.Fatalf("NOP %#x: res %d, want 0", c.UserData, c.Res)
		}
	}
}

// nopRoundTrip submits n NOPs and reaps them.
func nopRoundTrip(t testing.TB, r *Ring, base uint64, n int, wait bool) {
	t.Helper()
	for i := 0; i < n; i++ {
		prepNop(mustGetSQE(t, r), base+uint64(i))
	}
	r.Publish()
	var got int
	var err error
	if wait {
		got, err = r.SubmitAndWait(uint32(n))
	} else {
		got, err = r.Submit()
	}
	if err != nil {
		t.Fatalf("submitting %d NOPs: %v", n, err)
	}
	if got != n {
		t.Fatalf("submitted %d of %d NOPs", got, n)
	}
	checkNops(t, reap(t, r, n), base, n)
}

// pattern is len n of bytes that differ at every offset modulo 251.
func pattern(n int) []byte {
	b := make([]byte, n)
	for i := range b {
		b[i] = byte(i % 251)
	}
	return b
}

// patternFile writes data to a fresh temp file and returns it open for reading.
func patternFile(t testing.TB, data []byte) *os.File {
	t.Helper()
	path := filepath.Join(t.TempDir(), "data")
	if err := os.WriteFile(path, data, 0o600); err != nil {
		t.Fatal(err)
	}
	f, err := os.Open(path)
	if err != nil {
		t.Fatal(err)
	}
	t.Cleanup(func() { f.Close() })
	return f
}

// readRoundTrip reads the file's first len(want) bytes through the ring.
func readRoundTrip(t testing.TB, r *Ring, f *os.File, want []byte) {
	t.Helper()
	buf := make([]byte, len(want))
	prepRead(mustGetSQE(t, r), int32(f.Fd()), buf, 0, 0xbeef)
	r.Publish()
	if _, err := r.SubmitAndWait(1); err != nil {
		t.Fatalf("SubmitAndWait(read): %v", err)
	}
	c := reap(t, r, 1)[0]
	runtime.KeepAlive(buf)
	if c.UserData != 0xbeef || c.Res != int32(len(want)) {
		t.Fatalf("read CQE %+v, want user data 0xbeef res %d", c, len(want))
	}
	if !bytes.Equal(buf, want) {
		t.Fatal("read returned the wrong bytes")
	}
}

// countFDs is the number of open fds of this process.
func countFDs(t testing.TB) int {
	t.Helper()
	ents, err := os.ReadDir("/proc/self/fd")
	if err != nil {
		t.Fatal(err)
	}
	return len(ents)
}

// countRingMaps is the number of io_uring mappings in this process.
func countRingMaps(t testing.TB) int {
	t.Helper()
	b, err := os.ReadFile("/proc/self/maps")
	if err != nil {
		t.Fatal(err)
	}
	return strings.Count(string(b), "[io_uring]")
}
