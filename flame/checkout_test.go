package flame

import (
	"context"
	"errors"
	"math/rand/v2"
	"runtime"
	"sync"
	"sync/atomic"
	"testing"
	"testing/synctest"
	"time"

	"github.com/stretchr/testify/assert"
	"github.com/stretchr/testify/require"

	"github.com/goflame/goflame/internal/placement"
)

// checkoutWaiter builds a waiter the way checkoutSlow does, without a
// goroutine behind it, so tests can put the queue in exact states.
func checkoutWaiter(p *Pool, ctx context.Context, deadline time.Time) *waiter {
	w := &waiter{ctx: ctx, kind: kindCall, ch: make(chan *runner, 1)}
	if !deadline.IsZero() { // a budget (its length matters no more) whose deadline is known, on p.clock's scale
		w.budget = int64(time.Second)
		if w.deadline = int64(deadline.Sub(p.clock.Time(0))); w.deadline == 0 {
			w.deadline = -1 // 0 means "not known yet"; this one ends at the clock's epoch
		}
	}
	w.elem.Value = w
	return w
}

// checkoutEnqueue appends waiters to p's queue without serving them.
func checkoutEnqueue(p *Pool, ws ...*waiter) {
	p.q.Lock()
	defer p.q.Unlock()
	for _, w := range ws {
		p.q.PushBack(&w.elem)
	}
}

// checkoutGranted returns the runner handed to w, or nil.
func checkoutGranted(w *waiter) *runner {
	select {
	case r := <-w.ch:
		return r
	default:
		return nil
	}
}

// claimRunner is claim for a test that needs only the runner.
func claimRunner(p *Pool) *runner {
	r, _ := p.claim()
	return r
}

func checkoutMustTake(t *testing.T, p *Pool) *runner {
	t.Helper()
	r, _, err := p.checkout(context.Background(), time.Second, kindCall)
	require.NoError(t, err)
	require.NotNil(t, r)
	return r
}

// ---------------------------------------------------------------- placement and order

// claimPool is a pool of runners with the given loads (-1: draining) and
// the given floor, for claim alone.
func claimPool(maxConc int, floor int64, loads ...int) *Pool {
	p := &Pool{cfg: Config{MaxConcurrency: maxConc}}
	set := make([]*runner, len(loads))
	for i, l := range loads {
		r := &runner{id: uint64(i + 1), pool: p}
		if l < 0 {
			r.word.Store(stDraining | 1)
		} else {
			r.word.Store(stActive | uint64(l))
		}
		set[i] = r
	}
	p.set.Store(&set)
	p.floor.Store(floor)
	return p
}

// The placement rule: the least-loaded active runner with a free slot;
// among equally loaded ones the first at or after the scan's start, by ID,
// wrapping around. The floor only shortens the scan: a floor that is a
// true lower bound never changes the choice.
func TestClaimTakesTheFirstLeastLoadedRunnerFromTheStart(t *testing.T) {
	for _, tc := range []struct {
		name  string
		loads []int
		floor int64
		start int
		want  uint64 // 0: none
	}{
		{"a tie goes to the start", []int{0, 0, 0}, 0, 1, 2},
		{"a tie wraps around", []int{0, 1, 0}, 0, 1, 3},
		{"a tie wraps around past the end", []int{0, 1, 1, 1}, 0, 2, 1},
		{"the least loaded wins over the start", []int{2, 1, 2}, 0, 2, 2},
		{"a low floor finds the least loaded", []int{2, 3, 1, 2}, 0, 3, 3},
		{"the floor at the least load stops at the first such", []int{2, 1, 1, 2}, 1, 3, 2},
		{"full runners are passed over", []int{4, 4, 3}, 0, 0, 3},
		{"draining runners are passed over", []int{-1, 2, 3}, 0, 0, 2},
		{"all full", []int{4, 4}, 0, 1, 0},
		{"all draining", []int{-1, -1}, 0, 1, 0},
		{"none", nil, 0, 0, 0},
	} {
		t.Run(tc.name, func(t *testing.T) {
			defer placement.SetStart(func(int) int { return tc.start })()
			p := claimPool(4, tc.floor, tc.loads...)
			r := claimRunner(p)
			if tc.want == 0 {
				require.Nil(t, r)
				return
			}
			require.NotNil(t, r)
			assert.Equal(t, tc.want, r.id)
			assert.Equal(t, tc.loads[r.id-1]+1, wordLoad(r.word.Load()), "the claim took a slot")
		})
	}
}

