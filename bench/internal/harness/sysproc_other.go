//go:build !linux

package harness

import "syscall"

func daemonSysProcAttr() *syscall.SysProcAttr { return nil }
