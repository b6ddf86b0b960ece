package nsqlookupd

import (
	"bufio"
	"errors"
	"io"
	"net"
	"strings"
	"sync"
	"syscall"
	"testing"
	"time"

	"github.com/lookupd/nsqlookupd/internal/lg"
	"github.com/lookupd/nsqlookupd/internal/test"
)

// Production faults (SPEC §6, "dead peers leave", "slow readers"): silent
// and dribbling producers, and peers that stop reading their answers.

// logLines is a Logger that keeps every line and passes it on to the test
// log.
type logLines struct {
	next  Logger
	mu    sync.Mutex
	lines []string
}

func newLogLines(tb testing.TB) *logLines {
	return &logLines{next: test.NewTestLogger(tb)}
}

func (l *logLines) Output(maxdepth int, s string) error {
	l.mu.Lock()
	l.lines = append(l.lines, s)
	l.mu.Unlock()
	return l.next.Output(maxdepth+1, s)
}

// find returns the first line holding every one of subs, or "".
func (l *logLines) find(subs ...string) string {
	l.mu.Lock()
	defer l.mu.Unlock()
next:
	for _, line := range l.lines {
		for _, s := range subs {
			if !strings.Contains(line, s) {
				continue next
			}
		}
		return line
	}
	return ""
}

// registered reports whether the producer with this TCP port is listed in
// /lookup?topic=, /nodes and /debug: "all", "none", or what differs.
func registered(t *testing.T, l *NSQLookupd, topic string, tcpPort int) string {
	t.Helper()
	var in []string
	if ports := lookupPorts(t, l, topic); len(ports) > 0 && containsInt(ports, tcpPort) {
		in = append(in, "/lookup")
	}
	var nodes nodesAnswer
	getJSON(t, l, "/nodes", &nodes)
	for _, n := range nodes.Producers {
		if n.TCPPort == tcpPort {
			in = append(in, "/nodes")
			break
		}
	}
	var debug map[string][]debugEntry
	getJSON(t, l, "/debug", &debug)
	inDebug := false
	for _, list := range debug {
		for _, e := range list {
			inDebug = inDebug || e.TCPPort == tcpPort
		}
	}
	if inDebug {
		in = append(in, "/debug")
	}
	switch len(in) {
	case 3:
		return "all"
	case 0:
		return "none"
	}
	return "only in " + strings.Join(in, ",")
}

func containsInt(s []int, v int) bool {
	for _, x := range s {
		if x == v {
			return true
		}
	}
	return false
}

// startWithClock starts a daemon whose clock is a fakeClock, with a
// producer read timeout of d and its log kept.
func startWithClock(t *testing.T, d time.Duration) (*NSQLookupd, *fakeClock, *logLines) {
	t.Helper()
	clk := newFakeClock()
	logs := newLogLines(t)
	l := startLookupdWith(t, func(o *Options) {
		o.Logger = logs
		o.ProducerReadTimeout = d
	}, func(l *NSQLookupd) { l.clock = clk })
	return l, clk, logs
}

// TestSilentProducerEvicted: an identified producer that sends nothing for
// the producer read timeout is closed and leaves /lookup, /nodes and
// /debug, with a WARN naming it; on the fake clock, at exactly the timeout
// after its last command, not a nanosecond before. A producer that PINGed
// meanwhile stays.
func TestSilentProducerEvicted(t *testing.T) {
	const timeout = 45 * time.Second // not the default: the option is used
	l, clk, logs := startWithClock(t, timeout)
	silent := connectProducer(t, l, 1, 11)
	silent.mustOK("REGISTER t c")
	live := connectProducer(t, l, 2, 12)
	live.mustOK("REGISTER t c")

	clk.Advance(timeout / 2)
	live.mustOK("PING")
	clk.Advance(timeout/2 - time.Nanosecond)
	if got := registered(t, l, "t", 1); got != "all" {
		t.Fatalf("1ns before the timeout: silent producer listed in %s; want all", got)
	}
	if n := l.evictions.Load(); n != 0 {
		t.Fatalf("1ns before the timeout: %d evictions; want 0", n)
	}

	clk.Advance(time.Nanosecond) // exactly the timeout since its REGISTER
	silent.expectClosed()
	test.Eventually(t, ioTimeout, func() bool { return registered(t, l, "t", 1) == "none" })
	if n := l.evictions.Load(); n != 1 {
		t.Fatalf("evictions: got %d; want 1", n)
	}
	peer := silent.conn.LocalAddr().String()
	if line := logs.find("WARNING: ", peer, "no command for 45s", "producer 127.0.0.1:1"); line == "" {
		t.Fatalf("no WARNING line naming %s and its eviction", peer)
	}
	// the producer that pinged is untouched
	if got := registered(t, l, "t", 2); got != "all" {
		t.Fatalf("live producer listed in %s; want all", got)
	}
	live.mustOK("PING")
}

