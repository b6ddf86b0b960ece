package harness

import "syscall"

// daemonSysProcAttr makes the kernel kill a started daemon if its parent
// dies without cleaning up (e.g. SIGKILL), so no daemon is left behind.
func daemonSysProcAttr() *syscall.SysProcAttr {
	return &syscall.SysProcAttr{Pdeathsig: syscall.SIGKILL}
}
