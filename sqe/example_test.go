package sqe_test

import (
	"fmt"
	"runtime"
	"unsafe"

	"github.com/ringwake/ringwake/sqe"
	"golang.org/x/sys/unix"
)

func ExampleSQE_PrepRead() {
	buf := make([]byte, 4096)
	// The kernel fills buf after submission: keep it in place until the CQE.
	var pin runtime.Pinner
	pin.Pin(&buf[0])
	defer pin.Unpin()

	var s sqe.SQE
	s.UserData = 7 // set by the runtime when it claims the slot; Prep keeps it
	s.PrepRead(3, buf, 8192)
	fmt.Println(sqe.OpName(s.Opcode), s.Fd, s.Off, s.Len, s.UserData)
	fmt.Println(s.Addr == uint64(uintptr(unsafe.Pointer(&buf[0]))))
	// Output:
	// READ 3 8192 4096 7
	// true
}

func ExampleSQE_PrepWrite() {
	var s sqe.SQE
	s.PrepWrite(4, []byte("log record\n"), ^uint64(0)) // ^0: at the file position, which advances
	s.Flags |= sqe.IOLink                              // the next SQE (say an fsync) waits for this one
	fmt.Println(sqe.OpName(s.Opcode), s.Fd, s.Len, s.Off == ^uint64(0), s.Flags == sqe.IOLink)
	// Output: WRITE 4 11 true true
}

func ExampleSQE_PrepWrite_empty() {
	var s sqe.SQE
	s.PrepWrite(4, nil, 0)
	fmt.Println(s.Addr, s.Len)
	// Output: 0 0
}

func ExampleSQE_PrepFsync() {
	var s sqe.SQE
	s.PrepFsync(4, sqe.FsyncDatasync)
	fmt.Println(sqe.OpName(s.Opcode), s.Fd, s.OpFlags)
	// Output: FSYNC 4 1
}

func ExampleSQE_PrepCancel64() {
	var s sqe.SQE
	s.PrepCancel64(42, sqe.AsyncCancelAll)
	fmt.Println(sqe.OpName(s.Opcode), s.Fd, s.Addr, s.OpFlags == sqe.AsyncCancelAll)
	// Output: ASYNC_CANCEL -1 42 true
}

func ExampleSQE_PrepTimeout() {
	ts := &unix.Timespec{Nsec: 5e6}
	var s sqe.SQE
	s.PrepTimeout(ts, 1, 0) // fires after 5ms or after one other completion
	fmt.Println(sqe.OpName(s.Opcode), s.Len, s.Off, s.Addr == uint64(uintptr(unsafe.Pointer(ts))))
	// Output: TIMEOUT 1 1 true
}

func ExampleOpName() {
	fmt.Println(sqe.OpName(sqe.OpWriteFixed), sqe.OpName(sqe.OpPipe), sqe.OpName(200))
	// Output: WRITE_FIXED PIPE op(200)
}
