package flame

import (
	"bufio"
	"context"
	"crypto/sha256"
	"errors"
	"log/slog"
	"net"
	"strings"
	"sync"
	"testing"
	"testing/synctest"
	"time"

	"github.com/stretchr/testify/assert"
	"github.com/stretchr/testify/require"

	"github.com/goflame/goflame/flame/internal/tcplink"
	"github.com/goflame/goflame/flame/internal/wire"
)

func testListener(t *testing.T) *listener {
	t.Helper()
	l, err := listen(&RemoteBackend{Launcher: CommandLauncher{}, HandshakeTimeout: 2 * time.Second}, slog.New(slog.DiscardHandler))
	require.NoError(t, err)
	t.Cleanup(l.close)
	return l
}

// authAs dials l as a runner with token and reports whether l accepted it
// (sent AUTHOK).
func authAs(t *testing.T, l *listener, runner uint64, token [wire.SecretLen]byte) bool {
	t.Helper()
	c, err := dialTLS(l.addr, pinnedTLS(l.fingerprint[:]), time.Now().Add(5*time.Second))
	if !assert.NoError(t, err) {
		return false
	}
	defer c.Close()
	_ = c.SetDeadline(time.Now().Add(5 * time.Second))
	_, err = authenticate(c, bufio.NewReader(c), runner, token)
	return err == nil
}

// The parent accepts exactly one control connection per launch token, even
// when several present it at once during the boot.
func TestListenerAcceptsOneConnectionPerToken(t *testing.T) {
	l := testListener(t)
	token, authed, done, err := l.expect(7)
	require.NoError(t, err)
	defer done()
	var wg sync.WaitGroup
	var mu sync.Mutex
	accepted := 0
	for range 8 {
		wg.Go(func() {
			if authAs(t, l, 7, token) {
				mu.Lock()
				accepted++
				mu.Unlock()
			}
		})
	}
	wg.Wait()
	assert.Equal(t, 1, accepted)
	select {
	case tr := <-authed:
		tr.Close()
	default:
		t.Fatal("the boot did not get its runner's connection")
	}
}

// A token is bound to its runner ID, and dies with its boot.
func TestListenerTokenIsBoundToItsRunnerAndBoot(t *testing.T) {
	l := testListener(t)
	token, _, done, err := l.expect(7)
	require.NoError(t, err)
	assert.False(t, authAs(t, l, 8, token), "another runner's token was accepted")
	done()
	assert.False(t, authAs(t, l, 7, token), "a token outlived its boot")
}

// Runners pin the parent's certificate: its fingerprint is the SHA-256 of
// the certificate the listener serves, and another is refused.
func TestRunnerPinsTheParentsCertificate(t *testing.T) {
	l := testListener(t)
	c, err := dialTLS(l.addr, pinnedTLS(l.fingerprint[:]), time.Now().Add(5*time.Second))
	require.NoError(t, err)
	assert.Equal(t, l.fingerprint, sha256.Sum256(c.ConnectionState().PeerCertificates[0].Raw))
	c.Close()
	other := sha256.Sum256([]byte("another parent"))
	_, err = dialTLS(l.addr, pinnedTLS(other[:]), time.Now().Add(5*time.Second))
	assert.ErrorIs(t, err, errNotPinned)
}

// A RemoteBackend's zero fields mean the documented defaults, and set
// ones are taken as they are.
func TestRemoteBackendDefaultsAreTheDocumentedOnes(t *testing.T) {
	var zero RemoteBackend
	assert.Equal(t, 16<<20, zero.maxMessage())
	assert.Equal(t, 2*time.Second, zero.keepAlive())
	assert.Equal(t, 5*time.Second, zero.handshakeTimeout())
	assert.Equal(t, 64, zero.maxHandshakes())
	set := RemoteBackend{MaxMessageSize: 1, KeepAlive: 1, HandshakeTimeout: 1, MaxHandshakes: 1}
	assert.Equal(t, 1, set.maxMessage())
	assert.Equal(t, time.Duration(1), set.keepAlive())
	assert.Equal(t, time.Duration(1), set.handshakeTimeout())
	assert.Equal(t, 1, set.maxHandshakes())
}

// Advertise takes host:port or a host alone (a name, an IPv4 or an IPv6
// address); zero settings are valid and mean the defaults.
func TestRemoteBackendValidatesWhatItIsTold(t *testing.T) {
	launcher := CommandLauncher{}
	for adv, ok := range map[string]bool{
		"":                 true,
		"10.0.0.1:9000":    true,
		"[::1]:9000":       true,
		"parent.example":   true,
		"127.0.0.1":        true,
		"::1":              true,
		"fd00::2":          true,
		":9000":            false,
		"parent.example:0": false,
		"a:b:c":            false,
		"[::1":             false,
	} {
		err := (&RemoteBackend{Launcher: launcher, Advertise: adv}).validate()
		if ok {
			assert.NoError(t, err, "Advertise %q", adv)
		} else {
			assert.ErrorIs(t, err, ErrInvalidConfig, "Advertise %q", adv)
			assert.ErrorContains(t, err, "RemoteBackend.Advertise", "Advertise %q", adv)
		}
	}
	assert.NoError(t, (&RemoteBackend{Launcher: launcher, Listen: "127.0.0.1:0"}).validate())
	assert.ErrorContains(t, (&RemoteBackend{Launcher: launcher, Listen: "127.0.0.1:port"}).validate(), "bad port")
}

