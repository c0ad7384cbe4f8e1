package model

import (
	"maps"
	"math"
	"slices"
	"time"
)

// Infinity means "no limit" for a timeout or idle setting, as flame.Infinity.
const Infinity time.Duration = math.MaxInt64

// RetryAfter is how long after a failed boot a retry may start (SPEC §3.6).
const RetryAfter = time.Second

// Config is the pool's configuration, already validated and with every
// default filled in (the model does not repeat SPEC §3.1's validation).
type Config struct {
	Min, Max       int  // runners kept booted; bound on booted + booting
	MaxConcurrency int  // slots per runner
	SingleUse      bool // SPEC §3.8

	Timeout     time.Duration // execution limit of a Call (SPEC §3.3)
	BootTimeout time.Duration // limit of one boot and the default checkout wait (SPEC §3.2, §3.6)

	IdleShutdownAfter    time.Duration // idle period of runners booted for demand (SPEC §3.7)
	MinIdleShutdownAfter time.Duration // idle period of runners booted for Min (SPEC §3.7)

	// GrowStartDelay is how long the user's OnGrowStart takes. The boot
	// calls Backend.Boot after it, and BootTimeout starts then
	// (implementation; the contract does not say whether BootTimeout
	// includes OnGrowStart).
	GrowStartDelay time.Duration

	// ClockSlack is how much earlier than the exact instant an execution
	// limit may end. implementation: execution limits start from a coarse
	// clock that lags the true time by up to its resolution (1 ms), where
	// the contract says the ctx is cancelled "when the execution limit
	// passes". See clock.go for how the model copes with the window.
	ClockSlack time.Duration

	// IdleCheck is the user's Config.IdleCheck, or nil. It is user code: it
	// may act on the pool while it runs, which the model allows by handing
	// it the model.
	IdleCheck IdleCheck
}

// IdleCheck is user code consulted before an idle runner shuts down (SPEC §3.7).
type IdleCheck interface {
	// Check reports whether the runner may idle down. It may call the
	// model's public methods, as user code may call the pool's.
	Check(m *Model) bool
	// Clone returns an independent copy, for Model.Clone.
	Clone() IdleCheck
}

// Model is the pool's state. The zero value is not usable; call New.
type Model struct {
	cfg      Config
	min, max int // Min and Max now in force (Resize changes them)
	now      time.Duration
	slack    time.Duration // how much earlier the pool may be doing what happens now (clock.go)

	runners map[uint64]*Runner // booted and not yet removed, draining ones included
	start   int                // where a claim's search for a runner begins (claim, PlaceFrom)
	boots   map[uint64]*Boot   // pending boots
	nextID  uint64             // the next runner ID (SPEC §2: IDs increase in boot order)

	queue []*Work // callers waiting for a slot, head first (SPEC §3.2)
	works []*Work // every Call, Cast and PlaceChild, by ID-1

	retryPending bool          // a boot retry is scheduled (SPEC §3.6)
	retryAt      time.Duration // when it fires
	retrySlack   time.Duration
	minDirty     bool // Min may need replacements (crash, single use, Resize)

	closing    bool          // Close has begun (SPEC §3.12)
	completeAt time.Duration // when the close completes, once stopped
	stopped    bool          // Close has shut everything down
	hooksUntil time.Duration // when the last OnGrowStart so far returns
	closes     []*CloseCall

	booted, bootFailures, shrunk uint64
	checkouts, waits, gaveUp     uint64
	bootFailed                   bool // some boot has failed: checkout timeouts name it (SPEC §3.2)

	events    []Event
	ambiguity string
}

// New returns the pool right after NewPool: Min runners booted (IDs 1..Min,
// counted in Booted, no events, SPEC §3.1), each a min runner with its idle period
// starting now (SPEC §3.7).
func New(cfg Config) *Model {
	m := &Model{
		cfg:     cfg,
		min:     cfg.Min,
		max:     cfg.Max,
		runners: map[uint64]*Runner{},
		boots:   map[uint64]*Boot{},
		nextID:  1,
	}
	for range cfg.Min {
		r := &Runner{ID: m.nextID, Min: true}
		m.nextID++
		m.runners[r.ID] = r
		m.booted++
		m.armIdle(r)
	}
	return m
}

