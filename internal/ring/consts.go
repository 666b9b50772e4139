package ring

import iosys "github.com/iceber/iouring-go/syscall"

// Setup flags (struct io_uring_params.flags), kernel uapi values as of 6.18.
const (
	SetupIOPoll                  = iosys.IORING_SETUP_IOPOLL
	SetupSQPoll                  = iosys.IORING_SETUP_SQPOLL
	SetupSQAff                   = iosys.IORING_SETUP_SQ_AFF
	SetupCQSize                  = iosys.IORING_SETUP_CQSIZE
	SetupClamp                   = iosys.IORING_SETUP_CLAMP
	SetupAttachWQ                = iosys.IORING_SETUP_ATTACH_WQ
	SetupRDisabled               = iosys.IORING_SETUP_R_DISABLED
	SetupSubmitAll               = iosys.IORING_SETUP_SUBMIT_ALL
	SetupCoopTaskrun             = iosys.IORING_SETUP_COOP_TASKRUN
	SetupTaskrunFlag             = iosys.IORING_SETUP_TASKRUN_FLAG
	SetupSQE128                  = iosys.IORING_SETUP_SQE128
	SetupCQE32                   = iosys.IORING_SETUP_CQE32
	SetupSingleIssuer     uint32 = 1 << 12 // 6.0
	SetupDeferTaskrun     uint32 = 1 << 13 // 6.1
	SetupNoMmap           uint32 = 1 << 14 // 6.5
	SetupRegisteredFdOnly uint32 = 1 << 15 // 6.5
	SetupNoSQArray        uint32 = 1 << 16 // 6.6
	SetupHybridIOPoll     uint32 = 1 << 17 // 6.13
	SetupCQEMixed         uint32 = 1 << 18 // 6.18
)

// Feature flags the kernel reports back in struct io_uring_params.features.
const (
	FeatSingleMmap            = iosys.IORING_FEAT_SINGLE_MMAP
	FeatNoDrop                = iosys.IORING_FEAT_NODROP
	FeatSubmitStable          = iosys.IORING_FEAT_SUBMIT_STABLE
	FeatRWCurPos              = iosys.IORING_FEAT_RW_CUR_POS
	FeatCurPersonality        = iosys.IORING_FEAT_CUR_PERSONALITY
	FeatFastPoll              = iosys.IORING_FEAT_FAST_POLL
	FeatPoll32Bits            = iosys.IORING_FEAT_POLL_32BITS
	FeatSQPollNonfixed        = iosys.IORING_FEAT_SQPOLL_NONFIXED
	FeatExtArg         uint32 = 1 << 8  // 5.11
	FeatNativeWorkers  uint32 = 1 << 9  // 5.12
	FeatRsrcTags       uint32 = 1 << 10 // 5.13
	FeatCQESkip        uint32 = 1 << 11 // 5.17
	FeatLinkedFile     uint32 = 1 << 12 // 5.17
	FeatRegRegRing     uint32 = 1 << 13 // 6.3
	FeatRecvSendBundle uint32 = 1 << 14 // 6.10
	FeatMinTimeout     uint32 = 1 << 15 // 6.12
	FeatRWAttr         uint32 = 1 << 16 // 6.14
	FeatNoIOWait       uint32 = 1 << 17 // 6.15
)

// io_uring_enter(2) flags.
const (
	EnterGetEvents             = iosys.IORING_ENTER_FLAGS_GETEVENTS
	EnterSQWakeup              = iosys.IORING_ENTER_FLAGS_SQ_WAKEUP
	EnterSQWait                = iosys.IORING_ENTER_FLAGS_SQ_WAIT
	EnterExtArg         uint32 = 1 << 3
	EnterRegisteredRing uint32 = 1 << 4
	EnterAbsTimer       uint32 = 1 << 5
	EnterExtArgReg      uint32 = 1 << 6
	EnterNoIOWait       uint32 = 1 << 7
)

