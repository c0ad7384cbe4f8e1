package model

import (
	"cmp"
	"fmt"
	"slices"
	"strings"
	"time"
)

// Advance lets d pass. Every timer that comes due fires at its instant, in
// time order, and the pool settles after each.
//
// Windows. Most timers of the pool fire at an exact instant, but an
// execution limit may end up to Config.ClockSlack early (the pool reads a
// coarse clock when fn starts), and whatever that early end sets off — a
// waiter handed the slot, whose own limit then starts, a runner removed, a
// boot decided — happens early by as much. So each timer has a window
// [at-slack, at] within which the pool fires it; the model fires it at the
// end of the window. When a window contains another timer's or the instant
// at which the driver looks or acts, the order of the two in the real pool
// is not fixed, and neither is the outcome: the model records an Ambiguity
// (unless the order cannot matter, see conflict). A driver then discards
// the step. Exact ties are the special case of empty windows.
func (m *Model) Advance(d time.Duration) {
	target := m.now + d
	for {
		ts := m.timers()
		first := -1
		for i, t := range ts {
			if t.at <= target && (first < 0 || t.at < ts[first].at || (t.at == ts[first].at && t.kind < ts[first].kind)) {
				first = i
			}
		}
		if first < 0 {
			break
		}
		t := ts[first]
		m.conflict(t, ts)
		m.now, m.slack = t.at, t.slack
		t.fire(m)
		m.settle()
		m.slack = 0
	}
	m.now = target
	for _, t := range m.timers() {
		if t.at-t.slack <= target {
			m.ambiguous(fmt.Sprintf("%v may end before %v (it ends between %v and %v)", t, target, t.at-t.slack, t.at))
		}
	}
	for _, b := range m.boots {
		if b.InBackend > target && b.InBackend-b.slack <= target {
			m.ambiguous(fmt.Sprintf("boot #%d may call Backend.Boot before %v", b.ID, target))
		}
	}
}

// NextTimer returns the instant of the earliest armed timer, or Infinity.
func (m *Model) NextTimer() time.Duration {
	next := Infinity
	for _, t := range m.timers() {
		next = min(next, t.at)
	}
	return next
}

type timerKind uint8

// In the order in which timers due at one instant fire.
const (
	waitEnd       timerKind = iota // a queued caller's checkout wait ends (SPEC §3.2)
	execEnd                        // fn's execution limit passes (SPEC §3.3)
	idleEnd                        // a runner's idle period ends (SPEC §3.7)
	retryFire                      // a boot retry fires (SPEC §3.6)
	bootDeadline                   // a boot reaches BootTimeout (SPEC §3.6)
	closeDeadline                  // Close's ctx ends (SPEC §3.12)
)

type timer struct {
	at, slack time.Duration // the pool fires it within [at-slack, at]
	kind      timerKind
	work      *Work
	runner    *Runner
	boot      *Boot
}

// timers returns every armed timer.
func (m *Model) timers() []timer {
	var ts []timer
	for _, w := range m.works {
		switch {
		case w.Phase == Queued && w.waitUntil != Infinity:
			ts = append(ts, timer{at: w.waitUntil, slack: w.waitSlack, kind: waitEnd, work: w})
		case w.Phase == Running && w.execUntil != Infinity:
			ts = append(ts, timer{at: w.execUntil, slack: w.execSlack, kind: execEnd, work: w})
		}
	}
	for _, r := range m.sortedRunners() {
		if r.IdleAt != Infinity {
			ts = append(ts, timer{at: r.IdleAt, slack: r.idleSlack, kind: idleEnd, runner: r})
		}
	}
	if m.retryPending {
		ts = append(ts, timer{at: m.retryAt, slack: m.retrySlack, kind: retryFire})
	}
	for _, id := range m.PendingBoots() {
		if b := m.boots[id]; b.Deadline != Infinity {
			ts = append(ts, timer{at: b.Deadline, slack: b.slack, kind: bootDeadline, boot: b})
		}
	}
	if at, _ := m.closeDeadline(); m.closing && !m.stopped && at != Infinity {
		ts = append(ts, timer{at: at, kind: closeDeadline})
	}
	return ts
}

func (t timer) fire(m *Model) {
	switch t.kind {
	case waitEnd:
		m.waitExpired(t.work)
	case execEnd:
		m.fnReturned(t.work, Timeout) // fn returns ctx.Err() after its limit: ErrTimeout (SPEC §3.3)
	case idleEnd:
		m.fireIdle(t.runner)
	case retryFire:
		m.fireRetry()
	case bootDeadline:
		m.bootFailedNow(t.boot)
	default:
		m.fireCloseDeadline()
	}
}

// waitExpired is the end of w's checkout wait: ErrCheckoutTimeout, naming
// the last boot error if a boot has failed (SPEC §3.2). A cast that cannot start
// in its WithTimeout is dropped (SPEC §3.4: its errors are only logged).
func (m *Model) waitExpired(w *Work) {
	m.leaveQueue(w)
	if w.Spec.Kind != KindCast {
		m.returns(w, CheckoutTimeout)
		w.NamesBootError = m.bootFailed
	}
}

func (t timer) String() string {
	switch t.kind {
	case waitEnd:
		return fmt.Sprintf("the checkout wait of work %d", t.work.ID)
	case execEnd:
		return fmt.Sprintf("the execution limit of work %d", t.work.ID)
	case idleEnd:
		return fmt.Sprintf("the idle period of runner #%d", t.runner.ID)
	case retryFire:
		return "the boot retry"
	case bootDeadline:
		return fmt.Sprintf("the BootTimeout of boot #%d", t.boot.ID)
	default:
		return "Close's deadline"
	}
}

// conflict records an Ambiguity when first, the timer about to fire, may in
// the pool fire together with, or after, other timers whose windows reach
// back to its instant. Two such groups are harmless: ends of checkout waits
// alone (each of those waiters is past its deadline, whatever the order),
// and execution limits alone while nobody is queued, on runners that keep
// taking work (each release only lowers a load).
func (m *Model) conflict(first timer, ts []timer) {
	group := []timer{first}
	for _, t := range ts {
		if t != first && t.at-t.slack <= first.at {
			group = append(group, t)
		}
	}
	if len(group) < 2 {
		return
	}
	waits, limits := 0, 0
	for _, t := range group {
		switch t.kind {
		case waitEnd:
			waits++
		case execEnd:
			if r := m.runners[t.work.Runner]; r != nil && !r.Draining && !m.cfg.SingleUse && len(m.queue) == 0 {
				limits++
			}
		}
	}
	if waits == len(group) || limits == len(group) {
		return
	}
	slices.SortFunc(group, func(a, b timer) int { return cmp.Compare(a.at, b.at) })
	names := make([]string, len(group))
	for i, t := range group {
		names[i] = fmt.Sprintf("%v (%v..%v)", t, t.at-t.slack, t.at)
	}
	m.ambiguous("timers may end in either order: " + strings.Join(names, ", "))
}
