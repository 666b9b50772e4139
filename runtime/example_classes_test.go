package runtime_test

import (
	"context"
	"errors"
	"fmt"
	"io"
	"log"
	"os"
	"path/filepath"

	ringwake "github.com/ringwake/ringwake/runtime"
)

// Foreground reads and background writes share one ring; under contention
// the scheduler admits them 1000 to 50 by cost, and a class alone gets the
// whole device.
func ExampleRing_NewClass() {
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
	f, err := r.Open(filepath.Join(dir, "table"), os.O_RDWR|os.O_CREATE, 0o644)
	if err != nil {
		log.Fatal(err)
	}
	defer f.Close()

	fg := r.NewClass("foreground", 1000)
	bg := r.NewClass("compaction", 50)
	ctx := context.Background()

	// Every Ring and File call made with the class's context is scheduled in it.
	block := make([]byte, 4096)
	for i := range 4 {
		if _, err := f.WriteAtContext(ringwake.WithClass(ctx, bg), block, int64(i)*4096); err != nil {
			log.Fatal(err)
		}
	}
	// A File serves reads the page cache holds on the caller's thread,
	// unscheduled (no device involved); Ring.ReadAt always goes through the
	// ring, so this one is admitted in fg.
	if _, err := r.ReadAt(ringwake.WithClass(ctx, fg), int(f.Fd()), block, 0); err != nil {
		log.Fatal(err)
	}
	for _, c := range []*ringwake.Class{fg, bg} {
		st := c.Stats()
		fmt.Printf("%s: %d ops, %d bytes, %d in flight\n", st.Name, st.Ops, st.Bytes, st.InFlight)
	}
	// Output:
	// foreground: 1 ops, 4096 bytes, 0 in flight
	// compaction: 4 ops, 16384 bytes, 0 in flight
}

// Do runs a batch of reads and writes from one goroutine, up to 64 to an
// enter, and reports each op's outcome in place.
func ExampleRing_Do() {
	dir, err := os.MkdirTemp("", "ringwake-example")
	if err != nil {
		log.Fatal(err)
	}
	defer os.RemoveAll(dir)
	name := filepath.Join(dir, "log")
	if err := os.WriteFile(name, []byte("alpha beta gamma"), 0o644); err != nil {
		log.Fatal(err)
	}
	fd, err := os.Open(name)
	if err != nil {
		log.Fatal(err)
	}
	defer fd.Close()

	r, err := ringwake.New(ringwake.Config{})
	if err != nil {
		log.Fatal(err)
	}
	defer r.Close()
	ops := []ringwake.Op{
		{Fd: int(fd.Fd()), Buf: make([]byte, 5), Off: 0},
		{Fd: int(fd.Fd()), Buf: make([]byte, 4), Off: 6},
		{Fd: int(fd.Fd()), Buf: make([]byte, 8), Off: 11}, // runs past the end
	}
	// err is a *BatchError when some ops failed (a read that reaches the
	// end of the file has io.EOF); each Op has its own Err.
	err = r.Do(context.Background(), ops)
	for _, op := range ops {
		fmt.Printf("%q %v\n", op.Buf[:op.N], op.Err)
	}
	var be *ringwake.BatchError
	if errors.As(err, &be) {
		fmt.Printf("%d of %d failed, the first with EOF: %v\n", be.Failed, be.Total, errors.Is(err, io.EOF))
	}
	// Output:
	// "alpha" <nil>
	// "beta" <nil>
	// "gamma" EOF
	// 1 of 3 failed, the first with EOF: true
}
