package flame

import (
	"context"
	"math"
	"time"

	"github.com/goflame/goflame/flame/internal/waitq"
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
	deadline int64 // on p.clock's scale; 0: no budget
	kind     waitKind
	// ch receives the granted runner, nil when the pool closes (or drops
	// a queued cast), expiredMark when the budget ends, or failedMark (with
	// err) when a boot failed that retrying cannot fix. At most one value
	// is ever sent per wait, under q's lock.
	ch  chan *runner
	err error // with failedMark
}

// claim takes a slot on the least-loaded active runner with a free slot,
// ties to the lowest ID, or returns nil. Lock-free: a scan of the published
// set and one CAS, repeated only if another caller won the CAS.
func (p *Pool) claim() *runner {
	for {
		var best *runner
		var bw uint64
		bl := p.cfg.MaxConcurrency
		for _, r := range *p.set.Load() {
			w := r.word.Load()
			if wordState(w) != stActive {
				continue
			}
			if l := wordLoad(w); l < bl {
				best, bw, bl = r, w, l
				if l == 0 {
					break
				}
			}
		}
		if best == nil {
			return nil
		}
		if best.take(bw) {
			return best
		}
	}
}

// checkout returns a runner whose slot the caller now holds. With a free
// slot and nobody queued it takes no lock and allocates nothing; otherwise
// the caller queues (FIFO) for up to budget, or until ctx is done.
func (p *Pool) checkout(ctx context.Context, budget time.Duration, kind waitKind) (*runner, error) {
	if p.q.Len() == 0 {
		if r := p.claim(); r != nil {
			return r, nil
		}
	}
	return p.checkoutSlow(ctx, budget, kind)
}

func (p *Pool) checkoutSlow(ctx context.Context, budget time.Duration, kind waitKind) (*runner, error) {
	w := p.waiterPool.Get().(*waiter)
	w.ctx, w.kind, w.deadline = ctx, kind, 0
	r, err := p.wait(w, budget)
	w.ctx = nil
	p.waiterPool.Put(w) // nothing refers to it any more (see wait)
	return r, err
}

// wait queues w and waits for a slot. When it returns, w is out of the queue
// and its channel is empty, so w can be reused.
func (p *Pool) wait(w *waiter, budget time.Duration) (*runner, error) {
	// Exact, so a budget ends when it says; the clock's coarse reading
	// could end it up to a millisecond early.
	queued := p.clock.Exact()
	if budget != Infinity {
		if w.deadline = queued + int64(budget); w.deadline < 0 {
			w.deadline = math.MaxInt64
		}
	}

	p.q.Lock()
	if p.closing.Load() && (w.kind != kindCast || p.dropCast) {
		p.q.Unlock()
		return nil, ErrClosed
	}
	r, err := p.waitQueued(w)
	p.waits.record(r != nil, p.clock.Exact()-queued)
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
	if w.elem.Queued() && w.deadline != 0 && (p.sweepAt == 0 || w.deadline < p.sweepAt) {
		p.armSweep(w.deadline)
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
// failedMark to one failed by a boot that retrying cannot fix.
var expiredMark, failedMark = new(runner), new(runner)

// granted takes the outcome of a wait. A caller whose ctx ended while the
// slot was on its way gives the slot back rather than run with a dead ctx.
func (p *Pool) granted(w *waiter, r *runner) (*runner, error) {
	switch r {
	case nil:
		return nil, ErrClosed
	case expiredMark:
		return nil, p.checkoutTimeout()
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
	if !removed {
		select {
		case r := <-w.ch:
			if r != nil && r != expiredMark && r != failedMark {
				p.release(r)
			}
			w.err = nil
		default: // skipped because its ctx ended: nothing was handed over
		}
	}
	return nil, err
}
