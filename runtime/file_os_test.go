package runtime_test

import (
	"bytes"
	"errors"
	"fmt"
	"io"
	"io/fs"
	"os"
	"path/filepath"
	"reflect"
	"regexp"
	"sort"
	"strings"
	"sync"
	"syscall"
	"testing"
	"time"

	ringwake "github.com/ringwake/ringwake/runtime"
)

// osLike is what the parity tests call on both an *os.File and a
// *ringwake.File.
type osLike interface {
	io.ReadWriteSeeker
	io.ReaderAt
	io.WriterAt
	io.ReaderFrom
	io.WriterTo
	io.StringWriter
	io.Closer
	Name() string
	Stat() (fs.FileInfo, error)
	Sync() error
	Truncate(int64) error
	ReadDir(int) ([]fs.DirEntry, error)
	Readdir(int) ([]fs.FileInfo, error)
	Readdirnames(int) ([]string, error)
	Chmod(os.FileMode) error
	Chown(int, int) error
	SyscallConn() (syscall.RawConn, error)
	SetDeadline(time.Time) error
	SetReadDeadline(time.Time) error
	SetWriteDeadline(time.Time) error
}

var (
	_ osLike = (*os.File)(nil)
	_ osLike = (*ringwake.File)(nil)
)

// pair opens name with flag in a fresh directory per side, through os and
// through the ring; setup prepares each directory first.
func pair(t *testing.T, r *ringwake.Ring, name string, flag int, setup func(dir string)) (o, w osLike) {
	t.Helper()
	open := func(side string) osLike {
		dir := t.TempDir()
		if setup != nil {
			setup(dir)
		}
		var f osLike
		var err error
		if side == "os" {
			f, err = os.OpenFile(filepath.Join(dir, name), flag, 0o644)
		} else {
			f, err = r.Open(filepath.Join(dir, name), flag, 0o644)
		}
		if err != nil {
			t.Fatalf("%s: %v", side, err)
		}
		t.Cleanup(func() { f.Close() })
		return f
	}
	return open("os"), open("ringwake")
}

// same fails unless os and ringwake returned the same: a value and an error
// of the same errno (or the same sentinel), compared as text without paths.
func same(t *testing.T, what string, ov, wv any, oerr, werr error) {
	t.Helper()
	if !reflect.DeepEqual(ov, wv) {
		t.Errorf("%s: os returned %v, ringwake %v", what, ov, wv)
	}
	if (oerr == nil) != (werr == nil) {
		t.Fatalf("%s: os error %v, ringwake error %v", what, oerr, werr)
	}
	if oerr == nil {
		return
	}
	var oe, we syscall.Errno
	if errors.As(oerr, &oe) != errors.As(werr, &we) || oe != we {
		t.Errorf("%s: os error %v, ringwake error %v", what, oerr, werr)
	}
	for _, sentinel := range []error{io.EOF, os.ErrClosed, os.ErrNoDeadline, fs.ErrNotExist, os.ErrInvalid} {
		if errors.Is(oerr, sentinel) != errors.Is(werr, sentinel) {
			t.Errorf("%s: errors.Is(_, %v): os %v (%v), ringwake %v (%v)", what, sentinel,
				errors.Is(oerr, sentinel), oerr, errors.Is(werr, sentinel), werr)
		}
	}
	var ope, wpe *os.PathError
	if errors.As(oerr, &ope) && errors.As(werr, &wpe) && ope.Op != wpe.Op {
		t.Errorf("%s: os op %q, ringwake op %q", what, ope.Op, wpe.Op)
	}
}

func pos(t *testing.T, f io.Seeker) int64 {
	t.Helper()
	p, err := f.Seek(0, io.SeekCurrent)
	if err != nil {
		t.Fatal(err)
	}
	return p
}

func contents(t *testing.T, f osLike) string {
	t.Helper()
	b, err := os.ReadFile(f.Name())
	if err != nil {
		t.Fatal(err)
	}
	return string(b)
}