// The floor follows the least load: a scan that finds every runner above
// it raises it to the least load seen, a release below it lowers it, and
// publishing a new set resets it (a new runner has no load).
func TestFloorFollowsTheLeastLoad(t *testing.T) {
	defer placement.SetStart(func(int) int { return 0 })()
	p := claimPool(4, 0, 2, 1, 3)
	r := claimRunner(p)
	assert.Equal(t, uint64(2), r.id)
	assert.Equal(t, int64(1), p.floor.Load(), "raised to the least load the scan saw")

	// Loads 2,2,3: the next scan raises the floor again.
	r = claimRunner(p)
	assert.Equal(t, uint64(1), r.id)
	assert.Equal(t, int64(2), p.floor.Load())

	p.sc = nil // release below touches the scaler only for a draining runner
	set := *p.set.Load()
	p.release(set[2]) // 3 -> 2: not below the floor
	assert.Equal(t, int64(2), p.floor.Load())
	p.release(set[2]) // 2 -> 1: below it
	assert.Equal(t, int64(1), p.floor.Load(), "lowered by a release below it")
	assert.Equal(t, uint64(3), claimRunner(p).id, "and the lightly loaded runner is found")
}

func TestPublishResetsTheFloor(t *testing.T) {
	synctest.Test(t, func(t *testing.T) {
		p := mustPool(t, Config{Min: 1, Max: 2, MaxConcurrency: 2})
		p.floor.Store(2)
		require.NoError(t, p.Resize(2, 2))
		synctest.Wait()
		assert.Equal(t, int64(0), p.floor.Load())
	})
}

// Through Call: with the start fixed at runner 2, the slots spread 2,3,1,
// 2,3,1; after that the least loaded wins, and a tie goes to the first from
// the start.
func TestCallPlacesOnTheLeastLoadedRunner(t *testing.T) {
	synctest.Test(t, func(t *testing.T) {
		defer placement.SetStart(func(int) int { return 1 })()
		p := mustPool(t, Config{Min: 3, Max: 3, MaxConcurrency: 3})
		ctx := context.Background()
		take := func() *callHeld {
			h := callHold(ctx, p)
			synctest.Wait()
			return h
		}
		var hs []*callHeld
		for range 6 {
			hs = append(hs, take())
		}
		var ids []uint64
		for _, h := range hs {
			ids = append(ids, h.runner(t))
		}
		require.Equal(t, []uint64{2, 3, 1, 2, 3, 1}, ids)

		// Loads 1,2,2 (hs[5] on runner 1 ends): runner 1, though the scan starts at 2.
		hs[5].finish(t)
		synctest.Wait()
		h := take()
		assert.Equal(t, uint64(1), h.runner(t))

		// Loads 2,1,1: a tie between 2 and 3 goes to 2, the start.
		hs[0].finish(t)
		hs[1].finish(t)
		synctest.Wait()
		h2 := take()
		assert.Equal(t, uint64(2), h2.runner(t))

		// Loads 2,2,1: runner 3.
		h3 := take()
		assert.Equal(t, uint64(3), h3.runner(t))

		for _, h := range []*callHeld{hs[2], hs[3], hs[4], h, h2, h3} {
			h.finish(t)
		}
	})
}

func TestWaitersServedInFIFOOrder(t *testing.T) {
	synctest.Test(t, func(t *testing.T) {
		p := mustPool(t, Config{Min: 1, Max: 1, MaxConcurrency: 1})
		ctx := context.Background()
		h := callHold(ctx, p)
		synctest.Wait()

		var mu sync.Mutex
		var order []int
		done := make(chan error, 6)
		for i := range 6 {
			go func() {
				done <- p.Call(ctx, func(context.Context) error {
					mu.Lock()
					order = append(order, i)
					mu.Unlock()
					return nil
				})
			}()
			synctest.Wait() // waiter i is queued before waiter i+1 starts
			require.Equal(t, i+1, p.Stats().Waiting)
		}
		h.finish(t)
		for range 6 {
			require.NoError(t, <-done)
		}
		assert.Equal(t, []int{0, 1, 2, 3, 4, 5}, order)
	})
}

