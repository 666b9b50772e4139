package runtime_test

import (
	"context"
	"crypto/sha256"
	"errors"
	"fmt"
	"io/fs"
	"os"
	"path/filepath"
	"sort"
	"strings"
	"sync"
	"syscall"
	"testing"

	"golang.org/x/sys/unix"

	ringwake "github.com/ringwake/ringwake/runtime"
	"github.com/ringwake/ringwake/sqe"
)

// fsOps are the opcodes behind the file-system calls.
var fsOps = []uint8{sqe.OpRenameat, sqe.OpUnlinkat, sqe.OpMkdirat, sqe.OpSymlinkat, sqe.OpLinkat, sqe.OpFtruncate}

// fixture builds the tree every parity case starts from, under root.
func fixture(t testing.TB, root string) {
	t.Helper()
	must := func(err error) {
		t.Helper()
		if err != nil {
			t.Fatal(err)
		}
	}
	must(os.WriteFile(filepath.Join(root, "a"), []byte("alpha"), 0o644))
	must(os.WriteFile(filepath.Join(root, "b"), []byte("bravo!"), 0o600))
	must(os.Mkdir(filepath.Join(root, "d"), 0o755))
	must(os.WriteFile(filepath.Join(root, "d", "x"), nil, 0o644))
	must(os.Mkdir(filepath.Join(root, "e"), 0o700))
	must(os.Symlink("a", filepath.Join(root, "l")))
	must(os.Symlink("missing", filepath.Join(root, "dangling")))
	must(unix.Mkfifo(filepath.Join(root, "fifo"), 0o600))
}

// tree describes what is under root: path, type and mode, size, link
// target, content hash; one line per entry.
func tree(t testing.TB, root string) string {
	t.Helper()
	var lines []string
	err := filepath.WalkDir(root, func(path string, d fs.DirEntry, err error) error {
		if err != nil {
			return err
		}
		fi, err := os.Lstat(path)
		if err != nil {
			return err
		}
		rel, _ := filepath.Rel(root, path)
		line := fmt.Sprintf("%s %v", rel, fi.Mode())
		switch {
		case fi.Mode()&fs.ModeSymlink != 0:
			target, _ := os.Readlink(path)
			line += " -> " + target
		case fi.Mode().IsRegular():
			b, _ := os.ReadFile(path)
			line += fmt.Sprintf(" %d %x", fi.Size(), sha256.Sum256(b))
		}
		lines = append(lines, line)
		return nil
	})
	if err != nil {
		t.Fatal(err)
	}
	sort.Strings(lines)
	return strings.Join(lines, "\n")
}

// errShape is what parity compares of an error: its type, op, the paths
// relative to the case's root, and the errno.
func errShape(err error, root string) string {
	if err == nil {
		return "<nil>"
	}
	rel := func(p string) string { return strings.TrimPrefix(p, root+"/") }
	var errno syscall.Errno
	if !errors.As(err, &errno) {
		return "no errno in " + err.Error()
	}
	var pe *os.PathError
	var le *os.LinkError
	switch {
	case errors.As(err, &pe) && err == error(pe):
		return fmt.Sprintf("PathError %s %s: %v", pe.Op, rel(pe.Path), errno)
	case errors.As(err, &le) && err == error(le):
		return fmt.Sprintf("LinkError %s %s %s: %v", le.Op, rel(le.Old), rel(le.New), errno)
	}
	return fmt.Sprintf("%T: %v", err, errno)
}

// fsAPI is the part of package os the ring's conveniences stand in for.
type fsAPI struct {
	Rename   func(oldpath, newpath string) error
	Remove   func(name string) error
	Mkdir    func(name string, perm os.FileMode) error
	MkdirAll func(path string, perm os.FileMode) error
	Truncate func(name string, size int64) error
	Link     func(oldname, newname string) error
	Symlink  func(target, link string) error
}

var osAPI = fsAPI{os.Rename, os.Remove, os.Mkdir, os.MkdirAll, os.Truncate, os.Link, os.Symlink}

