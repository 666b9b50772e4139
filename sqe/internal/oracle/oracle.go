//go:build liburing

// Package oracle runs liburing's own io_uring_prep_* helpers (static inline
// in liburing 2.3's header, so nothing is linked) on a caller's 64-byte
// buffer, as the reference the sqe package's encoder is tested against.
// cgo may not appear in _test.go files, hence this package; without the
// liburing build tag it compiles to nothing and needs no C toolchain.
package oracle

/*
#include <stddef.h>
#include <liburing.h>

// The wrappers take every pointer as a uintptr_t: C only stores the number
// in the SQE, exactly as the Go encoder does, and Go's cgo pointer checks
// stay out of the way of addresses that point into Go memory.
#define SQE(p) ((struct io_uring_sqe *)(p))
#define PTR(a) ((void *)(uintptr_t)(a))

static void w_nop(void *s) { io_uring_prep_nop(SQE(s)); }
static void w_read(void *s, int fd, uintptr_t buf, unsigned n, __u64 off) { io_uring_prep_read(SQE(s), fd, PTR(buf), n, off); }
static void w_write(void *s, int fd, uintptr_t buf, unsigned n, __u64 off) { io_uring_prep_write(SQE(s), fd, PTR(buf), n, off); }
static void w_readv(void *s, int fd, uintptr_t iov, unsigned n, __u64 off) { io_uring_prep_readv(SQE(s), fd, PTR(iov), n, off); }
static void w_writev(void *s, int fd, uintptr_t iov, unsigned n, __u64 off) { io_uring_prep_writev(SQE(s), fd, PTR(iov), n, off); }
static void w_read_fixed(void *s, int fd, uintptr_t buf, unsigned n, __u64 off, int idx) { io_uring_prep_read_fixed(SQE(s), fd, PTR(buf), n, off, idx); }
static void w_write_fixed(void *s, int fd, uintptr_t buf, unsigned n, __u64 off, int idx) { io_uring_prep_write_fixed(SQE(s), fd, PTR(buf), n, off, idx); }
static void w_fsync(void *s, int fd, unsigned flags) { io_uring_prep_fsync(SQE(s), fd, flags); }
static void w_sync_file_range(void *s, int fd, unsigned n, __u64 off, int flags) { io_uring_prep_sync_file_range(SQE(s), fd, n, off, flags); }
static void w_fallocate(void *s, int fd, int mode, off_t off, off_t n) { io_uring_prep_fallocate(SQE(s), fd, mode, off, n); }
static void w_fadvise(void *s, int fd, __u64 off, off_t n, int advice) { io_uring_prep_fadvise(SQE(s), fd, off, n, advice); }
static void w_timeout(void *s, uintptr_t ts, unsigned count, unsigned flags) { io_uring_prep_timeout(SQE(s), PTR(ts), count, flags); }
static void w_link_timeout(void *s, uintptr_t ts, unsigned flags) { io_uring_prep_link_timeout(SQE(s), PTR(ts), flags); }
static void w_timeout_remove(void *s, __u64 ud, unsigned flags) { io_uring_prep_timeout_remove(SQE(s), ud, flags); }
static void w_cancel64(void *s, __u64 ud, int flags) { io_uring_prep_cancel64(SQE(s), ud, flags); }
static void w_cancel_fd(void *s, int fd, unsigned flags) { io_uring_prep_cancel_fd(SQE(s), fd, flags); }
static void w_poll_add(void *s, int fd, unsigned mask) { io_uring_prep_poll_add(SQE(s), fd, mask); }
static void w_poll_multishot(void *s, int fd, unsigned mask) { io_uring_prep_poll_multishot(SQE(s), fd, mask); }
static void w_poll_remove(void *s, __u64 ud) { io_uring_prep_poll_remove(SQE(s), ud); }
static void w_openat(void *s, int dfd, uintptr_t path, int flags, mode_t mode) { io_uring_prep_openat(SQE(s), dfd, PTR(path), flags, mode); }
static void w_close(void *s, int fd) { io_uring_prep_close(SQE(s), fd); }
static void w_statx(void *s, int dfd, uintptr_t path, int flags, unsigned mask, uintptr_t st) { io_uring_prep_statx(SQE(s), dfd, PTR(path), flags, mask, PTR(st)); }
static void w_splice(void *s, int fdin, int64_t offin, int fdout, int64_t offout, unsigned n, unsigned flags) { io_uring_prep_splice(SQE(s), fdin, offin, fdout, offout, n, flags); }
static void w_accept(void *s, int fd, uintptr_t addr, uintptr_t addrlen, int flags) { io_uring_prep_accept(SQE(s), fd, PTR(addr), PTR(addrlen), flags); }
static void w_connect(void *s, int fd, uintptr_t addr, socklen_t addrlen) { io_uring_prep_connect(SQE(s), fd, PTR(addr), addrlen); }
static void w_send(void *s, int fd, uintptr_t buf, size_t n, int flags) { io_uring_prep_send(SQE(s), fd, PTR(buf), n, flags); }
static void w_recv(void *s, int fd, uintptr_t buf, size_t n, int flags) { io_uring_prep_recv(SQE(s), fd, PTR(buf), n, flags); }
static void w_shutdown(void *s, int fd, int how) { io_uring_prep_shutdown(SQE(s), fd, how); }
static void w_msg_ring(void *s, int fd, unsigned n, __u64 data, unsigned flags) { io_uring_prep_msg_ring(SQE(s), fd, n, data, flags); }
static void w_unlinkat(void *s, int dfd, uintptr_t path, int flags) { io_uring_prep_unlinkat(SQE(s), dfd, PTR(path), flags); }
static void w_renameat(void *s, int odfd, uintptr_t opath, int ndfd, uintptr_t npath, unsigned flags) { io_uring_prep_renameat(SQE(s), odfd, PTR(opath), ndfd, PTR(npath), flags); }
static void w_mkdirat(void *s, int dfd, uintptr_t path, mode_t mode) { io_uring_prep_mkdirat(SQE(s), dfd, PTR(path), mode); }
static void w_symlinkat(void *s, uintptr_t target, int ndfd, uintptr_t link) { io_uring_prep_symlinkat(SQE(s), PTR(target), ndfd, PTR(link)); }
static void w_linkat(void *s, int odfd, uintptr_t opath, int ndfd, uintptr_t npath, int flags) { io_uring_prep_linkat(SQE(s), odfd, PTR(opath), ndfd, PTR(npath), flags); }

enum {
	OFF_opcode = offsetof(struct io_uring_sqe, opcode),
	OFF_flags = offsetof(struct io_uring_sqe, flags),
	OFF_ioprio = offsetof(struct io_uring_sqe, ioprio),
	OFF_fd = offsetof(struct io_uring_sqe, fd),
	OFF_off = offsetof(struct io_uring_sqe, off),
	OFF_addr = offsetof(struct io_uring_sqe, addr),
	OFF_len = offsetof(struct io_uring_sqe, len),
	OFF_rw_flags = offsetof(struct io_uring_sqe, rw_flags),
	OFF_user_data = offsetof(struct io_uring_sqe, user_data),
	OFF_buf_index = offsetof(struct io_uring_sqe, buf_index),
	OFF_personality = offsetof(struct io_uring_sqe, personality),
	OFF_splice_fd_in = offsetof(struct io_uring_sqe, splice_fd_in),
	OFF_addr3 = offsetof(struct io_uring_sqe, addr3),
	OFF___pad2 = offsetof(struct io_uring_sqe, __pad2),
};

static size_t sqe_size(void) { return sizeof(struct io_uring_sqe); }
static size_t cqe_size(void) { return sizeof(struct io_uring_cqe); }
*/
import "C"

