package clock

import (
	"sync"
	"testing"
	"testing/synctest"
	"time"
)

// tracked returns a spawn func that counts running refreshers.
func tracked() (spawn func(func()), wait func()) {
	var wg sync.WaitGroup
	return func(f func()) { wg.Go(f) }, wg.Wait
}

func TestFirstReadIsExactAndStartsRefresher(t *testing.T) {
	synctest.Test(t, func(t *testing.T) {
		spawn, wait := tracked()
		c := New(spawn)
		time.Sleep(5 * time.Second)
		if got := c.Now(); got != int64(5*time.Second) {
			t.Fatalf("first read = %v, want exactly 5s", time.Duration(got))
		}
		if !c.running() {
			t.Fatal("refresher not started by the first read")
		}
		c.Stop()
		wait()
	})
}

func TestReadingIsNeverAheadAndAtMostOneResolutionBehind(t *testing.T) {
	synctest.Test(t, func(t *testing.T) {
		spawn, wait := tracked()
		c := New(spawn)
		c.Now()
		for i := range 50 {
			time.Sleep(Resolution/3 + time.Duration(i)*time.Microsecond)
			synctest.Wait()
			got, exact := c.Now(), c.Exact()
			if got > exact {
				t.Fatalf("coarse reading %v ahead of exact %v", got, exact)
			}
			if exact-got > int64(Resolution) {
				t.Fatalf("coarse reading %v more than %v behind exact %v", got, Resolution, exact)
			}
		}
		c.Stop()
		wait()
	})
}

func TestRefresherStopsWhenUnread(t *testing.T) {
	synctest.Test(t, func(t *testing.T) {
		spawn, wait := tracked()
		c := New(spawn)
		c.Now()
		time.Sleep(Resolution * (IdleTicks + 2))
		synctest.Wait()
		if c.running() {
			t.Fatal("refresher still running after IdleTicks unread refreshes")
		}
		wait() // returns only if the goroutine exited
		// The next read is exact and starts it again.
		time.Sleep(time.Second)
		if got, exact := c.Now(), c.Exact(); got != exact {
			t.Fatalf("read after idle stop = %v, want exact %v", got, exact)
		}
		if !c.running() {
			t.Fatal("refresher not restarted")
		}
		c.Stop()
		wait()
	})
}

func TestStopIsFinal(t *testing.T) {
	synctest.Test(t, func(t *testing.T) {
		spawn, wait := tracked()
		c := New(spawn)
		c.Now()
		c.Stop()
		c.Stop() // idempotent
		wait()
		time.Sleep(time.Second)
		if got, exact := c.Now(), c.Exact(); got != exact || c.running() {
			t.Fatalf("after Stop: read %v (exact %v), running %v; want exact reads and no refresher", got, exact, c.running())
		}
	})
}

func TestTimeConvertsReadings(t *testing.T) {
	synctest.Test(t, func(t *testing.T) {
		c := New(func(func()) {})
		start := time.Now()
		if got := c.Time(int64(3 * time.Second)); !got.Equal(start.Add(3 * time.Second)) {
			t.Fatalf("Time(3s) = %v, want %v", got, start.Add(3*time.Second))
		}
	})
}

func TestRefresherOutlivesFewerThanIdleTicksUnreadRefreshes(t *testing.T) {
	synctest.Test(t, func(t *testing.T) {
		spawn, wait := tracked()
		c := New(spawn)
		defer wait()
		defer c.Stop() // on failure too, so the bubble can end
		c.Now()        // the first refresh finds this read; IdleTicks unread ones follow
		time.Sleep(Resolution*(IdleTicks+1) - Resolution/2)
		synctest.Wait()
		if !c.running() {
			t.Fatalf("refresher stopped after fewer than %d unread refreshes", IdleTicks)
		}
		time.Sleep(Resolution)
		synctest.Wait()
		if c.running() {
			t.Fatalf("refresher still running after %d unread refreshes", IdleTicks)
		}
	})
}

// A refresher that ticks on time leaves a call's start on its tick's
// reading: at most one Resolution early, as the coarse reading is.
func TestStartOfAnOnTimeTickIsItsReading(t *testing.T) {
	synctest.Test(t, func(t *testing.T) {
		spawn, wait := tracked()
		c := New(spawn)
		c.Now()
		time.Sleep(10*Resolution + Resolution/3)
		tick, _ := c.Stamp()
		if tick == nil {
			t.Fatal("no tick while the refresher runs")
		}
		if tick.at != int64(10*Resolution) {
			t.Fatalf("tick reading %v, want %v", time.Duration(tick.at), 10*Resolution)
		}
		time.Sleep(5 * Resolution)
		synctest.Wait()
		if got := c.Start(tick); got != tick.at {
			t.Fatalf("Start = %v, want the tick's reading %v", time.Duration(got), time.Duration(tick.at))
		}
		c.Stop()
		wait()
	})
}

// A tick that came late (the refresher starved) moves the start of the
// calls stamped on the tick before it to no more than Tolerance before
// the late tick: their true start lies between the two.
func TestStartAfterALateTickIsNoMoreThanToleranceEarly(t *testing.T) {
	c := New(func(func()) {})
	c.publish(0, false)
	tick, _ := c.Stamp()
	c.publish(int64(80*time.Millisecond), false) // 80 ms late
	if got, want := c.Start(tick), int64(80*time.Millisecond-Tolerance); got != want {
		t.Fatalf("Start = %v, want %v", time.Duration(got), time.Duration(want))
	}
}

// With no tick since the stamp (the refresher starves now), the moment of
// asking bounds the true start.
func TestStartWithNoTickSinceIsBoundedByNow(t *testing.T) {
	synctest.Test(t, func(t *testing.T) {
		c := New(func(func()) {}) // a refresher that never runs: it starves
		_, exact := c.Stamp()     // starts it: publishes a tick, exact
		if exact != 0 {
			t.Fatalf("first stamp = %v, want the exact reading 0", time.Duration(exact))
		}
		tick, _ := c.Stamp()
		time.Sleep(50 * time.Millisecond)
		if got, want := c.Start(tick), int64(50*time.Millisecond-Tolerance); got != want {
			t.Fatalf("Start = %v, want %v", time.Duration(got), time.Duration(want))
		}
	})
}

// The tick before the refresher stops learns when the stop came, and a
// stamp taken after it is exact.
func TestStopTellsTheLastTickAndLaterStampsAreExact(t *testing.T) {
	synctest.Test(t, func(t *testing.T) {
		spawn, wait := tracked()
		c := New(spawn)
		c.Now()
		time.Sleep(Resolution)
		synctest.Wait()
		tick, _ := c.Stamp()
		time.Sleep(Resolution / 2)
		c.Stop()
		wait()
		if tick.next.Load() != int64(Resolution+Resolution/2) {
			t.Fatalf("last tick's next = %v, want the stop's reading", time.Duration(tick.next.Load()))
		}
		time.Sleep(time.Second)
		if tk, exact := c.Stamp(); tk != nil || exact != c.Exact() {
			t.Fatalf("stamp after Stop = %v, %v; want an exact reading", tk, exact)
		}
	})
}
