//go:build linux

package flame

import (
	"context"
	"errors"
	"io"
	"net"
	"strings"
	"syscall"
	"testing"

	"github.com/goflame/goflame/flame/internal/link"
	"github.com/goflame/goflame/flame/internal/wire"
)

func TestBuildIDIsTheRunningExecutablesGoBuildID(t *testing.T) {
	id := buildID()
	if !strings.HasPrefix(id, "go:") || len(id) < 20 {
		t.Fatalf("buildID() = %q; want the Go build ID of the test binary", id)
	}
	if buildID() != id {
		t.Fatal("buildID is not stable")
	}
	if goBuildID("/nonexistent") != "" || goBuildID("/proc/self/status") != "" {
		t.Fatal("goBuildID of a non-ELF file must be empty")
	}
}

func TestCheckHelloNamesEveryKindOfSkew(t *testing.T) {
	info := parentInfo{Build: "go:A", Registry: "3:aa"}
	ok := wire.HelloMsg{Proto: wire.ProtocolVersion, Build: "go:A", Registry: "3:aa"}
	if err := checkHello(ok, info); err != nil {
		t.Fatal(err)
	}
	for want, h := range map[string]wire.HelloMsg{
		"protocol 99":                     {Proto: 99, Build: "go:A", Registry: "3:aa"},
		`runner build "go:B"`:             {Proto: wire.ProtocolVersion, Build: "go:B", Registry: "3:aa"},
		"must be the same binary":         {Proto: wire.ProtocolVersion, Build: "go:B", Registry: "3:aa"},
		"runner registry 4:bb":            {Proto: wire.ProtocolVersion, Build: "go:A", Registry: "4:bb"},
		"must register the same function": {Proto: wire.ProtocolVersion, Build: "go:A", Registry: "4:bb"},
	} {
		err := checkHello(h, info)
		if !errors.Is(err, ErrVersionSkew) || !strings.Contains(err.Error(), want) {
			t.Errorf("checkHello(%+v) = %v; want ErrVersionSkew mentioning %q", h, err, want)
		}
	}
}

func TestParentInfoRoundTripAndRejects(t *testing.T) {
	pi := parentInfo{V: parentInfoVersion, Pool: "p", Runner: 3, Conn: "fd:3", Build: "go:x", Registry: "1:y", MaxMsg: 10, KeepAliveMS: 5, ParentPID: 9}
	got, err := decodeParentInfo(pi.encode())
	if err != nil || got != pi {
		t.Fatalf("round trip: %+v, %v", got, err)
	}
	bad := pi
	bad.V = 2
	if _, err := decodeParentInfo(bad.encode()); !errors.Is(err, ErrVersionSkew) {
		t.Fatalf("future format: %v; want ErrVersionSkew", err)
	}
	bad = pi
	bad.MaxMsg = 0
	if _, err := decodeParentInfo(bad.encode()); err == nil {
		t.Fatal("zero MaxMsg accepted")
	}
	if _, err := decodeParentInfo("%%%"); err == nil {
		t.Fatal("garbage accepted")
	}
}

func TestRegistryHashCoversIDsAndTypes(t *testing.T) {
	h := registryHash()
	if !strings.Contains(h, ":") || registryHash() != h {
		t.Fatalf("registryHash() = %q", h)
	}
	for _, r := range registry.funcs {
		if r.sig == "" {
			t.Fatalf("%s has no signature", r.id)
		}
	}
	if got := registry.funcs["test.echo"].sig; got != "flame_test.echoIn -> flame_test.echoOut" {
		t.Fatalf("signature of test.echo = %q", got)
	}
}

