package flame

import "syscall"

// sysProcAttr puts a runner in its own process group (so that it and what
// it starts can be signalled together, and a terminal's ^C reaches only
// the parent) and has Linux kill it when the thread that started it dies.
func sysProcAttr() *syscall.SysProcAttr {
	return &syscall.SysProcAttr{Setpgid: true, Pdeathsig: syscall.SIGKILL}
}
