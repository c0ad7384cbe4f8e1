package flame

import (
	"context"
	"errors"
	"math"
	"sync"
	"sync/atomic"
	"time"

	"github.com/goflame/goflame/flame/internal/clock"
)

// execCtx is the context fn runs with. It is cancelled when the execution
// limit passes, when the runner goes down, when Child.Stop is called, when fn
// has returned, and, if linked, when the caller's ctx is done.
//
// It costs one small allocation and nothing else until somebody asks for
// Done: only then are a timer and cancellation hooks registered (in a
// second, lazily allocated part). Err and the call's result work the
// conditions out on demand before that, so a fn that never looks at its ctx
// pays for no timer, no goroutine and no lock. Nor does it pay for
// reading the time: the call stamps the pool's coarse clock (one atomic
// load, see internal/clock), and the limit's start is worked out from the
// stamp only when somebody needs the deadline, never more than
// clock.Tolerance before the call's true start however late the clock ran.
type execCtx struct {
	parent context.Context // values always; cancellation when linked
	r      *runner
	start  *clock.Tick  // the tick stamped at the call's start, until dl is known
	limit  int64        // the execution limit (ns); 0: none
	dl     atomic.Int64 // the deadline on p.clock's scale once known; 0: not yet, or no limit
	linked bool
	phase  atomic.Uint32 // phaseFresh -> phaseArmed (Done asked for) or phaseFinished
	lz     atomic.Pointer[execLazy]
}

// execLazy is the part of an execCtx that exists only once it is armed,
// cancelled, or found expired.
type execLazy struct {
	mu     sync.Mutex
	done   chan struct{} // nil until Done is asked for
	err    error
	cause  error // why: ErrTimeout, the runner's cause, or nil (caller, Stop, finish)
	stops  []func() bool
	after  []*afterFunc // AfterFunc callbacks not yet run or stopped
	hooked bool         // the caller's and the runner's cancellation are hooked
}

// afterFunc is one AfterFunc registration.
type afterFunc struct{ f func() }

const (
	phaseFresh uint32 = iota
	phaseArmed
	phaseFinished
)

var closedChan = func() chan struct{} { c := make(chan struct{}); close(c); return c }()

// newExecCtx returns the context for work on r under the checkout that
// took r's word to generation gen.
func (p *Pool) newExecCtx(gen uint64, parent context.Context, r *runner, linked bool, limit time.Duration) *execCtx {
	c := r.ctxEntry(gen)
	c.parent, c.r, c.linked = parent, r, linked
	if limit == Infinity { // callers pass a positive limit or Infinity
		return c
	}
	c.limit = int64(limit)
	if r.invoker != nil {
		// A remote call takes tens of microseconds and sends its deadline
		// at once, so an exact reading costs it nothing, while the coarse
		// clock's refresher, ticking every millisecond as long as calls
		// flow, slowed a small remote call's round trip by about half
		// (each tick wakes a thread).
		c.dl.Store(addLimit(p.clock.Exact(), c.limit))
		return c
	}
	tick, exact := p.clock.Stamp()
	if tick == nil {
		c.dl.Store(addLimit(exact, c.limit))
	}
	c.start = tick
	return c
}

// addLimit is start + limit, saturated rather than wrapped for a huge
// finite limit. Readings are never negative (time since the clock's
// epoch), so MaxInt64 - start cannot overflow.
func addLimit(start, limit int64) int64 {
	return start + min(limit, math.MaxInt64-start)
}

// deadline returns the execution limit's deadline on p.clock's scale, or
// 0 for none, working it out from the call's stamp the first time.
func (c *execCtx) deadline() int64 {
	if c.limit == 0 {
		return 0
	}
	if d := c.dl.Load(); d != 0 {
		return d
	}
	d := addLimit(c.r.pool.clock.Start(c.start), c.limit)
	if c.dl.CompareAndSwap(0, d) {
		return d
	}
	return c.dl.Load()
}

// lazy returns the lazy part, allocating it on first use.
func (c *execCtx) lazy() *execLazy {
	if lz := c.lz.Load(); lz != nil {
		return lz
	}
	lz := new(execLazy)
	if c.lz.CompareAndSwap(nil, lz) {
		return lz
	}
	return c.lz.Load()
}

func (c *execCtx) Deadline() (time.Time, bool) {
	var d time.Time
	if dl := c.deadline(); dl != 0 {
		d = c.r.pool.clock.Time(dl)
	}
	if c.linked {
		if pd, ok := c.parent.Deadline(); ok && (d.IsZero() || pd.Before(d)) {
			return pd, true
		}
	}
	return d, !d.IsZero()
}

func (c *execCtx) Value(key any) any {
	if key == (runnerIDKey{}) {
		return c.r.id
	}
	return c.parent.Value(key)
}

func (c *execCtx) Done() <-chan struct{} {
	lz := c.lazy()
	lz.mu.Lock()
	defer lz.mu.Unlock()
	if lz.done != nil {
		return lz.done
	}
	if !c.arm(lz) {
		lz.done = closedChan
		return lz.done
	}
	lz.done = make(chan struct{})
	if dl := c.deadline(); dl != 0 {
		wait := time.Duration(dl - c.r.pool.clock.Exact())
		t := time.AfterFunc(wait, func() { c.cancel(context.DeadlineExceeded, ErrTimeout) })
		lz.stops = append(lz.stops, t.Stop)
	}
	return lz.done
}

