package flame

import (
	"cmp"
	"context"
	"errors"
	"fmt"
	"log/slog"
	"math"
	"slices"
	"sync"
	"sync/atomic"
	"time"

	"github.com/puzpuzpuz/xsync/v3"
	"golang.org/x/sync/errgroup"

	"github.com/goflame/goflame/flame/internal/clock"
	"github.com/goflame/goflame/flame/internal/scaler"
	"github.com/goflame/goflame/flame/internal/waitq"
)

// Pool is an elastic pool of runners. Its methods are safe for concurrent
// use.
//
// Ownership: the checkout path (claim, release) touches only atomics: the
// published runner set and each runner's word. The wait queue has its own
// mutex, taken only when no slot is free or somebody waits. The scaler owns
// growth and shrinkage and publishes the runner set.
type Pool struct {
	cfg       Config
	mc        int
	singleUse bool

	// set is the runners not yet removed, sorted by ID: the checkout scan.
	// Written by the scaler (under its lock) whenever runners come or go.
	set atomic.Pointer[[]*runner]
	// byID holds the same runners for Stats.
	byID *xsync.MapOf[uint64, *runner]
	// retired is the checkouts of the runners removed from byID.
	retired atomic.Uint64

	q       waitq.Queue[*waiter]
	waits   waitStats // Stats.Waits, GaveUp and WaitTime
	waiters sync.Pool // of *waiter, reused across checkouts (per pool: channels stay in one synctest bubble)
	// sweepTimer ends queued callers' budgets; armed for sweepAt (p.clock
	// scale, 0: unarmed). Both guarded by q's lock.
	sweepTimer *time.Timer
	sweepAt    int64
	closing    atomic.Bool // Close has begun: new work gets ErrClosed

	sc    *scaler.Scaler
	clock *clock.Clock // start times of execution limits

	baseCtx    context.Context // parent of every runner's ctx
	baseCancel context.CancelCauseFunc

	wg       sync.WaitGroup // every goroutine the pool starts, but those that call into the backend (calls)
	calls    userCalls      // backend calls that may outlive their limits (Backend.Boot, Node.Shutdown)
	close    closer
	work     atomic.Int64  // goroutines running accepted work (casts, children, unlinked calls)
	drained  chan struct{} // closed once closing and no work is left
	drainMu  sync.Mutex
	isDrain  bool // guarded by drainMu
	dropCast bool // guarded by q's lock: Close gave up on queued casts
}

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

// NewPool validates cfg, boots Min runners (at most 10 at a time, each
// bounded by BootTimeout) and returns the pool. If any Min boot fails, the
// runners that did boot are shut down and the error names the failure.
// These boots fire no events.
func NewPool(cfg Config) (*Pool, error) {
	cfg, err := cfg.normalize()
	if err != nil {
		return nil, err
	}
	p := &Pool{
		cfg:       cfg,
		mc:        cfg.MaxConcurrency,
		singleUse: cfg.SingleUse,
		byID:      xsync.NewMapOf[uint64, *runner](),
		drained:   make(chan struct{}),
		close:     closer{forced: make(chan struct{}), done: make(chan struct{})},
	}
	p.waiters.New = func() any {
		w := &waiter{ch: make(chan *runner, 1)}
		w.elem.Value = w
		return w
	}
	p.set.Store(new([]*runner))
	p.clock = clock.New(p.wg.Go)
	p.baseCtx, p.baseCancel = context.WithCancelCause(context.Background())

	initial := make([]*runner, cfg.Min)
	errs := make([]error, cfg.Min)
	var g errgroup.Group
	g.SetLimit(maxParallelMinBoots)
	for i := range cfg.Min {
		g.Go(func() error {
			// A Boot that outlives BootTimeout fails NewPool; whatever it
			// returns later is shut down by the goroutine that runs it.
			out := p.bootRunner(p.baseCtx, uint64(i+1), 0, false)
			initial[i], errs[i] = out.r, out.err
			return nil
		})
	}
	_ = g.Wait()
	if err := errors.Join(errs...); err != nil {
		for _, r := range initial {
			if r != nil {
				p.stopNode(r.node, r.id)
			}
		}
		p.baseCancel(ErrClosed)
		return nil, fmt.Errorf("flame: pool %q: booting Min runners: %w", cfg.Name, err)
	}
	rs := make([]scaler.Runner, len(initial))
	for i, r := range initial {
		rs[i] = r
	}
	p.sc = scaler.New(scaler.Config{
		Min:            cfg.Min,
		Max:            cfg.Max,
		MaxConcurrency: cfg.MaxConcurrency,
		IdleAfter:      cfg.IdleShutdownAfter,
		MinIdleAfter:   cfg.MinIdleShutdownAfter,
		RetryAfter:     bootRetryAfter,
		Permanent:      func(err error) bool { return errors.Is(err, ErrBootFailed) },
	}, (*host)(p), rs, uint64(cfg.Min)+1)
	for _, r := range initial {
		p.watch(r)
	}
	p.sc.Start(p.wg.Go)
	return p, nil
}

