package runtime_test

import (
	"bytes"
	"context"
	"errors"
	"fmt"
	"os"
	"path/filepath"
	"sync"
	"syscall"
	"testing"
	"time"
	"unsafe"

	"golang.org/x/sys/unix"

	ringwake "github.com/ringwake/ringwake/runtime"
	"github.com/ringwake/ringwake/sqe"
)

func TestReadAtTimeoutExpiresInKernel(t *testing.T) {
	r := newRing(t, ringwake.Config{Entries: 8})
	rd, wr := rawPipe(t)
	buf := make([]byte, 16)
	n, err := r.ReadAtTimeout(context.Background(), rd, buf, 0, 20*time.Millisecond)
	if !errors.Is(err, ringwake.ErrTimeout) || !errors.Is(err, os.ErrDeadlineExceeded) || n != 0 {
		t.Fatalf("ReadAtTimeout on an empty pipe = %d, %v; want ErrTimeout", n, err)
	}
	// The canceled read must not have consumed what comes next.
	if _, err := unix.Write(wr, []byte("x")); err != nil {
		t.Fatal(err)
	}
	n, err = r.ReadAtTimeout(context.Background(), rd, buf, 0, 10*time.Second)
	if err != nil || n != 1 || buf[0] != 'x' {
		t.Fatalf("ReadAtTimeout after data = %d, %v, %q", n, err, buf[:n])
	}
	if st := r.Stats(); st.Stale != 0 {
		t.Fatalf("stale completions: %d", st.Stale)
	}
}

func TestWriteAtTimeoutCompletes(t *testing.T) {
	r := newRing(t, ringwake.Config{Entries: 8})
	f, err := os.Create(filepath.Join(t.TempDir(), "w"))
	if err != nil {
		t.Fatal(err)
	}
	defer f.Close()
	n, err := r.WriteAtTimeout(context.Background(), int(f.Fd()), []byte("hello"), 3, time.Minute)
	if err != nil || n != 5 {
		t.Fatalf("WriteAtTimeout = %d, %v", n, err)
	}
	got, _ := os.ReadFile(f.Name())
	if !bytes.Equal(got, []byte("\x00\x00\x00hello")) {
		t.Fatalf("file holds %q", got)
	}
}

func TestVectoredRoundTrip(t *testing.T) {
	r := newRing(t, ringwake.Config{Entries: 8})
	f, err := r.Open(filepath.Join(t.TempDir(), "v"), os.O_RDWR|os.O_CREATE, 0o600)
	if err != nil {
		t.Fatal(err)
	}
	defer f.Close()
	parts := [][]byte{pattern(1, 3), nil, pattern(2, 4096), pattern(3, 1), pattern(4, 70000)}
	want := bytes.Join(parts, nil)
	n, err := f.WritevAt(context.Background(), parts, 100)
	if err != nil || n != len(want) {
		t.Fatalf("WritevAt = %d, %v", n, err)
	}
	out := [][]byte{make([]byte, 10), make([]byte, 0), make([]byte, len(want)-10)}
	n, err = f.ReadvAt(context.Background(), out, 100)
	if err != nil || n != len(want) {
		t.Fatalf("ReadvAt = %d, %v", n, err)
	}
	equalBytes(t, "readv", bytes.Join(out, nil), want)
	// Past the end: io.EOF with what was there.
	tail := [][]byte{make([]byte, 8), make([]byte, 8)}
	n, err = f.ReadvAt(context.Background(), tail, int64(100+len(want)-5))
	if n != 5 || err == nil {
		t.Fatalf("ReadvAt across the end = %d, %v; want 5, io.EOF", n, err)
	}
	if _, err := r.ReadvAt(context.Background(), int(f.Fd()), out, -1); !errors.Is(err, syscall.EINVAL) {
		t.Fatalf("ReadvAt negative offset: %v", err)
	}
}

