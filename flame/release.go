package flame

// serveLocked hands free slots to queued callers in FIFO order, skipping
// (and dropping) every waiter that has given up. Requires q's lock.
func (p *Pool) serveLocked() {
	var now int64
	live := func(w *waiter) bool { return w.live(&now, p.clock) }
	for {
		e := p.q.FrontLive(live, expire)
		if e == nil {
			return
		}
		r, gen := p.claim()
		if r == nil {
			return
		}
		p.q.Remove(e)
		e.Value.gen = gen
		e.Value.ch <- r
	}
}

// release gives a slot back: straight to the head waiter when callers are
// queued and the runner takes work, else by decrementing the load. A
// release on a runner that went down only decrements: it is harmless.
func (p *Pool) release(r *runner) {
	var w uint64
	for {
		w = r.word.Load()
		active := wordState(w) == stActive
		if active && !p.cfg.SingleUse && p.q.Len() > 0 && p.handoff(r) {
			p.queueLeft()
			return
		}
		if nw, ok := r.giveBack(w, active && p.cfg.SingleUse); ok {
			w = nw
			break
		}
	}
	if int64(wordLoad(w)) < p.floor.Load() {
		p.lowerFloor(wordLoad(w))
	}
	if r.emptied(w) {
		p.sc.Drained(r) // resized, or a used single-use runner
	}
	// A caller may have queued between our look at the queue and the
	// decrement; serve it from the slot just freed.
	if p.q.Len() > 0 {
		p.q.Lock()
		p.serveLocked()
		p.q.Unlock()
	}
	if p.closing.Load() {
		p.queueLeft()
		p.checkDrained()
	}
}

// queueLeft is called when callers may have left the queue. While closing,
// the scaler cancels pending boots once nobody waits for them, so it must
// hear of it.
func (p *Pool) queueLeft() {
	if p.closing.Load() && p.q.Len() == 0 {
		p.sc.Kick()
	}
}

// handoff passes the caller's slot on r to the head live waiter, if r still
// takes work. It reports whether it did.
func (p *Pool) handoff(r *runner) bool {
	var now int64
	p.q.Lock()
	e := p.q.FrontLive(func(w *waiter) bool { return w.live(&now, p.clock) }, expire)
	if e == nil {
		p.q.Unlock()
		return false
	}
	gen, ok := r.handOn()
	if !ok {
		p.q.Unlock()
		return false
	}
	p.q.Remove(e)
	w := e.Value
	w.gen = gen
	p.q.Unlock()
	w.ch <- r // out of the queue, w waits for this one value (see waiter.ch)
	return true
}