// A release with callers queued hands the slot to the head waiter: a
// newcomer arriving right after finds no free slot.
func TestReleaseHandsSlotToHeadWaiterNotNewcomer(t *testing.T) {
	synctest.Test(t, func(t *testing.T) {
		p := mustPool(t, Config{Min: 1, Max: 1, MaxConcurrency: 1})
		r := checkoutMustTake(t, p)
		head := callHold(context.Background(), p)
		synctest.Wait()
		require.Equal(t, 1, p.Stats().Waiting)

		p.release(r) // the head waiter has not run yet
		assert.Nil(t, claimRunner(p), "the released slot was left free for anyone")
		start := time.Now()
		err := p.Call(context.Background(), func(context.Context) error {
			assert.Fail(t, "newcomer got the slot the head waiter was owed")
			return nil
		}, WithTimeout(time.Second))
		assert.ErrorIs(t, err, ErrCheckoutTimeout)
		assert.Equal(t, time.Second, time.Since(start))
		assert.Equal(t, uint64(1), head.runner(t))
		head.finish(t)
	})
}

// While anybody is queued, a newcomer queues behind them even if a slot is
// free (it may be free only for an instant, on its way to the head waiter).
func TestNewcomerDoesNotOvertakeQueuedWaiter(t *testing.T) {
	synctest.Test(t, func(t *testing.T) {
		p := mustPool(t, Config{Min: 1, Max: 1, MaxConcurrency: 1})
		head := checkoutWaiter(p, context.Background(), time.Time{})
		checkoutEnqueue(p, head) // queued, slot free, not yet served

		r, _, err := p.checkout(context.Background(), time.Second, kindCall)
		assert.ErrorIs(t, err, ErrCheckoutTimeout, "newcomer overtook a queued waiter")
		assert.Nil(t, r)
		got := checkoutGranted(head)
		require.NotNil(t, got, "the head waiter was not served")
		assert.Equal(t, uint64(1), got.id)
		p.release(got)
		assert.Equal(t, 0, p.Stats().InUse)
		assert.Equal(t, 0, p.Stats().Waiting)
	})
}

// ---------------------------------------------------------------- waiting limits

func TestCheckoutWaitBoundedByWithTimeout(t *testing.T) {
	synctest.Test(t, func(t *testing.T) {
		p := mustPool(t, Config{Min: 1, Max: 1, MaxConcurrency: 1, BootTimeout: time.Minute})
		h := callHold(context.Background(), p, WithTimeout(Infinity))
		synctest.Wait()
		start := time.Now()
		err := p.Call(context.Background(), func(context.Context) error { return nil }, WithTimeout(3*time.Second))
		assert.Equal(t, 3*time.Second, time.Since(start))
		assert.ErrorIs(t, err, ErrCheckoutTimeout)
		assert.ErrorIs(t, err, context.DeadlineExceeded)
		assert.NotErrorIs(t, err, ErrTimeout)
		assert.Equal(t, 0, p.Stats().Waiting)
		h.finish(t)
	})
}

func TestCheckoutWaitDefaultsToBootTimeout(t *testing.T) {
	for _, tc := range []struct {
		name        string
		bootTimeout time.Duration
		want        time.Duration
	}{
		{"configured", 7 * time.Second, 7 * time.Second},
		{"default", 0, 30 * time.Second},
	} {
		t.Run(tc.name, func(t *testing.T) {
			synctest.Test(t, func(t *testing.T) {
				p := mustPool(t, Config{Min: 1, Max: 1, MaxConcurrency: 1, BootTimeout: tc.bootTimeout})
				h := callHold(context.Background(), p, WithTimeout(Infinity))
				synctest.Wait()
				start := time.Now()
				err := p.Call(context.Background(), func(context.Context) error { return nil })
				assert.Equal(t, tc.want, time.Since(start))
				assert.ErrorIs(t, err, ErrCheckoutTimeout)
				assert.ErrorIs(t, err, context.DeadlineExceeded)
				h.finish(t)
			})
		})
	}
}