func TestMetadataOps(t *testing.T) {
	r := newRing(t, ringwake.Config{Entries: 8})
	ctx := context.Background()
	dir := t.TempDir()
	name := filepath.Join(dir, "m")
	fd, err := r.Openat(ctx, unix.AT_FDCWD, name, os.O_RDWR|os.O_CREATE|os.O_EXCL, 0o640)
	if err != nil {
		t.Fatalf("Openat: %v", err)
	}
	if _, err := r.Openat(ctx, unix.AT_FDCWD, name, os.O_RDWR|os.O_CREATE|os.O_EXCL, 0o640); !errors.Is(err, os.ErrExist) {
		t.Fatalf("second O_EXCL Openat: %v", err)
	}
	if err := r.Fallocate(ctx, fd, 0, 0, 1<<20); err != nil {
		t.Fatalf("Fallocate: %v", err)
	}
	if err := r.Fallocate(ctx, fd, 0, -1, 10); !errors.Is(err, syscall.EINVAL) {
		t.Fatalf("Fallocate negative offset: %v", err)
	}
	st, err := r.Statx(ctx, unix.AT_FDCWD, name, 0, unix.STATX_SIZE|unix.STATX_MODE)
	if err != nil {
		t.Fatalf("Statx: %v", err)
	}
	if st.Size != 1<<20 || st.Mode&0o777 != 0o640 {
		t.Fatalf("Statx size %d mode %o; want %d, 640", st.Size, st.Mode&0o777, 1<<20)
	}
	if _, err := r.Statx(ctx, unix.AT_FDCWD, filepath.Join(dir, "missing"), 0, unix.STATX_SIZE); !errors.Is(err, os.ErrNotExist) {
		t.Fatalf("Statx of a missing file: %v", err)
	}
	if _, err := r.WriteAt(ctx, fd, pattern(9, 8192), 0); err != nil {
		t.Fatal(err)
	}
	if err := r.SyncFileRange(ctx, fd, 0, 8192, unix.SYNC_FILE_RANGE_WRITE|unix.SYNC_FILE_RANGE_WAIT_AFTER); err != nil {
		t.Fatalf("SyncFileRange: %v", err)
	}
	if err := r.Fadvise(ctx, fd, 0, 8192, unix.FADV_DONTNEED); err != nil {
		t.Fatalf("Fadvise: %v", err)
	}
	if err := r.CloseFd(ctx, fd); err != nil {
		t.Fatalf("CloseFd: %v", err)
	}
	if err := r.CloseFd(ctx, fd); !errors.Is(err, syscall.EBADF) {
		t.Fatalf("second CloseFd: %v", err)
	}
	f, err := r.Open(name, os.O_RDWR, 0)
	if err != nil {
		t.Fatal(err)
	}
	defer f.Close()
	if err := f.Fallocate(0, 0, 2<<20); err != nil {
		t.Fatalf("File.Fallocate: %v", err)
	}
	if fi, err := f.Stat(); err != nil || fi.Size() != 2<<20 {
		t.Fatalf("Stat after Fallocate: %v, %v", fi, err)
	}
}

func TestFixedBuffers(t *testing.T) {
	r := newRing(t, ringwake.Config{Entries: 8})
	ctx := context.Background()
	fb, err := r.RegisterBuffers(4, 8192)
	if err != nil {
		t.Fatalf("RegisterBuffers: %v", err)
	}
	defer fb.Unregister()
	if _, err := r.RegisterBuffers(0, 10); !errors.Is(err, syscall.EINVAL) {
		t.Fatalf("RegisterBuffers(0): %v", err)
	}
	f, err := os.Create(filepath.Join(t.TempDir(), "fixed"))
	if err != nil {
		t.Fatal(err)
	}
	defer f.Close()
	fd := int(f.Fd())
	i, buf, err := fb.Get(ctx)
	if err != nil {
		t.Fatal(err)
	}
	if uintptrOf(buf)%4096 != 0 {
		t.Fatalf("registered buffer not 4096-aligned")
	}
	fillPattern(buf, 7)
	want := append([]byte(nil), buf...)
	if n, err := fb.WriteAt(ctx, fd, i, buf, 4096); err != nil || n != len(buf) {
		t.Fatalf("WriteFixed = %d, %v", n, err)
	}
	clear(buf)
	if n, err := fb.ReadAt(ctx, fd, i, buf[:4096], 4096+4096); err != nil || n != 4096 {
		t.Fatalf("ReadFixed = %d, %v", n, err)
	}
	equalBytes(t, "read_fixed", buf[:4096], want[4096:])
	// A buffer that is not the registered one is refused before the kernel.
	other := make([]byte, 4096)
	if _, err := fb.ReadAt(ctx, fd, i, other, 0); !errors.Is(err, syscall.EFAULT) {
		t.Fatalf("ReadFixed outside the buffer: %v", err)
	}
	fb.Put(i)
	if fb.Len() != 4 {
		t.Fatalf("Len = %d", fb.Len())
	}
}

