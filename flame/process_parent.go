//go:build unix

package flame

import (
	"bufio"
	"bytes"
	"context"
	"errors"
	"fmt"
	"io"
	"io/fs"
	"log/slog"
	"net"
	"os"
	"os/exec"
	"runtime"
	"strings"
	"sync"
	"sync/atomic"
	"syscall"
	"time"

	"github.com/goflame/goflame/flame/internal/link"
	"github.com/goflame/goflame/flame/internal/wire"
)

// Boot implements Backend: it starts a runner process and returns once the
// runner is READY, or fails (and kills the child) when ctx ends first.
func (b ProcessBackend) Boot(ctx context.Context, spec RunnerSpec) (Node, error) {
	if isRunner && os.Getenv(envParent) != "" {
		return nil, bootFailed(errors.New("flame: this process was started as a runner, but its main did not call flame.Main() first" + mainHint))
	}
	if err := ctx.Err(); err != nil {
		return nil, err
	}
	path := b.Path
	if path == "" {
		exe, err := os.Executable()
		if err != nil {
			return nil, bootFailed(fmt.Errorf("flame: runner executable: %w", err))
		}
		path = exe
	}
	ka := b.keepAlive()
	info := parentInfo{
		V: parentInfoVersion, Pool: spec.Pool, Runner: spec.ID, Conn: "fd:3",
		Build: buildID(), Registry: registryHash(), MaxMsg: b.maxMessage(),
		KeepAliveMS: ka.Milliseconds(), ParentPID: os.Getpid(),
	}
	env := make([]string, 0, len(os.Environ())+len(b.Env)+1)
	for _, kv := range os.Environ() {
		if !strings.HasPrefix(kv, envParent+"=") {
			env = append(env, kv)
		}
	}
	env = append(env, b.Env...)
	env = append(env, envParent+"="+info.encode())

	parentEnd, childEnd, err := link.Pair()
	if err != nil {
		return nil, fmt.Errorf("flame: runner %d: %w", spec.ID, err)
	}
	outR, outW, err := os.Pipe()
	if err != nil {
		parentEnd.Close()
		childEnd.Close()
		return nil, fmt.Errorf("flame: runner %d: pipe: %w", spec.ID, err)
	}
	errR, errW, err := os.Pipe()
	if err != nil {
		parentEnd.Close()
		childEnd.Close()
		outR.Close()
		outW.Close()
		return nil, fmt.Errorf("flame: runner %d: pipe: %w", spec.ID, err)
	}

	cmd := exec.Command(path, b.Args...)
	cmd.Env = env
	cmd.Stdout, cmd.Stderr = outW, errW
	cmd.ExtraFiles = []*os.File{childEnd} // fd 3
	cmd.SysProcAttr = sysProcAttr()

	n := &processNode{
		id:       spec.ID,
		max:      info.MaxMsg,
		exited:   make(chan struct{}),
		ctrlDone: make(chan struct{}),
		lanes:    make(map[*parentLane]struct{}),
		done:     make(chan struct{}),
	}
	started := make(chan error, 1)
	go n.spawn(cmd, started)
	err = <-started
	childEnd.Close()
	outW.Close()
	errW.Close()
	if err != nil {
		parentEnd.Close()
		outR.Close()
		errR.Close()
		err = fmt.Errorf("flame: runner %d: start %s: %w", spec.ID, path, err)
		if cannotExec(err) {
			err = bootFailed(err) // a missing or non-executable Path stays so
		}
		return nil, err
	}
	n.log = b.logger(ctx).With("pool", spec.Pool, "runner", spec.ID, "pid", n.pid)
	n.outputs.Add(2)
	n.pipes = []*os.File{outR, errR}
	go n.readOutput(outR, "stdout")
	go n.readOutput(errR, "stderr")

	// The handshake is bounded by ctx (BootTimeout); the heartbeat's limit
	// applies once the runner is READY and pings.
	n.ctrl, err = link.FromFile(parentEnd, 0)
	if err != nil {
		n.abort()
		return nil, fmt.Errorf("flame: runner %d: %w", spec.ID, err)
	}
	if err := n.handshake(ctx, info); err != nil {
		n.abort()
		return nil, fmt.Errorf("flame: runner %d (pid %d): %w", spec.ID, n.pid, err)
	}
	n.ctrl.SetTimeout(keepAliveTimeout(ka))
	n.log.Debug("runner process ready")
	go n.readControl()
	go heartbeat(n.ctrl, ka, n.ctrlDone)
	go n.monitor()
	return n, nil
}

