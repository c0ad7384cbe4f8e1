//go:build unix

package flame

import (
	"bufio"
	"context"
	"errors"
	"fmt"
	"io"
	"net"
	"os"
	"os/signal"
	"runtime/debug"
	"sync"
	"syscall"
	"time"

	"github.com/goflame/goflame/flame/internal/link"
	"github.com/goflame/goflame/flame/internal/wire"
)

// Runner exit codes.
const (
	exitOK     = 0 // asked to shut down (SHUTDOWN or SIGTERM)
	exitSetup  = 2 // bad FLAME_PARENT, no connection, version skew
	exitLost   = 3 // the parent went away
	runnerWait = 500 * time.Millisecond
)

// errParentLost cancels a runner's work when its parent is gone.
var errParentLost = errors.New("flame: runner lost its parent")

// runnerProc is the runner side of one process: it serves the calls its
// parent sends, one lane at a time each.
//
// Ownership: info and ctrl are set before serving and read-only after;
// inflight and idle are guarded by mu, lanes by lanesMu; every call's ctx
// derives from ctx.
type runnerProc struct {
	info   parentInfo
	ctrl   *link.Control
	ctx    context.Context
	cancel context.CancelCauseFunc

	mu       sync.Mutex
	inflight int
	idle     chan struct{} // closed when inflight drops to 0; nil if nobody waits

	lanesMu sync.Mutex
	lanes   map[uint64]*runnerLane
}

// serveRunner runs this process as a runner and returns its exit code.
func serveRunner(env string) int {
	info, err := decodeParentInfo(env)
	if err != nil {
		fmt.Fprintf(os.Stderr, "flame: runner: %v\n", err)
		return exitSetup
	}
	f := os.NewFile(3, "flame-parent")
	if f == nil {
		fmt.Fprintln(os.Stderr, "flame: runner: no connection to the parent on fd 3")
		return exitSetup
	}
	ctrl, err := link.FromFile(f, 0)
	if err != nil {
		fmt.Fprintf(os.Stderr, "flame: runner: connection to the parent on fd 3: %v\n", err)
		return exitSetup
	}
	r := &runnerProc{info: info, ctrl: ctrl, lanes: make(map[uint64]*runnerLane)}
	r.ctx, r.cancel = context.WithCancelCause(context.Background())
	code := r.serve()
	ctrl.Close()
	return code
}

func (r *runnerProc) serve() int {
	term := make(chan os.Signal, 1)
	signal.Notify(term, syscall.SIGTERM)

	hello := wire.HelloMsg{Proto: wire.ProtocolVersion, Build: buildID(), Registry: registryHash(), PID: os.Getpid()}
	if err := r.ctrl.Write(wire.AppendHello(nil, hello)); err != nil {
		return exitLost
	}
	if err := checkHello(hello, r.info); err != nil {
		_ = r.ctrl.Write(wire.AppendError(nil, wire.ErrorMsg{Code: wire.CodeVersionSkew, Message: err.Error()}))
		gone := make(chan struct{})
		go func() { // let the parent read it; it kills us
			for {
				if _, _, _, err := r.ctrl.ReadFrame(helloMax); err != nil {
					close(gone)
					return
				}
			}
		}()
		select {
		case <-gone:
		case <-time.After(5 * time.Second):
		}
		return exitSetup
	}
	ka := time.Duration(r.info.KeepAliveMS) * time.Millisecond
	r.ctrl.SetTimeout(keepAliveTimeout(ka))
	lost := make(chan struct{})
	shutdown := make(chan struct{})
	if err := r.ctrl.Write(wire.AppendFrame(nil, wire.Ready, nil)); err != nil {
		return exitLost
	}
	go heartbeat(r.ctrl, ka, lost) // after READY: the handshake has no heartbeats
	go r.readControl(shutdown, lost)

	select {
	case <-shutdown:
		select {
		case <-r.whenIdle(): // every call has had its reply
			return exitOK
		case <-lost:
		case <-term:
			return r.stop(context.Canceled, exitOK)
		}
	case <-lost:
	case <-term:
		return r.stop(context.Canceled, exitOK)
	}
	return r.stop(errParentLost, exitLost)
}

