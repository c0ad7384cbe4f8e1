package flame

import (
	"net"
	"sync/atomic"
	"testing"
	"testing/synctest"
	"time"

	"github.com/stretchr/testify/assert"
	"github.com/stretchr/testify/require"
)

// A runner that cannot reach its parent tries again after a pause that
// doubles from 50 ms up to a second, until its dial window ends: it does
// not hammer a parent that is still coming up.
func TestRunnerRetriesItsParentWithADoublingPause(t *testing.T) {
	addr, dials := hangUpParent(t)
	synctest.Test(t, func(t *testing.T) {
		info := parentInfo{Runner: 1, Conn: connTLS + addr, Fingerprint: "00", Token: ""}
		start := time.Now()
		_, err := dialParent(info, start.Add(3*time.Second))
		assert.Error(t, err)
		// Tries at 0, 50, 150, 350, 750 ms, 1.55 s and 2.55 s; the pause
		// after the last is cut to the window.
		assert.Equal(t, 3*time.Second, time.Since(start))
	})
	assert.Equal(t, int32(7), dials.Load())
}

// A lane that cannot reach the parent (a parent evicting stalled
// handshakes) is dialled again after a pause that doubles from 5 ms up to
// 200 ms, until laneDialTimeout would pass.
func TestLaneRetriesWithADoublingPause(t *testing.T) {
	addr, dials := hangUpParent(t)
	synctest.Test(t, func(t *testing.T) {
		start := time.Now()
		_, err := dialLane(addr, pinnedTLS(nil), 1, 1, [32]byte{})
		assert.Error(t, err)
		// Pauses of 5, 10, 20, 40, 80 and 160 ms, then of 200 ms while at
		// least that much of the 10 s is left: the last try is at 9.915 s.
		assert.Equal(t, 9915*time.Millisecond, time.Since(start))
	})
	assert.Equal(t, int32(7+48), dials.Load())
}

// A runner whose dial window has already ended says so.
func TestRunnerWithNoTimeLeftToDialSaysSo(t *testing.T) {
	_, err := dialParent(parentInfo{Conn: connTLS + "127.0.0.1:1"}, time.Now().Add(-time.Second))
	assert.EqualError(t, err, "no time left to dial")
}

// hangUpParent listens on loopback and hangs up on every connection,
// counting them. It runs outside any synctest bubble: its Accept waits on
// the network, which fake time does not.
func hangUpParent(t *testing.T) (string, *atomic.Int32) {
	ln, err := net.Listen("tcp", "127.0.0.1:0")
	require.NoError(t, err)
	t.Cleanup(func() { ln.Close() })
	dials := new(atomic.Int32)
	go func() {
		for {
			c, err := ln.Accept()
			if err != nil {
				return
			}
			dials.Add(1)
			c.Close()
		}
	}()
	return ln.Addr().String(), dials
}
