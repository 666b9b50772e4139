package ring

import (
	"syscall"

	"github.com/ringwake/ringwake/sqe"
	"golang.org/x/sys/unix"
)

// Requests on pollable descriptors never wait on a worker: a read or write
// that would block parks in the group of its descriptor, and one goroutine
// waits for every group in a single poll(2). The poll set has one entry per
// descriptor however many requests wait on it, so parking is O(1) and the
// set never outgrows the open descriptors. Within a group, reads and writes
// queue FIFO and readiness wakes one of each at a time (its "turn"): the
// woken request makes its nonblocking attempt and either completes or parks
// again at the tail, and only then does the next one get the descriptor,
// so data arriving for one reader never stampedes thousands.

// pollGroup gathers the requests parked on one descriptor.
type pollGroup struct {
	fd       int
	readers  parkList // reads waiting for POLLIN
	writers  parkList // writes waiting for POLLOUT
	polls    parkList // single-shot POLL_ADDs: all complete on readiness
	readTurn *softReq // the reader woken last, until it completes or parks again
	wrTurn   *softReq
	dead     bool // out of e.groups; the poll loop's snapshot may still name it
}

type parkList struct{ first, last *softReq }

func (l *parkList) push(q *softReq) {
	q.pprev, q.pnext = l.last, nil
	if l.last != nil {
		l.last.pnext = q
	} else {
		l.first = q
	}
	l.last = q
}

func (l *parkList) remove(q *softReq) {
	if q.pprev != nil {
		q.pprev.pnext = q.pnext
	} else {
		l.first = q.pnext
	}
	if q.pnext != nil {
		q.pnext.pprev = q.pprev
	} else {
		l.last = q.pprev
	}
	q.pprev, q.pnext = nil, nil
}

// events is what the group waits for now: a direction whose turn is out
// waits for that request, not for the descriptor.
func (g *pollGroup) events() int16 {
	var ev int16
	if g.readers.first != nil && g.readTurn == nil {
		ev |= unix.POLLIN
	}
	if g.writers.first != nil && g.wrTurn == nil {
		ev |= unix.POLLOUT
	}
	for p := g.polls.first; p != nil; p = p.pnext {
		ev |= p.pollEv
	}
	return ev
}

func (g *pollGroup) list(q *softReq) *parkList {
	switch {
	case q.s.Opcode == sqe.OpPollAdd:
		return &g.polls
	case isWriteOp(q.s.Opcode):
		return &g.writers
	}
	return &g.readers
}

// parkLocked parks q until its descriptor is ready for events, starting
// the poll loop on first use.
func (e *softEngine) parkLocked(q *softReq, events int16) syscall.Errno {
	if errno := e.startPollLocked(); errno != 0 {
		return errno
	}
	e.releaseTurnLocked(q)
	g := e.groups[q.fd]
	if g == nil {
		g = &pollGroup{fd: q.fd}
		e.groups[q.fd] = g
	}
	before := g.events()
	q.pollEv = events
	g.list(q).push(q)
	q.pgroup = g
	q.state = stParkedPoll
	e.nparked++
	if g.events() != before {
		e.wakePollLocked()
	}
	return 0
}

// unparkLocked takes a parked q out of its group.
func (e *softEngine) unparkLocked(q *softReq) {
	g := q.pgroup
	g.list(q).remove(q)
	q.pgroup = nil
	e.nparked--
	e.dropGroupLocked(g)
}

// releaseTurnLocked ends q's turn on its descriptor, if it holds one: the
// next waiter in that direction may be woken.
func (e *softEngine) releaseTurnLocked(q *softReq) {
	g := q.pgroup
	if g == nil || q.state == stParkedPoll {
		return
	}
	q.pgroup = nil
	switch q {
	case g.readTurn:
		g.readTurn = nil
		if g.readers.first != nil {
			e.wakePollLocked()
		}
	case g.wrTurn:
		g.wrTurn = nil
		if g.writers.first != nil {
			e.wakePollLocked()
		}
	}
	e.dropGroupLocked(g)
}