// TestPingingProducerKept: a producer that PINGs within every timeout stays
// for many timeouts; once it stops, it is evicted.
func TestPingingProducerKept(t *testing.T) {
	const timeout = time.Minute
	l, clk, _ := startWithClock(t, timeout)
	p := connectProducer(t, l, 1, 11)
	p.mustOK("REGISTER t c")
	for i := 0; i < 20; i++ {
		clk.Advance(timeout - time.Millisecond)
		p.mustOK("PING")
	}
	if got := registered(t, l, "t", 1); got != "all" {
		t.Fatalf("after 20 timeouts of PINGs: listed in %s; want all", got)
	}
	if n := l.evictions.Load(); n != 0 {
		t.Fatalf("evictions: got %d; want 0", n)
	}
	clk.Advance(timeout)
	p.expectClosed()
	test.Eventually(t, ioTimeout, func() bool { return registered(t, l, "t", 1) == "none" })
}

// TestProducerReadTimeoutDisabled: with the timeout 0, no timer is armed and
// a silent producer stays.
func TestProducerReadTimeoutDisabled(t *testing.T) {
	l, clk, _ := startWithClock(t, 0)
	p := connectProducer(t, l, 1, 11)
	p.mustOK("REGISTER t c")
	if n := clk.Pending(); n != 1 {
		t.Fatalf("pending timers: got %d; want 1, the memory releaser's (none for eviction)", n)
	}
	clk.Advance(24 * time.Hour)
	p.mustOK("PING") // still connected
	if got := registered(t, l, "t", 1); got != "all" {
		t.Fatalf("listed in %s; want all", got)
	}
	if n := l.evictions.Load(); n != 0 {
		t.Fatalf("evictions: got %d; want 0", n)
	}
}

// serverConn returns the daemon's end of the registration connection whose
// client end is c, or nil once it has been closed.
func serverConn(l *NSQLookupd, c net.Conn) net.Conn {
	l.tcpServer.mu.Lock()
	defer l.tcpServer.mu.Unlock()
	for conn := range l.tcpServer.conns {
		if conn.RemoteAddr().String() == c.LocalAddr().String() {
			return conn
		}
	}
	return nil
}

// waitConsumed waits until the daemon has read everything sent on c (the
// kernel queues between are empty), or has closed it.
func waitConsumed(t *testing.T, l *NSQLookupd, c net.Conn) {
	t.Helper()
	test.Eventually(t, ioTimeout, func() bool {
		server := serverConn(l, c)
		return server == nil || socketQueue(c, false) == 0 && socketQueue(server, true) == 0
	})
}

// TestDribblingProducerEvicted: bytes that never complete a command do not
// keep a producer alive. Each byte is read by the daemon before the clock
// moves, so a daemon that counted any input as life would keep it.
func TestDribblingProducerEvicted(t *testing.T) {
	const timeout = time.Minute
	l, clk, _ := startWithClock(t, timeout)
	p := connectProducer(t, l, 1, 11)
	p.mustOK("REGISTER t c")
	for _, b := range "REGIST" {
		// a write error means the daemon has closed the connection
		p.conn.SetWriteDeadline(time.Now().Add(ioTimeout))
		p.conn.Write([]byte{byte(b)})
		waitConsumed(t, l, p.conn)
		clk.Advance(timeout / 3)
	}
	p.expectClosed()
	test.Eventually(t, ioTimeout, func() bool { return registered(t, l, "t", 1) == "none" })
	if n := l.evictions.Load(); n != 1 {
		t.Fatalf("evictions: got %d; want 1", n)
	}
}

// smallSendBuffers makes every connection a listener accepts have a send
// buffer of a few KiB (and no autotuning): a peer that stops reading then
// blocks the daemon's writes after kilobytes instead of the megabytes
// Linux's autotuned buffers take.
type smallSendBuffers struct{ net.Listener }

func (l smallSendBuffers) Accept() (net.Conn, error) {
	c, err := l.Listener.Accept()
	if tc, ok := c.(*net.TCPConn); ok {
		tc.SetWriteBuffer(4096)
	}
	return c, err
}

// dialSmallReceive connects to addr with a receive buffer of a few KiB.
func dialSmallReceive(t *testing.T, addr string) net.Conn {
	t.Helper()
	d := net.Dialer{Timeout: ioTimeout, Control: func(_, _ string, rc syscall.RawConn) error {
		var serr error
		err := rc.Control(func(fd uintptr) {
			serr = syscall.SetsockoptInt(int(fd), syscall.SOL_SOCKET, syscall.SO_RCVBUF, 4096)
		})
		return errors.Join(err, serr)
	}}
	conn, err := d.Dial("tcp", addr)
	if err != nil {
		t.Fatalf("dial: %s", err)
	}
	t.Cleanup(func() { conn.Close() })
	return conn
}

