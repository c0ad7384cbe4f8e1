package peers

import (
	"context"
	"errors"
	"math/rand/v2"
	"runtime"
	"sync"
	"sync/atomic"
	"testing"
	"testing/synctest"
	"time"

	"go.uber.org/goleak"
)

func TestMain(m *testing.M) { goleak.VerifyTestMain(m) }

// impl describes one baseline and which of the shared properties it promises.
type impl struct {
	name string
	new  func(runners, slotsPerRunner int) Pool
	// spreads: Slot.Runner names a real runner holding at most slotsPerRunner slots.
	// Without it every slot reports runner 0 (semaphore).
	spreads bool
	// fifo: waiters that queue one after another are served in that order.
	fifo bool
	// leastLoaded: a free slot is taken on the least-loaded runner, ties to the lowest.
	leastLoaded bool
	// closeFailsWaiters: Close makes blocked Acquires return ErrClosed.
	closeFailsWaiters bool
	// closeRejects: Acquire after Close returns ErrClosed.
	closeRejects bool
	// handsOff: a release hands the slot to a queued waiter before that waiter runs
	// again, so the waiter can see both the slot and its ctx done.
	handsOff bool
}

// instantBoot boots a growing actor's runner at once.
func instantBoot(context.Context) {}

var impls = []impl{
	{name: "actor", new: NewActor, spreads: true, fifo: true, leastLoaded: true,
		closeFailsWaiters: true, closeRejects: true, handsOff: true},
	{name: "actor-growing", new: func(runners, slots int) Pool {
		return NewActorGrowing(runners, slots, instantBoot)
	}, spreads: true, fifo: true, closeFailsWaiters: true, closeRejects: true, handsOff: true},
	{name: "semaphore", new: NewSemaphore, fifo: true},
	{name: "puddle", new: NewPuddle, spreads: true, closeRejects: true},
	{name: "mutex", new: NewMutex, spreads: true, fifo: true, leastLoaded: true,
		closeFailsWaiters: true, closeRejects: true, handsOff: true},
}

// forEach runs f as a subtest for every implementation that satisfies want.
func forEach(t *testing.T, want func(impl) bool, f func(t *testing.T, im impl)) {
	for _, im := range impls {
		if want != nil && !want(im) {
			continue
		}
		t.Run(im.name, func(t *testing.T) { f(t, im) })
	}
}

const (
	testRunners  = 3
	testSlots    = 2
	testCapacity = testRunners * testSlots
)

// acquireN takes n slots, each within timeout. Inside a synctest bubble the timeout is
// virtual, so a leaked slot shows up as a prompt failure rather than a hang.
func acquireN(t *testing.T, p Pool, n int, timeout time.Duration) []Slot {
	t.Helper()
	held := make([]Slot, 0, n)
	for i := range n {
		ctx, cancel := context.WithTimeout(context.Background(), timeout)
		s, err := p.Acquire(ctx)
		cancel()
		if err != nil {
			t.Fatalf("acquire %d of %d: %v", i+1, n, err)
		}
		held = append(held, s)
	}
	return held
}

func releaseAll(p Pool, held []Slot) {
	for _, s := range held {
		p.Release(s)
	}
}

// checkIntact asserts that exactly capacity slots can be held at once, spread as the
// implementation promises: no slot was leaked and none was invented.
func checkIntact(t *testing.T, im impl, p Pool, capacity int, timeout time.Duration) {
	t.Helper()
	held := acquireN(t, p, capacity, timeout)
	defer releaseAll(p, held)
	perRunner := map[int]int{}
	for _, s := range held {
		perRunner[s.Runner]++
	}
	for r, n := range perRunner {
		if im.spreads && n > testSlots || !im.spreads && r != 0 {
			t.Errorf("runner %d holds %d slots (spreads=%v)", r, n, im.spreads)
		}
	}
	ctx, cancel := context.WithTimeout(context.Background(), timeout/100)
	defer cancel()
	if s, err := p.Acquire(ctx); err == nil {
		p.Release(s)
		t.Errorf("acquired slot %d beyond capacity %d (runner %d)", capacity+1, capacity, s.Runner)
	} else if !errors.Is(err, context.DeadlineExceeded) {
		t.Errorf("acquire beyond capacity: got %v, want context.DeadlineExceeded", err)
	}
}

