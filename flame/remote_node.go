package flame

import (
	"context"
	"encoding/base64"
	"encoding/hex"
	"errors"
	"fmt"
	"log/slog"
	"sync"
	"sync/atomic"
	"time"

	"github.com/goflame/goflame/flame/internal/session"
	"github.com/goflame/goflame/flame/internal/tcplink"
	"github.com/goflame/goflame/flame/internal/wire"
)

// removeGrace bounds removing an instance whose boot failed.
const removeGrace = 10 * time.Second

// Boot implements Backend: it launches a runner and returns once the
// runner has dialled back, authenticated and said READY; it fails (and
// removes the instance) when ctx ends first.
func (b *RemoteBackend) Boot(ctx context.Context, spec RunnerSpec) (Node, error) {
	if err := b.validate(); err != nil {
		return nil, bootFailed(err)
	}
	if err := runnerMissedMain(); err != nil {
		return nil, err
	}
	if err := ctx.Err(); err != nil {
		return nil, err
	}
	log := b.logger(ctx).With("pool", spec.Pool, "runner", spec.ID)
	l, err := b.acquire(log)
	if err != nil {
		if errors.Is(err, ErrInvalidConfig) {
			err = bootFailed(err)
		}
		return nil, err
	}
	booted := false
	defer func() {
		if !booted {
			b.release()
		}
	}()
	token, authed, expired, err := l.expect(spec.ID)
	if err != nil {
		return nil, fmt.Errorf("flame: runner %d: %w", spec.ID, err)
	}
	defer expired() // the token is good for this boot only
	window := defaultBootWindow
	if dl, ok := ctx.Deadline(); ok {
		window = time.Until(dl)
	}
	info := parentInfo{
		V: parentInfoVersion, Pool: spec.Pool, Runner: spec.ID, Conn: connTLS + l.addr,
		Build: buildID(), Registry: registryHash(), MaxMsg: b.maxMessage(),
		KeepAliveMS: b.keepAlive().Milliseconds(),
		Fingerprint: hex.EncodeToString(l.fingerprint[:]), Token: base64.RawURLEncoding.EncodeToString(token[:]),
		DialMS: max(window.Milliseconds(), 1),
	}
	inst, err := b.Launcher.Launch(ctx, LaunchSpec{Pool: spec.Pool, Runner: spec.ID, Env: []string{envParent + "=" + info.encode()}, Logger: log})
	if err != nil {
		return nil, fmt.Errorf("flame: runner %d: launch: %w", spec.ID, err)
	}
	remove := func() {
		rctx, cancel := context.WithTimeout(context.Background(), removeGrace)
		defer cancel()
		if err := inst.Remove(rctx); err != nil {
			log.Error("removing a runner whose boot failed", "err", err)
		}
	}
	var tr *tcplink.Parent
	select {
	case tr = <-authed:
	case <-inst.Gone():
		remove()
		cause := inst.Err()
		if cause == nil {
			cause = errors.New("its launcher gave no reason")
		}
		if errors.Is(cause, ErrBootFailed) { // the platform could not start it (an unschedulable pod, an image that cannot be pulled)
			return nil, fmt.Errorf("flame: runner %d could not start: %w", spec.ID, cause)
		}
		return nil, bootFailed(fmt.Errorf("flame: runner %d exited before its handshake (%w)%s", spec.ID, cause, mainHint))
	case <-ctx.Done():
		remove()
		if errors.Is(ctx.Err(), context.DeadlineExceeded) {
			return nil, fmt.Errorf("flame: runner %d: it did not dial back to %s within the boot timeout (can it reach that address? does its main call flame.Main() first?): %w", spec.ID, l.addr, ctx.Err())
		}
		return nil, fmt.Errorf("flame: runner %d: boot canceled: %w", spec.ID, ctx.Err())
	}
	n := &remoteNode{id: spec.ID, max: info.MaxMsg, b: b, l: l, tr: tr, inst: inst, log: log, done: make(chan struct{})}
	n.sess, err = session.Open(ctx, tr, session.ParentConfig{
		KeepAlive: b.keepAlive(),
		MaxMsg:    info.MaxMsg,
		Check:     func(h wire.HelloMsg) error { return checkHello(h, info) },
		Log: func(msg string, args ...any) {
			if !n.stopping.Load() {
				n.log.Debug(msg, args...)
			}
		},
	})
	if err != nil {
		l.forget(spec.ID, tr)
		remove()
		return nil, fmt.Errorf("flame: runner %d: %w", spec.ID, refusedBoot(err))
	}
	log.Debug("remote runner ready", "addr", l.addr)
	go n.monitor()
	booted = true
	return n, nil
}

