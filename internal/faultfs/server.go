package faultfs

import (
	"bufio"
	"encoding/json"
	"errors"
	"fmt"
	"io"
	"log"
	"math/rand/v2"
	"os"
	"path/filepath"
	"sort"
	"sync"
	"sync/atomic"
	"syscall"
	"time"

	"github.com/hanwen/go-fuse/v2/fs"
	"github.com/hanwen/go-fuse/v2/fuse"
	"golang.org/x/sys/unix"
)

// init turns a test binary started by Mount into the server.
func init() {
	if dir := os.Getenv(serveEnv); dir != "" {
		os.Exit(serve(dir, os.Stdin, os.Stdout))
	}
}

// serve mounts dir/mnt-0 and answers the parent's requests until Close or
// until the parent is gone.
func serve(dir string, in io.Reader, out io.Writer) int {
	enc := json.NewEncoder(out)
	var cfg Config
	if err := json.Unmarshal([]byte(os.Getenv(serveConfigEnv)), &cfg); err != nil {
		enc.Encode(reply{Err: fmt.Sprintf("faultfs: config: %v", err)})
		return 1
	}
	f, err := start(dir, cfg)
	if err != nil {
		enc.Encode(reply{Err: err.Error()})
		return 1
	}
	enc.Encode(reply{Dir: f.cur.dir})
	dec := json.NewDecoder(bufio.NewReader(in))
	for {
		var r request
		if err := dec.Decode(&r); err != nil {
			// The parent is gone: do not leave a mount behind.
			f.close()
			return 1
		}
		var rep reply
		var err error
		switch r.Op {
		case "cut":
			rep.Cut, err = f.cut(r.Keep, r.Seed)
			if f.cur != nil {
				rep.Dir = f.cur.dir
			}
		case "inject":
			f.inject(r.Fault)
		case "clear":
			f.clearFaults()
		case "budget":
			f.setSpaceBudget(r.Budget)
		case "stats":
			rep.Stats = f.statsNow()
		case "close":
			err = f.close()
		default:
			err = fmt.Errorf("faultfs: unknown request %q", r.Op)
		}
		if err != nil {
			rep.Err = err.Error()
		}
		if enc.Encode(rep) != nil {
			f.close()
			return 1
		}
		if r.Op == "close" {
			return 0
		}
	}
}

// server is the file system, in the child.
type server struct {
	cfg  Config
	base string // holds the mount points and the backing directories

	mu      sync.Mutex // serializes cut and close
	cur     *mount
	retired []*mount // cut mounts, frozen, unmounted once no file is open on them
	gens    int
	closed  bool

	nextGen atomic.Uint64 // inode generations, unique across mounts

	faultMu sync.Mutex
	faults  []*fault
	budget  int64 // bytes writes and fallocates may still use; -1: no limit

	stats struct {
		reads, writes, fsyncs, fdatasyncs, dirSyncs, injected, noSpace, cuts, droppedBytes, keptBytes, lostNames, revivedNames atomic.Int64
	}
}

func (f *server) statsNow() Stats {
	s := &f.stats
	return Stats{
		Reads: s.reads.Load(), Writes: s.writes.Load(),
		Fsyncs: s.fsyncs.Load(), Fdatasyncs: s.fdatasyncs.Load(), DirSyncs: s.dirSyncs.Load(),
		Injected: s.injected.Load(), NoSpace: s.noSpace.Load(),
		Cuts: s.cuts.Load(), DroppedBytes: s.droppedBytes.Load(), KeptBytes: s.keptBytes.Load(),
		LostNames: s.lostNames.Load(), RevivedNames: s.revivedNames.Load(),
	}
}

// start mounts dir/mnt-0 backed by dir/disk-0.
func start(dir string, cfg Config) (*server, error) {
	f := &server{cfg: cfg, base: dir, budget: -1}
	disk := filepath.Join(dir, "disk-0")
	if err := os.MkdirAll(disk, 0o755); err != nil {
		return nil, fmt.Errorf("faultfs: %w", err)
	}
	m, err := f.mount(disk, filepath.Join(dir, "mnt-0"))
	if err != nil {
		return nil, err
	}
	f.cur = m
	return f, nil
}

