//go:build unix && !linux

package flame_test

import (
	"os"
	"os/exec"
	"strconv"
	"strings"
	"testing"
)

// What the process tests ask of the operating system, where there is no
// /proc: ps(1) and /dev/fd.

// children returns the child processes of this process and their states
// (ps's first state letter: R, S, Z, ...).
func children(parent int) map[int]string {
	out := map[int]string{}
	for pid, st := range psAll() {
		if st.ppid == parent {
			out[pid] = st.state
		}
	}
	return out
}

type stat struct {
	state string
	ppid  int
}

// procStat reads a process's state and parent; ok is false once it is gone.
func procStat(pid int) (stat, bool) {
	st, ok := psAll()[pid]
	return st, ok
}

func psAll() map[int]stat {
	b, err := exec.Command("ps", "-A", "-o", "pid=,ppid=,stat=").Output()
	out := map[int]stat{}
	if err != nil {
		return out
	}
	for _, line := range strings.Split(string(b), "\n") {
		f := strings.Fields(line)
		if len(f) < 3 {
			continue
		}
		pid, err1 := strconv.Atoi(f[0])
		ppid, err2 := strconv.Atoi(f[1])
		if err1 == nil && err2 == nil {
			out[pid] = stat{state: f[2][:1], ppid: ppid}
		}
	}
	return out
}

// openFDs is how many descriptors this process has open.
func openFDs(t *testing.T) int {
	t.Helper()
	ents, err := os.ReadDir("/dev/fd")
	if err != nil {
		t.Skipf("no /dev/fd: %v", err)
	}
	return len(ents)
}