func TestAlignedBuffer(t *testing.T) {
	for _, align := range []int{512, 4096, 65536} {
		b := ringwake.AlignedBuffer(10000, align)
		if len(b) != 10000 || cap(b) != 10000 || uintptrOf(b)%uintptr(align) != 0 {
			t.Fatalf("AlignedBuffer(10000, %d): len %d cap %d addr %#x", align, len(b), cap(b), uintptrOf(b))
		}
	}
	if ringwake.AlignedBuffer(10, 3) != nil || ringwake.AlignedBuffer(0, 4096) != nil {
		t.Fatal("AlignedBuffer accepted a bad size or alignment")
	}
}

func TestFixedFiles(t *testing.T) {
	r := newRing(t, ringwake.Config{Entries: 8})
	ctx := context.Background()
	name := dataFile(t, pattern(5, 10000))
	fd := openRead(t, name)
	ff, err := r.RegisterFile(fd)
	if err != nil {
		t.Fatalf("RegisterFile: %v", err)
	}
	buf := make([]byte, 5000)
	n, err := ff.ReadAt(ctx, buf, 5000)
	if err != nil || n != 5000 {
		t.Fatalf("fixed ReadAt = %d, %v", n, err)
	}
	equalBytes(t, "fixed file read", buf, pattern(5, 10000)[5000:])
	ff2, err := r.RegisterFile(fd)
	if err != nil || ff2.Index() == ff.Index() {
		t.Fatalf("second RegisterFile: %v, index %d vs %d", err, ff2.Index(), ff.Index())
	}
	if _, err := ff2.WriteAt(ctx, []byte("x"), 0); !errors.Is(err, syscall.EBADF) {
		t.Fatalf("write through a read-only fixed file: %v", err)
	}
	w, err := os.Create(filepath.Join(t.TempDir(), "fixed-sync"))
	if err != nil {
		t.Fatal(err)
	}
	defer w.Close()
	wf, err := r.RegisterFile(int(w.Fd()))
	if err != nil {
		t.Fatal(err)
	}
	if n, err := wf.WriteAt(ctx, []byte("durable"), 0); err != nil || n != 7 {
		t.Fatalf("fixed WriteAt = %d, %v", n, err)
	}
	if err := wf.Fsync(ctx, true); err != nil {
		t.Fatalf("fixed Fsync: %v", err)
	}
	if err := wf.Unregister(); err != nil {
		t.Fatal(err)
	}
	if err := ff.Unregister(); err != nil {
		t.Fatal(err)
	}
	if err := ff.Unregister(); err == nil {
		t.Fatal("double Unregister succeeded")
	}
	if err := ff2.Unregister(); err != nil {
		t.Fatal(err)
	}
	if _, err := r.RegisterFile(-1); !errors.Is(err, syscall.EBADF) {
		t.Fatalf("RegisterFile(-1): %v", err)
	}
}

