package flame_test

import (
	"context"
	"errors"
	"fmt"
	"slices"
	"sync"
	"testing"
	"time"

	"github.com/stretchr/testify/assert"
	"github.com/stretchr/testify/require"

	"github.com/goflame/goflame/flame"
)

// memBackend is a backend written outside package flame whose runners are
// "remote": its nodes run registered functions only through Invoker, on a
// goroutine of their own with a copy of the arguments, as a runner in
// another process would (flame.Dispatch is its runner side). It records
// every invocation.
type memBackend struct {
	mu    sync.Mutex
	calls []flame.Invocation
	nodes map[uint64]*memNode
}

func (b *memBackend) Boot(_ context.Context, spec flame.RunnerSpec) (flame.Node, error) {
	n := &memNode{b: b, id: spec.ID, done: make(chan struct{})}
	b.mu.Lock()
	if b.nodes == nil {
		b.nodes = map[uint64]*memNode{}
	}
	b.nodes[spec.ID] = n
	b.mu.Unlock()
	return n, nil
}

func (b *memBackend) invocations() []flame.Invocation {
	b.mu.Lock()
	defer b.mu.Unlock()
	return slices.Clone(b.calls)
}

type memNode struct {
	b    *memBackend
	id   uint64
	once sync.Once
	done chan struct{}

	mu   sync.Mutex
	dead bool // its connection is gone: Invoke says so
}

func (n *memNode) Exec(context.Context, func(context.Context) error) error {
	return flame.ErrNotPortable
}

func (n *memNode) Invoke(ctx context.Context, call flame.Invocation) ([]byte, error) {
	n.mu.Lock()
	dead := n.dead
	n.mu.Unlock()
	if dead {
		return nil, fmt.Errorf("mem runner %d: connection lost: %w", n.id, flame.ErrRunnerDown)
	}
	n.b.mu.Lock()
	n.b.calls = append(n.b.calls, call)
	n.b.mu.Unlock()
	call.Args = slices.Clone(call.Args) // it crosses
	type reply struct {
		res []byte
		err error
	}
	ch := make(chan reply, 1)
	go func() { // the "remote" side
		res, err := flame.Dispatch(ctx, call)
		ch <- reply{slices.Clone(res), err}
	}()
	r := <-ch
	return r.res, r.err
}

func (n *memNode) Shutdown(context.Context) error {
	n.once.Do(func() { close(n.done) })
	return nil
}

func (n *memNode) Done() <-chan struct{} { return n.done }

// errThumbMissing is registered, so it keeps its identity across a
// process (or a backend's Invoker).
var errThumbMissing = errors.New("thumbnail source missing")

func init() { flame.RegisterError("test.thumb-missing", errThumbMissing) }

var (
	memDouble = flame.Register("test.mem.double", func(ctx context.Context, n int) (int, error) {
		if n < 0 {
			return 0, fmt.Errorf("negative %d: %w", n, errThumbMissing)
		}
		if n == 13 {
			panic("unlucky")
		}
		return 2 * n, nil
	})
	memWait = flame.Register("test.mem.wait", func(ctx context.Context, _ struct{}) (string, error) {
		<-ctx.Done()
		return "", ctx.Err()
	})
)

// A backend outside package flame serves Func.Call, Cast and Place
// through Invoker alone: the pool never runs a registered function in the
// caller's process for it, and results, errors, panics and cancellation
// cross intact.
func TestBackendOutsideFlameServesRegisteredCallsThroughInvoker(t *testing.T) {
	be := &memBackend{}
	p, err := flame.NewPool(flame.Config{Max: 2, MaxConcurrency: 4, Backend: be})
	require.NoError(t, err)
	defer p.Close(context.Background())
	ctx := context.Background()

	v, err := memDouble.Call(ctx, p, 21)
	require.NoError(t, err)
	assert.Equal(t, 42, v)

	_, err = memDouble.Call(ctx, p, -1)
	var fe *flame.FuncError
	require.ErrorAs(t, err, &fe)
	assert.ErrorIs(t, err, errThumbMissing, "a registered error crosses")

	_, err = memDouble.Call(ctx, p, 13)
	var pe *flame.PanicError
	require.ErrorAs(t, err, &pe)

	cctx, cancel := context.WithTimeout(ctx, 20*time.Millisecond)
	defer cancel()
	_, err = memWait.Call(cctx, p, struct{}{})
	assert.ErrorIs(t, err, context.DeadlineExceeded, "the call's deadline reaches the handler through ctx")

	require.NoError(t, memDouble.Cast(ctx, p, 1))
	child, err := memDouble.Place(ctx, p, 2)
	require.NoError(t, err)
	<-child.Done()
	assert.NoError(t, child.Err())

	assert.Eventually(t, func() bool { return len(be.invocations()) == 6 }, 5*time.Second, time.Millisecond)
	kinds := map[flame.Kind]int{}
	for _, c := range be.invocations() {
		kinds[c.Kind]++
	}
	assert.Equal(t, map[flame.Kind]int{flame.KindCall: 4, flame.KindCast: 1, flame.KindPlace: 1}, kinds)

	// A plain closure is the node's to refuse.
	assert.ErrorIs(t, p.Call(ctx, func(context.Context) error { return nil }), flame.ErrNotPortable)
}

// An Invoker that reports its runner gone (an error matching
// ErrRunnerDown) gets the runner taken out of checkout before the caller
// sees the error.
func TestInvokerReportingRunnerDownRemovesTheRunner(t *testing.T) {
	be := &memBackend{}
	p, err := flame.NewPool(flame.Config{Min: 1, Max: 2, Backend: be})
	require.NoError(t, err)
	defer p.Close(context.Background())
	be.mu.Lock()
	n := be.nodes[1]
	be.mu.Unlock()
	n.mu.Lock()
	n.dead = true
	n.mu.Unlock()
	_, err = memDouble.Call(context.Background(), p, 1)
	require.ErrorIs(t, err, flame.ErrRunnerDown)
	for _, rl := range p.Stats().RunnerLoads {
		assert.NotEqual(t, uint64(1), rl.ID, "the dead runner still takes checkouts")
	}
	v, err := memDouble.Call(context.Background(), p, 2)
	require.NoError(t, err)
	assert.Equal(t, 4, v)
	assert.False(t, errors.Is(err, flame.ErrRunnerDown))
}
