package flame

// watch reports the runner as crashed when its node stops unasked.
func (p *Pool) watch(r *runner) {
	p.wg.Go(func() {
		select {
		case <-r.node.Done():
			p.runnerDown(r)
		case <-r.stopWatch:
		}
	})
}

// runnerDown handles a runner that is gone: it takes no checkout from now
// on, the work it held is cancelled (ErrRunnerDown), and the scaler
// removes it (OnShrink, a replacement if Min needs one). Idempotent: the
// crash watcher and every call that learns of the death call it.
func (p *Pool) runnerDown(r *runner) {
	r.Kill()
	r.cancel(ErrRunnerDown)
	p.sc.Removed(r, ErrRunnerDown, true)
}
