package model

import (
	"cmp"
	"slices"
)

// Resize is Pool.Resize(min, max) (SPEC §3.11). It returns what Resize returns:
// Invalid for bounds NewPool would reject (SPEC §3.1), Closed once Close has
// begun, else OK.
//
// Below the new Min, runners boot (as min runners). Min runners beyond a
// lower Min become ordinary runners, highest ID first (implementation), and
// their idle period starts now (SPEC §3.7: "after Resize lowers Min, runners above
// the new Min idle like any other"). Above the new Max — not
// counting runners already draining — pending boots are cancelled first,
// newest first (implementation); then idle runners shut down, highest ID
// first (implementation); then busy runners drain, least loaded first, ties
// to the highest ID (implementation): they take no new checkout and shut
// down when their last one is released. Waiters beyond the old Max are
// served as room appears.
func (m *Model) Resize(min, max int) Outcome {
	if max < 1 || min < 0 || min > max {
		return Invalid
	}
	if m.closing {
		return Closed
	}
	m.min, m.max = min, max
	m.minDirty = true
	m.demoteMin()
	excess := m.total() - (len(m.runners) - m.activeCount()) - max
	for excess > 0 && len(m.boots) > 0 {
		m.cancelBoot(slices.Max(m.PendingBoots()))
		excess--
	}
	active := m.activeByIDDesc()
	for _, r := range active {
		if excess <= 0 {
			break
		}
		if r.Load == 0 {
			m.remove(r, ReasonResized)
			excess--
		}
	}
	for ; excess > 0; excess-- {
		r := m.leastLoadedActive()
		if r == nil {
			break
		}
		if r.Load == 0 {
			m.remove(r, ReasonResized)
			continue
		}
		r.Draining, r.Resized = true, true
		r.IdleAt = Infinity // implementation: a draining runner's idle timer stops
	}
	m.settle()
	return OK
}

// activeByIDDesc returns the runners that take work, highest ID first.
func (m *Model) activeByIDDesc() []*Runner {
	var rs []*Runner
	for _, r := range m.sortedRunners() {
		if !r.Draining {
			rs = append(rs, r)
		}
	}
	slices.Reverse(rs)
	return rs
}

// leastLoadedActive returns the active runner with the lowest load, ties to
// the highest ID, or nil.
func (m *Model) leastLoadedActive() *Runner {
	var best *Runner
	for _, r := range m.activeByIDDesc() {
		if best == nil || cmp.Less(r.Load, best.Load) {
			best = r
		}
	}
	return best
}

// demoteMin turns the min runners beyond Min, highest IDs first, into
// ordinary runners whose idle period (IdleShutdownAfter) starts now.
func (m *Model) demoteMin() {
	var mins []*Runner
	for _, r := range m.sortedRunners() {
		if r.Min {
			mins = append(mins, r)
		}
	}
	if len(mins) <= m.min {
		return
	}
	for _, r := range mins[m.min:] {
		r.Min = false
		if !r.Draining {
			m.armIdle(r)
		}
	}
}
