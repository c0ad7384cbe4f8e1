package proptest

import (
	"context"
	"errors"
	"flag"
	"fmt"
	"maps"
	"runtime"
	"slices"
	"sync"
	"sync/atomic"
	"testing"
	"testing/synctest"
	"time"

	"github.com/stretchr/testify/require"
	"pgregory.net/rapid"

	"github.com/goflame/goflame/flame"
	"github.com/goflame/goflame/proptest/model"
)

// TestPoolInvariantsUnderConcurrency runs many goroutines against the real
// pool (no model): calls of every kind, cancellations, crashes, failing and
// slow boots, Resize and a slow IdleCheck, all at once. Whatever the
// interleaving, these must hold:
//
//   - no runner ever runs more than MaxConcurrency fns at once;
//   - no boot starts with booted + booting above Max (OnGrowStart's Count);
//   - every call returns, with an error that its history explains (no call
//     is cancelled by an idle shutdown or by Resize; ErrRunnerDown only from
//     a runner that crashed);
//   - callers that queued one after another are served in that order;
//   - every slot is released exactly once: the pool ends quiescent, InUse 0;
//   - every boot ends once, every runner is shut down once, and the totals
//     in Stats match the events;
//   - Close returns nil and no goroutine is left.
//
// The bubble gives virtual time, so the test is fast, but goroutines still
// run in parallel: when many of them wake at the same instant, they race.
func TestPoolInvariantsUnderConcurrency(t *testing.T) {
	if raceEnabled && !checksSet {
		old := flag.Lookup("rapid.checks").Value.String()
		require.NoError(t, flag.Set("rapid.checks", defaultRaceChecks))
		defer func() { _ = flag.Set("rapid.checks", old) }()
	}
	rapid.Check(t, func(t *rapid.T) {
		sc := drawScenario(t)
		rapid.SyncTest(t, func(t *rapid.T) { sc.run(t) })
	})
}

// op is one thing a worker does.
type op struct {
	kind    string        // call, call-timeout, call-cancel, call-unlinked, cast, child
	hold    time.Duration // how long fn runs
	cancel  time.Duration // call-cancel, call-unlinked: when the caller gives up; child: when it is stopped
	timeout time.Duration // call-timeout: WithTimeout
	gap     time.Duration // pause before the op
}

// chaosOp is one disruption.
type chaosOp struct {
	kind     string // crash, resize, boots-fail, boots-heal
	pick     int    // crash: which live runner
	min, max int    // resize
	gap      time.Duration
}

type scenario struct {
	min, max, mc int
	singleUse    bool
	idle         time.Duration
	idleCheck    time.Duration // how long IdleCheck takes
	bootDelays   []time.Duration
	bootFails    []bool
	workers      [][]op
	chaos        []chaosOp
	probe        []time.Duration // FIFO probe: hold times of callers queued one after another
	probeAt      time.Duration
}

var (
	holds   = []time.Duration{0, time.Millisecond, 3 * time.Millisecond, 10 * time.Millisecond, 40 * time.Millisecond}
	gaps    = []time.Duration{0, 0, time.Millisecond, 2 * time.Millisecond, 5 * time.Millisecond}
	cancels = []time.Duration{0, time.Millisecond, 4 * time.Millisecond, 20 * time.Millisecond}
)

