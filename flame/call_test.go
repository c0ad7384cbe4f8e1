package flame

import (
	"context"
	"errors"
	"fmt"
	"log/slog"
	"runtime/debug"
	"sync"
	"sync/atomic"
	"testing"
	"testing/synctest"
	"time"

	"github.com/stretchr/testify/assert"
	"github.com/stretchr/testify/require"
)

// callHeld is one Call whose fn holds its slot until finish (or until its
// ctx is done, returning ctx.Err()).
type callHeld struct {
	id      uint64 // runner serving it; written before started is closed
	started chan struct{}
	release chan struct{}
	done    chan error
}

// callHold starts a held Call in its own goroutine.
func callHold(ctx context.Context, p *Pool, opts ...CallOption) *callHeld {
	h := &callHeld{started: make(chan struct{}), release: make(chan struct{}), done: make(chan error, 1)}
	go func() {
		h.done <- p.Call(ctx, func(ctx context.Context) error {
			h.id, _ = RunnerID(ctx)
			close(h.started)
			select {
			case <-h.release:
				return nil
			case <-ctx.Done():
				return ctx.Err()
			}
		}, opts...)
	}()
	return h
}

// runner returns the ID of the runner serving h, failing if fn has not
// started.
func (h *callHeld) runner(t *testing.T) uint64 {
	t.Helper()
	select {
	case <-h.started:
		return h.id
	default:
		require.FailNow(t, "held call has not started")
		return 0
	}
}

func (h *callHeld) isStarted() bool {
	select {
	case <-h.started:
		return true
	default:
		return false
	}
}

// finish lets fn return nil and checks that the Call succeeded.
func (h *callHeld) finish(t *testing.T) {
	t.Helper()
	close(h.release)
	require.NoError(t, <-h.done)
}

// callIsClosed reports whether ch is closed (without blocking).
func callIsClosed(ch <-chan struct{}) bool {
	select {
	case <-ch:
		return true
	default:
		return false
	}
}

// callGateBackend boots nodes whose Exec waits for gate before running fn,
// or, if execErr is set, returns it without running fn.
type callGateBackend struct {
	gate    chan struct{}
	execErr error
}

func (b *callGateBackend) Boot(ctx context.Context, spec RunnerSpec) (Node, error) {
	return &callGateNode{b: b, done: make(chan struct{})}, nil
}

type callGateNode struct {
	b    *callGateBackend
	once sync.Once
	done chan struct{}
}

func (n *callGateNode) Exec(ctx context.Context, fn func(context.Context) error) error {
	<-n.b.gate
	if n.b.execErr != nil {
		return n.b.execErr
	}
	return fn(ctx)
}

func (n *callGateNode) Shutdown(context.Context) error {
	n.once.Do(func() { close(n.done) })
	return nil
}

func (n *callGateNode) Done() <-chan struct{} { return n.done }

var errCallFn = errors.New("fn's own error")

// callClockSlack is how much earlier than exact an execution limit may
// fire: limits start from the pool's coarse clock (internal/clock), which
// may lag the true time by about one millisecond. Checkout waits use real
// timers and are compared exactly.
const callClockSlack = 2 * time.Millisecond

// callLimitNear checks that an execution limit took effect at want, or at
// most callClockSlack earlier (never later).
func callLimitNear(t *testing.T, want, got time.Duration, msgAndArgs ...any) bool {
	t.Helper()
	if got > want || got < want-callClockSlack {
		return assert.Fail(t, fmt.Sprintf("limit took effect at %v, want %v (at most %v earlier)", got, want, callClockSlack), msgAndArgs...)
	}
	return true
}

// callDeadlineNear checks a fn ctx's deadline against want the same way.
func callDeadlineNear(t *testing.T, want, got time.Time, msgAndArgs ...any) bool {
	t.Helper()
	return callLimitNear(t, 0, got.Sub(want), msgAndArgs...)
}

// callSameErr checks that got is want itself, not a wrapper or a copy.
func callSameErr(t *testing.T, want, got error, msgAndArgs ...any) bool {
	t.Helper()
	if got != want {
		return assert.Fail(t, fmt.Sprintf("error is %#v (%v), want exactly %v", got, got, want), msgAndArgs...)
	}
	return true
}

// ---------------------------------------------------------------- Call

func TestCallReturnsFnErrorUnchanged(t *testing.T) {
	synctest.Test(t, func(t *testing.T) {
		p := mustPool(t, Config{Min: 1, Max: 1})
		err := p.Call(context.Background(), func(context.Context) error { return errCallFn })
		require.Same(t, errCallFn, err, "fn's error must come back as the same value")
		assert.NotErrorIs(t, err, ErrTimeout)
		assert.NotErrorIs(t, err, ErrRunnerDown)
		assert.Equal(t, 0, p.Stats().InUse)
	})
}

