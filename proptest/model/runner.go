package model

import (
	"fmt"
	"maps"
	"slices"
	"time"
)

// Runner is a booted runner that has not been removed.
type Runner struct {
	ID       uint64
	Load     int  // slots held
	Draining bool // takes no new checkout; removed when Load reaches 0
	Min      bool // booted to reach or keep Min: uses MinIdleShutdownAfter (SPEC §3.7)
	Resized  bool // draining because Resize lowered Max (SPEC §3.11), not by single use

	// IdleAt is when the current idle period ends (Infinity: no timer), and
	// Used whether the load was above 0 at any moment since it began.
	IdleAt    time.Duration
	Used      bool
	idleSlack time.Duration // how much earlier the pool may end the period (clock.go)
}

// Reason is why a runner was removed (ShrinkEvent.Reason).
type Reason string

const (
	ReasonIdle      Reason = "idle"       // flame.ErrIdleShutdown (SPEC §3.7)
	ReasonResized   Reason = "resized"    // flame.ErrResized (SPEC §3.11)
	ReasonSingleUse Reason = "single-use" // flame.ErrSingleUse (SPEC §3.8)
	ReasonDown      Reason = "down"       // flame.ErrRunnerDown: it crashed (SPEC §3.9)
	ReasonClosed    Reason = "closed"     // flame.ErrClosed (SPEC §3.12)
)

// Crash is the node of runner id stopping unasked (SPEC §3.9): the runner is
// removed, every fn it ran is cancelled and returns ErrRunnerDown to its
// caller, OnShrink fires, and the pool boots replacements for Min and for
// waiting callers (SPEC §3.2c).
func (m *Model) Crash(id uint64) {
	r := m.runners[id]
	if r == nil {
		panic(fmt.Sprintf("model: Crash of runner %d that is not in the pool", id))
	}
	if m.closing {
		m.noteCloseRace(r)
	}
	m.remove(r, ReasonDown)
	m.minDirty = true
	for _, w := range m.works {
		if w.Phase == Running && w.Runner == id {
			m.fnReturned(w, RunnerDown) // the release is a no-op: the runner is gone
		}
	}
	m.settle()
}

// noteCloseRace flags a crash that ends the last work of a closing pool:
// implementation: Close then shuts the runners down while the crash is being
// reported, and which of the two removes the crashed runner (reason closed
// or down) is a race.
func (m *Model) noteCloseRace(r *Runner) {
	for _, w := range m.works {
		if w.Phase == Queued || (w.Phase == Running && w.Runner != r.ID) {
			return
		}
	}
	m.ambiguous(fmt.Sprintf("runner #%d crashes with the last work of a closing pool", r.ID))
}

// remove takes r out of the pool: Shrunk++ and OnShrink with the count left
// (SPEC §3.10, §3.13).
func (m *Model) remove(r *Runner, why Reason) {
	delete(m.runners, r.ID)
	m.shrunk++
	m.emit(Event{Kind: Shrink, RunnerID: r.ID, Count: m.total(), Detail: string(why)})
}

// total is booted + booting runners: every runner not yet removed (draining
// ones too) plus pending boots. Max bounds it when boots start (SPEC §3.2, §3.13).
func (m *Model) total() int { return len(m.runners) + len(m.boots) }

// activeCount is the number of runners that take work.
func (m *Model) activeCount() int {
	n := 0
	for _, r := range m.runners {
		if !r.Draining {
			n++
		}
	}
	return n
}

// sortedRunners returns the runners by ascending ID.
func (m *Model) sortedRunners() []*Runner {
	rs := make([]*Runner, 0, len(m.runners))
	for _, id := range slices.Sorted(maps.Keys(m.runners)) {
		rs = append(rs, m.runners[id])
	}
	return rs
}

// Runner returns runner id, and whether it is in the pool.
func (m *Model) Runner(id uint64) (Runner, bool) {
	r, ok := m.runners[id]
	if !ok {
		return Runner{}, false
	}
	return *r, true
}
