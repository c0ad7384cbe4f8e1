//go:build unix

package flame_test

import (
	"context"
	"crypto/tls"
	"encoding/base64"
	"encoding/json"
	"errors"
	"fmt"
	"io"
	"log/slog"
	"net"
	"os"
	"os/exec"
	"path/filepath"
	"runtime"
	"slices"
	"strings"
	"sync"
	"syscall"
	"testing"
	"time"

	"github.com/stretchr/testify/assert"
	"github.com/stretchr/testify/require"

	"github.com/goflame/goflame/flame"
)

// remotePool is a pool of runners that dial back over TCP and TLS; by
// default each runner is this test binary, started on this machine.
func remotePool(t *testing.T, cfg flame.Config, be *flame.RemoteBackend) (*flame.Pool, *capture) {
	t.Helper()
	logs := &capture{}
	if be.Launcher == nil {
		be.Launcher = flame.CommandLauncher{Env: []string{raceQuickExit()}}
	}
	if be.Logger == nil {
		be.Logger = slog.New(logs)
	}
	if be.KeepAlive == 0 {
		be.KeepAlive = 250 * time.Millisecond
	}
	cfg.Backend = be
	if cfg.Name == "" {
		cfg.Name = "remote"
	}
	if cfg.Max == 0 {
		cfg.Max = 2
	}
	if cfg.BootTimeout == 0 {
		cfg.BootTimeout = 20 * time.Second
	}
	if cfg.ShutdownTimeout == 0 {
		cfg.ShutdownTimeout = 5 * time.Second
	}
	if cfg.Logger == nil {
		cfg.Logger = be.Logger
	}
	p, err := flame.NewPool(cfg)
	require.NoError(t, err)
	t.Cleanup(func() {
		ctx, cancel := context.WithTimeout(context.Background(), 20*time.Second)
		defer cancel()
		assert.NoError(t, p.Close(ctx))
		assert.Empty(t, be.ListenAddr(), "the listener outlives the pool")
		waitNoChildren(t, 10*time.Second)
	})
	return p, logs
}

// recLauncher records what it launches, and can change a launch's
// environment first (edit).
type recLauncher struct {
	inner flame.Launcher
	edit  func(env []string) []string

	mu    sync.Mutex
	specs []flame.LaunchSpec
}

func (l *recLauncher) Launch(ctx context.Context, spec flame.LaunchSpec) (flame.Instance, error) {
	l.mu.Lock()
	l.specs = append(l.specs, spec)
	edit := l.edit
	l.mu.Unlock()
	if edit != nil {
		spec.Env = edit(spec.Env)
	}
	return l.inner.Launch(ctx, spec)
}

func (l *recLauncher) launched() []flame.LaunchSpec {
	l.mu.Lock()
	defer l.mu.Unlock()
	return append([]flame.LaunchSpec(nil), l.specs...)
}

// runRunner starts this test binary as a runner with env (a recorded
// launch's), outside any pool, and returns its exit status and stderr.
func runRunner(t *testing.T, env []string) (int, string) {
	t.Helper()
	exe, err := os.Executable()
	require.NoError(t, err)
	cmd := exec.Command(exe)
	cmd.Env = append(append(os.Environ(), raceQuickExit()), env...)
	var stderr strings.Builder
	cmd.Stderr = &stderr
	err = cmd.Run()
	var ee *exec.ExitError
	if errors.As(err, &ee) {
		return ee.ExitCode(), stderr.String()
	}
	require.NoError(t, err)
	return 0, stderr.String()
}

