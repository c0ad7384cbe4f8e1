package flame

import (
	"context"
	"errors"
	"testing"
	"testing/synctest"
	"time"

	"github.com/stretchr/testify/assert"
	"github.com/stretchr/testify/require"

	"github.com/goflame/goflame/flame/internal/clock"
)

// Queued callers with budgets of 10, 30 and 20 ms each give up when their
// own budget ends, whatever order the budgets end in: one timer serves
// them all, re-armed for the earliest deadline left after each sweep.
func TestEachQueuedBudgetEndsOnTime(t *testing.T) {
	synctest.Test(t, func(t *testing.T) {
		p, held := poolWithItsSlotHeld(t)
		start := time.Now()
		budgets := []time.Duration{10 * time.Millisecond, 30 * time.Millisecond, 20 * time.Millisecond}
		gaveUp := make([]<-chan time.Time, len(budgets))
		for i, b := range budgets {
			gaveUp[i] = callGivingUp(t, p, b)
			synctest.Wait() // queued in this order
		}
		for i, b := range budgets {
			assert.Equal(t, b, (<-gaveUp[i]).Sub(start), "the caller with a %v budget gave up at the wrong time", b)
		}
		held.finish(t)
	})
}

// Callers that queue while the pool's clock runs, each behind a sweep
// already armed for an earlier deadline, have their deadlines worked out
// from their stamps only when the sweep needs them: each still gives up
// when its own budget ends, never more than clock.Tolerance early.
func TestBudgetsStampedWhileTheClockRunsEndOnTime(t *testing.T) {
	synctest.Test(t, func(t *testing.T) {
		p, held := poolWithItsSlotHeld(t)
		// Arriving 3 ms apart, with deadlines at 20, 8 and 18 ms: the third
		// queues behind the sweep armed for the second's.
		budgets := []time.Duration{20 * time.Millisecond, 5 * time.Millisecond, 12 * time.Millisecond}
		arrived := make([]time.Time, len(budgets))
		gaveUp := make([]<-chan time.Time, len(budgets))
		for i, b := range budgets {
			arrived[i], gaveUp[i] = time.Now(), callGivingUp(t, p, b)
			time.Sleep(3 * time.Millisecond)
		}
		for i, b := range budgets {
			w := (<-gaveUp[i]).Sub(arrived[i])
			assert.LessOrEqual(t, w, b, "the caller with a %v budget gave up late", b)
			assert.GreaterOrEqual(t, w, b-clock.Tolerance, "the caller with a %v budget gave up early", b)
		}
		held.finish(t)
	})
}

// A caller that has to arm the sweep reads the clock to do it, and its
// budget then starts exactly when it queued, even between two of the
// clock's ticks (a deadline worked out from the stamp alone could end up
// to clock.Tolerance early).
func TestTheBudgetThatArmsTheSweepIsExact(t *testing.T) {
	synctest.Test(t, func(t *testing.T) {
		// The held call starts the clock's ticking; wait until half-way
		// between two ticks.
		p, held := poolWithItsSlotHeld(t)
		time.Sleep(clock.Resolution + clock.Resolution/2)
		arrived := time.Now()
		err := p.Call(context.Background(), func(context.Context) error { return nil }, WithTimeout(10*time.Millisecond))
		require.ErrorIs(t, err, ErrCheckoutTimeout)
		assert.Equal(t, 10*time.Millisecond, time.Since(arrived))
		held.finish(t)
	})
}

// callGivingUp starts a Call on p with a checkout budget of b that must end
// in ErrCheckoutTimeout, and returns when it gave up.
func callGivingUp(t *testing.T, p *Pool, b time.Duration) <-chan time.Time {
	gaveUp := make(chan time.Time, 1)
	go func() {
		err := p.Call(context.Background(), func(context.Context) error { return nil }, WithTimeout(b))
		if !errors.Is(err, ErrCheckoutTimeout) {
			t.Errorf("caller with a %v budget: %v, want ErrCheckoutTimeout", b, err)
		}
		gaveUp <- time.Now()
	}()
	return gaveUp
}

// poolWithItsSlotHeld is a pool of one runner with one slot, held by a
// call until the returned callHeld finishes.
func poolWithItsSlotHeld(t *testing.T) (*Pool, *callHeld) {
	p := mustPool(t, Config{Min: 1, Max: 1, MaxConcurrency: 1})
	held := callHold(context.Background(), p)
	synctest.Wait()
	return p, held
}
