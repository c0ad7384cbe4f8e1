package main

import (
	"context"
	"fmt"
	"runtime"
	"sync"
	"testing"
	"time"
)

// Scenario 6: memory. What a waiting caller, a runner and a queued cast
// cost, measured as the change in live heap (after GC), goroutine stacks and
// goroutine count around creating many of them.

const (
	memWaiters  = 1000 // callers parked per measurement
	memCasts    = 1000 // casts queued per measurement
	memRunners1 = 16   // runner cost is the slope between pools of these sizes
	memRunners2 = 256
	memSettle   = 20 * time.Millisecond // time for callers that called ctx.Done to finish parking
)

// memSnap is the memory that matters here, after a full GC.
type memSnap struct {
	heap, stack uint64
	goroutines  int
}

func snapshot() memSnap {
	runtime.GC()
	runtime.GC()
	var ms runtime.MemStats
	runtime.ReadMemStats(&ms)
	return memSnap{heap: ms.HeapAlloc, stack: ms.StackInuse, goroutines: runtime.NumGoroutine()}
}

// perItem is (after - before) / n for each field.
type perItem struct{ heap, stack, goroutines float64 }

func diff(before, after memSnap, n int) perItem {
	return perItem{
		heap:       (float64(after.heap) - float64(before.heap)) / float64(n),
		stack:      (float64(after.stack) - float64(before.stack)) / float64(n),
		goroutines: float64(after.goroutines-before.goroutines) / float64(n),
	}
}

// waiterCost parks n callers on a full pool and returns the cost per caller.
// The callers' goroutines exist before the first snapshot (blocked on a
// channel), so what is measured is what waiting in the pool adds: the
// pool's waiter record, channels, timers and any stack growth.
func waiterCost(im impl, n int) (perItem, error) {
	p, err := im.new(4, 2)
	if err != nil {
		return perItem{}, err
	}
	defer p.Close()
	release := holdAll(p, 8)
	ctxs := make([]*hookCtx, n)
	for i := range ctxs {
		ctxs[i] = newHookCtx(context.Background())
	}
	start := make(chan struct{})
	var ready, done sync.WaitGroup
	ready.Add(n)
	errc := make(chan error, n)
	for i := range n {
		done.Go(func() {
			ready.Done()
			<-start
			errc <- p.Do(ctxs[i], noop)
		})
	}
	ready.Wait()
	time.Sleep(memSettle)
	before := snapshot()
	close(start)
	for _, c := range ctxs {
		<-c.hooked
	}
	time.Sleep(memSettle)
	after := snapshot()
	if err := release(); err != nil {
		return perItem{}, err
	}
	done.Wait()
	close(errc)
	for err := range errc {
		if err != nil {
			return perItem{}, err
		}
	}
	return diff(before, after, n), nil
}

// castCost queues n casts on a full pool and returns the cost per cast,
// goroutines included.
func castCost(im impl, n int) (perItem, error) {
	p, err := im.new(4, 2)
	if err != nil {
		return perItem{}, err
	}
	defer p.Close()
	release := holdAll(p, 8)
	ctxs := make([]*hookCtx, n)
	for i := range ctxs {
		ctxs[i] = newHookCtx(context.Background())
	}
	var ran sync.WaitGroup
	ran.Add(n)
	fn := func(context.Context) error {
		ran.Done()
		return nil
	}
	before := snapshot()
	for _, c := range ctxs {
		p.Cast(c, fn)
	}
	for _, c := range ctxs {
		<-c.hooked
	}
	time.Sleep(memSettle)
	after := snapshot()
	if err := release(); err != nil {
		return perItem{}, err
	}
	ran.Wait()
	return diff(before, after, n), nil
}

// runnerCost is the cost of one runner: the slope of a pool's footprint
// between n1 and n2 runners (of 64 slots each).
func runnerCost(im impl, n1, n2 int) (perItem, error) {
	size := func(n int) (memSnap, error) {
		before := snapshot()
		p, err := im.new(n, 64)
		if err != nil {
			return memSnap{}, err
		}
		after := snapshot()
		p.Close()
		return memSnap{
			heap:       after.heap - min(before.heap, after.heap),
			stack:      after.stack - min(before.stack, after.stack),
			goroutines: after.goroutines - before.goroutines,
		}, nil
	}
	a, err := size(n1)
	if err != nil {
		return perItem{}, err
	}
	b, err := size(n2)
	if err != nil {
		return perItem{}, err
	}
	return diff(a, b, n2-n1), nil
}

// BenchmarkMemory reports, per implementation: heap-B/waiter and
// stack-B/waiter (a caller parked waiting for a slot), B/runner and
// goroutines/runner (heap + stacks of one more runner), and B/cast and
// goroutines/cast (a cast queued for a slot; a baseline's cast is a
// goroutine calling Do). One op is one full measurement; ns/op is
// meaningless here.
func BenchmarkMemory(b *testing.B) {
	for _, im := range impls {
		b.Run(fmt.Sprintf("impl=%s", im.name), func(b *testing.B) {
			var w, c, r perItem
			for range b.N {
				wi, err := waiterCost(im, memWaiters)
				if err != nil {
					b.Fatal(err)
				}
				ci, err := castCost(im, memCasts)
				if err != nil {
					b.Fatal(err)
				}
				ri, err := runnerCost(im, memRunners1, memRunners2)
				if err != nil {
					b.Fatal(err)
				}
				w, c, r = w.add(wi), c.add(ci), r.add(ri)
			}
			n := float64(b.N)
			b.ReportMetric(w.heap/n, "heap-B/waiter")
			b.ReportMetric(w.stack/n, "stack-B/waiter")
			b.ReportMetric((r.heap+r.stack)/n, "B/runner")
			b.ReportMetric(r.goroutines/n, "goroutines/runner")
			b.ReportMetric((c.heap+c.stack)/n, "B/cast")
			b.ReportMetric(c.goroutines/n, "goroutines/cast")
		})
	}
}

func (a perItem) add(b perItem) perItem {
	return perItem{a.heap + b.heap, a.stack + b.stack, a.goroutines + b.goroutines}
}
