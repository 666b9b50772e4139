package pebblevfs_test

import (
	"bytes"
	"context"
	"encoding/binary"
	"fmt"
	"math/rand/v2"
	"os"
	"sort"
	"strconv"
	"sync"
	"testing"

	"github.com/cockroachdb/pebble/v2"
	"github.com/cockroachdb/pebble/v2/vfs"
	"github.com/cockroachdb/pebble/v2/vfs/vfstest"

	"github.com/ringwake/ringwake/contrib/pebblevfs"
)

// setCount is how many Sets TestPebbleRandomSets makes: 200,000, or
// PEBBLEVFS_SETS. Under the race detector (raceEnabled) the default is
// 20,000, which keeps the test near a minute on two cores; .ci/run runs the
// full count without -race as well.
func setCount(t *testing.T) int {
	if s := os.Getenv("PEBBLEVFS_SETS"); s != "" {
		n, err := strconv.Atoi(s)
		if err != nil || n <= 0 {
			t.Fatalf("PEBBLEVFS_SETS=%q: want a positive count", s)
		}
		return n
	}
	if raceEnabled {
		return 20_000
	}
	return 200_000
}

// quietLogger drops Pebble's informational lines and reports its errors
// to t (to stderr without one, in examples).
type quietLogger struct{ t testing.TB }

func (l quietLogger) Infof(string, ...any) {}
func (l quietLogger) Errorf(f string, args ...any) {
	if l.t == nil {
		fmt.Fprintf(os.Stderr, "pebble: "+f+"\n", args...)
		return
	}
	l.t.Errorf("pebble: "+f, args...)
}
func (l quietLogger) Fatalf(f string, args ...any) {
	if l.t == nil {
		panic(fmt.Sprintf("pebble: "+f, args...))
	}
	l.t.Fatalf("pebble: "+f, args...)
}

// model is what the database must hold: for each key, the seed and length
// its value is generated from.
type model map[string]valueSpec

type valueSpec struct {
	seed uint64
	n    int
}

// value builds the bytes of a value: a header naming the key and seed, then
// pseudo-random bytes from the seed, so a value read under the wrong key or
// from an older write is caught.
func value(key string, v valueSpec) []byte {
	b := make([]byte, v.n)
	rng := rand.New(rand.NewPCG(v.seed, uint64(len(key))))
	for i := 0; i+8 <= len(b); i += 8 {
		binary.LittleEndian.PutUint64(b[i:], rng.Uint64())
	}
	for i := len(b) &^ 7; i < len(b); i++ {
		b[i] = byte(rng.Uint32())
	}
	copy(b, fmt.Sprintf("%s/%d", key, v.seed))
	return b
}

// valueSize draws varied sizes: mostly small, some of a few KiB, a few of
// tens of KiB, and empty values.
func valueSize(rng *rand.Rand) int {
	switch p := rng.IntN(100); {
	case p < 2:
		return 0
	case p < 70:
		return 8 + rng.IntN(120)
	case p < 97:
		return 128 + rng.IntN(4096)
	default:
		return 16<<10 + rng.IntN(48<<10)
	}
}

func openDB(t *testing.T, dir string, fsys vfs.FS) *pebble.DB {
	t.Helper()
	db, err := pebble.Open(dir, &pebble.Options{
		FS:           fsys,
		Logger:       quietLogger{t},
		MemTableSize: 8 << 20, // several flushes and compactions during the test
	})
	if err != nil {
		t.Fatal(err)
	}
	return db
}

// verify reads every key of m with Get, and the whole database with an
// iterator, which must yield exactly m's keys in order with their values.
func verify(t *testing.T, db *pebble.DB, m model) {
	t.Helper()
	keys := make([]string, 0, len(m))
	for k := range m {
		keys = append(keys, k)
	}
	sort.Strings(keys)
	for _, k := range keys {
		got, closer, err := db.Get([]byte(k))
		if err != nil {
			t.Fatalf("Get(%s): %v", k, err)
		}
		ok := bytes.Equal(got, value(k, m[k]))
		closer.Close()
		if !ok {
			t.Fatalf("Get(%s): %d bytes, want %d (seed %d)", k, len(got), m[k].n, m[k].seed)
		}
	}
	it, err := db.NewIter(nil)
	if err != nil {
		t.Fatal(err)
	}
	i := 0
	for valid := it.First(); valid; valid = it.Next() {
		if i >= len(keys) || string(it.Key()) != keys[i] {
			it.Close()
			t.Fatalf("iteration: key %d is %q, want %q", i, it.Key(), keys[min(i, len(keys)-1)])
		}
		if !bytes.Equal(it.Value(), value(keys[i], m[keys[i]])) {
			it.Close()
			t.Fatalf("iteration: value of %s differs", keys[i])
		}
		i++
	}
	if err := it.Close(); err != nil {
		t.Fatal(err)
	}
	if i != len(keys) {
		t.Fatalf("iteration saw %d keys, want %d", i, len(keys))
	}
}

