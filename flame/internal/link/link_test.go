//go:build unix

package link

import (
	"bytes"
	"fmt"
	"io"
	"net"
	"os"
	"syscall"
	"testing"
	"time"

	"github.com/stretchr/testify/assert"
	"github.com/stretchr/testify/require"

	"github.com/goflame/goflame/flame/internal/wire"
)

// pair returns two Controls connected to each other.
func pair(t *testing.T) (a, b *Control) {
	t.Helper()
	fa, fb, err := Pair()
	require.NoError(t, err)
	a, err = FromFile(fa, 0)
	require.NoError(t, err)
	b, err = FromFile(fb, 0)
	require.NoError(t, err)
	t.Cleanup(func() { a.Close(); b.Close() })
	return a, b
}

func TestFramesAndLanesArriveInOrder(t *testing.T) {
	a, b := pair(t)
	const lanes = 200 // more sockets than one read can carry
	near := make([]net.Conn, 0, lanes)
	sent := make(chan struct{})
	go func() {
		defer close(sent)
		for i := range lanes {
			if err := a.Write(wire.AppendFrame(nil, wire.Ping, []byte(fmt.Sprint(i)))); !assert.NoError(t, err) {
				return
			}
			c, err := a.OpenLane(uint64(i + 1))
			if !assert.NoError(t, err) {
				return
			}
			near = append(near, c)
		}
		a.Write(wire.AppendFrame(nil, wire.Shutdown, nil))
	}()
	var far []net.Conn
	for i := 0; ; i++ {
		typ, p, conn, err := b.ReadFrame(64)
		require.NoError(t, err)
		if typ == wire.Shutdown {
			break
		}
		require.Equal(t, wire.Ping, typ, "frame %d: %s; want PING %d without a socket", i, typ, i)
		require.Equal(t, fmt.Sprint(i), string(p), "frame %d: want PING %d without a socket", i, i)
		require.Nil(t, conn, "frame %d: want PING %d without a socket", i, i)
		typ, p, conn, err = b.ReadFrame(64)
		require.NoError(t, err)
		id, derr := wire.DecodeLane(p)
		require.Equal(t, wire.Lane, typ, "frame after PING %d: %s", i, typ)
		require.NoError(t, derr, "frame after PING %d: lane id", i)
		require.Equal(t, uint64(i+1), id, "frame after PING %d: lane id", i)
		require.NotNil(t, conn, "frame after PING %d: socket", i)
		far = append(far, conn)
	}
	<-sent
	require.Len(t, far, lanes, "%d lanes received, %d opened; want %d", len(far), len(near), lanes)
	require.Len(t, near, lanes, "%d lanes received, %d opened; want %d", len(far), len(near), lanes)
	// Each lane connects the two ends that carry its id, both ways.
	for i := range lanes {
		msg := []byte(fmt.Sprint("lane ", i+1))
		_, err := near[i].Write(msg)
		require.NoError(t, err)
		got := make([]byte, len(msg))
		_, err = io.ReadFull(far[i], got)
		require.NoError(t, err, "lane %d: far end read %q", i+1, got)
		require.Equal(t, msg, got, "lane %d: far end read", i+1)
		_, err = far[i].Write([]byte("ok"))
		require.NoError(t, err)
		_, err = io.ReadFull(near[i], got[:2])
		require.NoError(t, err, "lane %d: near end read %q", i+1, got[:2])
		require.Equal(t, "ok", string(got[:2]), "lane %d: near end read", i+1)
		near[i].Close()
		far[i].Close()
	}
}

func TestLaneFrameWithoutSocketIsRefused(t *testing.T) {
	a, b := pair(t)
	require.NoError(t, a.Write(wire.AppendLane(nil, 1)))
	_, _, _, err := b.ReadFrame(64)
	require.ErrorIs(t, err, ErrNoSocket, "ReadFrame")
	_, _, _, err = b.ReadFrame(64)
	require.Error(t, err, "a read after an error succeeded")
}

func TestOversizedFrameIsRefused(t *testing.T) {
	a, b := pair(t)
	require.NoError(t, a.Write(wire.AppendFrame(nil, wire.Ping, make([]byte, 65))))
	_, _, _, err := b.ReadFrame(64)
	require.ErrorIs(t, err, wire.ErrTooLarge, "ReadFrame")
}

func TestFrameLargerThanTheBufferIsRead(t *testing.T) {
	a, b := pair(t)
	big := bytes.Repeat([]byte("x"), 100<<10)
	go a.Write(wire.AppendFrame(nil, wire.Hello, big))
	typ, p, _, err := b.ReadFrame(len(big))
	require.NoError(t, err, "ReadFrame = %s, %d bytes", typ, len(p))
	require.Equal(t, wire.Hello, typ, "ReadFrame = %s, %d bytes", typ, len(p))
	// bytes.Equal, not Equal: on a mismatch Equal would dump both 100 KiB payloads.
	require.True(t, bytes.Equal(p, big), "ReadFrame = %s, %d bytes, not the %d sent", typ, len(p), len(big))
}

func TestPeerCloseIsEOF(t *testing.T) {
	a, b := pair(t)
	a.Close()
	_, _, _, err := b.ReadFrame(64)
	require.ErrorIs(t, err, io.EOF, "ReadFrame after the peer closed")
}