// Calls, casts and children run on runners that dialled back, with
// results, handler errors, registered errors, panics, cancellation and
// deadlines crossing as on a child process.
func TestRemoteRunnersServeEveryKindOfWork(t *testing.T) {
	p, _ := remotePool(t, flame.Config{Max: 2, MaxConcurrency: 4}, &flame.RemoteBackend{})
	ctx := context.Background()

	out, err := echoFn.Call(ctx, p, echoIn{Name: "tls", Nums: []int{1, 2}, Attrs: map[string]string{"k": "v"}})
	require.NoError(t, err)
	assert.Equal(t, "hello, tls", out.Greeting)
	assert.Equal(t, 3, out.Sum)
	assert.NotEqual(t, os.Getpid(), out.PID, "it ran in another process")

	_, err = failFn.Call(ctx, p, "disk full")
	var fe *flame.FuncError
	require.ErrorAs(t, err, &fe)
	assert.Equal(t, "disk full", fe.Message)
	_, err = thumbFn.Call(ctx, p, 9)
	assert.ErrorIs(t, err, errThumbMissing)
	_, err = panicFn.Call(ctx, p, "remote boom")
	var pe *flame.PanicError
	require.ErrorAs(t, err, &pe)
	assert.Equal(t, "remote boom", pe.Value)

	// Cancellation reaches the handler.
	cctx, cancel := context.WithCancel(ctx)
	marker := filepath.Join(t.TempDir(), "started")
	errc := make(chan error, 1)
	go func() {
		_, err := blockFn.Call(cctx, p, blockIn{Marker: marker, For: time.Minute})
		errc <- err
	}()
	waitMarker(t, marker)
	cancel()
	assert.ErrorIs(t, <-errc, context.Canceled)
	// The deadline reaches the handler as a duration.
	res, err := blockFn.Call(ctx, p, blockIn{For: time.Minute}, flame.WithTimeout(300*time.Millisecond))
	assert.ErrorIs(t, err, context.DeadlineExceeded)
	assert.Zero(t, res.PID)

	// Casts and children.
	require.NoError(t, echoFn.Cast(ctx, p, echoIn{Name: "cast"}))
	child, err := blockFn.Place(ctx, p, blockIn{For: time.Hour})
	require.NoError(t, err)
	child.Stop()
	assert.ErrorIs(t, child.Err(), context.Canceled)
	assert.ErrorIs(t, p.Call(ctx, func(context.Context) error { return nil }), flame.ErrNotPortable)
}

// From zero to N runners under a burst, and back to zero: the listener is
// open only while there are runners.
func TestRemotePoolScalesFromZeroToNAndBack(t *testing.T) {
	slowInShort(t)
	be := &flame.RemoteBackend{}
	shrunk := make(chan flame.ShrinkEvent, 8)
	p, _ := remotePool(t, flame.Config{Max: 3, MaxConcurrency: 1, IdleShutdownAfter: 300 * time.Millisecond,
		OnShrink: func(ev flame.ShrinkEvent) { shrunk <- ev }}, be)
	assert.Empty(t, be.ListenAddr(), "no runner, no listener")
	var wg sync.WaitGroup
	pids := make(chan int, 3)
	for range 3 {
		wg.Go(func() {
			out, err := blockFn.Call(context.Background(), p, blockIn{For: 500 * time.Millisecond, Ignore: true})
			if assert.NoError(t, err) {
				pids <- out.PID
			}
		})
	}
	wg.Wait()
	close(pids)
	seen := map[int]bool{}
	for pid := range pids {
		seen[pid] = true
	}
	assert.Len(t, seen, 3, "three runner processes served the burst")
	for range 3 {
		select {
		case ev := <-shrunk:
			assert.ErrorIs(t, ev.Reason, flame.ErrIdleShutdown)
		case <-time.After(10 * time.Second):
			require.FailNow(t, "runners did not idle down")
		}
	}
	assert.Eventually(t, func() bool { return be.ListenAddr() == "" }, 5*time.Second, 10*time.Millisecond,
		"the listener stays open with no runner")
	waitNoChildren(t, 10*time.Second)
}

