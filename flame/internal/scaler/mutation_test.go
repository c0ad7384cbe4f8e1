package scaler

import (
	"testing"
	"testing/synctest"
	"time"

	"github.com/stretchr/testify/assert"
	"github.com/stretchr/testify/require"
)

// A permanent failure keeps waiting as many callers as the boots still
// under way will serve: each serves MaxConcurrency of them.
func TestPermanentBootFailureKeepsMaxConcurrencyCallersPerPendingBoot(t *testing.T) {
	synctest.Test(t, func(t *testing.T) {
		h := newFakeHost(5)
		s := newTestScaler(t, Config{Max: 3, MaxConcurrency: 2, Permanent: permanentOnly}, h)
		synctest.Wait()
		require.Equal(t, []uint64{1, 2, 3}, h.bootIDs(), "five callers, two slots a runner: three boots")

		s.BootDone(1, nil, errPermanent)
		synctest.Wait()
		assert.Equal(t, []string{"failqueued keep=4: " + errPermanent.Error()}, h.entries("failqueued"))
		assert.Equal(t, 4, h.Waiting())
	})
}

// Min boots wait for room under Max like any boot: while an overdue
// boot's Backend.Boot still runs it holds the only room, and raising Min
// starts no boot beside it; once the call returns, the Min boot starts.
func TestMinBootsNeverStartPastMaxBesideALingeringBoot(t *testing.T) {
	synctest.Test(t, func(t *testing.T) {
		h := newFakeHost(1)
		s := newTestScaler(t, Config{Max: 1, MaxConcurrency: 1}, h)
		synctest.Wait()
		require.Equal(t, []uint64{1}, h.bootIDs())
		h.waiting.Store(0) // the caller gave up
		s.BootOverdue(1, errBootFailed)
		synctest.Wait()

		s.Resize(1, 1)
		synctest.Wait()
		assert.Equal(t, []uint64{1}, h.bootIDs(), "a Min boot beside the one still in Backend.Boot, past Max 1")

		s.BootDone(1, nil, errBootFailed) // the call returns at last: its room frees
		synctest.Wait()
		assert.Equal(t, []uint64{1, 2}, h.bootIDs(), "and the Min boot takes it")
	})
}

// Resize drains busy runners least loaded first; among equally loaded
// ones, the highest ID (the newest) first, as idle ones shut down.
func TestResizeDrainsTheHighestIDAmongEquallyLoadedRunners(t *testing.T) {
	synctest.Test(t, func(t *testing.T) {
		h := newFakeHost(0)
		rs := runners(3)
		for _, r := range rs {
			r.checkout()
		}
		s := newTestScaler(t, Config{Max: 3, MaxConcurrency: 2}, h, rs...)
		synctest.Wait()
		s.Resize(0, 2)
		synctest.Wait()
		assert.Equal(t, []State{Active, Active, Draining}, []State{rs[0].state(), rs[1].state(), rs[2].state()})
	})
}

// A Min boot that fails is not retried until callers wait (SPEC §3.6: no
// demand, no retry), however often the scaler looks: a backend that always
// fails must not boot in a loop.
func TestFailedMinBootWaitsForDemand(t *testing.T) {
	synctest.Test(t, func(t *testing.T) {
		h := newFakeHost(0)
		s := newTestScaler(t, Config{Min: 1, Max: 2, MaxConcurrency: 1}, h)
		s.Resize(1, 2) // Min is dirty: one Min boot
		synctest.Wait()
		require.Equal(t, []uint64{1}, h.bootIDs())
		s.BootDone(1, nil, errBootFailed)
		synctest.Wait()
		for range 3 {
			s.Kick()
			time.Sleep(time.Hour)
			synctest.Wait()
		}
		assert.Equal(t, []uint64{1}, h.bootIDs(), "a failed Min boot retried with nobody waiting")

		h.waiting.Store(1) // demand brings the next boot
		s.Kick()
		synctest.Wait()
		assert.Equal(t, []uint64{1, 2}, h.bootIDs())
	})
}

// A failed boot schedules a retry only when there is room under Max for
// one. Here a lowered Max leaves a draining runner counted above it: the
// boot that fails leaves the pool at Max, so no retry; and when the drained
// runner goes, the waiting caller's boot starts at once, not a retry
// period later.
func TestFailedBootAtMaxSchedulesNoRetry(t *testing.T) {
	synctest.Test(t, func(t *testing.T) {
		h := newFakeHost(0)
		rs := runners(2)
		for _, r := range rs {
			r.checkout()
		}
		s := newTestScaler(t, Config{Max: 3, MaxConcurrency: 1}, h, rs...)
		synctest.Wait()
		s.Resize(0, 1) // runner 2 drains
		synctest.Wait()
		require.Equal(t, Draining, rs[1].state())
		s.Resize(0, 3)
		h.waiting.Store(1)
		s.Kick()
		synctest.Wait()
		require.Equal(t, []uint64{3}, h.bootIDs())
		s.Resize(0, 2) // runners 1 and 2 (draining) and boot 3: nothing to cancel

		s.BootDone(3, nil, errBootFailed) // runners 1 and 2 left: at Max
		synctest.Wait()
		require.True(t, rs[1].release(), "runner 2's last release")
		s.Removed(rs[1], ErrResized, false)
		synctest.Wait()
		assert.Equal(t, []uint64{3, 4}, h.bootIDs(), "the boot waited for a retry that had no room to start")
	})
}
