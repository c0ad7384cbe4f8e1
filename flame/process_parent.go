//go:build unix

package flame

import (
	"bufio"
	"bytes"
	"context"
	"errors"
	"fmt"
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

	"github.com/hashicorp/yamux"

	"github.com/goflame/goflame/flame/internal/wire"
)

// Boot implements Backend: it starts a runner process and returns once the
// runner is READY, or fails (and kills the child) when ctx ends first.
func (b ProcessBackend) Boot(ctx context.Context, spec RunnerSpec) (Node, error) {
	if isRunner && os.Getenv(envParent) != "" {
		return nil, errors.New("flame: this process was started as a runner, but main did not call flame.Main() first")
	}
	if err := ctx.Err(); err != nil {
		return nil, err
	}
	path := b.Path
	if path == "" {
		exe, err := os.Executable()
		if err != nil {
			return nil, fmt.Errorf("flame: runner executable: %w", err)
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

	fds, err := socketpair()
	if err != nil {
		return nil, fmt.Errorf("flame: runner %d: socketpair: %w", spec.ID, err)
	}
	parentEnd := os.NewFile(uintptr(fds[0]), "flame-runner")
	childEnd := os.NewFile(uintptr(fds[1]), "flame-parent")
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
		id:     spec.ID,
		max:    info.MaxMsg,
		exited: make(chan struct{}),
		done:   make(chan struct{}),
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
		return nil, fmt.Errorf("flame: runner %d: start %s: %w", spec.ID, path, err)
	}
	n.log = b.logger(ctx).With("pool", spec.Pool, "runner", spec.ID, "pid", n.pid)
	n.outputs.Add(2)
	n.pipes = []*os.File{outR, errR}
	go n.readOutput(outR, "stdout")
	go n.readOutput(errR, "stderr")

	conn, err := net.FileConn(parentEnd)
	parentEnd.Close()
	if err != nil {
		n.abort()
		return nil, fmt.Errorf("flame: runner %d: %w", spec.ID, err)
	}
	bc := newBatchConn(conn)
	n.sess, err = yamux.Client(bc, yamuxConfig(ka, yamuxLog{n.log}))
	if err != nil {
		bc.Close()
		n.abort()
		return nil, fmt.Errorf("flame: runner %d: %w", spec.ID, err)
	}
	if err := n.handshake(ctx, info); err != nil {
		n.abort()
		return nil, fmt.Errorf("flame: runner %d (pid %d): %w", spec.ID, n.pid, err)
	}
	n.log.Debug("runner process ready")
	go n.monitor()
	return n, nil
}

// keepAliveTimeout is how long a side waits for the answer to a ping (and
// for a frame to be taken for sending) before it gives the other up.
func keepAliveTimeout(ka time.Duration) time.Duration { return max(3*ka, time.Second) }

func yamuxConfig(ka time.Duration, logger yamux.Logger) *yamux.Config {
	cfg := yamux.DefaultConfig()
	cfg.EnableKeepAlive = true
	cfg.KeepAliveInterval = ka
	cfg.ConnectionWriteTimeout = keepAliveTimeout(ka)
	cfg.LogOutput = nil
	cfg.Logger = logger
	return cfg
}

// processNode is the parent's handle on one runner process.
//
// Ownership: id, max, pid, log, sess, ctrl and pipes are set during Boot and
// read-only after. exitState is written by the spawn goroutine before it
// closes exited; reason is written once (downOnce) before done is closed.
type processNode struct {
	id   uint64
	max  int
	pid  int
	log  *slog.Logger
	sess *yamux.Session
	ctrl *yamux.Stream // the runner's control stream (HELLO, READY, SHUTDOWN)

	exited    chan struct{} // closed once the child has been reaped
	exitState string        // how it exited, e.g. "exit status 1", "signal: killed"

	pipes   []*os.File     // read ends of the child's stdout and stderr
	outputs sync.WaitGroup // the output readers
	tailMu  sync.Mutex
	tail    []string // the last stderr lines, for boot errors

	idleMu sync.Mutex
	idle   []*yamux.Stream // open streams with no call, for reuse; guarded by idleMu

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
		n.sess.Close()
		<-res
		if errors.Is(ctx.Err(), context.DeadlineExceeded) {
			return fmt.Errorf("no READY within the boot timeout (does main call flame.Main() first?)%s: %w", n.lastOutput(), ctx.Err())
		}
		return fmt.Errorf("boot canceled: %w", ctx.Err())
	}
}

