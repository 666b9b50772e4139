package wal

import (
	"context"
	"errors"
	"fmt"
	"math/rand/v2"
	"os"
	"path/filepath"
	"strconv"
	"strings"
	"sync"
	"syscall"
	"testing"
	"time"

	"golang.org/x/sys/unix"

	"github.com/ringwake/ringwake/internal/faultfs"
	"github.com/ringwake/ringwake/internal/uringtest"
)

// The power-loss tests run the log on internal/faultfs, a FUSE file system
// whose Cut drops everything no fdatasync (for a file's data) or directory
// fsync (for its names) made durable: what TestCrash's SIGKILL, which keeps
// the page cache, cannot catch. The FUSE mount takes O_DIRECT, so rounds
// alternate O_DIRECT and buffered writes as TestCrash does.

// powerLossRounds is how many seeded power cuts TestPowerLoss makes.
const powerLossRounds = 32

// powerLossSeed is the base seed: WAL_POWERLOSS_SEED, or the clock.
func powerLossSeed(t *testing.T) uint64 {
	base := uint64(time.Now().UnixNano())
	if s := os.Getenv("WAL_POWERLOSS_SEED"); s != "" {
		var err error
		if base, err = strconv.ParseUint(s, 10, 64); err != nil {
			t.Fatalf("WAL_POWERLOSS_SEED: %v", err)
		}
	}
	t.Logf("base seed %d (WAL_POWERLOSS_SEED reproduces the run)", base)
	return base
}

// newFaultLog mounts a faultfs and makes the log's directory on it durable
// (the log fsyncs its own directory, not the one above). The log is at
// ffs.Path("log"): after a cut, under the new mount point.
func newFaultLog(t *testing.T, cfg faultfs.Config) (*faultfs.FS, string) {
	t.Helper()
	uringtest.Require(t)
	ffs := faultfs.New(t, cfg)
	dir := ffs.Path("log")
	if err := os.Mkdir(dir, 0o755); err != nil {
		t.Fatal(err)
	}
	if err := ffs.SyncDir(""); err != nil {
		t.Fatal(err)
	}
	return ffs, dir
}

// powerLedger is what the writers were told, all rounds.
type powerLedger struct {
	mu      sync.Mutex
	acked   map[uint64]crashID // acknowledged LSN -> record
	from    uint64             // highest truncation point a TruncateFront began with
	claimed uint64             // highest DurableLSN a Log reported
	dupe    error              // an LSN acknowledged twice
}

func (p *powerLedger) ack(lsn uint64, id crashID) {
	p.mu.Lock()
	defer p.mu.Unlock()
	if prev, ok := p.acked[lsn]; ok && p.dupe == nil {
		p.dupe = fmt.Errorf("LSN %d acknowledged twice: %+v and %+v", lsn, prev, id)
	}
	p.acked[lsn] = id
}

// checkPowerLoss is the durability check, run on the log reopened after a
// cut: LSNs without a gap from one at or below the truncation point, every
// record exactly one that was appended and none twice, every acknowledged
// record from the truncation point on present at its LSN, no LSN
// acknowledged twice, everything up to the highest DurableLSN a Log claimed
// still there, and DurableLSN where Replay ends. It returns the LSNs the log
// holds and how many records it checked, or the first violation.
func checkPowerLoss(l *Log, p *powerLedger) (first, last uint64, checked int, err error) {
	p.mu.Lock()
	defer p.mu.Unlock()
	if p.dupe != nil {
		return 0, 0, 0, p.dupe
	}
	first, last, checked, err = replayCrashLog(l, p.acked, p.from)
	if err != nil {
		return first, last, checked, err
	}
	if p.claimed > last {
		return first, last, checked, fmt.Errorf("a Log reported LSN %d durable; the log ends at %d", p.claimed, last)
	}
	return first, last, checked, nil
}

func minOf(s []uint64) uint64 {
	m := s[0]
	for _, x := range s[1:] {
		m = min(m, x)
	}
	return m
}