func TestCheckoutTimeoutMessageIncludesLastBootError(t *testing.T) {
	synctest.Test(t, func(t *testing.T) {
		b := newTestBackend()
		errBoot := errors.New("quota exceeded in us-east-7")
		b.fail = func(uint64) error { return errBoot }
		p := mustPool(t, Config{Max: 1, Backend: b})
		err := p.Call(context.Background(), func(context.Context) error { return nil }, WithTimeout(2500*time.Millisecond))
		assert.ErrorIs(t, err, ErrCheckoutTimeout)
		assert.ErrorIs(t, err, context.DeadlineExceeded)
		assert.Contains(t, err.Error(), "quota exceeded in us-east-7")
		assert.NotZero(t, p.Stats().BootFailures)

		// Without failed boots the error is the plain sentinel message.
		p2 := mustPool(t, Config{Min: 1, Max: 1, MaxConcurrency: 1})
		h := callHold(context.Background(), p2)
		synctest.Wait()
		err = p2.Call(context.Background(), func(context.Context) error { return nil }, WithTimeout(time.Second))
		assert.ErrorIs(t, err, ErrCheckoutTimeout)
		assert.NotContains(t, err.Error(), "boot")
		h.finish(t)
	})
}

func TestCheckoutCancelledWhileWaitingReturnsCtxErr(t *testing.T) {
	synctest.Test(t, func(t *testing.T) {
		p := mustPool(t, Config{Min: 1, Max: 1, MaxConcurrency: 1})
		h := callHold(context.Background(), p, WithTimeout(Infinity))
		synctest.Wait()

		ctx, cancel := context.WithCancel(context.Background())
		errc := make(chan error, 1)
		go func() { errc <- p.Call(ctx, func(context.Context) error { return nil }) }()
		synctest.Wait()
		require.Equal(t, 1, p.Stats().Waiting)
		cancel()
		callSameErr(t, context.Canceled, <-errc)
		assert.Equal(t, 0, p.Stats().Waiting)

		// A ctx deadline sooner than the checkout budget: ctx.Err(), not ErrCheckoutTimeout.
		dctx, dcancel := context.WithTimeout(context.Background(), time.Second)
		defer dcancel()
		start := time.Now()
		err := p.Call(dctx, func(context.Context) error { return nil }, WithTimeout(time.Minute))
		callSameErr(t, context.DeadlineExceeded, err)
		assert.Equal(t, time.Second, time.Since(start))

		// The same for PlaceChild and generic Call.
		ctx3, cancel3 := context.WithCancel(context.Background())
		go func() { time.Sleep(time.Second); cancel3() }()
		c, err := p.PlaceChild(ctx3, func(context.Context) error { return nil })
		callSameErr(t, context.Canceled, err)
		assert.Nil(t, c)

		assert.Equal(t, 0, p.Stats().Waiting)
		assert.Equal(t, 1, p.Stats().InUse)
		h.finish(t)
	})
}

func TestAlreadyCancelledCtxReturnsCtxErr(t *testing.T) {
	synctest.Test(t, func(t *testing.T) {
		p := mustPool(t, Config{Min: 1, Max: 1}) // plenty of free slots
		canceled, cancel := context.WithCancel(context.Background())
		cancel()
		expired, ecancel := context.WithDeadline(context.Background(), time.Now().Add(-time.Second))
		defer ecancel()
		ran := false
		fn := func(context.Context) error { ran = true; return nil }
		for _, tc := range []struct {
			ctx  context.Context
			want error
		}{{canceled, context.Canceled}, {expired, context.DeadlineExceeded}} {
			callSameErr(t, tc.want, p.Call(tc.ctx, fn))
			_, err := Call(tc.ctx, p, func(context.Context) (int, error) { ran = true; return 0, nil })
			callSameErr(t, tc.want, err)
			callSameErr(t, tc.want, p.Cast(tc.ctx, fn))
			c, err := p.PlaceChild(tc.ctx, fn)
			callSameErr(t, tc.want, err)
			assert.Nil(t, c)
			callSameErr(t, tc.want, p.Call(tc.ctx, fn, WithLink(false)))
		}
		synctest.Wait()
		assert.False(t, ran, "fn ran for a done ctx")
		assert.Equal(t, 0, p.Stats().InUse)
	})
}

// ---------------------------------------------------------------- race regressions

