package proptest

import (
	"fmt"
	"sync/atomic"
	"testing"
	"testing/synctest"
	"time"

	"pgregory.net/rapid"

	"github.com/goflame/goflame/flame"
	"github.com/goflame/goflame/internal/placement"
	"github.com/goflame/goflame/proptest/model"
)

// TestPoolMatchesModel drives the real pool and the reference model through
// the same random histories and compares them after every step.
//
// Each check runs in its own testing/synctest bubble: time is virtual, a
// step is "do one thing, then synctest.Wait() until the pool has settled",
// and boots are steps too (the test's Backend blocks every Boot until the
// test completes or fails it). Every step first lets one tick of virtual
// time pass, so that no two steps happen at the same instant.
//
// Placement among equally loaded runners starts from a random position in
// the pool (SPEC §3.2); here every step draws that position and gives the
// same one to the pool (through placement.SetStart) and the model.
func TestPoolMatchesModel(t *testing.T) {
	defer placement.SetStart(func(int) int { return int(placeStart.Load()) })()
	rapid.Check(t, func(t *rapid.T) {
		rapid.SyncTest(t, func(t *rapid.T) {
			ls := newLockstep(t)
			t.Repeat(ls.actions())
			ls.teardown(t)
		})
	})
}

// advanceSteps are the amounts of virtual time an "advance" step lets pass:
// around the retry delay, the short timeouts, the boot and execution
// limits, and the idle periods.
var advanceSteps = []time.Duration{
	300 * time.Millisecond, 700 * time.Millisecond, 998 * time.Millisecond, time.Second,
	1002 * time.Millisecond, 1500 * time.Millisecond, 3 * time.Second, 3002 * time.Millisecond,
	4 * time.Second, 4002 * time.Millisecond, 5 * time.Second, 5002 * time.Millisecond,
	7 * time.Second, 15 * time.Second,
}

// placeStart is where the pool's claims start their search in this step.
var placeStart atomic.Int64

// lockstep holds one check: the model, the pool side, and what only the
// test knows.
type lockstep struct {
	m          *model.Model
	o          *ops
	idleCheck  bool            // Config.IdleCheck is set (scripted by the test)
	hung       map[uint64]bool // boots the test will never end: they hit BootTimeout
	resizes    [2][]model.Outcome
	goroutines int // before NewPool
}

func newLockstep(t *rapid.T) *lockstep {
	min := rapid.IntRange(0, 2).Draw(t, "Min")
	max := rapid.IntRange(max(1, min), 4).Draw(t, "Max")
	mc := rapid.IntRange(1, 3).Draw(t, "MaxConcurrency")
	singleUse := rapid.IntRange(0, 4).Draw(t, "SingleUse (0: yes)") == 0
	idle := rapid.SampledFrom([]time.Duration{idlePeriod, flame.Infinity}).Draw(t, "IdleShutdownAfter")
	minIdle := rapid.SampledFrom([]time.Duration{flame.Infinity, minIdlePeriod}).Draw(t, "MinIdleShutdownAfter")
	if min > 1 {
		// NewPool's Min runners all start their idle period at once: with
		// two of them, their idle shutdowns (and OnShrink calls) would race.
		minIdle = flame.Infinity
	}
	idleCheck := rapid.Bool().Draw(t, "IdleCheck set")

	ls := &lockstep{
		o:         &ops{backend: newBackend(), events: &eventLog{}},
		idleCheck: idleCheck,
		hung:      map[uint64]bool{},
	}
	cfg := flame.Config{
		Name: "proptest", Min: min, Max: max, MaxConcurrency: mc, SingleUse: singleUse,
		Backend: ls.o.backend, Timeout: execTimeout, BootTimeout: bootTimeout,
		ShutdownTimeout: time.Second, IdleShutdownAfter: idle, MinIdleShutdownAfter: minIdle,
	}
	mcfg := model.Config{
		Min: min, Max: max, MaxConcurrency: mc, SingleUse: singleUse,
		Timeout: execTimeout, BootTimeout: bootTimeout,
		IdleShutdownAfter: idle, MinIdleShutdownAfter: minIdle,
		ClockSlack: clockSlack, GrowStartDelay: growStartDelay,
	}
	if idleCheck {
		// The first idle check may start a call: it must not land on a
		// runner that then shuts down (SPEC §3.7, the atomic claim).
		s := idleScript{answer: true, startCall: rapid.Bool().Draw(t, "first IdleCheck starts a call")}
		ls.o.idle = s
		cfg.IdleCheck = ls.o.idleCheck
		mcfg.IdleCheck = &modelIdleCheck{script: s}
	}
	ls.o.events.install(&cfg)
	t.Logf("Config{Min: %d, Max: %d, MaxConcurrency: %d, SingleUse: %v, IdleShutdownAfter: %v, MinIdleShutdownAfter: %v, IdleCheck set: %v}",
		min, max, mc, singleUse, idle, minIdle, idleCheck)

	synctest.Wait()
	ls.goroutines = bubbleGoroutines()
	ls.o.backend.auto = true // NewPool's Min boots succeed at once
	p, err := flame.NewPool(cfg)
	if err != nil {
		t.Fatalf("NewPool: %v", err)
	}
	ls.o.backend.mu.Lock()
	ls.o.backend.auto = false
	ls.o.backend.mu.Unlock()
	ls.o.pool = p
	t.Cleanup(ls.o.abandon)
	ls.m = model.New(mcfg)
	synctest.Wait()
	return ls
}