func TestCallErrTimeoutWhenFnFailsAfterWithTimeout(t *testing.T) {
	synctest.Test(t, func(t *testing.T) {
		p := mustPool(t, Config{Min: 1, Max: 1})
		ctx := context.Background()

		// fn that watches its ctx.
		start := time.Now()
		err := p.Call(ctx, func(ctx context.Context) error {
			<-ctx.Done()
			return fmt.Errorf("gave up: %w", errCallFn)
		}, WithTimeout(3*time.Second))
		callLimitNear(t, 3*time.Second, time.Since(start), "the limit must cancel fn's ctx at 3s")
		assert.ErrorIs(t, err, ErrTimeout)
		assert.ErrorIs(t, err, context.DeadlineExceeded)
		assert.ErrorIs(t, err, errCallFn, "ErrTimeout must wrap fn's error")

		// fn that ignores its ctx and fails late.
		err = p.Call(ctx, func(ctx context.Context) error {
			time.Sleep(4 * time.Second)
			return errCallFn
		}, WithTimeout(3*time.Second))
		assert.ErrorIs(t, err, ErrTimeout)
		assert.ErrorIs(t, err, context.DeadlineExceeded)
		assert.ErrorIs(t, err, errCallFn)

		// fn that returns ctx.Err().
		err = p.Call(ctx, func(ctx context.Context) error {
			<-ctx.Done()
			return ctx.Err()
		}, WithTimeout(time.Second))
		assert.ErrorIs(t, err, ErrTimeout)
		assert.ErrorIs(t, err, context.DeadlineExceeded)

		// fn failing before its limit is not a timeout.
		err = p.Call(ctx, func(ctx context.Context) error {
			time.Sleep(2 * time.Second)
			return errCallFn
		}, WithTimeout(3*time.Second))
		assert.Same(t, errCallFn, err)
		assert.Equal(t, 0, p.Stats().InUse)
	})
}

func TestCallErrTimeoutAfterConfigTimeout(t *testing.T) {
	synctest.Test(t, func(t *testing.T) {
		p := mustPool(t, Config{Min: 1, Max: 1, Timeout: 5 * time.Second})
		start := time.Now()
		err := p.Call(context.Background(), func(ctx context.Context) error {
			<-ctx.Done()
			return errCallFn
		})
		callLimitNear(t, 5*time.Second, time.Since(start))
		assert.ErrorIs(t, err, ErrTimeout)
		assert.ErrorIs(t, err, context.DeadlineExceeded)
		assert.ErrorIs(t, err, errCallFn)

		// Ignoring the ctx: judged when fn returns.
		err = p.Call(context.Background(), func(ctx context.Context) error {
			time.Sleep(6 * time.Second)
			return errCallFn
		})
		assert.ErrorIs(t, err, ErrTimeout)
		assert.ErrorIs(t, err, errCallFn)
	})
}

func TestCallNilAfterLimitIsSuccess(t *testing.T) {
	synctest.Test(t, func(t *testing.T) {
		p := mustPool(t, Config{Min: 1, Max: 1, Timeout: time.Second})
		err := p.Call(context.Background(), func(ctx context.Context) error {
			<-ctx.Done() // the limit fired
			return nil
		})
		assert.NoError(t, err)
		err = p.Call(context.Background(), func(ctx context.Context) error {
			time.Sleep(5 * time.Second) // never looks at ctx
			return nil
		}, WithTimeout(2*time.Second))
		assert.NoError(t, err)
		assert.Equal(t, 0, p.Stats().InUse)
	})
}

func TestCallErrRunnerDownWhenNodeCrashesMidCall(t *testing.T) {
	synctest.Test(t, func(t *testing.T) {
		b := newTestBackend()
		p := mustPool(t, Config{Min: 1, Max: 1, Backend: b})
		ctx := context.Background()

		// fn watching its ctx: cancelled by the crash.
		watching := make(chan error, 1)
		go func() {
			watching <- p.Call(ctx, func(ctx context.Context) error {
				<-ctx.Done()
				return errCallFn
			})
		}()
		synctest.Wait()
		b.node(1).Crash()
		synctest.Wait()
		err := <-watching
		assert.ErrorIs(t, err, ErrRunnerDown)
		assert.ErrorIs(t, err, errCallFn, "ErrRunnerDown must wrap fn's error")
		assert.NotErrorIs(t, err, ErrTimeout)

		// The Min runner is replaced; fn ignoring its ctx fails after the crash.
		proceed := make(chan struct{})
		ignoring := make(chan error, 1)
		go func() {
			ignoring <- p.Call(ctx, func(ctx context.Context) error {
				<-proceed
				return errCallFn
			})
		}()
		synctest.Wait()
		b.node(2).Crash()
		synctest.Wait()
		close(proceed)
		err = <-ignoring
		assert.ErrorIs(t, err, ErrRunnerDown)
		assert.ErrorIs(t, err, errCallFn)

		// A nil from fn is still a success.
		proceed2 := make(chan struct{})
		okc := make(chan error, 1)
		go func() {
			okc <- p.Call(ctx, func(ctx context.Context) error { <-proceed2; return nil })
		}()
		synctest.Wait()
		b.node(3).Crash()
		synctest.Wait()
		close(proceed2)
		assert.NoError(t, <-okc)

		synctest.Wait()
		assert.Equal(t, 0, p.Stats().InUse)
		assert.NoError(t, p.Call(ctx, func(context.Context) error { return nil }), "pool stops serving after crashes")
	})
}

