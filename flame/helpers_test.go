package flame

import (
	"bytes"
	"context"
	"errors"
	"fmt"
	"io"
	"log/slog"
	"slices"
	"sync"
	"testing"
	"time"

	"github.com/stretchr/testify/assert"
	"github.com/stretchr/testify/require"
)

// testBackend is a Backend whose boots can be delayed, failed or hung, and
// whose nodes can be crashed. Safe for concurrent use.
type testBackend struct {
	mu        sync.Mutex
	delay     time.Duration                              // each boot takes this long (virtual time under synctest)
	fail      func(id uint64) error                      // non-nil error fails that boot
	hang      func(id uint64) bool                       // true: Boot blocks until its ctx is done
	nodes     map[uint64]*testNode                       // every node booted, by runner ID
	bootCalls []uint64                                   // runner IDs passed to Boot, in call order
	onBoot    func(ctx context.Context, spec RunnerSpec) // called at the start of Boot
}

func newTestBackend() *testBackend { return &testBackend{nodes: map[uint64]*testNode{}} }

func (b *testBackend) Boot(ctx context.Context, spec RunnerSpec) (Node, error) {
	b.mu.Lock()
	b.bootCalls = append(b.bootCalls, spec.ID)
	delay, fail, hang, onBoot := b.delay, b.fail, b.hang, b.onBoot
	b.mu.Unlock()
	if onBoot != nil {
		onBoot(ctx, spec)
	}
	if hang != nil && hang(spec.ID) {
		<-ctx.Done()
		return nil, ctx.Err()
	}
	if delay > 0 {
		select {
		case <-time.After(delay):
		case <-ctx.Done():
			return nil, ctx.Err()
		}
	}
	if fail != nil {
		if err := fail(spec.ID); err != nil {
			return nil, err
		}
	}
	n := &testNode{id: spec.ID, done: make(chan struct{})}
	b.mu.Lock()
	b.nodes[spec.ID] = n
	b.mu.Unlock()
	return n, nil
}

func (b *testBackend) node(id uint64) *testNode {
	b.mu.Lock()
	defer b.mu.Unlock()
	return b.nodes[id]
}

func (b *testBackend) calls() []uint64 {
	b.mu.Lock()
	defer b.mu.Unlock()
	return slices.Clone(b.bootCalls)
}

// allShutDown reports whether every booted node was shut down or crashed.
func (b *testBackend) allShutDown() bool {
	b.mu.Lock()
	defer b.mu.Unlock()
	for _, n := range b.nodes {
		select {
		case <-n.done:
		default:
			return false
		}
	}
	return true
}

type testNode struct {
	id        uint64
	once      sync.Once
	done      chan struct{}
	mu        sync.Mutex
	shutdowns int
}

func (n *testNode) Exec(ctx context.Context, fn func(context.Context) error) error { return fn(ctx) }

func (n *testNode) Shutdown(ctx context.Context) error {
	n.mu.Lock()
	n.shutdowns++
	n.mu.Unlock()
	n.once.Do(func() { close(n.done) })
	return nil
}

func (n *testNode) Done() <-chan struct{} { return n.done }

// Crash stops the node without the pool asking.
func (n *testNode) Crash() { n.once.Do(func() { close(n.done) }) }

func (n *testNode) shutdownCount() int {
	n.mu.Lock()
	defer n.mu.Unlock()
	return n.shutdowns
}

// eventLog records the pool's hooks in order, as short strings such as
// "grow-start 1 #1", "grow-end 1 #1 ok", "grow-end 0 #2 err", "shrink 0 #1".
type eventLog struct {
	mu     sync.Mutex
	events []string
}

func (l *eventLog) add(s string) {
	l.mu.Lock()
	l.events = append(l.events, s)
	l.mu.Unlock()
}

func (l *eventLog) get() []string {
	l.mu.Lock()
	defer l.mu.Unlock()
	return slices.Clone(l.events)
}

// hook installs recording hooks on cfg.
func (l *eventLog) hook(cfg *Config) {
	cfg.OnGrowStart = func(ev GrowEvent) { l.add(fmt.Sprintf("grow-start %d #%d", ev.Count, ev.RunnerID)) }
	cfg.OnGrowEnd = func(ev GrowEvent, err error) {
		res := "ok"
		if err != nil {
			res = "err"
		}
		l.add(fmt.Sprintf("grow-end %d #%d %s", ev.Count, ev.RunnerID, res))
	}
	cfg.OnShrink = func(ev ShrinkEvent) { l.add(fmt.Sprintf("shrink %d #%d", ev.Count, ev.RunnerID)) }
}

// mustPool creates a pool and closes it when the test ends.
func mustPool(t testing.TB, cfg Config) *Pool {
	t.Helper()
	p, err := NewPool(cfg)
	require.NoError(t, err, "NewPool")
	t.Cleanup(func() {
		if err := p.Close(context.Background()); !errors.Is(err, context.Canceled) {
			assert.NoError(t, err, "Close")
		}
	})
	return p
}

// syncBuffer is a bytes.Buffer that the pool's goroutines may log into
// while a test reads it.
type syncBuffer struct {
	mu  sync.Mutex
	buf bytes.Buffer
}

func (b *syncBuffer) Write(p []byte) (int, error) {
	b.mu.Lock()
	defer b.mu.Unlock()
	return b.buf.Write(p)
}

func (b *syncBuffer) String() string {
	b.mu.Lock()
	defer b.mu.Unlock()
	return b.buf.String()
}

func newTextLogger(w io.Writer) *slog.Logger { return slog.New(slog.NewTextHandler(w, nil)) }
