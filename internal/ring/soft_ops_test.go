package ring

import (
	"bytes"
	"errors"
	"os"
	"path/filepath"
	"runtime"
	"strings"
	"syscall"
	"testing"
	"time"
	"unsafe"

	"github.com/ringwake/ringwake/sqe"
	"golang.org/x/sys/unix"
)

func tempFile(t testing.TB) *os.File {
	t.Helper()
	f, err := os.OpenFile(filepath.Join(t.TempDir(), "f"), os.O_RDWR|os.O_CREATE, 0o600)
	if err != nil {
		t.Fatal(err)
	}
	t.Cleanup(func() { f.Close() })
	return f
}

func cstr(s string) *byte { return &(*onHeap(append([]byte(s), 0)))[0] }

func TestSoftFileOps(t *testing.T) {
	r := newSoftRing(t, Params{Entries: 16})
	f := tempFile(t)
	fd := int32(f.Fd())
	data := pattern(10000)
	w := onHeap(data)
	wantRes(t, "write", one(t, r, func(s *sqe.SQE) { s.PrepWrite(fd, *w, 100) }), int32(len(data)))
	wantRes(t, "fsync", one(t, r, func(s *sqe.SQE) { s.PrepFsync(fd, 0) }), 0)
	wantRes(t, "fdatasync", one(t, r, func(s *sqe.SQE) { s.PrepFsync(fd, sqe.FsyncDatasync) }), 0)
	wantRes(t, "fsync bad flags", one(t, r, func(s *sqe.SQE) { s.PrepFsync(fd, 2) }), -int32(syscall.EINVAL))
	wantRes(t, "sync_file_range", one(t, r, func(s *sqe.SQE) { s.PrepSyncFileRange(fd, 4096, 0, unix.SYNC_FILE_RANGE_WRITE) }), 0)
	wantRes(t, "fadvise", one(t, r, func(s *sqe.SQE) { s.PrepFadvise(fd, 0, 0, unix.FADV_SEQUENTIAL) }), 0)
	got := heapBytes(len(data))
	wantRes(t, "read", one(t, r, func(s *sqe.SQE) { s.PrepRead(fd, got, 100) }), int32(len(data)))
	if !bytes.Equal(got, data) {
		t.Fatal("read back the wrong bytes")
	}

	// Vectored, at the file position (offset -1), which they advance.
	if _, err := f.Seek(100, 0); err != nil {
		t.Fatal(err)
	}
	a, b := heapBytes(3000), heapBytes(7000)
	iov := onHeap([]unix.Iovec{{Base: &a[0]}, {Base: &b[0]}})
	(*iov)[0].SetLen(len(a))
	(*iov)[1].SetLen(len(b))
	wantRes(t, "readv", one(t, r, func(s *sqe.SQE) { s.PrepReadv(fd, *iov, ^uint64(0)) }), int32(len(data)))
	if !bytes.Equal(append(append([]byte{}, a...), b...), data) {
		t.Fatal("readv read the wrong bytes")
	}
	if pos, _ := f.Seek(0, 1); pos != 100+int64(len(data)) {
		t.Fatalf("file position %d after readv at -1, want %d", pos, 100+len(data))
	}
	wantRes(t, "writev at position", one(t, r, func(s *sqe.SQE) { s.PrepWritev(fd, *iov, ^uint64(0)) }), int32(len(data)))
	if st, _ := f.Stat(); st.Size() != 100+2*int64(len(data)) {
		t.Fatalf("size %d after writev at the position", st.Size())
	}

	wantRes(t, "fallocate", one(t, r, func(s *sqe.SQE) { s.PrepFallocate(fd, 0, 0, 1<<20) }), 0)
	wantRes(t, "ftruncate", one(t, r, func(s *sqe.SQE) { s.PrepFtruncate(fd, 5) }), 0)
	if st, _ := f.Stat(); st.Size() != 5 {
		t.Fatalf("size %d after ftruncate(5)", st.Size())
	}

	stx := onHeap(unix.Statx_t{})
	name := cstr(f.Name())
	wantRes(t, "statx", one(t, r, func(s *sqe.SQE) { s.PrepStatx(unix.AT_FDCWD, name, 0, unix.STATX_SIZE, stx) }), 0)
	if stx.Size != 5 {
		t.Fatalf("statx size %d, want 5", stx.Size)
	}
	c := one(t, r, func(s *sqe.SQE) { s.PrepOpenat(unix.AT_FDCWD, name, unix.O_RDONLY|unix.O_CLOEXEC, 0) })
	if c.Res < 0 {
		t.Fatalf("openat: %s", resString(c.Res))
	}
	wantRes(t, "close", one(t, r, func(s *sqe.SQE) { s.PrepClose(c.Res) }), 0)
	wantRes(t, "close again", one(t, r, func(s *sqe.SQE) { s.PrepClose(c.Res) }), -int32(syscall.EBADF))
	missing := cstr(filepath.Join(t.TempDir(), "missing"))
	wantRes(t, "openat missing", one(t, r, func(s *sqe.SQE) { s.PrepOpenat(unix.AT_FDCWD, missing, unix.O_RDONLY, 0) }), -int32(syscall.ENOENT))
	runtime.KeepAlive(iov)
}