func ringAPI(r *ringwake.Ring) fsAPI {
	ctx := context.Background()
	return fsAPI{r.Rename, r.Remove, r.Mkdir, r.MkdirAll, r.Truncate,
		func(o, n string) error {
			err := r.Linkat(ctx, unix.AT_FDCWD, o, unix.AT_FDCWD, n, 0)
			if le, ok := err.(*os.LinkError); ok {
				le.Op = "link" // os names it after link(2)
			}
			return err
		},
		func(o, n string) error {
			err := r.Symlinkat(ctx, o, unix.AT_FDCWD, n)
			if le, ok := err.(*os.LinkError); ok {
				le.Op = "symlink"
			}
			return err
		}}
}

type parityCase struct {
	name string
	run  func(api fsAPI, p func(string) string) error
}

var parityCases = []parityCase{
	{"rename file", func(a fsAPI, p func(string) string) error { return a.Rename(p("a"), p("c")) }},
	{"rename over a file", func(a fsAPI, p func(string) string) error { return a.Rename(p("a"), p("b")) }},
	{"rename onto itself", func(a fsAPI, p func(string) string) error { return a.Rename(p("a"), p("a")) }},
	{"rename file over empty dir", func(a fsAPI, p func(string) string) error { return a.Rename(p("a"), p("e")) }},
	{"rename dir over empty dir", func(a fsAPI, p func(string) string) error { return a.Rename(p("d"), p("e")) }},
	{"rename dir onto itself", func(a fsAPI, p func(string) string) error { return a.Rename(p("e"), p("e")) }},
	{"rename missing over dir", func(a fsAPI, p func(string) string) error { return a.Rename(p("zz"), p("e")) }},
	{"rename missing", func(a fsAPI, p func(string) string) error { return a.Rename(p("zz"), p("c")) }},
	{"rename into missing dir", func(a fsAPI, p func(string) string) error { return a.Rename(p("a"), p("zz/c")) }},
	{"rename dir into itself", func(a fsAPI, p func(string) string) error { return a.Rename(p("d"), p("d/sub")) }},
	{"rename symlink", func(a fsAPI, p func(string) string) error { return a.Rename(p("l"), p("l2")) }},
	{"rename empty name", func(a fsAPI, p func(string) string) error { return a.Rename("", p("c")) }},
	{"rename NUL in name", func(a fsAPI, p func(string) string) error { return a.Rename(p("a\x00"), p("c")) }},
	{"remove file", func(a fsAPI, p func(string) string) error { return a.Remove(p("a")) }},
	{"remove empty dir", func(a fsAPI, p func(string) string) error { return a.Remove(p("e")) }},
	{"remove full dir", func(a fsAPI, p func(string) string) error { return a.Remove(p("d")) }},
	{"remove missing", func(a fsAPI, p func(string) string) error { return a.Remove(p("zz")) }},
	{"remove symlink", func(a fsAPI, p func(string) string) error { return a.Remove(p("l")) }},
	{"remove dangling symlink", func(a fsAPI, p func(string) string) error { return a.Remove(p("dangling")) }},
	{"remove below a file", func(a fsAPI, p func(string) string) error { return a.Remove(p("a/x")) }},
	{"remove fifo", func(a fsAPI, p func(string) string) error { return a.Remove(p("fifo")) }},
	{"mkdir", func(a fsAPI, p func(string) string) error { return a.Mkdir(p("n"), 0o750) }},
	{"mkdir sticky", func(a fsAPI, p func(string) string) error { return a.Mkdir(p("n"), 0o777|os.ModeSticky) }},
	{"mkdir exists", func(a fsAPI, p func(string) string) error { return a.Mkdir(p("a"), 0o755) }},
	{"mkdir no parent", func(a fsAPI, p func(string) string) error { return a.Mkdir(p("zz/n"), 0o755) }},
	{"mkdir below a file", func(a fsAPI, p func(string) string) error { return a.Mkdir(p("a/n"), 0o755) }},
	{"mkdirall deep", func(a fsAPI, p func(string) string) error { return a.MkdirAll(p("p/q/r"), 0o750) }},
	{"mkdirall trailing slashes", func(a fsAPI, p func(string) string) error { return a.MkdirAll(p("p/q//"), 0o750) }},
	{"mkdirall exists", func(a fsAPI, p func(string) string) error { return a.MkdirAll(p("d"), 0o755) }},
	{"mkdirall dot", func(a fsAPI, p func(string) string) error { return a.MkdirAll(p("e/."), 0o755) }},
	{"mkdirall new dot", func(a fsAPI, p func(string) string) error { return a.MkdirAll(p("n/."), 0o755) }},
	{"mkdirall over a file", func(a fsAPI, p func(string) string) error { return a.MkdirAll(p("a"), 0o755) }},
	{"mkdirall below a file", func(a fsAPI, p func(string) string) error { return a.MkdirAll(p("a/q/r"), 0o755) }},
	{"mkdirall through a symlink", func(a fsAPI, p func(string) string) error { return a.MkdirAll(p("l/q"), 0o755) }},
	{"truncate shorter", func(a fsAPI, p func(string) string) error { return a.Truncate(p("a"), 2) }},
	{"truncate longer", func(a fsAPI, p func(string) string) error { return a.Truncate(p("b"), 100) }},
	{"truncate through a symlink", func(a fsAPI, p func(string) string) error { return a.Truncate(p("l"), 1) }},
	{"truncate missing", func(a fsAPI, p func(string) string) error { return a.Truncate(p("zz"), 1) }},
	{"truncate a dir", func(a fsAPI, p func(string) string) error { return a.Truncate(p("d"), 1) }},
	{"truncate a fifo", func(a fsAPI, p func(string) string) error { return a.Truncate(p("fifo"), 0) }},
	{"truncate negative", func(a fsAPI, p func(string) string) error { return a.Truncate(p("a"), -1) }},
	{"link", func(a fsAPI, p func(string) string) error { return a.Link(p("a"), p("d/h")) }},
	{"link exists", func(a fsAPI, p func(string) string) error { return a.Link(p("a"), p("b")) }},
	{"link a dir", func(a fsAPI, p func(string) string) error { return a.Link(p("d"), p("d2")) }},
	{"link missing", func(a fsAPI, p func(string) string) error { return a.Link(p("zz"), p("d2")) }},
	{"symlink", func(a fsAPI, p func(string) string) error { return a.Symlink("../a", p("d/s")) }},
	{"symlink exists", func(a fsAPI, p func(string) string) error { return a.Symlink("a", p("b")) }},
	{"symlink no parent", func(a fsAPI, p func(string) string) error { return a.Symlink("a", p("zz/s")) }},
}

