package sqe

import (
	"errors"
	"os"
	"path/filepath"
	"runtime"
	"sync/atomic"
	"testing"
	"unsafe"

	iosys "github.com/iceber/iouring-go/syscall"
	"github.com/ringwake/ringwake/internal/uringtest"
	"golang.org/x/sys/unix"
)

// testRing is the least ring that can carry one request at a time to the
// kernel, so these tests depend on nothing but the encoder under test.
type testRing struct {
	fd              int
	ring, sqeMem    []byte
	sqTail, sqMask  *uint32
	sqArray         unsafe.Pointer
	cqHead, cqTail  *uint32
	cqMask, cqesOff uint32
}

func newTestRing(t *testing.T) *testRing {
	t.Helper()
	uringtest.Require(t)
	var p iosys.IOURingParams
	fd, err := iosys.IOURingSetup(4, &p)
	if err != nil {
		t.Fatalf("io_uring_setup: %v", err)
	}
	r := &testRing{fd: fd}
	t.Cleanup(func() { unix.Close(r.fd) })
	if p.Features&iosys.IORING_FEAT_SINGLE_MMAP == 0 {
		t.Fatalf("kernel lacks IORING_FEAT_SINGLE_MMAP (features %#x)", p.Features)
	}
	size := max(p.SQOffset.Array+p.SQEntries*4, p.CQOffset.Cqes+p.CQEntries*16)
	r.ring, err = unix.Mmap(fd, 0, int(size), unix.PROT_READ|unix.PROT_WRITE, unix.MAP_SHARED|unix.MAP_POPULATE)
	if err != nil {
		t.Fatalf("mmap rings: %v", err)
	}
	t.Cleanup(func() { unix.Munmap(r.ring) })
	r.sqeMem, err = unix.Mmap(fd, 0x10000000, int(p.SQEntries)*Size, unix.PROT_READ|unix.PROT_WRITE, unix.MAP_SHARED|unix.MAP_POPULATE)
	if err != nil {
		t.Fatalf("mmap sqes: %v", err)
	}
	t.Cleanup(func() { unix.Munmap(r.sqeMem) })
	at := func(off uint32) *uint32 { return (*uint32)(unsafe.Pointer(&r.ring[off])) }
	r.sqTail, r.sqMask = at(p.SQOffset.Tail), at(p.SQOffset.RingMask)
	r.sqArray = unsafe.Pointer(&r.ring[p.SQOffset.Array])
	r.cqHead, r.cqTail = at(p.CQOffset.Head), at(p.CQOffset.Tail)
	r.cqMask, r.cqesOff = *at(p.CQOffset.RingMask), p.CQOffset.Cqes
	return r
}

// do dirties the next SQE slot (every byte 0xff, which the kernel would
// reject in flags, ioprio, buf_index or personality), lets prep fill it,
// submits it and waits for its completion's res.
func (r *testRing) do(t *testing.T, prep func(*SQE)) int32 {
	t.Helper()
	const ud = 0x1234_5678_9abc_def0
	tail := *r.sqTail
	idx := tail & *r.sqMask
	slot := r.sqeMem[idx*Size : (idx+1)*Size]
	for i := range slot {
		slot[i] = 0xff
	}
	s := (*SQE)(unsafe.Pointer(&slot[0]))
	s.UserData = ud
	prep(s)
	*(*uint32)(unsafe.Add(r.sqArray, 4*idx)) = idx
	atomic.StoreUint32(r.sqTail, tail+1)
	n, err := iosys.IOURingEnter(r.fd, 1, 0, 0, nil)
	if err != nil || n != 1 {
		t.Fatalf("io_uring_enter(submit %s): %d, %v", OpName(s.Opcode), n, err)
	}
	for atomic.LoadUint32(r.cqTail) == *r.cqHead {
		_, err := iosys.IOURingEnter(r.fd, 0, 1, iosys.IORING_ENTER_FLAGS_GETEVENTS, nil)
		if err != nil && !errors.Is(err, unix.EINTR) {
			t.Fatalf("io_uring_enter(wait): %v", err)
		}
	}
	head := *r.cqHead
	cqe := r.ring[r.cqesOff+(head&r.cqMask)*16:]
	gotUD, res := *(*uint64)(unsafe.Pointer(&cqe[0])), *(*int32)(unsafe.Pointer(&cqe[8]))
	atomic.StoreUint32(r.cqHead, head+1)
	if gotUD != ud {
		t.Fatalf("CQE user_data %#x, want %#x", gotUD, uint64(ud))
	}
	return res
}