// cut is FS.Cut. The old mount stays where it is, frozen: a path the
// process under test still holds then leads to EIO, not into the new mount
// (a real power cut would have stopped that process).
func (f *server) cut(keep float64, seed uint64) (CutReport, error) {
	f.mu.Lock()
	defer f.mu.Unlock()
	if f.closed || f.cur == nil {
		return CutReport{}, errors.New("faultfs: Cut after Close")
	}
	old := f.cur
	f.gens++
	disk := filepath.Join(f.base, fmt.Sprintf("disk-%d", f.gens))
	rep, err := old.cut(disk, keep, seed)
	if err != nil {
		return rep, err
	}
	f.stats.cuts.Add(1)
	f.stats.droppedBytes.Add(rep.DroppedBytes)
	f.stats.keptBytes.Add(rep.KeptBytes)
	f.stats.lostNames.Add(int64(rep.LostNames))
	f.stats.revivedNames.Add(int64(rep.RevivedNames))
	// Unmount the earlier cut mounts whose files are all closed by now.
	kept := f.retired[:0]
	for _, m := range f.retired {
		if unix.Unmount(m.dir, 0) == nil {
			<-m.served
		} else {
			kept = append(kept, m)
		}
	}
	f.retired = append(kept, old)
	m, err := f.mount(disk, filepath.Join(f.base, fmt.Sprintf("mnt-%d", f.gens)))
	if err != nil {
		f.cur = nil
		return rep, err
	}
	f.cur = m
	return rep, nil
}

// retireTimeout bounds how long close waits for mounts whose files are
// still open before it aborts their connections.
const retireTimeout = 20 * time.Second

// close is FS.Close.
func (f *server) close() error {
	f.mu.Lock()
	defer f.mu.Unlock()
	if f.closed {
		return nil
	}
	f.closed = true
	if f.cur != nil {
		f.retired = append(f.retired, f.cur)
		f.cur = nil
	}
	var errs []error
	var busy []*mount
	for _, m := range f.retired {
		if err := m.server.Unmount(); err != nil {
			// Files still open: detach, wait a while, then abort.
			errs = append(errs, fmt.Errorf("faultfs: unmount %s: %w (files left open)", m.dir, err))
			unix.Unmount(m.dir, unix.MNT_DETACH)
			busy = append(busy, m)
		}
	}
	deadline := time.After(retireTimeout)
	for _, m := range busy {
		select {
		case <-m.served:
			continue
		case <-deadline:
		}
		errs = append(errs, fmt.Errorf("faultfs: %s still had open files after %v; aborted", m.dir, retireTimeout))
		m.abort()
		<-m.served
	}
	f.retired = nil
	return errors.Join(errs...)
}

// mount serves a new mount of disk at dir, which it creates.
func (f *server) mount(disk, dir string) (*mount, error) {
	if err := os.Mkdir(dir, 0o755); err != nil {
		return nil, fmt.Errorf("faultfs: %w", err)
	}
	m := &mount{fs: f, disk: disk, dir: dir, inodes: map[uint64]*inode{}, served: make(chan struct{})}
	var st syscall.Stat_t
	if err := syscall.Lstat(disk, &st); err != nil {
		return nil, fmt.Errorf("faultfs: %w", err)
	}
	var err error
	if m.root, err = m.load(disk, &st); err != nil {
		return nil, err
	}
	rootData := &fs.LoopbackRoot{Path: disk, Dev: uint64(st.Dev)}
	root := &node{LoopbackNode: &fs.LoopbackNode{RootData: rootData}, m: m, st: m.root}
	rootData.RootNode = root
	zero := time.Duration(0)
	opts := &fs.Options{
		// No kernel caching of names or attributes: a name the kernel
		// has cached is looked up here anyway, so a frozen mount fails it.
		EntryTimeout:    &zero,
		AttrTimeout:     &zero,
		NegativeTimeout: &zero,
		MountOptions: fuse.MountOptions{
			FsName:            "faultfs",
			Name:              "faultfs",
			DirectMountStrict: true,
			DisableXAttrs:     true,
			// A detached mount's connection ends with ECONNABORTED
			// once its last file closes, which go-fuse logs.
			Logger: log.New(io.Discard, "", 0),
		},
	}
	srv, err := fuse.NewServer(fs.NewNodeFS(root, opts), dir, &opts.MountOptions)
	if err != nil {
		return nil, fmt.Errorf("faultfs: mount %s: %w", dir, err)
	}
	m.server = srv
	go func() {
		defer close(m.served)
		srv.Serve()
	}()
	if err := srv.WaitMount(); err != nil {
		unix.Unmount(dir, unix.MNT_DETACH)
		<-m.served
		return nil, fmt.Errorf("faultfs: mount %s: %w", dir, err)
	}
	if err := syscall.Stat(dir, &st); err == nil {
		m.dev = st.Dev
	}
	return m, nil
}

