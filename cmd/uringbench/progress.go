package main

import (
	"io"
	"os"
	"time"

	"github.com/schollz/progressbar/v3"
	"golang.org/x/sys/unix"
)

// isTerminal reports whether w is a terminal: the progress bar is for people
// watching, never for logs or pipes.
func isTerminal(w io.Writer) bool {
	f, ok := w.(*os.File)
	if !ok {
		return false
	}
	_, err := unix.IoctlGetTermios(int(f.Fd()), unix.TCGETS)
	return err == nil
}

// progressDelay keeps runs shorter than this free of any bar.
const progressDelay = time.Second

// startProgress shows a bar on stderr for one engine run, from its first
// second on, advanced by time or, with -ops, by claimed ops. The returned
// function removes it and returns once its goroutine has exited.
func (e *env) startProgress(label string, p *plan) (stop func()) {
	if !e.progress {
		return func() {}
	}
	quit := make(chan struct{})
	exited := make(chan struct{})
	start := time.Now()
	go func() {
		defer close(exited)
		select {
		case <-quit:
			return
		case <-time.After(progressDelay):
		}
		total := e.cfg.duration.Milliseconds()
		if p.ops > 0 {
			total = p.ops
		}
		bar := progressbar.NewOptions64(total,
			progressbar.OptionSetWriter(e.stderr),
			progressbar.OptionSetDescription(label),
			progressbar.OptionClearOnFinish(),
			progressbar.OptionSetPredictTime(false),
			progressbar.OptionThrottle(100*time.Millisecond))
		tick := time.NewTicker(100 * time.Millisecond)
		defer tick.Stop()
		for {
			cur := time.Since(start).Milliseconds()
			if p.ops > 0 {
				cur = p.seq.Load()
			}
			bar.Set64(min(cur, total))
			select {
			case <-quit:
				bar.Finish()
				return
			case <-tick.C:
			}
		}
	}()
	return func() {
		close(quit)
		<-exited
	}
}
