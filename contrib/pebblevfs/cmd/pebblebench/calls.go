package main

import (
	"fmt"
	"path/filepath"
	"sync/atomic"
	"time"

	"github.com/cockroachdb/pebble/v2/vfs"
)

// callStat counts calls of one kind, their time and their bytes.
type callStat struct{ n, ns, bytes atomic.Int64 }

func (s *callStat) add(t0 time.Time, bytes int) {
	s.n.Add(1)
	s.ns.Add(int64(time.Since(t0)))
	s.bytes.Add(int64(bytes))
}

func (s *callStat) String() string {
	n := max(s.n.Load(), 1)
	return fmt.Sprintf("%d × %.1f µs", s.n.Load(), float64(s.ns.Load())/float64(n)/1e3)
}

// callStats is what -calls prints after a write phase: the WAL's writes
// and syncs, and those of every other file (tables, MANIFEST), so that the
// file systems can be compared call by call.
type callStats struct{ walWrite, walSync, write, sync callStat }

func (c *callStats) String() string {
	return fmt.Sprintf("  calls: WAL writes %v (%d B on average), WAL syncs %v; other writes %v, other syncs %v",
		&c.walWrite, c.walWrite.bytes.Load()/max(c.walWrite.n.Load(), 1), &c.walSync, &c.write, &c.sync)
}

// countingFS times the Write, Sync and SyncData calls of the files it
// creates or opens for writing.
type countingFS struct {
	vfs.FS
	st *callStats
}

func (fs countingFS) wrap(name string, f vfs.File, err error) (vfs.File, error) {
	if err != nil {
		return nil, err
	}
	if filepath.Ext(name) == ".log" {
		return countingFile{f, &fs.st.walWrite, &fs.st.walSync}, nil
	}
	return countingFile{f, &fs.st.write, &fs.st.sync}, nil
}

func (fs countingFS) Create(name string, c vfs.DiskWriteCategory) (vfs.File, error) {
	f, err := fs.FS.Create(name, c)
	return fs.wrap(name, f, err)
}

func (fs countingFS) OpenReadWrite(name string, c vfs.DiskWriteCategory, opts ...vfs.OpenOption) (vfs.File, error) {
	f, err := fs.FS.OpenReadWrite(name, c, opts...)
	return fs.wrap(name, f, err)
}

func (fs countingFS) ReuseForWrite(oldname, newname string, c vfs.DiskWriteCategory) (vfs.File, error) {
	f, err := fs.FS.ReuseForWrite(oldname, newname, c)
	return fs.wrap(newname, f, err)
}

type countingFile struct {
	vfs.File
	write, sync *callStat
}

func (f countingFile) Write(p []byte) (int, error) {
	defer f.write.add(time.Now(), len(p))
	return f.File.Write(p)
}

func (f countingFile) Sync() error {
	defer f.sync.add(time.Now(), 0)
	return f.File.Sync()
}

func (f countingFile) SyncData() error {
	defer f.sync.add(time.Now(), 0)
	return f.File.SyncData()
}
