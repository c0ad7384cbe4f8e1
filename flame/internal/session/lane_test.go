package session

import (
	"context"
	"errors"
	"fmt"
	"net"
	"testing"
	"testing/synctest"
	"time"

	"github.com/stretchr/testify/assert"
	"github.com/stretchr/testify/require"

	"github.com/goflame/goflame/flame/internal/wire"
)

// laneOf serves one runner lane with handle over a pipe, and returns the
// runner, the lane, the parent's end and a channel closed when the lane's
// serve loop has returned.
func laneOf(t *testing.T, handle func(context.Context, wire.CallMsg) ([]byte, *wire.ErrorMsg)) (*runner, *runnerLane, net.Conn, <-chan struct{}) {
	t.Helper()
	r := &runner{cfg: ServeConfig{Runner: 1, MaxMsg: 1 << 20, Handle: noRelease(handle)}, lanes: make(map[uint64]*runnerLane)}
	r.ctx, r.cancel = context.WithCancelCause(context.Background())
	near, far := net.Pipe()
	ln := &runnerLane{r: r, id: 1, conn: far}
	r.lanes[1] = ln
	done := make(chan struct{})
	go func() { ln.serve(); close(done) }()
	t.Cleanup(func() { near.Close(); <-done; r.cancel(nil) })
	return r, ln, near, done
}

// A lane the parent closed leaves the runner's set of lanes, so that a
// long session does not keep one entry per lane it ever had; a lane that
// has been replaced under its ID leaves its successor alone.
func TestClosedLaneLeavesTheRunner(t *testing.T) {
	r, _, near, done := laneOf(t, echo)
	near.Close()
	<-done
	r.lanesMu.Lock()
	assert.Empty(t, r.lanes)
	r.lanesMu.Unlock()

	r, _, near, done = laneOf(t, echo)
	next := &runnerLane{r: r, id: 1}
	r.lanesMu.Lock()
	r.lanes[1] = next
	r.lanesMu.Unlock()
	near.Close()
	<-done
	r.lanesMu.Lock()
	defer r.lanesMu.Unlock()
	assert.Same(t, next, r.lanes[1], "the old lane removed its successor")
}

var errTerm = errors.New("terminating")

// A call the parent cancelled gets its reply even when the runner is going
// down at the same moment: the parent asked for the cancellation and waits
// to hear it, rather than hear that the runner went down.
func TestCallCanceledByTheParentIsAnsweredWhileTheRunnerGoesDown(t *testing.T) {
	started, release := make(chan struct{}), make(chan struct{})
	r, ln, near, _ := laneOf(t, func(ctx context.Context, m wire.CallMsg) ([]byte, *wire.ErrorMsg) {
		close(started)
		<-release // deaf to ctx until released
		return nil, &wire.ErrorMsg{Code: wire.CodeCanceled, Message: ctx.Err().Error()}
	})
	_, err := near.Write(wire.AppendCall(nil, wire.CallMsg{ID: "f"}))
	require.NoError(t, err)
	<-started
	ln.cancelCall(1)  // the parent's CANCEL
	r.cancel(errTerm) // and the runner is told to stop
	close(release)
	require.NoError(t, near.SetReadDeadline(time.Now().Add(10*time.Second))) // no reply at all fails, not hangs
	assert.Equal(t, "canceled: context canceled", laneReply(t, near))
}

// A runner that refuses says why, then waits for the parent to hang up
// (frames that still come are read and dropped), so that the parent gets
// to read the refusal; it returns Refused once the parent has gone.
func TestRefusingRunnerWaitsForTheParentToHangUp(t *testing.T) {
	synctest.Test(t, func(t *testing.T) {
		pt, rt := memPair()
		out := make(chan Outcome, 1)
		go func() {
			out <- Serve(rt, ServeConfig{Runner: 1, Hello: testHello, KeepAlive: time.Second, MaxMsg: 1 << 10,
				Refuse: errors.New("other build"), RefuseWait: time.Hour, Handle: noRelease(echo)})
		}()
		typ, _, _, err := pt.ReadFrame(1 << 10)
		require.NoError(t, err)
		require.Equal(t, wire.Hello, typ)
		typ, p, _, err := pt.ReadFrame(1 << 10)
		require.NoError(t, err)
		require.Equal(t, wire.Error, typ)
		em, err := wire.DecodeError(p)
		require.NoError(t, err)
		assert.Equal(t, wire.ErrorMsg{Code: wire.CodeVersionSkew, Message: "other build"}, em)

		require.NoError(t, pt.Write(wire.AppendFrame(nil, wire.Ping, nil)))
		synctest.Wait()
		select {
		case o := <-out:
			t.Fatalf("the runner returned %v before the parent hung up", o)
		default:
		}
		pt.Close()
		synctest.Wait()
		assert.Equal(t, Refused, <-out)
	})
}

// A frame that has no business on the control connection ends the session,
// and the runner reports it through Logf when it has one (and does without
// when it has none).
func TestProtocolErrorOnTheControlConnectionIsLogged(t *testing.T) {
	for _, withLog := range []bool{true, false} {
		pt, rt := memPair()
		var logged []string
		cfg := ServeConfig{Runner: 1, Hello: testHello, KeepAlive: time.Second, MaxMsg: 1 << 10, Handle: noRelease(echo), Grace: time.Second}
		if withLog {
			cfg.Logf = func(format string, args ...any) { logged = append(logged, fmt.Sprintf(format, args...)) }
		}
		out := make(chan Outcome, 1)
		go func() { out <- Serve(rt, cfg) }()
		for range 2 { // HELLO, READY
			_, _, _, err := pt.ReadFrame(1 << 10)
			require.NoError(t, err)
		}
		require.NoError(t, pt.Write(wire.AppendFrame(nil, wire.Result, nil)))
		assert.Equal(t, Lost, <-out, "with Logf: %v", withLog)
		if withLog {
			assert.Equal(t, []string{"protocol error: RESULT frame on the control connection"}, logged)
		}
		pt.Close()
	}
}
