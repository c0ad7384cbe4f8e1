package session

import (
	"context"
	"errors"
	"io"
	"net"
	"strings"
	"testing"

	"github.com/stretchr/testify/assert"
	"github.com/stretchr/testify/require"

	"github.com/goflame/goflame/flame/internal/wire"
)

// probe is a Handle for the lane tests: a CALL whose args are "wait"
// waits until released or cancelled; every call reports whether its ctx
// was cancelled.
type probe struct {
	release, started chan struct{}
}

func newProbe() *probe {
	return &probe{release: make(chan struct{}, 1), started: make(chan struct{}, 1)}
}

func (pr *probe) handle(ctx context.Context, m wire.CallMsg) ([]byte, *wire.ErrorMsg) {
	if string(m.Args) == "wait" {
		pr.started <- struct{}{}
		select {
		case <-ctx.Done():
		case <-pr.release:
		}
	}
	if ctx.Err() != nil {
		return nil, &wire.ErrorMsg{Code: wire.CodeCanceled, Message: ctx.Err().Error()}
	}
	return []byte("ran"), nil
}

// serveTestLane serves one runner lane over a pipe and returns the lane
// and the parent's end.
func serveTestLane(t *testing.T, pr *probe) (*runnerLane, net.Conn) {
	t.Helper()
	_, ln, near, _ := laneOf(t, pr.handle)
	return ln, near
}

func laneCall(t *testing.T, c net.Conn, wait bool) {
	t.Helper()
	args := "now"
	if wait {
		args = "wait"
	}
	_, err := c.Write(wire.AppendCall(nil, wire.CallMsg{ID: "probe", Args: []byte(args)}))
	require.NoError(t, err)
}

func laneReply(t *testing.T, c net.Conn) string {
	t.Helper()
	typ, p, err := wire.ReadFrame(c, 1<<20)
	require.NoError(t, err)
	if typ == wire.Error {
		m, err := wire.DecodeError(p)
		require.NoError(t, err)
		return m.Code.String() + ": " + m.Message
	}
	return typ.String() + ": " + string(p)
}

// A CANCEL that overtakes its CALL (they travel on different connections)
// cancels the call as it starts, and only that call.
func TestLaneCancelBeforeCallCancelsIt(t *testing.T) {
	ln, c := serveTestLane(t, newProbe())
	ln.cancelCall(1)
	laneCall(t, c, false)
	assert.True(t, strings.HasPrefix(laneReply(t, c), "canceled:"))
	laneCall(t, c, false) // call 2 is not touched
	assert.Equal(t, "RESULT: ran", laneReply(t, c))
}

// A CANCEL that comes late, after its call's reply, does not touch the
// next call on the lane; one for the running call cancels it.
func TestLaneLateCancelSparesTheNextCall(t *testing.T) {
	pr := newProbe()
	ln, c := serveTestLane(t, pr)
	laneCall(t, c, false)
	assert.Equal(t, "RESULT: ran", laneReply(t, c))
	laneCall(t, c, true)
	<-pr.started
	ln.cancelCall(1) // late: call 1 is over
	pr.release <- struct{}{}
	assert.Equal(t, "RESULT: ran", laneReply(t, c), "call 2 after call 1's late CANCEL")
	laneCall(t, c, true)
	<-pr.started
	ln.cancelCall(3)
	assert.True(t, strings.HasPrefix(laneReply(t, c), "canceled:"), "call 3 cancelled while running")
}

// A lane carries CALLs only; anything else gets a protocol error and the
// lane is closed.
func TestLaneRefusesOtherFrames(t *testing.T) {
	_, c := serveTestLane(t, newProbe())
	_, err := c.Write(wire.AppendFrame(nil, wire.Ready, nil))
	require.NoError(t, err)
	assert.True(t, strings.HasPrefix(laneReply(t, c), "protocol:"))
	_, _, err = wire.ReadFrame(c, 64)
	assert.ErrorIs(t, err, io.EOF, "the lane is closed after a protocol error")
}

// A CALL above the runner's limit gets a too-large error, and the lane,
// whose framing is lost, is closed.
func TestLaneRefusesAnOversizedCall(t *testing.T) {
	pr := newProbe()
	r := &runner{cfg: ServeConfig{Runner: 1, MaxMsg: 16, Handle: noRelease(pr.handle)}, lanes: make(map[uint64]*runnerLane)}
	r.ctx, r.cancel = context.WithCancelCause(context.Background())
	defer r.cancel(nil)
	near, far := net.Pipe()
	defer near.Close()
	ln := &runnerLane{r: r, id: 1, conn: far}
	go ln.serve()
	go func() { _, _ = near.Write(wire.AppendCall(nil, wire.CallMsg{ID: "probe", Args: make([]byte, 64)})) }()
	assert.True(t, strings.HasPrefix(laneReply(t, near), "too_large:"))
	_, _, err := wire.ReadFrame(near, 64)
	assert.True(t, errors.Is(err, io.EOF) || errors.Is(err, io.ErrClosedPipe))
}
