package flame

import (
	"context"
	"fmt"
	"log/slog"
	"net"
	"strings"
	"sync"
	"time"

	"github.com/goflame/goflame/flame/internal/wire"
)

// Launcher starts runners on one platform: a local command, a machine over
// SSH, a Kubernetes pod, a cloud VM. It only starts a runner with the
// environment the backend gives it, reports when the platform says the
// runner is gone, and removes it when asked. Everything else (listening,
// authenticating, the protocol, heartbeats, lanes, cancellation, shutdown,
// crash detection) is RemoteBackend's, the same for every launcher.
//
// The runner is this program (or a build of it) whose main calls Main
// first: with the environment's FLAME_PARENT it dials the parent back over
// TCP, verifies it by its pinned certificate, authenticates with a
// single-use token, and serves.
type Launcher interface {
	// Launch starts one runner with spec.Env added to its environment and
	// returns once the platform has taken it (the runner need not be up:
	// the backend waits for it to dial back, within ctx). An error that
	// matches ErrBootFailed says retrying cannot help (a missing program,
	// an invalid spec).
	Launch(ctx context.Context, spec LaunchSpec) (Instance, error)
}

// LaunchSpec is what a Launcher starts.
type LaunchSpec struct {
	Pool   string
	Runner uint64
	// Env is the runner's environment: "KEY=value" entries the launcher
	// must add to what the runner otherwise gets (FLAME_PARENT, which holds
	// a single-use secret: keep it out of logs and of places others read).
	Env    []string
	Logger *slog.Logger // the pool's logger, for the runner's output and the launcher's own messages
}

// Instance is one runner as its platform knows it.
type Instance interface {
	// Gone is closed when the platform says the runner is gone (it exited,
	// was killed, evicted, deleted).
	Gone() <-chan struct{}
	// Err says why, once Gone is closed (the platform's reason: an exit
	// status, OOMKilled, Evicted, deleted); nil before.
	Err() error
	// Remove stops the runner if it still runs and removes it from the
	// platform. It is idempotent, may be called after Gone, and returns
	// once the runner is gone or ctx is done.
	Remove(ctx context.Context) error
}

// RemoteBackend boots each runner through a Launcher, on this machine or
// another, and talks to it over TCP: the runner dials the parent back, so
// runners need no listener of their own and work behind NAT. Use one
// RemoteBackend per pool (a pointer: it holds the listener).
//
// Security: the parent makes an ephemeral key and a self-signed
// certificate each time it starts listening, and speaks TLS 1.3 only;
// runners pin the certificate's SHA-256 fingerprint, which travels in
// their FLAME_PARENT (no CA, no host names). Each launch carries a fresh
// 256-bit token bound to that runner's ID, accepted for exactly one
// control connection and only until the boot ends (BootTimeout). Lanes
// are authenticated with a secret the parent issues over the control
// connection, never with the launch token. Secrets are compared in
// constant time. Anything else that connects is closed within
// HandshakeTimeout, costs bounded memory (frames before authentication
// are capped at 64 bytes) and a bounded number of goroutines
// (MaxHandshakes), is logged at most once a second, and never touches the
// pool or its runners. The listener is open only while the backend has
// runners or boots under way.
//
// Liveness: a runner whose connection breaks or goes silent for
// max(3×KeepAlive, 1 s) is down (its calls fail with ErrRunnerDown) and
// its instance is removed; the runner, on its side, exits when it loses
// its parent the same way. Deadlines travel as durations.
type RemoteBackend struct {
	// Launcher starts the runners. Required.
	Launcher Launcher
	// Listen is the address the parent listens on for runners, host:port;
	// default 127.0.0.1:0 (loopback, any free port). Name a fixed port to
	// open it in a firewall or network policy, and a host (or ":port" for
	// every interface) that the runners can reach.
	Listen string
	// Advertise is the address runners dial, host:port, or a host alone
	// (the listener's port goes with it); default: the address the
	// listener has. Set it where runners reach the parent by another
	// address (NAT, a pod's IP, a listener on every interface).
	Advertise string
	// MaxMessageSize caps one message (arguments or result, encoded) in
	// bytes; default 16 MiB. A larger one fails with ErrTooLarge.
	MaxMessageSize int
	// KeepAlive is how often parent and runner ping each other; a side
	// that hears nothing for max(3*KeepAlive, 1s) gives the other up.
	// Default 2s.
	KeepAlive time.Duration
	// HandshakeTimeout bounds a connection's TLS handshake and
	// authentication; default 5s.
	HandshakeTimeout time.Duration
	// MaxHandshakes caps the connections in their handshake at once;
	// more are closed at once. Default 64.
	MaxHandshakes int
	// Logger receives the backend's messages (refused connections, runners
	// lost). Nil means the pool's logger.
	Logger *slog.Logger

	mu       sync.Mutex
	listener *listener // open while refs > 0
	refs     int       // boots under way and nodes not yet shut down
}

