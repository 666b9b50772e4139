// Package wal is a group-commit write-ahead log on ringwake: Append returns
// once an fdatasync covered the record, concurrent Appends share one write and
// one fdatasync, and a failed write or fdatasync is sticky.
//
// The commit path is the wait-queue design end to end. Appenders copy their
// framed record into the current batch buffer and get an LSN. Whoever finds
// the pipeline idle (an appender, or a completion on the ring's poller)
// starts the next step: the batch's write linked (IOLink) to an fdatasync in
// one submission, or, while an fdatasync is in flight, the write alone so that
// the next fdatasync only has to flush. An appender whose ctx cannot end
// makes the write and fdatasync of a commit it starts itself, on its own
// thread (inline.go): through the ring an fdatasync runs on an io-wq worker. One fdatasync is in flight at a time;
// its completion wakes every appender it covered with one broadcast on the
// commit queue (key: the durable LSN), where appenders wait in generations
// (durable.go), after which the pipeline waits briefly
// for the appenders it woke to append again (settle.go). Appenders that find
// no buffer space sleep exclusively and are woken one per freed buffer.
//
// docs/wal.md describes the on-disk format, the protocol and the crash test.
package wal

import (
	"errors"
	"fmt"
	"os"
	"path/filepath"
	"sync"
	"sync/atomic"
	"syscall"
	"time"

	"golang.org/x/sys/unix"

	ringwake "github.com/ringwake/ringwake/runtime"
	"github.com/ringwake/ringwake/waitqueue"
)

var (
	// ErrClosed is returned by calls on a closed Log, and by Appends that
	// were still waiting for buffer space when Close began.
	ErrClosed = errors.New("wal: log closed")
	// ErrTooLarge is returned (wrapped) for a record longer than
	// MaxRecordSize.
	ErrTooLarge = errors.New("wal: record too large")
	// ErrCorrupt is returned (wrapped) by Replay when a record the log had
	// made durable no longer verifies: the storage changed under the log.
	ErrCorrupt = errors.New("wal: durable record corrupt")
	// ErrLocked is returned (wrapped) by Open when another Log, in this
	// process or another, has the directory open.
	ErrLocked = errors.New("wal: directory in use")
)

// DirectMode selects O_DIRECT for segment files.
type DirectMode int

const (
	// DirectAuto uses O_DIRECT where the file system accepts it (found by
	// trying), buffered writes otherwise.
	DirectAuto DirectMode = iota
	// DirectOff always uses buffered writes.
	DirectOff
	// DirectOn requires O_DIRECT: Open fails where the file system refuses it.
	DirectOn
)

// Defaults for zero Options fields.
const (
	DefaultSegmentSize = 64 << 20
	DefaultBufferSize  = 1 << 20
	DefaultBuffers     = 4
	// DefaultMaxSpareSegments is how many segments TruncateFront keeps for
	// reuse when Options.MaxSpareSegments is 0: with the log's next segment
	// that is enough for a checkpointer that truncates once per segment or
	// less often to never create (and zero-fill) a segment again.
	DefaultMaxSpareSegments = 2

	minSegmentSize = 4 * blockSize
	maxSegmentSize = 1 << 40
	maxBufferSize  = 256 << 20
	maxBuffers     = 64
)

// Options configures a Log. The zero value is ready to use.
type Options struct {
	// SegmentSize is the capacity of a segment file, which is preallocated
	// with fallocate; the log rolls to a new segment when the next record
	// does not fit. A multiple of 4096, at least 16 KiB; 0 means 64 MiB.
	SegmentSize int64
	// BufferSize is how many bytes of framed records one batch buffer holds,
	// rounded up to a multiple of 4096 (at least 4096); 0 means 1 MiB. It
	// bounds the record size (see MaxRecordSize).
	BufferSize int
	// Buffers is the number of batch buffers (2 to 64); 0 means 4. Appends
	// sleep for space when all are full or waiting for their write.
	Buffers int
	// Direct selects O_DIRECT; the default tries it and falls back.
	Direct DirectMode
	// SkipZeroFill leaves new segments as fallocate made them. By default
	// the next segment is overwritten with zeros while the current one
	// fills, a slice with each commit, so that appends overwrite allocated,
	// written blocks: an fdatasync is then a device cache flush, not also a
	// journal commit of the unwritten-extent conversion (ext4, xfs), which
	// roughly halves its latency under O_DIRECT. It costs writing each
	// segment twice.
	SkipZeroFill bool
	// MaxSpareSegments bounds how many segments TruncateFront keeps as
	// spares, renamed to future segment indices, instead of deleting them:
	// a spare's blocks are already written, so when the log needs a new
	// segment it takes a spare and skips the fallocate and the zero-fill.
	// Spares keep their disk space. 0 means DefaultMaxSpareSegments; a
	// negative value keeps none (truncated segments are deleted).
	MaxSpareSegments int

	// noOverlap keeps a batch's write from going down while an fdatasync is
	// in flight, so every write is linked to its own fdatasync (benchmarks
	// compare both).
	noOverlap bool
	// noSettle turns the commit delay off (settle.go).
	noSettle bool
	// noInline keeps every commit on the ring: appenders never make the
	// write and fdatasync themselves (inline.go; benchmarks compare both).
	noInline bool
	// noZeroSlices keeps the next segment's zero-fill off the commit path
	// (benchmarks measure what the slices cost).
	noZeroSlices bool
}

