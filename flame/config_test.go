package flame

import (
	"context"
	"errors"
	"regexp"
	"slices"
	"testing"
	"testing/synctest"
	"time"

	"github.com/stretchr/testify/assert"
	"github.com/stretchr/testify/require"
)

// configNamesField reports whether err's message names field as a whole
// word ("Timeout" does not match inside "BootTimeout").
func configNamesField(err error, field string) bool {
	return regexp.MustCompile(`\b` + field + `\b`).MatchString(err.Error())
}

func TestNewPoolRejectsEachInvalidFieldByName(t *testing.T) {
	cases := []struct {
		name  string
		cfg   Config
		field string
	}{
		{"Max zero", Config{Max: 0}, "Max"},
		{"Max negative", Config{Max: -3}, "Max"},
		{"Min negative", Config{Min: -1, Max: 1}, "Min"},
		{"Min above Max", Config{Min: 3, Max: 2}, "Min"},
		{"MaxConcurrency negative", Config{Max: 1, MaxConcurrency: -1}, "MaxConcurrency"},
		{"MaxConcurrency too large", Config{Max: 1, MaxConcurrency: maxMaxConcurrency + 1}, "MaxConcurrency"},
		{"Timeout negative", Config{Max: 1, Timeout: -time.Nanosecond}, "Timeout"},
		{"BootTimeout negative", Config{Max: 1, BootTimeout: -time.Second}, "BootTimeout"},
		{"ShutdownTimeout negative", Config{Max: 1, ShutdownTimeout: -time.Second}, "ShutdownTimeout"},
		{"IdleShutdownAfter negative", Config{Max: 1, IdleShutdownAfter: -time.Second}, "IdleShutdownAfter"},
		{"MinIdleShutdownAfter negative", Config{Max: 1, MinIdleShutdownAfter: -time.Second}, "MinIdleShutdownAfter"},
	}
	for _, tc := range cases {
		t.Run(tc.name, func(t *testing.T) {
			p, err := NewPool(tc.cfg)
			require.Error(t, err)
			assert.Nil(t, p)
			assert.ErrorIs(t, err, ErrInvalidConfig)
			assert.Truef(t, configNamesField(err, tc.field), "error %q does not name %s", err, tc.field)
		})
	}
}

func TestNewPoolReportsEveryInvalidField(t *testing.T) {
	_, err := NewPool(Config{Min: -1, Max: 0, MaxConcurrency: -2, Timeout: -1, ShutdownTimeout: -1})
	require.ErrorIs(t, err, ErrInvalidConfig)
	for _, field := range []string{"Min", "Max", "MaxConcurrency", "Timeout", "ShutdownTimeout"} {
		assert.Truef(t, configNamesField(err, field), "error %q does not name %s", err, field)
	}
	assert.False(t, configNamesField(err, "BootTimeout"), "error %q names a valid field", err)
}

func TestNewPoolAcceptsBoundaryValues(t *testing.T) {
	for _, cfg := range []Config{
		{Max: 1},
		{Min: 1, Max: 1},
		{Max: 1, MaxConcurrency: 1},
		{Max: 1, MaxConcurrency: maxMaxConcurrency},
		{Max: 1, Timeout: Infinity, BootTimeout: Infinity, ShutdownTimeout: Infinity,
			IdleShutdownAfter: Infinity, MinIdleShutdownAfter: Infinity},
	} {
		p, err := NewPool(cfg)
		require.NoErrorf(t, err, "config %+v", cfg)
		require.NoError(t, p.Close(context.Background()))
	}
}

func TestNewPoolInvalidConfigStartsNothing(t *testing.T) {
	synctest.Test(t, func(t *testing.T) {
		b := newTestBackend()
		var ev eventLog
		cfg := Config{Min: 2, Max: 2, Backend: b, IdleShutdownAfter: -time.Second}
		ev.hook(&cfg)
		_, err := NewPool(cfg)
		require.ErrorIs(t, err, ErrInvalidConfig)
		synctest.Wait()
		assert.Empty(t, b.calls(), "a boot started although the config is invalid")
		assert.Empty(t, ev.get())
		// synctest.Test itself fails if a goroutine was left behind.
	})
}

func TestNewPoolAppliesDefaults(t *testing.T) {
	synctest.Test(t, func(t *testing.T) {
		p := mustPool(t, Config{Max: 1}) // Backend nil: LocalBackend
		st := p.Stats()
		assert.Equal(t, "flame", st.Name)
		assert.Equal(t, 100, st.MaxConcurrency)
		assert.Equal(t, 0, st.Min)
		assert.Equal(t, 1, st.Max)

		// Default Timeout (30s) is the execution limit of a call.
		var deadline time.Time
		var ok bool
		start := time.Now()
		require.NoError(t, p.Call(context.Background(), func(ctx context.Context) error {
			deadline, ok = ctx.Deadline()
			return nil
		}))
		require.True(t, ok, "fn's ctx has no deadline under the default Timeout")
		callDeadlineNear(t, start.Add(30*time.Second), deadline)
	})
}

