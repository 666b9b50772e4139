package runtime_test

import (
	"bytes"
	"context"
	"errors"
	"fmt"
	"io"
	"os"
	"path/filepath"
	"sync"
	"sync/atomic"
	"testing"
	"time"

	"go.uber.org/goleak"

	ringwake "github.com/ringwake/ringwake/runtime"
	"github.com/ringwake/ringwake/sqe"
)

// FuzzOps decodes a sequence of runtime operations from the input and runs
// it on one small ring from 2 or 3 goroutines: open, read, write, pread,
// pwrite, seek, sync, context cancellation and close of their own files, and
// open/close/pread/pwrite of a file they share, so one goroutine's Close
// races another's I/O. A shadow model says what every read must return.
// Invariants: no panic; no error but a context's on a canceled call and
// ErrClosed on the shared file another goroutine closed; data as the model
// says, a canceled write having happened wholly or not at all; the files as
// the model says at the end; Close returns; no goroutine is left.
//
// Input: byte 0 picks the ring size (1, 2, 4 or 8 entries), byte 1 the
// goroutine count, then 3 bytes per operation (op, a, b), dealt to the
// goroutines in turn.
func FuzzOps(f *testing.F) {
	f.Fuzz(func(t *testing.T, data []byte) {
		if len(data) < 2 {
			return
		}
		leaks := goleak.IgnoreCurrent()
		fz := newFuzzRun(t, data)
		fz.run()
		goleak.VerifyNone(t, leaks)
	})
}

const (
	fuzzFileSize   = 16 << 10 // private files are created this size and never grow
	fuzzRegion     = 8 << 10  // each goroutine's part of the shared file
	fuzzMaxOps     = 120
	fuzzMaxWorkers = 3
)

// Operations; the op byte is taken modulo fuzzNumOps.
const (
	fzOpen = iota
	fzClose
	fzReadAt
	fzWriteAt
	fzRead
	fzWrite
	fzSeek
	fzSync
	fzCancelReadAt
	fzCancelWriteAt
	fzRingReadAt
	fzRingWriteAt
	fzSharedOpen
	fzSharedClose
	fzSharedReadAt
	fzSharedWriteAt
	fzSharedCancelWriteAt
	fzSubmitNop
	fzClosedUse
	fuzzNumOps
)

type fuzzRun struct {
	t       *testing.T
	r       *ringwake.Ring
	dir     string
	workers []*fuzzWorker

	sharedName string
	sharedMu   sync.Mutex
	shared     *ringwake.File // nil while closed

	accepted, fired atomic.Int64
}

// fuzzFile is a private file and its model: content and file position.
type fuzzFile struct {
	name   string
	f      *ringwake.File // nil while closed
	closed *ringwake.File // the last handle closed, for use-after-close
	shadow []byte
	pos    int64
	check  *os.File // reads behind the runtime's back, to settle a canceled write
}

type fuzzWorker struct {
	fz     *fuzzRun
	id     int
	ops    [][3]byte
	files  [2]fuzzFile
	region []byte   // model of the worker's region of the shared file
	check  *os.File // the shared file, read behind the runtime's back
}

func newFuzzRun(t *testing.T, data []byte) *fuzzRun {
	entries := uint32(1) << (data[0] % 4)
	n := 2 + int(data[1])%(fuzzMaxWorkers-1)
	r := relNewRing(t, ringwake.Config{Entries: entries})
	fz := &fuzzRun{t: t, r: r, dir: t.TempDir()}
	fz.sharedName = filepath.Join(fz.dir, "shared")
	if err := os.WriteFile(fz.sharedName, make([]byte, fuzzMaxWorkers*fuzzRegion), 0o644); err != nil {
		t.Fatal(err)
	}
	for i := range n {
		w := &fuzzWorker{fz: fz, id: i, region: make([]byte, fuzzRegion)}
		for k := range w.files {
			ff := &w.files[k]
			ff.name = filepath.Join(fz.dir, fmt.Sprintf("w%d-f%d", i, k))
			ff.shadow = make([]byte, fuzzFileSize)
			if err := os.WriteFile(ff.name, ff.shadow, 0o644); err != nil {
				t.Fatal(err)
			}
			ff.check = fuzzOpenCheck(t, ff.name)
		}
		w.check = fuzzOpenCheck(t, fz.sharedName)
		fz.workers = append(fz.workers, w)
	}
	ops := data[2:]
	for i := 0; i+3 <= len(ops) && i/3 < fuzzMaxOps; i += 3 {
		w := fz.workers[(i/3)%n]
		w.ops = append(w.ops, [3]byte{ops[i], ops[i+1], ops[i+2]})
	}
	return fz
}

