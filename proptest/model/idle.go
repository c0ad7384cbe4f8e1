package model

// armIdle starts a new idle period of r from now (SPEC §3.7, as
// Config.IdleShutdownAfter documents it: a runner is checked at the end of
// each period). Min runners use
// MinIdleShutdownAfter, the others IdleShutdownAfter; Infinity disables it.
//
// A period counts as idle only if the load stayed 0 through all of it
// (SPEC §3.7: "a runner whose load stays 0 for its idle period"), so a period
// that begins while work is running is used already, even if nothing new
// checks the runner out before the work ends.
func (m *Model) armIdle(r *Runner) {
	period := m.cfg.IdleShutdownAfter
	if r.Min {
		period = m.cfg.MinIdleShutdownAfter
	}
	r.IdleAt = after(m.now, period)
	r.idleSlack = m.slack
	r.Used = r.Load > 0
}

// fireIdle is the end of r's idle period (SPEC §3.7).
//
// r shuts down if its load is 0, nothing checked it out during the whole
// period, it may go without leaving fewer than Min runners (min runners
// always may), and the user's IdleCheck agrees. Otherwise a new period
// starts now. So a runner idles down between one and two periods after its
// last work. Idle shutdown never triggers Min replacement.
//
// IdleCheck is user code and runs outside the pool's locks, so it may check
// a slot out meanwhile: the runner is claimed for shutdown only if it is
// still idle after IdleCheck (the atomic claim: no checkout lands on a
// runner that is shutting down, and no call is cancelled by an idle
// shutdown).
func (m *Model) fireIdle(r *Runner) {
	r.IdleAt = Infinity
	if r.Draining {
		return // it goes when its last checkout is released
	}
	if !m.idleCandidate(r) {
		m.armIdle(r)
		return
	}
	if m.cfg.IdleCheck != nil {
		agree := m.cfg.IdleCheck.Check(m)
		if m.runners[r.ID] != r {
			return
		}
		if !agree || !m.idleCandidate(r) {
			m.armIdle(r)
			return
		}
	}
	m.remove(r, ReasonIdle)
}

// idleCandidate reports whether r has been idle for its whole period and
// may go without breaking Min.
func (m *Model) idleCandidate(r *Runner) bool {
	if r.Draining || r.Load != 0 || r.Used {
		return false
	}
	return r.Min || m.activeCount()-1 >= m.min
}
