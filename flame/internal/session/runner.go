package session

import (
	"bufio"
	"context"
	"errors"
	"fmt"
	"io"
	"net"
	"sync"
	"time"

	"github.com/goflame/goflame/flame/internal/wire"
)

// Outcome is how a runner's session ended.
type Outcome int

const (
	Stopped Outcome = iota // the parent asked (SHUTDOWN, after every call had its reply), or Term was closed
	Lost                   // the parent is gone: the connection broke or went silent
	Refused                // the runner refused to serve (Refuse), or could not say HELLO
)

// ServeConfig configures the runner's side of a session.
type ServeConfig struct {
	Runner uint64        // the runner's ID, for messages
	Hello  wire.HelloMsg // what the runner says it is
	// Refuse, if not nil, makes the runner refuse to serve: it says HELLO,
	// then ERROR (version skew) with this message, and waits (up to
	// RefuseWait) for the parent to hang up.
	Refuse     error
	RefuseWait time.Duration
	KeepAlive  time.Duration // ping period; no frame for KeepAliveTimeout means the parent is gone
	MaxMsg     int           // the cap on a CALL's payload
	// Handle runs one call and returns its encoded result, or the ERROR to
	// send. ctx is cancelled by the call's CANCEL and when the session
	// ends; the handler applies m.Timeout itself. A panic must not escape.
	// m.Args is the handler's to keep. release, if not nil, is called once
	// the result is sent (or dropped): its buffer may then be reused.
	Handle func(ctx context.Context, m wire.CallMsg) (res []byte, release func(), em *wire.ErrorMsg)
	// Term, when closed, ends the session at once: every call's ctx is
	// cancelled (Stopped).
	Term <-chan struct{}
	// Grace is how long, once the session ends without SHUTDOWN, the calls
	// still running get to return after their ctx is cancelled.
	Grace time.Duration
	// Logf reports protocol trouble (nil: nothing is reported).
	Logf func(format string, args ...any)
}

// ErrParentLost is the cause of a call's cancellation when the parent is
// gone.
var ErrParentLost = errors.New("session: the parent is gone")

// runner is the runner's side of one session.
//
// Ownership: t and cfg are set before serving and read-only after;
// inflight and idle are guarded by mu, lanes by lanesMu; every call's ctx
// derives from ctx.
type runner struct {
	t      RunnerTransport
	cfg    ServeConfig
	ctx    context.Context
	cancel context.CancelCauseFunc

	mu       sync.Mutex
	inflight int
	idle     chan struct{} // closed when inflight drops to 0; nil if nobody waits

	lanesMu sync.Mutex
	lanes   map[uint64]*runnerLane
}

// Serve runs the runner's side of a session on t until the parent asks it
// to stop, the parent is gone, or cfg.Term is closed: it says HELLO and
// READY, pings every keepalive period, serves each lane the parent opens
// on a goroutine of its own, and cancels calls on CANCEL. On SHUTDOWN it
// stops taking calls and returns once every call has had its reply. t and
// every lane are closed when Serve returns.
func Serve(t RunnerTransport, cfg ServeConfig) Outcome {
	defer t.Close()
	r := &runner{t: t, cfg: cfg, lanes: make(map[uint64]*runnerLane)}
	defer r.closeLanes()
	r.ctx, r.cancel = context.WithCancelCause(context.Background())
	defer r.cancel(nil)

	if err := t.Write(wire.AppendHello(nil, cfg.Hello)); err != nil {
		return Refused
	}
	if cfg.Refuse != nil {
		_ = t.Write(wire.AppendError(nil, wire.ErrorMsg{Code: wire.CodeVersionSkew, Message: cfg.Refuse.Error()}))
		r.waitHangUp()
		return Refused
	}
	t.SetTimeout(KeepAliveTimeout(cfg.KeepAlive))
	lost := make(chan struct{})
	shutdown := make(chan struct{})
	if err := t.Write(wire.AppendFrame(nil, wire.Ready, nil)); err != nil {
		return Lost
	}
	go heartbeat(t, cfg.KeepAlive, lost) // after READY: the handshake has no heartbeats
	go r.readControl(shutdown, lost)

	select {
	case <-shutdown:
		select {
		case <-r.whenIdle(): // every call has had its reply
			return Stopped
		case <-lost:
		case <-cfg.Term:
			return r.stop(context.Canceled, Stopped)
		}
	case <-lost:
	case <-cfg.Term:
		return r.stop(context.Canceled, Stopped)
	}
	return r.stop(ErrParentLost, Lost)
}