// Min boots run in parallel, at most 10 at a time: 20 boots of 1s each take
// exactly 2s (one at a time would take 20s, all at once 1s).
func TestNewPoolBootsMinRunnersTenAtATime(t *testing.T) {
	synctest.Test(t, func(t *testing.T) {
		b := newTestBackend()
		b.delay = time.Second
		start := time.Now()
		p := mustPool(t, Config{Min: 20, Max: 20, Backend: b})
		assert.Equal(t, 2*time.Second, time.Since(start))

		st := p.Stats()
		assert.Equal(t, 20, st.Runners)
		assert.Equal(t, uint64(20), st.Booted)
		assert.Equal(t, 0, st.Pending)
		ids := b.calls()
		slices.Sort(ids)
		want := make([]uint64, 20)
		for i := range want {
			want[i] = uint64(i + 1)
		}
		assert.Equal(t, want, ids, "Min boots must use runner IDs 1..Min")
	})
}

func TestNewPoolMinBootBoundedByBootTimeout(t *testing.T) {
	synctest.Test(t, func(t *testing.T) {
		b := newTestBackend()
		b.hang = func(id uint64) bool { return id == 2 }
		start := time.Now()
		p, err := NewPool(Config{Min: 3, Max: 3, Backend: b, BootTimeout: 5 * time.Second})
		require.Error(t, err)
		assert.Nil(t, p)
		assert.Equal(t, 5*time.Second, time.Since(start))
		assert.ErrorIs(t, err, context.DeadlineExceeded)
		synctest.Wait()
		for _, id := range []uint64{1, 3} {
			n := b.node(id)
			require.NotNilf(t, n, "runner %d did not boot", id)
			assert.Equalf(t, 1, n.shutdownCount(), "runner %d not shut down after NewPool failed", id)
		}
	})
}

// Every Min boot is attempted even after one fails (12 > the 10 parallel
// boots, so the last two start after the failure), and all that booted are
// shut down.
func TestNewPoolFailedMinBootShutsDownTheOthersAndNamesTheFailure(t *testing.T) {
	synctest.Test(t, func(t *testing.T) {
		errBoom := errors.New("boom: no capacity in zone")
		b := newTestBackend()
		b.delay = time.Second
		b.fail = func(id uint64) error {
			if id == 1 {
				return errBoom
			}
			return nil
		}
		var ev eventLog
		cfg := Config{Min: 12, Max: 12, Backend: b}
		ev.hook(&cfg)
		p, err := NewPool(cfg)
		require.Error(t, err)
		assert.Nil(t, p)
		assert.ErrorIs(t, err, errBoom)
		assert.Contains(t, err.Error(), "boom: no capacity in zone")

		synctest.Wait()
		assert.Len(t, b.calls(), 12)
		for id := uint64(2); id <= 12; id++ {
			n := b.node(id)
			if !assert.NotNilf(t, n, "Min boot %d was not carried out after boot 1 failed", id) {
				continue
			}
			assert.Equalf(t, 1, n.shutdownCount(), "runner %d not shut down", id)
		}
		assert.True(t, b.allShutDown())
		assert.Empty(t, ev.get(), "Min boots fire no events, failed or not")
	})
}

func TestNewPoolMinBootsFireNoEventsButLaterBootsDo(t *testing.T) {
	synctest.Test(t, func(t *testing.T) {
		b := newTestBackend()
		var ev eventLog
		cfg := Config{Min: 3, Max: 4, MaxConcurrency: 1, Backend: b}
		ev.hook(&cfg)
		p := mustPool(t, cfg)
		synctest.Wait()
		assert.Empty(t, ev.get(), "Min boots fired events")

		ctx := context.Background()
		var held []*callHeld
		for range 4 { // three fill the Min runners, the fourth boots runner 4
			held = append(held, callHold(ctx, p))
			synctest.Wait()
		}
		assert.Equal(t, []string{"grow-start 4 #4", "grow-end 4 #4 ok"}, ev.get())
		for _, h := range held {
			h.finish(t)
		}
	})
}

