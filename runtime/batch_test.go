package runtime_test

import (
	"context"
	"errors"
	"fmt"
	"io"
	"math/rand/v2"
	"os"
	"os/exec"
	"path/filepath"
	"regexp"
	"runtime"
	"runtime/debug"
	"sync"
	"syscall"
	"testing"
	"time"

	"golang.org/x/sys/unix"

	"github.com/ringwake/ringwake/internal/uringtest"
	ringwake "github.com/ringwake/ringwake/runtime"
	"github.com/ringwake/ringwake/sqe"
)

// SubmitAndWait returns every result, for more SQEs than the ring has slots.
func TestSubmitAndWaitNops(t *testing.T) {
	r := newRing(t, ringwake.Config{Entries: 16})
	ss := make([]sqe.SQE, 150)
	res := make([]int32, len(ss))
	for i := range ss {
		ss[i].PrepNop()
		res[i] = 1
	}
	if err := r.SubmitAndWait(context.Background(), ss, res); err != nil {
		t.Fatal(err)
	}
	for i, v := range res {
		if v != 0 {
			t.Fatalf("res[%d] = %d", i, v)
		}
	}
	if err := r.SubmitAndWait(context.Background(), ss, res[:10]); err == nil {
		t.Fatal("a short res was accepted")
	}
}

// Do reads and writes at random offsets, more ops than one submission
// takes, on buffers of varied sizes; every byte is checked.
func TestDoReadsAndWrites(t *testing.T) {
	r := newRing(t, ringwake.Config{Entries: 32})
	const size = 1 << 20
	want := pattern(3, size)
	name := dataFile(t, want)
	f, err := os.OpenFile(name, os.O_RDWR, 0)
	if err != nil {
		t.Fatal(err)
	}
	defer f.Close()
	fd := int(f.Fd())
	rng := rand.New(rand.NewPCG(1, 2))
	ops := make([]ringwake.Op, 150)
	for i := range ops {
		n := 1 + rng.IntN(20000)
		ops[i] = ringwake.Op{Fd: fd, Buf: make([]byte, n), Off: rng.Int64N(size - int64(n))}
	}
	if err := r.Do(context.Background(), ops); err != nil {
		t.Fatal(err)
	}
	for i, op := range ops {
		if op.N != len(op.Buf) || op.Err != nil {
			t.Fatalf("op %d: N %d of %d, %v", i, op.N, len(op.Buf), op.Err)
		}
		equalBytes(t, fmt.Sprintf("op %d", i), op.Buf, want[op.Off:op.Off+int64(len(op.Buf))])
	}
	// Overwrite disjoint blocks with new content, then read them back.
	for i := range ops {
		ops[i] = ringwake.Op{Fd: fd, Write: true, Buf: pattern(uint32(100+i), 4096), Off: int64(i) * 4096}
	}
	if err := r.Do(context.Background(), ops); err != nil {
		t.Fatal(err)
	}
	for i := range ops {
		if ops[i].N != 4096 {
			t.Fatalf("write %d: N %d", i, ops[i].N)
		}
		ops[i] = ringwake.Op{Fd: fd, Buf: make([]byte, 4096), Off: int64(i) * 4096}
	}
	if err := r.Do(context.Background(), ops); err != nil {
		t.Fatal(err)
	}
	for i := range ops {
		equalBytes(t, fmt.Sprintf("read-back %d", i), ops[i].Buf, pattern(uint32(100+i), 4096))
	}
}