func TestSubmitBatchLinkedWriteFsync(t *testing.T) {
	r := newRing(t, ringwake.Config{Entries: 8})
	f, err := os.Create(filepath.Join(t.TempDir(), "chain"))
	if err != nil {
		t.Fatal(err)
	}
	defer f.Close()
	data := pattern(11, 4096)
	ss := writeSyncChain(int(f.Fd()), data)

	var mu sync.Mutex
	var order []int
	var res [2]int32
	var wg sync.WaitGroup
	wg.Add(2)
	cb := func(i int) func(int32, uint32) {
		return func(r int32, _ uint32) {
			mu.Lock()
			order = append(order, i)
			res[i] = r
			mu.Unlock()
			wg.Done()
		}
	}
	if err := r.SubmitBatch(ss, []func(int32, uint32){cb(0), cb(1)}); err != nil {
		t.Fatal(err)
	}
	wg.Wait()
	if res[0] != 4096 || res[1] != 0 || order[0] != 0 {
		t.Fatalf("linked write→fsync: results %v, order %v", res, order)
	}
	got, _ := os.ReadFile(f.Name())
	equalBytes(t, "chained write", got, data)

	// A failed head breaks the link: the fsync is canceled, reported per request.
	ss[0].PrepWrite(-1, data, 0)
	ss[0].Flags |= sqe.IOLink
	wg.Add(2)
	if err := r.SubmitBatch(ss, []func(int32, uint32){cb(0), cb(1)}); err != nil {
		t.Fatal(err)
	}
	wg.Wait()
	if res[0] != -int32(syscall.EBADF) || res[1] != -int32(syscall.ECANCELED) {
		t.Fatalf("broken link: results %v; want -EBADF, -ECANCELED", res)
	}
}

func TestSubmitBatchRefusesBadInput(t *testing.T) {
	r := newRing(t, ringwake.Config{Entries: 4})
	noop := func(int32, uint32) {}
	ss := make([]sqe.SQE, 2)
	ss[0].PrepNop()
	ss[1].PrepNop()
	if err := r.SubmitBatch(ss, []func(int32, uint32){noop}); err == nil {
		t.Fatal("mismatched callbacks accepted")
	}
	if err := r.SubmitBatch(ss, []func(int32, uint32){noop, nil}); err == nil {
		t.Fatal("nil callback accepted")
	}
	ss[1].Flags |= sqe.IOLink
	if err := r.SubmitBatch(ss, []func(int32, uint32){noop, noop}); err == nil {
		t.Fatal("dangling link accepted")
	}
	big := make([]sqe.SQE, 5)
	for i := range big {
		big[i].PrepNop()
	}
	if err := r.SubmitBatch(big, make([]func(int32, uint32), 5)); err == nil {
		t.Fatal("a batch larger than the ring accepted")
	}
	if err := r.SubmitBatch(nil, nil); err != nil {
		t.Fatalf("empty batch: %v", err)
	}
}

// TestSubmitBatchUnderBackpressure runs batches and single submitters on a
// ring too small for all of them: none may deadlock, every callback fires once.
func TestSubmitBatchUnderBackpressure(t *testing.T) {
	r := newRing(t, ringwake.Config{Entries: 8})
	var fired sync.WaitGroup
	var wg sync.WaitGroup
	count := func(int32, uint32) { fired.Done() }
	for g := 0; g < 16; g++ {
		wg.Add(1)
		go func(g int) {
			defer wg.Done()
			for i := 0; i < 50; i++ {
				k := 1 + (g+i)%8
				ss := make([]sqe.SQE, k)
				dones := make([]func(int32, uint32), k)
				for j := range ss {
					ss[j].PrepNop()
					dones[j] = count
				}
				fired.Add(k)
				if err := r.SubmitBatch(ss, dones); err != nil {
					t.Error(err)
					fired.Add(-k)
					return
				}
			}
		}(g)
	}
	wg.Wait()
	within(t, "every batch callback", fired.Wait)
}