// arm marks the context as watched and hooks the caller's and the runner's
// cancellation into it (once), unless it is already over: then it records
// why and returns false. Requires lz.mu.
func (c *execCtx) arm(lz *execLazy) bool {
	if lz.err != nil { // cancelled, or found expired by Err, before anyone asked
		return false
	}
	if !c.phase.CompareAndSwap(phaseFresh, phaseArmed) && c.phase.Load() == phaseFinished {
		c.setErr(lz, context.Canceled, nil) // fn has returned: the context is over
		return false
	}
	if err, cause := c.fired(); err != nil {
		c.setErr(lz, err, cause)
		return false
	}
	if !lz.hooked {
		lz.hooked = true
		if c.linked && c.parent.Done() != nil {
			parent := c.parent
			lz.stops = append(lz.stops, context.AfterFunc(parent, func() { c.cancel(parent.Err(), nil) }))
		}
		rctx := c.r.ctx
		lz.stops = append(lz.stops, context.AfterFunc(rctx, func() { c.cancel(context.Canceled, context.Cause(rctx)) }))
	}
	return true
}

func (c *execCtx) Err() error {
	if c.lz.Load() == nil {
		if c.phase.Load() != phaseFinished {
			if err, _ := c.fired(); err == nil {
				return nil // the common case: nothing fired, nothing allocated
			}
		}
	}
	lz := c.lazy()
	lz.mu.Lock()
	defer lz.mu.Unlock()
	if lz.err == nil && lz.done == nil {
		if c.phase.Load() == phaseFinished {
			c.setErr(lz, context.Canceled, nil)
		} else if err, cause := c.fired(); err != nil {
			c.setErr(lz, err, cause)
		}
	}
	return lz.err
}

func (c *execCtx) String() string { return "flame.execCtx" }

// fired works out whether a cancellation condition holds now. The runner
// going down comes first, then the execution limit, then the caller.
func (c *execCtx) fired() (err, cause error) {
	if c.r.ctx.Err() != nil {
		return context.Canceled, context.Cause(c.r.ctx)
	}
	if dl := c.deadline(); dl != 0 && c.r.pool.clock.Exact() >= dl {
		return context.DeadlineExceeded, ErrTimeout
	}
	if c.linked {
		if err := c.parent.Err(); err != nil {
			return err, nil
		}
	}
	return nil, nil
}

// setErr records the first cancellation. Requires lz.mu.
func (c *execCtx) setErr(lz *execLazy, err, cause error) {
	if lz.err != nil {
		return
	}
	lz.err, lz.cause = err, cause
	if lz.done != nil && lz.done != closedChan {
		close(lz.done)
	}
	for _, stop := range lz.stops {
		stop()
	}
	lz.stops = nil
	for _, a := range lz.after {
		go a.f()
	}
	lz.after = nil
}

// AfterFunc arranges for f to run in its own goroutine once the context is
// done, and returns a stop function as context.AfterFunc does. The context
// package finds this method: context.AfterFunc, WithCancel, WithTimeout
// and the like on a fn's ctx register here instead of starting a goroutine
// that waits for Done.
func (c *execCtx) AfterFunc(f func()) (stop func() bool) {
	c.Done() // arm every cancellation source, the execution limit's timer included
	return c.register(f)
}

// onCancel is AfterFunc for a caller that enforces the execution limit by
// other means (a process runner gets the time left and enforces it
// there): f runs once the context is cancelled, but no timer is armed for
// the limit, so f may run late, or not at all, for the limit alone.
// Arming a timer per call can wake an idle thread, which costs a small
// remote call a good part of its round trip.
func (c *execCtx) onCancel(f func()) (stop func() bool) {
	lz := c.lazy()
	lz.mu.Lock()
	c.arm(lz)
	lz.mu.Unlock()
	return c.register(f)
}

// register adds f to the callbacks setErr runs, or runs it now if the
// context is over.
func (c *execCtx) register(f func()) (stop func() bool) {
	lz := c.lazy()
	lz.mu.Lock()
	defer lz.mu.Unlock()
	if lz.err != nil {
		go f()
		return func() bool { return false }
	}
	a := &afterFunc{f: f}
	lz.after = append(lz.after, a)
	return func() bool {
		lz.mu.Lock()
		defer lz.mu.Unlock()
		for i, b := range lz.after {
			if b == a {
				lz.after = append(lz.after[:i], lz.after[i+1:]...)
				return true
			}
		}
		return false // it has run, or is running
	}
}

// cancel cancels the context (Child.Stop and the registered hooks).
func (c *execCtx) cancel(err, cause error) {
	lz := c.lazy()
	lz.mu.Lock()
	c.setErr(lz, err, cause)
	lz.mu.Unlock()
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
	var cause error
	recorded := false
	if lz := c.lz.Load(); lz != nil {
		lz.mu.Lock()
		cause, recorded = lz.cause, lz.err != nil
		lz.mu.Unlock()
	}
	if !recorded {
		_, cause = c.fired()
	}
	if cause == nil {
		return err
	}
	return &wrapError{kind: cause, err: err}
}
