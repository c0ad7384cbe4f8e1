package flame

import (
	"fmt"
	"os"
	"os/signal"
	"strings"
	"syscall"
	"time"

	"github.com/goflame/goflame/flame/internal/session"
	"github.com/goflame/goflame/flame/internal/wire"
)

// Runner exit codes.
const (
	exitOK    = 0 // asked to shut down (SHUTDOWN or SIGTERM)
	exitSetup = 2 // bad FLAME_PARENT, no connection, version skew
	exitLost  = 3 // the parent went away
	// runnerWait is how long a runner whose session ended without SHUTDOWN
	// gives its calls, cancelled, to return before it exits.
	runnerWait = 500 * time.Millisecond
	// refuseWait is how long a runner that refuses to serve waits for its
	// parent to read why and hang up.
	refuseWait = 5 * time.Second
)

// serveRunner runs this process as a runner and returns its exit code: the
// child of a ProcessBackend (its parent on fd 3), or a runner that dials
// its parent (RemoteBackend).
func serveRunner(env string) int {
	info, err := decodeParentInfo(env)
	if err != nil {
		fmt.Fprintf(os.Stderr, "flame: runner: %v\n", err)
		return exitSetup
	}
	if strings.HasPrefix(info.Conn, connTLS) {
		return serveRemote(info)
	}
	return serveChild(info)
}

// serveSession serves registered calls over a connected transport until
// the parent asks the runner to stop or is gone, and returns the exit code.
func serveSession(t session.RunnerTransport, info parentInfo) int {
	sig := make(chan os.Signal, 1)
	signal.Notify(sig, syscall.SIGTERM)
	defer signal.Stop(sig)
	term := make(chan struct{})
	go func() { // ends with the process
		<-sig
		close(term)
	}()
	hello := wire.HelloMsg{Proto: wire.ProtocolVersion, Build: buildID(), Registry: registryHash(), PID: os.Getpid()}
	switch session.Serve(t, session.ServeConfig{
		Runner:     info.Runner,
		Hello:      hello,
		Refuse:     checkHello(hello, info),
		RefuseWait: refuseWait,
		KeepAlive:  time.Duration(info.KeepAliveMS) * time.Millisecond,
		MaxMsg:     info.MaxMsg,
		Handle:     callHandler(info.Runner, info.MaxMsg),
		Term:       term,
		Grace:      runnerWait,
		Logf: func(format string, args ...any) {
			fmt.Fprintf(os.Stderr, "flame: runner %d: %s\n", info.Runner, fmt.Sprintf(format, args...))
		},
	}) {
	case session.Stopped:
		return exitOK
	case session.Refused:
		return exitSetup
	default:
		return exitLost
	}
}
