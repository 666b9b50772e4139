package ring

import (
	"errors"
	"fmt"
	"runtime"
	"strings"
	"syscall"
	"testing"
	"time"

	"github.com/ringwake/ringwake/internal/uringtest"
)

// lockThread pins the test goroutine to its OS thread for the rest of the
// test: with SINGLE_ISSUER only the creating thread may submit.
func lockThread(t *testing.T) {
	runtime.LockOSThread()
	t.Cleanup(runtime.UnlockOSThread)
}

func TestSetupFlagsAccepted(t *testing.T) {
	cases := []struct {
		name string
		p    Params
		want uint32
	}{
		{"SQPOLL", Params{SQPoll: true, SQThreadIdle: time.Millisecond}, SetupSQPoll},
		{"SQPOLL+SQ_AFF", Params{SQPoll: true, SQThreadCPUSet: true, SQThreadCPU: 0}, SetupSQPoll | SetupSQAff},
		{"COOP_TASKRUN", Params{CoopTaskrun: true}, SetupCoopTaskrun},
		{"TASKRUN_FLAG", Params{CoopTaskrun: true, TaskrunFlag: true}, SetupCoopTaskrun | SetupTaskrunFlag},
		{"SINGLE_ISSUER", Params{SingleIssuer: true}, SetupSingleIssuer},
		{"DEFER_TASKRUN", Params{SingleIssuer: true, DeferTaskrun: true}, SetupSingleIssuer | SetupDeferTaskrun},
		{"DEFER_TASKRUN+TASKRUN_FLAG", Params{SingleIssuer: true, DeferTaskrun: true, TaskrunFlag: true},
			SetupSingleIssuer | SetupDeferTaskrun | SetupTaskrunFlag},
		{"NO_SQARRAY", Params{NoSQArray: true}, SetupNoSQArray},
		{"all non-SQPOLL", Params{NoSQArray: true, SingleIssuer: true, DeferTaskrun: true, TaskrunFlag: true, CoopTaskrun: true},
			SetupNoSQArray | SetupSingleIssuer | SetupDeferTaskrun | SetupTaskrunFlag | SetupCoopTaskrun},
		{"SQPOLL+NO_SQARRAY+SINGLE_ISSUER", Params{SQPoll: true, NoSQArray: true, SingleIssuer: true},
			SetupSQPoll | SetupNoSQArray | SetupSingleIssuer},
	}
	data := pattern(8192)
	for _, c := range cases {
		t.Run(c.name, func(t *testing.T) {
			lockThread(t)
			c.p.Entries = 16
			r := newRing(t, c.p)
			if r.SetupFlags()&c.want != c.want {
				t.Fatalf("SetupFlags %#x lacks %#x (dropped %#x)", r.SetupFlags(), c.want&^r.SetupFlags(), r.DroppedFlags())
			}
			if r.DroppedFlags() != 0 {
				t.Fatalf("DroppedFlags %#x, want none on this kernel", r.DroppedFlags())
			}
			nopRoundTrip(t, r, 1000, 16, true)
			nopRoundTrip(t, r, 2000, 5, false)
			readRoundTrip(t, r, patternFile(t, data), data)
		})
	}
}

// TestSQPollWakeup waits until the SQPOLL thread has gone to sleep and checks
// that Submit wakes it.
func TestSQPollWakeup(t *testing.T) {
	r := newRing(t, Params{Entries: 8, SQPoll: true, SQThreadIdle: time.Millisecond})
	nopRoundTrip(t, r, 0, 8, true)
	deadline := time.Now().Add(10 * time.Second)
	for !r.NeedWakeup() {
		if time.Now().After(deadline) {
			t.Fatal("SQPOLL thread never reported SQ_NEED_WAKEUP")
		}
		time.Sleep(time.Millisecond)
	}
	prepNop(mustGetSQE(t, r), 42)
	r.Publish()
	if n, err := r.Submit(); err != nil || n != 1 {
		t.Fatalf("Submit to a sleeping SQ thread = %d, %v; want 1, nil", n, err)
	}
	checkNops(t, reap(t, r, 1), 42, 1)
}

