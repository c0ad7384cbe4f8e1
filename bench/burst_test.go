package main

import (
	"context"
	"fmt"
	"sync"
	"sync/atomic"
	"testing"
	"time"

	"github.com/stretchr/testify/require"
)

// Scenario 5: burst growth from zero. A pool with no runner up gets N =
// 10 × MaxConcurrency callers at once; every boot takes burstBoot. Each
// caller's fn holds its slot until all N callers are inside their fn, so the
// burst is served only once 10 runners are up: the time measured is from the
// first call to the moment the last caller's fn starts.
//
// goflame boots as many runners as the waiting callers need (CONTRACT §3.2),
// so it should take about one boot latency. FLAME boots one runner at a time
// (pool.ex: a checkout boots only when no boot is pending; a runner coming up
// starts the next), ported as peers.NewActorGrowing, so it takes about ten.

const (
	burstMax   = 10                     // Max runners
	burstSlots = 8                      // MaxConcurrency
	burstBoot  = 100 * time.Millisecond // boot latency of every runner
)

// BenchmarkBurst reports all-served-ms, the time until all 80 callers are
// being served, and boots, the same in boot latencies (goflame's target: at
// most 2). One op is one burst on a fresh pool; ns/op includes building and
// closing the pool.
func BenchmarkBurst(b *testing.B) {
	callers := burstMax * burstSlots
	for _, im := range impls {
		if im.grow == nil {
			continue
		}
		b.Run(fmt.Sprintf("impl=%s/callers=%d", im.name, callers), func(b *testing.B) {
			var total time.Duration
			for range b.N {
				p, err := im.grow(burstMax, burstSlots, burstBoot)
				require.NoError(b, err)
				d, err := burst(p, callers, 30*time.Second)
				p.Close()
				require.NoError(b, err)
				total += d
			}
			avg := total / time.Duration(b.N)
			b.ReportMetric(float64(avg)/float64(time.Millisecond), "all-served-ms")
			b.ReportMetric(float64(avg)/float64(burstBoot), "boots")
		})
	}
}

// burst starts callers calls on p at once, each holding its slot until all
// are being served, and returns how long that took. It fails if limit
// passes first.
func burst(p pool, callers int, limit time.Duration) (time.Duration, error) {
	ctx, cancel := context.WithTimeout(context.Background(), limit)
	defer cancel()
	var served atomic.Int64
	var last atomic.Int64
	all := make(chan struct{})
	fn := func(ctx context.Context) error {
		if served.Add(1) == int64(callers) {
			last.Store(mono())
			close(all)
		}
		select {
		case <-all:
			return nil
		case <-ctx.Done():
			return ctx.Err()
		}
	}
	errc := make(chan error, callers)
	var wg sync.WaitGroup
	start := mono()
	for range callers {
		wg.Go(func() { errc <- p.Do(ctx, fn) })
	}
	wg.Wait()
	close(errc)
	for err := range errc {
		if err != nil {
			return 0, fmt.Errorf("burst: %d of %d callers served: %w", served.Load(), callers, err)
		}
	}
	return time.Duration(last.Load() - start), nil
}
