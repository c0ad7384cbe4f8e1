package flame

import (
	"context"
	"sync"
	"sync/atomic"
	"time"
)

// callCtx is a registered function's ctx on a runner: cancelled by the
// parent's CANCEL or the runner stopping (base), and at the call's
// deadline. The deadline's timer is made only when somebody waits for the
// ctx (Done, or a context derived from it): a function that returns
// without waiting has Err check the clock instead. Arming a timer per
// call can wake an idle thread, which cost a small call a good part of its
// round trip.
//
// Once armed, timed (a context.WithDeadline of base) stands in for base in
// every method, so contexts derived from it hook into a real timerCtx and
// see DeadlineExceeded at the deadline, as with context.WithDeadline.
type callCtx struct {
	base     context.Context // cancelled by CANCEL and when the runner stops
	runner   uint64
	deadline time.Time // zero: none

	mu    sync.Mutex // orders arming
	timed atomic.Pointer[timedCtx]
}

type timedCtx struct {
	ctx    context.Context
	cancel context.CancelFunc
}

func newCallCtx(base context.Context, runner uint64, timeout time.Duration) *callCtx {
	c := &callCtx{base: base, runner: runner}
	if timeout > 0 {
		c.deadline = time.Now().Add(timeout)
	}
	return c
}

// active is the context the methods defer to: timed once armed, else base.
func (c *callCtx) active() context.Context {
	if t := c.timed.Load(); t != nil {
		return t.ctx
	}
	return c.base
}

// arm makes the deadline's timer (once) and returns the active context.
func (c *callCtx) arm() context.Context {
	if c.deadline.IsZero() {
		return c.base
	}
	if t := c.timed.Load(); t != nil {
		return t.ctx
	}
	c.mu.Lock()
	defer c.mu.Unlock()
	if t := c.timed.Load(); t != nil {
		return t.ctx
	}
	ctx, cancel := context.WithDeadline(c.base, c.deadline)
	c.timed.Store(&timedCtx{ctx: ctx, cancel: cancel})
	return ctx
}

func (c *callCtx) Deadline() (time.Time, bool) { return c.deadline, !c.deadline.IsZero() }

func (c *callCtx) Done() <-chan struct{} { return c.arm().Done() }

func (c *callCtx) Err() error {
	if t := c.timed.Load(); t != nil {
		return t.ctx.Err()
	}
	if err := c.base.Err(); err != nil {
		return err
	}
	if !c.deadline.IsZero() && !time.Now().Before(c.deadline) {
		return c.arm().Err() // past the deadline: the timer fires at once
	}
	return nil
}

func (c *callCtx) Value(key any) any {
	if key == (runnerIDKey{}) {
		return c.runner
	}
	// context.Cause calls Err first, which arms the timer once the deadline
	// has passed, so the cause is found here.
	return c.active().Value(key)
}

func (c *callCtx) String() string { return "flame.callCtx" }

// end releases the timer, if any, once the call has returned.
func (c *callCtx) end() {
	if t := c.timed.Load(); t != nil {
		t.cancel()
	}
}