// Clone returns an independent copy of m: a driver can try a step on the
// copy and keep it only if the step turned out well defined.
func (m *Model) Clone() *Model {
	c := *m
	if m.cfg.IdleCheck != nil {
		c.cfg.IdleCheck = m.cfg.IdleCheck.Clone()
	}
	c.runners = make(map[uint64]*Runner, len(m.runners))
	for id, r := range m.runners {
		rc := *r
		c.runners[id] = &rc
	}
	c.boots = make(map[uint64]*Boot, len(m.boots))
	for id, b := range m.boots {
		bc := *b
		c.boots[id] = &bc
	}
	c.works = make([]*Work, len(m.works))
	for i, w := range m.works {
		wc := *w
		c.works[i] = &wc
	}
	c.queue = make([]*Work, len(m.queue))
	for i, w := range m.queue {
		c.queue[i] = c.works[w.ID-1]
	}
	c.closes = make([]*CloseCall, len(m.closes))
	for i, cl := range m.closes {
		cc := *cl
		c.closes[i] = &cc
	}
	c.events = slices.Clone(m.events)
	return &c
}

// Now is the time since NewPool.
func (m *Model) Now() time.Duration { return m.now }

// Config returns the configuration m was made with.
func (m *Model) Config() Config { return m.cfg }

// Closing reports whether Close has begun; Stopped whether it has shut
// everything down.
func (m *Model) Closing() bool { return m.closing }

// Stopped reports whether Close has shut every runner down.
func (m *Model) Stopped() bool { return m.stopped }

// Events returns the events so far, in order.
func (m *Model) Events() []Event { return slices.Clone(m.events) }

// Work returns the work with the given ID (1-based, in start order).
func (m *Model) Work(id int) Work { return *m.works[id-1] }

// Works returns every work started so far, by ID.
func (m *Model) Works() []Work {
	out := make([]Work, len(m.works))
	for i, w := range m.works {
		out[i] = *w
	}
	return out
}

// PendingBoots returns the IDs of the pending boots, ascending.
func (m *Model) PendingBoots() []uint64 { return slices.Sorted(maps.Keys(m.boots)) }

// BootsInBackend returns the IDs of the pending boots whose Backend.Boot
// has been called (their OnGrowStart has returned), ascending.
func (m *Model) BootsInBackend() []uint64 {
	var ids []uint64
	for _, id := range m.PendingBoots() {
		if m.boots[id].InBackend <= m.now {
			ids = append(ids, id)
		}
	}
	return ids
}

// RunnerIDs returns the IDs of the runners not yet removed, ascending.
func (m *Model) RunnerIDs() []uint64 { return slices.Sorted(maps.Keys(m.runners)) }

// Closes returns the Close calls so far, in order.
func (m *Model) Closes() []CloseCall {
	out := make([]CloseCall, len(m.closes))
	for i, c := range m.closes {
		out[i] = *c
		out[i].Returned = c.Returned && c.returnAt <= m.now
	}
	return out
}

// Ambiguity describes the first instant at which the model met timers whose
// order the real pool does not fix, or "" when there was none.
func (m *Model) Ambiguity() string { return m.ambiguity }

func (m *Model) ambiguous(why string) {
	if m.ambiguity == "" {
		m.ambiguity = "t=" + m.now.String() + ": " + why
	}
}

// Stats is flame.Stats without the fields that never change.
type Stats struct {
	Min, Max                     int
	Runners, Pending, Waiting    int
	InUse                        int
	RunnerLoads                  []RunnerLoad // by ID
	Booted, BootFailures, Shrunk uint64
	Checkouts, Waits, GaveUp     uint64
}

// RunnerLoad is one runner's held slots.
type RunnerLoad struct {
	ID   uint64
	Load int
}

// Stats is the pool's snapshot (SPEC §3.13): Runners counts the runners that take
// work (draining and used single-use runners do not); RunnerLoads and InUse
// cover every runner not yet removed.
func (m *Model) Stats() Stats {
	s := Stats{
		Min: m.min, Max: m.max,
		Pending: len(m.boots), Waiting: len(m.queue),
		Booted: m.booted, BootFailures: m.bootFailures, Shrunk: m.shrunk,
		Checkouts: m.checkouts, Waits: m.waits, GaveUp: m.gaveUp,
	}
	for _, r := range m.sortedRunners() {
		if !r.Draining {
			s.Runners++
		}
		s.InUse += r.Load
		s.RunnerLoads = append(s.RunnerLoads, RunnerLoad{ID: r.ID, Load: r.Load})
	}
	return s
}

// settle is what the pool does after every change: the scaler re-evaluates
// demand (SPEC §3.2), and a closing pool that has run out of work shuts down
// (SPEC §3.12).
func (m *Model) settle() {
	m.evaluate()
	if m.closing && !m.stopped && m.drained() {
		m.stop()
	}
}
