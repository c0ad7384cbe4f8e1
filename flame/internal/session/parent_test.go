package session

import (
	"bytes"
	"context"
	"errors"
	"fmt"
	"io"
	"sync"
	"syscall"
	"testing"
	"time"

	"github.com/stretchr/testify/assert"
	"github.com/stretchr/testify/require"

	"github.com/goflame/goflame/flame/internal/wire"
)

var testHello = wire.HelloMsg{Proto: wire.ProtocolVersion, Build: "go:test", Registry: "1:ab", PID: 42}

// noRelease adapts a handler whose results need no release.
func noRelease(h func(context.Context, wire.CallMsg) ([]byte, *wire.ErrorMsg)) func(context.Context, wire.CallMsg) ([]byte, func(), *wire.ErrorMsg) {
	return func(ctx context.Context, m wire.CallMsg) ([]byte, func(), *wire.ErrorMsg) {
		res, em := h(ctx, m)
		return res, nil, em
	}
}

// pair runs a runner's Serve on one end of an in-memory transport and
// Opens the parent's end; it returns the parent, the runner's outcome
// (once Serve returns) and its Term channel.
func pair(t *testing.T, handle func(context.Context, wire.CallMsg) ([]byte, *wire.ErrorMsg)) (*Parent, <-chan Outcome, chan struct{}) {
	t.Helper()
	return pairReleasing(t, noRelease(handle))
}

// pairReleasing is pair with a handler whose results may need a release.
func pairReleasing(t *testing.T, handle func(context.Context, wire.CallMsg) ([]byte, func(), *wire.ErrorMsg)) (*Parent, <-chan Outcome, chan struct{}) {
	t.Helper()
	pt, rt := memPair()
	term := make(chan struct{})
	out := make(chan Outcome, 1)
	go func() {
		out <- Serve(rt, ServeConfig{Runner: 1, Hello: testHello, KeepAlive: 50 * time.Millisecond, MaxMsg: 1 << 20, Handle: handle, Term: term, Grace: time.Second})
	}()
	p, err := Open(context.Background(), pt, ParentConfig{KeepAlive: 50 * time.Millisecond, MaxMsg: 1 << 20,
		Check: func(h wire.HelloMsg) error {
			if h != testHello {
				return fmt.Errorf("hello %+v", h)
			}
			return nil
		}})
	require.NoError(t, err)
	t.Cleanup(p.Close)
	return p, out, term
}

func noCancel(func()) func() bool { return func() bool { return false } }

func echo(_ context.Context, m wire.CallMsg) ([]byte, *wire.ErrorMsg) {
	if m.ID == "fail" {
		return nil, &wire.ErrorMsg{Code: wire.CodeHandler, Message: string(m.Args)}
	}
	return append([]byte(m.ID+":"), m.Args...), nil
}

// A session carries calls, results and errors, and reuses a lane once its
// call has had its reply.
func TestSessionCallsAndReusesLanes(t *testing.T) {
	p, _, _ := pair(t, echo)
	assert.Equal(t, testHello, p.Hello())
	for i := range 5 {
		res, em, err := p.Call(wire.CallMsg{ID: "echo", Args: []byte(fmt.Sprint(i))}, noCancel)
		require.NoError(t, err)
		require.Nil(t, em)
		assert.Equal(t, fmt.Sprintf("echo:%d", i), string(res))
	}
	_, em, err := p.Call(wire.CallMsg{ID: "fail", Args: []byte("disk full")}, noCancel)
	require.NoError(t, err)
	require.NotNil(t, em)
	assert.Equal(t, wire.ErrorMsg{Code: wire.CodeHandler, Message: "disk full"}, *em)
	p.laneMu.Lock()
	defer p.laneMu.Unlock()
	assert.Len(t, p.lanes, 1, "sequential calls share one lane")
}

// Cancelling a call sends CANCEL, which cancels the handler's ctx.
func TestSessionCancelReachesTheHandler(t *testing.T) {
	started := make(chan struct{})
	p, _, _ := pair(t, func(ctx context.Context, m wire.CallMsg) ([]byte, *wire.ErrorMsg) {
		close(started)
		<-ctx.Done()
		return nil, &wire.ErrorMsg{Code: wire.CodeCanceled, Message: ctx.Err().Error()}
	})
	_, em, err := p.Call(wire.CallMsg{ID: "block"}, func(send func()) func() bool {
		go func() {
			<-started
			send()
		}()
		return func() bool { return true }
	})
	require.NoError(t, err)
	require.NotNil(t, em)
	assert.Equal(t, wire.CodeCanceled, em.Code)
}