// claim takes a slot on the least-loaded active runner with a free slot,
// ties to the lowest ID, or returns nil. Lock-free: a scan of the published
// set and one CAS, repeated only if another caller won the CAS.
func (p *Pool) claim() *runner {
	for {
		var best *runner
		var bw uint64
		bl := p.mc
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
		if nw := bw + 1 + genOne; best.word.CompareAndSwap(bw, nw) {
			best.checkedOut(bw, nw)
			return best
		}
	}
}

// checkout returns a runner whose slot the caller now holds. With a free
// slot and nobody queued it takes no lock and allocates nothing; otherwise
// the caller queues (FIFO) for up to wait, or until ctx is done.
func (p *Pool) checkout(ctx context.Context, wait time.Duration, kind waitKind) (*runner, error) {
	if p.q.Len() == 0 {
		if r := p.claim(); r != nil {
			return r, nil
		}
	}
	return p.checkoutSlow(ctx, wait, kind)
}

func (p *Pool) checkoutSlow(ctx context.Context, wait time.Duration, kind waitKind) (*runner, error) {
	w := p.waiters.Get().(*waiter)
	w.ctx, w.kind, w.deadline = ctx, kind, 0
	r, err := p.wait(w, wait)
	w.ctx = nil
	p.waiters.Put(w) // nothing refers to it any more (see wait)
	return r, err
}

