package clock

import (
	"sync"
	"testing"
	"testing/synctest"
	"time"

	"github.com/stretchr/testify/require"
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
		got := c.Now()
		require.Equal(t, int64(5*time.Second), got, "first read = %v, want exactly 5s", time.Duration(got))
		require.True(t, c.running(), "refresher not started by the first read")
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
			require.LessOrEqual(t, got, exact, "coarse reading %v ahead of exact %v", got, exact)
			require.LessOrEqual(t, exact-got, int64(Resolution), "coarse reading %v more than %v behind exact %v", got, Resolution, exact)
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
		require.False(t, c.running(), "refresher still running after IdleTicks unread refreshes")
		wait() // returns only if the goroutine exited
		// The next read is exact and starts it again.
		time.Sleep(time.Second)
		got, exact := c.Now(), c.Exact()
		require.Equal(t, exact, got, "read after idle stop = %v, want exact %v", got, exact)
		require.True(t, c.running(), "refresher not restarted")
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
		got, exact := c.Now(), c.Exact()
		require.Equal(t, exact, got, "after Stop: read %v (exact %v), running %v; want exact reads and no refresher", got, exact, c.running())
		require.False(t, c.running(), "after Stop: read %v (exact %v), running %v; want exact reads and no refresher", got, exact, c.running())
	})
}

func TestTimeConvertsReadings(t *testing.T) {
	synctest.Test(t, func(t *testing.T) {
		c := New(func(func()) {})
		start := time.Now()
		// WithinDuration with 0: the same instant, as time.Time.Equal.
		require.WithinDuration(t, start.Add(3*time.Second), c.Time(int64(3*time.Second)), 0, "Time(3s)")
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
		require.True(t, c.running(), "refresher stopped after fewer than %d unread refreshes", IdleTicks)
		time.Sleep(Resolution)
		synctest.Wait()
		require.False(t, c.running(), "refresher still running after %d unread refreshes", IdleTicks)
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
		require.NotNil(t, tick, "no tick while the refresher runs")
		require.Equal(t, int64(10*Resolution), tick.at, "tick reading %v, want %v", time.Duration(tick.at), 10*Resolution)
		time.Sleep(5 * Resolution)
		synctest.Wait()
		got := c.Start(tick)
		require.Equal(t, tick.at, got, "Start = %v, want the tick's reading %v", time.Duration(got), time.Duration(tick.at))
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
	got, want := c.Start(tick), int64(80*time.Millisecond-Tolerance)
	require.Equal(t, want, got, "Start = %v, want %v", time.Duration(got), time.Duration(want))
}

// With no tick since the stamp (the refresher starves now), the moment of
// asking bounds the true start.
func TestStartWithNoTickSinceIsBoundedByNow(t *testing.T) {
	synctest.Test(t, func(t *testing.T) {
		c := New(func(func()) {}) // a refresher that never runs: it starves
		_, exact := c.Stamp()     // starts it: publishes a tick, exact
		require.Zero(t, exact, "first stamp = %v, want the exact reading 0", time.Duration(exact))
		tick, _ := c.Stamp()
		time.Sleep(50 * time.Millisecond)
		got, want := c.Start(tick), int64(50*time.Millisecond-Tolerance)
		require.Equal(t, want, got, "Start = %v, want %v", time.Duration(got), time.Duration(want))
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
		next := tick.next.Load()
		require.Equal(t, int64(Resolution+Resolution/2), next, "last tick's next = %v, want the stop's reading", time.Duration(next))
		time.Sleep(time.Second)
		tk, exact := c.Stamp()
		require.Nil(t, tk, "stamp after Stop = %v, %v; want an exact reading", tk, exact)
		require.Equal(t, c.Exact(), exact, "stamp after Stop = %v, %v; want an exact reading", tk, exact)
	})
}
