package flame

import (
	"context"
	"errors"
	"log/slog"
	"slices"
	"strings"
	"sync"
	"sync/atomic"
	"testing"
	"testing/synctest"
	"time"

	"github.com/stretchr/testify/assert"
	"github.com/stretchr/testify/require"
)

// Helpers of this file and lifecycle_test.go carry the prefix "sc".

// scCall is one Call started by a test. Its fn holds the slot until the
// test frees it (then returns nil) or until its ctx is done (then returns
// ctx.Err()).
type scCall struct {
	release chan struct{}
	once    sync.Once
	rid     atomic.Uint64 // runner ID once fn runs
	fnErr   atomic.Value  // ctx.Err() seen by fn when it stopped on its ctx
	done    chan error

	got bool
	res error
}

// scStart starts a held Call. The test's cleanup frees it, so that a failing
// test does not leave the bubble deadlocked.
func scStart(t *testing.T, ctx context.Context, p *Pool, opts ...CallOption) *scCall {
	t.Helper()
	c := &scCall{release: make(chan struct{}), done: make(chan error, 1)}
	go func() {
		c.done <- p.Call(ctx, func(ctx context.Context) error {
			id, _ := RunnerID(ctx)
			c.rid.Store(id)
			select {
			case <-c.release:
				return nil
			case <-ctx.Done():
				c.fnErr.Store(ctx.Err())
				return ctx.Err()
			}
		}, opts...)
	}()
	t.Cleanup(c.free)
	return c
}

// scStartEach starts n held calls one after another, letting the pool
// settle after each, so that they queue in this order.
func scStartEach(t *testing.T, p *Pool, n int, opts ...CallOption) []*scCall {
	t.Helper()
	cs := make([]*scCall, n)
	for i := range cs {
		cs[i] = scStart(t, t.Context(), p, opts...)
		synctest.Wait()
	}
	return cs
}

func (c *scCall) free() { c.once.Do(func() { close(c.release) }) }

// runner is the ID of the runner running the call, 0 if fn has not started.
func (c *scCall) runner() uint64 { return c.rid.Load() }

// returned reports whether Call has returned, without blocking.
func (c *scCall) returned() bool {
	if c.got {
		return true
	}
	select {
	case c.res = <-c.done:
		c.got = true
	default:
	}
	return c.got
}

// result is Call's result; the call must have returned.
func (c *scCall) result(t *testing.T) error {
	t.Helper()
	require.True(t, c.returned(), "call has not returned")
	return c.res
}

func scRunnersOf(cs []*scCall) []uint64 {
	ids := make([]uint64, len(cs))
	for i, c := range cs {
		ids[i] = c.runner()
	}
	return ids
}

func scFreeAll(cs []*scCall) {
	for _, c := range cs {
		c.free()
	}
}

// scCounts are the Stats fields that are exact when the pool is quiescent.
type scCounts struct {
	Runners, Pending, Waiting, InUse int
	Booted, BootFailures, Shrunk     uint64
}

// scBoots is the runner IDs passed to be.Boot, sorted: boot goroutines call
// Boot in no fixed order.
func scBoots(be *testBackend) []uint64 {
	ids := be.calls()
	slices.Sort(ids)
	return ids
}

func scCountsOf(p *Pool) scCounts {
	st := p.Stats()
	return scCounts{st.Runners, st.Pending, st.Waiting, st.InUse, st.Booted, st.BootFailures, st.Shrunk}
}

// scEvents records the pool's hooks: as strings in an eventLog, and the
// OnGrowEnd errors and OnShrink events themselves.
type scEvents struct {
	eventLog
	mu       sync.Mutex
	growErrs map[uint64]error
	shrinks  []ShrinkEvent
}

func scHook(cfg *Config) *scEvents {
	e := &scEvents{growErrs: map[uint64]error{}}
	e.eventLog.hook(cfg)
	ge, sh := cfg.OnGrowEnd, cfg.OnShrink
	cfg.OnGrowEnd = func(ev GrowEvent, err error) {
		ge(ev, err)
		e.mu.Lock()
		e.growErrs[ev.RunnerID] = err
		e.mu.Unlock()
	}
	cfg.OnShrink = func(ev ShrinkEvent) {
		sh(ev)
		e.mu.Lock()
		e.shrinks = append(e.shrinks, ev)
		e.mu.Unlock()
	}
	return e
}

func (e *scEvents) growErr(id uint64) error {
	e.mu.Lock()
	defer e.mu.Unlock()
	return e.growErrs[id]
}

func (e *scEvents) shrinkEvents() []ShrinkEvent {
	e.mu.Lock()
	defer e.mu.Unlock()
	return slices.Clone(e.shrinks)
}

// shrinkReason is the Reason of runner id's OnShrink, nil if none.
func (e *scEvents) shrinkReason(id uint64) error {
	for _, ev := range e.shrinkEvents() {
		if ev.RunnerID == id {
			return ev.Reason
		}
	}
	return nil
}

func scLogger(buf *syncBuffer) *slog.Logger {
	return slog.New(slog.NewTextHandler(buf, &slog.HandlerOptions{Level: slog.LevelDebug}))
}

// scBackendFunc is a Backend made of a function.
type scBackendFunc func(ctx context.Context, spec RunnerSpec) (Node, error)

func (f scBackendFunc) Boot(ctx context.Context, spec RunnerSpec) (Node, error) { return f(ctx, spec) }

// scClose closes p, checks that Close returns nil, and lets the pool settle.
func scClose(t *testing.T, p *Pool) {
	t.Helper()
	assert.NoError(t, p.Close(context.Background()), "Close")
	synctest.Wait()
}