// TestFsOpsParity runs every case on a fresh tree with package os and with
// the ring's calls, and requires the same error (type, op, paths, errno)
// and the same tree afterwards: through the ring, and through the syscall
// path a kernel without the opcodes takes.
func TestFsOpsParity(t *testing.T) {
	r := newRing(t, ringwake.Config{Entries: 16, Fallback: true})
	for _, mode := range []string{"ring", "syscall"} {
		t.Run(mode, func(t *testing.T) {
			if mode == "syscall" {
				defer ringwake.HideOps(fsOps...)()
			}
			for _, c := range parityCases {
				t.Run(c.name, func(t *testing.T) {
					results := map[string][2]string{}
					for _, side := range []struct {
						name string
						api  fsAPI
					}{{"os", osAPI}, {"ringwake", ringAPI(r)}} {
						root := t.TempDir()
						fixture(t, root)
						err := c.run(side.api, func(rel string) string { return root + "/" + rel })
						results[side.name] = [2]string{errShape(err, root), tree(t, root)}
						if errors.Is(err, syscall.ENOENT) && !errors.Is(err, fs.ErrNotExist) {
							t.Errorf("%s: errors.Is(%v, fs.ErrNotExist) is false", side.name, err)
						}
					}
					o, w := results["os"], results["ringwake"]
					if o[0] != w[0] {
						t.Errorf("error: os %s, ringwake %s", o[0], w[0])
					}
					if o[1] != w[1] {
						t.Errorf("tree after os:\n%s\ntree after ringwake:\n%s", o[1], w[1])
					}
				})
			}
		})
	}
}

