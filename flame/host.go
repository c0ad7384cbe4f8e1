package flame

import (
	"cmp"
	"slices"

	"github.com/goflame/goflame/flame/internal/scaler"
	"github.com/goflame/goflame/flame/internal/waitq"
)

// host is the pool as the scaler sees it (a separate method set, so that
// these methods stay off Pool's public API).
type host Pool

func (h *host) Waiting() int { return h.q.Len() }

func (h *host) Boot(b scaler.Boot) {
	p := (*Pool)(h)
	p.wg.Go(func() {
		out := p.bootRunner(b.Ctx, b.ID, b.Count, true)
		if out.late != nil {
			// The boot failed at BootTimeout, but its Backend.Boot call
			// still runs and keeps its room under Max until it returns.
			p.sc.BootOverdue(b.ID, out.err)
			go func() { // not in p.wg: the call may outlive the pool
				<-out.late
				p.sc.BootDone(b.ID, nil, out.err)
			}()
			return
		}
		if out.err != nil {
			p.sc.BootDone(b.ID, nil, out.err)
			return
		}
		p.sc.BootDone(b.ID, out.r, nil)
		p.watch(out.r)
	})
}

func (h *host) FailQueued(keep int, err error) {
	p := (*Pool)(h)
	p.q.Lock()
	defer p.q.Unlock()
	i := 0
	p.q.Each(func(e *waitq.Elem[*waiter]) {
		if i++; i > keep {
			p.q.Remove(e)
			e.Value.err = err
			e.Value.ch <- failedMark
		}
	})
	p.queueLeft()
}

// Publish installs the scaler's runners as the set checkout scans. The
// checkouts of the runners that leave it are kept (they are Down: they take
// no checkout any more). The scaler calls it under its lock, so calls never
// overlap.
func (h *host) Publish(rs []scaler.Runner) {
	p := (*Pool)(h)
	set := make([]*runner, len(rs))
	for i, r := range rs {
		set[i] = r.(*runner)
	}
	old := *p.set.Swap(&set)
	p.floor.Store(0) // a runner may have joined, with no load: claim raises it again
	for _, r := range old {
		if _, found := slices.BinarySearchFunc(set, r.id, func(r *runner, id uint64) int { return cmp.Compare(r.id, id) }); !found {
			p.retired.Add(r.checkouts())
		}
	}
	p.q.Lock()
	p.serveLocked()
	p.q.Unlock()
}

func (h *host) Shutdown(sr scaler.Runner, reason error) {
	p := (*Pool)(h)
	r := sr.(*runner)
	r.stopWatching()
	r.cancel(reason)
	p.wg.Go(func() { p.stopNode(r.node, r.id) })
}
