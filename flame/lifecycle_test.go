package flame

import (
	"context"
	"errors"
	"sync"
	"sync/atomic"
	"testing"
	"testing/synctest"
	"time"

	"github.com/stretchr/testify/assert"
	"github.com/stretchr/testify/require"
	"go.uber.org/goleak"
)

// Helpers shared with scaling_test.go carry the prefix "sc".

func scNoop(context.Context) error { return nil }

// scCloseAsync starts Close(ctx) and returns its result channel.
func scCloseAsync(p *Pool, ctx context.Context) <-chan error {
	ch := make(chan error, 1)
	go func() { ch <- p.Close(ctx) }()
	return ch
}

// scPending reports whether ch has delivered nothing yet.
func scPending(ch <-chan error) bool {
	select {
	case err := <-ch:
		panic(err) // a result the test did not expect to exist yet
	default:
		return true
	}
}

// scRecv returns ch's value, failing the test if there is none yet.
func scRecv(t *testing.T, ch <-chan error, what string) error {
	t.Helper()
	select {
	case err := <-ch:
		return err
	default:
		require.FailNow(t, what+" has not returned")
		return nil
	}
}

// ---------------------------------------------------------------------------
// SingleUse (SPEC §3.8)

func TestSingleUseRunnerTakesNoCheckoutAfterFirstReleaseAndGoesWithItsLastRelease(t *testing.T) {
	synctest.Test(t, func(t *testing.T) {
		be := newTestBackend()
		cfg := Config{Max: 3, MaxConcurrency: 2, SingleUse: true, Backend: be}
		ev := scHook(&cfg)
		p := mustPool(t, cfg)
		cs := scStartEach(t, p, 2)
		require.Equal(t, []uint64{1, 1}, scRunnersOf(cs), "a single-use runner takes concurrent checkouts until a release")

		cs[0].free()
		synctest.Wait()
		require.NoError(t, cs[0].result(t))
		st := p.Stats()
		assert.Equal(t, 0, st.Runners, "a used single-use runner does not count as taking work")
		assert.Equal(t, []RunnerLoad{{1, 1}}, st.RunnerLoads)
		assert.Equal(t, scCounts{InUse: 1, Booted: 1}, scCountsOf(p))

		d := scStart(t, t.Context(), p)
		synctest.Wait()
		assert.Equal(t, uint64(2), d.runner(), "no new checkout on a used runner, though it has a free slot")
		assert.Equal(t, []uint64{1, 2}, scBoots(be))
		assert.Nil(t, ev.shrinkReason(1), "not removed while it holds work")

		cs[1].free()
		synctest.Wait()
		assert.ErrorIs(t, ev.shrinkReason(1), ErrSingleUse)
		assert.Equal(t, 1, be.node(1).shutdownCount(), "its node is shut down")
		assert.Equal(t, scCounts{Runners: 1, InUse: 1, Booted: 2, Shrunk: 1}, scCountsOf(p))

		d.free()
		synctest.Wait()
		assert.ErrorIs(t, ev.shrinkReason(2), ErrSingleUse)
		assert.Equal(t, scCounts{Booted: 2, Shrunk: 2}, scCountsOf(p))
		assert.True(t, be.allShutDown())
		scClose(t, p)
	})
}

func TestSingleUseWithMinBootsReplacementAfterOnShrink(t *testing.T) {
	synctest.Test(t, func(t *testing.T) {
		be := newTestBackend()
		cfg := Config{Min: 1, Max: 2, MaxConcurrency: 1, SingleUse: true, Backend: be}
		ev := scHook(&cfg)
		p := mustPool(t, cfg)
		require.NoError(t, p.Call(t.Context(), scNoop))
		synctest.Wait()
		assert.Equal(t, []string{"shrink 0 #1", "grow-start 1 #2", "grow-end 1 #2 ok"}, ev.get())
		assert.ErrorIs(t, ev.shrinkReason(1), ErrSingleUse)
		assert.Equal(t, []uint64{1, 2}, scBoots(be))
		assert.Equal(t, scCounts{Runners: 1, Booted: 2, Shrunk: 1}, scCountsOf(p))

		require.NoError(t, p.Call(t.Context(), scNoop))
		synctest.Wait()
		assert.Equal(t, []uint64{1, 2, 3}, scBoots(be))
		assert.Equal(t, scCounts{Runners: 1, Booted: 3, Shrunk: 2}, scCountsOf(p))
		scClose(t, p)
	})
}

// ---------------------------------------------------------------------------
// Runner down (SPEC §3.9)

