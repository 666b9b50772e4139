package wal

import (
	"bufio"
	"bytes"
	"context"
	"encoding/binary"
	"errors"
	"fmt"
	"hash/crc32"
	"io"
	"math/rand/v2"
	"os"
	"os/exec"
	"strconv"
	"strings"
	"sync"
	"syscall"
	"testing"
	"time"

	"github.com/ringwake/ringwake/internal/uringtest"
)

// The crash test runs this test binary again as a child (TestCrashChild with
// these variables set) that appends numbered records from crashWriters
// goroutines and prints "ACK <lsn> <writer> <n>" once each Append returned.
const (
	crashDirEnv    = "WAL_CRASH_DIR"
	crashSeedEnv   = "WAL_CRASH_SEED"
	crashDirectEnv = "WAL_CRASH_DIRECT"
	crashWriters   = 64
	crashRounds    = 10
)

// Small segments and buffers: a kill often lands near a roll or a seal.
func crashOptions(direct bool) Options {
	o := Options{SegmentSize: 128 << 10, BufferSize: 16 << 10, Buffers: 3, Direct: DirectOff}
	if direct {
		o.Direct = DirectAuto
	}
	return o
}

// crashRecord is record n of writer g in the round with seed: its length
// (16 to 1000 bytes) and content follow from the three, so any record read
// back can be checked for being exactly one the child appended.
func crashRecord(seed uint64, g, n int) []byte {
	r := rand.New(rand.NewPCG(seed, uint64(g)<<32|uint64(n)))
	rec := make([]byte, 16+r.IntN(985))
	binary.LittleEndian.PutUint64(rec[0:], seed)
	binary.LittleEndian.PutUint16(rec[8:], uint16(g))
	binary.LittleEndian.PutUint32(rec[10:], uint32(n))
	for i := 16; i < len(rec); i++ {
		rec[i] = byte(r.Uint32())
	}
	binary.LittleEndian.PutUint16(rec[14:], uint16(crc32.ChecksumIEEE(rec[16:])))
	return rec
}

type crashID struct {
	seed uint64
	g, n int
}

// parseCrashRecord returns who appended rec, or an error if rec is not
// exactly a crashRecord.
func parseCrashRecord(rec []byte) (crashID, error) {
	if len(rec) < 16 {
		return crashID{}, fmt.Errorf("%d-byte record", len(rec))
	}
	id := crashID{binary.LittleEndian.Uint64(rec[0:]), int(binary.LittleEndian.Uint16(rec[8:])), int(binary.LittleEndian.Uint32(rec[10:]))}
	if !bytes.Equal(rec, crashRecord(id.seed, id.g, id.n)) {
		return id, fmt.Errorf("record %+v is not what was appended", id)
	}
	return id, nil
}

// crashKeep is how many records below the durable LSN the workload's
// checkpointer keeps when it truncates (a few 128 KiB segments' worth).
const crashKeep = 300

// crashWorkload appends from crashWriters goroutines until stop closes or an
// Append fails, calling ack for each acknowledged record. A checkpointer
// goroutine meanwhile truncates the log every 2 ms to crashKeep records
// below the durable LSN, calling trunc before (done false) and after (done
// true) each TruncateFront.
// errTruncateFront marks a workload error that came from the checkpointer's
// TruncateFront rather than from an Append.
var errTruncateFront = errors.New("TruncateFront")

