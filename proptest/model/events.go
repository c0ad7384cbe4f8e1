package model

import "fmt"

// EventKind names a pool hook.
type EventKind string

const (
	GrowStart EventKind = "grow-start" // OnGrowStart
	GrowEnd   EventKind = "grow-end"   // OnGrowEnd
	Shrink    EventKind = "shrink"     // OnShrink
)

// Event is one hook call (SPEC §3.10).
//
// Count is booted + booting runners: for GrowStart when the boot was decided,
// this one included, so that boots decided together get distinct, increasing
// counts; for GrowEnd and Shrink right after the change.
//
// Detail is, for GrowEnd, "ok", "failed" or "canceled" (flame.ErrBootCanceled:
// Resize or Close no longer wanted the boot); for Shrink, the Reason.
type Event struct {
	Kind     EventKind
	RunnerID uint64
	Count    int
	Detail   string
}

func (e Event) String() string {
	s := fmt.Sprintf("%s #%d count=%d", e.Kind, e.RunnerID, e.Count)
	if e.Detail != "" {
		s += " " + e.Detail
	}
	return s
}

// Growth results in GrowEnd's Detail.
const (
	GrowOK       = "ok"
	GrowFailed   = "failed"
	GrowCanceled = "canceled"
)

func (m *Model) emit(e Event) { m.events = append(m.events, e) }