func TestCrashOfIdleRunnerRemovesItAndFiresOnShrink(t *testing.T) {
	synctest.Test(t, func(t *testing.T) {
		be := newTestBackend()
		cfg := Config{Max: 2, MaxConcurrency: 1, Backend: be}
		ev := scHook(&cfg)
		p := mustPool(t, cfg)
		require.NoError(t, p.Call(t.Context(), scNoop))
		be.node(1).Crash()
		synctest.Wait()
		assert.Equal(t, []string{"grow-start 1 #1", "grow-end 1 #1 ok", "shrink 0 #1"}, ev.get())
		assert.ErrorIs(t, ev.shrinkReason(1), ErrRunnerDown)
		assert.Equal(t, scCounts{Booted: 1, Shrunk: 1}, scCountsOf(p))
		assert.Equal(t, []uint64{1}, scBoots(be), "Min 0 and no demand: no replacement")

		require.NoError(t, p.Call(t.Context(), scNoop), "the pool boots again on demand")
		assert.Equal(t, []uint64{1, 2}, scBoots(be))
		scClose(t, p)
	})
}

func TestCrashOfBusyRunnerFailsItsCallsAndBootsForTheWaiters(t *testing.T) {
	synctest.Test(t, func(t *testing.T) {
		be := newTestBackend()
		cfg := Config{Max: 1, MaxConcurrency: 1, Backend: be}
		ev := scHook(&cfg)
		p := mustPool(t, cfg)
		cs := scStartEach(t, p, 2)
		require.Equal(t, []uint64{1, 0}, scRunnersOf(cs))

		be.node(1).Crash()
		synctest.Wait()
		err := cs[0].result(t)
		assert.ErrorIs(t, err, ErrRunnerDown, "in-flight call gets ErrRunnerDown")
		assert.NotNil(t, cs[0].fnErr.Load(), "in-flight fn's ctx is cancelled")
		assert.Equal(t, uint64(2), cs[1].runner(), "the waiter is served by a new boot, not left to starve")
		assert.Equal(t, []string{
			"grow-start 1 #1", "grow-end 1 #1 ok",
			"shrink 0 #1", "grow-start 1 #2", "grow-end 1 #2 ok",
		}, ev.get(), "OnShrink comes before the replacement's OnGrowStart")
		assert.Equal(t, scCounts{Runners: 1, InUse: 1, Booted: 2, Shrunk: 1}, scCountsOf(p), "the dead runner's release is a no-op")
		cs[1].free()
		synctest.Wait()
		assert.NoError(t, cs[1].result(t))
		scClose(t, p)
	})
}

func TestCrashWithManyWaitersStartsEveryBootTheRuleAllowsAndServesFIFO(t *testing.T) {
	synctest.Test(t, func(t *testing.T) {
		be := newTestBackend()
		p := mustPool(t, Config{Max: 2, MaxConcurrency: 1, Backend: be})
		cs := scStartEach(t, p, 5)
		require.Equal(t, []uint64{1, 2, 0, 0, 0}, scRunnersOf(cs))
		be.node(1).Crash()
		be.node(2).Crash()
		synctest.Wait()
		assert.ErrorIs(t, cs[0].result(t), ErrRunnerDown)
		assert.ErrorIs(t, cs[1].result(t), ErrRunnerDown)
		assert.Equal(t, []uint64{1, 2, 3, 4}, scBoots(be))
		assert.ElementsMatch(t, []uint64{3, 4}, scRunnersOf(cs[2:4]), "the two oldest waiters get the new runners")
		assert.Zero(t, cs[4].runner())
		assert.Equal(t, scCounts{Runners: 2, Waiting: 1, InUse: 2, Booted: 4, Shrunk: 2}, scCountsOf(p))
		scFreeAll(cs)
		synctest.Wait()
		assert.NoError(t, cs[4].result(t))
		scClose(t, p)
	})
}

func TestCrashBelowMinBootsReplacementAfterOnShrink(t *testing.T) {
	synctest.Test(t, func(t *testing.T) {
		be := newTestBackend()
		cfg := Config{Min: 2, Max: 3, MaxConcurrency: 1, Backend: be}
		ev := scHook(&cfg)
		p := mustPool(t, cfg)
		be.node(1).Crash()
		synctest.Wait()
		assert.Equal(t, []string{"shrink 1 #1", "grow-start 2 #3", "grow-end 2 #3 ok"}, ev.get())
		assert.Equal(t, []uint64{1, 2, 3}, scBoots(be))
		assert.Equal(t, scCounts{Runners: 2, Booted: 3, Shrunk: 1}, scCountsOf(p))
		scClose(t, p)
		assert.True(t, be.allShutDown())
	})
}

