package flame

import (
	"context"
)

// Call checks out a slot, runs fn on that runner and returns fn's result.
//
// The checkout waits, in FIFO order with other callers, for up to the
// WithTimeout budget (default Config.BootTimeout) or until ctx is done;
// expiry returns an error matching ErrCheckoutTimeout, ctx ending returns
// ctx.Err(). fn's ctx is cancelled when its execution limit passes
// (WithTimeout, default Config.Timeout), when the runner goes down, and,
// unless WithLink(false), when ctx is done. RunnerID works on it.
//
// The result is fn's own error; if fn returned an error after its limit
// fired, an error matching both ErrTimeout and fn's error; after the runner
// went down, one matching ErrRunnerDown and fn's error; a *PanicError if fn
// panicked. A nil from fn is a success whatever happened meanwhile. The slot
// is released exactly once, before a linked Call returns.
//
// With WithLink(false), fn keeps running (and keeps its slot) after ctx is
// done, and Call then returns ctx.Err() at once.
func (p *Pool) Call(ctx context.Context, fn func(context.Context) error, opts ...CallOption) error {
	if fn == nil {
		return ErrNilFunc
	}
	return p.call(ctx, job{fn: fn}, opts)
}

// Call is Pool.Call for a fn that returns a value.
func Call[T any](ctx context.Context, p *Pool, fn func(context.Context) (T, error), opts ...CallOption) (T, error) {
	var out T
	if fn == nil {
		return out, ErrNilFunc
	}
	err := p.Call(ctx, func(ctx context.Context) error {
		v, err := fn(ctx)
		out = v
		return err
	}, opts...)
	return out, err
}

// Cast runs fn on the pool without waiting for it. It returns nil once the
// work is accepted, ErrClosed after Close has begun, and ctx.Err() if ctx
// is already done. The work checks out like Call but waits without limit
// (unless WithTimeout), and runs without an execution limit (unless
// WithTimeout). Linked (the default), it gives up waiting, and its fn's
// ctx is cancelled, when ctx is done. Its errors and panics are logged.
func (p *Pool) Cast(ctx context.Context, fn func(context.Context) error, opts ...CallOption) error {
	if fn == nil {
		return ErrNilFunc
	}
	return p.cast(ctx, job{fn: fn}, opts)
}

// PlaceChild checks out a slot like Call, starts fn on that runner in its
// own goroutine, and returns once fn has started. The child holds its slot,
// and keeps the runner from idling, until fn returns. WithTimeout bounds only
// the checkout; a child has no execution limit. Linked (the default), its
// ctx is cancelled when ctx is done; the runner going down cancels it too
// (its Err then matches ErrRunnerDown).
func (p *Pool) PlaceChild(ctx context.Context, fn func(context.Context) error, opts ...CallOption) (*Child, error) {
	if fn == nil {
		return nil, ErrNilFunc
	}
	return p.place(ctx, job{fn: fn}, opts)
}
