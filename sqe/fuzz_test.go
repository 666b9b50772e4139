package sqe

import (
	"testing"
	"unsafe"

	"golang.org/x/sys/unix"
)

// fuzzArgs are the raw values FuzzPrep feeds to a Prep, converted to each
// parameter's type by the table below.
type fuzzArgs struct {
	fd, fd2 int32
	a, b    uint64
	c, d    uint32
	idx     uint16
	buf     []byte
	ptrs    bool // pass real pointers rather than nil ones
}

var (
	fuzzPath  = &[]byte("/nonexistent\x00")[0]
	fuzzTS    = &unix.Timespec{Sec: 1}
	fuzzStatx = new(unix.Statx_t)
	fuzzSA    = new(unix.RawSockaddrAny)
	fuzzSALen = new(uint32)
)

func (a *fuzzArgs) iovs() []unix.Iovec {
	if len(a.buf) == 0 {
		return nil
	}
	iov := unix.Iovec{Base: &a.buf[0]}
	iov.SetLen(len(a.buf))
	return []unix.Iovec{iov}
}

func pick[T any](a *fuzzArgs, p *T) *T {
	if a.ptrs {
		return p
	}
	return nil
}

// fuzzPreps lists every Prep with the opcode it must write and whether its
// Addr/Len come from the byte buffer.
var fuzzPreps = []struct {
	name    string
	op      uint8
	usesBuf bool
	run     func(*SQE, *fuzzArgs)
}{
	{"PrepNop", OpNop, false, func(s *SQE, a *fuzzArgs) { s.PrepNop() }},
	{"PrepRead", OpRead, true, func(s *SQE, a *fuzzArgs) { s.PrepRead(a.fd, a.buf, a.a) }},
	{"PrepWrite", OpWrite, true, func(s *SQE, a *fuzzArgs) { s.PrepWrite(a.fd, a.buf, a.a) }},
	{"PrepReadv", OpReadv, false, func(s *SQE, a *fuzzArgs) { s.PrepReadv(a.fd, a.iovs(), a.a) }},
	{"PrepWritev", OpWritev, false, func(s *SQE, a *fuzzArgs) { s.PrepWritev(a.fd, a.iovs(), a.a) }},
	{"PrepReadFixed", OpReadFixed, true, func(s *SQE, a *fuzzArgs) { s.PrepReadFixed(a.fd, a.buf, a.a, a.idx) }},
	{"PrepWriteFixed", OpWriteFixed, true, func(s *SQE, a *fuzzArgs) { s.PrepWriteFixed(a.fd, a.buf, a.a, a.idx) }},
	{"PrepFsync", OpFsync, false, func(s *SQE, a *fuzzArgs) { s.PrepFsync(a.fd, a.c) }},
	{"PrepSyncFileRange", OpSyncFileRange, false, func(s *SQE, a *fuzzArgs) { s.PrepSyncFileRange(a.fd, a.c, a.a, a.d) }},
	{"PrepFallocate", OpFallocate, false, func(s *SQE, a *fuzzArgs) { s.PrepFallocate(a.fd, a.c, a.a, a.b) }},
	{"PrepFadvise", OpFadvise, false, func(s *SQE, a *fuzzArgs) { s.PrepFadvise(a.fd, a.a, a.c, a.d) }},
	{"PrepTimeout", OpTimeout, false, func(s *SQE, a *fuzzArgs) { s.PrepTimeout(pick(a, fuzzTS), a.c, a.d) }},
	{"PrepLinkTimeout", OpLinkTimeout, false, func(s *SQE, a *fuzzArgs) { s.PrepLinkTimeout(pick(a, fuzzTS), a.d) }},
	{"PrepTimeoutRemove", OpTimeoutRemove, false, func(s *SQE, a *fuzzArgs) { s.PrepTimeoutRemove(a.a, a.d) }},
	{"PrepCancel64", OpAsyncCancel, false, func(s *SQE, a *fuzzArgs) { s.PrepCancel64(a.a, a.d) }},
	{"PrepCancelFd", OpAsyncCancel, false, func(s *SQE, a *fuzzArgs) { s.PrepCancelFd(a.fd, a.d) }},
	{"PrepPollAdd", OpPollAdd, false, func(s *SQE, a *fuzzArgs) { s.PrepPollAdd(a.fd, a.c) }},
	{"PrepPollMultishot", OpPollAdd, false, func(s *SQE, a *fuzzArgs) { s.PrepPollMultishot(a.fd, a.c) }},
	{"PrepPollRemove", OpPollRemove, false, func(s *SQE, a *fuzzArgs) { s.PrepPollRemove(a.a) }},
	{"PrepOpenat", OpOpenat, false, func(s *SQE, a *fuzzArgs) { s.PrepOpenat(a.fd, pick(a, fuzzPath), a.c, a.d) }},
	{"PrepClose", OpClose, false, func(s *SQE, a *fuzzArgs) { s.PrepClose(a.fd) }},
	{"PrepStatx", OpStatx, false, func(s *SQE, a *fuzzArgs) {
		s.PrepStatx(a.fd, pick(a, fuzzPath), a.c, a.d, pick(a, fuzzStatx))
	}},
	{"PrepSplice", OpSplice, false, func(s *SQE, a *fuzzArgs) {
		s.PrepSplice(a.fd, int64(a.a), a.fd2, int64(a.b), a.c, a.d)
	}},
	{"PrepAccept", OpAccept, false, func(s *SQE, a *fuzzArgs) {
		s.PrepAccept(a.fd, pick(a, fuzzSA), pick(a, fuzzSALen), a.d)
	}},
	{"PrepConnect", OpConnect, false, func(s *SQE, a *fuzzArgs) { s.PrepConnect(a.fd, pick(a, fuzzSA), a.c) }},
	{"PrepSend", OpSend, true, func(s *SQE, a *fuzzArgs) { s.PrepSend(a.fd, a.buf, a.d) }},
	{"PrepRecv", OpRecv, true, func(s *SQE, a *fuzzArgs) { s.PrepRecv(a.fd, a.buf, a.d) }},
	{"PrepShutdown", OpShutdown, false, func(s *SQE, a *fuzzArgs) { s.PrepShutdown(a.fd, a.c) }},
	{"PrepMsgRing", OpMsgRing, false, func(s *SQE, a *fuzzArgs) { s.PrepMsgRing(a.fd, a.c, a.a, a.d) }},
	{"PrepUnlinkat", OpUnlinkat, false, func(s *SQE, a *fuzzArgs) { s.PrepUnlinkat(a.fd, pick(a, fuzzPath), a.d) }},
	{"PrepRenameat", OpRenameat, false, func(s *SQE, a *fuzzArgs) {
		s.PrepRenameat(a.fd, pick(a, fuzzPath), a.fd2, pick(a, fuzzPath), a.d)
	}},
	{"PrepMkdirat", OpMkdirat, false, func(s *SQE, a *fuzzArgs) { s.PrepMkdirat(a.fd, pick(a, fuzzPath), a.c) }},
	{"PrepSymlinkat", OpSymlinkat, false, func(s *SQE, a *fuzzArgs) {
		s.PrepSymlinkat(pick(a, fuzzPath), a.fd, pick(a, fuzzPath))
	}},
	{"PrepLinkat", OpLinkat, false, func(s *SQE, a *fuzzArgs) {
		s.PrepLinkat(a.fd, pick(a, fuzzPath), a.fd2, pick(a, fuzzPath), a.d)
	}},
	{"PrepFtruncate", OpFtruncate, false, func(s *SQE, a *fuzzArgs) { s.PrepFtruncate(a.fd, a.a) }},
	{"PrepReadMultishot", OpReadMultishot, false, func(s *SQE, a *fuzzArgs) {
		s.PrepReadMultishot(a.fd, a.c, a.a, a.idx)
	}},
}

