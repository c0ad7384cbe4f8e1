package flame

import (
	"testing"

	"github.com/stretchr/testify/require"

	"github.com/goflame/goflame/flame/internal/scaler"
)

// The runner word's CAS rules, tested directly: these are what make an idle
// claim and a checkout mutually exclusive.

func testRunner() *runner {
	p := &Pool{cfg: Config{MaxConcurrency: 2}}
	return &runner{id: 1, pool: p}
}

func acquire(r *runner) bool {
	w := r.word.Load()
	if wordState(w) != stActive || wordLoad(w) >= r.pool.cfg.MaxConcurrency {
		return false
	}
	_, ok := r.take(w)
	return ok
}

func TestClaimIdleFailsAfterACheckoutAndReleaseInBetween(t *testing.T) {
	r := testRunner()
	_, gen, _ := r.Snapshot()
	require.True(t, acquire(r), "checkout failed")
	r.pool.release(r)
	load, _, _ := r.Snapshot()
	require.Zero(t, load, "load %d after release", load)
	require.False(t, r.ClaimIdle(gen), "ClaimIdle succeeded although the runner was used since the idle period began")
	_, gen, _ = r.Snapshot()
	require.True(t, r.ClaimIdle(gen), "ClaimIdle failed on an untouched idle runner")
	require.False(t, acquire(r), "checkout landed on a claimed runner")
}

func TestClaimIdleFailsWithASlotHeld(t *testing.T) {
	r := testRunner()
	acquire(r)
	_, gen, _ := r.Snapshot()
	require.False(t, r.ClaimIdle(gen), "ClaimIdle took a runner with a slot held")
}

func TestDrainStopsCheckoutsAndClaimsOnlyWhenEmpty(t *testing.T) {
	r := testRunner()
	acquire(r)
	require.False(t, r.Drain(), "Drain reported a busy runner as down")
	_, _, st := r.Snapshot()
	require.Equal(t, scaler.Draining, st, "state %d after Drain, want draining", st)
	require.False(t, acquire(r), "checkout landed on a draining runner")
	r2 := testRunner()
	require.True(t, r2.Drain(), "Drain of an idle runner should claim it at once")
}

func TestKillKeepsLoadSoALateReleaseIsHarmless(t *testing.T) {
	r := testRunner()
	acquire(r)
	r.Kill()
	load, _, st := r.Snapshot()
	require.Equal(t, 1, load, "after Kill: load %d state %d, want load kept and state down", load, st)
	require.Equal(t, scaler.Down, st, "after Kill: load %d state %d, want load kept and state down", load, st)
	require.False(t, acquire(r), "checkout landed on a dead runner")
}

// A runner's checkout count is its generation plus the generation's
// overflows: Stats.Checkouts stays exact past 2^38 checkouts.
func TestCheckoutCountSurvivesGenerationOverflow(t *testing.T) {
	p := &Pool{cfg: Config{MaxConcurrency: 4}}
	r := &runner{id: 1, pool: p}
	p.set.Store(&[]*runner{r})
	const genMax = (uint64(1) << (64 - genShift)) - 1
	r.word.Store(genMax<<genShift | stActive) // one checkout short of overflowing
	for range 3 {
		require.Same(t, r, claimRunner(p), "checkout failed")
	}
	got, want := r.checkouts(), genMax+3
	require.Equal(t, want, got, "checkouts = %d, want %d", got, want)
	load, _, _ := r.Snapshot()
	require.Equal(t, 3, load, "load = %d after 3 checkouts across the overflow", load)
}
