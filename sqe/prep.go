package sqe

import (
	"math"
	"unsafe"

	"golang.org/x/sys/unix"
)

// ptr turns a pointer into the integer an SQE carries. The garbage collector
// no longer sees that reference: callers keep the memory alive until the CQE.
func ptr[T any](p *T) uint64 { return uint64(uintptr(unsafe.Pointer(p))) }

// sliceArgs returns the address of s's first element and len(s), or 0, 0 for
// an empty s: the kernel then never sees a dangling pointer with a zero
// length. Lengths above MaxUint32 are clamped, not truncated as liburing's
// (__u32) cast does, so an oversized buffer gives a short transfer the caller
// continues, never a tiny one that looks like corruption.
func sliceArgs[E any](s []E) (uint64, uint32) {
	if len(s) == 0 {
		return 0, 0
	}
	return ptr(unsafe.SliceData(s)), uint32(min(uint64(len(s)), math.MaxUint32))
}

// prepRW is liburing 2.3's io_uring_prep_rw: it writes every byte but
// UserData, including Addr3 and the trailing pad that some opcodes read, so a
// recycled SQE carries nothing over from its previous request. Field stores
// (not a composite literal, which the compiler builds on the stack and then
// copies) keep it at eight stores on amd64 and inlinable into every Prep.
func (s *SQE) prepRW(op uint8, fd int32, addr uint64, n uint32, off uint64) {
	s.Opcode, s.Flags, s.IoPrio, s.Fd = op, 0, 0, fd
	s.Off, s.Addr, s.Len, s.OpFlags = off, addr, n, 0
	*(*[3]uint64)(unsafe.Pointer(&s.BufIndex)) = [3]uint64{} // BufIndex to the end
}

// The tail store in prepRW covers exactly BufIndex..end of the SQE.
var _ [unsafe.Offsetof(SQE{}.BufIndex) + 24 - Size]struct{}
var _ [Size - unsafe.Offsetof(SQE{}.BufIndex) - 24]struct{}

// PrepNop prepares a request that does nothing and completes with res 0,
// as io_uring_prep_nop.
func (s *SQE) PrepNop() {
	s.prepRW(OpNop, -1, 0, 0, 0)
}

// PrepRead prepares a read from fd at offset off into buf, as
// io_uring_prep_read; off ^uint64(0) reads at the file position.
// buf longer than MaxUint32 bytes is clamped: expect a short read.
func (s *SQE) PrepRead(fd int32, buf []byte, off uint64) {
	addr, n := sliceArgs(buf)
	s.prepRW(OpRead, fd, addr, n, off)
}

// PrepWrite prepares a write of buf to fd at offset off, as
// io_uring_prep_write; off ^uint64(0) writes at the file position.
// buf longer than MaxUint32 bytes is clamped: expect a short write.
func (s *SQE) PrepWrite(fd int32, buf []byte, off uint64) {
	addr, n := sliceArgs(buf)
	s.prepRW(OpWrite, fd, addr, n, off)
}

// PrepReadv prepares a vectored read into iovs, as io_uring_prep_readv.
// The iovec array and every buffer it points to must outlive the request.
func (s *SQE) PrepReadv(fd int32, iovs []unix.Iovec, off uint64) {
	addr, n := sliceArgs(iovs)
	s.prepRW(OpReadv, fd, addr, n, off)
}

// PrepWritev prepares a vectored write from iovs, as io_uring_prep_writev.
func (s *SQE) PrepWritev(fd int32, iovs []unix.Iovec, off uint64) {
	addr, n := sliceArgs(iovs)
	s.prepRW(OpWritev, fd, addr, n, off)
}

// PrepReadFixed prepares a read into buf, which must lie inside registered
// buffer bufIndex, as io_uring_prep_read_fixed.
func (s *SQE) PrepReadFixed(fd int32, buf []byte, off uint64, bufIndex uint16) {
	addr, n := sliceArgs(buf)
	s.prepRW(OpReadFixed, fd, addr, n, off)
	s.BufIndex = bufIndex
}

// PrepWriteFixed prepares a write from buf, which must lie inside registered
// buffer bufIndex, as io_uring_prep_write_fixed.
func (s *SQE) PrepWriteFixed(fd int32, buf []byte, off uint64, bufIndex uint16) {
	addr, n := sliceArgs(buf)
	s.prepRW(OpWriteFixed, fd, addr, n, off)
	s.BufIndex = bufIndex
}

// PrepFsync prepares an fsync of fd, or an fdatasync with FsyncDatasync in
// flags, as io_uring_prep_fsync.
func (s *SQE) PrepFsync(fd int32, flags uint32) {
	s.prepRW(OpFsync, fd, 0, 0, 0)
	s.OpFlags = flags
}

// PrepSyncFileRange prepares sync_file_range(fd, off, n, flags), as
// io_uring_prep_sync_file_range.
func (s *SQE) PrepSyncFileRange(fd int32, n uint32, off uint64, flags uint32) {
	s.prepRW(OpSyncFileRange, fd, 0, n, off)
	s.OpFlags = flags
}

