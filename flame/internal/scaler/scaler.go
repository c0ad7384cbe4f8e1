// Package scaler grows and shrinks a pool: it decides when runners boot, when
// a failed boot is retried, when an idle runner shuts down, how Min is kept and
// how Resize is applied, and it runs those decisions' effects in order.
//
// The scaler never sits on the checkout path. Callers that had to queue wake
// it with Kick, a non-blocking send. Its state lives under one mutex that is
// only held for bookkeeping. What may call user code (starting a boot, a
// node shutdown, the event hooks, the idle check) is queued as an effect
// and run by the scaler's goroutine, one at a time, in decision order, with
// no lock held. That order is what makes OnGrowEnd and OnShrink never
// overlap, and makes OnShrink run before the boot that replaces the runner
// it reports. The host methods called under the lock (Waiting, Publish,
// FailQueued, and Shutdown for a runner that a canceled boot brought, which
// only starts the shutdown in a goroutine of the host's) call no user code
// and do not block.
//
// Lock order: the scaler's lock, then the pool's queue lock (Publish and
// FailQueued take it); never the other way round.
package scaler

import (
	"cmp"
	"context"
	"slices"
	"sync"
	"sync/atomic"
	"time"
)

// State is a runner's state as the scaler sees it.
type State uint8

const (
	Active   State = iota // takes checkouts
	Draining              // takes no checkout; goes Down when its load reaches 0
	Down                  // claimed for shutdown, crashed or closed
)

// Reasons are the errors the scaler reports a runner's removal and a
// boot's cancellation with: the host's own sentinels.
type Reasons struct {
	Idle         error // the runner idled down
	Resized      error // the runner was above Max after Resize
	SingleUse    error // a single-use runner finished its work
	BootCanceled error // a pending boot was no longer wanted
}

// Runner is the pool's runner record as far as the scaler needs it.
type Runner interface {
	ID() uint64
	// Snapshot returns the load, the generation (it changes on every
	// checkout) and the state, read in one atomic load.
	Snapshot() (load int, gen uint64, st State)
	// ClaimIdle moves the runner from Active, load 0 and generation gen to
	// Down in one step. It fails if anything changed since the snapshot.
	ClaimIdle(gen uint64) bool
	// Drain stops new checkouts. It reports true if the runner was idle and
	// is now Down; otherwise the host reports it with Removed once its last
	// checkout is released.
	Drain() (down bool)
	// Kill moves the runner to Down whatever its load.
	Kill()
}

// Boot is one boot the scaler decided on.
type Boot struct {
	ID    uint64
	Count int  // booted + booting runners when it was decided, this one included
	Min   bool // booted to reach or keep Min
	Ctx   context.Context
}

// Event is what the hooks get.
type Event struct {
	ID    uint64
	Count int // booted + booting runners after the change
}

// Host is the pool side of the scaler.
type Host interface {
	// Waiting is the number of callers queued for a slot. It must not block.
	Waiting() int
	// Boot starts a boot in its own goroutine. The host reports the boot's
	// end with Scaler.BootDone once its Backend.Boot call has returned, and,
	// if that call outlives the boot's limit, its failure before that with
	// Scaler.BootOverdue.
	Boot(b Boot)
	// Publish installs the runners not yet removed, sorted by ID, for
	// checkout, and serves queued callers from any new capacity. It is called
	// with the scaler's lock held and must not call user code or the scaler.
	Publish(rs []Runner)
	// Shutdown stops a runner that is Down, without blocking.
	Shutdown(r Runner, reason error)
	// IdleCheck is the user's idle check (true when there is none).
	IdleCheck() bool
	GrowEnd(ev Event, err error)
	Shrink(ev Event, reason error)
	// FailQueued fails, with err, the callers queued after the first keep:
	// a boot failed in a way that retrying cannot fix, and nothing else is
	// coming for them. It is called with the scaler's lock held and must
	// not block, call user code or call the scaler.
	FailQueued(keep int, err error)
}

