package runtime_test

import (
	"bytes"
	"context"
	"errors"
	"fmt"
	"go/ast"
	"go/parser"
	"go/token"
	"math/rand/v2"
	"os"
	"os/exec"
	"path/filepath"
	"regexp"
	"runtime"
	"runtime/debug"
	"strings"
	"sync"
	"testing"
	"time"

	"golang.org/x/sys/unix"

	"github.com/ringwake/ringwake/internal/uringtest"
	ringwake "github.com/ringwake/ringwake/runtime"
)

// stackJob is one I/O issued from arrays local to the deepest frame of a
// recursion, so that the goroutine's stack has grown (and, after it returns,
// may shrink at the next GC) around every request.
type stackJob struct {
	r     *ringwake.Ring
	fd    int
	off   int64
	seed  uint32
	ready chan<- struct{} // the pipe peer's cue: the request is about to be in flight
}

// fileAtDepth writes a stack array to the file and reads it back into
// another, verifying every byte against a third.
//
//go:noinline
func (j *stackJob) fileAtDepth(depth int) error {
	var pad [192]byte
	pad[depth%len(pad)] = byte(depth)
	if depth > 0 {
		err := j.fileAtDepth(depth - 1)
		if pad[depth%len(pad)] != byte(depth) {
			return fmt.Errorf("frame %d corrupted", depth)
		}
		return err
	}
	var out, in, want [4096]byte
	fillPattern(out[:], j.seed)
	fillPattern(want[:], j.seed)
	ctx := context.Background()
	if err := writeFullAt(ctx, j.r, j.fd, out[:], j.off); err != nil {
		return err
	}
	if err := readFullAt(ctx, j.r, j.fd, in[:], j.off); err != nil {
		return err
	}
	if in != want {
		return fmt.Errorf("seed %d: read-back differs at byte %d", j.seed, firstDiff(in[:], want[:]))
	}
	if out != want {
		return fmt.Errorf("seed %d: the written array changed", j.seed)
	}
	return nil
}

// pipeReadAtDepth reads from a pipe whose writer is cued to write only a few
// milliseconds later, so the read is in flight while the GC runs.
//
//go:noinline
func (j *stackJob) pipeReadAtDepth(depth int) error {
	var pad [192]byte
	pad[depth%len(pad)] = byte(depth)
	if depth > 0 {
		err := j.pipeReadAtDepth(depth - 1)
		if pad[depth%len(pad)] != byte(depth) {
			return fmt.Errorf("frame %d corrupted", depth)
		}
		return err
	}
	var in, want [4096]byte
	fillPattern(want[:], j.seed)
	j.ready <- struct{}{}
	if err := readFullAt(context.Background(), j.r, j.fd, in[:], 0); err != nil {
		return err
	}
	if in != want {
		return fmt.Errorf("seed %d: pipe read differs at byte %d", j.seed, firstDiff(in[:], want[:]))
	}
	return nil
}

// pipeWriteAtDepth writes into a full pipe whose reader is cued to drain it
// only a few milliseconds later, so the kernel reads the array late.
//
//go:noinline
func (j *stackJob) pipeWriteAtDepth(depth int) error {
	var pad [192]byte
	pad[depth%len(pad)] = byte(depth)
	if depth > 0 {
		err := j.pipeWriteAtDepth(depth - 1)
		if pad[depth%len(pad)] != byte(depth) {
			return fmt.Errorf("frame %d corrupted", depth)
		}
		return err
	}
	var out [4096]byte
	fillPattern(out[:], j.seed)
	j.ready <- struct{}{}
	return writeFullAt(context.Background(), j.r, j.fd, out[:], 0)
}

func firstDiff(a, b []byte) int {
	for i := range a {
		if a[i] != b[i] {
			return i
		}
	}
	return -1
}

