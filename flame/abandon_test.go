package flame

import (
	"context"
	"errors"
	"fmt"
	"sync"
	"sync/atomic"
	"testing"
	"testing/synctest"
	"time"

	"github.com/stretchr/testify/assert"
	"github.com/stretchr/testify/require"
)

// stuckNode is a node whose Shutdown ignores its ctx until unstuck.
type stuckNode struct {
	testNode
	unstick chan struct{}
}

func newStuckNode(id uint64) *stuckNode {
	return &stuckNode{testNode: testNode{id: id, done: make(chan struct{})}, unstick: make(chan struct{})}
}

func (n *stuckNode) Shutdown(ctx context.Context) error {
	<-n.unstick
	return n.testNode.Shutdown(ctx)
}

// closeAsync runs Close in its own goroutine.
func closeAsync(ctx context.Context, p *Pool) <-chan error {
	res := make(chan error, 1)
	go func() { res <- p.Close(ctx) }()
	return res
}

// returnedErr reports whether a result is in, and what.
func returnedErr(res <-chan error) (error, bool) {
	select {
	case err := <-res:
		return err, true
	default:
		return nil, false
	}
}

// A Node.Shutdown that ignores its ctx cannot hold Close: Close returns
// once ShutdownTimeout (and the grace after it) has passed, with an error
// that matches ErrAbandoned and names the runner.
func TestCloseAbandonsANodeShutdownThatIgnoresItsCtx(t *testing.T) {
	synctest.Test(t, func(t *testing.T) {
		n := newStuckNode(1)
		be := scBackendFunc(func(context.Context, RunnerSpec) (Node, error) { return n, nil })
		p, err := NewPool(Config{Min: 1, Max: 1, Backend: be, ShutdownTimeout: 3 * time.Second})
		require.NoError(t, err)
		res := closeAsync(context.Background(), p)
		time.Sleep(3*time.Second + abandonGrace - time.Millisecond)
		synctest.Wait()
		_, done := returnedErr(res)
		assert.False(t, done, "Close gave up on Node.Shutdown before ShutdownTimeout and its grace passed")

		time.Sleep(2 * time.Millisecond)
		synctest.Wait()
		err, done = returnedErr(res)
		require.True(t, done, "Close still waits for a Node.Shutdown that ignores its ctx")
		assert.ErrorIs(t, err, ErrAbandoned)
		assert.Contains(t, err.Error(), "Node.Shutdown of runner 1")
		assert.Contains(t, err.Error(), "ShutdownTimeout 3s")

		close(n.unstick) // the call returns at last, and the bubble can end
		synctest.Wait()
		assert.NoError(t, p.Close(context.Background()), "a Close after completion returns nil")
	})
}

// A Backend.Boot that ignores its ctx cannot hold Close either: Close
// cancels the boot, waits for it until BootTimeout (and the grace), then
// returns an error naming the boot. The node it brings later is shut down.
func TestCloseAbandonsABackendBootThatIgnoresItsCtx(t *testing.T) {
	synctest.Test(t, func(t *testing.T) {
		unblock := make(chan struct{})
		late := &testNode{id: 1, done: make(chan struct{})}
		be := scBackendFunc(func(context.Context, RunnerSpec) (Node, error) {
			<-unblock
			return late, nil
		})
		p, err := NewPool(Config{Max: 1, Backend: be, BootTimeout: 5 * time.Second})
		require.NoError(t, err)
		call := make(chan error, 1)
		go func() { call <- p.Call(context.Background(), func(context.Context) error { return nil }) }()
		synctest.Wait()
		require.Equal(t, 1, p.Stats().Pending)

		res := closeAsync(context.Background(), p)
		synctest.Wait()
		assert.ErrorIs(t, <-call, ErrClosed, "the queued caller is failed at once")
		time.Sleep(5*time.Second + abandonGrace + time.Millisecond)
		synctest.Wait()
		err, done := returnedErr(res)
		require.True(t, done, "Close still waits for a Backend.Boot that ignores its ctx")
		assert.ErrorIs(t, err, ErrAbandoned)
		assert.Contains(t, err.Error(), "Backend.Boot of runner 1")
		assert.Contains(t, err.Error(), "BootTimeout 5s")

		close(unblock)
		synctest.Wait()
		assert.Equal(t, 1, late.shutdownCount(), "the node that came after Close is shut down")
	})
}

