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

func ExampleLog_TruncateFront() {
	dir, err := os.MkdirTemp("", "wal-example")
	if err != nil {
		log.Fatal(err)
	}
	defer os.RemoveAll(dir)

	// Small segments, so that a few records fill one.
	l, err := wal.Open(dir, wal.Options{SegmentSize: 16 << 10})
	if err != nil {
		log.Fatal(err)
	}
	defer l.Close()
	rec := make([]byte, 1000)
	for range 60 {
		if _, err := l.Append(context.Background(), rec); err != nil {
			log.Fatal(err)
		}
	}

	// A checkpoint made records below 40 unnecessary: the segments holding
	// only those leave the log, and become spares for the segments to come.
	if err := l.TruncateFront(40); err != nil {
		log.Fatal(err)
	}
	first := uint64(0)
	if err := l.Replay(func(lsn uint64, _ []byte) error {
		if first == 0 {
			first = lsn
		}
		return nil
	}); err != nil {
		log.Fatal(err)
	}
	fmt.Println("replay starts at", first)

	for range 60 {
		if _, err := l.Append(context.Background(), rec); err != nil {
			log.Fatal(err)
		}
	}
	fmt.Println("segments reused instead of created:", l.Stats().Recycled)
	// Output:
	// replay starts at 37
	// segments reused instead of created: 2
}
