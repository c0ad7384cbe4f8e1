package main

import (
	"context"
	"fmt"
	"os"
	"slices"
	"sync"
	"testing"
	"time"

	"github.com/goflame/goflame/flame"
)

// TestMain makes the test binary its own runner.
func TestMain(m *testing.M) {
	flame.Main()
	os.Exit(m.Run())
}

// BenchmarkBoot times a runner process from start to READY (ns/op), then
// shuts it down outside the timer.
func BenchmarkBoot(b *testing.B) {
	var ts []time.Duration
	for i := 0; b.Loop(); i++ {
		d, err := bootOnceTimed(b, uint64(i+1))
		if err != nil {
			b.Fatal(err)
		}
		ts = append(ts, d)
	}
	slices.Sort(ts)
	b.ReportMetric(float64(pct(ts, 50).Microseconds())/1000, "p50-ms")
	b.ReportMetric(float64(pct(ts, 99).Microseconds())/1000, "p99-ms")
}

func bootOnceTimed(b *testing.B, id uint64) (time.Duration, error) {
	ctx, cancel := context.WithTimeout(context.Background(), 30*time.Second)
	defer cancel()
	start := time.Now()
	node, err := flame.ProcessBackend{Logger: quiet}.Boot(ctx, flame.RunnerSpec{Pool: "boot", ID: id})
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
	p := benchPool(b)
	ctx := context.Background()
	ts := make([]time.Duration, 0, 1<<16)
	for i := 0; b.Loop(); i++ {
		start := time.Now()
		if _, err := incr.Call(ctx, p, i); err != nil {
			b.Fatal(err)
		}
		ts = append(ts, time.Since(start))
	}
	slices.Sort(ts)
	b.ReportMetric(float64(pct(ts, 50).Nanoseconds())/1000, "p50-µs")
	b.ReportMetric(float64(pct(ts, 99).Nanoseconds())/1000, "p99-µs")
}

// BenchmarkThroughput is 1, 8 and 64 callers sharing b.N small calls; it
// reports calls/s.
func BenchmarkThroughput(b *testing.B) {
	for _, callers := range []int{1, 8, 64} {
		b.Run(fmt.Sprintf("callers=%d", callers), func(b *testing.B) {
			p := benchPool(b)
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
}

// benchPool is a warmed-up pool of one runner process, closed after b.
func benchPool(b *testing.B) *flame.Pool {
	b.Helper()
	p, err := newPool()
	if err != nil {
		b.Fatal(err)
	}
	b.Cleanup(func() { p.Close(context.Background()) })
	for i := range 1000 {
		if _, err := incr.Call(context.Background(), p, i); err != nil {
			b.Fatal(err)
		}
	}
	return p
}
