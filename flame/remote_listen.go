package flame

import (
	"bufio"
	"container/list"
	"crypto/ecdsa"
	"crypto/elliptic"
	"crypto/rand"
	"crypto/sha256"
	"crypto/subtle"
	"crypto/tls"
	"crypto/x509"
	"crypto/x509/pkix"
	"errors"
	"fmt"
	"log/slog"
	"math/big"
	"net"
	"sync"
	"time"

	"github.com/goflame/goflame/flame/internal/tcplink"
	"github.com/goflame/goflame/flame/internal/wire"
)

// listener is where a RemoteBackend's runners dial in: a TCP listener with
// an ephemeral TLS identity, the launch tokens of the boots under way, and
// the runners whose lanes it routes.
//
// Ownership: ln, tlsConfig, fingerprint, addr and the limits are set by
// listen and read-only after; boots, runners, conns and closed are guarded
// by mu; refused by logMu.
type listener struct {
	ln          net.Listener
	tlsConfig   *tls.Config
	fingerprint [sha256.Size]byte // of the certificate runners pin
	addr        string            // what runners dial
	handshake   time.Duration
	sem         chan struct{} // one token per connection in its handshake
	log         *slog.Logger
	wg          sync.WaitGroup // the accept loop and every handshake

	mu      sync.Mutex
	boots   map[uint64]*awaitedRunner  // boots under way, by runner ID
	runners map[uint64]*dialedRunner   // authenticated runners, for their lanes
	conns   map[net.Conn]*list.Element // connections in their handshake, in pending (oldest first)
	pending list.List
	closed  bool

	logMu      sync.Mutex
	refused    int         // connections refused since the last report
	lastReason string      // the latest refusal's reason and peer
	lastLogged time.Time   // when refusals were last reported
	reportAt   *time.Timer // a report is scheduled
}

// awaitedRunner is a boot waiting for its runner to dial in.
type awaitedRunner struct {
	token [wire.SecretLen]byte
	conn  chan *tcplink.Parent // the runner's transport, once it authenticated
	used  bool                 // its token was spent
}

// dialedRunner is an authenticated runner: its lanes come with secret.
type dialedRunner struct {
	secret [wire.SecretLen]byte
	tr     *tcplink.Parent
}

// listen opens the listener with a fresh TLS identity and starts
// accepting.
func listen(b *RemoteBackend, log *slog.Logger) (*listener, error) {
	cert, fp, err := selfSignedCert()
	if err != nil {
		return nil, fmt.Errorf("flame: RemoteBackend: TLS identity: %w", err)
	}
	addr := b.Listen
	if addr == "" {
		addr = defaultRemoteListen
	}
	ln, err := net.Listen("tcp", addr)
	if err != nil {
		return nil, fmt.Errorf("flame: RemoteBackend.Listen %q: %w", addr, err)
	}
	adv := b.Advertise
	if adv != "" {
		if _, _, err := net.SplitHostPort(adv); err != nil { // a host alone: the listener's port
			_, port, _ := net.SplitHostPort(ln.Addr().String())
			adv = net.JoinHostPort(adv, port)
		}
	}
	if adv == "" {
		adv = ln.Addr().String()
		if host, _, _ := net.SplitHostPort(adv); net.ParseIP(host).IsUnspecified() {
			ln.Close()
			return nil, fmt.Errorf("%w: RemoteBackend.Advertise is required when Listen (%q) names no host: runners must be told where to dial", ErrInvalidConfig, addr)
		}
	}
	l := &listener{
		ln:          ln,
		tlsConfig:   &tls.Config{Certificates: []tls.Certificate{cert}, MinVersion: tls.VersionTLS13},
		fingerprint: fp,
		addr:        adv,
		handshake:   b.handshakeTimeout(),
		sem:         make(chan struct{}, b.maxHandshakes()),
		log:         log,
		boots:       make(map[uint64]*awaitedRunner),
		runners:     make(map[uint64]*dialedRunner),
		conns:       make(map[net.Conn]*list.Element),
	}
	l.wg.Go(l.accept)
	return l, nil
}

