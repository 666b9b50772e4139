package pebblevfs_test

import (
	"bytes"
	"errors"
	"fmt"
	"io"
	"io/fs"
	"os"
	"os/exec"
	"path/filepath"
	"sort"
	"strings"
	"testing"

	"github.com/cockroachdb/datadriven"
	"github.com/cockroachdb/pebble/v2/vfs"
	"go.uber.org/goleak"
	"golang.org/x/sys/unix"

	"github.com/ringwake/ringwake/contrib/pebblevfs"
	"github.com/ringwake/ringwake/internal/uringtest"
	ringwake "github.com/ringwake/ringwake/runtime"
)

func TestMain(m *testing.M) { goleak.VerifyTestMain(m) }

// newRing is a ring for one test, closed after it; outside CI, a kernel
// that refuses io_uring skips the test (uringtest.Require).
func newRing(t testing.TB) *ringwake.Ring {
	t.Helper()
	if os.Getenv("RINGWAKE_BACKEND") != ringwake.BackendFallback {
		uringtest.Require(t)
	}
	r, err := ringwake.New(ringwake.Config{Entries: 256})
	if err != nil {
		t.Fatal(err)
	}
	t.Cleanup(func() {
		if err := r.Close(); err != nil {
			t.Errorf("ring Close: %v", err)
		}
	})
	return r
}

// pebbleTestdata is the directory of Pebble's vfs test scripts in the module
// cache (or vendor directory) this module builds with.
func pebbleTestdata(t *testing.T) string {
	t.Helper()
	out, err := exec.Command("go", "list", "-m", "-f", "{{.Dir}}", "github.com/cockroachdb/pebble/v2").Output()
	if err != nil {
		t.Fatalf("go list -m github.com/cockroachdb/pebble/v2: %v", err)
	}
	dir := filepath.Join(strings.TrimSpace(string(out)), "vfs", "testdata")
	if _, err := os.Stat(filepath.Join(dir, "vfs")); err != nil {
		t.Fatalf("Pebble's vfs testdata: %v", err)
	}
	return dir
}

// normalizeError is Pebble's (vfs/vfs_test.go): which errno counts as
// "exists" or "does not exist" is the OS's business.
func normalizeError(err error) error {
	switch {
	case errors.Is(err, fs.ErrExist):
		return fs.ErrExist
	case errors.Is(err, fs.ErrNotExist):
		return fs.ErrNotExist
	case errors.Is(err, fs.ErrPermission):
		return fs.ErrPermission
	}
	return err
}

// logFS and logFile log every operation with its result, in the format of
// Pebble's vfsTestFS (vfs/vfs_test.go), so that Pebble's own expected
// output (vfs/testdata/vfs) checks this file system.
type logFS struct {
	vfs.FS
	base    string
	w       io.Writer
	linkErr error
}

func (l logFS) strip(p string) string { return strings.TrimPrefix(p, l.base+"/") }

func (l logFS) Create(name string, c vfs.DiskWriteCategory) (vfs.File, error) {
	f, err := l.FS.Create(name, c)
	fmt.Fprintf(l.w, "create: %s [%v]\n", l.strip(name), normalizeError(err))
	return logFile{f, l.PathBase(name), l.w}, err
}

func (l logFS) Link(oldname, newname string) error {
	err := l.linkErr
	if err == nil {
		err = l.FS.Link(oldname, newname)
	}
	fmt.Fprintf(l.w, "link: %s -> %s [%v]\n", l.strip(oldname), l.strip(newname), normalizeError(err))
	return err
}

func (l logFS) ReuseForWrite(oldname, newname string, c vfs.DiskWriteCategory) (vfs.File, error) {
	f, err := l.FS.ReuseForWrite(oldname, newname, c)
	if err == nil {
		f = logFile{f, l.PathBase(newname), l.w}
	}
	fmt.Fprintf(l.w, "reuseForWrite: %s -> %s [%v]\n", l.strip(oldname), l.strip(newname), normalizeError(err))
	return f, err
}

func (l logFS) MkdirAll(dir string, perm os.FileMode) error {
	err := l.FS.MkdirAll(dir, perm)
	fmt.Fprintf(l.w, "mkdir: %s [%v]\n", l.strip(dir), normalizeError(err))
	return err
}

func (l logFS) Open(name string, opts ...vfs.OpenOption) (vfs.File, error) {
	f, err := l.FS.Open(name, opts...)
	fmt.Fprintf(l.w, "open: %s [%v]\n", l.strip(name), normalizeError(err))
	return logFile{f, l.strip(name), l.w}, err
}

