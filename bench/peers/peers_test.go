package peers

import (
	"context"
	"math/rand/v2"
	"runtime"
	"sync"
	"sync/atomic"
	"testing"
	"testing/synctest"
	"time"

	"github.com/stretchr/testify/assert"
	"github.com/stretchr/testify/require"
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
		require.NoError(t, err, "acquire %d of %d", i+1, n)
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
		if im.spreads {
			assert.LessOrEqual(t, n, testSlots, "runner %d holds %d slots (spreads=%v)", r, n, im.spreads)
		} else {
			assert.Zero(t, r, "runner %d holds %d slots (spreads=%v)", r, n, im.spreads)
		}
	}
	ctx, cancel := context.WithTimeout(context.Background(), timeout/100)
	defer cancel()
	if s, err := p.Acquire(ctx); err == nil {
		p.Release(s)
		assert.Failf(t, "acquired a slot beyond capacity", "acquired slot %d beyond capacity %d (runner %d)", capacity+1, capacity, s.Runner)
	} else {
		assert.ErrorIs(t, err, context.DeadlineExceeded, "acquire beyond capacity")
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
						if !assert.ErrorIs(t, err, context.DeadlineExceeded, "acquire") {
							return
						}
						continue
					}
					if !assert.GreaterOrEqual(t, s.Runner, 0, "runner %d out of range", s.Runner) ||
						!assert.Less(t, s.Runner, testRunners, "runner %d out of range", s.Runner) {
						return
					}
					n := held[s.Runner].Add(1)
					assert.LessOrEqual(t, n, perRunnerCap, "runner %d holds %d slots, cap %d", s.Runner, n, perRunnerCap)
					n = total.Add(1)
					assert.LessOrEqual(t, n, int32(testCapacity), "%d slots held, capacity %d", n, testCapacity)
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
				assert.NoError(t, err, "waiter")
				got <- s
			}()
			synctest.Wait()
			select {
			case s := <-got:
				require.Failf(t, "waiter served from a full pool", "waiter got runner %d from a full pool", s.Runner)
			default:
			}
			released := held[4]
			held = append(held[:4], held[5:]...)
			p.Release(released)
			synctest.Wait()
			select {
			case s := <-got:
				if im.spreads {
					assert.Equal(t, released.Runner, s.Runner, "waiter got runner %d, want the released runner %d", s.Runner, released.Runner)
				}
				held = append(held, s)
			default:
				require.Fail(t, "release did not reach the blocked waiter")
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
				_, err := p.Acquire(ctx)
				require.ErrorIs(t, err, context.Canceled)
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
				require.ErrorIs(t, <-errc, context.Canceled)
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
				_, err := p.Acquire(ctx)
				require.ErrorIs(t, err, context.DeadlineExceeded)
				assert.Equal(t, time.Second, time.Since(start), "waited")
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
				if r.err == nil {
					held = append(held, r.s)
				} else {
					require.ErrorIs(t, r.err, context.Canceled, "iteration %d: want nil or context.Canceled", i)
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
				if err == nil {
					served++
					held = append(held, s)
				} else {
					require.ErrorIs(t, err, context.Canceled, "want nil or context.Canceled")
					gaveUp++
				}
				releaseAll(p, held)
				checkIntact(t, im, p, testCapacity, time.Second)
			}
			if im.handsOff {
				assert.NotZero(t, served, "served %d, gave up %d: want both outcomes", served, gaveUp)
				assert.NotZero(t, gaveUp, "served %d, gave up %d: want both outcomes", served, gaveUp)
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
					if !assert.NoError(t, err, "waiter %d", id) {
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
					require.Equal(t, want, g.id, "release %d served waiter %d, want %d", want, g.id, want)
					held = append(held, g.s)
				default:
					require.Failf(t, "release served nobody", "release %d served nobody", want)
				}
				require.Empty(t, got, "one release served %d waiters", 1+len(got))
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
				require.Equal(t, i%testRunners, s.Runner, "acquire %d went to runner %d, want %d", i, s.Runner, i%testRunners)
			}
			// Free one slot on runner 1, then one each on runners 2 and 0.
			p.Release(held[1])
			held[1] = acquireN(t, p, 1, time.Second)[0]
			require.Equal(t, 1, held[1].Runner, "only free slot is on runner 1")
			p.Release(held[2])
			p.Release(held[0])
			synctest.Wait()
			held[0] = acquireN(t, p, 1, time.Second)[0]
			require.Equal(t, 0, held[0].Runner, "runners 0 and 2 tie, want 0")
			held[2] = acquireN(t, p, 1, time.Second)[0]
			require.Equal(t, 2, held[2].Runner)
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
			require.ErrorIs(t, <-errc, ErrClosed, "waiter")
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
			_, err := p.Acquire(context.Background())
			require.ErrorIs(t, err, ErrClosed)
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
				assert.NoError(t, err, "acquire")
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
			require.Len(t, served, want.served, "after %d.5s: %d served, %d boots; want %d served, %d boots",
				step, len(served), boots.Load(), want.served, want.boots)
			require.Equal(t, want.boots, int(boots.Load()), "after %d.5s: %d served, %d boots; want %d served, %d boots",
				step, len(served), boots.Load(), want.served, want.boots)
		}
		assert.Equal(t, int32(1), maxAtOnce.Load(), "boots ran at once")
		perRunner := map[int]int{}
		for range 5 {
			s := <-served
			perRunner[s.Runner]++
			defer p.Release(s)
		}
		// The 5 slots fill these three counts exactly, so no other key can
		// be present: Equal on the whole map is the same check.
		assert.Equal(t, map[int]int{0: 2, 1: 2, 2: 1}, perRunner, "slots per runner")
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
		require.Equal(t, int32(1), boots.Load(), "boots for 2 slots on one runner")
		start := time.Now()
		held = append(held, acquireN(t, p, 2, 2*time.Second)...) // one boot serves both
		n, waited := boots.Load(), time.Since(start)
		require.Equal(t, int32(2), n, "%d boots, waited %v; want 2 boots, 1s", n, waited)
		require.Equal(t, time.Second, waited, "%d boots, waited %v; want 2 boots, 1s", n, waited)
		for _, s := range held[2:] {
			assert.Equal(t, 1, s.Runner, "caller served on runner %d, want the new runner 1", s.Runner)
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
		_, err := p.Acquire(ctx)
		require.ErrorIs(t, err, context.DeadlineExceeded)
		time.Sleep(time.Second)
		synctest.Wait()
		start := time.Now()
		held := acquireN(t, p, 2, time.Second)
		n, waited := boots.Load(), time.Since(start)
		require.Equal(t, int32(1), n, "%d boots, waited %v; want 1 boot, no wait", n, waited)
		require.Zero(t, waited, "%d boots, waited %v; want 1 boot, no wait", n, waited)
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
		require.Equal(t, int32(1), boots.Load(), "boots started")
		p.Close() // must return long before the hour-long boot would
		require.ErrorIs(t, <-errc, ErrClosed, "waiter")
		d := time.Since(start)
		assert.Zero(t, d, "Close took %v of virtual time, want 0", d)
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
					if !assert.NoError(b, err) {
						return
					}
					p.Release(s)
				}
			})
		})
	}
}
