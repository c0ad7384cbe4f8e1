package scaler

import (
	"context"
	"errors"
	"fmt"
	"slices"
	"strings"
	"sync"
	"sync/atomic"
	"testing"
	"testing/synctest"
	"time"

	"github.com/stretchr/testify/assert"
	"github.com/stretchr/testify/require"
)

// fakeRunner is a Runner whose load, generation and state the test sets.
type fakeRunner struct {
	id uint64

	mu     sync.Mutex
	load   int
	gen    uint64
	st     State
	killed bool
}

func newFakeRunner(id uint64) *fakeRunner { return &fakeRunner{id: id} }

func (r *fakeRunner) ID() uint64 { return r.id }

func (r *fakeRunner) Snapshot() (int, uint64, State) {
	r.mu.Lock()
	defer r.mu.Unlock()
	return r.load, r.gen, r.st
}

func (r *fakeRunner) ClaimIdle(gen uint64) bool {
	r.mu.Lock()
	defer r.mu.Unlock()
	if r.st != Active || r.load != 0 || r.gen != gen {
		return false
	}
	r.st = Down
	return true
}

func (r *fakeRunner) Drain() bool {
	r.mu.Lock()
	defer r.mu.Unlock()
	if r.st != Active {
		return false
	}
	if r.load == 0 {
		r.st = Down
		return true
	}
	r.st = Draining
	return false
}

func (r *fakeRunner) Kill() {
	r.mu.Lock()
	defer r.mu.Unlock()
	r.st = Down
	r.killed = true
}

// checkout takes a slot as the pool would: load and generation go up.
func (r *fakeRunner) checkout() {
	r.mu.Lock()
	defer r.mu.Unlock()
	r.load++
	r.gen++
}

// release gives a slot back; it reports whether the runner, draining, is
// now empty (the pool would then report it with Removed).
func (r *fakeRunner) release() (drained bool) {
	r.mu.Lock()
	defer r.mu.Unlock()
	r.load--
	if r.st == Draining && r.load == 0 {
		r.st = Down
		return true
	}
	return false
}

func (r *fakeRunner) state() State {
	_, _, st := r.Snapshot()
	return st
}

// fakeHost records what the scaler asks of the pool, in order.
type fakeHost struct {
	waiting   atomic.Int64
	onWaiting func() // if set, called at every Waiting, before it answers
	idleOK    atomic.Bool
	idleN     atomic.Int64 // IdleCheck calls

	mu        sync.Mutex
	log       []string // "boot 3", "boot 3 min", "growend 3 c=2 ok", "growend 3 c=1 err: ...", "shutdown 3 <reason>", "shrink 3 c=1 <reason>"
	boots     []Boot
	published []uint64
	growErrs  map[uint64]error
	shrinkWhy map[uint64]error
}

func newFakeHost(waiting int) *fakeHost {
	h := &fakeHost{growErrs: map[uint64]error{}, shrinkWhy: map[uint64]error{}}
	h.waiting.Store(int64(waiting))
	h.idleOK.Store(true)
	return h
}

func (h *fakeHost) add(s string) { h.log = append(h.log, s) }

func (h *fakeHost) Waiting() int {
	if h.onWaiting != nil {
		h.onWaiting()
	}
	return int(h.waiting.Load())
}

func (h *fakeHost) Boot(b Boot) {
	h.mu.Lock()
	defer h.mu.Unlock()
	h.boots = append(h.boots, b)
	if b.Min {
		h.add(fmt.Sprintf("boot %d min", b.ID))
	} else {
		h.add(fmt.Sprintf("boot %d", b.ID))
	}
}

func (h *fakeHost) Publish(rs []Runner) {
	h.mu.Lock()
	defer h.mu.Unlock()
	h.published = h.published[:0]
	for _, r := range rs {
		h.published = append(h.published, r.ID())
	}
}

func (h *fakeHost) Shutdown(r Runner, reason error) {
	h.mu.Lock()
	defer h.mu.Unlock()
	h.add(fmt.Sprintf("shutdown %d %v", r.ID(), reason))
}

func (h *fakeHost) IdleCheck() bool {
	h.idleN.Add(1)
	return h.idleOK.Load()
}

func (h *fakeHost) GrowEnd(ev Event, err error) {
	h.mu.Lock()
	defer h.mu.Unlock()
	if err != nil {
		h.growErrs[ev.ID] = err
		h.add(fmt.Sprintf("growend %d c=%d err: %v", ev.ID, ev.Count, err))
		return
	}
	h.add(fmt.Sprintf("growend %d c=%d ok", ev.ID, ev.Count))
}

func (h *fakeHost) Shrink(ev Event, reason error) {
	h.mu.Lock()
	defer h.mu.Unlock()
	h.shrinkWhy[ev.ID] = reason
	h.add(fmt.Sprintf("shrink %d c=%d %v", ev.ID, ev.Count, reason))
}

func (h *fakeHost) FailQueued(keep int, err error) {
	h.mu.Lock()
	defer h.mu.Unlock()
	h.add(fmt.Sprintf("failqueued keep=%d: %v", keep, err))
	if w := h.waiting.Load(); w > int64(keep) {
		h.waiting.Store(int64(keep))
	}
}

func (h *fakeHost) getBoots() []Boot {
	h.mu.Lock()
	defer h.mu.Unlock()
	return slices.Clone(h.boots)
}

func (h *fakeHost) bootIDs() []uint64 {
	var ids []uint64
	for _, b := range h.getBoots() {
		ids = append(ids, b.ID)
	}
	return ids
}

func (h *fakeHost) getLog() []string {
	h.mu.Lock()
	defer h.mu.Unlock()
	return slices.Clone(h.log)
}

func (h *fakeHost) getPublished() []uint64 {
	h.mu.Lock()
	defer h.mu.Unlock()
	return slices.Clone(h.published)
}