func (o Options) normalize() (Options, error) {
	if o.SegmentSize == 0 {
		o.SegmentSize = DefaultSegmentSize
	}
	if o.BufferSize == 0 {
		o.BufferSize = DefaultBufferSize
	}
	if o.Buffers == 0 {
		o.Buffers = DefaultBuffers
	}
	if o.MaxSpareSegments == 0 {
		o.MaxSpareSegments = DefaultMaxSpareSegments
	}
	switch {
	case o.SegmentSize < minSegmentSize || o.SegmentSize > maxSegmentSize || o.SegmentSize%blockSize != 0:
		return o, fmt.Errorf("wal: Options.SegmentSize %d: want a multiple of %d between %d and %d", o.SegmentSize, blockSize, minSegmentSize, int64(maxSegmentSize))
	case o.BufferSize < blockSize || o.BufferSize > maxBufferSize:
		return o, fmt.Errorf("wal: Options.BufferSize %d: want %d to %d", o.BufferSize, blockSize, maxBufferSize)
	case o.Buffers < 2 || o.Buffers > maxBuffers:
		return o, fmt.Errorf("wal: Options.Buffers %d: want 2 to %d", o.Buffers, maxBuffers)
	case o.Direct < DirectAuto || o.Direct > DirectOn:
		return o, fmt.Errorf("wal: Options.Direct %d: unknown mode", o.Direct)
	}
	o.BufferSize = int(alignUp(int64(o.BufferSize)))
	return o, nil
}