// waitHangUp lets the parent read a refusal: it waits until the parent
// closes the connection (it kills a refused runner), or RefuseWait.
func (r *runner) waitHangUp() {
	gone := make(chan struct{})
	go func() {
		defer close(gone)
		for {
			_, _, conn, err := r.t.ReadFrame(helloMax)
			if err != nil {
				return
			}
			closeConn(conn)
		}
	}()
	select {
	case <-gone:
	case <-time.After(r.cfg.RefuseWait):
		r.t.Close()
		<-gone
	}
}

func (r *runner) logf(format string, args ...any) {
	if r.cfg.Logf != nil {
		r.cfg.Logf(format, args...)
	}
}

// readControl reads the parent's control frames until the connection
// ends (EOF, an error, or no frame for the keepalive timeout), then closes
// lost.
func (r *runner) readControl(shutdown, lost chan struct{}) {
	defer close(lost)
	defer r.t.Close()
	for {
		t, p, conn, err := r.t.ReadFrame(helloMax)
		if err != nil {
			return
		}
		switch t {
		case wire.Ping:
			closeConn(conn)
		case wire.Lane:
			id, err := wire.DecodeLane(p)
			if err != nil {
				closeConn(conn)
				r.logf("%v", err)
				return
			}
			c, err := r.t.Lane(id, conn)
			if err != nil {
				r.logf("lane %d: %v", id, err)
				continue // the parent's call on it fails; the session goes on
			}
			ln := &runnerLane{r: r, id: id, conn: c}
			r.lanesMu.Lock()
			r.lanes[id] = ln
			r.lanesMu.Unlock()
			go ln.serve()
		case wire.Cancel:
			closeConn(conn)
			lane, call, err := wire.DecodeCancel(p)
			if err != nil {
				r.logf("%v", err)
				return
			}
			r.lanesMu.Lock()
			ln := r.lanes[lane]
			r.lanesMu.Unlock()
			if ln != nil {
				ln.cancelCall(call)
			}
		case wire.Shutdown:
			closeConn(conn)
			select {
			case <-shutdown:
			default:
				close(shutdown)
			}
		default:
			closeConn(conn)
			r.logf("protocol error: %s frame on the control connection", t)
			return
		}
	}
}

// stop cancels every call and gives the handlers Grace to return.
func (r *runner) stop(cause error, out Outcome) Outcome {
	r.cancel(cause)
	select {
	case <-r.whenIdle():
	case <-time.After(r.cfg.Grace):
	}
	return out
}

// closeLanes closes every lane: the session is over.
func (r *runner) closeLanes() {
	r.lanesMu.Lock()
	defer r.lanesMu.Unlock()
	for _, ln := range r.lanes {
		ln.conn.Close()
	}
}

var closedChan = func() chan struct{} { c := make(chan struct{}); close(c); return c }()

func (r *runner) whenIdle() <-chan struct{} {
	r.mu.Lock()
	defer r.mu.Unlock()
	if r.inflight == 0 {
		return closedChan
	}
	if r.idle == nil {
		r.idle = make(chan struct{})
	}
	return r.idle
}

func (r *runner) begin() {
	r.mu.Lock()
	r.inflight++
	r.mu.Unlock()
}

func (r *runner) end() {
	r.mu.Lock()
	r.inflight--
	if r.inflight == 0 && r.idle != nil {
		close(r.idle)
		r.idle = nil
	}
	r.mu.Unlock()
}