import "unsafe"

// SQE is the raw storage the wrappers prep into.
type SQE = [64]byte

func p(s *SQE) unsafe.Pointer { return unsafe.Pointer(s) }

// Each function below calls the liburing helper of the same name with its
// arguments converted to the helper's C parameter types.

func Nop(s *SQE) { C.w_nop(p(s)) }
func Read(s *SQE, fd int32, buf uintptr, n uint32, off uint64) {
	C.w_read(p(s), C.int(fd), C.uintptr_t(buf), C.unsigned(n), C.__u64(off))
}
func Write(s *SQE, fd int32, buf uintptr, n uint32, off uint64) {
	C.w_write(p(s), C.int(fd), C.uintptr_t(buf), C.unsigned(n), C.__u64(off))
}
func Readv(s *SQE, fd int32, iov uintptr, n uint32, off uint64) {
	C.w_readv(p(s), C.int(fd), C.uintptr_t(iov), C.unsigned(n), C.__u64(off))
}
func Writev(s *SQE, fd int32, iov uintptr, n uint32, off uint64) {
	C.w_writev(p(s), C.int(fd), C.uintptr_t(iov), C.unsigned(n), C.__u64(off))
}
func ReadFixed(s *SQE, fd int32, buf uintptr, n uint32, off uint64, idx int32) {
	C.w_read_fixed(p(s), C.int(fd), C.uintptr_t(buf), C.unsigned(n), C.__u64(off), C.int(idx))
}
func WriteFixed(s *SQE, fd int32, buf uintptr, n uint32, off uint64, idx int32) {
	C.w_write_fixed(p(s), C.int(fd), C.uintptr_t(buf), C.unsigned(n), C.__u64(off), C.int(idx))
}
func Fsync(s *SQE, fd int32, flags uint32) { C.w_fsync(p(s), C.int(fd), C.unsigned(flags)) }
func SyncFileRange(s *SQE, fd int32, n uint32, off uint64, flags int32) {
	C.w_sync_file_range(p(s), C.int(fd), C.unsigned(n), C.__u64(off), C.int(flags))
}
func Fallocate(s *SQE, fd int32, mode int32, off, n int64) {
	C.w_fallocate(p(s), C.int(fd), C.int(mode), C.off_t(off), C.off_t(n))
}
func Fadvise(s *SQE, fd int32, off uint64, n int64, advice int32) {
	C.w_fadvise(p(s), C.int(fd), C.__u64(off), C.off_t(n), C.int(advice))
}
func Timeout(s *SQE, ts uintptr, count, flags uint32) {
	C.w_timeout(p(s), C.uintptr_t(ts), C.unsigned(count), C.unsigned(flags))
}
func LinkTimeout(s *SQE, ts uintptr, flags uint32) {
	C.w_link_timeout(p(s), C.uintptr_t(ts), C.unsigned(flags))
}
func TimeoutRemove(s *SQE, ud uint64, flags uint32) {
	C.w_timeout_remove(p(s), C.__u64(ud), C.unsigned(flags))
}
func Cancel64(s *SQE, ud uint64, flags int32) { C.w_cancel64(p(s), C.__u64(ud), C.int(flags)) }
func CancelFd(s *SQE, fd int32, flags uint32) { C.w_cancel_fd(p(s), C.int(fd), C.unsigned(flags)) }
func PollAdd(s *SQE, fd int32, mask uint32)   { C.w_poll_add(p(s), C.int(fd), C.unsigned(mask)) }
func PollMultishot(s *SQE, fd int32, mask uint32) {
	C.w_poll_multishot(p(s), C.int(fd), C.unsigned(mask))
}
func PollRemove(s *SQE, ud uint64) { C.w_poll_remove(p(s), C.__u64(ud)) }
func Openat(s *SQE, dfd int32, path uintptr, flags int32, mode uint32) {
	C.w_openat(p(s), C.int(dfd), C.uintptr_t(path), C.int(flags), C.mode_t(mode))
}
func Close(s *SQE, fd int32) { C.w_close(p(s), C.int(fd)) }
func Statx(s *SQE, dfd int32, path uintptr, flags int32, mask uint32, st uintptr) {
	C.w_statx(p(s), C.int(dfd), C.uintptr_t(path), C.int(flags), C.unsigned(mask), C.uintptr_t(st))
}
func Splice(s *SQE, fdIn int32, offIn int64, fdOut int32, offOut int64, n, flags uint32) {
	C.w_splice(p(s), C.int(fdIn), C.int64_t(offIn), C.int(fdOut), C.int64_t(offOut), C.unsigned(n), C.unsigned(flags))
}
func Accept(s *SQE, fd int32, addr, addrLen uintptr, flags int32) {
	C.w_accept(p(s), C.int(fd), C.uintptr_t(addr), C.uintptr_t(addrLen), C.int(flags))
}
func Connect(s *SQE, fd int32, addr uintptr, addrLen uint32) {
	C.w_connect(p(s), C.int(fd), C.uintptr_t(addr), C.socklen_t(addrLen))
}
func Send(s *SQE, fd int32, buf uintptr, n uint64, flags int32) {
	C.w_send(p(s), C.int(fd), C.uintptr_t(buf), C.size_t(n), C.int(flags))
}
func Recv(s *SQE, fd int32, buf uintptr, n uint64, flags int32) {
	C.w_recv(p(s), C.int(fd), C.uintptr_t(buf), C.size_t(n), C.int(flags))
}
func Shutdown(s *SQE, fd int32, how int32) { C.w_shutdown(p(s), C.int(fd), C.int(how)) }
func MsgRing(s *SQE, fd int32, n uint32, data uint64, flags uint32) {
	C.w_msg_ring(p(s), C.int(fd), C.unsigned(n), C.__u64(data), C.unsigned(flags))
}
func Unlinkat(s *SQE, dfd int32, path uintptr, flags int32) {
	C.w_unlinkat(p(s), C.int(dfd), C.uintptr_t(path), C.int(flags))
}
func Renameat(s *SQE, oldDfd int32, oldPath uintptr, newDfd int32, newPath uintptr, flags uint32) {
	C.w_renameat(p(s), C.int(oldDfd), C.uintptr_t(oldPath), C.int(newDfd), C.uintptr_t(newPath), C.unsigned(flags))
}
func Mkdirat(s *SQE, dfd int32, path uintptr, mode uint32) {
	C.w_mkdirat(p(s), C.int(dfd), C.uintptr_t(path), C.mode_t(mode))
}
func Symlinkat(s *SQE, target uintptr, newDfd int32, link uintptr) {
	C.w_symlinkat(p(s), C.uintptr_t(target), C.int(newDfd), C.uintptr_t(link))
}
func Linkat(s *SQE, oldDfd int32, oldPath uintptr, newDfd int32, newPath uintptr, flags int32) {
	C.w_linkat(p(s), C.int(oldDfd), C.uintptr_t(oldPath), C.int(newDfd), C.uintptr_t(newPath), C.int(flags))
}

