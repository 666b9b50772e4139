// Package faultfs is a FUSE file system for tests that loses what a power cut
// would lose and fails the I/O a failing disk would fail. It passes through to
// a backing directory (which plays the page cache: what a running program
// sees) and keeps, beside it, the durable image of every file and directory
// (what the disk holds).
//
// # Power cuts
//
// The durable state of a file is its contents at its last fsync or
// fdatasync; the durable names of a directory are those it held at its last
// fsync. Cut freezes the mount (every request still reaching it fails with
// EIO, as on a machine that is off), writes the durable image into a fresh
// backing directory and mounts it at a new mount point (Dir), leaving the
// dead mount where it was until Close. What did not survive:
//
//   - every write, truncate and fallocate to a file since its last fsync or
//     fdatasync;
//   - every create, rename and unlink in a directory since that directory's
//     last fsync: a new file whose directory was not fsynced after its
//     creation is gone, even if the file itself was fsynced, and a name
//     removed but not fsynced comes back with the file's durable contents;
//   - a file whose name is durable but which was never fsynced comes back
//     empty.
//
// After a failed fsync or fdatasync (an injected fault), the writes it would
// have covered are dropped from the pending set without being made durable,
// as Linux marks the pages clean after a writeback error: a later fsync that
// succeeds does not cover them, and a cut loses them though reads still
// return them.
//
// CutKeeping is a harsher cut: each unsynced 4 KiB page (within the
// file's durable size) survives with a given probability, as on a disk that
// had written back some of what was not synced, in any order.
//
// # What it does not model
//
//   - Torn writes inside a page: Cut keeps no unsynced byte; CutKeeping keeps
//     or drops each 4 KiB page whole (a write across pages can be torn at a
//     page boundary), never part of one, and never a sector of it.
//   - Size changes without a sync: the durable size is the one at the last
//     sync, even under CutKeeping.
//   - Metadata journaling: on ext4 or xfs, fsync of a new file usually makes
//     its directory entry durable too, and a rename is atomic across both
//     directories. Here only a directory's own fsync makes its names durable,
//     and a rename between two directories becomes durable in each one
//     separately, so a cut between the two fsyncs can leave the file under
//     both names (as two copies) or under neither.
//   - Hard links, symbolic links, special files, O_TMPFILE, extended
//     attributes and permission changes after creation: the first four are
//     refused (ENOTSUP), the others are not recorded in the durable image.
//   - Space: the budget (SetSpaceBudget) counts bytes written and fallocated,
//     overwrites included, as a thin-provisioned device would; it is not the
//     backing file system's free space.
//
// # Faults
//
// Inject adds a Fault: a chosen read, write, fsync, fdatasync or directory
// fsync fails with EIO (or another errno), selected by path, by count, or at
// random from a seed. SetSpaceBudget makes writes and fallocates fail with
// ENOSPC once a number of bytes has been written. Reads fail only when they
// reach the file system: use Config.DirectIO so that no read is served from
// the page cache.
//
// # O_DIRECT
//
// The mount accepts O_DIRECT opens (the kernel's FUSE client sends O_DIRECT
// reads and writes to the server uncached); the backing files are opened
// without it, since only the durable image matters.
//
// # The server runs in a child process
//
// Mount starts the file system in a child process: the test binary again,
// which this package's init turns into the server (FAULTFS_SERVE in its
// environment). A server in the process under test can deadlock it:
// io_uring issues some requests (a linked fdatasync, a retried write) from
// task work on a thread of the submitting process, one the Go scheduler may
// count as running user code; blocked there on the FUSE reply, it never
// answers a stop-the-world, and a garbage collection the server needs in
// order to reply never starts. The parent drives the child over a pipe
// (Cut, Inject, Stats, Close).
//
// Mounting needs root (the mount is made with mount(2) directly, no
// fusermount) and /dev/fuse. Use New in tests: it skips where FUSE is not
// available, except under CI=true.
package faultfs

import (
	"bufio"
	"encoding/json"
	"errors"
	"fmt"
	"io"
	"os"
	"os/exec"
	"path/filepath"
	"sync"
	"testing"

	"golang.org/x/sys/unix"

	"github.com/ringwake/ringwake/internal/uringtest"
)