// TestKernelAcceptsPreps submits prepared SQEs to the running kernel over
// dirty slots: a field a Prep forgot to clear makes the kernel refuse it.
func TestKernelAcceptsPreps(t *testing.T) {
	r := newTestRing(t)
	path := filepath.Join(t.TempDir(), "data")
	fd, err := unix.Open(path, unix.O_RDWR|unix.O_CREAT|unix.O_CLOEXEC, 0o600)
	if err != nil {
		t.Fatal(err)
	}
	defer unix.Close(fd)
	var pin runtime.Pinner
	defer pin.Unpin()
	msg := []byte("ringwake")
	got := make([]byte, 16)
	cpath, _ := unix.BytePtrFromString(path)
	stx := new(unix.Statx_t)
	ts := &unix.Timespec{Nsec: 1e6}
	pin.Pin(&msg[0])
	pin.Pin(&got[0])
	pin.Pin(cpath)
	pin.Pin(stx)
	pin.Pin(ts)
	fd32 := int32(fd)

	want := func(name string, res, wantRes int32) {
		t.Helper()
		if res != wantRes {
			t.Errorf("%s: res %d (%v), want %d", name, res, unix.Errno(-res), wantRes)
		}
	}
	want("NOP", r.do(t, func(s *SQE) { s.PrepNop() }), 0)
	want("WRITE", r.do(t, func(s *SQE) { s.PrepWrite(fd32, msg, 0) }), int32(len(msg)))
	want("FSYNC", r.do(t, func(s *SQE) { s.PrepFsync(fd32, FsyncDatasync) }), 0)
	want("READ", r.do(t, func(s *SQE) { s.PrepRead(fd32, got, 0) }), int32(len(msg)))
	if string(got[:len(msg)]) != string(msg) {
		t.Errorf("READ returned %q, want %q", got[:len(msg)], msg)
	}
	want("READ at EOF", r.do(t, func(s *SQE) { s.PrepRead(fd32, got, 1<<20) }), 0)
	want("READ bad fd", r.do(t, func(s *SQE) { s.PrepRead(-1, got, 0) }), -int32(unix.EBADF))
	want("STATX", r.do(t, func(s *SQE) { s.PrepStatx(unix.AT_FDCWD, cpath, 0, unix.STATX_SIZE, stx) }), 0)
	if stx.Size != uint64(len(msg)) {
		t.Errorf("STATX size %d, want %d", stx.Size, len(msg))
	}
	want("FTRUNCATE", r.do(t, func(s *SQE) { s.PrepFtruncate(fd32, 4096) }), 0)
	var st unix.Stat_t
	if err := unix.Fstat(fd, &st); err != nil || st.Size != 4096 {
		t.Errorf("after FTRUNCATE: size %d, err %v; want 4096", st.Size, err)
	}
	// The link ops: each path pinned, each result checked on the file system.
	hard, _ := unix.BytePtrFromString(path + ".hard")
	soft, _ := unix.BytePtrFromString(path + ".soft")
	pin.Pin(hard)
	pin.Pin(soft)
	want("LINKAT", r.do(t, func(s *SQE) { s.PrepLinkat(unix.AT_FDCWD, cpath, unix.AT_FDCWD, hard, 0) }), 0)
	if err := unix.Stat(path+".hard", &st); err != nil || st.Nlink != 2 || st.Size != 4096 {
		t.Errorf("after LINKAT: nlink %d, size %d, err %v; want 2, 4096", st.Nlink, st.Size, err)
	}
	want("SYMLINKAT", r.do(t, func(s *SQE) { s.PrepSymlinkat(cpath, unix.AT_FDCWD, soft) }), 0)
	if target, err := os.Readlink(path + ".soft"); err != nil || target != path {
		t.Errorf("after SYMLINKAT: target %q, err %v; want %q", target, err, path)
	}
	opened := r.do(t, func(s *SQE) { s.PrepOpenat(unix.AT_FDCWD, cpath, unix.O_RDONLY|unix.O_CLOEXEC, 0) })
	if opened < 0 {
		t.Errorf("OPENAT: %v", unix.Errno(-opened))
	} else {
		want("CLOSE", r.do(t, func(s *SQE) { s.PrepClose(opened) }), 0)
	}
	want("ASYNC_CANCEL of nothing", r.do(t, func(s *SQE) { s.PrepCancel64(42, 0) }), -int32(unix.ENOENT))
	want("TIMEOUT", r.do(t, func(s *SQE) { s.PrepTimeout(ts, 0, 0) }), -int32(unix.ETIME))

	var p [2]int
	if err := unix.Pipe2(p[:], unix.O_CLOEXEC); err != nil {
		t.Fatal(err)
	}
	defer unix.Close(p[0])
	defer unix.Close(p[1])
	if _, err := unix.Write(p[1], msg); err != nil {
		t.Fatal(err)
	}
	if res := r.do(t, func(s *SQE) { s.PrepPollAdd(int32(p[0]), unix.POLLIN) }); res < 0 || res&unix.POLLIN == 0 {
		t.Errorf("POLL_ADD on a readable pipe: res %#x, want POLLIN set", res)
	}
	runtime.KeepAlive(msg)
	runtime.KeepAlive(got)
}
