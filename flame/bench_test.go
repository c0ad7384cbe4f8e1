package flame

import (
	"context"
	"fmt"
	"log/slog"
	"testing"
)

// benchPool is a pool with Min = Max = runners, so every runner is booted
// before the timer starts and no benchmark measures growth.
func benchPool(b *testing.B, runners, slots int) *Pool {
	b.Helper()
	p, err := NewPool(Config{Min: runners, Max: runners, MaxConcurrency: slots, Logger: slog.New(slog.DiscardHandler)})
	if err != nil {
		b.Fatal(err)
	}
	b.Cleanup(func() { _ = p.Close(context.Background()) })
	return p
}

// BenchmarkCall is the full Call path with a no-op fn and the default
// Config timeouts.
func BenchmarkCall(b *testing.B) {
	noop := func(context.Context) error { return nil }
	for _, par := range []int{1, 8, 64} {
		b.Run(fmt.Sprintf("par=%d", par), func(b *testing.B) {
			p := benchPool(b, 4, 64)
			ctx := context.Background()
			b.ReportAllocs()
			b.SetParallelism(par)
			b.RunParallel(func(pb *testing.PB) {
				for pb.Next() {
					if err := p.Call(ctx, noop); err != nil {
						b.Error(err)
						return
					}
				}
			})
		})
	}
}

// BenchmarkCallHeld is Call on pools of growing size with one slot of two
// held on every runner: every runner is equally loaded and none is idle,
// so a checkout that had to look at every runner would cost in proportion
// to the pool. The remote pools of many single-job runners are this shape.
func BenchmarkCallHeld(b *testing.B) {
	noop := func(context.Context) error { return nil }
	for _, runners := range []int{4, 64, 512, 2048} {
		b.Run(fmt.Sprintf("impl=goflame/runners=%d", runners), func(b *testing.B) {
			p := benchPool(b, runners, 2)
			held := make([]*runner, runners)
			for i := range held {
				if held[i] = claimRunner(p); held[i] == nil {
					b.Fatal("no free slot")
				}
			}
			b.Cleanup(func() {
				for _, r := range held {
					p.release(r)
				}
			})
			ctx := context.Background()
			b.ReportAllocs()
			b.ResetTimer()
			b.RunParallel(func(pb *testing.PB) {
				for pb.Next() {
					if err := p.Call(ctx, noop); err != nil {
						b.Error(err)
						return
					}
				}
			})
		})
	}
}

// BenchmarkCallSaturated has far more callers than slots (4 x 2 slots,
// parallelism 64 per CPU), so nearly every call queues and is served by a
// release's direct handoff.
func BenchmarkCallSaturated(b *testing.B) {
	noop := func(context.Context) error { return nil }
	p := benchPool(b, 4, 2)
	ctx := context.Background()
	b.ReportAllocs()
	b.SetParallelism(64)
	b.RunParallel(func(pb *testing.PB) {
		for pb.Next() {
			if err := p.Call(ctx, noop); err != nil {
				b.Error(err)
				return
			}
		}
	})
}

// BenchmarkFreeCheckout is scenario 1 of the benchmark harness (bench/),
// goflame's half: checkout + release with free capacity, 4 runners × 64
// slots, more than the callers (at most 64 × GOMAXPROCS goroutines hold one
// slot each), so no caller ever waits. The baselines' half, under the same
// names, is BenchmarkFreeCheckout in bench/; `go run ./bench` runs both:
//
//	go test -run '^$' -bench BenchmarkFreeCheckout -benchmem -cpu 1,2 ./flame ./bench
//
// It lives here because checkout and release are unexported. The operation
// is a closure, as for every baseline, so the comparison is like for like.
func BenchmarkFreeCheckout(b *testing.B) {
	for _, par := range []int{1, 8, 64} {
		b.Run(fmt.Sprintf("impl=goflame/par=%d", par), func(b *testing.B) {
			p := benchPool(b, 4, 64)
			op := func(ctx context.Context) error {
				r, _, err := p.checkout(ctx, Infinity, kindCall)
				if err != nil {
					return err
				}
				p.release(r)
				return nil
			}
			ctx := context.Background()
			b.ReportAllocs()
			b.SetParallelism(par)
			b.ResetTimer()
			b.RunParallel(func(pb *testing.PB) {
				for pb.Next() {
					if err := op(ctx); err != nil {
						b.Error(err)
						return
					}
				}
			})
		})
	}
}
