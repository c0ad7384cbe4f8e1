package session

import (
	"bufio"
	"context"
	"errors"
	"fmt"
	"io"
	"net"
	"os"
	"sync"
	"syscall"
	"time"

	"github.com/goflame/goflame/flame/internal/wire"
)

// ParentConfig configures the parent's side of a session.
type ParentConfig struct {
	KeepAlive time.Duration // ping period; no frame for KeepAliveTimeout ends the session
	MaxMsg    int           // the cap on a reply's payload
	// Check accepts or refuses the runner by its HELLO; its error ends
	// the handshake and is returned by Open.
	Check func(wire.HelloMsg) error
	// Log reports what goes wrong on the control connection once the
	// session is up (nil: nothing is reported).
	Log func(msg string, args ...any)
}

// RefusedError is a runner's ERROR in place of READY: it will not serve
// (Code CodeVersionSkew: it is another build).
type RefusedError struct {
	Code    wire.Code
	Message string
}

func (e *RefusedError) Error() string { return "runner refused to start: " + e.Message }

// Parent is the parent's end of a session with one runner. Its methods are
// safe for concurrent use: each Call has a lane of its own.
//
// Ownership: t, cfg and hello are set by Open and read-only after; the
// lane set is guarded by laneMu; a lane is used by one call at a time.
type Parent struct {
	t     ParentTransport
	cfg   ParentConfig
	hello wire.HelloMsg
	done  chan struct{} // closed when the control connection has ended

	laneMu   sync.Mutex
	lanes    map[*lane]struct{} // every open lane
	free     []*lane            // lanes with no call, for reuse
	nextLane uint64             // the last lane id given out (never reused: a late CANCEL names it)
	closed   bool               // Close was called: no new lanes
}

// maxIdleLanes bounds the lanes a session keeps open for reuse (each is a
// connection, a descriptor on each side); lanes beyond it are closed when
// their call ends.
const maxIdleLanes = 256

// lane is the parent's end of one lane.
type lane struct {
	id    uint64
	conn  net.Conn
	r     *bufio.Reader
	calls uint64 // calls sent on it so far: the number CANCEL names
	buf   []byte // the last CALL head (header and fields before the arguments), for reuse: a few hundred bytes at most
}

// Open runs the handshake on t: the runner's HELLO (which cfg.Check
// accepts), then READY; heartbeats may come between. It is bounded by
// ctx: when ctx ends first, t is closed and Open returns ctx's error. On
// success the session pings every keepalive period and reads the runner's
// pings; on failure t is closed.
func Open(ctx context.Context, t ParentTransport, cfg ParentConfig) (*Parent, error) {
	p := &Parent{t: t, cfg: cfg, done: make(chan struct{}), lanes: make(map[*lane]struct{})}
	res := make(chan error, 1)
	go func() { res <- p.handshake() }()
	var err error
	select {
	case err = <-res:
	case <-ctx.Done():
		t.Close()
		<-res
		err = ctx.Err()
	}
	if err != nil {
		t.Close()
		return nil, err
	}
	t.SetTimeout(KeepAliveTimeout(cfg.KeepAlive))
	go p.readControl()
	go heartbeat(t, cfg.KeepAlive, p.done)
	return p, nil
}

func (p *Parent) handshake() error {
	t, b, conn, err := p.t.ReadFrame(helloMax)
	if err != nil {
		return fmt.Errorf("%w: %w", ErrLost, err)
	}
	closeConn(conn)
	if t != wire.Hello {
		return fmt.Errorf("%w: got %s before HELLO", ErrProtocol, t)
	}
	if p.hello, err = wire.DecodeHello(b); err != nil {
		return err
	}
	if p.cfg.Check != nil {
		if err := p.cfg.Check(p.hello); err != nil {
			return err
		}
	}
	for { // a heartbeat may come first; a runner sends none before READY, but need not
		if t, b, conn, err = p.t.ReadFrame(helloMax); err != nil {
			return fmt.Errorf("%w: %w", ErrLost, err)
		}
		closeConn(conn)
		if t != wire.Ping {
			break
		}
	}
	switch t {
	case wire.Ready:
		return nil
	case wire.Error:
		m, err := wire.DecodeError(b)
		if err != nil {
			return err
		}
		return &RefusedError{Code: m.Code, Message: m.Message}
	default:
		return fmt.Errorf("%w: got %s instead of READY", ErrProtocol, t)
	}
}

// Hello is what the runner said in its HELLO.
func (p *Parent) Hello() wire.HelloMsg { return p.hello }

// readControl reads the runner's control frames (pings) until the
// connection ends: EOF, an error, or no frame for the keepalive timeout.
// Then the session is over: its lanes are closed too, so that no call
// waits on a runner that is gone.
func (p *Parent) readControl() {
	defer close(p.done)
	defer p.Close()
	for {
		t, _, conn, err := p.t.ReadFrame(helloMax)
		if err != nil {
			p.log("runner control connection ended", "err", err)
			return
		}
		closeConn(conn)
		if t != wire.Ping {
			p.log("runner protocol error: unexpected frame on the control connection", "frame", t)
			return
		}
	}
}

func (p *Parent) log(msg string, args ...any) {
	if p.cfg.Log != nil {
		p.cfg.Log(msg, args...)
	}
}

// Done is closed when the control connection has ended: the runner is
// gone, or Close was called.
func (p *Parent) Done() <-chan struct{} { return p.done }

