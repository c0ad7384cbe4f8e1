package flame

import (
	"github.com/goflame/goflame/flame/internal/scaler"
)

// callHook runs user code, containing a panic.
func (p *Pool) callHook(f func()) (panicked any, stack []byte) {
	defer func() {
		if v := recover(); v != nil {
			panicked, stack = v, stackTrace()
		}
	}()
	f()
	return nil, nil
}

func (h *host) IdleCheck() bool {
	p := (*Pool)(h)
	if p.cfg.IdleCheck == nil {
		return true
	}
	ok := false
	v, stack := p.callHook(func() { ok = p.cfg.IdleCheck() })
	if v != nil {
		p.logError("IdleCheck panicked", "panic", v, "stack", string(stack))
		return false
	}
	return ok
}

func (h *host) GrowEnd(ev scaler.Event, err error) {
	p := (*Pool)(h)
	if err != nil {
		p.logError("runner boot failed", "runner", ev.ID, "err", err)
	} else {
		p.logDebug("runner up", "runner", ev.ID, "count", ev.Count)
	}
	if p.cfg.OnGrowEnd == nil {
		return
	}
	gev := GrowEvent{Pool: p.cfg.Name, Count: ev.Count, RunnerID: ev.ID}
	v, stack := p.callHook(func() { p.cfg.OnGrowEnd(gev, err) })
	if v != nil {
		p.logError("OnGrowEnd panicked", "panic", v, "stack", string(stack))
	}
}

func (h *host) Shrink(ev scaler.Event, reason error) {
	p := (*Pool)(h)
	p.logDebug("runner down", "runner", ev.ID, "count", ev.Count, "reason", reason)
	if p.cfg.OnShrink == nil {
		return
	}
	sev := ShrinkEvent{Pool: p.cfg.Name, Count: ev.Count, RunnerID: ev.ID, Reason: reason}
	v, stack := p.callHook(func() { p.cfg.OnShrink(sev) })
	if v != nil {
		p.logError("OnShrink panicked", "panic", v, "stack", string(stack))
	}
}