// A Boot that outlives BootTimeout fails, but its call still counts against
// Max until it returns: with Max 1 and a caller waiting long, the pool
// never runs two Boot calls at once. A node that arrives late is shut down,
// and the room it held goes to the next boot.
func TestBootsNeverPileUpPastMaxBehindABackendThatIgnoresItsCtx(t *testing.T) {
	synctest.Test(t, func(t *testing.T) {
		var inBoot, most atomic.Int32
		unblock := make(chan struct{})
		var mu sync.Mutex
		var lateNodes []*testNode
		be := scBackendFunc(func(ctx context.Context, spec RunnerSpec) (Node, error) {
			now := inBoot.Add(1)
			defer inBoot.Add(-1)
			for {
				m := most.Load()
				if now <= m || most.CompareAndSwap(m, now) {
					break
				}
			}
			n := &testNode{id: spec.ID, done: make(chan struct{})}
			if spec.ID == 1 {
				<-unblock // ignores ctx
				mu.Lock()
				lateNodes = append(lateNodes, n)
				mu.Unlock()
			}
			return n, nil
		})
		p := mustPool(t, Config{Max: 1, MaxConcurrency: 1, Backend: be, BootTimeout: time.Second})
		call := make(chan error, 1)
		go func() {
			call <- p.Call(context.Background(), func(context.Context) error { return nil }, WithTimeout(3500*time.Millisecond))
		}()
		time.Sleep(3500*time.Millisecond + time.Millisecond)
		synctest.Wait()
		assert.ErrorIs(t, <-call, ErrCheckoutTimeout)
		assert.Equal(t, int32(1), most.Load(), "Boot calls ran at once past Max 1")
		st := p.Stats()
		assert.Equal(t, uint64(1), st.BootFailures, "the boot failed at BootTimeout")
		assert.Equal(t, 0, st.Pending, "a failed boot is not pending")

		close(unblock) // the first Boot returns its node, late
		synctest.Wait()
		mu.Lock()
		require.Len(t, lateNodes, 1)
		assert.Equal(t, 1, lateNodes[0].shutdownCount(), "a node that arrives after BootTimeout is shut down")
		mu.Unlock()
		assert.Equal(t, 0, p.Stats().Runners)

		// The room is free again: the next caller boots runner 2.
		var got uint64
		require.NoError(t, p.Call(context.Background(), func(ctx context.Context) error {
			got, _ = RunnerID(ctx)
			return nil
		}))
		assert.Equal(t, uint64(2), got)
		assert.Equal(t, int32(1), most.Load())
	})
}

// Two Close calls at once wait for the same completion: the second does
// not return nil while the first still waits for work, and both return
// the same result. A Close that begins after completion returns nil.
func TestConcurrentClosesWaitForTheSameCompletion(t *testing.T) {
	t.Run("clean", func(t *testing.T) {
		synctest.Test(t, func(t *testing.T) {
			p, err := NewPool(Config{Min: 1, Max: 1})
			require.NoError(t, err)
			h := callHold(context.Background(), p)
			<-h.started
			first := closeAsync(context.Background(), p)
			synctest.Wait()
			second := closeAsync(context.Background(), p)
			synctest.Wait()
			_, done1 := returnedErr(first)
			_, done2 := returnedErr(second)
			assert.False(t, done1, "the first Close returned while a call still ran")
			assert.False(t, done2, "the second Close returned while the first still waited for work")

			close(h.release)
			synctest.Wait()
			err1, done1 := returnedErr(first)
			err2, done2 := returnedErr(second)
			require.True(t, done1 && done2)
			assert.NoError(t, err1)
			assert.NoError(t, err2)
			assert.NoError(t, <-h.done)
			assert.NoError(t, p.Close(context.Background()))
		})
	})
	t.Run("abandoned", func(t *testing.T) {
		synctest.Test(t, func(t *testing.T) {
			n := newStuckNode(1)
			be := scBackendFunc(func(context.Context, RunnerSpec) (Node, error) { return n, nil })
			p, err := NewPool(Config{Min: 1, Max: 1, Backend: be, ShutdownTimeout: time.Second})
			require.NoError(t, err)
			first := closeAsync(context.Background(), p)
			synctest.Wait()
			second := closeAsync(context.Background(), p)
			time.Sleep(time.Second + abandonGrace + time.Millisecond)
			synctest.Wait()
			err1, done1 := returnedErr(first)
			err2, done2 := returnedErr(second)
			require.True(t, done1 && done2)
			assert.ErrorIs(t, err1, ErrAbandoned)
			assert.Equal(t, err1, err2, "every Close returns the same result")
			assert.NoError(t, p.Close(context.Background()), "a Close after completion returns nil")
			close(n.unstick)
			synctest.Wait()
		})
	})
	t.Run("second ctx ends first", func(t *testing.T) {
		synctest.Test(t, func(t *testing.T) {
			p, err := NewPool(Config{Min: 1, Max: 1})
			require.NoError(t, err)
			fnCtxErr := make(chan error, 1)
			started := make(chan struct{})
			go func() {
				_ = p.Call(context.Background(), func(ctx context.Context) error {
					close(started)
					<-ctx.Done()
					fnCtxErr <- ctx.Err()
					return ctx.Err()
				})
			}()
			<-started
			first := closeAsync(context.Background(), p)
			ctx, cancel := context.WithTimeout(context.Background(), time.Second)
			defer cancel()
			second := closeAsync(ctx, p)
			time.Sleep(time.Second + time.Millisecond)
			synctest.Wait()
			err2, done2 := returnedErr(second)
			require.True(t, done2)
			assert.ErrorIs(t, err2, context.DeadlineExceeded, "a Close returns when its own ctx ends")
			assert.Error(t, <-fnCtxErr, "its ctx ending cancels the work in flight, as for the first Close")
			err1, done1 := returnedErr(first)
			require.True(t, done1, "the first Close returns once the cancelled work is done")
			assert.NoError(t, err1)
		})
	})
}