// TestSoftBadInput: each mistake completes with the kernel's errno, never
// a panic or a hang.
func TestSoftBadInput(t *testing.T) {
	r := newSoftRing(t, Params{Entries: 8})
	f := tempFile(t)
	buf := heapBytes(16)
	dir, err := os.Open(t.TempDir())
	if err != nil {
		t.Fatal(err)
	}
	defer dir.Close()
	// Opened and closed last, so no later open reuses its number.
	closed := tempFile(t)
	closedFd := int32(closed.Fd())
	closed.Close()
	cases := []struct {
		name string
		prep func(s *sqe.SQE)
		want syscall.Errno
	}{
		{"fd -1", func(s *sqe.SQE) { s.PrepRead(-1, buf, 0) }, syscall.EBADF},
		{"closed fd", func(s *sqe.SQE) { s.PrepRead(closedFd, buf, 0) }, syscall.EBADF},
		{"directory", func(s *sqe.SQE) { s.PrepRead(int32(dir.Fd()), buf, 0) }, syscall.EISDIR},
		{"bad buffer address", func(s *sqe.SQE) {
			s.PrepWrite(int32(f.Fd()), buf, 0)
			s.Addr = 8
		}, syscall.EFAULT},
		{"unknown opcode", func(s *sqe.SQE) {
			s.PrepNop()
			s.Opcode = 250
		}, syscall.EINVAL},
		{"unimplemented opcode", func(s *sqe.SQE) { s.PrepShutdown(int32(f.Fd()), 0) }, syscall.EINVAL},
		{"IODrain", func(s *sqe.SQE) {
			s.PrepNop()
			s.Flags = sqe.IODrain
		}, syscall.EINVAL},
		{"NOP flags", func(s *sqe.SQE) {
			s.PrepNop()
			s.OpFlags = 1 << 7
		}, syscall.EINVAL},
		{"fixed file without a table", func(s *sqe.SQE) {
			s.PrepRead(0, buf, 0)
			s.Flags = sqe.FixedFile
		}, syscall.EBADF},
		{"fixed buffer without buffers", func(s *sqe.SQE) { s.PrepReadFixed(int32(f.Fd()), buf, 0, 0) }, syscall.EFAULT},
		{"timeout at a bad address", func(s *sqe.SQE) {
			s.PrepTimeout(nil, 0, 0)
			s.Addr = 8
		}, syscall.EFAULT},
		{"timeout count", func(s *sqe.SQE) { s.PrepTimeout(onHeap(unix.Timespec{Sec: 1}), 2, 0) }, syscall.EINVAL},
		{"negative timeout", func(s *sqe.SQE) { s.PrepTimeout(onHeap(unix.Timespec{Sec: -1}), 0, 0) }, syscall.EINVAL},
		{"two clocks", func(s *sqe.SQE) {
			s.PrepTimeout(onHeap(unix.Timespec{Sec: 1}), 0, sqe.TimeoutBoottime|sqe.TimeoutRealtime)
		}, syscall.EINVAL},
		{"lone LINK_TIMEOUT", func(s *sqe.SQE) { s.PrepLinkTimeout(onHeap(unix.Timespec{Sec: 1}), 0) }, syscall.EINVAL},
		{"level-triggered multishot poll", func(s *sqe.SQE) {
			s.PrepPollMultishot(int32(f.Fd()), unix.POLLIN)
			s.Len |= sqe.PollAddLevel
		}, syscall.EINVAL},
		{"poll update", func(s *sqe.SQE) {
			s.PrepPollAdd(int32(f.Fd()), unix.POLLIN)
			s.Len = sqe.PollUpdateEvents
		}, syscall.EINVAL},
		{"readv too many iovecs", func(s *sqe.SQE) {
			s.PrepReadv(int32(f.Fd()), nil, 0)
			s.Len = uioMaxIOV + 1
		}, syscall.EINVAL},
		{"cancel with bad flags", func(s *sqe.SQE) { s.PrepCancel64(1, 1<<20) }, syscall.EINVAL},
		{"cancel ANY with FD", func(s *sqe.SQE) { s.PrepCancelFd(3, sqe.AsyncCancelAny) }, syscall.EINVAL},
		{"cancel of nothing", func(s *sqe.SQE) { s.PrepCancel64(12345, 0) }, syscall.ENOENT},
		{"poll remove of nothing", func(s *sqe.SQE) { s.PrepPollRemove(12345) }, syscall.ENOENT},
		{"timeout remove of nothing", func(s *sqe.SQE) { s.PrepTimeoutRemove(12345, 0) }, syscall.ENOENT},
		{"close of a fixed file flag", func(s *sqe.SQE) {
			s.PrepClose(0)
			s.Flags = sqe.FixedFile
		}, syscall.EBADF},
	}
	for _, c := range cases {
		t.Run(c.name, func(t *testing.T) {
			wantRes(t, c.name, one(t, r, c.prep), -int32(c.want))
		})
	}
	// The ring still works after all of that.
	nopRoundTrip(t, r, 1, 8, true)
}

func TestSoftProbe(t *testing.T) {
	r := newSoftRing(t, Params{Entries: 4})
	p, err := r.Probe()
	if err != nil {
		t.Fatal(err)
	}
	for op := 0; op < 256; op++ {
		if r.Supports(uint8(op)) != softOps[op] || p.Supports(uint8(op)) != softOps[op] {
			t.Fatalf("opcode %s: Supports %v, engine implements %v", sqe.OpName(uint8(op)), r.Supports(uint8(op)), softOps[op])
		}
	}
	for _, op := range []uint8{sqe.OpNop, sqe.OpRead, sqe.OpWrite, sqe.OpFsync, sqe.OpAsyncCancel, sqe.OpLinkTimeout, sqe.OpOpenat} {
		if !r.Supports(op) {
			t.Errorf("soft ring lacks %s", sqe.OpName(op))
		}
	}
	if r.Supports(sqe.OpSend) || r.Supports(sqe.OpReadMultishot) {
		t.Error("soft ring claims an opcode it does not implement")
	}
	if p.LastOp() != sqe.OpLast-1 {
		t.Errorf("LastOp %d, want %d", p.LastOp(), sqe.OpLast-1)
	}
}

func TestSoftPipeSemantics(t *testing.T) {
	r := newSoftRing(t, Params{Entries: 8})
	rd, wr := blockingPipe(t)
	// The offset of a stream is ignored, as io_uring does.
	in := onHeap([]byte("hello"))
	wantRes(t, "pipe write at offset 7", one(t, r, func(s *sqe.SQE) { s.PrepWrite(int32(wr), *in, 7) }), 5)
	buf := heapBytes(16)
	wantRes(t, "pipe read at offset 3", one(t, r, func(s *sqe.SQE) { s.PrepRead(int32(rd), buf, 3) }), 5)
	if string(buf[:5]) != "hello" {
		t.Fatalf("read %q", buf[:5])
	}
	// A descriptor its owner made nonblocking gets EAGAIN, not a wait.
	var p [2]int
	if err := unix.Pipe2(p[:], unix.O_CLOEXEC|unix.O_NONBLOCK); err != nil {
		t.Fatal(err)
	}
	defer unix.Close(p[0])
	defer unix.Close(p[1])
	wantRes(t, "read of an empty O_NONBLOCK pipe", one(t, r, func(s *sqe.SQE) { s.PrepRead(int32(p[0]), buf, 0) }), -int32(syscall.EAGAIN))
	// EOF once the writer is gone.
	unix.Close(p[1])
	wantRes(t, "read at EOF", one(t, r, func(s *sqe.SQE) { s.PrepRead(int32(p[0]), buf, 0) }), 0)
	// An eventfd is pollable too: a read waits for a write.
	efd, err := unix.Eventfd(0, unix.EFD_CLOEXEC)
	if err != nil {
		t.Fatal(err)
	}
	defer unix.Close(efd)
	ev := heapBytes(8)
	submit(t, r, 9, func(s *sqe.SQE) { s.PrepRead(int32(efd), ev, 0) })
	waitParked(t, r, 1)
	if _, err := unix.Write(efd, []byte{3, 0, 0, 0, 0, 0, 0, 0}); err != nil {
		t.Fatal(err)
	}
	wantRes(t, "eventfd read", reap(t, r, 1)[0], 8)
	if ev[0] != 3 {
		t.Fatalf("eventfd read %v", ev)
	}
}

