package flame

import (
	"context"
	"fmt"
	"sync"
	"testing"
	"testing/synctest"

	"github.com/stretchr/testify/assert"
	"github.com/stretchr/testify/require"
)

// reportingNode is a node that learns of its runner's death during a
// call, as a node whose connection breaks does: once dying, its next Exec
// closes Done (only if closeDone is set: some nodes notice later, or
// never) and returns an error matching ErrRunnerDown without fn's help.
type reportingNode struct {
	testNode
	closeDone bool

	mu    sync.Mutex
	dying bool
}

func (n *reportingNode) Exec(ctx context.Context, fn func(context.Context) error) error {
	n.mu.Lock()
	dying := n.dying
	n.mu.Unlock()
	if dying {
		if n.closeDone {
			n.Crash()
		}
		return fmt.Errorf("runner %d: connection lost: %w", n.id, ErrRunnerDown)
	}
	return fn(ctx)
}

func (n *reportingNode) die() {
	n.mu.Lock()
	n.dying = true
	n.mu.Unlock()
}

// A caller that retries on ErrRunnerDown never reaches the same dead
// runner: the runner leaves the checkout set before the failed call
// returns, whether the node closes Done or only says so in its error.
func TestCallerRetryingOnRunnerDownNeverReachesTheDeadRunner(t *testing.T) {
	for _, closeDone := range []bool{false, true} {
		t.Run(fmt.Sprintf("Done closed %v", closeDone), func(t *testing.T) {
			synctest.Test(t, func(t *testing.T) {
				var mu sync.Mutex
				nodes := map[uint64]*reportingNode{}
				be := scBackendFunc(func(_ context.Context, spec RunnerSpec) (Node, error) {
					n := &reportingNode{testNode: testNode{id: spec.ID, done: make(chan struct{})}, closeDone: closeDone}
					mu.Lock()
					nodes[spec.ID] = n
					mu.Unlock()
					return n, nil
				})
				p := mustPool(t, Config{Min: 1, Max: 2, MaxConcurrency: 4, Backend: be})
				mu.Lock()
				first := nodes[1]
				mu.Unlock()
				first.die()

				err := p.Call(context.Background(), func(context.Context) error { return nil })
				require.ErrorIs(t, err, ErrRunnerDown)
				// Straight away, without letting any other goroutine run
				// first: the dead runner is out of checkout already.
				for _, rl := range p.Stats().RunnerLoads {
					assert.NotEqual(t, uint64(1), rl.ID, "the dead runner is still in the checkout set")
				}
				for i := range 6 {
					var got uint64
					err := p.Call(context.Background(), func(ctx context.Context) error {
						got, _ = RunnerID(ctx)
						return nil
					})
					require.NoError(t, err, "retry %d reached the dead runner", i)
					assert.NotEqual(t, uint64(1), got)
				}
				synctest.Wait()
				st := p.Stats()
				assert.Equal(t, uint64(1), st.Shrunk, "the dead runner is removed once")
			})
		})
	}
}

// A fn's own error that matches ErrRunnerDown (from a nested pool, say) is
// the fn's business: the runner it ran on stays.
func TestFnErrorMatchingErrRunnerDownKeepsTheRunner(t *testing.T) {
	synctest.Test(t, func(t *testing.T) {
		be := scBackendFunc(func(_ context.Context, spec RunnerSpec) (Node, error) {
			return &reportingNode{testNode: testNode{id: spec.ID, done: make(chan struct{})}}, nil
		})
		p := mustPool(t, Config{Min: 1, Max: 1, Backend: be})
		nested := fmt.Errorf("a pool this fn called: %w", ErrRunnerDown)
		err := p.Call(context.Background(), func(context.Context) error { return nested })
		assert.ErrorIs(t, err, nested)
		synctest.Wait()
		st := p.Stats()
		assert.Equal(t, 1, st.Runners)
		assert.Zero(t, st.Shrunk)
	})
}