// TestFsOpsAt checks the *at calls relative to a directory descriptor, with
// their flags, and that they went through the ring where the kernel has the
// opcodes.
func TestFsOpsAt(t *testing.T) {
	r := newRing(t, ringwake.Config{Entries: 16, Fallback: true})
	ctx := context.Background()
	root := t.TempDir()
	fixture(t, root)
	dir, err := os.Open(root)
	if err != nil {
		t.Fatal(err)
	}
	defer dir.Close()
	dfd := int(dir.Fd())
	before := r.Stats().Submitted
	check := func(what string, err error) {
		t.Helper()
		if err != nil {
			t.Fatalf("%s: %v", what, err)
		}
	}
	check("mkdirat", r.Mkdirat(ctx, dfd, "m", 0o700))
	check("symlinkat", r.Symlinkat(ctx, "../b", dfd, "m/s"))
	check("linkat follow", r.Linkat(ctx, dfd, "m/s", dfd, "m/h", unix.AT_SYMLINK_FOLLOW))
	check("renameat exchange", r.Renameat(ctx, dfd, "a", dfd, "b", unix.RENAME_EXCHANGE))
	err = r.Renameat(ctx, dfd, "a", dfd, "b", unix.RENAME_NOREPLACE)
	var le *os.LinkError
	if !errors.As(err, &le) || le.Op != "renameat" || le.Old != "a" || le.New != "b" || !errors.Is(err, fs.ErrExist) {
		t.Fatalf("renameat NOREPLACE onto a file: %#v, want *os.LinkError renameat a b EEXIST", err)
	}
	check("unlinkat", r.Unlinkat(ctx, dfd, "m/s", 0))
	err = r.Unlinkat(ctx, dfd, "m", 0)
	var pe *os.PathError
	if !errors.As(err, &pe) || pe.Op != "unlinkat" || pe.Path != "m" || !errors.Is(err, syscall.EISDIR) {
		t.Fatalf("unlinkat of a directory without AT_REMOVEDIR: %#v", err)
	}
	if b, _ := os.ReadFile(filepath.Join(root, "b")); string(b) != "alpha" {
		t.Fatalf("after RENAME_EXCHANGE b holds %q, want alpha", b)
	}
	if b, _ := os.ReadFile(filepath.Join(root, "m", "h")); string(b) != "bravo!" {
		t.Fatalf("the hard link made through the symlink (before the exchange) holds %q, want bravo!", b)
	}
	if err := r.Unlinkat(ctx, dfd, "nope", 0); !errors.Is(err, fs.ErrNotExist) {
		t.Fatalf("unlinkat of a missing name: %v, want fs.ErrNotExist", err)
	}
	f, err := os.OpenFile(filepath.Join(root, "b"), os.O_RDWR, 0)
	if err != nil {
		t.Fatal(err)
	}
	defer f.Close()
	check("ftruncate", r.Ftruncate(ctx, int(f.Fd()), 3))
	if st, _ := f.Stat(); st.Size() != 3 {
		t.Fatalf("size %d after Ftruncate(3)", st.Size())
	}
	var oe *ringwake.OpError
	if err := r.Ftruncate(ctx, int(f.Fd()), -1); !errors.As(err, &oe) || !errors.Is(err, syscall.EINVAL) {
		t.Fatalf("Ftruncate(-1): %v, want an OpError wrapping EINVAL", err)
	}
	if err := r.Ftruncate(ctx, -1, 0); !errors.Is(err, syscall.EBADF) {
		t.Fatalf("Ftruncate on fd -1: %v, want EBADF", err)
	}
	// Nine calls reached the ring (the negative size never does).
	if got := r.Stats().Submitted - before; got < 9 {
		t.Fatalf("%d requests submitted for nine ring calls", got)
	}
	for _, op := range fsOps {
		if !r.Supports(op) {
			t.Errorf("Supports(%s) is false on this kernel (6.9+ has them all)", sqe.OpName(op))
		}
	}
}

// TestFsOpsCanceled: a call whose ctx has ended fails with the ctx's error
// and leaves the file system as it was, on both paths.
func TestFsOpsCanceled(t *testing.T) {
	r := newRing(t, ringwake.Config{Entries: 16, Fallback: true})
	ctx, cancel := context.WithCancel(context.Background())
	cancel()
	for _, mode := range []string{"ring", "syscall"} {
		t.Run(mode, func(t *testing.T) {
			if mode == "syscall" {
				defer ringwake.HideOps(fsOps...)()
			}
			root := t.TempDir()
			err := r.Mkdirat(ctx, unix.AT_FDCWD, filepath.Join(root, "n"), 0o755)
			if !errors.Is(err, context.Canceled) {
				t.Fatalf("Mkdirat with a canceled ctx: %v", err)
			}
			if _, err := os.Stat(filepath.Join(root, "n")); !os.IsNotExist(err) {
				t.Fatalf("the canceled mkdir ran: %v", err)
			}
		})
	}
}

