package flame

import (
	"context"
	"errors"
	"fmt"
	"time"

	"github.com/goflame/goflame/flame/internal/session"
	"github.com/goflame/goflame/flame/internal/wire"
)

// lostGrace is how long a runner whose connection broke may take to exit
// (or its platform to say so) before the parent goes on without knowing
// why.
const lostGrace = 500 * time.Millisecond

// invokeOver runs a registered call on a runner reached through sess (a
// child process, a runner on another machine): the call crosses on a lane
// of its own, with the time left before ctx's deadline, which the runner
// enforces (the function sees context.DeadlineExceeded). Cancelling ctx
// sends CANCEL; the slot stays taken until the runner's reply. A
// connection that is gone gives lost's error (it matches ErrRunnerDown).
func invokeOver(ctx context.Context, sess *session.Parent, call Invocation, maxMsg int, runner uint64, lost func(error) error) ([]byte, error) {
	if err := ctx.Err(); err != nil {
		return nil, err
	}
	m := callMsg(ctx, wire.Kind(call.Kind), call.Func, call.Args)
	if err := argsTooLarge(m, maxMsg); err != nil {
		return nil, err
	}
	res, em, err := sess.Call(m, func(send func()) func() bool {
		return AfterCancel(ctx, func() {
			// A deadline is the runner's to enforce (it got the time
			// left), so that the handler sees DeadlineExceeded.
			if !errors.Is(ctx.Err(), context.DeadlineExceeded) {
				send()
			}
		})
	})
	// An if chain rather than a switch: mutation testing sees the coverage
	// of statements, and a case's condition is none.
	if errors.Is(err, wire.ErrTooLarge) {
		return nil, &FuncError{Func: call.Func, Code: CodeTooLarge,
			Message: fmt.Sprintf("flame: %s: runner %d sent a reply above the message size limit: %v", call.Func, runner, err)}
	}
	if errors.Is(err, session.ErrLost) {
		return nil, lost(err)
	}
	if err != nil {
		return nil, fmt.Errorf("flame: %s: runner %d: %w", call.Func, runner, err)
	}
	if em == nil {
		return res, nil
	}
	if em.Code == wire.CodePanic {
		return nil, &PanicError{Value: em.Message, Stack: em.Stack}
	}
	return nil, funcErrorOf(call.Func, *em)
}

// lostError is the error of a call whose connection broke: once the node
// is down (done closed, *reason set before), one matching ErrRunnerDown
// that says why; if the node is not down within twice lostGrace (its
// watcher waits up to lostGrace for the platform's word), fallback's.
func lostError(done <-chan struct{}, reason *error, fallback func() error) error {
	grace := time.After(2 * lostGrace)
	select {
	case <-done:
		if errors.Is(*reason, ErrRunnerDown) {
			return *reason
		}
		return &wrapError{kind: ErrRunnerDown, err: *reason}
	case <-grace:
	}
	return fallback()
}

// refusedBoot is the error of a boot that err ended: a runner that refused
// to serve as another build (an ERROR in place of READY) is version skew,
// which retrying cannot fix; any other error is err.
func refusedBoot(err error) error {
	var refused *session.RefusedError
	if errors.As(err, &refused) && refused.Code == wire.CodeVersionSkew {
		return bootFailed(fmt.Errorf("%w: %s", ErrVersionSkew, refused.Message))
	}
	return err
}
