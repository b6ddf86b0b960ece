package main

import "github.com/prometheus/procfs"

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
