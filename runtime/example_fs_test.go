package runtime_test

import (
	"errors"
	"fmt"
	"io/fs"
	"os"
	"path/filepath"

	ringwake "github.com/ringwake/ringwake/runtime"
)

// The write-then-rename that makes a file's new contents appear atomically,
// with every step on the ring.
func ExampleRing_Rename() {
	r, err := ringwake.New(ringwake.Config{Entries: 8, Fallback: true})
	if err != nil {
		fmt.Println(err)
		return
	}
	defer r.Close()
	dir, _ := os.MkdirTemp("", "example")
	defer os.RemoveAll(dir)

	if err := r.MkdirAll(filepath.Join(dir, "db", "tmp"), 0o755); err != nil {
		fmt.Println(err)
		return
	}
	tmp := filepath.Join(dir, "db", "tmp", "CURRENT.new")
	f, err := r.Open(tmp, os.O_WRONLY|os.O_CREATE|os.O_TRUNC, 0o644)
	if err != nil {
		fmt.Println(err)
		return
	}
	f.WriteString("MANIFEST-000042\n")
	f.SyncData()
	f.Close()
	if err := r.Rename(tmp, filepath.Join(dir, "db", "CURRENT")); err != nil {
		fmt.Println(err)
		return
	}
	b, _ := os.ReadFile(filepath.Join(dir, "db", "CURRENT"))
	fmt.Printf("%q\n", b)

	err = r.Remove(tmp)
	fmt.Println(errors.Is(err, fs.ErrNotExist), err.(*os.PathError).Op)
	// Output:
	// "MANIFEST-000042\n"
	// true remove
}

// DirFS serves a directory as an fs.FS whose reads go through the ring.
func ExampleRing_DirFS() {
	r, err := ringwake.New(ringwake.Config{Entries: 8, Fallback: true})
	if err != nil {
		fmt.Println(err)
		return
	}
	defer r.Close()
	dir, _ := os.MkdirTemp("", "example")
	defer os.RemoveAll(dir)
	os.MkdirAll(filepath.Join(dir, "sst"), 0o755)
	os.WriteFile(filepath.Join(dir, "sst", "000001.sst"), []byte("table one"), 0o644)
	os.WriteFile(filepath.Join(dir, "sst", "000002.sst"), []byte("table two"), 0o644)

	fsys := r.DirFS(dir)
	names, _ := fs.Glob(fsys, "sst/*.sst")
	for _, name := range names {
		data, _ := fs.ReadFile(fsys, name)
		fmt.Printf("%s: %s\n", name, data)
	}
	// Output:
	// sst/000001.sst: table one
	// sst/000002.sst: table two
}
