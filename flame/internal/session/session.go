// Package session is the protocol between a goflame parent and one of its
// runners, over any transport: the handshake (HELLO, READY), heartbeats in
// both directions, one lane per call in flight (CALL, then RESULT or
// ERROR), CANCEL, and SHUTDOWN. Open and Parent are the parent's side;
// Serve is the runner's.
//
// A transport is a control connection that carries frames (package wire)
// plus a way to make a new lane. For runners that are child processes it
// is a Unix socket pair, and a lane's socket travels over the control
// connection beside its LANE frame (package link); for runners on other
// machines it is a TLS connection the runner dialled, and the runner dials
// each lane back. The session does not care which: process management
// (starting, signalling and reaping a child, launching on a platform) and
// the transport's security are its callers' business.
//
// Why lanes rather than streams multiplexed over one connection: a lane is
// read by the goroutine that waits for the reply (parent) or runs the call
// (runner), so a round trip wakes one goroutine on each side, as a bare
// socket ping-pong does; a multiplexer adds a demultiplexing goroutine on
// each side.
package session

import (
	"errors"
	"net"
	"time"

	"github.com/goflame/goflame/flame/internal/wire"
)

// Control is a control connection. Any number of goroutines may Write at
// once; one goroutine reads.
type Control interface {
	// Write sends one whole frame.
	Write(frame []byte) error
	// ReadFrame reads the next frame, whose payload is at most max bytes.
	// For a LANE frame it may also return the lane's connection, which the
	// caller owns (transports that pass sockets do; others return nil). An
	// error ends the connection.
	ReadFrame(max int) (wire.Type, []byte, net.Conn, error)
	// SetTimeout bounds each later read (the peer's frames, heartbeats
	// included, must come at least this often) and write; 0: no limit.
	SetTimeout(d time.Duration)
	// Close closes the connection; a blocked read returns an error.
	Close() error
}

// ParentTransport is the parent's side of a transport.
type ParentTransport interface {
	Control
	// OpenLane makes lane id: it tells the runner (a LANE frame on the
	// control connection) and returns the parent's end of the lane.
	OpenLane(id uint64) (net.Conn, error)
}

// RunnerTransport is the runner's side of a transport.
type RunnerTransport interface {
	Control
	// Lane returns the runner's end of lane id, which a LANE frame
	// announced; conn is what ReadFrame returned with it (nil if the
	// transport passes none, in which case Lane makes the connection).
	Lane(id uint64, conn net.Conn) (net.Conn, error)
}

// Errors of a session.
var (
	// ErrLost: the connection to the other side is gone (EOF, reset, closed,
	// or no frame within the keepalive timeout).
	ErrLost = errors.New("session: connection lost")
	// ErrProtocol: the other side sent a frame out of order.
	ErrProtocol = errors.New("session: protocol error")
)

// helloMax caps the frames of the control connection.
const helloMax = 64 << 10

// KeepAliveTimeout is how long a side waits for the other's next frame
// (it pings every keepalive period) or for room to write one before it
// gives the other up.
func KeepAliveTimeout(ka time.Duration) time.Duration { return max(3*ka, time.Second) }

var pingFrame = wire.AppendFrame(nil, wire.Ping, nil)

// heartbeat pings the other side every ka until stop is closed; a ping
// that cannot be written ends the connection.
func heartbeat(ctrl Control, ka time.Duration, stop <-chan struct{}) {
	t := time.NewTicker(ka)
	defer t.Stop()
	for {
		select {
		case <-stop:
			return
		case <-t.C:
			if err := ctrl.Write(pingFrame); err != nil {
				ctrl.Close()
				return
			}
		}
	}
}