func TestFileTruncateParity(t *testing.T) {
	r := newRing(t, ringwake.Config{Entries: 8, Fallback: true})
	for _, mode := range []string{"ring", "syscall"} {
		t.Run(mode, func(t *testing.T) {
			if mode == "syscall" {
				defer ringwake.HideOps(fsOps...)()
			}
			o, w := pair(t, r, "f", os.O_RDWR|os.O_CREATE, nil)
			for _, f := range []osLike{o, w} {
				if _, err := f.WriteString("0123456789"); err != nil {
					t.Fatal(err)
				}
			}
			for _, size := range []int64{4, 20, 0, -1} {
				oerr, werr := o.Truncate(size), w.Truncate(size)
				same(t, fmt.Sprint("Truncate ", size), contents(t, o), contents(t, w), oerr, werr)
				same(t, "position", pos(t, o), pos(t, w), nil, nil)
			}
			ro, rw := pair(t, r, "f", os.O_RDONLY|os.O_CREATE, nil)
			same(t, "Truncate read-only", nil, nil, ro.Truncate(1), rw.Truncate(1))
			o.Close()
			w.Close()
			same(t, "Truncate after Close", nil, nil, o.Truncate(1), w.Truncate(1))
		})
	}
}

func TestFileWriteStringParity(t *testing.T) {
	r := newRing(t, ringwake.Config{Entries: 8, Fallback: true})
	o, w := pair(t, r, "f", os.O_RDWR|os.O_CREATE|os.O_APPEND, func(dir string) {
		os.WriteFile(filepath.Join(dir, "f"), []byte("head:"), 0o644)
	})
	long := strings.Repeat("ringwake ", 100000) // 900 kB: several ring writes may be needed
	for _, s := range []string{"", "a", long} {
		on, oerr := o.WriteString(s)
		wn, werr := w.WriteString(s)
		same(t, fmt.Sprintf("WriteString(%d bytes)", len(s)), on, wn, oerr, werr)
	}
	same(t, "contents", contents(t, o), contents(t, w), nil, nil)
	o.Close()
	w.Close()
	on, oerr := o.WriteString("x")
	wn, werr := w.WriteString("x")
	same(t, "WriteString after Close", on, wn, oerr, werr)
}

// TestFileReadFromParity copies between files the way os.File.ReadFrom
// does, from positions other than zero, whole and through an
// io.LimitedReader, into a file in append mode, and from a non-file
// reader: same counts, same bytes, same positions after.
func TestFileReadFromParity(t *testing.T) {
	r := newRing(t, ringwake.Config{Entries: 16, Fallback: true})
	data := pattern(7, 3<<20+12345) // more than three chunks
	setup := func(dir string) {
		os.WriteFile(filepath.Join(dir, "src"), data, 0o644)
		os.WriteFile(filepath.Join(dir, "dst"), []byte("existing bytes"), 0o644)
	}
	cases := []struct {
		name    string
		dstFlag int
		limit   int64 // -1: the whole source
		skip    int64 // source position to start at
	}{
		{"whole", os.O_RDWR, -1, 0},
		{"from the middle", os.O_RDWR, -1, 1<<20 + 7},
		{"limited", os.O_RDWR, 1<<21 + 3, 100},
		{"limit past the end", os.O_RDWR, 10 << 20, 5},
		{"limit zero", os.O_RDWR, 0, 0},
		{"append", os.O_RDWR | os.O_APPEND, -1, 0},
	}
	for _, c := range cases {
		t.Run(c.name, func(t *testing.T) {
			osrc, wsrc := pair(t, r, "src", os.O_RDONLY, setup)
			_ = wsrc
			// Each side copies from its own source into its own destination.
			odst, err := os.OpenFile(filepath.Join(filepath.Dir(osrc.Name()), "dst"), c.dstFlag, 0)
			if err != nil {
				t.Fatal(err)
			}
			defer odst.Close()
			wdst, err := r.Open(filepath.Join(filepath.Dir(wsrc.Name()), "dst"), c.dstFlag, 0)
			if err != nil {
				t.Fatal(err)
			}
			defer wdst.Close()
			for _, f := range []osLike{osrc, wsrc} {
				if _, err := f.Seek(c.skip, io.SeekStart); err != nil {
					t.Fatal(err)
				}
			}
			for _, f := range []osLike{odst, wdst} {
				if _, err := f.Seek(3, io.SeekStart); err != nil {
					t.Fatal(err)
				}
			}
			var osrcR, wsrcR io.Reader = osrc, wsrc
			var olr, wlr *io.LimitedReader
			if c.limit >= 0 {
				olr, wlr = &io.LimitedReader{R: osrc, N: c.limit}, &io.LimitedReader{R: wsrc, N: c.limit}
				osrcR, wsrcR = olr, wlr
			}
			on, oerr := odst.ReadFrom(osrcR)
			wn, werr := wdst.ReadFrom(wsrcR)
			same(t, "ReadFrom", on, wn, oerr, werr)
			if olr != nil {
				same(t, "LimitedReader.N after", olr.N, wlr.N, nil, nil)
			}
			same(t, "source position", pos(t, osrc), pos(t, wsrc), nil, nil)
			same(t, "destination position", pos(t, odst), pos(t, wdst), nil, nil)
			if o, w := contents(t, odst), contents(t, wdst); o != w {
				t.Fatalf("destinations differ: os %d bytes, ringwake %d bytes", len(o), len(w))
			}
		})
	}
	t.Run("from a bytes.Reader", func(t *testing.T) {
		o, w := pair(t, r, "f", os.O_RDWR|os.O_CREATE, nil)
		on, oerr := o.ReadFrom(bytes.NewReader(data))
		wn, werr := w.ReadFrom(bytes.NewReader(data))
		same(t, "ReadFrom", on, wn, oerr, werr)
		same(t, "contents", contents(t, o), contents(t, w), nil, nil)
	})
	t.Run("into a read-only file", func(t *testing.T) {
		src, err := r.Open(dataFile(t, data), os.O_RDONLY, 0)
		if err != nil {
			t.Fatal(err)
		}
		defer src.Close()
		o, w := pair(t, r, "f", os.O_RDONLY|os.O_CREATE, nil)
		on, oerr := o.ReadFrom(bytes.NewReader(data[:10]))
		wn, werr := w.ReadFrom(src)
		same(t, "ReadFrom", on, wn, oerr, werr)
	})
}

