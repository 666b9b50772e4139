package wal_test

import (
	"context"
	"fmt"
	"log"
	"os"

	"github.com/ringwake/ringwake/wal"
)

func ExampleLog() {
	dir, err := os.MkdirTemp("", "wal-example")
	if err != nil {
		log.Fatal(err)
	}
	defer os.RemoveAll(dir)

	l, err := wal.Open(dir, wal.Options{SegmentSize: 1 << 20})
	if err != nil {
		log.Fatal(err) // errors.Is(err, ringwake.ErrUnsupported) where the kernel refuses io_uring
	}
	for _, rec := range []string{"begin", "put k=v", "commit"} {
		// Append returns once an fdatasync covered the record; concurrent
		// Appends would share it.
		lsn, err := l.Append(context.Background(), []byte(rec))
		if err != nil {
			log.Fatal(err) // sticky: the log refuses appends until reopened
		}
		fmt.Println("durable:", lsn)
	}
	if err := l.Close(); err != nil {
		log.Fatal(err)
	}

	// Reopening recovers the log; Replay returns every record in order.
	l, err = wal.Open(dir, wal.Options{SegmentSize: 1 << 20})
	if err != nil {
		log.Fatal(err)
	}
	defer l.Close()
	err = l.Replay(func(lsn uint64, record []byte) error {
		fmt.Printf("%d %s\n", lsn, record)
		return nil
	})
	if err != nil {
		log.Fatal(err)
	}
	// Output:
	// durable: 1
	// durable: 2
	// durable: 3
	// 1 begin
	// 2 put k=v
	// 3 commit
}