func TestCallReturnsPanicErrorAndPoolKeepsServing(t *testing.T) {
	synctest.Test(t, func(t *testing.T) {
		p := mustPool(t, Config{Min: 1, Max: 1, MaxConcurrency: 1})
		ctx := context.Background()
		var err error
		require.NotPanics(t, func() {
			err = p.Call(ctx, func(context.Context) error { panic("kaboom") })
		})
		var pe *PanicError
		require.ErrorAs(t, err, &pe)
		assert.Equal(t, "kaboom", pe.Value)
		assert.Contains(t, string(pe.Stack), "TestCallReturnsPanicErrorAndPoolKeepsServing",
			"Stack must be the panicking goroutine's stack")
		assert.Contains(t, pe.Error(), "kaboom")
		assert.Equal(t, 0, p.Stats().InUse)

		// A panic after the limit passed is still a *PanicError.
		err = p.Call(ctx, func(ctx context.Context) error {
			<-ctx.Done()
			panic(errCallFn)
		}, WithTimeout(time.Second))
		require.ErrorAs(t, err, &pe)
		assert.Same(t, errCallFn, pe.Value)
		assert.NotErrorIs(t, err, ErrTimeout)

		// Same runner, same single slot: it was released both times.
		id, err := Call(ctx, p, func(ctx context.Context) (uint64, error) {
			id, _ := RunnerID(ctx)
			return id, nil
		}, WithTimeout(time.Second))
		require.NoError(t, err)
		assert.Equal(t, uint64(1), id)
		st := p.Stats()
		assert.Equal(t, 0, st.InUse)
		assert.Equal(t, 1, st.Runners)
		assert.Equal(t, uint64(0), st.Shrunk)
	})
}

func TestLinkedCallFnCtxCancelledWithCallerCtx(t *testing.T) {
	synctest.Test(t, func(t *testing.T) {
		p := mustPool(t, Config{Min: 1, Max: 1})

		// fn waiting on Done.
		ctx, cancel := context.WithCancel(context.Background())
		type result struct {
			err   error
			inUse int
		}
		res := make(chan result, 1)
		go func() {
			err := p.Call(ctx, func(ctx context.Context) error {
				<-ctx.Done()
				return ctx.Err()
			})
			res <- result{err, p.Stats().InUse}
		}()
		synctest.Wait()
		cancel()
		r := <-res
		assert.ErrorIs(t, r.err, context.Canceled)
		assert.NotErrorIs(t, r.err, ErrTimeout)
		assert.Equal(t, 0, r.inUse, "a linked Call returns only after its slot is released")

		// fn polling Err.
		ctx2, cancel2 := context.WithCancel(context.Background())
		proceed := make(chan struct{})
		errc := make(chan error, 1)
		go func() {
			errc <- p.Call(ctx2, func(ctx context.Context) error {
				<-proceed
				return ctx.Err()
			})
		}()
		synctest.Wait()
		cancel2()
		close(proceed)
		assert.ErrorIs(t, <-errc, context.Canceled)
	})
}

func TestUnlinkedCallReturnsAtOnceWhileFnKeepsItsSlot(t *testing.T) {
	synctest.Test(t, func(t *testing.T) {
		p := mustPool(t, Config{Min: 1, Max: 1, MaxConcurrency: 1})
		ctx, cancel := context.WithCancel(context.Background())
		proceed := make(chan struct{})
		fnCtxErr := make(chan error, 1)
		fnDone := make(chan struct{})
		errc := make(chan error, 1)
		go func() {
			errc <- p.Call(ctx, func(fctx context.Context) error {
				defer close(fnDone)
				<-proceed
				fnCtxErr <- fctx.Err()
				return errCallFn
			}, WithLink(false))
		}()
		synctest.Wait()
		cancel()
		synctest.Wait()
		select {
		case err := <-errc:
			callSameErr(t, context.Canceled, err, "unlinked Call must return the caller's ctx.Err()")
		default:
			require.FailNow(t, "unlinked Call did not return when its ctx was cancelled")
		}
		assert.False(t, callIsClosed(fnDone), "fn stopped with the caller")
		assert.Equal(t, 1, p.Stats().InUse, "fn keeps its slot after the caller gave up")

		// The slot is really held: nobody else gets it.
		err := p.Call(context.Background(), func(context.Context) error { return nil }, WithTimeout(time.Second))
		assert.ErrorIs(t, err, ErrCheckoutTimeout)

		close(proceed)
		synctest.Wait()
		assert.NoError(t, <-fnCtxErr, "unlinked fn's ctx followed the caller's ctx")
		assert.Equal(t, 0, p.Stats().InUse)
		assert.NoError(t, p.Call(context.Background(), func(context.Context) error { return nil }))
	})
}

func TestUnlinkedCallReturnsFnResultWhenCallerStays(t *testing.T) {
	synctest.Test(t, func(t *testing.T) {
		p := mustPool(t, Config{Min: 1, Max: 1})
		err := p.Call(context.Background(), func(context.Context) error { return errCallFn }, WithLink(false))
		assert.Same(t, errCallFn, err)
		v, err := Call(context.Background(), p, func(context.Context) (int, error) { return 7, nil }, WithLink(false))
		assert.NoError(t, err)
		assert.Equal(t, 7, v)
	})
}

// LocalBackend runs a linked call's fn on the calling goroutine: the
// caller's frames are on fn's stack.
func TestLocalBackendRunsLinkedCallOnCallerGoroutine(t *testing.T) {
	synctest.Test(t, func(t *testing.T) {
		p := mustPool(t, Config{Min: 1, Max: 1})
		var stack string
		require.NoError(t, p.Call(context.Background(), func(context.Context) error {
			stack = string(debug.Stack())
			return nil
		}))
		assert.Contains(t, stack, "TestLocalBackendRunsLinkedCallOnCallerGoroutine",
			"fn ran on another goroutine")
	})
}