// selfSignedCert makes an ephemeral ECDSA key and a self-signed
// certificate, and returns its SHA-256 fingerprint.
func selfSignedCert() (tls.Certificate, [sha256.Size]byte, error) {
	key, err := ecdsa.GenerateKey(elliptic.P256(), rand.Reader)
	if err != nil {
		return tls.Certificate{}, [32]byte{}, err
	}
	serial, err := rand.Int(rand.Reader, new(big.Int).Lsh(big.NewInt(1), 128))
	if err != nil {
		return tls.Certificate{}, [32]byte{}, err
	}
	now := time.Now()
	tmpl := &x509.Certificate{
		SerialNumber: serial,
		Subject:      pkix.Name{CommonName: "goflame parent"},
		NotBefore:    now.Add(-time.Hour),
		NotAfter:     now.Add(10 * 365 * 24 * time.Hour), // pinned, not trusted by date: its life is the listener's
		KeyUsage:     x509.KeyUsageDigitalSignature,
		ExtKeyUsage:  []x509.ExtKeyUsage{x509.ExtKeyUsageServerAuth},
	}
	der, err := x509.CreateCertificate(rand.Reader, tmpl, tmpl, &key.PublicKey, key)
	if err != nil {
		return tls.Certificate{}, [32]byte{}, err
	}
	return tls.Certificate{Certificate: [][]byte{der}, PrivateKey: key}, sha256.Sum256(der), nil
}

// accept takes connections until the listener closes. With MaxHandshakes
// connections in their handshake, a new one evicts the oldest: a runner's
// handshake takes a round trip or two, so what has sat longest is what
// stalls on purpose, and a flood of connections that never finish their
// handshake cannot keep a runner from dialling its lanes.
func (l *listener) accept() {
	for {
		c, err := l.ln.Accept()
		if err != nil {
			if errors.Is(err, net.ErrClosed) {
				return
			}
			time.Sleep(10 * time.Millisecond) // out of descriptors, say: do not spin
			continue
		}
		select {
		case l.sem <- struct{}{}:
		default:
			l.evictOldest()
			l.sem <- struct{}{} // the evicted handshake gives its place up at once
		}
		l.mu.Lock()
		if l.closed {
			l.mu.Unlock()
			<-l.sem
			c.Close()
			return
		}
		l.conns[c] = l.pending.PushBack(c)
		l.mu.Unlock()
		l.wg.Go(func() { l.handle(c) })
	}
}

// evictOldest closes the connection that has been in its handshake
// longest.
func (l *listener) evictOldest() {
	l.mu.Lock()
	e := l.pending.Front()
	var c net.Conn
	if e != nil {
		c = e.Value.(net.Conn)
		l.pending.Remove(e)
		delete(l.conns, c)
	}
	l.mu.Unlock()
	if c != nil {
		c.Close()
		l.refuse(c, "evicted: too many connections in their handshake")
	}
}

// handle runs a connection's handshake: TLS, then AUTH (a runner's control
// connection) or LANEAUTH (one of its lanes), within the handshake
// timeout. Anything else is refused.
func (l *listener) handle(c net.Conn) {
	keep := false
	defer func() {
		l.mu.Lock()
		if e := l.conns[c]; e != nil {
			l.pending.Remove(e)
			delete(l.conns, c)
		}
		l.mu.Unlock()
		<-l.sem
		if !keep {
			c.Close()
		}
	}()
	_ = c.SetDeadline(time.Now().Add(l.handshake))
	tc := tls.Server(c, l.tlsConfig)
	if err := tc.Handshake(); err != nil {
		l.refuse(c, "TLS handshake: "+err.Error())
		return
	}
	r := bufio.NewReaderSize(tc, 512)
	t, p, err := wire.ReadFrame(r, wire.AuthMaxPayload)
	if err != nil {
		l.refuse(c, "no authentication: "+err.Error())
		return
	}
	switch t {
	case wire.Auth:
		keep = l.authRunner(c, tc, r, p)
	case wire.LaneAuth:
		keep = l.authLane(c, &bufConn{Conn: tc, r: r}, p)
	default:
		l.refuse(c, fmt.Sprintf("%s frame instead of AUTH", t))
	}
}