// logSince returns the log entries recorded after the first n.
func (h *fakeHost) logSince(n int) []string { return h.getLog()[n:] }

// entries returns the log entries that start with prefix.
func (h *fakeHost) entries(prefix string) []string {
	var out []string
	for _, s := range h.getLog() {
		if strings.HasPrefix(s, prefix) {
			out = append(out, s)
		}
	}
	return out
}

var errBootFailed = errors.New("backend refused")

// The host's reasons, as the pool passes its own sentinels.
var (
	ErrIdle         = errors.New("runner idle")
	ErrResized      = errors.New("resized below its runners")
	ErrSingleUse    = errors.New("single-use runner done")
	ErrBootCanceled = errors.New("boot canceled")
	testReasons     = Reasons{Idle: ErrIdle, Resized: ErrResized, SingleUse: ErrSingleUse, BootCanceled: ErrBootCanceled}
)

// newTestScaler creates and starts a scaler with the given initial (min)
// runners, numbered 1..len(initial). Call stop at the end of the bubble.
func newTestScaler(t *testing.T, cfg Config, h *fakeHost, initial ...*fakeRunner) *Scaler {
	t.Helper()
	rs := make([]Runner, len(initial))
	for i, r := range initial {
		rs[i] = r
	}
	if cfg.RetryAfter == 0 {
		cfg.RetryAfter = time.Second
	}
	cfg.Reasons = testReasons
	s := New(cfg, h, rs, uint64(len(initial))+1)
	s.Start(nil)
	t.Cleanup(func() { stopAndWait(t, s) })
	return s
}

// stopAndWait stops the scaler and checks that its goroutine exits.
func stopAndWait(t *testing.T, s *Scaler) {
	t.Helper()
	s.Stop(errStopped)
	synctest.Wait()
	select {
	case <-s.Done():
	default:
		assert.Fail(t, "scaler goroutine still running after Stop")
	}
}

var errStopped = errors.New("stopped")

func runners(n int) []*fakeRunner {
	rs := make([]*fakeRunner, n)
	for i := range rs {
		rs[i] = newFakeRunner(uint64(i + 1))
	}
	return rs
}

func TestEvaluateBootsCeilWaitingOverMaxConcurrencyBoundedByMax(t *testing.T) {
	cases := []struct {
		name                  string
		initial, waiting      int
		mc, max               int
		wantBoots             int
		wantFirstID, wantFrom int // first boot ID and its Count
	}{
		{"5 waiting MC 2 boot 3", 0, 5, 2, 10, 3, 1, 1},
		{"4 waiting MC 2 boot 2", 0, 4, 2, 10, 2, 1, 1},
		{"1 waiting MC 100 boots 1", 0, 1, 100, 10, 1, 1, 1},
		{"Max caps boots", 0, 25, 2, 4, 4, 1, 1},
		{"booted runners count toward Max", 2, 25, 2, 4, 2, 3, 3},
		{"nobody waiting boots nothing", 0, 0, 2, 10, 0, 0, 0},
	}
	for _, tc := range cases {
		t.Run(tc.name, func(t *testing.T) {
			synctest.Test(t, func(t *testing.T) {
				h := newFakeHost(tc.waiting)
				s := newTestScaler(t, Config{Min: tc.initial, Max: tc.max, MaxConcurrency: tc.mc}, h, runners(tc.initial)...)
				s.Kick()
				synctest.Wait()
				boots := h.getBoots()
				require.Len(t, boots, tc.wantBoots)
				for i, b := range boots {
					assert.Equal(t, uint64(tc.wantFirstID+i), b.ID, "IDs increase in decision order")
					assert.Equal(t, tc.wantFrom+i, b.Count, "boots decided together get distinct, increasing counts")
					assert.False(t, b.Min, "a demand boot is not a min boot")
					assert.NoError(t, b.Ctx.Err())
				}
				assert.Equal(t, tc.wantBoots, s.Stats().Pending)
				// Evaluating again without a change starts nothing more.
				s.Kick()
				synctest.Wait()
				assert.Len(t, h.getBoots(), tc.wantBoots)
			})
		})
	}
}

func TestEvaluateBootsMoreOnlyWhenWaitersOutgrowPendingBoots(t *testing.T) {
	synctest.Test(t, func(t *testing.T) {
		h := newFakeHost(1)
		s := newTestScaler(t, Config{Max: 10, MaxConcurrency: 2}, h)
		synctest.Wait()
		assert.Equal(t, []uint64{1}, h.bootIDs())
		h.waiting.Store(2) // 1 pending boot × 2 slots covers 2 waiters
		s.Kick()
		synctest.Wait()
		assert.Equal(t, []uint64{1}, h.bootIDs())
		h.waiting.Store(3)
		s.Kick()
		synctest.Wait()
		assert.Equal(t, []uint64{1, 2}, h.bootIDs())
	})
}

