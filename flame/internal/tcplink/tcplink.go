// Package tcplink is the transport between a goflame parent and a runner
// on another machine: connections the runner dials to its parent (TLS,
// set up by the caller), one for control and one for each lane. The runner
// dials a lane back when the parent announces it with a LANE frame, and
// the parent hands the connection, once authenticated, to the call that
// waits for it. Security (TLS, the launch token, the lane secret) is the
// caller's: this package moves frames and lanes (package session speaks
// over it).
package tcplink

import (
	"bufio"
	"errors"
	"fmt"
	"net"
	"sync"
	"sync/atomic"
	"time"

	"github.com/goflame/goflame/flame/internal/wire"
)

// Conn is a framed connection: a control connection, on either side. Any
// number of goroutines may Write at once; one goroutine reads.
type Conn struct {
	c       net.Conn
	r       *bufio.Reader
	wmu     sync.Mutex
	timeout atomic.Int64 // ns; 0: no limit
}

// NewConn frames c. r reads c and may hold bytes already read from it (nil:
// a fresh reader).
func NewConn(c net.Conn, r *bufio.Reader) *Conn {
	if r == nil {
		r = bufio.NewReader(c)
	}
	return &Conn{c: c, r: r}
}

func (c *Conn) deadline() time.Time {
	if d := time.Duration(c.timeout.Load()); d > 0 {
		return time.Now().Add(d)
	}
	return time.Time{}
}

// Write sends one whole frame.
func (c *Conn) Write(frame []byte) error {
	c.wmu.Lock()
	defer c.wmu.Unlock()
	_ = c.c.SetWriteDeadline(c.deadline())
	_, err := c.c.Write(frame)
	return err
}

// ReadFrame reads the next frame, whose payload is at most max bytes. No
// connection comes with a frame here. An error ends the connection.
func (c *Conn) ReadFrame(max int) (wire.Type, []byte, net.Conn, error) {
	_ = c.c.SetReadDeadline(c.deadline())
	t, p, err := wire.ReadFrame(c.r, max)
	if err != nil {
		c.c.Close()
		return 0, nil, nil, err
	}
	return t, p, nil, nil
}

// SetTimeout bounds each later read and write; 0: no limit.
func (c *Conn) SetTimeout(d time.Duration) { c.timeout.Store(int64(d)) }

// Close closes the connection.
func (c *Conn) Close() error { return c.c.Close() }

// ErrClosed: the transport is closed.
var ErrClosed = errors.New("tcplink: closed")

// Parent is the parent's side of the transport to one runner: the control
// connection, and the lanes the runner dials back.
//
// Ownership: waiting (lanes announced, not yet dialled back) and closed
// are guarded by mu.
type Parent struct {
	*Conn
	laneWait time.Duration // how long a lane may take to arrive

	mu      sync.Mutex
	waiting map[uint64]chan net.Conn
	closed  bool
}

// NewParent makes the parent's side over the runner's control connection.
// A lane the runner has not dialled back within laneWait fails.
func NewParent(c *Conn, laneWait time.Duration) *Parent {
	return &Parent{Conn: c, laneWait: laneWait, waiting: make(map[uint64]chan net.Conn)}
}

// OpenLane announces lane id (a LANE frame) and waits for the runner to
// dial it back.
func (p *Parent) OpenLane(id uint64) (net.Conn, error) {
	ch := make(chan net.Conn, 1)
	p.mu.Lock()
	if p.closed {
		p.mu.Unlock()
		return nil, ErrClosed
	}
	p.waiting[id] = ch
	p.mu.Unlock()
	defer func() {
		p.mu.Lock()
		delete(p.waiting, id)
		p.mu.Unlock()
	}()
	if err := p.Write(wire.AppendLane(nil, id)); err != nil {
		return nil, err
	}
	t := time.NewTimer(p.laneWait)
	defer t.Stop()
	select {
	case c := <-ch:
		if c == nil {
			return nil, ErrClosed
		}
		return c, nil
	case <-t.C:
		return nil, fmt.Errorf("tcplink: lane %d: the runner did not dial it back within %v", id, p.laneWait)
	}
}

// Deliver hands lane id, which the runner dialled back and the caller
// authenticated, to the call that waits for it. It reports false (and the
// caller closes c) when nobody waits for that lane.
func (p *Parent) Deliver(id uint64, c net.Conn) bool {
	p.mu.Lock()
	defer p.mu.Unlock()
	ch, ok := p.waiting[id]
	if !ok || p.closed {
		return false
	}
	delete(p.waiting, id)
	ch <- c
	return true
}

// Close closes the control connection; calls waiting for a lane fail.
func (p *Parent) Close() error {
	p.mu.Lock()
	if !p.closed {
		p.closed = true
		for id, ch := range p.waiting {
			delete(p.waiting, id)
			close(ch)
		}
	}
	p.mu.Unlock()
	return p.Conn.Close()
}

// Runner is the runner's side: the control connection, and a way to dial
// a lane back (dial makes an authenticated connection for lane id).
type Runner struct {
	*Conn
	dial func(lane uint64) (net.Conn, error)
}

// NewRunner makes the runner's side over its control connection.
func NewRunner(c *Conn, dial func(lane uint64) (net.Conn, error)) *Runner {
	return &Runner{Conn: c, dial: dial}
}

// Lane dials lane id back to the parent.
func (r *Runner) Lane(id uint64, conn net.Conn) (net.Conn, error) {
	if conn != nil {
		conn.Close() // nothing travels beside a frame over TCP
	}
	return r.dial(id)
}