func (l logFS) Remove(name string) error {
	err := l.FS.Remove(name)
	fmt.Fprintf(l.w, "remove: %s [%v]\n", l.strip(name), normalizeError(err))
	return err
}

func (l logFS) RemoveAll(name string) error {
	err := l.FS.RemoveAll(name)
	fmt.Fprintf(l.w, "remove-all: %s [%v]\n", l.strip(name), normalizeError(err))
	return err
}

type logFile struct {
	vfs.File
	name string
	w    io.Writer
}

func (f logFile) Close() error {
	err := f.File.Close()
	fmt.Fprintf(f.w, "close: %s [%v]\n", f.name, err)
	return err
}

func (f logFile) Sync() error {
	err := f.File.Sync()
	fmt.Fprintf(f.w, "sync: %s [%v]\n", f.name, err)
	return err
}

// TestPebbleVFSScript runs Pebble's own vfs test script (vfs/testdata/vfs
// in the Pebble module: links, link errors, LinkOrCopy, Clone across and
// within file systems with and without sync, List, Remove and RemoveAll of
// full directories, ReuseForWrite) on this file system, with Pebble's
// harness ported from vfs/vfs_test.go, and requires Pebble's expected output.
func TestPebbleVFSScript(t *testing.T) {
	r := newRing(t)
	dir := t.TempDir()
	var buf bytes.Buffer
	lfs := logFS{FS: pebblevfs.New(r), base: dir, w: &buf}
	join := func(p string) string { return lfs.PathJoin(dir, p) }
	datadriven.RunTest(t, filepath.Join(pebbleTestdata(t), "vfs"), func(t *testing.T, td *datadriven.TestData) string {
		if td.Cmd != "define" {
			return "unknown command: " + td.Cmd
		}
		buf.Reset()
		// As in Pebble's harness, an injected link error stays for the
		// defines that follow.
		for _, arg := range td.CmdArgs {
			if arg.Key != "linkErr" || len(arg.Vals) != 1 {
				return "unknown argument " + arg.String()
			}
			switch arg.Vals[0] {
			case "ErrExist":
				lfs.linkErr = fs.ErrExist
			case "ErrNotExist":
				lfs.linkErr = fs.ErrNotExist
			case "ErrPermission":
				lfs.linkErr = fs.ErrPermission
			default:
				lfs.linkErr = errors.New(arg.Vals[0])
			}
		}
		for _, line := range strings.Split(td.Input, "\n") {
			parts := strings.Fields(line)
			if len(parts) == 0 {
				return "<op> [<args>]"
			}
			switch parts[0] {
			case "clone":
				dst := lfs
				var opts []vfs.CloneOption
				for _, p := range parts[3:] {
					switch p {
					case "disk":
						dst = logFS{FS: vfs.Default, base: dir, w: &buf}
					case "mem":
						dst = logFS{FS: vfs.NewMem(), base: dir, w: &buf}
					case "link":
						opts = append(opts, vfs.CloneTryLink)
					case "sync":
						opts = append(opts, vfs.CloneSync)
					}
				}
				_, _ = vfs.Clone(lfs, dst, join(parts[1]), join(parts[2]), opts...)
			case "create":
				f, _ := lfs.Create(join(parts[1]), vfs.WriteCategoryUnspecified)
				f.Close()
			case "link":
				_ = lfs.Link(join(parts[1]), join(parts[2]))
			case "link-or-copy":
				_ = vfs.LinkOrCopy(lfs, join(parts[1]), join(parts[2]))
			case "reuseForWrite":
				_, _ = lfs.ReuseForWrite(join(parts[1]), join(parts[2]), vfs.WriteCategoryUnspecified)
			case "list":
				names, _ := lfs.List(join(parts[1]))
				sort.Strings(names)
				for _, n := range names {
					fmt.Fprintln(&buf, n)
				}
			case "mkdir":
				_ = lfs.MkdirAll(join(parts[1]), 0o755)
			case "remove":
				_ = lfs.Remove(join(parts[1]))
			case "remove-all":
				_ = lfs.RemoveAll(join(parts[1]))
			default:
				return "unknown op " + parts[0]
			}
		}
		return buf.String()
	})
}

