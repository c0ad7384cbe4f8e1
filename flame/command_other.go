//go:build !unix

package flame

import (
	"context"
	"errors"
)

// CommandLauncher launches runners by running a command line; it needs a
// Unix system.
type CommandLauncher struct {
	Path string
	Args []string
	Env  []string
}

// Launch implements Launcher; commands are launched on Unix systems only.
func (c CommandLauncher) Launch(context.Context, LaunchSpec) (Instance, error) {
	return nil, bootFailed(errors.New("flame: CommandLauncher needs a Unix system"))
}
