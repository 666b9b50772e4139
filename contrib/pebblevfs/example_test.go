package pebblevfs_test

import (
	"fmt"
	"os"

	"github.com/cockroachdb/pebble/v2"

	"github.com/ringwake/ringwake/contrib/pebblevfs"
	ringwake "github.com/ringwake/ringwake/runtime"
)

// Pebble on ringwake: every read, write and sync of the database goes
// through the ring.
func ExampleNew() {
	r, err := ringwake.New(ringwake.Config{Entries: 256, Fallback: true})
	if err != nil {
		fmt.Println(err)
		return
	}
	defer r.Close() // after the database's Close: its files are on r
	dir, _ := os.MkdirTemp("", "pebble")
	defer os.RemoveAll(dir)

	db, err := pebble.Open(dir, &pebble.Options{FS: pebblevfs.New(r), Logger: quietLogger{}})
	if err != nil {
		fmt.Println(err)
		return
	}
	if err := db.Set([]byte("greeting"), []byte("hello from the ring"), pebble.Sync); err != nil {
		fmt.Println(err)
		return
	}
	v, closer, err := db.Get([]byte("greeting"))
	if err != nil {
		fmt.Println(err)
		return
	}
	fmt.Printf("%s\n", v)
	closer.Close()
	fmt.Println(db.Close())
	// Output:
	// hello from the ring
	// <nil>
}
