//go:build !unix

package flame

import (
	"context"
	"errors"
	"fmt"
	"os"
)

var errNoProcessBackend = errors.New("flame: ProcessBackend needs a Unix system")

// Boot implements Backend; runner processes need a Unix system.
func (b ProcessBackend) Boot(ctx context.Context, spec RunnerSpec) (Node, error) {
	return nil, errNoProcessBackend
}

func serveChild(parentInfo) int {
	fmt.Fprintln(os.Stderr, errNoProcessBackend)
	return 2
}