// step tries act on a copy of the model after one tick (pre) of virtual
// time. act draws what it needs, applies it to the model and returns what
// to log and what to do to the pool. If the model met a tie whose outcome
// the pool does not fix, the step is dropped (and rapid draws another);
// otherwise the pool lives through the same tick, does the same thing and
// settles, and the copy becomes the model.
func (ls *lockstep) step(t *rapid.T, pre time.Duration, act func(m *model.Model) (string, func())) {
	start := rapid.IntRange(0, 11).Draw(t, "placement start") // 12: every pool size up to 4 divides it
	m := ls.m.Clone()
	m.PlaceFrom(start)
	placeStart.Store(int64(start))
	m.Advance(pre)
	what, onPool := act(m)
	if m.Ambiguity() != "" {
		t.SkipNow()
	}
	if pre > 0 {
		time.Sleep(pre)
		synctest.Wait()
	}
	onPool()
	synctest.Wait()
	ls.m = m
	t.Logf("[%v] %s", m.Now(), what)
}

// pick draws one of xs, or skips the step when there is none.
func pick[T any](t *rapid.T, label string, xs []T) T {
	if len(xs) == 0 {
		t.SkipNow()
	}
	return rapid.SampledFrom(xs).Draw(t, label)
}

func worksWhere(m *model.Model, keep func(model.Work) bool) []int {
	var ids []int
	for _, w := range m.Works() {
		if keep(w) {
			ids = append(ids, w.ID)
		}
	}
	return ids
}

