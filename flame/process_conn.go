package flame

import (
	"errors"
	"net"
	"sync"
	"time"
)

// batchConn is the connection under a runner session. yamux writes every
// frame with one or two Writes from its send goroutine, each a system call
// that also wakes the peer. batchConn's Write only appends to a buffer; a
// flusher goroutine writes whatever has gathered with one call. Under load
// many frames share a system call and a wakeup; an idle connection costs
// one goroutine handoff per write.
//
// Ownership: buf, err and closed are guarded by mu; the flusher owns spare
// and the slice it is writing. Writes are ordered: yamux has one writer,
// and the flusher writes the buffer in order.
type batchConn struct {
	net.Conn
	mu      sync.Mutex
	room    sync.Cond // signalled when the flusher has taken the buffer
	buf     []byte    // written, not yet flushed
	spare   []byte    // the flusher's last buffer, for reuse (flusher only)
	err     error     // the first write error; later writes fail with it
	closed  bool
	kick    chan struct{} // wakes the flusher; capacity 1
	flushed chan struct{} // closed when the flusher has exited
}

// maxBatchBuffered bounds the bytes waiting for the flusher; a writer
// beyond it waits (back-pressure from a slow peer).
const maxBatchBuffered = 4 << 20

// maxSpare is the largest buffer the flusher keeps for reuse.
const maxSpare = 256 << 10

var errBatchClosed = errors.New("flame: connection closed")

func newBatchConn(c net.Conn) *batchConn {
	b := &batchConn{Conn: c, kick: make(chan struct{}, 1), flushed: make(chan struct{})}
	b.room.L = &b.mu
	go b.flush()
	return b
}

func (b *batchConn) Write(p []byte) (int, error) {
	b.mu.Lock()
	for len(b.buf) >= maxBatchBuffered && b.err == nil && !b.closed {
		b.room.Wait()
	}
	if b.err != nil || b.closed {
		err := b.err
		b.mu.Unlock()
		if err == nil {
			err = errBatchClosed
		}
		return 0, err
	}
	b.buf = append(b.buf, p...)
	b.mu.Unlock()
	select {
	case b.kick <- struct{}{}:
	default: // the flusher is already due to run
	}
	return len(p), nil
}

// flush writes out what Write gathered until the connection is closed
// and drained, or a write fails (which closes it, so the session notices).
func (b *batchConn) flush() {
	defer close(b.flushed)
	for range b.kick {
		for {
			b.mu.Lock()
			if len(b.buf) == 0 {
				closed := b.closed
				b.mu.Unlock()
				if closed {
					return
				}
				break
			}
			out := b.buf
			b.buf = b.spare[:0]
			b.room.Broadcast()
			b.mu.Unlock()
			_, err := b.Conn.Write(out)
			if cap(out) <= maxSpare {
				b.spare = out
			} else {
				b.spare = nil // do not keep a large message's buffer
			}
			if err != nil {
				b.mu.Lock()
				b.err = err
				b.buf = nil
				b.room.Broadcast()
				b.mu.Unlock()
				b.Conn.Close()
				return
			}
		}
	}
}

// closeFlushWait bounds how long Close waits for buffered bytes to go out.
const closeFlushWait = time.Second

// Close stops taking writes, lets the flusher send what is buffered (up to
// closeFlushWait: a runner's last reply must not be lost to its exit), and
// closes the connection.
func (b *batchConn) Close() error {
	b.mu.Lock()
	if b.closed {
		b.mu.Unlock()
		return nil
	}
	b.closed = true
	b.room.Broadcast()
	b.mu.Unlock()
	select {
	case b.kick <- struct{}{}:
	default:
	}
	t := time.NewTimer(closeFlushWait)
	defer t.Stop()
	select {
	case <-b.flushed:
	case <-t.C:
	}
	err := b.Conn.Close() // unblocks a stuck write
	<-b.flushed
	return err
}