func drawScenario(t *rapid.T) *scenario {
	sc := &scenario{
		min:       rapid.IntRange(0, 2).Draw(t, "Min"),
		mc:        rapid.IntRange(1, 3).Draw(t, "MaxConcurrency"),
		singleUse: rapid.IntRange(0, 4).Draw(t, "SingleUse (0: yes)") == 0,
		idle:      rapid.SampledFrom([]time.Duration{2 * time.Millisecond, 7 * time.Millisecond, flame.Infinity}).Draw(t, "IdleShutdownAfter"),
		idleCheck: rapid.SampledFrom([]time.Duration{0, 0, 100 * time.Microsecond, time.Millisecond}).Draw(t, "IdleCheck takes"),
	}
	sc.max = rapid.IntRange(max(1, sc.min), 4).Draw(t, "Max")
	sc.bootDelays = rapid.SliceOfN(rapid.SampledFrom([]time.Duration{0, time.Millisecond, 5 * time.Millisecond}), 1, 4).Draw(t, "boot delays")
	sc.bootFails = rapid.SliceOfN(rapid.Bool(), 1, 4).Draw(t, "boot fails")
	opGen := rapid.Custom(func(t *rapid.T) op {
		o := op{
			kind: rapid.SampledFrom([]string{"call", "call", "call-timeout", "call-cancel", "call-unlinked", "cast", "child"}).Draw(t, "kind"),
			hold: rapid.SampledFrom(holds).Draw(t, "hold"),
			gap:  rapid.SampledFrom(gaps).Draw(t, "gap"),
		}
		switch o.kind {
		case "call-timeout":
			o.timeout = rapid.SampledFrom([]time.Duration{time.Millisecond, 5 * time.Millisecond, 30 * time.Millisecond}).Draw(t, "timeout")
		case "call-cancel", "call-unlinked", "child":
			o.cancel = rapid.SampledFrom(cancels).Draw(t, "cancel")
		}
		return o
	})
	sc.workers = rapid.SliceOfN(rapid.SliceOfN(opGen, 1, 12), 2, 10).Draw(t, "workers")
	chaosGen := rapid.Custom(func(t *rapid.T) chaosOp {
		c := chaosOp{
			kind: rapid.SampledFrom([]string{"crash", "crash", "resize", "boots-fail", "boots-heal"}).Draw(t, "kind"),
			gap:  rapid.SampledFrom([]time.Duration{time.Millisecond, 3 * time.Millisecond, 10 * time.Millisecond}).Draw(t, "gap"),
		}
		switch c.kind {
		case "crash":
			c.pick = rapid.IntRange(0, 3).Draw(t, "pick")
		case "resize":
			c.min = rapid.IntRange(0, 2).Draw(t, "min")
			c.max = rapid.IntRange(max(1, c.min), 4).Draw(t, "max")
		}
		return c
	})
	sc.chaos = rapid.SliceOfN(chaosGen, 0, 8).Draw(t, "chaos")
	sc.probe = rapid.SliceOfN(rapid.SampledFrom(holds[1:]), 0, 5).Draw(t, "probe holds")
	sc.probeAt = rapid.SampledFrom([]time.Duration{0, 2 * time.Millisecond, 10 * time.Millisecond}).Draw(t, "probe at")
	return sc
}

// chaosBackend boots after a delay and fails on a pattern while unhealthy;
// its nodes can crash.
type chaosBackend struct {
	sc      *scenario
	healthy atomic.Bool
	mu      sync.Mutex
	nodes   map[uint64]*node
}

func (b *chaosBackend) Boot(ctx context.Context, spec flame.RunnerSpec) (flame.Node, error) {
	i := int(spec.ID)
	select {
	case <-time.After(b.sc.bootDelays[i%len(b.sc.bootDelays)]):
	case <-ctx.Done():
		return nil, ctx.Err()
	}
	if b.sc.bootFails[i%len(b.sc.bootFails)] && !b.healthy.Load() {
		return nil, errBootFailed
	}
	n := &node{id: spec.ID, done: make(chan struct{})}
	b.mu.Lock()
	b.nodes[spec.ID] = n
	b.mu.Unlock()
	return n, nil
}

// live returns the nodes that have not stopped, by ID.
func (b *chaosBackend) live() []*node {
	b.mu.Lock()
	defer b.mu.Unlock()
	var out []*node
	for _, id := range slices.Sorted(maps.Keys(b.nodes)) {
		select {
		case <-b.nodes[id].done:
		default:
			out = append(out, b.nodes[id])
		}
	}
	return out
}

// invariants collects what the goroutines observe.
type invariants struct {
	mc int

	mu       sync.Mutex
	running  map[uint64]int // fns running, by runner
	crashed  map[uint64]bool
	problems []string
	starts   map[uint64]int // OnGrowStart calls by runner
	ends     map[uint64]string
	shrinks  map[uint64]int
	maxEver  int // the highest Max in force so far
}

func (inv *invariants) fail(format string, args ...any) {
	inv.mu.Lock()
	defer inv.mu.Unlock()
	if len(inv.problems) < 20 {
		inv.problems = append(inv.problems, fmt.Sprintf(format, args...))
	}
}

// enter and leave bracket a fn on runner id.
func (inv *invariants) enter(id uint64) {
	inv.mu.Lock()
	inv.running[id]++
	n := inv.running[id]
	inv.mu.Unlock()
	if n > inv.mc {
		inv.fail("runner #%d runs %d fns at once, MaxConcurrency is %d", id, n, inv.mc)
	}
}

func (inv *invariants) leave(id uint64) {
	inv.mu.Lock()
	inv.running[id]--
	inv.mu.Unlock()
}

