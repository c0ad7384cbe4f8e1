package flame

import (
	"context"
	"errors"
	"runtime"
	"testing"
	"testing/synctest"
	"time"

	"github.com/stretchr/testify/assert"
	"github.com/stretchr/testify/require"
)

// A context fn keeps after it returns reports Canceled, even if nobody
// asked for Done while fn ran (the lazy path).
func TestRetainedCtxIsCanceledAfterFnReturnsWithoutDone(t *testing.T) {
	synctest.Test(t, func(t *testing.T) {
		p := mustPool(t, Config{Max: 1})
		var kept context.Context
		require.NoError(t, p.Call(context.Background(), func(ctx context.Context) error { kept = ctx; return nil }))
		require.ErrorIs(t, kept.Err(), context.Canceled, "Err after fn returned, want context.Canceled")
		require.True(t, callIsClosed(kept.Done()), "Done of a finished context is not closed")
	})
}

// The limit has passed at the instant it ends: an error returned exactly
// then is an ErrTimeout, and fn's ctx reports DeadlineExceeded.
func TestErrorReturnedExactlyAtTheLimitIsErrTimeout(t *testing.T) {
	synctest.Test(t, func(t *testing.T) {
		p := mustPool(t, Config{Max: 1})
		errFn := errors.New("fn failed")
		var ctxErr error
		err := p.Call(context.Background(), func(ctx context.Context) error {
			time.Sleep(time.Second)
			ctxErr = ctx.Err()
			return errFn
		}, WithTimeout(time.Second))
		require.ErrorIs(t, err, ErrTimeout, "Call = %v, want ErrTimeout wrapping fn's error", err)
		require.ErrorIs(t, err, errFn, "Call = %v, want ErrTimeout wrapping fn's error", err)
		require.ErrorIs(t, ctxErr, context.DeadlineExceeded, "fn's ctx.Err() at the limit, want DeadlineExceeded")
	})
}

// Close with nothing left queued logs no dropped casts.
func TestCloseWithNothingQueuedLogsNoDrops(t *testing.T) {
	synctest.Test(t, func(t *testing.T) {
		var buf syncBuffer
		p, err := NewPool(Config{Max: 1, Logger: newTextLogger(&buf)})
		require.NoError(t, err)
		require.NoError(t, p.Cast(context.Background(), func(context.Context) error { return nil }))
		require.NoError(t, p.Close(context.Background()))
		require.NotContains(t, buf.String(), "dropped", "Close logged drops with nothing dropped")
	})
}

// context.AfterFunc on fn's ctx runs f when the ctx ends (here: the
// caller cancels), and its stop then reports that f was started.
func TestAfterFuncOnFnCtxRunsWhenCanceled(t *testing.T) {
	synctest.Test(t, func(t *testing.T) {
		p := mustPool(t, Config{Max: 1})
		ctx, cancel := context.WithCancel(context.Background())
		ran := make(chan struct{})
		var stop func() bool
		err := p.Call(ctx, func(fctx context.Context) error {
			stop = context.AfterFunc(fctx, func() { close(ran) })
			cancel()
			<-ran
			return fctx.Err()
		})
		require.ErrorIs(t, err, context.Canceled, "Call = %v, want Canceled", err)
		require.False(t, stop(), "stop after f ran reported it stopped f")
	})
}

// A stopped AfterFunc never runs, and stop reports it stopped it once.
func TestAfterFuncOnFnCtxStoppedNeverRuns(t *testing.T) {
	synctest.Test(t, func(t *testing.T) {
		p := mustPool(t, Config{Max: 1})
		ran := false
		var stop func() bool
		require.NoError(t, p.Call(context.Background(), func(fctx context.Context) error {
			stop = context.AfterFunc(fctx, func() { ran = true })
			assert.True(t, stop(), "first stop did not stop f")
			assert.False(t, stop(), "second stop reported stopping f again")
			return nil
		}))
		synctest.Wait() // fn's ctx has ended; a registered f would have run
		require.False(t, ran, "stopped AfterFunc ran")
	})
}

// An AfterFunc registered on a ctx that has already ended runs at once,
// and one still registered when fn returns runs then.
func TestAfterFuncOnEndedFnCtxRunsAtOnce(t *testing.T) {
	synctest.Test(t, func(t *testing.T) {
		p := mustPool(t, Config{Max: 1})
		var kept context.Context
		atReturn := make(chan struct{})
		require.NoError(t, p.Call(context.Background(), func(fctx context.Context) error {
			kept = fctx
			context.AfterFunc(fctx, func() { close(atReturn) })
			return nil
		}))
		<-atReturn
		late := make(chan struct{})
		require.False(t, context.AfterFunc(kept, func() { close(late) })(), "stop of an AfterFunc on an ended ctx reported stopping it")
		<-late
	})
}

// Contexts derived from fn's ctx hook into it rather than each starting a
// goroutine that waits for its Done (what the context package does for a
// context it does not know), and are cancelled with it.
func TestDerivedCtxStartsNoGoroutine(t *testing.T) {
	synctest.Test(t, func(t *testing.T) {
		p := mustPool(t, Config{Max: 1})
		const n = 50
		var grew int
		var children []context.Context
		err := p.Call(context.Background(), func(fctx context.Context) error {
			before := runtime.NumGoroutine()
			for range n {
				c, cancel := context.WithCancel(fctx)
				defer cancel()
				children = append(children, c)
			}
			grew = runtime.NumGoroutine() - before
			return nil
		})
		require.NoError(t, err)
		require.LessOrEqual(t, grew, 0, "%d derived contexts started %d goroutines", n, grew)
		for i, c := range children {
			require.Error(t, c.Err(), "child %d not canceled when fn's ctx ended", i)
		}
	})
}