// mount is one mount of one backing directory.
type mount struct {
	fs     *server
	disk   string // the backing directory
	dir    string // the mount point
	server *fuse.Server
	served chan struct{} // closed when Serve returned
	dev    uint64        // the mount's device number: its fusectl connection

	// mu is held shared by every request that changes the backing
	// directory or the durable image, and exclusively by the cut.
	mu   sync.RWMutex
	dead atomic.Bool // set under mu; read without it by requests that change nothing

	imu    sync.Mutex
	inodes map[uint64]*inode // live files and directories by backing inode number
	root   *inode
}

// enter admits a request that changes state, or fails it with EIO once the
// mount is cut. The caller calls exit when done.
func (m *mount) enter() syscall.Errno {
	m.mu.RLock()
	if m.dead.Load() {
		m.mu.RUnlock()
		return syscall.EIO
	}
	return 0
}

func (m *mount) exit() { m.mu.RUnlock() }

// abort ends the mount's FUSE connection: requests fail with ENOTCONN and
// the server stops.
func (m *mount) abort() {
	p := fmt.Sprintf("/sys/fs/fuse/connections/%d/abort", unix.Minor(m.dev))
	if err := os.WriteFile(p, []byte("1"), 0); err != nil {
		// fusectl may not be mounted.
		unix.Mount("fusectl", "/sys/fs/fuse/connections", "fusectl", 0, "")
		os.WriteFile(p, []byte("1"), 0)
	}
}

// inode is the durable state of one file or directory, and what it owes
// since its last sync.
type inode struct {
	gen  uint64 // unique: FUSE's generation for it
	dir  bool
	perm uint32

	mu      sync.Mutex
	data    []byte            // file: contents at the last sync (nil: never synced, empty)
	dirty   spans             // file: ranges changed since then
	entries map[string]*inode // directory: names at the last fsync
}

// load records disk's tree (the path p, whose lstat is st) as durable.
func (m *mount) load(p string, st *syscall.Stat_t) (*inode, error) {
	in := m.newInode(st)
	switch st.Mode & syscall.S_IFMT {
	case syscall.S_IFREG:
		data, err := os.ReadFile(p)
		if err != nil {
			return nil, fmt.Errorf("faultfs: %w", err)
		}
		in.data = data
	case syscall.S_IFDIR:
		ents, err := os.ReadDir(p)
		if err != nil {
			return nil, fmt.Errorf("faultfs: %w", err)
		}
		for _, e := range ents {
			cp := filepath.Join(p, e.Name())
			var cst syscall.Stat_t
			if err := syscall.Lstat(cp, &cst); err != nil {
				return nil, fmt.Errorf("faultfs: %w", err)
			}
			c, err := m.load(cp, &cst)
			if err != nil {
				return nil, err
			}
			in.entries[e.Name()] = c
		}
	default:
		return nil, fmt.Errorf("faultfs: %s: only files and directories are supported", p)
	}
	return in, nil
}

// newInode records a file or directory just created (or found at mount) as
// the one with st's inode number: a number the backing file system reuses
// gets a new inode, while the old one lives on in the durable names that
// still refer to it.
func (m *mount) newInode(st *syscall.Stat_t) *inode {
	in := &inode{
		gen:  m.fs.nextGen.Add(1),
		dir:  st.Mode&syscall.S_IFMT == syscall.S_IFDIR,
		perm: st.Mode & 0o7777,
	}
	if in.dir {
		in.entries = map[string]*inode{}
	}
	m.imu.Lock()
	m.inodes[st.Ino] = in
	m.imu.Unlock()
	return in
}