// result checks a Call's error against its history.
func (inv *invariants) result(what string, err error, runner uint64, canceled bool) {
	switch {
	case err == nil,
		errors.Is(err, flame.ErrCheckoutTimeout),
		errors.Is(err, flame.ErrTimeout):
	case errors.Is(err, flame.ErrIdleShutdown), errors.Is(err, flame.ErrResized), errors.Is(err, flame.ErrSingleUse):
		inv.fail("%s: cancelled by the pool shrinking: %v", what, err)
	case errors.Is(err, flame.ErrRunnerDown):
		inv.mu.Lock()
		crashed := inv.crashed[runner]
		inv.mu.Unlock()
		if !crashed {
			inv.fail("%s: ErrRunnerDown from runner #%d, which did not crash: %v", what, runner, err)
		}
	case errors.Is(err, context.Canceled):
		if !canceled {
			inv.fail("%s: context.Canceled but its ctx was not cancelled: %v", what, err)
		}
	default:
		inv.fail("%s: unexpected error %v", what, err)
	}
}

func (sc *scenario) run(t *rapid.T) {
	synctest.Wait()
	baseline := bubbleGoroutines()
	inv := &invariants{mc: sc.mc, running: map[uint64]int{}, crashed: map[uint64]bool{},
		starts: map[uint64]int{}, ends: map[uint64]string{}, shrinks: map[uint64]int{}, maxEver: sc.max}
	be := &chaosBackend{sc: sc, nodes: map[uint64]*node{}}
	be.healthy.Store(true) // NewPool's Min boots must succeed
	cfg := flame.Config{
		Name: "concurrent", Min: sc.min, Max: sc.max, MaxConcurrency: sc.mc, SingleUse: sc.singleUse,
		Backend: be, Timeout: 25 * time.Millisecond, BootTimeout: 20 * time.Millisecond,
		ShutdownTimeout: time.Millisecond, IdleShutdownAfter: sc.idle, MinIdleShutdownAfter: 3 * time.Millisecond,
		IdleCheck: func() bool {
			runtime.Gosched()
			if sc.idleCheck > 0 {
				time.Sleep(sc.idleCheck) // checkouts land meanwhile
			}
			return true
		},
		OnGrowStart: func(ev flame.GrowEvent) {
			inv.mu.Lock()
			inv.starts[ev.RunnerID]++
			bound := inv.maxEver
			inv.mu.Unlock()
			if ev.Count > bound {
				inv.fail("boot #%d starts with %d runners booted or booting, Max is at most %d", ev.RunnerID, ev.Count, bound)
			}
		},
		OnGrowEnd: func(ev flame.GrowEvent, err error) {
			inv.mu.Lock()
			defer inv.mu.Unlock()
			if _, dup := inv.ends[ev.RunnerID]; dup {
				inv.problems = append(inv.problems, fmt.Sprintf("boot #%d ends twice", ev.RunnerID))
			}
			switch {
			case err == nil:
				inv.ends[ev.RunnerID] = model.GrowOK
			case errors.Is(err, flame.ErrBootCanceled):
				inv.ends[ev.RunnerID] = model.GrowCanceled
			default:
				inv.ends[ev.RunnerID] = model.GrowFailed
			}
		},
		OnShrink: func(ev flame.ShrinkEvent) {
			inv.mu.Lock()
			inv.shrinks[ev.RunnerID]++
			inv.mu.Unlock()
		},
	}
	p, err := flame.NewPool(cfg)
	if err != nil {
		t.Fatalf("NewPool: %v", err)
	}
	be.healthy.Store(false)
	var closeOnce sync.Once
	closePool := func() error {
		var err error
		closeOnce.Do(func() { err = p.Close(context.Background()) })
		return err
	}
	t.Cleanup(func() { _ = closePool() })

	var wg sync.WaitGroup
	fn := func(hold time.Duration) func(context.Context) error {
		return func(ctx context.Context) error {
			id, _ := flame.RunnerID(ctx)
			inv.enter(id)
			defer inv.leave(id)
			select {
			case <-time.After(hold):
				return nil
			case <-ctx.Done():
				return ctx.Err()
			}
		}
	}
	runner := func(ctx context.Context) uint64 { id, _ := flame.RunnerID(ctx); return id }
	for w, ops := range sc.workers {
		wg.Go(func() {
			for i, o := range ops {
				time.Sleep(o.gap)
				what := fmt.Sprintf("worker %d op %d (%s)", w, i, o.kind)
				var got uint64
				record := func(hold time.Duration) func(context.Context) error {
					inner := fn(hold)
					return func(ctx context.Context) error { got = runner(ctx); return inner(ctx) }
				}
				switch o.kind {
				case "call":
					inv.result(what, p.Call(context.Background(), record(o.hold)), got, false)
				case "call-timeout":
					inv.result(what, p.Call(context.Background(), record(o.hold), flame.WithTimeout(o.timeout)), got, false)
				case "call-cancel", "call-unlinked":
					ctx, cancel := context.WithCancel(context.Background())
					stop := time.AfterFunc(o.cancel, cancel)
					var opts []flame.CallOption
					if o.kind == "call-unlinked" {
						opts = append(opts, flame.WithLink(false))
					}
					var mu sync.Mutex
					fnc := func(ctx context.Context) error {
						mu.Lock()
						got = runner(ctx)
						mu.Unlock()
						return fn(o.hold)(ctx)
					}
					err := p.Call(ctx, fnc, opts...)
					stop.Stop()
					mu.Lock()
					inv.result(what, err, got, ctx.Err() != nil)
					mu.Unlock()
					cancel()
				case "cast":
					if err := p.Cast(context.Background(), fn(o.hold)); err != nil {
						inv.fail("%s: Cast returned %v", what, err)
					}
				case "child":
					c, err := p.PlaceChild(context.Background(), fn(o.hold+o.cancel))
					if err != nil {
						inv.result(what, err, 0, false)
						continue
					}
					time.Sleep(o.cancel)
					c.Stop()
					if err := c.Err(); err != nil && !errors.Is(err, context.Canceled) {
						inv.result(what+" child", err, c.RunnerID(), false)
					}
				}
			}
		})
	}
	wg.Go(func() { // chaos
		for _, c := range sc.chaos {
			time.Sleep(c.gap)
			switch c.kind {
			case "crash":
				if live := be.live(); len(live) > 0 {
					n := live[c.pick%len(live)]
					inv.mu.Lock()
					inv.crashed[n.id] = true
					inv.mu.Unlock()
					n.stop()
				}
			case "resize":
				inv.mu.Lock()
				inv.maxEver = max(inv.maxEver, c.max)
				inv.mu.Unlock()
				if err := p.Resize(c.min, c.max); err != nil {
					inv.fail("Resize(%d, %d): %v", c.min, c.max, err)
				}
			case "boots-fail":
				be.healthy.Store(false)
			case "boots-heal":
				be.healthy.Store(true)
			}
		}
	})
	sc.runProbe(p, inv)
	wg.Wait()

	// Let the casts still queued or running finish: boots now succeed.
	be.healthy.Store(true)
	if err := p.Resize(sc.min, sc.max); err != nil {
		t.Fatalf("Resize back: %v", err)
	}
	for range 100 {
		synctest.Wait()
		if st := p.Stats(); st.Waiting == 0 && st.InUse == 0 {
			break
		}
		time.Sleep(100 * time.Millisecond)
	}
	st := p.Stats()
	if st.InUse != 0 || st.Waiting != 0 {
		t.Fatalf("the pool did not become quiescent: %+v", st)
	}
	for _, l := range st.RunnerLoads {
		if l.Load != 0 {
			t.Fatalf("runner #%d keeps load %d with nothing running: %+v", l.ID, l.Load, st)
		}
	}
	inv.mu.Lock()
	for id, n := range inv.running {
		if n != 0 {
			inv.problems = append(inv.problems, fmt.Sprintf("runner #%d: %d fns still running", id, n))
		}
	}
	inv.mu.Unlock()

	if err := closePool(); err != nil {
		t.Fatalf("Close: %v", err)
	}
	synctest.Wait()
	sc.checkEnd(t, p, be, inv)
	if n := bubbleGoroutines() - baseline; n != 0 {
		t.Fatalf("%d goroutines left after Close returned", n)
	}
	if len(inv.problems) > 0 {
		t.Fatalf("invariants broken:\n  %s", joinLines(inv.problems))
	}
}