// TestPowerLoss runs 64 appenders on faultfs (in half the rounds with
// TestCrash's checkpointer, truncating every 2 ms) and cuts the power at a
// seeded moment, powerLossRounds times on the same log, alternating O_DIRECT
// and buffered writes; a third of the cuts keep a random half of the
// unsynced pages (CutKeeping), the others none. After each cut the log must reopen, pass checkPowerLoss against
// every acknowledgement of every round, and keep appending.
func TestPowerLoss(t *testing.T) {
	ffs, _ := newFaultLog(t, faultfs.Config{})
	base := powerLossSeed(t)
	p := &powerLedger{acked: map[uint64]crashID{}}
	var acks, checked int
	for round := range powerLossRounds {
		seed := base + uint64(round)
		direct := round%2 == 0
		// Half the rounds truncate: each TruncateFront fsyncs the
		// directory, which would also cover a segment created without.
		truncate := round%4 < 2
		// A third of the cuts keep half the unsynced pages, in no order.
		keep := 0.0
		if round%3 == 2 {
			keep = 0.5
		}
		n, rep := powerLossRound(t, ffs, seed, direct, truncate, keep, p)
		acks += n

		l := openT(t, ffs.Path("log"), crashOptions(direct))
		first, last, c, err := checkPowerLoss(l, p)
		if err != nil {
			l.Close()
			t.Fatalf("round %d (seed %d, direct %v), after the cut: %v", round, seed, direct, err)
		}
		checked += c
		for i := range 5 {
			lsn, err := l.Append(context.Background(), crashRecord(seed, crashWriters, i))
			if err != nil || lsn != last+1+uint64(i) {
				l.Close()
				t.Fatalf("round %d: Append after reopen: LSN %d, %v; want %d", round, lsn, err, last+1+uint64(i))
			}
			p.ack(lsn, crashID{seed, crashWriters, i})
		}
		if err := l.Close(); err != nil {
			t.Fatal(err)
		}
		p.claimed = max(p.claimed, l.DurableLSN())
		t.Logf("round %d (seed %d, direct %v, truncating %v): %d acknowledged before the cut, which dropped %d bytes and %d names and kept %d unsynced bytes; log holds LSNs %d..%d, truncated at %d",
			round, seed, direct, truncate, n, rep.DroppedBytes, rep.LostNames, rep.KeptBytes, first, last, p.from)
	}
	st, err := ffs.Stats()
	if err != nil {
		t.Fatal(err)
	}
	t.Logf("%d rounds: %d cuts dropped %d unsynced bytes and %d names (%d revived) and kept %d unsynced bytes; %d appends acknowledged, %d records checked after reopens; %d writes, %d fdatasyncs, %d fsyncs, %d directory fsyncs served",
		powerLossRounds, st.Cuts, st.DroppedBytes, st.LostNames, st.RevivedNames, st.KeptBytes, acks, checked, st.Writes, st.Fdatasyncs, st.Fsyncs, st.DirSyncs)
	if st.Cuts != powerLossRounds || st.DroppedBytes == 0 {
		t.Fatalf("%d cuts dropping %d bytes: the cuts did not cut", st.Cuts, st.DroppedBytes)
	}
}