// The backends log to their Logger, else to the booting pool's, else to
// slog's default.
func TestBackendsLogWhereThePoolDoes(t *testing.T) {
	own, pools := slog.New(slog.DiscardHandler), slog.New(slog.DiscardHandler)
	ctx := context.WithValue(context.Background(), poolLoggerKey{}, pools)
	assert.Same(t, own, (&RemoteBackend{Logger: own}).logger(ctx))
	assert.Same(t, pools, (&RemoteBackend{}).logger(ctx))
	assert.Same(t, slog.Default(), (&RemoteBackend{}).logger(context.Background()))
	assert.Same(t, own, ProcessBackend{Logger: own}.logger(ctx))
	assert.Same(t, pools, ProcessBackend{}.logger(ctx))
	assert.Same(t, slog.Default(), ProcessBackend{}.logger(context.Background()))
}

// A ProcessBackend's zero fields mean the documented defaults.
func TestProcessBackendDefaultsAreTheDocumentedOnes(t *testing.T) {
	assert.Equal(t, 16<<20, ProcessBackend{}.maxMessage())
	assert.Equal(t, 2*time.Second, ProcessBackend{}.keepAlive())
	assert.Equal(t, 1, ProcessBackend{MaxMessageSize: 1}.maxMessage())
	assert.Equal(t, time.Duration(1), ProcessBackend{KeepAlive: 1}.keepAlive())
}

// failingListener fails its first Accept (as when the process is out of
// descriptors), then reports itself closed, noting when each call came.
type failingListener struct {
	net.Listener
	calls []time.Time
}

func (f *failingListener) Accept() (net.Conn, error) {
	f.calls = append(f.calls, time.Now())
	if len(f.calls) == 1 {
		return nil, errors.New("accept: too many open files")
	}
	return nil, net.ErrClosed
}

// A failed Accept is retried after a pause, not at once: a listener out of
// descriptors must not spin a core.
func TestAcceptPausesAfterAFailedAccept(t *testing.T) {
	synctest.Test(t, func(t *testing.T) {
		f := &failingListener{}
		(&listener{ln: f}).accept()
		require.Len(t, f.calls, 2)
		assert.Equal(t, 10*time.Millisecond, f.calls[1].Sub(f.calls[0]))
	})
}

// idleListener is a net.Listener that only says where it listens.
type idleListener struct{ net.Listener }

func (idleListener) Addr() net.Addr { return &net.TCPAddr{IP: net.IPv4(127, 0, 0, 1), Port: 9} }
func (idleListener) Close() error   { return nil }

// logLines returns the lines logged so far.
func logLines(b *syncBuffer) []string {
	return strings.Split(strings.TrimSpace(b.String()), "\n")
}

// Refused connections are logged at most once a second: the first at
// once, those that follow within the second in one line a second after
// the last, with their count and the latest reason; what is left when the
// listener closes is logged then, and nothing when nothing was refused.
func TestRefusalsAreLoggedAtMostOnceASecond(t *testing.T) {
	synctest.Test(t, func(t *testing.T) {
		var logs syncBuffer
		l := &listener{ln: idleListener{}, log: newTextLogger(&logs)}
		c, peer := net.Pipe()
		defer c.Close()
		defer peer.Close()

		l.refuse(c, "garbage")
		require.Len(t, logLines(&logs), 1)
		assert.Contains(t, logs.String(), "count=1")
		assert.Contains(t, logs.String(), `latest="garbage (from pipe)"`)

		time.Sleep(300 * time.Millisecond)
		l.refuse(c, "HTTP")
		l.refuse(c, "bad token")
		time.Sleep(700*time.Millisecond - time.Nanosecond)
		synctest.Wait()
		require.Len(t, logLines(&logs), 1, "a second line within the second")
		time.Sleep(time.Nanosecond)
		synctest.Wait()
		lines := logLines(&logs)
		require.Len(t, lines, 2)
		assert.Contains(t, lines[1], "count=2")
		assert.Contains(t, lines[1], `latest="bad token (from pipe)"`)

		time.Sleep(time.Second) // quiet for a second: the next is logged at once
		l.refuse(c, "wrong certificate")
		require.Len(t, logLines(&logs), 3)
		assert.Contains(t, logLines(&logs)[2], "count=1")

		l.refuse(c, "slow")
		l.close()
		lines = logLines(&logs)
		require.Len(t, lines, 4, "what is left is logged at close")
		assert.Contains(t, lines[3], `latest="slow (from pipe)"`)
		time.Sleep(2 * time.Second)
		synctest.Wait()
		assert.Len(t, logLines(&logs), 4, "a report after close")

		var quiet syncBuffer
		(&listener{ln: idleListener{}, log: newTextLogger(&quiet)}).close()
		assert.Empty(t, quiet.String(), "nothing refused, nothing logged")
	})
}

// forget drops a runner's record only if it is still that connection's:
// a runner ID whose record a newer connection took keeps it.
func TestForgetDropsOnlyThatConnectionsRunner(t *testing.T) {
	old, cur := new(tcplink.Parent), new(tcplink.Parent)
	l := &listener{runners: map[uint64]*dialedRunner{7: {tr: cur}}}
	l.forget(7, old)
	assert.Contains(t, l.runners, uint64(7))
	l.forget(8, cur)
	assert.Contains(t, l.runners, uint64(7))
	l.forget(7, cur)
	assert.NotContains(t, l.runners, uint64(7))
}
