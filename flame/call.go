package flame

import (
	"context"
	"errors"
	"runtime/debug"
	"time"
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
	o, err := merge(opts, p.cfg.BootTimeout, p.cfg.Timeout)
	if err != nil {
		return err
	}
	if p.closing.Load() {
		return ErrClosed
	}
	if err := ctx.Err(); err != nil {
		return err
	}
	r, err := p.checkout(ctx, o.wait, kindCall)
	if err != nil {
		return err
	}
	if !o.link {
		return p.callUnlinked(ctx, r, fn, o.exec)
	}
	return p.exec(p.newExecCtx(ctx, r, true, o.exec), r, fn)
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

// exec runs fn on r with ctx c on this goroutine, then releases the slot.
func (p *Pool) exec(c *execCtx, r *runner, fn func(context.Context) error) (err error) {
	defer func() {
		if v := recover(); v != nil {
			err = &PanicError{Value: v, Stack: stackTrace()}
		}
		c.finish()
		p.release(r)
	}()
	return c.result(p.execNode(c, r, fn))
}

// execNode runs fn through r's node. When the call fails because the
// runner is gone, the runner leaves the checkout set before the caller
// learns of it, so that a caller who retries never reaches it again: the
// pool learns of a death from the node's Done closing, or from an error
// that the node itself (not fn) returned and that matches ErrRunnerDown.
func (p *Pool) execNode(c *execCtx, r *runner, fn func(context.Context) error) error {
	if r.local {
		return fn(c) // LocalBackend: the runner cannot die under fn
	}
	ran := false
	err := r.node.Exec(c, func(ctx context.Context) error {
		ran = true
		return fn(ctx)
	})
	if err != nil && (!ran && errors.Is(err, ErrRunnerDown) || nodeDone(r.node)) {
		p.runnerDown(r)
	}
	return err
}

// nodeDone reports whether n's Done is closed.
func nodeDone(n Node) bool {
	select {
	case <-n.Done():
		return true
	default:
		return false
	}
}

func stackTrace() []byte { return debug.Stack() }

func (p *Pool) callUnlinked(ctx context.Context, r *runner, fn func(context.Context) error, limit time.Duration) error {
	res := make(chan error, 1)
	c := p.newExecCtx(ctx, r, false, limit)
	p.startWork(func() { res <- p.exec(c, r, fn) })
	select {
	case err := <-res:
		return err
	case <-ctx.Done():
		return ctx.Err()
	}
}

// startWork runs accepted work in its own goroutine, which Close waits for.
func (p *Pool) startWork(f func()) {
	p.work.Add(1)
	p.wg.Go(func() {
		defer func() {
			p.work.Add(-1)
			if p.closing.Load() {
				p.checkDrained()
			}
		}()
		f()
	})
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
	o, err := merge(opts, Infinity, Infinity)
	if err != nil {
		return err
	}
	if p.closing.Load() {
		return ErrClosed
	}
	if err := ctx.Err(); err != nil {
		return err
	}
	p.startWork(func() {
		wctx := ctx
		if !o.link {
			wctx = context.WithoutCancel(ctx)
		}
		r, err := p.checkout(wctx, o.wait, kindCast)
		if err != nil {
			if errors.Is(err, ErrClosed) {
				p.logError("cast dropped: pool closed before it could start")
			} else {
				p.logError("cast could not start", "err", err)
			}
			return
		}
		if err := p.exec(p.newExecCtx(ctx, r, o.link, o.exec), r, fn); err != nil {
			var pe *PanicError
			if errors.As(err, &pe) {
				p.logError("cast panicked", "runner", r.id, "panic", pe.Value, "stack", string(pe.Stack))
			} else {
				p.logError("cast failed", "runner", r.id, "err", err)
			}
		}
	})
	return nil
}

// Child is work placed on a runner with PlaceChild.
type Child struct {
	c        *execCtx
	runnerID uint64
	done     chan struct{}
	err      error // written before done is closed
}

// Done is closed when the child's fn has returned.
func (c *Child) Done() <-chan struct{} { return c.done }

// Err is the child's result (as for Call, without an execution limit); nil
// before Done.
func (c *Child) Err() error {
	select {
	case <-c.done:
		return c.err
	default:
		return nil
	}
}

// Stop cancels the child's ctx and waits for its fn to return.
func (c *Child) Stop() {
	c.c.cancel(context.Canceled, nil)
	<-c.done
}

// RunnerID is the ID of the runner the child runs on.
func (c *Child) RunnerID() uint64 { return c.runnerID }

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
	o, err := merge(opts, p.cfg.BootTimeout, Infinity)
	if err != nil {
		return nil, err
	}
	if p.closing.Load() {
		return nil, ErrClosed
	}
	if err := ctx.Err(); err != nil {
		return nil, err
	}
	r, err := p.checkout(ctx, o.wait, kindChild)
	if err != nil {
		return nil, err
	}
	child := &Child{c: p.newExecCtx(ctx, r, o.link, Infinity), runnerID: r.id, done: make(chan struct{})}
	started := make(chan struct{})
	p.startWork(func() {
		defer close(child.done)
		child.err = p.exec(child.c, r, func(ctx context.Context) error {
			close(started)
			return fn(ctx)
		})
	})
	select {
	case <-started:
		return child, nil
	case <-child.done:
		select {
		case <-started:
			return child, nil
		default:
			return nil, child.err // the node failed before fn started
		}
	}
}