// Call runs one call on a lane of its own: CALL, then the runner's reply,
// RESULT (res) or ERROR (em). If the call is cancelled, cancel's callback
// sends CANCEL on the control connection: Call hands onCancel a function
// that sends it, and onCancel arranges for that to run when the call is
// cancelled, returning a stop function (as context.AfterFunc does). The
// goroutine that calls Call reads the reply itself, so a call wakes no
// other goroutine.
//
// An error matching ErrLost means the connection is gone (the runner is
// going down); one matching wire.ErrTooLarge, that the reply exceeded
// MaxMsg; others are this call's own. Once a call has had its reply, its
// lane serves a later call; a lane that broke is closed.
func (p *Parent) Call(m wire.CallMsg, onCancel func(send func()) (stop func() bool)) (res []byte, em *wire.ErrorMsg, err error) {
	ln, err := p.lane()
	if err != nil {
		return nil, nil, p.failed("cannot open a lane", err)
	}
	ln.calls++
	seq := ln.calls
	ln.buf = wire.AppendCallHead(ln.buf[:0], m)
	err = wire.WriteParts(ln.conn, ln.buf, m.Args)
	if err != nil {
		p.dropLane(ln)
		return nil, nil, p.failed("sending the call", err)
	}
	stop := onCancel(func() { _ = p.t.Write(wire.AppendCancel(nil, ln.id, seq)) })
	t, b, err := wire.ReadFrame(ln.r, p.cfg.MaxMsg)
	stop()
	if err != nil {
		p.dropLane(ln)
		if errors.Is(err, wire.ErrTooLarge) {
			return nil, nil, err
		}
		return nil, nil, p.failed("reading the reply", err)
	}
	switch t {
	case wire.Result:
		p.putLane(ln)
		return b, nil, nil
	case wire.Error:
		m, err := wire.DecodeError(b)
		if err != nil {
			p.dropLane(ln)
			return nil, nil, err
		}
		if m.Code == wire.CodeProtocol || m.Code == wire.CodeTooLarge {
			// The runner closes a lane whose framing it could not
			// follow (it does for an oversized CALL).
			p.dropLane(ln)
		} else {
			p.putLane(ln)
		}
		return nil, &m, nil
	default:
		p.dropLane(ln)
		return nil, nil, fmt.Errorf("%w: unexpected %s", ErrProtocol, t)
	}
}

// errClosed: the session is closed, its lanes too.
var errClosed = errors.New("session closed")

// failed turns a lane failure into the call's error. A runner closes a
// lane only after replying to a frame it could not follow, so a lane that
// ends (EOF, reset, closed by Close) or a control connection that cannot
// take a new lane means the connection is gone: ErrLost. Anything else
// (out of descriptors, a malformed reply) is the call's own error.
func (p *Parent) failed(doing string, err error) error {
	if connLost(err) {
		return fmt.Errorf("%w: %s: %w", ErrLost, doing, err)
	}
	return fmt.Errorf("%s: %w", doing, err)
}

// connLost reports whether err says a connection is gone or stuck.
func connLost(err error) bool {
	return errors.Is(err, io.EOF) || errors.Is(err, io.ErrUnexpectedEOF) || errors.Is(err, io.ErrClosedPipe) ||
		errors.Is(err, syscall.EPIPE) || errors.Is(err, syscall.ECONNRESET) ||
		errors.Is(err, net.ErrClosed) || errors.Is(err, errClosed) || errors.Is(err, ErrLost) || os.IsTimeout(err)
}

// lane returns an idle lane, or opens one.
func (p *Parent) lane() (*lane, error) {
	select {
	case <-p.done:
		return nil, errClosed // the control connection has ended
	default:
	}
	p.laneMu.Lock()
	if p.closed {
		p.laneMu.Unlock()
		return nil, errClosed
	}
	if k := len(p.free); k > 0 {
		ln := p.free[k-1]
		p.free = p.free[:k-1]
		p.laneMu.Unlock()
		return ln, nil
	}
	p.nextLane++
	id := p.nextLane
	p.laneMu.Unlock()
	conn, err := p.t.OpenLane(id)
	if err != nil {
		return nil, err
	}
	ln := &lane{id: id, conn: conn, r: bufio.NewReader(conn)}
	p.laneMu.Lock()
	if p.closed {
		p.laneMu.Unlock()
		conn.Close()
		return nil, errClosed
	}
	p.lanes[ln] = struct{}{}
	p.laneMu.Unlock()
	return ln, nil
}

// putLane keeps a lane whose call is complete for a later call.
func (p *Parent) putLane(ln *lane) {
	p.laneMu.Lock()
	if !p.closed && len(p.free) < maxIdleLanes {
		p.free = append(p.free, ln)
		p.laneMu.Unlock()
		return
	}
	p.laneMu.Unlock()
	p.dropLane(ln)
}

// dropLane closes a lane (the runner's end sees EOF and stops serving it).
func (p *Parent) dropLane(ln *lane) {
	p.laneMu.Lock()
	delete(p.lanes, ln)
	p.laneMu.Unlock()
	ln.conn.Close()
}

// Shutdown asks the runner to finish its calls and exit.
func (p *Parent) Shutdown() error {
	return p.t.Write(wire.AppendFrame(nil, wire.Shutdown, nil))
}

// Close ends the session: the control connection and every lane are
// closed, and a call waiting on one fails at once (ErrLost). Done is
// closed once the control reader has stopped.
func (p *Parent) Close() {
	p.t.Close()
	p.laneMu.Lock()
	p.closed = true
	lanes := p.lanes
	p.lanes, p.free = nil, nil
	p.laneMu.Unlock()
	for ln := range lanes {
		ln.conn.Close()
	}
}

// closeConn closes a connection that came with a frame nobody wants.
func closeConn(c net.Conn) {
	if c != nil {
		c.Close()
	}
}
