// Command burst shows a goflame pool scaling with demand: a burst of jobs
// boots runners (up to Max), queued callers are served as runners come up,
// and once the burst is over the runners idle down to zero again. Every
// grow and shrink event is printed as it happens.
//
//	go run ./examples/burst
//	go run ./examples/burst -jobs 200 -max 8 -slots 4 -boot 300ms
package main

import (
	"context"
	"flag"
	"fmt"
	"os"
	"sync"
	"sync/atomic"
	"time"

	"github.com/goflame/goflame/flame"
)

// slowBootBackend is LocalBackend with a boot latency, standing in for a
// runner that takes time to start (a process, a machine).
type slowBootBackend struct{ delay time.Duration }

func (b slowBootBackend) Boot(ctx context.Context, spec flame.RunnerSpec) (flame.Node, error) {
	select {
	case <-time.After(b.delay):
	case <-ctx.Done():
		return nil, ctx.Err()
	}
	return flame.LocalBackend{}.Boot(ctx, spec)
}

func main() {
	jobs := flag.Int("jobs", 60, "jobs in the burst")
	max := flag.Int("max", 5, "Max runners")
	slots := flag.Int("slots", 4, "MaxConcurrency: slots per runner")
	boot := flag.Duration("boot", 200*time.Millisecond, "boot latency of a runner")
	work := flag.Duration("work", 100*time.Millisecond, "duration of one job")
	idle := flag.Duration("idle", time.Second, "IdleShutdownAfter")
	flag.Parse()

	start := time.Now()
	logf := func(format string, args ...any) {
		fmt.Printf("%7.3fs  %s\n", time.Since(start).Seconds(), fmt.Sprintf(format, args...))
	}
	var shrunk sync.WaitGroup
	pool, err := flame.NewPool(flame.Config{
		Name:              "burst",
		Max:               *max,
		MaxConcurrency:    *slots,
		Backend:           slowBootBackend{delay: *boot},
		IdleShutdownAfter: *idle,
		OnGrowStart: func(ev flame.GrowEvent) {
			shrunk.Add(1)
			logf("grow   runner %d booting    (runners+booting: %d)", ev.RunnerID, ev.Count)
		},
		OnGrowEnd: func(ev flame.GrowEvent, err error) {
			if err != nil {
				shrunk.Done()
				logf("grow   runner %d failed: %v", ev.RunnerID, err)
				return
			}
			logf("grow   runner %d up         (runners+booting: %d)", ev.RunnerID, ev.Count)
		},
		OnShrink: func(ev flame.ShrinkEvent) {
			defer shrunk.Done()
			logf("shrink runner %d down: %v (runners left: %d)", ev.RunnerID, ev.Reason, ev.Count)
		},
	})
	if err != nil {
		fmt.Fprintln(os.Stderr, err)
		os.Exit(1)
	}

	logf("burst of %d jobs, %v each; Max %d runners x %d slots; boot takes %v",
		*jobs, *work, *max, *slots, *boot)
	perRunner := make([]atomic.Int64, *max*4+2)
	var wg sync.WaitGroup
	var failed atomic.Int64
	for range *jobs {
		wg.Go(func() {
			err := pool.Call(context.Background(), func(ctx context.Context) error {
				id, _ := flame.RunnerID(ctx)
				if int(id) < len(perRunner) {
					perRunner[id].Add(1)
				}
				select {
				case <-time.After(*work):
					return nil
				case <-ctx.Done():
					return ctx.Err()
				}
			})
			if err != nil {
				failed.Add(1)
				logf("job failed: %v", err)
			}
		})
	}
	wg.Wait()
	st := pool.Stats()
	logf("burst served: %d jobs, %d failed; runners %d, booted %d", *jobs, failed.Load(), st.Runners, st.Booted)
	for id := range perRunner {
		if n := perRunner[id].Load(); n > 0 {
			logf("  runner %d ran %d jobs", id, n)
		}
	}
	logf("idle: waiting for the runners to shut down (IdleShutdownAfter %v)", *idle)
	shrunk.Wait()
	logf("scaled to zero: %d runners", pool.Stats().Runners)
	if err := pool.Close(context.Background()); err != nil {
		fmt.Fprintln(os.Stderr, err)
		os.Exit(1)
	}
}
