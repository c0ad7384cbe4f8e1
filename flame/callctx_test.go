package flame

import (
	"context"
	"errors"
	"testing"
	"testing/synctest"
	"time"
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
		if d, ok := c.Deadline(); !ok || !d.Equal(time.Now().Add(time.Second)) {
			t.Fatalf("Deadline = %v, %v", d, ok)
		}
		if err := c.Err(); err != nil {
			t.Fatalf("Err before the deadline = %v", err)
		}
		if c.Value(runnerIDKey{}) != uint64(7) {
			t.Fatalf("runner id = %v", c.Value(runnerIDKey{}))
		}
		if c.timed.Load() != nil {
			t.Fatal("a timer was made before anyone waited")
		}
		time.Sleep(time.Second)
		if err := context.Cause(c); !errors.Is(err, context.DeadlineExceeded) {
			t.Fatalf("Cause at the deadline = %v", err)
		}
		if err := c.Err(); !errors.Is(err, context.DeadlineExceeded) {
			t.Fatalf("Err at the deadline = %v", err)
		}
		select {
		case <-c.Done():
		default:
			t.Fatal("Done is open after Err reported the deadline")
		}
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
		if waited := time.Since(start); waited != time.Second {
			t.Fatalf("derived ctx ended after %v; want the deadline, 1s", waited)
		}
		if !errors.Is(child.Err(), context.DeadlineExceeded) || !errors.Is(c.Err(), context.DeadlineExceeded) {
			t.Fatalf("Err: derived %v, call %v; want DeadlineExceeded", child.Err(), c.Err())
		}
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
			if !errors.Is(c.Err(), context.Canceled) || !errors.Is(child.Err(), context.Canceled) {
				t.Fatalf("timeout %v: Err after CANCEL: call %v, derived %v", timeout, c.Err(), child.Err())
			}
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
		if err := c.Err(); !errors.Is(err, context.Canceled) {
			t.Fatalf("Err after end = %v; want Canceled", err)
		}
	})
}