// powerLossRound runs the workload on the log on ffs until a power cut at
// a moment chosen by seed, then closes the Log (which fails: its mount is
// gone). It returns how many appends were acknowledged and the cut's report.
func powerLossRound(t *testing.T, ffs *faultfs.FS, seed uint64, direct, truncate bool, keep float64, p *powerLedger) (int, faultfs.CutReport) {
	t.Helper()
	l := openT(t, ffs.Path("log"), crashOptions(direct))
	if l.Direct() != direct {
		l.Close()
		t.Fatalf("Direct() = %v on the FUSE mount; want %v", l.Direct(), direct)
	}
	rng := rand.New(rand.NewPCG(seed, 0))
	cutAt := 1 + rng.IntN(2500)
	delay := time.Duration(rng.IntN(5000)) * time.Microsecond
	trigger := make(chan struct{})
	stop := make(chan struct{})
	var n int
	var cmu sync.Mutex
	type cutResult struct {
		rep faultfs.CutReport
		err error
	}
	cutc := make(chan cutResult, 1)
	workDone := make(chan struct{})
	go func() {
		defer close(stop)
		select {
		case <-trigger:
		case <-workDone:
			cutc <- cutResult{err: errors.New("the workload ended before the cut")}
			return
		}
		time.Sleep(delay)
		rep, err := ffs.CutKeeping(keep, seed)
		cutc <- cutResult{rep, err}
	}()
	ack := func(lsn uint64, g, i int) {
		p.ack(lsn, crashID{seed, g, i})
		cmu.Lock()
		n++
		if n == cutAt {
			close(trigger)
		}
		cmu.Unlock()
	}
	var werr error
	if truncate {
		werr = crashWorkload(l, seed, stop, ack, func(lsn uint64, done bool) {
			if !done {
				p.mu.Lock()
				p.from = max(p.from, lsn)
				p.mu.Unlock()
			}
		})
	} else {
		werr = appendWorkload(l, seed, stop, ack)
	}
	close(workDone)
	cr := <-cutc
	<-stop
	cerr := l.Close()
	p.claimed = max(p.claimed, l.DurableLSN())
	if cr.err != nil {
		t.Fatalf("seed %d: cut: %v (workload: %v)", seed, cr.err, werr)
	}
	// The first error the writers saw: the mount died under them.
	if werr != nil && !errors.Is(werr, syscall.EIO) {
		t.Fatalf("seed %d: an append failed with %v; want EIO from the cut", seed, werr)
	}
	// A failed append fails the Log, so Close reports it. A workload that
	// stopped on a failed TruncateFront (the checkpointer met the dead
	// mount first, and the writers stopped before an append failed) leaves
	// nothing for Close to report: the Log's own I/O did not fail.
	if cerr == nil && werr != nil && !errors.Is(werr, errTruncateFront) {
		t.Fatalf("seed %d: Close returned nil after a failed append (%v)", seed, werr)
	}
	return n, cr.rep
}

// appendWorkload is crashWorkload without the checkpointer: crashWriters
// appenders until stop closes or an Append fails, the first failure
// returned.
func appendWorkload(l *Log, seed uint64, stop <-chan struct{}, ack func(lsn uint64, g, n int)) error {
	var first error
	var once sync.Once
	var wg sync.WaitGroup
	for g := range crashWriters {
		wg.Go(func() {
			for i := 0; !closed(stop); i++ {
				lsn, err := l.Append(context.Background(), crashRecord(seed, g, i))
				if err != nil {
					once.Do(func() { first = err })
					return
				}
				ack(lsn, g, i)
			}
		})
	}
	wg.Wait()
	return first
}

func closed(c <-chan struct{}) bool {
	select {
	case <-c:
		return true
	default:
		return false
	}
}

// TestPowerLossControls are the negative controls: two log writers, each
// wrong in one way, write records in the log's format to faultfs and are
// cut at a seeded moment; the same reopen and checkPowerLoss TestPowerLoss
// uses must report acknowledged records lost. Were the file system to keep
// what was not synced, or the check to miss a loss, these would fail.
func TestPowerLossControls(t *testing.T) {
	base := powerLossSeed(t)
	for _, tc := range []struct {
		name                  string
		ackEarly, skipDirSync bool
	}{
		// Acknowledges each record before its fdatasync.
		{name: "ack-before-fdatasync", ackEarly: true},
		// Fsyncs each new segment, never the directory after creating it.
		{name: "no-directory-fsync", skipDirSync: true},
	} {
		t.Run(tc.name, func(t *testing.T) {
			for round := range 3 {
				seed := base + uint64(round)
				ffs, dir := newFaultLog(t, faultfs.Config{})
				c := &ctlLog{ackEarly: tc.ackEarly, skipDirSync: tc.skipDirSync, dir: dir, segSize: minSegmentSize,
					syncDir: func() error { return ffs.SyncDir("log") }}
				rng := rand.New(rand.NewPCG(seed, 0))
				// Cut after a seeded number of acknowledgements, at least
				// one segment in: the roll is what the second control gets
				// wrong.
				c.cutAt = 60 + rng.IntN(200)
				c.cut = func() {
					if _, err := ffs.Cut(); err != nil {
						t.Error(err)
					}
				}
				p := &powerLedger{acked: map[uint64]crashID{}}
				c.run(t, seed, p)

				l := openT(t, ffs.Path("log"), crashOptions(false))
				_, last, _, err := checkPowerLoss(l, p)
				l.Close()
				if err == nil || !strings.Contains(err.Error(), "acknowledged records lost") {
					t.Fatalf("seed %d: the check passed a log that lost acknowledged records (cut after %d acknowledgements, the log ends at %d): %v", seed, c.cutAt, last, err)
				}
				t.Logf("seed %d: cut after %d acknowledgements; the check caught it: %v", seed, c.cutAt, err)
			}
		})
	}
}

