package main

import (
	"bufio"
	"bytes"
	"errors"
	"fmt"
	"os"
	"strconv"
	"strings"
)

// clockTicks is USER_HZ, the unit of utime/stime in /proc/PID/stat. It is 100
// on every mainstream Linux configuration; the standard library cannot ask
// sysconf(_SC_CLK_TCK), so it is fixed here.
const clockTicks = 100

// readCPUSeconds returns the user+system CPU time consumed so far by process
// pid, read from /proc/PID/stat.
func readCPUSeconds(pid int) (float64, error) {
	data, err := os.ReadFile(fmt.Sprintf("/proc/%d/stat", pid))
	if err != nil {
		return 0, err
	}
	utime, stime, err := parseStatCPU(data)
	if err != nil {
		return 0, err
	}
	return float64(utime+stime) / clockTicks, nil
}

// parseStatCPU extracts utime and stime (fields 14 and 15, in clock ticks) from
// the contents of /proc/PID/stat. The command name (field 2) is parenthesised
// and may itself contain spaces or parentheses, so fields are counted from the
// last ')'.
func parseStatCPU(data []byte) (utime, stime uint64, err error) {
	end := bytes.LastIndexByte(data, ')')
	if end < 0 {
		return 0, 0, errors.New("proc stat: no command name")
	}
	// After ") " come fields 3 (state), 4 (ppid), ...; utime is field 14.
	fields := strings.Fields(string(data[end+1:]))
	const utimeIdx, stimeIdx = 14 - 3, 15 - 3
	if len(fields) <= stimeIdx {
		return 0, 0, fmt.Errorf("proc stat: only %d fields after command", len(fields))
	}
	if utime, err = strconv.ParseUint(fields[utimeIdx], 10, 64); err != nil {
		return 0, 0, fmt.Errorf("proc stat: utime: %w", err)
	}
	if stime, err = strconv.ParseUint(fields[stimeIdx], 10, 64); err != nil {
		return 0, 0, fmt.Errorf("proc stat: stime: %w", err)
	}
	return utime, stime, nil
}

// readSystemBusySeconds returns the CPU time all processes have spent
// outside idle and iowait since boot, summed over CPUs, from /proc/stat.
func readSystemBusySeconds() (float64, error) {
	data, err := os.ReadFile("/proc/stat")
	if err != nil {
		return 0, err
	}
	ticks, err := parseProcStatBusy(data)
	return float64(ticks) / clockTicks, err
}

// parseProcStatBusy sums user, nice, system, irq, softirq and steal of the
// aggregate "cpu" line of /proc/stat (guest time is already in user).
func parseProcStatBusy(data []byte) (uint64, error) {
	line, _, _ := strings.Cut(string(data), "\n")
	f := strings.Fields(line)
	if len(f) < 9 || f[0] != "cpu" {
		return 0, fmt.Errorf("proc stat: unexpected first line %q", line)
	}
	var busy uint64
	for _, i := range []int{1, 2, 3, 6, 7, 8} { // user nice system _ _ irq softirq steal
		n, err := strconv.ParseUint(f[i], 10, 64)
		if err != nil {
			return 0, fmt.Errorf("proc stat: field %d: %w", i, err)
		}
		busy += n
	}
	return busy, nil
}

// noiseMeter measures the CPU time used by processes other than the daemon
// and the harness: load from elsewhere on the machine that skews results.
type noiseMeter struct {
	daemon, harness cpuMeter
	system          float64
	ok              bool
}

func startNoise(pid int) noiseMeter {
	sys, err := readSystemBusySeconds()
	return noiseMeter{daemon: startCPU(pid), harness: startCPU(os.Getpid()), system: sys, ok: err == nil && pid > 0}
}

// stop returns the other processes' CPU seconds since start, or nil.
func (m noiseMeter) stop() *float64 {
	if !m.ok {
		return nil
	}
	sys, err := readSystemBusySeconds()
	d, h := m.daemon.stop(), m.harness.stop()
	if err != nil || d == nil || h == nil {
		return nil
	}
	other := max(sys-m.system-*d-*h, 0)
	return &other
}

// memInfo is the resident set size of a process, in KiB.
type memInfo struct {
	RSSKiB  uint64 // VmRSS: current resident set size
	PeakKiB uint64 // VmHWM: peak resident set size
}

// readMem reads VmRSS and VmHWM from /proc/PID/status.
func readMem(pid int) (memInfo, error) {
	data, err := os.ReadFile(fmt.Sprintf("/proc/%d/status", pid))
	if err != nil {
		return memInfo{}, err
	}
	return parseStatusMem(data)
}

// parseStatusMem parses the VmRSS and VmHWM lines ("VmRSS:\t  1234 kB") of a
// /proc/PID/status file.
func parseStatusMem(data []byte) (memInfo, error) {
	var m memInfo
	var haveRSS bool
	sc := bufio.NewScanner(bytes.NewReader(data))
	for sc.Scan() {
		key, val, ok := strings.Cut(sc.Text(), ":")
		if !ok || (key != "VmRSS" && key != "VmHWM") {
			continue
		}
		f := strings.Fields(val)
		if len(f) != 2 || f[1] != "kB" {
			return memInfo{}, fmt.Errorf("proc status: malformed %s line %q", key, sc.Text())
		}
		n, err := strconv.ParseUint(f[0], 10, 64)
		if err != nil {
			return memInfo{}, fmt.Errorf("proc status: %s: %w", key, err)
		}
		if key == "VmRSS" {
			m.RSSKiB, haveRSS = n, true
		} else {
			m.PeakKiB = n
		}
	}
	if !haveRSS {
		return memInfo{}, errors.New("proc status: no VmRSS line (kernel thread or exited process?)")
	}
	return m, nil
}

// cpuModel returns the "model name" of the first CPU in /proc/cpuinfo, or "".
func cpuModel() string {
	data, err := os.ReadFile("/proc/cpuinfo")
	if err != nil {
		return ""
	}
	for line := range strings.Lines(string(data)) {
		if key, val, ok := strings.Cut(line, ":"); ok && strings.TrimSpace(key) == "model name" {
			return strings.TrimSpace(val)
		}
	}
	return ""
}

// cpuMeter measures the CPU time a process spends between start and stop. A
// zero pid (unknown process) or an unreadable /proc makes every reading absent.
type cpuMeter struct {
	pid   int
	start float64
	ok    bool
}

func startCPU(pid int) cpuMeter {
	if pid <= 0 {
		return cpuMeter{}
	}
	s, err := readCPUSeconds(pid)
	return cpuMeter{pid: pid, start: s, ok: err == nil}
}

// stop returns the CPU seconds used since start, or nil if unknown.
func (m cpuMeter) stop() *float64 {
	if !m.ok {
		return nil
	}
	s, err := readCPUSeconds(m.pid)
	if err != nil {
		return nil
	}
	d := s - m.start
	return &d
}