// Log is an open write-ahead log. Its methods are safe for concurrent use.
type Log struct {
	dir    string
	opts   Options
	direct bool
	maxRec int
	ring   *ringwake.Ring
	dirf   *os.File // fsynced after segment files are created or removed
	lockf  *os.File // holds the directory's flock

	mu            sync.Mutex
	err           error // sticky: the first write, fdatasync or segment failure
	failWake      bool  // err was just set: finishLocked wakes everyone
	closing       bool
	nextLSN       uint64
	starts        []uint64   // first LSN of each segment in the log, oldest (where Replay begins) to cur
	spares        []*spare   // files renamed to future indices, ascending, none taken yet
	cond          sync.Cond  // on mu: a rolled segment's file closed, the log failed, a Replay or a TruncateFront step ended
	replays       int        // Replays in progress: TruncateFront moves no file meanwhile
	truncating    bool       // TruncateFront waits to move, or moves, the first segment
	cur           *segment   // the segment the fill buffer belongs to
	next          *segment   // its successor, prepared ahead
	rolled        []*segment // earlier segments whose files are still open
	fill          *batch     // the buffer accepting records; nil when all are busy
	queue         []*batch   // buffers holding unwritten data, in log order (fill last)
	free          []*batch
	tail          tailInit // how the next buffer to become fill starts
	writing       *batch   // the buffer whose write is in flight
	w             writeOp
	syncing       bool // an fdatasync is in flight
	s             syncOp
	unsynced      []segCover // written data no fdatasync covers yet, oldest first
	shortWrites   int        // short writes in a row
	kernelCancels int        // writes and fdatasyncs in a row the kernel canceled
	bypassRing    bool       // commits are made directly: the kernel kept canceling them (complete.go)
	zeroDue       float64    // zero-fill bytes owed to the next segment, not yet issued
	zeroSeg       *segment   // the segment a zero-fill slice is in flight to
	zeroRes       int32      // buffered mode: the slice\'s write result
	drainCh       chan struct{}
	hold          bool // tests: start no I/O

	// The commit delay (settle.go).
	settling       bool
	settleEpoch    uint64
	settleSeen     int // records appended since the settle began
	settleTarget   int // appenders the fdatasync woke; 0 until known
	settleSkip     int // fdatasyncs still to complete without settling
	settleBackoff  int
	settleFor      time.Duration // tests: a fixed settle timeout
	settleDeadline time.Time     // when the settle's timeout is due
	sweep          *time.Timer   // ends settles nobody comes back for (settle.go)
	sweepArmed     bool          // sweep is pending, or fired and has not taken l.mu yet
	sweepWanted    bool          // a settle began since the sweep last fired
	sweepLook      uint64        // the epoch of the settle the sweep last found overdue
	syncStart      time.Time
	syncEWMA       time.Duration

	durable atomic.Uint64 // highest LSN an fdatasync covered
	failed  atomic.Bool   // err is set

	commitQ   waitqueue.Queue // generations of appenders waiting for durability (durable.go): one broadcast per fdatasync
	wakeMu    sync.Mutex      // one commit broadcast at a time: its walk fills wokenGens
	wokenGens []*commitGen    // the generations the broadcast's walk took off commitQ
	gen       *commitGen      // the open generation, joined by appenders until a write is prepared (l.mu)
	spaceQ    waitqueue.Queue // appenders waiting for buffer space: exclusive

	prepWG   sync.WaitGroup
	directWG sync.WaitGroup // commits made directly for a completion (bypassRing)
	replayWG sync.WaitGroup
	truncWG  sync.WaitGroup
	truncMu  sync.Mutex    // one TruncateFront at a time
	readSem  chan struct{} // bounds Replay's reads in flight (see Open)

	mem     []byte        // mmap'd batch buffers and scratch: never moved, never collected
	scratch []byte        // the partial last block of an O_DIRECT write
	iov     [2]unix.Iovec // the write in flight, for writev and pwritev2
	noDsync atomic.Bool   // the kernel refused pwritev2(RWF_DSYNC)
	// The ring commit in flight as one write with RWF_DSYNC (ringDsync):
	// the write and fdatasync it stands for, submitted instead should the
	// kernel refuse the flag. One write is in flight at a time; its
	// completion reads this before it can start the next.
	dsyncPlan plan

	onWrite, onSync, onZero, onZeroWrite, onDsync func(res int32, flags uint32)

	testFail atomic.Uint32

	stats struct {
		appends, writes, syncs, linked, inline, spaceWaits, rolls, wakeups, settleMisses, recycled, zeroSlices, retried atomic.Uint64
		// inline commits made as one pwritev2(RWF_DSYNC); broadcasts that
		// woke a generation (durable.go)
		dsync, collected atomic.Uint64
	}
}

// segment is one segment file.
type segment struct {
	idx      uint64
	size     int64
	firstLSN uint64
	f        *ringwake.File
	fd       int32
	ready    bool   // created, preallocated and durable in the directory
	err      error  // why preparing it failed
	zeroed   int64  // [0, zeroed) overwritten with zeros while it was the next segment
	zeroing  bool   // a zero-fill write to it is in flight
	zeroNow  bool   // needed at once: zero-filled whole before it is ready
	spare    *spare // the spare file it reuses, if any (truncate.go)
}

func (s *segment) name() string { return segName(s.idx) }

// firstIdxLocked is the oldest segment's index: starts has one entry per
// segment up to the current one.
func (l *Log) firstIdxLocked() uint64 { return l.cur.idx + 1 - uint64(len(l.starts)) }

// Stats are a Log's counters since Open.
type Stats struct {
	Appends     uint64 // records appended
	Writes      uint64 // write requests submitted
	Syncs       uint64 // fdatasync requests submitted
	LinkedSyncs uint64 // of Syncs, those linked to their write in one submission
	InlineSyncs uint64 // of Syncs, those made by direct system calls: by an appender on its own thread, or for a completion while the kernel cancels ring commits
	SpaceWaits  uint64 // Appends that slept for buffer space
	Rolls       uint64 // segments rolled over
	Wakeups     uint64 // appenders woken by fdatasync completions
	SettleMiss  uint64 // commit delays that timed out with most appenders not back
	Recycled    uint64 // segments prepared from a spare: no fallocate, no zero-fill
	Retried     uint64 // writes and fdatasyncs the kernel canceled before they ran, submitted again
	DurableLSN  uint64 // highest LSN known durable
}