// TestNeverMoreThanCapacityHeld hammers each pool from many goroutines, some of which give
// up after a few microseconds, and checks per-runner and total occupancy on every
// acquire. It runs on the real scheduler so -race sees real interleavings.
func TestNeverMoreThanCapacityHeld(t *testing.T) {
	forEach(t, nil, func(t *testing.T, im impl) {
		p := im.new(testRunners, testSlots)
		defer p.Close()
		perRunnerCap := int32(testSlots)
		if !im.spreads {
			perRunnerCap = testCapacity
		}
		var (
			held  [testRunners]atomic.Int32
			total atomic.Int32
			wg    sync.WaitGroup
		)
		const goroutines, iters = 12, 300
		for g := range goroutines {
			wg.Go(func() {
				for i := range iters {
					ctx, cancel := context.Background(), context.CancelFunc(func() {})
					if (g+i)%3 == 0 { // a third of the calls give up quickly
						ctx, cancel = context.WithTimeout(ctx, time.Duration(rand.IntN(20))*time.Microsecond)
					}
					s, err := p.Acquire(ctx)
					cancel()
					if err != nil {
						if !errors.Is(err, context.DeadlineExceeded) {
							t.Errorf("acquire: %v", err)
							return
						}
						continue
					}
					if s.Runner < 0 || s.Runner >= testRunners {
						t.Errorf("runner %d out of range", s.Runner)
						return
					}
					if n := held[s.Runner].Add(1); n > perRunnerCap {
						t.Errorf("runner %d holds %d slots, cap %d", s.Runner, n, perRunnerCap)
					}
					if n := total.Add(1); n > testCapacity {
						t.Errorf("%d slots held, capacity %d", n, testCapacity)
					}
					runtime.Gosched()
					held[s.Runner].Add(-1)
					total.Add(-1)
					p.Release(s)
				}
			})
		}
		wg.Wait()
		checkIntact(t, im, p, testCapacity, 5*time.Second)
	})
}

// TestReleasedSlotReachesBlockedWaiter: with every slot taken, a release wakes the waiter
// and hands it that very slot.
func TestReleasedSlotReachesBlockedWaiter(t *testing.T) {
	forEach(t, nil, func(t *testing.T, im impl) {
		synctest.Test(t, func(t *testing.T) {
			p := im.new(testRunners, testSlots)
			defer p.Close()
			held := acquireN(t, p, testCapacity, time.Second)
			got := make(chan Slot, 1)
			go func() {
				s, err := p.Acquire(context.Background())
				if err != nil {
					t.Errorf("waiter: %v", err)
				}
				got <- s
			}()
			synctest.Wait()
			select {
			case s := <-got:
				t.Fatalf("waiter got runner %d from a full pool", s.Runner)
			default:
			}
			released := held[4]
			held = append(held[:4], held[5:]...)
			p.Release(released)
			synctest.Wait()
			select {
			case s := <-got:
				if im.spreads && s.Runner != released.Runner {
					t.Errorf("waiter got runner %d, want the released runner %d", s.Runner, released.Runner)
				}
				held = append(held, s)
			default:
				t.Fatal("release did not reach the blocked waiter")
			}
			releaseAll(p, held)
			checkIntact(t, im, p, testCapacity, time.Second)
		})
	})
}

