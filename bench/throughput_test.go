package main

import (
	"context"
	"fmt"
	"runtime"
	"sync"
	"sync/atomic"
	"testing"
	"time"
)

// Scenarios 2 and 3: the full Call path with free capacity, and saturation
// (callers ≫ capacity) with wait-time percentiles and a FIFO probe.
//
// Scenario 1 (checkout + release without the Call machinery) is
// BenchmarkFreeCheckout: goflame's half in package flame, because its
// checkout is unexported, the baselines' half in free_test.go.

// callRunners × callSlots is the shape of scenario 2, as in scenario 1.
const (
	callRunners = 4
	callSlots   = 64
)

// BenchmarkCall is the full Call path: a no-op fn and the default Config on
// 4 runners × 64 slots, so nobody waits. For the baselines it is Acquire,
// fn(ctx), Release.
func BenchmarkCall(b *testing.B) {
	for _, im := range impls {
		for _, par := range []int{1, 8, 64} {
			b.Run(fmt.Sprintf("impl=%s/par=%d", im.name, par), func(b *testing.B) {
				p := mustNew(b, im, callRunners, callSlots)
				ctx := context.Background()
				b.ReportAllocs()
				b.SetParallelism(par)
				b.ResetTimer()
				b.RunParallel(func(pb *testing.PB) {
					for pb.Next() {
						if err := p.Do(ctx, noop); err != nil {
							b.Error(err)
							return
						}
					}
				})
			})
		}
	}
}

// The saturated shape: 256 callers on 4 runners × 2 slots, 32 callers per
// slot. Each fn yields once (runtime.Gosched) while it holds its slot, so
// slots stay held while the other callers run: without that, on a few CPUs
// a no-op call is over before anyone else is scheduled and hardly anybody
// waits. So nearly every call waits and is served by a release's handoff.
const (
	satRunners = 4
	satSlots   = 2
	satCallers = 256
)

// BenchmarkSaturated measures throughput (ns/op is wall time per completed
// call across all callers) and each call's wait, from just before Do to the
// first instruction of fn, reported as p50-ns, p99-ns and max-ns. Service
// order is checked separately by BenchmarkFIFO.
func BenchmarkSaturated(b *testing.B) {
	for _, im := range impls {
		b.Run(fmt.Sprintf("impl=%s/callers=%d", im.name, satCallers), func(b *testing.B) {
			p := mustNew(b, im, satRunners, satSlots)
			par := perCPU(satCallers)
			hists := make([]histogram, par*maxProcs())
			var next atomic.Int64
			b.ReportAllocs()
			b.SetParallelism(par)
			b.ResetTimer()
			b.RunParallel(func(pb *testing.PB) {
				h := &hists[next.Add(1)-1]
				ctx := context.Background()
				var served int64
				fn := func(context.Context) error {
					served = mono()
					runtime.Gosched()
					return nil
				}
				for pb.Next() {
					t0 := mono()
					if err := p.Do(ctx, fn); err != nil {
						b.Error(err)
						return
					}
					h.record(served - t0)
				}
			})
			b.StopTimer()
			var all histogram
			for i := range hists {
				all.merge(&hists[i])
			}
			b.ReportMetric(float64(all.quantile(0.50)), "p50-ns")
			b.ReportMetric(float64(all.quantile(0.99)), "p99-ns")
			b.ReportMetric(float64(all.max), "max-ns")
		})
	}
}

// maxProcs is GOMAXPROCS: RunParallel starts parallelism × GOMAXPROCS
// goroutines.
func maxProcs() int { return runtime.GOMAXPROCS(0) }

// fifoWaiters is how many callers one FIFO probe queues.
const fifoWaiters = 64

// fifoSpacing is the pause between one probe caller's queueing and the next
// one's arrival: long enough for a caller that has just called ctx.Done to
// finish queueing, short enough to keep a probe near 15 ms. (A busy pause:
// time.Sleep this short often takes a millisecond.)
const fifoSpacing = 200 * time.Microsecond

// BenchmarkFIFO probes service order: on a pool with one slot, held, 64
// callers arrive one after another (each has queued before the next one
// arrives, see fifoProbe), then the slot is released and each caller records
// its place in the service order. One op is one probe. It reports
// inversions, the share of caller pairs served in the opposite order of
// their arrival (0 is exact FIFO, 1 is exact LIFO), and misplaced, the
// number of callers per probe not served at their arrival position.
func BenchmarkFIFO(b *testing.B) {
	for _, im := range impls {
		b.Run(fmt.Sprintf("impl=%s/waiters=%d", im.name, fifoWaiters), func(b *testing.B) {
			var inv, mis float64
			for range b.N {
				p := mustNew(b, im, 1, 1)
				r, err := fifoProbe(p, fifoWaiters, fifoSpacing)
				if err != nil {
					b.Fatal(err)
				}
				inv += r.inversionShare()
				mis += float64(r.misplaced())
			}
			b.ReportMetric(inv/float64(b.N), "inversions")
			b.ReportMetric(mis/float64(b.N), "misplaced")
		})
	}
}

// fifoResult is one probe: order[i] is the service position of the caller
// that arrived i-th.
type fifoResult struct{ order []int }

// inversions counts pairs served against their arrival order.
func (r fifoResult) inversions() int {
	n := 0
	for i := range r.order {
		for j := i + 1; j < len(r.order); j++ {
			if r.order[i] > r.order[j] {
				n++
			}
		}
	}
	return n
}

func (r fifoResult) inversionShare() float64 {
	k := len(r.order)
	if k < 2 {
		return 0
	}
	return float64(r.inversions()) / float64(k*(k-1)/2)
}

func (r fifoResult) misplaced() int {
	n := 0
	for i, s := range r.order {
		if s != i {
			n++
		}
	}
	return n
}

// fifoProbe queues waiters callers on p, which must have exactly one slot,
// and records the order they are served in.
//
// The slot is held first. Then the callers arrive one at a time: each one
// calls Do with a hookCtx, and the next one is started only after the
// previous one called ctx.Done (which goflame, actor and mutex do right after
// queueing, semaphore and puddle a few instructions before) plus spacing.
// Then the slot is released. With one slot every caller is served only after
// the previous one's release, so the recorded order is the grant order.
func fifoProbe(p pool, waiters int, spacing time.Duration) (fifoResult, error) {
	release := make(chan struct{})
	holding := make(chan struct{})
	errc := make(chan error, waiters+1)
	var wg sync.WaitGroup
	wg.Go(func() {
		errc <- p.Do(context.Background(), func(context.Context) error {
			close(holding)
			<-release
			return nil
		})
	})
	<-holding

	res := fifoResult{order: make([]int, waiters)}
	var served atomic.Int64
	for i := range waiters {
		ctx := newHookCtx(context.Background())
		wg.Go(func() {
			errc <- p.Do(ctx, func(context.Context) error {
				res.order[i] = int(served.Add(1) - 1)
				return nil
			})
		})
		<-ctx.hooked
		for t := time.Now(); time.Since(t) < spacing; {
			runtime.Gosched()
		}
	}
	close(release)
	wg.Wait()
	close(errc)
	for err := range errc {
		if err != nil {
			return res, err
		}
	}
	return res, nil
}