func TestSQPollDropsTaskrunFlags(t *testing.T) {
	r := newRing(t, Params{Entries: 8, SQPoll: true, CoopTaskrun: true, TaskrunFlag: true})
	ipi := SetupCoopTaskrun | SetupTaskrunFlag
	if r.SetupFlags()&SetupSQPoll == 0 || r.SetupFlags()&ipi != 0 {
		t.Fatalf("SetupFlags %#x: want SQPOLL without the task-run flags", r.SetupFlags())
	}
	if r.DroppedFlags() != ipi {
		t.Fatalf("DroppedFlags %#x, want %#x", r.DroppedFlags(), ipi)
	}
	nopRoundTrip(t, r, 0, 8, true)
}

func TestEntriesRoundingAndClamping(t *testing.T) {
	cases := []struct {
		p      Params
		sq, cq uint32
	}{
		{Params{}, 256, 512},
		{Params{Entries: 5}, 8, 16},
		{Params{Entries: 1}, 1, 2},
		{Params{Entries: 8, CQEntries: 9}, 8, 16},
		{Params{Entries: 8, CQEntries: 1 << 20}, 8, MaxCQEntries},
		{Params{Entries: 100000}, MaxEntries, MaxCQEntries},
		{Params{Entries: ^uint32(0), CQEntries: ^uint32(0)}, MaxEntries, MaxCQEntries},
	}
	for _, c := range cases {
		r := newRing(t, c.p)
		if r.SQEntries() != c.sq || r.CQEntries() != c.cq {
			t.Errorf("%+v: SQ/CQ %d/%d, want %d/%d", c.p, r.SQEntries(), r.CQEntries(), c.sq, c.cq)
		}
		nopRoundTrip(t, r, 0, 1, true)
		r.Close()
	}
}

// fakeSetup swaps the setup syscall for one that records the flags of every
// attempt and then fails with errno if it is set, refuses with EINVAL any
// attempt carrying a flag in reject, and otherwise sets the ring up for real.
func fakeSetup(t *testing.T, reject uint32, errno syscall.Errno) *[]uint32 {
	t.Helper()
	real := sysSetup
	t.Cleanup(func() { sysSetup = real })
	var calls []uint32
	sysSetup = func(entries uint32, p *params) (int, syscall.Errno) {
		calls = append(calls, p.flags)
		if errno != 0 {
			return -1, errno
		}
		if p.flags&reject != 0 {
			return -1, syscall.EINVAL
		}
		return real(entries, p)
	}
	return &calls
}