// Config tunes a mount.
type Config struct {
	// DirectIO opens every file with FOPEN_DIRECT_IO: reads and writes go to
	// the file system uncached, so every read reaches it (and can be
	// failed). Without it the kernel's page cache serves repeated reads.
	DirectIO bool
}

// Stats are an FS's counters since Mount.
type Stats struct {
	Reads, Writes           int64 // read and write requests served
	Fsyncs, Fdatasyncs      int64 // file syncs served (including failed ones)
	DirSyncs                int64 // directory fsyncs served
	Injected                int64 // requests failed by a Fault
	NoSpace                 int64 // requests failed with ENOSPC by the space budget
	Cuts                    int64 // power cuts
	DroppedBytes            int64 // bytes written (or truncated, or fallocated) and not synced when a cut came, lost
	KeptBytes               int64 // such bytes CutKeeping let survive
	LostNames, RevivedNames int64 // directory entries cuts removed, and brought back
}

// CutReport says what one power cut dropped.
type CutReport struct {
	DroppedBytes int64 // bytes written, truncated or fallocated since their file's last sync, lost
	KeptBytes    int64 // such bytes that survived (CutKeeping)
	LostNames    int   // entries created or renamed since their directory's last fsync, gone
	RevivedNames int   // entries removed or renamed away since then, back
}

// FS is a mounted faultfs, served by a child process. Its methods are safe
// for concurrent use.
type FS struct {
	mu     sync.Mutex // one request to the server at a time; mnt
	mnt    string
	cmd    *exec.Cmd
	req    *json.Encoder
	resp   *json.Decoder
	stdin  io.Closer
	closed bool
}

// Available reports why this process cannot mount a faultfs, or nil.
func Available() error {
	if os.Geteuid() != 0 {
		return errors.New("faultfs: mounting needs root")
	}
	fd, err := unix.Open("/dev/fuse", unix.O_RDWR|unix.O_CLOEXEC, 0)
	if err != nil {
		return fmt.Errorf("faultfs: open /dev/fuse: %w", err)
	}
	unix.Close(fd)
	return nil
}

// New mounts a faultfs over an empty backing directory for the test and
// unmounts it at the test's end. Where FUSE is not available it skips the
// test with the reason, except under CI=true, where it fails it.
func New(t testing.TB, cfg Config) *FS {
	t.Helper()
	err := Available()
	var f *FS
	if err == nil {
		f, err = Mount(t.TempDir(), cfg)
	}
	if err != nil {
		if uringtest.InCI() {
			t.Fatalf("FUSE unavailable in CI: %v", err)
		}
		t.Skipf("FUSE unavailable here (%v); set CI=true to make this a failure", err)
	}
	t.Cleanup(func() {
		if err := f.Close(); err != nil {
			t.Error(err)
		}
	})
	return f
}

// serveEnv names the directory a child serves; serveConfigEnv its Config.
const (
	serveEnv       = "FAULTFS_SERVE"
	serveConfigEnv = "FAULTFS_CONFIG"
)

// Mount mounts a faultfs at dir/mnt-0, backed by dir/disk-0, both created
// (dir must exist). What dir/disk-0 already holds is durable.
func Mount(dir string, cfg Config) (*FS, error) {
	c, err := json.Marshal(cfg)
	if err != nil {
		return nil, err
	}
	cmd := exec.Command(os.Args[0])
	cmd.Env = append(os.Environ(), serveEnv+"="+dir, serveConfigEnv+"="+string(c))
	cmd.Stderr = os.Stderr
	stdin, err := cmd.StdinPipe()
	if err != nil {
		return nil, err
	}
	stdout, err := cmd.StdoutPipe()
	if err != nil {
		return nil, err
	}
	if err := cmd.Start(); err != nil {
		return nil, fmt.Errorf("faultfs: start the server: %w", err)
	}
	f := &FS{cmd: cmd, req: json.NewEncoder(stdin), resp: json.NewDecoder(bufio.NewReader(stdout)), stdin: stdin}
	// The server's first message says whether it mounted.
	rep, err := f.call(request{})
	if err != nil {
		stdin.Close()
		cmd.Wait()
		return nil, err
	}
	f.mnt = rep.Dir
	return f, nil
}

