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
// what must stay internal. The files:
//
// Shared by both engines (a method whose kernel side differs checks r.soft
// and hands the call to the software engine):
//   - ring.go: the Ring type, Params and setup with flag fallback (New), the
//     mmaps, Close, and the setup-result readers;
//   - submit.go: the SQ producer side (GetSQE, Publish, SQPending, SQSpace,
//     the SQ flag readers) run by both; Enter, EnterTimeout, Submit and
//     SubmitAndWait, which go to the software engine's enter on NewSoft's
//     rings; chunked submission (SubmitChunks, kernel ring only);
//   - complete.go: the CQ consumer side (CQReady, PeekBatch, overflow);
//   - register.go: io_uring_register (files, buffers, eventfd, probe, io-wq
//     limits), each handed to soft_register.go on the software ring.
//
// The kernel ABI, which the software ring mirrors:
//   - abi.go, consts.go: the kernel's structs and constants, and the raw
//     io_uring_register(2) call (kernel ring only).
//
// The software ring (NewSoft), which stands in where the kernel refuses
// io_uring:
//   - soft.go: NewSoft, how the software engine differs from io_uring, its
//     enter, and posting completions into the Go CQ;
//   - soft_sched.go: the worker pool that runs consumed SQEs, FIFO, bounded;
//     links, timeouts and cancellation;
//   - soft_exec.go: validating each SQE as the kernel does and running each
//     opcode as the plain syscall it stands for;
//   - soft_fsops.go: the directory operations (RENAMEAT, UNLINKAT, MKDIRAT,
//     SYMLINKAT, LINKAT);
//   - soft_poll.go: requests on pollable descriptors, waited for in one
//     poll(2) loop so they never hold a worker and stay cancelable;
//   - soft_register.go: registered files and buffers in Go memory.
package ring