// FuzzPrep drives every Prep with arbitrary arguments over a dirty slot:
// none may panic or touch UserData, each must write its own opcode and
// clear the pad, and buffer preps must describe exactly the buffer given.
func FuzzPrep(f *testing.F) {
	f.Add(uint8(1), int32(3), int32(4), uint64(0), uint64(0), uint32(0), uint32(0), uint16(0), uint16(16), true, uint64(sentinel))
	f.Add(uint8(255), int32(-1), int32(-1), ^uint64(0), uint64(1)<<63, ^uint32(0), uint32(1)<<31, ^uint16(0), uint16(0), false, uint64(0))
	f.Fuzz(func(t *testing.T, sel uint8, fd, fd2 int32, a, b uint64, c, d uint32, idx, bufLen uint16, ptrs bool, ud uint64) {
		p := fuzzPreps[int(sel)%len(fuzzPreps)]
		args := &fuzzArgs{fd: fd, fd2: fd2, a: a, b: b, c: c, d: d, idx: idx, buf: make([]byte, bufLen), ptrs: ptrs}
		s := dirty()
		s.UserData = ud
		p.run(s, args)
		if s.UserData != ud {
			t.Fatalf("%s changed UserData %#x to %#x", p.name, ud, s.UserData)
		}
		if s.Opcode != p.op {
			t.Fatalf("%s wrote opcode %s, want %s", p.name, OpName(s.Opcode), OpName(p.op))
		}
		if pad := (*[Size]byte)(unsafe.Pointer(s))[56:]; [8]byte(pad) != [8]byte{} {
			t.Fatalf("%s left pad % x", p.name, pad)
		}
		if p.usesBuf {
			want := uint64(0)
			if bufLen > 0 {
				want = uint64(uintptr(unsafe.Pointer(&args.buf[0])))
			}
			if s.Addr != want || s.Len != uint32(bufLen) {
				t.Fatalf("%s: Addr %#x Len %d for a %d-byte buffer at %#x", p.name, s.Addr, s.Len, bufLen, want)
			}
		}
	})
}