// A read at or past the end of the file sets N and io.EOF, as
// File.ReadAt does; a read that fills its buffer exactly at the end is nil.
func TestDoEOF(t *testing.T) {
	r := newRing(t, ringwake.Config{})
	want := pattern(9, 10000)
	fd := openRead(t, dataFile(t, want))
	ops := []ringwake.Op{
		{Fd: fd, Buf: make([]byte, 4000), Off: 8000}, // straddles the end
		{Fd: fd, Buf: make([]byte, 100), Off: 20000}, // past it
		{Fd: fd, Buf: make([]byte, 2000), Off: 8000}, // ends exactly there
		{Fd: fd, Buf: make([]byte, 1000), Off: 0},    // well inside
		{Fd: fd, Buf: make([]byte, 0), Off: 50},      // empty
	}
	err := r.Do(context.Background(), ops)
	var be *ringwake.BatchError
	if !errors.As(err, &be) || be.Failed != 2 || be.Total != 5 || !errors.Is(err, io.EOF) {
		t.Fatalf("err = %v, want a BatchError of 2 failures wrapping io.EOF", err)
	}
	wantN := []int{2000, 0, 2000, 1000, 0}
	wantErr := []error{io.EOF, io.EOF, nil, nil, nil}
	for i, op := range ops {
		if op.N != wantN[i] || op.Err != wantErr[i] {
			t.Errorf("op %d: N %d, %v; want %d, %v", i, op.N, op.Err, wantN[i], wantErr[i])
		}
	}
	equalBytes(t, "straddling read", ops[0].Buf[:2000], want[8000:])
}

// A read that comes back short (a pipe holding part of it) goes on from
// where it stopped.
func TestDoShortReadContinues(t *testing.T) {
	r := newRing(t, ringwake.Config{})
	rd, wr := rawPipe(t)
	want := pattern(5, 3000)
	go func() {
		unix.Write(wr, want[:1000])
		time.Sleep(20 * time.Millisecond)
		unix.Write(wr, want[1000:])
	}()
	ops := []ringwake.Op{{Fd: rd, Buf: make([]byte, 3000)}}
	if err := r.Do(context.Background(), ops); err != nil {
		t.Fatal(err)
	}
	if ops[0].N != 3000 {
		t.Fatalf("N = %d", ops[0].N)
	}
	equalBytes(t, "pipe read", ops[0].Buf, want)
}

// Bad ops get their own error and never reach the kernel; the rest run.
func TestDoBadInput(t *testing.T) {
	r := newRing(t, ringwake.Config{})
	fd := openRead(t, dataFile(t, pattern(1, 8192)))
	before := r.Stats().Submitted
	ops := []ringwake.Op{
		{Fd: -1, Buf: make([]byte, 10)},
		{Fd: fd, Buf: make([]byte, 10), Off: -5},
		{Fd: fd, Write: true, Buf: nil},
		{Fd: fd, Buf: make([]byte, 10), Off: 10},
	}
	err := r.Do(context.Background(), ops)
	var be *ringwake.BatchError
	if !errors.As(err, &be) || be.Failed != 3 || !errors.Is(err, syscall.EBADF) {
		t.Fatalf("err = %v, want 3 failures, the first EBADF", err)
	}
	for i, want := range []error{syscall.EBADF, syscall.EINVAL, syscall.EINVAL} {
		var oe *ringwake.OpError
		if !errors.As(ops[i].Err, &oe) || !errors.Is(ops[i].Err, want) {
			t.Errorf("op %d: %v, want an OpError wrapping %v", i, ops[i].Err, want)
		}
	}
	if ops[3].Err != nil || ops[3].N != 10 {
		t.Fatalf("the good op: N %d, %v", ops[3].N, ops[3].Err)
	}
	if got := r.Stats().Submitted - before; got != 1 {
		t.Fatalf("%d requests reached the ring, want only the good one", got)
	}
	// A kernel error names the op and wraps the errno.
	ops = []ringwake.Op{{Fd: fd, Write: true, Buf: []byte("x")}}
	if err := r.Do(context.Background(), ops); !errors.Is(err, syscall.EBADF) {
		t.Fatalf("write to a read-only fd: %v, want EBADF", err)
	}
}

// ctx ends every op in flight with ctx.Err(), once the kernel let go.
func TestDoCancel(t *testing.T) {
	r := newRing(t, ringwake.Config{})
	rd, _ := rawPipe(t)
	ops := make([]ringwake.Op, 4)
	for i := range ops {
		ops[i] = ringwake.Op{Fd: rd, Buf: make([]byte, 64)}
	}
	ctx, cancel := context.WithTimeout(context.Background(), 30*time.Millisecond)
	defer cancel()
	err := r.Do(ctx, ops)
	if !errors.Is(err, context.DeadlineExceeded) {
		t.Fatalf("err = %v", err)
	}
	for i, op := range ops {
		if !errors.Is(op.Err, context.DeadlineExceeded) {
			t.Errorf("op %d: %v", i, op.Err)
		}
	}
	if s := r.Stats(); s.Submitted-s.Completed > 16 { // internal cancels complete uncounted
		t.Fatalf("stats after cancel: %+v", s)
	}
}