func TestFlagFallback(t *testing.T) {
	cases := []struct {
		name    string
		p       Params
		reject  uint32 // flags the pretend kernel does not know
		flags   uint32 // expected accepted flags
		dropped uint32
		calls   []uint32
	}{
		{
			name:    "6.0 kernel: no NO_SQARRAY, no DEFER_TASKRUN",
			p:       Params{NoSQArray: true, SingleIssuer: true, DeferTaskrun: true, TaskrunFlag: true},
			reject:  SetupNoSQArray | SetupDeferTaskrun,
			flags:   SetupClamp | SetupSingleIssuer,
			dropped: SetupNoSQArray | SetupDeferTaskrun | SetupTaskrunFlag, // TASKRUN_FLAG lost its partner
			calls: []uint32{
				SetupClamp | SetupNoSQArray | SetupSingleIssuer | SetupDeferTaskrun | SetupTaskrunFlag,
				SetupClamp | SetupSingleIssuer | SetupDeferTaskrun | SetupTaskrunFlag,
				SetupClamp | SetupSingleIssuer,
			},
		},
		{
			name:    "5.15 kernel: nothing newer than COOP_TASKRUN",
			p:       Params{NoSQArray: true, CoopTaskrun: true, TaskrunFlag: true, SingleIssuer: true},
			reject:  SetupNoSQArray | SetupSingleIssuer | SetupTaskrunFlag | SetupCoopTaskrun,
			flags:   SetupClamp,
			dropped: SetupNoSQArray | SetupSingleIssuer | SetupTaskrunFlag | SetupCoopTaskrun,
			calls: []uint32{
				SetupClamp | SetupNoSQArray | SetupSingleIssuer | SetupTaskrunFlag | SetupCoopTaskrun,
				SetupClamp | SetupSingleIssuer | SetupTaskrunFlag | SetupCoopTaskrun,
				SetupClamp | SetupTaskrunFlag | SetupCoopTaskrun,
				SetupClamp | SetupCoopTaskrun,
				SetupClamp,
			},
		},
		{
			name:    "SQPOLL refused: dropped and recorded",
			p:       Params{SQPoll: true, SQThreadCPUSet: true, SQThreadCPU: 0, CQEntries: 64},
			reject:  SetupSQPoll,
			flags:   SetupClamp | SetupCQSize,
			dropped: SetupSQPoll | SetupSQAff,
			calls: []uint32{
				SetupClamp | SetupCQSize | SetupSQPoll | SetupSQAff,
				SetupClamp | SetupCQSize | SetupSQPoll,
				SetupClamp | SetupCQSize,
			},
		},
	}
	for _, c := range cases {
		t.Run(c.name, func(t *testing.T) {
			uringtest.Require(t)
			lockThread(t)
			calls := fakeSetup(t, c.reject, 0)
			c.p.Entries = 8
			r := newRing(t, c.p)
			if r.SetupFlags() != c.flags || r.DroppedFlags() != c.dropped {
				t.Fatalf("SetupFlags %#x dropped %#x; want %#x dropped %#x", r.SetupFlags(), r.DroppedFlags(), c.flags, c.dropped)
			}
			if fmt.Sprintf("%#x", *calls) != fmt.Sprintf("%#x", c.calls) {
				t.Fatalf("setup attempts %#x, want %#x", *calls, c.calls)
			}
			nopRoundTrip(t, r, 0, 8, true)
		})
	}
}

func TestFlagFallbackExhausted(t *testing.T) {
	uringtest.Require(t)
	fds := countFDs(t)
	// A kernel that refuses every attempt, even with no flags at all: once
	// the optional flags are gone the EINVAL is returned to the caller.
	calls := fakeSetup(t, 0, syscall.EINVAL)
	_, err := New(Params{Entries: 8, CQEntries: 64, NoSQArray: true})
	if !errors.Is(err, syscall.EINVAL) || !strings.Contains(err.Error(), "io_uring_setup") {
		t.Fatalf("New = %v; want an io_uring_setup error wrapping EINVAL", err)
	}
	want := []uint32{
		SetupClamp | SetupCQSize | SetupNoSQArray,
		SetupClamp | SetupCQSize,
		SetupCQSize,
		0,
	}
	if fmt.Sprintf("%#x", *calls) != fmt.Sprintf("%#x", want) {
		t.Fatalf("setup attempts %#x, want %#x", *calls, want)
	}
	if got := countFDs(t); got != fds {
		t.Fatalf("fds %d after failed New, %d before", got, fds)
	}
}

func TestSetupRefusedErrno(t *testing.T) {
	for _, errno := range []syscall.Errno{syscall.ENOSYS, syscall.EPERM, syscall.EACCES, syscall.ENOMEM} {
		t.Run(errno.Error(), func(t *testing.T) {
			calls := fakeSetup(t, 0, errno)
			r, err := New(Params{NoSQArray: true, CoopTaskrun: true})
			if r != nil || !errors.Is(err, errno) {
				t.Fatalf("New = %v, %v; want nil and an error wrapping %v", r, err, errno)
			}
			if !strings.Contains(err.Error(), "io_uring_setup") {
				t.Fatalf("error %q does not name io_uring_setup", err)
			}
			if len(*calls) != 1 {
				t.Fatalf("%d setup attempts; a refusal of io_uring itself must not be retried", len(*calls))
			}
		})
	}
}