// TestAcquireWithDoneCtxReturnsCtxErrAndLeaksNothing covers every way a ctx can end
// around Acquire.
func TestAcquireWithDoneCtxReturnsCtxErrAndLeaksNothing(t *testing.T) {
	forEach(t, nil, func(t *testing.T, im impl) {
		t.Run("done-before-call-free-pool", func(t *testing.T) {
			synctest.Test(t, func(t *testing.T) {
				p := im.new(testRunners, testSlots)
				defer p.Close()
				ctx, cancel := context.WithCancel(context.Background())
				cancel()
				if _, err := p.Acquire(ctx); !errors.Is(err, context.Canceled) {
					t.Fatalf("got %v, want context.Canceled", err)
				}
				checkIntact(t, im, p, testCapacity, time.Second)
			})
		})
		t.Run("cancelled-while-waiting", func(t *testing.T) {
			synctest.Test(t, func(t *testing.T) {
				p := im.new(testRunners, testSlots)
				defer p.Close()
				held := acquireN(t, p, testCapacity, time.Second)
				ctx, cancel := context.WithCancel(context.Background())
				errc := make(chan error, 1)
				go func() {
					_, err := p.Acquire(ctx)
					errc <- err
				}()
				synctest.Wait()
				cancel()
				if err := <-errc; !errors.Is(err, context.Canceled) {
					t.Fatalf("got %v, want context.Canceled", err)
				}
				releaseAll(p, held)
				checkIntact(t, im, p, testCapacity, time.Second)
			})
		})
		t.Run("deadline-while-waiting", func(t *testing.T) {
			synctest.Test(t, func(t *testing.T) {
				p := im.new(testRunners, testSlots)
				defer p.Close()
				held := acquireN(t, p, testCapacity, time.Second)
				ctx, cancel := context.WithTimeout(context.Background(), time.Second)
				defer cancel()
				start := time.Now()
				if _, err := p.Acquire(ctx); !errors.Is(err, context.DeadlineExceeded) {
					t.Fatalf("got %v, want context.DeadlineExceeded", err)
				}
				if waited := time.Since(start); waited != time.Second {
					t.Errorf("waited %v, want 1s", waited)
				}
				releaseAll(p, held)
				checkIntact(t, im, p, testCapacity, time.Second)
			})
		})
	})
}

// TestGivingUpAsASlotIsHandedOverLosesNoSlot races a waiter's cancellation against the
// release that would serve it, in both orders. Whichever wins, the slot must end up
// either with the waiter (nil error) or back in the pool.
func TestGivingUpAsASlotIsHandedOverLosesNoSlot(t *testing.T) {
	forEach(t, nil, func(t *testing.T, im impl) {
		synctest.Test(t, func(t *testing.T) {
			p := im.new(testRunners, testSlots)
			defer p.Close()
			for i := range 200 {
				held := acquireN(t, p, testCapacity, time.Second)
				ctx, cancel := context.WithCancel(context.Background())
				type result struct {
					s   Slot
					err error
				}
				res := make(chan result, 1)
				go func() {
					s, err := p.Acquire(ctx)
					res <- result{s, err}
				}()
				synctest.Wait()
				if i%2 == 0 {
					p.Release(held[0])
					cancel()
				} else {
					cancel()
					p.Release(held[0])
				}
				held = held[1:]
				r := <-res
				switch {
				case r.err == nil:
					held = append(held, r.s)
				case !errors.Is(r.err, context.Canceled):
					t.Fatalf("iteration %d: got %v, want nil or context.Canceled", i, r.err)
				}
				releaseAll(p, held)
				checkIntact(t, im, p, testCapacity, time.Second)
			}
		})
	})
}

// onFirstDone is a ctx that runs hook the first time Done is called, before returning
// the done channel. Pools ask for Done just before they block, so the hook runs at the
// last moment a waiter is queued but not yet parked.
type onFirstDone struct {
	context.Context
	once sync.Once
	hook func()
}

func (c *onFirstDone) Done() <-chan struct{} {
	c.once.Do(c.hook)
	return c.Context.Done()
}

// TestWaiterHandedASlotAsItGivesUpReleasesIt makes the worst interleaving deterministic:
// a release hands the queued waiter a slot, then the waiter's ctx ends, and only then does
// the waiter look at both. It picks either at random; when it picks ctx.Done it must
// give the slot back. Over many rounds both outcomes occur, and no slot is ever lost.
func TestWaiterHandedASlotAsItGivesUpReleasesIt(t *testing.T) {
	forEach(t, nil, func(t *testing.T, im impl) {
		synctest.Test(t, func(t *testing.T) {
			p := im.new(testRunners, testSlots)
			defer p.Close()
			var served, gaveUp int
			for range 64 {
				held := acquireN(t, p, testCapacity, time.Second)
				parent, cancel := context.WithCancel(context.Background())
				ctx := &onFirstDone{Context: parent, hook: func() {
					p.Release(held[0])
					synctest.Wait() // the release has reached the waiter, if it was queued
					cancel()
				}}
				var s Slot
				var err error
				done := make(chan struct{})
				go func() {
					defer close(done)
					s, err = p.Acquire(ctx)
				}()
				<-done
				held = held[1:]
				switch {
				case err == nil:
					served++
					held = append(held, s)
				case errors.Is(err, context.Canceled):
					gaveUp++
				default:
					t.Fatalf("got %v, want nil or context.Canceled", err)
				}
				releaseAll(p, held)
				checkIntact(t, im, p, testCapacity, time.Second)
			}
			if im.handsOff && (served == 0 || gaveUp == 0) {
				t.Errorf("served %d, gave up %d: want both outcomes", served, gaveUp)
			}
		})
	})
}