// Bad RemoteBackend settings are errors at NewPool, naming the field.
func TestRemoteBackendRejectsBadSettingsByName(t *testing.T) {
	for field, be := range map[string]*flame.RemoteBackend{
		"Launcher":         {},
		"Listen":           {Launcher: flame.CommandLauncher{}, Listen: "no-port"},
		"Advertise":        {Launcher: flame.CommandLauncher{}, Advertise: ":9000"},
		"MaxHandshakes":    {Launcher: flame.CommandLauncher{}, MaxHandshakes: -1},
		"HandshakeTimeout": {Launcher: flame.CommandLauncher{}, HandshakeTimeout: -time.Second},
		"KeepAlive":        {Launcher: flame.CommandLauncher{}, KeepAlive: -time.Second},
		"MaxMessageSize":   {Launcher: flame.CommandLauncher{}, MaxMessageSize: -1},
	} {
		_, err := flame.NewPool(flame.Config{Max: 1, Backend: be})
		assert.ErrorIs(t, err, flame.ErrInvalidConfig, field)
		assert.ErrorContains(t, err, "RemoteBackend."+field, field)
	}
	// Listening on every interface with nothing to tell the runners fails
	// the first boot, at once, naming the field.
	p, err := flame.NewPool(flame.Config{Max: 1, Backend: &flame.RemoteBackend{Launcher: flame.CommandLauncher{}, Listen: ":0"}})
	require.NoError(t, err)
	defer p.Close(context.Background())
	_, err = pidFn.Call(context.Background(), p, struct{}{})
	assert.ErrorIs(t, err, flame.ErrBootFailed)
	assert.ErrorContains(t, err, "RemoteBackend.Advertise")
}

// Advertise may name a host alone: runners dial it on the listener's port
// (a pod's IP, with the listener on every interface).
func TestRemoteAdvertiseHostAloneTakesTheListenersPort(t *testing.T) {
	rec := &recLauncher{inner: flame.CommandLauncher{Env: []string{raceQuickExit()}}}
	be := &flame.RemoteBackend{Launcher: rec, Listen: ":0", Advertise: "127.0.0.1"}
	p, _ := remotePool(t, flame.Config{Max: 1}, be)
	_, err := pidFn.Call(context.Background(), p, struct{}{})
	require.NoError(t, err)
	_, port, err := net.SplitHostPort(be.ListenAddr())
	require.NoError(t, err)
	require.Len(t, rec.launched(), 1)
	info := decodeParent(t, rec.launched()[0].Env)
	assert.Equal(t, "tls:"+net.JoinHostPort("127.0.0.1", port), info["conn"])
}

// hostile is what an attacker on the network does to the listener.
type hostile struct {
	name string
	do   func(t *testing.T, addr string) // returns once its connection is closed by the parent
}

// expectClosed reads c until the parent closes it, within limit.
func expectClosed(t *testing.T, c net.Conn, limit time.Duration) {
	t.Helper()
	_ = c.SetReadDeadline(time.Now().Add(limit))
	_, err := io.Copy(io.Discard, c)
	var ne net.Error
	if errors.As(err, &ne) && ne.Timeout() {
		assert.Fail(t, "the parent kept a hostile connection open", "after %v", limit)
	}
}

func tlsConn(t *testing.T, addr string) *tls.Conn {
	t.Helper()
	c, err := tls.Dial("tcp", addr, &tls.Config{InsecureSkipVerify: true, MinVersion: tls.VersionTLS13})
	require.NoError(t, err)
	return c
}

