package runtime_test

import (
	"bytes"
	"context"
	"errors"
	"hash/crc32"
	"os"
	"path/filepath"
	"runtime"
	"sync"
	"testing"
	"time"

	"go.uber.org/goleak"
	"golang.org/x/sys/unix"

	"github.com/ringwake/ringwake/internal/uringtest"
	ringwake "github.com/ringwake/ringwake/runtime"
	"github.com/ringwake/ringwake/sqe"
)

func TestMain(m *testing.M) { goleak.VerifyTestMain(cleanupM{m}) }

// cleanupM removes the benchmarks' shared data file before the leak check:
// benchmark functions run many times, so no single run can own it.
type cleanupM struct{ m *testing.M }

func (c cleanupM) Run() int {
	code := c.m.Run()
	benchFile.mu.Lock()
	if benchFile.dir != "" {
		os.RemoveAll(benchFile.dir)
	}
	benchFile.mu.Unlock()
	return code
}

var benchFile struct {
	mu   sync.Mutex
	dir  string
	path string
	size int64
}

// pipeReads submits n one-byte reads of the pipe pr with callbacks; the
// WaitGroup is done when all n completed, each of which must read one byte.
func pipeReads(t testing.TB, r *ringwake.Ring, pr, n int) (*sync.WaitGroup, error) {
	var wg sync.WaitGroup
	for range n {
		wg.Add(1)
		var s sqe.SQE
		s.PrepRead(int32(pr), make([]byte, 1), 0)
		if err := r.Submit(&s, func(res int32, _ uint32) {
			if res != 1 {
				t.Errorf("pipe read res %d, want 1", res)
			}
			wg.Done()
		}); err != nil {
			return nil, err
		}
	}
	return &wg, nil
}

// newRing returns a ring closed at the end of the test; Close must succeed.
func newRing(t testing.TB, cfg ringwake.Config) *ringwake.Ring {
	t.Helper()
	uringtest.Require(t)
	r, err := ringwake.New(cfg)
	if err != nil {
		t.Fatalf("New(%+v): %v", cfg, err)
	}
	t.Cleanup(func() {
		if err := r.Close(); err != nil {
			t.Errorf("Close: %v", err)
		}
	})
	return r
}

// rawPipe is a blocking pipe: os.Pipe's descriptors are O_NONBLOCK, which
// io_uring honours with -EAGAIN instead of waiting for data.
func rawPipe(t testing.TB) (rd, wr int) {
	t.Helper()
	var fds [2]int
	if err := unix.Pipe2(fds[:], unix.O_CLOEXEC); err != nil {
		t.Fatalf("pipe2: %v", err)
	}
	t.Cleanup(func() {
		unix.Close(fds[0])
		unix.Close(fds[1])
	})
	return fds[0], fds[1]
}

// dataFile writes data to a new file and returns its path.
func dataFile(t testing.TB, data []byte) string {
	t.Helper()
	name := filepath.Join(t.TempDir(), "data")
	if err := os.WriteFile(name, data, 0o644); err != nil {
		t.Fatal(err)
	}
	return name
}

// openRead opens name with os.Open and returns its fd, closed at cleanup.
func openRead(t testing.TB, name string) int {
	t.Helper()
	f, err := os.Open(name)
	if err != nil {
		t.Fatal(err)
	}
	t.Cleanup(func() { f.Close() })
	return int(f.Fd())
}

// pattern is deterministic, seed-dependent content, so a misplaced block
// (right data at the wrong offset) is caught as well as a corrupted one.
func pattern(seed uint32, n int) []byte {
	b := make([]byte, n)
	fillPattern(b, seed)
	return b
}

func fillPattern(b []byte, seed uint32) {
	x := seed*2654435761 + 1
	for i := range b {
		x ^= x << 13
		x ^= x >> 17
		x ^= x << 5
		b[i] = byte(x)
	}
}

// waitFor polls cond until it holds; it fails the test only when the
// condition never comes (a hang), not when it is merely slow.
func waitFor(t testing.TB, what string, cond func() bool) {
	t.Helper()
	deadline := time.Now().Add(30 * time.Second)
	for !cond() {
		if time.Now().After(deadline) {
			t.Fatalf("gave up waiting for %s", what)
		}
		time.Sleep(time.Millisecond)
	}
}

// waitUpTo runs wait on a goroutine and reports whether it returned within
// d; the channel is closed when it returns, in time or not.
func waitUpTo(wait func(), d time.Duration) (<-chan struct{}, bool) {
	finished := make(chan struct{})
	go func() {
		defer close(finished)
		wait()
	}()
	select {
	case <-finished:
		return finished, true
	case <-time.After(d):
		return finished, false
	}
}

// within fails the test if fn does not return: a deadlock becomes a test
// failure with a name instead of a whole-binary timeout.
func within(t testing.TB, what string, fn func()) {
	t.Helper()
	if _, ok := waitUpTo(fn, 60*time.Second); !ok {
		t.Fatalf("%s did not return", what)
	}
}

func crc(b []byte) uint32 { return crc32.ChecksumIEEE(b) }

// readFullAt loops Ring.ReadAt, which is one pread and may be short.
func readFullAt(ctx context.Context, r *ringwake.Ring, fd int, p []byte, off int64) error {
	for n := 0; n < len(p); {
		m, err := r.ReadAt(ctx, fd, p[n:], off+int64(n))
		if err != nil {
			return err
		}
		if m == 0 {
			return errors.New("unexpected end of file")
		}
		n += m
	}
	return nil
}

// writeFullAt loops Ring.WriteAt, which is one pwrite and may be short.
func writeFullAt(ctx context.Context, r *ringwake.Ring, fd int, p []byte, off int64) error {
	for n := 0; n < len(p); {
		m, err := r.WriteAt(ctx, fd, p[n:], off+int64(n))
		if err != nil {
			return err
		}
		if m == 0 {
			return errors.New("zero-length write")
		}
		n += m
	}
	return nil
}

func equalBytes(t testing.TB, what string, got, want []byte) {
	t.Helper()
	if !bytes.Equal(got, want) {
		i := 0
		for i < len(got) && i < len(want) && got[i] == want[i] {
			i++
		}
		t.Fatalf("%s: content differs at byte %d (len got %d, want %d)", what, i, len(got), len(want))
	}
}

// gcStorm runs the GC flat out, calling after (if not nil) after each
// cycle, until stop is called (at the latest by the test's cleanup): the
// pressure under which a buffer or path the runtime let go of too early
// would be freed, reused or moved while the kernel still uses it.
func gcStorm(t testing.TB, after func(i int)) (stop func()) {
	done := make(chan struct{})
	var wg sync.WaitGroup
	wg.Add(1)
	go func() {
		defer wg.Done()
		for i := 0; ; i++ {
			select {
			case <-done:
				return
			default:
			}
			runtime.GC()
			if after != nil {
				after(i)
			}
		}
	}()
	var once sync.Once
	stop = func() {
		once.Do(func() {
			close(done)
			wg.Wait()
		})
	}
	t.Cleanup(stop)
	return stop
}

// writeSyncChain is a write of data at 0 linked to an fdatasync of fd: the
// chain a log commit submits as one batch.
func writeSyncChain(fd int, data []byte) []sqe.SQE {
	ss := make([]sqe.SQE, 2)
	ss[0].PrepWrite(int32(fd), data, 0)
	ss[0].Flags |= sqe.IOLink
	ss[1].PrepFsync(int32(fd), sqe.FsyncDatasync)
	return ss
}
