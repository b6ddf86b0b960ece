package nsqlookupd

import (
	"bufio"
	"bytes"
	"cmp"
	"encoding/binary"
	"errors"
	"fmt"
	"io"
	"net"
	"net/http"
	"runtime"
	"strconv"
	"strings"
	"syscall"
	"testing"
	"time"

	"github.com/lookupd/nsqlookupd/internal/lg"
	"github.com/lookupd/nsqlookupd/internal/test"
)

// TestSilentProducerEvicted: an identified producer that sends nothing for
// the producer read timeout is closed and leaves /lookup, /nodes and
// /debug, with a WARN naming it; on the fake clock, at exactly the timeout
// after its last command, not a nanosecond before. A producer that PINGed
// meanwhile stays.
func TestSilentProducerEvicted(t *testing.T) {
	t.Parallel()
	const timeout = 45 * time.Second // not the default: the option is used
	clk, logs := newFakeClock(), newLogLines(t)
	l := startLookupd(t, func(o *Options) { o.Logger = logs; o.ProducerReadTimeout = timeout }, clk.install)
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
	t.Parallel()
	const timeout = time.Minute
	clk := newFakeClock()
	l := startLookupd(t, func(o *Options) { o.ProducerReadTimeout = timeout }, clk.install)
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
	t.Parallel()
	clk := newFakeClock()
	l := startLookupd(t, func(o *Options) { o.ProducerReadTimeout = 0 }, clk.install)
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

// TestDribblingProducerEvicted: bytes that never complete a command do not
// keep a producer alive. Each byte is read by the daemon before the clock
// moves, so a daemon that counted any input as life would keep it.
func TestDribblingProducerEvicted(t *testing.T) {
	t.Parallel()
	const timeout = time.Minute
	clk := newFakeClock()
	l := startLookupd(t, func(o *Options) { o.ProducerReadTimeout = timeout }, clk.install)
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

// TestStalledRegistrationReader: a producer that pipelines commands and
// never reads the answers is closed once a write of answers has waited the
// write timeout; the close is logged, the producer leaves, and another
// producer is not disturbed.
func TestStalledRegistrationReader(t *testing.T) {
	t.Parallel()
	const writeTimeout = 200 * time.Millisecond
	logs := newLogLines(t)
	l := startLookupd(t, func(o *Options) { o.Logger = logs }, func(l *NSQLookupd) {
		l.tcpServer = newTCPServer(l, writeTimeout)
		l.tcpListener = smallSendBuffers{l.tcpListener}
	})
	bystander := connectProducer(t, l, 2, 12)
	bystander.mustOK("REGISTER t c")

	conn := dialSmallReceive(t, l.RealTCPAddr().String())
	c := &tcpClient{tb: t, conn: conn, r: bufio.NewReader(conn)}
	c.write("  V1")
	if ans := c.identifyRaw(identifyJSON(1, 11)); ans[0] != '{' {
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

// BenchmarkPipelinedRegister times one pipelined command over a real
// loopback connection, read and answered by the IO loop: the hot path that
// the eviction timer and the write deadline sit on. "held" REGISTERs a
// registration already held, so the registry does little ("off" has both
// timers off); "logged" REGISTERs and UNREGISTERs an ephemeral channel,
// each a registry change and a log line, through the daemon's own logger,
// in each log format.
func BenchmarkPipelinedRegister(b *testing.B) {
	for _, bc := range []struct {
		name         string
		readTimeout  time.Duration
		writeTimeout time.Duration
		commands     string // a whole number of commands, repeated
		logger       Logger
		format       lg.Format
	}{
		{"held/off", 0, 0, "REGISTER t c\n", lg.NilLogger{}, lg.Text},
		{"held/defaults", NewOptions().ProducerReadTimeout, answerWriteTimeout, "REGISTER t c\n", lg.NilLogger{}, lg.Text},
		{"logged/format=text", NewOptions().ProducerReadTimeout, answerWriteTimeout,
			"REGISTER t c#ephemeral\nUNREGISTER t c#ephemeral\n", lg.NewBatchedLogger("[nsqlookupd] ", io.Discard), lg.Text},
		{"logged/format=json", NewOptions().ProducerReadTimeout, answerWriteTimeout,
			"REGISTER t c#ephemeral\nUNREGISTER t c#ephemeral\n", lg.NewBatchedLogger("[nsqlookupd] ", io.Discard), lg.JSON},
	} {
		b.Run(bc.name, func(b *testing.B) {
			l := startLookupd(b, func(o *Options) {
				o.Logger = bc.logger
				o.LogFormat = bc.format
				o.ProducerReadTimeout = bc.readTimeout
			}, func(l *NSQLookupd) { l.tcpServer = newTCPServer(l, bc.writeTimeout) })
			c := connectProducer(b, l, 1, 11)
			c.mustOK("REGISTER t c")
			per := strings.Count(bc.commands, "\n")
			const batch = 256 // commands written at a time
			lines := []byte(strings.Repeat(bc.commands, batch/per))
			answers := make([]byte, 6*batch)
			n := (b.N + batch - 1) / batch * batch // whole batches
			c.conn.SetDeadline(time.Time{})
			b.ReportAllocs()
			b.ResetTimer()
			test.ReportCPU(b)
			errc := make(chan error, 1)
			go func() {
				for sent := 0; sent < n; sent += batch {
					if _, err := c.conn.Write(lines); err != nil {
						errc <- err
						return
					}
				}
				errc <- nil
			}()
			for got := 0; got < n; got += batch {
				if _, err := io.ReadFull(c.r, answers); err != nil {
					b.Fatal(err)
				}
			}
			if err := <-errc; err != nil {
				b.Fatal(err)
			}
		})
	}
}

// BenchmarkIdleProducer reports what an idle registration connection
// costs: heap and goroutine stacks per connection (B/conn), after
// idleProducers producers have each identified, registered 3 topics and
// gone quiet, as the load harness's idle producers do. It reads
// process-wide figures, so it is a benchmark, never a parallel test; the
// client side of each connection (a bare net.Conn, no buffer) counts in
// them too.
func BenchmarkIdleProducer(b *testing.B) {
	const idleProducers = 500
	l := startLookupd(b, quietLog)
	inUse := func() uint64 {
		runtime.GC()
		var ms runtime.MemStats
		runtime.ReadMemStats(&ms)
		return ms.HeapAlloc + ms.StackInuse
	}
	for b.Loop() {
		before := inUse()
		conns := make([]net.Conn, idleProducers)
		for i := range conns {
			c, err := net.DialTimeout("tcp", l.RealTCPAddr().String(), ioTimeout)
			if err != nil {
				b.Fatal(err)
			}
			conns[i] = c
			body := identifyJSON(10000+i, 20000+i)
			var size [4]byte
			binary.BigEndian.PutUint32(size[:], uint32(len(body)))
			c.SetDeadline(time.Now().Add(ioTimeout))
			fmt.Fprintf(c, "  V1IDENTIFY\n%s%sREGISTER a%d\nREGISTER b%d c\nREGISTER c%d\n", size[:], body, i, i, i)
			for range 4 { // the answers, read without a buffer
				if _, err := io.ReadFull(c, size[:]); err != nil {
					b.Fatal(err)
				}
				if _, err := io.CopyN(io.Discard, c, int64(binary.BigEndian.Uint32(size[:]))); err != nil {
					b.Fatal(err)
				}
			}
		}
		b.ReportMetric(float64(inUse()-before)/idleProducers, "B/conn")
		for _, c := range conns {
			c.Close()
		}
		for deadline := time.Now().Add(ioTimeout); l.db.Stats(time.Now()).Producers > 0; time.Sleep(time.Millisecond) {
			if time.Now().After(deadline) {
				b.Fatal("producers still registered after their connections closed")
			}
		}
	}
}

// checkFrames checks that out is a sequence of whole frames, each "OK", the
// IDENTIFY answer or an error with a known code, and that an error, if
// any, is the last frame.
func checkFrames(out, identifyAnswer []byte) error {
	for i := 0; len(out) > 0; i++ {
		if len(out) < 4 {
			return fmt.Errorf("frame %d: %d bytes left, want a 4-byte size", i, len(out))
		}
		n := binary.BigEndian.Uint32(out)
		if uint64(n) > uint64(len(out)-4) {
			return fmt.Errorf("frame %d: size %d, only %d bytes follow", i, n, len(out)-4)
		}
		body := out[4 : 4+n]
		out = out[4+n:]
		switch {
		case string(body) == "OK", bytes.Equal(body, identifyAnswer):
		case bytes.HasPrefix(body, []byte("E_")):
			code, _, _ := strings.Cut(string(body), " ")
			if !wireCodes[code] {
				return fmt.Errorf("frame %d: got error code %q; want one of docs/wire.md's", i, code)
			}
			if len(out) > 0 {
				return fmt.Errorf("frame %d: got %d bytes after error %q; want the connection closed", i, len(out), body)
			}
		default:
			return fmt.Errorf("frame %d: got %q; want OK, the IDENTIFY answer or an error", i, body)
		}
	}
	return nil
}

// runConn serves one connection that sends in, on l, through the real
// tcpServer.Handle, and fails on a panic, a hang, a reply that is not well
// framed, or anything left behind in the registry.
func runConn(t *testing.T, l *NSQLookupd, in []byte) {
	conn := newFakeConn(in)
	done := make(chan struct{})
	go func() {
		defer close(done)
		l.tcpServer.Handle(conn)
	}()
	select {
	case <-done:
	case <-time.After(5 * time.Second):
		t.Fatalf("connection still served after 5s; want it to end at EOF (input %q)", in)
	}
	if n := l.panics.Load(); n != 0 {
		t.Fatalf("panics: got %d; want 0 (input %q)", n, in)
	}
	if err := checkFrames(conn.out.Bytes(), l.identifyResponse); err != nil {
		t.Fatalf("%s\ninput %q\nreply %q", err, in, conn.out.Bytes())
	}
	if st := l.db.Stats(time.Now()); st.Producers != 0 || st.Registrations != 0 {
		t.Fatalf("after the connection ended: got %d producers, %d registrations; want 0 (input %q)", st.Producers, st.Registrations, in)
	}
	if err := l.db.Check(); err != nil {
		t.Fatalf("registry broken (input %q): %v", in, err)
	}
}

// fuzzIdentify is a valid IDENTIFY command, body size included.
func fuzzIdentify() string {
	body := identifyJSON(4150, 4151)
	return "IDENTIFY\n" + sizePrefix(int32(len(body))) + body
}

// FuzzConn feeds whole connections to one daemon, reused across inputs.
func FuzzConn(f *testing.F) {
	f.Add([]byte("  V1PING\n"))
	f.Add([]byte("  V1IDENTIFY\n\xff\xff\xff\xf3")) // negative body size
	f.Add([]byte("  V1IDENTIFY\n\x00\x00\x00\x00"))
	f.Add([]byte("  V1IDENTIFY\n\x7f\xff\xff\xff"))
	f.Add([]byte("  V1IDENTIFY\n\x00\x00\x00\x04null"))
	f.Add([]byte("  V1IDENTIFY\n\x00\x00\x00\x10{\"tcp_port\":\"x\"}"))
	f.Add([]byte("  V2"))
	f.Add([]byte(""))
	f.Add([]byte("  V1"))
	f.Add([]byte("  V1\n"))
	f.Add([]byte("  V1" + strings.Repeat("x", 5000)))
	f.Add([]byte("  V1REGISTER t c\n"))
	f.Add([]byte("  V1" + fuzzIdentify() + "REGISTER t c\nREGISTER t#ephemeral c#ephemeral\nUNREGISTER t c\nUNREGISTER t\nPING\n"))
	f.Add([]byte("  V1" + fuzzIdentify() + "REGISTER t\x00 c\n"))
	f.Add([]byte("  V1" + fuzzIdentify() + "IDENTIFY\n"))
	f.Add([]byte("  V1" + fuzzIdentify() + "REGISTER  t\n"))
	f.Add([]byte("  V1" + fuzzIdentify() + "REGISTER t c\nREGISTER t"))

	l := startLookupd(f, func(o *Options) {
		// Millions of inputs: a test log would grow without bound.
		o.Logger = lg.NilLogger{}
	})
	f.Fuzz(func(t *testing.T, in []byte) {
		if bytes.Contains(in, []byte(panicVerb)) {
			return // the tests' own command, which panics on purpose
		}
		runConn(t, l, in)
	})
}

// funcPC is the address of a function, a valid pprof symbol query.
func funcPC() uintptr {
	pc, _, _, _ := runtime.Caller(0)
	return pc
}

// TestRecoverPanic injects a panic into one connection's command (no input
// can cause one) and checks the last line of defence: that connection
// closes, its registrations go, the counter reads 1, and nobody else
// notices.
func TestRecoverPanic(t *testing.T) {
	t.Parallel()
	l := startLookupd(t, nil)
	v := newVictim(t, l)
	other := connectProducer(t, l, 5250, 5251)
	other.mustOK("REGISTER shared c1")

	bad := connectProducer(t, l, 5350, 5351)
	bad.mustOK("REGISTER shared c2")
	bad.mustOK("REGISTER bad-only#ephemeral")
	bad.write(panicVerb + "\n")
	bad.expectClosed()

	test.Eventually(t, 5*time.Second, func() bool { return peerCount(l) == 2 })
	if got := l.panics.Load(); got != 1 {
		t.Fatalf("panics: got %d; want 1", got)
	}
	var lookup struct {
		Channels  []string
		Producers []struct {
			RemoteAddress string `json:"remote_address"`
		}
	}
	getJSON(t, l, "/lookup?topic=shared", &lookup)
	if len(lookup.Producers) != 1 || lookup.Producers[0].RemoteAddress != other.conn.LocalAddr().String() {
		t.Fatalf("/lookup?topic=shared: got %+v; want only %s", lookup.Producers, other.conn.LocalAddr())
	}
	if resp, _ := httpDo(t, l, "GET", "/lookup?topic=bad-only%23ephemeral"); resp.StatusCode != http.StatusNotFound {
		t.Fatalf("/lookup of the panicked client's ephemeral topic: got %d; want 404", resp.StatusCode)
	}
	other.mustOK("PING")
	checkHealth(t, l, v, 1)
}

func TestDisconnectCleanup(t *testing.T) {
	t.Parallel()
	l := startLookupd(t, nil)
	a := connectProducer(t, l, 1, 11)
	b := connectProducer(t, l, 2, 12)
	for _, c := range []*tcpClient{a, b} {
		c.mustOK("REGISTER t c")
		c.mustOK("REGISTER u")
	}
	a.conn.Close()
	test.Eventually(t, 5*time.Second, func() bool {
		var nodes nodesAnswer
		getJSON(t, l, "/nodes", &nodes)
		return len(nodes.Producers) == 1
	})
	for _, topic := range []string{"t", "u"} {
		if got := fmt.Sprint(lookupPorts(t, l, topic)); got != "[2]" {
			t.Fatalf("%s: got %s; want [2]", topic, got)
		}
	}
	var data map[string][]debugEntry
	getJSON(t, l, "/debug", &data)
	for k, list := range data {
		if len(list) != 1 || list[0].TCPPort != 2 {
			t.Fatalf("/debug %s: got %+v; want only producer 2", k, list)
		}
	}
	// the registrations themselves stay
	b.conn.Close()
	test.Eventually(t, 5*time.Second, func() bool {
		_, body := httpDo(t, l, "GET", "/debug")
		return body == "{}"
	})
	_, body := httpDo(t, l, "GET", "/lookup?topic=t")
	if body != `{"channels":["c"],"producers":[]}` {
		t.Fatalf("got %s; want the registration kept, empty", body)
	}
}

func TestIdentifyTimeout(t *testing.T) {
	t.Parallel()
	l := startLookupd(t, func(o *Options) { o.IdentifyTimeout = time.Second })
	// identified first: by the time the later silent connections are
	// closed, its own deadline would have passed had IDENTIFY not lifted it
	p := connectProducer(t, l, 1, 2)
	silent := dialRaw(t, l)
	magicOnly := dial(t, l)
	silent.expectClosed()
	magicOnly.expectClosed()
	p.mustOK("REGISTER t")
	p.mustOK("PING")
}

// TestIdentifyTimeoutDisabled: with --identify-timeout 0 no deadline is set
// (one in the past would close the connection before its magic is read).
func TestIdentifyTimeoutDisabled(t *testing.T) {
	t.Parallel()
	l := startLookupd(t, func(o *Options) { o.IdentifyTimeout = 0 })
	p := connectProducer(t, l, 1, 11)
	p.mustOK("REGISTER t")
}

// dialFrom connects to the daemon's TCP port at host, from local, with
// SO_REUSEADDR so that two connections may share a local address.
func dialFrom(t *testing.T, local *net.TCPAddr, host string, port int) *tcpClient {
	t.Helper()
	d := net.Dialer{
		LocalAddr: local,
		Timeout:   ioTimeout,
		Control: func(network, address string, c syscall.RawConn) error {
			var serr error
			err := c.Control(func(fd uintptr) {
				serr = syscall.SetsockoptInt(int(fd), syscall.SOL_SOCKET, syscall.SO_REUSEADDR, 1)
			})
			return cmp.Or(err, serr)
		},
	}
	conn, err := d.Dial("tcp", net.JoinHostPort(host, strconv.Itoa(port)))
	if err != nil {
		t.Fatalf("dial %s from %s: %s", host, local, err)
	}
	t.Cleanup(func() { conn.Close() })
	c := &tcpClient{tb: t, conn: conn, r: bufio.NewReader(conn)}
	c.write("  V1")
	return c
}

// TestReusedPeerID: a new connection from the ip:port of a live producer
// (the kernel reused the port of a connection whose peer is gone) replaces
// it: the newer connection's REGISTERs count, the stale producer's
// registrations go, and so does its connection. Two connections with one
// remote address are made by connecting from one local address to two
// loopback addresses of a daemon listening on all of them.
func TestReusedPeerID(t *testing.T) {
	t.Parallel()
	l := startLookupd(t, func(o *Options) { o.TCPAddress = "0.0.0.0:0" })
	port := l.RealTCPAddr().Port
	probe, err := net.ListenTCP("tcp", &net.TCPAddr{IP: net.IPv4(127, 0, 0, 1)})
	if err != nil {
		t.Fatal(err)
	}
	local := probe.Addr().(*net.TCPAddr) // a free local port
	probe.Close()

	stale := dialFrom(t, local, "127.0.0.1", port)
	if ans := stale.identifyRaw(identifyJSON(7150, 7151)); ans[0] != '{' {
		t.Fatalf("IDENTIFY: %q", ans)
	}
	stale.mustOK("REGISTER old c#ephemeral")
	stale.mustOK("REGISTER shared")

	fresh := dialFrom(t, local, "127.0.0.2", port)
	if fresh.conn.LocalAddr().String() != stale.conn.LocalAddr().String() {
		t.Fatalf("the two connections come from %s and %s; want one address", stale.conn.LocalAddr(), fresh.conn.LocalAddr())
	}
	if ans := fresh.identifyRaw(identifyJSON(7250, 7251)); ans[0] != '{' {
		t.Fatalf("IDENTIFY: %q", ans)
	}
	stale.expectClosed() // replaced: its connection is closed
	fresh.mustOK("REGISTER new")
	fresh.mustOK("REGISTER shared")

	if got := fmt.Sprint(lookupPorts(t, l, "new")); got != "[7250]" {
		t.Fatalf("/lookup new: got %s; want [7250] (the newer connection's REGISTER counts)", got)
	}
	if got := fmt.Sprint(lookupPorts(t, l, "shared")); got != "[7250]" {
		t.Fatalf("/lookup shared: got %s; want [7250] only", got)
	}
	if resp, _ := httpDo(t, l, "GET", "/lookup?topic=old"); resp.StatusCode != 200 {
		t.Fatalf("/lookup old: %d; want 200 (a durable topic stays)", resp.StatusCode)
	}
	if got := fmt.Sprint(lookupPorts(t, l, "old")); got != "[]" {
		t.Fatalf("/lookup old: got %s; want no producer", got)
	}
	if chs := l.db.Channels("old"); len(chs) != 0 {
		t.Fatalf("channels of old: got %v; want the ephemeral one gone with the stale producer", chs)
	}
	var nodes nodesAnswer
	getJSON(t, l, "/nodes", &nodes)
	if len(nodes.Producers) != 1 || nodes.Producers[0].TCPPort != 7250 {
		t.Fatalf("/nodes: got %+v; want the newer producer only", nodes.Producers)
	}
	// the stale connection's end must not remove the newer producer
	test.Eventually(t, 5*time.Second, func() bool { return trackedConns(l) == 1 })
	fresh.mustOK("PING")
	if got := fmt.Sprint(lookupPorts(t, l, "new")); got != "[7250]" {
		t.Fatalf("/lookup new after the stale connection ended: got %s; want [7250]", got)
	}
}

// TestConnsGiveBack: once a burst of at least 64 live connections has
// dropped to a quarter of its peak, the live set is copied into a new map
// (a Go map never gives back what it grew to), and not before; a smaller
// burst keeps its map.
func TestConnsGiveBack(t *testing.T) {
	t.Parallel()
	for _, tt := range []struct {
		burst, shrunkAt int // the live count at which the map is new; -1: never
	}{{64, 16}, {100, 25}, {63, -1}} {
		p := newTCPServer(nil, 0)
		conns := make([]net.Conn, tt.burst)
		for i := range conns {
			c, other := net.Pipe()
			defer c.Close()
			defer other.Close()
			if conns[i] = c; !p.track(c) {
				t.Fatal("a connection was refused before closeAll")
			}
		}
		for i, c := range conns {
			p.untrack(c)
			live := tt.burst - i - 1
			wantPeak := tt.burst
			if live <= tt.shrunkAt {
				wantPeak = tt.shrunkAt
			}
			if len(p.conns) != live || p.connsPeak != wantPeak {
				t.Fatalf("burst %d, %d live: %d in the map, peak %d; want peak %d", tt.burst, live, len(p.conns), p.connsPeak, wantPeak)
			}
		}
	}
}