// TestCreateLinkSemantics is Pebble's TestVFSCreateLinkSemantics: Create on
// a name that is a hard link makes a new file and leaves the other name's
// contents alone.
func TestCreateLinkSemantics(t *testing.T) {
	fsys := pebblevfs.New(newRing(t))
	dir := t.TempDir()
	write := func(name, contents string) {
		f, err := fsys.Create(fsys.PathJoin(dir, name), vfs.WriteCategoryUnspecified)
		if err != nil {
			t.Fatal(err)
		}
		if _, err := f.Write([]byte(contents)); err != nil {
			t.Fatal(err)
		}
		if err := f.Close(); err != nil {
			t.Fatal(err)
		}
	}
	read := func(name string) string {
		f, err := fsys.Open(fsys.PathJoin(dir, name))
		if err != nil {
			t.Fatal(err)
		}
		defer f.Close()
		b, err := io.ReadAll(f)
		if err != nil {
			t.Fatal(err)
		}
		return string(b)
	}
	write("foo", "foo")
	if err := fsys.Link(fsys.PathJoin(dir, "foo"), fsys.PathJoin(dir, "bar")); err != nil {
		t.Fatal(err)
	}
	if read("foo") != "foo" || read("bar") != "foo" {
		t.Fatal("a hard link does not share its contents")
	}
	write("bar", "bar")
	if got := read("foo"); got != "foo" {
		t.Fatalf("Create over a hard link changed the other name to %q", got)
	}
	if got := read("bar"); got != "bar" {
		t.Fatalf("bar holds %q after Create", got)
	}
}

// TestRootDirName is Pebble's TestVFSRootDirName: the root opens, and its
// FileInfo is named "/".
func TestRootDirName(t *testing.T) {
	fsys := pebblevfs.New(newRing(t))
	root, err := fsys.Open("/")
	if err != nil {
		t.Fatal(err)
	}
	defer root.Close()
	fi, err := root.Stat()
	if err != nil || fi.Name() != "/" {
		t.Fatalf("Stat of /: %v, %v; want the name /", fi, err)
	}
}

