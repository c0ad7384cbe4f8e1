package flame

import (
	"context"
	"log/slog"
	"sync"
	"time"

	"github.com/goflame/goflame/flame/internal/wire"
)

// Backend boots runners. Runner IDs start at 1 and increase in boot order,
// per pool.
type Backend interface {
	// Boot starts a runner and returns once it can run work. ctx carries the
	// pool's BootTimeout; a Boot that outlives it is counted as failed and
	// whatever it returns later is shut down.
	Boot(ctx context.Context, spec RunnerSpec) (Node, error)
}

type poolLoggerKey struct{}

// poolLogger is the booting pool's logger (Config.Logger or slog.Default),
// which the pool puts in Boot's ctx so that a backend of this package can
// log where the pool does.
func poolLogger(ctx context.Context) *slog.Logger {
	l, _ := ctx.Value(poolLoggerKey{}).(*slog.Logger)
	return l
}

// backendLogger is where a backend of this package logs: its own logger,
// else the booting pool's, else slog's default.
func backendLogger(ctx context.Context, own *slog.Logger) *slog.Logger {
	if own != nil {
		return own
	}
	if l := poolLogger(ctx); l != nil {
		return l
	}
	return slog.Default()
}

// positiveOr is a setting where zero (or less, refused by validation)
// means the default.
func positiveOr[T int | time.Duration](v, def T) T {
	if v > 0 {
		return v
	}
	return def
}

// RunnerSpec identifies the runner to boot.
type RunnerSpec struct {
	Pool string
	ID   uint64
}

// Node is one booted runner.
type Node interface {
	// Exec runs fn on this runner and returns its error. The pool calls it
	// on the caller's goroutine and recovers a panic into a *PanicError.
	Exec(ctx context.Context, fn func(context.Context) error) error
	// Shutdown stops the node; in-flight work gets until ctx is done.
	Shutdown(ctx context.Context) error
	// Done is closed when the node has stopped for any reason. If it closes
	// without the pool asking, the pool treats the runner as crashed.
	Done() <-chan struct{}
}

// LocalBackend boots in-process runners: fn runs on the calling goroutine.
// A runner is then only a share of the pool's capacity, which is what the
// pool's limits, events and scaling act on. The zero value works.
//
// Registered functions (Func) run in this process too, but their arguments
// and result still go through the codec and are held to the message size
// limit a process runner applies, so that a value that could not cross a
// process fails in tests, not in production.
type LocalBackend struct {
	// MaxMessageSize caps a registered call's encoded arguments and result
	// in bytes, as ProcessBackend.MaxMessageSize does; default 16 MiB.
	MaxMessageSize int
}

// Boot implements Backend.
func (b LocalBackend) Boot(ctx context.Context, spec RunnerSpec) (Node, error) {
	limit := b.MaxMessageSize
	if limit <= 0 {
		limit = wire.DefaultMaxPayload
	}
	return &localNode{done: make(chan struct{}), maxMsg: limit}, nil
}

type localNode struct {
	once   sync.Once
	done   chan struct{}
	maxMsg int
}

func (n *localNode) Exec(ctx context.Context, fn func(context.Context) error) error {
	return fn(ctx)
}

func (n *localNode) Shutdown(context.Context) error {
	n.once.Do(func() { close(n.done) })
	return nil
}

func (n *localNode) Done() <-chan struct{} { return n.done }