// Resize lowering Min lets the runners booted for the old Min idle down
// like any other runner.
func TestResizeLoweringMinLetsFormerMinRunnersIdleDown(t *testing.T) {
	synctest.Test(t, func(t *testing.T) {
		cfg := Config{Min: 2, Max: 2, IdleShutdownAfter: time.Second}
		ev := scHook(&cfg)
		p := mustPool(t, cfg)
		time.Sleep(time.Hour)
		synctest.Wait()
		require.Equal(t, 2, p.Stats().Runners, "min runners stay while they are needed for Min")

		require.NoError(t, p.Resize(1, 2))
		time.Sleep(2*time.Second + time.Millisecond)
		synctest.Wait()
		st := p.Stats()
		assert.Equal(t, 1, st.Runners, "the runner above the new Min idled down")
		assert.Equal(t, []RunnerLoad{{ID: 1, Load: 0}}, st.RunnerLoads, "the highest ID goes first")
		shrinks := ev.shrinkEvents()
		require.Len(t, shrinks, 1)
		assert.Equal(t, uint64(2), shrinks[0].RunnerID)
		assert.ErrorIs(t, shrinks[0].Reason, ErrIdleShutdown)

		require.NoError(t, p.Resize(0, 2))
		time.Sleep(2*time.Second + time.Millisecond)
		synctest.Wait()
		assert.Equal(t, 0, p.Stats().Runners, "with Min 0 the last former min runner idles down too")
	})
}

// A boot failure that the backend marks as one retrying cannot fix (it
// matches ErrBootFailed) fails the callers queued for it at once, with the
// backend's reason; a transient one keeps them waiting for the retry.
func TestPermanentBootFailureFailsQueuedCallersAtOnce(t *testing.T) {
	errNoBinary := errors.New("exec: /opt/app: no such file or directory")
	synctest.Test(t, func(t *testing.T) {
		var boots atomic.Int32
		be := scBackendFunc(func(context.Context, RunnerSpec) (Node, error) {
			boots.Add(1)
			return nil, fmt.Errorf("%w: %w", ErrBootFailed, errNoBinary)
		})
		p := mustPool(t, Config{Max: 2, MaxConcurrency: 1, Backend: be})
		start := time.Now()
		errs := make(chan error, 2)
		for range 2 {
			go func() { errs <- p.Call(context.Background(), func(context.Context) error { return nil }) }()
		}
		for range 2 {
			err := <-errs
			assert.ErrorIs(t, err, ErrBootFailed)
			assert.ErrorIs(t, err, errNoBinary, "the error wraps the backend's reason")
		}
		assert.Zero(t, time.Since(start), "the callers waited instead of failing at once")
		time.Sleep(time.Hour)
		synctest.Wait()
		assert.LessOrEqual(t, boots.Load(), int32(2), "no retry after a failure retrying cannot fix")
		assert.Zero(t, p.Stats().Waiting)
	})
	synctest.Test(t, func(t *testing.T) {
		be := scBackendFunc(func(context.Context, RunnerSpec) (Node, error) { return nil, errNoBinary })
		p := mustPool(t, Config{Max: 1, MaxConcurrency: 1, Backend: be})
		res := make(chan error, 1)
		go func() { res <- p.Call(context.Background(), func(context.Context) error { return nil }) }()
		time.Sleep(10 * time.Second)
		synctest.Wait()
		_, done := returnedErr(res)
		assert.False(t, done, "a transient failure keeps the caller waiting for the retry")
		assert.Greater(t, p.Stats().BootFailures, uint64(5), "retried once a second")
		time.Sleep(30 * time.Second)
		assert.ErrorIs(t, <-res, ErrCheckoutTimeout)
	})
}

// A Node.Shutdown that ignores its ctx but returns within the grace after
// ShutdownTimeout is waited for: Close returns nil when it returns, not
// ErrAbandoned at the end of the grace.
func TestCloseWaitsForAShutdownThatReturnsWithinTheGrace(t *testing.T) {
	synctest.Test(t, func(t *testing.T) {
		n := newStuckNode(1)
		be := scBackendFunc(func(context.Context, RunnerSpec) (Node, error) { return n, nil })
		p, err := NewPool(Config{Min: 1, Max: 1, Backend: be, ShutdownTimeout: time.Second})
		require.NoError(t, err)
		res := closeAsync(context.Background(), p)
		time.Sleep(time.Second + abandonGrace/2)
		synctest.Wait()
		_, done := returnedErr(res)
		require.False(t, done, "Close returned while Node.Shutdown still ran within the grace")
		close(n.unstick)
		synctest.Wait()
		err, done = returnedErr(res)
		require.True(t, done, "Close still waits after the last Node.Shutdown returned")
		assert.NoError(t, err)
	})
}