func TestBootFailureRetriesAfterRetryAfterOnlyWhileDemandRemains(t *testing.T) {
	synctest.Test(t, func(t *testing.T) {
		h := newFakeHost(1)
		s := newTestScaler(t, Config{Max: 5, MaxConcurrency: 1, RetryAfter: time.Second}, h)
		synctest.Wait()
		require.Equal(t, []uint64{1}, h.bootIDs())

		s.BootDone(1, nil, errBootFailed)
		synctest.Wait()
		st := s.Stats()
		assert.Equal(t, uint64(1), st.BootFailures)
		assert.Equal(t, 0, st.Pending)
		assert.ErrorIs(t, s.LastBootErr(), errBootFailed)
		assert.ErrorIs(t, h.growErrs[1], errBootFailed, "OnGrowEnd gets the boot error")
		assert.Equal(t, []string{"boot 1", "growend 1 c=0 err: backend refused"}, h.getLog())

		// Not before RetryAfter, however often the scaler is woken.
		time.Sleep(time.Second - time.Millisecond)
		s.Kick()
		synctest.Wait()
		assert.Equal(t, []uint64{1}, h.bootIDs(), "retry before RetryAfter")
		time.Sleep(2 * time.Millisecond)
		synctest.Wait()
		assert.Equal(t, []uint64{1, 2}, h.bootIDs(), "one retry once RetryAfter has passed")

		// The waiter gave up: a failure now schedules no retry. So new
		// demand boots at once instead of waiting for a pointless retry.
		h.waiting.Store(0)
		s.BootDone(2, nil, errBootFailed)
		synctest.Wait()
		h.waiting.Store(1)
		s.Kick()
		synctest.Wait()
		assert.Equal(t, []uint64{1, 2, 3}, h.bootIDs(), "a retry scheduled without demand blocks new boots")

		// And without demand nothing ever boots again.
		h.waiting.Store(0)
		s.BootDone(3, nil, errBootFailed)
		synctest.Wait()
		time.Sleep(time.Hour)
		s.Kick()
		synctest.Wait()
		assert.Equal(t, []uint64{1, 2, 3}, h.bootIDs(), "a boot without demand")
		assert.Equal(t, uint64(3), s.Stats().BootFailures)
	})
}

func TestRetryThatFiresAfterDemandIsGoneBootsNothing(t *testing.T) {
	synctest.Test(t, func(t *testing.T) {
		h := newFakeHost(1)
		s := newTestScaler(t, Config{Max: 5, MaxConcurrency: 1}, h)
		synctest.Wait()
		s.BootDone(1, nil, errBootFailed)
		synctest.Wait()
		h.waiting.Store(0) // the waiter gives up before the retry fires
		time.Sleep(time.Hour)
		synctest.Wait()
		assert.Equal(t, []uint64{1}, h.bootIDs())
	})
}

func TestBootFailureCoveredByOtherPendingBootsSchedulesNoRetry(t *testing.T) {
	synctest.Test(t, func(t *testing.T) {
		h := newFakeHost(4)
		s := newTestScaler(t, Config{Max: 5, MaxConcurrency: 2}, h)
		synctest.Wait()
		require.Equal(t, []uint64{1, 2}, h.bootIDs())
		h.waiting.Store(2) // two waiters gave up: boot 2 alone covers the rest
		s.BootDone(1, nil, errBootFailed)
		synctest.Wait()
		h.waiting.Store(6) // no retry may be pending: new demand boots at once
		s.Kick()
		synctest.Wait()
		assert.Equal(t, []uint64{1, 2, 3, 4}, h.bootIDs())
		h.waiting.Store(0)
		time.Sleep(time.Hour)
		s.Kick()
		synctest.Wait()
		assert.Equal(t, []uint64{1, 2, 3, 4}, h.bootIDs())
	})
}

func TestNoDemandBootWhileRetryPendingThenAsManyAsNeeded(t *testing.T) {
	synctest.Test(t, func(t *testing.T) {
		h := newFakeHost(1)
		s := newTestScaler(t, Config{Max: 10, MaxConcurrency: 1}, h)
		synctest.Wait()
		s.BootDone(1, nil, errBootFailed)
		synctest.Wait()
		h.waiting.Store(5) // more callers queue while the retry is pending
		s.Kick()
		synctest.Wait()
		assert.Equal(t, []uint64{1}, h.bootIDs(), "boot while a retry is pending")
		time.Sleep(time.Second)
		synctest.Wait()
		assert.Equal(t, []uint64{1, 2, 3, 4, 5, 6}, h.bootIDs(), "the retry re-evaluates demand and starts every boot it needs")
	})
}

func TestBootFailureWhileClosingStartsNoImmediateReboot(t *testing.T) {
	// A queued cast keeps demand alive while Close runs. A backend that
	// fails at once must not be re-booted in a tight loop: the failed boot
	// may be retried RetryAfter later at the earliest (SPEC §3.6: "a
	// backend that always fails never loops").
	synctest.Test(t, func(t *testing.T) {
		h := newFakeHost(1)
		s := newTestScaler(t, Config{Max: 5, MaxConcurrency: 1}, h)
		synctest.Wait()
		require.Equal(t, []uint64{1}, h.bootIDs())
		s.SetClosing()
		synctest.Wait()
		s.BootDone(1, nil, errBootFailed)
		synctest.Wait()
		assert.Equal(t, []uint64{1}, h.bootIDs(), "failed boot re-booted at once while closing")
	})
}

func TestBootSuccessPublishesRunnerAndReportsGrowEnd(t *testing.T) {
	synctest.Test(t, func(t *testing.T) {
		h := newFakeHost(3)
		s := newTestScaler(t, Config{Max: 5, MaxConcurrency: 2}, h, runners(1)...)
		synctest.Wait()
		require.Equal(t, []uint64{2, 3}, h.bootIDs())
		b := h.getBoots()
		assert.Equal(t, []int{2, 3}, []int{b[0].Count, b[1].Count})
		n := len(h.getLog())
		h.waiting.Store(1) // the pool serves the rest from the new runner
		s.BootDone(3, newFakeRunner(3), nil)
		synctest.Wait()
		assert.Equal(t, []uint64{1, 3}, h.getPublished())
		assert.Equal(t, []string{"growend 3 c=3 ok"}, h.logSince(n), "Count is booted + booting after the boot")
		st := s.Stats()
		assert.Equal(t, Stats{Max: 5, Pending: 1, Booted: 2}, st)
	})
}