// PrepFallocate prepares fallocate(fd, mode, off, n), as
// io_uring_prep_fallocate (the length travels in Addr).
func (s *SQE) PrepFallocate(fd int32, mode uint32, off, n uint64) {
	s.prepRW(OpFallocate, fd, 0, mode, off)
	s.Addr = n
}

// PrepFadvise prepares posix_fadvise(fd, off, n, advice), as
// io_uring_prep_fadvise.
func (s *SQE) PrepFadvise(fd int32, off uint64, n uint32, advice uint32) {
	s.prepRW(OpFadvise, fd, 0, n, off)
	s.OpFlags = advice
}

// PrepTimeout prepares a timeout that completes after ts or after count other
// completions, whichever comes first (count 0: only ts), as
// io_uring_prep_timeout. ts must be the kernel's 16-byte __kernel_timespec,
// which unix.Timespec is on 64-bit platforms only, and must outlive the
// submission.
func (s *SQE) PrepTimeout(ts *unix.Timespec, count uint32, flags uint32) {
	s.prepRW(OpTimeout, -1, ptr(ts), 1, uint64(count))
	s.OpFlags = flags
}

// PrepLinkTimeout prepares a timeout for the request linked (IOLink) before
// it, as io_uring_prep_link_timeout.
func (s *SQE) PrepLinkTimeout(ts *unix.Timespec, flags uint32) {
	s.prepRW(OpLinkTimeout, -1, ptr(ts), 1, 0)
	s.OpFlags = flags
}

// PrepTimeoutRemove prepares the removal of the timeout whose UserData is
// userData, as io_uring_prep_timeout_remove.
func (s *SQE) PrepTimeoutRemove(userData uint64, flags uint32) {
	s.prepRW(OpTimeoutRemove, -1, 0, 0, 0)
	s.Addr = userData
	s.OpFlags = flags
}

// PrepCancel64 prepares the cancellation of the request(s) whose UserData is
// userData (AsyncCancel* flags widen the match), as io_uring_prep_cancel64.
func (s *SQE) PrepCancel64(userData uint64, flags uint32) {
	s.prepRW(OpAsyncCancel, -1, 0, 0, 0)
	s.Addr = userData
	s.OpFlags = flags
}

// PrepCancelFd prepares the cancellation of requests on fd, as
// io_uring_prep_cancel_fd (AsyncCancelFd is always added).
func (s *SQE) PrepCancelFd(fd int32, flags uint32) {
	s.prepRW(OpAsyncCancel, fd, 0, 0, 0)
	s.OpFlags = flags | AsyncCancelFd
}

// PrepPollAdd prepares a one-shot poll of fd for the events in mask
// (unix.POLLIN, ...), as io_uring_prep_poll_add.
func (s *SQE) PrepPollAdd(fd int32, mask uint32) {
	s.prepRW(OpPollAdd, fd, 0, 0, 0)
	s.OpFlags = pollMask(mask)
}

// PrepPollMultishot prepares a poll that posts a CQE (with CQEFMore) on every
// readiness until cancelled, as io_uring_prep_poll_multishot.
func (s *SQE) PrepPollMultishot(fd int32, mask uint32) {
	s.PrepPollAdd(fd, mask)
	s.Len = PollAddMulti
}

// PrepPollRemove prepares the removal of the poll whose UserData is
// userData, as io_uring_prep_poll_remove.
func (s *SQE) PrepPollRemove(userData uint64) {
	s.prepRW(OpPollRemove, -1, 0, 0, 0)
	s.Addr = userData
}

// PrepOpenat prepares openat(dfd, path, flags, mode), as
// io_uring_prep_openat; path must be NUL-terminated (unix.BytePtrFromString).
func (s *SQE) PrepOpenat(dfd int32, path *byte, flags uint32, mode uint32) {
	s.prepRW(OpOpenat, dfd, ptr(path), mode, 0)
	s.OpFlags = flags
}

// PrepClose prepares close(fd), as io_uring_prep_close.
func (s *SQE) PrepClose(fd int32) {
	s.prepRW(OpClose, fd, 0, 0, 0)
}

// PrepStatx prepares statx(dfd, path, flags, mask, stat), as
// io_uring_prep_statx.
func (s *SQE) PrepStatx(dfd int32, path *byte, flags uint32, mask uint32, stat *unix.Statx_t) {
	s.prepRW(OpStatx, dfd, ptr(path), mask, ptr(stat))
	s.OpFlags = flags
}

// PrepSplice prepares splice(fdIn, offIn, fdOut, offOut, n, flags), as
// io_uring_prep_splice; an offset of -1 means "no offset" (pipes, or the file
// position). SpliceFFdInFixed in flags makes fdIn a fixed file index.
func (s *SQE) PrepSplice(fdIn int32, offIn int64, fdOut int32, offOut int64, n uint32, flags uint32) {
	s.prepRW(OpSplice, fdOut, 0, n, uint64(offOut))
	s.Addr = uint64(offIn)
	s.SpliceFdIn = fdIn
	s.OpFlags = flags
}