func fuzzOpenCheck(t *testing.T, name string) *os.File {
	f, err := os.Open(name)
	if err != nil {
		t.Fatal(err)
	}
	t.Cleanup(func() { f.Close() })
	return f
}

func (fz *fuzzRun) run() {
	t := fz.t
	var wg sync.WaitGroup
	for _, w := range fz.workers {
		wg.Add(1)
		go func() {
			defer wg.Done()
			for i, op := range w.ops {
				if err := w.do(i, op); err != nil {
					t.Errorf("worker %d op %d %v: %v", w.id, i, op, err)
					return
				}
			}
		}()
	}
	fuzzWithin(t, "the workers", wg.Wait)
	if t.Failed() {
		return
	}
	// Everything open is closed, then the files must be as the model says.
	for _, w := range fz.workers {
		for k := range w.files {
			if ff := &w.files[k]; ff.f != nil {
				if err := ff.f.Close(); err != nil {
					t.Errorf("Close %s: %v", ff.name, err)
				}
				ff.f = nil
			}
		}
	}
	if fz.shared != nil {
		if err := fz.shared.Close(); err != nil {
			t.Errorf("Close shared: %v", err)
		}
	}
	shared, err := os.ReadFile(fz.sharedName)
	if err != nil {
		t.Fatal(err)
	}
	for _, w := range fz.workers {
		for k := range w.files {
			got, err := os.ReadFile(w.files[k].name)
			if err != nil {
				t.Fatal(err)
			}
			if !bytes.Equal(got, w.files[k].shadow) {
				t.Errorf("worker %d file %d differs from the model at byte %d", w.id, k, fuzzFirstDiff(got, w.files[k].shadow))
			}
		}
		got := shared[w.id*fuzzRegion : (w.id+1)*fuzzRegion]
		if !bytes.Equal(got, w.region) {
			t.Errorf("worker %d region of the shared file differs from the model at byte %d", w.id, fuzzFirstDiff(got, w.region))
		}
	}
	fuzzWithin(t, "Ring.Close", func() {
		if err := fz.r.Close(); err != nil {
			t.Errorf("Ring.Close: %v", err)
		}
	})
	if a, f := fz.accepted.Load(), fz.fired.Load(); a != f {
		t.Errorf("%d Submits accepted, %d callbacks fired", a, f)
	}
}

// fuzzWithin is within with a bound suited to one fuzz input.
func fuzzWithin(t *testing.T, what string, fn func()) {
	t.Helper()
	if _, ok := waitUpTo(fn, 30*time.Second); !ok {
		t.Fatalf("%s did not return", what)
	}
}

// span picks an offset and a length from the operation's argument bytes,
// within [0, size).
func span(a, b byte, size int) (int64, int) {
	off := int(a) * 61 % size
	n := 1 + int(b)*37%1500
	return int64(off), min(n, size-off)
}

// fuzzData is what a write puts: distinct per worker and operation.
func fuzzData(w, i, n int) []byte { return pattern(uint32(w<<16|i), n) }

func fuzzCtx(a byte) (context.Context, context.CancelFunc) {
	if a%2 == 0 {
		ctx, cancel := context.WithCancel(context.Background())
		cancel()
		return ctx, cancel
	}
	return context.WithTimeout(context.Background(), time.Duration(a%32)*time.Microsecond)
}

func isCanceled(ctx context.Context, err error) bool {
	return ctx.Err() != nil && errors.Is(err, ctx.Err())
}