func TestResizeCancelsPendingBootsNewestFirst(t *testing.T) {
	synctest.Test(t, func(t *testing.T) {
		h := newFakeHost(3)
		s := newTestScaler(t, Config{Max: 5, MaxConcurrency: 1}, h)
		synctest.Wait()
		require.Equal(t, []uint64{1, 2, 3}, h.bootIDs())
		boots := h.getBoots()
		n := len(h.getLog())

		s.Resize(0, 1)
		synctest.Wait()
		assert.Equal(t, []string{
			"growend 3 c=2 err: " + ErrBootCanceled.Error(),
			"growend 2 c=1 err: " + ErrBootCanceled.Error(),
		}, h.logSince(n))
		assert.NoError(t, boots[0].Ctx.Err(), "the oldest boot goes on")
		assert.Error(t, boots[1].Ctx.Err(), "a canceled boot's ctx is cancelled")
		assert.Error(t, boots[2].Ctx.Err(), "a canceled boot's ctx is cancelled")
		st := s.Stats()
		assert.Equal(t, 1, st.Pending)
		assert.Zero(t, st.BootFailures, "a canceled boot is not a boot failure")

		// A canceled boot that succeeds anyway is shut down, not kept.
		late := newFakeRunner(3)
		n = len(h.getLog())
		s.BootDone(3, late, nil)
		synctest.Wait()
		assert.Equal(t, []string{"shutdown 3 " + ErrBootCanceled.Error()}, h.logSince(n))
		assert.Equal(t, Down, late.state())
		assert.Empty(t, h.getPublished())
		assert.Zero(t, s.Stats().Booted)
	})
}

func TestResizeShutsIdleRunnersDownHighestIDFirst(t *testing.T) {
	synctest.Test(t, func(t *testing.T) {
		h := newFakeHost(0)
		rs := runners(4)
		s := newTestScaler(t, Config{Min: 0, Max: 4, MaxConcurrency: 1}, h, rs...)
		synctest.Wait()
		n := len(h.getLog())
		s.Resize(0, 2)
		synctest.Wait()
		assert.Equal(t, []string{
			"shutdown 4 " + ErrResized.Error(), "shrink 4 c=3 " + ErrResized.Error(),
			"shutdown 3 " + ErrResized.Error(), "shrink 3 c=2 " + ErrResized.Error(),
		}, h.logSince(n))
		assert.Equal(t, []uint64{1, 2}, h.getPublished())
		assert.Equal(t, []State{Active, Active, Down, Down}, []State{rs[0].state(), rs[1].state(), rs[2].state(), rs[3].state()})
		assert.Equal(t, uint64(2), s.Stats().Shrunk)
	})
}

func TestResizeDrainsBusyRunnersLeastLoadedFirst(t *testing.T) {
	synctest.Test(t, func(t *testing.T) {
		h := newFakeHost(0)
		rs := runners(3)
		for i, load := range []int{3, 1, 2} {
			for range load {
				rs[i].checkout()
			}
		}
		s := newTestScaler(t, Config{Max: 3, MaxConcurrency: 5}, h, rs...)
		synctest.Wait()
		n := len(h.getLog())

		s.Resize(0, 2)
		synctest.Wait()
		assert.Equal(t, []State{Active, Draining, Active}, []State{rs[0].state(), rs[1].state(), rs[2].state()}, "the least-loaded runner drains")
		assert.Empty(t, h.logSince(n), "a draining runner is not removed while it holds work")
		assert.Equal(t, []uint64{1, 2, 3}, h.getPublished(), "a draining runner is still in the pool")

		s.Resize(0, 1)
		synctest.Wait()
		assert.Equal(t, []State{Active, Draining, Draining}, []State{rs[0].state(), rs[1].state(), rs[2].state()})

		// Draining runners count toward Max: no boot for waiters.
		h.waiting.Store(3)
		s.Kick()
		synctest.Wait()
		assert.Empty(t, h.getBoots())

		// The last release of a draining runner removes it (the pool calls Removed).
		require.True(t, rs[1].release(), "its last release leaves it Down")
		s.Removed(rs[1], ErrResized, false)
		synctest.Wait()
		assert.Equal(t, []string{"shutdown 2 " + ErrResized.Error(), "shrink 2 c=2 " + ErrResized.Error()}, h.logSince(n))
		assert.Equal(t, []uint64{1, 3}, h.getPublished())
		assert.Empty(t, h.getBoots(), "still at Max (1 active + 1 draining >= 1)")
	})
}

func TestResizeCancelsPendingThenShutsIdleThenDrainsBusy(t *testing.T) {
	synctest.Test(t, func(t *testing.T) {
		h := newFakeHost(0)
		rs := runners(2) // #1 busy, #2 idle
		rs[0].checkout()
		s := newTestScaler(t, Config{Max: 5, MaxConcurrency: 1}, h, rs...)
		h.waiting.Store(1)
		s.Kick()
		synctest.Wait()
		require.Equal(t, []uint64{3}, h.bootIDs()) // #3 pending
		h.waiting.Store(0)

		n := len(h.getLog())
		s.Resize(0, 2)
		synctest.Wait()
		assert.Equal(t, []string{"growend 3 c=2 err: " + ErrBootCanceled.Error()}, h.logSince(n), "pending boots go first")
		assert.Equal(t, Active, rs[1].state())
		assert.Equal(t, Stats{Max: 2, Booted: 2, Lingering: 1}, s.Stats(), "the canceled boot counts against Max until its Backend.Boot returns")
		s.BootDone(3, nil, context.Canceled)
		synctest.Wait()

		n = len(h.getLog())
		s.Resize(0, 1)
		synctest.Wait()
		assert.Equal(t, []string{"shutdown 2 " + ErrResized.Error(), "shrink 2 c=1 " + ErrResized.Error()}, h.logSince(n), "idle runners go before busy ones")
		assert.Equal(t, Active, rs[0].state(), "the busy runner keeps working")
		assert.Equal(t, Stats{Max: 1, Booted: 2, Shrunk: 1}, s.Stats())
	})
}

