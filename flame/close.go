package flame

import (
	"context"

	"github.com/goflame/goflame/flame/internal/waitq"
)

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
// ctx.Err() without waiting for work that ignores its ctx. A second Close
// returns nil.
func (p *Pool) Close(ctx context.Context) error {
	if !p.closing.CompareAndSwap(false, true) {
		return nil
	}
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

	var err error
	select {
	case <-p.drained:
	case <-ctx.Done():
		err = ctx.Err()
	}

	// Queued casts that did not start are dropped.
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

	if err != nil {
		p.baseCancel(ErrClosed) // cancel in-flight work
	}
	p.sc.Stop(ErrClosed)
	p.clock.Stop()
	if err != nil {
		return err
	}
	all := make(chan struct{})
	go func() {
		p.wg.Wait()
		close(all)
	}()
	select {
	case <-all:
		p.baseCancel(ErrClosed)
		return nil
	case <-ctx.Done():
		p.baseCancel(ErrClosed)
		return ctx.Err()
	}
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
	p.byID.Range(func(_ uint64, r *runner) bool {
		n += wordLoad(r.word.Load())
		return true
	})
	return n
}