// TestFileReadFromStopsReading: when a write fails, the copy's reader
// goroutine stops (goleak checks it is gone) and the error is the write's.
func TestFileReadFromStopsReading(t *testing.T) {
	r := newRing(t, ringwake.Config{Entries: 16, Fallback: true})
	src, err := r.Open(dataFile(t, pattern(3, 5<<20)), os.O_RDONLY, 0)
	if err != nil {
		t.Fatal(err)
	}
	defer src.Close()
	// A pipe whose reader is gone: the first write fails with EPIPE.
	pr, pw := rawPipe(t)
	syscall.Close(pr)
	dst := r.NewFile(uintptr(mustDup(t, pw)), "pipe")
	defer dst.Close()
	n, err := dst.ReadFrom(src)
	if n != 0 || !errors.Is(err, syscall.EPIPE) {
		t.Fatalf("ReadFrom into a broken pipe: %d, %v; want 0, EPIPE", n, err)
	}
}

func TestFileWriteToParity(t *testing.T) {
	r := newRing(t, ringwake.Config{Entries: 16, Fallback: true})
	data := pattern(9, 2<<20+99)
	setup := func(dir string) { os.WriteFile(filepath.Join(dir, "f"), data, 0o644) }
	o, w := pair(t, r, "f", os.O_RDONLY, setup)
	for _, f := range []osLike{o, w} {
		f.Seek(1000, io.SeekStart)
	}
	var ob, wb bytes.Buffer
	on, oerr := o.WriteTo(&ob)
	wn, werr := w.WriteTo(&wb)
	same(t, "WriteTo a buffer", on, wn, oerr, werr)
	if !bytes.Equal(ob.Bytes(), wb.Bytes()) || !bytes.Equal(wb.Bytes(), data[1000:]) {
		t.Fatal("WriteTo wrote the wrong bytes")
	}
	// Into another File: the ring's copy.
	w.Seek(0, io.SeekStart)
	dst, err := r.Open(filepath.Join(t.TempDir(), "copy"), os.O_RDWR|os.O_CREATE, 0o644)
	if err != nil {
		t.Fatal(err)
	}
	defer dst.Close()
	if n, err := w.WriteTo(dst); n != int64(len(data)) || err != nil {
		t.Fatalf("WriteTo a File: %d, %v", n, err)
	}
	if got := contents(t, dst); got != string(data) {
		t.Fatal("WriteTo a File copied the wrong bytes")
	}
	o.Close()
	w.Close()
	on, oerr = o.WriteTo(&ob)
	wn, werr = w.WriteTo(&wb)
	same(t, "WriteTo after Close", on, wn, oerr, werr)
}

