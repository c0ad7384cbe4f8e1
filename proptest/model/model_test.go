package model

import (
	"testing"
	"time"

	"github.com/stretchr/testify/assert"
	"github.com/stretchr/testify/require"
	_ "pgregory.net/rapid" // registers -rapid.* flags, so that they work on ./proptest/...
)

func testConfig() Config {
	return Config{
		Max: 4, MaxConcurrency: 2,
		Timeout: 30 * time.Second, BootTimeout: 30 * time.Second,
		IdleShutdownAfter: 30 * time.Second, MinIdleShutdownAfter: Infinity,
	}
}

// SPEC §3.2: "5 simultaneous callers on an empty pool with MaxConcurrency 2 boot
// 3 runners."
func TestFiveCallersWithConcurrencyTwoBootThreeRunners(t *testing.T) {
	m := New(testConfig())
	for range 5 {
		m.Start(Spec{Kind: KindCall})
	}
	got := m.PendingBoots()
	require.Equal(t, []uint64{1, 2, 3}, got, "pending boots %v, want [1 2 3]", got)
	want := []Event{
		{Kind: GrowStart, RunnerID: 1, Count: 1},
		{Kind: GrowStart, RunnerID: 2, Count: 2},
		{Kind: GrowStart, RunnerID: 3, Count: 3},
	}
	events := m.Events()
	require.Equal(t, want, events, "events %v, want %v", events, want)
}

// SPEC §3.2b: a runner that comes up serves up to MaxConcurrency waiters, head
// first.
func TestRunnerUpServesHeadWaiters(t *testing.T) {
	m := New(testConfig())
	for range 3 {
		m.Start(Spec{Kind: KindCall})
	}
	m.CompleteBoot(2)
	for id, want := range map[int]Phase{1: Running, 2: Running, 3: Queued} {
		got := m.Work(id).Phase
		assert.Equal(t, want, got, "work %d phase %v, want %v", id, got, want)
	}
	w := m.Work(1)
	assert.Equal(t, uint64(2), w.Runner, "work 1 on runner #%d, want #2", w.Runner)
}

// SPEC §3.6: no demand, no retry; with demand, one retry a second later.
func TestBootRetryOnlyWithDemand(t *testing.T) {
	m := New(testConfig())
	m.Start(Spec{Kind: KindCall, Timeout: 500 * time.Millisecond})
	m.Advance(time.Second) // the caller gives up
	m.FailBoot(1)
	require.False(t, m.retryPending, "retry scheduled without demand")
	m.Start(Spec{Kind: KindCall})
	m.FailBoot(2)
	require.True(t, m.retryPending, "after a failure with demand: retryPending=%v boots=%v", m.retryPending, m.PendingBoots())
	require.Empty(t, m.boots, "after a failure with demand: retryPending=%v boots=%v", m.retryPending, m.PendingBoots())
	m.Advance(RetryAfter)
	got := m.PendingBoots()
	require.Equal(t, []uint64{3}, got, "after the retry: pending boots %v, want [3]", got)
}

// SPEC §3.7: a runner idles down between one and two periods after its last
// work.
func TestIdleShutdownBetweenOneAndTwoPeriods(t *testing.T) {
	cfg := testConfig()
	m := New(cfg)
	id := m.Start(Spec{Kind: KindCall})
	m.CompleteBoot(1)
	m.Advance(time.Second)
	m.Finish(id)
	m.Advance(cfg.IdleShutdownAfter - time.Second) // first period ends: it was used
	_, ok := m.Runner(1)
	require.True(t, ok, "runner idled down in the period it was used")
	m.Advance(cfg.IdleShutdownAfter)
	_, ok = m.Runner(1)
	require.False(t, ok, "runner still up after a whole idle period")
}