// cancel submits a cancel (user data 0xca) and reaps its CQE and the n
// completions it causes, in whatever order they come.
func cancel(t testing.TB, r *Ring, n int, prep func(s *sqe.SQE)) (int32, map[uint64]CQE) {
	t.Helper()
	submit(t, r, 0xca, prep)
	got := byUD(t, reap(t, r, n+1))
	c, ok := got[0xca]
	if !ok {
		t.Fatalf("no CQE for the cancel among %+v", got)
	}
	delete(got, 0xca)
	return c.Res, got
}

// blockedOpen submits an openat of a fresh FIFO, which blocks its worker
// until a writer opens the FIFO: a call nothing can interrupt. unblock
// opens the writer; it also runs at cleanup, before the ring's Close,
// which would otherwise wait for the worker forever.
func blockedOpen(t testing.TB, r *Ring, ud uint64) (unblock func()) {
	t.Helper()
	fifo := filepath.Join(t.TempDir(), "fifo")
	if err := unix.Mkfifo(fifo, 0o600); err != nil {
		t.Fatal(err)
	}
	path := cstr(fifo)
	submit(t, r, ud, func(s *sqe.SQE) { s.PrepOpenat(unix.AT_FDCWD, path, unix.O_RDONLY|unix.O_CLOEXEC, 0) })
	unblock = func() {
		// Nonblocking: succeeds while a reader waits, ENXIO once none does.
		if fd, err := unix.Open(fifo, unix.O_WRONLY|unix.O_NONBLOCK|unix.O_CLOEXEC, 0); err == nil {
			unix.Close(fd)
		}
	}
	t.Cleanup(unblock)
	waitRunning(t, r, 1)
	return unblock
}

// TestSoftCancel: by user data, by fd, ALL and ANY, on requests parked on
// pipes; the buffers of canceled reads stay untouched and the next byte
// goes to a fresh read.
func TestSoftCancel(t *testing.T) {
	r := newSoftRing(t, Params{Entries: 32})
	rd, wr := blockingPipe(t)
	rd2, _ := blockingPipe(t)
	bufs := map[uint64][]byte{}
	read := func(ud uint64, fd int) {
		b := heapBytes(4)
		bufs[ud] = b
		submit(t, r, ud, func(s *sqe.SQE) { s.PrepRead(int32(fd), b, 0) })
	}

	read(1, rd)
	waitParked(t, r, 1)
	res, got := cancel(t, r, 1, func(s *sqe.SQE) { s.PrepCancel64(1, 0) })
	if res != 0 {
		t.Fatalf("cancel by user data: %s", resString(res))
	}
	wantRes(t, "canceled read", got[1], -int32(syscall.ECANCELED))

	for ud := uint64(10); ud < 14; ud++ {
		read(ud, rd)
	}
	read(20, rd2)
	waitParked(t, r, 5)
	res, got = cancel(t, r, 1, func(s *sqe.SQE) { s.PrepCancelFd(int32(rd), 0) })
	if res != 0 {
		t.Fatalf("cancel by fd, one: %s", resString(res))
	}
	wantRes(t, "the oldest read on it", got[10], -int32(syscall.ECANCELED))
	res, got = cancel(t, r, 3, func(s *sqe.SQE) { s.PrepCancelFd(int32(rd), sqe.AsyncCancelAll) })
	if res != 3 {
		t.Fatalf("cancel by fd, all: %s, want 3", resString(res))
	}
	for ud := uint64(11); ud < 14; ud++ {
		wantRes(t, "read on rd", got[ud], -int32(syscall.ECANCELED))
	}
	wantRes(t, "cancel ALL of nothing", one(t, r, func(s *sqe.SQE) { s.PrepCancelFd(int32(rd), sqe.AsyncCancelAll) }), 0)

	// ANY takes everything, including a timer and a poll.
	ts := onHeap(unix.Timespec{Sec: 3600})
	submit(t, r, 30, func(s *sqe.SQE) { s.PrepTimeout(ts, 0, 0) })
	submit(t, r, 31, func(s *sqe.SQE) { s.PrepPollAdd(int32(rd), unix.POLLIN) })
	waitParked(t, r, 2) // read 20 and the poll
	res, got = cancel(t, r, 3, func(s *sqe.SQE) { s.PrepCancel64(0, sqe.AsyncCancelAny) })
	if res != 3 {
		t.Fatalf("cancel ANY: %s, want 3", resString(res))
	}
	for _, ud := range []uint64{20, 30, 31} {
		wantRes(t, "canceled by ANY", got[ud], -int32(syscall.ECANCELED))
	}

	for ud, b := range bufs {
		if !bytes.Equal(b, make([]byte, 4)) {
			t.Fatalf("canceled read %d wrote its buffer: %q", ud, b)
		}
	}
	read(40, rd)
	if _, err := unix.Write(wr, []byte("z")); err != nil {
		t.Fatal(err)
	}
	c := reap(t, r, 1)[0]
	if c.UserData != 40 || c.Res != 1 || bufs[40][0] != 'z' {
		t.Fatalf("fresh read after cancels: %+v %q", c, bufs[40])
	}
}