// ---------------------------------------------------------------------------
// Boot rule (SPEC §3.2)

func TestBootRuleFiveSimultaneousCallersMC2BootThreeRunners(t *testing.T) {
	synctest.Test(t, func(t *testing.T) {
		be := newTestBackend()
		p := mustPool(t, Config{Max: 10, MaxConcurrency: 2, Backend: be})
		var cs []*scCall
		for range 5 {
			cs = append(cs, scStart(t, t.Context(), p))
		}
		synctest.Wait()
		assert.Equal(t, []uint64{1, 2, 3}, scBoots(be))
		assert.Equal(t, scCounts{Runners: 3, InUse: 5, Booted: 3}, scCountsOf(p))
		scFreeAll(cs)
		synctest.Wait()
		for _, c := range cs {
			assert.NoError(t, c.result(t))
		}
		assert.Equal(t, scCounts{Runners: 3, Booted: 3}, scCountsOf(p))
		scClose(t, p)
	})
}

func TestBootRuleMaxCapsBootsAndTheRestWaitForSlots(t *testing.T) {
	synctest.Test(t, func(t *testing.T) {
		be := newTestBackend()
		p := mustPool(t, Config{Max: 2, MaxConcurrency: 1, Backend: be})
		var cs []*scCall
		for range 5 {
			cs = append(cs, scStart(t, t.Context(), p))
		}
		synctest.Wait()
		assert.Equal(t, []uint64{1, 2}, scBoots(be))
		assert.Equal(t, scCounts{Runners: 2, Waiting: 3, InUse: 2, Booted: 2}, scCountsOf(p))
		scFreeAll(cs) // each release hands its slot to the next waiter
		synctest.Wait()
		for _, c := range cs {
			assert.NoError(t, c.result(t))
		}
		assert.Equal(t, []uint64{1, 2}, scBoots(be), "no boot beyond Max")
		assert.Equal(t, scCounts{Runners: 2, Booted: 2}, scCountsOf(p))
		scClose(t, p)
	})
}

func TestBootRuleBootsOnlyWhenEveryRunnerIsFull(t *testing.T) {
	synctest.Test(t, func(t *testing.T) {
		be := newTestBackend()
		p := mustPool(t, Config{Min: 2, Max: 5, MaxConcurrency: 2, Backend: be})
		cs := make([]*scCall, 0, 5)
		for i := range 4 {
			cs = append(cs, scStart(t, t.Context(), p))
			synctest.Wait()
			assert.Equal(t, []uint64{1, 2}, scBoots(be), "boot with a free slot after %d calls", i+1)
			assert.Zero(t, p.Stats().Pending)
		}
		rs := scRunnersOf(cs)
		assert.ElementsMatch(t, []uint64{1, 2, 1, 2}, rs, "least loaded first: two calls on each runner")
		assert.NotEqual(t, rs[0], rs[1], "least loaded first")
		cs = append(cs, scStart(t, t.Context(), p))
		synctest.Wait()
		assert.Equal(t, []uint64{1, 2, 3}, scBoots(be), "every runner full: one boot")
		assert.Equal(t, uint64(3), cs[4].runner())
		assert.Equal(t, scCounts{Runners: 3, InUse: 5, Booted: 3}, scCountsOf(p))
		scFreeAll(cs)
		synctest.Wait()
		scClose(t, p)
	})
}

func TestRunnerThatComesUpServesUpToMaxConcurrencyWaitersInFIFOOrder(t *testing.T) {
	synctest.Test(t, func(t *testing.T) {
		be := newTestBackend()
		// Runner n takes n seconds to boot, so they come up one by one.
		be.onBoot = func(ctx context.Context, spec RunnerSpec) { time.Sleep(time.Duration(spec.ID) * time.Second) }
		p := mustPool(t, Config{Max: 10, MaxConcurrency: 2, Backend: be})
		cs := scStartEach(t, p, 5)
		assert.Equal(t, []uint64{1, 2, 3}, scBoots(be))
		assert.Equal(t, scCounts{Pending: 3, Waiting: 5}, scCountsOf(p))

		time.Sleep(time.Second)
		synctest.Wait()
		assert.Equal(t, []uint64{1, 1, 0, 0, 0}, scRunnersOf(cs), "runner 1 serves the two oldest waiters")
		time.Sleep(time.Second)
		synctest.Wait()
		assert.Equal(t, []uint64{1, 1, 2, 2, 0}, scRunnersOf(cs), "runner 2 serves the next two")
		time.Sleep(time.Second)
		synctest.Wait()
		assert.Equal(t, []uint64{1, 1, 2, 2, 3}, scRunnersOf(cs))
		assert.Equal(t, scCounts{Runners: 3, InUse: 5, Booted: 3}, scCountsOf(p))
		scFreeAll(cs)
		synctest.Wait()
		scClose(t, p)
	})
}

