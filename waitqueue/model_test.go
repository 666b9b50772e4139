package waitqueue

import (
	"fmt"
	"math/rand/v2"
	"slices"
	"strings"
	"testing"
)

// The model harness drives real Queues and a reference model of the kernel's
// list and __wake_up_common loop with the same decoded script, and compares
// them after every operation.

const (
	modelEntries = 8
	modelQueues  = 2
	modelKeys    = 4
	headerLen    = 2 * modelEntries // per entry: a config byte and a return table byte
	opLen        = 3
	maxOps       = 256
)

const (
	opAdd = iota
	opAddExclusive
	opRemove
	opWakeUp
	opWakeUpNr
	opWakeUpAll
	opPrepare
	opPrepareExclusive
	opFinish
	numOps
)

var opNames = [numOps]string{"Add", "AddExclusive", "Remove", "WakeUp", "WakeUpNr", "WakeUpAll", "PrepareToWait", "PrepareToWaitExclusive", "FinishWait"}

type modelOp struct {
	kind  int
	queue int
	entry int
	nr    int
	key   uint64
}

func (o modelOp) String() string {
	switch o.kind {
	case opWakeUp, opWakeUpAll:
		return fmt.Sprintf("q%d.%s(key=%d)", o.queue, opNames[o.kind], o.key)
	case opWakeUpNr:
		return fmt.Sprintf("q%d.WakeUpNr(nr=%d, key=%d)", o.queue, o.nr, o.key)
	}
	return fmt.Sprintf("q%d.%s(e%d)", o.queue, opNames[o.kind], o.entry)
}

type modelScript struct {
	autoRemove [modelEntries]bool
	nilFunc    [modelEntries]bool
	ret        [modelEntries][modelKeys]int
	ops        []modelOp
}

// retCode maps two bits to a Func result, so -1 (stop the walk) and 2 (a
// wake-up other than 1) are both exercised.
var retCode = [4]int{0, 1, 2, -1}

// decodeScript turns arbitrary bytes into a script: a short input means
// zero-filled configuration and no operations, never an error.
func decodeScript(data []byte) modelScript {
	var s modelScript
	var hdr [headerLen]byte
	copy(hdr[:], data)
	for i := range modelEntries {
		cfg, rets := hdr[2*i], hdr[2*i+1]
		s.autoRemove[i] = cfg&1 != 0
		s.nilFunc[i] = (cfg>>1)&7 == 7
		for k := range modelKeys {
			s.ret[i][k] = retCode[(rets>>(2*k))&3]
		}
	}
	if len(data) <= headerLen {
		return s
	}
	body := data[headerLen:]
	// Longer inputs add nothing an 8-entry list can show and make the
	// fuzzer's minimization crawl.
	body = body[:min(len(body), maxOps*opLen)]
	for len(body) >= opLen {
		b0, b1, b2 := body[0], body[1], body[2]
		body = body[opLen:]
		s.ops = append(s.ops, modelOp{
			kind:  int(b0) % numOps,
			queue: int(b0) / numOps % modelQueues,
			entry: int(b1) % modelEntries,
			nr:    int(b1)%5 - 1, // -1..3: negative and zero both mean no limit
			key:   uint64(b2),    // Funcs look at key % modelKeys
		})
	}
	return s
}

// refModel is the kernel's list_head per queue plus the entries' flags.
type refModel struct {
	s     *modelScript
	lists [modelQueues][]int // entry ids, head first
	where [modelEntries]int  // queue index, -1 when on none
	excl  [modelEntries]bool
}

func newRefModel(s *modelScript) *refModel {
	m := &refModel{s: s}
	for i := range m.where {
		m.where[i] = -1
	}
	return m
}

func (m *refModel) add(q, id int, exclusive bool) {
	if m.where[id] != -1 {
		return // already queued somewhere: documented no-op
	}
	m.where[id], m.excl[id] = q, exclusive
	if exclusive {
		m.lists[q] = append(m.lists[q], id)
	} else {
		m.lists[q] = slices.Insert(m.lists[q], 0, id)
	}
}

