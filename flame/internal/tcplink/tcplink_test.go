package tcplink

import (
	"bufio"
	"net"
	"testing"
	"time"

	"github.com/stretchr/testify/assert"
	"github.com/stretchr/testify/require"

	"github.com/goflame/goflame/flame/internal/wire"
)

// A connection framed after its handshake keeps what the handshake's
// reader had already read past the handshake: the frames the peer sent
// right behind it are not lost. A nil reader is a fresh one.
func TestNewConnKeepsBytesItsReaderAlreadyHolds(t *testing.T) {
	near, far := net.Pipe()
	defer near.Close()
	defer far.Close()
	go func() {
		var frames []byte
		frames = wire.AppendFrame(frames, wire.Hello, []byte("hs"))
		frames = wire.AppendFrame(frames, wire.Ping, []byte("after"))
		_, _ = far.Write(frames) // one write: the handshake reader takes both
	}()
	br := bufio.NewReader(near)
	typ, p, err := wire.ReadFrame(br, 64) // the handshake
	require.NoError(t, err)
	require.Equal(t, wire.Hello, typ)
	require.Equal(t, "hs", string(p))

	c := NewConn(near, br)
	c.SetTimeout(10 * time.Second) // lost bytes fail, not hang
	typ, p, _, err = c.ReadFrame(64)
	require.NoError(t, err)
	assert.Equal(t, wire.Ping, typ)
	assert.Equal(t, "after", string(p))

	a, b := net.Pipe()
	defer a.Close()
	defer b.Close()
	go func() { _, _ = b.Write(wire.AppendFrame(nil, wire.Ping, []byte("x"))) }()
	typ, p, _, err = NewConn(a, nil).ReadFrame(64)
	require.NoError(t, err)
	assert.Equal(t, wire.Ping, typ)
	assert.Equal(t, "x", string(p))
}
