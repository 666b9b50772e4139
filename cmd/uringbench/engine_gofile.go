package main

import (
	"context"
	"fmt"
	"os"
)

// runGofile is what a Go user has today: os.File's ReadAt/WriteAt/Sync from
// -qd goroutines, each blocking an OS thread in pread/pwrite/fsync.
func runGofile(ctx context.Context, e *env, p *plan, mode string) (*result, []int64, error) {
	if p.workload == "nop" {
		return nil, nil, skipf("n/a for nop (the standard library has no no-op I/O call to compare)")
	}
	f, err := os.OpenFile(e.tgt.path, e.tgt.openFlags(), 0)
	if err != nil {
		return nil, nil, err
	}
	defer f.Close()
	mk := func(int) opFunc {
		return func(k opKind, buf []byte, off int64) error {
			switch k {
			case opRead:
				// ReadAt reports a short read as an error (io.EOF).
				if _, err := f.ReadAt(buf, off); err != nil {
					return fmt.Errorf("read %d bytes at %d: %w", len(buf), off, err)
				}
			case opWrite, opWriteSync:
				if _, err := f.WriteAt(buf, off); err != nil {
					return fmt.Errorf("write %d bytes at %d: %w", len(buf), off, err)
				}
				if k == opWriteSync {
					if err := f.Sync(); err != nil {
						return err
					}
				}
			}
			return nil
		}
	}
	m, err := p.runBlocking(ctx, e, "gofile", newBufferPool(p), mk)
	if err != nil {
		return nil, nil, err
	}
	e.verbosef("gofile: %.3f heap allocations per op", float64(m.allocs)/float64(max(m.ops, 1)))
	r := e.newResult("gofile", mode)
	r.Lat = latencyOf(m.hist)
	r.finish(m.ops, m.elapsed, m.cpu)
	r.Threads = m.threads
	return r, m.written, nil
}