func TestResizeRaisingMinBootsMinRunnersAtOnce(t *testing.T) {
	synctest.Test(t, func(t *testing.T) {
		h := newFakeHost(0)
		s := newTestScaler(t, Config{Max: 5, MaxConcurrency: 1}, h, runners(1)...)
		synctest.Wait()
		s.Resize(3, 5)
		synctest.Wait()
		boots := h.getBoots()
		require.Len(t, boots, 2)
		for i, b := range boots {
			assert.True(t, b.Min, "boots toward Min are min boots")
			assert.Equal(t, uint64(2+i), b.ID)
			assert.Equal(t, 2+i, b.Count)
		}
		assert.Equal(t, Stats{Min: 3, Max: 5, Pending: 2, Booted: 1}, s.Stats())
	})
}

func TestRemovedWithReplaceRestoresMinAfterReportingTheShrink(t *testing.T) {
	synctest.Test(t, func(t *testing.T) {
		h := newFakeHost(0)
		rs := runners(2)
		s := newTestScaler(t, Config{Min: 2, Max: 3, MaxConcurrency: 1}, h, rs...)
		synctest.Wait()
		rs[0].Kill()
		s.Removed(rs[0], errCrash, true)
		synctest.Wait()
		assert.Equal(t, []string{"shutdown 1 crash", "shrink 1 c=1 crash", "boot 3 min"}, h.getLog(),
			"OnShrink comes before the replacement boot starts")
		assert.Equal(t, []uint64{2}, h.getPublished())
		b := h.getBoots()
		require.Len(t, b, 1)
		assert.Equal(t, 2, b[0].Count)

		// Reporting the same runner again changes nothing.
		s.Removed(rs[0], errCrash, true)
		synctest.Wait()
		assert.Len(t, h.getLog(), 3)
		assert.Equal(t, uint64(1), s.Stats().Shrunk)
	})
}

var errCrash = errors.New("crash")

func TestRemovedWithoutReplaceBootsNothing(t *testing.T) {
	synctest.Test(t, func(t *testing.T) {
		h := newFakeHost(0)
		rs := runners(2)
		s := newTestScaler(t, Config{Min: 2, Max: 3, MaxConcurrency: 1}, h, rs...)
		synctest.Wait()
		rs[1].Kill()
		s.Removed(rs[1], ErrResized, false)
		synctest.Wait()
		assert.Empty(t, h.getBoots())
		assert.Equal(t, []uint64{1}, h.getPublished())
	})
}

func TestRemovedWithWaitersBootsForThem(t *testing.T) {
	synctest.Test(t, func(t *testing.T) {
		h := newFakeHost(0)
		rs := runners(2)
		rs[0].checkout()
		rs[1].checkout()
		s := newTestScaler(t, Config{Min: 0, Max: 2, MaxConcurrency: 1}, h, rs...)
		h.waiting.Store(3)
		s.Kick()
		synctest.Wait()
		require.Empty(t, h.getBoots(), "at Max")
		rs[0].Kill()
		rs[1].Kill()
		s.Removed(rs[0], errCrash, true)
		s.Removed(rs[1], errCrash, true)
		synctest.Wait()
		assert.Equal(t, []uint64{3, 4}, h.bootIDs(), "every boot the rule allows starts")
		for _, b := range h.getBoots() {
			assert.False(t, b.Min)
		}
	})
}

func TestIdleRunnerShutsDownAfterAWholeIdlePeriod(t *testing.T) {
	synctest.Test(t, func(t *testing.T) {
		h := newFakeHost(1)
		s := newTestScaler(t, Config{Max: 3, MaxConcurrency: 1, IdleAfter: 10 * time.Second}, h)
		synctest.Wait()
		r := newFakeRunner(1)
		h.waiting.Store(0) // the pool serves the waiter from the new runner
		s.BootDone(1, r, nil)
		synctest.Wait()
		time.Sleep(10*time.Second - time.Millisecond)
		synctest.Wait()
		assert.Equal(t, Active, r.state())
		assert.Zero(t, h.idleN.Load())
		time.Sleep(2 * time.Millisecond)
		synctest.Wait()
		assert.Equal(t, Down, r.state())
		assert.Equal(t, []string{"shutdown 1 " + ErrIdle.Error(), "shrink 1 c=0 " + ErrIdle.Error()}, h.entries("sh"))
		assert.Empty(t, h.getPublished())
		assert.Equal(t, int64(1), h.idleN.Load())
		assert.Equal(t, []uint64{1}, h.bootIDs(), "an idle-down is not replaced")
	})
}

func TestIdleCheckoutDuringPeriodDefersShutdownToALaterCheck(t *testing.T) {
	synctest.Test(t, func(t *testing.T) {
		h := newFakeHost(1)
		s := newTestScaler(t, Config{Max: 3, MaxConcurrency: 1, IdleAfter: 10 * time.Second}, h)
		synctest.Wait()
		r := newFakeRunner(1)
		h.waiting.Store(0) // the pool serves the waiter from the new runner
		s.BootDone(1, r, nil)
		synctest.Wait()
		time.Sleep(5 * time.Second)
		r.checkout() // used and released within the period
		r.release()
		time.Sleep(5*time.Second + time.Millisecond)
		synctest.Wait()
		assert.Equal(t, Active, r.state(), "a runner used during the period survives the check")
		time.Sleep(10*time.Second - 2*time.Millisecond)
		synctest.Wait()
		assert.Equal(t, Active, r.state())
		time.Sleep(2 * time.Millisecond)
		synctest.Wait()
		assert.Equal(t, Down, r.state(), "the next period without a checkout ends it")
	})
}

