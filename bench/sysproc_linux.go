package main

import (
	"syscall"

	"github.com/prometheus/procfs"
)

// daemonSysProcAttr makes the kernel kill a spawned daemon if the harness
// dies without cleaning up (e.g. SIGKILL), so no daemon is left behind.
func daemonSysProcAttr() *syscall.SysProcAttr {
	return &syscall.SysProcAttr{Pdeathsig: syscall.SIGKILL}
}

// cpuModel returns the model name of the first CPU, or "".
func cpuModel() string {
	fs, err := procfs.NewDefaultFS()
	if err != nil {
		return ""
	}
	if info, err := fs.CPUInfo(); err == nil && len(info) > 0 {
		return info[0].ModelName
	}
	return ""
}
