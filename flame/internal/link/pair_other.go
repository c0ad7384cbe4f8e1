//go:build unix && !linux

package link

import "syscall"

// socketpair returns a connected pair of Unix stream sockets, both
// close-on-exec. The fork lock keeps a concurrent fork from inheriting
// them in between.
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
