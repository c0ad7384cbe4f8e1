package flame

import (
	"context"
	"testing"
	"testing/synctest"
	"time"

	"github.com/stretchr/testify/require"
)

// FuzzConfig: NewPool never panics; it either returns a pool whose Stats
// reflect a valid config, or an error matching ErrInvalidConfig.
func FuzzConfig(f *testing.F) {
	f.Add(0, 1, 0, int64(0), int64(0), int64(0), int64(0), int64(0))
	f.Add(2, 1, 5, int64(-1), int64(0), int64(0), int64(0), int64(0))
	f.Add(-1, 0, -3, int64(1), int64(-5), int64(0), int64(-1), int64(int64(Infinity)))
	f.Add(0, 3, 1<<30, int64(0), int64(0), int64(0), int64(0), int64(0))
	f.Fuzz(func(t *testing.T, min, max, mc int, timeout, boot, shutdown, idle, minIdle int64) {
		if min > 16 {
			min = 16 // bound the boots a valid config performs
		}
		p, err := NewPool(Config{
			Min: min, Max: max, MaxConcurrency: mc,
			Timeout: time.Duration(timeout), BootTimeout: time.Duration(boot),
			ShutdownTimeout: time.Duration(shutdown), IdleShutdownAfter: time.Duration(idle),
			MinIdleShutdownAfter: time.Duration(minIdle),
		})
		valid := max >= 1 && min >= 0 && min <= max && mc >= 0 && mc <= maxMaxConcurrency &&
			timeout >= 0 && boot >= 0 && shutdown >= 0 && idle >= 0 && minIdle >= 0
		if !valid {
			require.ErrorIs(t, err, ErrInvalidConfig, "invalid config accepted or wrong error: %v", err)
			return
		}
		if err != nil {
			// A valid config can still fail its Min boots (a BootTimeout of
			// a few nanoseconds), but never as invalid.
			require.NotErrorIs(t, err, ErrInvalidConfig, "valid config rejected: %v", err)
			require.NotZero(t, min, "valid config rejected: %v", err)
			return
		}
		st := p.Stats()
		// Min runners stay unless MinIdleShutdownAfter is short enough to
		// idle them down already.
		require.Equal(t, min, st.Min, "stats %+v for min %d max %d mc %d", st, min, max, mc)
		require.Equal(t, max, st.Max, "stats %+v for min %d max %d mc %d", st, min, max, mc)
		require.GreaterOrEqual(t, st.MaxConcurrency, 1, "stats %+v for min %d max %d mc %d", st, min, max, mc)
		if minIdle == 0 {
			require.Equal(t, min, st.Runners, "stats %+v for min %d max %d mc %d", st, min, max, mc)
		}
		require.NoError(t, p.Close(context.Background()))
	})
}

// FuzzPoolOps drives a pool through a byte-coded sequence of operations on
// virtual time and checks its invariants after each: no runner above
// MaxConcurrency, active runners + pending boots within Max, InUse equal to
// the slots the test knows are held, and after Close nothing left.
func FuzzPoolOps(f *testing.F) {
	f.Add([]byte{0, 0, 0, 0, 0, 1, 4, 40, 3, 1, 1, 1})
	f.Add([]byte{0, 0, 0, 0, 0, 0, 0, 5, 1, 3, 2, 0, 0, 4, 200, 1, 1, 1, 1})
	f.Add([]byte{6, 6, 6, 6, 0, 0, 7, 7, 4, 10, 2, 5, 0, 1, 4, 255, 3, 0})
	f.Fuzz(func(t *testing.T, ops []byte) {
		if len(ops) > 200 {
			ops = ops[:200]
		}
		synctest.Test(t, func(t *testing.T) { runPoolOps(t, ops) })
	})
}

func runPoolOps(t *testing.T, ops []byte) {
	const mc = 2
	b := newTestBackend()
	b.delay = 100 * time.Millisecond
	p, err := NewPool(Config{
		Max: 3, MaxConcurrency: mc, Backend: b,
		BootTimeout: time.Second, Timeout: 2 * time.Second, IdleShutdownAfter: 500 * time.Millisecond,
	})
	require.NoError(t, err)
	type held struct {
		release chan struct{}
		cancel  context.CancelFunc
		done    chan error
	}
	var calls []held
	var children []*Child
	next := func(i *int) byte {
		if *i >= len(ops) {
			return 0
		}
		v := ops[*i]
		*i++
		return v
	}
	check := func() {
		synctest.Wait()
		st := p.Stats()
		for _, rl := range st.RunnerLoads {
			require.LessOrEqual(t, rl.Load, mc, "runner %d load %d > MaxConcurrency %d", rl.ID, rl.Load, mc)
		}
		require.LessOrEqual(t, st.Runners+st.Pending, st.Max, "runners %d + pending %d > Max %d", st.Runners, st.Pending, st.Max)
	}
	for i := 0; i < len(ops); {
		switch next(&i) % 8 {
		case 0: // a call that holds its slot
			ctx, cancel := context.WithCancel(context.Background())
			h := held{release: make(chan struct{}), cancel: cancel, done: make(chan error, 1)}
			calls = append(calls, h)
			go func() {
				h.done <- p.Call(ctx, func(ctx context.Context) error {
					select {
					case <-h.release:
						return nil
					case <-ctx.Done():
						return ctx.Err()
					}
				})
			}()
		case 1: // release the oldest call
			if len(calls) > 0 {
				close(calls[0].release)
				calls[0].cancel()
				calls = calls[1:]
			}
		case 2: // cancel a call, waiting or running
			if len(calls) > 0 {
				k := int(next(&i)) % len(calls)
				calls[k].cancel()
			}
		case 3: // crash a node
			if n := b.node(uint64(next(&i)%6) + 1); n != nil {
				n.Crash()
			}
		case 4: // advance virtual time
			time.Sleep(time.Duration(next(&i)) * 10 * time.Millisecond)
		case 5: // resize
			max := int(next(&i))%4 + 1
			_ = p.Resize(int(next(&i))%(max+1), max)
		case 6: // cast
			_ = p.Cast(context.Background(), func(context.Context) error { return nil })
		case 7: // child, stopped at once
			if c, err := p.PlaceChild(context.Background(), func(ctx context.Context) error {
				<-ctx.Done()
				return nil
			}, WithTimeout(50*time.Millisecond)); err == nil {
				children = append(children, c)
			}
		}
		check()
	}
	for _, c := range children {
		c.Stop()
	}
	for _, h := range calls {
		close(h.release)
		h.cancel()
	}
	require.NoError(t, p.Close(context.Background()), "Close")
	st := p.Stats()
	require.Zero(t, st.InUse, "after Close: %+v", st)
	require.Zero(t, st.Runners, "after Close: %+v", st)
	require.Zero(t, st.Waiting, "after Close: %+v", st)
	require.Zero(t, st.Pending, "after Close: %+v", st)
	require.True(t, b.allShutDown(), "a node was left running after Close")
}