// Stats returns the Log's counters.
func (l *Log) Stats() Stats {
	return Stats{
		Appends:     l.stats.appends.Load(),
		Writes:      l.stats.writes.Load(),
		Syncs:       l.stats.syncs.Load(),
		LinkedSyncs: l.stats.linked.Load(),
		InlineSyncs: l.stats.inline.Load(),
		SpaceWaits:  l.stats.spaceWaits.Load(),
		Rolls:       l.stats.rolls.Load(),
		Wakeups:     l.stats.wakeups.Load(),
		SettleMiss:  l.stats.settleMisses.Load(),
		Recycled:    l.stats.recycled.Load(),
		Retried:     l.stats.retried.Load(),
		DurableLSN:  l.durable.Load(),
	}
}

// DurableLSN is the highest LSN known durable: every record up to it
// survives a crash.
func (l *Log) DurableLSN() uint64 { return l.durable.Load() }

// Direct reports whether segment files are written with O_DIRECT.
func (l *Log) Direct() bool { return l.direct }

// MaxRecordSize is the longest record Append takes.
func (l *Log) MaxRecordSize() int { return l.maxRec }

// ringEntries sizes the Log's private ring. A Log keeps at most four
// pipeline requests (a write, its fdatasync, a zero-fill slice and its
// sync_file_range), a few per segment being prepared, a
// TruncateFront's directory fsync and maxReplayReads Replay opens and reads
// in flight: far below this, so a completion callback that submits the next
// step never finds the ring full.
const (
	ringEntries    = 64
	maxReplayReads = 16
)

// Open opens the log in dir, creating dir and the log if needed. It scans
// every segment, verifying each record's checksum; the log ends at the first
// torn or corrupt record, and Open cuts off everything after it (the rest of
// that segment is zeroed and later segments are removed, except spares
// TruncateFront left that were never written under their new name: those
// stay spares), so new records follow the last good one. The records found
// are durable when Open returns.
func Open(dir string, opts Options) (*Log, error) {
	o, err := opts.normalize()
	if err != nil {
		return nil, err
	}
	if dir == "" {
		return nil, errors.New("wal: Open: empty directory name")
	}
	if err := os.MkdirAll(dir, 0o755); err != nil {
		return nil, fmt.Errorf("wal: %w", err)
	}
	l := &Log{dir: dir, opts: o, readSem: make(chan struct{}, maxReplayReads)}
	l.cond.L = &l.mu
	l.maxRec = min(o.BufferSize, int(o.SegmentSize)-blockSize) - 2*recHdrSize
	l.maxRec = min(l.maxRec, maxRecLen)
	l.onWrite, l.onSync, l.onZero, l.onZeroWrite, l.onDsync = l.writeDone, l.syncDone, l.zeroDone, l.zeroWriteDone, l.dsyncDone
	ok := false
	defer func() {
		if !ok {
			l.release()
		}
	}()
	if l.lockf, err = lockDir(dir); err != nil {
		return nil, err
	}
	// SharedThread: a commit's completion runs on the poller and wakes every
	// appender it covered; a poller that yields runs them on its own P at
	// once, where a dedicated one leaves them to a P whose thread must first
	// be woken. With one write and one fdatasync per commit there is little
	// task work to keep on one thread. Measured (64 appenders, 8 interleaved
	// rounds): 131.6k vs 124.5k appends/s, p99 lower in 6 of 8 (docs/wal.md).
	if l.ring, err = ringwake.New(ringwake.Config{Entries: ringEntries, SharedThread: true}); err != nil {
		return nil, fmt.Errorf("wal: %w", err)
	}
	if l.dirf, err = os.Open(dir); err != nil {
		return nil, fmt.Errorf("wal: %w", err)
	}
	switch o.Direct {
	case DirectOff:
	default:
		l.direct, err = probeDirect(dir)
		if err != nil {
			return nil, err
		}
		if !l.direct && o.Direct == DirectOn {
			return nil, fmt.Errorf("wal: Options.Direct is DirectOn but the file system under %s refuses O_DIRECT: %w", dir, syscall.EINVAL)
		}
	}
	if err := l.recover(); err != nil {
		return nil, err
	}
	if err := l.allocBuffers(); err != nil {
		return nil, err
	}
	l.mu.Lock()
	l.installFillLocked()
	if !l.cur.ready {
		l.cur.zeroNow = true // the first records wait for it anyway
		l.startPrepLocked(l.cur)
	}
	l.prepNextLocked(false)
	l.mu.Unlock()
	ok = true
	return l, nil
}