// keepAliveTimeout is how long a side waits for the other's next frame
// (it pings every keepalive period) or for room to write one before it
// gives the other up.
func keepAliveTimeout(ka time.Duration) time.Duration { return max(3*ka, time.Second) }

var pingFrame = wire.AppendFrame(nil, wire.Ping, nil)

// heartbeat pings the other side every ka until stop is closed; a ping
// that cannot be written ends the connection.
func heartbeat(ctrl *link.Control, ka time.Duration, stop <-chan struct{}) {
	t := time.NewTicker(ka)
	defer t.Stop()
	for {
		select {
		case <-stop:
			return
		case <-t.C:
			if err := ctrl.Write(pingFrame); err != nil {
				ctrl.Close()
				return
			}
		}
	}
}

// processNode is the parent's handle on one runner process.
//
// Ownership: id, max, pid, log, ctrl and pipes are set during Boot and
// read-only after. exitState is written by the spawn goroutine before it
// closes exited; reason is written once (downOnce) before done is closed.
// A lane is used by one call at a time; the lane set is guarded by laneMu.
type processNode struct {
	id   uint64
	max  int
	pid  int
	log  *slog.Logger
	ctrl *link.Control // HELLO, READY, PING, LANE, CANCEL, SHUTDOWN

	exited    chan struct{} // closed once the child has been reaped
	exitState string        // how it exited, e.g. "exit status 1", "signal: killed"
	ctrlDone  chan struct{} // closed when the control connection has ended

	pipes   []*os.File     // read ends of the child's stdout and stderr
	outputs sync.WaitGroup // the output readers
	tailMu  sync.Mutex
	tail    []string // the last stderr lines, for boot errors

	laneMu      sync.Mutex
	lanes       map[*parentLane]struct{} // every open lane
	free        []*parentLane            // lanes with no call, for reuse
	nextLane    uint64                   // the last lane id given out (never reused: a late CANCEL names it)
	lanesClosed bool                     // the node is down: no new lanes

	stopping atomic.Bool // Shutdown was asked for
	downOnce sync.Once
	reason   error         // why the node stopped; set before done is closed
	done     chan struct{} // closed once the child is reaped and everything is released
}

// spawn starts the child and waits for it, on a goroutine locked to its OS
// thread for the child's whole life: Linux sends the parent-death signal
// when the thread that forked the child exits, so that thread must live as
// long as the child. The thread exits with this goroutine, after the child.
func (n *processNode) spawn(cmd *exec.Cmd, started chan<- error) {
	runtime.LockOSThread()
	if err := cmd.Start(); err != nil {
		started <- err
		return
	}
	n.pid = cmd.Process.Pid
	started <- nil
	err := cmd.Wait()
	if err == nil {
		n.exitState = "exit status 0"
	} else {
		n.exitState = err.Error()
	}
	close(n.exited)
}

// readOutput sends one of the child's output streams to the log, a line at
// a time (lines above 16 KiB are split).
func (n *processNode) readOutput(f *os.File, stream string) {
	defer n.outputs.Done()
	r := bufio.NewReaderSize(f, 16<<10)
	for {
		line, err := r.ReadSlice('\n')
		if len(line) > 0 {
			s := string(bytes.TrimRight(line, "\r\n"))
			n.log.Info("runner output", "stream", stream, "line", s)
			if stream == "stderr" {
				n.tailMu.Lock()
				if len(n.tail) == tailLines {
					n.tail = append(n.tail[:0], n.tail[1:]...)
				}
				n.tail = append(n.tail, s)
				n.tailMu.Unlock()
			}
		}
		if err != nil && err != bufio.ErrBufferFull {
			return
		}
	}
}

// lastOutput returns the last stderr lines, for an error message.
func (n *processNode) lastOutput() string {
	n.tailMu.Lock()
	defer n.tailMu.Unlock()
	if len(n.tail) == 0 {
		return ""
	}
	return "; last output: " + strings.Join(n.tail, " | ")
}

