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
		if !c.on.Load() {
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
		if c.on.Load() {
			t.Fatal("refresher still running after IdleTicks unread refreshes")
		}
		wait() // returns only if the goroutine exited
		// The next read is exact and starts it again.
		time.Sleep(time.Second)
		if got, exact := c.Now(), c.Exact(); got != exact {
			t.Fatalf("read after idle stop = %v, want exact %v", got, exact)
		}
		if !c.on.Load() {
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
		if got, exact := c.Now(), c.Exact(); got != exact || c.on.Load() {
			t.Fatalf("after Stop: read %v (exact %v), running %v; want exact reads and no refresher", got, exact, c.on.Load())
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
		if !c.on.Load() {
			t.Fatalf("refresher stopped after fewer than %d unread refreshes", IdleTicks)
		}
		time.Sleep(Resolution)
		synctest.Wait()
		if c.on.Load() {
			t.Fatalf("refresher still running after %d unread refreshes", IdleTicks)
		}
	})
}
