package sqe

import (
	"fmt"
	"math"
	"reflect"
	"strings"
	"testing"
	"unsafe"

	"golang.org/x/sys/unix"
)

const sentinel = 0x5eed_cafe_f00d_beef

// dirty returns an SQE whose every byte is non-zero, as a slot is after an
// earlier request, with UserData set to sentinel.
func dirty() *SQE {
	s := new(SQE)
	b := (*[Size]byte)(unsafe.Pointer(s))
	for i := range b {
		b[i] = byte(0xa5 ^ i)
	}
	s.UserData = sentinel
	return s
}

func addr[T any](p *T) uint64 { return uint64(uintptr(unsafe.Pointer(p))) }

// pollWant is the poll32_events value the kernel expects for mask here.
func pollWant(mask uint32) uint32 {
	one := uint16(1)
	if *(*byte)(unsafe.Pointer(&one)) == 0 { // big-endian
		return mask<<16 | mask>>16
	}
	return mask
}

// diff describes every field in which got differs from want, including the
// trailing pad, which Prep must zero.
func diff(got, want *SQE) string {
	var out []string
	gv, wv := reflect.ValueOf(got).Elem(), reflect.ValueOf(want).Elem()
	for i := 0; i < gv.NumField(); i++ {
		name := gv.Type().Field(i).Name
		if name == "_" {
			continue
		}
		if g, w := gv.Field(i).Interface(), wv.Field(i).Interface(); g != w {
			out = append(out, fmt.Sprintf("%s = %#x, want %#x", name, g, w))
		}
	}
	gb, wb := (*[Size]byte)(unsafe.Pointer(got)), (*[Size]byte)(unsafe.Pointer(want))
	if [8]byte(gb[56:]) != [8]byte(wb[56:]) {
		out = append(out, fmt.Sprintf("pad = % x, want % x", gb[56:], wb[56:]))
	}
	return strings.Join(out, "; ")
}

type prepCase struct {
	name string // the Prep method exercised
	prep func(*SQE)
	want SQE // UserData is filled in with sentinel
}