func TestIdleNeverTakesARunnerHoldingWork(t *testing.T) {
	synctest.Test(t, func(t *testing.T) {
		h := newFakeHost(1)
		s := newTestScaler(t, Config{Max: 3, MaxConcurrency: 1, IdleAfter: time.Second}, h)
		synctest.Wait()
		r := newFakeRunner(1)
		h.waiting.Store(0) // the pool serves the waiter from the new runner
		s.BootDone(1, r, nil)
		synctest.Wait()
		r.checkout()
		time.Sleep(time.Hour)
		synctest.Wait()
		assert.Equal(t, Active, r.state())
		assert.Empty(t, h.entries("shrink"))
	})
}

func TestIdleCheckFalseKeepsRunnerAndIsAskedEachPeriod(t *testing.T) {
	synctest.Test(t, func(t *testing.T) {
		h := newFakeHost(1)
		h.idleOK.Store(false)
		s := newTestScaler(t, Config{Max: 3, MaxConcurrency: 1, IdleAfter: 10 * time.Second}, h)
		synctest.Wait()
		r := newFakeRunner(1)
		h.waiting.Store(0) // the pool serves the waiter from the new runner
		s.BootDone(1, r, nil)
		synctest.Wait()
		time.Sleep(30*time.Second + time.Millisecond)
		synctest.Wait()
		assert.Equal(t, Active, r.state())
		assert.Equal(t, int64(3), h.idleN.Load(), "asked once per period")
		h.idleOK.Store(true)
		time.Sleep(10 * time.Second)
		synctest.Wait()
		assert.Equal(t, Down, r.state())
		assert.Equal(t, int64(4), h.idleN.Load())
	})
}

func TestIdleNonMinRunnerNeverLeavesFewerThanMin(t *testing.T) {
	synctest.Test(t, func(t *testing.T) {
		h := newFakeHost(2)
		s := newTestScaler(t, Config{Max: 3, MaxConcurrency: 1, IdleAfter: time.Second}, h)
		synctest.Wait()
		r1, r2 := newFakeRunner(1), newFakeRunner(2)
		h.waiting.Store(0)
		s.BootDone(1, r1, nil)
		s.BootDone(2, r2, nil)
		s.Resize(2, 3) // two runners already: no boot, both stay non-min
		synctest.Wait()
		require.Empty(t, h.bootIDs()[2:])
		time.Sleep(time.Hour)
		synctest.Wait()
		assert.Equal(t, []State{Active, Active}, []State{r1.state(), r2.state()})

		s.Resize(1, 3)
		time.Sleep(time.Hour)
		synctest.Wait()
		assert.Len(t, h.getPublished(), 1, "exactly one may go: Min is 1")
	})
}

func TestIdleMinRunnersUseMinIdleAfter(t *testing.T) {
	t.Run("disabled (0) keeps them", func(t *testing.T) {
		synctest.Test(t, func(t *testing.T) {
			h := newFakeHost(0)
			rs := runners(2)
			newTestScaler(t, Config{Min: 2, Max: 3, MaxConcurrency: 1, IdleAfter: time.Second, MinIdleAfter: 0}, h, rs...)
			time.Sleep(1000 * time.Hour)
			synctest.Wait()
			assert.Equal(t, []uint64{1, 2}, h.getPublished())
			assert.Zero(t, h.idleN.Load())
		})
	})
	t.Run("finite lets them go without replacement", func(t *testing.T) {
		synctest.Test(t, func(t *testing.T) {
			h := newFakeHost(0)
			rs := runners(2)
			s := newTestScaler(t, Config{Min: 2, Max: 3, MaxConcurrency: 1, IdleAfter: 0, MinIdleAfter: 10 * time.Second}, h, rs...)
			time.Sleep(10*time.Second + time.Millisecond)
			synctest.Wait()
			assert.Empty(t, h.getPublished())
			time.Sleep(time.Hour)
			s.Kick()
			synctest.Wait()
			assert.Empty(t, h.getBoots(), "a min runner that idled down is not replaced without demand")
			h.waiting.Store(1)
			s.Kick()
			synctest.Wait()
			assert.Len(t, h.getBoots(), 1, "demand brings a runner back")
		})
	})
}

func TestSetClosingCancelsPendingBootsOnceNobodyWaits(t *testing.T) {
	synctest.Test(t, func(t *testing.T) {
		h := newFakeHost(2)
		s := newTestScaler(t, Config{Max: 5, MaxConcurrency: 1}, h)
		synctest.Wait()
		require.Equal(t, []uint64{1, 2}, h.bootIDs())
		s.SetClosing()
		synctest.Wait()
		assert.Equal(t, 2, s.Stats().Pending, "boots go on while callers (casts) wait")
		h.waiting.Store(0)
		s.Kick()
		synctest.Wait()
		assert.Zero(t, s.Stats().Pending)
		assert.ErrorIs(t, h.growErrs[1], ErrBootCanceled)
		assert.ErrorIs(t, h.growErrs[2], ErrBootCanceled)
		s.Resize(3, 5)
		synctest.Wait()
		assert.Len(t, h.getBoots(), 2, "no Min upkeep while closing")
	})
}

