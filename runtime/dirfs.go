package runtime

import (
	"errors"
	"io"
	"io/fs"
	"os"
	"slices"
	"strings"
	"time"

	"golang.org/x/sys/unix"
)

// DirFS returns the file tree rooted at dir as an fs.FS whose files are
// Files reading through r: fs.FS, fs.ReadDirFS, fs.ReadFileFS, fs.StatFS
// and fs.SubFS, with os.DirFS's names and errors. Open and ReadFile open
// through the ring (IORING_OP_OPENAT) and read through it; Stat is
// IORING_OP_STATX; directories are listed with getdents64 on the caller's
// goroutine, for which io_uring has no opcode. Like os.DirFS it follows
// symbolic links, including ones that lead out of dir: it is a convenience,
// not a sandbox.
func (r *Ring) DirFS(dir string) fs.FS {
	return &dirFS{r: r, dir: dir}
}

type dirFS struct {
	r   *Ring
	dir string
}

var (
	_ fs.ReadDirFS  = (*dirFS)(nil)
	_ fs.ReadFileFS = (*dirFS)(nil)
	_ fs.StatFS     = (*dirFS)(nil)
	_ fs.SubFS      = (*dirFS)(nil)
)

// join is os.DirFS's: the OS path of a valid fs path.
func (d *dirFS) join(name string) (string, error) {
	if d.dir == "" {
		return "", errors.New("ringwake: DirFS with empty root")
	}
	if !fs.ValidPath(name) {
		return "", fs.ErrInvalid
	}
	if name == "." {
		return d.dir, nil
	}
	return d.dir + "/" + name, nil
}

// Open opens name for reading: a *File, which is an fs.ReadDirFile, an
// io.ReaderAt and an io.Seeker.
func (d *dirFS) Open(name string) (fs.File, error) {
	f, err := d.open("open", name)
	if err != nil {
		return nil, err // a nil *File must not become a non-nil fs.File
	}
	return f, nil
}

// open opens name; an invalid name fails with op, as in os.DirFS, whose
// calls each name their own, while a failed open is always "open".
func (d *dirFS) open(op, name string) (*File, error) {
	full, err := d.join(name)
	if err != nil {
		return nil, &fs.PathError{Op: op, Path: name, Err: err}
	}
	f, err := d.r.Open(full, os.O_RDONLY, 0)
	if err != nil {
		// As os.DirFS: the error names the fs path, not the OS path.
		err.(*fs.PathError).Path = name
		return nil, err
	}
	return f, nil
}

// ReadFile reads the whole file through the ring.
func (d *dirFS) ReadFile(name string) ([]byte, error) {
	f, err := d.open("readfile", name)
	if err != nil {
		return nil, err
	}
	defer f.Close()
	st, err := f.Stat()
	if err != nil {
		return nil, err
	}
	// The size is a hint (the file may grow or be a /proc file reporting
	// 0): read until EOF, growing the buffer, as os.ReadFile does.
	size := 512
	if n := st.Size(); n > 0 && n < 1<<30 {
		size = int(n) + 1 // one more byte, to see EOF in the first read
	}
	data := make([]byte, 0, size)
	for {
		if len(data) == cap(data) {
			data = slices.Grow(data, len(data))
		}
		n, err := f.ReadAt(data[len(data):cap(data)], int64(len(data)))
		data = data[:len(data)+n]
		if err == io.EOF {
			return data, nil
		}
		if err != nil {
			err.(*fs.PathError).Path = name
			return nil, err
		}
	}
}

// ReadDir reads the named directory, sorted by name, as os.ReadDir.
func (d *dirFS) ReadDir(name string) ([]fs.DirEntry, error) {
	f, err := d.open("readdir", name)
	if err != nil {
		return nil, err
	}
	defer f.Close()
	ents, err := f.ReadDir(-1)
	slices.SortFunc(ents, func(a, b fs.DirEntry) int { return strings.Compare(a.Name(), b.Name()) })
	if err != nil {
		if pe, ok := err.(*fs.PathError); ok {
			pe.Path = name
		}
	}
	return ents, err
}

// Stat is statx(2) of name through the ring, following symbolic links.
func (d *dirFS) Stat(name string) (fs.FileInfo, error) {
	full, err := d.join(name)
	if err != nil {
		return nil, &fs.PathError{Op: "stat", Path: name, Err: err}
	}
	fi, err := d.r.Stat(full)
	if err != nil {
		err.(*fs.PathError).Path = name
		return nil, err
	}
	return fi, nil
}

// Sub returns the tree rooted at dir within d.
func (d *dirFS) Sub(dir string) (fs.FS, error) {
	full, err := d.join(dir)
	if err != nil {
		return nil, &fs.PathError{Op: "sub", Path: dir, Err: err}
	}
	return &dirFS{r: d.r, dir: full}, nil
}

// basename is os's: the last element of name, trailing slashes removed.
func basename(name string) string {
	i := len(name) - 1
	for i > 0 && name[i] == '/' {
		name = name[0:i]
		i--
	}
	for i--; i >= 0; i-- {
		if name[i] == '/' {
			name = name[i+1:]
			break
		}
	}
	return name
}

// statxInfo is an fs.FileInfo from a statx result, filled in as os fills
// its FileInfo from a stat result; Sys returns the *unix.Statx_t.
type statxInfo struct {
	name string
	st   unix.Statx_t
}

func (fi *statxInfo) Name() string { return fi.name }
func (fi *statxInfo) Size() int64  { return int64(fi.st.Size) }
func (fi *statxInfo) Mode() fs.FileMode {
	m := fs.FileMode(fi.st.Mode & 0o777)
	switch uint32(fi.st.Mode) & unix.S_IFMT {
	case unix.S_IFBLK:
		m |= fs.ModeDevice
	case unix.S_IFCHR:
		m |= fs.ModeDevice | fs.ModeCharDevice
	case unix.S_IFDIR:
		m |= fs.ModeDir
	case unix.S_IFIFO:
		m |= fs.ModeNamedPipe
	case unix.S_IFLNK:
		m |= fs.ModeSymlink
	case unix.S_IFSOCK:
		m |= fs.ModeSocket
	}
	if fi.st.Mode&unix.S_ISGID != 0 {
		m |= fs.ModeSetgid
	}
	if fi.st.Mode&unix.S_ISUID != 0 {
		m |= fs.ModeSetuid
	}
	if fi.st.Mode&unix.S_ISVTX != 0 {
		m |= fs.ModeSticky
	}
	return m
}
func (fi *statxInfo) ModTime() time.Time {
	return time.Unix(fi.st.Mtime.Sec, int64(fi.st.Mtime.Nsec))
}
func (fi *statxInfo) IsDir() bool { return fi.Mode().IsDir() }
func (fi *statxInfo) Sys() any    { return &fi.st }
