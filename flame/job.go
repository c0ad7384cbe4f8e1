package flame

import (
	"context"
	"errors"
	"runtime/debug"
	"time"
)

// job is the work of one call: fn, a closure, or inv, a registered function
// (Func), exactly one of them. The three ways to run work (call, cast,
// place) take either.
type job struct {
	fn  func(context.Context) error
	inv *invocation
	// started, if not nil, is closed when the work starts on its runner:
	// fn is running, or the registered call is about to be sent.
	started chan struct{}
}

// admit merges a call's options over its kind's defaults (wait: checkout
// budget; exec: execution limit) and refuses work the pool cannot take.
func (p *Pool) admit(ctx context.Context, opts []CallOption, wait, exec time.Duration) (callOpts, error) {
	o, err := merge(opts, wait, exec)
	if err != nil {
		return o, err
	}
	if p.closing.Load() {
		return o, ErrClosed
	}
	return o, ctx.Err()
}

// call is Call for any job: check out, run on this goroutine (linked) or
// on one of its own (unlinked), return the result.
func (p *Pool) call(ctx context.Context, j job, opts []CallOption) error {
	o, err := p.admit(ctx, opts, p.cfg.BootTimeout, p.cfg.Timeout)
	if err != nil {
		return err
	}
	r, gen, err := p.checkout(ctx, o.wait, kindCall)
	if err != nil {
		return err
	}
	if !o.link {
		return p.callUnlinked(ctx, r, p.newExecCtx(gen, ctx, r, false, o.exec), j)
	}
	return p.exec(p.newExecCtx(gen, ctx, r, true, o.exec), r, j)
}

func (p *Pool) callUnlinked(ctx context.Context, r *runner, c *execCtx, j job) error {
	res := make(chan error, 1)
	p.startWork(func() { res <- p.exec(c, r, j) })
	select {
	case err := <-res:
		return err
	case <-ctx.Done():
		return ctx.Err()
	}
}

// cast is Cast for any job: accept it, then check out and run it in a
// goroutine of its own, logging its failure.
func (p *Pool) cast(ctx context.Context, j job, opts []CallOption) error {
	o, err := p.admit(ctx, opts, Infinity, Infinity)
	if err != nil {
		return err
	}
	p.startWork(func() {
		wctx := ctx
		if !o.link {
			wctx = context.WithoutCancel(ctx)
		}
		r, gen, err := p.checkout(wctx, o.wait, kindCast)
		if err != nil {
			if errors.Is(err, ErrClosed) {
				p.logError("cast dropped: pool closed before it could start")
			} else {
				p.logError("cast could not start", "err", err)
			}
			return
		}
		if err := p.exec(p.newExecCtx(gen, ctx, r, o.link, o.exec), r, j); err != nil {
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

// place is PlaceChild for any job: check out, start the work in a
// goroutine of its own, return once it has started.
func (p *Pool) place(ctx context.Context, j job, opts []CallOption) (*Child, error) {
	o, err := p.admit(ctx, opts, p.cfg.BootTimeout, Infinity)
	if err != nil {
		return nil, err
	}
	r, gen, err := p.checkout(ctx, o.wait, kindChild)
	if err != nil {
		return nil, err
	}
	child := &Child{c: p.newExecCtx(gen, ctx, r, o.link, Infinity), runnerID: r.id, done: make(chan struct{})}
	j.started = make(chan struct{})
	p.startWork(func() {
		defer close(child.done)
		child.err = p.exec(child.c, r, j)
	})
	select {
	case <-j.started:
		return child, nil
	case <-child.done:
		select {
		case <-j.started:
			return child, nil
		default:
			return nil, child.err // the node failed before the work started
		}
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

// exec runs j on r with ctx c on this goroutine, then releases the slot.
func (p *Pool) exec(c *execCtx, r *runner, j job) (err error) {
	defer func() {
		if v := recover(); v != nil {
			err = &PanicError{Value: v, Stack: stackTrace()}
		}
		c.finish()
		p.release(r)
	}()
	if j.inv != nil {
		if j.started != nil {
			close(j.started)
		}
		return c.result(p.invoke(c, r, j.inv))
	}
	fn := j.fn
	if j.started != nil { // a child: say when fn starts (fresh variables, so that j stays off the heap)
		f, started := j.fn, j.started
		fn = func(ctx context.Context) error {
			close(started)
			return f(ctx)
		}
	}
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
