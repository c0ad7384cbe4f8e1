package flame

import "testing"

// The runner word's CAS rules, tested directly: these are what make an idle
// claim and a checkout mutually exclusive.

func testRunner() *runner {
	p := &Pool{cfg: Config{MaxConcurrency: 2}}
	return &runner{id: 1, pool: p}
}

func acquire(r *runner) bool {
	w := r.word.Load()
	return wordState(w) == stActive && wordLoad(w) < r.pool.cfg.MaxConcurrency && r.take(w)
}

func TestClaimIdleFailsAfterACheckoutAndReleaseInBetween(t *testing.T) {
	r := testRunner()
	_, gen, _ := r.Snapshot()
	if !acquire(r) {
		t.Fatal("checkout failed")
	}
	r.pool.release(r)
	if load, _, _ := r.Snapshot(); load != 0 {
		t.Fatalf("load %d after release", load)
	}
	if r.ClaimIdle(gen) {
		t.Fatal("ClaimIdle succeeded although the runner was used since the idle period began")
	}
	_, gen, _ = r.Snapshot()
	if !r.ClaimIdle(gen) {
		t.Fatal("ClaimIdle failed on an untouched idle runner")
	}
	if acquire(r) {
		t.Fatal("checkout landed on a claimed runner")
	}
}

func TestClaimIdleFailsWithASlotHeld(t *testing.T) {
	r := testRunner()
	acquire(r)
	_, gen, _ := r.Snapshot()
	if r.ClaimIdle(gen) {
		t.Fatal("ClaimIdle took a runner with a slot held")
	}
}

func TestDrainStopsCheckoutsAndClaimsOnlyWhenEmpty(t *testing.T) {
	r := testRunner()
	acquire(r)
	if r.Drain() {
		t.Fatal("Drain reported a busy runner as down")
	}
	if _, _, st := r.Snapshot(); st != 1 { // Draining
		t.Fatalf("state %d after Drain, want draining", st)
	}
	if acquire(r) {
		t.Fatal("checkout landed on a draining runner")
	}
	r2 := testRunner()
	if !r2.Drain() {
		t.Fatal("Drain of an idle runner should claim it at once")
	}
}

func TestKillKeepsLoadSoALateReleaseIsHarmless(t *testing.T) {
	r := testRunner()
	acquire(r)
	r.Kill()
	load, _, st := r.Snapshot()
	if load != 1 || st != 2 {
		t.Fatalf("after Kill: load %d state %d, want load kept and state down", load, st)
	}
	if acquire(r) {
		t.Fatal("checkout landed on a dead runner")
	}
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
		if p.claim() != r {
			t.Fatal("checkout failed")
		}
	}
	if got, want := r.checkouts(), genMax+3; got != want {
		t.Fatalf("checkouts = %d, want %d", got, want)
	}
	if load, _, _ := r.Snapshot(); load != 3 {
		t.Fatalf("load = %d after 3 checkouts across the overflow", load)
	}
}
