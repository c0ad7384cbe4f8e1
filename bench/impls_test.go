package main

import (
	"context"
	"fmt"
	"math"
	"math/bits"
	"runtime"
	"sync"
	"testing"
	"time"

	"github.com/goflame/goflame/bench/peers"
	"github.com/goflame/goflame/flame"
)

// pool is what the harness asks of every implementation: the one small
// interface all scenarios from 2 on are written against.
type pool interface {
	// Do runs fn while holding one slot and returns fn's error, or the error
	// that kept it from getting a slot (ctx done while waiting). For goflame
	// it is Pool.Call; for a baseline it is Acquire, fn(ctx), Release.
	Do(ctx context.Context, fn func(context.Context) error) error
	// Cast starts the same work without waiting for it. For goflame it is
	// Pool.Cast; a baseline has no cast, so it does what a user of it would:
	// go Do(ctx, fn).
	Cast(ctx context.Context, fn func(context.Context) error)
	// Close stops the pool. Nothing may hold or wait for a slot.
	Close()
}

// impl is one implementation under test.
type impl struct {
	name string
	// new returns a pool of runners × slots with every runner up.
	new func(runners, slots int) (pool, error)
	// grow returns a pool that starts empty and grows to max runners of
	// slots each, every boot taking boot; nil if the implementation cannot
	// grow.
	grow func(max, slots int, boot time.Duration) (pool, error)
}

// impls are the implementations every scenario compares, in table order.
var impls = []impl{
	{name: "goflame", new: newGoflame, grow: growGoflame},
	{name: "actor", new: peer(peers.NewActor), grow: growActor},
	{name: "semaphore", new: peer(peers.NewSemaphore)},
	{name: "puddle", new: peer(peers.NewPuddle)},
	{name: "mutex", new: peer(peers.NewMutex)},
}

// goflamePool adapts *flame.Pool.
type goflamePool struct{ p *flame.Pool }

// newGoflame is a pool with Min = Max = runners and the default Config
// otherwise, so every runner is up before the benchmark starts and nothing
// measures growth.
func newGoflame(runners, slots int) (pool, error) {
	p, err := flame.NewPool(flame.Config{Min: runners, Max: runners, MaxConcurrency: slots})
	if err != nil {
		return nil, err
	}
	return goflamePool{p}, nil
}

// growGoflame is an empty pool that grows to max runners, each boot taking
// boot (slowBoot).
func growGoflame(max, slots int, boot time.Duration) (pool, error) {
	p, err := flame.NewPool(flame.Config{Max: max, MaxConcurrency: slots, Backend: slowBoot{boot}})
	if err != nil {
		return nil, err
	}
	return goflamePool{p}, nil
}

func (g goflamePool) Do(ctx context.Context, fn func(context.Context) error) error {
	return g.p.Call(ctx, fn)
}

func (g goflamePool) Cast(ctx context.Context, fn func(context.Context) error) {
	if err := g.p.Cast(ctx, fn); err != nil {
		panic(fmt.Sprintf("goflame Cast: %v", err))
	}
}

func (g goflamePool) Close() {
	if err := g.p.Close(context.Background()); err != nil {
		panic(fmt.Sprintf("goflame Close: %v", err))
	}
}

// slowBoot is flame.LocalBackend with a boot latency.
type slowBoot struct{ d time.Duration }

func (b slowBoot) Boot(ctx context.Context, spec flame.RunnerSpec) (flame.Node, error) {
	t := time.NewTimer(b.d)
	defer t.Stop()
	select {
	case <-t.C:
	case <-ctx.Done():
		return nil, ctx.Err()
	}
	return flame.LocalBackend{}.Boot(ctx, spec)
}

// peerPool adapts a peers.Pool.
type peerPool struct{ p peers.Pool }

func peer(newPool func(runners, slots int) peers.Pool) func(runners, slots int) (pool, error) {
	return func(runners, slots int) (pool, error) { return peerPool{newPool(runners, slots)}, nil }
}

// growActor is FLAME's growth rule: peers.NewActorGrowing, one boot at a time,
// each taking boot.
func growActor(max, slots int, boot time.Duration) (pool, error) {
	return peerPool{peers.NewActorGrowing(max, slots, func(ctx context.Context) {
		t := time.NewTimer(boot)
		defer t.Stop()
		select {
		case <-t.C:
		case <-ctx.Done():
		}
	})}, nil
}

