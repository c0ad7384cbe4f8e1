package flame

import (
	"context"
	"errors"
	"log/slog"
	"math/rand/v2"
	"os"
	"strings"
	"sync"
	"sync/atomic"
	"testing"
	"time"

	"github.com/stretchr/testify/assert"
	"github.com/stretchr/testify/require"
	"go.uber.org/goleak"
)

// chaosDuration is how long TestChaos runs: 2s by default, longer for a soak
// (GOFLAME_CHAOS=10m go test -race -run TestChaos ./flame).
func chaosDuration(t *testing.T) time.Duration {
	if s := os.Getenv("GOFLAME_CHAOS"); s != "" {
		d, err := time.ParseDuration(s)
		require.NoError(t, err, "GOFLAME_CHAOS")
		return d
	}
	if testing.Short() {
		return 300 * time.Millisecond
	}
	return 2 * time.Second
}

// chaosBackend fails, hangs, panics and returns nothing at random, and
// crashes the nodes it booted.
type chaosBackend struct {
	mu    sync.Mutex
	nodes []*testNode
	rng   *rand.Rand
}

func (b *chaosBackend) roll() float64 {
	b.mu.Lock()
	defer b.mu.Unlock()
	return b.rng.Float64()
}

func (b *chaosBackend) Boot(ctx context.Context, spec RunnerSpec) (Node, error) {
	r := b.roll()
	switch {
	case r < 0.15:
		return nil, errors.New("chaos: boot failed")
	case r < 0.18:
		<-ctx.Done() // hang past BootTimeout
		return nil, ctx.Err()
	case r < 0.20:
		panic("chaos: boot panicked")
	case r < 0.22:
		return nil, nil
	}
	select {
	case <-time.After(time.Duration(r * float64(2*time.Millisecond))):
	case <-ctx.Done():
		return nil, ctx.Err()
	}
	n := &testNode{id: spec.ID, done: make(chan struct{})}
	b.mu.Lock()
	b.nodes = append(b.nodes, n)
	b.mu.Unlock()
	return n, nil
}

// crashOne crashes a random node.
func (b *chaosBackend) crashOne() {
	b.mu.Lock()
	if len(b.nodes) == 0 {
		b.mu.Unlock()
		return
	}
	n := b.nodes[b.rng.IntN(len(b.nodes))]
	b.mu.Unlock()
	n.Crash()
}

func (b *chaosBackend) stopped() (all bool, alive int) {
	b.mu.Lock()
	defer b.mu.Unlock()
	for _, n := range b.nodes {
		select {
		case <-n.done:
		default:
			alive++
		}
	}
	return alive == 0, alive
}

// castCounter counts the log records about casts that did not run.
type castCounter struct {
	notStarted atomic.Int64 // "cast dropped..." and "cast could not start"
	closeDrops atomic.Int64 // counted by Close itself
}

func (c *castCounter) Enabled(context.Context, slog.Level) bool { return true }
func (c *castCounter) WithAttrs([]slog.Attr) slog.Handler       { return c }
func (c *castCounter) WithGroup(string) slog.Handler            { return c }
func (c *castCounter) Handle(_ context.Context, r slog.Record) error {
	switch {
	case strings.HasPrefix(r.Message, "cast dropped"), strings.HasPrefix(r.Message, "cast could not start"):
		c.notStarted.Add(1)
	case strings.HasPrefix(r.Message, "Close dropped queued casts"):
		r.Attrs(func(a slog.Attr) bool {
			if a.Key == "count" {
				c.closeDrops.Add(a.Value.Int64())
			}
			return true
		})
	}
	return nil
}

var errChaosFn = errors.New("chaos: fn failed")