func (ls *lockstep) actions() map[string]func(*rapid.T) {
	start := func(spec func(t *rapid.T) model.Spec) func(*rapid.T) {
		return func(t *rapid.T) {
			s := spec(t)
			ls.step(t, tick, func(m *model.Model) (string, func()) {
				id := m.Start(s)
				return fmt.Sprintf("work %d: start %v", id, s), func() { ls.o.start(s) }
			})
		}
	}
	return map[string]func(*rapid.T){
		"": ls.check,

		// A Call whose fn holds its slot until released.
		"call": start(func(*rapid.T) model.Spec { return model.Spec{Kind: model.KindCall} }),
		// A Call with WithTimeout: short checkout wait and execution limit.
		"call_short_timeout": start(func(t *rapid.T) model.Spec {
			d := rapid.SampledFrom([]time.Duration{shortTimeoutA, shortTimeoutB}).Draw(t, "timeout")
			return model.Spec{Kind: model.KindCall, Timeout: d}
		}),
		// A Call with WithLink(false).
		"call_unlinked": start(func(*rapid.T) model.Spec { return model.Spec{Kind: model.KindCall, Unlinked: true} }),
		"cast": start(func(t *rapid.T) model.Spec {
			d := rapid.SampledFrom([]time.Duration{0, shortTimeoutA}).Draw(t, "timeout")
			return model.Spec{Kind: model.KindCast, Timeout: d, Unlinked: rapid.Bool().Draw(t, "unlinked")}
		}),
		"place_child": start(func(t *rapid.T) model.Spec {
			d := rapid.SampledFrom([]time.Duration{0, shortTimeoutA}).Draw(t, "timeout")
			return model.Spec{Kind: model.KindChild, Timeout: d}
		}),

		// fn returns nil.
		"release": func(t *rapid.T) {
			ls.step(t, tick, func(m *model.Model) (string, func()) {
				id := pick(t, "work", worksWhere(m, func(w model.Work) bool { return w.Phase == model.Running }))
				m.Finish(id)
				return fmt.Sprintf("work %d: fn returns nil", id), func() { ls.o.finish(id) }
			})
		},
		"stop_child": func(t *rapid.T) {
			ls.step(t, tick, func(m *model.Model) (string, func()) {
				id := pick(t, "child", worksWhere(m, func(w model.Work) bool {
					return w.Phase == model.Running && w.Spec.Kind == model.KindChild
				}))
				m.StopChild(id)
				return fmt.Sprintf("work %d: Child.Stop", id), func() { ls.o.stopChild(id) }
			})
		},
		// The caller's ctx is cancelled, whether it waits or runs.
		"cancel": func(t *rapid.T) {
			ls.step(t, tick, func(m *model.Model) (string, func()) {
				id := pick(t, "work", worksWhere(m, func(w model.Work) bool { return w.Phase != model.Over && !w.CtxDone }))
				m.Cancel(id)
				return fmt.Sprintf("work %d: caller's ctx cancelled", id), func() { ls.o.work(id).cancel() }
			})
		},

		"boot_complete": func(t *rapid.T) {
			ls.step(t, tick, func(m *model.Model) (string, func()) {
				id := pick(t, "boot", ls.liveBoots(m))
				m.CompleteBoot(id)
				return fmt.Sprintf("boot #%d: Backend.Boot returns a node", id), func() { ls.o.backend.resolve(id, nil) }
			})
		},
		"boot_fail": func(t *rapid.T) {
			ls.step(t, tick, func(m *model.Model) (string, func()) {
				id := pick(t, "boot", ls.liveBoots(m))
				m.FailBoot(id)
				return fmt.Sprintf("boot #%d: Backend.Boot fails", id), func() { ls.o.backend.resolve(id, errBootFailed) }
			})
		},
		// The boot never ends by itself: BootTimeout will fail it.
		"boot_hang": func(t *rapid.T) {
			ls.step(t, tick, func(m *model.Model) (string, func()) {
				id := pick(t, "boot", ls.liveBoots(m))
				return fmt.Sprintf("boot #%d: hangs", id), func() { ls.hung[id] = true }
			})
		},
		"crash": func(t *rapid.T) {
			ls.step(t, tick, func(m *model.Model) (string, func()) {
				id := pick(t, "runner", m.RunnerIDs())
				m.Crash(id)
				return fmt.Sprintf("runner #%d: node crashes", id), func() { ls.o.backend.node(id).stop() }
			})
		},

		"advance": func(t *rapid.T) {
			d := rapid.SampledFrom(advanceSteps).Draw(t, "by")
			ls.step(t, 0, func(m *model.Model) (string, func()) {
				m.Advance(d)
				return fmt.Sprintf("%v pass", d), func() { time.Sleep(d) }
			})
		},
		"resize": func(t *rapid.T) {
			min := rapid.IntRange(0, 3).Draw(t, "min")
			max := rapid.IntRange(0, 4).Draw(t, "max")
			ls.step(t, tick, func(m *model.Model) (string, func()) {
				res := m.Resize(min, max)
				return fmt.Sprintf("Resize(%d, %d) returns %s", min, max, res), func() {
					ls.resizes[0] = append(ls.resizes[0], res)
					ls.resizes[1] = append(ls.resizes[1], classify(ls.o.pool.Resize(min, max)))
				}
			})
		},
		"close": func(t *rapid.T) {
			d := rapid.SampledFrom([]time.Duration{closeLong, closeShort}).Draw(t, "ctx timeout")
			ls.step(t, tick, func(m *model.Model) (string, func()) {
				i := m.Close(d)
				return fmt.Sprintf("close %d: Close with a ctx that ends in %v", i+1, d), func() { ls.o.close(d) }
			})
		},
		// Script the user's IdleCheck: its answer, and whether the next
		// check starts a Call while the pool waits for the answer.
		"idle_check": func(t *rapid.T) {
			if !ls.idleCheck {
				t.SkipNow()
			}
			s := idleScript{answer: rapid.Bool().Draw(t, "answer"), startCall: rapid.Bool().Draw(t, "starts a call")}
			ls.step(t, tick, func(m *model.Model) (string, func()) {
				m.Config().IdleCheck.(*modelIdleCheck).script = s
				return fmt.Sprintf("IdleCheck now answers %v (starts a call: %v)", s.answer, s.startCall), func() {
					ls.o.mu.Lock()
					ls.o.idle = s
					ls.o.mu.Unlock()
				}
			})
		},
	}
}

