package flame

import (
	"bufio"
	"crypto/sha256"
	"log/slog"
	"sync"
	"testing"
	"time"

	"github.com/stretchr/testify/assert"
	"github.com/stretchr/testify/require"

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
