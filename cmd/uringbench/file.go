package main

import (
	"errors"
	"fmt"
	"io"
	"os"
	"strconv"
	"strings"
	"syscall"

	"golang.org/x/sys/unix"
)

// markerAttr is the extended attribute uringbench sets on the files it
// creates, holding how many bytes it has filled: writing workloads use it to
// tell their own scratch files from a user's data.
const markerAttr = "user.uringbench"

// target is the file every engine of a run works on.
type target struct {
	path    string
	size    int64 // bytes the engines use: a whole number of blocks
	direct  bool
	created bool  // by this run: removed at the end unless -keep
	owned   bool  // by uringbench, in this run or an earlier -keep run
	filled  int64 // bytes of the file uringbench has filled with data
	writes  bool
	keep    bool
}

// openTarget resolves -file, -direct, -force and -size against the file
// system. Every refusal is a *usageError, raised before the file is filled.
func openTarget(c *config, note func(string)) (*target, error) {
	t := &target{path: c.file, writes: c.writes(), keep: c.keep}
	if t.path == "" {
		f, err := os.CreateTemp(".", "uringbench-*.dat")
		if err != nil {
			return nil, usagef("cannot create a temporary file in the working directory: %v", err)
		}
		f.Close()
		t.path, t.created, t.owned = f.Name(), true, true
	} else {
		fi, err := os.Stat(t.path)
		switch {
		case errors.Is(err, os.ErrNotExist):
			f, err := os.OpenFile(t.path, os.O_RDWR|os.O_CREATE|os.O_EXCL, 0o644)
			if err != nil {
				return nil, usagef("cannot create -file %s: %v", t.path, unwrapPath(err))
			}
			f.Close()
			t.created, t.owned = true, true
		case err != nil:
			return nil, usagef("cannot use -file %s: %v", t.path, unwrapPath(err))
		case fi.IsDir():
			return nil, usagef("-file %s is a directory", t.path)
		case !fi.Mode().IsRegular() && fi.Mode()&os.ModeDevice == 0:
			return nil, usagef("-file %s is neither a regular file nor a block device", t.path)
		default:
			t.owned, t.filled = readMarker(t.path)
		}
	}
	ok := false
	defer func() {
		// A file created only to be refused must not stay behind, -keep or not.
		if !ok && t.created {
			os.Remove(t.path)
		}
	}()
	if t.created {
		// Without xattr support the file is still ours for this run; a later
		// run just will not recognise it.
		_ = unix.Setxattr(t.path, markerAttr, []byte("0"), 0)
	}
	if t.writes && !t.owned && !c.force {
		return nil, usagef("refusing to write to %s: uringbench did not create it and the %s workload would overwrite its data (pass -force to allow)", t.path, c.workload)
	}
	if !t.owned {
		cur, err := fileSize(t.path)
		if err != nil {
			return nil, usagef("cannot use -file %s: %v", t.path, err)
		}
		if cur < c.size {
			return nil, usagef("-file %s holds %s, less than -size %s (give a smaller -size)", t.path, formatBytes(cur), formatBytes(c.size))
		}
		t.filled = c.size
	}
	align, err := directProbe(t.path)
	switch {
	case c.direct == directOff:
	case c.direct == directOn && err != nil:
		return nil, usagef("-direct: the file system of %s refuses O_DIRECT (%v)", t.path, err)
	case c.direct == directOn && c.bs%align != 0:
		return nil, usagef("-direct: -bs %d is not a multiple of %d, the O_DIRECT alignment of %s", c.bs, align, t.path)
	case c.direct == directOn:
		t.direct = true
	case c.cache == "warm":
		// A warm page cache only means something for buffered I/O.
	case err != nil:
		note(fmt.Sprintf("O_DIRECT refused by the file system of %s (%v): running buffered", t.path, err))
	case c.bs%align != 0:
		note(fmt.Sprintf("-bs %d is not a multiple of the O_DIRECT alignment %d: running buffered", c.bs, align))
	default:
		t.direct = true
	}
	t.size = c.size / c.bs * c.bs
	ok = true
	return t, nil
}

// unwrapPath drops the *PathError wrapper, whose text repeats the path the
// message already names.
func unwrapPath(err error) error {
	var pe *os.PathError
	if errors.As(err, &pe) {
		return pe.Err
	}
	return err
}

func readMarker(path string) (owned bool, filled int64) {
	buf := make([]byte, 32)
	n, err := unix.Getxattr(path, markerAttr, buf)
	if err != nil {
		return false, 0
	}
	filled, err = strconv.ParseInt(string(buf[:n]), 10, 64)
	if err != nil {
		return false, 0
	}
	return true, filled
}

// fileSize works for block devices too, where Stat reports 0.
func fileSize(path string) (int64, error) {
	f, err := os.Open(path)
	if err != nil {
		return 0, unwrapPath(err)
	}
	defer f.Close()
	return f.Seek(0, io.SeekEnd)
}

// directProbe is directAlign; tests replace it to play a file system that
// refuses O_DIRECT, since none may be at hand (tmpfs accepts it since 6.6).
var directProbe = directAlign

