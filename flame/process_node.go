//go:build unix

package flame

import (
	"context"
	"errors"
	"fmt"
	"io/fs"
	"log/slog"
	"os"
	"os/exec"
	"slices"
	"strings"
	"sync"
	"sync/atomic"
	"syscall"
	"time"

	"github.com/goflame/goflame/flame/internal/link"
	"github.com/goflame/goflame/flame/internal/session"
	"github.com/goflame/goflame/flame/internal/wire"
)

const (
	// termGrace is how long a runner has between SIGTERM and SIGKILL.
	termGrace = 2 * time.Second
)

// Boot implements Backend: it starts a runner process and returns once the
// runner is READY, or fails (and kills the child) when ctx ends first.
func (b ProcessBackend) Boot(ctx context.Context, spec RunnerSpec) (Node, error) {
	if err := runnerMissedMain(); err != nil {
		return nil, err
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
	parentEnd, childEnd, err := link.Pair()
	if err != nil {
		return nil, fmt.Errorf("flame: runner %d: %w", spec.ID, err)
	}
	cmd := exec.Command(path, b.Args...)
	cmd.Env = runnerEnv(b.Env, info)
	cmd.ExtraFiles = []*os.File{childEnd} // fd 3
	cmd.SysProcAttr = sysProcAttr()
	log := b.logger(ctx).With("pool", spec.Pool, "runner", spec.ID)
	child, err := startChild(cmd, log)
	childEnd.Close()
	if err != nil {
		parentEnd.Close()
		err = fmt.Errorf("flame: runner %d: start %s: %w", spec.ID, path, err)
		if cannotExec(err) {
			err = bootFailed(err) // a missing or non-executable Path stays so
		}
		return nil, err
	}
	n := &processNode{id: spec.ID, max: info.MaxMsg, child: child, log: child.log, done: make(chan struct{})}
	ctrl, err := link.FromFile(parentEnd, 0)
	if err != nil {
		child.kill()
		return nil, fmt.Errorf("flame: runner %d: %w", spec.ID, err)
	}
	// The handshake is bounded by ctx (BootTimeout); the heartbeat's limit
	// applies once the runner is READY and pings.
	n.sess, err = session.Open(ctx, ctrl, session.ParentConfig{
		KeepAlive: ka,
		MaxMsg:    info.MaxMsg,
		Check:     func(h wire.HelloMsg) error { return checkHello(h, info) },
		Log: func(msg string, args ...any) {
			if !n.stopping.Load() {
				n.log.Debug(msg, args...)
			}
		},
	})
	if err != nil {
		err = n.bootError(ctx, err)
		child.kill()
		return nil, fmt.Errorf("flame: runner %d (pid %d): %w", spec.ID, child.pid, err)
	}
	n.log.Debug("runner process ready")
	go n.monitor()
	return n, nil
}

// runnerEnv is a runner's environment: this process's, without its own
// FLAME_PARENT, then extra, then the runner's FLAME_PARENT.
func runnerEnv(extra []string, info parentInfo) []string {
	return append(append(ownEnv(), extra...), envParent+"="+info.encode())
}

// ownEnv is this process's environment without a FLAME_PARENT of its own:
// the runners it starts must not take that for theirs.
func ownEnv() []string {
	return slices.DeleteFunc(os.Environ(), func(kv string) bool { return strings.HasPrefix(kv, envParent+"=") })
}

// bootError explains a failed handshake.
func (n *processNode) bootError(ctx context.Context, err error) error {
	// An if chain rather than a switch: mutation testing sees the coverage
	// of statements, and a case's condition is none.
	if ctx.Err() != nil && errors.Is(err, ctx.Err()) {
		if errors.Is(ctx.Err(), context.DeadlineExceeded) {
			return fmt.Errorf("no READY within the boot timeout (does the program's main call flame.Main() first?)%s: %w", n.child.lastOutput(), ctx.Err())
		}
		return fmt.Errorf("boot canceled: %w", ctx.Err())
	}
	err = refusedBoot(err)
	if errors.Is(err, session.ErrLost) {
		select {
		case <-n.child.exited:
			n.child.waitOutput(pipeGrace) // its last words, for the error
			return bootFailed(fmt.Errorf("runner exited before its handshake (%s)%s%s", n.child.exitState, mainHint, n.child.lastOutput()))
		case <-time.After(lostGrace):
			return fmt.Errorf("runner connection lost during boot: %w%s", err, n.child.lastOutput())
		}
	}
	return err
}

// cannotExec reports whether starting a program failed because it is
// missing or cannot be executed, which retrying does not change.
func cannotExec(err error) bool {
	return errors.Is(err, fs.ErrNotExist) || errors.Is(err, fs.ErrPermission) ||
		errors.Is(err, syscall.ENOEXEC) || errors.Is(err, syscall.EISDIR) || errors.Is(err, exec.ErrNotFound)
}

// processNode is the parent's handle on one runner process: the child
// (childProc) and the session with it (session.Parent).
//
// Ownership: id, max, child, log and sess are set during Boot and
// read-only after; reason is written once (downOnce) before done is
// closed.
type processNode struct {
	id    uint64
	max   int
	child *childProc
	log   *slog.Logger
	sess  *session.Parent

	stopping atomic.Bool // Shutdown was asked for
	downOnce sync.Once
	reason   error         // why the node stopped; set before done is closed
	done     chan struct{} // closed once the child is reaped and everything is released
}

// monitor waits for the child to exit or its connection to break, then
// marks the node down.
func (n *processNode) monitor() {
	select {
	case <-n.child.exited:
	case <-n.sess.Done():
	}
	n.down()
}

// down stops the node once: the child is reaped (killed first if its
// connection broke and it does not exit by itself), the session closed and
// the output drained; then Done is closed.
func (n *processNode) down() {
	n.downOnce.Do(func() {
		if n.stopping.Load() {
			<-n.child.exited // Shutdown escalates if it must
		} else {
			select {
			case <-n.child.exited:
			case <-time.After(lostGrace):
				n.child.signal(syscall.SIGKILL)
				<-n.child.exited
			}
		}
		n.sess.Close()
		<-n.sess.Done()
		n.child.releaseOutput()
		if n.stopping.Load() {
			n.reason = fmt.Errorf("flame: runner %d (pid %d) shut down: %s", n.id, n.child.pid, n.child.exitState)
			n.log.Debug("runner process exited", "status", n.child.exitState)
		} else {
			n.reason = &runnerLostError{id: n.id, pid: n.child.pid, state: n.child.exitState}
			n.log.Warn("runner process down", "status", n.child.exitState)
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

// Exec implements Node. A runner process runs only registered functions
// (Invoke); a plain closure fails at once with ErrNotPortable.
func (n *processNode) Exec(context.Context, func(context.Context) error) error {
	return ErrNotPortable
}

// Invoke implements Invoker: the call crosses to the runner (see
// invokeOver).
func (n *processNode) Invoke(ctx context.Context, call Invocation) ([]byte, error) {
	return invokeOver(ctx, n.sess, call, n.max, n.id, n.lost)
}

// lost is the error of a call whose runner is going down: it matches
// ErrRunnerDown and, once the node is down, says why.
func (n *processNode) lost(err error) error {
	return lostError(n.done, &n.reason, func() error {
		return &runnerLostError{id: n.id, pid: n.child.pid, state: err.Error()}
	})
}

// Shutdown implements Node: SHUTDOWN, then the runner finishes its calls
// and exits. When ctx ends first, SIGTERM, then after a grace SIGKILL. The
// child is always reaped before Shutdown returns.
func (n *processNode) Shutdown(ctx context.Context) error {
	n.stopping.Store(true)
	if err := n.sess.Shutdown(); err != nil {
		n.child.signal(syscall.SIGTERM)
	}
	select {
	case <-n.done:
		return nil
	case <-ctx.Done():
	}
	n.child.signal(syscall.SIGTERM)
	select {
	case <-n.child.exited:
	case <-time.After(termGrace):
		n.child.signal(syscall.SIGKILL)
	}
	<-n.done
	return fmt.Errorf("flame: runner %d (pid %d) did not finish within the shutdown timeout; terminated (%s)", n.id, n.child.pid, n.child.exitState)
}
