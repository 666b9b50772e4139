//go:build !(armbe || arm64be || mips || mips64 || mips64p32 || ppc || ppc64 || s390 || s390x || sparc || sparc64)

package sqe

// pollMask is the identity on little-endian machines, where the kernel's
// poll32_events already overlays poll_events' 16 bits.
func pollMask(mask uint32) uint32 { return mask }
