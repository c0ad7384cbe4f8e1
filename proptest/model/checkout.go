package model

import "slices"

// checkout finds w a slot or queues it (SPEC §3.2).
//
// A newcomer takes a free slot only when nobody is queued; otherwise it joins
// the back of the one FIFO queue, so it never overtakes a waiter. A queued
// caller waits for at most its wait budget.
func (m *Model) checkout(w *Work) {
	if len(m.queue) == 0 {
		if r := m.claim(); r != nil {
			m.grant(w, r)
			return
		}
	}
	w.Phase = Queued
	w.waitUntil = after(m.now, m.waitBudget(w.Spec))
	w.waitSlack = m.slack
	m.queue = append(m.queue, w)
	m.serve()
}

// claim picks the runner for a new checkout (SPEC §3.2): among the runners that
// take work (not draining, SPEC §3.8, §3.11) and have a free slot, the least
// loaded; ties go to the first at or after position start mod n of the n
// runners by ascending ID, wrapping around (PlaceFrom). nil when no slot is
// free.
func (m *Model) claim() *Runner {
	rs := m.sortedRunners()
	if len(rs) == 0 {
		return nil
	}
	i := m.start % len(rs)
	rs = append(rs[i:], rs[:i]...)
	var best *Runner
	for _, r := range rs {
		if r.Draining || r.Load >= m.cfg.MaxConcurrency {
			continue
		}
		if best == nil || r.Load < best.Load {
			best = r
		}
	}
	return best
}

// PlaceFrom sets where claims search from (SPEC §3.2: a random position in
// the pool; the test fixes the same one for the pool and the model).
func (m *Model) PlaceFrom(start int) { m.start = start }

// grant gives w a slot on r, and fn starts. Every grant is a checkout
// (Stats.Checkouts), one to a queued caller a wait too (Stats.Waits).
func (m *Model) grant(w *Work, r *Runner) {
	r.Load++
	r.Used = true
	m.checkouts++
	if w.Phase == Queued {
		m.waits++
	}
	m.started(w, r)
}

// serve hands free slots to queued callers, head first, while any slot is
// free (SPEC §3.2b: a runner came up; also after any release that did not hand
// its slot over).
func (m *Model) serve() {
	for len(m.queue) > 0 {
		r := m.claim()
		if r == nil {
			return
		}
		m.grant(m.popHead(), r)
	}
}

// release gives back the slot that w held (SPEC §3.2a, SPEC §3.8).
//
// A release on a runner that is gone (it crashed or was shut down) does
// nothing (SPEC §6, FLAME #66). Otherwise the slot goes straight to the head
// waiter, on the same runner, never to a newcomer — unless the runner takes
// no new work: a single-use runner takes no checkout once one of its
// checkouts is released, and shuts down when its last one is; a draining
// runner shuts down when its last checkout is released.
func (m *Model) release(w *Work) {
	r := m.runners[w.Runner]
	if r == nil {
		return
	}
	if !r.Draining && !m.cfg.SingleUse && len(m.queue) > 0 {
		r.Load--
		m.grant(m.popHead(), r)
		return
	}
	r.Load--
	if m.cfg.SingleUse {
		r.Draining = true
	}
	if r.Draining && r.Load == 0 {
		if r.Resized {
			m.remove(r, ReasonResized)
		} else {
			m.remove(r, ReasonSingleUse)
			m.minDirty = true // SPEC §3.9: fell below Min through single use
		}
	}
	m.serve()
}

// popHead takes the head waiter out of the queue.
func (m *Model) popHead() *Work {
	w := m.queue[0]
	m.queue = m.queue[1:]
	return w
}

// leaveQueue is a queued caller leaving without a slot (Stats.GaveUp).
func (m *Model) leaveQueue(w *Work) {
	m.dequeue(w)
	w.Phase = Over
	m.gaveUp++
}

// dequeue takes w out of the queue wherever it is.
func (m *Model) dequeue(w *Work) {
	if i := slices.Index(m.queue, w); i >= 0 {
		m.queue = slices.Delete(m.queue, i, i+1)
	}
}