func TestRunnerIDInsideFn(t *testing.T) {
	synctest.Test(t, func(t *testing.T) {
		p := mustPool(t, Config{Min: 2, Max: 2, MaxConcurrency: 1})
		ctx := context.Background()
		_, ok := RunnerID(ctx)
		assert.False(t, ok, "RunnerID outside fn")

		h := callHold(ctx, p) // one runner busy: the call goes to the other
		synctest.Wait()
		other := 3 - h.runner(t)
		type key struct{}
		err := p.Call(context.WithValue(ctx, key{}, "v"), func(ctx context.Context) error {
			id, ok := RunnerID(ctx)
			assert.True(t, ok)
			assert.Equal(t, other, id)
			assert.Equal(t, "v", ctx.Value(key{}), "fn's ctx must carry the caller's values")
			// Derived contexts still see it.
			sub, cancel := context.WithCancel(ctx)
			defer cancel()
			id, ok = RunnerID(sub)
			assert.True(t, ok)
			assert.Equal(t, other, id)
			return nil
		})
		require.NoError(t, err)
		h.finish(t)
	})
}

func TestGenericCallReturnsValue(t *testing.T) {
	synctest.Test(t, func(t *testing.T) {
		p := mustPool(t, Config{Min: 1, Max: 1})
		v, err := Call(context.Background(), p, func(ctx context.Context) (string, error) { return "answer", nil })
		require.NoError(t, err)
		assert.Equal(t, "answer", v)

		_, err = Call(context.Background(), p, func(ctx context.Context) (int, error) { return 0, errCallFn })
		assert.Same(t, errCallFn, err)

		_, err = Call(context.Background(), p, func(ctx context.Context) (int, error) { panic("boom") })
		var pe *PanicError
		assert.ErrorAs(t, err, &pe)
		assert.Equal(t, 0, p.Stats().InUse)
	})
}

func TestNilFnReturnsErrNilFunc(t *testing.T) {
	synctest.Test(t, func(t *testing.T) {
		p := mustPool(t, Config{Min: 1, Max: 1})
		ctx := context.Background()
		assert.ErrorIs(t, p.Call(ctx, nil), ErrNilFunc)
		_, err := Call[int](ctx, p, nil)
		assert.ErrorIs(t, err, ErrNilFunc)
		assert.ErrorIs(t, p.Cast(ctx, nil), ErrNilFunc)
		c, err := p.PlaceChild(ctx, nil)
		assert.ErrorIs(t, err, ErrNilFunc)
		assert.Nil(t, c)
		assert.Equal(t, 0, p.Stats().InUse)
	})
}

func TestNegativeWithTimeoutFails(t *testing.T) {
	synctest.Test(t, func(t *testing.T) {
		p := mustPool(t, Config{Min: 1, Max: 1})
		ctx := context.Background()
		ran := false
		fn := func(context.Context) error { ran = true; return nil }
		assert.ErrorIs(t, p.Call(ctx, fn, WithTimeout(-time.Second)), ErrInvalidConfig)
		_, err := Call(ctx, p, func(context.Context) (int, error) { ran = true; return 1, nil }, WithTimeout(-1))
		assert.ErrorIs(t, err, ErrInvalidConfig)
		assert.ErrorIs(t, p.Cast(ctx, fn, WithTimeout(-time.Second)), ErrInvalidConfig)
		c, err := p.PlaceChild(ctx, fn, WithTimeout(-time.Second))
		assert.ErrorIs(t, err, ErrInvalidConfig)
		assert.Nil(t, c)
		assert.False(t, ran, "fn ran despite an invalid option")
		assert.Equal(t, 0, p.Stats().InUse)
	})
}

func TestFnCtxDeadlineReflectsLimit(t *testing.T) {
	synctest.Test(t, func(t *testing.T) {
		p := mustPool(t, Config{Min: 1, Max: 1, MaxConcurrency: 1, Timeout: 7 * time.Second})
		bg := context.Background()
		deadlineOf := func(ctx context.Context, opts ...CallOption) (time.Time, bool) {
			var d time.Time
			var ok bool
			require.NoError(t, p.Call(ctx, func(ctx context.Context) error {
				d, ok = ctx.Deadline()
				return nil
			}, opts...))
			return d, ok
		}

		d, ok := deadlineOf(bg)
		assert.True(t, ok)
		callDeadlineNear(t, time.Now().Add(7*time.Second), d, "Config.Timeout")

		d, ok = deadlineOf(bg, WithTimeout(5*time.Second))
		assert.True(t, ok)
		callDeadlineNear(t, time.Now().Add(5*time.Second), d, "WithTimeout")

		_, ok = deadlineOf(bg, WithTimeout(Infinity))
		assert.False(t, ok, "Infinity: no deadline")

		pctx, cancel := context.WithTimeout(bg, 2*time.Second)
		defer cancel()
		d, ok = deadlineOf(pctx)
		assert.True(t, ok)
		assert.Equal(t, time.Now().Add(2*time.Second), d, "linked: the caller's sooner deadline")

		d, ok = deadlineOf(pctx, WithLink(false))
		assert.True(t, ok)
		callDeadlineNear(t, time.Now().Add(7*time.Second), d, "unlinked: the caller's deadline does not apply")

		// WithTimeout gives the execution a fresh d after the checkout wait.
		h := callHold(bg, p)
		synctest.Wait()
		waitStart := time.Now()
		var got time.Time
		var started time.Time
		errc := make(chan error, 1)
		go func() {
			errc <- p.Call(bg, func(ctx context.Context) error {
				started = time.Now()
				got, _ = ctx.Deadline()
				return nil
			}, WithTimeout(3*time.Second))
		}()
		time.Sleep(2 * time.Second)
		h.finish(t)
		require.NoError(t, <-errc)
		assert.Equal(t, 2*time.Second, started.Sub(waitStart), "fn started after 2s of waiting")
		callDeadlineNear(t, started.Add(3*time.Second), got, "execution limit must be a fresh d from fn's start")
	})
}

