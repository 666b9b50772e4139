package ring

import (
	"fmt"
	"syscall"
	"testing"

	"golang.org/x/sys/unix"

	"github.com/ringwake/ringwake/sqe"
)

// recordChunks collects the enter sizes SubmitChunks uses during the test.
func recordChunks(t *testing.T) *[]uint32 {
	var sizes []uint32
	chunkHook = func(n uint32) { sizes = append(sizes, n) }
	t.Cleanup(func() { chunkHook = nil })
	return &sizes
}

// pipeReads publishes n one-byte reads of an empty pipe, which cannot
// complete within their enter (as device reads cannot), with user data
// base, base+1, ...
func pipeReads(t *testing.T, r *Ring, rd int, bufs []byte, base uint64) {
	for i := range bufs {
		prepRead(mustGetSQE(t, r), int32(rd), bufs[i:i+1], 0, base+uint64(i))
		// A pipe has no offsets: -1 reads at the current position.
		r.sqeAt(r.sqeTail - 1).Off = ^uint64(0)
	}
}

func TestSubmitChunksSplitsDeviceIO(t *testing.T) {
	r := newRing(t, Params{Entries: 32})
	sizes := recordChunks(t)
	for _, chunk := range []uint32{1, 2, 3, 4, 7} {
		for n := 1; n <= 20; n++ {
			t.Run(fmt.Sprintf("chunk%d/n%d", chunk, n), func(t *testing.T) {
				*sizes = (*sizes)[:0]
				rd, wr := blockingPipe(t)
				bufs := make([]byte, n)
				pipeReads(t, r, rd, bufs, 0)
				r.Publish()
				got, err := r.SubmitChunks(chunk)
				if err != nil || got != n {
					t.Fatalf("SubmitChunks(%d) with %d pending = %d, %v", chunk, n, got, err)
				}
				if p := r.SQPending(); p != 0 {
					t.Fatalf("%d SQEs left pending", p)
				}
				sum := 0
				for _, k := range *sizes {
					if k > chunk {
						t.Fatalf("an enter carried %d SQEs, chunk is %d (enters %v)", k, chunk, *sizes)
					}
					sum += int(k)
				}
				if want := n; n > int(chunk) && sum != want {
					t.Fatalf("enters %v carried %d SQEs, want all %d in chunks", *sizes, sum, want)
				}
				if _, err := unix.Write(wr, make([]byte, n)); err != nil {
					t.Fatal(err)
				}
				for _, c := range reap(t, r, n) {
					if c.Res != 1 {
						t.Fatalf("read %d: res %d, want 1", c.UserData, c.Res)
					}
				}
			})
		}
	}
}

// A chunk that completed within its enter went to no device: the rest goes
// in one enter.
func TestSubmitChunksInlineCompletionsGoTogether(t *testing.T) {
	r := newRing(t, Params{Entries: 32})
	sizes := recordChunks(t)
	for i := 0; i < 20; i++ {
		prepNop(mustGetSQE(t, r), uint64(i))
	}
	r.Publish()
	if got, err := r.SubmitChunks(3); err != nil || got != 20 {
		t.Fatalf("SubmitChunks = %d, %v; want 20", got, err)
	}
	if len(*sizes) != 1 || (*sizes)[0] != 3 {
		t.Fatalf("chunked enters %v, want one of 3 and the rest together", *sizes)
	}
	checkNops(t, reap(t, r, 20), 0, 20)
}

// A chunk boundary inside a link chain would end the chain there: the
// members in the next enter would run although the head failed. The chain's
// head fails (a read of fd -1), so every later member must be canceled.
func TestSubmitChunksKeepsLinkChainsWhole(t *testing.T) {
	r := newRing(t, Params{Entries: 32})
	sizes := recordChunks(t)
	buf := make([]byte, 8)
	for lead := 1; lead < 6; lead++ {
		t.Run(fmt.Sprint(lead), func(t *testing.T) {
			*sizes = (*sizes)[:0]
			rd, wr := blockingPipe(t)
			pipeReads(t, r, rd, make([]byte, lead), 1000)
			prepRead(mustGetSQE(t, r), -1, buf, 0, 100)
			const members = 6
			for i := 0; i < members; i++ {
				s := mustGetSQE(t, r)
				prepNop(s, uint64(101+i))
				if i < members-1 {
					s.Flags |= sqe.IOLink
				}
			}
			// The read heads the chain.
			r.sqeAt(r.sqeTail - members - 1).Flags |= sqe.IOLink
			prepNop(mustGetSQE(t, r), 200) // after the chain: runs normally
			r.Publish()
			total := lead + 1 + members + 1
			if got, err := r.SubmitChunks(3); err != nil || got != total {
				t.Fatalf("SubmitChunks = %d, %v; want %d", got, err, total)
			}
			if len(*sizes) < 2 {
				t.Fatalf("enters %v: the test needs the SQEs split", *sizes)
			}
			if _, err := unix.Write(wr, make([]byte, lead)); err != nil {
				t.Fatal(err)
			}
			for _, c := range reap(t, r, total) {
				var want int32
				switch {
				case c.UserData == 100:
					want = -int32(syscall.EBADF)
				case c.UserData > 100 && c.UserData < 200:
					want = -int32(syscall.ECANCELED)
				case c.UserData >= 1000:
					want = 1
				}
				if c.Res != want {
					t.Errorf("user data %d: res %d, want %d (enters %v)", c.UserData, c.Res, want, *sizes)
				}
			}
		})
	}
}

// Without a chunk, and on the software engine, SubmitChunks is Submit.
func TestSubmitChunksZeroAndSoft(t *testing.T) {
	for _, soft := range []bool{false, true} {
		t.Run(fmt.Sprint("soft=", soft), func(t *testing.T) {
			var r *Ring
			if soft {
				var err error
				if r, err = NewSoft(Params{Entries: 16}); err != nil {
					t.Fatal(err)
				}
				t.Cleanup(func() { r.Close() })
			} else {
				r = newRing(t, Params{Entries: 16})
			}
			sizes := recordChunks(t)
			chunk := uint32(0)
			if soft {
				chunk = 2
			}
			for i := 0; i < 16; i++ {
				prepNop(mustGetSQE(t, r), uint64(i))
			}
			r.Publish()
			if got, err := r.SubmitChunks(chunk); err != nil || got != 16 {
				t.Fatalf("SubmitChunks(%d) = %d, %v; want 16", chunk, got, err)
			}
			if len(*sizes) != 0 {
				t.Fatalf("chunk %d: split into %v; want one Submit", chunk, *sizes)
			}
			checkNops(t, reap(t, r, 16), 0, 16)
		})
	}
}
