package session

import (
	"bufio"
	"fmt"
	"net"
	"sync"
	"time"

	"github.com/goflame/goflame/flame/internal/wire"
)

// memConn is one side of an in-memory transport for tests: the control
// connection is a net.Pipe; a lane is a net.Pipe whose runner end the
// parent leaves in a shared table beside its LANE frame, as a transport
// that cannot pass sockets would make the runner dial it.
type memConn struct {
	c  net.Conn
	r  *bufio.Reader
	wm sync.Mutex

	mu      sync.Mutex
	timeout time.Duration

	lanes *laneTable
}

type laneTable struct {
	mu    sync.Mutex
	ends  map[uint64]net.Conn
	cond  *sync.Cond
	count int // lanes opened
}

func memPair() (parent, runner *memConn) {
	a, b := net.Pipe()
	t := &laneTable{ends: map[uint64]net.Conn{}}
	t.cond = sync.NewCond(&t.mu)
	return &memConn{c: a, r: bufio.NewReader(a), lanes: t}, &memConn{c: b, r: bufio.NewReader(b), lanes: t}
}

func (m *memConn) deadline() time.Time {
	m.mu.Lock()
	defer m.mu.Unlock()
	if m.timeout == 0 {
		return time.Time{}
	}
	return time.Now().Add(m.timeout)
}

func (m *memConn) Write(frame []byte) error {
	m.wm.Lock()
	defer m.wm.Unlock()
	_ = m.c.SetWriteDeadline(m.deadline())
	_, err := m.c.Write(frame)
	return err
}

func (m *memConn) ReadFrame(max int) (wire.Type, []byte, net.Conn, error) {
	_ = m.c.SetReadDeadline(m.deadline())
	t, p, err := wire.ReadFrame(m.r, max)
	if err != nil {
		m.c.Close()
	}
	return t, p, nil, err
}

func (m *memConn) SetTimeout(d time.Duration) {
	m.mu.Lock()
	m.timeout = d
	m.mu.Unlock()
}

func (m *memConn) Close() error { return m.c.Close() }

func (m *memConn) OpenLane(id uint64) (net.Conn, error) {
	near, far := net.Pipe()
	m.lanes.mu.Lock()
	m.lanes.ends[id] = far
	m.lanes.count++
	m.lanes.mu.Unlock()
	if err := m.Write(wire.AppendLane(nil, id)); err != nil {
		near.Close()
		return nil, err
	}
	return near, nil
}

func (m *memConn) Lane(id uint64, conn net.Conn) (net.Conn, error) {
	m.lanes.mu.Lock()
	defer m.lanes.mu.Unlock()
	c, ok := m.lanes.ends[id]
	if !ok {
		return nil, fmt.Errorf("no lane %d", id)
	}
	delete(m.lanes.ends, id)
	return c, nil
}
