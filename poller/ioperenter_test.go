package poller

import (
	"context"
	"encoding/binary"
	"fmt"
	"os"
	"path/filepath"
	"sync"
	"syscall"
	"testing"
	"unsafe"

	"github.com/ringwake/ringwake/sqe"
)

// blockFile writes n 4 KiB blocks, each filled with its own index, and
// returns the open file.
func blockFile(t *testing.T, n int) *os.File {
	t.Helper()
	f, err := os.Create(filepath.Join(t.TempDir(), "blocks"))
	if err != nil {
		t.Fatal(err)
	}
	t.Cleanup(func() { f.Close() })
	b := make([]byte, 4096)
	for i := 0; i < n; i++ {
		for j := 0; j < len(b); j += 4 {
			binary.LittleEndian.PutUint32(b[j:], uint32(i))
		}
		if _, err := f.Write(b); err != nil {
			t.Fatal(err)
		}
	}
	return f
}

// Every IOPerEnter setting delivers every read whole, whether the reads
// come from many blocking goroutines or from batches with link chains.
func TestIOPerEnterReads(t *testing.T) {
	const blocks = 256
	f := blockFile(t, blocks)
	fd := int32(f.Fd())
	for _, per := range []int{-1, 0, 1, 3, 1000} {
		t.Run(fmt.Sprint(per), func(t *testing.T) {
			p := newPoller(t, Config{Entries: 32, IOPerEnter: per})
			var wg sync.WaitGroup
			errs := make(chan error, 64)
			for g := 0; g < 48; g++ {
				wg.Add(1)
				go func() {
					defer wg.Done()
					buf := make([]byte, 4096)
					for i := 0; i < 40; i++ {
						blk := (g*40 + i) % blocks
						var s sqe.SQE
						s.PrepRead(fd, buf, uint64(blk)*4096)
						res, _, err := p.Do(context.Background(), &s, unsafe.Pointer(&buf[0]))
						if err != nil || res != 4096 {
							errs <- fmt.Errorf("read of block %d = %d, %v", blk, res, err)
							return
						}
						if v := binary.LittleEndian.Uint32(buf[4092:]); v != uint32(blk) {
							errs <- fmt.Errorf("block %d holds %d", blk, v)
							return
						}
					}
				}()
			}
			// Meanwhile: chains of reads whose head fails; every member after
			// it must be canceled, so no chunk may have cut a chain.
			wg.Add(1)
			go func() {
				defer wg.Done()
				const k = 9
				bufs := make([][]byte, k)
				for i := range bufs {
					bufs[i] = make([]byte, 512)
				}
				for round := 0; round < 30; round++ {
					ss := make([]sqe.SQE, k)
					dones := make([]func(int32, uint32), k)
					res := make([]int32, k)
					var batch sync.WaitGroup
					batch.Add(k)
					for i := range ss {
						if i == 0 {
							ss[i].PrepRead(-1, bufs[i], 0)
						} else {
							ss[i].PrepRead(fd, bufs[i], uint64(i)*4096)
						}
						if i < k-1 {
							ss[i].Flags |= sqe.IOLink
						}
						dones[i] = func(r int32, _ uint32) { res[i] = r; batch.Done() }
					}
					if err := p.SubmitBatch(ss, dones); err != nil {
						errs <- err
						return
					}
					batch.Wait()
					for i, r := range res {
						want := -int32(syscall.ECANCELED)
						if i == 0 {
							want = -int32(syscall.EBADF)
						}
						if r != want {
							errs <- fmt.Errorf("round %d: chain member %d = %d, want %d", round, i, r, want)
							return
						}
					}
				}
			}()
			wg.Wait()
			close(errs)
			for err := range errs {
				t.Error(err)
			}
		})
	}
}