func lockDir(dir string) (*os.File, error) {
	f, err := os.OpenFile(filepath.Join(dir, "LOCK"), os.O_RDWR|os.O_CREATE, 0o644)
	if err != nil {
		return nil, fmt.Errorf("wal: %w", err)
	}
	if err := unix.Flock(int(f.Fd()), unix.LOCK_EX|unix.LOCK_NB); err != nil {
		f.Close()
		if errors.Is(err, unix.EWOULDBLOCK) {
			return nil, fmt.Errorf("%w: %s: flock: %w", ErrLocked, dir, err)
		}
		return nil, fmt.Errorf("wal: flock %s: %w", dir, err)
	}
	return f, nil
}

// probeDirect reports whether the file system under dir takes O_DIRECT, by
// opening a file with it and reading through it: a read, so that a full file
// system can still be opened. It is a variable so tests can play a file
// system that refuses.
var probeDirect = func(dir string) (bool, error) {
	p := filepath.Join(dir, ".direct-probe")
	fd, err := unix.Open(p, unix.O_CREAT|unix.O_RDWR|unix.O_DIRECT|unix.O_CLOEXEC, 0o600)
	if errors.Is(err, unix.EINVAL) {
		return false, nil
	}
	if err != nil {
		return false, fmt.Errorf("wal: probe O_DIRECT: open %s: %w", p, err)
	}
	defer func() {
		unix.Close(fd)
		unix.Unlink(p)
	}()
	if _, err := unix.Pread(fd, alignedBuf(blockSize), 0); err != nil {
		if errors.Is(err, unix.EINVAL) {
			return false, nil
		}
		return false, fmt.Errorf("wal: probe O_DIRECT: read %s: %w", p, err)
	}
	return true, nil
}

func (l *Log) allocBuffers() error {
	bufLen := blockSize + l.opts.BufferSize
	mem, err := unix.Mmap(-1, 0, l.opts.Buffers*bufLen+blockSize, unix.PROT_READ|unix.PROT_WRITE, unix.MAP_PRIVATE|unix.MAP_ANONYMOUS)
	if err != nil {
		return fmt.Errorf("wal: mmap batch buffers: %w", err)
	}
	l.mem = mem
	for i := 0; i < l.opts.Buffers; i++ {
		b := &batch{buf: mem[i*bufLen : (i+1)*bufLen : (i+1)*bufLen]}
		l.free = append(l.free, b)
	}
	l.scratch = mem[len(mem)-blockSize:]
	return nil
}

// Close writes and syncs what was appended, waits until no request of the
// Log (nor a Replay or TruncateFront) is in flight and releases it: Appends still waiting for durability get
// their result, those waiting for buffer space get ErrClosed. It returns the
// Log's sticky error if it had one. Calls after the first return ErrClosed.
func (l *Log) Close() error {
	l.mu.Lock()
	if l.closing {
		l.mu.Unlock()
		return ErrClosed
	}
	l.closing = true
	l.settling, l.hold = false, false // flush now
	l.stopSweepLocked()
	drained := make(chan struct{})
	l.drainCh = drained
	// Space waiters find closing set and give up; what is queued goes down.
	l.finishLocked(wakes{spaceAll: true})
	<-drained
	l.directWG.Wait() // a direct commit's goroutine may still be returning
	l.replayWG.Wait()
	l.truncWG.Wait() // before prepWG: a prepare may wait for a spare TruncateFront is renaming
	l.prepWG.Wait()
	l.mu.Lock()
	err := l.err
	l.mu.Unlock()
	if cerr := l.release(); err == nil {
		err = cerr
	}
	return err
}

// release frees what Open acquired. Nothing of the Log may be in flight.
func (l *Log) release() error {
	var first error
	keep := func(err error) {
		if err != nil && first == nil {
			first = err
		}
	}
	segs := append(l.rolled, l.cur, l.next)
	for _, s := range segs {
		if s != nil && s.f != nil {
			keep(s.f.Close())
			s.f = nil
		}
	}
	if l.ring != nil {
		keep(l.ring.Close())
	}
	if l.mem != nil {
		keep(unix.Munmap(l.mem))
		l.mem = nil
	}
	if l.dirf != nil {
		keep(l.dirf.Close())
	}
	if l.lockf != nil {
		keep(l.lockf.Close()) // drops the flock
	}
	if first != nil {
		return fmt.Errorf("wal: close: %w", first)
	}
	return nil
}