func TestStopRemovesEveryRunnerCancelsBootsAndExits(t *testing.T) {
	synctest.Test(t, func(t *testing.T) {
		h := newFakeHost(0)
		rs := runners(2)
		rs[1].checkout() // busy runners go too
		s := New(Config{Min: 2, Max: 5, MaxConcurrency: 1, IdleAfter: time.Second, MinIdleAfter: time.Second, RetryAfter: time.Second, Reasons: testReasons}, h, []Runner{rs[0], rs[1]}, 3)
		s.Start(nil)
		h.waiting.Store(1)
		s.Kick()
		synctest.Wait()
		require.Equal(t, []uint64{3}, h.bootIDs())
		boot := h.getBoots()[0]
		n := len(h.getLog())

		s.Stop(errStopped)
		synctest.Wait()
		select {
		case <-s.Done():
		default:
			require.FailNow(t, "scaler goroutine did not exit after Stop")
		}
		assert.Equal(t, []string{
			"growend 3 c=2 err: " + ErrBootCanceled.Error(),
			"shutdown 1 stopped", "shrink 1 c=1 stopped",
			"shutdown 2 stopped", "shrink 2 c=0 stopped",
		}, h.logSince(n))
		assert.Error(t, boot.Ctx.Err())
		assert.Equal(t, Down, rs[0].state())
		assert.Equal(t, Down, rs[1].state())
		assert.Empty(t, h.getPublished())
		assert.Equal(t, Stats{Min: 2, Max: 5, Booted: 2, Shrunk: 2, Lingering: 1}, s.Stats())
		s.BootDone(3, nil, context.Canceled) // the canceled boot's Backend.Boot returns
		assert.Equal(t, Stats{Min: 2, Max: 5, Booted: 2, Shrunk: 2}, s.Stats())

		// Nothing happens after Stop: no timers, no boots, a second Stop is a no-op.
		s.Stop(errStopped)
		s.Kick()
		time.Sleep(time.Hour)
		synctest.Wait()
		assert.Len(t, h.getLog(), n+5)
	})
}

func TestKickNeverBlocks(t *testing.T) {
	synctest.Test(t, func(t *testing.T) {
		h := newFakeHost(0)
		s := New(Config{Max: 1, MaxConcurrency: 1, RetryAfter: time.Second, Reasons: testReasons}, h, nil, 1)
		for range 100 { // not started: nobody drains the kick channel
			s.Kick()
		}
		s.Start(nil)
		stopAndWait(t, s)
	})
}

// CanGrow tells queued callers whether waking the scaler could start a
// boot: only while booted + booting runners are below Max, and never after
// Stop.
func TestCanGrowOnlyWithRoomUnderMax(t *testing.T) {
	synctest.Test(t, func(t *testing.T) {
		h := newFakeHost(0)
		s := newTestScaler(t, Config{Min: 1, Max: 2, MaxConcurrency: 1}, h, runners(1)...)
		synctest.Wait()
		assert.True(t, s.CanGrow(), "1 of 2 runners: room for a boot")
		h.waiting.Store(1)
		s.Kick()
		synctest.Wait()
		require.Len(t, h.getBoots(), 1)
		assert.False(t, s.CanGrow(), "a runner and a pending boot fill Max 2")
		s.Resize(1, 3)
		synctest.Wait()
		assert.True(t, s.CanGrow(), "Resize made room")
		s.Stop(errStopped)
		synctest.Wait()
		assert.False(t, s.CanGrow(), "a stopped scaler never grows")
	})
}

// A caller queues, then reads CanGrow, and wakes the scaler only if it is
// true. For no caller to sleep unseen beside room for a boot, every read
// of the queue must come after CanGrow says there is room: a caller that
// reads false then queued before the read, and is counted.
func TestCanGrowIsTrueWheneverTheScalerReadsTheQueueWithRoomUnderMax(t *testing.T) {
	synctest.Test(t, func(t *testing.T) {
		h := newFakeHost(0)
		var mu sync.Mutex
		var seen []bool // CanGrow at each read of the queue
		var s *Scaler
		h.onWaiting = func() {
			mu.Lock()
			seen = append(seen, s.CanGrow())
			mu.Unlock()
		}
		s = New(Config{Max: 1, MaxConcurrency: 1, RetryAfter: time.Second, Reasons: testReasons}, h, nil, 1)
		assert.True(t, s.CanGrow(), "before the first evaluation: 0 of 1 runners, room for a boot")
		s.Start(nil)
		synctest.Wait()
		h.waiting.Store(1)
		s.Kick()
		synctest.Wait()
		require.Len(t, h.getBoots(), 1)
		assert.False(t, s.CanGrow(), "a pending boot fills Max 1")

		mu.Lock()
		seen = nil
		mu.Unlock()
		s.BootDone(1, nil, errBootFailed) // room again: the scaler re-reads the queue
		synctest.Wait()
		mu.Lock()
		got := slices.Clone(seen)
		mu.Unlock()
		require.NotEmpty(t, got)
		assert.NotContains(t, got, false, "the queue was read while CanGrow still said there was no room")
		h.waiting.Store(0)
		time.Sleep(2 * time.Second) // the retry fires and finds no demand
		synctest.Wait()
		stopAndWait(t, s)
	})
}

// A boot whose Backend.Boot outlives its limit fails at once (OnGrowEnd,
// BootFailures, retry), but keeps its room under Max until the call
// returns: with Max 1 no second boot starts before BootDone.
func TestOverdueBootFailsNowAndHoldsItsRoomUntilItsCallReturns(t *testing.T) {
	synctest.Test(t, func(t *testing.T) {
		h := newFakeHost(1)
		s := newTestScaler(t, Config{Max: 1, MaxConcurrency: 1}, h)
		synctest.Wait()
		require.Equal(t, []uint64{1}, h.bootIDs())

		s.BootOverdue(1, errBootFailed)
		synctest.Wait()
		assert.Equal(t, []string{"boot 1", "growend 1 c=0 err: " + errBootFailed.Error()}, h.getLog())
		assert.Equal(t, Stats{Max: 1, BootFailures: 1, Lingering: 1}, s.Stats())
		assert.False(t, s.CanGrow(), "the overdue call still holds the room")

		time.Sleep(time.Hour) // the retry fires, and finds no room
		synctest.Wait()
		assert.Equal(t, []uint64{1}, h.bootIDs(), "a boot started while the overdue Backend.Boot still ran")

		s.BootDone(1, nil, errBootFailed) // the call returns at last
		synctest.Wait()
		assert.Equal(t, []uint64{1, 2}, h.bootIDs(), "the room it held goes to the waiting caller")
		assert.Equal(t, Stats{Max: 1, Pending: 1, BootFailures: 1}, s.Stats())
	})
}