// TestChaosKeepsInvariants runs hundreds of goroutines doing calls, casts and
// children with random timeouts and cancellations against a backend that
// fails, hangs and crashes, with hooks and fns that panic, while Resize runs
// concurrently; then Close. Every call must return a documented error, no
// runner may run more than MaxConcurrency fns, every accepted cast must run
// or be reported, and nothing may be left behind.
func TestChaosKeepsInvariants(t *testing.T) {
	defer goleak.VerifyNone(t)
	const (
		mc      = 4
		workers = 200
	)
	seed := uint64(time.Now().UnixNano())
	t.Logf("seed %d", seed)
	backend := &chaosBackend{rng: rand.New(rand.NewPCG(seed, 1))}
	counter := &castCounter{}

	var hookDepth, hookOverlaps atomic.Int32
	hookRng := rand.New(rand.NewPCG(seed, 2))
	var hookMu sync.Mutex
	maybePanic := func(what string) {
		hookMu.Lock()
		r := hookRng.Float64()
		hookMu.Unlock()
		if r < 0.05 {
			panic("chaos: " + what + " panicked")
		}
	}
	endHook := func(what string) {
		if hookDepth.Add(1) > 1 {
			hookOverlaps.Add(1)
		}
		defer hookDepth.Add(-1)
		maybePanic(what)
	}
	p, err := NewPool(Config{
		Max: 6, MaxConcurrency: mc, // Min 0: a chaotic Min boot would fail NewPool
		Backend:           backend,
		BootTimeout:       20 * time.Millisecond,
		Timeout:           30 * time.Millisecond,
		ShutdownTimeout:   20 * time.Millisecond,
		IdleShutdownAfter: 10 * time.Millisecond,
		OnGrowStart:       func(GrowEvent) { maybePanic("OnGrowStart") },
		OnGrowEnd:         func(GrowEvent, error) { endHook("OnGrowEnd") },
		OnShrink:          func(ShrinkEvent) { endHook("OnShrink") },
		Logger:            slog.New(counter),
	})
	require.NoError(t, err, "NewPool")

	var (
		running       sync.Map // runner ID -> *atomic.Int32: fns running now
		overMC        atomic.Int32
		castsAccepted atomic.Int64
		castsRan      atomic.Int64
		undocumented  = make(chan error, 100)
		maxSeen       atomic.Int32
	)
	maxSeen.Store(6)
	fn := func(rng *rand.Rand) func(context.Context) error {
		d := time.Duration(rng.IntN(3000)) * time.Microsecond
		mode := rng.IntN(10)
		return func(ctx context.Context) error {
			id, _ := RunnerID(ctx)
			v, _ := running.LoadOrStore(id, new(atomic.Int32))
			n := v.(*atomic.Int32)
			if n.Add(1) > mc {
				overMC.Add(1)
			}
			defer n.Add(-1)
			switch mode {
			case 0:
				panic("chaos: fn panicked")
			case 1:
				return errChaosFn
			}
			select {
			case <-time.After(d):
				return nil
			case <-ctx.Done():
				return ctx.Err()
			}
		}
	}
	documented := func(err error) bool {
		var pe *PanicError
		return err == nil || errors.As(err, &pe) ||
			errors.Is(err, errChaosFn) || errors.Is(err, ErrTimeout) || errors.Is(err, ErrRunnerDown) ||
			errors.Is(err, ErrCheckoutTimeout) || errors.Is(err, ErrClosed) ||
			errors.Is(err, context.Canceled) || errors.Is(err, context.DeadlineExceeded)
	}
	report := func(err error) {
		if !documented(err) {
			select {
			case undocumented <- err:
			default:
			}
		}
	}

	stop := make(chan struct{})
	var wg sync.WaitGroup
	for w := range workers {
		wg.Go(func() {
			rng := rand.New(rand.NewPCG(seed, uint64(w)+10))
			for {
				select {
				case <-stop:
					return
				default:
				}
				ctx, cancel := context.WithTimeout(context.Background(), time.Duration(rng.IntN(40)+1)*time.Millisecond)
				opts := []CallOption{}
				if rng.IntN(3) == 0 {
					opts = append(opts, WithTimeout(time.Duration(rng.IntN(20)+1)*time.Millisecond))
				}
				if rng.IntN(10) == 0 {
					opts = append(opts, WithLink(false))
				}
				switch op := rng.IntN(10); {
				case op < 6:
					report(p.Call(ctx, fn(rng), opts...))
				case op < 8:
					if castsAccepted.Load()-castsRan.Load()-counter.notStarted.Load() > 500 {
						break // keep the cast backlog bounded, so Close can drain it
					}
					inner := fn(rng)
					cctx := ctx // linked casts die with ctx; most get a ctx that lives on
					if rng.IntN(4) != 0 {
						cctx = context.Background()
					}
					err := p.Cast(cctx, func(ctx context.Context) error {
						castsRan.Add(1)
						return inner(ctx)
					}, opts...)
					if err == nil {
						castsAccepted.Add(1)
					} else {
						report(err)
					}
				default:
					c, err := p.PlaceChild(ctx, fn(rng), opts...)
					if err != nil {
						report(err)
						break
					}
					if rng.IntN(2) == 0 {
						c.Stop()
					} else {
						<-c.Done()
					}
					report(c.Err())
				}
				cancel()
			}
		})
	}
	// Chaos: crashes and resizes.
	wg.Go(func() {
		rng := rand.New(rand.NewPCG(seed, 3))
		for {
			select {
			case <-stop:
				return
			case <-time.After(time.Duration(rng.IntN(5)+1) * time.Millisecond):
			}
			if rng.IntN(2) == 0 {
				backend.crashOne()
			} else {
				max := rng.IntN(8) + 1
				if err := p.Resize(rng.IntN(min(max, 3)+1), max); err != nil && !errors.Is(err, ErrClosed) {
					report(err)
				}
			}
		}
	})
	// Stats sampling: loads never above MaxConcurrency.
	wg.Go(func() {
		for {
			select {
			case <-stop:
				return
			case <-time.After(time.Millisecond):
			}
			for _, rl := range p.Stats().RunnerLoads {
				if rl.Load > mc {
					overMC.Add(1)
				}
			}
		}
	})

	time.Sleep(chaosDuration(t))
	closeCtx, cancel := context.WithTimeout(context.Background(), 5*time.Second)
	defer cancel()
	closeErr := make(chan error, 1)
	go func() { closeErr <- p.Close(closeCtx) }()
	close(stop)
	wg.Wait()
	if err := <-closeErr; err != nil {
		// Allowed when the backlog outlasts the budget: Close then cancels
		// the work, drops queued casts (and counts them), and returns
		// without waiting. The pool's goroutines still all end.
		require.ErrorIs(t, err, context.DeadlineExceeded, "Close: %v", err)
		t.Logf("Close: %v", err)
	}
	p.wg.Wait()

	close(undocumented)
	for err := range undocumented {
		assert.NoError(t, err, "undocumented error: %v", err)
	}
	n := overMC.Load()
	assert.LessOrEqual(t, n, int32(0), "a runner exceeded MaxConcurrency %d times", n)
	n = hookOverlaps.Load()
	assert.LessOrEqual(t, n, int32(0), "OnGrowEnd/OnShrink overlapped %d times", n)
	st := p.Stats()
	assert.Zero(t, st.InUse, "after Close: %+v, want nothing left", st)
	assert.Zero(t, st.Runners, "after Close: %+v, want nothing left", st)
	assert.Zero(t, st.Pending, "after Close: %+v, want nothing left", st)
	assert.Zero(t, st.Waiting, "after Close: %+v, want nothing left", st)
	accepted, ran := castsAccepted.Load(), castsRan.Load()
	notRun := counter.notStarted.Load()
	assert.Equal(t, accepted, ran+notRun, "casts: accepted %d, ran %d, reported not run %d (Close counted %d): some were lost",
		accepted, ran, notRun, counter.closeDrops.Load())
	all, alive := backend.stopped()
	assert.True(t, all, "%d nodes still running after Close", alive)
	t.Logf("casts accepted %d ran %d not run %d; stats %+v", accepted, ran, notRun, st)
}