// request and reply are the pipe protocol: one JSON request, one reply.
type request struct {
	Op     string  // "cut", "inject", "clear", "budget", "stats", "close"; "" is the mount's own reply
	Fault  Fault   `json:",omitempty"`
	Budget int64   `json:",omitempty"`
	Keep   float64 `json:",omitempty"` // cut: the probability an unsynced page survives
	Seed   uint64  `json:",omitempty"`
}

type reply struct {
	Err   string
	Dir   string // the mount point, after Mount and Cut
	Cut   CutReport
	Stats Stats
}

func (f *FS) call(r request) (reply, error) {
	f.mu.Lock()
	defer f.mu.Unlock()
	if f.closed {
		return reply{}, errors.New("faultfs: closed")
	}
	if r.Op != "" {
		if err := f.req.Encode(r); err != nil {
			return reply{}, fmt.Errorf("faultfs: %s: %w", r.Op, err)
		}
	}
	var rep reply
	if err := f.resp.Decode(&rep); err != nil {
		return reply{}, fmt.Errorf("faultfs: %s: the server is gone: %w", r.Op, err)
	}
	if rep.Err != "" {
		return rep, errors.New(rep.Err)
	}
	return rep, nil
}

// Dir is the mount point: dir/mnt-N after N cuts.
func (f *FS) Dir() string {
	f.mu.Lock()
	defer f.mu.Unlock()
	return f.mnt
}

// Path is name under the mount point.
func (f *FS) Path(name string) string { return filepath.Join(f.Dir(), name) }

// SyncDir fsyncs the directory name under the mount point ("" for the mount
// point itself): what makes the names in it durable.
func (f *FS) SyncDir(name string) error {
	d, err := os.Open(f.Path(name))
	if err != nil {
		return err
	}
	defer d.Close()
	return d.Sync()
}

// Cut is a power cut: from the moment it begins, every request to the mount
// fails with EIO, and what was durable (see the package comment) is mounted
// at a new mount point, Dir from then on. The old mount stays at its path,
// dead, until Close: files open there, and paths into it that the code
// under test still holds, fail with EIO (a real power cut would have
// stopped that code) instead of reaching the new mount. Cut returns once
// the new mount is up.
func (f *FS) Cut() (CutReport, error) { return f.CutKeeping(0, 0) }

// CutKeeping is a power cut after which each unsynced 4 KiB page of file
// data, within the size its file's last sync made durable, survives with
// probability keep, drawn from seed: a disk that had written some of what
// was not yet synced back, in no particular order. A write across pages can
// so survive in part, and a later write without an earlier one; names
// follow their directories' fsyncs as in Cut.
func (f *FS) CutKeeping(keep float64, seed uint64) (CutReport, error) {
	rep, err := f.call(request{Op: "cut", Keep: keep, Seed: seed})
	if rep.Dir != "" {
		f.mu.Lock()
		f.mnt = rep.Dir
		f.mu.Unlock()
	}
	return rep.Cut, err
}

// Inject adds a fault. Faults are checked in the order they were added; the
// first that fails a request ends the check.
func (f *FS) Inject(ft Fault) error {
	_, err := f.call(request{Op: "inject", Fault: ft})
	return err
}

// ClearFaults removes every fault and the space budget: the disk works
// again.
func (f *FS) ClearFaults() error {
	_, err := f.call(request{Op: "clear"})
	return err
}

// SetSpaceBudget lets writes and fallocates use n more bytes in all (every
// byte written counts, overwrites too); past it they fail with ENOSPC. A
// negative n removes the limit.
func (f *FS) SetSpaceBudget(n int64) error {
	_, err := f.call(request{Op: "budget", Budget: n})
	return err
}

// Stats returns the FS's counters.
func (f *FS) Stats() (Stats, error) {
	rep, err := f.call(request{Op: "stats"})
	return rep.Stats, err
}

// Close unmounts the file system and stops the server. It waits for mounts
// retired by Cut until their files are closed, and reports the ones it had
// to abort after a while: a test left files open.
func (f *FS) Close() error {
	_, err := f.call(request{Op: "close"})
	f.mu.Lock()
	defer f.mu.Unlock()
	if f.closed {
		return nil
	}
	f.closed = true
	f.stdin.Close()
	if werr := f.cmd.Wait(); werr != nil && err == nil {
		err = fmt.Errorf("faultfs: server: %w", werr)
	}
	return err
}
