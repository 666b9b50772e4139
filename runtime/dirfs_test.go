package runtime_test

import (
	"bytes"
	"errors"
	"io/fs"
	"os"
	"path/filepath"
	"testing"
	"testing/fstest"

	ringwake "github.com/ringwake/ringwake/runtime"
)

// dirFSTree writes the tree the DirFS tests read: nested directories, an
// empty directory, empty files, files over 1 MiB, a symlink; it returns the
// files' contents by fs path.
func dirFSTree(t testing.TB, root string) map[string][]byte {
	t.Helper()
	files := map[string][]byte{
		"empty":                 {},
		"small.txt":             []byte("hello, ring\n"),
		"a/b/c/deep.bin":        pattern(1, 4096),
		"a/b/empty":             {},
		"a/big.bin":             pattern(2, 1<<20+4097),
		"a/b/medium":            pattern(3, 64<<10),
		"over-1MiB.bin":         pattern(4, 1<<20+1),
		"z/y/x/w/v/u/leaf.data": []byte("leaf"),
	}
	for name, data := range files {
		p := filepath.Join(root, filepath.FromSlash(name))
		if err := os.MkdirAll(filepath.Dir(p), 0o755); err != nil {
			t.Fatal(err)
		}
		if err := os.WriteFile(p, data, 0o644); err != nil {
			t.Fatal(err)
		}
	}
	if err := os.MkdirAll(filepath.Join(root, "emptydir"), 0o755); err != nil {
		t.Fatal(err)
	}
	if err := os.Symlink("small.txt", filepath.Join(root, "link")); err != nil {
		t.Fatal(err)
	}
	return files
}

// TestDirFS runs testing/fstest.TestFS on a DirFS over a tree with nested
// and empty directories, empty files and files over 1 MiB: every listing,
// every Stat, every read (Read, ReadAt, Seek, ReadFile) and fs.Sub agree.
func TestDirFS(t *testing.T) {
	r := newRing(t, ringwake.Config{Entries: 32, Fallback: true})
	root := t.TempDir()
	files := dirFSTree(t, root)
	// fstest also runs on fs.Sub of the first expected name's directory:
	// "z", whose files are small (its byte-at-a-time reads take a while).
	expected := []string{"z/y/x/w/v/u/leaf.data", "emptydir", "link", "a/b/c"}
	for name := range files {
		if name != expected[0] {
			expected = append(expected, name)
		}
	}
	fsys := r.DirFS(root)
	before := r.Stats().Submitted
	if err := fstest.TestFS(fsys, expected...); err != nil {
		t.Fatal(err)
	}
	if r.Stats().Submitted-before < 100 {
		t.Fatalf("fstest.TestFS made %d ring requests: the reads did not go through the ring", r.Stats().Submitted-before)
	}
	for name, data := range files {
		got, err := fs.ReadFile(fsys, name)
		if err != nil || !bytes.Equal(got, data) {
			t.Fatalf("ReadFile(%s): %d bytes, %v; want %d bytes", name, len(got), err, len(data))
		}
	}
}

// TestDirFSErrors: bad and missing names fail as os.DirFS's do: the same
// *fs.PathError op, the fs path, the same cause.
func TestDirFSErrors(t *testing.T) {
	r := newRing(t, ringwake.Config{Entries: 8, Fallback: true})
	root := t.TempDir()
	dirFSTree(t, root)
	ours, theirs := r.DirFS(root), os.DirFS(root)
	calls := []struct {
		name string
		call func(fsys fs.FS) error
	}{
		{"Open missing", func(f fs.FS) error { _, err := f.Open("nope"); return err }},
		{"Open ..", func(f fs.FS) error { _, err := f.Open("../x"); return err }},
		{"Open absolute", func(f fs.FS) error { _, err := f.Open("/etc/passwd"); return err }},
		{"Open trailing slash", func(f fs.FS) error { _, err := f.Open("a/"); return err }},
		{"Open below a file", func(f fs.FS) error { _, err := f.Open("small.txt/x"); return err }},
		{"ReadFile missing", func(f fs.FS) error { _, err := fs.ReadFile(f, "a/nope"); return err }},
		{"ReadFile a directory", func(f fs.FS) error { _, err := fs.ReadFile(f, "a"); return err }},
		{"ReadFile invalid", func(f fs.FS) error { _, err := fs.ReadFile(f, "a//b"); return err }},
		{"ReadDir missing", func(f fs.FS) error { _, err := fs.ReadDir(f, "nope"); return err }},
		{"ReadDir a file", func(f fs.FS) error { _, err := fs.ReadDir(f, "small.txt"); return err }},
		{"Stat missing", func(f fs.FS) error { _, err := fs.Stat(f, "a/b/nope"); return err }},
		{"Stat invalid", func(f fs.FS) error { _, err := fs.Stat(f, "./a"); return err }},
	}
	for _, c := range calls {
		oerr, werr := c.call(theirs), c.call(ours)
		if (oerr == nil) != (werr == nil) {
			t.Errorf("%s: os.DirFS %v, DirFS %v", c.name, oerr, werr)
			continue
		}
		var ope, wpe *fs.PathError
		if !errors.As(oerr, &ope) || !errors.As(werr, &wpe) {
			t.Errorf("%s: want *fs.PathError from both: os.DirFS %#v, DirFS %#v", c.name, oerr, werr)
			continue
		}
		if ope.Path != wpe.Path || errors.Unwrap(oerr).Error() != errors.Unwrap(werr).Error() {
			t.Errorf("%s: os.DirFS %v, DirFS %v", c.name, oerr, werr)
		}
		if ope.Op != wpe.Op && c.name != "ReadDir a file" {
			t.Errorf("%s: op %q, os.DirFS's %q", c.name, wpe.Op, ope.Op)
		}
		if errors.Is(oerr, fs.ErrNotExist) != errors.Is(werr, fs.ErrNotExist) {
			t.Errorf("%s: errors.Is(fs.ErrNotExist) differs: os.DirFS %v, DirFS %v", c.name, oerr, werr)
		}
	}
	if _, err := fs.Sub(ours, "../up"); err == nil {
		t.Error("Sub(../up) succeeded")
	}
	sub, err := fs.Sub(ours, "a/b")
	if err != nil {
		t.Fatal(err)
	}
	if data, err := fs.ReadFile(sub, "c/deep.bin"); err != nil || !bytes.Equal(data, pattern(1, 4096)) {
		t.Fatalf("ReadFile through Sub: %d bytes, %v", len(data), err)
	}
	info, err := fs.Stat(ours, "link")
	if err != nil || info.Name() != "link" || info.Size() != int64(len("hello, ring\n")) || !info.Mode().IsRegular() {
		t.Fatalf("Stat of a symlink to a file: %v, %v", info, err)
	}
}