func crashWorkload(l *Log, seed uint64, stop <-chan struct{}, ack func(lsn uint64, g, n int), trunc func(lsn uint64, done bool)) error {
	var wg sync.WaitGroup
	errs := make(chan error, crashWriters+1)
	writing := make(chan struct{}) // closed once every writer returned
	ckpt := make(chan struct{})
	abort := make(chan struct{}) // a TruncateFront failed: the writers stop too
	go func() {
		defer close(ckpt)
		tick := time.NewTicker(2 * time.Millisecond)
		defer tick.Stop()
		for {
			select {
			case <-writing:
				return
			case <-tick.C:
			}
			d := l.DurableLSN()
			if d <= crashKeep {
				continue
			}
			trunc(d-crashKeep, false)
			if err := l.TruncateFront(d - crashKeep); err != nil {
				errs <- fmt.Errorf("%w (%d): %w", errTruncateFront, d-crashKeep, err)
				close(abort)
				return
			}
			trunc(d-crashKeep, true)
		}
	}()
	for g := range crashWriters {
		wg.Add(1)
		go func() {
			defer wg.Done()
			// Half the writers have a ctx that can end: their commits go
			// through the ring, the others' inline (inline.go).
			ctx := context.Background()
			if g%2 == 1 {
				c, cancel := context.WithCancel(ctx)
				defer cancel()
				ctx = c
			}
			for n := 0; ; n++ {
				select {
				case <-stop:
					return
				case <-abort:
					return
				default:
				}
				lsn, err := l.Append(ctx, crashRecord(seed, g, n))
				if err != nil {
					errs <- err
					return
				}
				ack(lsn, g, n)
			}
		}()
	}
	wg.Wait()
	close(writing)
	<-ckpt
	close(errs)
	return <-errs
}

// TestCrashChild is the child of TestCrash. Run on its own (no WAL_CRASH_DIR)
// it runs the same workload in-process without a crash and checks it.
func TestCrashChild(t *testing.T) {
	uringtest.Require(t)
	dir := os.Getenv(crashDirEnv)
	if dir == "" {
		l := openT(t, t.TempDir(), crashOptions(true))
		var mu sync.Mutex
		acked := map[uint64]crashID{}
		stop := make(chan struct{})
		var from uint64
		err := crashWorkload(l, 1, stop, func(lsn uint64, g, n int) {
			mu.Lock()
			defer mu.Unlock()
			acked[lsn] = crashID{1, g, n}
			if len(acked) == 2000 {
				close(stop)
			}
		}, func(lsn uint64, done bool) {
			mu.Lock()
			defer mu.Unlock()
			from = max(from, lsn)
		})
		if err != nil {
			t.Fatal(err)
		}
		verifyCrashLog(t, l, acked, from)
		l.Close()
		return
	}
	seed, err := strconv.ParseUint(os.Getenv(crashSeedEnv), 10, 64)
	if err != nil {
		t.Fatal(err)
	}
	l, err := Open(dir, crashOptions(os.Getenv(crashDirectEnv) == "1"))
	if err != nil {
		t.Fatal(err)
	}
	var mu sync.Mutex
	out := bufio.NewWriter(os.Stdout)
	// The parent kills the child; should the parent be gone, stop anyway.
	stop := make(chan struct{})
	time.AfterFunc(20*time.Second, func() { close(stop) })
	err = crashWorkload(l, seed, stop, func(lsn uint64, g, n int) {
		mu.Lock()
		defer mu.Unlock()
		fmt.Fprintf(out, "ACK %d %d %d\n", lsn, g, n)
		out.Flush() // an acknowledgement counts only once the parent can read it
	}, func(lsn uint64, done bool) {
		mu.Lock()
		defer mu.Unlock()
		// Before the call: from then on records below lsn may be gone.
		word := "TRUNC-START"
		if done {
			word = "TRUNC"
		}
		fmt.Fprintf(out, "%s %d\n", word, lsn)
		out.Flush()
	})
	if err != nil {
		t.Fatal(err)
	}
	l.Close()
}