func TestRetryStartsEveryBootTheWaitersNeedAndNoneWhileItIsPending(t *testing.T) {
	synctest.Test(t, func(t *testing.T) {
		be := newTestBackend()
		var failing atomic.Bool
		failing.Store(true)
		be.fail = func(uint64) error {
			if failing.Load() {
				return errors.New("no capacity")
			}
			return nil
		}
		be.hang = func(id uint64) bool { return id > 50 } // a runaway boot loop ends, and the test fails
		p := mustPool(t, Config{Max: 10, MaxConcurrency: 1, Backend: be})
		cs := scStartEach(t, p, 4)
		assert.Equal(t, []uint64{1}, scBoots(be), "no boot may start while a retry is pending")
		assert.Equal(t, scCounts{Waiting: 4, BootFailures: 1}, scCountsOf(p))

		failing.Store(false)
		time.Sleep(time.Second + time.Millisecond)
		synctest.Wait()
		assert.Equal(t, []uint64{1, 2, 3, 4, 5}, scBoots(be), "the retry starts as many boots as the waiters need")
		assert.ElementsMatch(t, []uint64{2, 3, 4, 5}, scRunnersOf(cs))
		assert.Equal(t, scCounts{Runners: 4, InUse: 4, Booted: 4, BootFailures: 1}, scCountsOf(p))
		scFreeAll(cs)
		synctest.Wait()
		scClose(t, p)
	})
}

// ---------------------------------------------------------------------------
// Boot failures (SPEC §3.6)

func TestBootFailureReportsOnGrowEndAndKeepsWaitersQueued(t *testing.T) {
	synctest.Test(t, func(t *testing.T) {
		be := newTestBackend()
		errBoom := errors.New("boom: no capacity")
		be.fail = func(id uint64) error {
			if id == 1 {
				return errBoom
			}
			return nil
		}
		cfg := Config{Max: 3, MaxConcurrency: 1, Backend: be}
		ev := scHook(&cfg)
		p := mustPool(t, cfg)
		c := scStart(t, t.Context(), p)
		synctest.Wait()
		assert.ErrorIs(t, ev.growErr(1), errBoom, "OnGrowEnd gets the boot error")
		assert.Equal(t, []string{"grow-start 1 #1", "grow-end 0 #1 err"}, ev.get())
		assert.Equal(t, scCounts{Waiting: 1, BootFailures: 1}, scCountsOf(p))
		assert.False(t, c.returned(), "the waiter stays queued")

		time.Sleep(time.Second + time.Millisecond)
		synctest.Wait()
		assert.Equal(t, uint64(2), c.runner(), "the retry boots a runner for the waiter")
		assert.Equal(t, []string{"grow-start 1 #1", "grow-end 0 #1 err", "grow-start 1 #2", "grow-end 1 #2 ok"}, ev.get())
		assert.Equal(t, scCounts{Runners: 1, InUse: 1, Booted: 1, BootFailures: 1}, scCountsOf(p))
		c.free()
		synctest.Wait()
		assert.NoError(t, c.result(t))
		scClose(t, p)
	})
}

func TestAlwaysFailingBackendRetriesEverySecondWhileDemandRemainsThenNeverAgain(t *testing.T) {
	synctest.Test(t, func(t *testing.T) {
		be := newTestBackend()
		be.fail = func(uint64) error { return errors.New("backend is down for maintenance") }
		be.hang = func(id uint64) bool { return id > 50 } // a runaway boot loop ends, and the test fails
		cfg := Config{Max: 3, MaxConcurrency: 1, Backend: be}
		ev := scHook(&cfg)
		p := mustPool(t, cfg)
		start := time.Now()
		c := scStart(t, t.Context(), p, WithTimeout(5500*time.Millisecond))
		time.Sleep(500 * time.Millisecond)
		synctest.Wait()
		assert.Len(t, scBoots(be), 1)
		for n := 2; n <= 6; n++ { // t = 1.5s .. 5.5s
			time.Sleep(time.Second)
			synctest.Wait()
			assert.Len(t, scBoots(be), n, "boots by %v", time.Since(start))
		}
		err := c.result(t)
		assert.ErrorIs(t, err, ErrCheckoutTimeout)
		assert.ErrorIs(t, err, context.DeadlineExceeded)
		assert.Contains(t, err.Error(), "backend is down for maintenance", "the checkout timeout names the last boot error")

		time.Sleep(time.Hour)
		synctest.Wait()
		assert.Len(t, scBoots(be), 6, "no demand, no retry: a failing backend never loops")
		assert.Equal(t, scCounts{BootFailures: 6}, scCountsOf(p))
		assert.Len(t, ev.get(), 12, "a grow-start and a grow-end per boot")
		scClose(t, p)
	})
}

func TestBootPastBootTimeoutFailsWithAClearError(t *testing.T) {
	t.Run("backend honours ctx", func(t *testing.T) {
		synctest.Test(t, func(t *testing.T) {
			be := newTestBackend()
			be.hang = func(id uint64) bool { return id == 1 }
			cfg := Config{Max: 3, MaxConcurrency: 1, Backend: be, BootTimeout: 5 * time.Second}
			ev := scHook(&cfg)
			p := mustPool(t, cfg)
			c := scStart(t, t.Context(), p, WithTimeout(time.Minute))
			time.Sleep(5*time.Second - time.Millisecond)
			synctest.Wait()
			assert.Equal(t, 1, p.Stats().Pending)
			assert.Zero(t, p.Stats().BootFailures)
			time.Sleep(2 * time.Millisecond)
			synctest.Wait()
			err := ev.growErr(1)
			require.Error(t, err)
			assert.ErrorIs(t, err, context.DeadlineExceeded)
			assert.Equal(t, scCounts{Waiting: 1, BootFailures: 1}, scCountsOf(p))
			time.Sleep(time.Second)
			synctest.Wait()
			assert.Equal(t, uint64(2), c.runner())
			c.free()
			synctest.Wait()
			scClose(t, p)
		})
	})
	t.Run("backend ignores ctx", func(t *testing.T) {
		synctest.Test(t, func(t *testing.T) {
			unblock := make(chan struct{})
			late := &testNode{id: 1, done: make(chan struct{})}
			be := scBackendFunc(func(ctx context.Context, spec RunnerSpec) (Node, error) {
				if spec.ID == 1 {
					<-unblock
					return late, nil
				}
				return &testNode{id: spec.ID, done: make(chan struct{})}, nil
			})
			cfg := Config{Max: 3, MaxConcurrency: 1, Backend: be, BootTimeout: 5 * time.Second}
			ev := scHook(&cfg)
			p := mustPool(t, cfg)
			c := scStart(t, t.Context(), p, WithTimeout(time.Minute))
			time.Sleep(5*time.Second + time.Millisecond)
			synctest.Wait()
			err := ev.growErr(1)
			require.Error(t, err)
			assert.ErrorIs(t, err, context.DeadlineExceeded)
			assert.Contains(t, err.Error(), "BootTimeout", "the error says which limit passed")
			assert.Equal(t, scCounts{Waiting: 1, BootFailures: 1}, scCountsOf(p))
			time.Sleep(time.Second)
			synctest.Wait()
			assert.Equal(t, uint64(2), c.runner())

			close(unblock) // the backend returns a node after all: it is shut down
			synctest.Wait()
			assert.Equal(t, 1, late.shutdownCount(), "a node returned after BootTimeout is shut down")
			assert.Equal(t, scCounts{Runners: 1, InUse: 1, Booted: 1, BootFailures: 1}, scCountsOf(p))
			c.free()
			synctest.Wait()
			scClose(t, p)
		})
	})
}