// runProbe queues callers one after another (each starts only once the one
// before it is queued) and checks that they are served in that order: no
// caller starts while one that queued before it still waits.
func (sc *scenario) runProbe(p *flame.Pool, inv *invariants) {
	if len(sc.probe) == 0 {
		return
	}
	type probeCall struct {
		queued          bool
		started, ended  time.Time // fn start, Call return
		startOK, failed bool
		runner          uint64
	}
	calls := make([]*probeCall, len(sc.probe))
	var mu sync.Mutex
	var pw sync.WaitGroup
	func() {
		time.Sleep(sc.probeAt)
		for i, hold := range sc.probe {
			c := &probeCall{}
			calls[i] = c
			pw.Go(func() {
				err := p.Call(context.Background(), func(ctx context.Context) error {
					mu.Lock()
					c.started, c.startOK = time.Now(), true
					c.runner, _ = flame.RunnerID(ctx)
					mu.Unlock()
					return fn0(ctx, hold, inv)
				}, flame.WithTimeout(200*time.Millisecond)) // long timers in a bubble make -race crash far more often (golang/go#78156)
				mu.Lock()
				c.ended, c.failed = time.Now(), !c.startOK
				runner := c.runner
				mu.Unlock()
				inv.result(fmt.Sprintf("probe %d", i), err, runner, false)
			})
			// Virtual time moves on only once every goroutine of the bubble is
			// blocked: after this the call has its slot, or is queued.
			time.Sleep(time.Nanosecond)
			mu.Lock()
			c.queued = !c.startOK && c.ended.IsZero()
			mu.Unlock()
		}
		pw.Wait()
		mu.Lock()
		defer mu.Unlock()
		for j, cj := range calls {
			if !cj.queued || !cj.startOK {
				continue
			}
			for i, ci := range calls[:j] {
				if !ci.queued {
					continue
				}
				waitedUntil := ci.started
				if !ci.startOK {
					waitedUntil = ci.ended
				}
				if waitedUntil.After(cj.started) {
					inv.fail("FIFO: probe %d queued before probe %d but was still waiting when %d started", i, j, j)
				}
			}
		}
	}()
}