// A finite limit just short of Infinity is a very long limit, not one that
// has already passed: the execution deadline must not overflow once the
// pool has been up for a moment.
func TestNearInfiniteLimitIsNotAlreadyExpired(t *testing.T) {
	synctest.Test(t, func(t *testing.T) {
		p := mustPool(t, Config{Min: 1, Max: 1, Timeout: Infinity - 1})
		time.Sleep(time.Second) // the pool has been up a while
		for _, tc := range []struct {
			name string
			opts []CallOption
		}{
			{"Config.Timeout", nil},
			{"WithTimeout", []CallOption{WithTimeout(Infinity - time.Millisecond)}},
		} {
			err := p.Call(context.Background(), func(ctx context.Context) error {
				assert.NoErrorf(t, ctx.Err(), "%s: fn's ctx is done as fn starts", tc.name)
				if d, ok := ctx.Deadline(); ok {
					assert.Truef(t, d.After(time.Now().Add(100*365*24*time.Hour)),
						"%s: deadline %v is not ~292 years away", tc.name, d)
				}
				return errCallFn
			}, tc.opts...)
			callSameErr(t, errCallFn, err, tc.name)
		}
	})
}

func TestFnCtxDoneAfterFnReturns(t *testing.T) {
	synctest.Test(t, func(t *testing.T) {
		p := mustPool(t, Config{Min: 1, Max: 1})
		bg := context.Background()
		for _, armed := range []bool{false, true} {
			var saved context.Context
			require.NoError(t, p.Call(bg, func(ctx context.Context) error {
				if armed {
					_ = ctx.Done()
				}
				require.NoError(t, ctx.Err())
				saved = ctx
				return nil
			}))
			assert.ErrorIsf(t, saved.Err(), context.Canceled, "armed=%v: fn's ctx not done after fn returned", armed)
			assert.Truef(t, callIsClosed(saved.Done()), "armed=%v: Done not closed after fn returned", armed)
		}
	})
}

// ---------------------------------------------------------------- Cast

func TestCastReturnsNilAtOnceEvenWithoutCapacity(t *testing.T) {
	synctest.Test(t, func(t *testing.T) {
		p := mustPool(t, Config{Min: 1, Max: 1, MaxConcurrency: 1})
		ctx := context.Background()
		h := callHold(ctx, p)
		synctest.Wait()

		ran := make(chan uint64, 1)
		start := time.Now()
		require.NoError(t, p.Cast(ctx, func(ctx context.Context) error {
			id, _ := RunnerID(ctx)
			ran <- id
			return nil
		}))
		assert.Zero(t, time.Since(start))
		synctest.Wait()
		assert.Empty(t, ran, "cast ran without a free slot")
		assert.Equal(t, 1, p.Stats().Waiting)

		h.finish(t)
		synctest.Wait()
		require.Len(t, ran, 1, "cast did not run once a slot was free")
		assert.Equal(t, uint64(1), <-ran)
		assert.Equal(t, 0, p.Stats().InUse)
	})
}

func TestCastAfterCloseReturnsErrClosed(t *testing.T) {
	p, err := NewPool(Config{Min: 1, Max: 1})
	require.NoError(t, err)
	require.NoError(t, p.Close(context.Background()))
	ran := false
	assert.ErrorIs(t, p.Cast(context.Background(), func(context.Context) error { ran = true; return nil }), ErrClosed)
	assert.False(t, ran)
}

func TestCastWithDoneCtxReturnsCtxErr(t *testing.T) {
	synctest.Test(t, func(t *testing.T) {
		p := mustPool(t, Config{Min: 1, Max: 1})
		var ran atomic.Bool
		fn := func(context.Context) error { ran.Store(true); return nil }
		ctx, cancel := context.WithCancel(context.Background())
		cancel()
		callSameErr(t, context.Canceled, p.Cast(ctx, fn))
		dctx, dcancel := context.WithTimeout(context.Background(), time.Second)
		defer dcancel()
		time.Sleep(2 * time.Second)
		callSameErr(t, context.DeadlineExceeded, p.Cast(dctx, fn))
		synctest.Wait()
		assert.False(t, ran.Load(), "a rejected cast ran")
	})
}

func TestCastObeysMaxConcurrency(t *testing.T) {
	synctest.Test(t, func(t *testing.T) {
		p := mustPool(t, Config{Min: 1, Max: 1, MaxConcurrency: 2})
		var running, peak, total atomic.Int32
		release := make(chan struct{})
		for range 5 {
			require.NoError(t, p.Cast(context.Background(), func(context.Context) error {
				n := running.Add(1)
				for {
					old := peak.Load()
					if n <= old || peak.CompareAndSwap(old, n) {
						break
					}
				}
				<-release
				running.Add(-1)
				total.Add(1)
				return nil
			}))
		}
		synctest.Wait()
		assert.Equal(t, int32(2), running.Load())
		st := p.Stats()
		assert.Equal(t, 2, st.InUse)
		assert.Equal(t, 3, st.Waiting)
		close(release)
		synctest.Wait()
		assert.Equal(t, int32(5), total.Load())
		assert.Equal(t, int32(2), peak.Load(), "casts exceeded MaxConcurrency")
		assert.Equal(t, 0, p.Stats().InUse)
	})
}