// readControl reads the parent's control frames until the connection
// ends (EOF, an error, or no frame for the keepalive timeout), then
// closes lost.
func (r *runnerProc) readControl(shutdown, lost chan struct{}) {
	defer close(lost)
	defer r.ctrl.Close()
	for {
		t, p, conn, err := r.ctrl.ReadFrame(helloMax)
		if err != nil {
			return
		}
		switch t {
		case wire.Ping:
		case wire.Lane:
			id, err := wire.DecodeLane(p)
			if err != nil {
				conn.Close()
				fmt.Fprintf(os.Stderr, "flame: runner %d: %v\n", r.info.Runner, err)
				return
			}
			ln := &runnerLane{r: r, id: id, conn: conn}
			r.lanesMu.Lock()
			r.lanes[id] = ln
			r.lanesMu.Unlock()
			go ln.serve()
		case wire.Cancel:
			lane, call, err := wire.DecodeCancel(p)
			if err != nil {
				fmt.Fprintf(os.Stderr, "flame: runner %d: %v\n", r.info.Runner, err)
				return
			}
			r.lanesMu.Lock()
			ln := r.lanes[lane]
			r.lanesMu.Unlock()
			if ln != nil {
				ln.cancelCall(call)
			}
		case wire.Shutdown:
			select {
			case <-shutdown:
			default:
				close(shutdown)
			}
		default:
			fmt.Fprintf(os.Stderr, "flame: runner %d: protocol error: %s frame on the control connection\n", r.info.Runner, t)
			return
		}
	}
}

// stop cancels every call and gives the handlers a moment to return.
func (r *runnerProc) stop(cause error, code int) int {
	r.cancel(cause)
	select {
	case <-r.whenIdle():
	case <-time.After(runnerWait):
	}
	return code
}

func (r *runnerProc) whenIdle() <-chan struct{} {
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

func (r *runnerProc) begin() {
	r.mu.Lock()
	r.inflight++
	r.mu.Unlock()
}

func (r *runnerProc) end() {
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
	r    *runnerProc
	id   uint64
	conn net.Conn

	mu       sync.Mutex
	calls    uint64             // CALL frames read so far: the running call's number
	cancel   context.CancelFunc // the running call's; nil when none runs
	canceled uint64             // the highest call number a CANCEL named
}

// serve runs the lane until the parent closes it (or the process ends).
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
		t, p, err := wire.ReadFrame(br, r.info.MaxMsg)
		if err != nil {
			if errors.Is(err, wire.ErrTooLarge) {
				// The lane's framing is lost: say why, then close it.
				r.reply(ln.conn, wire.ErrorMsg{Code: wire.CodeTooLarge, Message: fmt.Sprintf("flame: runner %d: %v", r.info.Runner, err)})
			}
			return
		}
		if t != wire.Call {
			r.reply(ln.conn, wire.ErrorMsg{Code: wire.CodeProtocol, Message: fmt.Sprintf("flame: runner %d: protocol error: %s frame instead of CALL", r.info.Runner, t)})
			return
		}
		ln.mu.Lock()
		ln.calls++
		ln.mu.Unlock()
		m, err := wire.DecodeCall(p)
		if err != nil {
			r.reply(ln.conn, wire.ErrorMsg{Code: wire.CodeProtocol, Message: fmt.Sprintf("flame: runner %d: %v", r.info.Runner, err)})
			return
		}
		reg := lookupFunc(m.ID)
		if reg == nil {
			r.reply(ln.conn, wire.ErrorMsg{Code: wire.CodeNotRegistered, Message: fmt.Sprintf("flame: function %q is not registered on runner %d", m.ID, r.info.Runner)})
			continue
		}
		ln.run(reg, m)
	}
}

// run runs one call and writes its reply.
func (ln *runnerLane) run(reg *registered, m wire.CallMsg) {
	r := ln.r
	base, cancel := context.WithCancel(r.ctx)
	defer cancel()
	ctx := newCallCtx(base, r.info.Runner, m.Timeout)
	defer ctx.end()
	ln.mu.Lock()
	if ln.canceled >= ln.calls {
		cancel() // its CANCEL came first
	}
	ln.cancel = cancel
	ln.mu.Unlock()
	r.begin()
	defer r.end() // after the reply: a draining runner exits once idle

	res, em := runHandler(ctx, reg, m.Args)
	ln.mu.Lock()
	ln.cancel = nil
	ln.mu.Unlock()
	if em == nil {
		if fe := resultTooLarge(reg.id, res, r.info.MaxMsg); fe != nil {
			m := fe.toWire()
			em = &m
		}
	}
	if em != nil {
		r.reply(ln.conn, fitError(*em, r.info.MaxMsg)) // a huge panic or error still crosses as what it is
		return
	}
	_, _ = ln.conn.Write(wire.AppendFrame(make([]byte, 0, wire.HeaderLen+len(res)), wire.Result, res))
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

func (r *runnerProc) reply(w io.Writer, em wire.ErrorMsg) {
	_, _ = w.Write(wire.AppendError(nil, em))
}

// runHandler runs a registered function, turning its error or panic into
// an ERROR message.
func runHandler(ctx context.Context, reg *registered, args []byte) (res []byte, em *wire.ErrorMsg) {
	defer func() {
		if v := recover(); v != nil {
			res, em = nil, &wire.ErrorMsg{Code: wire.CodePanic, Message: fmt.Sprint(v), Stack: debug.Stack()}
		}
	}()
	res, err := reg.run(ctx, args)
	if err != nil {
		m := asFuncError(reg.id, err).toWire()
		return nil, &m
	}
	return res, nil
}
