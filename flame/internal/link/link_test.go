//go:build unix

package link

import (
	"bytes"
	"errors"
	"fmt"
	"io"
	"net"
	"os"
	"syscall"
	"testing"
	"time"

	"github.com/goflame/goflame/flame/internal/wire"
)

// pair returns two Controls connected to each other.
func pair(t *testing.T) (a, b *Control) {
	t.Helper()
	fa, fb, err := Pair()
	if err != nil {
		t.Fatal(err)
	}
	a, err = FromFile(fa, 0)
	if err != nil {
		t.Fatal(err)
	}
	b, err = FromFile(fb, 0)
	if err != nil {
		t.Fatal(err)
	}
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
			if err := a.Write(wire.AppendFrame(nil, wire.Ping, []byte(fmt.Sprint(i)))); err != nil {
				t.Error(err)
				return
			}
			c, err := a.OpenLane(uint64(i + 1))
			if err != nil {
				t.Error(err)
				return
			}
			near = append(near, c)
		}
		a.Write(wire.AppendFrame(nil, wire.Shutdown, nil))
	}()
	var far []net.Conn
	for i := 0; ; i++ {
		typ, p, conn, err := b.ReadFrame(64)
		if err != nil {
			t.Fatal(err)
		}
		if typ == wire.Shutdown {
			break
		}
		if typ != wire.Ping || string(p) != fmt.Sprint(i) || conn != nil {
			t.Fatalf("frame %d: %s %q %v; want PING %d without a socket", i, typ, p, conn, i)
		}
		typ, p, conn, err = b.ReadFrame(64)
		if err != nil {
			t.Fatal(err)
		}
		id, derr := wire.DecodeLane(p)
		if typ != wire.Lane || derr != nil || id != uint64(i+1) || conn == nil {
			t.Fatalf("frame after PING %d: %s lane %d (%v), socket %v", i, typ, id, derr, conn)
		}
		far = append(far, conn)
	}
	<-sent
	if len(far) != lanes || len(near) != lanes {
		t.Fatalf("%d lanes received, %d opened; want %d", len(far), len(near), lanes)
	}
	// Each lane connects the two ends that carry its id, both ways.
	for i := range lanes {
		msg := []byte(fmt.Sprint("lane ", i+1))
		if _, err := near[i].Write(msg); err != nil {
			t.Fatal(err)
		}
		got := make([]byte, len(msg))
		if _, err := io.ReadFull(far[i], got); err != nil || !bytes.Equal(got, msg) {
			t.Fatalf("lane %d: far end read %q, %v", i+1, got, err)
		}
		if _, err := far[i].Write([]byte("ok")); err != nil {
			t.Fatal(err)
		}
		if _, err := io.ReadFull(near[i], got[:2]); err != nil || string(got[:2]) != "ok" {
			t.Fatalf("lane %d: near end read %q, %v", i+1, got[:2], err)
		}
		near[i].Close()
		far[i].Close()
	}
}

func TestLaneFrameWithoutSocketIsRefused(t *testing.T) {
	a, b := pair(t)
	if err := a.Write(wire.AppendLane(nil, 1)); err != nil {
		t.Fatal(err)
	}
	if _, _, _, err := b.ReadFrame(64); !errors.Is(err, ErrNoSocket) {
		t.Fatalf("ReadFrame = %v; want ErrNoSocket", err)
	}
	if _, _, _, err := b.ReadFrame(64); err == nil {
		t.Fatal("a read after an error succeeded")
	}
}

func TestOversizedFrameIsRefused(t *testing.T) {
	a, b := pair(t)
	if err := a.Write(wire.AppendFrame(nil, wire.Ping, make([]byte, 65))); err != nil {
		t.Fatal(err)
	}
	if _, _, _, err := b.ReadFrame(64); !errors.Is(err, wire.ErrTooLarge) {
		t.Fatalf("ReadFrame = %v; want ErrTooLarge", err)
	}
}

func TestFrameLargerThanTheBufferIsRead(t *testing.T) {
	a, b := pair(t)
	big := bytes.Repeat([]byte("x"), 100<<10)
	go a.Write(wire.AppendFrame(nil, wire.Hello, big))
	typ, p, _, err := b.ReadFrame(len(big))
	if err != nil || typ != wire.Hello || !bytes.Equal(p, big) {
		t.Fatalf("ReadFrame = %s, %d bytes, %v", typ, len(p), err)
	}
}

func TestPeerCloseIsEOF(t *testing.T) {
	a, b := pair(t)
	a.Close()
	if _, _, _, err := b.ReadFrame(64); !errors.Is(err, io.EOF) {
		t.Fatalf("ReadFrame after the peer closed = %v; want EOF", err)
	}
}

// A silent peer ends the connection after the timeout: this is how a
// runner notices a stopped parent and the parent a stopped runner.
func TestSilentPeerTimesOut(t *testing.T) {
	_, b := pair(t)
	b.SetTimeout(50 * time.Millisecond)
	_, _, _, err := b.ReadFrame(64)
	var ne net.Error
	if !errors.As(err, &ne) || !ne.Timeout() {
		t.Fatalf("ReadFrame from a silent peer = %v; want a timeout", err)
	}
}

// A socket that arrived but whose LANE frame was never read is closed
// with the connection: the peer's end of that lane sees EOF.
func TestCloseReleasesUnclaimedSockets(t *testing.T) {
	a, b := pair(t)
	if err := a.Write(wire.AppendFrame(nil, wire.Ping, nil)); err != nil {
		t.Fatal(err)
	}
	near, err := a.OpenLane(7)
	if err != nil {
		t.Fatal(err)
	}
	defer near.Close()
	// Read the PING; the lane's socket usually comes in the same read and
	// waits in the queue. Then make sure it did by reading until it is
	// queued or claimed.
	if typ, _, _, err := b.ReadFrame(64); err != nil || typ != wire.Ping {
		t.Fatalf("ReadFrame = %s, %v", typ, err)
	}
	if err := b.fill(wire.HeaderLen + 1); err != nil {
		t.Fatal(err)
	}
	b.mu.Lock()
	queued := len(b.fds)
	b.mu.Unlock()
	if queued != 1 {
		t.Fatalf("%d sockets queued after the LANE frame's bytes arrived; want 1", queued)
	}
	b.Close()
	near.SetReadDeadline(time.Now().Add(10 * time.Second))
	if _, err := near.Read(make([]byte, 1)); !errors.Is(err, io.EOF) {
		t.Fatalf("read on the lane after the receiver closed = %v; want EOF", err)
	}
}

func TestPairIsCloseOnExec(t *testing.T) {
	a, b, err := Pair()
	if err != nil {
		t.Fatal(err)
	}
	defer a.Close()
	defer b.Close()
	for _, f := range []*os.File{a, b} {
		if !closeOnExec(t, f) {
			t.Fatalf("%s is inherited by exec", f.Name())
		}
	}
}

func closeOnExec(t *testing.T, f *os.File) bool {
	t.Helper()
	flags, _, errno := syscall.Syscall(syscall.SYS_FCNTL, f.Fd(), syscall.F_GETFD, 0)
	if errno != 0 {
		t.Fatal(errno)
	}
	return flags&syscall.FD_CLOEXEC != 0
}
