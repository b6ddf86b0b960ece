package nsqlookupd

import (
	"bufio"
	"bytes"
	"encoding/binary"
	"encoding/json"
	"errors"
	"fmt"
	"io"
	"net"
	"net/http"
	"regexp"
	"strings"
	"sync"
	"sync/atomic"
	"syscall"
	"testing"
	"time"

	"github.com/lookupd/nsqlookupd/internal/lg"
	"github.com/lookupd/nsqlookupd/internal/test"
	"github.com/lookupd/nsqlookupd/nsqlookupd/internal/registry"
)

// fakeClock is a clock that moves only when a test calls Advance. Its
// AfterFunc calls run, each in its own goroutine as time.AfterFunc's do,
// when Advance passes their due time.
type fakeClock struct {
	mu     sync.Mutex // guards the fields below
	now    time.Time
	timers map[*fakeTimer]struct{} // pending calls
}

func newFakeClock() *fakeClock {
	return &fakeClock{
		now:    time.Date(2026, 11, 24, 14, 17, 2, 0, time.UTC),
		timers: make(map[*fakeTimer]struct{}),
	}
}

// install is a setup of startLookupd: the daemon tells the time by c.
func (c *fakeClock) install(l *NSQLookupd) { l.clock = c }

func (c *fakeClock) Now() time.Time {
	c.mu.Lock()
	defer c.mu.Unlock()
	return c.now
}

// Advance moves the clock on by d and starts every call that falls due.
func (c *fakeClock) Advance(d time.Duration) {
	c.mu.Lock()
	c.now = c.now.Add(d)
	var due []func()
	for t := range c.timers {
		if !t.when.After(c.now) {
			delete(c.timers, t)
			due = append(due, t.f)
		}
	}
	c.mu.Unlock()
	for _, f := range due {
		go f()
	}
}

// Pending returns how many AfterFunc calls are waiting.
func (c *fakeClock) Pending() int {
	c.mu.Lock()
	defer c.mu.Unlock()
	return len(c.timers)
}

func (c *fakeClock) AfterFunc(d time.Duration, f func()) timer {
	t := &fakeTimer{c: c, f: f}
	t.Reset(d)
	return t
}

type fakeTimer struct {
	c    *fakeClock
	f    func()
	when time.Time // guarded by c.mu
}

func (t *fakeTimer) Reset(d time.Duration) bool {
	t.c.mu.Lock()
	defer t.c.mu.Unlock()
	_, pending := t.c.timers[t]
	t.when = t.c.now.Add(d)
	t.c.timers[t] = struct{}{}
	return pending
}

func (t *fakeTimer) Stop() bool {
	t.c.mu.Lock()
	defer t.c.mu.Unlock()
	_, pending := t.c.timers[t]
	delete(t.c.timers, t)
	return pending
}

// Production faults (docs/differences.md, Dead peers leave, and Slow readers): silent
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

