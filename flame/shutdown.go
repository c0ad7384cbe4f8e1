package flame

import (
	"context"
	"fmt"
)

// stopNode shuts a node down, waiting at most ShutdownTimeout: a
// Node.Shutdown that outlives it goes on in its own goroutine, abandoned
// (Close names it).
func (p *Pool) stopNode(n Node, id uint64) {
	ctx, cancel := withLimit(context.Background(), p.cfg.ShutdownTimeout)
	uc := p.calls.start(fmt.Sprintf("Node.Shutdown of runner %d (ShutdownTimeout %v)", id, p.cfg.ShutdownTimeout))
	errc := make(chan error, 1)
	go func() {
		defer cancel()
		err := shutdownNode(ctx, n)
		if p.calls.end(uc) {
			errc <- err
		}
	}()
	var err error
	select {
	case err = <-errc:
	case <-ctx.Done():
		if !p.calls.abandon(uc) {
			err = <-errc
			break
		}
		p.logError("runner shutdown exceeded ShutdownTimeout; abandoned", "runner", id, "timeout", p.cfg.ShutdownTimeout)
		return
	}
	if err != nil {
		p.logError("runner shutdown failed", "runner", id, "err", err)
	}
}

// stopLateNode shuts down a node that Backend.Boot returned after the pool
// gave up on the boot, on the goroutine that ran the boot (which is
// outside p.wg, like the call it made).
func (p *Pool) stopLateNode(n Node, id uint64) {
	ctx, cancel := withLimit(context.Background(), p.cfg.ShutdownTimeout)
	defer cancel()
	uc := p.calls.start(fmt.Sprintf("Node.Shutdown of runner %d, booted after BootTimeout (ShutdownTimeout %v)", id, p.cfg.ShutdownTimeout))
	err := shutdownNode(ctx, n)
	p.calls.end(uc)
	if err != nil {
		p.logError("shutdown of a runner booted after BootTimeout failed", "runner", id, "err", err)
	}
}

// shutdownNode calls n.Shutdown, turning a panic into an error.
func shutdownNode(ctx context.Context, n Node) (err error) {
	defer func() {
		if v := recover(); v != nil {
			err = fmt.Errorf("Node.Shutdown panicked: %v", v)
		}
	}()
	return n.Shutdown(ctx)
}
