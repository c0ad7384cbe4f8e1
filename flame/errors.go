package flame

import (
	"context"
	"errors"
	"fmt"
)

// poolError is a sentinel error. Those that report an expired time limit also
// match context.DeadlineExceeded, so code that checks for deadlines keeps
// working.
type poolError struct {
	msg      string
	deadline bool
}

func (e *poolError) Error() string { return e.msg }

func (e *poolError) Is(target error) bool {
	return e.deadline && target == context.DeadlineExceeded
}

var (
	// ErrClosed is returned for work submitted after Close has begun, and to
	// callers still waiting for a slot when Close begins.
	ErrClosed error = &poolError{msg: "flame: pool closed"}

	// ErrCheckoutTimeout is returned when no slot was free within the
	// checkout wait. errors.Is(err, context.DeadlineExceeded) holds. When
	// boots have failed, the error also carries the last boot error.
	ErrCheckoutTimeout error = &poolError{msg: "flame: no runner slot within the checkout wait", deadline: true}

	// ErrTimeout wraps fn's error when fn returned it after its execution
	// limit passed. errors.Is(err, context.DeadlineExceeded) holds.
	ErrTimeout error = &poolError{msg: "flame: execution limit passed", deadline: true}

	// ErrRunnerDown wraps fn's error when the runner went down while fn ran.
	ErrRunnerDown = errors.New("flame: runner down")

	// ErrBootFailed marks a boot failure that retrying cannot fix: a
	// missing runner executable, a runner that exits before its handshake
	// (its main does not call Main first), version skew. Callers queued
	// for such a boot get its error at once (it matches ErrBootFailed and
	// the backend's reason) instead of waiting out their checkout budget,
	// unless a runner is up to serve them as its slots free; no retry is
	// scheduled for them.
	//
	// A Backend says that a failure is of this kind by returning an error
	// that matches it, such as fmt.Errorf("%w: %w", flame.ErrBootFailed,
	// err). Any other error is transient: queued callers keep waiting and
	// the boot is retried once a second while they do.
	ErrBootFailed = errors.New("flame: boot failed; retrying cannot fix it")

	// ErrNilFunc is returned when fn is nil.
	ErrNilFunc = errors.New("flame: nil fn")

	// ErrInvalidConfig is wrapped by every Config and Resize validation error.
	ErrInvalidConfig = errors.New("flame: invalid config")
)

// Reasons in ShrinkEvent.Reason and in OnGrowEnd's error, besides
// ErrRunnerDown (a crash) and ErrClosed (Close).
var (
	// ErrIdleShutdown: the runner idled down.
	ErrIdleShutdown = errors.New("flame: runner idle")
	// ErrResized: the runner was above Max after Resize.
	ErrResized = errors.New("flame: pool resized below its runners")
	// ErrSingleUse: a single-use runner finished its work.
	ErrSingleUse = errors.New("flame: single-use runner done")
	// ErrBootCanceled: a pending boot was no longer wanted (Resize, Close).
	ErrBootCanceled = errors.New("flame: boot canceled: no longer needed")
)

// wrapError reports a pool condition (kind) together with the error that fn
// returned; errors.Is matches both.
type wrapError struct {
	kind error
	err  error
}

func (e *wrapError) Error() string   { return e.kind.Error() + ": " + e.err.Error() }
func (e *wrapError) Unwrap() []error { return []error{e.kind, e.err} }

// PanicError is returned when fn panicked. The panic never propagates: the
// pool and the runner stay healthy and the slot is released.
type PanicError struct {
	Value any    // what fn panicked with
	Stack []byte // the goroutine's stack at the panic
}

func (e *PanicError) Error() string { return fmt.Sprintf("flame: fn panicked: %v", e.Value) }

// checkoutTimeout is the error for an expired checkout wait.
func (p *Pool) checkoutTimeout() error {
	if err := p.sc.LastBootErr(); err != nil {
		return &wrapError{kind: ErrCheckoutTimeout, err: fmt.Errorf("last boot error: %w", err)}
	}
	return ErrCheckoutTimeout
}
