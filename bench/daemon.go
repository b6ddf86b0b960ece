package main

import (
	"context"
	"fmt"
	"net"
	"os"
	"os/exec"
	"path/filepath"
	"strings"
	"time"
)

// target is one daemon under test: started by the harness from a binary
// (cmd), or already running at the given addresses.
type target struct {
	tcpAddr, httpAddr string
	pid               int // 0 if unknown

	cmd     *exec.Cmd
	exited  chan struct{} // closed when the spawned process has exited
	waitErr error         // valid once exited is closed
	logPath string
	keepLog bool
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

// startDaemon starts binary on free loopback ports and waits until it
// answers /ping. Its output goes to a log file: in logDir (kept) if given,
// named by tag and the binary, otherwise a temporary file removed by stop
// unless the run failed.
func startDaemon(ctx context.Context, binary, tag string, extra []string, logDir string, timeout time.Duration) (*target, error) {
	addrs, err := freeAddrs(2)
	if err != nil {
		return nil, err
	}
	t := &target{tcpAddr: addrs[0], httpAddr: addrs[1], exited: make(chan struct{})}
	var logFile *os.File
	if t.keepLog = logDir != ""; t.keepLog {
		logFile, err = os.Create(filepath.Join(logDir, fmt.Sprintf("%s-%s.log", tag, filepath.Base(binary))))
	} else {
		logFile, err = os.CreateTemp("", "bench-nsqlookupd-*.log")
	}
	if err != nil {
		return nil, fmt.Errorf("daemon log: %w", err)
	}
	t.logPath = logFile.Name()
	defer logFile.Close() // the child keeps its own descriptor
	t.cmd = exec.Command(binary, append([]string{"--tcp-address=" + t.tcpAddr, "--http-address=" + t.httpAddr,
		"--broadcast-address=127.0.0.1"}, extra...)...)
	t.cmd.Stdout, t.cmd.Stderr, t.cmd.SysProcAttr = logFile, logFile, daemonSysProcAttr()
	if err := t.cmd.Start(); err != nil {
		return nil, fmt.Errorf("starting %s: %w", binary, err)
	}
	t.pid = t.cmd.Process.Pid
	go func() {
		t.waitErr = t.cmd.Wait()
		close(t.exited)
	}()
	h := newHTTPClient(t.httpAddr, 1, time.Second)
	defer h.close()
	if err := waitPing(ctx, h, timeout, t.exited); err != nil {
		tail := t.logTail()
		t.keepLog = tail != "" // keep a log worth reading
		t.stop()
		return nil, fmt.Errorf("%s: %w%s", binary, err, tail)
	}
	return t, nil
}

// hasFlag reports whether the -h output of binary lists the flag name.
func hasFlag(ctx context.Context, binary, name string) bool {
	ctx, cancel := context.WithTimeout(ctx, 10*time.Second)
	defer cancel()
	out, _ := exec.CommandContext(ctx, binary, "-h").CombinedOutput() // -h may exit 2
	for line := range strings.Lines(string(out)) {
		if f := strings.Fields(line); len(f) > 0 && strings.TrimLeft(f[0], "-") == name && strings.HasPrefix(f[0], "-") {
			return true
		}
	}
	return false
}

// alive reports an error if a spawned daemon has exited.
func (t *target) alive() error {
	if t.cmd == nil {
		return nil
	}
	select {
	case <-t.exited:
		return fmt.Errorf("daemon exited during the run (%v)%s", t.waitErr, t.logTail())
	default:
		return nil
	}
}

// stop kills a spawned daemon and waits for it. The temporary log is
// removed unless keepLog is set.
func (t *target) stop() {
	if t.cmd == nil {
		return
	}
	select {
	case <-t.exited:
	default:
		t.cmd.Process.Kill()
		<-t.exited
	}
	if !t.keepLog && t.logPath != "" {
		os.Remove(t.logPath)
	}
}

// logTail returns the end of the daemon's log for error messages.
func (t *target) logTail() string {
	if t.logPath == "" {
		return ""
	}
	data, err := os.ReadFile(t.logPath)
	if err != nil || len(data) == 0 {
		return ""
	}
	const max = 2000
	if len(data) > max {
		data = data[len(data)-max:]
	}
	return fmt.Sprintf("\ndaemon log %s (tail):\n%s", t.logPath, strings.TrimRight(string(data), "\n"))
}