func TestFuncErrorCodesMatchSentinels(t *testing.T) {
	for code, target := range map[ErrorCode]error{
		CodeCanceled:      context.Canceled,
		CodeDeadline:      context.DeadlineExceeded,
		CodeNotRegistered: ErrUnknownFunc,
		CodeTooLarge:      ErrTooLarge,
		CodeDecode:        ErrBadPayload,
		CodeVersionSkew:   ErrVersionSkew,
	} {
		e := &FuncError{Func: "f", Code: code, Message: "m"}
		if !errors.Is(e, target) {
			t.Errorf("code %s does not match %v", code, target)
		}
		back := funcErrorOf("f", e.toWire())
		if back.Code != code {
			t.Errorf("code %s crosses the wire as %s", code, back.Code)
		}
		if errors.Is(&FuncError{Code: CodeHandler}, target) {
			t.Errorf("a handler error matches %v", target)
		}
	}
	// A handler's context errors keep their meaning; a FuncError from a
	// nested call keeps its code.
	if fe := asFuncError("f", context.DeadlineExceeded); fe.Code != "deadline" {
		t.Fatalf("deadline: %+v", fe)
	}
	nested := &FuncError{Func: "g", Code: "not_registered", Message: "no g"}
	if fe := asFuncError("f", nested); fe.Code != "not_registered" || fe.Func != "f" {
		t.Fatalf("nested: %+v", fe)
	}
}

func TestRunnerLostErrorMatchesErrRunnerDown(t *testing.T) {
	err := error(&runnerLostError{id: 2, pid: 99, state: "signal: killed"})
	if !errors.Is(err, ErrRunnerDown) || !strings.Contains(err.Error(), "runner 2 (pid 99) went down: signal: killed") {
		t.Fatalf("%v", err)
	}
}

// laneRelease and laneStarted drive laneProbe from the lane tests.
var (
	laneRelease = make(chan struct{}, 1)
	laneStarted = make(chan struct{}, 1)
)

// laneProbe reports whether its ctx was cancelled: at once when wait is
// false; when wait is true, after it is released or cancelled.
var laneProbe = Register("test.internal.laneprobe", func(ctx context.Context, wait bool) (string, error) {
	if wait {
		laneStarted <- struct{}{}
		select {
		case <-ctx.Done():
		case <-laneRelease:
		}
	}
	if err := ctx.Err(); err != nil {
		return "", err
	}
	return "ran", nil
})

// serveTestLane serves one runner lane over a pipe and returns the
// parent's end.
func serveTestLane(t *testing.T) (*runnerLane, net.Conn) {
	t.Helper()
	select { // a token a failed test left
	case <-laneRelease:
	default:
	}
	r := &runnerProc{info: parentInfo{Runner: 1, MaxMsg: 1 << 20}, lanes: make(map[uint64]*runnerLane)}
	r.ctx, r.cancel = context.WithCancelCause(context.Background())
	near, far := net.Pipe()
	ln := &runnerLane{r: r, id: 1, conn: far}
	r.lanes[1] = ln
	done := make(chan struct{})
	go func() { ln.serve(); close(done) }()
	t.Cleanup(func() { near.Close(); <-done; r.cancel(nil) })
	return ln, near
}

func laneCall(t *testing.T, c net.Conn, wait bool) {
	t.Helper()
	args := []byte("false")
	if wait {
		args = []byte("true")
	}
	if _, err := c.Write(wire.AppendCall(nil, wire.CallMsg{ID: laneProbe.ID(), Args: args})); err != nil {
		t.Fatal(err)
	}
}

func laneReply(t *testing.T, c net.Conn) string {
	t.Helper()
	typ, p, err := wire.ReadFrame(c, 1<<20)
	if err != nil {
		t.Fatal(err)
	}
	if typ == wire.Error {
		m, err := wire.DecodeError(p)
		if err != nil {
			t.Fatal(err)
		}
		return m.Code.String() + ": " + m.Message
	}
	return typ.String() + ": " + string(p)
}

// A CANCEL that overtakes its CALL (they travel on different sockets)
// cancels the call as it starts.
func TestRunnerLaneCancelBeforeCallCancelsIt(t *testing.T) {
	ln, c := serveTestLane(t)
	ln.cancelCall(1)
	laneCall(t, c, false)
	if got := laneReply(t, c); !strings.HasPrefix(got, "canceled:") {
		t.Fatalf("reply = %q; want the call canceled", got)
	}
	laneCall(t, c, false) // call 2 is not touched
	if got := laneReply(t, c); got != `RESULT: "ran"` {
		t.Fatalf("second call: %q", got)
	}
}