// ---------------------------------------------------------------------------
// Close (SPEC §3.12)

func TestCloseFailsWaitersAndNewWorkButLetsInFlightCallFinish(t *testing.T) {
	synctest.Test(t, func(t *testing.T) {
		be := newTestBackend()
		cfg := Config{Max: 1, MaxConcurrency: 1, Backend: be}
		ev := scHook(&cfg)
		p := mustPool(t, cfg)
		a := scStart(t, t.Context(), p)
		synctest.Wait()
		b := scStart(t, t.Context(), p)
		childErr := make(chan error, 1)
		go func() {
			_, err := p.PlaceChild(t.Context(), scNoop)
			childErr <- err
		}()
		synctest.Wait()
		require.Equal(t, scCounts{Runners: 1, Waiting: 2, InUse: 1, Booted: 1}, scCountsOf(p))

		closed := scCloseAsync(p, context.Background())
		synctest.Wait()
		assert.ErrorIs(t, b.result(t), ErrClosed, "a waiting Call gets ErrClosed")
		assert.ErrorIs(t, scRecv(t, childErr, "PlaceChild"), ErrClosed, "a waiting PlaceChild gets ErrClosed")
		assert.True(t, scPending(closed), "Close waits for the in-flight call")
		assert.False(t, a.returned())
		assert.Nil(t, a.fnErr.Load(), "in-flight fn's ctx is not cancelled while Close's ctx allows")

		assert.ErrorIs(t, p.Call(t.Context(), scNoop), ErrClosed)
		assert.ErrorIs(t, p.Cast(t.Context(), scNoop), ErrClosed)
		_, err := p.PlaceChild(t.Context(), scNoop)
		assert.ErrorIs(t, err, ErrClosed)
		assert.ErrorIs(t, p.Resize(0, 2), ErrClosed)

		a.free()
		synctest.Wait()
		assert.NoError(t, a.result(t), "the in-flight call finishes normally")
		assert.NoError(t, scRecv(t, closed, "Close"))
		assert.True(t, be.allShutDown())
		assert.ErrorIs(t, ev.shrinkReason(1), ErrClosed)
		assert.Equal(t, scCounts{Booted: 1, Shrunk: 1}, scCountsOf(p))
		assert.NoError(t, p.Close(context.Background()), "a second Close returns nil")
	})
}

func TestCloseWithExpiringCtxCancelsInFlightWorkAndReturnsCtxErr(t *testing.T) {
	synctest.Test(t, func(t *testing.T) {
		be := newTestBackend()
		cfg := Config{Min: 1, Max: 2, MaxConcurrency: 1, Backend: be}
		ev := scHook(&cfg)
		p := mustPool(t, cfg)
		cs := scStartEach(t, p, 2)
		ctx, cancel := context.WithTimeout(context.Background(), 5*time.Second)
		defer cancel()
		closed := scCloseAsync(p, ctx)
		time.Sleep(5*time.Second - time.Millisecond)
		synctest.Wait()
		assert.True(t, scPending(closed))
		assert.False(t, cs[0].returned(), "in-flight work runs while Close's ctx allows")
		time.Sleep(2 * time.Millisecond)
		synctest.Wait()
		assert.ErrorIs(t, scRecv(t, closed, "Close"), context.DeadlineExceeded)
		for _, c := range cs {
			assert.NotNil(t, c.fnErr.Load(), "in-flight fn's ctx is cancelled when Close's ctx ends")
			assert.ErrorIs(t, c.result(t), ErrClosed)
		}
		assert.True(t, be.allShutDown())
		assert.Len(t, ev.shrinkEvents(), 2, "an OnShrink per runner")
		assert.Equal(t, scCounts{Booted: 2, Shrunk: 2}, scCountsOf(p))
		assert.NoError(t, p.Close(context.Background()))
	})
}