// vitess #17662: a caller that enqueues just as a slot frees must not wait
// beside the free slot. checkoutSlow is where a caller lands after its
// lock-free claim failed; if the slot was freed in between, the re-check
// after enqueueing must find it.
func TestCallerEnqueueingAsSlotFreesIsServedAtOnce(t *testing.T) {
	synctest.Test(t, func(t *testing.T) {
		p := mustPool(t, Config{Min: 1, Max: 1, MaxConcurrency: 1})
		r := checkoutMustTake(t, p)
		require.Nil(t, claimRunner(p)) // the caller's fast path fails here...
		p.release(r)                   // ...then the slot frees before it queues
		start := time.Now()
		got, _, err := p.checkoutSlow(context.Background(), time.Minute, kindCall)
		require.NoError(t, err)
		assert.Zero(t, time.Since(start), "caller waited beside a free slot")
		assert.Same(t, r, got)
		assert.Equal(t, 0, p.Stats().Waiting)
		p.release(got)
	})
}

// The same race under load: any caller left waiting beside a free slot
// would hit its checkout timeout (virtual time) or deadlock the bubble.
func TestNoCallerWaitsBesideFreeSlotUnderStress(t *testing.T) {
	synctest.Test(t, func(t *testing.T) {
		p := mustPool(t, Config{Min: 1, Max: 1, MaxConcurrency: 2})
		const callers, calls = 8, 300
		var wg sync.WaitGroup
		errs := make(chan error, callers*calls)
		for range callers {
			wg.Go(func() {
				for range calls {
					if err := p.Call(context.Background(), func(context.Context) error {
						runtime.Gosched()
						return nil
					}); err != nil {
						errs <- err
					}
				}
			})
		}
		wg.Wait()
		close(errs)
		for err := range errs {
			assert.NoError(t, err, "Call")
		}
		synctest.Wait()
		st := p.Stats()
		assert.Equal(t, 0, st.InUse)
		assert.Equal(t, 0, st.Waiting)
	})
}

// The release side of the same race, with real parallelism: a caller
// enqueues while a release is between its look at the queue and its
// decrement; the releaser must then serve the queue from the slot it freed.
// The window is a few instructions wide, so this is a stress loop: both
// goroutines start together and the releaser is delayed by a varying
// amount of busy work so that some rounds land in the window (under -race
// a broken releaser is caught within a few thousand rounds; without -race
// the window is usually too narrow to hit). A stranded caller has no timer
// (Infinity) and shows up after synctest.Wait.
func TestReleaseRacingEnqueueNeverStrandsCaller(t *testing.T) {
	synctest.Test(t, func(t *testing.T) {
		p := mustPool(t, Config{Min: 1, Max: 1, MaxConcurrency: 1})
		var sink atomic.Int64
		for i := range 15000 {
			r := checkoutMustTake(t, p)
			var ready atomic.Int32
			together := func() {
				ready.Add(1)
				for ready.Load() < 2 {
					runtime.Gosched()
				}
			}
			got := make(chan *runner, 1)
			go func() {
				together()
				r2, _, _ := p.checkout(context.Background(), Infinity, kindCall)
				got <- r2
			}()
			go func() {
				together()
				for range i % 256 {
					sink.Add(1)
				}
				p.release(r)
			}()
			synctest.Wait()
			select {
			case r2 := <-got:
				require.NotNil(t, r2)
				p.release(r2)
			default:
				require.FailNow(t, "caller left waiting beside a free slot", "round %d: %+v", i, p.Stats())
			}
		}
	})
}

// vitess #20310: a slot handed to a waiter that has just given up is
// released again, never lost.
func TestSlotHandedToWaiterThatGaveUpIsReleasedAgain(t *testing.T) {
	synctest.Test(t, func(t *testing.T) {
		p := mustPool(t, Config{Min: 1, Max: 1, MaxConcurrency: 1})
		r := checkoutMustTake(t, p)
		ctx, cancel := context.WithCancel(context.Background())
		w := checkoutWaiter(p, ctx, time.Time{})
		checkoutEnqueue(p, w)
		p.release(r) // hands the slot to w, which is still live
		cancel()     // ...and w gives up before it looks
		require.Equal(t, 1, p.Stats().InUse, "the slot was handed over, not freed")

		got, err := p.abandon(w, ctx.Err())
		assert.Nil(t, got)
		callSameErr(t, context.Canceled, err)
		assert.Equal(t, 0, p.Stats().InUse, "the slot handed to a waiter that gave up was lost")
		assert.Equal(t, 0, p.Stats().Waiting)
		again := checkoutMustTake(t, p)
		assert.Same(t, r, again)
		p.release(again)
	})
}

