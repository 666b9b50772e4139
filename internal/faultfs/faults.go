package faultfs

import (
	"math/rand/v2"
	"path"
	"syscall"
)

// Op is a set of operations a Fault applies to.
type Op uint8

const (
	OpRead      Op = 1 << iota // FUSE_READ
	OpWrite                    // FUSE_WRITE (a write(2) larger than the mount's max write is several)
	OpFsync                    // fsync(2) of a file
	OpFdatasync                // fdatasync(2) of a file (and IORING_OP_FSYNC with IORING_FSYNC_DATASYNC)
	OpDirSync                  // fsync(2) of a directory
)

// Fault fails matching requests. The zero Fault fails every read, write and
// sync with EIO.
type Fault struct {
	Op Op // the operations it applies to; 0 means all
	// Path, if set, is a path.Match pattern for the file's path relative
	// to the mount point, as of the request ("log/*.wal").
	Path string
	// Skip lets this many matching requests through before the fault
	// starts failing them.
	Skip int
	// Count is how many requests it fails before it retires; 0 means
	// every matching request until ClearFaults.
	Count int
	// Rate, if above zero, fails each matching request past Skip with this
	// probability, drawn from a generator seeded with Seed.
	Rate float64
	Seed uint64
	// Err is the error; 0 means EIO.
	Err syscall.Errno
}

type fault struct {
	Fault
	seen, failed int
	rng          *rand.Rand
}

func (f *server) inject(ft Fault) {
	if ft.Op == 0 {
		ft.Op = OpRead | OpWrite | OpFsync | OpFdatasync | OpDirSync
	}
	if ft.Err == 0 {
		ft.Err = syscall.EIO
	}
	x := &fault{Fault: ft}
	if ft.Rate > 0 {
		x.rng = rand.New(rand.NewPCG(ft.Seed, 0x6661756c74)) // "fault"
	}
	f.faultMu.Lock()
	f.faults = append(f.faults, x)
	f.faultMu.Unlock()
}

func (f *server) clearFaults() {
	f.faultMu.Lock()
	f.faults = nil
	f.budget = -1
	f.faultMu.Unlock()
}

func (f *server) setSpaceBudget(n int64) {
	f.faultMu.Lock()
	f.budget = n
	f.faultMu.Unlock()
}

// check returns the error a request of kind op on the file at name (a
// path relative to the mount point; computed only if a fault needs it) is
// to fail with, or 0.
func (f *server) check(op Op, name func() string) syscall.Errno {
	f.faultMu.Lock()
	defer f.faultMu.Unlock()
	p, havePath := "", false
	for i := 0; i < len(f.faults); i++ {
		x := f.faults[i]
		if x.Op&op == 0 {
			continue
		}
		if x.Path != "" {
			if !havePath {
				p, havePath = name(), true
			}
			if ok, _ := path.Match(x.Path, p); !ok {
				continue
			}
		}
		x.seen++
		if x.seen <= x.Skip || (x.rng != nil && x.rng.Float64() >= x.Rate) {
			continue
		}
		x.failed++
		if x.Count > 0 && x.failed >= x.Count {
			f.faults = append(f.faults[:i:i], f.faults[i+1:]...)
		}
		f.stats.injected.Add(1)
		return x.Err
	}
	return 0
}

// spend takes n bytes from the space budget, or returns ENOSPC and takes
// nothing.
func (f *server) spend(n int64) syscall.Errno {
	f.faultMu.Lock()
	defer f.faultMu.Unlock()
	if f.budget < 0 {
		return 0
	}
	if n > f.budget {
		f.stats.noSpace.Add(1)
		return syscall.ENOSPC
	}
	f.budget -= n
	return 0
}
