package sqe

import (
	"strings"
	"testing"

	iosys "github.com/iceber/iouring-go/syscall"
)

func TestOpLast(t *testing.T) {
	// Linux 6.18's IORING_REGISTER_PROBE reports last_op 62 (PIPE).
	if OpLast != 63 || OpPipe != 62 {
		t.Fatalf("OpLast = %d, OpPipe = %d; want 63 and 62 for Linux 6.18", OpLast, OpPipe)
	}
}

// The iceber package is an independent transcription of the same kernel
// enum, up to SENDMSG_ZC: agreeing with it catches a dropped or swapped line.
func TestOpcodesMatchIceber(t *testing.T) {
	pairs := []struct {
		name      string
		ours, ref uint8
	}{
		{"NOP", OpNop, iosys.IORING_OP_NOP},
		{"READV", OpReadv, iosys.IORING_OP_READV},
		{"FSYNC", OpFsync, iosys.IORING_OP_FSYNC},
		{"SYNC_FILE_RANGE", OpSyncFileRange, iosys.IORING_OP_SYNC_FILE_RANGE},
		{"ASYNC_CANCEL", OpAsyncCancel, iosys.IORING_OP_ASYNC_CANCEL},
		{"LINK_TIMEOUT", OpLinkTimeout, iosys.IORING_OP_LINK_TIMEOUT},
		{"STATX", OpStatx, iosys.IORING_OP_STATX},
		{"READ", OpRead, iosys.IORING_OP_READ},
		{"WRITE", OpWrite, iosys.IORING_OP_WRITE},
		{"SPLICE", OpSplice, iosys.IORING_OP_SPLICE},
		{"SHUTDOWN", OpShutdown, iosys.IORING_OP_SHUTDOWN},
		{"LINKAT", OpLinkat, iosys.IORING_OP_LINKAT},
		{"MSG_RING", OpMsgRing, iosys.IORING_OP_MSG_RING},
		{"GETXATTR", OpGetxattr, iosys.IORING_OP_GETXATTR},
		{"URING_CMD", OpUringCmd, iosys.IORING_OP_URING_CMD},
		{"SEND_ZC", OpSendZC, iosys.IORING_OP_SEND_ZC},
		{"SENDMSG_ZC", OpSendmsgZC, iosys.IORING_OP_SENDMSG_ZC},
	}
	for _, p := range pairs {
		if p.ours != p.ref {
			t.Errorf("%s: ours %d, iceber %d", p.name, p.ours, p.ref)
		}
		if got := OpName(p.ours); got != p.name {
			t.Errorf("OpName(%d) = %q, want %q", p.ours, got, p.name)
		}
	}
	flags := []struct {
		name      string
		ours, ref uint8
	}{
		{"FIXED_FILE", FixedFile, iosys.IOSQE_FLAGS_FIXED_FILE},
		{"IO_DRAIN", IODrain, iosys.IOSQE_FLAGS_IO_DRAIN},
		{"IO_LINK", IOLink, iosys.IOSQE_FLAGS_IO_LINK},
		{"IO_HARDLINK", IOHardlink, iosys.IOSQE_FLAGS_IO_HARDLINK},
		{"ASYNC", Async, iosys.IOSQE_FLAGS_ASYNC},
		{"BUFFER_SELECT", BufferSelect, iosys.IOSQE_FLAGS_BUFFER_SELECT},
	}
	for _, f := range flags {
		if f.ours != f.ref {
			t.Errorf("IOSQE_%s: ours %#x, iceber %#x", f.name, f.ours, f.ref)
		}
	}
}

func TestOpName(t *testing.T) {
	seen := map[string]uint8{}
	for op := 0; op < OpLast; op++ {
		name := OpName(uint8(op))
		if name == "" || strings.HasPrefix(name, "op(") || strings.ToUpper(name) != name {
			t.Errorf("OpName(%d) = %q, want an upper-case kernel name", op, name)
		}
		if prev, dup := seen[name]; dup {
			t.Errorf("OpName(%d) = %q, same as OpName(%d)", op, name, prev)
		}
		seen[name] = uint8(op)
	}
	for op, want := range map[uint8]string{
		OpRead: "READ", OpWriteFixed: "WRITE_FIXED", OpReadMultishot: "READ_MULTISHOT",
		OpFixedFdInstall: "FIXED_FD_INSTALL", OpRecvZC: "RECV_ZC", OpWritevFixed: "WRITEV_FIXED",
		OpPipe: "PIPE", OpLast: "op(63)", 200: "op(200)", 255: "op(255)",
	} {
		if got := OpName(op); got != want {
			t.Errorf("OpName(%d) = %q, want %q", op, got, want)
		}
	}
}