// TestSoftCancelQueued: a request still in the run queue (the only worker
// is blocked) is canceled at once.
func TestSoftCancelQueued(t *testing.T) {
	r := newSoftRing(t, Params{Entries: 8})
	r.soft.maxWork = 1
	unblock := blockedOpen(t, r, 1)
	f := tempFile(t)
	submit(t, r, 2, func(s *sqe.SQE) { s.PrepFsync(int32(f.Fd()), 0) })
	res, got := cancel(t, r, 1, func(s *sqe.SQE) { s.PrepCancel64(2, 0) })
	if res != 0 {
		t.Fatalf("cancel of a queued fsync: %s", resString(res))
	}
	wantRes(t, "queued fsync", got[2], -int32(syscall.ECANCELED))
	// The running openat cannot be interrupted.
	wantRes(t, "cancel of the blocked openat", one(t, r, func(s *sqe.SQE) { s.PrepCancel64(1, 0) }), -int32(syscall.EALREADY))
	unblock()
	c := reap(t, r, 1)[0]
	if c.UserData != 1 || c.Res < 0 {
		t.Fatalf("openat CQE %+v", c)
	}
	unix.Close(int(c.Res))
}

// linkChain submits the SQEs prepared by preps as one batch, each linked
// to the next with flag, user data 1..n.
func linkChain(t testing.TB, r *Ring, flag uint8, preps ...func(s *sqe.SQE)) {
	t.Helper()
	for i, prep := range preps {
		s := mustGetSQE(t, r)
		prep(s)
		s.UserData = uint64(i + 1)
		if i < len(preps)-1 {
			s.Flags |= flag
		}
	}
	r.Publish()
	if n, err := r.Submit(); err != nil || n != len(preps) {
		t.Fatalf("Submit = %d, %v", n, err)
	}
}

func TestSoftLinks(t *testing.T) {
	r := newSoftRing(t, Params{Entries: 16})
	f := tempFile(t)
	fd := int32(f.Fd())
	data := pattern(4096)
	w := onHeap(data)
	buf := heapBytes(4096)
	// write -> fsync -> read, in order.
	linkChain(t, r, sqe.IOLink,
		func(s *sqe.SQE) { s.PrepWrite(fd, *w, 0) },
		func(s *sqe.SQE) { s.PrepFsync(fd, 0) },
		func(s *sqe.SQE) { s.PrepRead(fd, buf, 0) })
	got := byUD(t, reap(t, r, 3))
	wantRes(t, "linked write", got[1], 4096)
	wantRes(t, "linked fsync", got[2], 0)
	wantRes(t, "linked read", got[3], 4096)
	if !bytes.Equal(buf, data) {
		t.Fatal("linked read ran before the write")
	}

	// A failure breaks an IOLink chain...
	linkChain(t, r, sqe.IOLink,
		func(s *sqe.SQE) { s.PrepNop() },
		func(s *sqe.SQE) { s.PrepRead(-1, buf, 0) },
		func(s *sqe.SQE) { s.PrepNop() },
		func(s *sqe.SQE) { s.PrepNop() })
	got = byUD(t, reap(t, r, 4))
	wantRes(t, "NOP before the failure", got[1], 0)
	wantRes(t, "failing read", got[2], -int32(syscall.EBADF))
	wantRes(t, "NOP after the failure", got[3], -int32(syscall.ECANCELED))
	wantRes(t, "last NOP", got[4], -int32(syscall.ECANCELED))

	// ...and so does a short read (the file holds 4096 bytes)...
	big := heapBytes(8192)
	linkChain(t, r, sqe.IOLink,
		func(s *sqe.SQE) { s.PrepRead(fd, big, 0) },
		func(s *sqe.SQE) { s.PrepNop() })
	got = byUD(t, reap(t, r, 2))
	wantRes(t, "short read", got[1], 4096)
	wantRes(t, "NOP after a short read", got[2], -int32(syscall.ECANCELED))

	// ...but not an IOHardlink chain.
	linkChain(t, r, sqe.IOHardlink,
		func(s *sqe.SQE) { s.PrepRead(-1, buf, 0) },
		func(s *sqe.SQE) { s.PrepNop() })
	got = byUD(t, reap(t, r, 2))
	wantRes(t, "failing read", got[1], -int32(syscall.EBADF))
	wantRes(t, "hardlinked NOP", got[2], 0)

	// A chain whose middle waits on a pipe continues when data arrives.
	rd, wr := blockingPipe(t)
	pb := heapBytes(1)
	linkChain(t, r, sqe.IOLink,
		func(s *sqe.SQE) { s.PrepNop() },
		func(s *sqe.SQE) { s.PrepRead(int32(rd), pb, 0) },
		func(s *sqe.SQE) { s.PrepNop() })
	waitParked(t, r, 1)
	if _, err := unix.Write(wr, []byte("!")); err != nil {
		t.Fatal(err)
	}
	got = byUD(t, reap(t, r, 3))
	wantRes(t, "pipe read in a chain", got[2], 1)
	wantRes(t, "NOP after it", got[3], 0)

	// A prep failure in the middle fails the rest of the chain.
	linkChain(t, r, sqe.IOLink,
		func(s *sqe.SQE) { s.PrepNop() },
		func(s *sqe.SQE) {
			s.PrepNop()
			s.OpFlags = 1 << 9
		},
		func(s *sqe.SQE) { s.PrepNop() })
	got = byUD(t, reap(t, r, 3))
	wantRes(t, "NOP", got[1], 0)
	wantRes(t, "invalid NOP", got[2], -int32(syscall.EINVAL))
	wantRes(t, "NOP after it", got[3], -int32(syscall.ECANCELED))
}

// TestSoftChainCanceledMidway: canceling a request that waits in a chain
// completes it and (IOLink) everything after it at once.
func TestSoftChainCanceledMidway(t *testing.T) {
	r := newSoftRing(t, Params{Entries: 16})
	rd, wr := blockingPipe(t)
	b1, b2 := heapBytes(1), heapBytes(1)
	linkChain(t, r, sqe.IOLink,
		func(s *sqe.SQE) { s.PrepRead(int32(rd), b1, 0) },
		func(s *sqe.SQE) { s.PrepRead(int32(rd), b2, 0) },
		func(s *sqe.SQE) { s.PrepNop() })
	waitParked(t, r, 1)
	res, got := cancel(t, r, 2, func(s *sqe.SQE) { s.PrepCancel64(2, 0) })
	if res != 0 {
		t.Fatalf("cancel of the second link: %s", resString(res))
	}
	wantRes(t, "second link", got[2], -int32(syscall.ECANCELED))
	wantRes(t, "third link", got[3], -int32(syscall.ECANCELED))
	if _, err := unix.Write(wr, []byte("ab")); err != nil {
		t.Fatal(err)
	}
	c := reap(t, r, 1)[0]
	if c.UserData != 1 || c.Res != 1 {
		t.Fatalf("head of the chain: %+v", c)
	}
}

