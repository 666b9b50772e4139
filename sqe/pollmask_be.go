//go:build armbe || arm64be || mips || mips64 || mips64p32 || ppc || ppc64 || s390 || s390x || sparc || sparc64

package sqe

// pollMask swaps the 16-bit halves, as liburing's __swahw32 does: the
// kernel reads poll32_events word-reversed on big-endian machines so that
// old binaries filling only the 16-bit poll_events keep working.
func pollMask(mask uint32) uint32 { return mask<<16 | mask>>16 }