// Anything but a runner with its own unspent token is refused within the
// handshake deadline, logged at most once a second, and never touches the
// pool or its runners: plain TCP garbage, HTTP, TLS without a token, with
// a wrong token, a frame that is not AUTH, an oversized frame, and a
// client that never finishes its handshake.
func TestRemoteListenerRefusesHostileClients(t *testing.T) {
	slowInShort(t)
	const hs = 500 * time.Millisecond
	be := &flame.RemoteBackend{HandshakeTimeout: hs}
	p, logs := remotePool(t, flame.Config{Min: 1, Max: 1}, be)
	addr := be.ListenAddr()
	require.NotEmpty(t, addr)
	before, err := pidFn.Call(context.Background(), p, struct{}{})
	require.NoError(t, err)
	limit := hs + 2*time.Second
	for _, h := range []hostile{
		{"plain TCP garbage", func(t *testing.T, addr string) {
			c, err := net.Dial("tcp", addr)
			require.NoError(t, err)
			defer c.Close()
			_, _ = c.Write([]byte("\x00\x01garbage garbage garbage\r\n"))
			expectClosed(t, c, limit)
		}},
		{"HTTP", func(t *testing.T, addr string) {
			c, err := net.Dial("tcp", addr)
			require.NoError(t, err)
			defer c.Close()
			_, _ = c.Write([]byte("GET / HTTP/1.1\r\nHost: example\r\n\r\n"))
			expectClosed(t, c, limit)
		}},
		{"silent TCP", func(t *testing.T, addr string) {
			c, err := net.Dial("tcp", addr)
			require.NoError(t, err)
			defer c.Close()
			expectClosed(t, c, limit)
		}},
		{"TLS without a token", func(t *testing.T, addr string) {
			c := tlsConn(t, addr)
			defer c.Close()
			expectClosed(t, c, limit)
		}},
		{"TLS with a wrong token", func(t *testing.T, addr string) {
			c := tlsConn(t, addr)
			defer c.Close()
			var tok [32]byte
			_, _ = c.Write(appendAuth(1, tok))
			expectClosed(t, c, limit)
		}},
		{"TLS with a frame that is not AUTH", func(t *testing.T, addr string) {
			c := tlsConn(t, addr)
			defer c.Close()
			_, _ = c.Write([]byte{0, 0, 0, 0, 8}) // PING
			expectClosed(t, c, limit)
		}},
		{"TLS with a huge frame", func(t *testing.T, addr string) {
			c := tlsConn(t, addr)
			defer c.Close()
			_, _ = c.Write([]byte{0x7f, 0xff, 0xff, 0xff, 10}) // an AUTH of 2 GiB
			expectClosed(t, c, limit)
		}},
	} {
		t.Run(h.name, func(t *testing.T) { h.do(t, addr) })
	}
	// The pool and its runner never noticed.
	after, err := pidFn.Call(context.Background(), p, struct{}{})
	require.NoError(t, err)
	assert.Equal(t, before, after, "the runner was replaced")
	st := p.Stats()
	assert.Equal(t, uint64(1), st.Booted)
	assert.Zero(t, st.Shrunk)
	time.Sleep(1100 * time.Millisecond) // the last report is due
	refusals := 0
	for _, l := range logs.lines() {
		if strings.Contains(l, "refused connections") {
			refusals++
		}
	}
	assert.GreaterOrEqual(t, refusals, 1, "refusals are logged")
	assert.LessOrEqual(t, refusals, 4, "refusals are logged at most once a second")
}

// appendAuth is an AUTH frame (see package wire).
func appendAuth(runner uint64, token [32]byte) []byte {
	p := append(binaryUvarint(runner), token[:]...)
	return append([]byte{byte(len(p) >> 24), byte(len(p) >> 16), byte(len(p) >> 8), byte(len(p)), 10}, p...)
}

func binaryUvarint(x uint64) []byte {
	var b []byte
	for x >= 0x80 {
		b = append(b, byte(x)|0x80)
		x >>= 7
	}
	return append(b, byte(x))
}

// Hundreds of connections that never finish their handshake cost a bounded
// number of goroutines, are all closed within the handshake deadline, and
// leave the pool serving.
func TestRemoteListenerBoundsStalledHandshakes(t *testing.T) {
	slowInShort(t)
	const hs = time.Second
	be := &flame.RemoteBackend{HandshakeTimeout: hs, MaxHandshakes: 32}
	p, _ := remotePool(t, flame.Config{Min: 1, Max: 1}, be)
	addr := be.ListenAddr()
	base := runtime.NumGoroutine()
	conns := make([]net.Conn, 0, 600)
	defer func() {
		for _, c := range conns {
			c.Close()
		}
	}()
	// A dial can fail now and then when the machine is busy (other test
	// binaries run beside this one): the flood needs only to be many times
	// MaxHandshakes, not every one of its connections.
	var dialErrs []error
	for range cap(conns) {
		c, err := net.DialTimeout("tcp", addr, 2*time.Second)
		if err != nil {
			if dialErrs = append(dialErrs, err); len(dialErrs) > 50 {
				break
			}
			continue
		}
		conns = append(conns, c)
	}
	require.GreaterOrEqual(t, len(conns), 300, "dialling failed: %v", errors.Join(dialErrs...))
	assert.LessOrEqual(t, runtime.NumGoroutine()-base, 32+8, "goroutines grow with stalled handshakes")
	_, err := pidFn.Call(context.Background(), p, struct{}{})
	assert.NoError(t, err, "the pool serves during the flood")
	deadline := time.Now().Add(hs + 3*time.Second)
	for _, c := range conns {
		_ = c.SetReadDeadline(deadline)
		_, err := c.Read(make([]byte, 1))
		var ne net.Error
		if errors.As(err, &ne) && ne.Timeout() {
			require.Fail(t, "a stalled connection was kept past the handshake deadline")
		}
	}
}

