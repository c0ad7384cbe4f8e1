package placement

import (
	"testing"

	"github.com/stretchr/testify/assert"
)

func TestStartIsInRangeAndSpreads(t *testing.T) {
	const n, draws = 8, 8000
	var seen [n]int
	for range draws {
		s := Start(n)
		if s < 0 || s >= n {
			t.Fatalf("Start(%d) = %d", n, s)
		}
		seen[s]++
	}
	for i, c := range seen {
		// Each position is drawn about draws/n = 1000 times; a binomial
		// spread of ±300 is more than 9 standard deviations.
		assert.InDelta(t, draws/n, c, 300, "position %d", i)
	}
	assert.Equal(t, 0, Start(1))
}

func TestSetStartFixesThePositionUntilRestored(t *testing.T) {
	restore := SetStart(func(n int) int { return n + 2 })
	assert.Equal(t, 2, Start(5), "taken modulo n")
	assert.Equal(t, 0, Start(1))
	restore()
	assert.Nil(t, start.Load())
}

func TestCallerIsStableForAGoroutineAndSpreadsAcrossGoroutines(t *testing.T) {
	const n = 8
	first := Caller(n)
	for range 100 {
		if got := Caller(n); got != first {
			t.Fatalf("Caller(%d) moved from %d to %d in one goroutine", n, first, got)
		}
	}
	// 256 goroutines alive at once (so on distinct stacks): every position
	// is some goroutine's, about 32 each.
	var seen [n]int
	results := make(chan int)
	hold := make(chan struct{})
	for range 256 {
		go func() {
			results <- Caller(n)
			<-hold
		}()
	}
	for range 256 {
		seen[<-results]++
	}
	close(hold)
	for i, c := range seen {
		assert.GreaterOrEqual(t, c, 8, "position %d: %v", i, seen)
	}
}

func TestSetStartFixesCallerToo(t *testing.T) {
	defer SetStart(func(int) int { return 3 })()
	assert.Equal(t, 3, Caller(5))
	assert.Equal(t, 1, Caller(2))
}