func TestBootFailureModes(t *testing.T) {
	stopped := make(chan struct{})
	close(stopped)
	cases := []struct {
		name     string
		boot     func(ctx context.Context, spec RunnerSpec) (Node, error) // for runner 1
		panicGS  bool                                                     // OnGrowStart panics for runner 1
		wantText string
	}{
		{name: "nil node and nil error", boot: func(context.Context, RunnerSpec) (Node, error) { return nil, nil }, wantText: "no node"},
		{name: "Boot panics", boot: func(context.Context, RunnerSpec) (Node, error) { panic("backend exploded") }, wantText: "backend exploded"},
		{name: "node already stopped", boot: func(context.Context, RunnerSpec) (Node, error) {
			return &testNode{id: 1, done: stopped}, nil
		}, wantText: "stopped"},
		{name: "OnGrowStart panics", panicGS: true, wantText: "OnGrowStart"},
	}
	for _, tc := range cases {
		t.Run(tc.name, func(t *testing.T) {
			synctest.Test(t, func(t *testing.T) {
				var bootCalls []uint64
				var mu sync.Mutex
				be := scBackendFunc(func(ctx context.Context, spec RunnerSpec) (Node, error) {
					mu.Lock()
					bootCalls = append(bootCalls, spec.ID)
					mu.Unlock()
					if spec.ID == 1 && tc.boot != nil {
						return tc.boot(ctx, spec)
					}
					return &testNode{id: spec.ID, done: make(chan struct{})}, nil
				})
				cfg := Config{Max: 3, MaxConcurrency: 1, Backend: be}
				ev := scHook(&cfg)
				if tc.panicGS {
					gs := cfg.OnGrowStart
					cfg.OnGrowStart = func(e GrowEvent) {
						gs(e)
						if e.RunnerID == 1 {
							panic("hook exploded")
						}
					}
				}
				p := mustPool(t, cfg)
				c := scStart(t, t.Context(), p)
				synctest.Wait()
				err := ev.growErr(1)
				require.Error(t, err, "the boot must fail")
				assert.Contains(t, err.Error(), tc.wantText)
				assert.Equal(t, scCounts{Waiting: 1, BootFailures: 1}, scCountsOf(p))
				if tc.panicGS {
					mu.Lock()
					assert.Empty(t, bootCalls, "Backend.Boot is not called after OnGrowStart panicked")
					mu.Unlock()
				}
				time.Sleep(time.Second + time.Millisecond)
				synctest.Wait()
				assert.Equal(t, uint64(2), c.runner(), "the pool recovers with the next boot")
				c.free()
				synctest.Wait()
				assert.NoError(t, c.result(t))
				assert.Equal(t, scCounts{Runners: 1, Booted: 1, BootFailures: 1}, scCountsOf(p))
				scClose(t, p)
			})
		})
	}
}

// ---------------------------------------------------------------------------
// Idle shutdown (SPEC §3.7, as Config.IdleShutdownAfter documents it)

const scIdle = 10 * time.Second

// The call's release falls in the runner's first period, so that check finds
// activity; the runner goes at the end of the first whole unused period.
func TestIdleRunnerBootedForDemandShutsDownAfterAWholeUnusedPeriod(t *testing.T) {
	synctest.Test(t, func(t *testing.T) {
		be := newTestBackend()
		cfg := Config{Max: 2, MaxConcurrency: 1, Backend: be, IdleShutdownAfter: scIdle}
		ev := scHook(&cfg)
		p := mustPool(t, cfg)
		require.NoError(t, p.Call(t.Context(), func(context.Context) error { return nil }))
		time.Sleep(scIdle + time.Millisecond)
		synctest.Wait()
		assert.Equal(t, 1, p.Stats().Runners, "the first check saw the release")
		time.Sleep(scIdle - 2*time.Millisecond)
		synctest.Wait()
		assert.Equal(t, 1, p.Stats().Runners, "still there just before the period ends")
		time.Sleep(2 * time.Millisecond)
		synctest.Wait()
		assert.Equal(t, scCounts{Booted: 1, Shrunk: 1}, scCountsOf(p))
		require.Len(t, ev.shrinkEvents(), 1)
		sev := ev.shrinkEvents()[0]
		assert.ErrorIs(t, sev.Reason, ErrIdleShutdown)
		assert.Equal(t, ShrinkEvent{Pool: "flame", Count: 0, RunnerID: 1, Reason: sev.Reason}, sev)
		assert.True(t, be.allShutDown(), "the node is shut down")
		time.Sleep(time.Hour)
		synctest.Wait()
		assert.Equal(t, []uint64{1}, scBoots(be), "an idle-down is not replaced")
		scClose(t, p)
	})
}