// inodeOf is the live inode with st's inode number.
func (m *mount) inodeOf(st *syscall.Stat_t) *inode {
	m.imu.Lock()
	in := m.inodes[st.Ino]
	m.imu.Unlock()
	if in == nil {
		// Not made here nor found at mount (the backing directory was
		// changed behind the mount's back): never synced.
		in = m.newInode(st)
	}
	return in
}

// changed notes that [off, end) of the file changed.
func (in *inode) changed(off, end int64) {
	if end <= off {
		return
	}
	in.mu.Lock()
	in.dirty = in.dirty.add(off, end)
	in.mu.Unlock()
}

// sync makes the file's contents durable, reading the changed ranges
// through fd.
func (in *inode) sync(fd int) syscall.Errno {
	// A descriptor of its own: fd may be write-only.
	rfd, err := unix.Open(fmt.Sprintf("/proc/self/fd/%d", fd), unix.O_RDONLY|unix.O_CLOEXEC, 0)
	if err != nil {
		return errnoOf(err)
	}
	defer unix.Close(rfd)
	var st unix.Stat_t
	if err := unix.Fstat(rfd, &st); err != nil {
		return errnoOf(err)
	}
	in.mu.Lock()
	defer in.mu.Unlock()
	size := st.Size
	var data []byte
	if old := int64(len(in.data)); size <= int64(cap(in.data)) {
		data = in.data[:size]
		if size > old {
			// Only a failed sync leaves a grown range unowed: it reads
			// back as zeros.
			clear(data[old:])
		}
	} else {
		data = make([]byte, size)
		copy(data, in.data)
	}
	for _, s := range in.dirty {
		end := min(s.end, size)
		for off := s.off; off < end; {
			n, err := unix.Pread(rfd, data[off:end], off)
			if err != nil {
				return errnoOf(err)
			}
			if n == 0 {
				clear(data[off:end]) // the file shrank meanwhile
				break
			}
			off += int64(n)
		}
	}
	in.data = data
	in.dirty = in.dirty[:0]
	return 0
}

// forget drops what the file owes without making it durable: a failed sync.
func (in *inode) forget() {
	in.mu.Lock()
	in.dirty = in.dirty[:0]
	in.mu.Unlock()
}

// syncDir makes the directory at p's names durable.
func (m *mount) syncDir(in *inode, p string) syscall.Errno {
	ents, err := os.ReadDir(p)
	if err != nil {
		return errnoOf(err)
	}
	names := make(map[string]*inode, len(ents))
	for _, e := range ents {
		var st syscall.Stat_t
		if err := syscall.Lstat(filepath.Join(p, e.Name()), &st); err != nil {
			if errors.Is(err, syscall.ENOENT) {
				continue // removed meanwhile
			}
			return errnoOf(err)
		}
		names[e.Name()] = m.inodeOf(&st)
	}
	in.mu.Lock()
	in.entries = names
	in.mu.Unlock()
	return 0
}

// cut freezes the mount and writes its durable image to disk. With keep
// above zero, each unsynced 4 KiB page of a file (within its durable size)
// reaches the image with that probability, drawn from seed.
func (m *mount) cut(disk string, keep float64, seed uint64) (CutReport, error) {
	m.mu.Lock()
	defer m.mu.Unlock()
	m.dead.Store(true)
	var rep CutReport
	m.imu.Lock()
	for _, in := range m.inodes {
		for _, s := range in.dirty {
			rep.DroppedBytes += s.end - s.off
		}
	}
	m.imu.Unlock()
	var rng *rand.Rand
	if keep > 0 {
		rng = rand.New(rand.NewPCG(seed, 0x6b656570)) // "keep"
	}
	if err := m.compare(m.disk, m.root, &rep, keep, rng); err != nil {
		return rep, err
	}
	rep.DroppedBytes -= rep.KeptBytes
	if err := os.Mkdir(disk, 0o755); err != nil {
		return rep, fmt.Errorf("faultfs: %w", err)
	}
	return rep, m.root.write(disk, map[*inode]bool{})
}

