package measure

import (
	"errors"
	"testing"
	"time"

	"github.com/stretchr/testify/assert"
	"github.com/stretchr/testify/require"
)

func TestPctIsTheNearestRank(t *testing.T) {
	var ts []time.Duration
	for i := 1; i <= 100; i++ {
		ts = append(ts, time.Duration(i))
	}
	assert.Equal(t, time.Duration(50), Pct(ts, 50))
	assert.Equal(t, time.Duration(99), Pct(ts, 99))
	assert.Equal(t, time.Duration(100), Pct(ts, 100))
	assert.Equal(t, time.Duration(7), Pct([]time.Duration{7}, 99))
	assert.Zero(t, Pct(nil, 50))
}

func TestSequentialTimesEachCallAfterTheWarmup(t *testing.T) {
	var seen []int
	ts, err := Sequential(3, 2, func(i int) error { seen = append(seen, i); return nil })
	require.NoError(t, err)
	assert.Len(t, ts, 3)
	assert.Equal(t, []int{0, 1, 0, 1, 2}, seen)
	boom := errors.New("boom")
	_, err = Sequential(3, 0, func(int) error { return boom })
	assert.ErrorIs(t, err, boom)
}
