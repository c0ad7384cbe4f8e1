package flame

import (
	"sync/atomic"
	"time"
)

// Stats is a snapshot of a pool for monitoring; exact when the pool is
// quiescent. The totals count since NewPool.
type Stats struct {
	Name                     string
	Min, Max, MaxConcurrency int
	Runners                  int          // booted and taking work (not draining, shutting down, or used single-use)
	Pending                  int          // booting (a boot that failed or was canceled no longer counts, though its Backend.Boot call, while it runs, still counts against Max)
	Waiting                  int          // callers queued for a slot
	InUse                    int          // slots held across all runners
	RunnerLoads              []RunnerLoad // every runner not yet removed, sorted by ID
	Booted                   uint64       // successful boots, Min boots included
	BootFailures             uint64
	Shrunk                   uint64        // runners removed, for any reason
	Checkouts                uint64        // slots taken
	Waits                    uint64        // checkouts that had to queue first
	WaitTime                 time.Duration // total time callers spent queued, those who gave up included; each wait read on the pool's coarse clock (to a millisecond)
	GaveUp                   uint64        // queued callers that left without a slot: ctx, budget, Close, a failed boot
}

// waitStats counts the queue's customers. Only callers that queue touch
// it, so the free path pays nothing for it.
type waitStats struct {
	waits, gaveUp atomic.Uint64
	waitTime      atomic.Int64 // ns
}

func (s *waitStats) record(got bool, waited int64) {
	if got {
		s.waits.Add(1)
	} else {
		s.gaveUp.Add(1)
	}
	s.waitTime.Add(waited)
}

// RunnerLoad is one runner's held slots.
type RunnerLoad struct {
	ID   uint64
	Load int
}

// Stats returns a snapshot of the pool.
func (p *Pool) Stats() Stats {
	ss := p.sc.Stats()
	st := Stats{
		Name: p.cfg.Name, Min: ss.Min, Max: ss.Max, MaxConcurrency: p.cfg.MaxConcurrency,
		Pending: ss.Pending, Waiting: p.q.Len(),
		Booted: ss.Booted, BootFailures: ss.BootFailures, Shrunk: ss.Shrunk,
		Checkouts: p.retired.Load(),
		Waits:     p.waits.waits.Load(), GaveUp: p.waits.gaveUp.Load(), WaitTime: time.Duration(p.waits.waitTime.Load()),
	}
	for _, r := range *p.set.Load() { // sorted by ID
		st.Checkouts += r.checkouts()
		w := r.word.Load()
		if wordState(w) == stActive {
			st.Runners++
		}
		st.InUse += wordLoad(w)
		st.RunnerLoads = append(st.RunnerLoads, RunnerLoad{ID: r.id, Load: wordLoad(w)})
	}
	return st
}