// TestAgainstDefault runs the same operations on this file system and on
// vfs.Default, side by side in two directories, and compares results,
// errors (as Pebble classifies them) and what the file systems hold.
func TestAgainstDefault(t *testing.T) {
	r := newRing(t)
	ours, theirs := pebblevfs.New(r), vfs.Default
	type side struct {
		fs  vfs.FS
		dir string
	}
	sides := []side{{ours, t.TempDir()}, {theirs, t.TempDir()}}
	steps := []struct {
		name string
		do   func(fsys vfs.FS, p func(string) string) (string, error)
	}{
		{"mkdirall", func(f vfs.FS, p func(string) string) (string, error) { return "", f.MkdirAll(p("db/archive"), 0o755) }},
		{"create", func(f vfs.FS, p func(string) string) (string, error) {
			fl, err := f.Create(p("db/000001.log"), vfs.WriteCategoryUnspecified)
			if err != nil {
				return "", err
			}
			defer fl.Close()
			if _, err := fl.Write([]byte("record one\n")); err != nil {
				return "", err
			}
			if _, err := fl.WriteAt([]byte("RECORD"), 0); err != nil {
				return "", err
			}
			if err := fl.Preallocate(0, 1<<20); err != nil {
				return "", err
			}
			if _, err := fl.SyncTo(5); err != nil {
				return "", err
			}
			if err := fl.SyncData(); err != nil {
				return "", err
			}
			st, err := fl.Stat()
			if err != nil {
				return "", err
			}
			return fmt.Sprintf("size %d", st.Size()), fl.Sync()
		}},
		{"create again", func(f vfs.FS, p func(string) string) (string, error) {
			fl, err := f.Create(p("db/000001.log"), vfs.WriteCategoryUnspecified)
			if err != nil {
				return "", err
			}
			st, err := fl.Stat()
			fl.Close()
			return fmt.Sprintf("size %d", st.Size()), err
		}},
		{"open missing", func(f vfs.FS, p func(string) string) (string, error) {
			_, err := f.Open(p("db/nope"))
			return "", err
		}},
		{"open read-write", func(f vfs.FS, p func(string) string) (string, error) {
			fl, err := f.OpenReadWrite(p("db/MANIFEST-000001"), vfs.WriteCategoryUnspecified)
			if err != nil {
				return "", err
			}
			defer fl.Close()
			if _, err := fl.WriteAt([]byte("manifest"), 100); err != nil {
				return "", err
			}
			buf := make([]byte, 8)
			n, err := fl.ReadAt(buf, 100)
			return fmt.Sprintf("%d %q", n, buf[:n]), err
		}},
		{"read with options", func(f vfs.FS, p func(string) string) (string, error) {
			fl, err := f.Open(p("db/MANIFEST-000001"), vfs.RandomReadsOption, vfs.SequentialReadsOption)
			if err != nil {
				return "", err
			}
			defer fl.Close()
			// vfs.Default's Prefetch returns readahead's errno even when it
			// is 0 (a non-nil error): only a real errno counts.
			if err := fl.Prefetch(0, 4096); err != nil && err != unix.Errno(0) {
				return "", err
			}
			b, err := io.ReadAll(fl)
			return fmt.Sprintf("%d bytes, fd valid %v", len(b), fl.Fd() != vfs.InvalidFd), err
		}},
		{"write to read-only", func(f vfs.FS, p func(string) string) (string, error) {
			fl, err := f.Open(p("db/MANIFEST-000001"))
			if err != nil {
				return "", err
			}
			defer fl.Close()
			_, err = fl.Write([]byte("x"))
			return "", err
		}},
		{"link", func(f vfs.FS, p func(string) string) (string, error) {
			return "", f.Link(p("db/MANIFEST-000001"), p("db/archive/MANIFEST-000001"))
		}},
		{"link exists", func(f vfs.FS, p func(string) string) (string, error) {
			return "", f.Link(p("db/MANIFEST-000001"), p("db/archive/MANIFEST-000001"))
		}},
		{"rename", func(f vfs.FS, p func(string) string) (string, error) {
			return "", f.Rename(p("db/000001.log"), p("db/000002.log"))
		}},
		{"reuse for write", func(f vfs.FS, p func(string) string) (string, error) {
			fl, err := f.ReuseForWrite(p("db/000002.log"), p("db/000003.log"), vfs.WriteCategoryUnspecified)
			if err != nil {
				return "", err
			}
			st, err := fl.Stat()
			fl.Close()
			return fmt.Sprintf("%s size %d", st.Name(), st.Size()), err
		}},
		{"stat", func(f vfs.FS, p func(string) string) (string, error) {
			st, err := f.Stat(p("db/000003.log"))
			if err != nil {
				return "", err
			}
			return fmt.Sprintf("%s %v %d", st.Name(), st.Mode(), st.Size()), nil
		}},
		{"stat missing", func(f vfs.FS, p func(string) string) (string, error) {
			_, err := f.Stat(p("db/000001.log"))
			return "", err
		}},
		{"list", func(f vfs.FS, p func(string) string) (string, error) {
			names, err := f.List(p("db"))
			sort.Strings(names)
			return strings.Join(names, ","), err
		}},
		{"list a file", func(f vfs.FS, p func(string) string) (string, error) {
			_, err := f.List(p("db/000003.log"))
			return "", err
		}},
		{"open dir and sync", func(f vfs.FS, p func(string) string) (string, error) {
			d, err := f.OpenDir(p("db"))
			if err != nil {
				return "", err
			}
			defer d.Close()
			full, err := d.SyncTo(10)
			if err != nil {
				return "", err
			}
			return fmt.Sprintf("fullSync %v", full), errors.Join(d.Sync(), d.SyncData(), d.Preallocate(0, 10), d.Prefetch(0, 10))
		}},
		{"remove full dir", func(f vfs.FS, p func(string) string) (string, error) { return "", f.Remove(p("db/archive")) }},
		{"lock", func(f vfs.FS, p func(string) string) (string, error) {
			l, err := f.Lock(p("db/LOCK"))
			if err != nil {
				return "", err
			}
			_, err2 := f.Lock(p("db/LOCK"))
			return fmt.Sprintf("second lock fails: %v", err2 != nil), l.Close()
		}},
		{"disk usage", func(f vfs.FS, p func(string) string) (string, error) {
			u, err := f.GetDiskUsage(p("db"))
			return fmt.Sprintf("total>0 %v", u.TotalBytes > 0), err
		}},
		{"remove all", func(f vfs.FS, p func(string) string) (string, error) { return "", f.RemoveAll(p("db")) }},
		{"remove all missing", func(f vfs.FS, p func(string) string) (string, error) { return "", f.RemoveAll(p("db")) }},
		{"list after", func(f vfs.FS, p func(string) string) (string, error) {
			names, err := f.List(p(""))
			return strings.Join(names, ","), err
		}},
	}
	for _, st := range steps {
		var got [2]string
		for i, s := range sides {
			v, err := st.do(s.fs, func(rel string) string { return filepath.Join(s.dir, rel) })
			got[i] = fmt.Sprintf("%s [%v]", v, normalizeErrno(err))
		}
		if got[0] != got[1] {
			t.Errorf("%s: pebblevfs %s, vfs.Default %s", st.name, got[0], got[1])
		}
	}
}