// count returns how many lines hold sub.
func (l *logLines) count(sub string) int {
	l.mu.Lock()
	defer l.mu.Unlock()
	n := 0
	for _, line := range l.lines {
		if strings.Contains(line, sub) {
			n++
		}
	}
	return n
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

// Fuzz targets for everything that parses bytes from a peer. Run one with
//
//	go test -run '^$' -fuzz FuzzConn -fuzztime 60s ./nsqlookupd
//
// Inputs that fail land in testdata/fuzz/<target>/ and plain go test
// replays them.

// fakeConn is a registration connection whose peer has sent exactly in and
// then closed its side: Read returns in, then io.EOF. What the server writes
// is kept in out. Deadlines are ignored.
type fakeConn struct {
	in     *bytes.Reader
	out    bytes.Buffer
	remote net.Addr
}

var fakePort atomic.Int32

func newFakeConn(in []byte) *fakeConn {
	port := int(fakePort.Add(1))
	return &fakeConn{
		in:     bytes.NewReader(in),
		remote: &net.TCPAddr{IP: net.IPv4(127, 0, 0, 2), Port: port},
	}
}

func (c *fakeConn) Read(p []byte) (int, error)       { return c.in.Read(p) }
func (c *fakeConn) Write(p []byte) (int, error)      { return c.out.Write(p) }
func (c *fakeConn) Close() error                     { return nil }
func (c *fakeConn) LocalAddr() net.Addr              { return &net.TCPAddr{IP: net.IPv4(127, 0, 0, 1), Port: 4160} }
func (c *fakeConn) RemoteAddr() net.Addr             { return c.remote }
func (c *fakeConn) SetDeadline(time.Time) error      { return nil }
func (c *fakeConn) SetReadDeadline(time.Time) error  { return nil }
func (c *fakeConn) SetWriteDeadline(time.Time) error { return nil }

// ioTimeout bounds every read and write a test makes on a connection.
const ioTimeout = 5 * time.Second

// testOptions returns the options of a test's daemon: every address on
// 127.0.0.1, ports from :0, its log in the test log; modify, when not nil,
// changes them.
func testOptions(tb testing.TB, modify func(*Options)) *Options {
	opts := NewOptions()
	opts.Logger = test.NewTestLogger(tb)
	opts.TCPAddress = "127.0.0.1:0"
	opts.HTTPAddress = "127.0.0.1:0"
	opts.BroadcastAddress = "127.0.0.1"
	if modify != nil {
		modify(opts)
	}
	return opts
}

// quietLog drops the daemon's log: a test log kept in memory would count
// as heap.
func quietLog(o *Options) { o.Logger = lg.NilLogger{} }

// newLookupd returns New(testOptions(tb, modify)), failing the test on
// error; Exit runs when the test ends. Main does not run: this is for the
// tests of the lifecycle itself, which run it. Every other test calls
// startLookupd.
func newLookupd(tb testing.TB, modify func(*Options)) *NSQLookupd {
	tb.Helper()
	l, err := New(testOptions(tb, modify))
	if err != nil {
		tb.Fatalf("New: %s", err)
	}
	tb.Cleanup(l.Exit)
	return l
}

// startLookupd is how a test starts a daemon: newLookupd, then each of
// setup, then Main until the test ends (its error fails the test). setup
// runs after New and before Main, the place to replace what the servers
// read once they run (a clock, a listener, a server's hook) without racing
// with them.
func startLookupd(tb testing.TB, modify func(*Options), setup ...func(*NSQLookupd)) *NSQLookupd {
	tb.Helper()
	l := newLookupd(tb, modify)
	for _, f := range setup {
		f(l)
	}
	done := make(chan error, 1)
	go func() { done <- l.Main() }()
	tb.Cleanup(func() {
		l.Exit()
		if err := <-done; err != nil {
			tb.Errorf("Main: %s", err)
		}
	})
	return l
}

// tcpClient is a registration connection in a test.
type tcpClient struct {
	tb   testing.TB
	conn net.Conn
	r    *bufio.Reader
}

// dialRaw connects to the daemon's TCP address without sending anything.
func dialRaw(tb testing.TB, l *NSQLookupd) *tcpClient {
	tb.Helper()
	conn, err := net.DialTimeout("tcp", l.RealTCPAddr().String(), ioTimeout)
	if err != nil {
		tb.Fatalf("dial: %s", err)
	}
	tb.Cleanup(func() { conn.Close() })
	return &tcpClient{tb: tb, conn: conn, r: bufio.NewReader(conn)}
}

// dial connects and sends the V1 magic.
func dial(tb testing.TB, l *NSQLookupd) *tcpClient {
	tb.Helper()
	c := dialRaw(tb, l)
	c.write("  V1")
	return c
}

func (c *tcpClient) write(s string) {
	c.tb.Helper()
	c.conn.SetWriteDeadline(time.Now().Add(ioTimeout))
	if _, err := io.WriteString(c.conn, s); err != nil {
		c.tb.Fatalf("write: %s", err)
	}
}

// readFrame reads one framed answer.
func (c *tcpClient) readFrame() ([]byte, error) {
	c.conn.SetReadDeadline(time.Now().Add(ioTimeout))
	var size [4]byte
	if _, err := io.ReadFull(c.r, size[:]); err != nil {
		return nil, err
	}
	n := binary.BigEndian.Uint32(size[:])
	if n > 1<<20 {
		return nil, fmt.Errorf("frame of %d bytes", n)
	}
	body := make([]byte, n)
	_, err := io.ReadFull(c.r, body)
	return body, err
}

// mustRead reads one framed answer, failing the test on error.
func (c *tcpClient) mustRead() string {
	c.tb.Helper()
	b, err := c.readFrame()
	if err != nil {
		c.tb.Fatalf("read frame: %s", err)
	}
	return string(b)
}

// cmd sends one command line and returns the framed answer.
func (c *tcpClient) cmd(line string) string {
	c.tb.Helper()
	c.write(line + "\n")
	return c.mustRead()
}

// expectClosed fails unless the server closes the connection (EOF or reset)
// before ioTimeout.
func (c *tcpClient) expectClosed() {
	c.tb.Helper()
	c.conn.SetReadDeadline(time.Now().Add(ioTimeout))
	var buf [1]byte
	_, err := c.r.Read(buf[:])
	if err == nil {
		c.tb.Fatalf("read a byte after the error; want the connection closed")
	}
	if ne, ok := err.(net.Error); ok && ne.Timeout() {
		c.tb.Fatalf("connection still open after %s", ioTimeout)
	}
}

// identifyJSON is a valid IDENTIFY body for a producer with these ports.
func identifyJSON(tcpPort, httpPort int) string {
	b, _ := json.Marshal(map[string]interface{}{
		"broadcast_address": "127.0.0.1",
		"hostname":          "host-" + fmt.Sprint(tcpPort),
		"tcp_port":          tcpPort,
		"http_port":         httpPort,
		"version":           "1.3.0",
	})
	return string(b)
}

// identifyRaw sends IDENTIFY with body and returns the answer.
func (c *tcpClient) identifyRaw(body string) string {
	c.tb.Helper()
	var size [4]byte
	binary.BigEndian.PutUint32(size[:], uint32(len(body)))
	c.write("IDENTIFY\n" + string(size[:]) + body)
	return c.mustRead()
}

// connectProducer connects a producer identified with these ports.
func connectProducer(tb testing.TB, l *NSQLookupd, tcpPort, httpPort int) *tcpClient {
	tb.Helper()
	c := dial(tb, l)
	if ans := c.identifyRaw(identifyJSON(tcpPort, httpPort)); ans[0] != '{' {
		tb.Fatalf("IDENTIFY answered %q", ans)
	}
	return c
}

// mustOK sends a command and fails unless it is answered OK.
func (c *tcpClient) mustOK(line string) {
	c.tb.Helper()
	if got := c.cmd(line); got != "OK" {
		c.tb.Fatalf("%s: got %q; want OK", line, got)
	}
}

// profiling is held while a test takes a CPU profile or an execution
// trace: a process runs one of each at a time.
var profiling sync.Mutex

// lockProfiling takes profiling if path (or a profile's name) asks for a
// CPU profile or a trace, and returns what releases it.
func lockProfiling(path string) (unlock func()) {
	if !strings.Contains(path, "profile") && !strings.Contains(path, "trace") {
		return func() {}
	}
	profiling.Lock()
	return profiling.Unlock
}

// httpGet GETs path with a client that waits up to timeout, and returns
// the response with its body read.
func httpGet(tb testing.TB, l *NSQLookupd, path string, timeout time.Duration) (*http.Response, string) {
	tb.Helper()
	client := &http.Client{Timeout: timeout}
	resp, err := client.Get("http://" + l.RealHTTPAddr().String() + path)
	if err != nil {
		tb.Fatalf("GET %s: %s", path, err)
	}
	defer resp.Body.Close()
	body, err := io.ReadAll(resp.Body)
	if err != nil {
		tb.Fatalf("GET %s: reading body: %s", path, err)
	}
	return resp, string(body)
}

// httpDo sends a request to the daemon's HTTP address (no redirects
// followed) and returns the response with its body read.
func httpDo(tb testing.TB, l *NSQLookupd, method, path string) (*http.Response, string) {
	tb.Helper()
	req, err := http.NewRequest(method, "http://"+l.RealHTTPAddr().String()+path, nil)
	if err != nil {
		tb.Fatalf("request: %s", err)
	}
	client := &http.Client{
		Timeout:       ioTimeout,
		CheckRedirect: func(*http.Request, []*http.Request) error { return http.ErrUseLastResponse },
	}
	resp, err := client.Do(req)
	if err != nil {
		tb.Fatalf("%s %s: %s", method, path, err)
	}
	defer resp.Body.Close()
	body, err := io.ReadAll(resp.Body)
	if err != nil {
		tb.Fatalf("%s %s: reading body: %s", method, path, err)
	}
	return resp, string(body)
}

// getJSON GETs path, requires a 200, and decodes the body into v.
func getJSON(tb testing.TB, l *NSQLookupd, path string, v interface{}) {
	tb.Helper()
	resp, body := httpDo(tb, l, "GET", path)
	if resp.StatusCode != http.StatusOK {
		tb.Fatalf("GET %s: status %d %s", path, resp.StatusCode, body)
	}
	if err := json.Unmarshal([]byte(body), v); err != nil {
		tb.Fatalf("GET %s: %s in %q", path, err, body)
	}
}

// trackedConns returns how many connections the TCP server is serving.
func trackedConns(l *NSQLookupd) int {
	l.tcpServer.mu.Lock()
	defer l.tcpServer.mu.Unlock()
	return len(l.tcpServer.conns)
}

// peerCount returns how many identified producers the registry holds.
func peerCount(l *NSQLookupd) int {
	return l.db.Stats(time.Now()).Producers
}

type debugEntry struct {
	ID               string `json:"id"`
	Hostname         string `json:"hostname"`
	BroadcastAddress string `json:"broadcast_address"`
	TCPPort          int    `json:"tcp_port"`
	HTTPPort         int    `json:"http_port"`
	Version          string `json:"version"`
	LastUpdate       int64  `json:"last_update"`
	Tombstoned       bool   `json:"tombstoned"`
	TombstonedAt     int64  `json:"tombstoned_at"`
}

// accessLines waits until the access log holds a line for method and uri,
// and returns every such line.
func (c *logLines) accessLines(method, uri string) []string {
	for deadline := time.Now().Add(ioTimeout); ; time.Sleep(5 * time.Millisecond) {
		c.mu.Lock()
		var found []string
		for _, s := range c.lines {
			if strings.HasPrefix(s, "INFO: ") && strings.Contains(s, " "+method+" "+uri+" (") {
				found = append(found, s)
			}
		}
		c.mu.Unlock()
		if len(found) > 0 || time.Now().After(deadline) {
			return found
		}
	}
}

// matching returns the lines matching re.
func (c *logLines) matching(re *regexp.Regexp) []string {
	c.mu.Lock()
	defer c.mu.Unlock()
	var out []string
	for _, l := range c.lines {
		if re.MatchString(l) {
			out = append(out, l)
		}
	}
	return out
}
func sizePrefix(n int32) string {
	var b [4]byte
	binary.BigEndian.PutUint32(b[:], uint32(n))
	return string(b[:])
}

// TestProtocolErrors runs every error of docs/wire.md, TCP registration protocol, over a real
// connection: the framed answer byte for byte, then the close.
// identifyCmd is an IDENTIFY command with body.
func identifyCmd(body string) string {
	return "IDENTIFY\n" + sizePrefix(int32(len(body))) + body
}

type lookupAnswer struct {
	Channels  []string `json:"channels"`
	Producers []struct {
		RemoteAddress string `json:"remote_address"`
		TCPPort       int    `json:"tcp_port"`
	} `json:"producers"`
}

func lookupPorts(t *testing.T, l *NSQLookupd, topic string) []int {
	t.Helper()
	var a lookupAnswer
	getJSON(t, l, "/lookup?topic="+topic, &a)
	ports := []int{}
	for _, p := range a.Producers {
		ports = append(ports, p.TCPPort)
	}
	return ports
}

type nodesAnswer struct {
	Producers []struct {
		TCPPort    int      `json:"tcp_port"`
		Tombstones []bool   `json:"tombstones"`
		Topics     []string `json:"topics"`
	} `json:"producers"`
}

func (r *logLines) has(substr string) bool {
	r.mu.Lock()
	defer r.mu.Unlock()
	for _, line := range r.lines {
		if strings.Contains(line, substr) {
			return true
		}
	}
	return false
}

// fill fills the daemon's registry with shape sz, topics named by
// topicName and channels by channelName (formats of their numbers), each
// producer added as IDENTIFY adds it. It returns the producers.
func fill(l *NSQLookupd, sz test.Shape, topicName, channelName string) []*registry.Producer {
	return test.Fill(sz, topicName, channelName,
		func(i int) *registry.Producer {
			info := registry.Info{
				ID:               fmt.Sprintf("10.0.%d.%d:%d", i/250, i%250, 40000+i),
				BroadcastAddress: fmt.Sprintf("host%d", i),
				Hostname:         fmt.Sprintf("host%d", i),
				TCPPort:          4150,
				HTTPPort:         4151,
				Version:          "1.3.0",
			}
			p, _ := l.db.AddProducer(info, append(appendProducer(nil, &info), '}'), l.clock.Now(), nil)
			return p
		},
		func(p *registry.Producer, topic, channel string) { l.db.Register(p, topic, channel) })
}
