package main

import (
	"errors"
	"fmt"
	"os"
	"path/filepath"
	"slices"
	"strconv"
	"strings"
	"syscall"
	"time"
)

// defaultSQPollIdle is short so that an SQPOLL thread left without work (a
// failed run, a pause between engines) sleeps instead of holding one of the
// machine's cores; in a measured run requests arrive every few microseconds,
// so the thread never reaches it, and fio's 1 s kernel default behaves the same.
const defaultSQPollIdle = 2 * time.Millisecond

// features are the io_uring features -fixedbufs, -registerfiles and -sqpoll
// turn on, for the ring engine and, as fio options, for fio.
type features struct {
	fixedbufs     bool
	registerfiles bool
	sqpoll        bool
	sqpollIdle    time.Duration
}

func (f features) any() bool { return f.fixedbufs || f.registerfiles || f.sqpoll }

// names lists the features on, in the order the mode column shows them.
func (f features) names() []string {
	var ns []string
	if f.fixedbufs {
		ns = append(ns, "fixedbufs")
	}
	if f.registerfiles {
		ns = append(ns, "registerfiles")
	}
	if f.sqpoll {
		ns = append(ns, "sqpoll")
	}
	return ns
}

// suffix is what the features add to a row's mode, such as "+fixedbufs+sqpoll".
func (f features) suffix() string {
	var b strings.Builder
	for _, n := range f.names() {
		b.WriteString("+" + n)
	}
	return b.String()
}

// forFio is what fio actually runs with: its io_uring engine registers its
// files whenever sqthread_poll is set, so its row says so.
func (f features) forFio() features {
	if f.sqpoll {
		f.registerfiles = true
	}
	return f
}

// fioArgs are fio's io_uring engine options for f. fio has no option for
// the SQPOLL idle time: it leaves the kernel's default of 1 s.
func (f features) fioArgs() []string {
	var args []string
	if f.fixedbufs {
		args = append(args, "--fixedbufs=1")
	}
	if f.registerfiles {
		args = append(args, "--registerfiles=1")
	}
	if f.sqpoll {
		args = append(args, "--sqthread_poll=1")
	}
	return args
}

// validateFeatures refuses the feature flags where they would measure
// nothing, or where ringwake's blocking API cannot express them.
func (c *config) validateFeatures() error {
	f := c.feat
	if f.sqpollIdle < 0 {
		return usagef("-sqpoll-idle %v is negative", f.sqpollIdle)
	}
	if c.explicit["sqpoll-idle"] && !f.sqpoll {
		return usagef("-sqpoll-idle needs -sqpoll")
	}
	if !f.any() {
		return nil
	}
	first := "-" + f.names()[0]
	ring := slices.Contains(c.engines, "ring")
	if !ring && !slices.Contains(c.engines, "fio") && !slices.Contains(c.engines, "cpeak") {
		return usagef("%s applies to the ring, fio and cpeak engines, and -engine %s runs none of them", first, strings.Join(c.engines, ","))
	}
	if c.workload == "nop" {
		// A row labeled nop+fixedbufs would claim a measurement that did not happen.
		if f.fixedbufs {
			return usagef("-fixedbufs does not apply to -workload nop: a NOP moves no data")
		}
		if f.registerfiles {
			return usagef("-registerfiles does not apply to -workload nop: a NOP names no file")
		}
	}
	if ring && slices.Contains(c.modes, "block") {
		if f.fixedbufs && f.registerfiles {
			return usagef("-fixedbufs with -registerfiles needs -mode callback: ringwake's blocking calls take a registered buffer (FixedBuffers.ReadAt) or a registered file (FixedFile.ReadAt), not both")
		}
		if f.registerfiles && c.workload == "fsync" {
			return usagef("-registerfiles with -workload fsync needs -mode callback: ringwake's blocking Fsync takes a plain descriptor, not a registered file")
		}
	}
	return nil
}

// ringInfo is what the kernel reports about a ring in /proc/self/fdinfo:
// the evidence that a feature is in effect, rather than merely asked for.
type ringInfo struct {
	sqThread  int // tid of the SQPOLL thread, -1 for none
	userFiles int // registered file table slots
	userBufs  int // registered buffers
}

func (ri ringInfo) String() string {
	return fmt.Sprintf("SqThread %d, UserFiles %d, UserBufs %d", ri.sqThread, ri.userFiles, ri.userBufs)
}

// ringFds lists the process's io_uring descriptors.
func ringFds() []int {
	ents, err := os.ReadDir("/proc/self/fd")
	if err != nil {
		return nil
	}
	var fds []int
	for _, e := range ents {
		fd, err := strconv.Atoi(e.Name())
		if err != nil {
			continue
		}
		if l, err := os.Readlink(filepath.Join("/proc/self/fd", e.Name())); err == nil && l == "anon_inode:[io_uring]" {
			fds = append(fds, fd)
		}
	}
	return fds
}

// newRingFd is the one io_uring descriptor in after that is not in before:
// the ring just set up, found without asking the runtime for its descriptor.
func newRingFd(before, after []int) (int, bool) {
	fd, n := -1, 0
	for _, x := range after {
		if !slices.Contains(before, x) {
			fd, n = x, n+1
		}
	}
	return fd, n == 1
}

// readRingInfo parses the fdinfo of io_uring descriptor fd.
func readRingInfo(fd int) (ringInfo, error) {
	b, err := os.ReadFile("/proc/self/fdinfo/" + strconv.Itoa(fd))
	if err != nil {
		return ringInfo{}, err
	}
	return parseRingInfo(string(b))
}

func parseRingInfo(s string) (ringInfo, error) {
	ri := ringInfo{sqThread: -1}
	found := 0
	for _, line := range strings.Split(s, "\n") {
		k, v, ok := strings.Cut(line, ":")
		if !ok {
			continue
		}
		var dst *int
		switch strings.TrimSpace(k) {
		case "SqThread":
			dst = &ri.sqThread
		case "UserFiles":
			dst = &ri.userFiles
		case "UserBufs":
			dst = &ri.userBufs
		default:
			continue
		}
		n, err := strconv.Atoi(strings.TrimSpace(v))
		if err != nil {
			return ringInfo{}, fmt.Errorf("fdinfo line %q: %w", line, err)
		}
		*dst = n
		found++
	}
	if found != 3 {
		return ringInfo{}, errors.New("fdinfo lacks SqThread, UserFiles or UserBufs")
	}
	return ri, nil
}

// checkRingInfo compares what the kernel reports with the features asked
// for, and says what is missing.
func checkRingInfo(ri ringInfo, f features, bufs int) error {
	var miss []string
	if f.sqpoll && ri.sqThread <= 0 {
		miss = append(miss, "no SQPOLL thread")
	}
	if f.registerfiles && ri.userFiles < 1 {
		miss = append(miss, "no registered file table")
	}
	if f.fixedbufs && ri.userBufs != bufs {
		miss = append(miss, fmt.Sprintf("%d registered buffers, want %d", ri.userBufs, bufs))
	}
	if len(miss) > 0 {
		return fmt.Errorf("the kernel reports %s (fdinfo: %v)", strings.Join(miss, ", "), ri)
	}
	return nil
}

// memlockHint explains the usual reason RegisterBuffers fails for a user
// without CAP_IPC_LOCK.
func memlockHint(err error) string {
	if errors.Is(err, syscall.ENOMEM) {
		return " (registered buffers count against RLIMIT_MEMLOCK: see ulimit -l)"
	}
	return ""
}