// Config holds the scaler's settings.
type Config struct {
	Min, Max       int
	MaxConcurrency int
	IdleAfter      time.Duration // non-min runners; 0 disables idle shutdown
	MinIdleAfter   time.Duration // min runners; 0 disables idle shutdown
	RetryAfter     time.Duration // debounce of a boot retry
	// Permanent reports a boot error that retrying cannot fix; nil: none is.
	Permanent func(error) bool
	Reasons   Reasons
}

// Stats is the scaler's part of the pool's stats.
type Stats struct {
	Min, Max                     int
	Pending                      int
	Lingering                    int // failed or canceled boots whose Backend.Boot still runs
	Booted, BootFailures, Shrunk uint64
}

type runnerInfo struct {
	r       Runner
	min     bool        // uses MinIdleAfter
	resized bool        // Resize drained it: when empty it goes as resized, not as a used single-use runner
	gen     uint64      // generation when the idle period started
	busy    bool        // the load was not 0 when the idle period started
	timer   *time.Timer // idle check; nil while disabled
}

// pendingBoot is a boot under way: decided, neither failed nor canceled.
type pendingBoot struct {
	id     uint64
	min    bool
	cancel context.CancelFunc
}

// Scaler grows and shrinks one pool. Create it with New, then Start it.
type Scaler struct {
	host         Host
	mc           int
	idleAfter    time.Duration
	minIdleAfter time.Duration
	retryAfter   time.Duration
	permanent    func(error) bool
	reasons      Reasons
	kick         chan struct{} // capacity 1: a pending wake-up
	canGrow      atomic.Bool   // booted + booting < Max, as of the last evaluation
	done         chan struct{} // closed when the goroutine exits

	mu       sync.Mutex // guards everything below
	min, max int
	nextID   uint64
	runners  map[uint64]*runnerInfo // booted and not yet removed
	pending  map[uint64]*pendingBoot
	// lingering holds the boots that failed at their limit or were
	// canceled while their Backend.Boot call still runs: each counts
	// against Max until the call returns (BootDone), so that boots never
	// pile up past Max behind a backend that ignores its ctx.
	lingering    map[uint64]struct{}
	retryTimer   *time.Timer
	retryPending bool
	minDirty     bool // Min may need replacements (crash, single use, Resize)
	closing      bool // no Min upkeep; boots only for queued casts
	stopped      bool // everything is shut down; the goroutine exits when idle
	effects      []func()
	lastBootErr  error
	booted       uint64
	failures     uint64
	shrunk       uint64
}

// New returns a scaler that owns the runners in initial (booted by NewPool,
// kept as min runners) and numbers later boots from nextID.
func New(cfg Config, host Host, initial []Runner, nextID uint64) *Scaler {
	s := &Scaler{
		host:         host,
		mc:           cfg.MaxConcurrency,
		idleAfter:    cfg.IdleAfter,
		minIdleAfter: cfg.MinIdleAfter,
		retryAfter:   cfg.RetryAfter,
		kick:         make(chan struct{}, 1),
		done:         make(chan struct{}),
		min:          cfg.Min,
		max:          cfg.Max,
		nextID:       nextID,
		runners:      make(map[uint64]*runnerInfo),
		pending:      make(map[uint64]*pendingBoot),
		lingering:    make(map[uint64]struct{}),
		permanent:    cfg.Permanent,
		reasons:      cfg.Reasons,
	}
	s.mu.Lock()
	for _, r := range initial {
		info := &runnerInfo{r: r, min: true}
		s.runners[r.ID()] = info
		s.booted++
		s.armIdle(info)
	}
	s.publish()
	s.publishCanGrow()
	s.mu.Unlock()
	return s
}

// Start runs the scaler's goroutine. run, if not nil, starts it (so the host
// can track it); otherwise a plain go statement does.
func (s *Scaler) Start(run func(func())) {
	if run == nil {
		go s.loop()
		return
	}
	run(s.loop)
}

// Done is closed when the scaler's goroutine has exited after Stop.
func (s *Scaler) Done() <-chan struct{} { return s.done }

// Kick asks the scaler to re-evaluate demand. It never blocks.
func (s *Scaler) Kick() {
	select {
	case s.kick <- struct{}{}:
	default:
	}
}

