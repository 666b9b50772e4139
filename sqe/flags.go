package sqe

// SQE.Flags bits (IOSQE_*).
const (
	FixedFile      uint8 = 1 << 0 // Fd indexes the registered file table
	IODrain        uint8 = 1 << 1 // start only after all earlier requests complete
	IOLink         uint8 = 1 << 2 // the next SQE starts only if this one succeeds
	IOHardlink     uint8 = 1 << 3 // like IOLink, but the chain survives failure
	Async          uint8 = 1 << 4 // skip the inline attempt, go to io-wq
	BufferSelect   uint8 = 1 << 5 // take a buffer from group BufIndex
	CQESkipSuccess uint8 = 1 << 6 // post no CQE when the request succeeds
)

// FsyncDatasync makes OpFsync an fdatasync (IORING_FSYNC_DATASYNC).
const FsyncDatasync uint32 = 1 << 0

// Timeout flags for PrepTimeout, PrepLinkTimeout and PrepTimeoutRemove
// (IORING_TIMEOUT_*).
const (
	TimeoutAbs          uint32 = 1 << 0 // ts is absolute, not relative
	TimeoutUpdate       uint32 = 1 << 1 // TIMEOUT_REMOVE updates instead of removing
	TimeoutBoottime     uint32 = 1 << 2 // measure against CLOCK_BOOTTIME
	TimeoutRealtime     uint32 = 1 << 3 // measure against CLOCK_REALTIME
	LinkTimeoutUpdate   uint32 = 1 << 4 // TIMEOUT_REMOVE updates a LINK_TIMEOUT
	TimeoutETimeSuccess uint32 = 1 << 5 // expiry completes with -ETIME as success
	TimeoutMultishot    uint32 = 1 << 6 // re-arm after every expiry

	TimeoutClockMask  = TimeoutBoottime | TimeoutRealtime
	TimeoutUpdateMask = TimeoutUpdate | LinkTimeoutUpdate
)

// Cancel flags for PrepCancel64 and PrepCancelFd (IORING_ASYNC_CANCEL_*).
const (
	AsyncCancelAll      uint32 = 1 << 0 // cancel every match, not just the first
	AsyncCancelFd       uint32 = 1 << 1 // match on Fd instead of UserData
	AsyncCancelAny      uint32 = 1 << 2 // match any request
	AsyncCancelFdFixed  uint32 = 1 << 3 // the Fd to match is a fixed file index
	AsyncCancelUserdata uint32 = 1 << 4 // match on UserData (the default key)
	AsyncCancelOp       uint32 = 1 << 5 // match on the opcode
)

// Send/recv flags, kept in SQE.IoPrio (IORING_RECVSEND_*, IORING_RECV_*,
// IORING_SEND_*).
const (
	RecvsendPollFirst uint16 = 1 << 0 // arm poll before the first attempt
	RecvMultishot     uint16 = 1 << 1 // one recv SQE, many CQEs (CQEFMore)
	RecvsendFixedBuf  uint16 = 1 << 2 // buffer is registered, index in BufIndex
	SendZCReportUsage uint16 = 1 << 3 // notif CQE reports whether data was copied
	RecvsendBundle    uint16 = 1 << 4 // consume several provided buffers at once
	SendVectorized    uint16 = 1 << 5 // Addr/Len are an iovec array (6.17)
)

// Accept flags, kept in SQE.IoPrio (IORING_ACCEPT_*).
const (
	AcceptMultishot uint16 = 1 << 0 // one accept SQE, a CQE per connection
	AcceptDontwait  uint16 = 1 << 1 // fail with EAGAIN instead of arming poll
	AcceptPollFirst uint16 = 1 << 2 // arm poll before the first attempt
)

// Poll flags, kept in SQE.Len for OpPollAdd/OpPollRemove (IORING_POLL_*).
const (
	PollAddMulti       uint32 = 1 << 0 // multishot poll
	PollUpdateEvents   uint32 = 1 << 1 // POLL_REMOVE updates the event mask
	PollUpdateUserData uint32 = 1 << 2 // POLL_REMOVE updates the user data
	PollAddLevel       uint32 = 1 << 3 // level- rather than edge-triggered
)

// SpliceFFdInFixed marks SQE.SpliceFdIn as a fixed file index
// (SPLICE_F_FD_IN_FIXED, the top bit of the splice flags).
const SpliceFFdInFixed uint32 = 1 << 31

// OpMsgRing commands, kept in SQE.Addr (enum io_uring_msg_ring_flags).
const (
	MsgData   = 0 // post a CQE with res = Len and user_data = Off
	MsgSendFd = 1 // install a fixed file into the target ring
)

// OpMsgRing flags (IORING_MSG_RING_*).
const (
	MsgRingCQESkip   uint32 = 1 << 0 // post no CQE to the target ring
	MsgRingFlagsPass uint32 = 1 << 1 // pass SpliceFdIn through as cqe->flags
)

// FileIndexAlloc in SpliceFdIn (file_index) asks the kernel to pick a free
// fixed-file slot (IORING_FILE_INDEX_ALLOC).
const FileIndexAlloc uint32 = ^uint32(0)

// FixedFdNoCloexec: the fd OpFixedFdInstall creates is not O_CLOEXEC.
const FixedFdNoCloexec uint32 = 1 << 0

// NotifUsageZCCopied in a notification CQE's res: the zero-copy send copied.
const NotifUsageZCCopied uint32 = 1 << 31

// CQE flag bits (IORING_CQE_F_*).
const (
	CQEFBuffer       uint32 = 1 << 0  // upper 16 bits hold the buffer ID
	CQEFMore         uint32 = 1 << 1  // the request will post more CQEs
	CQEFSockNonempty uint32 = 1 << 2  // more data is ready after this recv
	CQEFNotif        uint32 = 1 << 3  // zero-copy notification, not a send result
	CQEFBufMore      uint32 = 1 << 4  // the provided buffer is only partly used
	CQEFSkip         uint32 = 1 << 5  // padding CQE of a CQE_MIXED ring: ignore
	CQEF32           uint32 = 1 << 15 // 32-byte CQE in a CQE_MIXED ring

	// CQEBufferShift is where the buffer ID starts in the CQE flags.
	CQEBufferShift = 16
)
