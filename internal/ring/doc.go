// Package ring owns one io_uring instance: setup with flag fallback, the
// three shared mmaps, lock-free access to the SQ and CQ rings, the raw
// io_uring_enter(2) and the io_uring_register(2) operations the runtime needs.
//
// Concurrency: the submission side (GetSQE, Publish, SQSpace) belongs to one
// goroutine at a time, serialized by the caller; the completion side
// (CQReady, PeekBatch) likewise has a single consumer. Enter, EnterTimeout,
// Submit, SubmitAndWait, FlushOverflow, SQPending and the flag readers touch
// only kernel-shared words and the fd, so any goroutine may call them at any
// time. Close must not race with anything.
//
// Two engines live here behind the one Ring type, and stay in one package on
// purpose: both use the very same SQ and CQ code (the head and tail words,
// masks, GetSQE, Publish, SQPending, PeekBatch, CQReady), and only what
// stands on the kernel's side differs. A separate package for the software
// engine would have to export the ring layout it shares, which is exactly
// what must stay internal. submit.go's and complete.go's queue code is the
// part both engines run. The files:
//
// The kernel's io_uring (New):
//   - ring.go: setup with flag fallback, the mmaps, Close;
//   - abi.go, consts.go: the kernel ABI structs and constants;
//   - submit.go: the SQ producer side (GetSQE, Publish) and
//     io_uring_enter, chunked submission (SubmitChunks);
//   - complete.go: the CQ consumer side (PeekBatch, overflow);
//   - register.go: io_uring_register (files, buffers, probe, iowq limits).
//
// The software ring (NewSoft), which stands in where the kernel refuses
// io_uring:
//   - soft.go: NewSoft and how the software engine differs from io_uring;
//   - soft_sched.go: the worker pool that runs consumed SQEs, FIFO, bounded;
//   - soft_exec.go: each opcode as the plain syscall it stands for;
//   - soft_poll.go: requests on pollable descriptors, waited for in one
//     poll(2) loop so they never hold a worker and stay cancelable;
//   - soft_register.go: registered files and buffers in Go memory.
package ring