// Close ends a waiting Do with ErrClosed on every op in flight.
func TestDoClose(t *testing.T) {
	uringtest.Require(t)
	r, err := ringwake.New(ringwake.Config{})
	if err != nil {
		t.Fatal(err)
	}
	rd, _ := rawPipe(t)
	ops := []ringwake.Op{{Fd: rd, Buf: make([]byte, 8)}, {Fd: rd, Buf: make([]byte, 8)}}
	errc := make(chan error, 1)
	go func() { errc <- r.Do(context.Background(), ops) }()
	waitFor(t, "the batch in flight", func() bool { s := r.Stats(); return s.Submitted >= 2 })
	time.Sleep(5 * time.Millisecond)
	if err := r.Close(); err != nil {
		t.Fatal(err)
	}
	within(t, "Do after Close", func() {
		if err := <-errc; !errors.Is(err, ringwake.ErrClosed) {
			t.Errorf("Do: %v, want ErrClosed", err)
		}
	})
}

// File.ReadAtMany reads through the File's descriptor, refuses writes and a
// closed file, and reports errors as File.ReadAt does.
func TestFileReadAtMany(t *testing.T) {
	r := newRing(t, ringwake.Config{})
	want := pattern(11, 64<<10)
	f, err := r.Open(dataFile(t, want), os.O_RDWR, 0)
	if err != nil {
		t.Fatal(err)
	}
	ops := make([]ringwake.Op, 70)
	for i := range ops {
		ops[i] = ringwake.Op{Fd: 12345, Buf: make([]byte, 512), Off: int64(i) * 900}
	}
	if err := f.ReadAtMany(context.Background(), ops); err != nil {
		t.Fatal(err)
	}
	for i, op := range ops {
		equalBytes(t, fmt.Sprintf("op %d", i), op.Buf, want[op.Off:op.Off+512])
	}
	wops := []ringwake.Op{{Write: true, Buf: []byte("abc"), Off: 3}}
	if err := f.WriteAtMany(context.Background(), wops); err != nil || wops[0].N != 3 {
		t.Fatalf("WriteAtMany: %v, N %d", err, wops[0].N)
	}
	mixed := []ringwake.Op{{Write: true, Buf: []byte("x")}}
	if err := f.ReadAtMany(context.Background(), mixed); err == nil {
		t.Fatal("ReadAtMany took a write")
	}
	var pe *os.PathError
	if !errors.As(mixed[0].Err, &pe) {
		t.Fatalf("op error %T %v, want *os.PathError", mixed[0].Err, mixed[0].Err)
	}
	f.Close()
	if err := f.ReadAtMany(context.Background(), ops); !errors.Is(err, os.ErrClosed) {
		t.Fatalf("after Close: %v, want os.ErrClosed", err)
	}
}

// Do makes no allocation per batch on its hot path.
func TestDoAllocs(t *testing.T) {
	r := newRing(t, ringwake.Config{Entries: 64})
	fd := openRead(t, dataFile(t, pattern(2, 1<<20)))
	ops := make([]ringwake.Op, 32)
	for i := range ops {
		ops[i] = ringwake.Op{Fd: fd, Buf: make([]byte, 4096), Off: int64(i) * 4096}
	}
	ctx := context.Background()
	ss := make([]sqe.SQE, 32)
	res := make([]int32, 32)
	for i := range ss {
		ss[i].PrepNop()
	}
	if a := testing.AllocsPerRun(200, func() {
		if err := r.Do(ctx, ops); err != nil {
			t.Fatal(err)
		}
	}); a != 0 {
		t.Errorf("Do: %.1f allocations per batch, want 0", a)
	}
	if a := testing.AllocsPerRun(200, func() {
		if err := r.SubmitAndWait(ctx, ss, res); err != nil {
			t.Fatal(err)
		}
	}); a != 0 {
		t.Errorf("SubmitAndWait: %.1f allocations per batch, want 0", a)
	}
}