func (m *refModel) remove(q, id int) {
	if m.where[id] != q {
		return
	}
	i := slices.Index(m.lists[q], id)
	m.lists[q] = slices.Delete(m.lists[q], i, i+1)
	m.where[id] = -1
}

// wake is __wake_up_common; it returns the ids called, in order, and how
// many calls returned > 0.
func (m *refModel) wake(q, nr int, key uint64) (calls []int, woken int) {
	// Only the current entry can leave the list during the walk, so walking
	// a snapshot is list_for_each_entry_safe.
	for _, id := range slices.Clone(m.lists[q]) {
		ret := 0
		if !m.s.nilFunc[id] {
			calls = append(calls, id)
			ret = m.s.ret[id][key%modelKeys]
		}
		if ret < 0 {
			break
		}
		if ret > 0 {
			woken++
			exclusive := m.excl[id]
			if m.s.autoRemove[id] {
				m.remove(q, id)
			}
			if exclusive {
				nr--
				if nr == 0 {
					break
				}
			}
		}
	}
	return calls, woken
}

// runScript executes s on real Queues and the model, failing at the first
// difference with the history that led to it.
func runScript(t *testing.T, s modelScript) {
	t.Helper()
	var qs [modelQueues]Queue
	var entries [modelEntries]Entry
	ids := make(map[*Entry]int, modelEntries)
	var calls []int
	for i := range entries {
		e := &entries[i]
		ids[e] = i
		if s.nilFunc[i] {
			continue
		}
		var fn Func = func(got *Entry, key uint64) int {
			calls = append(calls, ids[got])
			return s.ret[ids[got]][key%modelKeys]
		}
		if s.autoRemove[i] {
			fn = AutoRemove(fn)
		}
		e.Func = fn
	}
	m := newRefModel(&s)
	for step, o := range s.ops {
		fail := func(format string, args ...any) {
			t.Helper()
			history := make([]string, step+1)
			for i, o := range s.ops[:step+1] {
				history[i] = o.String()
			}
			t.Fatalf("after %s: %s\nconfig: autoRemove=%v nilFunc=%v ret=%v",
				strings.Join(history, "; "), fmt.Sprintf(format, args...), s.autoRemove, s.nilFunc, s.ret)
		}
		q, e := &qs[o.queue], &entries[o.entry]
		calls = calls[:0]
		var wantCalls []int
		gotWoken, wantWoken := 0, 0
		switch o.kind {
		case opAdd, opPrepare:
			if o.kind == opAdd {
				q.Add(e)
			} else {
				q.PrepareToWait(e)
			}
			m.add(o.queue, o.entry, false)
		case opAddExclusive, opPrepareExclusive:
			if o.kind == opAddExclusive {
				q.AddExclusive(e)
			} else {
				q.PrepareToWaitExclusive(e)
			}
			m.add(o.queue, o.entry, true)
		case opRemove, opFinish:
			if o.kind == opRemove {
				q.Remove(e)
			} else {
				q.FinishWait(e)
			}
			m.remove(o.queue, o.entry)
		case opWakeUp:
			gotWoken = q.WakeUp(o.key)
			wantCalls, wantWoken = m.wake(o.queue, 1, o.key)
		case opWakeUpNr:
			gotWoken = q.WakeUpNr(o.nr, o.key)
			wantCalls, wantWoken = m.wake(o.queue, o.nr, o.key)
		case opWakeUpAll:
			gotWoken = q.WakeUpAll(o.key)
			wantCalls, wantWoken = m.wake(o.queue, 0, o.key)
		}
		if !slices.Equal(calls, wantCalls) {
			fail("Funcs called %v, model %v", calls, wantCalls)
		}
		if gotWoken != wantWoken {
			fail("returned %d, model %d", gotWoken, wantWoken)
		}
		for qi := range qs {
			got, err := qs[qi].snapshot(ids)
			if err != nil {
				fail("q%d: %v", qi, err)
			}
			if !slices.Equal(got, m.lists[qi]) {
				fail("q%d holds %v, model %v", qi, got, m.lists[qi])
			}
			if qs[qi].Len() != len(got) || qs[qi].Active() != (len(got) > 0) {
				fail("q%d: Len()=%d Active()=%v with %d entries", qi, qs[qi].Len(), qs[qi].Active(), len(got))
			}
			for _, id := range got {
				if (entries[id].flags&wqFlagExclusive != 0) != m.excl[id] {
					fail("e%d exclusive=%v, model %v", id, !m.excl[id], m.excl[id])
				}
			}
		}
		for id := range entries {
			var want *Queue
			if m.where[id] >= 0 {
				want = &qs[m.where[id]]
			}
			if got := entries[id].q.Load(); got != want {
				fail("e%d records queue %p, model %p", id, got, want)
			}
		}
	}
}

