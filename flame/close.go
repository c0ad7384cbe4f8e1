package flame

import (
	"context"
	"sync"

	"github.com/goflame/goflame/flame/internal/waitq"
)

// closer is the state of a pool's Close. The first Close starts the
// shutdown; every Close, concurrent or later, waits for the same
// completion.
type closer struct {
	forced    chan struct{} // closed when some Close's ctx ended before completion
	forceOnce sync.Once
	stopOnce  sync.Once     // the shutdown proper: drop queued casts, stop the scaler
	done      chan struct{} // closed at completion
	err       error         // the completion's result; written before done is closed
}

// Close shuts the pool down.
//
// New work gets ErrClosed at once, and so do callers still waiting for a
// slot (Call, PlaceChild). Casts already accepted still run while ctx allows;
// those that cannot start before ctx is done are dropped and logged with
// their count. In-flight work runs until ctx is done, then its ctx is
// cancelled (a Call's error then matches ErrClosed). Pending boots are
// canceled once nothing waits for them, and every runner is shut down
// (ShutdownTimeout each, an OnShrink for each).
//
// Close returns nil once every goroutine the pool started has exited. If ctx
// ends first, it cancels what still runs, shuts the runners down and returns
// ctx.Err() without waiting for work that ignores its ctx.
//
// Close never waits on backend code past its limit: a Backend.Boot still
// running after BootTimeout, or a Node.Shutdown after ShutdownTimeout (each
// given a further second to return), is abandoned, and Close then returns
// an error matching ErrAbandoned that names each such call: it may still be
// running, with whatever it holds.
//
// Every Close, concurrent ones included, waits for the same completion
// (each bounded by its own ctx) and returns the same result; a Close that
// begins after completion returns nil. Hooks run on a goroutine Close waits
// for: do not call Close from OnGrowEnd or OnShrink.
func (p *Pool) Close(ctx context.Context) error {
	if p.closing.CompareAndSwap(false, true) {
		p.beginClose()
	} else {
		select {
		case <-p.close.done:
			return nil
		default:
		}
	}
	select {
	case <-p.close.done:
		return p.close.err
	case <-ctx.Done():
	}
	select {
	case <-p.close.done: // both were ready
		return p.close.err
	default:
	}
	p.forceClose()
	return ctx.Err()
}

// beginClose fails the queued callers that are not casts, stops Min upkeep
// and starts the goroutine that completes the close.
func (p *Pool) beginClose() {
	p.q.Lock()
	p.q.Each(func(e *waitq.Elem[*waiter]) {
		if e.Value.kind != kindCast {
			p.q.Remove(e)
			e.Value.ch <- nil
		}
	})
	p.q.Unlock()
	p.sc.SetClosing()
	p.checkDrained()
	go p.completeClose()
}

// completeClose waits until no work is left (or a Close's ctx ends), shuts
// everything down, waits for every goroutine the pool started, and
// records the result.
func (p *Pool) completeClose() {
	select {
	case <-p.drained:
	case <-p.close.forced:
	}
	p.stopAll()
	p.wg.Wait()
	p.baseCancel(ErrClosed)
	p.close.err = p.abandonedError()
	close(p.close.done)
}

// forceClose is a Close's ctx ending before completion: in-flight work is
// cancelled, and everything is shut down without waiting for work.
func (p *Pool) forceClose() {
	p.close.forceOnce.Do(func() {
		p.baseCancel(ErrClosed)
		p.stopAll()
		close(p.close.forced)
	})
}

// stopAll drops the casts still queued, then shuts every runner down and
// stops the scaler and the clock. It runs once.
func (p *Pool) stopAll() {
	p.close.stopOnce.Do(func() {
		p.q.Lock()
		p.dropCast = true
		dropped := 0
		p.q.Each(func(e *waitq.Elem[*waiter]) {
			p.q.Remove(e)
			e.Value.ch <- nil
			dropped++
		})
		if p.sweepTimer != nil {
			p.sweepTimer.Stop() // nobody is queued any more, nor will be
		}
		p.q.Unlock()
		if dropped > 0 {
			p.logError("Close dropped queued casts that could not start", "count", dropped)
		}
		p.sc.Stop(ErrClosed)
		p.clock.Stop()
	})
}

// checkDrained closes p.drained once Close has begun and no work is left:
// no slot held, no accepted work goroutine, nobody queued.
func (p *Pool) checkDrained() {
	if p.work.Load() != 0 || p.q.Len() != 0 || p.inUse() != 0 {
		return
	}
	p.drainMu.Lock()
	defer p.drainMu.Unlock()
	if !p.isDrain {
		p.isDrain = true
		close(p.drained)
	}
}

func (p *Pool) inUse() int {
	n := 0
	for _, r := range *p.set.Load() {
		n += wordLoad(r.word.Load())
	}
	return n
}
