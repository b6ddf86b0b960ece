package interop

import (
	"net"
	"testing"
	"time"
)

// TestRestart: after the daemon is killed with SIGKILL and started again on
// the same ports, both nsqd notice (at their next 15 s heartbeat), reconnect
// and register everything again.
func TestRestart(t *testing.T) {
	t.Parallel()
	c := startCluster(t)
	d := c.lookupd

	d.kill()
	if st := d.state; st.Exited() || st.ExitCode() != -1 {
		t.Fatalf("after SIGKILL: %v, want killed by signal", st)
	}
	d.restart(t)
	// The fresh daemon knows nothing until nsqd reconnects; nsqd finds its
	// connection dead at one heartbeat and reconnects at the next: up to 30 s.
	c.waitRegistered(t, 45*time.Second)
}

// TestGracefulStop: SIGTERM with live nsqd connections makes the daemon exit
// 0 promptly and close both listeners.
func TestGracefulStop(t *testing.T) {
	t.Parallel()
	c := startCluster(t)
	d := c.lookupd

	st, err := d.terminate(5 * time.Second)
	if err != nil {
		t.Fatal(err)
	}
	if !st.Exited() || st.ExitCode() != 0 {
		t.Fatalf("after SIGTERM: %v, want exit status 0", st)
	}
	for _, addr := range []string{d.TCPAddr, d.HTTPAddr} {
		if conn, err := net.DialTimeout("tcp", addr, time.Second); err == nil {
			conn.Close()
			t.Errorf("%s still accepts connections after exit", addr)
		}
	}
}