// A launch token is good once: a second runner started with an
// environment already used is refused, and the pool's own runner is
// untouched.
func TestRemoteTokenIsSingleUse(t *testing.T) {
	rec := &recLauncher{inner: flame.CommandLauncher{Env: []string{raceQuickExit()}}}
	p, _ := remotePool(t, flame.Config{Min: 1, Max: 1}, &flame.RemoteBackend{Launcher: rec})
	launches := rec.launched()
	require.Len(t, launches, 1)
	code, stderr := runRunner(t, launches[0].Env)
	assert.Equal(t, 2, code, "a replayed token was accepted")
	assert.Contains(t, stderr, "refused the token")
	_, err := pidFn.Call(context.Background(), p, struct{}{})
	assert.NoError(t, err)
	assert.Equal(t, uint64(1), p.Stats().Booted)
}

// firstOnly launches the runner with ID 1 for real and no other: their
// runners never come.
type firstOnly struct{ real flame.Launcher }

func (l firstOnly) Launch(ctx context.Context, spec flame.LaunchSpec) (flame.Instance, error) {
	if spec.Runner == 1 {
		return l.real.Launch(ctx, spec)
	}
	return noLauncher{}.Launch(ctx, spec)
}

// A launch token expires with its boot: a runner that comes after the boot
// gave up on it is refused, though the listener is the same.
func TestRemoteTokenExpiresWithItsBoot(t *testing.T) {
	slowInShort(t)
	rec := &recLauncher{inner: firstOnly{flame.CommandLauncher{Env: []string{raceQuickExit()}}}}
	be := &flame.RemoteBackend{Launcher: rec}
	p, _ := remotePool(t, flame.Config{Min: 1, Max: 2, MaxConcurrency: 1, BootTimeout: 500 * time.Millisecond}, be)
	addr := be.ListenAddr()
	// Runner 1 is busy, so a call boots runner 2, which never comes.
	child, err := blockFn.Place(context.Background(), p, blockIn{For: time.Hour})
	require.NoError(t, err)
	defer child.Stop()
	_, err = pidFn.Call(context.Background(), p, struct{}{}, flame.WithTimeout(800*time.Millisecond))
	require.ErrorIs(t, err, flame.ErrCheckoutTimeout)
	require.GreaterOrEqual(t, len(rec.launched()), 2)
	require.Equal(t, addr, be.ListenAddr(), "the listener is the same one")
	code, stderr := runRunner(t, rec.launched()[1].Env) // runner 2's launch, after its boot failed
	assert.Equal(t, 2, code, "an expired token was accepted")
	assert.Contains(t, stderr, "refused the token")
}

// noLauncher launches nothing: a runner that never comes.
type noLauncher struct{}

func (noLauncher) Launch(context.Context, flame.LaunchSpec) (flame.Instance, error) {
	return &neverInstance{gone: make(chan struct{})}, nil
}

type neverInstance struct {
	once sync.Once
	gone chan struct{}
}

func (i *neverInstance) Gone() <-chan struct{} { return i.gone }
func (i *neverInstance) Err() error            { return errors.New("removed") }
func (i *neverInstance) Remove(context.Context) error {
	i.once.Do(func() { close(i.gone) })
	return nil
}

// unstartable launches instances that the platform reports gone at once,
// because they cannot start (an unschedulable pod, say).
type unstartable struct {
	reason    error
	removed   chan struct{}
	removeErr error // what Remove returns
}

func (l *unstartable) Launch(context.Context, flame.LaunchSpec) (flame.Instance, error) {
	in := &neverInstance{gone: make(chan struct{})}
	in.once.Do(func() { close(in.gone) })
	return &unstartableInstance{neverInstance: in, l: l}, nil
}

