//go:build linux

package flame

import (
	"bytes"
	"fmt"
	"os"
	"os/exec"
	"strings"
	"testing"
	"time"

	"github.com/stretchr/testify/assert"
	"github.com/stretchr/testify/require"
)

// Killing a runner kills what it started too: the signal goes to the
// runner's process group, so a grandchild does not outlive it.
func TestKillReachesTheRunnersProcessGroup(t *testing.T) {
	var logs syncBuffer
	cmd := exec.Command("sh", "-c", "sleep 60 & echo grandchild $!; wait")
	cmd.SysProcAttr = sysProcAttr()
	c, err := startChild(cmd, newTextLogger(&logs))
	require.NoError(t, err)
	var pid int
	require.Eventually(t, func() bool {
		_, err := fmt.Sscanf(logs.String()[max(0, strings.Index(logs.String(), "grandchild ")):], "grandchild %d", &pid)
		return err == nil
	}, 10*time.Second, 5*time.Millisecond)
	c.kill()
	assert.Eventually(t, func() bool { return !alive(pid) }, 10*time.Second, 5*time.Millisecond,
		"the runner's child %d outlived it", pid)
}

// alive reports whether process pid runs (a zombie does not).
func alive(pid int) bool {
	stat, err := os.ReadFile(fmt.Sprintf("/proc/%d/stat", pid))
	if err != nil {
		return false
	}
	fields := strings.Fields(string(stat[bytes.LastIndexByte(stat, ')')+1:]))
	return len(fields) > 0 && fields[0] != "Z"
}
