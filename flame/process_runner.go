//go:build unix

package flame

import (
	"context"
	"errors"
	"fmt"
	"log"
	"net"
	"os"
	"os/signal"
	"runtime/debug"
	"sync"
	"syscall"
	"time"

	"github.com/hashicorp/yamux"

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
// parent opens, one stream each.
//
// Ownership: info and sess are set before serving and read-only after;
// inflight and idle are guarded by mu; every handler's ctx derives from ctx.
type runnerProc struct {
	info   parentInfo
	sess   *yamux.Session
	ctx    context.Context
	cancel context.CancelCauseFunc

	mu       sync.Mutex
	inflight int
	idle     chan struct{} // closed when inflight drops to 0; nil if nobody waits
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
	conn, err := net.FileConn(f)
	f.Close()
	if err != nil {
		fmt.Fprintf(os.Stderr, "flame: runner: connection to the parent on fd 3: %v\n", err)
		return exitSetup
	}
	ka := time.Duration(info.KeepAliveMS) * time.Millisecond
	sess, err := yamux.Server(newBatchConn(conn), yamuxConfig(ka, log.New(os.Stderr, "", 0)))
	if err != nil {
		fmt.Fprintf(os.Stderr, "flame: runner: %v\n", err)
		return exitSetup
	}
	r := &runnerProc{info: info, sess: sess}
	r.ctx, r.cancel = context.WithCancelCause(context.Background())
	code := r.serve()
	sess.Close()
	return code
}

func (r *runnerProc) serve() int {
	term := make(chan os.Signal, 1)
	signal.Notify(term, syscall.SIGTERM)

	ctrl, err := r.sess.OpenStream()
	if err != nil {
		return exitLost
	}
	hello := wire.HelloMsg{Proto: wire.ProtocolVersion, Build: buildID(), Registry: registryHash(), PID: os.Getpid()}
	if _, err := ctrl.Write(wire.AppendHello(nil, hello)); err != nil {
		return exitLost
	}
	if err := checkHello(hello, r.info); err != nil {
		_, _ = ctrl.Write(wire.AppendError(nil, wire.ErrorMsg{Code: wire.CodeVersionSkew, Message: err.Error()}))
		select { // let the parent read it; it kills us
		case <-r.sess.CloseChan():
		case <-time.After(5 * time.Second):
		}
		return exitSetup
	}
	go r.accept()
	if _, err := ctrl.Write(wire.AppendFrame(nil, wire.Ready, nil)); err != nil {
		return exitLost
	}
	shutdown := make(chan struct{})
	go func() {
		for {
			t, _, err := wire.ReadFrame(ctrl, helloMax)
			if err != nil {
				return // the session is going: CloseChan says so
			}
			if t == wire.Shutdown {
				close(shutdown)
				return
			}
		}
	}()

	lost := r.sess.CloseChan()
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

// accept serves every stream the parent opens, each on its own goroutine.
func (r *runnerProc) accept() {
	for {
		st, err := r.sess.AcceptStream()
		if err != nil {
			return
		}
		go r.serveStream(st)
	}
}

// serveStream serves the calls that come on one stream, one at a time.
//
// Some goroutine always reads the stream, so that a CANCEL reaches a
// running call. The goroutine that reads a CALL runs it itself, at once,
// and hands the reading to a spare goroutine (parked after an earlier
// call, else a new one); after its reply it parks as the spare. A stream
// thus keeps two goroutines (three at most) whose stacks have grown, and a
// call starts without a goroutine handoff.
//
// The parent sends the next CALL only after the reply; a CANCEL that finds
// no call running is late and ignored. The stream ends when the parent
// closes it or the session ends, which cancels a call still running.
func (r *runnerProc) serveStream(st *yamux.Stream) {
	s := &streamServer{r: r, st: st, wake: make(chan struct{})}
	s.read()
}

// streamServer is one stream on the runner.
//
// Ownership: one goroutine at a time reads st (the reader); it alone sends
// on wake and closes it. cur is guarded by mu.
type streamServer struct {
	r    *runnerProc
	st   *yamux.Stream
	wake chan struct{} // a parked spare receives here to become the reader; closed at the end
	mu   sync.Mutex
	cur  context.CancelFunc // the running call's; nil when none runs
}

// read is the reader's loop; it returns when this goroutine is done with
// the stream.
func (s *streamServer) read() {
	r := s.r
	for {
		t, p, err := wire.ReadFrame(s.st, r.info.MaxMsg)
		if err != nil {
			if errors.Is(err, wire.ErrTooLarge) {
				r.reply(s.st, wire.ErrorMsg{Code: wire.CodeTooLarge, Message: fmt.Sprintf("flame: runner %d: %v", r.info.Runner, err)})
			}
			s.end()
			return
		}
		switch t {
		case wire.Cancel:
			s.mu.Lock()
			if s.cur != nil {
				s.cur()
			}
			s.mu.Unlock()
			continue
		case wire.Call:
		default:
			r.reply(s.st, wire.ErrorMsg{Code: wire.CodeProtocol, Message: fmt.Sprintf("flame: runner %d: protocol error: %s frame instead of CALL", r.info.Runner, t)})
			s.end()
			return
		}
		m, err := wire.DecodeCall(p)
		s.mu.Lock()
		busy := s.cur != nil
		s.mu.Unlock()
		switch {
		case busy:
			err = errors.New("protocol error: CALL while a call runs on the stream")
		case err != nil:
		default:
			if reg := lookupFunc(m.ID); reg == nil {
				r.reply(s.st, wire.ErrorMsg{Code: wire.CodeNotRegistered, Message: fmt.Sprintf("flame: function %q is not registered on runner %d", m.ID, r.info.Runner)})
				continue
			} else {
				s.call(reg, m)
				if _, ok := <-s.wake; !ok {
					return // the stream has ended
				}
				continue // this goroutine reads again
			}
		}
		r.reply(s.st, wire.ErrorMsg{Code: wire.CodeProtocol, Message: fmt.Sprintf("flame: runner %d: %v", r.info.Runner, err)})
		s.end()
		return
	}
}

// call hands the reading over and runs one call on this goroutine.
func (s *streamServer) call(reg *registered, m wire.CallMsg) {
	r := s.r
	var ctx context.Context
	var cancel context.CancelFunc
	if m.Timeout > 0 {
		ctx, cancel = context.WithTimeout(r.ctx, m.Timeout)
	} else {
		ctx, cancel = context.WithCancel(r.ctx)
	}
	ctx = context.WithValue(ctx, runnerIDKey{}, r.info.Runner)
	s.mu.Lock()
	s.cur = cancel
	s.mu.Unlock()
	r.begin()
	defer r.end()
	select {
	case s.wake <- struct{}{}: // a spare takes over the reading
	default:
		go s.read()
	}

	res, em := runHandler(ctx, reg, m.Args)
	s.mu.Lock()
	s.cur = nil // before the reply: the parent's next CALL may follow it at once
	s.mu.Unlock()
	cancel()
	if em == nil && len(res) > r.info.MaxMsg {
		em = &wire.ErrorMsg{Code: wire.CodeTooLarge, Message: fmt.Sprintf(
			"flame: %s: result of %d bytes exceeds the message size limit of %d bytes", reg.id, len(res), r.info.MaxMsg)}
	}
	if em != nil {
		r.reply(s.st, *em)
		return
	}
	_, _ = s.st.Write(wire.AppendFrame(make([]byte, 0, wire.HeaderLen+len(res)), wire.Result, res))
}

// end finishes the stream: the running call (if any) is cancelled, the
// spares exit, the stream is closed. Called by the last reader.
func (s *streamServer) end() {
	s.mu.Lock()
	if s.cur != nil {
		s.cur()
	}
	s.mu.Unlock()
	close(s.wake)
	s.st.Close()
}

func (r *runnerProc) reply(st *yamux.Stream, em wire.ErrorMsg) {
	_, _ = st.Write(wire.AppendError(nil, em))
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
		fe := asFuncError(reg.id, err)
		return nil, &wire.ErrorMsg{Code: codeOf(fe.Code), Message: fe.Message}
	}
	return res, nil
}

// codeOf maps a FuncError code back to its wire code.
func codeOf(name string) wire.Code {
	for c := wire.CodeHandler; c <= wire.CodeProtocol; c++ {
		if c.String() == name {
			return c
		}
	}
	return wire.CodeHandler
}
