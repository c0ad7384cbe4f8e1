package model

import (
	"fmt"
	"time"
)

// CloseCall is one call of Pool.Close.
type CloseCall struct {
	Returned bool
	Result   CloseResult
	returnAt time.Duration // when it returns, once Returned is set
}

// CloseResult is what Close returned.
type CloseResult string

const (
	CloseOK       CloseResult = "nil"               // everything stopped
	CloseDeadline CloseResult = "deadline-exceeded" // ctx ended first: ctx.Err()
)

// Close is Pool.Close(ctx) where ctx ends after timeout (Infinity: never)
// (§3.12). It returns the index of this call in Closes.
//
// New work gets ErrClosed from now on (Start). Queued Call and PlaceChild
// callers get ErrClosed at once; accepted casts stay queued and still run if
// they get a slot before ctx ends. Pending boots are cancelled once nothing
// is queued (evaluate). When no work is left, every pending boot is
// cancelled and every runner shut down (stop) and Close returns nil. If ctx
// ends first, queued casts are dropped, in-flight work is cancelled (its
// callers see ErrClosed), everything is shut down the same way, and Close
// returns ctx.Err(). A second Close returns nil at once.
func (m *Model) Close(timeout time.Duration) int {
	c := &CloseCall{}
	m.closes = append(m.closes, c)
	if m.closing {
		c.Returned, c.Result = true, CloseOK
		return len(m.closes) - 1
	}
	m.closing = true
	m.closeBy = after(m.now, timeout)
	for _, w := range append([]*Work(nil), m.queue...) {
		if w.Spec.Kind != KindCast {
			m.dequeue(w)
			w.Phase = Over
			m.returns(w, Closed)
		}
	}
	m.settle()
	return len(m.closes) - 1
}

// drained reports that no work is left: nothing queued, no fn running.
func (m *Model) drained() bool {
	for _, w := range m.works {
		if w.Phase != Over {
			return false
		}
	}
	return true
}

// fireCloseDeadline is Close's ctx ending before the work did (§3.12).
func (m *Model) fireCloseDeadline() {
	for _, w := range append([]*Work(nil), m.queue...) {
		m.dequeue(w) // only casts are left: dropped
		w.Phase = Over
	}
	for _, w := range m.works {
		if w.Phase != Running {
			continue
		}
		if r := m.runners[w.Runner]; r != nil && (r.Draining || m.cfg.SingleUse) {
			// implementation: the cancelled fn's release, which would
			// remove this runner, races with Close shutting it down.
			m.ambiguous(fmt.Sprintf("Close's deadline cancels work %d on runner #%d, which is draining", w.ID, r.ID))
		}
		m.fnReturned(w, Closed)
	}
	m.stop(CloseDeadline)
}

// stop shuts everything down: pending boots are cancelled (lowest ID
// first), then every runner is removed, lowest ID first, with OnShrink for
// each (reason closed), and the pending Close returns result: nil once every
// goroutine of the pool has exited, which includes boots still in their
// OnGrowStart; ctx.Err() at once.
func (m *Model) stop(result CloseResult) {
	returnAt := m.now
	if result == CloseOK {
		returnAt = max(returnAt, m.hooksUntil)
	}
	m.cancelBoots()
	for _, r := range m.sortedRunners() {
		m.remove(r, ReasonClosed)
	}
	m.stopped = true
	m.retryPending = false
	for _, c := range m.closes {
		if !c.Returned {
			c.Returned, c.Result, c.returnAt = true, result, returnAt
		}
	}
}