// Stats is exact when the pool is quiescent: every field, after work, a
// failed boot, a retry and a crash.
func TestStatsExactWhenQuiescent(t *testing.T) {
	synctest.Test(t, func(t *testing.T) {
		errBoom := errors.New("boom")
		b := newTestBackend()
		b.fail = func(id uint64) error {
			if id == 3 {
				return errBoom
			}
			return nil
		}
		p := mustPool(t, Config{Name: "stats", Min: 2, Max: 3, MaxConcurrency: 2, Backend: b})
		assert.Equal(t, Stats{
			Name: "stats", Min: 2, Max: 3, MaxConcurrency: 2,
			Runners: 2, RunnerLoads: []RunnerLoad{{1, 0}, {2, 0}}, Booted: 2,
		}, p.Stats())

		ctx := context.Background()
		var held []*callHeld
		for range 4 {
			held = append(held, callHold(ctx, p))
			synctest.Wait()
		}
		assert.Equal(t, Stats{
			Name: "stats", Min: 2, Max: 3, MaxConcurrency: 2,
			Runners: 2, InUse: 4, RunnerLoads: []RunnerLoad{{1, 2}, {2, 2}}, Booted: 2,
			Checkouts: 4,
		}, p.Stats())

		// A fifth call waits; boot 3 fails, the retry boots runner 4.
		fifth := callHold(ctx, p)
		synctest.Wait()
		assert.Equal(t, 1, p.Stats().Waiting)
		assert.Equal(t, uint64(1), p.Stats().BootFailures)
		time.Sleep(2 * time.Second)
		synctest.Wait()
		assert.Equal(t, uint64(4), fifth.runner(t))
		assert.Equal(t, Stats{
			Name: "stats", Min: 2, Max: 3, MaxConcurrency: 2,
			Runners: 3, InUse: 5, RunnerLoads: []RunnerLoad{{1, 2}, {2, 2}, {4, 1}},
			Booted: 3, BootFailures: 1,
			Checkouts: 5, Waits: 1, WaitTime: time.Second, // the fifth queued until the retry at 1s
		}, p.Stats())

		// Runner 2 crashes with two calls on it.
		b.node(2).Crash()
		synctest.Wait()
		for _, h := range held {
			if h.runner(t) == 2 {
				assert.ErrorIs(t, <-h.done, ErrRunnerDown)
			}
		}
		assert.Equal(t, Stats{
			Name: "stats", Min: 2, Max: 3, MaxConcurrency: 2,
			Runners: 2, InUse: 3, RunnerLoads: []RunnerLoad{{1, 2}, {4, 1}},
			Booted: 3, BootFailures: 1, Shrunk: 1,
			Checkouts: 5, Waits: 1, WaitTime: time.Second, // runner 2's two stay counted
		}, p.Stats())

		for _, h := range append(held, fifth) {
			if h.id != 2 {
				h.finish(t)
			}
		}
		synctest.Wait()
		st := p.Stats()
		assert.Equal(t, 0, st.InUse)
		assert.Equal(t, []RunnerLoad{{1, 0}, {4, 0}}, st.RunnerLoads)
		assert.Equal(t, uint64(5), st.Checkouts, "releases are not checkouts")
	})
}

// Waits, GaveUp and WaitTime count the callers that queued: those served
// and those who left without a slot (ctx, budget), with the time each
// spent queued; a handoff is a checkout too.
func TestStatsCountQueuedCallersAndTheirWait(t *testing.T) {
	synctest.Test(t, func(t *testing.T) {
		p := mustPool(t, Config{Min: 1, Max: 1, MaxConcurrency: 1})
		time.Sleep(time.Second) // so that no reading of the pool's clock is 0
		ctx := context.Background()
		h := callHold(ctx, p)
		synctest.Wait()

		// Gives up on its budget after 2s.
		budget := make(chan error, 1)
		go func() { budget <- p.Call(ctx, func(context.Context) error { return nil }, WithTimeout(2*time.Second)) }()
		// Gives up when its ctx is cancelled after 3s.
		cctx, cancel := context.WithCancel(ctx)
		canceled := make(chan error, 1)
		go func() { canceled <- p.Call(cctx, func(context.Context) error { return nil }) }()
		// Is handed the slot after 5s.
		served := make(chan error, 1)
		go func() { served <- p.Call(ctx, func(context.Context) error { return nil }) }()
		synctest.Wait()
		time.Sleep(3 * time.Second)
		cancel()
		time.Sleep(2 * time.Second)
		h.finish(t)
		synctest.Wait()
		assert.ErrorIs(t, <-budget, ErrCheckoutTimeout)
		assert.ErrorIs(t, <-canceled, context.Canceled)
		assert.NoError(t, <-served)

		st := p.Stats()
		assert.Equal(t, uint64(2), st.Checkouts, "the held call and the handoff")
		assert.Equal(t, uint64(1), st.Waits)
		assert.Equal(t, uint64(2), st.GaveUp)
		assert.Equal(t, 2*time.Second+3*time.Second+5*time.Second, st.WaitTime)
	})
}

func TestStatsRunnerLoadsSortedByID(t *testing.T) {
	synctest.Test(t, func(t *testing.T) {
		p := mustPool(t, Config{Min: 64, Max: 64, MaxConcurrency: 1})
		ctx := context.Background()
		var held []*callHeld
		for range 5 {
			held = append(held, callHold(ctx, p))
		}
		synctest.Wait()
		for range 20 { // map iteration order varies between calls
			loads := p.Stats().RunnerLoads
			require.Len(t, loads, 64)
			for i, rl := range loads {
				require.Equalf(t, uint64(i+1), rl.ID, "RunnerLoads not sorted by ID: %v", loads)
			}
		}
		for _, h := range held {
			h.finish(t)
		}
	})
}

// The defaults are FLAME's, as the README says.
func TestDefaultsAreFLAMEs(t *testing.T) {
	assert.Equal(t, 100, DefaultMaxConcurrency)
	for _, d := range []time.Duration{DefaultTimeout, DefaultBootTimeout, DefaultShutdownTimeout, DefaultIdleShutdownAfter} {
		assert.Equal(t, 30*time.Second, d)
	}
	assert.Equal(t, Infinity, time.Duration(DefaultMinIdleShutdownAfter))
}
