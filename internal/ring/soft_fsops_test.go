package ring

import (
	"os"
	"path/filepath"
	"sort"
	"strings"
	"syscall"
	"testing"

	"github.com/ringwake/ringwake/sqe"
	"golang.org/x/sys/unix"
)

// pathOpSteps is a script of directory operations, each with the result the
// kernel gives; dir is the scratch directory the script runs in.
func pathOpSteps(dir string) []struct {
	name string
	prep func(s *sqe.SQE)
	want int32
} {
	p := func(rel string) *byte { return cstr(filepath.Join(dir, rel)) }
	cwd := int32(unix.AT_FDCWD)
	e := func(errno syscall.Errno) int32 { return -int32(errno) }
	return []struct {
		name string
		prep func(s *sqe.SQE)
		want int32
	}{
		{"mkdirat", func(s *sqe.SQE) { s.PrepMkdirat(cwd, p("d"), 0o750) }, 0},
		{"mkdirat exists", func(s *sqe.SQE) { s.PrepMkdirat(cwd, p("d"), 0o750) }, e(syscall.EEXIST)},
		{"mkdirat no parent", func(s *sqe.SQE) { s.PrepMkdirat(cwd, p("x/y"), 0o750) }, e(syscall.ENOENT)},
		{"mkdirat with off", func(s *sqe.SQE) { s.PrepMkdirat(cwd, p("e"), 0o750); s.Off = 1 }, e(syscall.EINVAL)},
		{"symlinkat", func(s *sqe.SQE) { s.PrepSymlinkat(cstr("d"), cwd, p("l")) }, 0},
		{"symlinkat exists", func(s *sqe.SQE) { s.PrepSymlinkat(cstr("d"), cwd, p("l")) }, e(syscall.EEXIST)},
		{"symlinkat with len", func(s *sqe.SQE) { s.PrepSymlinkat(cstr("d"), cwd, p("m")); s.Len = 1 }, e(syscall.EINVAL)},
		{"linkat", func(s *sqe.SQE) { s.PrepLinkat(cwd, p("f"), cwd, p("d/g"), 0) }, 0},
		{"linkat missing", func(s *sqe.SQE) { s.PrepLinkat(cwd, p("nope"), cwd, p("d/h"), 0) }, e(syscall.ENOENT)},
		{"linkat a directory", func(s *sqe.SQE) { s.PrepLinkat(cwd, p("d"), cwd, p("d2"), 0) }, e(syscall.EPERM)},
		{"renameat", func(s *sqe.SQE) { s.PrepRenameat(cwd, p("f"), cwd, p("d/f2"), 0) }, 0},
		{"renameat noreplace", func(s *sqe.SQE) {
			s.PrepRenameat(cwd, p("d/f2"), cwd, p("d/g"), unix.RENAME_NOREPLACE)
		}, e(syscall.EEXIST)},
		{"renameat missing", func(s *sqe.SQE) { s.PrepRenameat(cwd, p("f"), cwd, p("f3"), 0) }, e(syscall.ENOENT)},
		{"unlinkat", func(s *sqe.SQE) { s.PrepUnlinkat(cwd, p("d/g"), 0) }, 0},
		{"unlinkat a directory", func(s *sqe.SQE) { s.PrepUnlinkat(cwd, p("d"), 0) }, e(syscall.EISDIR)},
		{"rmdir not empty", func(s *sqe.SQE) { s.PrepUnlinkat(cwd, p("d"), unix.AT_REMOVEDIR) }, e(syscall.ENOTEMPTY)},
		{"unlinkat bad flags", func(s *sqe.SQE) { s.PrepUnlinkat(cwd, p("d/f2"), 1) }, e(syscall.EINVAL)},
		{"unlinkat splice_fd_in", func(s *sqe.SQE) { s.PrepUnlinkat(cwd, p("d/f2"), 0); s.SpliceFdIn = 1 }, e(syscall.EINVAL)},
		{"unlinkat the symlink", func(s *sqe.SQE) { s.PrepUnlinkat(cwd, p("l"), 0) }, 0},
		{"unlinkat the last file", func(s *sqe.SQE) { s.PrepUnlinkat(cwd, p("d/f2"), 0) }, 0},
		{"rmdir", func(s *sqe.SQE) { s.PrepUnlinkat(cwd, p("d"), unix.AT_REMOVEDIR) }, 0},
		{"mkdirat again", func(s *sqe.SQE) { s.PrepMkdirat(cwd, p("d"), 0o700) }, 0},
		{"mkdirat with a fixed file", func(s *sqe.SQE) { s.PrepMkdirat(0, p("f2"), 0o700); s.Flags = sqe.FixedFile }, e(syscall.EBADF)},
		{"renameat with a fixed file", func(s *sqe.SQE) {
			s.PrepRenameat(0, p("d"), cwd, p("d3"), 0)
			s.Flags = sqe.FixedFile
		}, e(syscall.EBADF)},
	}
}

// runPathOps runs the script on r in a fresh directory holding one file "f"
// and returns the tree it leaves, one "path mode" line per entry.
func runPathOps(t *testing.T, r *Ring) string {
	t.Helper()
	dir := t.TempDir()
	if err := os.WriteFile(filepath.Join(dir, "f"), []byte("data"), 0o600); err != nil {
		t.Fatal(err)
	}
	for _, st := range pathOpSteps(dir) {
		wantRes(t, st.name, one(t, r, st.prep), st.want)
	}
	var lines []string
	err := filepath.Walk(dir, func(path string, fi os.FileInfo, err error) error {
		if err != nil {
			return err
		}
		rel, _ := filepath.Rel(dir, path)
		lines = append(lines, rel+" "+fi.Mode().String())
		return nil
	})
	if err != nil {
		t.Fatal(err)
	}
	sort.Strings(lines)
	return strings.Join(lines, "\n")
}

// TestSoftPathOps runs the directory operations on the software engine and,
// where io_uring is available, the same script on the kernel's ring: every
// result and the tree left behind must match.
func TestSoftPathOps(t *testing.T) {
	soft := runPathOps(t, newSoftRing(t, Params{Entries: 8}))
	if !strings.Contains(soft, "d drwx------") || strings.Contains(soft, "f ") {
		t.Fatalf("tree after the script:\n%s", soft)
	}
	kernel := runPathOps(t, newRing(t, Params{Entries: 8}))
	if soft != kernel {
		t.Fatalf("software engine left\n%s\nthe kernel left\n%s", soft, kernel)
	}
}
