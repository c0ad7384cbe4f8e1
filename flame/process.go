package flame

import (
	"context"
	"errors"
	"log/slog"
	"os"
	"time"

	"github.com/goflame/goflame/flame/internal/wire"
)

// ProcessBackend boots each runner as a child process of this same binary
// (or of Path), connected by a control socket (handshake, heartbeats,
// cancellations, shutdown) and one lane, a socket pair of its own, per
// call in flight. The zero value works.
//
// The program must call Main first thing in main(), so that a process
// started as a runner serves calls instead of running the program; and the
// work must be functions registered with Register: a runner process cannot
// run a closure (ErrNotPortable).
//
// Boot starts the child and waits, within the pool's BootTimeout, for it
// to say HELLO (its protocol, build and registry) and READY; a child that
// does not, or that is another build or registers other functions
// (ErrVersionSkew), is killed and reaped. A boot that cannot succeed (a
// missing or non-executable Path, a runner that exits before its
// handshake, version skew) fails with an error matching ErrBootFailed, so
// the callers waiting for it fail at once.
//
// A call takes an idle lane (or opens one: the runner's end travels over
// the control socket) and sends the function id, the encoded arguments and
// the time left before the call's deadline, which the runner enforces (the
// function sees context.DeadlineExceeded). The runner runs the call on the
// goroutine that reads its lane and the caller reads the reply itself, so
// a round trip wakes one goroutine on each side. Cancelling the call (the
// caller's ctx, Child.Stop, Close) sends CANCEL on the control socket,
// which cancels the function's ctx; the slot stays taken until the
// runner's reply, as with a local fn that ignores its ctx. A lane serves
// call after call; a node keeps up to 256 idle lanes.
//
// A child that exits, is killed, or whose connection breaks closes the
// node's Done: its in-flight calls fail at once with an error matching
// ErrRunnerDown that says why (the exit status or signal), and the pool
// removes the runner. Shutdown
// sends SHUTDOWN: the runner finishes its calls and exits; when the pool's
// ShutdownTimeout runs out it gets SIGTERM (its calls are cancelled), and
// SIGKILL 2s later. The child is always reaped. Runners die with their
// parent: the socket's EOF, missed heartbeats (a stopped parent), and on
// Linux the parent-death signal. Each runner has its own process group,
// which the signals target.
//
// The child's stdout and stderr go to Logger line by line, tagged with the
// pool and runner ID (and pid); a failed boot's error quotes the child's
// last stderr lines.
type ProcessBackend struct {
	// Path is the runner executable; default: this program (os.Executable).
	// It must be a build of the same program (see ErrVersionSkew).
	Path string
	// Args are the runner's command-line arguments (after the program
	// name); default none. Main serves before flags are parsed.
	Args []string
	// Env is added to the runner's environment, which is otherwise this
	// process's ("KEY=value" entries; later entries win).
	Env []string
	// MaxMessageSize caps one message (arguments or result, encoded) in
	// bytes; default 16 MiB. A larger one fails with ErrTooLarge.
	MaxMessageSize int
	// KeepAlive is how often parent and runner ping each other; a side that
	// hears nothing from the other for max(3*KeepAlive, 1s) treats it as
	// gone (a runner then exits). Death is noticed at once regardless: the
	// sockets close. Default 2s.
	KeepAlive time.Duration
	// Logger receives the runners' stdout and stderr, line by line, and the
	// backend's own messages. Nil means the pool's Config.Logger, or
	// slog.Default() when that is nil too.
	Logger *slog.Logger
}

const (
	envParent        = "FLAME_PARENT"
	defaultKeepAlive = 2 * time.Second
)

func (b ProcessBackend) maxMessage() int {
	return positiveOr(b.MaxMessageSize, wire.DefaultMaxPayload)
}

func (b ProcessBackend) keepAlive() time.Duration { return positiveOr(b.KeepAlive, defaultKeepAlive) }

func (b ProcessBackend) logger(ctx context.Context) *slog.Logger { return backendLogger(ctx, b.Logger) }

// isRunner and parentEnv are read once, at package init: this process was
// started by a ProcessBackend.
var parentEnv, isRunner = os.LookupEnv(envParent)

// runnerMissedMain is the error of a boot in a process that was started
// as a runner but whose main did not call flame.Main first: left alone, it
// would boot runners of its own, each of which would do the same. Nil
// otherwise.
func runnerMissedMain() error {
	if isRunner && os.Getenv(envParent) != "" {
		return bootFailed(errors.New("flame: this process was started as a runner, but its main did not call flame.Main() first" + mainHint))
	}
	return nil
}

// IsRunner reports whether this process was started as a runner by a
// ProcessBackend. It is set before any package is initialized, so
// package-level code (var initializers, init functions) can skip work a
// runner does not need. Main never returns in a runner.
func IsRunner() bool { return isRunner }

// Main serves as a runner and exits when this process was started as one
// by a ProcessBackend; otherwise it returns at once. Call it first thing in
// main() (and in TestMain, so a test binary can be its own runner):
//
//	func main() {
//		flame.Main()
//		...
//	}
//
// A runner removes FLAME_PARENT from its environment (its own
// subprocesses are not runners), connects to its parent, serves the
// registered functions it is asked to run, and exits when the parent asks
// it to or is gone.
func Main() {
	if !isRunner {
		return
	}
	os.Unsetenv(envParent)
	os.Exit(serveRunner(parentEnv))
}
