// Command launcher shows how to write a Launcher, the one thing a new
// platform needs for goflame's remote runners: start a runner with the
// environment the backend gives it, say when it is gone and why, and
// remove it. This one starts each runner as a local process; a launcher
// for a cloud VM API, Nomad or a fleet of SSH hosts has the same shape.
//
//	go run ./examples/launcher
package main

import (
	"context"
	"fmt"
	"log"
	"os"
	"os/exec"
	"sync"

	"github.com/goflame/goflame/flame"
)

// execLauncher starts each runner as a process of the program at path.
type execLauncher struct{ path string }

func (l execLauncher) Launch(ctx context.Context, spec flame.LaunchSpec) (flame.Instance, error) {
	cmd := exec.Command(l.path)
	cmd.Env = append(os.Environ(), spec.Env...) // spec.Env holds FLAME_PARENT: the runner dials back with it
	cmd.Stdout, cmd.Stderr = os.Stderr, os.Stderr
	if err := cmd.Start(); err != nil {
		return nil, fmt.Errorf("%w: %w", flame.ErrBootFailed, err) // retrying cannot fix a missing program
	}
	in := &execInstance{cmd: cmd, gone: make(chan struct{})}
	go func() {
		in.err = cmd.Wait() // the platform's reason: the exit status
		close(in.gone)
	}()
	return in, nil
}

// execInstance is one runner process.
type execInstance struct {
	cmd  *exec.Cmd
	gone chan struct{}
	err  error // written before gone is closed
	once sync.Once
}

func (in *execInstance) Gone() <-chan struct{} { return in.gone }

func (in *execInstance) Err() error {
	select {
	case <-in.gone:
		return in.err
	default:
		return nil
	}
}

func (in *execInstance) Remove(ctx context.Context) error {
	in.once.Do(func() { _ = in.cmd.Process.Kill() })
	select {
	case <-in.gone:
		return nil
	case <-ctx.Done():
		return ctx.Err()
	}
}

var greet = flame.Register("launcher.greet", func(ctx context.Context, name string) (string, error) {
	return fmt.Sprintf("hello, %s, from runner process %d", name, os.Getpid()), nil
})

func main() {
	flame.Main() // a runner started by the launcher serves here and exits

	exe, err := os.Executable()
	if err != nil {
		log.Fatal(err)
	}
	pool, err := flame.NewPool(flame.Config{Max: 2, Backend: &flame.RemoteBackend{Launcher: execLauncher{path: exe}}})
	if err != nil {
		log.Fatal(err)
	}
	defer pool.Close(context.Background())

	s, err := greet.Call(context.Background(), pool, "world") // over TCP and TLS, on loopback
	if err != nil {
		log.Fatal(err)
	}
	fmt.Println(s)
}