func (n *processNode) handshakeSync(info parentInfo) error {
	st, err := n.sess.AcceptStream()
	if err != nil {
		return n.bootLost(err)
	}
	t, p, err := wire.ReadFrame(st, helloMax)
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
	t, p, err = wire.ReadFrame(st, helloMax)
	if err != nil {
		return n.bootLost(err)
	}
	switch t {
	case wire.Ready:
		n.ctrl = st
		return nil
	case wire.Error:
		m, err := wire.DecodeError(p)
		if err != nil {
			return err
		}
		if m.Code == wire.CodeVersionSkew {
			return fmt.Errorf("%w: %s", ErrVersionSkew, m.Message)
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
		return fmt.Errorf("%w: runner speaks protocol %d, parent %d", ErrVersionSkew, h.Proto, wire.ProtocolVersion)
	case h.Build != info.Build:
		return fmt.Errorf("%w: runner build %q, parent build %q: parent and runner must be the same binary", ErrVersionSkew, h.Build, info.Build)
	case h.Registry != info.Registry:
		return fmt.Errorf("%w: runner registry %s, parent registry %s: parent and runner must register the same functions with the same types", ErrVersionSkew, h.Registry, info.Registry)
	}
	return nil
}

// bootLost explains a connection lost during the handshake.
func (n *processNode) bootLost(err error) error {
	select {
	case <-n.exited:
		n.waitOutput(pipeGrace) // its last words, for the error
		return fmt.Errorf("runner exited during boot (%s; does main call flame.Main() first?)%s", n.exitState, n.lastOutput())
	case <-time.After(lostGrace):
		return fmt.Errorf("runner connection lost during boot: %v%s", err, n.lastOutput())
	}
}

// abort ends a boot that failed: the child is killed and reaped, and every
// goroutine of the node has returned when it returns.
func (n *processNode) abort() {
	n.signal(syscall.SIGKILL)
	if n.sess != nil {
		n.sess.Close()
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

// monitor waits for the child to exit or its connection to break, then
// marks the node down.
func (n *processNode) monitor() {
	select {
	case <-n.exited:
	case <-n.sess.CloseChan():
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
		n.sess.Close()
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

var cancelFrame = wire.AppendFrame(nil, wire.Cancel, nil)

// maxIdleStreams bounds the streams a node keeps open for reuse; 0 gives
// every call a fresh stream (measured: about 40% fewer calls/s).
const maxIdleStreams = 1024

// call runs one function on the runner over a stream of its own: CALL,
// then CANCEL if ctx ends, until the runner's RESULT or ERROR.
//
// A stream serves one call at a time. Once a call has had its reply and
// no CANCEL was sent on it, its stream goes back to the node for a later
// call, which saves opening and closing a stream per call (four control
// frames and an accept on the runner); any other stream is closed.
func (n *processNode) call(ctx context.Context, kind wire.Kind, id string, args []byte) ([]byte, error) {
	if err := ctx.Err(); err != nil {
		return nil, err
	}
	m := wire.CallMsg{Kind: kind, ID: id, Args: args}
	if dl, ok := ctx.Deadline(); ok {
		m.Timeout = max(time.Until(dl), 1)
	}
	if size := wire.CallPayloadLen(m); size > n.max {
		return nil, &FuncError{Func: id, Code: wire.CodeTooLarge.String(),
			Message: fmt.Sprintf("flame: %s: arguments of %d bytes exceed the message size limit of %d bytes", id, len(args), n.max)}
	}
	st, err := n.stream()
	if err != nil {
		return nil, n.lost(err)
	}
	reusable := false
	defer func() {
		if reusable {
			n.putStream(st)
		} else {
			st.Close()
		}
	}()
	if _, err := st.Write(wire.AppendCall(make([]byte, 0, wire.HeaderLen+wire.CallPayloadLen(m)), m)); err != nil {
		return nil, n.lost(err)
	}
	stop := context.AfterFunc(ctx, func() {
		// A deadline is the runner's to enforce (it got the time left), so
		// that the handler sees DeadlineExceeded rather than Canceled.
		if !errors.Is(ctx.Err(), context.DeadlineExceeded) {
			_, _ = st.Write(cancelFrame)
		}
	})
	t, p, err := wire.ReadFrame(st, n.max)
	notCanceled := stop()
	if err != nil {
		if errors.Is(err, wire.ErrTooLarge) {
			return nil, &FuncError{Func: id, Code: wire.CodeTooLarge.String(),
				Message: fmt.Sprintf("flame: %s: runner %d sent a reply above the message size limit: %v", id, n.id, err)}
		}
		return nil, n.lost(err)
	}
	switch t {
	case wire.Result:
		reusable = notCanceled
		return p, nil
	case wire.Error:
		em, err := wire.DecodeError(p)
		if err != nil {
			return nil, fmt.Errorf("flame: %s: runner %d: %w", id, n.id, err)
		}
		reusable = notCanceled && em.Code != wire.CodeProtocol
		if em.Code == wire.CodePanic {
			return nil, &PanicError{Value: em.Message, Stack: em.Stack}
		}
		return nil, &FuncError{Func: id, Code: em.Code.String(), Message: em.Message}
	default:
		return nil, fmt.Errorf("flame: %s: runner %d: protocol error: unexpected %s", id, n.id, t)
	}
}

// stream returns an idle stream, or opens one.
func (n *processNode) stream() (*yamux.Stream, error) {
	n.idleMu.Lock()
	if k := len(n.idle); k > 0 {
		st := n.idle[k-1]
		n.idle = n.idle[:k-1]
		n.idleMu.Unlock()
		return st, nil
	}
	n.idleMu.Unlock()
	return n.sess.OpenStream()
}

// putStream keeps a stream whose call is complete for the next call.
func (n *processNode) putStream(st *yamux.Stream) {
	n.idleMu.Lock()
	if len(n.idle) < maxIdleStreams {
		n.idle = append(n.idle, st)
		st = nil
	}
	n.idleMu.Unlock()
	if st != nil {
		st.Close()
	}
}

// lost turns a stream failure into the call's error: when the connection
// is gone, the runner is down (the error matches ErrRunnerDown and says
// why, once known).
func (n *processNode) lost(err error) error {
	if n.sess.IsClosed() {
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
	return fmt.Errorf("flame: runner %d: call stream failed: %w", n.id, err)
}

// Shutdown implements Node: SHUTDOWN, then the runner finishes its calls
// and exits. When ctx ends first, SIGTERM, then after a grace SIGKILL. The
// child is always reaped before Shutdown returns.
func (n *processNode) Shutdown(ctx context.Context) error {
	n.stopping.Store(true)
	if _, err := n.ctrl.Write(wire.AppendFrame(nil, wire.Shutdown, nil)); err != nil {
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

// yamuxLog sends the multiplexer's own messages to the debug log.
type yamuxLog struct{ l *slog.Logger }

func (y yamuxLog) Print(v ...any) { y.l.Debug(strings.TrimSpace(fmt.Sprint(v...))) }
func (y yamuxLog) Printf(format string, v ...any) {
	y.l.Debug(strings.TrimSpace(fmt.Sprintf(format, v...)))
}
func (y yamuxLog) Println(v ...any) { y.l.Debug(strings.TrimSpace(fmt.Sprintln(v...))) }