func TestBadParams(t *testing.T) {
	cases := []struct {
		p    Params
		want string
	}{
		{Params{DeferTaskrun: true}, "SingleIssuer"},
		{Params{TaskrunFlag: true}, "CoopTaskrun"},
		{Params{Entries: 64, CQEntries: 16}, "smaller"},
		{Params{SQThreadCPUSet: true, SQThreadCPU: 1}, "SQPoll"},
		{Params{SQPoll: true, SQThreadIdle: -time.Second}, "negative"},
	}
	for _, c := range cases {
		calls := fakeSetup(t, 0, 0)
		r, err := New(c.p)
		if r != nil || err == nil || !strings.Contains(err.Error(), c.want) {
			t.Errorf("New(%+v) = %v, %v; want an error mentioning %q", c.p, r, err, c.want)
		}
		if len(*calls) != 0 {
			t.Errorf("New(%+v) reached the kernel", c.p)
		}
	}
}

// TestMmapFailureCleansUp fails each of New's mappings in turn and checks
// nothing stays mapped or open.
func TestMmapFailureCleansUp(t *testing.T) {
	uringtest.Require(t)
	real := sysMmap
	t.Cleanup(func() { sysMmap = real })
	mmaps, fail := 0, -1
	sysMmap = func(fd int, off int64, length int) ([]byte, error) {
		mmaps++
		if mmaps-1 == fail {
			return nil, syscall.ENOMEM
		}
		return real(fd, off, length)
	}
	r, err := New(Params{Entries: 8})
	if err != nil {
		t.Fatal(err)
	}
	r.Close()
	total := mmaps // 2 with FEAT_SINGLE_MMAP, else 3
	fds, maps := countFDs(t), countRingMaps(t)
	for fail = 0; fail < total; fail++ {
		mmaps = 0
		r, err := New(Params{Entries: 8})
		if r != nil {
			r.Close()
		}
		if r != nil || !errors.Is(err, syscall.ENOMEM) || !strings.Contains(err.Error(), "mmap") {
			t.Fatalf("mmap #%d of %d failing: New = %v, %v; want an mmap error wrapping ENOMEM", fail, total, r, err)
		}
		if got := countFDs(t); got != fds {
			t.Fatalf("mmap #%d failing: fds %d, %d before", fail, got, fds)
		}
		if got := countRingMaps(t); got != maps {
			t.Fatalf("mmap #%d failing: io_uring mappings %d, %d before", fail, got, maps)
		}
	}
}

// TestSQPollSubmitCountsPublished lets the SQ thread take the SQEs before
// Submit is called: Submit still counts them, once.
func TestSQPollSubmitCountsPublished(t *testing.T) {
	r := newRing(t, Params{Entries: 8, SQPoll: true, SQThreadIdle: time.Second})
	nopRoundTrip(t, r, 0, 1, true) // the SQ thread is awake and polling
	for i := 0; i < 4; i++ {
		prepNop(mustGetSQE(t, r), uint64(10+i))
	}
	r.Publish()
	deadline := time.Now().Add(10 * time.Second)
	for r.SQPending() != 0 || r.CQReady() < 4 {
		if r.NeedWakeup() {
			if _, err := r.Enter(0, 0, EnterSQWakeup); err != nil {
				t.Fatal(err)
			}
		}
		if time.Now().After(deadline) {
			t.Fatalf("SQ thread left %d SQEs pending, %d CQEs ready", r.SQPending(), r.CQReady())
		}
		time.Sleep(time.Millisecond)
	}
	if n, err := r.Submit(); err != nil || n != 4 {
		t.Fatalf("Submit after the SQ thread took 4 SQEs = %d, %v; want 4, nil", n, err)
	}
	if n, err := r.Submit(); err != nil || n != 0 {
		t.Fatalf("second Submit = %d, %v; want 0, nil: an SQE was counted twice", n, err)
	}
	checkNops(t, reap(t, r, 4), 10, 4)
}
