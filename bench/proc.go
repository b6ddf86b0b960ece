package main

import (
	"errors"
	"os"

	"github.com/prometheus/procfs"
)

// CPU time and memory of the daemon and of the harness, read from /proc with
// procfs: Linux only. An unreadable /proc leaves the figures absent (nil).

// clockTicks is USER_HZ, the unit of CPU time in /proc (procfs assumes 100
// too): a phase that used less than one tick only has an upper bound.
const clockTicks = 100

// cpuSeconds returns the user+system CPU time process pid has used.
func cpuSeconds(pid int) (float64, error) {
	p, err := procfs.NewProc(pid)
	if err != nil {
		return 0, err
	}
	st, err := p.Stat()
	return st.CPUTime(), err
}

// systemBusySeconds returns the CPU time of all processes outside idle and
// iowait since boot, summed over CPUs (guest time is already in user).
func systemBusySeconds() (float64, error) {
	fs, err := procfs.NewDefaultFS()
	if err != nil {
		return 0, err
	}
	st, err := fs.Stat()
	c := st.CPUTotal
	return c.User + c.Nice + c.System + c.IRQ + c.SoftIRQ + c.Steal, err
}

// cpuMeter measures the CPU time used between start and stop by the daemon
// (pid) and, as noise, by all processes but the daemon and the harness.
type cpuMeter struct {
	pid   int
	start [3]float64 // the daemon, the harness, the whole system
	err   error
}

func readCPU(pid int) (v [3]float64, err error) {
	var errs [3]error
	v[0], errs[0] = cpuSeconds(pid)
	v[1], errs[1] = cpuSeconds(os.Getpid())
	v[2], errs[2] = systemBusySeconds()
	return v, errors.Join(errs[:]...)
}

func startCPU(pid int) cpuMeter {
	v, err := readCPU(pid)
	return cpuMeter{pid, v, err}
}

// stop returns the CPU seconds the daemon and the other processes used
// since start, both nil if unknown.
func (m cpuMeter) stop() (daemon, other *float64) {
	v, err := readCPU(m.pid)
	if err != nil || m.err != nil {
		return nil, nil
	}
	var d [3]float64
	for i := range v {
		d[i] = v[i] - m.start[i]
	}
	o := max(d[2]-d[0]-d[1], 0)
	return &d[0], &o
}