func (w *fuzzWorker) do(i int, op [3]byte) error {
	fz := w.fz
	ff := &w.files[op[1]%2]
	code := int(op[0]) % fuzzNumOps
	// Private file operations need it open: closed, they are a use-after-close.
	if code <= fzRingWriteAt && code != fzOpen && code != fzClose && ff.f == nil {
		code = fzClosedUse
	}
	switch code {
	case fzOpen:
		if ff.f != nil {
			return nil
		}
		f, err := fz.r.Open(ff.name, os.O_RDWR, 0)
		if err != nil {
			return err
		}
		ff.f, ff.pos = f, 0
	case fzClose:
		if ff.f == nil {
			return nil
		}
		if err := ff.f.Close(); err != nil {
			return fmt.Errorf("Close: %w", err)
		}
		ff.closed, ff.f = ff.f, nil
	case fzClosedUse:
		if ff.closed == nil {
			return nil
		}
		if _, err := ff.closed.ReadAt(make([]byte, 8), 0); !errors.Is(err, os.ErrClosed) {
			return fmt.Errorf("ReadAt after Close: %v, want os.ErrClosed", err)
		}
		if _, err := ff.closed.Write([]byte("x")); !errors.Is(err, ringwake.ErrClosed) {
			return fmt.Errorf("Write after Close: %v, want ErrClosed", err)
		}
		if err := ff.closed.Close(); !errors.Is(err, ringwake.ErrClosed) {
			return fmt.Errorf("second Close: %v, want ErrClosed", err)
		}
	case fzReadAt, fzRingReadAt:
		off, n := span(op[2], op[1], fuzzFileSize)
		n = min(n+int(op[1])%64, fuzzFileSize) // sometimes past the end
		buf := make([]byte, n)
		var got int
		var err error
		if code == fzReadAt {
			got, err = ff.f.ReadAt(buf, off)
		} else {
			got, err = fz.r.ReadAt(context.Background(), int(ff.f.Fd()), buf, off)
		}
		want := min(n, fuzzFileSize-int(off))
		if code == fzReadAt && want < n {
			if err != io.EOF {
				return fmt.Errorf("ReadAt past the end: %v, want io.EOF", err)
			}
		} else if err != nil {
			return err
		}
		if got != want || !bytes.Equal(buf[:got], ff.shadow[off:int(off)+got]) {
			return fmt.Errorf("read %d bytes at %d (want %d), content as modelled: %v", got, off, want, bytes.Equal(buf[:got], ff.shadow[off:int(off)+got]))
		}
	case fzWriteAt, fzRingWriteAt:
		off, n := span(op[2], op[1], fuzzFileSize)
		p := fuzzData(w.id, i, n)
		var err error
		if code == fzWriteAt {
			_, err = ff.f.WriteAt(p, off)
		} else {
			err = writeFullAt(context.Background(), fz.r, int(ff.f.Fd()), p, off)
		}
		if err != nil {
			return err
		}
		copy(ff.shadow[off:], p)
	case fzRead:
		n := 1 + int(op[2])*29%3000
		buf := make([]byte, n)
		got, err := ff.f.Read(buf)
		want := min(n, fuzzFileSize-int(ff.pos))
		if want == 0 {
			if got != 0 || err != io.EOF {
				return fmt.Errorf("Read at the end = %d, %v; want 0, io.EOF", got, err)
			}
			return nil
		}
		// One read(2): short is allowed, wrong is not.
		if err != nil || got <= 0 || got > want || !bytes.Equal(buf[:got], ff.shadow[ff.pos:ff.pos+int64(got)]) {
			return fmt.Errorf("Read at %d = %d, %v; want up to %d bytes as modelled", ff.pos, got, err, want)
		}
		ff.pos += int64(got)
	case fzWrite:
		n := min(1+int(op[2])*29%3000, fuzzFileSize-int(ff.pos))
		if n == 0 {
			return nil
		}
		p := fuzzData(w.id, i, n)
		if got, err := ff.f.Write(p); err != nil || got != n {
			return fmt.Errorf("Write = %d, %v; want %d", got, err, n)
		}
		copy(ff.shadow[ff.pos:], p)
		ff.pos += int64(n)
	case fzSeek:
		target := int64(op[2]) * 67 % (fuzzFileSize + 1)
		var off int64
		whence := int(op[1]/2) % 3
		switch whence {
		case io.SeekStart:
			off = target
		case io.SeekCurrent:
			off = target - ff.pos
		case io.SeekEnd:
			off = target - fuzzFileSize
		}
		pos, err := ff.f.Seek(off, whence)
		if err != nil || pos != target {
			return fmt.Errorf("Seek(%d, %d) = %d, %v; want %d", off, whence, pos, err, target)
		}
		ff.pos = pos
	case fzSync:
		if op[2]%2 == 0 {
			return ff.f.Sync()
		}
		if f := fz.sharedHandle(); f != nil {
			if err := f.Sync(); err != nil && !errors.Is(err, ringwake.ErrClosed) {
				return fmt.Errorf("shared Sync: %w", err)
			}
		}
	case fzCancelReadAt:
		off, n := span(op[2], op[1], fuzzFileSize)
		buf := make([]byte, n)
		ctx, cancel := fuzzCtx(op[2])
		got, err := ff.f.ReadAtContext(ctx, buf, off)
		cancel()
		if err != nil && !isCanceled(ctx, err) {
			return err
		}
		if !bytes.Equal(buf[:got], ff.shadow[off:int(off)+got]) {
			return fmt.Errorf("canceled ReadAt returned %d bytes not as modelled", got)
		}
	case fzCancelWriteAt:
		off, n := span(op[2], op[1], fuzzFileSize)
		p := fuzzData(w.id, i, n)
		ctx, cancel := fuzzCtx(op[2])
		got, err := ff.f.WriteAtContext(ctx, p, off)
		cancel()
		if err != nil && !isCanceled(ctx, err) {
			return err
		}
		if err := settle(ff.check, int64(0), ff.shadow, off, p, got, err == nil); err != nil {
			return err
		}
	case fzSharedOpen:
		fz.sharedMu.Lock()
		defer fz.sharedMu.Unlock()
		if fz.shared != nil {
			return nil
		}
		f, err := fz.r.Open(fz.sharedName, os.O_RDWR, 0)
		if err != nil {
			return err
		}
		fz.shared = f
	case fzSharedClose:
		fz.sharedMu.Lock()
		f := fz.shared
		fz.shared = nil
		fz.sharedMu.Unlock()
		if f != nil {
			return f.Close()
		}
	case fzSharedReadAt:
		f := fz.sharedHandle()
		if f == nil {
			return nil
		}
		off, n := span(op[2], op[1], fuzzRegion)
		buf := make([]byte, n)
		got, err := f.ReadAt(buf, int64(w.id*fuzzRegion)+off)
		if err != nil && !errors.Is(err, ringwake.ErrClosed) {
			return err
		}
		if !bytes.Equal(buf[:got], w.region[off:int(off)+got]) {
			return fmt.Errorf("shared ReadAt returned %d bytes not as modelled", got)
		}
	case fzSharedWriteAt, fzSharedCancelWriteAt:
		f := fz.sharedHandle()
		if f == nil {
			return nil
		}
		off, n := span(op[2], op[1], fuzzRegion)
		p := fuzzData(w.id, i, n)
		ctx, cancel := context.Background(), context.CancelFunc(func() {})
		if code == fzSharedCancelWriteAt {
			ctx, cancel = fuzzCtx(op[2])
		}
		got, err := f.WriteAtContext(ctx, p, int64(w.id*fuzzRegion)+off)
		cancel()
		if err != nil && !isCanceled(ctx, err) && !errors.Is(err, ringwake.ErrClosed) {
			return err
		}
		// Another worker's Close cancels a write like a context does.
		if err := settle(w.check, int64(w.id*fuzzRegion), w.region, off, p, got, err == nil); err != nil {
			return err
		}
	case fzSubmitNop:
		var s sqe.SQE
		s.PrepNop()
		if err := fz.r.Submit(&s, func(res int32, _ uint32) {
			if res != 0 {
				fz.t.Errorf("NOP res %d", res)
			}
			fz.fired.Add(1)
		}); err != nil {
			return err
		}
		fz.accepted.Add(1)
	}
	return nil
}