func prepCases() []prepCase {
	buf := make([]byte, 4096)
	iovs := []unix.Iovec{{Base: &buf[0], Len: 10}, {Base: &buf[10], Len: 20}}
	path, _ := unix.BytePtrFromString("/tmp/x")
	path2, _ := unix.BytePtrFromString("/tmp/y")
	ts := &unix.Timespec{Sec: 1, Nsec: 2}
	st := new(unix.Statx_t)
	sa := new(unix.RawSockaddrAny)
	saLen := new(uint32)
	b0 := addr(&buf[0])
	const cwd = unix.AT_FDCWD
	return []prepCase{
		{"PrepNop", func(s *SQE) { s.PrepNop() }, SQE{Opcode: OpNop, Fd: -1}},
		{"PrepRead", func(s *SQE) { s.PrepRead(5, buf, 4096) },
			SQE{Opcode: OpRead, Fd: 5, Off: 4096, Addr: b0, Len: 4096}},
		{"PrepWrite", func(s *SQE) { s.PrepWrite(math.MaxInt32, buf[:7], math.MaxUint64) },
			SQE{Opcode: OpWrite, Fd: math.MaxInt32, Off: math.MaxUint64, Addr: b0, Len: 7}},
		{"PrepReadv", func(s *SQE) { s.PrepReadv(3, iovs, 1<<40) },
			SQE{Opcode: OpReadv, Fd: 3, Off: 1 << 40, Addr: addr(&iovs[0]), Len: 2}},
		{"PrepWritev", func(s *SQE) { s.PrepWritev(-7, iovs[1:], 0) },
			SQE{Opcode: OpWritev, Fd: -7, Addr: addr(&iovs[1]), Len: 1}},
		{"PrepReadFixed", func(s *SQE) { s.PrepReadFixed(3, buf[1:5], 9, math.MaxUint16) },
			SQE{Opcode: OpReadFixed, Fd: 3, Off: 9, Addr: b0 + 1, Len: 4, BufIndex: math.MaxUint16}},
		{"PrepWriteFixed", func(s *SQE) { s.PrepWriteFixed(3, buf, 0, 2) },
			SQE{Opcode: OpWriteFixed, Fd: 3, Addr: b0, Len: 4096, BufIndex: 2}},
		{"PrepFsync", func(s *SQE) { s.PrepFsync(3, FsyncDatasync) },
			SQE{Opcode: OpFsync, Fd: 3, OpFlags: 1}},
		{"PrepSyncFileRange", func(s *SQE) { s.PrepSyncFileRange(3, 100, 200, unix.SYNC_FILE_RANGE_WRITE) },
			SQE{Opcode: OpSyncFileRange, Fd: 3, Len: 100, Off: 200, OpFlags: unix.SYNC_FILE_RANGE_WRITE}},
		{"PrepFallocate", func(s *SQE) { s.PrepFallocate(3, unix.FALLOC_FL_KEEP_SIZE, 10, math.MaxUint64) },
			SQE{Opcode: OpFallocate, Fd: 3, Len: unix.FALLOC_FL_KEEP_SIZE, Off: 10, Addr: math.MaxUint64}},
		{"PrepFadvise", func(s *SQE) { s.PrepFadvise(3, 10, math.MaxUint32, unix.FADV_DONTNEED) },
			SQE{Opcode: OpFadvise, Fd: 3, Off: 10, Len: math.MaxUint32, OpFlags: unix.FADV_DONTNEED}},
		{"PrepTimeout", func(s *SQE) { s.PrepTimeout(ts, 3, TimeoutAbs|TimeoutBoottime) },
			SQE{Opcode: OpTimeout, Fd: -1, Addr: addr(ts), Len: 1, Off: 3, OpFlags: 5}},
		{"PrepLinkTimeout", func(s *SQE) { s.PrepLinkTimeout(ts, 0) },
			SQE{Opcode: OpLinkTimeout, Fd: -1, Addr: addr(ts), Len: 1}},
		{"PrepTimeoutRemove", func(s *SQE) { s.PrepTimeoutRemove(77, TimeoutUpdate) },
			SQE{Opcode: OpTimeoutRemove, Fd: -1, Addr: 77, OpFlags: 2}},
		{"PrepCancel64", func(s *SQE) { s.PrepCancel64(math.MaxUint64, AsyncCancelAll) },
			SQE{Opcode: OpAsyncCancel, Fd: -1, Addr: math.MaxUint64, OpFlags: 1}},
		{"PrepCancelFd", func(s *SQE) { s.PrepCancelFd(4, AsyncCancelAll) },
			SQE{Opcode: OpAsyncCancel, Fd: 4, OpFlags: 3}},
		{"PrepPollAdd", func(s *SQE) { s.PrepPollAdd(4, unix.POLLIN|unix.POLLOUT) },
			SQE{Opcode: OpPollAdd, Fd: 4, OpFlags: pollWant(unix.POLLIN | unix.POLLOUT)}},
		{"PrepPollMultishot", func(s *SQE) { s.PrepPollMultishot(4, unix.POLLIN) },
			SQE{Opcode: OpPollAdd, Fd: 4, Len: PollAddMulti, OpFlags: pollWant(unix.POLLIN)}},
		{"PrepPollRemove", func(s *SQE) { s.PrepPollRemove(99) },
			SQE{Opcode: OpPollRemove, Fd: -1, Addr: 99}},
		{"PrepOpenat", func(s *SQE) { s.PrepOpenat(cwd, path, unix.O_RDONLY|unix.O_CLOEXEC, 0o644) },
			SQE{Opcode: OpOpenat, Fd: cwd, Addr: addr(path), Len: 0o644, OpFlags: unix.O_CLOEXEC}},
		{"PrepClose", func(s *SQE) { s.PrepClose(4) }, SQE{Opcode: OpClose, Fd: 4}},
		{"PrepStatx", func(s *SQE) { s.PrepStatx(9, path, unix.AT_SYMLINK_NOFOLLOW, unix.STATX_SIZE, st) },
			SQE{Opcode: OpStatx, Fd: 9, Addr: addr(path), Len: unix.STATX_SIZE, Off: addr(st), OpFlags: unix.AT_SYMLINK_NOFOLLOW}},
		{"PrepSplice", func(s *SQE) { s.PrepSplice(3, -1, 4, 100, 4096, SpliceFFdInFixed) },
			SQE{Opcode: OpSplice, Fd: 4, Off: 100, Addr: math.MaxUint64, Len: 4096, SpliceFdIn: 3, OpFlags: 1 << 31}},
		{"PrepAccept", func(s *SQE) { s.PrepAccept(3, sa, saLen, unix.SOCK_CLOEXEC) },
			SQE{Opcode: OpAccept, Fd: 3, Addr: addr(sa), Off: addr(saLen), OpFlags: unix.SOCK_CLOEXEC}},
		{"PrepConnect", func(s *SQE) { s.PrepConnect(3, sa, unix.SizeofSockaddrInet4) },
			SQE{Opcode: OpConnect, Fd: 3, Addr: addr(sa), Off: unix.SizeofSockaddrInet4}},
		{"PrepSend", func(s *SQE) { s.PrepSend(3, buf[:100], unix.MSG_NOSIGNAL) },
			SQE{Opcode: OpSend, Fd: 3, Addr: b0, Len: 100, OpFlags: unix.MSG_NOSIGNAL}},
		{"PrepRecv", func(s *SQE) { s.PrepRecv(3, buf, unix.MSG_WAITALL) },
			SQE{Opcode: OpRecv, Fd: 3, Addr: b0, Len: 4096, OpFlags: unix.MSG_WAITALL}},
		{"PrepShutdown", func(s *SQE) { s.PrepShutdown(3, unix.SHUT_WR) },
			SQE{Opcode: OpShutdown, Fd: 3, Len: unix.SHUT_WR}},
		{"PrepMsgRing", func(s *SQE) { s.PrepMsgRing(5, 42, 0xabc, MsgRingCQESkip) },
			SQE{Opcode: OpMsgRing, Fd: 5, Len: 42, Off: 0xabc, OpFlags: 1}},
		{"PrepUnlinkat", func(s *SQE) { s.PrepUnlinkat(cwd, path, unix.AT_REMOVEDIR) },
			SQE{Opcode: OpUnlinkat, Fd: cwd, Addr: addr(path), OpFlags: unix.AT_REMOVEDIR}},
		{"PrepRenameat", func(s *SQE) { s.PrepRenameat(cwd, path, 8, path2, unix.RENAME_NOREPLACE) },
			SQE{Opcode: OpRenameat, Fd: cwd, Addr: addr(path), Len: 8, Off: addr(path2), OpFlags: unix.RENAME_NOREPLACE}},
		{"PrepMkdirat", func(s *SQE) { s.PrepMkdirat(cwd, path, 0o755) },
			SQE{Opcode: OpMkdirat, Fd: cwd, Addr: addr(path), Len: 0o755}},
		{"PrepSymlinkat", func(s *SQE) { s.PrepSymlinkat(path, 8, path2) },
			SQE{Opcode: OpSymlinkat, Fd: 8, Addr: addr(path), Off: addr(path2)}},
		{"PrepLinkat", func(s *SQE) { s.PrepLinkat(cwd, path, 8, path2, unix.AT_SYMLINK_FOLLOW) },
			SQE{Opcode: OpLinkat, Fd: cwd, Addr: addr(path), Len: 8, Off: addr(path2), OpFlags: unix.AT_SYMLINK_FOLLOW}},
		{"PrepFtruncate", func(s *SQE) { s.PrepFtruncate(3, 1<<40) },
			SQE{Opcode: OpFtruncate, Fd: 3, Off: 1 << 40}},
		{"PrepReadMultishot", func(s *SQE) { s.PrepReadMultishot(3, 0, math.MaxUint64, 7) },
			SQE{Opcode: OpReadMultishot, Flags: BufferSelect, Fd: 3, Off: math.MaxUint64, BufIndex: 7}},
	}
}

