//go:build unix

package flame

import (
	"bufio"
	"bytes"
	"log/slog"
	"os"
	"os/exec"
	"runtime"
	"strings"
	"sync"
	"syscall"
	"time"
)

// childProc is a runner's process, as its parent manages it: started from
// a goroutine locked to its OS thread (Linux sends the parent-death signal
// when the thread that forked the child exits, so that thread must live as
// long as the child), in a process group of its own, its stdout and stderr
// logged line by line, reaped when it exits. It knows nothing of the
// protocol the runner speaks (package session).
//
// Ownership: pid and log are set by startChild and read-only after;
// exitState is written by the waiting goroutine before it closes exited;
// tail is guarded by tailMu.
type childProc struct {
	pid       int
	log       *slog.Logger
	exited    chan struct{} // closed once the child has been reaped
	exitState string        // how it exited, e.g. "exit status 1", "signal: killed"

	pipes   []*os.File     // read ends of the child's stdout and stderr
	outputs sync.WaitGroup // the output readers
	tailMu  sync.Mutex
	tail    []string // the last stderr lines, for boot errors
}

const (
	// pipeGrace is how long output readers wait for EOF after the runner
	// exited (a grandchild may hold the pipe) before they are closed.
	pipeGrace = 500 * time.Millisecond
	// tailLines is how many stderr lines a failed boot reports.
	tailLines = 8
)

// startChild starts cmd (whose Stdout and Stderr it sets) and returns once
// the child runs; log, with the child's pid added, receives its output.
func startChild(cmd *exec.Cmd, log *slog.Logger) (*childProc, error) {
	outR, outW, err := os.Pipe()
	if err != nil {
		return nil, err
	}
	errR, errW, err := os.Pipe()
	if err != nil {
		outR.Close()
		outW.Close()
		return nil, err
	}
	cmd.Stdout, cmd.Stderr = outW, errW
	c := &childProc{exited: make(chan struct{})}
	started := make(chan error, 1)
	go c.run(cmd, started)
	err = <-started
	outW.Close()
	errW.Close()
	if err != nil {
		outR.Close()
		errR.Close()
		return nil, err
	}
	c.log = log.With("pid", c.pid)
	c.pipes = []*os.File{outR, errR}
	c.outputs.Add(2)
	go c.readOutput(outR, "stdout")
	go c.readOutput(errR, "stderr")
	return c, nil
}

// run starts the child and waits for it, on a goroutine locked to its OS
// thread for the child's whole life (see childProc). The thread exits with
// this goroutine, after the child.
func (c *childProc) run(cmd *exec.Cmd, started chan<- error) {
	runtime.LockOSThread()
	if err := cmd.Start(); err != nil {
		started <- err
		return
	}
	c.pid = cmd.Process.Pid
	started <- nil
	if err := cmd.Wait(); err == nil {
		c.exitState = "exit status 0"
	} else {
		c.exitState = err.Error()
	}
	close(c.exited)
}

// readOutput sends one of the child's output streams to the log, a line at
// a time (lines above 16 KiB are split).
func (c *childProc) readOutput(f *os.File, stream string) {
	defer c.outputs.Done()
	r := bufio.NewReaderSize(f, 16<<10)
	for {
		line, err := r.ReadSlice('\n')
		if len(line) > 0 {
			s := string(bytes.TrimRight(line, "\r\n"))
			c.log.Info("runner output", "stream", stream, "line", s)
			if stream == "stderr" {
				c.tailMu.Lock()
				if len(c.tail) == tailLines {
					c.tail = append(c.tail[:0], c.tail[1:]...)
				}
				c.tail = append(c.tail, s)
				c.tailMu.Unlock()
			}
		}
		if err != nil && err != bufio.ErrBufferFull {
			return
		}
	}
}

// lastOutput returns the last stderr lines, for an error message.
func (c *childProc) lastOutput() string {
	c.tailMu.Lock()
	defer c.tailMu.Unlock()
	if len(c.tail) == 0 {
		return ""
	}
	return "; last output: " + strings.Join(c.tail, " | ")
}

// signal sends sig to the child's process group (the runner and whatever
// it started), unless the child has already been reaped.
func (c *childProc) signal(sig syscall.Signal) {
	select {
	case <-c.exited:
		return
	default:
	}
	if c.pid > 0 {
		_ = syscall.Kill(-c.pid, sig)
	}
}

// kill ends the child: it is killed and reaped, and its output released,
// when kill returns.
func (c *childProc) kill() {
	c.signal(syscall.SIGKILL)
	<-c.exited
	c.releaseOutput()
}

// waitOutput waits up to d for the output readers to reach EOF.
func (c *childProc) waitOutput(d time.Duration) bool {
	drained := make(chan struct{})
	go func() {
		c.outputs.Wait()
		close(drained)
	}()
	select {
	case <-drained:
		return true
	case <-time.After(d):
		return false
	}
}

// releaseOutput waits briefly for the output readers to see EOF, then
// closes the pipes under them (a grandchild may still hold them open).
func (c *childProc) releaseOutput() {
	c.waitOutput(pipeGrace)
	for _, f := range c.pipes {
		f.Close() // unblocks a reader still waiting for EOF
	}
	c.outputs.Wait()
}