func TestCastGrowsThePool(t *testing.T) {
	synctest.Test(t, func(t *testing.T) {
		p := mustPool(t, Config{Max: 3, MaxConcurrency: 2})
		var running atomic.Int32
		release := make(chan struct{})
		for range 5 {
			require.NoError(t, p.Cast(context.Background(), func(context.Context) error {
				running.Add(1)
				<-release
				return nil
			}))
		}
		synctest.Wait()
		assert.Equal(t, int32(5), running.Load(), "5 casts on MaxConcurrency 2 need 3 runners")
		assert.Equal(t, 3, p.Stats().Runners)
		close(release)
	})
}

func TestCastWaitsWithoutLimitByDefault(t *testing.T) {
	synctest.Test(t, func(t *testing.T) {
		p := mustPool(t, Config{Min: 1, Max: 1, MaxConcurrency: 1, BootTimeout: 10 * time.Second})
		ctx := context.Background()
		h := callHold(ctx, p, WithTimeout(Infinity))
		synctest.Wait()
		var ran atomic.Bool
		require.NoError(t, p.Cast(ctx, func(context.Context) error { ran.Store(true); return nil }))
		time.Sleep(10 * time.Minute) // far past BootTimeout and the default Timeout
		synctest.Wait()
		assert.False(t, ran.Load())
		assert.Equal(t, 1, p.Stats().Waiting, "the cast gave up waiting")
		h.finish(t)
		synctest.Wait()
		assert.True(t, ran.Load(), "the cast did not run once a slot was free")
	})
}

func TestCastRunsWithoutExecutionLimitByDefault(t *testing.T) {
	synctest.Test(t, func(t *testing.T) {
		p := mustPool(t, Config{Min: 1, Max: 1, Timeout: time.Second})
		type obs struct {
			hasDeadline bool
			err         error
		}
		res := make(chan obs, 1)
		require.NoError(t, p.Cast(context.Background(), func(ctx context.Context) error {
			_, ok := ctx.Deadline()
			select {
			case <-ctx.Done():
			case <-time.After(time.Hour):
			}
			res <- obs{ok, ctx.Err()}
			return nil
		}))
		synctest.Wait()
		o := <-res
		assert.False(t, o.hasDeadline)
		assert.NoError(t, o.err, "a cast got an execution limit it was not given")

		// WithTimeout does bound it.
		require.NoError(t, p.Cast(context.Background(), func(ctx context.Context) error {
			<-ctx.Done()
			res <- obs{true, ctx.Err()}
			return nil
		}, WithTimeout(2*time.Second)))
		start := time.Now()
		o = <-res
		callLimitNear(t, 2*time.Second, time.Since(start))
		assert.ErrorIs(t, o.err, context.DeadlineExceeded)
	})
}

func TestCastLinkFollowsCallerCtx(t *testing.T) {
	synctest.Test(t, func(t *testing.T) {
		p := mustPool(t, Config{Min: 1, Max: 1})
		linked := make(chan error, 1)
		unlinked := make(chan error, 1)
		ctx, cancel := context.WithCancel(context.Background())
		release := make(chan struct{})
		require.NoError(t, p.Cast(ctx, func(ctx context.Context) error {
			<-ctx.Done()
			linked <- ctx.Err()
			return nil
		}))
		require.NoError(t, p.Cast(ctx, func(ctx context.Context) error {
			select {
			case <-ctx.Done():
			case <-release:
			}
			unlinked <- ctx.Err()
			return nil
		}, WithLink(false)))
		synctest.Wait()
		cancel()
		synctest.Wait()
		assert.ErrorIs(t, <-linked, context.Canceled)
		assert.Empty(t, unlinked, "unlinked cast was cancelled with the caller")
		close(release)
		assert.NoError(t, <-unlinked)
	})
}

// A queued cast follows its link too: linked, it stops waiting when ctx is
// done (and says so in the log); unlinked, it still runs once a slot frees,
// with a live ctx.
func TestQueuedCastLinkDecidesWhetherItStillRuns(t *testing.T) {
	synctest.Test(t, func(t *testing.T) {
		var logBuf syncBuffer
		p := mustPool(t, Config{Min: 1, Max: 1, MaxConcurrency: 1,
			Logger: slog.New(slog.NewTextHandler(&logBuf, nil))})
		h := callHold(context.Background(), p, WithTimeout(Infinity))
		synctest.Wait()
		ctx, cancel := context.WithCancel(context.Background())
		var linkedRan atomic.Bool
		unlinkedErr := make(chan error, 1)
		require.NoError(t, p.Cast(ctx, func(context.Context) error { linkedRan.Store(true); return nil }))
		require.NoError(t, p.Cast(ctx, func(c context.Context) error { unlinkedErr <- c.Err(); return nil }, WithLink(false)))
		synctest.Wait()
		require.Equal(t, 2, p.Stats().Waiting)
		cancel()
		synctest.Wait()
		assert.Equal(t, 1, p.Stats().Waiting, "the linked cast kept waiting after its ctx was done")
		assert.Contains(t, logBuf.String(), context.Canceled.Error(), "the linked cast's give-up was not logged")
		h.finish(t)
		synctest.Wait()
		assert.False(t, linkedRan.Load(), "a linked cast ran after its ctx was done")
		require.Len(t, unlinkedErr, 1, "the unlinked cast did not run")
		assert.NoError(t, <-unlinkedErr)
		assert.Equal(t, 0, p.Stats().InUse)
	})
}