func TestSoftLinkTimeout(t *testing.T) {
	r := newSoftRing(t, Params{Entries: 16})
	rd, wr := blockingPipe(t)
	buf := heapBytes(4)
	// The read never gets data: the timeout cancels it.
	linkChain(t, r, sqe.IOLink,
		func(s *sqe.SQE) { s.PrepRead(int32(rd), buf, 0) },
		func(s *sqe.SQE) { s.PrepLinkTimeout(onHeap(unix.Timespec{Nsec: 20e6}), 0) })
	got := byUD(t, reap(t, r, 2))
	wantRes(t, "read bounded by a link timeout", got[1], -int32(syscall.ECANCELED))
	wantRes(t, "expired link timeout", got[2], -int32(syscall.ETIME))

	// The op finishes first: the timeout is canceled.
	if _, err := unix.Write(wr, []byte("data")); err != nil {
		t.Fatal(err)
	}
	linkChain(t, r, sqe.IOLink,
		func(s *sqe.SQE) { s.PrepRead(int32(rd), buf, 0) },
		func(s *sqe.SQE) { s.PrepLinkTimeout(onHeap(unix.Timespec{Sec: 3600}), 0) })
	got = byUD(t, reap(t, r, 2))
	wantRes(t, "read that beat its timeout", got[1], 4)
	wantRes(t, "unexpired link timeout", got[2], -int32(syscall.ECANCELED))

	// op -> link timeout -> op: an expiry breaks the chain after it.
	linkChain(t, r, sqe.IOLink,
		func(s *sqe.SQE) { s.PrepRead(int32(rd), buf, 0) },
		func(s *sqe.SQE) { s.PrepLinkTimeout(onHeap(unix.Timespec{Nsec: 10e6}), 0) },
		func(s *sqe.SQE) { s.PrepNop() })
	got = byUD(t, reap(t, r, 3))
	wantRes(t, "read", got[1], -int32(syscall.ECANCELED))
	wantRes(t, "link timeout", got[2], -int32(syscall.ETIME))
	wantRes(t, "NOP after the timed-out read", got[3], -int32(syscall.ECANCELED))

	// An absolute deadline already past fires at once.
	var now unix.Timespec
	unix.ClockGettime(unix.CLOCK_MONOTONIC, &now)
	linkChain(t, r, sqe.IOLink,
		func(s *sqe.SQE) { s.PrepRead(int32(rd), buf, 0) },
		func(s *sqe.SQE) { s.PrepLinkTimeout(onHeap(now), sqe.TimeoutAbs) })
	got = byUD(t, reap(t, r, 2))
	wantRes(t, "read with a past deadline", got[1], -int32(syscall.ECANCELED))
	wantRes(t, "past absolute link timeout", got[2], -int32(syscall.ETIME))
}

// TestSoftLinkTimeoutOnBlockingOp: a linked timeout cannot interrupt a
// blocking call; it reports -EALREADY and the op completes normally.
func TestSoftLinkTimeoutOnBlockingOp(t *testing.T) {
	r := newSoftRing(t, Params{Entries: 8})
	fifo := filepath.Join(t.TempDir(), "fifo")
	if err := unix.Mkfifo(fifo, 0o600); err != nil {
		t.Fatal(err)
	}
	unblock := func() {
		if fd, err := unix.Open(fifo, unix.O_WRONLY|unix.O_NONBLOCK|unix.O_CLOEXEC, 0); err == nil {
			unix.Close(fd)
		}
	}
	t.Cleanup(unblock)
	path := cstr(fifo)
	linkChain(t, r, sqe.IOLink,
		func(s *sqe.SQE) { s.PrepOpenat(unix.AT_FDCWD, path, unix.O_RDONLY|unix.O_CLOEXEC, 0) },
		func(s *sqe.SQE) { s.PrepLinkTimeout(onHeap(unix.Timespec{Nsec: 5e6}), 0) })
	c := reap(t, r, 1)[0]
	if c.UserData != 2 || c.Res != -int32(syscall.EALREADY) {
		t.Fatalf("link timeout on a blocked openat: %+v, want -EALREADY", c)
	}
	unblock()
	c = reap(t, r, 1)[0]
	if c.UserData != 1 || c.Res < 0 {
		t.Fatalf("openat: %+v", c)
	}
	unix.Close(int(c.Res))
}

func TestSoftTimeouts(t *testing.T) {
	r := newSoftRing(t, Params{Entries: 16})
	wantRes(t, "timeout", one(t, r, func(s *sqe.SQE) { s.PrepTimeout(onHeap(unix.Timespec{Nsec: 5e6}), 0, 0) }), -int32(syscall.ETIME))

	// The timespec is read at submission: clobbering it afterwards changes nothing.
	ts := onHeap(unix.Timespec{Nsec: 5e6})
	submit(t, r, 1, func(s *sqe.SQE) { s.PrepTimeout(ts, 0, 0) })
	ts.Sec = 3600
	c, err := reapWithin(r, 10*time.Second)
	if err != nil {
		t.Fatalf("timeout read its timespec after submission: %v", err)
	}
	wantRes(t, "timeout", c, -int32(syscall.ETIME))

	// Multishot: 3 shots, the first two flagged CQEFMore.
	submit(t, r, 2, func(s *sqe.SQE) { s.PrepTimeout(onHeap(unix.Timespec{Nsec: 2e6}), 3, sqe.TimeoutMultishot) })
	for i := 0; i < 3; i++ {
		c := reap(t, r, 1)[0]
		more := c.Flags&CQEFMore != 0
		if c.UserData != 2 || c.Res != -int32(syscall.ETIME) || more != (i < 2) {
			t.Fatalf("shot %d: %+v", i, c)
		}
	}

	// TIMEOUT_REMOVE and ETIME_SUCCESS in a chain.
	submit(t, r, 3, func(s *sqe.SQE) { s.PrepTimeout(onHeap(unix.Timespec{Sec: 3600}), 0, 0) })
	res, got := cancel(t, r, 1, func(s *sqe.SQE) { s.PrepTimeoutRemove(3, 0) })
	if res != 0 {
		t.Fatalf("timeout remove: %s", resString(res))
	}
	wantRes(t, "removed timeout", got[3], -int32(syscall.ECANCELED))
	linkChain(t, r, sqe.IOLink,
		func(s *sqe.SQE) { s.PrepTimeout(onHeap(unix.Timespec{Nsec: 1e6}), 0, sqe.TimeoutETimeSuccess) },
		func(s *sqe.SQE) { s.PrepNop() })
	got = byUD(t, reap(t, r, 2))
	wantRes(t, "ETIME_SUCCESS timeout", got[1], -int32(syscall.ETIME))
	wantRes(t, "NOP after it", got[2], 0)
}