func (s *Scaler) loop() {
	defer close(s.done)
	for {
		s.mu.Lock()
		s.evaluate()
		effects := s.effects
		s.effects = nil
		stopped := s.stopped
		s.mu.Unlock()
		for _, f := range effects {
			f()
		}
		if len(effects) > 0 {
			continue // effects may have queued more
		}
		if stopped {
			return
		}
		<-s.kick
	}
}

// push queues an effect. Requires s.mu.
func (s *Scaler) push(f func()) {
	s.effects = append(s.effects, f)
	s.Kick()
}

// count is the booted + booting runners: what events and Min count.
func (s *Scaler) count() int { return len(s.runners) + len(s.pending) }

// occupied is what Max bounds: runners not yet removed and every boot whose
// Backend.Boot call has not returned, lingering ones included.
func (s *Scaler) occupied() int { return s.count() + len(s.lingering) }

// CanGrow reports whether a boot could start (there is room under Max), so
// a queued caller need not wake the scaler when there is none. Lock-free; it
// reflects the last evaluation, and every change of room is followed by one.
func (s *Scaler) CanGrow() bool { return s.canGrow.Load() }

// evaluate starts the boots that Min and demand call for. Requires s.mu.
//
// CanGrow is published before the queue is read: a caller queues, then
// reads CanGrow, and wakes the scaler only if it is true. So a caller that
// read false queued before this evaluation read the queue, and is counted
// in it; one that queued later reads true and kicks. Publishing only after
// reading the queue would leave a window in which a caller queued unseen
// and, reading the stale false, went to sleep with no boot coming.
func (s *Scaler) evaluate() {
	s.publishCanGrow()
	defer s.publishCanGrow() // the boots started here may have used the room up
	if s.stopped {
		return
	}
	waiting := s.host.Waiting()
	if s.closing {
		if waiting == 0 {
			s.cancelPending(s.reasons.BootCanceled)
			return
		}
	} else if s.minDirty && !s.retryPending { // no boot while a retry is pending (SPEC §3.2)
		for s.count() < s.min && s.occupied() < s.max {
			s.startBoot(true)
		}
		// Still short only when boots whose calls outlived their limits
		// hold the room: their return evaluates again, and Min is met then.
		s.minDirty = s.count() < s.min
	}
	// A boot starts while callers wait beyond what pending boots will serve.
	for !s.retryPending && s.occupied() < s.max && len(s.pending)*s.mc < waiting {
		s.startBoot(false)
	}
}

// publishCanGrow stores whether a boot could start now. Requires s.mu.
func (s *Scaler) publishCanGrow() { s.canGrow.Store(!s.stopped && s.occupied() < s.max) }

// unmet reports demand that the runners and boots under way will not serve
// and that Max leaves room for, lingering boots aside: those free their
// room when their Backend.Boot returns, and the retry then finds it.
// Requires s.mu.
func (s *Scaler) unmet() bool {
	return s.host.Waiting() > len(s.pending)*s.mc && s.count() < s.max
}

func (s *Scaler) startBoot(min bool) {
	id := s.nextID
	s.nextID++
	ctx, cancel := context.WithCancel(context.Background())
	s.pending[id] = &pendingBoot{id: id, min: min, cancel: cancel}
	b := Boot{ID: id, Count: s.count(), Min: min, Ctx: ctx}
	s.push(func() { s.host.Boot(b) })
}

// BootDone reports that a boot's Backend.Boot call has returned: with a
// runner (err == nil) or a failure. A boot that was canceled or reported
// overdue meanwhile frees its room under Max; a runner it brings is shut
// down.
func (s *Scaler) BootDone(id uint64, r Runner, err error) {
	s.mu.Lock()
	pb, ok := s.pending[id]
	if !ok { // canceled or overdue: nobody wants this runner any more
		delete(s.lingering, id)
		s.publishCanGrow()
		s.Kick() // the room is free again
		s.mu.Unlock()
		if r != nil {
			r.Kill()
			s.host.Shutdown(r, s.reasons.BootCanceled)
		}
		return
	}
	delete(s.pending, id)
	pb.cancel()
	s.publishCanGrow() // before unmet reads the queue (see evaluate)
	if err != nil {
		s.failed(id, err)
		s.mu.Unlock()
		return
	}
	info := &runnerInfo{r: r, min: pb.min}
	s.runners[id] = info
	s.booted++
	s.armIdle(info) // before publishing: any use of the runner counts as activity
	s.publish()
	ev := Event{ID: id, Count: s.count()}
	s.push(func() { s.host.GrowEnd(ev, nil) })
	s.mu.Unlock()
}

