package main

import (
	"os"

	"github.com/prometheus/procfs"
)

// CPU time and memory of the daemon and of the harness, read from /proc with
// procfs: Linux only. An unknown pid (0) or an unreadable /proc leaves the
// figures absent (nil).

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

// memKiB returns the resident set size of process pid and its peak (VmRSS
// and VmHWM), in KiB.
func memKiB(pid int) (rss, peak *uint64) {
	if pid <= 0 {
		return nil, nil
	}
	p, err := procfs.NewProc(pid)
	if err != nil {
		return nil, nil
	}
	st, err := p.NewStatus()
	if err != nil || st.VmRSS == 0 {
		return nil, nil
	}
	r, h := st.VmRSS>>10, st.VmHWM>>10
	return &r, &h
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
// (pid, 0 if unknown), by the harness and, as noise, by all other processes.
type cpuMeter struct {
	pid   int
	start [3]float64 // daemon, harness, the whole system
	ok    [3]bool
}

func readCPU(pid int) (v [3]float64, ok [3]bool) {
	var err [3]error
	if pid > 0 {
		v[0], err[0] = cpuSeconds(pid)
		ok[0] = err[0] == nil
	}
	v[1], err[1] = cpuSeconds(os.Getpid())
	v[2], err[2] = systemBusySeconds()
	ok[1], ok[2] = err[1] == nil, err[2] == nil
	return v, ok
}

func startCPU(pid int) cpuMeter {
	v, ok := readCPU(pid)
	return cpuMeter{pid, v, ok}
}

// stop returns the CPU seconds the daemon, the harness and the other
// processes used since start, each nil if unknown.
func (m cpuMeter) stop() (daemon, harness, other *float64) {
	v, ok := readCPU(m.pid)
	var d [3]*float64
	for i := range v {
		if ok[i] && m.ok[i] {
			x := v[i] - m.start[i]
			d[i] = &x
		}
	}
	if d[0] != nil && d[1] != nil && d[2] != nil {
		o := max(*d[2]-*d[0]-*d[1], 0)
		other = &o
	}
	return d[0], d[1], other
}