func TestIdleRunnerUsedWithinThePeriodSurvivesThatCheckAndGoesAtALaterOne(t *testing.T) {
	synctest.Test(t, func(t *testing.T) {
		be := newTestBackend()
		p := mustPool(t, Config{Max: 2, MaxConcurrency: 1, Backend: be, IdleShutdownAfter: scIdle})
		noop := func(context.Context) error { return nil }
		require.NoError(t, p.Call(t.Context(), noop))
		time.Sleep(scIdle / 2)
		require.NoError(t, p.Call(t.Context(), noop)) // used within the first period
		time.Sleep(scIdle/2 + time.Millisecond)
		synctest.Wait()
		assert.Equal(t, 1, p.Stats().Runners, "used during the period: survives the check")
		time.Sleep(scIdle - 2*time.Millisecond)
		synctest.Wait()
		assert.Equal(t, 1, p.Stats().Runners)
		time.Sleep(2 * time.Millisecond)
		synctest.Wait()
		assert.Equal(t, scCounts{Booted: 1, Shrunk: 1}, scCountsOf(p), "unused for the whole next period: gone")
		scClose(t, p)
	})
}

// A call that outlives several periods keeps its runner; once it returns,
// the runner goes at the first check that finds a whole period without a
// checkout or release (the period is counted from a check, and the release
// counts as activity), so never less than a period after the release.
func TestIdleShutdownNeverTakesARunnerWhoseCallOutlivesThePeriod(t *testing.T) {
	synctest.Test(t, func(t *testing.T) {
		be := newTestBackend()
		p := mustPool(t, Config{Max: 2, MaxConcurrency: 1, Backend: be, IdleShutdownAfter: scIdle, Timeout: Infinity})
		c := scStart(t, t.Context(), p)
		time.Sleep(3*scIdle + scIdle/2)
		synctest.Wait()
		assert.False(t, c.returned(), "an idle shutdown never cancels a call")
		assert.Equal(t, scCounts{Runners: 1, InUse: 1, Booted: 1}, scCountsOf(p))
		c.free()
		synctest.Wait()
		assert.NoError(t, c.result(t))
		time.Sleep(scIdle/2 + time.Millisecond) // just past 4 periods: the release fell in this one
		synctest.Wait()
		assert.Equal(t, scCounts{Runners: 1, Booted: 1}, scCountsOf(p), "released within the period: kept")
		time.Sleep(scIdle) // just past 5 periods: a whole period without activity
		synctest.Wait()
		assert.Equal(t, scCounts{Booted: 1, Shrunk: 1}, scCountsOf(p))
		scClose(t, p)
	})
}

func TestIdleMinRunnersStayWithDefaultMinIdleShutdownAfter(t *testing.T) {
	synctest.Test(t, func(t *testing.T) {
		be := newTestBackend()
		p := mustPool(t, Config{Min: 2, Max: 3, MaxConcurrency: 1, Backend: be, IdleShutdownAfter: time.Second})
		time.Sleep(1000 * time.Hour)
		synctest.Wait()
		assert.Equal(t, scCounts{Runners: 2, Booted: 2}, scCountsOf(p))
		scClose(t, p)
	})
}

func TestIdleFiniteMinIdleShutdownAfterLetsMinRunnerGoUnreplacedUntilDemandReturns(t *testing.T) {
	synctest.Test(t, func(t *testing.T) {
		be := newTestBackend()
		cfg := Config{Min: 1, Max: 3, MaxConcurrency: 1, Backend: be, IdleShutdownAfter: Infinity, MinIdleShutdownAfter: scIdle}
		ev := scHook(&cfg)
		p := mustPool(t, cfg)
		time.Sleep(scIdle - time.Millisecond)
		synctest.Wait()
		assert.Equal(t, 1, p.Stats().Runners)
		time.Sleep(2 * time.Millisecond)
		synctest.Wait()
		assert.Equal(t, scCounts{Booted: 1, Shrunk: 1}, scCountsOf(p))
		assert.ErrorIs(t, ev.shrinkReason(1), ErrIdleShutdown)
		time.Sleep(time.Hour)
		synctest.Wait()
		assert.Equal(t, []uint64{1}, scBoots(be), "not replaced without demand")
		assert.Equal(t, scCounts{Booted: 1, Shrunk: 1}, scCountsOf(p))

		c := scStart(t, t.Context(), p)
		synctest.Wait()
		assert.Equal(t, uint64(2), c.runner(), "demand brings a runner back")
		c.free()
		synctest.Wait()
		assert.Equal(t, scCounts{Runners: 1, Booted: 2, Shrunk: 1}, scCountsOf(p))
		scClose(t, p)
	})
}