// The same through Call: the waiter's ctx ends in the same instant its slot
// is handed over. Whichever it sees first, the slot comes back.
func TestSlotHandedToCancellingCallerIsNeverLost(t *testing.T) {
	synctest.Test(t, func(t *testing.T) {
		p := mustPool(t, Config{Min: 1, Max: 1, MaxConcurrency: 1})
		outcomes := map[string]int{}
		for range 64 {
			r := checkoutMustTake(t, p)
			ctx, cancel := context.WithCancel(context.Background())
			errc := make(chan error, 1)
			go func() {
				errc <- p.Call(ctx, func(context.Context) error { return nil })
			}()
			synctest.Wait()
			require.Equal(t, 1, p.Stats().Waiting)
			p.release(r)
			cancel()
			err := <-errc
			if err == nil {
				outcomes["ran"]++
			} else {
				require.ErrorIs(t, err, context.Canceled, "Call: %v", err)
				outcomes["gave up"]++
			}
			synctest.Wait()
			st := p.Stats()
			require.Equal(t, 0, st.InUse, "slot lost (outcomes so far %v)", outcomes)
			require.Equal(t, 0, st.Waiting)
		}
		t.Logf("outcomes: %v", outcomes)
	})
}

// Callers with tiny checkout budgets and fns as long as those budgets: many
// waiters expire just as slots are handed to them. No slot is ever lost.
func TestExpiringWaitersNeverLoseSlotsUnderStress(t *testing.T) {
	synctest.Test(t, func(t *testing.T) {
		p := mustPool(t, Config{Min: 1, Max: 1, MaxConcurrency: 2})
		var wg sync.WaitGroup
		for i := range 16 {
			wg.Go(func() {
				rng := rand.New(rand.NewPCG(uint64(i), 7))
				for range 40 {
					d := time.Duration(1+rng.IntN(3)) * time.Millisecond
					err := p.Call(context.Background(), func(context.Context) error {
						time.Sleep(time.Duration(rng.IntN(3)) * time.Millisecond)
						return nil
					}, WithTimeout(d))
					if err != nil {
						assert.ErrorIs(t, err, ErrCheckoutTimeout, "Call: %v", err)
					}
				}
			})
		}
		wg.Wait()
		synctest.Wait()
		st := p.Stats()
		assert.Equal(t, 0, st.InUse, "slots lost")
		assert.Equal(t, 0, st.Waiting)
		start := time.Now()
		assert.NoError(t, p.Call(context.Background(), func(context.Context) error { return nil }))
		assert.Zero(t, time.Since(start))
	})
}

// vitess #16896: at handoff every expired waiter ahead of a live one is
// skipped, not just the first.
func TestHandoffSkipsEveryExpiredWaiter(t *testing.T) {
	synctest.Test(t, func(t *testing.T) {
		p := mustPool(t, Config{Min: 1, Max: 1, MaxConcurrency: 1})
		time.Sleep(time.Second) // so that no reading of the pool's clock is 0
		r := checkoutMustTake(t, p)
		canceled, cancel := context.WithCancel(context.Background())
		cancel()
		past := time.Now().Add(-time.Millisecond)
		bg := context.Background()
		dead := []*waiter{
			checkoutWaiter(p, canceled, time.Time{}),
			checkoutWaiter(p, bg, past),
			checkoutWaiter(p, canceled, time.Time{}),
			checkoutWaiter(p, bg, time.Now()), // expires exactly now
			checkoutWaiter(p, bg, past),
		}
		live := checkoutWaiter(p, bg, time.Now().Add(time.Second))
		behind := checkoutWaiter(p, bg, time.Time{})
		checkoutEnqueue(p, dead...)
		checkoutEnqueue(p, live, behind)

		p.release(r)
		for i, w := range dead {
			if w.ctx.Err() != nil {
				assert.Samef(t, goneMark, checkoutGranted(w), "cancelled waiter %d: told it was passed over, no slot", i)
			} else {
				assert.Samef(t, expiredMark, checkoutGranted(w), "waiter %d past its budget: told it expired, no slot", i)
			}
			p.q.Lock()
			assert.Falsef(t, w.elem.Queued(), "expired waiter %d left in the queue", i)
			p.q.Unlock()
		}
		assert.Same(t, r, checkoutGranted(live), "the live waiter behind the expired ones did not get the slot")
		assert.Nil(t, checkoutGranted(behind))
		assert.Equal(t, 1, p.Stats().Waiting)

		p.release(r) // live's turn ends: behind is next
		assert.Same(t, r, checkoutGranted(behind))
		p.release(r)
		assert.Equal(t, 0, p.Stats().InUse)
	})
}

