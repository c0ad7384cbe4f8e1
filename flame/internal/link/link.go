//go:build unix

// Package link is the Unix-socket transport between a goflame parent and a
// runner that is its child process: a control connection (one end of a
// socket pair, the runner's fd 3) that carries the session's frames
// (package session) and, beside each LANE frame, the socket of a new lane
// (passed with SCM_RIGHTS); each lane is a socket pair of its own. Passing
// sockets spares the runner any dialling: it is the fastest transport, and
// the one ProcessBackend uses.
package link

import (
	"errors"
	"fmt"
	"net"
	"os"
	"slices"
	"sync"
	"sync/atomic"
	"syscall"
	"time"

	"github.com/goflame/goflame/flame/internal/wire"
)

// ErrNoSocket: a LANE frame arrived without the socket it announces.
var ErrNoSocket = errors.New("link: LANE frame without its socket")

// maxFDsPerRead bounds the sockets one read can carry; a sender passes one
// per LANE frame, and a read rarely spans more than a few frames.
const maxFDsPerRead = 64

// Control is the control connection. Any number of goroutines may Write
// and OpenLane at once; one goroutine reads.
//
// Ownership: buf, r, w and oob belong to the reader; fds (sockets received
// and not yet claimed by their LANE frame) and closed are guarded by mu.
type Control struct {
	c       *net.UnixConn
	timeout atomic.Int64 // how long a read waits for the peer's next frame, and a write for room (ns); 0: no limit

	wmu sync.Mutex // one frame at a time

	buf  []byte // buf[r:w] is read, not yet parsed
	r, w int
	oob  []byte

	mu     sync.Mutex
	fds    []int
	closed bool
}

// New makes a Control of c. timeout bounds each read (the peer's frames,
// heartbeats included, must come at least this often) and each write; 0
// means no limit.
func New(c *net.UnixConn, timeout time.Duration) *Control {
	ctl := &Control{c: c, buf: make([]byte, 4096), oob: make([]byte, syscall.CmsgSpace(4*maxFDsPerRead))}
	ctl.timeout.Store(int64(timeout))
	return ctl
}

// SetTimeout changes the limit New set, for the reads and writes that
// start after it (a handshake may run without one, bounded by its own
// context, and then switch to the heartbeat's).
func (c *Control) SetTimeout(d time.Duration) { c.timeout.Store(int64(d)) }

// deadline is the deadline for an operation starting now, or the zero time.
func (c *Control) deadline() time.Time {
	if d := time.Duration(c.timeout.Load()); d > 0 {
		return time.Now().Add(d)
	}
	return time.Time{}
}

// FromFile makes a Control of an inherited Unix socket. f is closed (the
// Control holds a duplicate).
func FromFile(f *os.File, timeout time.Duration) (*Control, error) {
	c, err := net.FileConn(f)
	f.Close()
	if err != nil {
		return nil, err
	}
	uc, ok := c.(*net.UnixConn)
	if !ok {
		c.Close()
		return nil, fmt.Errorf("link: %T is not a Unix socket", c)
	}
	return New(uc, timeout), nil
}

// Pair returns the two ends of a new Unix stream socket pair, both close
// on exec (an end is handed to a child through exec.Cmd.ExtraFiles, which
// clears that for the child's copy only).
func Pair() (a, b *os.File, err error) {
	fds, err := socketpair()
	if err != nil {
		return nil, nil, fmt.Errorf("link: socketpair: %w", err)
	}
	return os.NewFile(uintptr(fds[0]), "flame-link"), os.NewFile(uintptr(fds[1]), "flame-link"), nil
}

// Write sends one whole frame.
func (c *Control) Write(frame []byte) error {
	c.wmu.Lock()
	defer c.wmu.Unlock()
	c.setWriteDeadline()
	_, err := c.c.Write(frame)
	return err
}

func (c *Control) setWriteDeadline() { _ = c.c.SetWriteDeadline(c.deadline()) }

// OpenLane makes a new lane: a socket pair whose far end goes to the peer
// beside a LANE frame naming it id. It returns the near end.
func (c *Control) OpenLane(id uint64) (net.Conn, error) {
	near, far, err := Pair()
	if err != nil {
		return nil, err
	}
	defer far.Close() // the peer has its own copy once sent
	conn, err := net.FileConn(near)
	near.Close()
	if err != nil {
		return nil, fmt.Errorf("link: lane %d: %w", id, err)
	}
	c.wmu.Lock()
	c.setWriteDeadline()
	_, _, err = c.c.WriteMsgUnix(wire.AppendLane(nil, id), syscall.UnixRights(int(far.Fd())), nil)
	c.wmu.Unlock()
	if err != nil {
		conn.Close()
		return nil, fmt.Errorf("link: lane %d: %w", id, err)
	}
	return conn, nil
}

