package sqe

import "strconv"

// Opcodes, in the order of the kernel's enum io_uring_op as of Linux 6.18.
// They are untyped so they assign to SQE.Opcode and compare with the probe's
// uint8 op numbers alike. docs/abi.md lists the kernel that introduced each.
const (
	OpNop = iota
	OpReadv
	OpWritev
	OpFsync
	OpReadFixed
	OpWriteFixed
	OpPollAdd
	OpPollRemove
	OpSyncFileRange
	OpSendmsg
	OpRecvmsg
	OpTimeout
	OpTimeoutRemove
	OpAccept
	OpAsyncCancel
	OpLinkTimeout
	OpConnect
	OpFallocate
	OpOpenat
	OpClose
	OpFilesUpdate
	OpStatx
	OpRead
	OpWrite
	OpFadvise
	OpMadvise
	OpSend
	OpRecv
	OpOpenat2
	OpEpollCtl
	OpSplice
	OpProvideBuffers
	OpRemoveBuffers
	OpTee
	OpShutdown
	OpRenameat
	OpUnlinkat
	OpMkdirat
	OpSymlinkat
	OpLinkat
	OpMsgRing
	OpFsetxattr
	OpSetxattr
	OpFgetxattr
	OpGetxattr
	OpSocket
	OpUringCmd
	OpSendZC
	OpSendmsgZC
	OpReadMultishot
	OpWaitid
	OpFutexWait
	OpFutexWake
	OpFutexWaitv
	OpFixedFdInstall
	OpFtruncate
	OpBind
	OpListen
	OpRecvZC
	OpEpollWait
	OpReadvFixed
	OpWritevFixed
	OpPipe

	// OpLast is one past the highest opcode Linux 6.18 knows (its probe
	// reports last_op == OpLast-1). Later kernels add NOP128 (63) and
	// URING_CMD128 (64); OpName reports those as unknown.
	OpLast
)

// opNames holds the kernel's names (enum io_uring_op without IORING_OP_),
// the same strings /proc/<pid>/fdinfo and the io_uring tracepoints print.
var opNames = [OpLast]string{
	OpNop:            "NOP",
	OpReadv:          "READV",
	OpWritev:         "WRITEV",
	OpFsync:          "FSYNC",
	OpReadFixed:      "READ_FIXED",
	OpWriteFixed:     "WRITE_FIXED",
	OpPollAdd:        "POLL_ADD",
	OpPollRemove:     "POLL_REMOVE",
	OpSyncFileRange:  "SYNC_FILE_RANGE",
	OpSendmsg:        "SENDMSG",
	OpRecvmsg:        "RECVMSG",
	OpTimeout:        "TIMEOUT",
	OpTimeoutRemove:  "TIMEOUT_REMOVE",
	OpAccept:         "ACCEPT",
	OpAsyncCancel:    "ASYNC_CANCEL",
	OpLinkTimeout:    "LINK_TIMEOUT",
	OpConnect:        "CONNECT",
	OpFallocate:      "FALLOCATE",
	OpOpenat:         "OPENAT",
	OpClose:          "CLOSE",
	OpFilesUpdate:    "FILES_UPDATE",
	OpStatx:          "STATX",
	OpRead:           "READ",
	OpWrite:          "WRITE",
	OpFadvise:        "FADVISE",
	OpMadvise:        "MADVISE",
	OpSend:           "SEND",
	OpRecv:           "RECV",
	OpOpenat2:        "OPENAT2",
	OpEpollCtl:       "EPOLL_CTL",
	OpSplice:         "SPLICE",
	OpProvideBuffers: "PROVIDE_BUFFERS",
	OpRemoveBuffers:  "REMOVE_BUFFERS",
	OpTee:            "TEE",
	OpShutdown:       "SHUTDOWN",
	OpRenameat:       "RENAMEAT",
	OpUnlinkat:       "UNLINKAT",
	OpMkdirat:        "MKDIRAT",
	OpSymlinkat:      "SYMLINKAT",
	OpLinkat:         "LINKAT",
	OpMsgRing:        "MSG_RING",
	OpFsetxattr:      "FSETXATTR",
	OpSetxattr:       "SETXATTR",
	OpFgetxattr:      "FGETXATTR",
	OpGetxattr:       "GETXATTR",
	OpSocket:         "SOCKET",
	OpUringCmd:       "URING_CMD",
	OpSendZC:         "SEND_ZC",
	OpSendmsgZC:      "SENDMSG_ZC",
	OpReadMultishot:  "READ_MULTISHOT",
	OpWaitid:         "WAITID",
	OpFutexWait:      "FUTEX_WAIT",
	OpFutexWake:      "FUTEX_WAKE",
	OpFutexWaitv:     "FUTEX_WAITV",
	OpFixedFdInstall: "FIXED_FD_INSTALL",
	OpFtruncate:      "FTRUNCATE",
	OpBind:           "BIND",
	OpListen:         "LISTEN",
	OpRecvZC:         "RECV_ZC",
	OpEpollWait:      "EPOLL_WAIT",
	OpReadvFixed:     "READV_FIXED",
	OpWritevFixed:    "WRITEV_FIXED",
	OpPipe:           "PIPE",
}

// OpName returns the kernel's name of op ("READ", "WRITE_FIXED", ...), or
// "op(N)" for a number this package does not know, so error messages stay
// readable whatever a caller or a newer kernel puts in an SQE.
func OpName(op uint8) string {
	if int(op) < len(opNames) {
		return opNames[op]
	}
	return "op(" + strconv.Itoa(int(op)) + ")"
}
