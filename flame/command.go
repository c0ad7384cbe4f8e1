//go:build unix

package flame

import (
	"context"
	"fmt"
	"os"
	"os/exec"
	"sync"
	"syscall"
	"time"
)

// CommandLauncher launches each runner by running a command line on this
// machine, with this process's environment plus Env plus the runner's:
// the program itself (the default), or one that starts it elsewhere, such
// as `ip netns exec h2 /path/app` or `ssh host-b /usr/local/bin/app`
// (ssh must pass FLAME_PARENT on: SendEnv, or put it on the remote
// command line). The command's stdout and stderr go to the pool's logger
// line by line. The runner is gone when the command exits; Remove sends
// the command's process group SIGTERM, then SIGKILL after a grace, and
// reaps it.
type CommandLauncher struct {
	// Path is the program to run; default: this program (os.Executable).
	Path string
	// Args are its arguments (after the program name).
	Args []string
	// Env is added to the environment ("KEY=value").
	Env []string
}

// Launch implements Launcher.
func (c CommandLauncher) Launch(ctx context.Context, spec LaunchSpec) (Instance, error) {
	path := c.Path
	if path == "" {
		exe, err := os.Executable()
		if err != nil {
			return nil, bootFailed(fmt.Errorf("flame: CommandLauncher: this program: %w", err))
		}
		path = exe
	}
	cmd := exec.Command(path, c.Args...)
	cmd.Env = append(append(ownEnv(), c.Env...), spec.Env...)
	cmd.SysProcAttr = sysProcAttr()
	child, err := startChild(cmd, spec.Logger)
	if err != nil {
		err = fmt.Errorf("flame: CommandLauncher: start %s: %w", path, err)
		if cannotExec(err) {
			err = bootFailed(err)
		}
		return nil, err
	}
	return &commandInstance{child: child}, nil
}

// commandInstance is a runner that a CommandLauncher started.
type commandInstance struct {
	child   *childProc
	release sync.Once // the output pipes
}

func (i *commandInstance) Gone() <-chan struct{} { return i.child.exited }

func (i *commandInstance) Err() error {
	select {
	case <-i.child.exited:
		return &exitError{state: i.child.exitState}
	default:
		return nil
	}
}

// Remove implements Instance: SIGTERM, then SIGKILL after termGrace (or at
// once when ctx ends first), and the command is reaped.
func (i *commandInstance) Remove(ctx context.Context) error {
	i.child.signal(syscall.SIGTERM)
	select {
	case <-i.child.exited:
	case <-ctx.Done():
		i.child.signal(syscall.SIGKILL)
	case <-time.After(termGrace):
		i.child.signal(syscall.SIGKILL)
	}
	<-i.child.exited
	i.release.Do(i.child.releaseOutput)
	return nil
}

// exitError is how a command ended, as its instance's reason.
type exitError struct{ state string }

func (e *exitError) Error() string { return e.state }
