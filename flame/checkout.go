package flame

import (
	"context"
	"time"

	"github.com/goflame/goflame/flame/internal/clock"
	"github.com/goflame/goflame/flame/internal/waitq"
	"github.com/goflame/goflame/internal/placement"
)

type waitKind uint8

const (
	kindCall waitKind = iota
	kindChild
	kindCast
)

// waiter is one caller queued for a slot.
type waiter struct {
	elem     waitq.Elem[*waiter]
	ctx      context.Context
	budget   int64       // the checkout budget (ns); 0: none
	stamp    *clock.Tick // the tick stamped when the caller queued, until deadline is known
	deadline int64       // on p.clock's scale once known (see due); 0: not yet, or no budget
	kind     waitKind
	// gen is the generation the granter took the runner's word to (the
	// work's context comes from it: see ctxEntry), set before the runner
	// is sent on ch.
	gen uint64
	// ch receives the granted runner, nil when the pool closes (or drops
	// a queued cast), expiredMark when the budget ends, goneMark when a
	// handoff found its ctx ended, or failedMark (with err) when a boot
	// failed that retrying cannot fix. Whoever takes a waiter out of the
	// queue, other than the waiter itself, sends exactly one value: under
	// q's lock, or, for a handoff, just after releasing it (so the woken
	// caller does not wait for the lock the releaser holds).
	ch  chan *runner
	err error // with failedMark
}

// claim takes a slot on a least-loaded active runner with a free slot, and
// returns the runner and the generation the checkout took its word to, or
// nil. Which of equally loaded runners it takes depends on the caller (see
// package placement): callers on different cores then land on different
// runners rather than all on the lowest ID, whose word would bounce between
// their cores on every claim and release.
//
// Lock-free: a look at a runner or a few, and one CAS, repeated only if
// another caller won the CAS. p.floor is a lower bound on the least load,
// so a runner whose load is at most the floor is a least-loaded one. claim
// looks at the caller's runner, then at a random one, and takes the first
// whose load is at most the floor; failing that it scans every runner from
// the random one's position (by ID, wrapping around), stopping at the
// first such runner, and takes the least loaded it saw, raising the floor
// to its load when the scan saw them all. So its cost does not grow with
// the pool while some runner is at the floor, which is the steady state.
// (The random look keeps a runner that is busy for a while from passing
// all of its callers to its neighbour in the scan.) With nothing else
// running meanwhile the choice is exactly least-loaded; under concurrency
// it is least-loaded as of the loads it read.
func (p *Pool) claim() (*runner, uint64) {
	for {
		set := *p.set.Load()
		n := len(set)
		if n == 0 {
			return nil, 0
		}
		floor := p.floor.Load()
		i := placement.Caller(n)
		r, w, ok := atFloor(set[i], floor)
		if !ok {
			i = placement.Start(n)
			r, w, ok = atFloor(set[i], floor)
		}
		if !ok {
			if r, w = p.scan(set, i, floor); r == nil {
				return nil, 0
			}
		}
		if gen, ok := r.take(w); ok {
			return r, gen
		}
	}
}

// atFloor reports whether r takes work and its load is at most floor,
// with the word it read.
func atFloor(r *runner, floor int64) (*runner, uint64, bool) {
	w := r.word.Load()
	return r, w, wordState(w) == stActive && int64(wordLoad(w)) <= floor
}

// scan returns the least-loaded active runner with a free slot, and the
// word it read, looking from position i on, wrapping around, and stopping
// at the first whose load is at most floor; nil if none has a free slot.
func (p *Pool) scan(set []*runner, i int, floor int64) (*runner, uint64) {
	var best *runner
	var bw uint64
	bl := p.cfg.MaxConcurrency
	for range set {
		r := set[i]
		if i++; i == len(set) {
			i = 0
		}
		w := r.word.Load()
		if wordState(w) != stActive {
			continue
		}
		if l := wordLoad(w); l < bl {
			best, bw, bl = r, w, l
			if int64(l) <= floor {
				return best, bw
			}
		}
	}
	if best != nil {
		// The scan saw every runner: none is below bl. A release that
		// lowered the floor meanwhile makes this fail, as it should.
		p.floor.CompareAndSwap(floor, int64(bl))
	}
	return best, bw
}

// lowerFloor keeps p.floor at most load, the load a runner has just
// dropped to.
func (p *Pool) lowerFloor(load int) {
	for {
		f := p.floor.Load()
		if int64(load) >= f || p.floor.CompareAndSwap(f, int64(load)) {
			return
		}
	}
}