// doDeep runs a Do whose buffers are arrays of a frame at the bottom of a
// recursion, so the stack grows around the batch, and checks every byte.
//
//go:noinline
func doDeep(r *ringwake.Ring, fd int, want []byte, off int64, depth int) error {
	var pad [256]byte
	pad[depth%len(pad)] = byte(depth)
	if depth > 0 {
		err := doDeep(r, fd, want, off, depth-1)
		if pad[depth%len(pad)] != byte(depth) {
			return fmt.Errorf("frame %d corrupted", depth)
		}
		return err
	}
	var a, b, c [4096]byte
	ops := [3]ringwake.Op{
		{Fd: fd, Buf: a[:], Off: off},
		{Fd: fd, Buf: b[:], Off: off + 4096},
		{Fd: fd, Buf: c[:], Off: off + 8192},
	}
	if err := r.Do(context.Background(), ops[:]); err != nil {
		return err
	}
	for i, got := range [][]byte{a[:], b[:], c[:]} {
		w := want[off+int64(i)*4096 : off+int64(i+1)*4096]
		if string(got) != string(w) {
			return fmt.Errorf("op %d at %d: wrong bytes", i, off)
		}
	}
	return nil
}

// Batches from stack arrays while the GC runs and stacks grow and shrink:
// the buffers stay put until the kernel is done with them.
func TestDoStackBuffersUnderGC(t *testing.T) {
	r := newRing(t, ringwake.Config{Entries: 16})
	const size = 1 << 20
	want := pattern(21, size)
	f, err := os.Open(dataFile(t, want))
	if err != nil {
		t.Fatal(err)
	}
	defer f.Close()
	// Evict it (clean pages only go), so reads wait for the device while
	// the GC runs.
	if err := unix.Fsync(int(f.Fd())); err != nil {
		t.Fatal(err)
	}
	unix.Fadvise(int(f.Fd()), 0, 0, unix.FADV_DONTNEED)
	stop := gcStorm(t, func(int) { debug.FreeOSMemory() })
	var wg sync.WaitGroup
	errc := make(chan error, 8)
	for w := range 6 {
		wg.Add(1)
		go func() {
			defer wg.Done()
			for i := range 30 {
				off := int64((w*31+i*7)%200) * 4096
				if err := doDeep(r, int(f.Fd()), want, off, 10+i%40); err != nil {
					errc <- err
					return
				}
			}
		}()
	}
	wg.Wait()
	stop()
	close(errc)
	for err := range errc {
		t.Error(err)
	}
}

// The compiler must see Do's ops (and so their buffers) as leaking, so that
// a caller's stack arrays go to the heap, where they never move.
func TestDoOpsLeakToHeap(t *testing.T) {
	out, err := exec.Command(filepath.Join(runtime.GOROOT(), "bin", "go"), "build", "-gcflags=-m", ".").CombinedOutput()
	if err != nil {
		if uringtest.InCI() {
			t.Fatalf("go build -gcflags=-m: %v\n%s", err, out)
		}
		t.Skipf("no go tool: %v", err)
	}
	for _, fn := range []string{`func \(r \*Ring\) Do\(`, `func \(f \*File\) ReadAtMany\(`, `func \(f \*File\) WriteAtMany\(`} {
		src, err := os.ReadFile("batch.go")
		if err != nil {
			t.Fatal(err)
		}
		loc := regexp.MustCompile(`(?m)^` + fn).FindIndex(src)
		if loc == nil {
			t.Fatalf("%s not found in batch.go", fn)
		}
		line := 1 + countLines(src[:loc[0]])
		re := regexp.MustCompile(fmt.Sprintf(`(?m)batch\.go:%d:\d+: leaking param content: ops$`, line))
		if !re.Match(out) {
			t.Errorf("batch.go:%d (%s): ops is not reported as leaking", line, fn)
		}
	}
}

func countLines(b []byte) int {
	n := 0
	for _, c := range b {
		if c == '\n' {
			n++
		}
	}
	return n
}
