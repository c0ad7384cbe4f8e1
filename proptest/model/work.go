package model

import (
	"fmt"
	"time"
)

// Kind says which API call started a work.
type Kind uint8

const (
	KindCall  Kind = iota // Pool.Call (SPEC §3.3)
	KindCast              // Pool.Cast (SPEC §3.4)
	KindChild             // Pool.PlaceChild (SPEC §3.5)
)

func (k Kind) String() string {
	switch k {
	case KindCall:
		return "call"
	case KindCast:
		return "cast"
	default:
		return "child"
	}
}

// Spec is what the caller asked for.
type Spec struct {
	Kind     Kind
	Timeout  time.Duration // WithTimeout(d); 0: not given
	Unlinked bool          // WithLink(false)
}

func (s Spec) String() string {
	out := s.Kind.String()
	if s.Timeout != 0 {
		out += fmt.Sprintf(" timeout=%v", s.Timeout)
	}
	if s.Unlinked {
		out += " unlinked"
	}
	return out
}

// Phase is where a work is.
type Phase uint8

const (
	Queued  Phase = iota // waiting for a slot
	Running              // fn runs on Runner, holding a slot
	Over                 // fn has returned, or never started and never will
)

// Outcome is an error as the tests classify it.
type Outcome string

const (
	None            Outcome = ""                 // not returned yet
	OK              Outcome = "nil"              // success
	CheckoutTimeout Outcome = "checkout-timeout" // flame.ErrCheckoutTimeout
	Timeout         Outcome = "timeout"          // flame.ErrTimeout
	RunnerDown      Outcome = "runner-down"      // flame.ErrRunnerDown
	Closed          Outcome = "closed"           // flame.ErrClosed
	Canceled        Outcome = "canceled"         // context.Canceled from the caller's ctx
	Invalid         Outcome = "invalid-config"   // flame.ErrInvalidConfig (Resize)
)

// Work is one Call, Cast or PlaceChild.
type Work struct {
	ID     int
	Spec   Spec
	Phase  Phase
	Runner uint64 // the runner fn ran on; 0 if it never started

	waitUntil time.Duration // while Queued: the end of the checkout wait
	execUntil time.Duration // while Running: the execution limit
	waitSlack time.Duration // how much earlier the pool may end the wait (clock.go)
	execSlack time.Duration // how much earlier the pool may end the execution
	CtxDone   bool          // the caller's ctx has been cancelled

	// Returned and Result: what Call, PlaceChild or Cast returned.
	Returned bool
	Result   Outcome
	// NamesBootError: a checkout timeout whose message carries the last boot
	// error (SPEC §3.2: "if boots have failed, the message includes ...").
	NamesBootError bool

	// ChildDone and ChildErr: a placed child's fn has returned, with Err.
	ChildDone bool
	ChildErr  Outcome
}

// Start is a caller calling Call, Cast or PlaceChild with spec and a live
// ctx, at Now. It returns the work's ID.
//
// After Close has begun, all three return ErrClosed at once (SPEC §3.12). A Cast
// otherwise returns nil at once: the work is accepted (SPEC §3.4); its checkout
// and fn go on without the caller. Call and PlaceChild return when their work
// ends or their child has started.
func (m *Model) Start(spec Spec) int {
	w := &Work{ID: len(m.works) + 1, Spec: spec, Phase: Over}
	m.works = append(m.works, w)
	if m.closing {
		m.returns(w, Closed)
		m.settle()
		return w.ID
	}
	if spec.Kind == KindCast {
		m.returns(w, OK)
	}
	m.checkout(w)
	m.settle()
	return w.ID
}

// Finish is fn returning nil: the work succeeded (SPEC §3.3).
func (m *Model) Finish(id int) {
	w := m.works[id-1]
	if w.Phase != Running {
		panic(fmt.Sprintf("model: Finish of work %d that is not running", id))
	}
	m.fnReturned(w, OK)
	m.settle()
}

// Cancel is the caller's ctx being cancelled.
//
// A queued caller leaves the queue and gets ctx.Err() (SPEC §3.2); a queued cast
// is dropped. A linked fn's ctx follows (SPEC §3.3, §3.4, §3.5): fn returns
// ctx.Err() and the slot is released. An unlinked Call returns ctx.Err() at
// once while its fn keeps running and keeps its slot (SPEC §3.3); an unlinked
// cast does not notice at all.
func (m *Model) Cancel(id int) {
	w := m.works[id-1]
	if w.CtxDone {
		return
	}
	w.CtxDone = true
	switch w.Phase {
	case Queued:
		if w.Spec.Kind == KindCast && w.Spec.Unlinked {
			break // implementation: an unlinked cast waits with context.WithoutCancel
		}
		m.leaveQueue(w)
		if w.Spec.Kind != KindCast {
			m.returns(w, Canceled)
		}
	case Running:
		if !w.Spec.Unlinked {
			m.fnReturned(w, Canceled)
			break
		}
		if w.Spec.Kind == KindCall && !w.Returned {
			m.returns(w, Canceled)
		}
	}
	m.settle()
}

// StopChild is Child.Stop: the child's ctx is cancelled and its fn returns
// ctx.Err() (SPEC §2, §3.5).
func (m *Model) StopChild(id int) {
	w := m.works[id-1]
	if w.Spec.Kind != KindChild || w.Phase != Running {
		panic(fmt.Sprintf("model: StopChild of work %d that is not a running child", id))
	}
	m.fnReturned(w, Canceled)
	m.settle()
}

// waitBudget is how long a checkout may wait (SPEC §3.2): WithTimeout's d, else
// BootTimeout for Call and PlaceChild, and no limit for Cast (SPEC §3.4).
func (m *Model) waitBudget(s Spec) time.Duration {
	switch {
	case s.Timeout != 0:
		return s.Timeout
	case s.Kind == KindCast:
		return Infinity
	default:
		return m.cfg.BootTimeout
	}
}

// execLimit is fn's execution limit: a fresh WithTimeout d, else
// Config.Timeout for Call (SPEC §3.3); none for Cast unless WithTimeout (SPEC §3.4);
// none ever for a child (SPEC §3.5).
func (m *Model) execLimit(s Spec) time.Duration {
	switch {
	case s.Kind == KindChild:
		return Infinity
	case s.Timeout != 0:
		return s.Timeout
	case s.Kind == KindCast:
		return Infinity
	default:
		return m.cfg.Timeout
	}
}

// started is fn starting on r: PlaceChild returns its child now (SPEC §3.5).
func (m *Model) started(w *Work, r *Runner) {
	w.Phase = Running
	w.Runner = r.ID
	w.execUntil = after(m.now, m.execLimit(w.Spec))
	w.execSlack = m.slack + m.cfg.ClockSlack
	if w.Spec.Kind == KindChild {
		m.returns(w, OK)
	}
}

// fnReturned is fn returning with result: the slot is released exactly once
// (SPEC §3.3), a Call that still waits for fn returns result, a child is done.
func (m *Model) fnReturned(w *Work, result Outcome) {
	w.Phase = Over
	m.release(w)
	switch w.Spec.Kind {
	case KindCall:
		if !w.Returned {
			m.returns(w, result)
		}
	case KindChild:
		w.ChildDone, w.ChildErr = true, result
	}
}

// returns records what the caller got back.
func (m *Model) returns(w *Work, result Outcome) {
	w.Returned, w.Result = true, result
}

// after is t+d, where d may be Infinity.
func after(t, d time.Duration) time.Duration {
	if d == Infinity {
		return Infinity
	}
	return t + d
}
