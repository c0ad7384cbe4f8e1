//go:build unix

package flame

import (
	"fmt"
	"os"

	"github.com/goflame/goflame/flame/internal/link"
)

// serveChild serves as the runner of a ProcessBackend: the parent's
// connection is fd 3.
func serveChild(info parentInfo) int {
	f := os.NewFile(3, "flame-parent")
	if f == nil {
		fmt.Fprintln(os.Stderr, "flame: runner: no connection to the parent on fd 3")
		return exitSetup
	}
	ctrl, err := link.FromFile(f, 0)
	if err != nil {
		fmt.Fprintf(os.Stderr, "flame: runner: connection to the parent on fd 3: %v\n", err)
		return exitSetup
	}
	return serveSession(ctrl, info)
}
