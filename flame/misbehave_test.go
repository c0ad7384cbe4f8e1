package flame

import (
	"context"
	"errors"
	"log/slog"
	"sync"
	"testing"
	"testing/synctest"
	"time"

	"github.com/stretchr/testify/require"
)

// oddBackend boots oddNodes, whose Exec and Shutdown misbehave on request.
type oddBackend struct {
	execPanics   bool
	shutdownHang bool
	mu           sync.Mutex
	nodes        []*oddNode
}

func (b *oddBackend) Boot(ctx context.Context, spec RunnerSpec) (Node, error) {
	n := &oddNode{b: b, done: make(chan struct{}), release: make(chan struct{})}
	b.mu.Lock()
	b.nodes = append(b.nodes, n)
	b.mu.Unlock()
	return n, nil
}

type oddNode struct {
	b       *oddBackend
	done    chan struct{}
	once    sync.Once
	release chan struct{} // a hung Shutdown returns when this closes
}

func (n *oddNode) Exec(ctx context.Context, fn func(context.Context) error) error {
	if n.b.execPanics {
		panic("node: Exec exploded")
	}
	return fn(ctx)
}

func (n *oddNode) Shutdown(ctx context.Context) error {
	if n.b.shutdownHang {
		<-n.release // ignores ctx
	}
	n.once.Do(func() { close(n.done) })
	return nil
}

func (n *oddNode) Done() <-chan struct{} { return n.done }

func TestExecPanicIsReturnedAsPanicErrorAndPoolKeepsServing(t *testing.T) {
	synctest.Test(t, func(t *testing.T) {
		b := &oddBackend{execPanics: true}
		p := mustPool(t, Config{Max: 1, MaxConcurrency: 1, Backend: b})
		for range 3 {
			err := p.Call(context.Background(), func(context.Context) error { return nil })
			var pe *PanicError
			require.ErrorAs(t, err, &pe, "Call = %v, want *PanicError from Exec", err)
			require.Equal(t, "node: Exec exploded", pe.Value, "Call = %v, want *PanicError from Exec", err)
		}
		st := p.Stats()
		require.Zero(t, st.InUse, "after Exec panics: %+v, want the slot released and the runner kept", st)
		require.Equal(t, 1, st.Runners, "after Exec panics: %+v, want the slot released and the runner kept", st)
	})
}

func TestHungNodeShutdownIsBoundedByShutdownTimeout(t *testing.T) {
	synctest.Test(t, func(t *testing.T) {
		b := &oddBackend{shutdownHang: true}
		var buf syncBuffer
		log, logs := slog.New(slog.NewTextHandler(&buf, nil)), buf.String
		p, err := NewPool(Config{Max: 1, Backend: b, IdleShutdownAfter: time.Second, ShutdownTimeout: 3 * time.Second, Logger: log})
		require.NoError(t, err)
		require.NoError(t, p.Call(context.Background(), func(context.Context) error { return nil }))
		time.Sleep(2*time.Second + time.Millisecond) // idles down; its Shutdown hangs
		synctest.Wait()
		st := p.Stats()
		require.Zero(t, st.Runners, "stats %+v: the runner should be removed at once", st)
		require.Equal(t, uint64(1), st.Shrunk, "stats %+v: the runner should be removed at once", st)
		start := time.Now()
		time.Sleep(3 * time.Second)
		synctest.Wait()
		require.Contains(t, logs(), "runner shutdown exceeded ShutdownTimeout", "no log line about the hung shutdown after %v", time.Since(start))
		// The pool keeps serving: a new runner boots.
		require.NoError(t, p.Call(context.Background(), func(context.Context) error { return nil }))
		close(b.nodes[0].release)
		for _, n := range b.nodes[1:] {
			close(n.release)
		}
		require.NoError(t, p.Close(context.Background()))
	})
}

// A fn that calls back into its own pool: with a free slot the inner call
// runs; without one it waits and times out like any other call. Neither
// deadlocks the pool.
func TestReentrantCallWithFreeCapacityRuns(t *testing.T) {
	synctest.Test(t, func(t *testing.T) {
		p := mustPool(t, Config{Max: 1, MaxConcurrency: 2})
		v, err := Call(context.Background(), p, func(ctx context.Context) (int, error) {
			return Call(ctx, p, func(context.Context) (int, error) { return 7, nil })
		})
		require.NoError(t, err, "re-entrant call = %d, %v; want 7, nil", v, err)
		require.Equal(t, 7, v, "re-entrant call = %d, %v; want 7, nil", v, err)
	})
}