// authRunner checks a runner's launch token and, if it is the token of a
// boot under way, unspent, hands the connection to that boot.
func (l *listener) authRunner(c net.Conn, tc *tls.Conn, r *bufio.Reader, p []byte) bool {
	id, token, err := wire.DecodeAuth(p)
	if err != nil {
		l.refuse(c, err.Error())
		return false
	}
	l.mu.Lock()
	aw := l.boots[id]
	ok := aw != nil && !aw.used && subtle.ConstantTimeCompare(aw.token[:], token[:]) == 1
	if ok {
		aw.used = true // single use, even if what follows fails
	}
	l.mu.Unlock()
	if !ok {
		l.refuse(c, fmt.Sprintf("runner %d: unknown, spent or expired token", id))
		return false
	}
	var secret [wire.SecretLen]byte
	if _, err := rand.Read(secret[:]); err != nil {
		return false
	}
	if _, err := tc.Write(wire.AppendAuthOK(nil, secret)); err != nil {
		return false
	}
	_ = c.SetDeadline(time.Time{})
	tr := tcplink.NewParent(tcplink.NewConn(tc, r), l.handshake)
	l.mu.Lock()
	if l.closed {
		l.mu.Unlock()
		return false
	}
	l.runners[id] = &dialedRunner{secret: secret, tr: tr}
	l.mu.Unlock()
	select {
	case aw.conn <- tr:
		return true
	default: // the boot gave up meanwhile
		l.forget(id, tr)
		return false
	}
}

// authLane checks a lane's secret and hands it to the call waiting for it.
func (l *listener) authLane(c net.Conn, lane net.Conn, p []byte) bool {
	id, laneID, secret, err := wire.DecodeLaneAuth(p)
	if err != nil {
		l.refuse(c, err.Error())
		return false
	}
	l.mu.Lock()
	dr := l.runners[id]
	l.mu.Unlock()
	if dr == nil || subtle.ConstantTimeCompare(dr.secret[:], secret[:]) != 1 {
		l.refuse(c, fmt.Sprintf("lane %d of runner %d: bad secret", laneID, id))
		return false
	}
	_ = c.SetDeadline(time.Time{})
	if !dr.tr.Deliver(laneID, lane) {
		l.refuse(c, fmt.Sprintf("lane %d of runner %d: not asked for", laneID, id))
		return false
	}
	return true
}

// bufConn is a connection whose first bytes a reader already holds.
type bufConn struct {
	net.Conn
	r *bufio.Reader
}

func (c *bufConn) Read(b []byte) (int, error) { return c.r.Read(b) }

// expect registers a boot's token; the runner's authenticated control
// connection arrives on the returned channel. done unregisters it: the
// token expires with the boot.
func (l *listener) expect(id uint64) (token [wire.SecretLen]byte, conn <-chan *tcplink.Parent, done func(), err error) {
	if _, err := rand.Read(token[:]); err != nil {
		return token, nil, nil, err
	}
	aw := &awaitedRunner{token: token, conn: make(chan *tcplink.Parent, 1)}
	l.mu.Lock()
	l.boots[id] = aw
	l.mu.Unlock()
	return token, aw.conn, func() {
		l.mu.Lock()
		if l.boots[id] == aw {
			delete(l.boots, id)
		}
		l.mu.Unlock()
	}, nil
}

// forget drops an authenticated runner (its lanes are refused from now on).
func (l *listener) forget(id uint64, tr *tcplink.Parent) {
	l.mu.Lock()
	if dr := l.runners[id]; dr != nil && dr.tr == tr {
		delete(l.runners, id)
	}
	l.mu.Unlock()
}

// refuse reports a refused connection: at most one log line a second,
// with the count of those refused since the last line.
func (l *listener) refuse(c net.Conn, why string) {
	l.logMu.Lock()
	defer l.logMu.Unlock()
	l.refused++
	l.lastReason = fmt.Sprintf("%s (from %s)", why, c.RemoteAddr())
	if l.reportAt != nil {
		return
	}
	wait := time.Second - time.Since(l.lastLogged)
	if wait <= 0 {
		l.report()
		return
	}
	l.reportAt = time.AfterFunc(wait, func() {
		l.logMu.Lock()
		defer l.logMu.Unlock()
		l.reportAt = nil
		l.report()
	})
}

// report logs the refusals since the last report. Requires logMu.
func (l *listener) report() {
	if l.refused == 0 {
		return
	}
	l.log.Warn("runner listener refused connections", "count", l.refused, "latest", l.lastReason, "listen", l.ln.Addr().String())
	l.refused = 0
	l.lastLogged = time.Now()
}

// close stops listening, closes the connections still in their handshake
// and waits for every goroutine of the listener.
func (l *listener) close() {
	l.mu.Lock()
	l.closed = true
	for c := range l.conns {
		c.Close()
	}
	l.mu.Unlock()
	l.ln.Close()
	l.wg.Wait()
	l.logMu.Lock()
	if l.reportAt != nil {
		l.reportAt.Stop() // a report that fires anyway finds nothing left to say
	}
	l.report() // what is left, now rather than after the listener is gone
	l.logMu.Unlock()
}