// TestPebbleRandomSets: a Pebble database on pebblevfs takes random Sets
// of varied value sizes (overwriting some keys), is flushed and compacted,
// answers random Gets (including keys never written), iterates fully, and
// after Close and reopen still holds every value. No file stays open after
// Close.
func TestPebbleRandomSets(t *testing.T) {
	r := newRing(t)
	fsys, dumpOpen := vfstest.WithOpenFileTracking(pebblevfs.New(r))
	dir := t.TempDir()
	db := openDB(t, dir, fsys)
	n := setCount(t)
	rng := rand.New(rand.NewPCG(1, 2))
	m := model{}
	for i := range n {
		k := fmt.Sprintf("key-%09d", rng.IntN(n*3/2)) // about a quarter overwritten
		v := valueSpec{seed: uint64(i), n: valueSize(rng)}
		if err := db.Set([]byte(k), value(k, v), pebble.NoSync); err != nil {
			t.Fatal(err)
		}
		m[k] = v
	}
	if err := db.Flush(); err != nil {
		t.Fatal(err)
	}
	if err := db.Compact(context.Background(), []byte("key-"), []byte("key-\xff"), true); err != nil {
		t.Fatal(err)
	}
	for range n / 10 {
		k := fmt.Sprintf("key-%09d", rng.IntN(n*2))
		got, closer, err := db.Get([]byte(k))
		v, ok := m[k]
		switch {
		case !ok && err != pebble.ErrNotFound:
			t.Fatalf("Get(%s) of a key never written: %v", k, err)
		case ok && err != nil:
			t.Fatalf("Get(%s): %v", k, err)
		case ok:
			same := bytes.Equal(got, value(k, v))
			closer.Close()
			if !same {
				t.Fatalf("Get(%s) after compaction: wrong value", k)
			}
		}
	}
	verify(t, db, m)
	if err := db.Close(); err != nil {
		t.Fatal(err)
	}
	var open bytes.Buffer
	dumpOpen(&open)
	if open.Len() > 0 {
		t.Fatalf("files still open after Close:\n%s", open.String())
	}

	db = openDB(t, dir, fsys)
	verify(t, db, m)
	if err := db.Close(); err != nil {
		t.Fatal(err)
	}
	if r.Stats().Submitted < uint64(n/100) {
		t.Fatalf("only %d ring requests for the whole test", r.Stats().Submitted)
	}
}

// TestPebbleSyncedWriters: 64 goroutines each write with Sync: true (every
// Set acknowledged only once its WAL record is durable, Pebble grouping the
// syncs of concurrent commits); then Close, reopen and verify all of them.
func TestPebbleSyncedWriters(t *testing.T) {
	r := newRing(t)
	dir := t.TempDir()
	db := openDB(t, dir, pebblevfs.New(r))
	const writers = 64
	perWriter := 400
	if raceEnabled {
		perWriter = 100
	}
	var wg sync.WaitGroup
	errs := make(chan error, writers)
	models := make([]model, writers)
	for w := range writers {
		models[w] = model{}
		wg.Add(1)
		go func() {
			defer wg.Done()
			rng := rand.New(rand.NewPCG(uint64(w), 7))
			for i := range perWriter {
				k := fmt.Sprintf("w%02d-%05d", w, rng.IntN(perWriter))
				v := valueSpec{seed: uint64(w*perWriter + i), n: valueSize(rng)}
				if err := db.Set([]byte(k), value(k, v), pebble.Sync); err != nil {
					errs <- err
					return
				}
				models[w][k] = v
			}
		}()
	}
	wg.Wait()
	close(errs)
	for err := range errs {
		t.Fatal(err)
	}
	m := model{}
	for _, wm := range models {
		for k, v := range wm {
			m[k] = v
		}
	}
	if err := db.Close(); err != nil {
		t.Fatal(err)
	}
	db = openDB(t, dir, pebblevfs.New(r))
	verify(t, db, m)
	if err := db.Close(); err != nil {
		t.Fatal(err)
	}
}
