package ring

import "sync/atomic"

// CQReady is the number of CQEs ready to be reaped. Any goroutine may ask:
// it reads the shared head, which PeekBatch's consumer stores last.
func (r *Ring) CQReady() uint32 {
	return atomic.LoadUint32(r.cqTail) - atomic.LoadUint32(r.cqHead)
}

// PeekBatch copies up to len(dst) ready CQEs into dst, releases their slots
// to the kernel and returns how many it copied. One consumer at a time (the
// poller's reap lock); no allocation.
func (r *Ring) PeekBatch(dst []CQE) int {
	head := r.cqHeadLocal
	// The acquire load of the tail orders the CQE reads below after the
	// kernel's writes of those CQEs.
	n := min(int(atomic.LoadUint32(r.cqTail)-head), len(dst))
	if n == 0 {
		return 0
	}
	// At most two runs: up to the end of the array, then from its start.
	first := copy(dst[:n], r.cqeSlice[head&r.cqMask:])
	copy(dst[first:n], r.cqeSlice)
	head += uint32(n)
	r.cqHeadLocal = head
	// The release store hands the slots back only after they were copied.
	atomic.StoreUint32(r.cqHead, head)
	return n
}

// FlushOverflow moves the kernel's overflowed CQEs into the CQ (an enter
// with GETEVENTS and no wait) when CQOverflow reports any. As many as fit are
// moved; the caller reaps and calls again while CQOverflow stays true.
func (r *Ring) FlushOverflow() error {
	if !r.CQOverflow() {
		return nil
	}
	_, err := r.Enter(0, 0, EnterGetEvents)
	return err
}

// CQOverflowCount is the kernel's count of CQEs it had to drop because the CQ
// was full and it could not hold them (only without FEAT_NODROP, or when the
// overflow list could not grow).
func (r *Ring) CQOverflowCount() uint32 { return atomic.LoadUint32(r.cqOverflow) }

// SetCQEventfdEnabled turns eventfd notification for new CQEs on or off
// (IORING_CQ_EVENTFD_DISABLED). Safe for concurrent use.
func (r *Ring) SetCQEventfdEnabled(on bool) {
	for {
		old := atomic.LoadUint32(r.cqFlags)
		nw := old | CQEventfdDisabled
		if on {
			nw = old &^ CQEventfdDisabled
		}
		if old == nw || atomic.CompareAndSwapUint32(r.cqFlags, old, nw) {
			return
		}
	}
}