// fn0 is a fn that holds its slot for hold.
func fn0(ctx context.Context, hold time.Duration, inv *invariants) error {
	id, _ := flame.RunnerID(ctx)
	inv.enter(id)
	defer inv.leave(id)
	select {
	case <-time.After(hold):
		return nil
	case <-ctx.Done():
		return ctx.Err()
	}
}

// checkEnd checks the pool after Close.
func (sc *scenario) checkEnd(t *rapid.T, p *flame.Pool, be *chaosBackend, inv *invariants) {
	st := p.Stats()
	if st.Runners != 0 || st.Pending != 0 || st.InUse != 0 || len(st.RunnerLoads) != 0 {
		t.Fatalf("after Close: %+v", st)
	}
	if live := be.live(); len(live) != 0 {
		t.Fatalf("after Close, %d nodes were never shut down", len(live))
	}
	inv.mu.Lock()
	defer inv.mu.Unlock()
	var ok, failed uint64
	for id, n := range inv.starts {
		end, done := inv.ends[id]
		switch {
		case n != 1:
			inv.problems = append(inv.problems, fmt.Sprintf("boot #%d: %d OnGrowStart calls", id, n))
		case !done:
			inv.problems = append(inv.problems, fmt.Sprintf("boot #%d never ended", id))
		case end == model.GrowOK:
			ok++
		case end == model.GrowFailed:
			failed++
		}
	}
	for id := range inv.ends {
		if inv.starts[id] == 0 {
			inv.problems = append(inv.problems, fmt.Sprintf("boot #%d ended without OnGrowStart", id))
		}
	}
	for id, n := range inv.shrinks {
		if n != 1 {
			inv.problems = append(inv.problems, fmt.Sprintf("runner #%d: %d OnShrink calls", id, n))
		}
	}
	if want := uint64(sc.min) + ok; st.Booted != want {
		inv.problems = append(inv.problems, fmt.Sprintf("Booted = %d, but Min + successful OnGrowEnd = %d", st.Booted, want))
	}
	if st.BootFailures != failed {
		inv.problems = append(inv.problems, fmt.Sprintf("BootFailures = %d, but failed OnGrowEnd = %d", st.BootFailures, failed))
	}
	if st.Shrunk != uint64(len(inv.shrinks)) || st.Shrunk != st.Booted {
		inv.problems = append(inv.problems, fmt.Sprintf("Shrunk = %d, OnShrink for %d runners, Booted = %d", st.Shrunk, len(inv.shrinks), st.Booted))
	}
}

func joinLines(s []string) string {
	out := ""
	for i, l := range s {
		if i > 0 {
			out += "\n  "
		}
		out += l
	}
	return out
}