func TestReentrantCallWithoutCapacityTimesOutLikeAnyCall(t *testing.T) {
	synctest.Test(t, func(t *testing.T) {
		p := mustPool(t, Config{Max: 1, MaxConcurrency: 1, BootTimeout: 5 * time.Second})
		start := time.Now()
		err := p.Call(context.Background(), func(ctx context.Context) error {
			return p.Call(ctx, func(context.Context) error { return nil })
		})
		require.ErrorIs(t, err, ErrCheckoutTimeout, "outer call = %v, want the inner call's ErrCheckoutTimeout", err)
		require.Equal(t, 5*time.Second, time.Since(start), "inner call waited, want BootTimeout (5s)")
		require.NoError(t, p.Call(context.Background(), func(context.Context) error { return nil }), "pool after re-entrant timeout")
	})
}

// Close from inside a fn cannot wait for that fn: it returns ctx.Err() when
// its ctx ends, the fn's ctx is cancelled, and the pool ends up closed.
func TestCloseFromInsideFnReturnsWhenItsCtxEnds(t *testing.T) {
	synctest.Test(t, func(t *testing.T) {
		p, err := NewPool(Config{Max: 1})
		require.NoError(t, err)
		var closeErr error
		callErr := p.Call(context.Background(), func(ctx context.Context) error {
			cctx, cancel := context.WithTimeout(context.Background(), time.Second)
			defer cancel()
			closeErr = p.Close(cctx)
			return ctx.Err()
		})
		require.ErrorIs(t, closeErr, context.DeadlineExceeded, "Close inside fn = %v, want DeadlineExceeded", closeErr)
		require.ErrorIs(t, callErr, context.Canceled, "Call = %v, want its ctx cancelled by Close (ErrClosed)", callErr)
		require.ErrorIs(t, callErr, ErrClosed, "Call = %v, want its ctx cancelled by Close (ErrClosed)", callErr)
		synctest.Wait()
		err = p.Call(context.Background(), func(context.Context) error { return nil })
		require.ErrorIs(t, err, ErrClosed, "Call after Close = %v, want ErrClosed", err)
		st := p.Stats()
		require.Zero(t, st.InUse, "after Close: %+v", st)
		require.Zero(t, st.Runners, "after Close: %+v", st)
	})
}

// A fn that ignores its ctx holds its slot until it returns: Close with an
// expiring ctx returns ctx.Err() without waiting for it, and the slot is
// released when the fn finally returns.
func TestFnIgnoringCtxDelaysOnlyItselfAtClose(t *testing.T) {
	synctest.Test(t, func(t *testing.T) {
		p, err := NewPool(Config{Max: 1})
		require.NoError(t, err)
		unblock := make(chan struct{})
		done := make(chan error, 1)
		go func() {
			done <- p.Call(context.Background(), func(context.Context) error { <-unblock; return nil })
		}()
		synctest.Wait()
		ctx, cancel := context.WithTimeout(context.Background(), time.Second)
		defer cancel()
		err = p.Close(ctx)
		require.ErrorIs(t, err, context.DeadlineExceeded, "Close = %v, want DeadlineExceeded", err)
		close(unblock)
		require.NoError(t, <-done, "the fn returned nil, so Call must too")
		synctest.Wait()
		st := p.Stats()
		require.Zero(t, st.InUse, "slot not released: %+v", st)
	})
}

// A Close racing Resize and another Close is safe: one Close does the work,
// the other returns nil, Resize returns nil or ErrClosed.
func TestCloseRacingResizeAndCloseIsSafe(t *testing.T) {
	for range 50 {
		p, err := NewPool(Config{Min: 2, Max: 4})
		require.NoError(t, err)
		var wg sync.WaitGroup
		errs := make(chan error, 4)
		for range 2 {
			wg.Go(func() { errs <- p.Close(context.Background()) })
		}
		wg.Go(func() {
			if err := p.Resize(3, 5); err != nil && !errors.Is(err, ErrClosed) {
				errs <- err
			}
		})
		wg.Wait()
		close(errs)
		for err := range errs {
			require.NoError(t, err)
		}
		st := p.Stats()
		require.Zero(t, st.Runners, "after Close: %+v", st)
		require.Zero(t, st.Pending, "after Close: %+v", st)
	}
}