const (
	defaultRemoteListen     = "127.0.0.1:0"
	defaultHandshakeTimeout = 5 * time.Second
	defaultMaxHandshakes    = 64
)

func (b *RemoteBackend) maxMessage() int {
	return positiveOr(b.MaxMessageSize, wire.DefaultMaxPayload)
}

func (b *RemoteBackend) keepAlive() time.Duration { return positiveOr(b.KeepAlive, defaultKeepAlive) }

func (b *RemoteBackend) handshakeTimeout() time.Duration {
	return positiveOr(b.HandshakeTimeout, defaultHandshakeTimeout)
}

func (b *RemoteBackend) maxHandshakes() int { return positiveOr(b.MaxHandshakes, defaultMaxHandshakes) }

func (b *RemoteBackend) logger(ctx context.Context) *slog.Logger { return backendLogger(ctx, b.Logger) }

// validate checks the configuration; NewPool calls it, and so does every
// boot. Errors name the field and match ErrInvalidConfig.
func (b *RemoteBackend) validate() error {
	bad := func(format string, args ...any) error {
		return fmt.Errorf("%w: RemoteBackend."+format, append([]any{ErrInvalidConfig}, args...)...)
	}
	if b.Launcher == nil {
		return bad("Launcher is required")
	}
	listen := b.Listen
	if listen == "" {
		listen = defaultRemoteListen
	}
	if _, port, err := net.SplitHostPort(listen); err != nil {
		return bad("Listen %q: %v", b.Listen, err)
	} else if _, err := net.LookupPort("tcp", port); err != nil {
		return bad("Listen %q: bad port: %v", b.Listen, err)
	}
	if b.Advertise != "" {
		host, port, err := net.SplitHostPort(b.Advertise)
		if err != nil && !strings.Contains(b.Advertise, ":") || err != nil && net.ParseIP(b.Advertise) != nil {
			host, port, err = b.Advertise, "", nil // a host alone
		}
		// If chains rather than switches here and below: mutation testing
		// sees the coverage of statements, and a case's condition is none.
		if err != nil {
			return bad("Advertise %q: %v", b.Advertise, err)
		}
		if host == "" {
			return bad("Advertise %q: no host: runners must be told where to dial", b.Advertise)
		}
		if port == "0" {
			return bad("Advertise %q: port 0 cannot be dialled", b.Advertise)
		}
	}
	if b.MaxMessageSize < 0 {
		return bad("MaxMessageSize must not be negative, got %d", b.MaxMessageSize)
	}
	if b.KeepAlive < 0 {
		return bad("KeepAlive must not be negative, got %v", b.KeepAlive)
	}
	if b.HandshakeTimeout < 0 {
		return bad("HandshakeTimeout must not be negative, got %v", b.HandshakeTimeout)
	}
	if b.MaxHandshakes < 0 {
		return bad("MaxHandshakes must not be negative, got %d", b.MaxHandshakes)
	}
	return nil
}

// ListenAddr is the address the backend listens on for its runners, or ""
// while it does not listen (it listens only while it has runners or boots
// under way).
func (b *RemoteBackend) ListenAddr() string {
	b.mu.Lock()
	defer b.mu.Unlock()
	if b.listener == nil {
		return ""
	}
	return b.listener.ln.Addr().String()
}

// acquire opens the listener if it is not open, and counts a user of it
// (a boot under way, or a node not yet shut down).
func (b *RemoteBackend) acquire(log *slog.Logger) (*listener, error) {
	b.mu.Lock()
	defer b.mu.Unlock()
	if b.listener == nil {
		l, err := listen(b, log)
		if err != nil {
			return nil, err
		}
		b.listener = l
	}
	b.refs++
	return b.listener, nil
}

// release gives a use of the listener back; the last one closes it, so a
// pool scaled to zero listens on nothing.
func (b *RemoteBackend) release() {
	b.mu.Lock()
	b.refs--
	var l *listener
	if b.refs == 0 {
		l, b.listener = b.listener, nil
	}
	b.mu.Unlock()
	if l != nil {
		l.close()
	}
}
