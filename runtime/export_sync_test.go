package runtime

// CancelNextRingFsync makes f's next Sync fsync made through the ring
// complete as if the kernel had canceled it on its own.
func CancelNextRingFsync(f *File) { f.gs.cancelNext.Store(true) }

// RingFsyncCanceled reports whether that fsync has completed.
func RingFsyncCanceled(f *File) bool { return !f.gs.cancelNext.Load() }