func TestCloseRunsAcceptedCastsWhenCapacityAppearsBeforeCtxEnds(t *testing.T) {
	synctest.Test(t, func(t *testing.T) {
		be := newTestBackend()
		p := mustPool(t, Config{Max: 1, MaxConcurrency: 1, Backend: be})
		a := scStart(t, t.Context(), p)
		synctest.Wait()
		var ran atomic.Int64
		for range 2 {
			require.NoError(t, p.Cast(context.Background(), func(context.Context) error { ran.Add(1); return nil }))
		}
		synctest.Wait()
		require.Equal(t, 2, p.Stats().Waiting)
		ctx, cancel := context.WithTimeout(context.Background(), time.Minute)
		defer cancel()
		closed := scCloseAsync(p, ctx)
		synctest.Wait()
		assert.True(t, scPending(closed))
		assert.Equal(t, 2, p.Stats().Waiting, "accepted casts stay queued")
		assert.Zero(t, ran.Load())

		a.free()
		synctest.Wait()
		assert.Equal(t, int64(2), ran.Load(), "both casts ran")
		assert.NoError(t, scRecv(t, closed, "Close"))
		assert.True(t, be.allShutDown())
		assert.Equal(t, scCounts{Booted: 1, Shrunk: 1}, scCountsOf(p))
	})
}

func TestCloseDropsCastsThatCannotStartAndLogsTheirCount(t *testing.T) {
	synctest.Test(t, func(t *testing.T) {
		be := newTestBackend()
		var logs syncBuffer
		p := mustPool(t, Config{Max: 1, MaxConcurrency: 1, Backend: be, Logger: scLogger(&logs)})
		a := scStart(t, t.Context(), p)
		synctest.Wait()
		var ran atomic.Int64
		for range 3 {
			require.NoError(t, p.Cast(context.Background(), func(context.Context) error { ran.Add(1); return nil }))
		}
		synctest.Wait()
		ctx, cancel := context.WithTimeout(context.Background(), time.Second)
		defer cancel()
		closed := scCloseAsync(p, ctx)
		time.Sleep(time.Second + time.Millisecond)
		synctest.Wait()
		assert.ErrorIs(t, scRecv(t, closed, "Close"), context.DeadlineExceeded)
		assert.Zero(t, ran.Load(), "a dropped cast never runs")
		assert.ErrorIs(t, a.result(t), ErrClosed)
		out := logs.String()
		assert.Contains(t, out, "count=3", "Close logs how many casts it dropped")
		assert.Contains(t, out, "dropped")
		assert.Equal(t, scCounts{Booted: 1, Shrunk: 1}, scCountsOf(p))
		assert.True(t, be.allShutDown())
	})
}

func TestClosePendingBootsAreCanceledOnceNothingWaitsForThem(t *testing.T) {
	synctest.Test(t, func(t *testing.T) {
		be := newTestBackend()
		be.hang = func(id uint64) bool { return id == 2 }
		cfg := Config{Max: 2, MaxConcurrency: 1, Backend: be}
		ev := scHook(&cfg)
		p := mustPool(t, cfg)
		cs := scStartEach(t, p, 2)
		require.Equal(t, scCounts{Runners: 1, Pending: 1, Waiting: 1, InUse: 1, Booted: 1}, scCountsOf(p))

		closed := scCloseAsync(p, context.Background())
		synctest.Wait()
		assert.ErrorIs(t, cs[1].result(t), ErrClosed)
		assert.ErrorIs(t, ev.growErr(2), ErrBootCanceled, "the pending boot is canceled")
		assert.Equal(t, scCounts{Runners: 1, InUse: 1, Booted: 1}, scCountsOf(p), "a canceled boot is no boot failure")
		assert.True(t, scPending(closed))

		cs[0].free()
		synctest.Wait()
		assert.NoError(t, scRecv(t, closed, "Close"))
		assert.True(t, be.allShutDown())
		assert.Equal(t, scCounts{Booted: 1, Shrunk: 1}, scCountsOf(p))
	})
}

func TestCloseWithQueuedCastAndFailingBackendDoesNotLoopBoots(t *testing.T) {
	// While Close waits for an accepted cast, the pool may keep booting for
	// it, but a backend that fails at once must not be booted in a tight
	// loop (SPEC §3.6). Boots past the 20th hang, so that a runaway loop
	// ends and the test fails instead of spinning forever.
	synctest.Test(t, func(t *testing.T) {
		be := newTestBackend()
		be.fail = func(uint64) error { return errors.New("backend is down") }
		be.hang = func(id uint64) bool { return id > 20 }
		p := mustPool(t, Config{Max: 1, MaxConcurrency: 1, Backend: be})
		var ran atomic.Int64
		require.NoError(t, p.Cast(context.Background(), func(context.Context) error { ran.Add(1); return nil }))
		time.Sleep(500 * time.Millisecond)
		synctest.Wait()
		assert.Len(t, scBoots(be), 1, "one boot, then a retry pending")

		ctx, cancel := context.WithTimeout(context.Background(), 2*time.Second)
		defer cancel()
		closed := scCloseAsync(p, ctx)
		time.Sleep(2*time.Second + time.Millisecond)
		synctest.Wait()
		assert.ErrorIs(t, scRecv(t, closed, "Close"), context.DeadlineExceeded)
		assert.Zero(t, ran.Load())
		assert.LessOrEqual(t, len(scBoots(be)), 4, "boots during a 2s Close: at most about one per second")
		assert.Zero(t, p.Stats().Pending)
	})
}