// TestFileSyncData: concurrent SyncData calls share fdatasyncs, and a
// failed Sync fails SyncData after it without another call to the kernel.
func TestFileSyncData(t *testing.T) {
	r := newRing(t, ringwake.Config{Entries: 64, Fallback: true})
	f, err := r.Open(filepath.Join(t.TempDir(), "f"), os.O_RDWR|os.O_CREATE, 0o644)
	if err != nil {
		t.Fatal(err)
	}
	defer f.Close()
	const writers, rounds = 32, 20
	var wg sync.WaitGroup
	errs := make(chan error, writers)
	for g := range writers {
		wg.Add(1)
		go func() {
			defer wg.Done()
			for i := range rounds {
				if _, err := f.WriteAt(pattern(uint32(g*rounds+i), 512), int64(g*rounds+i)*512); err != nil {
					errs <- err
					return
				}
				if err := f.SyncData(); err != nil {
					errs <- err
					return
				}
			}
		}()
	}
	wg.Wait()
	close(errs)
	for err := range errs {
		t.Fatal(err)
	}
	syncs, fdatasyncs := f.SyncStats()
	if syncs != writers*rounds || fdatasyncs == 0 || fdatasyncs >= syncs {
		t.Fatalf("SyncStats = %d calls, %d fdatasyncs: want %d calls sharing fewer", syncs, fdatasyncs, writers*rounds)
	}

	_, pw := rawPipe(t)
	p := r.NewFile(uintptr(mustDup(t, pw)), "pipe")
	defer p.Close()
	if err := p.Sync(); !errors.Is(err, syscall.EINVAL) {
		t.Fatalf("Sync on a pipe: %v, want EINVAL", err)
	}
	if err := p.SyncData(); !errors.Is(err, syscall.EINVAL) {
		t.Fatalf("SyncData after a failed Sync: %v, want the sticky EINVAL", err)
	}
	if syncs, fsyncs := p.SyncStats(); syncs != 2 || fsyncs != 1 {
		t.Fatalf("SyncStats = %d, %d: want 2 calls answered by one failed fsync", syncs, fsyncs)
	}
	f.Close()
	if err := f.SyncData(); !errors.Is(err, os.ErrClosed) {
		t.Fatalf("SyncData after Close: %v, want os.ErrClosed", err)
	}
}

// TestFileReadDirParity lists a directory opened through the ring in
// batches, rewinds it with Seek, and compares every answer with os.File's.
func TestFileReadDirParity(t *testing.T) {
	r := newRing(t, ringwake.Config{Entries: 8, Fallback: true})
	setup := func(dir string) {
		os.Mkdir(filepath.Join(dir, "d"), 0o755)
		for i := range 37 {
			os.WriteFile(filepath.Join(dir, "d", fmt.Sprintf("f%02d", i)), make([]byte, i), 0o644)
		}
		os.Mkdir(filepath.Join(dir, "d", "sub"), 0o700)
		os.Symlink("f01", filepath.Join(dir, "d", "link"))
	}
	o, w := pair(t, r, "d", os.O_RDONLY, setup)
	entries := func(es []fs.DirEntry) []string {
		var out []string
		for _, e := range es {
			info, err := e.Info()
			if err != nil {
				t.Fatal(err)
			}
			out = append(out, fmt.Sprintf("%s %v %v %d", e.Name(), e.Type(), info.Mode(), info.Size()))
		}
		sort.Strings(out)
		return out
	}
	infos := func(fis []fs.FileInfo) []string {
		var out []string
		for _, fi := range fis {
			out = append(out, fmt.Sprintf("%s %v %d", fi.Name(), fi.Mode(), fi.Size()))
		}
		sort.Strings(out)
		return out
	}
	// Batches of 10 until io.EOF; all names across the batches.
	var oall, wall []string
	for i := 0; ; i++ {
		oe, oerr := o.ReadDir(10)
		we, werr := w.ReadDir(10)
		same(t, fmt.Sprintf("ReadDir(10) batch %d: count", i), len(oe), len(we), oerr, werr)
		oall, wall = append(oall, entries(oe)...), append(wall, entries(we)...)
		if oerr != nil || i > 10 {
			break
		}
	}
	sort.Strings(oall)
	sort.Strings(wall)
	same(t, "ReadDir entries", oall, wall, nil, nil)
	if len(wall) != 39 {
		t.Fatalf("ReadDir saw %d entries, want 39", len(wall))
	}
	for _, f := range []osLike{o, w} {
		if _, err := f.Seek(0, io.SeekStart); err != nil {
			t.Fatal(err)
		}
	}
	ofi, oerr := o.Readdir(-1)
	wfi, werr := w.Readdir(-1)
	same(t, "Readdir(-1) after rewinding", infos(ofi), infos(wfi), oerr, werr)
	on, oerr := o.Readdirnames(5)
	wn, werr := w.Readdirnames(5)
	same(t, "Readdirnames(5) at the end", on, wn, oerr, werr)
	op, oerr := o.Seek(5, io.SeekStart)
	wp, werr := w.Seek(5, io.SeekStart)
	same(t, "Seek(5) on a directory", op, wp, oerr, werr)

	// A regular file is not a directory.
	fo, fw := pair(t, r, "f", os.O_RDWR|os.O_CREATE, nil)
	oe, oerr := fo.ReadDir(-1)
	we, werr := fw.ReadDir(-1)
	same(t, "ReadDir of a file", len(oe), len(we), oerr, werr)
	o.Close()
	w.Close()
	// os answers with poll's "use of closed file"; File says os.ErrClosed,
	// under os's op name.
	_, werr = w.ReadDir(-1)
	var pe *os.PathError
	if !errors.As(werr, &pe) || pe.Op != "readdirent" || !errors.Is(werr, os.ErrClosed) {
		t.Fatalf("ReadDir after Close: %v, want a readdirent *os.PathError wrapping os.ErrClosed", werr)
	}
}