func (a peerPool) Do(ctx context.Context, fn func(context.Context) error) error {
	s, err := a.p.Acquire(ctx)
	if err != nil {
		return err
	}
	defer a.p.Release(s)
	return fn(ctx)
}

func (a peerPool) Cast(ctx context.Context, fn func(context.Context) error) {
	go func() { _ = a.Do(ctx, fn) }()
}

func (a peerPool) Close() { a.p.Close() }

// mustNew builds im's pool of runners × slots and closes it when tb ends.
func mustNew(tb testing.TB, im impl, runners, slots int) pool {
	tb.Helper()
	p, err := im.new(runners, slots)
	if err != nil {
		tb.Fatal(err)
	}
	tb.Cleanup(p.Close)
	return p
}

// perCPU is the RunParallel parallelism that gives about total goroutines.
func perCPU(total int) int {
	n := runtime.GOMAXPROCS(0)
	return (total + n - 1) / n
}

// noop is the work of the throughput scenarios.
func noop(context.Context) error { return nil }

// epoch is the origin of mono: time.Since reads the monotonic clock.
var epoch = time.Now()

// mono is a monotonic timestamp in nanoseconds.
func mono() int64 { return int64(time.Since(epoch)) }

// hookCtx is a context that reports the first call of its Done method.
// Every implementation calls Done when it parks a waiting caller (goflame,
// mutex and actor right after queueing it; semaphore and puddle just before
// taking the lock that queues it), so a closed hooked means "this caller
// has queued, or is a few instructions from it".
type hookCtx struct {
	context.Context
	once   sync.Once
	hooked chan struct{}
}

func newHookCtx(parent context.Context) *hookCtx {
	return &hookCtx{Context: parent, hooked: make(chan struct{})}
}

func (c *hookCtx) Done() <-chan struct{} {
	c.once.Do(func() { close(c.hooked) })
	return c.Context.Done()
}

// holdAll takes every slot of p (capacity of them) with work that blocks
// until release is called. It returns once all are held. release waits for
// the holders to finish and returns the first error one of them got.
func holdAll(p pool, capacity int) (release func() error) {
	in := make(chan struct{}, capacity)
	out := make(chan struct{})
	errc := make(chan error, capacity)
	var wg sync.WaitGroup
	for range capacity {
		wg.Go(func() {
			errc <- p.Do(context.Background(), func(context.Context) error {
				in <- struct{}{}
				<-out
				return nil
			})
		})
	}
	for range capacity {
		<-in
	}
	return func() error {
		close(out)
		wg.Wait()
		close(errc)
		for err := range errc {
			if err != nil {
				return err
			}
		}
		return nil
	}
}

// histogram counts durations in log-linear buckets: exact below 64 ns, then
// 32 buckets per power of two (at most 3% relative error). A zero value is
// ready to use; it allocates nothing when recording.
type histogram struct {
	n     [histBuckets]uint32
	max   int64
	total uint64
}

const (
	histSubBits = 5
	histSub     = 1 << histSubBits
	histMaxBits = 42 // values up to ~73 minutes
	histBuckets = (histMaxBits - histSubBits) * histSub
)

func histIndex(v int64) int {
	if v < 0 {
		v = 0
	}
	if v >= 1<<histMaxBits {
		v = 1<<histMaxBits - 1
	}
	if v < 2*histSub {
		return int(v)
	}
	e := bits.Len64(uint64(v)) - (histSubBits + 1)
	return e*histSub + int(v>>e)
}

// histValue is the middle of bucket i.
func histValue(i int) int64 {
	if i < 2*histSub {
		return int64(i)
	}
	e := i/histSub - 1
	m := int64(i - e*histSub)
	return m<<e + (int64(1)<<e)/2
}

func (h *histogram) record(d int64) {
	h.n[histIndex(d)]++
	h.total++
	if d > h.max {
		h.max = d
	}
}

func (h *histogram) merge(o *histogram) {
	for i, c := range o.n {
		h.n[i] += c
	}
	h.total += o.total
	h.max = max(h.max, o.max)
}

// quantile returns the q-quantile (0 < q <= 1), or 0 when empty.
func (h *histogram) quantile(q float64) int64 {
	if h.total == 0 {
		return 0
	}
	rank := max(uint64(math.Ceil(q*float64(h.total))), 1)
	var seen uint64
	for i, c := range h.n {
		seen += uint64(c)
		if seen >= rank {
			return min(histValue(i), h.max)
		}
	}
	return h.max
}