// ctlLog is a minimal log writer for the negative controls: appenders
// frame records as the log does (segment headers, LSN-seeded checksums,
// end-of-segment records) into segments of segSize, one append at a time.
type ctlLog struct {
	ackEarly    bool // acknowledge before the fdatasync
	skipDirSync bool // after a roll, never fsync the directory

	dir     string
	segSize int64
	cutAt   int          // the acknowledgement after which cut is called
	cut     func()       // the power cut
	syncDir func() error // fsyncs dir

	mu   sync.Mutex
	f    *os.File
	idx  uint64
	off  int64
	lsn  uint64
	acks int
	buf  []byte
}

// run appends from 8 goroutines until the cut stops them.
func (c *ctlLog) run(t *testing.T, seed uint64, p *powerLedger) {
	t.Helper()
	if err := c.create(1, 1, true); err != nil {
		t.Fatal(err)
	}
	var wg sync.WaitGroup
	for g := range 8 {
		wg.Add(1)
		go func() {
			defer wg.Done()
			for i := 0; ; i++ {
				if err := c.append(crashRecord(seed, g, i), func(lsn uint64) { p.ack(lsn, crashID{seed, g, i}) }); err != nil {
					return
				}
			}
		}()
	}
	wg.Wait()
	c.f.Close()
	if c.acks < c.cutAt {
		t.Fatalf("the control stopped after %d acknowledgements, before its cut at %d", c.acks, c.cutAt)
	}
}

// create makes segment idx, starting at LSN first, zero-filled and synced,
// its header written; dirSync says whether the directory is fsynced after.
func (c *ctlLog) create(idx, first uint64, dirSync bool) error {
	f, err := os.OpenFile(filepath.Join(c.dir, segName(idx)), os.O_RDWR|os.O_CREATE|os.O_TRUNC, 0o644)
	if err != nil {
		return err
	}
	hdr := make([]byte, c.segSize)
	segHeader{idx: idx, firstLSN: first, size: c.segSize}.encode(hdr)
	if _, err := f.WriteAt(hdr, 0); err == nil {
		err = f.Sync()
	}
	if err == nil && dirSync {
		err = c.syncDir()
	}
	if err != nil {
		f.Close()
		return err
	}
	c.f, c.idx, c.off = f, idx, blockSize
	return nil
}

func (c *ctlLog) append(rec []byte, ack func(uint64)) error {
	c.mu.Lock()
	defer c.mu.Unlock()
	if c.acks >= c.cutAt {
		return errors.New("cut")
	}
	lsn := c.lsn + 1
	if c.off+2*recHdrSize+int64(len(rec)) > c.segSize {
		// Roll: the end-of-segment record, synced, then the next segment.
		end := make([]byte, recHdrSize)
		putRecord(end, lsn, recEnd, nil)
		if _, err := c.f.WriteAt(end, c.off); err != nil {
			return err
		}
		if err := unix.Fdatasync(int(c.f.Fd())); err != nil {
			return err
		}
		c.f.Close()
		if err := c.create(c.idx+1, lsn, !c.skipDirSync); err != nil {
			return err
		}
	}
	c.buf = c.buf[:0]
	c.buf = append(c.buf, make([]byte, recHdrSize+len(rec))...)
	n := putRecord(c.buf, lsn, recData, rec)
	if _, err := c.f.WriteAt(c.buf[:n], c.off); err != nil {
		return err
	}
	c.off += int64(n)
	c.lsn = lsn
	if c.ackEarly {
		c.acked(lsn, ack)
	}
	if err := unix.Fdatasync(int(c.f.Fd())); err != nil {
		return err
	}
	if !c.ackEarly {
		c.acked(lsn, ack)
	}
	return nil
}

// acked acknowledges lsn and cuts the power if it is time.
func (c *ctlLog) acked(lsn uint64, ack func(uint64)) {
	ack(lsn)
	c.acks++
	if c.acks == c.cutAt {
		c.cut()
	}
}
