package flame

import (
	"context"
	"runtime"
	"sync"
	"testing"
	"time"

	"github.com/stretchr/testify/assert"
	"github.com/stretchr/testify/require"
)

// burn keeps a CPU busy for d, as a CPU-bound fn does.
func burn(d time.Duration) {
	for start := time.Now(); time.Since(start) < d; {
		for range 1000 {
		}
	}
}

// An execution limit never starts before the call did (1 ms tolerance),
// even when CPU-bound fns keep every thread busy and the pool's coarse
// clock falls behind: WithTimeout(50ms) gives fn at least 49 ms from the
// moment Call was entered. Real time, not synctest: the starvation is the
// point.
func TestLimitStartsNoEarlierThanTheCallUnderCPULoad(t *testing.T) {
	if testing.Short() {
		t.Skip("burns CPU for about a second")
	}
	const limit = 50 * time.Millisecond
	p := mustPool(t, Config{Min: 1, Max: 1})
	callers := 2 * runtime.GOMAXPROCS(0)
	var wg sync.WaitGroup
	var mu sync.Mutex
	worst := time.Duration(1 << 62)
	for range callers {
		wg.Go(func() {
			for range 25 {
				entered := time.Now()
				var deadline, checked time.Time
				var entryErr error
				err := p.Call(context.Background(), func(ctx context.Context) error {
					deadline, _ = ctx.Deadline()
					entryErr = ctx.Err()
					checked = time.Now()
					burn(10 * time.Millisecond)
					return nil
				}, WithTimeout(limit))
				if !assert.NoError(t, err) {
					return
				}
				// A caller descheduled for longer than the limit may find
				// it expired at entry; that is right only once the
				// deadline has truly passed.
				if entryErr != nil && !assert.False(t, checked.Before(deadline),
					"fn's ctx said %v at %v, before its deadline", entryErr, deadline.Sub(checked)) {
					return
				}
				mu.Lock()
				worst = min(worst, deadline.Sub(entered))
				mu.Unlock()
			}
		})
	}
	wg.Wait()
	require.GreaterOrEqual(t, worst, limit-time.Millisecond, "a limit of %v left fn only %v from the moment Call was entered: it started %v early", limit, worst, limit-worst)
}