func TestIdleNonMinRunnerNeverIdlesDownBelowMin(t *testing.T) {
	synctest.Test(t, func(t *testing.T) {
		be := newTestBackend()
		p := mustPool(t, Config{Min: 1, Max: 2, MaxConcurrency: 1, Backend: be, IdleShutdownAfter: scIdle})
		cs := scStartEach(t, p, 2) // #1 (min) and #2 (booted for demand)
		require.Equal(t, []uint64{1, 2}, scRunnersOf(cs))
		be.node(1).Crash() // #2 alone is left: exactly Min, so no replacement
		cs[1].free()
		synctest.Wait()
		require.ErrorIs(t, cs[0].result(t), ErrRunnerDown)
		assert.Equal(t, []uint64{1, 2}, scBoots(be))
		time.Sleep(100 * scIdle)
		synctest.Wait()
		assert.Equal(t, scCounts{Runners: 1, Booted: 2, Shrunk: 1}, scCountsOf(p), "the last runner stays for Min")
		scClose(t, p)
	})
}

func TestIdleNonMinRunnersKeptForARaisedMinUntilMinDrops(t *testing.T) {
	synctest.Test(t, func(t *testing.T) {
		be := newTestBackend()
		p := mustPool(t, Config{Max: 3, MaxConcurrency: 1, Backend: be, IdleShutdownAfter: scIdle})
		cs := scStartEach(t, p, 2)
		scFreeAll(cs)
		synctest.Wait()
		require.NoError(t, p.Resize(2, 3)) // two runners already: no boot
		synctest.Wait()
		time.Sleep(100 * scIdle)
		synctest.Wait()
		assert.Equal(t, scCounts{Runners: 2, Booted: 2}, scCountsOf(p))
		require.NoError(t, p.Resize(1, 3))
		time.Sleep(100 * scIdle)
		synctest.Wait()
		assert.Equal(t, scCounts{Runners: 1, Booted: 2, Shrunk: 1}, scCountsOf(p), "one may go, one stays for Min")
		assert.Equal(t, []uint64{1, 2}, scBoots(be))
		scClose(t, p)
	})
}

func TestIdleCheckFalseKeepsRunnerCheckedEachPeriodThenTrueLetsItGo(t *testing.T) {
	synctest.Test(t, func(t *testing.T) {
		be := newTestBackend()
		var ok atomic.Bool
		var asked atomic.Int64
		p := mustPool(t, Config{Max: 2, MaxConcurrency: 1, Backend: be, IdleShutdownAfter: scIdle,
			IdleCheck: func() bool { asked.Add(1); return ok.Load() }})
		require.NoError(t, p.Call(t.Context(), func(context.Context) error { return nil }))
		time.Sleep(scIdle + time.Millisecond) // sample just after each period's check
		synctest.Wait()
		assert.Equal(t, int64(0), asked.Load(), "a period with activity does not ask IdleCheck")
		for n := int64(1); n <= 3; n++ {
			time.Sleep(scIdle)
			synctest.Wait()
			assert.Equal(t, n, asked.Load(), "asked once per period")
			assert.Equal(t, 1, p.Stats().Runners, "IdleCheck false keeps the runner")
		}
		ok.Store(true)
		time.Sleep(scIdle)
		synctest.Wait()
		assert.Equal(t, int64(4), asked.Load())
		assert.Equal(t, scCounts{Booted: 1, Shrunk: 1}, scCountsOf(p))
		scClose(t, p)
	})
}

func TestIdleShutdownAfterInfinityDisablesIdleShutdown(t *testing.T) {
	synctest.Test(t, func(t *testing.T) {
		be := newTestBackend()
		var asked atomic.Int64
		p := mustPool(t, Config{Max: 2, MaxConcurrency: 1, Backend: be, IdleShutdownAfter: Infinity,
			IdleCheck: func() bool { asked.Add(1); return true }})
		require.NoError(t, p.Call(t.Context(), func(context.Context) error { return nil }))
		time.Sleep(100000 * time.Hour)
		synctest.Wait()
		assert.Equal(t, scCounts{Runners: 1, Booted: 1}, scCountsOf(p))
		assert.Zero(t, asked.Load())
		scClose(t, p)
	})
}

// ---------------------------------------------------------------------------
// Events (SPEC §3.10)

func TestEventsBurstOfFiveCallersMC2ThenClose(t *testing.T) {
	synctest.Test(t, func(t *testing.T) {
		be := newTestBackend()
		be.onBoot = func(ctx context.Context, spec RunnerSpec) { time.Sleep(time.Duration(spec.ID) * time.Second) }
		cfg := Config{Name: "burst", Max: 10, MaxConcurrency: 2, Backend: be}
		ev := scHook(&cfg)
		p := mustPool(t, cfg)
		cs := scStartEach(t, p, 5)
		time.Sleep(3 * time.Second)
		synctest.Wait()
		assert.Equal(t, []string{
			"grow-start 1 #1", "grow-start 2 #2", "grow-start 3 #3",
			"grow-end 3 #1 ok", "grow-end 3 #2 ok", "grow-end 3 #3 ok",
		}, ev.get())
		scFreeAll(cs)
		synctest.Wait()
		scClose(t, p)
		assert.Equal(t, []string{"shrink 2 #1", "shrink 1 #2", "shrink 0 #3"}, ev.get()[6:])
		for _, s := range ev.shrinkEvents() {
			assert.Equal(t, "burst", s.Pool)
			assert.ErrorIs(t, s.Reason, ErrClosed)
		}
	})
}