func (fz *fuzzRun) sharedHandle() *ringwake.File {
	fz.sharedMu.Lock()
	defer fz.sharedMu.Unlock()
	return fz.shared
}

// settle updates model (the file's bytes from base) after a write of p at
// off that returned n and, unless ok, an error that leaves the rest open:
// the first n bytes were written, and the rest must be all old or all new,
// never a torn mix. It reads the file behind the runtime's back to tell.
func settle(check *os.File, base int64, model []byte, off int64, p []byte, n int, ok bool) error {
	copy(model[off:], p[:n])
	if ok || n == len(p) {
		if n != len(p) {
			return fmt.Errorf("write returned %d of %d bytes and no error", n, len(p))
		}
		return nil
	}
	rest := make([]byte, len(p)-n)
	if _, err := check.ReadAt(rest, base+off+int64(n)); err != nil {
		return fmt.Errorf("reading back a canceled write: %w", err)
	}
	old := model[int(off)+n : int(off)+len(p)]
	switch {
	case bytes.Equal(rest, p[n:]):
		copy(old, rest)
	case bytes.Equal(rest, old):
	default:
		return fmt.Errorf("a canceled write of %d bytes at %d left a mix of old and new bytes after the %d it reported", len(p), off, n)
	}
	return nil
}

func fuzzFirstDiff(a, b []byte) int {
	i := 0
	for i < len(a) && i < len(b) && a[i] == b[i] {
		i++
	}
	return i
}
