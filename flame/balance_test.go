package flame

import (
	"context"
	"sync"
	"testing"
	"testing/synctest"
	"time"

	"github.com/stretchr/testify/assert"
	"github.com/stretchr/testify/require"
)

// balanceCalls makes callers × calls no-op Calls on p, callers at once,
// and returns how many ran on each runner.
func balanceCalls(t *testing.T, p *Pool, callers, calls int) map[uint64]int {
	t.Helper()
	var mu sync.Mutex
	counts := map[uint64]int{}
	var wg sync.WaitGroup
	for range callers {
		wg.Go(func() {
			mine := map[uint64]int{}
			for range calls {
				err := p.Call(context.Background(), func(ctx context.Context) error {
					id, _ := RunnerID(ctx)
					mine[id]++
					return nil
				})
				if !assert.NoError(t, err) {
					return
				}
			}
			mu.Lock()
			defer mu.Unlock()
			for id, n := range mine {
				counts[id] += n
			}
		})
	}
	wg.Wait()
	t.Logf("checkouts per runner: %v", counts)
	return counts
}

// A caller that finds its runners idle keeps to one of them: each caller
// has a runner of its own to try first (placement.Caller), so a goroutine
// calling again and again touches one runner's slot word rather than
// bouncing between the cores' caches with the other callers'. (Its runner
// changes when its stack moves, which growing or a garbage collection can
// do: one runner takes most calls, not always all.)
func TestPlacementKeepsACallerOnItsRunner(t *testing.T) {
	p := mustPool(t, Config{Min: 8, Max: 8, MaxConcurrency: 4})
	counts := balanceCalls(t, p, 1, 1000)
	most := 0
	for _, n := range counts {
		most = max(most, n)
	}
	assert.Greater(t, most, 500, "one caller, idle runners: one runner takes most calls")
}

// Different callers try different runners first: 256 callers, alive at
// once, each making one call while every runner is idle, find all eight
// runners, each used by at least a quarter of its share of 32 callers. (A
// hash of the caller's stack address picks the runner; eight runners would
// each get a binomial 32 ± 5.3. Callers that are not alive at once may
// share a stack, and then a runner: goroutines are reused.)
func TestPlacementSpreadsCallersOverIdleRunners(t *testing.T) {
	const runners, callers = 8, 256
	p := mustPool(t, Config{Min: runners, Max: runners, MaxConcurrency: 4})
	counts := map[uint64]int{}
	turn := make(chan struct{}, 1)
	hold := make(chan struct{})
	var started, called, wg sync.WaitGroup
	started.Add(callers)
	called.Add(callers)
	for range callers {
		wg.Go(func() {
			started.Done()
			<-turn // one call at a time: every runner is idle at each
			err := p.Call(context.Background(), func(ctx context.Context) error {
				id, _ := RunnerID(ctx)
				counts[id]++
				return nil
			})
			assert.NoError(t, err)
			turn <- struct{}{}
			called.Done()
			<-hold // stay alive: a new goroutine could take over this one's stack
		})
	}
	started.Wait()
	turn <- struct{}{}
	called.Wait()
	close(hold)
	wg.Wait()
	t.Logf("callers per runner: %v", counts)
	require.Len(t, counts, runners, "every runner served")
	for id, n := range counts {
		assert.GreaterOrEqual(t, n, callers/runners/4, "runner %d", id)
	}
}

// The balance bound, part two, under steady load: 12 callers on 8 runners
// × 4 slots, each call holding its slot for 10ms of virtual time
// (testing/synctest, so that no caller is ever held up by the machine), 400
// calls each: every runner's checkouts are within a third of the mean of
// 600 (within 21% in 200 runs here). Twelve holders on eight runners leave
// four runners with a second slot held at any time, and which four is the
// tie-break's doing: with ties to the lowest ID, runners 1 to 4 took two
// calls for every one of runners 5 to 8's.
//
// The virtual clock is what makes the bound hold on any machine. On real
// time, a caller descheduled in the middle of a call keeps its slot held
// until it runs again, and least-loaded placement is right to pass its
// runner over meanwhile: with 32 callers making no-op calls on 2 busy
// cores, one runner in eight was passed over for most of a run now and
// then, and the others took up to twice their share.
func TestPlacementBalancesSteadyLoad(t *testing.T) {
	synctest.Test(t, func(t *testing.T) {
		const runners, callers, calls = 8, 12, 400
		p := mustPool(t, Config{Min: runners, Max: runners, MaxConcurrency: 4})
		var mu sync.Mutex
		counts := map[uint64]int{}
		var wg sync.WaitGroup
		for range callers {
			wg.Go(func() {
				for range calls {
					err := p.Call(context.Background(), func(ctx context.Context) error {
						id, _ := RunnerID(ctx)
						mu.Lock()
						counts[id]++
						mu.Unlock()
						time.Sleep(10 * time.Millisecond) // the work: virtual time
						return nil
					})
					if !assert.NoError(t, err) {
						return
					}
				}
			})
		}
		wg.Wait()
		t.Logf("checkouts per runner: %v", counts)
		require.Len(t, counts, runners, "every runner served")
		for id, n := range counts {
			assert.InEpsilon(t, callers*calls/runners, n, 1.0/3, "runner %d", id)
		}
	})
}