func TestEventsOnGrowEndAndOnShrinkNeverOverlap(t *testing.T) {
	synctest.Test(t, func(t *testing.T) {
		be := newTestBackend()
		be.delay = time.Second // boots decided together end together
		be.fail = func(id uint64) error {
			if id%3 == 0 {
				return errors.New("flaky")
			}
			return nil
		}
		var inHook, overlaps, events atomic.Int64
		enter := func() {
			events.Add(1)
			if inHook.Add(1) > 1 {
				overlaps.Add(1)
			}
			time.Sleep(10 * time.Millisecond) // a slow hook widens the window
			inHook.Add(-1)
		}
		p := mustPool(t, Config{Max: 8, MaxConcurrency: 1, Backend: be, IdleShutdownAfter: 5 * time.Second,
			OnGrowEnd: func(GrowEvent, error) { enter() },
			OnShrink:  func(ShrinkEvent) { enter() },
		})
		var cs []*scCall
		for range 8 {
			cs = append(cs, scStart(t, t.Context(), p))
		}
		time.Sleep(5 * time.Second)
		synctest.Wait()
		for _, id := range []uint64{1, 2, 4, 5} {
			if n := be.node(id); n != nil {
				n.Crash()
			}
		}
		time.Sleep(5 * time.Second)
		synctest.Wait()
		scFreeAll(cs)
		time.Sleep(time.Minute) // idle-downs
		synctest.Wait()
		for range 6 {
			cs = append(cs, scStart(t, t.Context(), p))
		}
		time.Sleep(5 * time.Second)
		synctest.Wait()
		scFreeAll(cs)
		synctest.Wait()
		scClose(t, p)
		assert.GreaterOrEqual(t, events.Load(), int64(25), "the scenario should produce many events")
		assert.Zero(t, overlaps.Load(), "OnGrowEnd/OnShrink calls overlapped")
	})
}

func TestEventsPanicsInOnGrowEndAndOnShrinkAreContained(t *testing.T) {
	synctest.Test(t, func(t *testing.T) {
		be := newTestBackend()
		var logs syncBuffer
		p := mustPool(t, Config{Max: 2, MaxConcurrency: 1, Backend: be, Logger: scLogger(&logs),
			OnGrowEnd: func(GrowEvent, error) { panic("grow-end hook bug") },
			OnShrink:  func(ShrinkEvent) { panic("shrink hook bug") },
		})
		noop := func(context.Context) error { return nil }
		require.NoError(t, p.Call(t.Context(), noop))
		be.node(1).Crash()
		synctest.Wait()
		require.NoError(t, p.Call(t.Context(), noop), "the pool keeps working")
		synctest.Wait()
		assert.Equal(t, scCounts{Runners: 1, Booted: 2, Shrunk: 1}, scCountsOf(p))
		scClose(t, p)
		assert.Equal(t, uint64(2), p.Stats().Shrunk)
		assert.True(t, be.allShutDown())
		out := logs.String()
		assert.Contains(t, out, "OnGrowEnd panicked")
		assert.Contains(t, out, "grow-end hook bug")
		assert.Contains(t, out, "OnShrink panicked")
		assert.Contains(t, out, "shrink hook bug")
	})
}

// ---------------------------------------------------------------------------
// Resize (SPEC §3.11)

func TestResizeRejectsInvalidBoundsAndChangesNothing(t *testing.T) {
	p := mustPool(t, Config{Min: 1, Max: 3})
	for _, b := range [][2]int{{-1, 1}, {0, 0}, {3, 2}, {0, -5}} {
		err := p.Resize(b[0], b[1])
		assert.ErrorIs(t, err, ErrInvalidConfig, "Resize(%d, %d)", b[0], b[1])
	}
	st := p.Stats()
	assert.Equal(t, [2]int{1, 3}, [2]int{st.Min, st.Max})
	assert.Equal(t, 1, st.Runners)
}

func TestResizeRaisingMinBootsMinRunners(t *testing.T) {
	synctest.Test(t, func(t *testing.T) {
		be := newTestBackend()
		cfg := Config{Max: 5, MaxConcurrency: 1, Backend: be, IdleShutdownAfter: time.Second}
		ev := scHook(&cfg)
		p := mustPool(t, cfg)
		require.NoError(t, p.Resize(3, 5))
		synctest.Wait()
		assert.Equal(t, scCounts{Runners: 3, Booted: 3}, scCountsOf(p))
		st := p.Stats()
		assert.Equal(t, [2]int{3, 5}, [2]int{st.Min, st.Max})
		var starts []string
		for _, e := range ev.get() {
			if strings.HasPrefix(e, "grow-start") {
				starts = append(starts, e)
			}
		}
		slices.Sort(starts)
		assert.Equal(t, []string{"grow-start 1 #1", "grow-start 2 #2", "grow-start 3 #3"}, starts)
		time.Sleep(time.Hour)
		synctest.Wait()
		assert.Equal(t, scCounts{Runners: 3, Booted: 3}, scCountsOf(p), "runners booted for Min keep MinIdleShutdownAfter (Infinity)")
		scClose(t, p)
	})
}

func TestResizeRaisingMaxServesWaitersBeyondTheOldMax(t *testing.T) {
	synctest.Test(t, func(t *testing.T) {
		be := newTestBackend()
		p := mustPool(t, Config{Max: 1, MaxConcurrency: 1, Backend: be})
		cs := scStartEach(t, p, 4)
		assert.Equal(t, []uint64{1, 0, 0, 0}, scRunnersOf(cs))
		assert.Equal(t, scCounts{Runners: 1, Waiting: 3, InUse: 1, Booted: 1}, scCountsOf(p))
		require.NoError(t, p.Resize(0, 4))
		synctest.Wait()
		assert.Equal(t, []uint64{1, 2, 3, 4}, scBoots(be), "every boot the waiters need starts")
		assert.ElementsMatch(t, []uint64{1, 2, 3, 4}, scRunnersOf(cs))
		assert.Equal(t, scCounts{Runners: 4, InUse: 4, Booted: 4}, scCountsOf(p))
		scFreeAll(cs)
		synctest.Wait()
		scClose(t, p)
	})
}