func TestCastPanicAndErrorAreLoggedAndContained(t *testing.T) {
	synctest.Test(t, func(t *testing.T) {
		var logBuf syncBuffer
		p := mustPool(t, Config{Min: 1, Max: 1, MaxConcurrency: 1,
			Logger: slog.New(slog.NewTextHandler(&logBuf, nil))})
		ctx := context.Background()
		require.NotPanics(t, func() {
			require.NoError(t, p.Cast(ctx, func(context.Context) error { panic("cast-kaboom-42") }))
			synctest.Wait()
		})
		log := logBuf.String()
		assert.Contains(t, log, "panic")
		assert.Contains(t, log, "cast-kaboom-42")

		require.NoError(t, p.Cast(ctx, func(context.Context) error { return errors.New("cast-error-43") }))
		synctest.Wait()
		assert.Contains(t, logBuf.String(), "cast-error-43")

		st := p.Stats()
		assert.Equal(t, 0, st.InUse)
		assert.Equal(t, 1, st.Runners)
		assert.NoError(t, p.Call(ctx, func(context.Context) error { return nil }, WithTimeout(time.Second)))
	})
}

// ---------------------------------------------------------------- PlaceChild

func TestPlaceChildReturnsOnlyOnceFnStarted(t *testing.T) {
	synctest.Test(t, func(t *testing.T) {
		b := &callGateBackend{gate: make(chan struct{})}
		p := mustPool(t, Config{Min: 1, Max: 1, Backend: b})
		fnRunning := make(chan struct{})
		release := make(chan struct{})
		type placed struct {
			c   *Child
			err error
		}
		res := make(chan placed, 1)
		go func() {
			c, err := p.PlaceChild(context.Background(), func(ctx context.Context) error {
				close(fnRunning)
				<-release
				return nil
			})
			res <- placed{c, err}
		}()
		synctest.Wait()
		assert.Empty(t, res, "PlaceChild returned before the node started fn")
		close(b.gate)
		synctest.Wait()
		require.Len(t, res, 1)
		r := <-res
		require.NoError(t, r.err)
		assert.True(t, callIsClosed(fnRunning))
		close(release)
		<-r.c.Done()
		assert.NoError(t, r.c.Err())
	})
}

func TestPlaceChildReturnsNodeErrorWhenFnNeverStarts(t *testing.T) {
	synctest.Test(t, func(t *testing.T) {
		errExec := errors.New("node refused work")
		b := &callGateBackend{gate: make(chan struct{}), execErr: errExec}
		close(b.gate)
		p := mustPool(t, Config{Min: 1, Max: 1, Backend: b})
		ran := false
		c, err := p.PlaceChild(context.Background(), func(ctx context.Context) error { ran = true; return nil })
		assert.ErrorIs(t, err, errExec)
		assert.Nil(t, c)
		assert.False(t, ran)
		synctest.Wait()
		assert.Equal(t, 0, p.Stats().InUse)
	})
}

func TestPlaceChildHoldsSlotUntilFnReturns(t *testing.T) {
	synctest.Test(t, func(t *testing.T) {
		p := mustPool(t, Config{Min: 2, Max: 2, MaxConcurrency: 1})
		ctx := context.Background()
		h := callHold(ctx, p) // one runner busy: the child goes to the other
		synctest.Wait()
		other := 3 - h.runner(t)
		release := make(chan struct{})
		var inside uint64
		c, err := p.PlaceChild(ctx, func(ctx context.Context) error {
			inside, _ = RunnerID(ctx)
			<-release
			return errCallFn
		})
		require.NoError(t, err)
		h.finish(t)
		synctest.Wait()

		assert.Equal(t, other, c.RunnerID())
		assert.Equal(t, 1, p.Stats().InUse)
		loads := []RunnerLoad{{1, 0}, {2, 0}}
		loads[other-1].Load = 1
		assert.Equal(t, loads, p.Stats().RunnerLoads)
		assert.False(t, callIsClosed(c.Done()))
		assert.NoError(t, c.Err(), "Err before Done")
		// Past the default Timeout: a child has no execution limit.
		time.Sleep(time.Minute)
		synctest.Wait()
		assert.False(t, callIsClosed(c.Done()))
		assert.Equal(t, 1, p.Stats().InUse)

		close(release)
		<-c.Done()
		assert.Same(t, errCallFn, c.Err())
		assert.Equal(t, other, inside)
		synctest.Wait()
		assert.Equal(t, 0, p.Stats().InUse)
	})
}

func TestChildPanicBecomesPanicError(t *testing.T) {
	synctest.Test(t, func(t *testing.T) {
		p := mustPool(t, Config{Min: 1, Max: 1, MaxConcurrency: 1})
		c, err := p.PlaceChild(context.Background(), func(context.Context) error { panic("child-kaboom") })
		require.NoError(t, err)
		<-c.Done()
		var pe *PanicError
		require.ErrorAs(t, c.Err(), &pe)
		assert.Equal(t, "child-kaboom", pe.Value)
		synctest.Wait()
		assert.Equal(t, 0, p.Stats().InUse)
		assert.NoError(t, p.Call(context.Background(), func(context.Context) error { return nil }, WithTimeout(time.Second)))
	})
}