// BootOverdue reports a boot that passed its limit while its Backend.Boot
// call still runs: it fails now, and keeps its room under Max until
// BootDone reports that the call returned.
func (s *Scaler) BootOverdue(id uint64, err error) {
	s.mu.Lock()
	defer s.mu.Unlock()
	pb, ok := s.pending[id]
	if !ok {
		return // canceled meanwhile: it lingers already
	}
	delete(s.pending, id)
	pb.cancel()
	s.lingering[id] = struct{}{}
	s.publishCanGrow()
	s.failed(id, err)
}

// failed accounts for a failed boot: OnGrowEnd with the error, and a retry
// if waiting callers need one. Requires s.mu.
func (s *Scaler) failed(id uint64, err error) {
	s.failures++
	s.lastBootErr = err
	ev := Event{ID: id, Count: s.count()}
	s.push(func() { s.host.GrowEnd(ev, err) })
	if s.permanent != nil && s.permanent(err) && s.activeCount() == 0 {
		// Retrying cannot help, and no runner is up to serve the callers
		// as its slots free: fail those that the boots still under way
		// will not serve, now (before the next evaluation boots for them
		// again). No retry: the next caller brings the next boot.
		s.host.FailQueued(len(s.pending)*s.mc, err)
		return
	}
	// Only waiting callers bring a retry: a backend that always fails
	// never loops (a Min replacement that failed comes back with demand).
	if !s.retryPending && s.unmet() {
		s.retryPending = true
		s.retryTimer = time.AfterFunc(s.retryAfter, s.retryFired)
	}
}

func (s *Scaler) retryFired() {
	s.mu.Lock()
	s.retryPending = false
	s.mu.Unlock()
	s.Kick()
}

// LastBootErr is the error of the most recent failed boot, or nil.
func (s *Scaler) LastBootErr() error {
	s.mu.Lock()
	defer s.mu.Unlock()
	return s.lastBootErr
}

// Removed reports a runner that went Down without the scaler deciding it: a
// crash, a used single-use runner, or a drained runner whose last checkout
// was released. replace asks for Min to be restored.
func (s *Scaler) Removed(r Runner, reason error, replace bool) {
	s.mu.Lock()
	defer s.mu.Unlock()
	info := s.runners[r.ID()]
	if info == nil || info.r != r {
		return
	}
	s.remove(info, reason)
	if replace {
		s.minDirty = true
	}
	s.Kick()
}

// Drained reports a draining runner whose last checkout was released (it
// is Down now): one that Resize drained goes as resized; any other was a
// used single-use runner, and Min is restored if it needs to be.
func (s *Scaler) Drained(r Runner) {
	s.mu.Lock()
	defer s.mu.Unlock()
	info := s.runners[r.ID()]
	if info == nil || info.r != r {
		return
	}
	if info.resized {
		s.remove(info, s.reasons.Resized)
		return
	}
	s.remove(info, s.reasons.SingleUse)
	s.minDirty = true
	s.Kick()
}

// remove takes a runner that is Down out of the pool. Requires s.mu.
func (s *Scaler) remove(info *runnerInfo, reason error) {
	id := info.r.ID()
	delete(s.runners, id)
	s.publishCanGrow()
	if info.timer != nil {
		info.timer.Stop()
	}
	s.shrunk++
	s.publish()
	ev := Event{ID: id, Count: s.count()}
	r := info.r
	s.push(func() {
		s.host.Shutdown(r, reason)
		s.host.Shrink(ev, reason)
	})
}