type unstartableInstance struct {
	*neverInstance
	l *unstartable
}

func (i *unstartableInstance) Err() error { return i.l.reason }
func (i *unstartableInstance) Remove(context.Context) error {
	close(i.l.removed)
	return i.l.removeErr
}

// A platform that says a runner cannot start fails its boot at once, with
// the platform's reason and no hint about flame.Main (the program never
// ran), and the instance is removed.
func TestRemoteBootFailsWithThePlatformsReason(t *testing.T) {
	reason := fmt.Errorf("%w: pod p-1: Unschedulable: 0/1 nodes are available", flame.ErrBootFailed)
	l := &unstartable{reason: reason, removed: make(chan struct{})}
	p, _ := remotePool(t, flame.Config{Max: 1, BootTimeout: time.Hour}, &flame.RemoteBackend{Launcher: l})
	_, err := pidFn.Call(context.Background(), p, struct{}{})
	require.ErrorIs(t, err, flame.ErrBootFailed)
	require.ErrorIs(t, err, reason)
	assert.ErrorContains(t, err, "could not start")
	assert.NotContains(t, err.Error(), "flame.Main")
	<-l.removed
}

// A remote runner that registers other functions than its parent is
// version skew, refused at the handshake: retrying cannot help, and no
// runner process stays behind.
func TestRemoteVersionSkewFailsBoot(t *testing.T) {
	be := &flame.RemoteBackend{Launcher: flame.CommandLauncher{Env: []string{"GOFLAME_TEST_EXTRA=1", raceQuickExit()}}}
	_, err := flame.NewPool(flame.Config{Min: 1, Max: 1, BootTimeout: 20 * time.Second, Backend: be})
	require.ErrorIs(t, err, flame.ErrVersionSkew)
	require.ErrorIs(t, err, flame.ErrBootFailed)
	require.ErrorContains(t, err, "must register the same functions")
	waitNoChildren(t, 5*time.Second)
}

// An instance whose removal fails after a failed boot is logged: it may
// still be running somewhere, and the user must hear of it.
func TestRemoteFailedBootsFailedRemoveIsLogged(t *testing.T) {
	reason := fmt.Errorf("%w: pod p-1: ImagePullBackOff", flame.ErrBootFailed)
	l := &unstartable{reason: reason, removed: make(chan struct{}), removeErr: errors.New("api server unreachable")}
	p, logs := remotePool(t, flame.Config{Max: 1, BootTimeout: time.Hour}, &flame.RemoteBackend{Launcher: l})
	_, err := pidFn.Call(context.Background(), p, struct{}{})
	require.ErrorIs(t, err, reason)
	<-l.removed
	assert.Eventually(t, func() bool {
		return slices.ContainsFunc(logs.lines(), func(s string) bool {
			return strings.Contains(s, "removing a runner whose boot failed") && strings.Contains(s, "api server unreachable")
		})
	}, 5*time.Second, 5*time.Millisecond, "logs: %v", logs.lines())
}

// failingRemove is a launcher whose instances' Remove removes them and
// then reports failure, as a platform API that errs after the fact.
type failingRemove struct{ inner flame.Launcher }

func (l failingRemove) Launch(ctx context.Context, spec flame.LaunchSpec) (flame.Instance, error) {
	in, err := l.inner.Launch(ctx, spec)
	if err != nil {
		return nil, err
	}
	return failingRemoveInstance{in}, nil
}

type failingRemoveInstance struct{ flame.Instance }

func (i failingRemoveInstance) Remove(ctx context.Context) error {
	if err := i.Instance.Remove(ctx); err != nil {
		return err
	}
	return errors.New("api server unreachable")
}

// A runner shut down cleanly whose instance could not be removed says so:
// Shutdown returns the launcher's error.
func TestRemoteShutdownReportsAFailedRemove(t *testing.T) {
	be := &flame.RemoteBackend{Launcher: failingRemove{flame.CommandLauncher{Env: []string{raceQuickExit()}}}, Logger: slog.New(slog.DiscardHandler)}
	node, err := be.Boot(context.Background(), flame.RunnerSpec{Pool: "p", ID: 1})
	require.NoError(t, err)
	err = node.Shutdown(context.Background())
	assert.ErrorContains(t, err, "removing its instance: api server unreachable")
	waitNoChildren(t, 5*time.Second)
}