// TestWaitersAreServedInFIFOOrder queues waiters one at a time and checks that releases
// serve them in queueing order.
func TestWaitersAreServedInFIFOOrder(t *testing.T) {
	forEach(t, func(im impl) bool { return im.fifo }, func(t *testing.T, im impl) {
		synctest.Test(t, func(t *testing.T) {
			const runners, slots, waiters = 2, 1, 6
			p := im.new(runners, slots)
			defer p.Close()
			held := acquireN(t, p, runners*slots, time.Second)
			type served struct {
				id int
				s  Slot
			}
			got := make(chan served, waiters)
			for id := range waiters {
				go func() {
					s, err := p.Acquire(context.Background())
					if err != nil {
						t.Errorf("waiter %d: %v", id, err)
						return
					}
					got <- served{id, s}
				}()
				synctest.Wait() // waiter id is queued before the next one starts
			}
			for want := range waiters {
				p.Release(held[0])
				held = held[1:]
				synctest.Wait()
				select {
				case g := <-got:
					if g.id != want {
						t.Fatalf("release %d served waiter %d, want %d", want, g.id, want)
					}
					held = append(held, g.s)
				default:
					t.Fatalf("release %d served nobody", want)
				}
				if len(got) != 0 {
					t.Fatalf("one release served %d waiters", 1+len(got))
				}
			}
			releaseAll(p, held)
		})
	})
}

// TestSlotsGoToLeastLoadedRunnerTiesToLowest checks placement.
func TestSlotsGoToLeastLoadedRunnerTiesToLowest(t *testing.T) {
	forEach(t, func(im impl) bool { return im.leastLoaded }, func(t *testing.T, im impl) {
		synctest.Test(t, func(t *testing.T) {
			p := im.new(testRunners, testSlots)
			defer p.Close()
			held := acquireN(t, p, testCapacity, time.Second)
			for i, s := range held {
				if want := i % testRunners; s.Runner != want {
					t.Fatalf("acquire %d went to runner %d, want %d", i, s.Runner, want)
				}
			}
			// Free one slot on runner 1, then one each on runners 2 and 0.
			p.Release(held[1])
			if s := acquireN(t, p, 1, time.Second)[0]; s.Runner != 1 {
				t.Fatalf("only free slot is on runner 1, got runner %d", s.Runner)
			} else {
				held[1] = s
			}
			p.Release(held[2])
			p.Release(held[0])
			synctest.Wait()
			if s := acquireN(t, p, 1, time.Second)[0]; s.Runner != 0 {
				t.Fatalf("runners 0 and 2 tie, got runner %d, want 0", s.Runner)
			} else {
				held[0] = s
			}
			if s := acquireN(t, p, 1, time.Second)[0]; s.Runner != 2 {
				t.Fatalf("got runner %d, want 2", s.Runner)
			} else {
				held[2] = s
			}
			releaseAll(p, held)
		})
	})
}

// TestCloseFailsWaitersAndLaterReleasesDoNotBlock: Close wakes blocked callers with
// ErrClosed, and slots held across Close can still be released.
func TestCloseFailsWaitersAndLaterReleasesDoNotBlock(t *testing.T) {
	forEach(t, func(im impl) bool { return im.closeFailsWaiters }, func(t *testing.T, im impl) {
		synctest.Test(t, func(t *testing.T) {
			p := im.new(testRunners, testSlots)
			held := acquireN(t, p, testCapacity, time.Second)
			errc := make(chan error, 1)
			go func() {
				_, err := p.Acquire(context.Background())
				errc <- err
			}()
			synctest.Wait()
			p.Close()
			if err := <-errc; !errors.Is(err, ErrClosed) {
				t.Fatalf("waiter got %v, want ErrClosed", err)
			}
			releaseAll(p, held) // a blocked Release would deadlock the bubble
			p.Close()           // idempotent
		})
	})
}