func TestResizeLoweringMaxCancelsPendingThenShutsIdleThenDrainsBusy(t *testing.T) {
	synctest.Test(t, func(t *testing.T) {
		be := newTestBackend()
		be.hang = func(id uint64) bool { return id == 4 }
		cfg := Config{Max: 5, MaxConcurrency: 2, Backend: be}
		ev := scHook(&cfg)
		p := mustPool(t, cfg)
		a := scStartEach(t, p, 6) // #1: a0 a1, #2: a2 a3, #3: a4 a5
		require.Equal(t, []uint64{1, 1, 2, 2, 3, 3}, scRunnersOf(a))
		g := scStart(t, t.Context(), p, WithTimeout(time.Second)) // boots #4, which hangs
		time.Sleep(time.Second)
		synctest.Wait()
		require.ErrorIs(t, g.result(t), ErrCheckoutTimeout)
		a[3].free()
		a[4].free()
		a[5].free()
		synctest.Wait()
		// #1 load 2, #2 load 1, #3 idle, #4 booting.
		require.Equal(t, scCounts{Runners: 3, Pending: 1, InUse: 3, Booted: 3}, scCountsOf(p))

		require.NoError(t, p.Resize(0, 3))
		synctest.Wait()
		assert.ErrorIs(t, ev.growErr(4), ErrBootCanceled, "the pending boot goes first")
		assert.Equal(t, scCounts{Runners: 3, InUse: 3, Booted: 3}, scCountsOf(p), "a canceled boot is no boot failure")

		require.NoError(t, p.Resize(0, 2))
		synctest.Wait()
		assert.ErrorIs(t, ev.shrinkReason(3), ErrResized, "then the idle runner")
		assert.Equal(t, scCounts{Runners: 2, InUse: 3, Booted: 3, Shrunk: 1}, scCountsOf(p))

		require.NoError(t, p.Resize(0, 1))
		synctest.Wait()
		st := p.Stats()
		assert.Equal(t, 1, st.Runners, "the draining runner takes no work")
		assert.Equal(t, []RunnerLoad{{1, 2}, {2, 1}}, st.RunnerLoads, "the least-loaded busy runner drains and keeps its work")
		assert.False(t, a[2].returned(), "draining does not cancel work")

		h := scStart(t, t.Context(), p, WithTimeout(time.Minute))
		synctest.Wait()
		assert.Zero(t, h.runner(), "no checkout lands on a draining runner")
		assert.Len(t, scBoots(be), 4, "no boot above Max")
		a[0].free() // its slot on #1 goes to h
		synctest.Wait()
		assert.Equal(t, uint64(1), h.runner())

		a[2].free() // the last call on #2 returns: #2 goes
		synctest.Wait()
		assert.NoError(t, a[2].result(t))
		assert.ErrorIs(t, ev.shrinkReason(2), ErrResized)
		assert.Equal(t, scCounts{Runners: 1, InUse: 2, Booted: 3, Shrunk: 2}, scCountsOf(p))
		assert.Nil(t, ev.shrinkReason(1))

		scFreeAll(append(a, h))
		synctest.Wait()
		scClose(t, p)
	})
}

func TestResizeOnClosedPoolReturnsErrClosed(t *testing.T) {
	p := mustPool(t, Config{Max: 2})
	require.NoError(t, p.Close(context.Background()))
	assert.ErrorIs(t, p.Resize(0, 3), ErrClosed)
}

func TestHooksCallingResizeAndStatsDoNotDeadlock(t *testing.T) {
	var pp atomic.Pointer[Pool]
	shrunk := make(chan struct{}, 16)
	var idleChecks atomic.Int64
	cfg := Config{
		Max: 2, MaxConcurrency: 1, IdleShutdownAfter: 20 * time.Millisecond,
		OnGrowStart: func(GrowEvent) {
			_ = pp.Load().Stats()
			_ = pp.Load().Resize(0, 3)
		},
		OnGrowEnd: func(GrowEvent, error) {
			_ = pp.Load().Stats()
			_ = pp.Load().Resize(0, 4)
		},
		OnShrink: func(ShrinkEvent) {
			_ = pp.Load().Stats()
			_ = pp.Load().Resize(0, 4)
			shrunk <- struct{}{}
		},
		IdleCheck: func() bool {
			idleChecks.Add(1)
			_ = pp.Load().Stats()
			_ = pp.Load().Resize(0, 4)
			return true
		},
	}
	p, err := NewPool(cfg)
	require.NoError(t, err)
	pp.Store(p)
	done := make(chan error, 1)
	go func() {
		err := p.Call(context.Background(), func(context.Context) error { return nil })
		if err == nil {
			<-shrunk // the idle-down: IdleCheck and OnShrink ran
		}
		done <- err
	}()
	select {
	case err := <-done:
		require.NoError(t, err)
	case <-time.After(10 * time.Second): // a guard against a deadlock, not synchronisation
		require.FailNow(t, "deadlock: a hook calling Resize or Stats blocked the pool")
	}
	assert.Positive(t, idleChecks.Load())
	assert.Equal(t, 4, p.Stats().Max)
	cl := make(chan error, 1)
	go func() { cl <- p.Close(context.Background()) }()
	select {
	case err := <-cl:
		require.NoError(t, err)
	case <-time.After(10 * time.Second):
		require.FailNow(t, "deadlock: Close with hooks calling Resize or Stats")
	}
}
