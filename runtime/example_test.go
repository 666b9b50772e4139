package runtime_test

import (
	"context"
	"fmt"
	"log"
	"os"
	"path/filepath"

	ringwake "github.com/ringwake/ringwake/runtime"
	"github.com/ringwake/ringwake/sqe"
)

func ExampleNew() {
	r, err := ringwake.New(ringwake.Config{Entries: 64})
	if err != nil {
		// errors.Is(err, ringwake.ErrUnsupported) where the kernel refuses io_uring.
		log.Fatal(err)
	}
	defer r.Close()
	if err := r.Nop(context.Background()); err != nil {
		log.Fatal(err)
	}
	fmt.Println("requests in flight at once:", r.Capacity())
	// Output: requests in flight at once: 64
}

func ExampleRing_ReadAt() {
	dir, err := os.MkdirTemp("", "ringwake-example")
	if err != nil {
		log.Fatal(err)
	}
	defer os.RemoveAll(dir)
	name := filepath.Join(dir, "greeting")
	if err := os.WriteFile(name, []byte("hello, ring"), 0o644); err != nil {
		log.Fatal(err)
	}
	f, err := os.Open(name)
	if err != nil {
		log.Fatal(err)
	}
	defer f.Close()

	r, err := ringwake.New(ringwake.Config{})
	if err != nil {
		log.Fatal(err)
	}
	defer r.Close()
	buf := make([]byte, 16)
	// One pread through the ring: it may be short, as here at the end of the file.
	n, err := r.ReadAt(context.Background(), int(f.Fd()), buf, 7)
	if err != nil {
		log.Fatal(err)
	}
	fmt.Printf("%d bytes: %q\n", n, buf[:n])
	// Output: 4 bytes: "ring"
}

func ExampleRing_Submit() {
	r, err := ringwake.New(ringwake.Config{})
	if err != nil {
		log.Fatal(err)
	}
	defer r.Close()

	var s sqe.SQE
	s.PrepNop()
	done := make(chan int32, 1)
	// The callback runs on the ring's poller goroutine: it must not block, so
	// it hands the result over through a buffered channel.
	if err := r.Submit(&s, func(res int32, flags uint32) { done <- res }); err != nil {
		log.Fatal(err)
	}
	fmt.Println("NOP completed with res", <-done)
	// Output: NOP completed with res 0
}

func ExampleFile_Sync() {
	dir, err := os.MkdirTemp("", "ringwake-example")
	if err != nil {
		log.Fatal(err)
	}
	defer os.RemoveAll(dir)

	r, err := ringwake.New(ringwake.Config{})
	if err != nil {
		log.Fatal(err)
	}
	defer r.Close()
	f, err := r.Open(filepath.Join(dir, "journal"), os.O_RDWR|os.O_CREATE|os.O_APPEND, 0o644)
	if err != nil {
		log.Fatal(err)
	}
	defer f.Close()
	if _, err := f.Write([]byte("commit 1\n")); err != nil {
		log.Fatal(err)
	}
	// Sync returns once the record is on stable storage; concurrent Syncs
	// share one fsync.
	if err := f.Sync(); err != nil {
		log.Fatal(err)
	}
	syncs, fsyncs := f.SyncStats()
	data, err := os.ReadFile(f.Name())
	if err != nil {
		log.Fatal(err)
	}
	fmt.Printf("%q after %d Sync, %d fsync\n", data, syncs, fsyncs)
	// Output: "commit 1\n" after 1 Sync, 1 fsync
}