// defaultBootWindow is how long a runner may take to dial back when the
// boot has no deadline (BootTimeout Infinity).
const defaultBootWindow = time.Minute

// remoteNode is the parent's handle on one runner on another machine: its
// platform instance (Launcher) and the session over the connection it
// dialled.
//
// Ownership: set during Boot and read-only after, but reason (written once,
// before done is closed).
type remoteNode struct {
	id   uint64
	max  int
	b    *RemoteBackend
	l    *listener
	tr   *tcplink.Parent
	inst Instance
	sess *session.Parent
	log  *slog.Logger

	stopping  atomic.Bool
	downOnce  sync.Once
	finish    sync.Once // the instance removed, the listener released
	reason    error
	done      chan struct{}
	removeErr error // written in finish
}

// monitor waits for the platform to report the runner gone or the
// connection to end, then marks the node down.
func (n *remoteNode) monitor() {
	select {
	case <-n.inst.Gone():
	case <-n.sess.Done():
	}
	n.down()
}

// down marks the node down once: the session is closed (its calls fail at
// once), its lanes are refused, and Done is closed with the platform's
// reason when the platform has one (it may report a moment after the
// connection broke).
func (n *remoteNode) down() {
	n.downOnce.Do(func() {
		n.sess.Close()
		<-n.sess.Done()
		n.l.forget(n.id, n.tr)
		select {
		case <-n.inst.Gone():
		case <-time.After(lostGrace):
		}
		// An if chain rather than a switch: mutation testing sees the
		// coverage of statements, and a case's condition is none.
		if n.stopping.Load() {
			n.reason = fmt.Errorf("flame: runner %d shut down", n.id)
		} else if isClosed(n.inst.Gone()) {
			n.reason = &runnerGoneError{id: n.id, cause: n.inst.Err()}
			n.log.Warn("remote runner down", "reason", n.inst.Err())
		} else {
			n.reason = &runnerGoneError{id: n.id, cause: errors.New("connection lost")}
			n.log.Warn("remote runner lost: connection broken or silent")
		}
		close(n.done)
	})
}

func isClosed(c <-chan struct{}) bool {
	select {
	case <-c:
		return true
	default:
		return false
	}
}

// runnerGoneError says why a runner went down, with the platform's reason
// when it gave one; it matches ErrRunnerDown and the reason.
type runnerGoneError struct {
	id    uint64
	cause error
}

func (e *runnerGoneError) Error() string {
	return fmt.Sprintf("flame: runner %d went down: %v", e.id, e.cause)
}

func (e *runnerGoneError) Unwrap() []error { return []error{ErrRunnerDown, e.cause} }

// Done implements Node.
func (n *remoteNode) Done() <-chan struct{} { return n.done }

// Exec implements Node: a remote runner runs only registered functions.
func (n *remoteNode) Exec(context.Context, func(context.Context) error) error {
	return ErrNotPortable
}

// Invoke implements Invoker (see invokeOver).
func (n *remoteNode) Invoke(ctx context.Context, call Invocation) ([]byte, error) {
	return invokeOver(ctx, n.sess, call, n.max, n.id, n.lost)
}

// lost is the error of a call whose runner is going down.
func (n *remoteNode) lost(err error) error {
	return lostError(n.done, &n.reason, func() error { return &runnerGoneError{id: n.id, cause: err} })
}

// Shutdown implements Node: SHUTDOWN, then the runner finishes its calls
// and exits; when ctx ends first, or once the runner is gone, its
// instance is removed (the launcher stops it if it still runs). The
// listener is released when the node is shut down.
func (n *remoteNode) Shutdown(ctx context.Context) error {
	n.stopping.Store(true)
	_ = n.sess.Shutdown()
	var err error
	select {
	case <-n.done:
	case <-ctx.Done():
		err = fmt.Errorf("flame: runner %d did not finish within the shutdown timeout; removed", n.id)
	}
	n.finish.Do(func() {
		rctx, cancel := context.WithTimeout(context.Background(), removeGrace)
		defer cancel()
		n.removeErr = n.inst.Remove(rctx)
		n.down() // the session ends with the runner, if it has not yet
		n.b.release()
	})
	if err == nil && n.removeErr != nil {
		err = fmt.Errorf("flame: runner %d: removing its instance: %w", n.id, n.removeErr)
	}
	return err
}
