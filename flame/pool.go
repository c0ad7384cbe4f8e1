package flame

import (
	"context"
	"errors"
	"fmt"
	"sync"
	"sync/atomic"
	"time"

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
// growth and shrinkage: the runner set (its runners map is the one source of
// truth), Min and Max as Resize leaves them, and the boot and idle timers;
// it publishes the set here for the lock-free scan.
//
// Lock order: the scaler's lock, then q's lock (the scaler publishes and
// fails callers under its own); the pool never calls into the scaler while
// it holds q's lock, except to Kick it (a non-blocking send). No user code
// runs under either.
type Pool struct {
	// cfg is the configuration as NewPool normalized it. Its Min and Max
	// are the initial ones only: the scaler holds those in force.
	cfg Config

	// set is the runners not yet removed, sorted by ID: what checkout scans
	// and Stats reports. The scaler publishes a fresh slice (under its
	// lock) whenever runners come or go; a slice is never modified.
	set atomic.Pointer[[]*runner]
	// retired is the checkouts of the runners that left set.
	retired atomic.Uint64
	// floor is at most the least load of the active runners (see claim).
	// Every claim reads it; it is written only when the least load moves
	// (a release drops below it, a claim finds every runner above it, a
	// runner joins), so it has a cache line of its own.
	_     [64]byte
	floor atomic.Int64
	_     [56]byte

	q          waitq.Queue[*waiter]
	waits      waitStats // Stats.Waits, GaveUp and WaitTime
	waiterPool sync.Pool // of *waiter, reused across checkouts (per pool: channels stay in one synctest bubble)
	// sweepTimer ends queued callers' budgets; armed for sweepAt (p.clock
	// scale, 0: unarmed). Both guarded by q's lock.
	sweepTimer *time.Timer
	sweepAt    int64
	closing    atomic.Bool // Close has begun: new work gets ErrClosed

	sc    *scaler.Scaler
	clock *clock.Clock // start times of execution limits and budgets

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
		cfg:     cfg,
		drained: make(chan struct{}),
		close:   closer{forced: make(chan struct{}), done: make(chan struct{})},
	}
	p.waiterPool.New = func() any {
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
		IdleAfter:      idlePeriod(cfg.IdleShutdownAfter),
		MinIdleAfter:   idlePeriod(cfg.MinIdleShutdownAfter),
		RetryAfter:     bootRetryAfter,
		Permanent:      func(err error) bool { return errors.Is(err, ErrBootFailed) },
		Reasons: scaler.Reasons{
			Idle: ErrIdleShutdown, Resized: ErrResized, SingleUse: ErrSingleUse, BootCanceled: ErrBootCanceled,
		},
	}, (*host)(p), rs, uint64(cfg.Min)+1)
	for _, r := range initial {
		p.watch(r)
	}
	p.sc.Start(p.wg.Go)
	return p, nil
}

// idlePeriod is an idle setting as the scaler takes it: 0 for Infinity
// (no idle shutdown).
func idlePeriod(d time.Duration) time.Duration {
	if d == Infinity {
		return 0
	}
	return d
}

// Resize changes Min and Max at run time. It validates like NewPool, then
// applies without waiting: below the new Min runners boot; above the new
// Max, pending boots are canceled (newest first), idle runners shut down
// (highest ID first) and busy ones drain (least loaded first, ties highest
// ID first: no new checkouts, shut down when empty). Queued callers are
// served as room appears.
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
