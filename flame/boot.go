package flame

import (
	"context"
	"fmt"
	"time"
)

// bootOutcome is how a boot ended.
type bootOutcome struct {
	r   *runner
	err error
	// late is not nil when BootTimeout passed while Backend.Boot still
	// ran: the boot failed, the call goes on in its own goroutine, and late
	// is closed once it has returned (and whatever it returned has been
	// shut down).
	late <-chan struct{}
}

// bootRunner runs one boot: the OnGrowStart hook (if events), then
// Backend.Boot bounded by BootTimeout. Backend.Boot runs in a goroutine of
// its own, outside p.wg: the pool waits for it up to BootTimeout (even
// when ctx is canceled first, so that a backend that honours its ctx
// returns what it holds), then gives up on it.
func (p *Pool) bootRunner(ctx context.Context, id uint64, count int, events bool) bootOutcome {
	if events && p.cfg.OnGrowStart != nil {
		ev := GrowEvent{Pool: p.cfg.Name, Count: count, RunnerID: id}
		v, stack := p.callHook(func() { p.cfg.OnGrowStart(ev) })
		if v != nil {
			p.logError("OnGrowStart panicked; boot failed", "runner", id, "panic", v, "stack", string(stack))
			return bootOutcome{err: fmt.Errorf("flame: boot runner %d: OnGrowStart panicked: %v", id, v)}
		}
	}
	limit := p.cfg.BootTimeout
	bctx, cancel := withLimit(ctx, limit)
	bctx = context.WithValue(bctx, poolLoggerKey{}, p.logger())
	type result struct {
		node Node
		err  error
	}
	ch := make(chan result, 1)
	late := make(chan struct{})
	uc := p.calls.start(fmt.Sprintf("Backend.Boot of runner %d (BootTimeout %v)", id, limit))
	go func() {
		var res result
		func() {
			defer func() {
				if v := recover(); v != nil {
					res.err = fmt.Errorf("Backend.Boot panicked: %v", v)
				}
			}()
			res.node, res.err = p.cfg.Backend.Boot(bctx, RunnerSpec{Pool: p.cfg.Name, ID: id})
		}()
		cancel()
		if p.calls.end(uc) {
			ch <- res
			return
		}
		// Abandoned at BootTimeout: nobody wants what came late.
		if res.node != nil {
			p.stopLateNode(res.node, id)
		}
		close(late)
	}()
	var expired <-chan time.Time
	if limit != Infinity {
		t := time.NewTimer(limit)
		defer t.Stop()
		expired = t.C
	}
	select {
	case res := <-ch:
		return p.booted(id, res.node, res.err)
	case <-expired:
		if !p.calls.abandon(uc) { // it has just returned
			res := <-ch
			return p.booted(id, res.node, res.err)
		}
	}
	if ctx.Err() != nil {
		return bootOutcome{late: late, err: fmt.Errorf("flame: boot runner %d: canceled, and Backend.Boot did not return within BootTimeout (%v): %w", id, limit, ctx.Err())}
	}
	return bootOutcome{late: late, err: fmt.Errorf("flame: boot runner %d: no node within BootTimeout (%v): %w", id, limit, context.DeadlineExceeded)}
}

// booted checks what Backend.Boot returned.
func (p *Pool) booted(id uint64, node Node, err error) bootOutcome {
	if err != nil {
		if node != nil {
			p.stopNode(node, id) // half booted: not ours to keep
		}
		return bootOutcome{err: fmt.Errorf("flame: boot runner %d: %w", id, err)}
	}
	if node == nil {
		return bootOutcome{err: fmt.Errorf("flame: boot runner %d: backend returned no node and no error", id)}
	}
	select {
	case <-node.Done():
		return bootOutcome{err: fmt.Errorf("flame: boot runner %d: node stopped during boot", id)}
	default:
	}
	return bootOutcome{r: newRunner(p, id, node)}
}