func (s *Scaler) publish() {
	rs := make([]Runner, 0, len(s.runners))
	for _, info := range s.runners {
		rs = append(rs, info.r)
	}
	slices.SortFunc(rs, func(a, b Runner) int { return cmp.Compare(a.ID(), b.ID()) })
	s.host.Publish(rs)
}

// armIdle starts a runner's idle period from now. Requires s.mu.
func (s *Scaler) armIdle(info *runnerInfo) {
	d := s.idleAfter
	if info.min {
		d = s.minIdleAfter
	}
	if d <= 0 {
		if info.timer != nil {
			info.timer.Stop() // a runner whose idle shutdown became disabled
		}
		return
	}
	var load int
	load, info.gen, _ = info.r.Snapshot()
	info.busy = load > 0
	if info.timer != nil {
		info.timer.Reset(d)
		return
	}
	id := info.r.ID()
	info.timer = time.AfterFunc(d, func() {
		s.mu.Lock()
		defer s.mu.Unlock()
		if !s.stopped && s.runners[id] == info {
			s.push(func() { s.checkIdle(info) })
		}
	})
}

// activeCount is the number of runners that take checkouts. Requires s.mu.
func (s *Scaler) activeCount() int {
	n := 0
	for _, info := range s.runners {
		if _, _, st := info.r.Snapshot(); st == Active {
			n++
		}
	}
	return n
}

// idleCandidate reports whether the runner has been idle for a whole period
// and may go without breaking Min. Requires s.mu.
func (s *Scaler) idleCandidate(info *runnerInfo) (gen uint64, ok bool) {
	load, gen, st := info.r.Snapshot()
	if load != 0 || info.busy || gen != info.gen || st != Active {
		return 0, false // a release alone leaves the generation: a period that began busy is used
	}
	if !info.min && s.activeCount()-1 < s.min {
		return 0, false
	}
	return gen, true
}

// checkIdle runs at the end of a runner's idle period: the runner shuts down
// if no checkout or release touched it during the whole period, its load is
// 0 and the idle check agrees; otherwise a new period starts.
func (s *Scaler) checkIdle(info *runnerInfo) {
	s.mu.Lock()
	if s.stopped || s.runners[info.r.ID()] != info {
		s.mu.Unlock()
		return
	}
	if _, _, st := info.r.Snapshot(); st != Active {
		s.mu.Unlock()
		return // draining: it goes when its last checkout is released
	}
	if _, ok := s.idleCandidate(info); !ok {
		s.armIdle(info)
		s.mu.Unlock()
		return
	}
	s.mu.Unlock()
	agree := s.host.IdleCheck() // user code: no lock held
	s.mu.Lock()
	defer s.mu.Unlock()
	if s.stopped || s.runners[info.r.ID()] != info {
		return
	}
	if gen, ok := s.idleCandidate(info); ok && agree && info.r.ClaimIdle(gen) {
		s.remove(info, s.reasons.Idle)
		return
	}
	s.armIdle(info)
}

