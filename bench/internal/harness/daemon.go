// Package harness starts nsqlookupd-compatible daemons and speaks their
// registration protocol as an nsqd does, for the load harness (bench) and
// the fault scenarios (bench/scenario).
package harness

import (
	"context"
	"fmt"
	"io"
	"net"
	"net/http"
	"os"
	"os/exec"
	"strings"
	"time"

	"github.com/prometheus/procfs"
)

// Daemon is a binary started on free loopback ports.
type Daemon struct {
	TCPAddr, HTTPAddr string
	PID               int
	LogPath           string
	KeepLog           bool // Stop keeps the log at LogPath

	cmd     *exec.Cmd
	exited  chan struct{} // closed when the process has exited
	waitErr error         // valid once exited is closed
}

// freeAddrs returns n distinct free loopback addresses. Another process
// could take one before the daemon does; the wait for /ping would then
// fail clearly.
func freeAddrs(n int) ([]string, error) {
	var addrs []string
	for range n {
		l, err := net.Listen("tcp", "127.0.0.1:0")
		if err != nil {
			return nil, fmt.Errorf("picking ports: %w", err)
		}
		defer l.Close()
		addrs = append(addrs, l.Addr().String())
	}
	return addrs, nil
}

// Start starts binary with --broadcast-address=127.0.0.1 and extra on free
// loopback ports, its output in logPath (kept) or, if "", in a temporary
// file that Stop removes; it waits until the daemon answers /ping.
func Start(ctx context.Context, binary string, extra []string, logPath string, timeout time.Duration) (*Daemon, error) {
	addrs, err := freeAddrs(2)
	if err != nil {
		return nil, err
	}
	d := &Daemon{TCPAddr: addrs[0], HTTPAddr: addrs[1], exited: make(chan struct{}), KeepLog: logPath != ""}
	var logFile *os.File
	if d.KeepLog {
		logFile, err = os.Create(logPath)
	} else {
		logFile, err = os.CreateTemp("", "bench-nsqlookupd-*.log")
	}
	if err != nil {
		return nil, fmt.Errorf("daemon log: %w", err)
	}
	d.LogPath = logFile.Name()
	defer logFile.Close() // the child keeps its own descriptor
	d.cmd = exec.Command(binary, append([]string{"--tcp-address=" + d.TCPAddr, "--http-address=" + d.HTTPAddr,
		"--broadcast-address=127.0.0.1"}, extra...)...)
	d.cmd.Stdout, d.cmd.Stderr, d.cmd.SysProcAttr = logFile, logFile, daemonSysProcAttr()
	if err := d.cmd.Start(); err != nil {
		return nil, fmt.Errorf("starting %s: %w", binary, err)
	}
	d.PID = d.cmd.Process.Pid
	go func() {
		d.waitErr = d.cmd.Wait()
		close(d.exited)
	}()
	if err := d.waitPing(ctx, timeout); err != nil {
		tail := d.logTail()
		d.KeepLog = tail != "" // keep a log worth reading
		d.Stop()
		return nil, fmt.Errorf("%s: %w%s", binary, err, tail)
	}
	return d, nil
}

// waitPing polls GET /ping until it answers OK, timeout passes, or the
// daemon exits.
func (d *Daemon) waitPing(ctx context.Context, timeout time.Duration) error {
	ctx, cancel := context.WithTimeout(ctx, timeout)
	defer cancel()
	c := &http.Client{Timeout: time.Second}
	for {
		req, _ := http.NewRequestWithContext(ctx, http.MethodGet, "http://"+d.HTTPAddr+"/ping", nil)
		resp, last := c.Do(req)
		if last == nil {
			body, _ := io.ReadAll(io.LimitReader(resp.Body, 100))
			resp.Body.Close()
			if resp.StatusCode == http.StatusOK && string(body) == "OK" {
				return nil
			}
			last = fmt.Errorf("GET /ping: %d %q", resp.StatusCode, body)
		}
		select {
		case <-d.exited:
			return fmt.Errorf("daemon exited before answering /ping (last: %v)", last)
		case <-ctx.Done():
			return fmt.Errorf("no answer to /ping within %v (last: %v)", timeout, last)
		case <-time.After(20 * time.Millisecond):
		}
	}
}

// Alive reports an error if the daemon has exited.
func (d *Daemon) Alive() error {
	select {
	case <-d.exited:
		return fmt.Errorf("daemon exited during the run (%v)%s", d.waitErr, d.logTail())
	default:
		return nil
	}
}

// Stop kills the daemon and waits for it, and removes its log unless
// KeepLog is set.
func (d *Daemon) Stop() {
	select {
	case <-d.exited:
	default:
		d.cmd.Process.Kill()
		<-d.exited
	}
	if !d.KeepLog {
		os.Remove(d.LogPath)
	}
}

// logTail returns the end of the daemon's log for error messages.
func (d *Daemon) logTail() string {
	data, err := os.ReadFile(d.LogPath)
	if err != nil || len(data) == 0 {
		return ""
	}
	data = data[max(0, len(data)-2000):]
	return fmt.Sprintf("\ndaemon log %s (tail):\n%s", d.LogPath, strings.TrimRight(string(data), "\n"))
}

// MemKiB returns the resident set size of process pid and its peak (VmRSS
// and VmHWM) from /proc, in KiB; nil if unknown.
func MemKiB(pid int) (rss, peak *uint64) {
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