func (e *softEngine) dropGroupLocked(g *pollGroup) {
	if g.readers.first != nil || g.writers.first != nil || g.polls.first != nil ||
		g.readTurn != nil || g.wrTurn != nil {
		return
	}
	delete(e.groups, g.fd)
	g.dead = true
	if e.closing {
		e.wakePollLocked() // it may be the last thing the loop waits for
	}
}

// readyGroupLocked acts on the poll result rev of g.
func (e *softEngine) readyGroupLocked(g *pollGroup, rev int16) {
	nval := rev&unix.POLLNVAL != 0
	if nval {
		// Closed under the requests: let each attempt fail with EBADF.
		rev |= unix.POLLIN | unix.POLLOUT
	}
	wake := func(l *parkList, turn **softReq) {
		if q := l.first; q != nil && *turn == nil {
			l.remove(q)
			e.nparked--
			*turn = q
			q.woke = true
			e.pushRunLocked(q)
		}
	}
	if rev&(unix.POLLIN|unix.POLLHUP|unix.POLLERR) != 0 {
		wake(&g.readers, &g.readTurn)
	}
	if rev&(unix.POLLOUT|unix.POLLHUP|unix.POLLERR) != 0 {
		wake(&g.writers, &g.wrTurn)
	}
	for p := g.polls.first; p != nil; {
		next := p.pnext
		res := int32(uint16(rev) & uint16(p.pollEv|unix.POLLERR|unix.POLLHUP))
		if nval {
			res = -int32(syscall.EBADF)
		}
		if res != 0 {
			p.state = stRunning
			g.polls.remove(p)
			p.pgroup = nil
			e.nparked--
			e.scheduleLocked(e.completeLocked(p, res))
		}
		p = next
	}
	e.dropGroupLocked(g)
}

// startPollLocked starts the poll loop, with its wake eventfd and the
// epoll instance for multishot polls, on first use.
func (e *softEngine) startPollLocked() syscall.Errno {
	if e.pollOn {
		return 0
	}
	wfd, err := unix.Eventfd(0, unix.EFD_CLOEXEC|unix.EFD_NONBLOCK)
	if err != nil {
		return err.(syscall.Errno)
	}
	epfd, err := unix.EpollCreate1(unix.EPOLL_CLOEXEC)
	if err != nil {
		unix.Close(wfd)
		return err.(syscall.Errno)
	}
	e.wakeFd, e.epFd = wfd, epfd
	e.groups = make(map[int]*pollGroup)
	e.pollOn = true
	e.wg.Add(1)
	go e.pollLoop()
	return 0
}

// wakePollLocked makes the poll loop rebuild its descriptor set.
func (e *softEngine) wakePollLocked() {
	if e.pollOn {
		one := [8]byte{1}
		if isBigEndian {
			one = [8]byte{7: 1}
		}
		rawWrite(e.wakeFd, one[:])
	}
}

// pollLoop waits for the wake eventfd, the multishot epoll and every
// group's descriptor in one poll(2).
func (e *softEngine) pollLoop() {
	defer e.wg.Done()
	var pfds []unix.PollFd
	var groups []*pollGroup
	var drain [8]byte
	var evs [32]unix.EpollEvent
	for {
		e.mu.Lock()
		if e.closing && len(e.groups) == 0 && len(e.mpolls) == 0 {
			e.mu.Unlock()
			return
		}
		pfds = append(pfds[:0],
			unix.PollFd{Fd: int32(e.wakeFd), Events: unix.POLLIN},
			unix.PollFd{Fd: int32(e.epFd), Events: unix.POLLIN})
		groups = append(groups[:0], nil, nil)
		for _, g := range e.groups {
			if ev := g.events(); ev != 0 {
				pfds = append(pfds, unix.PollFd{Fd: int32(g.fd), Events: ev})
				groups = append(groups, g)
			}
		}
		e.mu.Unlock()

		_, err := unix.Poll(pfds, -1)
		if err == unix.EINTR {
			continue
		}
		if pfds[0].Revents != 0 {
			unix.Read(int(pfds[0].Fd), drain[:])
		}
		e.mu.Lock()
		if pfds[1].Revents != 0 {
			for {
				n, err := unix.EpollWait(e.epFd, evs[:], 0)
				if err == unix.EINTR {
					continue
				}
				if n > 0 {
					e.multiEventsLocked(evs[:n])
				}
				if n < len(evs) {
					break
				}
			}
		}
		for i := 2; i < len(pfds); i++ {
			g := groups[i]
			switch {
			case g.dead:
			case err != nil:
				// poll itself failed: fail the waiters rather than spin.
				e.failGroupLocked(g, -int32(err.(syscall.Errno)))
			case pfds[i].Revents != 0:
				e.readyGroupLocked(g, pfds[i].Revents)
			}
		}
		e.mu.Unlock()
		clear(groups)
	}
}