// normalizeErrno is normalizeError, down to the errno for other errors.
func normalizeErrno(err error) error {
	if n := normalizeError(err); n != err {
		return n
	}
	var errno unix.Errno
	if errors.As(err, &errno) {
		return errno
	}
	return err
}

// TestDeviceID: the device in this file system's FileInfo is the one
// vfs.Default reports for the same file, from Stat and from an open file.
func TestDeviceID(t *testing.T) {
	fsys := pebblevfs.New(newRing(t))
	name := filepath.Join(t.TempDir(), "f")
	if err := os.WriteFile(name, []byte("x"), 0o644); err != nil {
		t.Fatal(err)
	}
	want, err := vfs.Default.Stat(name)
	if err != nil {
		t.Fatal(err)
	}
	got, err := fsys.Stat(name)
	if err != nil {
		t.Fatal(err)
	}
	f, err := fsys.Open(name)
	if err != nil {
		t.Fatal(err)
	}
	defer f.Close()
	fromFile, err := f.Stat()
	if err != nil {
		t.Fatal(err)
	}
	if got.DeviceID() != want.DeviceID() || fromFile.DeviceID() != want.DeviceID() {
		t.Fatalf("DeviceID: Stat %v, File.Stat %v; vfs.Default %v", got.DeviceID(), fromFile.DeviceID(), want.DeviceID())
	}
	if want.DeviceID() == (vfs.DeviceID{}) {
		t.Fatal("vfs.Default reports device 0:0, which proves nothing")
	}
}

// TestThroughTheRing: a file's writes are ring requests. (Its sync is one
// only within a burst: the fsync that starts a group commit runs on the
// caller's goroutine, as os.File's does; see docs/design.md.)
func TestThroughTheRing(t *testing.T) {
	r := newRing(t)
	fsys := pebblevfs.New(r)
	f, err := fsys.Create(filepath.Join(t.TempDir(), "f"), vfs.WriteCategoryUnspecified)
	if err != nil {
		t.Fatal(err)
	}
	defer f.Close()
	before := r.Stats().Submitted
	buf := make([]byte, 1<<16)
	for i := range 10 {
		if _, err := f.WriteAt(buf, int64(i)*int64(len(buf))); err != nil {
			t.Fatal(err)
		}
	}
	if err := f.SyncData(); err != nil {
		t.Fatal(err)
	}
	if got := r.Stats().Submitted - before; got < 10 {
		t.Fatalf("%d ring requests for 10 writes", got)
	}
}

// blocks writes n 4 KiB blocks of distinct bytes to f, as Pebble's sstable
// writer does, and returns what it wrote.
func blocks(t *testing.T, f vfs.File, n int) []byte {
	t.Helper()
	var all []byte
	for i := range n {
		b := bytes.Repeat([]byte{byte(i)}, 4096)
		if _, err := f.Write(b); err != nil {
			t.Fatal(err)
		}
		all = append(all, b...)
	}
	return all
}

