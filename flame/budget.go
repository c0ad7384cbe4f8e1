package flame

import (
	"math"
	"time"

	"github.com/goflame/goflame/flame/internal/clock"
	"github.com/goflame/goflame/flame/internal/waitq"
)

// Budgets of queued callers end through one timer per pool, armed for the
// earliest deadline in the queue, rather than one timer per caller: a
// queued checkout then waits on its channel alone. now is a reading just
// taken. Requires q's lock.
func (p *Pool) armSweep(at, now int64) {
	p.sweepAt = at
	d := time.Duration(at - now)
	if p.sweepTimer == nil {
		p.sweepTimer = time.AfterFunc(d, p.sweep)
		return
	}
	p.sweepTimer.Reset(d)
}

// sweep ends the wait of every queued caller whose budget has run out, and
// re-arms for the earliest deadline left.
func (p *Pool) sweep() {
	p.q.Lock()
	defer p.q.Unlock()
	now := p.clock.Exact()
	next := int64(math.MaxInt64) // the earliest deadline left; MaxInt64: none
	p.q.Each(func(e *waitq.Elem[*waiter]) {
		// An if chain rather than a switch: mutation testing sees the
		// coverage of statements, and a case's condition is none.
		w := e.Value
		if w.budget == 0 {
			return
		}
		d := w.due(p.clock)
		if d <= now {
			p.q.Remove(e)
			w.ch <- expiredMark
			return
		}
		next = min(next, d)
	})
	p.sweepAt = 0
	if next != math.MaxInt64 { // none left with a deadline short of forever: no timer
		p.armSweep(next, now)
	}
	p.queueLeft()
}

// expire is called for each queued waiter found dead at handoff, and tells
// it why: its budget ran out, or its ctx ended (it may have woken already,
// and takes the word in abandon).
func expire(w *waiter) {
	if w.ctx.Err() != nil {
		w.ch <- goneMark
		return
	}
	w.ch <- expiredMark
}

// live reports whether a queued waiter still wants a slot. now is read at
// most once per pass.
func (w *waiter) live(now *int64, clk *clock.Clock) bool {
	if w.ctx.Err() != nil {
		return false
	}
	if w.budget == 0 {
		return true
	}
	if *now == 0 {
		*now = clk.Now()
	}
	return *now < w.earliest() || *now < w.due(clk)
}

// due returns w's deadline, working it out from w's stamp the first time:
// never more than clock.Tolerance before the caller queued plus its
// budget, as an execution limit's. Requires q's lock and a budget.
func (w *waiter) due(clk *clock.Clock) int64 {
	if w.deadline == 0 {
		w.deadline = addLimit(clk.Start(w.stamp), w.budget)
	}
	return w.deadline
}

// earliest returns the earliest w's deadline can be, reading no clock:
// its stamp's reading plus the budget, or the deadline once known.
// Requires q's lock and a budget.
func (w *waiter) earliest() int64 {
	if w.deadline != 0 {
		return w.deadline
	}
	return addLimit(w.stamp.At(), w.budget)
}