func TestPrepFields(t *testing.T) {
	for _, c := range prepCases() {
		s := dirty()
		c.prep(s)
		c.want.UserData = sentinel
		if d := diff(s, &c.want); d != "" {
			t.Errorf("%s: %s", c.name, d)
		}
	}
}

// Every Prep method must have a field test, or a new one could go
// untested; the fuzz target's table is held to the same rule.
func TestEveryPrepIsCovered(t *testing.T) {
	tested := map[string]bool{}
	for _, c := range prepCases() {
		tested[c.name] = true
	}
	fuzzed := map[string]bool{}
	for _, p := range fuzzPreps {
		fuzzed[p.name] = true
	}
	typ := reflect.TypeFor[*SQE]()
	n := 0
	for i := 0; i < typ.NumMethod(); i++ {
		name := typ.Method(i).Name
		if !strings.HasPrefix(name, "Prep") {
			continue
		}
		n++
		if !tested[name] {
			t.Errorf("%s has no case in prepCases", name)
		}
		if !fuzzed[name] {
			t.Errorf("%s has no entry in fuzzPreps", name)
		}
	}
	if n < 34 {
		t.Errorf("found %d Prep methods, want at least 34", n)
	}
}

func TestEmptyBuffers(t *testing.T) {
	nonEmpty := make([]byte, 8)
	for _, buf := range [][]byte{nil, {}, nonEmpty[:0], nonEmpty[8:]} {
		for name, prep := range map[string]func(*SQE){
			"PrepRead":       func(s *SQE) { s.PrepRead(3, buf, 1) },
			"PrepWrite":      func(s *SQE) { s.PrepWrite(3, buf, 1) },
			"PrepReadFixed":  func(s *SQE) { s.PrepReadFixed(3, buf, 1, 1) },
			"PrepWriteFixed": func(s *SQE) { s.PrepWriteFixed(3, buf, 1, 1) },
			"PrepSend":       func(s *SQE) { s.PrepSend(3, buf, 0) },
			"PrepRecv":       func(s *SQE) { s.PrepRecv(3, buf, 0) },
		} {
			s := dirty()
			prep(s)
			if s.Addr != 0 || s.Len != 0 || s.UserData != sentinel {
				t.Errorf("%s(len %d, nil %v): Addr %#x Len %d UserData %#x, want 0 0 %#x",
					name, len(buf), buf == nil, s.Addr, s.Len, s.UserData, uint64(sentinel))
			}
		}
	}
	for _, iovs := range [][]unix.Iovec{nil, {}} {
		s := dirty()
		s.PrepReadv(3, iovs, 0)
		if s.Addr != 0 || s.Len != 0 {
			t.Errorf("PrepReadv(empty): Addr %#x Len %d, want 0 0", s.Addr, s.Len)
		}
		s.PrepWritev(3, iovs, 0)
		if s.Addr != 0 || s.Len != 0 {
			t.Errorf("PrepWritev(empty): Addr %#x Len %d, want 0 0", s.Addr, s.Len)
		}
	}
}

// UserData may be set before Prep (the runtime does so when it claims a
// slot): no Prep may touch it, whatever the slot held.
func TestUserDataUntouched(t *testing.T) {
	for _, c := range prepCases() {
		for _, ud := range []uint64{0, 1, sentinel, math.MaxUint64} {
			s := dirty()
			s.UserData = ud
			c.prep(s)
			if s.UserData != ud {
				t.Errorf("%s changed UserData %#x to %#x", c.name, ud, s.UserData)
			}
		}
	}
}