// A runner facing a parent with another certificate refuses to talk: it
// exits, saying so, and the boot fails.
func TestRemoteRunnerRefusesAParentWithAnotherCertificate(t *testing.T) {
	rec := &recLauncher{inner: flame.CommandLauncher{Env: []string{raceQuickExit()}}, edit: func(env []string) []string {
		out := make([]string, len(env))
		for i, kv := range env {
			if v, ok := strings.CutPrefix(kv, "FLAME_PARENT="); ok {
				b, _ := base64.RawURLEncoding.DecodeString(v)
				var m map[string]any
				_ = json.Unmarshal(b, &m)
				m["fp"] = strings.Repeat("ab", 32) // another parent's fingerprint
				b, _ = json.Marshal(m)
				kv = "FLAME_PARENT=" + base64.RawURLEncoding.EncodeToString(b)
			}
			out[i] = kv
		}
		return out
	}}
	p, logs := remotePool(t, flame.Config{Max: 1}, &flame.RemoteBackend{Launcher: rec})
	_, err := pidFn.Call(context.Background(), p, struct{}{})
	require.ErrorIs(t, err, flame.ErrBootFailed)
	assert.ErrorContains(t, err, "exited before its handshake")
	assert.Eventually(t, func() bool { return strings.Contains(strings.Join(logs.lines(), "\n"), "not the one pinned") }, 5*time.Second, 10*time.Millisecond,
		"the runner says why on stderr")
}

// A runner that cannot reach its parent within its boot window exits with
// a clear message.
func TestRemoteRunnerThatCannotReachItsParentExits(t *testing.T) {
	ln, err := net.Listen("tcp", "127.0.0.1:0")
	require.NoError(t, err)
	addr := ln.Addr().String()
	ln.Close() // nobody listens there now
	info := map[string]any{"v": 1, "pool": "p", "runner": 1, "conn": "tls:" + addr, "build": "x", "registry": "y",
		"max_msg": 1024, "keepalive_ms": 100, "fp": strings.Repeat("ab", 32), "token": base64.RawURLEncoding.EncodeToString(make([]byte, 32)), "dial_ms": 300}
	b, _ := json.Marshal(info)
	start := time.Now()
	code, stderr := runRunner(t, []string{"FLAME_PARENT=" + base64.RawURLEncoding.EncodeToString(b)})
	assert.Equal(t, 2, code)
	assert.Contains(t, stderr, fmt.Sprintf("cannot reach its parent at %s within 300ms", addr))
	assert.Less(t, time.Since(start), 10*time.Second)
}

// SIGKILL of a remote runner mid-call: the caller gets ErrRunnerDown with
// the platform's reason, the instance is removed, and the pool recovers.
func TestRemoteRunnerKilledMidCall(t *testing.T) {
	p, _ := remotePool(t, flame.Config{Min: 1, Max: 1}, &flame.RemoteBackend{})
	pid, errc := blockInBackground(t, p)
	killed := time.Now()
	require.NoError(t, syscall.Kill(pid, syscall.SIGKILL))
	err := <-errc
	assert.Less(t, time.Since(killed), 2*time.Second)
	require.ErrorIs(t, err, flame.ErrRunnerDown)
	assert.ErrorContains(t, err, "killed")
	newPID, err := pidFn.Call(context.Background(), p, struct{}{})
	require.NoError(t, err)
	assert.NotEqual(t, pid, newPID)
}

// decodeParent decodes the FLAME_PARENT of a launch's environment.
func decodeParent(t *testing.T, env []string) map[string]any {
	t.Helper()
	for _, kv := range env {
		if v, ok := strings.CutPrefix(kv, "FLAME_PARENT="); ok {
			b, err := base64.RawURLEncoding.DecodeString(v)
			require.NoError(t, err)
			var info map[string]any
			require.NoError(t, json.Unmarshal(b, &info))
			return info
		}
	}
	require.FailNow(t, "no FLAME_PARENT in the launch's environment")
	return nil
}