// A CANCEL that comes late, after its call's reply, does not touch the
// next call on the lane.
func TestRunnerLaneLateCancelSparesTheNextCall(t *testing.T) {
	ln, c := serveTestLane(t)
	laneCall(t, c, false)
	if got := laneReply(t, c); got != `RESULT: "ran"` {
		t.Fatalf("first call: %q", got)
	}
	laneCall(t, c, true)
	<-laneStarted
	ln.cancelCall(1) // late: call 1 is over
	laneRelease <- struct{}{}
	if got := laneReply(t, c); got != `RESULT: "ran"` {
		t.Fatalf("call 2 after call 1's late CANCEL: %q; want it to run uncancelled", got)
	}
	laneCall(t, c, true)
	<-laneStarted
	ln.cancelCall(3)
	if got := laneReply(t, c); !strings.HasPrefix(got, "canceled:") {
		t.Fatalf("call 3 cancelled while running: %q", got)
	}
}

// A lane carries CALLs only; anything else gets a protocol error and the
// lane is closed.
func TestRunnerLaneRefusesOtherFrames(t *testing.T) {
	_, c := serveTestLane(t)
	if _, err := c.Write(wire.AppendFrame(nil, wire.Ready, nil)); err != nil {
		t.Fatal(err)
	}
	if got := laneReply(t, c); !strings.HasPrefix(got, "protocol:") {
		t.Fatalf("reply to READY on a lane = %q", got)
	}
	if _, _, err := wire.ReadFrame(c, 64); !errors.Is(err, io.EOF) {
		t.Fatalf("lane after a protocol error: %v; want it closed", err)
	}
}

// A lane that ends means the runner is going down (ErrRunnerDown, once
// the node says why); any other failure is the call's own error, at once.
func TestLaneFailureIsRunnerDownOnlyWhenTheConnectionIsGone(t *testing.T) {
	n := &processNode{id: 4, pid: 99, done: make(chan struct{})}
	n.reason = &runnerLostError{id: 4, pid: 99, state: "signal: killed"}
	close(n.done)
	for _, err := range []error{io.EOF, io.ErrUnexpectedEOF, syscall.EPIPE, syscall.ECONNRESET, net.ErrClosed, errNodeDown} {
		if got := n.laneFailed("reading the reply", err); !errors.Is(got, ErrRunnerDown) || !strings.Contains(got.Error(), "signal: killed") {
			t.Errorf("lane failure %v -> %v; want ErrRunnerDown saying why", err, got)
		}
	}
	for _, err := range []error{syscall.EMFILE, wire.ErrMalformed, errors.New("odd")} {
		got := n.laneFailed("reading the reply", err)
		if errors.Is(got, ErrRunnerDown) || !errors.Is(got, err) || !strings.Contains(got.Error(), "runner 4: reading the reply") {
			t.Errorf("lane failure %v -> %v; want the call's own error, not ErrRunnerDown", err, got)
		}
	}
}

// The handshake reads HELLO, then READY, letting heartbeats through.
func TestHandshakeSkipsHeartbeatsBeforeReady(t *testing.T) {
	a, b, err := link.Pair()
	if err != nil {
		t.Fatal(err)
	}
	parent, err := link.FromFile(a, 0)
	if err != nil {
		t.Fatal(err)
	}
	runner, err := link.FromFile(b, 0)
	if err != nil {
		t.Fatal(err)
	}
	defer parent.Close()
	defer runner.Close()
	info := parentInfo{Build: buildID(), Registry: registryHash()}
	hello := wire.HelloMsg{Proto: wire.ProtocolVersion, Build: info.Build, Registry: info.Registry}
	for _, f := range [][]byte{wire.AppendHello(nil, hello), wire.AppendFrame(nil, wire.Ping, nil), wire.AppendFrame(nil, wire.Ready, nil)} {
		if err := runner.Write(f); err != nil {
			t.Fatal(err)
		}
	}
	n := &processNode{id: 1, ctrl: parent, exited: make(chan struct{})}
	if err := n.handshakeSync(info); err != nil {
		t.Fatalf("handshake with a PING before READY: %v", err)
	}
}