// TestTableWritesCoalesce: a table file's 4 KiB writes reach the ring 256
// KiB at a time; every call that looks at the file sees all that was
// written.
func TestTableWritesCoalesce(t *testing.T) {
	r := newRing(t)
	fsys := pebblevfs.New(r)
	dir := t.TempDir()

	tbl, err := fsys.Create(filepath.Join(dir, "000007.sst"), vfs.WriteCategoryUnspecified)
	if err != nil {
		t.Fatal(err)
	}
	before := r.Stats().Submitted
	want := blocks(t, tbl, 200) // 800 KiB: three full buffers and a part
	if got := r.Stats().Submitted - before; got != 3 {
		t.Fatalf("200 writes of 4 KiB to a table: %d ring requests, want 3 (one per 256 KiB)", got)
	}
	// Stat, ReadAt and a direct read of the path see the unflushed tail.
	fi, err := tbl.Stat()
	if err != nil {
		t.Fatal(err)
	}
	if fi.Size() != int64(len(want)) {
		t.Fatalf("Stat size %d after writing %d bytes", fi.Size(), len(want))
	}
	more := blocks(t, tbl, 3)
	want = append(want, more...)
	got := make([]byte, len(want))
	if _, err := tbl.ReadAt(got, 0); err != nil {
		t.Fatal(err)
	}
	if !bytes.Equal(got, want) {
		t.Fatal("ReadAt does not return what was written")
	}
	more = blocks(t, tbl, 2)
	want = append(want, more...)
	if _, err := tbl.WriteAt([]byte("head"), 0); err != nil {
		t.Fatal(err)
	}
	copy(want, "head")
	if _, err := tbl.SyncTo(int64(len(want))); err != nil {
		t.Fatal(err)
	}
	if err := tbl.Sync(); err != nil {
		t.Fatal(err)
	}
	tail := blocks(t, tbl, 1) // flushed by Close
	want = append(want, tail...)
	if err := tbl.Close(); err != nil {
		t.Fatal(err)
	}
	disk, err := os.ReadFile(filepath.Join(dir, "000007.sst"))
	if err != nil {
		t.Fatal(err)
	}
	if !bytes.Equal(disk, want) {
		t.Fatalf("file holds %d bytes, not the %d written", len(disk), len(want))
	}
	if _, err := tbl.Write([]byte("x")); !errors.Is(err, os.ErrClosed) {
		t.Fatalf("Write after Close: %v, want os.ErrClosed", err)
	}
	if err := tbl.Close(); err == nil {
		t.Fatal("second Close succeeded")
	}
}

// TestTableReadsOwnWrites: Read at the file position after writes, as a
// reader of a file it wrote would.
func TestTableReadsOwnWrites(t *testing.T) {
	r := newRing(t)
	fsys := pebblevfs.New(r)
	name := filepath.Join(t.TempDir(), "000001.blob")
	f, err := fsys.Create(name, vfs.WriteCategoryUnspecified)
	if err != nil {
		t.Fatal(err)
	}
	defer f.Close()
	want := blocks(t, f, 5)
	// A second descriptor on the file sees the bytes once Fd was asked for.
	f.Fd()
	disk, err := os.ReadFile(name)
	if err != nil {
		t.Fatal(err)
	}
	if !bytes.Equal(disk, want) {
		t.Fatalf("after Fd the file holds %d bytes, %d were written", len(disk), len(want))
	}
	// The position is at the end: Read finds nothing more.
	if n, err := f.Read(make([]byte, 10)); n != 0 || err != io.EOF {
		t.Fatalf("Read at the end: %d, %v", n, err)
	}
}

// TestTableWriteErrorSticky: a flush that fails fails the Sync that caused
// it, every later Write and Sync, and Close, as bufio.Writer's error does:
// Pebble must not finish a table whose bytes did not all reach the kernel.
func TestTableWriteErrorSticky(t *testing.T) {
	testDevFullSticky(t, pebblevfs.TableFile)
}

// testDevFullSticky writes to /dev/full through the buffer wrap puts in
// front of it: the Write is held, the SyncData that hands it to the kernel
// fails with ENOSPC, and so do every later Write, Sync, Stat and Close.
func testDevFullSticky(t *testing.T, wrap func(*ringwake.Ring, *ringwake.File) vfs.File) {
	r := newRing(t)
	rf, err := r.Open("/dev/full", os.O_WRONLY, 0)
	if err != nil {
		t.Fatal(err)
	}
	f := wrap(r, rf)
	if _, err := f.Write(make([]byte, 4096)); err != nil {
		t.Fatalf("buffered Write: %v", err)
	}
	if err := f.SyncData(); !errors.Is(err, unix.ENOSPC) {
		t.Fatalf("SyncData after a write to /dev/full: %v, want ENOSPC", err)
	}
	if _, err := f.Write([]byte("x")); !errors.Is(err, unix.ENOSPC) {
		t.Fatalf("Write after the failure: %v, want ENOSPC", err)
	}
	if err := f.Sync(); !errors.Is(err, unix.ENOSPC) {
		t.Fatalf("Sync after the failure: %v, want ENOSPC", err)
	}
	if _, err := f.Stat(); !errors.Is(err, unix.ENOSPC) {
		t.Fatalf("Stat after the failure: %v, want ENOSPC", err)
	}
	if err := f.Close(); !errors.Is(err, unix.ENOSPC) {
		t.Fatalf("Close after the failure: %v, want ENOSPC", err)
	}
}