// handshake waits for HELLO and READY on the control stream the runner
// opens, within ctx.
func (n *processNode) handshake(ctx context.Context, info parentInfo) error {
	res := make(chan error, 1)
	go func() { res <- n.handshakeSync(info) }()
	select {
	case err := <-res:
		return err
	case <-ctx.Done():
		n.signal(syscall.SIGKILL)
		n.ctrl.Close()
		<-res
		if errors.Is(ctx.Err(), context.DeadlineExceeded) {
			return fmt.Errorf("no READY within the boot timeout (does the program's main call flame.Main() first?)%s: %w", n.lastOutput(), ctx.Err())
		}
		return fmt.Errorf("boot canceled: %w", ctx.Err())
	}
}

func (n *processNode) handshakeSync(info parentInfo) error {
	t, p, _, err := n.ctrl.ReadFrame(helloMax)
	if err != nil {
		return n.bootLost(err)
	}
	if t != wire.Hello {
		return fmt.Errorf("protocol error: got %s before HELLO", t)
	}
	h, err := wire.DecodeHello(p)
	if err != nil {
		return err
	}
	if err := checkHello(h, info); err != nil {
		return err
	}
	for { // a heartbeat may come first; the runner sends none before READY, but need not
		if t, p, _, err = n.ctrl.ReadFrame(helloMax); err != nil {
			return n.bootLost(err)
		}
		if t != wire.Ping {
			break
		}
	}
	switch t {
	case wire.Ready:
		return nil
	case wire.Error:
		m, err := wire.DecodeError(p)
		if err != nil {
			return err
		}
		if m.Code == wire.CodeVersionSkew {
			return bootFailed(fmt.Errorf("%w: %s", ErrVersionSkew, m.Message))
		}
		return fmt.Errorf("runner refused to start: %s", m.Message)
	default:
		return fmt.Errorf("protocol error: got %s instead of READY", t)
	}
}

// checkHello compares what the runner says it is with what the parent is.
func checkHello(h wire.HelloMsg, info parentInfo) error {
	switch {
	case h.Proto != wire.ProtocolVersion:
		return bootFailed(fmt.Errorf("%w: runner speaks protocol %d, parent %d", ErrVersionSkew, h.Proto, wire.ProtocolVersion))
	case h.Build != info.Build:
		return bootFailed(fmt.Errorf("%w: runner build %q, parent build %q: parent and runner must be the same binary", ErrVersionSkew, h.Build, info.Build))
	case h.Registry != info.Registry:
		return bootFailed(fmt.Errorf("%w: runner registry %s, parent registry %s: parent and runner must register the same functions (and errors) with the same types", ErrVersionSkew, h.Registry, info.Registry))
	}
	return nil
}

// bootLost explains a connection lost during the handshake.
func (n *processNode) bootLost(err error) error {
	select {
	case <-n.exited:
		n.waitOutput(pipeGrace) // its last words, for the error
		return bootFailed(fmt.Errorf("runner exited before its handshake (%s)%s%s", n.exitState, mainHint, n.lastOutput()))
	case <-time.After(lostGrace):
		return fmt.Errorf("runner connection lost during boot: %v%s", err, n.lastOutput())
	}
}

// mainHint says what a program whose runner never says HELLO must do.
const mainHint = ": the program's main must call flame.Main() first, and a test binary that uses ProcessBackend needs func TestMain(m *testing.M) { flame.Main(); os.Exit(m.Run()) }"

// bootFailed marks a boot failure that retrying cannot fix (ErrBootFailed):
// the pool fails the callers waiting for it at once.
func bootFailed(err error) error { return &bootFailedError{err} }

type bootFailedError struct{ err error }

func (e *bootFailedError) Error() string   { return e.err.Error() }
func (e *bootFailedError) Unwrap() []error { return []error{ErrBootFailed, e.err} }

// cannotExec reports whether starting a program failed because it is
// missing or cannot be executed, which retrying does not change.
func cannotExec(err error) bool {
	return errors.Is(err, fs.ErrNotExist) || errors.Is(err, fs.ErrPermission) ||
		errors.Is(err, syscall.ENOEXEC) || errors.Is(err, syscall.EISDIR) || errors.Is(err, exec.ErrNotFound)
}