// reapWithin waits for one CQE, returning an error rather than failing.
func reapWithin(r *Ring, d time.Duration) (CQE, error) {
	var buf [1]CQE
	deadline := time.Now().Add(d)
	for r.PeekBatch(buf[:]) == 0 {
		if time.Now().After(deadline) {
			return CQE{}, errors.New("no CQE")
		}
		r.EnterTimeout(0, 1, EnterGetEvents, 10*time.Millisecond)
	}
	return buf[0], nil
}

func TestSoftPoll(t *testing.T) {
	r := newSoftRing(t, Params{Entries: 8})
	rd, wr := blockingPipe(t)
	submit(t, r, 1, func(s *sqe.SQE) { s.PrepPollAdd(int32(rd), unix.POLLIN) })
	waitParked(t, r, 1)
	if _, err := unix.Write(wr, []byte("x")); err != nil {
		t.Fatal(err)
	}
	c := reap(t, r, 1)[0]
	if c.UserData != 1 || c.Res&unix.POLLIN == 0 {
		t.Fatalf("poll: %+v", c)
	}
	wantRes(t, "poll for write on a pipe with room", one(t, r, func(s *sqe.SQE) { s.PrepPollAdd(int32(wr), unix.POLLOUT) }), unix.POLLOUT)
	// A regular file is always ready, as vfs_poll's default mask says.
	f := tempFile(t)
	wantRes(t, "poll of a regular file", one(t, r, func(s *sqe.SQE) { s.PrepPollAdd(int32(f.Fd()), unix.POLLIN) }), unix.POLLIN)

	submit(t, r, 2, func(s *sqe.SQE) { s.PrepPollAdd(int32(wr), unix.POLLIN) })
	waitParked(t, r, 1)
	res, got := cancel(t, r, 1, func(s *sqe.SQE) { s.PrepPollRemove(2) })
	if res != 0 {
		t.Fatalf("poll remove: %s", resString(res))
	}
	wantRes(t, "removed poll", got[2], -int32(syscall.ECANCELED))
}

// TestSoftMultishotPoll: one CQE with CQEFMore per wakeup (edge, not
// level: unread data does not repeat it), a final -ECANCELED without it.
func TestSoftMultishotPoll(t *testing.T) {
	r := newSoftRing(t, Params{Entries: 8})
	rd, wr := blockingPipe(t)
	// Two watchers of one descriptor, as the kernel allows.
	submit(t, r, 1, func(s *sqe.SQE) { s.PrepPollMultishot(int32(rd), unix.POLLIN) })
	submit(t, r, 2, func(s *sqe.SQE) { s.PrepPollMultishot(int32(rd), unix.POLLIN) })
	b := make([]byte, 1)
	for i := 0; i < 3; i++ {
		if _, err := unix.Write(wr, []byte{'x'}); err != nil {
			t.Fatal(err)
		}
		got := byUD(t, reap(t, r, 2))
		for ud := uint64(1); ud <= 2; ud++ {
			if c := got[ud]; c.Res&unix.POLLIN == 0 || c.Flags&CQEFMore == 0 {
				t.Fatalf("wakeup %d, watcher %d: %+v, want POLLIN with CQEFMore", i, ud, c)
			}
		}
		// Unread data is no new wakeup: nothing more may arrive.
		if _, err := r.EnterTimeout(0, 1, EnterGetEvents, 20*time.Millisecond); !errors.Is(err, syscall.ETIME) {
			t.Fatalf("a CQE without a new wakeup (%v): the poll is level-triggered", err)
		}
		if _, err := unix.Read(rd, b); err != nil {
			t.Fatal(err)
		}
	}
	res, got := cancel(t, r, 2, func(s *sqe.SQE) { s.PrepCancelFd(int32(rd), sqe.AsyncCancelAll) })
	if res != 2 {
		t.Fatalf("cancel of both watchers: %s", resString(res))
	}
	for ud := uint64(1); ud <= 2; ud++ {
		if c := got[ud]; c.Res != -int32(syscall.ECANCELED) || c.Flags&CQEFMore != 0 {
			t.Fatalf("final CQE of watcher %d: %+v", ud, c)
		}
	}
	// A regular file cannot be polled: ready once, and done.
	f := tempFile(t)
	c := one(t, r, func(s *sqe.SQE) { s.PrepPollMultishot(int32(f.Fd()), unix.POLLIN) })
	if c.Res != unix.POLLIN || c.Flags&CQEFMore != 0 {
		t.Fatalf("multishot poll of a regular file: %+v, want POLLIN and no CQEFMore", c)
	}
}

