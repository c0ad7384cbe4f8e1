package main

import (
	"encoding/binary"
	"fmt"
	"io"
	"net"
	"net/rpc"
	"os"
	"os/exec"
	"sync"
	"syscall"
)

// The baselines' children: this binary again, with payloadbench.child
// saying which server to run on the socket pairs it inherits (fd 3 on).
const (
	childEnv     = "PAYLOADBENCH_CHILD"
	childProcs   = 2 // children, as goflame-process has runners
	connsPerProc = callers / childProcs
)

// serveChild serves as a baseline's child if this process is one, and
// reports whether it was.
func serveChild() bool {
	role := os.Getenv(childEnv)
	if role == "" {
		return false
	}
	var wg sync.WaitGroup
	for i := range connsPerProc {
		c, err := net.FileConn(os.NewFile(uintptr(3+i), "conn"))
		check(err)
		wg.Go(func() {
			if role == "rpc" {
				srv := rpc.NewServer()
				check(srv.Register(new(Echo)))
				srv.ServeConn(c)
				return
			}
			rawEcho(c)
		})
	}
	wg.Wait()
	return true
}

// Echo is the net/rpc service.
type Echo struct{}

// Echo returns its argument.
func (Echo) Echo(args []byte, reply *[]byte) error {
	*reply = args
	return nil
}

// rawEcho echoes length-prefixed frames until the connection ends.
func rawEcho(c net.Conn) {
	var hdr [8]byte
	var buf []byte
	for {
		if _, err := io.ReadFull(c, hdr[:]); err != nil {
			return
		}
		n := int(binary.LittleEndian.Uint64(hdr[:]))
		if cap(buf) < n {
			buf = make([]byte, n)
		}
		buf = buf[:n]
		if _, err := io.ReadFull(c, buf); err != nil {
			return
		}
		bufs := net.Buffers{hdr[:], buf}
		if _, err := bufs.WriteTo(c); err != nil {
			return
		}
	}
}

// children starts the baseline's children and returns this side of every
// socket pair.
func children(role string) ([]net.Conn, func(), error) {
	exe, err := os.Executable()
	if err != nil {
		return nil, nil, err
	}
	var conns []net.Conn
	var cmds []*exec.Cmd
	closeAll := func() {
		for _, c := range conns {
			c.Close()
		}
		for _, cmd := range cmds {
			_ = cmd.Wait()
		}
	}
	for range childProcs {
		cmd := exec.Command(exe)
		cmd.Env = append(os.Environ(), childEnv+"="+role)
		cmd.Stderr = os.Stderr
		var theirs []*os.File
		for range connsPerProc {
			fds, err := syscall.Socketpair(syscall.AF_UNIX, syscall.SOCK_STREAM|syscall.SOCK_CLOEXEC, 0)
			if err != nil {
				closeAll()
				return nil, nil, err
			}
			mine := os.NewFile(uintptr(fds[0]), "mine")
			c, err := net.FileConn(mine)
			mine.Close()
			if err != nil {
				closeAll()
				return nil, nil, err
			}
			conns = append(conns, c)
			theirs = append(theirs, os.NewFile(uintptr(fds[1]), "theirs"))
		}
		cmd.ExtraFiles = theirs
		err := cmd.Start()
		for _, f := range theirs {
			f.Close()
		}
		if err != nil {
			closeAll()
			return nil, nil, fmt.Errorf("starting a %s child: %w", role, err)
		}
		cmds = append(cmds, cmd)
	}
	return conns, closeAll, nil
}

// rawClients calls the raw echo children: each call takes a connection
// of its own.
func rawClients() (func([]byte) error, func(), error) {
	conns, closeAll, err := children("raw")
	if err != nil {
		return nil, nil, err
	}
	free := make(chan net.Conn, len(conns))
	for _, c := range conns {
		free <- c
	}
	bufs := sync.Pool{New: func() any { return new([]byte) }}
	return func(b []byte) error {
		c := <-free
		defer func() { free <- c }()
		var hdr [8]byte
		binary.LittleEndian.PutUint64(hdr[:], uint64(len(b)))
		out := net.Buffers{hdr[:], b}
		if _, err := out.WriteTo(c); err != nil {
			return err
		}
		if _, err := io.ReadFull(c, hdr[:]); err != nil {
			return err
		}
		bp := bufs.Get().(*[]byte)
		defer bufs.Put(bp)
		n := int(binary.LittleEndian.Uint64(hdr[:]))
		if cap(*bp) < n {
			*bp = make([]byte, n)
		}
		_, err := io.ReadFull(c, (*bp)[:n])
		return err
	}, closeAll, nil
}

// rpcClients calls the net/rpc children: each call takes a client (a
// connection) of its own.
func rpcClients() (func([]byte) error, func(), error) {
	conns, closeAll, err := children("rpc")
	if err != nil {
		return nil, nil, err
	}
	free := make(chan *rpc.Client, len(conns))
	for _, c := range conns {
		free <- rpc.NewClient(c)
	}
	return func(b []byte) error {
		c := <-free
		defer func() { free <- c }()
		var reply []byte
		if err := c.Call("Echo.Echo", b, &reply); err != nil {
			return err
		}
		if len(reply) != len(b) {
			return fmt.Errorf("echo of %d bytes came back with %d", len(b), len(reply))
		}
		return nil
	}, closeAll, nil
}