// Resize changes Min and Max. Boots toward a higher Min start at once;
// min runners beyond a lower Min become ordinary runners (highest ID
// first), whose idle period starts now; above a lower Max, pending boots
// are canceled (newest first), then idle runners shut down (highest ID
// first), then busy runners drain (least loaded first, ties highest ID first).
func (s *Scaler) Resize(min, max int) {
	s.mu.Lock()
	defer s.mu.Unlock()
	if s.stopped || s.closing {
		s.min, s.max = min, max
		return
	}
	s.min, s.max = min, max
	s.minDirty = true
	s.publishCanGrow()
	defer s.Kick()

	draining := 0
	for _, info := range s.runners {
		if _, _, st := info.r.Snapshot(); st != Active {
			draining++
		}
	}
	s.demoteMin()
	// Lingering boots are not counted: they cannot be canceled further,
	// and their room frees as soon as their Backend.Boot returns.
	excess := s.count() - draining - max
	for excess > 0 && len(s.pending) > 0 {
		var newest *pendingBoot
		for _, pb := range s.pending {
			if newest == nil || pb.id > newest.id {
				newest = pb
			}
		}
		s.cancelBoot(newest, s.reasons.BootCanceled)
		excess--
	}
	if excess <= 0 {
		return
	}
	active := make([]*runnerInfo, 0, len(s.runners))
	for _, info := range s.runners {
		if _, _, st := info.r.Snapshot(); st == Active {
			active = append(active, info)
		}
	}
	slices.SortFunc(active, func(a, b *runnerInfo) int { return cmp.Compare(b.r.ID(), a.r.ID()) })
	for _, info := range active {
		if excess == 0 {
			return
		}
		if load, gen, _ := info.r.Snapshot(); load == 0 && info.r.ClaimIdle(gen) {
			s.remove(info, s.reasons.Resized)
			excess--
		}
	}
	for excess > 0 {
		var pick *runnerInfo
		var pickLoad int
		for _, info := range active {
			load, _, st := info.r.Snapshot()
			if st != Active {
				continue
			}
			if pick == nil || load < pickLoad {
				pick, pickLoad = info, load
			}
		}
		if pick == nil {
			return
		}
		if pick.r.Drain() {
			s.remove(pick, s.reasons.Resized)
		} else {
			pick.resized = true
			if pick.timer != nil {
				pick.timer.Stop()
			}
		}
		excess--
	}
}

// demoteMin turns the min runners beyond Min, highest ID first, into
// ordinary runners: they idle down after IdleAfter like any other (and
// never below Min). Requires s.mu.
func (s *Scaler) demoteMin() {
	var mins []*runnerInfo
	for _, info := range s.runners {
		if info.min {
			mins = append(mins, info)
		}
	}
	if len(mins) <= s.min {
		return
	}
	slices.SortFunc(mins, func(a, b *runnerInfo) int { return cmp.Compare(a.r.ID(), b.r.ID()) })
	for _, info := range mins[s.min:] {
		info.min = false
		if _, _, st := info.r.Snapshot(); st == Active {
			s.armIdle(info)
		}
	}
}

// cancelBoot drops a pending boot: it lingers until its Backend.Boot
// returns. Requires s.mu.
func (s *Scaler) cancelBoot(pb *pendingBoot, reason error) {
	delete(s.pending, pb.id)
	pb.cancel()
	s.lingering[pb.id] = struct{}{}
	s.publishCanGrow()
	ev := Event{ID: pb.id, Count: s.count()}
	s.push(func() { s.host.GrowEnd(ev, reason) })
}

func (s *Scaler) cancelPending(reason error) {
	ids := make([]uint64, 0, len(s.pending))
	for id := range s.pending {
		ids = append(ids, id)
	}
	slices.Sort(ids)
	for _, id := range ids {
		s.cancelBoot(s.pending[id], reason)
	}
}

// SetClosing stops Min upkeep; boots go on (with the usual retry rule) only
// while callers (accepted casts) are queued, and pending boots are canceled
// once none are.
func (s *Scaler) SetClosing() {
	s.mu.Lock()
	s.closing = true
	s.mu.Unlock()
	s.Kick()
}

// Stop cancels every pending boot, takes every runner down and shuts it down
// (with a Shrink event for each), then lets the goroutine exit.
func (s *Scaler) Stop(reason error) {
	s.mu.Lock()
	defer s.mu.Unlock()
	if s.stopped {
		return
	}
	s.closing = true
	if s.retryTimer != nil {
		s.retryTimer.Stop()
	}
	s.cancelPending(s.reasons.BootCanceled)
	ids := make([]uint64, 0, len(s.runners))
	for id := range s.runners {
		ids = append(ids, id)
	}
	slices.Sort(ids)
	for _, id := range ids {
		info := s.runners[id]
		info.r.Kill()
		s.remove(info, reason)
	}
	s.stopped = true
	s.Kick()
}

// Stats returns the scaler's counters.
func (s *Scaler) Stats() Stats {
	s.mu.Lock()
	defer s.mu.Unlock()
	return Stats{
		Min: s.min, Max: s.max, Pending: len(s.pending), Lingering: len(s.lingering),
		Booted: s.booted, BootFailures: s.failures, Shrunk: s.shrunk,
	}
}
