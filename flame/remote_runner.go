package flame

import (
	"bufio"
	"crypto/sha256"
	"crypto/subtle"
	"crypto/tls"
	"encoding/base64"
	"encoding/hex"
	"errors"
	"fmt"
	"net"
	"os"
	"strings"
	"time"

	"github.com/goflame/goflame/flame/internal/tcplink"
	"github.com/goflame/goflame/flame/internal/wire"
)

// laneDialTimeout bounds dialling one lane back to the parent.
const laneDialTimeout = 10 * time.Second

// serveRemote serves as the runner of a RemoteBackend: it dials the
// parent, checks it by its pinned certificate, authenticates with the
// launch token, and serves; each lane the parent announces it dials back.
func serveRemote(info parentInfo) int {
	addr := strings.TrimPrefix(info.Conn, connTLS)
	window := time.Duration(info.DialMS) * time.Millisecond
	t, err := dialParent(info, time.Now().Add(window))
	if err != nil {
		fmt.Fprintf(os.Stderr, "flame: runner %d: cannot reach its parent at %s within %v: %v\n", info.Runner, addr, window, err)
		return exitSetup
	}
	return serveSession(t, info)
}

// dialParent makes the runner's authenticated control connection, trying
// until deadline (the parent listens before it launches the runner, but
// the network may come up late).
func dialParent(info parentInfo, deadline time.Time) (*tcplink.Runner, error) {
	addr := strings.TrimPrefix(info.Conn, connTLS)
	fp, _ := hex.DecodeString(info.Fingerprint)
	tok, _ := base64.RawURLEncoding.DecodeString(info.Token)
	var token [wire.SecretLen]byte
	copy(token[:], tok)
	cfg := pinnedTLS(fp)
	var lastErr error
	for wait := 50 * time.Millisecond; time.Now().Before(deadline); wait = min(2*wait, time.Second) {
		c, err := dialTLS(addr, cfg, deadline)
		if err != nil {
			lastErr = err
			if errors.Is(err, errNotPinned) {
				return nil, err // another parent: retrying cannot help
			}
			time.Sleep(min(wait, time.Until(deadline)))
			continue
		}
		_ = c.SetDeadline(deadline)
		r := bufio.NewReader(c)
		secret, err := authenticate(c, r, info.Runner, token)
		if err != nil {
			c.Close()
			return nil, err // a token is good once: no retry
		}
		_ = c.SetDeadline(time.Time{})
		dial := func(lane uint64) (net.Conn, error) {
			return dialLane(addr, cfg, info.Runner, lane, secret)
		}
		return tcplink.NewRunner(tcplink.NewConn(c, r), dial), nil
	}
	if lastErr == nil {
		lastErr = errors.New("no time left to dial")
	}
	return nil, lastErr
}

// dialLane dials lane back to the parent at addr, trying again for a
// while when the connection fails (a parent under a flood of stalled
// connections evicts the oldest handshakes).
func dialLane(addr string, cfg *tls.Config, runner, lane uint64, secret [wire.SecretLen]byte) (net.Conn, error) {
	deadline := time.Now().Add(laneDialTimeout)
	for wait := 5 * time.Millisecond; ; wait = min(2*wait, 200*time.Millisecond) {
		lc, err := dialTLS(addr, cfg, deadline)
		if err == nil {
			if _, err = lc.Write(wire.AppendLaneAuth(nil, runner, lane, secret)); err == nil {
				return lc, nil
			}
			lc.Close()
		}
		if errors.Is(err, errNotPinned) || time.Until(deadline) < wait {
			return nil, err
		}
		time.Sleep(wait)
	}
}

// errNotPinned: the peer's certificate is not the one the runner pins.
var errNotPinned = errors.New("the parent's certificate is not the one pinned in FLAME_PARENT")

// pinnedTLS is the runner's TLS configuration: TLS 1.3 only, and the
// parent is accepted by its certificate's SHA-256 fingerprint alone (no
// CA, no host name).
func pinnedTLS(fp []byte) *tls.Config {
	return &tls.Config{
		MinVersion:         tls.VersionTLS13,
		InsecureSkipVerify: true, // replaced by the pin below
		VerifyConnection: func(cs tls.ConnectionState) error {
			if len(cs.PeerCertificates) == 0 {
				return errNotPinned
			}
			sum := sha256.Sum256(cs.PeerCertificates[0].Raw)
			if subtle.ConstantTimeCompare(sum[:], fp) != 1 {
				return errNotPinned
			}
			return nil
		},
	}
}

// dialTLS dials addr and completes the TLS handshake by deadline.
func dialTLS(addr string, cfg *tls.Config, deadline time.Time) (*tls.Conn, error) {
	d := &net.Dialer{Deadline: deadline}
	c, err := tls.DialWithDialer(d, "tcp", addr, cfg)
	if err != nil {
		var ve *tls.CertificateVerificationError
		if errors.As(err, &ve) || errors.Is(err, errNotPinned) {
			return nil, fmt.Errorf("%w (%v)", errNotPinned, err)
		}
		return nil, err
	}
	return c, nil
}

// authenticate sends the launch token and reads the lane secret.
func authenticate(c net.Conn, r *bufio.Reader, runner uint64, token [wire.SecretLen]byte) ([wire.SecretLen]byte, error) {
	var secret [wire.SecretLen]byte
	if _, err := c.Write(wire.AppendAuth(nil, runner, token)); err != nil {
		return secret, fmt.Errorf("authenticating: %w", err)
	}
	t, p, err := wire.ReadFrame(r, wire.AuthMaxPayload)
	if err != nil {
		return secret, fmt.Errorf("authenticating: the parent refused the token (spent, expired or not this runner's): %w", err)
	}
	if t != wire.AuthOK {
		return secret, fmt.Errorf("authenticating: %s instead of AUTHOK", t)
	}
	return wire.DecodeAuthOK(p)
}