// The same through Calls: three waiters give up in the instant the slot is
// released; the fourth gets it, the first three return ctx.Err().
func TestReleaseSkipsCallersThatJustGaveUp(t *testing.T) {
	synctest.Test(t, func(t *testing.T) {
		p := mustPool(t, Config{Min: 1, Max: 1, MaxConcurrency: 1})
		r := checkoutMustTake(t, p)
		var cancels []context.CancelFunc
		var errcs []chan error
		ran := make(chan int, 4)
		for i := range 4 {
			ctx, cancel := context.WithCancel(context.Background())
			cancels = append(cancels, cancel)
			errc := make(chan error, 1)
			errcs = append(errcs, errc)
			go func() {
				errc <- p.Call(ctx, func(context.Context) error { ran <- i; return nil })
			}()
			synctest.Wait()
		}
		require.Equal(t, 4, p.Stats().Waiting)
		cancels[0]()
		cancels[1]()
		cancels[2]()
		p.release(r) // before any of them wakes
		synctest.Wait()
		for i := range 3 {
			callSameErr(t, context.Canceled, <-errcs[i])
		}
		assert.NoError(t, <-errcs[3])
		assert.Equal(t, 3, <-ran)
		assert.Empty(t, ran)
		cancels[3]()
		assert.Equal(t, 0, p.Stats().InUse)
		assert.Equal(t, 0, p.Stats().Waiting)
	})
}

// FLAME #66: a release after the runner crashed is harmless, and the slot of
// the dead runner is never handed to anybody.
func TestReleaseAfterRunnerCrashIsHarmless(t *testing.T) {
	synctest.Test(t, func(t *testing.T) {
		b := newTestBackend()
		p := mustPool(t, Config{Min: 1, Max: 1, MaxConcurrency: 1, Backend: b})
		r := checkoutMustTake(t, p)
		first := callHold(context.Background(), p) // queued for a slot
		synctest.Wait()

		b.node(1).Crash()
		synctest.Wait()
		// The replacement (runner 2) served the queued caller.
		require.True(t, first.isStarted())
		assert.Equal(t, uint64(2), first.runner(t))
		second := callHold(context.Background(), p) // queued behind
		synctest.Wait()

		require.NotPanics(t, func() { p.release(r) })
		synctest.Wait()
		assert.False(t, second.isStarted(), "a slot of the crashed runner was handed out")
		assert.Zero(t, wordLoad(r.word.Load()), "release on the dead runner lost count")
		st := p.Stats()
		assert.Equal(t, 1, st.Runners)
		assert.Equal(t, 1, st.InUse)
		assert.Equal(t, 1, st.Waiting)
		assert.Equal(t, []RunnerLoad{{2, 1}}, st.RunnerLoads)
		assert.Equal(t, uint64(1), st.Shrunk)

		first.finish(t)
		synctest.Wait()
		assert.Equal(t, uint64(2), second.runner(t))
		second.finish(t)
		synctest.Wait()
		st = p.Stats()
		assert.Equal(t, 0, st.InUse)
		assert.Equal(t, 0, st.Waiting)
	})
}