// TestAcquireAfterCloseReturnsErrClosed.
func TestAcquireAfterCloseReturnsErrClosed(t *testing.T) {
	forEach(t, func(im impl) bool { return im.closeRejects }, func(t *testing.T, im impl) {
		synctest.Test(t, func(t *testing.T) {
			p := im.new(testRunners, testSlots)
			releaseAll(p, acquireN(t, p, testCapacity, time.Second))
			p.Close()
			if _, err := p.Acquire(context.Background()); !errors.Is(err, ErrClosed) {
				t.Fatalf("got %v, want ErrClosed", err)
			}
		})
	})
}

// TestCloseStopsEveryGoroutine uses a pool, including waiters that give up, closes it and
// checks with goleak that nothing it started is left running.
func TestCloseStopsEveryGoroutine(t *testing.T) {
	forEach(t, nil, func(t *testing.T, im impl) {
		p := im.new(testRunners, testSlots)
		held := acquireN(t, p, testCapacity, 5*time.Second)
		var wg sync.WaitGroup
		for range 4 {
			wg.Go(func() {
				ctx, cancel := context.WithTimeout(context.Background(), time.Millisecond)
				defer cancel()
				if s, err := p.Acquire(ctx); err == nil {
					p.Release(s)
				}
			})
		}
		wg.Wait()
		releaseAll(p, held)
		p.Close()
		goleak.VerifyNone(t)
	})
}

// countingBoot returns a boot func that takes d (or until ctx ends) and records how many
// boots ran and the most that ran at once.
func countingBoot(d time.Duration) (boot func(context.Context), boots, maxAtOnce *atomic.Int32) {
	var running atomic.Int32
	boots, maxAtOnce = new(atomic.Int32), new(atomic.Int32)
	boot = func(ctx context.Context) {
		boots.Add(1)
		n := running.Add(1)
		for {
			m := maxAtOnce.Load()
			if n <= m || maxAtOnce.CompareAndSwap(m, n) {
				break
			}
		}
		select {
		case <-time.After(d):
		case <-ctx.Done():
		}
		running.Add(-1)
	}
	return boot, boots, maxAtOnce
}

// TestActorGrowingBootsOneRunnerAtATime ports FLAME's burst behaviour: 5 callers on an
// empty pool (max 3, 2 slots each) get runners one boot at a time, each new runner
// serving up to 2 waiters and starting the next boot while callers still wait.
func TestActorGrowingBootsOneRunnerAtATime(t *testing.T) {
	synctest.Test(t, func(t *testing.T) {
		boot, boots, maxAtOnce := countingBoot(time.Second)
		p := NewActorGrowing(3, 2, boot)
		defer p.Close()
		served := make(chan Slot, 5)
		for range 5 {
			go func() {
				s, err := p.Acquire(context.Background())
				if err != nil {
					t.Errorf("acquire: %v", err)
				}
				served <- s
			}()
		}
		time.Sleep(time.Second / 2)
		synctest.Wait()
		for step, want := range []struct{ served, boots int }{{0, 1}, {2, 2}, {4, 3}, {5, 3}} {
			if step > 0 {
				time.Sleep(time.Second)
				synctest.Wait()
			}
			if len(served) != want.served || int(boots.Load()) != want.boots {
				t.Fatalf("after %d.5s: %d served, %d boots; want %d served, %d boots",
					step, len(served), boots.Load(), want.served, want.boots)
			}
		}
		if n := maxAtOnce.Load(); n != 1 {
			t.Errorf("%d boots ran at once, want 1", n)
		}
		perRunner := map[int]int{}
		for range 5 {
			s := <-served
			perRunner[s.Runner]++
			defer p.Release(s)
		}
		if perRunner[0] != 2 || perRunner[1] != 2 || perRunner[2] != 1 {
			t.Errorf("slots per runner %v, want map[0:2 1:2 2:1]", perRunner)
		}
	})
}