// TestStalledRegistrationReader: a producer that pipelines commands and
// never reads the answers is closed once a write of answers has waited the
// write timeout; the close is logged, the producer leaves, and another
// producer is not disturbed.
func TestStalledRegistrationReader(t *testing.T) {
	const writeTimeout = 200 * time.Millisecond
	logs := newLogLines(t)
	l := startLookupdWith(t, func(o *Options) { o.Logger = logs }, func(l *NSQLookupd) {
		l.tcpServer.writeTimeout = writeTimeout
		l.tcpListener = smallSendBuffers{l.tcpListener}
	})
	bystander := connectProducer(t, l, 2, 12)
	bystander.mustOK("REGISTER t c")

	conn := dialSmallReceive(t, l.RealTCPAddr().String())
	c := &tcpClient{tb: t, conn: conn, r: bufio.NewReader(conn)}
	c.write("  V1")
	if ans := c.identifyRaw(identifyBody(1, 11)); ans[0] != '{' {
		t.Fatalf("IDENTIFY answered %q", ans)
	}
	// Pipeline REGISTERs and never read: the daemon's answers fill both
	// socket buffers, then its write waits. Our writes end when the daemon
	// closes the connection (a reset: it leaves our commands unread).
	start := time.Now()
	sent := make(chan error, 1)
	go func() {
		batch := []byte(strings.Repeat("REGISTER t c\n", 1000))
		for {
			conn.SetWriteDeadline(time.Now().Add(10 * time.Second))
			if _, err := conn.Write(batch); err != nil {
				sent <- err
				return
			}
		}
	}()
	select {
	case err := <-sent:
		var ne net.Error
		if errors.As(err, &ne) && ne.Timeout() {
			t.Fatalf("our writes blocked for 10s: the daemon neither read nor closed the connection")
		}
		t.Logf("connection closed %s after the first command (writes ended with %v)", time.Since(start), err)
	case <-time.After(15 * time.Second):
		t.Fatal("the stalled connection was not closed within 15s")
	}
	test.Eventually(t, ioTimeout, func() bool { return registered(t, l, "t", 1) == "none" })
	if line := logs.find("ERROR: ", conn.LocalAddr().String(), "answers not taken within 200ms"); line == "" {
		t.Fatal("no ERROR line naming the peer and the write timeout")
	}
	if n := l.evictions.Load(); n != 0 {
		t.Fatalf("evictions: got %d; want 0 (a write timeout is not a silent peer)", n)
	}
	bystander.mustOK("PING")
	if got := registered(t, l, "t", 2); got != "all" {
		t.Fatalf("bystander listed in %s; want all", got)
	}
}

// BenchmarkPipelinedRegister times one pipelined REGISTER (of a
// registration already held, so the registry does little) over a real
// loopback connection, read and answered by the IO loop: the hot path that
// the eviction timer and the write deadline sit on. "off" has both off.
func BenchmarkPipelinedRegister(b *testing.B) {
	for _, bc := range []struct {
		name         string
		readTimeout  time.Duration
		writeTimeout time.Duration
	}{
		{"off", 0, 0},
		{"defaults", NewOptions().ProducerReadTimeout, answerWriteTimeout},
	} {
		b.Run(bc.name, func(b *testing.B) {
			l := startLookupdWith(b, func(o *Options) {
				o.Logger = lg.NilLogger{}
				o.ProducerReadTimeout = bc.readTimeout
			}, func(l *NSQLookupd) { l.tcpServer.writeTimeout = bc.writeTimeout })
			c := connectProducer(b, l, 1, 11)
			c.mustOK("REGISTER t c")
			const batch = 256
			lines := []byte(strings.Repeat("REGISTER t c\n", batch))
			answers := make([]byte, 6*batch)
			c.conn.SetDeadline(time.Time{})
			b.ReportAllocs()
			b.ResetTimer()
			errc := make(chan error, 1)
			go func() {
				for sent := 0; sent < b.N; sent += batch {
					if _, err := c.conn.Write(lines[:13*min(batch, b.N-sent)]); err != nil {
						errc <- err
						return
					}
				}
				errc <- nil
			}()
			for got := 0; got < b.N; got += batch {
				if _, err := io.ReadFull(c.r, answers[:6*min(batch, b.N-got)]); err != nil {
					b.Fatal(err)
				}
			}
			if err := <-errc; err != nil {
				b.Fatal(err)
			}
		})
	}
}