// A silent peer ends the connection after the timeout: this is how a
// runner notices a stopped parent and the parent a stopped runner.
func TestSilentPeerTimesOut(t *testing.T) {
	_, b := pair(t)
	b.SetTimeout(50 * time.Millisecond)
	_, _, _, err := b.ReadFrame(64)
	var ne net.Error
	require.ErrorAs(t, err, &ne, "ReadFrame from a silent peer; want a timeout")
	require.True(t, ne.Timeout(), "ReadFrame from a silent peer = %v; want a timeout", err)
}

// A socket that arrived but whose LANE frame was never read is closed
// with the connection: the peer's end of that lane sees EOF.
func TestCloseReleasesUnclaimedSockets(t *testing.T) {
	a, b := pair(t)
	require.NoError(t, a.Write(wire.AppendFrame(nil, wire.Ping, nil)))
	near, err := a.OpenLane(7)
	require.NoError(t, err)
	defer near.Close()
	// Read the PING; the lane's socket usually comes in the same read and
	// waits in the queue. Then make sure it did by reading until it is
	// queued or claimed.
	typ, _, _, err := b.ReadFrame(64)
	require.NoError(t, err, "ReadFrame")
	require.Equal(t, wire.Ping, typ, "ReadFrame = %s", typ)
	require.NoError(t, b.fill(wire.HeaderLen+1))
	b.mu.Lock()
	queued := len(b.fds)
	b.mu.Unlock()
	require.Equal(t, 1, queued, "sockets queued after the LANE frame's bytes arrived")
	b.Close()
	near.SetReadDeadline(time.Now().Add(10 * time.Second))
	_, err = near.Read(make([]byte, 1))
	require.ErrorIs(t, err, io.EOF, "read on the lane after the receiver closed")
}

func TestPairIsCloseOnExec(t *testing.T) {
	a, b, err := Pair()
	require.NoError(t, err)
	defer a.Close()
	defer b.Close()
	for _, f := range []*os.File{a, b} {
		require.True(t, closeOnExec(t, f), "%s is inherited by exec", f.Name())
	}
}

func closeOnExec(t *testing.T, f *os.File) bool {
	t.Helper()
	flags, _, errno := syscall.Syscall(syscall.SYS_FCNTL, f.Fd(), syscall.F_GETFD, 0)
	require.Zero(t, errno, "fcntl(F_GETFD): %v", errno)
	return flags&syscall.FD_CLOEXEC != 0
}

// Lane refuses a LANE frame that came without its socket.
func TestLaneWithoutASocketIsErrNoSocket(t *testing.T) {
	a, _ := pair(t)
	_, err := a.Lane(7, nil)
	require.ErrorIs(t, err, ErrNoSocket)
	assert.Contains(t, err.Error(), "lane 7")
}

// A frame whose bytes are already buffered is returned without waiting for
// more: frames written back to back in one write are read one by one, and
// the last one does not wait for a byte that never comes.
func TestBufferedFramesAreReadWithoutWaiting(t *testing.T) {
	a, b := pair(t)
	var frames []byte
	for i := range 3 {
		frames = wire.AppendFrame(frames, wire.Ping, []byte(fmt.Sprint(i)))
	}
	require.NoError(t, a.Write(frames))
	b.SetTimeout(time.Second) // a read that waits for more fails
	for i := range 3 {
		typ, p, _, err := b.ReadFrame(64)
		require.NoError(t, err, "frame %d", i)
		assert.Equal(t, wire.Ping, typ)
		assert.Equal(t, fmt.Sprint(i), string(p))
	}
}

// A peer that sends more sockets in one message than a read takes (the
// protocol sends one per LANE frame) is refused, not half-served: the
// kernel would have dropped the sockets that did not fit.
func TestTooManySocketsInOneReadIsAnError(t *testing.T) {
	a, b := pair(t)
	var fds []int
	for range 2 * maxFDsPerRead {
		f, err := os.Open(os.DevNull)
		require.NoError(t, err)
		defer f.Close()
		fds = append(fds, int(f.Fd()))
	}
	_, _, err := a.c.WriteMsgUnix(wire.AppendFrame(nil, wire.Ping, nil), syscall.UnixRights(fds...), nil)
	require.NoError(t, err)
	_, _, _, err = b.ReadFrame(64)
	require.Error(t, err)
	assert.Contains(t, err.Error(), "too many sockets in one read")
}

// A frame split across writes, its header included, is read whole: the
// reader keeps the part it has, after a frame it already returned, and
// waits for the rest.
func TestFrameSplitAcrossWritesIsReadWhole(t *testing.T) {
	a, b := pair(t)
	first := wire.AppendFrame(nil, wire.Ping, []byte("one"))
	second := wire.AppendFrame(nil, wire.Hello, bytes.Repeat([]byte("2"), 5000))
	cut := wire.HeaderLen - 2
	require.NoError(t, a.Write(append(first, second[:cut]...)))
	typ, p, _, err := b.ReadFrame(1 << 20)
	require.NoError(t, err)
	assert.Equal(t, wire.Ping, typ)
	assert.Equal(t, "one", string(p))

	got := make(chan error, 1)
	go func() {
		typ, p, _, err := b.ReadFrame(1 << 20)
		if err == nil && (typ != wire.Hello || !bytes.Equal(p, second[wire.HeaderLen:])) {
			err = fmt.Errorf("read %s with %d bytes, not the HELLO frame sent", typ, len(p))
		}
		got <- err
	}()
	require.NoError(t, a.Write(second[cut:cut+100]))
	require.NoError(t, a.Write(second[cut+100:]))
	require.NoError(t, <-got)
}
