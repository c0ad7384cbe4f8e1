package flame

import (
	"context"
	"errors"
	"log/slog"
	"testing"
	"testing/synctest"
	"time"

	"github.com/stretchr/testify/assert"
	"github.com/stretchr/testify/require"
)

// A Backend.Boot that returns a node together with an error has failed,
// and the node it half made is shut down, not leaked; a boot that returns
// neither a node nor an error has failed too, saying so.
func TestBootReturningANodeAndAnErrorShutsTheNodeDown(t *testing.T) {
	synctest.Test(t, func(t *testing.T) {
		half := &testNode{id: 1, done: make(chan struct{})}
		be := scBackendFunc(func(_ context.Context, spec RunnerSpec) (Node, error) {
			if spec.ID == 1 {
				return half, errors.New("half booted")
			}
			return nil, nil
		})
		p := mustPool(t, Config{Max: 1, Backend: be})
		err := p.Call(context.Background(), func(context.Context) error { return nil }, WithTimeout(time.Second/2))
		assert.ErrorIs(t, err, ErrCheckoutTimeout)
		assert.ErrorContains(t, err, "half booted")
		synctest.Wait()
		assert.Equal(t, 1, half.shutdownCount(), "the half-booted node was not shut down")

		err = p.Call(context.Background(), func(context.Context) error { return nil }, WithTimeout(2*time.Second))
		assert.ErrorContains(t, err, "backend returned no node and no error")
		assert.GreaterOrEqual(t, p.Stats().BootFailures, uint64(2))
	})
}

// A runner shut down for idleness, whose Node.Shutdown returns nil, logs
// no error.
func TestCleanShutdownLogsNoError(t *testing.T) {
	synctest.Test(t, func(t *testing.T) {
		var logs syncBuffer
		p := mustPool(t, Config{Max: 1, IdleShutdownAfter: time.Second, Logger: slog.New(slog.NewTextHandler(&logs, nil))})
		require.NoError(t, p.Call(context.Background(), func(context.Context) error { return nil }))
		time.Sleep(time.Minute)
		synctest.Wait()
		assert.Zero(t, p.Stats().Runners, "the idle runner was not shut down")
		assert.NotContains(t, logs.String(), "level=ERROR")
	})
}

// failingNode is a node whose Shutdown fails.
type failingNode struct{ testNode }

func (n *failingNode) Shutdown(ctx context.Context) error {
	_ = n.testNode.Shutdown(ctx)
	return errors.New("cannot stop")
}

// A node that Backend.Boot returns after BootTimeout is shut down; when
// that fails, the log says so.
func TestLateNodeShutdownFailureIsLogged(t *testing.T) {
	synctest.Test(t, func(t *testing.T) {
		var logs syncBuffer
		late := &failingNode{testNode{id: 1, done: make(chan struct{})}}
		be := scBackendFunc(func(_ context.Context, spec RunnerSpec) (Node, error) {
			if spec.ID == 1 {
				time.Sleep(2 * time.Second) // past BootTimeout, ignoring ctx
				return late, nil
			}
			return &testNode{id: spec.ID, done: make(chan struct{})}, nil
		})
		p := mustPool(t, Config{Max: 1, Backend: be, BootTimeout: time.Second,
			Logger: slog.New(slog.NewTextHandler(&logs, nil))})
		err := p.Call(context.Background(), func(context.Context) error { return nil }, WithTimeout(time.Minute))
		assert.NoError(t, err, "the boot after the late one serves the call")
		synctest.Wait()
		assert.Equal(t, 1, late.shutdownCount(), "the late node was not shut down")
		assert.Contains(t, logs.String(), "shutdown of a runner booted after BootTimeout failed")
		assert.Contains(t, logs.String(), "cannot stop")
	})
}