// liveBoots are the pending boots the test may still end.
func (ls *lockstep) liveBoots(m *model.Model) []uint64 {
	var ids []uint64
	for _, id := range m.BootsInBackend() {
		if !ls.hung[id] {
			ids = append(ids, id)
		}
	}
	return ids
}

// check compares the pool with the model.
func (ls *lockstep) check(t *rapid.T) {
	want, got := modelSnapshot(ls.m), ls.o.snapshot()
	for i := range ls.resizes[0] {
		want = append(want, fmt.Sprintf("resize %d: returned %s", i+1, ls.resizes[0][i]))
		got = append(got, fmt.Sprintf("resize %d: returned %s", i+1, ls.resizes[1][i]))
	}
	if d := diff(want, got); d != "" {
		t.Fatalf("after the last step, the pool differs from the model:\n%s", d)
	}
	if d := eventsDiff(ls.m.Events(), ls.o.events.get()); d != "" {
		t.Fatalf("after the last step, the pool's events differ from the model's:\n%s", d)
	}
}

// teardown ends the history: Close (if no step did), then every fn
// returns, every boot still pending completes, and time passes until Close
// has returned. The pool must then match the model, and no goroutine may be
// left.
func (ls *lockstep) teardown(t *rapid.T) {
	t.Logf("teardown")
	if !ls.m.Closing() {
		ls.step(t, tick, func(m *model.Model) (string, func()) {
			i := m.Close(closeLong)
			return fmt.Sprintf("close %d: Close with a ctx that ends in %v", i+1, closeLong), func() { ls.o.close(closeLong) }
		})
		ls.check(t)
	}
	for range 1000 {
		running := worksWhere(ls.m, func(w model.Work) bool { return w.Phase == model.Running })
		boots := ls.m.BootsInBackend()
		switch {
		case len(running) > 0:
			id := running[0]
			ls.step(t, tick, func(m *model.Model) (string, func()) {
				if m.Work(id).Phase != model.Running {
					return fmt.Sprintf("work %d has ended meanwhile", id), func() {}
				}
				m.Finish(id)
				return fmt.Sprintf("work %d: fn returns nil", id), func() { ls.o.finish(id) }
			})
		case len(boots) > 0:
			id := boots[0]
			ls.step(t, tick, func(m *model.Model) (string, func()) {
				if !containsID(m.BootsInBackend(), id) {
					return fmt.Sprintf("boot #%d has ended meanwhile", id), func() {}
				}
				m.CompleteBoot(id)
				return fmt.Sprintf("boot #%d: Backend.Boot returns a node", id), func() { ls.o.backend.resolve(id, nil) }
			})
		case !ls.m.Stopped():
			ls.step(t, 0, func(m *model.Model) (string, func()) {
				m.Advance(closeLong)
				return fmt.Sprintf("%v pass", closeLong), func() { time.Sleep(closeLong) }
			})
		default:
			ls.check(t)
			ls.o.running.Wait()
			synctest.Wait()
			if n := bubbleGoroutines() - ls.goroutines; n != 0 {
				t.Fatalf("%d goroutines left after Close returned", n)
			}
			return
		}
		ls.check(t)
	}
	t.Fatalf("teardown did not end")
}

func containsID(ids []uint64, id uint64) bool {
	for _, x := range ids {
		if x == id {
			return true
		}
	}
	return false
}