// TestCrash kills a child appending from 64 goroutines (and truncating the
// log every 2 ms) at a random moment, ten times with different seeds,
// alternating O_DIRECT and buffered writes, on the same log. After each kill
// the log must reopen with every record any child acknowledged at or above
// the highest truncation point a child began present and intact, the LSNs
// contiguous from no later than that point, nothing that is not exactly an
// appended record, and accept new appends.
func TestCrash(t *testing.T) {
	uringtest.Require(t)
	dir := t.TempDir()
	base := uint64(time.Now().UnixNano())
	if s := os.Getenv("WAL_CRASH_BASE_SEED"); s != "" {
		base, _ = strconv.ParseUint(s, 10, 64)
	}
	t.Logf("base seed %d (WAL_CRASH_BASE_SEED reproduces the run)", base)
	acked := map[uint64]crashID{} // every acknowledgement, all rounds
	var tr crashTrunc
	spares := 0 // kept by recovery, all rounds
	for round := range crashRounds {
		seed := base + uint64(round)
		direct := round%2 == 0
		n := crashRound(t, dir, seed, direct, acked, &tr)

		l := openT(t, dir, crashOptions(direct))
		first, last := verifyCrashLog(t, l, acked, tr.started)
		kept := len(l.spareIdxs())
		spares += kept
		// The log goes on right after the last good record.
		for i := range 5 {
			lsn, err := l.Append(context.Background(), crashRecord(seed, crashWriters, i))
			if err != nil || lsn != last+1+uint64(i) {
				t.Fatalf("round %d: Append after reopen: LSN %d, %v; want %d", round, lsn, err, last+1+uint64(i))
			}
			acked[lsn] = crashID{seed, crashWriters, i}
		}
		if err := l.Close(); err != nil {
			t.Fatal(err)
		}
		t.Logf("round %d (seed %d, direct %v): %d acknowledged before the kill, log holds LSNs %d..%d, truncated at %d (acknowledged %d), %d spares kept", round, seed, direct, n, first, last, tr.started, tr.done, kept)
		if tr.done > 4*crashKeep && first <= 1 {
			t.Fatalf("round %d: truncated at %d, yet the log still starts at LSN %d", round, tr.done, first)
		}
	}
	if tr.done > 4*crashKeep && spares == 0 {
		t.Fatal("the log truncated, yet no recovery found a spare")
	}
}

// crashTrunc is the highest truncation point the children began and
// finished, all rounds.
type crashTrunc struct{ started, done uint64 }

// crashRound runs one child until it is killed and records what it
// acknowledged. It returns how many acknowledgements it read.
func crashRound(t *testing.T, dir string, seed uint64, direct bool, acked map[uint64]crashID, tr *crashTrunc) int {
	t.Helper()
	cmd := exec.Command(os.Args[0], "-test.run=^TestCrashChild$", "-test.count=1")
	d := "0"
	if direct {
		d = "1"
	}
	cmd.Env = append(os.Environ(), crashDirEnv+"="+dir, crashSeedEnv+"="+strconv.FormatUint(seed, 10), crashDirectEnv+"="+d)
	stdout, err := cmd.StdoutPipe()
	if err != nil {
		t.Fatal(err)
	}
	var stderr bytes.Buffer
	cmd.Stderr = &stderr
	if err := cmd.Start(); err != nil {
		t.Fatal(err)
	}
	rng := rand.New(rand.NewPCG(seed, 0))
	// Kill after a random number of acknowledgements, at a random moment
	// after that: anywhere from the first batches to a few rolls in.
	killAt := 1 + rng.IntN(3000)
	delay := time.Duration(rng.IntN(20_000)) * time.Microsecond
	var other []string
	n := 0
	killed := false
	sc := bufio.NewScanner(stdout)
	for sc.Scan() {
		line := sc.Text()
		f := strings.Fields(line)
		if len(f) == 2 && (f[0] == "TRUNC-START" || f[0] == "TRUNC") {
			lsn, err := strconv.ParseUint(f[1], 10, 64)
			if err != nil {
				t.Fatalf("bad line %q: %v", line, err)
			}
			if f[0] == "TRUNC" {
				tr.done = max(tr.done, lsn)
			} else {
				tr.started = max(tr.started, lsn)
			}
			continue
		}
		if len(f) != 4 || f[0] != "ACK" {
			other = append(other, line)
			continue
		}
		lsn, err1 := strconv.ParseUint(f[1], 10, 64)
		g, err2 := strconv.Atoi(f[2])
		i, err3 := strconv.Atoi(f[3])
		if err := errors.Join(err1, err2, err3); err != nil {
			t.Fatalf("bad line %q: %v", line, err)
		}
		if prev, dup := acked[lsn]; dup {
			t.Fatalf("LSN %d acknowledged twice: %+v and %+v", lsn, prev, crashID{seed, g, i})
		}
		acked[lsn] = crashID{seed, g, i}
		n++
		if n == killAt && !killed {
			killed = true
			time.AfterFunc(delay, func() { cmd.Process.Signal(syscall.SIGKILL) })
		}
	}
	if err := sc.Err(); err != nil && !errors.Is(err, io.EOF) {
		t.Fatal(err)
	}
	err = cmd.Wait()
	var ee *exec.ExitError
	if !killed || !errors.As(err, &ee) || ee.Sys().(syscall.WaitStatus).Signal() != syscall.SIGKILL {
		t.Fatalf("child ended with %v after %d acknowledgements, not killed; stdout:\n%s\nstderr:\n%s", err, n, strings.Join(other, "\n"), stderr.String())
	}
	return n
}