// TestActorGrowingBootsOnlyWhenEveryRunnerIsFull: a booted runner with a free slot serves
// at once, and callers arriving while a boot is pending start no second boot.
func TestActorGrowingBootsOnlyWhenEveryRunnerIsFull(t *testing.T) {
	synctest.Test(t, func(t *testing.T) {
		boot, boots, _ := countingBoot(time.Second)
		p := NewActorGrowing(3, 2, boot)
		defer p.Close()
		held := acquireN(t, p, 2, 2*time.Second) // boots runner 0, then fills it
		if n := boots.Load(); n != 1 {
			t.Fatalf("%d boots for 2 slots on one runner, want 1", n)
		}
		start := time.Now()
		held = append(held, acquireN(t, p, 2, 2*time.Second)...) // one boot serves both
		if n, waited := boots.Load(), time.Since(start); n != 2 || waited != time.Second {
			t.Fatalf("%d boots, waited %v; want 2 boots, 1s", n, waited)
		}
		for _, s := range held[2:] {
			if s.Runner != 1 {
				t.Errorf("caller served on runner %d, want the new runner 1", s.Runner)
			}
		}
		releaseAll(p, held)
	})
}

// TestActorGrowingCallerGivingUpDuringBootLosesNothing: the runner booted for a caller
// that gave up comes up idle, starts no further boot, and serves the next caller at once.
func TestActorGrowingCallerGivingUpDuringBootLosesNothing(t *testing.T) {
	synctest.Test(t, func(t *testing.T) {
		boot, boots, _ := countingBoot(time.Second)
		p := NewActorGrowing(3, 2, boot)
		defer p.Close()
		ctx, cancel := context.WithTimeout(context.Background(), time.Second/2)
		defer cancel()
		if _, err := p.Acquire(ctx); !errors.Is(err, context.DeadlineExceeded) {
			t.Fatalf("got %v, want context.DeadlineExceeded", err)
		}
		time.Sleep(time.Second)
		synctest.Wait()
		start := time.Now()
		held := acquireN(t, p, 2, time.Second)
		if n, waited := boots.Load(), time.Since(start); n != 1 || waited != 0 {
			t.Fatalf("%d boots, waited %v; want 1 boot, no wait", n, waited)
		}
		releaseAll(p, held)
	})
}

// TestActorGrowingCloseCancelsPendingBoot: Close cancels a boot in flight, fails its
// waiter and leaves no goroutine behind.
func TestActorGrowingCloseCancelsPendingBoot(t *testing.T) {
	synctest.Test(t, func(t *testing.T) {
		start := time.Now()
		boot, boots, _ := countingBoot(time.Hour)
		p := NewActorGrowing(3, 2, boot)
		errc := make(chan error, 1)
		go func() {
			_, err := p.Acquire(context.Background())
			errc <- err
		}()
		synctest.Wait()
		if n := boots.Load(); n != 1 {
			t.Fatalf("%d boots started, want 1", n)
		}
		p.Close() // must return long before the hour-long boot would
		if err := <-errc; !errors.Is(err, ErrClosed) {
			t.Fatalf("waiter got %v, want ErrClosed", err)
		}
		if d := time.Since(start); d != 0 {
			t.Errorf("Close took %v of virtual time, want 0", d)
		}
	})
	goleak.VerifyNone(t)
}

// BenchmarkAcquireRelease measures the free path: capacity (4×64) far exceeds the number
// of goroutines, so no caller ever waits.
func BenchmarkAcquireRelease(b *testing.B) {
	for _, im := range impls {
		b.Run(im.name, func(b *testing.B) {
			p := im.new(4, 64)
			defer p.Close()
			ctx := context.Background()
			b.ReportAllocs()
			b.ResetTimer()
			b.RunParallel(func(pb *testing.PB) {
				for pb.Next() {
					s, err := p.Acquire(ctx)
					if err != nil {
						b.Error(err)
						return
					}
					p.Release(s)
				}
			})
		})
	}
}
