package runtime_test

import (
	"context"
	"errors"
	"fmt"
	"os"
	"path/filepath"
	"time"

	"golang.org/x/sys/unix"

	ringwake "github.com/ringwake/ringwake/runtime"
	"github.com/ringwake/ringwake/sqe"
)

// A write linked to its fdatasync goes down in one submission; the fsync runs
// only if the write succeeded.
func ExampleRing_SubmitBatch() {
	r, err := ringwake.New(ringwake.Config{Entries: 8})
	if err != nil {
		fmt.Println(err)
		return
	}
	defer r.Close()
	dir, _ := os.MkdirTemp("", "example")
	defer os.RemoveAll(dir)
	f, _ := os.Create(filepath.Join(dir, "log"))
	defer f.Close()

	record := []byte("commit 1\n")
	ss := make([]sqe.SQE, 2)
	ss[0].PrepWrite(int32(f.Fd()), record, 0)
	ss[0].Flags |= sqe.IOLink
	ss[1].PrepFsync(int32(f.Fd()), sqe.FsyncDatasync)
	results := make(chan string, 2)
	err = r.SubmitBatch(ss, []func(int32, uint32){
		func(res int32, _ uint32) { results <- fmt.Sprintf("write: %d", res) },
		func(res int32, _ uint32) { results <- fmt.Sprintf("fdatasync: %d", res) },
	})
	if err != nil {
		fmt.Println(err)
		return
	}
	fmt.Println(<-results)
	fmt.Println(<-results)
	// Output:
	// write: 9
	// fdatasync: 0
}

// The kernel enforces the deadline: no Go timer, no cancel round trip.
func ExampleRing_ReadAtTimeout() {
	r, err := ringwake.New(ringwake.Config{Entries: 8})
	if err != nil {
		fmt.Println(err)
		return
	}
	defer r.Close()
	var p [2]int
	unix.Pipe2(p[:], unix.O_CLOEXEC) // blocking: nothing will ever arrive
	defer unix.Close(p[0])
	defer unix.Close(p[1])
	buf := make([]byte, 64)
	_, err = r.ReadAtTimeout(context.Background(), p[0], buf, 0, 10*time.Millisecond)
	fmt.Println(errors.Is(err, os.ErrDeadlineExceeded))
	// Output: true
}

// Registered buffers for O_DIRECT: aligned, pinned by the kernel once.
func ExampleRing_RegisterBuffers() {
	r, err := ringwake.New(ringwake.Config{Entries: 8})
	if err != nil {
		fmt.Println(err)
		return
	}
	defer r.Close()
	fb, err := r.RegisterBuffers(2, 4096)
	if err != nil {
		fmt.Println(err)
		return
	}
	defer fb.Unregister()
	dir, _ := os.MkdirTemp("", "example")
	defer os.RemoveAll(dir)
	f, _ := os.Create(filepath.Join(dir, "data"))
	defer f.Close()

	i, buf, _ := fb.Get(context.Background())
	copy(buf, "fixed")
	n, err := fb.WriteAt(context.Background(), int(f.Fd()), i, buf[:4096], 0)
	fb.Put(i)
	fmt.Println(n, err)
	// Output: 4096 <nil>
}

// A registered descriptor spares the kernel a file-table lookup per request.
func ExampleRing_RegisterFile() {
	r, err := ringwake.New(ringwake.Config{Entries: 8})
	if err != nil {
		fmt.Println(err)
		return
	}
	defer r.Close()
	dir, _ := os.MkdirTemp("", "example")
	defer os.RemoveAll(dir)
	f, _ := os.Create(filepath.Join(dir, "data"))
	defer f.Close()

	ff, err := r.RegisterFile(int(f.Fd()))
	if err != nil {
		fmt.Println(err)
		return
	}
	defer ff.Unregister()
	ctx := context.Background()
	ff.WriteAt(ctx, []byte("registered"), 0)
	ff.Fsync(ctx, true)
	buf := make([]byte, 10)
	n, err := ff.ReadAt(ctx, buf, 0)
	fmt.Println(string(buf[:n]), err)
	// Output: registered <nil>
}

// Gather a header and a body into one write, scatter them back on read.
func ExampleFile_WritevAt() {
	r, err := ringwake.New(ringwake.Config{Entries: 8})
	if err != nil {
		fmt.Println(err)
		return
	}
	defer r.Close()
	dir, _ := os.MkdirTemp("", "example")
	defer os.RemoveAll(dir)
	f, err := r.Open(filepath.Join(dir, "records"), os.O_RDWR|os.O_CREATE, 0o600)
	if err != nil {
		fmt.Println(err)
		return
	}
	defer f.Close()

	ctx := context.Background()
	n, _ := f.WritevAt(ctx, [][]byte{[]byte("hdr:"), []byte("payload")}, 0)
	hdr, body := make([]byte, 4), make([]byte, 7)
	f.ReadvAt(ctx, [][]byte{hdr, body}, 0)
	fmt.Println(n, string(hdr), string(body))
	// Output: 11 hdr: payload
}

// Preallocate a segment and read its metadata, both through the ring.
func ExampleRing_Statx() {
	r, err := ringwake.New(ringwake.Config{Entries: 8})
	if err != nil {
		fmt.Println(err)
		return
	}
	defer r.Close()
	dir, _ := os.MkdirTemp("", "example")
	defer os.RemoveAll(dir)
	name := filepath.Join(dir, "segment")
	ctx := context.Background()
	fd, err := r.Openat(ctx, unix.AT_FDCWD, name, os.O_RDWR|os.O_CREATE, 0o600)
	if err != nil {
		fmt.Println(err)
		return
	}
	defer r.CloseFd(ctx, fd)
	r.Fallocate(ctx, fd, 0, 0, 1<<20)
	st, err := r.Statx(ctx, unix.AT_FDCWD, name, 0, unix.STATX_SIZE)
	fmt.Println(st.Size, err)
	// Output: 1048576 <nil>
}