// SHUTDOWN lets the calls in flight finish, then the runner's Serve
// returns Stopped.
func TestSessionShutdownDrainsThenStops(t *testing.T) {
	release := make(chan struct{})
	started := make(chan struct{})
	p, out, _ := pair(t, func(ctx context.Context, m wire.CallMsg) ([]byte, *wire.ErrorMsg) {
		close(started)
		<-release
		return []byte("done"), nil
	})
	res := make(chan string, 1)
	go func() {
		b, _, _ := p.Call(wire.CallMsg{ID: "slow"}, noCancel)
		res <- string(b)
	}()
	<-started
	require.NoError(t, p.Shutdown())
	select {
	case o := <-out:
		require.FailNow(t, "Serve returned with a call in flight", "Serve returned %v", o)
	case <-time.After(100 * time.Millisecond):
	}
	close(release)
	assert.Equal(t, "done", <-res, "the call in flight finishes")
	assert.Equal(t, Stopped, <-out)
}

// Term stops the runner at once: calls are cancelled, and the parent sees
// the runner go (ErrLost), not a cancellation its caller never asked for.
func TestSessionTermCancelsCallsAndStops(t *testing.T) {
	started := make(chan struct{})
	p, out, term := pair(t, func(ctx context.Context, m wire.CallMsg) ([]byte, *wire.ErrorMsg) {
		close(started)
		<-ctx.Done()
		return nil, &wire.ErrorMsg{Code: wire.CodeCanceled, Message: context.Cause(ctx).Error()}
	})
	type reply struct {
		em  *wire.ErrorMsg
		err error
	}
	replies := make(chan reply, 1)
	go func() {
		_, em, err := p.Call(wire.CallMsg{ID: "block"}, noCancel)
		replies <- reply{em, err}
	}()
	<-started
	close(term)
	assert.Equal(t, Stopped, <-out)
	r := <-replies
	assert.Nil(t, r.em, "the runner replied to a call it cut short")
	assert.ErrorIs(t, r.err, ErrLost)
}

// The parent going away (its end closed, or silent past the keepalive
// timeout) ends the runner's session as Lost, with its calls cancelled.
func TestSessionRunnerSeesTheParentGo(t *testing.T) {
	cause := make(chan error, 1)
	started := make(chan struct{})
	p, out, _ := pair(t, func(ctx context.Context, m wire.CallMsg) ([]byte, *wire.ErrorMsg) {
		close(started)
		<-ctx.Done()
		cause <- context.Cause(ctx)
		return nil, nil
	})
	go func() { _, _, _ = p.Call(wire.CallMsg{ID: "block"}, noCancel) }()
	<-started
	p.Close()
	assert.Equal(t, Lost, <-out)
	assert.ErrorIs(t, <-cause, ErrParentLost)
}

// The runner going away ends the parent's session (Done), and a call on
// it fails with ErrLost.
func TestSessionParentSeesTheRunnerGo(t *testing.T) {
	p, _, term := pair(t, echo)
	close(term)
	select {
	case <-p.Done():
	case <-time.After(5 * time.Second):
		require.FailNow(t, "the parent's session did not end when the runner's did")
	}
	_, _, err := p.Call(wire.CallMsg{ID: "echo"}, noCancel)
	assert.ErrorIs(t, err, ErrLost)
}

// The handshake reads HELLO (which Check may refuse), then READY, letting
// heartbeats through; a runner may refuse instead of READY.
func TestOpenHandshake(t *testing.T) {
	run := func(frames ...[]byte) error {
		pt, rt := memPair()
		go func() {
			for _, f := range frames {
				if f == nil { // hang up
					rt.Close()
					return
				}
				if rt.Write(f) != nil {
					return
				}
			}
			_, _, _, _ = rt.ReadFrame(1 << 10) // wait for the parent to hang up
		}()
		p, err := Open(context.Background(), pt, ParentConfig{KeepAlive: time.Second, MaxMsg: 1 << 10,
			Check: func(h wire.HelloMsg) error {
				if h.Build != testHello.Build {
					return errors.New("other build")
				}
				return nil
			}})
		if err == nil {
			p.Close()
		}
		return err
	}
	hello := wire.AppendHello(nil, testHello)
	ping := wire.AppendFrame(nil, wire.Ping, nil)
	ready := wire.AppendFrame(nil, wire.Ready, nil)
	assert.NoError(t, run(hello, ping, ready), "a PING before READY")
	other := testHello
	other.Build = "go:other"
	assert.EqualError(t, run(wire.AppendHello(nil, other), ready), "other build")
	var refused *RefusedError
	err := run(hello, wire.AppendError(nil, wire.ErrorMsg{Code: wire.CodeVersionSkew, Message: "skew"}))
	require.ErrorAs(t, err, &refused)
	assert.Equal(t, wire.CodeVersionSkew, refused.Code)
	assert.ErrorIs(t, run(ready), ErrProtocol, "READY before HELLO")
	assert.ErrorIs(t, run(hello, nil), ErrLost, "the runner hangs up")
}

