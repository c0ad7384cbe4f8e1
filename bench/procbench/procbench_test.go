package main

import (
	"context"
	"fmt"
	"os"
	"slices"
	"sync"
	"testing"
	"time"

	"github.com/stretchr/testify/require"

	"github.com/goflame/goflame/bench/internal/measure"
	"github.com/goflame/goflame/flame"
)

// TestMain makes the test binary its own runner.
func TestMain(m *testing.M) {
	flame.Main()
	os.Exit(m.Run())
}

// eachTransport runs f as a sub-benchmark per transport this machine can
// run (tls-veth needs root and ip(8)).
func eachTransport(b *testing.B, f func(b *testing.B, t *transport)) {
	for _, name := range transportNames {
		t, err := makeTransport(name)
		if err != nil {
			b.Logf("transport %s left out: %v", name, err)
			continue
		}
		b.Run("transport="+name, func(b *testing.B) { f(b, t) })
		t.close()
	}
}

// BenchmarkBoot times a runner from launch to READY (ns/op), then shuts it
// down outside the timer.
func BenchmarkBoot(b *testing.B) {
	eachTransport(b, func(b *testing.B, t *transport) {
		var ts []time.Duration
		for i := 0; b.Loop(); i++ {
			d, err := bootOnceTimed(b, t, uint64(i+1))
			require.NoError(b, err)
			ts = append(ts, d)
		}
		slices.Sort(ts)
		b.ReportMetric(float64(measure.Pct(ts, 50).Microseconds())/1000, "p50-ms")
		b.ReportMetric(float64(measure.Pct(ts, 99).Microseconds())/1000, "p99-ms")
	})
}

func bootOnceTimed(b *testing.B, t *transport, id uint64) (time.Duration, error) {
	ctx, cancel := context.WithTimeout(context.Background(), 30*time.Second)
	defer cancel()
	start := time.Now()
	node, err := t.backend().Boot(ctx, flame.RunnerSpec{Pool: "boot", ID: id})
	d := time.Since(start)
	if err != nil {
		return 0, err
	}
	b.StopTimer()
	defer b.StartTimer()
	return d, node.Shutdown(ctx)
}

// BenchmarkRoundTrip is one caller making small calls one after the other;
// it reports the p50 and p99 round trip besides the mean (ns/op).
func BenchmarkRoundTrip(b *testing.B) {
	eachTransport(b, func(b *testing.B, t *transport) {
		p := benchPool(b, t)
		ctx := context.Background()
		ts := make([]time.Duration, 0, 1<<16)
		for i := 0; b.Loop(); i++ {
			start := time.Now()
			_, err := incr.Call(ctx, p, i)
			require.NoError(b, err)
			ts = append(ts, time.Since(start))
		}
		slices.Sort(ts)
		b.ReportMetric(float64(measure.Pct(ts, 50).Nanoseconds())/1000, "p50-µs")
		b.ReportMetric(float64(measure.Pct(ts, 99).Nanoseconds())/1000, "p99-µs")
	})
}

// BenchmarkThroughput is 1, 8 and 64 callers sharing b.N small calls; it
// reports calls/s.
func BenchmarkThroughput(b *testing.B) {
	eachTransport(b, func(b *testing.B, t *transport) {
		for _, callers := range []int{1, 8, 64} {
			b.Run(fmt.Sprintf("callers=%d", callers), func(b *testing.B) {
				p := benchPool(b, t)
				ctx := context.Background()
				b.ResetTimer()
				start := time.Now()
				var wg sync.WaitGroup
				for c := range callers {
					n := b.N / callers
					if c < b.N%callers {
						n++
					}
					wg.Go(func() {
						for i := range n {
							if _, err := incr.Call(ctx, p, i); err != nil {
								b.Error(err)
								return
							}
						}
					})
				}
				wg.Wait()
				b.ReportMetric(float64(b.N)/time.Since(start).Seconds(), "calls/s")
			})
		}
	})
}

// benchPool is a warmed-up pool of one runner over t, closed after b.
func benchPool(b *testing.B, t *transport) *flame.Pool {
	b.Helper()
	p, err := t.pool()
	require.NoError(b, err)
	b.Cleanup(func() { p.Close(context.Background()) })
	for i := range 1000 {
		_, err := incr.Call(context.Background(), p, i)
		require.NoError(b, err)
	}
	return p
}