// TestSoftMultishotEndsWhenCQFull: a multishot whose next CQE would
// overflow the CQ ends with its final CQE instead, as in the kernel.
func TestSoftMultishotEndsWhenCQFull(t *testing.T) {
	r := newSoftRing(t, Params{Entries: 1, CQEntries: 1})
	rd, wr := blockingPipe(t)
	submit(t, r, 1, func(s *sqe.SQE) { s.PrepPollMultishot(int32(rd), unix.POLLIN) })
	waitMultiArmed(t, r)
	if _, err := unix.Write(wr, []byte{'x'}); err != nil {
		t.Fatal(err)
	}
	waitFull := func() {
		t.Helper()
		deadline := time.Now().Add(30 * time.Second)
		for r.CQReady() == 0 {
			if time.Now().After(deadline) {
				t.Fatal("no CQE")
			}
			time.Sleep(time.Millisecond)
		}
	}
	waitFull()
	// The CQ is full now: the next wakeup ends the poll.
	unix.Read(rd, make([]byte, 1))
	if _, err := unix.Write(wr, []byte{'y'}); err != nil {
		t.Fatal(err)
	}
	deadline := time.Now().Add(30 * time.Second)
	for !r.CQOverflow() {
		if time.Now().After(deadline) {
			t.Fatal("the second wakeup posted nothing")
		}
		time.Sleep(time.Millisecond)
	}
	cqes := reap(t, r, 2)
	if cqes[0].Flags&CQEFMore == 0 || cqes[1].Flags&CQEFMore != 0 || cqes[1].Res&unix.POLLIN == 0 {
		t.Fatalf("CQEs %+v, want one with CQEFMore, then a final POLLIN without", cqes)
	}
	r.soft.mu.Lock()
	n := len(r.soft.mpolls)
	r.soft.mu.Unlock()
	if n != 0 {
		t.Fatalf("%d multishot polls still registered after the final CQE", n)
	}

	// The same for a multishot timeout that would fire forever.
	submit(t, r, 2, func(s *sqe.SQE) { s.PrepTimeout(onHeap(unix.Timespec{Nsec: 1e6}), 0, sqe.TimeoutMultishot) })
	deadline = time.Now().Add(30 * time.Second)
	for !r.CQOverflow() {
		if time.Now().After(deadline) {
			t.Fatal("the multishot timeout never filled the CQ")
		}
		time.Sleep(time.Millisecond)
	}
	cqes = reap(t, r, 2)
	if cqes[0].Flags&CQEFMore == 0 || cqes[1].Flags&CQEFMore != 0 {
		t.Fatalf("multishot timeout on a full CQ: %+v, want CQEFMore then a final CQE", cqes)
	}
	if _, err := r.EnterTimeout(0, 1, EnterGetEvents, 20*time.Millisecond); !errors.Is(err, syscall.ETIME) {
		t.Fatalf("the multishot timeout fired after its final CQE (%v)", err)
	}
}

func waitMultiArmed(t testing.TB, r *Ring) {
	t.Helper()
	deadline := time.Now().Add(30 * time.Second)
	for {
		r.soft.mu.Lock()
		n := len(r.soft.mpolls)
		r.soft.mu.Unlock()
		if n > 0 {
			return
		}
		if time.Now().After(deadline) {
			t.Fatal("multishot poll never armed")
		}
		time.Sleep(time.Millisecond)
	}
}

func TestSoftCQESkipSuccess(t *testing.T) {
	r := newSoftRing(t, Params{Entries: 8})
	submit(t, r, 1, func(s *sqe.SQE) {
		s.PrepNop()
		s.Flags = sqe.CQESkipSuccess
	})
	buf := heapBytes(1)
	submit(t, r, 2, func(s *sqe.SQE) {
		s.PrepRead(-1, buf, 0)
		s.Flags = sqe.CQESkipSuccess
	})
	c := reap(t, r, 1)[0]
	if c.UserData != 2 || c.Res != -int32(syscall.EBADF) {
		t.Fatalf("only the failure posts a CQE: got %+v", c)
	}
}

func TestSoftRegisteredFiles(t *testing.T) {
	r := newSoftRing(t, Params{Entries: 8})
	want := pattern(1000)
	buf := heapBytes(len(want))
	readIndex := func(idx int32) CQE {
		t.Helper()
		clear(buf)
		return one(t, r, func(s *sqe.SQE) {
			s.PrepRead(idx, buf, 0)
			s.Flags |= sqe.FixedFile
		})
	}
	// The table holds its own reference: the submitter may close its fd.
	f := patternFile(t, want)
	own, err := unix.Dup(int(f.Fd()))
	if err != nil {
		t.Fatal(err)
	}
	if err := r.RegisterFiles([]int32{-1, int32(own)}); err != nil {
		t.Fatalf("RegisterFiles: %v", err)
	}
	unix.Close(own)
	if c := readIndex(1); c.Res != int32(len(want)) || !bytes.Equal(buf, want) {
		t.Fatalf("fixed-file READ via slot 1 after closing the registered fd: %+v", c)
	}
	wantRes(t, "READ via empty slot 0", readIndex(0), -int32(syscall.EBADF))
	wantRes(t, "READ via slot 7", readIndex(7), -int32(syscall.EBADF))
	if err := r.RegisterFiles([]int32{int32(f.Fd())}); !errors.Is(err, syscall.EBUSY) {
		t.Fatalf("second RegisterFiles = %v, want EBUSY", err)
	}
	if err := r.UnregisterFiles(); err != nil {
		t.Fatalf("UnregisterFiles: %v", err)
	}
	if err := r.UnregisterFiles(); !errors.Is(err, syscall.ENXIO) || !strings.Contains(err.Error(), "io_uring_register") {
		t.Fatalf("second UnregisterFiles = %v, want an io_uring_register error wrapping ENXIO", err)
	}
	if _, err := r.UpdateFiles(0, []int32{int32(f.Fd())}); !errors.Is(err, syscall.ENXIO) {
		t.Fatalf("UpdateFiles without a table = %v, want ENXIO", err)
	}
	if err := r.RegisterFiles([]int32{-5}); !errors.Is(err, syscall.EBADF) {
		t.Fatalf("RegisterFiles(-5) = %v, want EBADF", err)
	}

	if err := r.RegisterFilesSparse(4); err != nil {
		t.Fatalf("RegisterFilesSparse: %v", err)
	}
	wantRes(t, "READ via a sparse slot", readIndex(2), -int32(syscall.EBADF))
	if n, err := r.UpdateFiles(2, []int32{int32(f.Fd())}); err != nil || n != 1 {
		t.Fatalf("UpdateFiles = %d, %v", n, err)
	}
	if c := readIndex(2); c.Res != int32(len(want)) || !bytes.Equal(buf, want) {
		t.Fatalf("READ via updated slot 2: %+v", c)
	}
	if _, err := r.UpdateFiles(9, []int32{int32(f.Fd())}); !errors.Is(err, syscall.EINVAL) {
		t.Fatalf("UpdateFiles past the table = %v, want EINVAL", err)
	}
	if n, err := r.UpdateFiles(1, []int32{RegisterFilesSkip, -1}); err != nil || n != 2 {
		t.Fatalf("UpdateFiles(skip, clear) = %d, %v", n, err)
	}
	wantRes(t, "READ via slot 2 after clearing it", readIndex(2), -int32(syscall.EBADF))

	// A request holds its slot's descriptor: replacing the slot while a
	// read on it waits does not pull the file from under it.
	rd, wr := blockingPipe(t)
	if n, err := r.UpdateFiles(3, []int32{int32(rd)}); err != nil || n != 1 {
		t.Fatalf("UpdateFiles = %d, %v", n, err)
	}
	pb := heapBytes(2)
	submit(t, r, 77, func(s *sqe.SQE) {
		s.PrepRead(3, pb, 0)
		s.Flags |= sqe.FixedFile
	})
	waitParked(t, r, 1)
	if n, err := r.UpdateFiles(3, []int32{-1}); err != nil || n != 1 {
		t.Fatalf("UpdateFiles(clear) = %d, %v", n, err)
	}
	if _, err := unix.Write(wr, []byte("ok")); err != nil {
		t.Fatal(err)
	}
	c := reap(t, r, 1)[0]
	if c.UserData != 77 || c.Res != 2 || string(pb) != "ok" {
		t.Fatalf("read through a slot cleared while it waited: %+v %q", c, pb)
	}

	// IORING_OP_CLOSE of a fixed slot.
	if n, err := r.UpdateFiles(0, []int32{int32(f.Fd())}); err != nil || n != 1 {
		t.Fatalf("UpdateFiles = %d, %v", n, err)
	}
	wantRes(t, "close fixed slot 0", one(t, r, func(s *sqe.SQE) {
		s.PrepClose(0)
		s.SpliceFdIn = 1
	}), 0)
	wantRes(t, "READ via the closed slot", readIndex(0), -int32(syscall.EBADF))
}