// SQESize and CQESize are sizeof the header's structs.
func SQESize() int { return int(C.sqe_size()) }
func CQESize() int { return int(C.cqe_size()) }

// Consts holds the values liburing 2.3's copy of the kernel header gives the
// opcodes and flags, keyed by their C names. (It stops at SENDMSG_ZC: later
// opcodes and flags are not in that header.)
var Consts = map[string]uint64{
	// enum io_uring_op, by kernel name without IORING_OP_.
	"IORING_OP_NOP":             C.IORING_OP_NOP,
	"IORING_OP_READV":           C.IORING_OP_READV,
	"IORING_OP_WRITEV":          C.IORING_OP_WRITEV,
	"IORING_OP_FSYNC":           C.IORING_OP_FSYNC,
	"IORING_OP_READ_FIXED":      C.IORING_OP_READ_FIXED,
	"IORING_OP_WRITE_FIXED":     C.IORING_OP_WRITE_FIXED,
	"IORING_OP_POLL_ADD":        C.IORING_OP_POLL_ADD,
	"IORING_OP_POLL_REMOVE":     C.IORING_OP_POLL_REMOVE,
	"IORING_OP_SYNC_FILE_RANGE": C.IORING_OP_SYNC_FILE_RANGE,
	"IORING_OP_SENDMSG":         C.IORING_OP_SENDMSG,
	"IORING_OP_RECVMSG":         C.IORING_OP_RECVMSG,
	"IORING_OP_TIMEOUT":         C.IORING_OP_TIMEOUT,
	"IORING_OP_TIMEOUT_REMOVE":  C.IORING_OP_TIMEOUT_REMOVE,
	"IORING_OP_ACCEPT":          C.IORING_OP_ACCEPT,
	"IORING_OP_ASYNC_CANCEL":    C.IORING_OP_ASYNC_CANCEL,
	"IORING_OP_LINK_TIMEOUT":    C.IORING_OP_LINK_TIMEOUT,
	"IORING_OP_CONNECT":         C.IORING_OP_CONNECT,
	"IORING_OP_FALLOCATE":       C.IORING_OP_FALLOCATE,
	"IORING_OP_OPENAT":          C.IORING_OP_OPENAT,
	"IORING_OP_CLOSE":           C.IORING_OP_CLOSE,
	"IORING_OP_FILES_UPDATE":    C.IORING_OP_FILES_UPDATE,
	"IORING_OP_STATX":           C.IORING_OP_STATX,
	"IORING_OP_READ":            C.IORING_OP_READ,
	"IORING_OP_WRITE":           C.IORING_OP_WRITE,
	"IORING_OP_FADVISE":         C.IORING_OP_FADVISE,
	"IORING_OP_MADVISE":         C.IORING_OP_MADVISE,
	"IORING_OP_SEND":            C.IORING_OP_SEND,
	"IORING_OP_RECV":            C.IORING_OP_RECV,
	"IORING_OP_OPENAT2":         C.IORING_OP_OPENAT2,
	"IORING_OP_EPOLL_CTL":       C.IORING_OP_EPOLL_CTL,
	"IORING_OP_SPLICE":          C.IORING_OP_SPLICE,
	"IORING_OP_PROVIDE_BUFFERS": C.IORING_OP_PROVIDE_BUFFERS,
	"IORING_OP_REMOVE_BUFFERS":  C.IORING_OP_REMOVE_BUFFERS,
	"IORING_OP_TEE":             C.IORING_OP_TEE,
	"IORING_OP_SHUTDOWN":        C.IORING_OP_SHUTDOWN,
	"IORING_OP_RENAMEAT":        C.IORING_OP_RENAMEAT,
	"IORING_OP_UNLINKAT":        C.IORING_OP_UNLINKAT,
	"IORING_OP_MKDIRAT":         C.IORING_OP_MKDIRAT,
	"IORING_OP_SYMLINKAT":       C.IORING_OP_SYMLINKAT,
	"IORING_OP_LINKAT":          C.IORING_OP_LINKAT,
	"IORING_OP_MSG_RING":        C.IORING_OP_MSG_RING,
	"IORING_OP_FSETXATTR":       C.IORING_OP_FSETXATTR,
	"IORING_OP_SETXATTR":        C.IORING_OP_SETXATTR,
	"IORING_OP_FGETXATTR":       C.IORING_OP_FGETXATTR,
	"IORING_OP_GETXATTR":        C.IORING_OP_GETXATTR,
	"IORING_OP_SOCKET":          C.IORING_OP_SOCKET,
	"IORING_OP_URING_CMD":       C.IORING_OP_URING_CMD,
	"IORING_OP_SEND_ZC":         C.IORING_OP_SEND_ZC,
	"IORING_OP_SENDMSG_ZC":      C.IORING_OP_SENDMSG_ZC,
	// Flag macros and enums of liburing 2.3's io_uring.h.
	"IOSQE_FIXED_FILE":             C.IOSQE_FIXED_FILE,
	"IOSQE_IO_DRAIN":               C.IOSQE_IO_DRAIN,
	"IOSQE_IO_LINK":                C.IOSQE_IO_LINK,
	"IOSQE_IO_HARDLINK":            C.IOSQE_IO_HARDLINK,
	"IOSQE_ASYNC":                  C.IOSQE_ASYNC,
	"IOSQE_BUFFER_SELECT":          C.IOSQE_BUFFER_SELECT,
	"IOSQE_CQE_SKIP_SUCCESS":       C.IOSQE_CQE_SKIP_SUCCESS,
	"IORING_FSYNC_DATASYNC":        C.IORING_FSYNC_DATASYNC,
	"IORING_TIMEOUT_ABS":           C.IORING_TIMEOUT_ABS,
	"IORING_TIMEOUT_UPDATE":        C.IORING_TIMEOUT_UPDATE,
	"IORING_TIMEOUT_BOOTTIME":      C.IORING_TIMEOUT_BOOTTIME,
	"IORING_TIMEOUT_REALTIME":      C.IORING_TIMEOUT_REALTIME,
	"IORING_LINK_TIMEOUT_UPDATE":   C.IORING_LINK_TIMEOUT_UPDATE,
	"IORING_TIMEOUT_ETIME_SUCCESS": C.IORING_TIMEOUT_ETIME_SUCCESS,
	"IORING_TIMEOUT_CLOCK_MASK":    C.IORING_TIMEOUT_CLOCK_MASK,
	"IORING_TIMEOUT_UPDATE_MASK":   C.IORING_TIMEOUT_UPDATE_MASK,
	"SPLICE_F_FD_IN_FIXED":         C.SPLICE_F_FD_IN_FIXED,
	"IORING_POLL_ADD_MULTI":        C.IORING_POLL_ADD_MULTI,
	"IORING_POLL_UPDATE_EVENTS":    C.IORING_POLL_UPDATE_EVENTS,
	"IORING_POLL_UPDATE_USER_DATA": C.IORING_POLL_UPDATE_USER_DATA,
	"IORING_POLL_ADD_LEVEL":        C.IORING_POLL_ADD_LEVEL,
	"IORING_ASYNC_CANCEL_ALL":      C.IORING_ASYNC_CANCEL_ALL,
	"IORING_ASYNC_CANCEL_FD":       C.IORING_ASYNC_CANCEL_FD,
	"IORING_ASYNC_CANCEL_ANY":      C.IORING_ASYNC_CANCEL_ANY,
	"IORING_ASYNC_CANCEL_FD_FIXED": C.IORING_ASYNC_CANCEL_FD_FIXED,
	"IORING_RECVSEND_POLL_FIRST":   C.IORING_RECVSEND_POLL_FIRST,
	"IORING_RECV_MULTISHOT":        C.IORING_RECV_MULTISHOT,
	"IORING_RECVSEND_FIXED_BUF":    C.IORING_RECVSEND_FIXED_BUF,
	"IORING_ACCEPT_MULTISHOT":      C.IORING_ACCEPT_MULTISHOT,
	"IORING_MSG_DATA":              C.IORING_MSG_DATA,
	"IORING_MSG_SEND_FD":           C.IORING_MSG_SEND_FD,
	"IORING_MSG_RING_CQE_SKIP":     C.IORING_MSG_RING_CQE_SKIP,
	"IORING_FILE_INDEX_ALLOC":      C.IORING_FILE_INDEX_ALLOC,
	"IORING_CQE_F_BUFFER":          C.IORING_CQE_F_BUFFER,
	"IORING_CQE_F_MORE":            C.IORING_CQE_F_MORE,
	"IORING_CQE_F_SOCK_NONEMPTY":   C.IORING_CQE_F_SOCK_NONEMPTY,
	"IORING_CQE_F_NOTIF":           C.IORING_CQE_F_NOTIF,
	"IORING_CQE_BUFFER_SHIFT":      C.IORING_CQE_BUFFER_SHIFT,
}

// Offsets holds offsetof for the header's struct io_uring_sqe members,
// keyed by C member name.
var Offsets = map[string]uintptr{
	"opcode":       C.OFF_opcode,
	"flags":        C.OFF_flags,
	"ioprio":       C.OFF_ioprio,
	"fd":           C.OFF_fd,
	"off":          C.OFF_off,
	"addr":         C.OFF_addr,
	"len":          C.OFF_len,
	"rw_flags":     C.OFF_rw_flags,
	"user_data":    C.OFF_user_data,
	"buf_index":    C.OFF_buf_index,
	"personality":  C.OFF_personality,
	"splice_fd_in": C.OFF_splice_fd_in,
	"addr3":        C.OFF_addr3,
	"__pad2":       C.OFF___pad2,
}
