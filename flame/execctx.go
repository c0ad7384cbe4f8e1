package flame

import (
	"context"
	"errors"
	"sync"
	"sync/atomic"
	"time"
)

// execCtx is the context fn runs with. It is cancelled when the execution
// limit passes, when the runner goes down, when Child.Stop is called, when fn
// has returned, and, if linked, when the caller's ctx is done.
//
// It costs one allocation and nothing else until fn asks for Done: only then
// are timers and cancellation hooks registered. Err and the call's result
// work the conditions out on demand before that, so a fn that never looks
// at its ctx pays for no timer, no goroutine and no lock.
type execCtx struct {
	parent   context.Context // values always; cancellation when linked
	r        *runner
	deadline time.Time // zero: no execution limit
	linked   bool

	phase atomic.Uint32 // fresh -> armed (Done was asked for) or finished

	mu    sync.Mutex // guards the fields below once armed
	done  chan struct{}
	err   error
	cause error // why: ErrTimeout, the runner's cause, or nil (parent, stop, finish)
	stops []func() bool
}

const (
	phaseFresh uint32 = iota
	phaseArmed
	phaseFinished
)

var closedChan = func() chan struct{} { c := make(chan struct{}); close(c); return c }()

func newExecCtx(parent context.Context, r *runner, linked bool, limit time.Duration) *execCtx {
	c := &execCtx{parent: parent, r: r, linked: linked}
	if limit != Infinity && limit > 0 {
		c.deadline = time.Now().Add(limit)
	}
	return c
}

func (c *execCtx) Deadline() (time.Time, bool) {
	d, ok := c.deadline, !c.deadline.IsZero()
	if c.linked {
		if pd, pok := c.parent.Deadline(); pok && (!ok || pd.Before(d)) {
			return pd, true
		}
	}
	return d, ok
}

func (c *execCtx) Value(key any) any {
	if key == (runnerIDKey{}) {
		return c.r.id
	}
	return c.parent.Value(key)
}

func (c *execCtx) Done() <-chan struct{} {
	c.mu.Lock()
	defer c.mu.Unlock()
	if c.done != nil {
		return c.done
	}
	if !c.phase.CompareAndSwap(phaseFresh, phaseArmed) {
		// fn has returned: the context is over.
		c.done = closedChan
		c.setErr(context.Canceled, nil)
		return c.done
	}
	c.done = make(chan struct{})
	if c.err == nil {
		if err, cause := c.fired(); err != nil {
			c.setErr(err, cause)
		}
	}
	if c.err != nil {
		close(c.done)
		return c.done
	}
	if c.linked && c.parent.Done() != nil {
		parent := c.parent
		c.stops = append(c.stops, context.AfterFunc(parent, func() { c.cancel(parent.Err(), nil) }))
	}
	if !c.deadline.IsZero() {
		t := time.AfterFunc(time.Until(c.deadline), func() { c.cancel(context.DeadlineExceeded, ErrTimeout) })
		c.stops = append(c.stops, t.Stop)
	}
	rctx := c.r.ctx
	c.stops = append(c.stops, context.AfterFunc(rctx, func() { c.cancel(context.Canceled, context.Cause(rctx)) }))
	return c.done
}

func (c *execCtx) Err() error {
	c.mu.Lock()
	defer c.mu.Unlock()
	if c.err == nil && c.done == nil {
		if c.phase.Load() == phaseFinished {
			c.setErr(context.Canceled, nil)
		} else if err, cause := c.fired(); err != nil {
			c.setErr(err, cause)
		}
	}
	return c.err
}

func (c *execCtx) String() string { return "flame.execCtx" }

// fired works out whether a cancellation condition holds now. The runner
// going down comes first, then the execution limit, then the caller.
func (c *execCtx) fired() (err, cause error) {
	if c.r.ctx.Err() != nil {
		return context.Canceled, context.Cause(c.r.ctx)
	}
	if !c.deadline.IsZero() && !time.Now().Before(c.deadline) {
		return context.DeadlineExceeded, ErrTimeout
	}
	if c.linked {
		if err := c.parent.Err(); err != nil {
			return err, nil
		}
	}
	return nil, nil
}

// setErr records the first cancellation. Requires c.mu.
func (c *execCtx) setErr(err, cause error) {
	if c.err != nil {
		return
	}
	c.err, c.cause = err, cause
	if c.done != nil && c.done != closedChan {
		close(c.done)
	}
	for _, stop := range c.stops {
		stop()
	}
	c.stops = nil
}

// cancel cancels the context (Child.Stop and the registered hooks).
func (c *execCtx) cancel(err, cause error) {
	c.mu.Lock()
	c.setErr(err, cause)
	c.mu.Unlock()
}

// finish ends the context once fn has returned.
func (c *execCtx) finish() {
	if c.phase.CompareAndSwap(phaseFresh, phaseFinished) {
		return // never armed: nothing registered, and Done/Err now report Canceled
	}
	c.phase.Store(phaseFinished)
	c.cancel(context.Canceled, nil)
}

// result turns fn's error into the call's: fn's error unchanged, or wrapped
// with ErrTimeout when the limit had fired, or with the runner's cause
// (ErrRunnerDown, ErrClosed) when the runner went down. A *PanicError is
// returned as it is.
func (c *execCtx) result(err error) error {
	if err == nil {
		return nil
	}
	var pe *PanicError
	if errors.As(err, &pe) {
		return err
	}
	c.mu.Lock()
	cause := c.cause
	if c.err == nil {
		_, cause = c.fired()
	}
	c.mu.Unlock()
	if cause == nil {
		return err
	}
	return &wrapError{kind: cause, err: err}
}