// abort ends a boot that failed: the child is killed and reaped, and every
// goroutine of the node has returned when it returns.
func (n *processNode) abort() {
	n.signal(syscall.SIGKILL)
	if n.ctrl != nil {
		n.ctrl.Close()
	}
	<-n.exited
	n.releaseOutput()
}

// waitOutput waits up to d for the output readers to reach EOF.
func (n *processNode) waitOutput(d time.Duration) bool {
	drained := make(chan struct{})
	go func() {
		n.outputs.Wait()
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
func (n *processNode) releaseOutput() {
	n.waitOutput(pipeGrace)
	for _, f := range n.pipes {
		f.Close() // unblocks a reader still waiting for EOF
	}
	n.outputs.Wait()
}

// signal sends sig to the runner's process group (the runner and whatever
// it started), unless the runner has already been reaped.
func (n *processNode) signal(sig syscall.Signal) {
	select {
	case <-n.exited:
		return
	default:
	}
	if n.pid > 0 {
		_ = syscall.Kill(-n.pid, sig)
	}
}

// readControl reads the runner's control frames (pings) until the
// connection ends: EOF, an error, or no frame for the keepalive timeout.
func (n *processNode) readControl() {
	defer close(n.ctrlDone)
	defer n.ctrl.Close()
	for {
		t, _, conn, err := n.ctrl.ReadFrame(helloMax)
		if err != nil {
			if !n.stopping.Load() {
				n.log.Debug("runner control connection ended", "err", err)
			}
			return
		}
		if conn != nil {
			conn.Close()
		}
		if t != wire.Ping {
			n.log.Error("runner protocol error: unexpected frame on the control connection", "frame", t)
			return
		}
	}
}

// monitor waits for the child to exit or its connection to break, then
// marks the node down.
func (n *processNode) monitor() {
	select {
	case <-n.exited:
	case <-n.ctrlDone:
	}
	n.down()
}

// down stops the node once: the child is reaped (killed first if its
// connection broke and it does not exit by itself), the session closed and
// the output drained; then Done is closed.
func (n *processNode) down() {
	n.downOnce.Do(func() {
		if n.stopping.Load() {
			<-n.exited // Shutdown escalates if it must
		} else {
			select {
			case <-n.exited:
			case <-time.After(lostGrace):
				n.signal(syscall.SIGKILL)
				<-n.exited
			}
		}
		n.ctrl.Close()
		n.closeLanes()
		<-n.ctrlDone
		n.releaseOutput()
		if n.stopping.Load() {
			n.reason = fmt.Errorf("flame: runner %d (pid %d) shut down: %s", n.id, n.pid, n.exitState)
			n.log.Debug("runner process exited", "status", n.exitState)
		} else {
			n.reason = &runnerLostError{id: n.id, pid: n.pid, state: n.exitState}
			n.log.Warn("runner process down", "status", n.exitState)
		}
		close(n.done)
	})
}

// runnerLostError says why a runner went down; it matches ErrRunnerDown.
type runnerLostError struct {
	id    uint64
	pid   int
	state string
}

func (e *runnerLostError) Error() string {
	return fmt.Sprintf("flame: runner %d (pid %d) went down: %s", e.id, e.pid, e.state)
}

func (e *runnerLostError) Is(target error) bool { return target == ErrRunnerDown }

// Done implements Node: closed once the runner process has exited, been
// reaped, and its connection and output are released.
func (n *processNode) Done() <-chan struct{} { return n.done }

// Err says why the node stopped (nil before Done is closed). A crash
// matches ErrRunnerDown and names the exit status.
func (n *processNode) Err() error {
	select {
	case <-n.done:
		return n.reason
	default:
		return nil
	}
}

// Exec implements Node. Only functions registered with Register run on a
// runner process; a plain closure fails at once with ErrNotPortable.
func (n *processNode) Exec(ctx context.Context, fn func(context.Context) error) error {
	if err := claimInvocation(ctx, n); err != nil {
		return err
	}
	return fn(ctx)
}

// Invoke implements Invoker: it runs the function registered under id on
// the runner with encoded args and returns the encoded result.
func (n *processNode) Invoke(ctx context.Context, id string, args []byte) ([]byte, error) {
	return n.call(ctx, wire.KindCall, id, args)
}

// maxIdleLanes bounds the lanes a node keeps open for reuse (each is a
// socket pair: a descriptor here and one in the runner); lanes beyond it
// are closed when their call ends.
const maxIdleLanes = 256

// parentLane is the parent's end of one lane.
type parentLane struct {
	id    uint64
	conn  net.Conn
	r     *bufio.Reader
	calls uint64 // calls sent on it so far: the number CANCEL names
	buf   []byte // the last CALL frame's buffer, for reuse
}

// maxKeptCallBuffer is the largest CALL buffer a lane keeps for reuse.
const maxKeptCallBuffer = 64 << 10

// call runs one function on the runner over a lane of its own: CALL, then
// CANCEL (on the control connection) if ctx ends, until the runner's
// RESULT or ERROR. The goroutine that waits for the reply reads it from
// the lane itself, so a call wakes no other goroutine in this process.
// Once a call has had its reply its lane serves a later call; a lane that
// broke or carried something unexpected is closed.
func (n *processNode) call(ctx context.Context, kind wire.Kind, id string, args []byte) ([]byte, error) {
	if err := ctx.Err(); err != nil {
		return nil, err
	}
	m := callMsg(ctx, kind, id, args)
	if err := argsTooLarge(m, n.max); err != nil {
		return nil, err
	}
	ln, err := n.lane()
	if err != nil {
		return nil, n.laneFailed("cannot open a lane", err)
	}
	ln.calls++
	seq := ln.calls
	ln.buf = wire.AppendCall(ln.buf[:0], m)
	_, err = ln.conn.Write(ln.buf)
	if cap(ln.buf) > maxKeptCallBuffer {
		ln.buf = nil
	}
	if err != nil {
		n.dropLane(ln)
		return nil, n.laneFailed("sending the call", err)
	}
	sendCancel := func() {
		// A deadline is the runner's to enforce (it got the time left), so
		// that the handler sees DeadlineExceeded rather than Canceled.
		if !errors.Is(ctx.Err(), context.DeadlineExceeded) {
			_ = n.ctrl.Write(wire.AppendCancel(nil, ln.id, seq))
		}
	}
	var stop func() bool
	if ec, ok := ctx.(*execCtx); ok {
		stop = ec.onCancel(sendCancel) // no timer for the limit: see above
	} else {
		stop = context.AfterFunc(ctx, sendCancel)
	}
	t, p, err := wire.ReadFrame(ln.r, n.max)
	stop()
	if err != nil {
		n.dropLane(ln)
		if errors.Is(err, wire.ErrTooLarge) {
			return nil, &FuncError{Func: id, Code: CodeTooLarge,
				Message: fmt.Sprintf("flame: %s: runner %d sent a reply above the message size limit: %v", id, n.id, err)}
		}
		return nil, n.laneFailed("reading the reply", err)
	}
	switch t {
	case wire.Result:
		n.putLane(ln)
		return p, nil
	case wire.Error:
		em, err := wire.DecodeError(p)
		if err != nil {
			n.dropLane(ln)
			return nil, fmt.Errorf("flame: %s: runner %d: %w", id, n.id, err)
		}
		if em.Code == wire.CodeProtocol || em.Code == wire.CodeTooLarge {
			// The runner closes a lane whose framing it could not
			// follow (it does for an oversized CALL).
			n.dropLane(ln)
		} else {
			n.putLane(ln)
		}
		if em.Code == wire.CodePanic {
			return nil, &PanicError{Value: em.Message, Stack: em.Stack}
		}
		return nil, funcErrorOf(id, em)
	default:
		n.dropLane(ln)
		return nil, fmt.Errorf("flame: %s: runner %d: protocol error: unexpected %s", id, n.id, t)
	}
}

// errNodeDown: the node is down, its lanes closed.
var errNodeDown = errors.New("runner connection closed")

// lane returns an idle lane, or opens one.
func (n *processNode) lane() (*parentLane, error) {
	n.laneMu.Lock()
	if n.lanesClosed {
		n.laneMu.Unlock()
		return nil, errNodeDown
	}
	if k := len(n.free); k > 0 {
		ln := n.free[k-1]
		n.free = n.free[:k-1]
		n.laneMu.Unlock()
		return ln, nil
	}
	n.nextLane++
	id := n.nextLane
	n.laneMu.Unlock()
	conn, err := n.ctrl.OpenLane(id)
	if err != nil {
		return nil, err
	}
	ln := &parentLane{id: id, conn: conn, r: bufio.NewReader(conn)}
	n.laneMu.Lock()
	if n.lanesClosed {
		n.laneMu.Unlock()
		conn.Close()
		return nil, errNodeDown
	}
	n.lanes[ln] = struct{}{}
	n.laneMu.Unlock()
	return ln, nil
}

// putLane keeps a lane whose call is complete for a later call.
func (n *processNode) putLane(ln *parentLane) {
	n.laneMu.Lock()
	if !n.lanesClosed && len(n.free) < maxIdleLanes {
		n.free = append(n.free, ln)
		n.laneMu.Unlock()
		return
	}
	n.laneMu.Unlock()
	n.dropLane(ln)
}

// dropLane closes a lane (the runner's end sees EOF and stops serving it).
func (n *processNode) dropLane(ln *parentLane) {
	n.laneMu.Lock()
	delete(n.lanes, ln)
	n.laneMu.Unlock()
	ln.conn.Close()
}

// closeLanes closes every lane: a call waiting on one fails at once.
func (n *processNode) closeLanes() {
	n.laneMu.Lock()
	n.lanesClosed = true
	lanes := n.lanes
	n.lanes, n.free = nil, nil
	n.laneMu.Unlock()
	for ln := range lanes {
		ln.conn.Close()
	}
}

// laneFailed turns a lane failure into the call's error. A runner closes a
// lane only after replying to a frame it could not follow, so a lane that
// ends (EOF, reset, closed by the node going down) or a control connection
// that cannot take a new lane means the runner is going down: see lost.
// Anything else (out of descriptors, a malformed reply) is this call's
// error alone.
func (n *processNode) laneFailed(doing string, err error) error {
	if connLost(err) {
		return n.lost(err)
	}
	return fmt.Errorf("flame: runner %d: %s: %w", n.id, doing, err)
}

// connLost reports whether err says a connection is gone or stuck.
func connLost(err error) bool {
	return errors.Is(err, io.EOF) || errors.Is(err, io.ErrUnexpectedEOF) ||
		errors.Is(err, syscall.EPIPE) || errors.Is(err, syscall.ECONNRESET) ||
		errors.Is(err, net.ErrClosed) || errors.Is(err, errNodeDown) || os.IsTimeout(err)
}

// lost is the error of a call whose runner is going down: it matches
// ErrRunnerDown and, once the node is down, says why.
func (n *processNode) lost(err error) error {
	select {
	case <-n.done:
		if errors.Is(n.reason, ErrRunnerDown) {
			return n.reason
		}
		return &wrapError{kind: ErrRunnerDown, err: n.reason}
	case <-time.After(2 * lostGrace):
	}
	return &runnerLostError{id: n.id, pid: n.pid, state: "connection lost: " + err.Error()}
}

// Shutdown implements Node: SHUTDOWN, then the runner finishes its calls
// and exits. When ctx ends first, SIGTERM, then after a grace SIGKILL. The
// child is always reaped before Shutdown returns.
func (n *processNode) Shutdown(ctx context.Context) error {
	n.stopping.Store(true)
	if err := n.ctrl.Write(wire.AppendFrame(nil, wire.Shutdown, nil)); err != nil {
		n.signal(syscall.SIGTERM)
	}
	select {
	case <-n.done:
		return nil
	case <-ctx.Done():
	}
	n.signal(syscall.SIGTERM)
	select {
	case <-n.exited:
	case <-time.After(termGrace):
		n.signal(syscall.SIGKILL)
	}
	<-n.done
	return fmt.Errorf("flame: runner %d (pid %d) did not finish within the shutdown timeout; terminated (%s)", n.id, n.pid, n.exitState)
}
