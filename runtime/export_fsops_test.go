package runtime

// HideOps makes calls whose ring opcode is among ops take their syscall
// path, as on a kernel whose probe lacks them, until restore is called.
func HideOps(ops ...uint8) (restore func()) {
	var mask uint64
	for _, op := range ops {
		mask |= 1 << op
	}
	old := hiddenOps.Swap(mask)
	return func() { hiddenOps.Store(old) }
}