func TestFileChmodChownParity(t *testing.T) {
	r := newRing(t, ringwake.Config{Entries: 8, Fallback: true})
	o, w := pair(t, r, "f", os.O_RDWR|os.O_CREATE, nil)
	mode := func(f osLike) os.FileMode {
		fi, err := os.Stat(f.Name())
		if err != nil {
			t.Fatal(err)
		}
		return fi.Mode()
	}
	for _, m := range []os.FileMode{0o600, 0o4755, 0o1700} {
		oerr, werr := o.Chmod(m), w.Chmod(m)
		same(t, fmt.Sprintf("Chmod(%v)", m), mode(o), mode(w), oerr, werr)
	}
	same(t, "Chown to self", nil, nil, o.Chown(os.Getuid(), os.Getgid()), w.Chown(os.Getuid(), os.Getgid()))
	same(t, "Chown to no change", nil, nil, o.Chown(-1, -1), w.Chown(-1, -1))
	o.Close()
	w.Close()
	same(t, "Chmod after Close", nil, nil, o.Chmod(0o600), w.Chmod(0o600))
	same(t, "Chown after Close", nil, nil, o.Chown(-1, -1), w.Chown(-1, -1))
}

func TestFileDeadlinesParity(t *testing.T) {
	r := newRing(t, ringwake.Config{Entries: 8, Fallback: true})
	o, w := pair(t, r, "f", os.O_RDWR|os.O_CREATE, nil)
	at := time.Now().Add(time.Second)
	for _, c := range []struct {
		name string
		o, w error
	}{
		{"SetDeadline", o.SetDeadline(at), w.SetDeadline(at)},
		{"SetReadDeadline", o.SetReadDeadline(at), w.SetReadDeadline(at)},
		{"SetWriteDeadline", o.SetWriteDeadline(time.Time{}), w.SetWriteDeadline(time.Time{})},
	} {
		same(t, c.name, nil, nil, c.o, c.w)
		if c.w != os.ErrNoDeadline {
			t.Errorf("%s: %v, want os.ErrNoDeadline itself, as os.File returns", c.name, c.w)
		}
	}
}

// TestFileSyscallConn: Control sees the File's descriptor and keeps it open
// while it runs, even across a concurrent Close.
func TestFileSyscallConn(t *testing.T) {
	r := newRing(t, ringwake.Config{Entries: 8, Fallback: true})
	o, w := pair(t, r, "f", os.O_RDWR|os.O_CREATE, nil)
	orc, oerr := o.SyscallConn()
	wrc, werr := w.SyscallConn()
	same(t, "SyscallConn", nil, nil, oerr, werr)
	var got uintptr
	if err := wrc.Control(func(fd uintptr) { got = fd }); err != nil || got != w.(*ringwake.File).Fd() {
		t.Fatalf("Control saw fd %d (%v), want %d", got, err, w.(*ringwake.File).Fd())
	}
	oerr = orc.Read(func(uintptr) bool { return true })
	werr = wrc.Read(func(uintptr) bool { return true })
	same(t, "RawConn.Read done at once", nil, nil, oerr, werr)

	inside, release := make(chan struct{}), make(chan struct{})
	closed := make(chan error, 1)
	var st syscall.Stat_t
	var statErr error
	go func() {
		<-inside
		closed <- w.Close()
	}()
	err := wrc.Control(func(fd uintptr) {
		close(inside)
		select {
		case err := <-closed:
			statErr = fmt.Errorf("Close returned (%v) while Control ran", err)
		case <-time.After(50 * time.Millisecond):
		}
		statErr = errors.Join(statErr, syscall.Fstat(int(fd), &st))
		close(release)
	})
	if err != nil || statErr != nil {
		t.Fatalf("Control during Close: %v, %v", err, statErr)
	}
	if err := <-closed; err != nil {
		t.Fatalf("Close after Control: %v", err)
	}
	o.Close()
	oerr = orc.Control(func(uintptr) {})
	werr = wrc.Control(func(uintptr) {})
	if oerr == nil || werr == nil || !errors.Is(werr, os.ErrClosed) {
		t.Fatalf("Control after Close: os %v, ringwake %v; want errors, ringwake's os.ErrClosed", oerr, werr)
	}
	_, oerr = o.SyscallConn()
	_, werr = w.SyscallConn()
	if !errors.Is(werr, os.ErrClosed) {
		t.Fatalf("SyscallConn after Close: os %v, ringwake %v", oerr, werr)
	}
}