func TestSoftRegisteredBuffers(t *testing.T) {
	r := newSoftRing(t, Params{Entries: 8})
	f := tempFile(t)
	fd := int32(f.Fd())
	reg := heapBytes(8192)
	copy(reg, pattern(8192))
	if err := r.RegisterBuffers([][]byte{reg}); err != nil {
		t.Fatalf("RegisterBuffers: %v", err)
	}
	if err := r.RegisterBuffers([][]byte{reg}); !errors.Is(err, syscall.EBUSY) {
		t.Fatalf("second RegisterBuffers = %v, want EBUSY", err)
	}
	wantRes(t, "write_fixed", one(t, r, func(s *sqe.SQE) { s.PrepWriteFixed(fd, reg[1000:5000], 0, 0) }), 4000)
	clear(reg)
	wantRes(t, "read_fixed", one(t, r, func(s *sqe.SQE) { s.PrepReadFixed(fd, reg[4096:8096], 0, 0) }), 4000)
	if !bytes.Equal(reg[4096:8096], pattern(8192)[1000:5000]) {
		t.Fatal("fixed-buffer round trip returned the wrong bytes")
	}
	other := heapBytes(16)
	wantRes(t, "read_fixed outside the buffer", one(t, r, func(s *sqe.SQE) { s.PrepReadFixed(fd, other, 0, 0) }), -int32(syscall.EFAULT))
	wantRes(t, "read_fixed past its end", one(t, r, func(s *sqe.SQE) {
		s.PrepReadFixed(fd, reg[8000:], 0, 0)
		s.Len = 200
	}), -int32(syscall.EFAULT))
	wantRes(t, "read_fixed bad index", one(t, r, func(s *sqe.SQE) { s.PrepReadFixed(fd, reg, 0, 1) }), -int32(syscall.EFAULT))
	if err := r.UnregisterBuffers(); err != nil {
		t.Fatal(err)
	}
	if err := r.UnregisterBuffers(); !errors.Is(err, syscall.ENXIO) {
		t.Fatalf("second UnregisterBuffers = %v, want ENXIO", err)
	}
	err := r.RegisterBuffers([][]byte{reg, {}})
	if err == nil || !strings.Contains(err.Error(), "buffer 1 is empty") {
		t.Fatalf("RegisterBuffers with an empty buffer = %v", err)
	}
}

func TestSoftEventfd(t *testing.T) {
	r := newSoftRing(t, Params{Entries: 4})
	efd, err := unix.Eventfd(0, unix.EFD_CLOEXEC|unix.EFD_NONBLOCK)
	if err != nil {
		t.Fatal(err)
	}
	defer unix.Close(efd)
	if err := r.RegisterEventfd(efd); err != nil {
		t.Fatalf("RegisterEventfd: %v", err)
	}
	if err := r.RegisterEventfd(efd); !errors.Is(err, syscall.EBUSY) {
		t.Fatalf("second RegisterEventfd = %v, want EBUSY", err)
	}
	nopRoundTrip(t, r, 1, 1, false)
	if v := eventfdValue(t, efd); v != 1 {
		t.Fatalf("eventfd value %d after one completion", v)
	}
	r.SetCQEventfdEnabled(false)
	nopRoundTrip(t, r, 2, 1, false)
	r.SetCQEventfdEnabled(true)
	nopRoundTrip(t, r, 3, 1, false)
	if v := eventfdValue(t, efd); v != 1 {
		t.Fatalf("eventfd counted %d for one enabled and one disabled completion, want 1", v)
	}
	if err := r.UnregisterEventfd(); err != nil {
		t.Fatal(err)
	}
	if err := r.UnregisterEventfd(); !errors.Is(err, syscall.ENXIO) {
		t.Fatalf("second UnregisterEventfd = %v, want ENXIO", err)
	}
	f := tempFile(t)
	if err := r.RegisterEventfd(int(f.Fd())); !errors.Is(err, syscall.EINVAL) {
		t.Fatalf("RegisterEventfd(regular file) = %v, want EINVAL", err)
	}
}

// TestSoftCopierFallback: where process_vm_readv is refused, timespecs are
// read through the pipe, with the same EFAULT for a bad address.
func TestSoftCopierFallback(t *testing.T) {
	var c softCopier
	c.pipe = [2]int{-1, -1}
	c.noVM = true
	defer c.close()
	src := onHeap(pattern(10000))
	dst := make([]byte, len(*src))
	if errno := c.copyIn(dst, uint64(uintptr(unsafe.Pointer(&(*src)[0])))); errno != 0 {
		t.Fatalf("copyIn: %v", errno)
	}
	if !bytes.Equal(dst, *src) {
		t.Fatal("copyIn through the pipe copied the wrong bytes")
	}
	if errno := c.copyIn(dst[:16], 8); errno != syscall.EFAULT {
		t.Fatalf("copyIn from address 8 = %v, want EFAULT", errno)
	}
	// The pipe is left empty after a fault.
	if errno := c.copyIn(dst[:8], uint64(uintptr(unsafe.Pointer(&(*src)[0])))); errno != 0 || !bytes.Equal(dst[:8], (*src)[:8]) {
		t.Fatalf("copyIn after a fault: %v", errno)
	}
	runtime.KeepAlive(src)
}