// runnerLane is the runner's end of one lane: one goroutine reads a CALL,
// runs it, writes the reply, and reads the next. A CANCEL for the lane
// comes on the control connection and names the call by its number on the
// lane, so a late CANCEL cannot touch a later call, and an early one (it
// overtook its CALL) cancels the call as it starts.
//
// Ownership: conn is the lane goroutine's; calls, cancel and canceled are
// guarded by mu.
type runnerLane struct {
	r    *runner
	id   uint64
	conn net.Conn

	mu       sync.Mutex
	calls    uint64             // CALL frames read so far: the running call's number
	cancel   context.CancelFunc // the running call's; nil when none runs
	canceled uint64             // the highest call number a CANCEL named
}

// serve runs the lane until the parent closes it (or the session ends).
func (ln *runnerLane) serve() {
	r := ln.r
	defer func() {
		ln.conn.Close()
		r.lanesMu.Lock()
		if r.lanes[ln.id] == ln {
			delete(r.lanes, ln.id)
		}
		r.lanesMu.Unlock()
	}()
	br := bufio.NewReader(ln.conn)
	for {
		t, p, err := wire.ReadFrame(br, r.cfg.MaxMsg)
		if err != nil {
			if errors.Is(err, wire.ErrTooLarge) {
				// The lane's framing is lost: say why, then close it.
				ln.reply(wire.ErrorMsg{Code: wire.CodeTooLarge, Message: fmt.Sprintf("flame: runner %d: %v", r.cfg.Runner, err)})
			}
			return
		}
		if t != wire.Call {
			ln.reply(wire.ErrorMsg{Code: wire.CodeProtocol, Message: fmt.Sprintf("flame: runner %d: protocol error: %s frame instead of CALL", r.cfg.Runner, t)})
			return
		}
		ln.mu.Lock()
		ln.calls++
		ln.mu.Unlock()
		m, err := wire.DecodeCall(p)
		if err != nil {
			ln.reply(wire.ErrorMsg{Code: wire.CodeProtocol, Message: fmt.Sprintf("flame: runner %d: %v", r.cfg.Runner, err)})
			return
		}
		ln.run(m)
	}
}

// run runs one call and writes its reply.
func (ln *runnerLane) run(m wire.CallMsg) {
	r := ln.r
	ctx, cancel := context.WithCancel(r.ctx)
	defer cancel()
	ln.mu.Lock()
	n := ln.calls
	if ln.canceled >= ln.calls {
		cancel() // its CANCEL came first
	}
	ln.cancel = cancel
	ln.mu.Unlock()
	r.begin()
	defer r.end() // after the reply: a draining runner exits once idle

	res, release, em := r.cfg.Handle(ctx, m)
	if release != nil {
		defer release()
	}
	ln.mu.Lock()
	ln.cancel = nil
	byParent := ln.canceled >= n
	ln.mu.Unlock()
	if em != nil && r.ctx.Err() != nil && !byParent {
		// The runner is going down (Term, or the parent is gone) and cut
		// this call short: no reply, so that the parent reports the runner
		// down rather than a cancellation its caller never asked for.
		return
	}
	if em != nil {
		ln.reply(*em)
		return
	}
	var head [wire.HeaderLen]byte
	_ = wire.WriteParts(ln.conn, wire.AppendHeader(head[:0], wire.Result, len(res)), res)
}

// cancelCall cancels call number call on this lane: at once if it runs,
// or as it starts if its CALL is still on the way.
func (ln *runnerLane) cancelCall(call uint64) {
	ln.mu.Lock()
	defer ln.mu.Unlock()
	if call > ln.canceled {
		ln.canceled = call
	}
	if call == ln.calls && ln.cancel != nil {
		ln.cancel()
	}
}

func (ln *runnerLane) reply(em wire.ErrorMsg) {
	_, _ = io.Writer(ln.conn).Write(wire.AppendError(nil, em))
}