// wait queues w and waits for a slot. When it returns, w is out of the queue
// and its channel is empty, so w can be reused.
func (p *Pool) wait(w *waiter, wait time.Duration) (*runner, error) {
	// Exact, so a budget ends when it says; the clock's coarse reading
	// could end it up to a millisecond early.
	queued := p.clock.Exact()
	if wait != Infinity {
		if w.deadline = queued + int64(wait); w.deadline < 0 {
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

// Budgets of queued callers end through one timer per pool, armed for the
// earliest deadline in the queue, rather than one timer per caller: a
// queued checkout then waits on its channel alone. Requires q's lock.
func (p *Pool) armSweep(at int64) {
	p.sweepAt = at
	d := time.Duration(at - p.clock.Exact())
	if p.sweepTimer == nil {
		p.sweepTimer = time.AfterFunc(d, p.sweep)
		return
	}
	p.sweepTimer.Reset(d)
}

// sweep ends the wait of every queued caller whose budget has run out, and
// re-arms for the earliest deadline left.
func (p *Pool) sweep() {
	p.q.Lock()
	defer p.q.Unlock()
	now := p.clock.Exact()
	next := int64(0)
	p.q.Each(func(e *waitq.Elem[*waiter]) {
		w := e.Value
		switch {
		case w.deadline == 0:
		case w.deadline <= now:
			p.q.Remove(e)
			w.ch <- expiredMark
		case next == 0 || w.deadline < next:
			next = w.deadline
		}
	})
	p.sweepAt = 0
	if next != 0 {
		p.armSweep(next)
	}
	p.queueLeft()
}

// expire is called for each queued waiter found dead at handoff. One whose
// ctx ended wakes on its own; one whose budget ran out is told.
func expire(w *waiter) {
	if w.ctx.Err() == nil {
		w.ch <- expiredMark
	}
}

// live reports whether a queued waiter still wants a slot. now is read at
// most once per pass.
func (w *waiter) live(now *int64, clk *clock.Clock) bool {
	if w.ctx.Err() != nil {
		return false
	}
	if w.deadline == 0 {
		return true
	}
	if *now == 0 {
		*now = clk.Now()
	}
	return *now < w.deadline
}

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
		r := p.claim()
		if r == nil {
			return
		}
		p.q.Remove(e)
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
		if active && !p.singleUse && p.q.Len() > 0 && p.handoff(r) {
			p.queueLeft()
			return
		}
		nw := w - 1
		if active && p.singleUse {
			nw = withState(nw, stDraining) // used: no new checkouts
		}
		if r.word.CompareAndSwap(w, nw) {
			w = nw
			break
		}
	}
	if wordState(w) == stDraining && wordLoad(w) == 0 && r.word.CompareAndSwap(w, withState(w, stDown)) {
		if r.resized.Load() {
			p.sc.Removed(r, ErrResized, false)
		} else {
			p.sc.Removed(r, ErrSingleUse, true)
		}
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
	defer p.q.Unlock()
	e := p.q.FrontLive(func(w *waiter) bool { return w.live(&now, p.clock) }, expire)
	if e == nil {
		return false
	}
	for {
		w := r.word.Load()
		if wordState(w) != stActive {
			return false
		}
		if nw := w + genOne; r.word.CompareAndSwap(w, nw) { // same load, new checkout
			r.checkedOut(w, nw)
			break
		}
	}
	p.q.Remove(e)
	e.Value.ch <- r
	return true
}

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
		if v, stack := p.callHook(func() { p.cfg.OnGrowStart(ev) }); v != nil {
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
	switch {
	case err != nil:
		if node != nil {
			p.stopNode(node, id)
		}
		return bootOutcome{err: fmt.Errorf("flame: boot runner %d: %w", id, err)}
	case node == nil:
		return bootOutcome{err: fmt.Errorf("flame: boot runner %d: backend returned no node and no error", id)}
	}
	select {
	case <-node.Done():
		return bootOutcome{err: fmt.Errorf("flame: boot runner %d: node stopped during boot", id)}
	default:
	}
	return bootOutcome{r: newRunner(p, id, node)}
}

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

// logger is Config.Logger, or slog.Default() (as it is at the time of
// logging) when that is nil.
func (p *Pool) logger() *slog.Logger {
	if p.cfg.Logger != nil {
		return p.cfg.Logger
	}
	return slog.Default()
}

func (p *Pool) logError(msg string, args ...any) {
	p.logger().Error(msg, append([]any{"pool", p.cfg.Name}, args...)...)
}

func (p *Pool) logDebug(msg string, args ...any) {
	p.logger().Debug(msg, append([]any{"pool", p.cfg.Name}, args...)...)
}

// Resize changes Min and Max at run time. It validates like NewPool, then
// applies without waiting: below the new Min runners boot; above the new
// Max, pending boots are canceled (newest first), idle runners shut down
// (highest ID first) and busy ones drain (least loaded first: no new
// checkouts, shut down when empty). Queued callers are served as room
// appears.
func (p *Pool) Resize(min, max int) error {
	if err := checkBounds(min, max); err != nil {
		return err
	}
	if p.closing.Load() {
		return ErrClosed
	}
	p.sc.Resize(min, max)
	return nil
}

// Stats is a snapshot of a pool for monitoring; exact when the pool is
// quiescent. The totals count since NewPool.
type Stats struct {
	Name                     string
	Min, Max, MaxConcurrency int
	Runners                  int          // booted and taking work (not draining, shutting down, or used single-use)
	Pending                  int          // booting (a boot that failed or was canceled no longer counts, though its Backend.Boot call, while it runs, still counts against Max)
	Waiting                  int          // callers queued for a slot
	InUse                    int          // slots held across all runners
	RunnerLoads              []RunnerLoad // every runner not yet removed, sorted by ID
	Booted                   uint64       // successful boots, Min boots included
	BootFailures             uint64
	Shrunk                   uint64        // runners removed, for any reason
	Checkouts                uint64        // slots taken
	Waits                    uint64        // checkouts that had to queue first
	WaitTime                 time.Duration // total time callers spent queued, those who gave up included
	GaveUp                   uint64        // queued callers that left without a slot: ctx, budget, Close, a failed boot
}

// waitStats counts the queue's customers. Only callers that queue touch
// it, so the free path pays nothing for it.
type waitStats struct {
	waits, gaveUp atomic.Uint64
	waitTime      atomic.Int64 // ns
}

func (s *waitStats) record(got bool, waited int64) {
	if got {
		s.waits.Add(1)
	} else {
		s.gaveUp.Add(1)
	}
	s.waitTime.Add(waited)
}

// RunnerLoad is one runner's held slots.
type RunnerLoad struct {
	ID   uint64
	Load int
}

// Stats returns a snapshot of the pool.
func (p *Pool) Stats() Stats {
	ss := p.sc.Stats()
	st := Stats{
		Name: p.cfg.Name, Min: ss.Min, Max: ss.Max, MaxConcurrency: p.mc,
		Pending: ss.Pending, Waiting: p.q.Len(),
		Booted: ss.Booted, BootFailures: ss.BootFailures, Shrunk: ss.Shrunk,
		Checkouts: p.retired.Load(),
		Waits:     p.waits.waits.Load(), GaveUp: p.waits.gaveUp.Load(), WaitTime: time.Duration(p.waits.waitTime.Load()),
	}
	p.byID.Range(func(id uint64, r *runner) bool {
		st.Checkouts += r.checkouts()
		w := r.word.Load()
		if wordState(w) == stActive {
			st.Runners++
		}
		st.InUse += wordLoad(w)
		st.RunnerLoads = append(st.RunnerLoads, RunnerLoad{ID: id, Load: wordLoad(w)})
		return true
	})
	slices.SortFunc(st.RunnerLoads, func(a, b RunnerLoad) int { return cmp.Compare(a.ID, b.ID) })
	return st
}

// host is the pool as the scaler sees it (a separate method set, so that
// these methods stay off Pool's public API).
type host Pool

func (h *host) Waiting() int { return h.q.Len() }

func (h *host) Boot(b scaler.Boot) {
	p := (*Pool)(h)
	p.wg.Go(func() {
		out := p.bootRunner(b.Ctx, b.ID, b.Count, true)
		switch {
		case out.late != nil:
			// The boot failed at BootTimeout, but its Backend.Boot call
			// still runs and keeps its room under Max until it returns.
			p.sc.BootOverdue(b.ID, out.err)
			go func() { // not in p.wg: the call may outlive the pool
				<-out.late
				p.sc.BootDone(b.ID, nil, out.err)
			}()
		case out.err != nil:
			p.sc.BootDone(b.ID, nil, out.err)
		default:
			p.sc.BootDone(b.ID, out.r, nil)
			p.watch(out.r)
		}
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

func (h *host) Publish(rs []scaler.Runner) {
	p := (*Pool)(h)
	set := make([]*runner, len(rs))
	for i, r := range rs {
		set[i] = r.(*runner)
		p.byID.Store(set[i].id, set[i])
	}
	p.set.Store(&set)
	p.byID.Range(func(id uint64, r *runner) bool {
		if _, found := slices.BinarySearchFunc(set, id, func(r *runner, id uint64) int { return cmp.Compare(r.id, id) }); !found {
			p.byID.Delete(id)
			p.retired.Add(r.checkouts()) // final: a removed runner is Down and takes no checkout
		}
		return true
	})
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

func (h *host) IdleCheck() bool {
	p := (*Pool)(h)
	if p.cfg.IdleCheck == nil {
		return true
	}
	ok := false
	if v, stack := p.callHook(func() { ok = p.cfg.IdleCheck() }); v != nil {
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
	if v, stack := p.callHook(func() { p.cfg.OnGrowEnd(gev, err) }); v != nil {
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
	if v, stack := p.callHook(func() { p.cfg.OnShrink(sev) }); v != nil {
		p.logError("OnShrink panicked", "panic", v, "stack", string(stack))
	}
}