// TestSQPollStress keeps a small SQPOLL ring full from many goroutines,
// blocking calls and callbacks at once. The SQ thread moves the SQ head only
// after a whole batch, so completions often come back before their entries
// are free again: every request must still complete once, with its data.
func TestSQPollStress(t *testing.T) {
	const goroutines, ops, block = 32, 60, 4096
	r := newRing(t, ringwake.Config{Entries: 8, SQPoll: true, SQThreadIdle: time.Millisecond})
	data := pattern(23, 1<<18)
	fd := openRead(t, dataFile(t, data))
	var wg sync.WaitGroup
	for g := range goroutines {
		wg.Add(1)
		go func() {
			defer wg.Done()
			buf := make([]byte, block)
			for i := range ops {
				off := int64((g*ops+i)%(len(data)/block)) * block
				if g%2 == 0 {
					if n, err := r.ReadAt(context.Background(), fd, buf, off); err != nil || n != block {
						t.Errorf("goroutine %d read %d = %d, %v", g, i, n, err)
						return
					}
				} else {
					var s sqe.SQE
					s.PrepRead(int32(fd), buf, uint64(off))
					got := make(chan int32, 1)
					if err := r.Submit(&s, func(res int32, _ uint32) { got <- res }); err != nil {
						t.Errorf("goroutine %d submit %d: %v", g, i, err)
						return
					}
					if res := <-got; res != block {
						t.Errorf("goroutine %d callback read %d = %d", g, i, res)
						return
					}
				}
				if !bytes.Equal(buf, data[off:off+block]) {
					t.Errorf("goroutine %d read %d: wrong bytes", g, i)
					return
				}
			}
		}()
	}
	within(t, "reads through a full SQPOLL ring", wg.Wait)
}

func uintptrOf(b []byte) uintptr { return uintptr(unsafe.Pointer(unsafe.SliceData(b))) }

// TestSQPoll runs blocking and callback I/O through a ring whose SQ is
// polled by a kernel thread, across its idle sleep (NEED_WAKEUP).
func TestSQPoll(t *testing.T) {
	r := newRing(t, ringwake.Config{Entries: 16, SQPoll: true, SQThreadIdle: 5 * time.Millisecond})
	ctx := context.Background()
	name := dataFile(t, pattern(21, 1<<17))
	fd := openRead(t, name)
	buf := make([]byte, 4096)
	for i := 0; i < 20; i++ {
		if i%5 == 0 {
			time.Sleep(20 * time.Millisecond) // let the SQ thread go idle and need a wake-up
		}
		n, err := r.ReadAt(ctx, fd, buf, int64(i*4096))
		if err != nil || n != 4096 {
			t.Fatalf("SQPOLL ReadAt %d = %d, %v", i, n, err)
		}
		equalBytes(t, "sqpoll read", buf, pattern(21, 1<<17)[i*4096:(i+1)*4096])
	}
	var wg sync.WaitGroup
	for i := 0; i < 64; i++ {
		wg.Add(1)
		var s sqe.SQE
		s.PrepNop()
		if err := r.Submit(&s, func(res int32, _ uint32) {
			if res != 0 {
				t.Errorf("nop res %d", res)
			}
			wg.Done()
		}); err != nil {
			t.Fatal(err)
		}
	}
	within(t, "SQPOLL callbacks", wg.Wait)
}

// With one read per io_uring_enter, the poller must still send each read and
// its LINK_TIMEOUT down together: a timeout split from its read would start
// a chain of its own (and fail), and the read on an empty pipe would never
// end. 24 goroutines at once, so that the SQ holds many pairs per submit.
func TestReadAtTimeoutPairsSurviveChunking(t *testing.T) {
	r := newRing(t, ringwake.Config{Entries: 64, IOPerEnter: 1})
	var wg sync.WaitGroup
	errs := make(chan error, 24)
	for g := 0; g < 24; g++ {
		rd, _ := rawPipe(t)
		wg.Add(1)
		go func() {
			defer wg.Done()
			for i := 0; i < 5; i++ {
				n, err := r.ReadAtTimeout(context.Background(), rd, make([]byte, 8), 0, 5*time.Millisecond)
				if !errors.Is(err, ringwake.ErrTimeout) || n != 0 {
					errs <- fmt.Errorf("ReadAtTimeout on an empty pipe = %d, %v; want ErrTimeout", n, err)
					return
				}
			}
		}()
	}
	within(t, "every linked timeout to fire", wg.Wait)
	close(errs)
	for err := range errs {
		t.Error(err)
	}
}
