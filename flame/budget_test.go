package flame

import (
	"context"
	"errors"
	"testing"
	"testing/synctest"
	"time"

	"github.com/stretchr/testify/assert"
)

// Queued callers with budgets of 10, 30 and 20 ms each give up when their
// own budget ends, whatever order the budgets end in: one timer serves
// them all, re-armed for the earliest deadline left after each sweep.
func TestEachQueuedBudgetEndsOnTime(t *testing.T) {
	synctest.Test(t, func(t *testing.T) {
		p := mustPool(t, Config{Min: 1, Max: 1, MaxConcurrency: 1})
		ctx := context.Background()
		held := callHold(ctx, p)
		synctest.Wait()
		start := time.Now()
		budgets := []time.Duration{10 * time.Millisecond, 30 * time.Millisecond, 20 * time.Millisecond}
		ended := make([]chan time.Duration, len(budgets))
		for i, b := range budgets {
			ended[i] = make(chan time.Duration, 1)
			go func() {
				err := p.Call(ctx, func(context.Context) error { return nil }, WithTimeout(b))
				if !errors.Is(err, ErrCheckoutTimeout) {
					t.Errorf("caller with a %v budget: %v, want ErrCheckoutTimeout", b, err)
				}
				ended[i] <- time.Since(start)
			}()
			synctest.Wait() // queued in this order
		}
		for i, b := range budgets {
			assert.Equal(t, b, <-ended[i], "the caller with a %v budget gave up at the wrong time", b)
		}
		close(held.release)
		assert.NoError(t, <-held.done)
	})
}