// compare counts the names of the live directory p (whose inode is in) that
// differ from its durable names, lets the unsynced pages of its files
// survive as keep and rng say, and recurses into its live subdirectories.
func (m *mount) compare(p string, in *inode, rep *CutReport, keep float64, rng *rand.Rand) error {
	ents, err := os.ReadDir(p)
	if err != nil {
		return fmt.Errorf("faultfs: %w", err)
	}
	live := map[string]bool{}
	for _, e := range ents {
		cp := filepath.Join(p, e.Name())
		var st syscall.Stat_t
		if err := syscall.Lstat(cp, &st); err != nil {
			return fmt.Errorf("faultfs: %w", err)
		}
		c := m.inodeOf(&st)
		live[e.Name()] = true
		if in.entries[e.Name()] != c {
			rep.LostNames++
		}
		var err error
		if c.dir {
			err = m.compare(cp, c, rep, keep, rng)
		} else if rng != nil {
			err = c.keepPages(cp, keep, rng, rep)
		}
		if err != nil {
			return err
		}
	}
	for name := range in.entries {
		if !live[name] {
			rep.RevivedNames++
		}
	}
	return nil
}

// pageSize is the unit in which unsynced data survives a cut that keeps
// some.
const pageSize = 4096

// keepPages copies, from the live file at p, each unsynced page within the
// durable size with probability keep: what a disk had written back, in no
// particular order, when the power went.
func (in *inode) keepPages(p string, keep float64, rng *rand.Rand, rep *CutReport) error {
	in.mu.Lock()
	defer in.mu.Unlock()
	size := int64(len(in.data)) // the size is metadata: only a sync makes it durable
	if len(in.dirty) == 0 || size == 0 {
		return nil
	}
	f, err := os.Open(p)
	if err != nil {
		return fmt.Errorf("faultfs: %w", err)
	}
	defer f.Close()
	page, kept := int64(-1), false // the page last drawn for, and the draw
	for _, s := range in.dirty {
		for off := s.off; off < min(s.end, size); {
			if pg := off &^ (pageSize - 1); pg != page {
				page, kept = pg, rng.Float64() < keep
			}
			end := min(s.end, size, page+pageSize)
			if kept {
				n, err := f.ReadAt(in.data[off:end], off)
				if err != nil && err != io.EOF {
					return fmt.Errorf("faultfs: %w", err)
				}
				clear(in.data[off+int64(n) : end]) // truncated since: zeros
				rep.KeptBytes += end - off
			}
			off = end
		}
	}
	return nil
}

// write creates the durable image of in at p (a directory's p exists).
// seen guards against a directory reachable twice (see the package comment
// on renames).
func (in *inode) write(p string, seen map[*inode]bool) error {
	if !in.dir {
		if err := os.WriteFile(p, in.data, os.FileMode(in.perm&0o777)); err != nil {
			return fmt.Errorf("faultfs: %w", err)
		}
		return nil
	}
	seen[in] = true
	names := make([]string, 0, len(in.entries))
	for name := range in.entries {
		names = append(names, name)
	}
	sort.Strings(names)
	for _, name := range names {
		c := in.entries[name]
		cp := filepath.Join(p, name)
		if c.dir {
			if seen[c] {
				continue
			}
			if err := os.Mkdir(cp, os.FileMode(c.perm&0o777)); err != nil {
				return fmt.Errorf("faultfs: %w", err)
			}
		}
		if err := c.write(cp, seen); err != nil {
			return err
		}
	}
	return nil
}

// spans is a sorted list of disjoint, non-adjacent byte ranges.
type spans []span

type span struct{ off, end int64 }

// add merges [off, end) into s.
func (s spans) add(off, end int64) spans {
	// The first span that ends at or after off can merge with it.
	i := sort.Search(len(s), func(i int) bool { return s[i].end >= off })
	j := i
	for j < len(s) && s[j].off <= end {
		off = min(off, s[j].off)
		end = max(end, s[j].end)
		j++
	}
	if i == j {
		s = append(s, span{})
		copy(s[i+1:], s[i:])
		s[i] = span{off, end}
		return s
	}
	s[i] = span{off, end}
	return append(s[:i+1], s[j:]...)
}

func errnoOf(err error) syscall.Errno {
	var errno syscall.Errno
	if errors.As(err, &errno) {
		return errno
	}
	return syscall.EIO
}