func TestChildStopCancelsAndWaitsForFn(t *testing.T) {
	synctest.Test(t, func(t *testing.T) {
		p := mustPool(t, Config{Min: 1, Max: 1})
		var returned atomic.Bool
		c, err := p.PlaceChild(context.Background(), func(ctx context.Context) error {
			<-ctx.Done()
			time.Sleep(time.Second) // cleanup takes a while: Stop must wait for it
			returned.Store(true)
			return ctx.Err()
		})
		require.NoError(t, err)
		c.Stop()
		assert.True(t, returned.Load(), "Stop returned before fn did")
		assert.True(t, callIsClosed(c.Done()))
		assert.ErrorIs(t, c.Err(), context.Canceled)
		synctest.Wait()
		assert.Equal(t, 0, p.Stats().InUse)

		// Stop on a fn that polls its ctx.
		c, err = p.PlaceChild(context.Background(), func(ctx context.Context) error {
			for ctx.Err() == nil {
				time.Sleep(time.Millisecond)
			}
			return ctx.Err()
		})
		require.NoError(t, err)
		c.Stop()
		assert.ErrorIs(t, c.Err(), context.Canceled)
	})
}

func TestLinkedChildCancelledWhenCallerCtxDone(t *testing.T) {
	synctest.Test(t, func(t *testing.T) {
		p := mustPool(t, Config{Min: 1, Max: 1})
		ctx, cancel := context.WithCancel(context.Background())
		c, err := p.PlaceChild(ctx, func(ctx context.Context) error {
			<-ctx.Done()
			return ctx.Err()
		})
		require.NoError(t, err)
		synctest.Wait()
		assert.False(t, callIsClosed(c.Done()))
		cancel()
		synctest.Wait()
		require.True(t, callIsClosed(c.Done()), "linked child not cancelled with the caller")
		assert.ErrorIs(t, c.Err(), context.Canceled)
		assert.Equal(t, 0, p.Stats().InUse)
	})
}

func TestUnlinkedChildSurvivesCallerCtx(t *testing.T) {
	synctest.Test(t, func(t *testing.T) {
		p := mustPool(t, Config{Min: 1, Max: 1})
		ctx, cancel := context.WithCancel(context.Background())
		c, err := p.PlaceChild(ctx, func(ctx context.Context) error {
			<-ctx.Done()
			return ctx.Err()
		}, WithLink(false))
		require.NoError(t, err)
		cancel()
		synctest.Wait()
		assert.False(t, callIsClosed(c.Done()), "unlinked child cancelled with the caller")
		assert.Equal(t, 1, p.Stats().InUse)
		c.Stop()
		assert.ErrorIs(t, c.Err(), context.Canceled)
	})
}

func TestChildCancelledWithErrRunnerDownOnCrash(t *testing.T) {
	synctest.Test(t, func(t *testing.T) {
		b := newTestBackend()
		p := mustPool(t, Config{Min: 1, Max: 1, Backend: b})
		c, err := p.PlaceChild(context.Background(), func(ctx context.Context) error {
			<-ctx.Done()
			return ctx.Err()
		})
		require.NoError(t, err)
		require.Equal(t, uint64(1), c.RunnerID())
		b.node(1).Crash()
		synctest.Wait()
		require.True(t, callIsClosed(c.Done()), "child survived its runner's crash")
		assert.ErrorIs(t, c.Err(), ErrRunnerDown)
		// The pool replaces the Min runner and keeps serving.
		assert.NoError(t, p.Call(context.Background(), func(context.Context) error { return nil }))
	})
}

func TestPlaceChildWithTimeoutBoundsOnlyCheckout(t *testing.T) {
	synctest.Test(t, func(t *testing.T) {
		p := mustPool(t, Config{Min: 1, Max: 1, MaxConcurrency: 1})
		c, err := p.PlaceChild(context.Background(), func(ctx context.Context) error {
			if _, ok := ctx.Deadline(); ok {
				return errors.New("child got a deadline")
			}
			select {
			case <-time.After(10 * time.Second):
				return nil
			case <-ctx.Done():
				return ctx.Err()
			}
		}, WithTimeout(time.Second))
		require.NoError(t, err)

		// The slot is held: a second child's checkout gives up after its budget.
		start := time.Now()
		c2, err := p.PlaceChild(context.Background(), func(ctx context.Context) error { return nil }, WithTimeout(time.Second))
		assert.ErrorIs(t, err, ErrCheckoutTimeout)
		assert.ErrorIs(t, err, context.DeadlineExceeded)
		assert.Nil(t, c2)
		assert.Equal(t, time.Second, time.Since(start))

		<-c.Done()
		assert.NoError(t, c.Err(), "WithTimeout limited the child's execution")
	})
}

// ---------------------------------------------------------------- allocations

func TestCheckoutReleaseWithFreeCapacityAllocatesNothing(t *testing.T) {
	p := mustPool(t, Config{Min: 1, Max: 1})
	ctx := context.Background()
	allocs := testing.AllocsPerRun(1000, func() {
		r, _, err := p.checkout(ctx, time.Second, kindCall)
		if err != nil {
			panic(err)
		}
		p.release(r)
	})
	assert.Zero(t, allocs, "checkout+release on the free path allocated")
	assert.Equal(t, 0, p.Stats().InUse)
}

func TestCallNoOpAllocatesAtMostOnce(t *testing.T) {
	p := mustPool(t, Config{Max: 1})
	ctx := context.Background()
	noop := func(context.Context) error { return nil }
	require.NoError(t, p.Call(ctx, noop)) // boots the runner
	allocs := testing.AllocsPerRun(1000, func() {
		if err := p.Call(ctx, noop); err != nil {
			panic(err)
		}
	})
	assert.LessOrEqual(t, allocs, 1.0)
}
