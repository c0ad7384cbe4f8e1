package flame

import (
	"context"
	"fmt"
	"testing"

	"github.com/goflame/goflame/bench/peers"
)

// This file is scenario 1 of the benchmark harness (bench/): checkout +
// release with free capacity, goflame against the baselines in bench/peers,
// in one file so that one run compares them:
//
//	go test -run '^$' -bench BenchmarkFreeCheckout -benchmem -cpu 1,2 ./flame
//
// goflame's checkout and release are unexported, so this scenario can only be
// measured from inside package flame; `go run ./bench` runs this benchmark as
// a subprocess and reads its output.

// freeRunners and freeSlots are the shape of every pool here: 4 runners ×
// 64 slots, more than the callers (at most 64 × GOMAXPROCS goroutines hold
// one slot each, and with -cpu 1,2 that is at most 128 of 256 slots), so no
// caller ever waits.
const (
	freeRunners = 4
	freeSlots   = 64
)

// freeImpl is one implementation as this benchmark sees it: start returns the
// operation to time (take one slot, give it back) and registers cleanup.
type freeImpl struct {
	name  string
	start func(b *testing.B) func(context.Context) error
}

func freeImpls() []freeImpl {
	peer := func(name string, newPool func(runners, slots int) peers.Pool) freeImpl {
		return freeImpl{name: name, start: func(b *testing.B) func(context.Context) error {
			p := newPool(freeRunners, freeSlots)
			b.Cleanup(p.Close)
			return func(ctx context.Context) error {
				s, err := p.Acquire(ctx)
				if err != nil {
					return err
				}
				p.Release(s)
				return nil
			}
		}}
	}
	return []freeImpl{
		{name: "goflame", start: func(b *testing.B) func(context.Context) error {
			// Min = Max: every runner is up before the timer starts.
			p, err := NewPool(Config{Min: freeRunners, Max: freeRunners, MaxConcurrency: freeSlots})
			if err != nil {
				b.Fatal(err)
			}
			b.Cleanup(func() { _ = p.Close(context.Background()) })
			return func(ctx context.Context) error {
				r, err := p.checkout(ctx, Infinity, kindCall)
				if err != nil {
					return err
				}
				p.release(r)
				return nil
			}
		}},
		peer("actor", peers.NewActor),
		peer("semaphore", peers.NewSemaphore),
		peer("puddle", peers.NewPuddle),
		peer("mutex", peers.NewMutex),
	}
}

// BenchmarkFreeCheckout is checkout + release with free capacity: 4 runners ×
// 64 slots, RunParallel with parallelism 1, 8 and 64 (goroutines =
// parallelism × GOMAXPROCS). Every implementation pays one indirect call per
// operation for the closure, so the comparison is like for like.
func BenchmarkFreeCheckout(b *testing.B) {
	for _, im := range freeImpls() {
		for _, par := range []int{1, 8, 64} {
			b.Run(fmt.Sprintf("impl=%s/par=%d", im.name, par), func(b *testing.B) {
				op := im.start(b)
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
