package flame

import (
	"context"
	"testing"
	"testing/synctest"
	"time"

	"github.com/stretchr/testify/require"
)

// A call's ctx on a runner reports its deadline, and past it reports
// DeadlineExceeded (Err and Cause) even though nobody waited, without a
// timer made before that.
func TestCallCtxDeadlineWithoutWaiting(t *testing.T) {
	synctest.Test(t, func(t *testing.T) {
		base, cancel := context.WithCancel(context.Background())
		defer cancel()
		c := newCallCtx(base, 7, time.Second)
		defer c.end()
		d, ok := c.Deadline()
		require.True(t, ok, "Deadline = %v, %v", d, ok)
		require.WithinDuration(t, time.Now().Add(time.Second), d, 0, "Deadline = %v, %v", d, ok)
		require.NoError(t, c.Err(), "Err before the deadline")
		require.Equal(t, uint64(7), c.Value(runnerIDKey{}), "runner id")
		require.Nil(t, c.timed.Load(), "a timer was made before anyone waited")
		time.Sleep(time.Second)
		require.ErrorIs(t, context.Cause(c), context.DeadlineExceeded, "Cause at the deadline")
		require.ErrorIs(t, c.Err(), context.DeadlineExceeded, "Err at the deadline")
		require.True(t, callIsClosed(c.Done()), "Done is open after Err reported the deadline")
	})
}

// Waiting on the ctx, or on one derived from it, ends at the deadline
// with DeadlineExceeded, as with context.WithDeadline.
func TestCallCtxDoneAndDerivedAtTheDeadline(t *testing.T) {
	synctest.Test(t, func(t *testing.T) {
		base, cancel := context.WithCancel(context.Background())
		defer cancel()
		c := newCallCtx(base, 1, time.Second)
		defer c.end()
		child, stop := context.WithCancel(c)
		defer stop()
		start := time.Now()
		<-child.Done()
		require.Equal(t, time.Second, time.Since(start), "derived ctx ended; want the deadline, 1s")
		require.ErrorIs(t, child.Err(), context.DeadlineExceeded, "Err: derived %v, call %v; want DeadlineExceeded", child.Err(), c.Err())
		require.ErrorIs(t, c.Err(), context.DeadlineExceeded, "Err: derived %v, call %v; want DeadlineExceeded", child.Err(), c.Err())
	})
}

// CANCEL (the base) cancels the ctx and what derives from it, armed or not.
func TestCallCtxCancelReachesEveryone(t *testing.T) {
	synctest.Test(t, func(t *testing.T) {
		for _, timeout := range []time.Duration{0, time.Hour} {
			base, cancel := context.WithCancel(context.Background())
			c := newCallCtx(base, 1, timeout)
			child, stop := context.WithCancel(c)
			cancel()
			<-child.Done()
			<-c.Done()
			require.ErrorIs(t, c.Err(), context.Canceled, "timeout %v: Err after CANCEL: call %v, derived %v", timeout, c.Err(), child.Err())
			require.ErrorIs(t, child.Err(), context.Canceled, "timeout %v: Err after CANCEL: call %v, derived %v", timeout, c.Err(), child.Err())
			stop()
			c.end()
		}
	})
}

// end releases the deadline's timer: nothing is left in the bubble.
func TestCallCtxEndStopsTheTimer(t *testing.T) {
	synctest.Test(t, func(t *testing.T) {
		base, cancel := context.WithCancel(context.Background())
		defer cancel()
		c := newCallCtx(base, 1, time.Hour)
		_ = c.Done()
		c.end()
		require.ErrorIs(t, c.Err(), context.Canceled, "Err after end; want Canceled")
	})
}
