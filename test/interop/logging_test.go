package interop

import (
	"io"
	"os"
	"syscall"
	"testing"
	"time"
)

// Logging as an operator meets it (docs/logging.md): the built binary
// writing into a pipe whose reader has gone.

const droppedLines = "nsqlookupd_log_lines_dropped_total"

// closedPipe returns the write end of a pipe, for a daemon's stdout and
// stderr, and a function that closes the read end: the log shipper exits.
// The test's copy of the write end is closed once the daemon has started.
func closedPipe(t *testing.T) (w *os.File, readerExits func()) {
	t.Helper()
	r, w, err := os.Pipe()
	if err != nil {
		t.Fatal(err)
	}
	t.Cleanup(func() { r.Close(); w.Close() })
	return w, func() { r.Close() }
}

// TestClosedLogPipe: with stdout and stderr a pipe whose reader has exited
// (`nsqlookupd 2>&1 | shipper`, the shipper gone), every log line fails
// with EPIPE. The daemon answers 1,000 requests and a real nsqd's
// registration all the same, counts the lines it could not write, and
// still stops cleanly on SIGTERM. nsqlookupd v1.3.0, run the same way,
// dies of SIGPIPE at its next line (a shell reports status 141).
func TestClosedLogPipe(t *testing.T) {
	t.Parallel()
	const topic = "after_the_pipe_closed"
	w, readerExits := closedPipe(t)
	d := startDaemonTo(t, w, lookupdBin, "--broadcast-address=127.0.0.1")
	w.Close()
	readerExits()

	for i := range 1000 {
		resp, err := httpClient.Get(d.url("/ping"))
		if err != nil {
			t.Fatalf("request %d after the log pipe closed: %v", i, err)
		}
		body, _ := io.ReadAll(resp.Body)
		resp.Body.Close()
		if resp.StatusCode != 200 || string(body) != "OK" {
			t.Fatalf("request %d: %s %q; want 200 OK", i, resp.Status, body)
		}
	}
	n := startNSQD(t, d.TCPAddr)
	n.publish(t, topic, "m")
	eventually(t, registerTimeout, func() (bool, string) {
		a, _, err := d.lookup(topic)
		if err != nil {
			return false, err.Error()
		}
		return producersAre(a.Producers, n)
	})
	// each request logged one line, each of which failed
	if got, err := metric(d, droppedLines); err != nil || got < 1000 {
		t.Fatalf("%s: got %v (%v); want at least 1000", droppedLines, got, err)
	}

	st, err := d.terminate(10 * time.Second)
	if err != nil {
		t.Fatal(err)
	}
	if !st.Exited() || st.ExitCode() != 0 {
		t.Fatalf("after SIGTERM: %v; want exit status 0", st)
	}
}

// TestClosedLogPipeV130 shows what the test above guards against: v1.3.0
// dies of SIGPIPE at the first line it logs into the closed pipe.
func TestClosedLogPipeV130(t *testing.T) {
	t.Parallel()
	w, readerExits := closedPipe(t)
	d := startDaemonTo(t, w, refBin, "--broadcast-address=127.0.0.1")
	w.Close()
	readerExits()

	if resp, err := httpClient.Get(d.url("/ping")); err == nil {
		resp.Body.Close() // the answer may or may not get out before the log line
	}
	select {
	case <-d.exited:
	case <-time.After(10 * time.Second):
		t.Fatal("v1.3.0 still running 10s after logging into a closed pipe; want killed by SIGPIPE")
	}
	ws, ok := d.state.Sys().(syscall.WaitStatus)
	if !ok || !ws.Signaled() || ws.Signal() != syscall.SIGPIPE {
		t.Fatalf("v1.3.0: %v; want killed by SIGPIPE", d.state)
	}
	t.Logf("v1.3.0: %v (a shell reports %d)", d.state, 128+int(syscall.SIGPIPE))
}
