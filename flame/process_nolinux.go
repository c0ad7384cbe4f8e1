//go:build unix && !linux

package flame

import "syscall"

// sysProcAttr puts a runner in its own process group. Only Linux has a
// parent-death signal; elsewhere the socket's EOF and the keepalives end a
// runner whose parent is gone.
func sysProcAttr() *syscall.SysProcAttr {
	return &syscall.SysProcAttr{Setpgid: true}
}