// onCancel (a process call's CANCEL hook) runs when the caller cancels,
// but arms no timer for the execution limit: the runner enforces it.
func TestOnCancelRunsOnCancelButArmsNoLimitTimer(t *testing.T) {
	synctest.Test(t, func(t *testing.T) {
		p := mustPool(t, Config{Max: 1})
		ctx, cancel := context.WithCancel(context.Background())
		ran := make(chan struct{})
		err := p.Call(ctx, func(fctx context.Context) error {
			ec := fctx.(*execCtx)
			ec.onCancel(func() { close(ran) })
			lz := ec.lz.Load()
			if assert.NotNil(t, lz, "onCancel armed Done (and with it the limit's timer)") {
				assert.Nil(t, lz.done, "onCancel armed Done (and with it the limit's timer)")
			}
			time.Sleep(time.Hour) // past the default limit: f does not run for it
			assert.False(t, callIsClosed(ran), "onCancel's f ran for the execution limit")
			cancel()
			<-ran
			return nil
		}, WithTimeout(time.Minute))
		if err != nil && !errors.Is(err, context.Canceled) {
			require.ErrorIs(t, err, ErrTimeout)
		}
	})
}

// A huge finite limit saturates: the deadline is the latest time there is,
// not one that wrapped into the past; the call runs and its ctx is live.
func TestHugeLimitSaturatesRatherThanWraps(t *testing.T) {
	synctest.Test(t, func(t *testing.T) {
		p := mustPool(t, Config{Max: 1})
		time.Sleep(2 * time.Hour) // the pool's clock is well past its epoch: start + limit overflows
		for _, limit := range []time.Duration{Infinity - 1, Infinity - time.Hour} {
			err := p.Call(context.Background(), func(ctx context.Context) error {
				d, ok := ctx.Deadline()
				assert.True(t, ok, "a finite limit has a deadline")
				assert.True(t, d.After(time.Now().Add(100*365*24*time.Hour)), "deadline %v: a limit of %v wrapped", d, limit)
				return ctx.Err()
			}, WithTimeout(limit))
			assert.NoError(t, err, "limit %v", limit)
		}
	})
}

// A context hooked for cancellation (as a remote call's is) and then
// watched through Done stays live: being armed twice is no cancellation.
// It ends when fn returns.
func TestExecCtxArmedTwiceStaysLive(t *testing.T) {
	synctest.Test(t, func(t *testing.T) {
		p := mustPool(t, Config{Min: 1, Max: 1})
		r, gen, err := p.checkout(context.Background(), time.Second, kindCall)
		require.NoError(t, err)
		c := p.newExecCtx(gen, context.Background(), r, true, time.Minute)
		ran := make(chan struct{})
		c.onCancel(func() { close(ran) })
		done := c.Done()
		assert.False(t, callIsClosed(done), "Done is closed on a live context")
		assert.NoError(t, c.Err())
		c.finish()
		p.release(r)
		<-ran
		assert.True(t, callIsClosed(done), "Done is open after fn returned")
		assert.ErrorIs(t, c.Err(), context.Canceled)
	})
}

// Stopping one AfterFunc on fn's ctx leaves the others registered: when
// the ctx ends, exactly the ones not stopped run.
func TestAfterFuncStopRemovesOnlyItsOwnCallback(t *testing.T) {
	synctest.Test(t, func(t *testing.T) {
		p := mustPool(t, Config{Max: 1})
		var first, second bool
		require.NoError(t, p.Call(context.Background(), func(fctx context.Context) error {
			stop := context.AfterFunc(fctx, func() { first = true })
			context.AfterFunc(fctx, func() { second = true })
			assert.True(t, stop(), "stop did not stop its callback")
			return nil
		}))
		synctest.Wait()
		assert.False(t, first, "the stopped callback ran")
		assert.True(t, second, "stopping one callback removed another")
	})
}

// overrunInvoker is a remote node whose runner overran the execution
// limit: it hooks the call's cancellation, as a remote backend does, and
// answers with an error after the limit has passed, before the pool's own
// view of the limit fired anything (no timer is armed for a remote call).
type overrunInvoker struct{ testNode }

func (n *overrunInvoker) Invoke(ctx context.Context, _ Invocation) ([]byte, error) {
	defer AfterCancel(ctx, func() {})()
	time.Sleep(2 * time.Second)
	return nil, errors.New("remote: gave up")
}

var overrunFn = Register("test.execctx.overrun", func(context.Context, int) (int, error) { return 0, nil })

// A remote call whose limit passed while it ran fails with an error that
// matches ErrTimeout as well as the runner's, though nothing was recorded
// locally when the answer came.
func TestRemoteErrorPastTheLimitIsErrTimeout(t *testing.T) {
	synctest.Test(t, func(t *testing.T) {
		be := scBackendFunc(func(_ context.Context, spec RunnerSpec) (Node, error) {
			return &overrunInvoker{testNode{id: spec.ID, done: make(chan struct{})}}, nil
		})
		p := mustPool(t, Config{Max: 1, Backend: be})
		_, err := overrunFn.Call(context.Background(), p, 1, WithTimeout(time.Second))
		assert.ErrorIs(t, err, ErrTimeout)
		assert.ErrorContains(t, err, "remote: gave up")
	})
}
