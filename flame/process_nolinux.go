//go:build unix && !linux

package flame

import "syscall"

// sysProcAttr puts a runner in its own process group. Only Linux has a
// parent-death signal; elsewhere the socket's EOF and the keepalives end a
// runner whose parent is gone.
func sysProcAttr() *syscall.SysProcAttr {
	return &syscall.SysProcAttr{Setpgid: true}
}

// socketpair returns a connected pair of Unix stream sockets, both
// close-on-exec (a runner gets its end through ExtraFiles only). The fork
// lock keeps a concurrent fork from inheriting them in between.
func socketpair() ([2]int, error) {
	syscall.ForkLock.RLock()
	defer syscall.ForkLock.RUnlock()
	fds, err := syscall.Socketpair(syscall.AF_UNIX, syscall.SOCK_STREAM, 0)
	if err == nil {
		syscall.CloseOnExec(fds[0])
		syscall.CloseOnExec(fds[1])
	}
	return fds, err
}