// PrepAccept prepares accept4(fd, addr, addrLen, flags), as
// io_uring_prep_accept; addr and addrLen may both be nil.
func (s *SQE) PrepAccept(fd int32, addr *unix.RawSockaddrAny, addrLen *uint32, flags uint32) {
	s.prepRW(OpAccept, fd, ptr(addr), 0, ptr(addrLen))
	s.OpFlags = flags
}

// PrepConnect prepares connect(fd, addr, addrLen), as io_uring_prep_connect.
func (s *SQE) PrepConnect(fd int32, addr *unix.RawSockaddrAny, addrLen uint32) {
	s.prepRW(OpConnect, fd, ptr(addr), 0, uint64(addrLen))
}

// PrepSend prepares send(fd, buf, flags), as io_uring_prep_send.
// buf longer than MaxUint32 bytes is clamped: expect a short send.
func (s *SQE) PrepSend(fd int32, buf []byte, flags uint32) {
	addr, n := sliceArgs(buf)
	s.prepRW(OpSend, fd, addr, n, 0)
	s.OpFlags = flags
}

// PrepRecv prepares recv(fd, buf, flags), as io_uring_prep_recv.
// buf longer than MaxUint32 bytes is clamped: expect a short receive.
func (s *SQE) PrepRecv(fd int32, buf []byte, flags uint32) {
	addr, n := sliceArgs(buf)
	s.prepRW(OpRecv, fd, addr, n, 0)
	s.OpFlags = flags
}

// PrepShutdown prepares shutdown(fd, how), as io_uring_prep_shutdown.
func (s *SQE) PrepShutdown(fd int32, how uint32) {
	s.prepRW(OpShutdown, fd, 0, how, 0)
}

// PrepMsgRing prepares a message to the ring whose fd is fd: it posts a CQE
// there with res n and user_data data, as io_uring_prep_msg_ring.
func (s *SQE) PrepMsgRing(fd int32, n uint32, data uint64, flags uint32) {
	s.prepRW(OpMsgRing, fd, 0, n, data)
	s.OpFlags = flags
}

// PrepUnlinkat prepares unlinkat(dfd, path, flags), as
// io_uring_prep_unlinkat.
func (s *SQE) PrepUnlinkat(dfd int32, path *byte, flags uint32) {
	s.prepRW(OpUnlinkat, dfd, ptr(path), 0, 0)
	s.OpFlags = flags
}

// PrepRenameat prepares renameat2(oldDfd, oldPath, newDfd, newPath, flags),
// as io_uring_prep_renameat.
func (s *SQE) PrepRenameat(oldDfd int32, oldPath *byte, newDfd int32, newPath *byte, flags uint32) {
	s.prepRW(OpRenameat, oldDfd, ptr(oldPath), uint32(newDfd), ptr(newPath))
	s.OpFlags = flags
}

// PrepMkdirat prepares mkdirat(dfd, path, mode), as io_uring_prep_mkdirat.
func (s *SQE) PrepMkdirat(dfd int32, path *byte, mode uint32) {
	s.prepRW(OpMkdirat, dfd, ptr(path), mode, 0)
}

// PrepSymlinkat prepares symlinkat(target, newDfd, linkPath), as
// io_uring_prep_symlinkat.
func (s *SQE) PrepSymlinkat(target *byte, newDfd int32, linkPath *byte) {
	s.prepRW(OpSymlinkat, newDfd, ptr(target), 0, ptr(linkPath))
}

// PrepLinkat prepares linkat(oldDfd, oldPath, newDfd, newPath, flags), as
// io_uring_prep_linkat.
func (s *SQE) PrepLinkat(oldDfd int32, oldPath *byte, newDfd int32, newPath *byte, flags uint32) {
	s.prepRW(OpLinkat, oldDfd, ptr(oldPath), uint32(newDfd), ptr(newPath))
	s.OpFlags = flags
}

// PrepFtruncate prepares ftruncate(fd, size) (Linux 6.9+), as liburing
// 2.6's io_uring_prep_ftruncate.
func (s *SQE) PrepFtruncate(fd int32, size uint64) {
	s.prepRW(OpFtruncate, fd, 0, 0, size)
}

// PrepReadMultishot prepares a read that posts a CQE (with CQEFMore) each
// time fd has data, taking up to n bytes (0: the buffer's size) from provided
// buffer group bufGroup (Linux 6.7+), as liburing 2.5's
// io_uring_prep_read_multishot; it sets Flags to BufferSelect.
func (s *SQE) PrepReadMultishot(fd int32, n uint32, off uint64, bufGroup uint16) {
	s.prepRW(OpReadMultishot, fd, 0, n, off)
	s.BufIndex = bufGroup
	s.Flags = BufferSelect
}