var gcSink []byte

// TestFsOpsPathsUnderGC: many goroutines create, link, rename and remove
// files with freshly built paths while the GC runs flat out; every path the
// kernel (or the software engine's worker) reads must still hold the name it
// was given, so every result lands where it was asked to.
func TestFsOpsPathsUnderGC(t *testing.T) {
	r := newRing(t, ringwake.Config{Entries: 64, Fallback: true})
	ctx := context.Background()
	root := t.TempDir()
	stop := gcStorm(t, func(int) {
		// Reuse freed memory of the paths' size class at once, so that a
		// path the runtime let go of early is overwritten.
		for range 1000 {
			b := make([]byte, 64)
			for i := range b {
				b[i] = 'X'
			}
			gcSink = b
		}
	})
	// One directory per step: a symlink made, renamed and, for even steps,
	// removed with its directory.
	step := func(g, i int) error {
		base := filepath.Join(root, fmt.Sprintf("g%02d-%03d", g, i))
		if err := r.Mkdirat(ctx, unix.AT_FDCWD, base, 0o755); err != nil {
			return err
		}
		if err := r.Symlinkat(ctx, fmt.Sprintf("target-%d-%d", g, i), unix.AT_FDCWD, base+"/s"); err != nil {
			return err
		}
		if err := r.Renameat(ctx, unix.AT_FDCWD, base+"/s", unix.AT_FDCWD, base+"/t", 0); err != nil {
			return err
		}
		if i%2 == 1 {
			return nil
		}
		if err := r.Unlinkat(ctx, unix.AT_FDCWD, base+"/t", 0); err != nil {
			return err
		}
		return r.Unlinkat(ctx, unix.AT_FDCWD, base, unix.AT_REMOVEDIR)
	}
	var wg sync.WaitGroup
	errs := make(chan error, 16)
	for g := range 16 {
		wg.Add(1)
		go func() {
			defer wg.Done()
			for i := range 40 {
				if err := step(g, i); err != nil {
					errs <- err
					return
				}
			}
		}()
	}
	wg.Wait()
	stop()
	close(errs)
	for err := range errs {
		t.Fatal(err)
	}
	ents, err := os.ReadDir(root)
	if err != nil {
		t.Fatal(err)
	}
	if len(ents) != 16*20 {
		t.Fatalf("%d directories left, want %d", len(ents), 16*20)
	}
	for _, e := range ents {
		var g, i int
		if _, err := fmt.Sscanf(e.Name(), "g%02d-%03d", &g, &i); err != nil || i%2 == 0 {
			t.Fatalf("unexpected entry %q", e.Name())
		}
		target, err := os.Readlink(filepath.Join(root, e.Name(), "t"))
		if want := fmt.Sprintf("target-%d-%d", g, i); err != nil || target != want {
			t.Fatalf("%s/t -> %q (%v), want %q", e.Name(), target, err, want)
		}
	}
}

// TestStatParity: Ring.Stat and Ring.Lstat describe every kind of entry as
// os.Stat and os.Lstat do, and fail as they do.
func TestStatParity(t *testing.T) {
	r := newRing(t, ringwake.Config{Entries: 8, Fallback: true})
	root := t.TempDir()
	fixture(t, root)
	show := func(fi fs.FileInfo, err error) string {
		if err != nil {
			var pe *os.PathError
			if !errors.As(err, &pe) {
				return "not a PathError: " + err.Error()
			}
			return fmt.Sprintf("%s %s: %v", pe.Op, strings.TrimPrefix(pe.Path, root), pe.Err)
		}
		return fmt.Sprintf("%s %v %v %d %v", fi.Name(), fi.IsDir(), fi.Mode(), fi.Size(), fi.ModTime())
	}
	for _, name := range []string{"a", "b", "d", "d/x", "e", "l", "dangling", "fifo", "zz", "a/x", "d/", "."} {
		p := filepath.Join(root, name)
		if name == "d/" {
			p = root + "/d/"
		}
		if o, w := show(os.Stat(p)), show(r.Stat(p)); o != w {
			t.Errorf("Stat(%s): os %s, ringwake %s", name, o, w)
		}
		if o, w := show(os.Lstat(p)), show(r.Lstat(p)); o != w {
			t.Errorf("Lstat(%s): os %s, ringwake %s", name, o, w)
		}
	}
}