// checkout returns a runner whose slot the caller now holds, and the
// generation the checkout took the runner's word to (the work's context
// comes from it: see ctxEntry). With a free slot and nobody queued it takes
// no lock and allocates nothing; otherwise the caller queues (FIFO) for up
// to budget, or until ctx is done.
func (p *Pool) checkout(ctx context.Context, budget time.Duration, kind waitKind) (*runner, uint64, error) {
	if p.q.Len() == 0 {
		if r, gen := p.claim(); r != nil {
			return r, gen, nil
		}
	}
	return p.checkoutSlow(ctx, budget, kind)
}

func (p *Pool) checkoutSlow(ctx context.Context, budget time.Duration, kind waitKind) (*runner, uint64, error) {
	w := p.waiterPool.Get().(*waiter)
	w.ctx, w.kind, w.budget, w.deadline = ctx, kind, 0, 0
	r, err := p.wait(w, budget)
	gen := w.gen
	w.ctx, w.stamp = nil, nil
	p.waiterPool.Put(w) // nothing refers to it any more (see wait)
	return r, gen, err
}

// wait queues w and waits for a slot. When it returns, w is out of the queue
// and its channel is empty, so w can be reused.
func (p *Pool) wait(w *waiter, budget time.Duration) (*runner, error) {
	// The coarse clock, as for an execution limit: a reading of the time
	// costs about as much as the checkout, and most waits end long before
	// their budget, so the budget's start is worked out from the stamp
	// only when the sweep or a handoff needs its deadline (see due).
	tick, queued := p.clock.Stamp()
	if tick != nil {
		queued = tick.At()
	}
	if budget != Infinity {
		w.budget = int64(budget)
		if tick == nil {
			w.deadline = addLimit(queued, w.budget)
		}
		w.stamp = tick
	}

	p.q.Lock()
	if p.closing.Load() && (w.kind != kindCast || p.dropCast) {
		p.q.Unlock()
		return nil, ErrClosed
	}
	r, err := p.waitQueued(w)
	p.waits.record(r != nil, max(0, p.clock.Now()-queued))
	return r, err
}

// waitQueued queues w, whose caller holds q's lock, and waits for a slot.
func (p *Pool) waitQueued(w *waiter) (*runner, error) {
	// Queue first, then look for a slot: a release that ran just before
	// the push freed a slot this finds, and one that runs after it sees the
	// queue and hands its slot over. Either way no slot sits free beside a
	// waiter.
	p.q.PushBack(&w.elem)
	p.serveLocked()
	if w.elem.Queued() && w.budget != 0 && (p.sweepAt == 0 || w.earliest() < p.sweepAt) {
		// Unless the sweep is armed no later than this deadline can be
		// (the steady state under load: equal budgets end in queue
		// order), it may have to be armed for this one. That reads the
		// clock anyway, so this deadline is exact.
		now := p.clock.Exact()
		if w.deadline == 0 {
			w.deadline = addLimit(now, w.budget)
		}
		if p.sweepAt == 0 || w.deadline < p.sweepAt {
			p.armSweep(w.deadline, now)
		}
	}
	p.q.Unlock()

	select {
	case r := <-w.ch:
		return p.granted(w, r)
	default:
	}
	if p.sc.CanGrow() {
		p.sc.Kick()
	}
	// Budgets end through the sweep, Close through the channel too (nil),
	// so only the caller's ctx needs watching besides it.
	done := w.ctx.Done()
	if done == nil {
		return p.granted(w, <-w.ch)
	}
	select {
	case r := <-w.ch:
		return p.granted(w, r)
	case <-done:
		return p.abandon(w, w.ctx.Err())
	}
}

// expiredMark is sent to a waiter whose budget ran out while it was queued;
// goneMark to one a handoff passed over because its ctx had ended;
// failedMark to one failed by a boot that retrying cannot fix.
var expiredMark, goneMark, failedMark = new(runner), new(runner), new(runner)

// granted takes the outcome of a wait. A caller whose ctx ended while the
// slot was on its way gives the slot back rather than run with a dead ctx.
func (p *Pool) granted(w *waiter, r *runner) (*runner, error) {
	switch r {
	case nil:
		return nil, ErrClosed
	case expiredMark:
		return nil, p.checkoutTimeout()
	case goneMark:
		return nil, w.ctx.Err()
	case failedMark:
		err := w.err
		w.err = nil
		return nil, err
	}
	if err := w.ctx.Err(); err != nil {
		p.release(r)
		return nil, err
	}
	return r, nil
}

// abandon takes a waiter that gave up out of the queue. If a slot was handed
// to it meanwhile, the slot is released again, never lost.
func (p *Pool) abandon(w *waiter, err error) (*runner, error) {
	p.q.Lock()
	removed := p.q.Remove(&w.elem)
	p.q.Unlock()
	p.queueLeft()
	if !removed { // someone else took it out, and sends (or has sent) it one value
		if r := <-w.ch; r != nil && r != expiredMark && r != goneMark && r != failedMark {
			p.release(r)
		}
		w.err = nil
	}
	return nil, err
}