func (e *softEngine) failGroupLocked(g *pollGroup, res int32) {
	for _, l := range []*parkList{&g.readers, &g.writers, &g.polls} {
		for l.first != nil {
			e.scheduleLocked(e.completeLocked(l.first, res))
		}
	}
}

// defaultPollMask is what vfs_poll reports for a file without a poll
// method (a regular file): always ready.
const defaultPollMask = unix.POLLIN | unix.POLLOUT | pollRdNorm | pollWrNorm

// POLLRDNORM and POLLWRNORM, which x/sys/unix does not name.
const (
	pollRdNorm = 0x40
	pollWrNorm = 0x100
)

// armMultiLocked registers a multishot POLL_ADD, edge-triggered as the
// kernel's (a CQE per wakeup, not one per poll while data sits unread), on
// a dup of its descriptor so that several may watch one file. A file that
// cannot be polled is ready once, with no CQEFMore, as in the kernel.
func (e *softEngine) armMultiLocked(q *softReq) (res int32, armed bool) {
	if errno := e.startPollLocked(); errno != 0 {
		return -int32(errno), false
	}
	var st unix.Stat_t
	if err := unix.Fstat(q.fd, &st); err != nil {
		return -int32(err.(syscall.Errno)), false
	}
	once := int32(uint16(defaultPollMask) & uint16(q.pollEv|unix.POLLERR|unix.POLLHUP))
	switch st.Mode & unix.S_IFMT {
	case unix.S_IFREG, unix.S_IFDIR, unix.S_IFBLK:
		return once, false
	}
	nfd, err := unix.FcntlInt(uintptr(q.fd), unix.F_DUPFD_CLOEXEC, 0)
	if err != nil {
		return -int32(err.(syscall.Errno)), false
	}
	ev := unix.EpollEvent{Events: uint32(uint16(q.pollEv)) | unix.EPOLLET, Fd: int32(nfd)}
	if err := unix.EpollCtl(e.epFd, unix.EPOLL_CTL_ADD, nfd, &ev); err != nil {
		unix.Close(nfd)
		if err == unix.EPERM {
			return once, false
		}
		return -int32(err.(syscall.Errno)), false
	}
	if e.mpolls == nil {
		e.mpolls = make(map[int]*softReq)
	}
	q.mfd = nfd
	e.mpolls[nfd] = q
	q.state = stMultiPoll
	return 0, true
}

func (e *softEngine) disarmMultiLocked(q *softReq) {
	unix.EpollCtl(e.epFd, unix.EPOLL_CTL_DEL, q.mfd, nil)
	unix.Close(q.mfd)
	delete(e.mpolls, q.mfd)
	q.mfd = -1
	if e.closing {
		e.wakePollLocked()
	}
}

// multiEventsLocked delivers what the epoll instance reports: a CQE with
// CQEFMore per event, or the final one when the CQ has no room.
func (e *softEngine) multiEventsLocked(evs []unix.EpollEvent) {
	for _, ev := range evs {
		q := e.mpolls[int(ev.Fd)]
		if q == nil || q.state != stMultiPoll {
			continue
		}
		res := int32(uint16(ev.Events) & uint16(q.pollEv|unix.POLLERR|unix.POLLHUP))
		if res == 0 {
			continue
		}
		if e.cqRoomLocked() {
			e.postLocked(q.s.UserData, res, CQEFMore)
			continue
		}
		e.scheduleLocked(e.completeLocked(q, res))
	}
}