func TestCloseShutsDownEveryRunnerWithAnOnShrinkEach(t *testing.T) {
	synctest.Test(t, func(t *testing.T) {
		be := newTestBackend()
		cfg := Config{Min: 2, Max: 4, MaxConcurrency: 1, Backend: be}
		ev := scHook(&cfg)
		p := mustPool(t, cfg)
		cs := scStartEach(t, p, 3)
		scFreeAll(cs)
		synctest.Wait()
		be.node(1).Crash() // below Min: replaced by #4
		be.node(2).Crash()
		synctest.Wait()
		require.Equal(t, scCounts{Runners: 2, Booted: 4, Shrunk: 2}, scCountsOf(p))
		require.NoError(t, p.Close(context.Background()))
		// Close returned nil: every runner is shut down and reported already.
		assert.True(t, be.allShutDown())
		var closedIDs []uint64
		for _, s := range ev.shrinkEvents() {
			if errors.Is(s.Reason, ErrClosed) {
				closedIDs = append(closedIDs, s.RunnerID)
			}
		}
		assert.Equal(t, []uint64{3, 4}, closedIDs)
		for _, id := range []uint64{3, 4} {
			assert.Equal(t, 1, be.node(id).shutdownCount(), "runner %d shut down once", id)
		}
		assert.Equal(t, scCounts{Booted: 4, Shrunk: 4}, scCountsOf(p))
		assert.NoError(t, p.Close(context.Background()))
	})
}

// ---------------------------------------------------------------------------
// No goroutine outlives a closed pool (SPEC §4), in real time.

func TestCloseLeavesNoGoroutinesAfterMixedWork(t *testing.T) {
	defer goleak.VerifyNone(t, goleak.IgnoreCurrent())
	be := newTestBackend()
	p, err := NewPool(Config{Min: 2, Max: 4, MaxConcurrency: 2, Backend: be, IdleShutdownAfter: 20 * time.Millisecond})
	require.NoError(t, err)
	var wg sync.WaitGroup
	for range 20 {
		wg.Go(func() {
			assert.NoError(t, p.Call(context.Background(), func(context.Context) error {
				time.Sleep(time.Millisecond) // real work takes time; not synchronisation
				return nil
			}))
		})
	}
	var casts sync.WaitGroup
	for range 5 {
		casts.Add(1)
		require.NoError(t, p.Cast(context.Background(), func(context.Context) error { casts.Done(); return nil }))
	}
	child, err := p.PlaceChild(context.Background(), func(ctx context.Context) error { <-ctx.Done(); return nil })
	require.NoError(t, err)
	wg.Wait()
	casts.Wait()
	be.node(1).Crash()
	child.Stop()
	require.NoError(t, p.Close(context.Background()))
	assert.True(t, be.allShutDown())
}

func TestCloseWithExpiredCtxLeavesNoGoroutinesOnceWorkHonoursCancel(t *testing.T) {
	defer goleak.VerifyNone(t, goleak.IgnoreCurrent())
	be := newTestBackend()
	be.hang = func(id uint64) bool { return id == 2 }
	p, err := NewPool(Config{Min: 1, Max: 2, MaxConcurrency: 1, Backend: be})
	require.NoError(t, err)
	started := make(chan struct{})
	callErr := make(chan error, 1)
	go func() {
		callErr <- p.Call(context.Background(), func(ctx context.Context) error {
			close(started)
			<-ctx.Done()
			return ctx.Err()
		})
	}()
	<-started
	waiter := make(chan error, 1)
	go func() { waiter <- p.Call(context.Background(), scNoop) }() // queues; boot #2 hangs
	ctx, cancel := context.WithTimeout(context.Background(), 50*time.Millisecond)
	defer cancel()
	assert.ErrorIs(t, p.Close(ctx), context.DeadlineExceeded)
	assert.ErrorIs(t, <-callErr, ErrClosed)
	assert.ErrorIs(t, <-waiter, ErrClosed)
}