// snapshot lists the queue's entry ids head first, checking the links both
// ways.
func (q *Queue) snapshot(ids map[*Entry]int) ([]int, error) {
	q.mu.Lock()
	defer q.mu.Unlock()
	var out []int
	var prev *Entry
	for e := q.head; e != nil; e = e.next {
		if e.prev != prev {
			return nil, fmt.Errorf("e%d.prev is wrong", ids[e])
		}
		if e.q.Load() != q {
			return nil, fmt.Errorf("e%d is listed but records another queue", ids[e])
		}
		if len(out) > len(ids) {
			return nil, fmt.Errorf("list loops")
		}
		out = append(out, ids[e])
		prev = e
	}
	if q.tail != prev {
		return nil, fmt.Errorf("tail is wrong")
	}
	if q.waking {
		return nil, fmt.Errorf("waking left set after a walk")
	}
	return out, nil
}

// randomScript encodes a random script with Func results and operations
// weighted so walks are long enough to matter and stops are not rare.
func randomScript(r *rand.Rand) []byte {
	retWeights := []int{30, 45, 10, 15} // 0, 1, 2, -1 (indices into retCode)
	pick := func() byte {
		n := r.IntN(100)
		for i, w := range retWeights {
			if n < w {
				return byte(i)
			}
			n -= w
		}
		return 0
	}
	data := make([]byte, 0, headerLen+opLen*64)
	for range modelEntries {
		cfg := byte(r.IntN(2))
		if r.IntN(12) == 0 {
			cfg |= 7 << 1 // nil Func
		}
		var rets byte
		for k := range modelKeys {
			rets |= pick() << (2 * k)
		}
		data = append(data, cfg, rets)
	}
	for range 1 + r.IntN(64) {
		// Adds are weighted up so queues are usually populated.
		kinds := []int{opAdd, opAdd, opAddExclusive, opAddExclusive, opAddExclusive, opRemove,
			opWakeUp, opWakeUp, opWakeUpNr, opWakeUpAll, opPrepare, opPrepareExclusive, opFinish}
		kind := kinds[r.IntN(len(kinds))]
		qi := r.IntN(modelQueues)
		if r.IntN(8) != 0 {
			qi = 0 // keep most traffic on one queue; q1 exercises cross-queue no-ops
		}
		data = append(data, byte(kind+numOps*qi), byte(r.IntN(256)), byte(r.IntN(256)))
	}
	return data
}

func TestModel(t *testing.T) {
	const sequences = 5000
	for seed := range uint64(sequences) {
		r := rand.New(rand.NewPCG(seed, 0x5eed))
		s := decodeScript(randomScript(r))
		if len(s.ops) == 0 {
			t.Fatalf("seed %d: random script decoded to no operations", seed)
		}
		if !t.Run(fmt.Sprintf("seed=%d", seed), func(t *testing.T) { runScript(t, s) }) {
			break // one reproducible failure is enough
		}
	}
}

func FuzzOps(f *testing.F) {
	r := rand.New(rand.NewPCG(1, 2))
	for range 8 {
		f.Add(randomScript(r))
	}
	f.Fuzz(func(t *testing.T, data []byte) {
		runScript(t, decodeScript(data))
	})
}
