package main

import (
	"context"
	"fmt"
	"testing"

	"github.com/goflame/goflame/bench/peers"
)

// Scenario 1, the baselines' half: checkout + release with free capacity,
// 4 runners × 64 slots, RunParallel with parallelism 1, 8 and 64. goflame's
// half is BenchmarkFreeCheckout in package flame (its checkout and release
// are unexported); `go run ./bench` runs both in one run, under the same
// names, so that one table and benchstat -col /impl compare them:
//
//	go test -run '^$' -bench BenchmarkFreeCheckout -benchmem -cpu 1,2 ./flame ./bench
func BenchmarkFreeCheckout(b *testing.B) {
	for _, pe := range []struct {
		name string
		new  func(runners, slots int) peers.Pool
	}{
		{"actor", peers.NewActor},
		{"semaphore", peers.NewSemaphore},
		{"puddle", peers.NewPuddle},
		{"mutex", peers.NewMutex},
	} {
		for _, par := range []int{1, 8, 64} {
			b.Run(fmt.Sprintf("impl=%s/par=%d", pe.name, par), func(b *testing.B) {
				p := pe.new(4, 64)
				b.Cleanup(p.Close)
				op := func(ctx context.Context) error { // a closure, as goflame's half pays for one
					s, err := p.Acquire(ctx)
					if err != nil {
						return err
					}
					p.Release(s)
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
}