// A late runner from an overdue boot is shut down, never published.
func TestOverdueBootThatReturnsARunnerHasItShutDown(t *testing.T) {
	synctest.Test(t, func(t *testing.T) {
		h := newFakeHost(1)
		s := newTestScaler(t, Config{Max: 2, MaxConcurrency: 1}, h)
		synctest.Wait()
		s.BootOverdue(1, errBootFailed)
		synctest.Wait()
		late := newFakeRunner(1)
		s.BootDone(1, late, nil)
		synctest.Wait()
		assert.Equal(t, Down, late.state())
		assert.Contains(t, h.getLog(), "shutdown 1 "+ErrBootCanceled.Error())
		assert.Empty(t, h.getPublished())
		assert.Equal(t, uint64(0), s.Stats().Booted)
	})
}

var errPermanent = errors.New("runner exits before its handshake")

func permanentOnly(err error) bool { return errors.Is(err, errPermanent) }

// A boot failure that retrying cannot fix, with no runner up, fails the
// callers that the boots still under way will not serve, and schedules no
// retry.
func TestPermanentBootFailureFailsTheCallersNothingElseServes(t *testing.T) {
	synctest.Test(t, func(t *testing.T) {
		h := newFakeHost(3)
		s := newTestScaler(t, Config{Max: 3, MaxConcurrency: 1, Permanent: permanentOnly}, h)
		synctest.Wait()
		require.Equal(t, []uint64{1, 2, 3}, h.bootIDs())

		s.BootDone(1, nil, errPermanent)
		synctest.Wait()
		assert.Equal(t, []string{"failqueued keep=2: " + errPermanent.Error()}, h.entries("failqueued"))
		assert.Equal(t, 2, h.Waiting(), "the callers the two boots under way will serve stay")
		time.Sleep(time.Hour)
		synctest.Wait()
		assert.Equal(t, []uint64{1, 2, 3}, h.bootIDs(), "no retry after a permanent failure")
	})
}

// Beside a runner that is up, a permanent failure fails nobody (the
// runner serves the callers as its slots free) and follows the retry rule.
func TestPermanentBootFailureBesideARunnerRetriesLikeAnyOther(t *testing.T) {
	synctest.Test(t, func(t *testing.T) {
		h := newFakeHost(0)
		rs := runners(1)
		rs[0].checkout()
		s := newTestScaler(t, Config{Max: 2, MaxConcurrency: 1, Permanent: permanentOnly}, h, rs...)
		h.waiting.Store(1)
		s.Kick()
		synctest.Wait()
		require.Equal(t, []uint64{2}, h.bootIDs())
		s.BootDone(2, nil, errPermanent)
		synctest.Wait()
		assert.Empty(t, h.entries("failqueued"))
		assert.Equal(t, 1, h.Waiting())
		time.Sleep(time.Second + time.Millisecond)
		synctest.Wait()
		assert.Equal(t, []uint64{2, 3}, h.bootIDs(), "the retry boots again a second later")
	})
}

// Resize lowering Min turns the min runners beyond it, highest ID first,
// into ordinary runners: they idle down after IdleAfter.
func TestResizeLoweringMinDemotesTheHighestMinRunners(t *testing.T) {
	synctest.Test(t, func(t *testing.T) {
		h := newFakeHost(0)
		rs := runners(3)
		s := newTestScaler(t, Config{Min: 3, Max: 3, MaxConcurrency: 1, IdleAfter: time.Second}, h, rs...)
		time.Sleep(time.Hour)
		synctest.Wait()
		require.Empty(t, h.entries("shrink"), "min runners stay")

		s.Resize(1, 3)
		time.Sleep(2*time.Second + time.Millisecond)
		synctest.Wait()
		assert.ElementsMatch(t, []string{"shutdown 2 " + ErrIdle.Error(), "shutdown 3 " + ErrIdle.Error()}, h.entries("shutdown"),
			"both runners above the new Min idle down (at the same instant, in either order)")
		assert.Equal(t, Active, rs[0].state(), "the runner still needed for Min stays")
	})
}

// A drained runner reported empty goes as resized when Resize drained it
// (no Min upkeep), and otherwise as a used single-use runner, with Min
// restored.
func TestDrainedPicksTheReasonTheScalerKnows(t *testing.T) {
	synctest.Test(t, func(t *testing.T) {
		h := newFakeHost(0)
		rs := runners(2)
		rs[0].checkout()
		rs[1].checkout()
		s := newTestScaler(t, Config{Min: 1, Max: 2, MaxConcurrency: 1}, h, rs...)
		synctest.Wait()
		s.Resize(1, 1) // one busy runner drains
		synctest.Wait()
		var drained, other *fakeRunner
		for _, r := range rs {
			if r.state() == Draining {
				drained = r
			} else {
				other = r
			}
		}
		require.NotNil(t, drained, "Resize drained a busy runner")
		n := len(h.getLog())
		require.True(t, drained.release())
		s.Drained(drained)
		synctest.Wait()
		assert.Equal(t, []string{
			fmt.Sprintf("shutdown %d %v", drained.id, ErrResized), fmt.Sprintf("shrink %d c=1 %v", drained.id, ErrResized),
		}, h.logSince(n), "a runner Resize drained goes as resized, and is not replaced")

		// A single-use runner is drained by the pool, not by the scaler.
		other.mu.Lock()
		other.st = Draining
		other.mu.Unlock()
		require.True(t, other.release())
		n = len(h.getLog())
		s.Drained(other)
		synctest.Wait()
		assert.Equal(t, []string{
			fmt.Sprintf("shutdown %d %v", other.id, ErrSingleUse), fmt.Sprintf("shrink %d c=0 %v", other.id, ErrSingleUse), "boot 3 min",
		}, h.logSince(n), "a used single-use runner goes as such, and Min is restored")
	})
}