// verifyCrashLog replays l: LSNs without a gap from one at most from (the
// highest truncation point a child began; 1 if none), every record exactly
// one that was appended, and every acknowledged record from from on where it
// was acknowledged. It returns the first and last LSN.
func verifyCrashLog(t *testing.T, l *Log, acked map[uint64]crashID, from uint64) (first, last uint64) {
	t.Helper()
	first, last, _, err := replayCrashLog(l, acked, from)
	if err != nil {
		t.Fatal(err)
	}
	return first, last
}

// replayCrashLog is verifyCrashLog's check, shared with the power-cut
// tests: it returns the first and last LSN the log holds, how many records
// it checked, and the first violation.
func replayCrashLog(l *Log, acked map[uint64]crashID, from uint64) (first, last uint64, checked int, err error) {
	from = max(from, 1)
	seen := map[crashID]uint64{}
	err = l.Replay(func(lsn uint64, rec []byte) error {
		switch {
		case first == 0 && lsn > from:
			return fmt.Errorf("the log starts at LSN %d, after the truncation point %d", lsn, from)
		case first == 0:
			first = lsn
		case lsn != last+1:
			return fmt.Errorf("LSN %d after %d", lsn, last)
		}
		last = lsn
		checked++
		id, err := parseCrashRecord(rec)
		if err != nil {
			return fmt.Errorf("LSN %d: %w", lsn, err)
		}
		if prev, dup := seen[id]; dup {
			return fmt.Errorf("record %+v at LSN %d and %d", id, prev, lsn)
		}
		seen[id] = lsn
		if want, ok := acked[lsn]; ok && want != id {
			return fmt.Errorf("LSN %d holds %+v, %+v was acknowledged there", lsn, id, want)
		}
		return nil
	})
	if err != nil {
		return first, last, checked, fmt.Errorf("Replay: %w", err)
	}
	if d := l.DurableLSN(); first == 0 {
		// Nothing from the truncation point on: the log ends right before it.
		first, last = d+1, d
	} else if d != last {
		return first, last, checked, fmt.Errorf("Replay ended at LSN %d, DurableLSN is %d", last, d)
	}
	var lost []uint64
	for lsn := range acked {
		if lsn >= from && lsn > last {
			lost = append(lost, lsn)
		}
	}
	if len(lost) > 0 {
		return first, last, checked, fmt.Errorf("%d acknowledged records lost: LSN %d and up are gone, the log ends at %d", len(lost), minOf(lost), last)
	}
	return first, last, checked, nil
}