// TestFileMethodTable: docs/file.md lists every method of *os.File, and
// every one the table maps to a File method exists.
func TestFileMethodTable(t *testing.T) {
	doc, err := os.ReadFile("../docs/file.md")
	if err != nil {
		t.Fatal(err)
	}
	row := regexp.MustCompile("(?m)^\\| `([A-Za-z]+)` \\| ([^|]+) \\|")
	rows := map[string]string{}
	for _, m := range row.FindAllStringSubmatch(string(doc), -1) {
		rows[m[1]] = m[2]
	}
	osType := reflect.TypeOf((*os.File)(nil))
	ours := reflect.TypeOf((*ringwake.File)(nil))
	for i := range osType.NumMethod() {
		name := osType.Method(i).Name
		counterpart, ok := rows[name]
		if !ok {
			t.Errorf("docs/file.md has no row for *os.File's %s", name)
			continue
		}
		if strings.HasPrefix(counterpart, "`") {
			m, ok := ours.MethodByName(name)
			if !ok {
				t.Errorf("docs/file.md maps %s to a File method, which does not exist", name)
				continue
			}
			if om := osType.Method(i); m.Type.String() != strings.Replace(om.Type.String(), "*os.File", "*runtime.File", 1) {
				t.Errorf("%s: ringwake's signature %v differs from os's %v", name, m.Type, om.Type)
			}
		}
	}
}

// A Sync that finds no fsync in flight makes it on its own goroutine, not
// through the ring (no io-wq hand-off, no poller hop); Syncs that arrive
// while it runs still share the next one.
func TestSyncStartsInline(t *testing.T) {
	r := newRing(t, ringwake.Config{})
	f, err := r.Open(filepath.Join(t.TempDir(), "f"), os.O_RDWR|os.O_CREATE, 0o644)
	if err != nil {
		t.Fatal(err)
	}
	defer f.Close()
	for _, sync := range []func() error{f.Sync, f.SyncData} {
		if _, err := f.WriteAt([]byte("data"), 0); err != nil {
			t.Fatal(err)
		}
		before := r.Stats().Submitted
		if err := sync(); err != nil {
			t.Fatal(err)
		}
		if got := r.Stats().Submitted - before; got != 0 {
			t.Fatalf("a lone Sync submitted %d requests to the ring, want 0", got)
		}
	}
	// Bursts of Syncs released at once until one overlaps another's fsync:
	// where fsync costs microseconds (tmpfs) and the CPUs are busy, a burst
	// can run one Sync after another.
	for burst := 0; ; burst++ {
		if burst == 50 {
			syncs, fsyncs := f.SyncStats()
			t.Fatalf("%d fsyncs for %d Syncs in 50 bursts of 32: none shared", fsyncs, syncs)
		}
		syncs0, fsyncs0 := f.SyncStats()
		start := make(chan struct{})
		var wg sync.WaitGroup
		for range 32 {
			wg.Add(1)
			go func() {
				defer wg.Done()
				<-start
				if err := f.Sync(); err != nil {
					t.Error(err)
				}
			}()
		}
		close(start)
		wg.Wait()
		if t.Failed() {
			return
		}
		if syncs, fsyncs := f.SyncStats(); fsyncs-fsyncs0 < syncs-syncs0 {
			return
		}
	}
}
