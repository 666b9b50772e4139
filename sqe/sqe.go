// Package sqe encodes io_uring submission queue entries byte-exact with the
// kernel's struct io_uring_sqe, with one Prep method per opcode mirroring
// liburing's io_uring_prep_* helpers.
//
// Every Prep writes all 64 bytes except UserData, with the values liburing
// 2.3 writes (an oracle test behind the liburing build tag compares them
// byte for byte), so an SQE slot can be reused without clearing it first and
// UserData may be set before or after the Prep call.
//
// Buffers, paths and other pointers end up in the SQE as plain integers that
// neither the garbage collector nor escape analysis sees: the caller keeps
// that memory reachable and at a fixed address until the request's CQE
// arrives, since the kernel may read or write it any time before. Pinning it
// with runtime.Pinner does both (and moves it off a goroutine stack, which
// can be relocated).
//
// Byte slices longer than math.MaxUint32 are clamped to MaxUint32 bytes
// (where liburing's cast would keep only the low 32 bits), because Len is 32
// bits wide: the kernel then transfers at most that much and the caller
// continues with the rest, as after any short read or write.
package sqe

import "unsafe"

// SQE is the kernel's struct io_uring_sqe (64 bytes). Unions are named after
// their most common member: Off is also addr2/cmd_op, OpFlags is rw_flags,
// fsync_flags, timeout_flags and the rest, BufIndex is also buf_group,
// SpliceFdIn is also file_index/addr_len.
type SQE struct {
	Opcode      uint8
	Flags       uint8
	IoPrio      uint16
	Fd          int32
	Off         uint64
	Addr        uint64
	Len         uint32
	OpFlags     uint32
	UserData    uint64
	BufIndex    uint16
	Personality uint16
	SpliceFdIn  int32
	Addr3       uint64
	_           [1]uint64
}

// Size is the size of an SQE in the kernel ABI (without IORING_SETUP_SQE128).
const Size = 64

// The kernel reads SQEs as raw memory: a layout drift would corrupt every request.
var _ [Size - unsafe.Sizeof(SQE{})]struct{}
var _ [unsafe.Sizeof(SQE{}) - Size]struct{}
