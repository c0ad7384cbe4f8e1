package main

import (
	"context"
	"os"
	"slices"
	"sync"
	"testing"
	"time"

	"github.com/stretchr/testify/require"

	"github.com/goflame/goflame/bench/internal/measure"
	"github.com/goflame/goflame/flame"
	"github.com/goflame/goflame/internal/kubetest/testcluster"
)

// TestMain makes the test binary its own runner, and builds the control
// plane, if it must, before the benchmark timer can run.
func TestMain(m *testing.M) {
	flame.Main()
	_ = testcluster.Build()
	code := m.Run()
	if theBench != nil {
		theBench.close()
	}
	os.Exit(code)
}

var (
	benchOnce sync.Once
	theBench  *bench
	benchErr  error
)

func cluster(b *testing.B) *bench {
	b.Helper()
	benchOnce.Do(func() { theBench, benchErr = setup() })
	require.NoError(b, benchErr)
	return theBench
}

// BenchmarkPodBoot times a pod runner from the pod's creation to READY
// (ns/op, and p50/p99), then stops it outside the timer.
func BenchmarkPodBoot(b *testing.B) {
	k := cluster(b)
	be, err := k.backend()
	require.NoError(b, err)
	var ts []time.Duration
	for i := 0; b.Loop(); i++ {
		ctx, cancel := context.WithTimeout(context.Background(), time.Minute)
		start := time.Now()
		node, err := be.Boot(ctx, flame.RunnerSpec{Pool: "kubebench", ID: uint64(i + 1)})
		ts = append(ts, time.Since(start))
		require.NoError(b, err)
		b.StopTimer()
		require.NoError(b, node.Shutdown(ctx))
		cancel()
		b.StartTimer()
	}
	reportPercentiles(b, ts, time.Millisecond, "ms")
}

// BenchmarkPodRoundTrip is one small call through a pod runner.
func BenchmarkPodRoundTrip(b *testing.B) {
	k := cluster(b)
	p, err := k.pool()
	require.NoError(b, err)
	defer p.Close(context.Background())
	ctx := context.Background()
	_, err = incr.Call(ctx, p, 0)
	require.NoError(b, err)
	var ts []time.Duration
	for i := 0; b.Loop(); i++ {
		start := time.Now()
		_, err := incr.Call(ctx, p, i)
		ts = append(ts, time.Since(start))
		require.NoError(b, err)
	}
	reportPercentiles(b, ts, time.Microsecond, "µs")
}

func reportPercentiles(b *testing.B, ts []time.Duration, unit time.Duration, name string) {
	sorted := append([]time.Duration(nil), ts...)
	slices.Sort(sorted)
	b.ReportMetric(float64(measure.Pct(sorted, 50))/float64(unit), "p50-"+name)
	b.ReportMetric(float64(measure.Pct(sorted, 99))/float64(unit), "p99-"+name)
}