// A Call whose runner crashed under it releases after the crash through the
// normal path; the pool stays consistent and keeps serving.
func TestCallReleasingOnCrashedRunnerKeepsPoolServing(t *testing.T) {
	synctest.Test(t, func(t *testing.T) {
		b := newTestBackend()
		p := mustPool(t, Config{Min: 2, Max: 2, MaxConcurrency: 1, Backend: b})
		proceed := make(chan struct{})
		errc := make(chan error, 1)
		go func() {
			errc <- p.Call(context.Background(), func(context.Context) error {
				<-proceed // ignores its ctx: returns after the crash
				return nil
			})
		}()
		synctest.Wait()
		b.node(1).Crash()
		synctest.Wait()
		close(proceed)
		assert.NoError(t, <-errc)
		synctest.Wait()
		st := p.Stats()
		assert.Equal(t, 0, st.InUse)
		assert.Equal(t, 2, st.Runners, "the crashed Min runner was not replaced")
		assert.Equal(t, []RunnerLoad{{2, 0}, {3, 0}}, st.RunnerLoads)
		for range 3 {
			assert.NoError(t, p.Call(context.Background(), func(context.Context) error { return nil }))
		}
	})
}

// FLAME's stale idle timer could kill an active call: here idle shutdown
// never claims a runner while a slot on it is held, across many idle
// periods, and the call is never cancelled by it.
func TestIdleShutdownNeverClaimsRunnerWithSlotHeld(t *testing.T) {
	synctest.Test(t, func(t *testing.T) {
		var ev eventLog
		cfg := Config{Max: 1, IdleShutdownAfter: time.Second, Timeout: time.Hour}
		ev.hook(&cfg)
		p := mustPool(t, cfg)
		h := callHold(context.Background(), p)
		synctest.Wait()
		require.Equal(t, uint64(1), h.runner(t))
		for range 120 { // two minutes of 1s idle periods, in half-periods
			time.Sleep(500 * time.Millisecond)
			synctest.Wait()
			st := p.Stats()
			require.Equal(t, 1, st.Runners, "the busy runner was shut down")
			require.Zero(t, st.Shrunk)
			require.Equal(t, 1, st.InUse)
			require.Empty(t, h.done, "held call ended early")
		}
		select {
		case err := <-h.done:
			require.FailNow(t, "held call ended early", "%v", err)
		default:
		}
		h.finish(t)

		// Idle shutdown is really on: once free, the runner goes within two periods.
		time.Sleep(2 * time.Second)
		synctest.Wait()
		assert.Equal(t, 0, p.Stats().Runners)
		assert.Equal(t, uint64(1), p.Stats().Shrunk)
	})
}

// A placed child keeps its runner from idling down for as long as it runs.
func TestIdleShutdownNeverClaimsRunnerWithChild(t *testing.T) {
	synctest.Test(t, func(t *testing.T) {
		p := mustPool(t, Config{Max: 1, IdleShutdownAfter: time.Second})
		release := make(chan struct{})
		c, err := p.PlaceChild(context.Background(), func(ctx context.Context) error {
			select {
			case <-release:
				return nil
			case <-ctx.Done():
				return ctx.Err()
			}
		})
		require.NoError(t, err)
		time.Sleep(time.Minute)
		synctest.Wait()
		assert.False(t, callIsClosed(c.Done()), "child cancelled while its runner idled")
		assert.Equal(t, 1, p.Stats().Runners)
		assert.Zero(t, p.Stats().Shrunk)
		close(release)
		<-c.Done()
		assert.NoError(t, c.Err())
	})
}

// Short idle periods racing a stream of calls: every call succeeds and no
// call's ctx is ever cancelled by an idle shutdown.
func TestIdleShutdownRacingCallsNeverCancelsACall(t *testing.T) {
	synctest.Test(t, func(t *testing.T) {
		p := mustPool(t, Config{Max: 2, MaxConcurrency: 1, IdleShutdownAfter: time.Millisecond})
		var wg sync.WaitGroup
		for i := range 4 {
			wg.Go(func() {
				rng := rand.New(rand.NewPCG(uint64(i), 11))
				for range 50 {
					time.Sleep(time.Duration(rng.IntN(4)) * time.Millisecond)
					err := p.Call(context.Background(), func(ctx context.Context) error {
						time.Sleep(time.Duration(rng.IntN(3)) * time.Millisecond)
						return ctx.Err()
					}, WithTimeout(time.Minute))
					assert.NoError(t, err, "Call")
				}
			})
		}
		wg.Wait()
		synctest.Wait()
		assert.Equal(t, 0, p.Stats().InUse)
	})
}