// directAlign reports the O_DIRECT offset alignment of path's file system,
// or why it refuses O_DIRECT (tmpfs and some FUSE file systems say EINVAL).
func directAlign(path string) (int64, error) {
	fd, err := unix.Open(path, unix.O_RDONLY|unix.O_DIRECT|unix.O_CLOEXEC, 0)
	if err != nil {
		return 0, fmt.Errorf("open(O_DIRECT): %w", err)
	}
	defer unix.Close(fd)
	var st unix.Statx_t
	if err := unix.Statx(fd, "", unix.AT_EMPTY_PATH, unix.STATX_DIOALIGN, &st); err == nil && st.Mask&unix.STATX_DIOALIGN != 0 {
		if st.Dio_offset_align == 0 {
			return 0, errors.New("statx reports no O_DIRECT support")
		}
		return int64(st.Dio_offset_align), nil
	}
	// Kernels before 6.1 do not report the alignment: 512 is the historical minimum.
	return 512, nil
}

// fill writes data over [filled, size) so that reads hit allocated blocks,
// not holes the file system answers without touching the device.
func (t *target) fill(seed uint64) error {
	if !t.owned || t.filled >= t.size {
		return nil
	}
	f, err := os.OpenFile(t.path, os.O_WRONLY, 0)
	if err != nil {
		return fmt.Errorf("fill %s: %w", t.path, err)
	}
	defer f.Close()
	const chunk = 1 << 20
	buf := make([]byte, chunk)
	r := newRNG(seed, -2)
	fillRandom(buf, &r)
	for off := t.filled; off < t.size; off += chunk {
		n := min(chunk, t.size-off)
		// Vary each 4 KiB so that no two blocks of the file are equal.
		for i := int64(0); i+headerLen <= n; i += 4096 {
			stamp(buf[i:], off+i, 0)
		}
		if _, err := f.WriteAt(buf[:n], off); err != nil {
			return fmt.Errorf("fill %s: %w", t.path, err)
		}
	}
	if err := unix.Fdatasync(int(f.Fd())); err != nil {
		return fmt.Errorf("fill %s: fdatasync: %w", t.path, err)
	}
	t.filled = t.size
	_ = unix.Setxattr(t.path, markerAttr, []byte(strconv.FormatInt(t.filled, 10)), 0)
	return nil
}

// openFlags is how the engines open the file: read-only unless the workload
// writes, so a user's file opened for reading cannot be damaged.
func (t *target) openFlags() int {
	flags := os.O_RDONLY
	if t.writes {
		flags = os.O_RDWR
	}
	if t.direct {
		flags |= syscall.O_DIRECT
	}
	return flags
}

// setCache puts the file's page cache in the same state before every
// engine: cold is flushed and dropped with posix_fadvise(DONTNEED) (also for
// O_DIRECT, so that no engine inherits another's dirty pages), warm has the
// whole region read in.
func (t *target) setCache(cache string) error {
	f, err := os.Open(t.path)
	if err != nil {
		return fmt.Errorf("cache %s: %w", t.path, err)
	}
	defer f.Close()
	fd := int(f.Fd())
	// DONTNEED cannot drop dirty pages, so write them back first.
	if err := unix.Fdatasync(fd); err != nil {
		return fmt.Errorf("cache %s: fdatasync: %w", t.path, err)
	}
	if err := unix.Fadvise(fd, 0, 0, unix.FADV_DONTNEED); err != nil {
		return fmt.Errorf("cache %s: posix_fadvise(DONTNEED): %w", t.path, err)
	}
	if cache != "warm" || t.direct {
		return nil
	}
	buf := make([]byte, 1<<20)
	for off := int64(0); off < t.size; off += int64(len(buf)) {
		n := min(int64(len(buf)), t.size-off)
		if _, err := f.ReadAt(buf[:n], off); err != nil {
			return fmt.Errorf("cache %s: warm-up read: %w", t.path, err)
		}
	}
	return nil
}

// verify reads back the sampled blocks of a writing run.
func (t *target) verify(p *plan, offs []int64) error {
	if len(offs) == 0 {
		return nil
	}
	f, err := os.Open(t.path)
	if err != nil {
		return fmt.Errorf("verify %s: %w", t.path, err)
	}
	defer f.Close()
	buf := make([]byte, p.bs)
	for _, off := range offs {
		if _, err := f.ReadAt(buf, off); err != nil {
			return fmt.Errorf("verify %s: read at %d: %w", t.path, off, err)
		}
		if err := p.checkBlock(buf, off); err != nil {
			return fmt.Errorf("verify %s: %w", t.path, err)
		}
	}
	return nil
}

// remove deletes the file if this run created it and -keep is not set.
func (t *target) remove() error {
	if t == nil || !t.created || t.keep {
		return nil
	}
	if err := os.Remove(t.path); err != nil && !errors.Is(err, os.ErrNotExist) {
		return err
	}
	return nil
}

func (t *target) describe() string {
	var b strings.Builder
	fmt.Fprintf(&b, "file %s (%s", t.path, formatBytes(t.size))
	if t.direct {
		b.WriteString(", O_DIRECT")
	} else {
		b.WriteString(", buffered")
	}
	b.WriteString(")")
	return b.String()
}