// ReadFrame reads the next frame, whose payload is at most max bytes. For
// a LANE frame it also returns the lane's socket, which the caller owns.
// An error ends the connection: every later read fails.
func (c *Control) ReadFrame(max int) (wire.Type, []byte, net.Conn, error) {
	t, p, conn, err := c.readFrame(max)
	if err != nil {
		c.Close()
	}
	return t, p, conn, err
}

func (c *Control) readFrame(max int) (wire.Type, []byte, net.Conn, error) {
	if err := c.fill(wire.HeaderLen); err != nil {
		return 0, nil, nil, err
	}
	t, n, err := wire.ParseHeader([wire.HeaderLen]byte(c.buf[c.r:c.r+wire.HeaderLen]), max)
	if err != nil {
		return 0, nil, nil, err
	}
	if err := c.fill(wire.HeaderLen + n); err != nil {
		return 0, nil, nil, err
	}
	p := make([]byte, n)
	copy(p, c.buf[c.r+wire.HeaderLen:])
	c.r += wire.HeaderLen + n
	if t != wire.Lane {
		return t, p, nil, nil
	}
	fd, ok := c.claim()
	if !ok {
		return 0, nil, nil, ErrNoSocket
	}
	f := os.NewFile(uintptr(fd), "flame-lane")
	conn, err := net.FileConn(f)
	f.Close()
	if err != nil {
		return 0, nil, nil, fmt.Errorf("link: lane socket: %w", err)
	}
	return t, p, conn, nil
}

// fill reads until buf[r:w] holds at least n bytes, keeping the sockets
// that arrive.
func (c *Control) fill(n int) error {
	if c.w-c.r >= n {
		return nil
	}
	// Move the unparsed bytes to the front, with room for n in all.
	unparsed := c.buf[c.r:c.w]
	c.buf = slices.Grow(c.buf[:0], n)
	c.buf = c.buf[:cap(c.buf)]
	c.w = copy(c.buf, unparsed)
	c.r = 0
	for {
		_ = c.c.SetReadDeadline(c.deadline())
		// A stream socket's read of nothing is io.EOF, which ReadMsgUnix
		// reports itself; the buffer always has room here.
		k, oobn, flags, _, err := c.c.ReadMsgUnix(c.buf[c.w:], c.oob)
		c.keep(c.oob[:oobn])
		if err == nil && flags&syscall.MSG_CTRUNC != 0 {
			err = errors.New("link: too many sockets in one read")
		}
		if err != nil {
			return err
		}
		if c.w += k; c.w >= n {
			return nil
		}
	}
}

// keep queues the sockets in a read's control messages. The kernel builds
// them: one it cannot parse does not happen, and would leave its LANE
// frame without a socket (ErrNoSocket).
func (c *Control) keep(oob []byte) {
	msgs, _ := syscall.ParseSocketControlMessage(oob)
	if len(msgs) == 0 {
		return // most reads carry no socket: no lock for them
	}
	c.mu.Lock()
	defer c.mu.Unlock()
	for _, m := range msgs {
		fds, err := syscall.ParseUnixRights(&m)
		if err != nil {
			continue // not SCM_RIGHTS
		}
		for _, fd := range fds { // close-on-exec already: ReadMsgUnix sees to it
			if c.closed {
				syscall.Close(fd)
			} else {
				c.fds = append(c.fds, fd)
			}
		}
	}
}

// claim takes the oldest socket received and not yet claimed.
func (c *Control) claim() (fd int, ok bool) {
	c.mu.Lock()
	defer c.mu.Unlock()
	if len(c.fds) == 0 {
		return 0, false
	}
	fd = c.fds[0]
	c.fds = c.fds[1:]
	return fd, true
}

// Lane returns the runner's end of lane id: conn, the socket that came
// beside the LANE frame (ReadFrame refuses a LANE frame without one).
func (c *Control) Lane(id uint64, conn net.Conn) (net.Conn, error) {
	if conn == nil {
		return nil, fmt.Errorf("lane %d: %w", id, ErrNoSocket)
	}
	return conn, nil
}

// Close closes the connection and any socket received and not claimed. A
// blocked read returns an error.
func (c *Control) Close() error {
	c.mu.Lock()
	if c.closed {
		c.mu.Unlock()
		return nil
	}
	c.closed = true
	fds := c.fds
	c.fds = nil
	c.mu.Unlock()
	for _, fd := range fds {
		syscall.Close(fd)
	}
	return c.c.Close()
}
