package model

import (
	"slices"
	"testing"
	"time"

	_ "pgregory.net/rapid" // registers -rapid.* flags, so that they work on ./proptest/...
)

func testConfig() Config {
	return Config{
		Max: 4, MaxConcurrency: 2,
		Timeout: 30 * time.Second, BootTimeout: 30 * time.Second,
		IdleShutdownAfter: 30 * time.Second, MinIdleShutdownAfter: Infinity,
	}
}

// §3.2: "5 simultaneous callers on an empty pool with MaxConcurrency 2 boot
// 3 runners."
func TestFiveCallersWithConcurrencyTwoBootThreeRunners(t *testing.T) {
	m := New(testConfig())
	for range 5 {
		m.Start(Spec{Kind: KindCall})
	}
	if got := m.PendingBoots(); !slices.Equal(got, []uint64{1, 2, 3}) {
		t.Fatalf("pending boots %v, want [1 2 3]", got)
	}
	want := []Event{
		{Kind: GrowStart, RunnerID: 1, Count: 1},
		{Kind: GrowStart, RunnerID: 2, Count: 2},
		{Kind: GrowStart, RunnerID: 3, Count: 3},
	}
	if got := m.Events(); !slices.Equal(got, want) {
		t.Fatalf("events %v, want %v", got, want)
	}
}

// §3.2b: a runner that comes up serves up to MaxConcurrency waiters, head
// first.
func TestRunnerUpServesHeadWaiters(t *testing.T) {
	m := New(testConfig())
	for range 3 {
		m.Start(Spec{Kind: KindCall})
	}
	m.CompleteBoot(2)
	for id, want := range map[int]Phase{1: Running, 2: Running, 3: Queued} {
		if got := m.Work(id).Phase; got != want {
			t.Errorf("work %d phase %v, want %v", id, got, want)
		}
	}
	if w := m.Work(1); w.Runner != 2 {
		t.Errorf("work 1 on runner #%d, want #2", w.Runner)
	}
}

// §3.6: no demand, no retry; with demand, one retry a second later.
func TestBootRetryOnlyWithDemand(t *testing.T) {
	m := New(testConfig())
	m.Start(Spec{Kind: KindCall, Timeout: 500 * time.Millisecond})
	m.Advance(time.Second) // the caller gives up
	m.FailBoot(1)
	if m.retryPending {
		t.Fatal("retry scheduled without demand")
	}
	m.Start(Spec{Kind: KindCall})
	m.FailBoot(2)
	if !m.retryPending || len(m.boots) != 0 {
		t.Fatalf("after a failure with demand: retryPending=%v boots=%v", m.retryPending, m.PendingBoots())
	}
	m.Advance(RetryAfter)
	if got := m.PendingBoots(); !slices.Equal(got, []uint64{3}) {
		t.Fatalf("after the retry: pending boots %v, want [3]", got)
	}
}

// §3.7: a runner idles down between one and two periods after its last
// work.
func TestIdleShutdownBetweenOneAndTwoPeriods(t *testing.T) {
	cfg := testConfig()
	m := New(cfg)
	id := m.Start(Spec{Kind: KindCall})
	m.CompleteBoot(1)
	m.Advance(time.Second)
	m.Finish(id)
	m.Advance(cfg.IdleShutdownAfter - time.Second) // first period ends: it was used
	if _, ok := m.Runner(1); !ok {
		t.Fatal("runner idled down in the period it was used")
	}
	m.Advance(cfg.IdleShutdownAfter)
	if _, ok := m.Runner(1); ok {
		t.Fatal("runner still up after a whole idle period")
	}
}