// SQ ring flags, written by the kernel.
const (
	SQNeedWakeup        = iosys.IORING_SQ_NEED_WAKEUP
	SQCQOverflow        = iosys.IORING_SQ_CQ_OVERFLOW
	SQTaskrun    uint32 = 1 << 2
)

// CQ ring flags, written by the application.
const CQEventfdDisabled uint32 = 1 << 0

// CQE flags (struct io_uring_cqe.flags).
const (
	CQEFBuffer       uint32 = 1 << 0
	CQEFMore         uint32 = 1 << 1
	CQEFSockNonempty uint32 = 1 << 2
	CQEFNotif        uint32 = 1 << 3
	CQEFBufMore      uint32 = 1 << 4
	CQEFSkip         uint32 = 1 << 5
	CQEF32           uint32 = 1 << 15
	// CQEBufferShift is where the buffer ID starts in Flags when CQEFBuffer is set.
	CQEBufferShift = 16
)

// io_uring_register(2) opcodes.
const (
	RegBuffers                     = iosys.IORING_REGISTER_BUFFERS
	RegUnregisterBuffers           = iosys.IORING_UNREGISTER_BUFFERS
	RegFiles                       = iosys.IORING_REGISTER_FILES
	RegUnregisterFiles             = iosys.IORING_UNREGISTER_FILES
	RegEventfd                     = iosys.IORING_REGISTER_EVENTFD
	RegUnregisterEventfd           = iosys.IORING_UNREGISTER_EVENTFD
	RegFilesUpdate                 = iosys.IORING_REGISTER_FILES_UPDATE
	RegEventfdAsync                = iosys.IORING_REGISTER_EVENTFD_ASYNC
	RegProbe                       = iosys.IORING_REGISTER_PROBE
	RegPersonality                 = iosys.IORING_REGISTER_PERSONALITY
	RegUnregisterPersonality       = iosys.IORING_UNREGISTER_PERSONALITY
	RegRestrictions                = iosys.IORING_REGISTER_RESTRICTIONS
	RegEnableRings                 = iosys.IORING_REGISTER_ENABLE_RINGS
	RegFiles2                uint8 = 13
	RegFilesUpdate2          uint8 = 14
	RegBuffers2              uint8 = 15
	RegBuffersUpdate         uint8 = 16
	RegIOWQAff               uint8 = 17
	RegUnregisterIOWQAff     uint8 = 18
	RegIOWQMaxWorkers        uint8 = 19
	RegRingFds               uint8 = 20
	RegUnregisterRingFds     uint8 = 21
	RegPbufRing              uint8 = 22
	RegUnregisterPbufRing    uint8 = 23
	RegSyncCancel            uint8 = 24
	RegFileAllocRange        uint8 = 25
	RegPbufStatus            uint8 = 26
	RegNapi                  uint8 = 27
	RegUnregisterNapi        uint8 = 28
	RegClock                 uint8 = 29
	RegCloneBuffers          uint8 = 30
	RegSendMsgRing           uint8 = 31
	RegZcrxIfq               uint8 = 32
	RegResizeRings           uint8 = 33
	RegMemRegion             uint8 = 34
)

// Register argument flags and markers.
const (
	// RsrcRegisterSparse asks REGISTER_FILES2/BUFFERS2 for an empty table of nr slots.
	RsrcRegisterSparse uint32 = 1 << 0
	// RegisterFilesSkip in an UpdateFiles slot leaves that slot unchanged.
	RegisterFilesSkip int32 = -2
	// ProbeOpSupported is IO_URING_OP_SUPPORTED in struct io_uring_probe_op.flags.
	ProbeOpSupported uint16 = 1 << 0
)

// Kernel limits (IORING_MAX_ENTRIES, IORING_MAX_CQ_ENTRIES).
const (
	MaxEntries   = 32768
	MaxCQEntries = 2 * MaxEntries
)

// Magic mmap offsets of the three shared regions.
const (
	offSQRing = iosys.IORING_OFF_SQ_RING
	offCQRing = iosys.IORING_OFF_CQ_RING
	offSQEs   = iosys.IORING_OFF_SQES
)
