package model

import (
	"fmt"
	"time"
)

// CloseCall is one call of Pool.Close.
type CloseCall struct {
	Returned bool
	Result   CloseResult
	by       time.Duration // when its ctx ends
	returnAt time.Duration // when it returns, once Returned is set
}

// CloseResult is what Close returned.
type CloseResult string

const (
	CloseOK       CloseResult = "nil"               // everything stopped
	CloseDeadline CloseResult = "deadline-exceeded" // ctx ended first: ctx.Err()
)

// Close is Pool.Close(ctx) where ctx ends after timeout (Infinity: never)
// (SPEC §3.12). It returns the index of this call in Closes.
//
// New work gets ErrClosed from now on (Start). Queued Call and PlaceChild
// callers get ErrClosed at once; accepted casts stay queued and still run if
// they get a slot before ctx ends. Pending boots are cancelled once nothing
// is queued (evaluate). When no work is left, every pending boot is
// cancelled and every runner shut down (stop) and Close returns nil. If ctx
// ends first, queued casts are dropped, in-flight work is cancelled (its
// callers see ErrClosed), everything is shut down the same way, and Close
// returns ctx.Err().
//
// Every Close waits for the same completion, bounded by its own ctx: a
// second Close while the first waits returns what the first does, or
// ctx.Err() if its own ctx ends first (which forces the close just as the
// first's would); a Close that begins after completion returns nil at once.
func (m *Model) Close(timeout time.Duration) int {
	c := &CloseCall{by: after(m.now, timeout)}
	m.closes = append(m.closes, c)
	if m.stopped {
		m.settleClose(c, CloseOK, m.completeAt)
		return len(m.closes) - 1
	}
	if m.closing {
		return len(m.closes) - 1
	}
	m.closing = true
	for _, w := range append([]*Work(nil), m.queue...) {
		if w.Spec.Kind != KindCast {
			m.leaveQueue(w)
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

// closeDeadline returns the earliest ctx deadline of the Close calls still
// waiting, and which call it is.
func (m *Model) closeDeadline() (time.Duration, *CloseCall) {
	at, which := Infinity, (*CloseCall)(nil)
	for _, c := range m.closes {
		if !c.Returned && c.by < at {
			at, which = c.by, c
		}
	}
	return at, which
}

// fireCloseDeadline is a Close's ctx ending before the work did (SPEC §3.12):
// that Close returns ctx.Err() and the close is forced.
func (m *Model) fireCloseDeadline() {
	_, c := m.closeDeadline()
	c.Returned, c.Result, c.returnAt = true, CloseDeadline, m.now
	for _, w := range append([]*Work(nil), m.queue...) {
		m.leaveQueue(w) // only casts are left: dropped
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
	m.stop()
}

// stop shuts everything down: pending boots are cancelled (lowest ID
// first), then every runner is removed, lowest ID first, with OnShrink for
// each (reason closed). The close completes once every goroutine of the
// pool has exited, which includes boots still in their OnGrowStart; each
// Close still waiting then returns nil, or ctx.Err() when its ctx ends
// first.
func (m *Model) stop() {
	m.cancelBoots()
	for _, r := range m.sortedRunners() {
		m.remove(r, ReasonClosed)
	}
	m.stopped = true
	m.retryPending = false
	m.completeAt = max(m.now, m.hooksUntil)
	for _, c := range m.closes {
		if !c.Returned {
			m.settleClose(c, CloseOK, m.completeAt)
		}
	}
}

// settleClose decides a Close call's return: result at at, unless its ctx
// ends first.
func (m *Model) settleClose(c *CloseCall, result CloseResult, at time.Duration) {
	at = max(at, m.now)
	if c.by < at {
		result, at = CloseDeadline, max(c.by, m.now)
	}
	c.Returned, c.Result, c.returnAt = true, result, at
}