// TestStackBuffersUnderGC: reads and writes through stack arrays in
// goroutines whose stacks grow and shrink around the I/O, with runtime.GC
// and debug.FreeOSMemory running all the while; every byte is verified.
func TestStackBuffersUnderGC(t *testing.T) {
	const (
		fileWorkers = 6
		fileIters   = 40
		pipeWorkers = 2
		pipeIters   = 12
	)
	r := newRing(t, ringwake.Config{Entries: 32})
	f, err := os.Create(filepath.Join(t.TempDir(), "stack"))
	if err != nil {
		t.Fatal(err)
	}
	defer f.Close()
	fd := int(f.Fd())

	defer gcStorm(t, func(i int) {
		if i%4 == 0 {
			debug.FreeOSMemory()
		}
	})()

	var wg sync.WaitGroup
	errs := make(chan error, fileWorkers+4*pipeWorkers)
	for w := range fileWorkers {
		wg.Add(1)
		go func() {
			defer wg.Done()
			rng := rand.New(rand.NewPCG(uint64(w), 2))
			for i := range fileIters {
				j := stackJob{r: r, fd: fd, off: int64(w) * 4096, seed: uint32(w<<16 | i)}
				if err := j.fileAtDepth(rng.IntN(1500)); err != nil {
					errs <- fmt.Errorf("file worker %d iteration %d: %w", w, i, err)
					return
				}
				if i%8 == 7 {
					runtime.GC() // shrink this goroutine's stack between requests
				}
			}
		}()
	}

	for w := range pipeWorkers {
		// Reads: the peer writes after a delay.
		pr, pw := rawPipe(t)
		ready := make(chan struct{})
		wg.Add(2)
		go func() {
			defer wg.Done()
			rng := rand.New(rand.NewPCG(uint64(w), 3))
			for i := range pipeIters {
				j := stackJob{r: r, fd: pr, seed: uint32(1<<24 | w<<16 | i), ready: ready}
				if err := j.pipeReadAtDepth(rng.IntN(1500)); err != nil {
					errs <- fmt.Errorf("pipe reader %d iteration %d: %w", w, i, err)
					close(ready)
					return
				}
			}
			close(ready)
		}()
		go func() {
			defer wg.Done()
			for i := 0; ; i++ {
				if _, ok := <-ready; !ok {
					return
				}
				time.Sleep(time.Duration(2+i%4) * time.Millisecond)
				if err := writeAllFd(pw, pattern(uint32(1<<24|w<<16|i), 4096)); err != nil {
					errs <- err
					return
				}
			}
		}()

		// Writes: the pipe holds one page and is full, so the ring's write
		// waits until the peer drains it after a delay.
		qr, qw := rawPipe(t)
		if _, err := unix.FcntlInt(uintptr(qw), unix.F_SETPIPE_SZ, 4096); err != nil {
			t.Fatal(err)
		}
		wready := make(chan struct{})
		wg.Add(2)
		go func() {
			defer wg.Done()
			defer close(wready)
			rng := rand.New(rand.NewPCG(uint64(w), 4))
			for i := range pipeIters {
				if err := writeAllFd(qw, make([]byte, 4096)); err != nil {
					errs <- err
					return
				}
				j := stackJob{r: r, fd: qw, seed: uint32(2<<24 | w<<16 | i), ready: wready}
				if err := j.pipeWriteAtDepth(rng.IntN(1500)); err != nil {
					errs <- fmt.Errorf("pipe writer %d iteration %d: %w", w, i, err)
					return
				}
			}
		}()
		go func() {
			defer wg.Done()
			buf := make([]byte, 8192)
			for i := 0; ; i++ {
				if _, ok := <-wready; !ok {
					return
				}
				time.Sleep(time.Duration(2+i%4) * time.Millisecond)
				if err := readAllFd(qr, buf); err != nil {
					errs <- err
					return
				}
				if !bytes.Equal(buf[4096:], pattern(uint32(2<<24|w<<16|i), 4096)) {
					errs <- fmt.Errorf("pipe writer %d iteration %d: the kernel read the wrong bytes from the stack array", w, i)
					return
				}
			}
		}()
	}
	within(t, "stack-buffer workers", wg.Wait)
	close(errs)
	for err := range errs {
		t.Error(err)
	}
}

func writeAllFd(fd int, p []byte) error {
	for len(p) > 0 {
		n, err := unix.Write(fd, p)
		if err != nil {
			return err
		}
		p = p[n:]
	}
	return nil
}

func readAllFd(fd int, p []byte) error {
	for len(p) > 0 {
		n, err := unix.Read(fd, p)
		if err != nil {
			return err
		}
		if n == 0 {
			return errors.New("pipe closed")
		}
		p = p[n:]
	}
	return nil
}

// TestBufferParamsLeakToHeap is the static half of the memory-safety
// argument: the compiler must report the buffer parameter of every call that
// hands it to the kernel as leaking, which makes it heap-allocate a caller's
// stack array; the heap never moves, and the runtime keeps it reachable.
func TestBufferParamsLeakToHeap(t *testing.T) {
	gotool := filepath.Join(runtime.GOROOT(), "bin", "go")
	if _, err := os.Stat(gotool); err != nil {
		if gotool, err = exec.LookPath("go"); err != nil {
			if uringtest.InCI() {
				t.Fatalf("no go tool to run escape analysis in CI: %v", err)
			}
			t.Skipf("no go tool: %v", err)
		}
	}
	out, err := exec.Command(gotool, "build", "-gcflags=-m", ".").CombinedOutput()
	if err != nil {
		t.Fatalf("go build -gcflags=-m: %v\n%s", err, out)
	}

	fset := token.NewFileSet()
	want := map[string]bool{
		"Ring.ReadAt": false, "Ring.WriteAt": false,
		"File.Read": false, "File.Write": false,
		"File.ReadAt": false, "File.WriteAt": false,
		"File.ReadAtContext": false, "File.WriteAtContext": false,
	}
	for _, name := range []string{"ring.go", "file.go"} {
		file, err := parser.ParseFile(fset, name, nil, 0)
		if err != nil {
			t.Fatal(err)
		}
		for _, d := range file.Decls {
			fn, ok := d.(*ast.FuncDecl)
			if !ok || fn.Recv == nil || len(fn.Recv.List) != 1 {
				continue
			}
			star, ok := fn.Recv.List[0].Type.(*ast.StarExpr)
			if !ok {
				continue
			}
			recv, ok := star.X.(*ast.Ident)
			if !ok {
				continue
			}
			key := recv.Name + "." + fn.Name.Name
			if _, ok := want[key]; !ok {
				continue
			}
			for _, field := range fn.Type.Params.List {
				for _, id := range field.Names {
					if id.Name != "p" {
						continue
					}
					pos := fset.Position(id.Pos())
					re := regexp.MustCompile(fmt.Sprintf(`(?m)\b%s:%d:%d: leaking param: p$`, regexp.QuoteMeta(name), pos.Line, pos.Column))
					if !re.Match(out) {
						t.Errorf("%s: parameter p (%s:%d:%d) is not reported as leaking: a caller's stack array could stay on the stack and move under the kernel", key, name, pos.Line, pos.Column)
					}
					want[key] = true
				}
			}
		}
	}
	for key, found := range want {
		if !found {
			t.Errorf("%s with a parameter p not found in ring.go or file.go", key)
		}
	}
	if t.Failed() {
		var lines []string
		for _, l := range strings.Split(string(out), "\n") {
			if strings.Contains(l, "leaking param") && (strings.Contains(l, "ring.go") || strings.Contains(l, "file.go")) {
				lines = append(lines, l)
			}
		}
		t.Logf("escape analysis said:\n%s", strings.Join(lines, "\n"))
	}
}