// Open is bounded by its ctx.
func TestOpenEndsWithItsCtx(t *testing.T) {
	pt, _ := memPair()
	ctx, cancel := context.WithTimeout(context.Background(), 50*time.Millisecond)
	defer cancel()
	_, err := Open(ctx, pt, ParentConfig{KeepAlive: time.Second, MaxMsg: 1 << 10})
	assert.ErrorIs(t, err, context.DeadlineExceeded)
}

// A lane failure is ErrLost only when the connection is gone; anything
// else is the call's own error.
func TestLaneFailureIsLostOnlyWhenTheConnectionIsGone(t *testing.T) {
	p := &Parent{}
	for _, err := range []error{io.EOF, io.ErrUnexpectedEOF, syscall.EPIPE, syscall.ECONNRESET, errClosed} {
		assert.ErrorIs(t, p.failed("reading the reply", err), ErrLost, "%v", err)
	}
	for _, err := range []error{syscall.EMFILE, wire.ErrMalformed, errors.New("odd")} {
		got := p.failed("reading the reply", err)
		assert.NotErrorIs(t, got, ErrLost, "%v", err)
		assert.ErrorIs(t, got, err)
	}
}

// A result's buffer is released once the result is sent, not before: the
// parent reads it whole, and the runner may then reuse the buffer.
func TestSessionReleasesAResultOnceSent(t *testing.T) {
	big := bytes.Repeat([]byte{5}, 100_000)
	released := make(chan struct{}, 1)
	p, _, _ := pairReleasing(t, func(context.Context, wire.CallMsg) ([]byte, func(), *wire.ErrorMsg) {
		buf := append([]byte(nil), big...)
		return buf, func() {
			clear(buf) // as the next encode into a reused buffer would
			released <- struct{}{}
		}, nil
	})
	res, em, err := p.Call(wire.CallMsg{ID: "big"}, noCancel)
	require.NoError(t, err)
	require.Nil(t, em)
	assert.True(t, bytes.Equal(big, res), "the result was reused before it was sent")
	<-released
}

// A refusal reads as one: the runner's reason, said to be a refusal.
func TestRefusedErrorSaysTheRunnerRefused(t *testing.T) {
	err := &RefusedError{Code: wire.CodeVersionSkew, Message: "parent and runner are different builds"}
	assert.Equal(t, "runner refused to start: parent and runner are different builds", err.Error())
}

// Lanes that finish their calls are kept for reuse up to maxIdleLanes; one
// more is closed, so a burst of concurrent calls leaves a bounded number of
// connections open.
func TestSessionKeepsAtMostMaxIdleLanes(t *testing.T) {
	release := make(chan struct{})
	var started sync.WaitGroup
	started.Add(maxIdleLanes + 1)
	p, _, _ := pair(t, func(ctx context.Context, m wire.CallMsg) ([]byte, *wire.ErrorMsg) {
		started.Done()
		<-release
		return nil, nil
	})
	var calls sync.WaitGroup
	for range maxIdleLanes + 1 {
		calls.Go(func() {
			_, _, err := p.Call(wire.CallMsg{ID: "hold"}, noCancel)
			assert.NoError(t, err)
		})
	}
	started.Wait() // every call runs, each on a lane of its own
	close(release)
	calls.Wait()
	p.laneMu.Lock()
	defer p.laneMu.Unlock()
	assert.Len(t, p.free, maxIdleLanes, "idle lanes kept")
	assert.Len(t, p.lanes, maxIdleLanes, "lanes open")
}

// A side gives the other up after three keepalive periods without a
// frame, and never sooner than a second (a short keepalive on a busy
// machine would otherwise drop live peers).
func TestKeepAliveTimeoutIsThreePeriodsAtLeastASecond(t *testing.T) {
	assert.Equal(t, 6*time.Second, KeepAliveTimeout(2*time.Second))
	assert.Equal(t, 45*time.Second, KeepAliveTimeout(15*time.Second))
	assert.Equal(t, time.Second, KeepAliveTimeout(100*time.Millisecond))
}
