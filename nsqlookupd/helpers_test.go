package nsqlookupd

import (
	"bufio"
	"encoding/binary"
	"encoding/json"
	"fmt"
	"io"
	"net"
	"net/http"
	"testing"
	"time"

	"github.com/lookupd/nsqlookupd/internal/test"
)

// ioTimeout bounds every read and write a test makes on a connection.
const ioTimeout = 5 * time.Second

// startLookupd starts a daemon on 127.0.0.1:0 with its log in the test log;
// modify, when not nil, changes the options first. It is stopped when the
// test ends.
func startLookupd(tb testing.TB, modify func(*Options)) *NSQLookupd {
	tb.Helper()
	return startLookupdWith(tb, modify, nil)
}

// startLookupdWith is startLookupd with before, when not nil, run after New
// and before Main: the place to set unexported fields (test hooks, server
// timeouts) without racing with the servers that read them.
func startLookupdWith(tb testing.TB, modify func(*Options), before func(*NSQLookupd)) *NSQLookupd {
	tb.Helper()
	opts := NewOptions()
	opts.Logger = test.NewTestLogger(tb)
	opts.TCPAddress = "127.0.0.1:0"
	opts.HTTPAddress = "127.0.0.1:0"
	opts.BroadcastAddress = "127.0.0.1"
	if modify != nil {
		modify(opts)
	}
	l, err := New(opts)
	if err != nil {
		tb.Fatalf("New: %s", err)
	}
	if before != nil {
		before(l)
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

// identifyBody is a valid IDENTIFY body for a producer with these ports.
func identifyBody(tcpPort, httpPort int) string {
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
	if ans := c.identifyRaw(identifyBody(tcpPort, httpPort)); ans[0] != '{' {
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
