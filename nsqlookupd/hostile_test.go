package nsqlookupd

import (
	"bufio"
	"bytes"
	"crypto/tls"
	"errors"
	"fmt"
	"io"
	"math/rand"
	"net"
	"net/http"
	"strings"
	"sync"
	"sync/atomic"
	"syscall"
	"testing"
	"time"

	"github.com/lookupd/nsqlookupd/internal/http_api"
	"github.com/lookupd/nsqlookupd/internal/test"
)

// Hostile input over real TCP and HTTP (docs/differences.md, Hostile input: "never crash, never
// balloon"). One daemon takes every attack in turn; after each one the same
// health check proves it still serves everyone else.

// Timeouts of the daemon under attack, short so the tests that wait for
// them stay fast. A case waits for the close they cause up to ioTimeout
// past them: slack for a loaded machine, not a bound on the daemon's speed.
const (
	hostileIdentifyTimeout   = 500 * time.Millisecond
	hostileReadHeaderTimeout = 500 * time.Millisecond
)

// dialer opens a connection to one of the daemon's HTTP ports: dialHTTP,
// or dialHTTPS (https_hostile_test.go) for the same attacks over TLS.
type dialer func(t *testing.T, l *NSQLookupd) net.Conn

// dialHTTP connects to the daemon's HTTP address, failing the test if it
// cannot.
func dialHTTP(t *testing.T, l *NSQLookupd) net.Conn {
	t.Helper()
	conn, err := net.DialTimeout("tcp", l.RealHTTPAddr().String(), ioTimeout)
	if err != nil {
		t.Fatalf("dial: %s", err)
	}
	return conn
}

// ensureFDs raises the soft limit on open files to at least n if it is
// lower, and returns how many the test may use (n, or less if the hard
// limit is lower).
func ensureFDs(tb testing.TB, n uint64) uint64 {
	tb.Helper()
	var lim syscall.Rlimit
	if err := syscall.Getrlimit(syscall.RLIMIT_NOFILE, &lim); err != nil {
		tb.Fatalf("getrlimit: %s", err)
	}
	if lim.Cur >= n {
		return n
	}
	old := lim.Cur
	lim.Cur = min(n, lim.Max)
	if err := syscall.Setrlimit(syscall.RLIMIT_NOFILE, &lim); err != nil {
		tb.Logf("setrlimit(%d): %s; keeping %d", lim.Cur, err, old)
		return old
	}
	tb.Logf("raised RLIMIT_NOFILE from %d to %d", old, lim.Cur)
	return lim.Cur
}

// victim is a producer registered before the attacks: it must come out of
// every one still connected and listed with all its channels.
type victim struct {
	c      *tcpClient
	topics []string
	// https, when set, is a client of the daemon's HTTPS port: the health
	// check then pings it too.
	https *http.Client
}

var victimChannels = []string{"ch-a", "ch-b"}

func newVictim(t *testing.T, l *NSQLookupd) *victim {
	t.Helper()
	v := &victim{c: connectProducer(t, l, 6150, 6151)}
	for i := 0; i < 3; i++ {
		topic := fmt.Sprintf("victim-%d", i)
		v.topics = append(v.topics, topic)
		for _, ch := range victimChannels {
			v.c.mustOK("REGISTER " + topic + " " + ch)
		}
	}
	return v
}

var healthPort atomic.Int32

// checkHealth fails unless the daemon is fully serving: /ping answers, a
// new producer can IDENTIFY and REGISTER and is visible in
// /lookup, the victim is still listed with every channel and answers PING,
// and no connection goroutine has panicked more than wantPanics times.
func checkHealth(t *testing.T, l *NSQLookupd, v *victim, wantPanics int64) {
	t.Helper()
	pingUncut(t, &http.Client{Timeout: ioTimeout}, "http://"+l.RealHTTPAddr().String()+"/ping")
	if v.https != nil {
		pingUncut(t, v.https, httpsURL(l, "/ping"))
	}

	port := int(7000 + healthPort.Add(1))
	fresh := connectProducer(t, l, port, port+1)
	topic := fmt.Sprintf("health-%d", port)
	fresh.mustOK("REGISTER " + topic + " ch")
	var lookup struct {
		Channels  []string
		Producers []struct {
			RemoteAddress string `json:"remote_address"`
		}
	}
	getJSON(t, l, "/lookup?topic="+topic, &lookup)
	if len(lookup.Producers) != 1 || lookup.Producers[0].RemoteAddress != fresh.conn.LocalAddr().String() {
		t.Fatalf("health: /lookup?topic=%s: got producers %+v; want the fresh producer %s",
			topic, lookup.Producers, fresh.conn.LocalAddr())
	}
	fresh.conn.Close()

	v.c.mustOK("PING")
	for _, topic := range v.topics {
		getJSON(t, l, "/lookup?topic="+topic, &lookup)
		if got, want := strings.Join(lookup.Channels, ","), strings.Join(victimChannels, ","); got != want {
			t.Fatalf("health: victim topic %s: got channels %q; want %q", topic, got, want)
		}
		found := false
		for _, p := range lookup.Producers {
			found = found || p.RemoteAddress == v.c.conn.LocalAddr().String()
		}
		if !found {
			t.Fatalf("health: victim topic %s: got producers %+v; want the victim %s",
				topic, lookup.Producers, v.c.conn.LocalAddr())
		}
	}
	if got := l.panics.Load(); got != wantPanics {
		t.Fatalf("health: panics: got %d; want %d", got, wantPanics)
	}
}

// pingUncut fails unless GET url answers 200 "OK". The daemon under
// attack gives a client 500 ms to send its headers (and, over HTTPS, to
// finish its handshake); on a loaded machine an honest client may miss
// that and be cut off before any answer, as a real client would be, and
// then asks again, for up to ioTimeout.
func pingUncut(t *testing.T, client *http.Client, url string) {
	t.Helper()
	for deadline := time.Now().Add(ioTimeout); ; time.Sleep(10 * time.Millisecond) {
		resp, body, err := do(client, "GET", url)
		cut := err != nil || resp.StatusCode == http.StatusRequestTimeout
		if cut && time.Now().Before(deadline) {
			continue
		}
		if err != nil {
			t.Fatalf("health: GET %s: %s", url, err)
		}
		if resp.StatusCode != http.StatusOK || body != "OK" {
			t.Fatalf("health: GET %s: got %d %q; want 200 \"OK\"", url, resp.StatusCode, body)
		}
		return
	}
}

// tcpCase is one hostile TCP connection: what it sends, the frames it must
// get back byte for byte, and then the close.
type tcpCase struct {
	identify   bool          // send a valid IDENTIFY (after the magic) first
	noMagic    bool          // send is the whole input, magic included
	send       []byte        // sent in one write
	closeWrite bool          // half-close after sending
	want       []string      // frames expected, in order, before the close
	minWait    time.Duration // the close must not come sooner (a deadline case)
}

func (tc tcpCase) run(t *testing.T, l *NSQLookupd, _ *victim) {
	c := dialRaw(t, l)
	if !tc.noMagic {
		c.write("  V1")
	}
	if tc.identify {
		if ans := c.identifyRaw(identifyJSON(8150, 8151)); !strings.HasPrefix(ans, "{") {
			t.Fatalf("IDENTIFY: got %q; want the JSON answer", ans)
		}
	}
	start := time.Now()
	// Write in the background: the server may stop reading, and close,
	// long before a large input is all sent.
	writeErr := make(chan error, 1)
	go func() {
		c.conn.SetWriteDeadline(time.Now().Add(ioTimeout))
		_, err := c.conn.Write(tc.send)
		if err == nil && tc.closeWrite {
			err = c.conn.(*net.TCPConn).CloseWrite()
		}
		writeErr <- err
	}()
	for i, want := range tc.want {
		got, err := c.readFrame()
		if err != nil {
			t.Fatalf("frame %d: got error %v; want %q", i, err, want)
		}
		if string(got) != want {
			t.Fatalf("frame %d: got %q; want %q", i, got, want)
		}
	}
	c.expectClosed()
	if d := time.Since(start); d < tc.minWait {
		t.Fatalf("closed after %s; want no sooner than %s", d, tc.minWait)
	}
	<-writeErr // any error is the server hanging up on a long input
}

// rawHTTPVia sends req on a new connection from dial (in the background:
// the server may answer before it has read it all) and returns the status
// line of the answer.
func rawHTTPVia(t *testing.T, l *NSQLookupd, dial dialer, req []byte) string {
	t.Helper()
	conn := dial(t, l)
	defer conn.Close()
	go func() {
		conn.SetWriteDeadline(time.Now().Add(ioTimeout))
		conn.Write(req)
	}()
	conn.SetReadDeadline(time.Now().Add(ioTimeout))
	status, err := bufio.NewReader(conn).ReadString('\n')
	if err != nil {
		t.Fatalf("reading the status line: got error %v (after %q); want an answer", err, status)
	}
	return strings.TrimRight(status, "\r\n")
}

// expectHTTPClosed fails unless the server closes conn, sending nothing
// but at most a 408, within d.
func expectHTTPClosed(t *testing.T, conn net.Conn, d time.Duration) {
	t.Helper()
	conn.SetReadDeadline(time.Now().Add(d))
	got, err := io.ReadAll(conn)
	var ne net.Error
	if errors.As(err, &ne) && ne.Timeout() {
		t.Fatalf("connection still open after %s; want it closed", d)
	}
	if len(got) > 0 && !bytes.HasPrefix(got, []byte("HTTP/1.1 408 ")) {
		t.Fatalf("got %q; want nothing or a 408 before the close", got)
	}
}

// sizeFrame is the 4-byte big-endian size n.
func sizeFrame(n uint32) string {
	return sizePrefix(int32(n))
}

// garbage returns n bytes from a fixed-seed generator.
func garbage(seed int64, n int) []byte {
	b := make([]byte, n)
	rand.New(rand.NewSource(seed)).Read(b)
	return b
}

// garbageAnswer is the answer docs/wire.md gives to in sent after the magic:
// the first line's first word is an unknown command, unless the line is
// too long.
func garbageAnswer(in []byte) string {
	i := bytes.IndexByte(in, '\n')
	if i < 0 || i+1 > maxCommandLine {
		return fmt.Sprintf("E_INVALID command line longer than %d bytes", maxCommandLine)
	}
	params := strings.Split(strings.TrimSpace(string(in[:i+1])), " ")
	return "E_INVALID invalid command " + params[0]
}

func TestHostileInput(t *testing.T) {
	t.Parallel()
	tlsFiles := newTLSFiles(t)
	l := startLookupd(t, tlsFiles.withHTTPS(func(o *Options) {
		o.IdentifyTimeout = hostileIdentifyTimeout
	}), func(l *NSQLookupd) {
		// The exported constant stays the default; only this daemon waits
		// less for slow headers (and, on HTTPS, for handshakes).
		l.httpServer.ReadHeaderTimeout = hostileReadHeaderTimeout
		l.httpsServer.ReadHeaderTimeout = hostileReadHeaderTimeout
	})
	v := newVictim(t, l)
	v.https = tlsFiles.client(nil)
	checkHealth(t, l, v, 0)

	const longLine = 5000
	bigName := strings.Repeat("n", 4000)
	random := garbage(1, 64<<10)
	randomLine := garbage(2, 300)
	for i, b := range randomLine {
		if b == '\n' {
			randomLine[i] = 'x'
		}
	}
	randomLine = append(randomLine, '\n')

	tests := []struct {
		name string
		run  func(t *testing.T, l *NSQLookupd, v *victim)
	}{
		// Magic and deadlines.
		{"wrong magic", tcpCase{noMagic: true, send: []byte("  V2"), want: []string{"E_BAD_PROTOCOL"}}.run},
		{"http request on tcp port", tcpCase{noMagic: true, send: []byte("GET / HTTP/1.1\r\nHost: x\r\n\r\n"), want: []string{"E_BAD_PROTOCOL"}}.run},
		{"nul magic", tcpCase{noMagic: true, send: []byte("\x00\x00\x00\x00"), want: []string{"E_BAD_PROTOCOL"}}.run},
		{"nothing sent", tcpCase{noMagic: true, minWait: hostileIdentifyTimeout / 2}.run},
		{"partial magic", tcpCase{noMagic: true, send: []byte("  V"), minWait: hostileIdentifyTimeout / 2}.run},
		{"partial magic then eof", tcpCase{noMagic: true, send: []byte("  V"), closeWrite: true}.run},
		{"magic then nothing", tcpCase{minWait: hostileIdentifyTimeout / 2}.run},
		{"magic then pings only", tcpCase{send: []byte("PING\nPING\n"), want: []string{"OK", "OK"}, minWait: hostileIdentifyTimeout / 2}.run},
		{"magic then eof", tcpCase{closeWrite: true}.run},

		// IDENTIFY body size and body.
		{"identify size negative", tcpCase{send: []byte("IDENTIFY\n\xff\xff\xff\xf3"),
			want: []string{"E_BAD_BODY IDENTIFY body size -13 out of range (1 to 65536)"}}.run},
		{"identify size min int32", tcpCase{send: []byte("IDENTIFY\n\x80\x00\x00\x00"),
			want: []string{"E_BAD_BODY IDENTIFY body size -2147483648 out of range (1 to 65536)"}}.run},
		{"identify size zero", tcpCase{send: []byte("IDENTIFY\n" + sizeFrame(0)),
			want: []string{"E_BAD_BODY IDENTIFY failed to decode JSON body"}}.run},
		{"identify size max int32", tcpCase{send: []byte("IDENTIFY\n\x7f\xff\xff\xff"),
			want: []string{"E_BAD_BODY IDENTIFY body size 2147483647 out of range (1 to 65536)"}}.run},
		{"identify size one over", tcpCase{send: []byte("IDENTIFY\n" + sizeFrame(65537)),
			want: []string{"E_BAD_BODY IDENTIFY body size 65537 out of range (1 to 65536)"}}.run},
		{"identify size at limit", tcpCase{send: []byte("IDENTIFY\n" + sizeFrame(65536) + strings.Repeat(" ", 65536)),
			want: []string{"E_BAD_BODY IDENTIFY failed to decode JSON body"}}.run},
		{"identify size truncated", tcpCase{send: []byte("IDENTIFY\n\x00\x00"), closeWrite: true,
			want: []string{"E_BAD_BODY IDENTIFY failed to read body size"}}.run},
		{"identify size truncated then silence", tcpCase{send: []byte("IDENTIFY\n\x00\x00"),
			want: []string{"E_BAD_BODY IDENTIFY failed to read body size"}, minWait: hostileIdentifyTimeout / 2}.run},
		{"identify body truncated", tcpCase{send: []byte("IDENTIFY\n" + sizeFrame(100) + `{"tcp_port":`), closeWrite: true,
			want: []string{"E_BAD_BODY IDENTIFY failed to read body"}}.run},
		{"identify body declared large then silence", tcpCase{send: []byte("IDENTIFY\n" + sizeFrame(65536) + "{"),
			want: []string{"E_BAD_BODY IDENTIFY failed to read body"}, minWait: hostileIdentifyTimeout / 2}.run},
		{"identify bad json", tcpCase{send: []byte("IDENTIFY\n" + sizeFrame(5) + "{abc}"),
			want: []string{"E_BAD_BODY IDENTIFY failed to decode JSON body"}}.run},
		{"identify binary body", tcpCase{send: append([]byte("IDENTIFY\n"+sizeFrame(1000)), random[:1000]...),
			want: []string{"E_BAD_BODY IDENTIFY failed to decode JSON body"}}.run},
		{"identify wrong types", tcpCase{send: []byte("IDENTIFY\n" + sizeFrame(70) + `{"broadcast_address":1,"tcp_port":"1","http_port":[2],"version":{}}   `),
			want: []string{"E_BAD_BODY IDENTIFY failed to decode JSON body"}}.run},
		{"identify port overflow", tcpCase{send: []byte("IDENTIFY\n" + sizeFrame(28) + `{"tcp_port":1e400,"version":1`),
			want: []string{"E_BAD_BODY IDENTIFY failed to decode JSON body"}}.run},
		{"identify null", tcpCase{send: []byte("IDENTIFY\n" + sizeFrame(4) + "null"),
			want: []string{"E_BAD_BODY IDENTIFY missing fields"}}.run},
		{"identify array", tcpCase{send: []byte("IDENTIFY\n" + sizeFrame(2) + "[]"),
			want: []string{"E_BAD_BODY IDENTIFY failed to decode JSON body"}}.run},
		{"identify twice", tcpCase{identify: true, send: []byte("IDENTIFY\n" + sizeFrame(0xffffffff)),
			want: []string{"E_INVALID cannot IDENTIFY again"}}.run},

		// REGISTER names.
		{"register nul in topic", tcpCase{identify: true, send: []byte("REGISTER t\x00 c\n"),
			want: []string{"E_BAD_TOPIC REGISTER topic name 't\x00' is not valid"}}.run},
		{"register nul in channel", tcpCase{identify: true, send: []byte("REGISTER t \x00c\n"),
			want: []string{"E_BAD_CHANNEL REGISTER channel name '\x00c' is not valid"}}.run},
		{"register binary topic", tcpCase{identify: true, send: []byte("REGISTER \xff\xfe\n"),
			want: []string{"E_BAD_TOPIC REGISTER topic name '\xff\xfe' is not valid"}}.run},
		{"register 65-byte topic", tcpCase{identify: true, send: []byte("REGISTER " + strings.Repeat("a", 65) + "\n"),
			want: []string{"E_BAD_TOPIC REGISTER topic name '" + strings.Repeat("a", 65) + "' is not valid"}}.run},
		{"register 4000-byte channel", tcpCase{identify: true, send: []byte("REGISTER t " + bigName + "\n"),
			want: []string{"E_BAD_CHANNEL REGISTER channel name '" + bigName + "' is not valid"}}.run},
		{"unregister 4000-byte topic", tcpCase{identify: true, send: []byte("UNREGISTER " + bigName + "\n"),
			want: []string{"E_BAD_TOPIC UNREGISTER topic name '" + bigName + "' is not valid"}}.run},

		// Line length.
		{"line at limit", tcpCase{send: []byte(strings.Repeat("x", maxCommandLine-1) + "\n"),
			want: []string{"E_INVALID invalid command " + strings.Repeat("x", maxCommandLine-1)}}.run},
		{"line one over limit", tcpCase{send: []byte(strings.Repeat("x", maxCommandLine) + "\n"),
			want: []string{"E_INVALID command line longer than 4096 bytes"}}.run},
		{"long line no newline", tcpCase{send: bytes.Repeat([]byte("x"), longLine),
			want: []string{"E_INVALID command line longer than 4096 bytes"}}.run},
		{"long line no newline identified", tcpCase{identify: true, send: bytes.Repeat([]byte("REGISTER "), 1000),
			want: []string{"E_INVALID command line longer than 4096 bytes"}}.run},
		{"1 MiB no newline", tcpCase{send: bytes.Repeat([]byte("y"), 1<<20),
			want: []string{"E_INVALID command line longer than 4096 bytes"}}.run},
		{"pings then long line", tcpCase{send: []byte("PING\nPING\n" + strings.Repeat("z", longLine)),
			want: []string{"OK", "OK", "E_INVALID command line longer than 4096 bytes"}}.run},

		// Random bytes, fixed seeds: the answers are computed from docs/wire.md's rules.
		{"random bytes no magic", tcpCase{noMagic: true, send: random, want: []string{"E_BAD_PROTOCOL"}}.run},
		{"random bytes after magic", tcpCase{send: random, want: []string{garbageAnswer(random)}}.run},
		{"random line after magic", tcpCase{send: randomLine, want: []string{garbageAnswer(randomLine)}}.run},
		{"random bytes after identify", tcpCase{identify: true, send: random, want: []string{garbageAnswer(random)}}.run},

		// Many connections.
		{"2000 idle and half-open connections", idleConnections},
		{"2000 connections churn", connectionChurn},

		// HTTP.
		{"http partial headers", slowHeaders("GET /ping HTTP/1.1\r\nHost: x\r\n", 0)},
		{"http nothing sent", slowHeaders("", 0)},
		{"http trickled headers", slowHeaders("GET /ping HTTP/1.1\r\nHost: x\r\nX-Slow: "+strings.Repeat("s", 200), 20*time.Millisecond)},
		{"200 http slow-header clients", manySlowHeaders},
		{"http query 60 KiB", httpStatus("GET", "/lookup?topic="+strings.Repeat("q", 60<<10), http.StatusNotFound)},
		{"http query 100 KiB", rawStatus("GET /lookup?topic="+strings.Repeat("q", 100<<10)+" HTTP/1.1\r\nHost: x\r\n\r\n",
			"HTTP/1.1 431 Request Header Fields Too Large")},
		{"http header 1 MiB", rawStatus("GET /ping HTTP/1.1\r\nHost: x\r\nX-Big: "+strings.Repeat("h", 1<<20)+"\r\n\r\n",
			"HTTP/1.1 431 Request Header Fields Too Large")},
		{"http 5000 headers", rawStatus("GET /ping HTTP/1.1\r\nHost: x\r\n"+strings.Repeat("X-H: v\r\n", 5000)+"\r\n",
			"HTTP/1.1 200 OK")},
		{"http 20000 headers", rawStatus("GET /ping HTTP/1.1\r\nHost: x\r\n"+strings.Repeat("X-H: v\r\n", 20000)+"\r\n",
			"HTTP/1.1 431 Request Header Fields Too Large")},
		{"http 12000 query params", httpStatusIn("GET", "/lookup?"+strings.Repeat("a=1&", 12000)+"topic=t", http.StatusBadRequest, http.StatusNotFound)},
		{"http bad query escape", httpStatus("GET", "/lookup?topic=%zz", http.StatusBadRequest)},
		{"http garbage request line", rawStatus("GARBAGE\r\n\r\n", "HTTP/1.1 400 Bad Request")},
		{"http method only", rawStatus("GET\r\n\r\n", "HTTP/1.1 400 Bad Request")},
		{"http binary request line", rawStatus("\x00\x01\x02\xff\r\n\r\n", "HTTP/1.1 400 Bad Request")},
		{"http bad version", rawStatus("GET /ping HTTP/9.9\r\nHost: x\r\n\r\n", "HTTP/1.1 505 HTTP Version Not Supported")},
		{"http no host", rawStatus("GET /ping HTTP/1.1\r\n\r\n", "HTTP/1.1 400 Bad Request")},
		{"http bad header line", rawStatus("GET /ping HTTP/1.1\r\nHost: x\r\nno colon here\r\n\r\n", "HTTP/1.1 400 Bad Request")},
		{"http nul in header", rawStatus("GET /ping HTTP/1.1\r\nHost: x\r\nX-A: a\x00b\r\n\r\n", "HTTP/1.1 400 Bad Request")},
		{"http negative content length", rawStatus("POST /topic/create?topic=t HTTP/1.1\r\nHost: x\r\nContent-Length: -1\r\n\r\n", "HTTP/1.1 400 Bad Request")},
		{"http chunked and length", rawStatus("POST /topic/create?topic=t HTTP/1.1\r\nHost: x\r\nTransfer-Encoding: chunked\r\nContent-Length: 3\r\n\r\n0\r\n\r\n", "HTTP/1.1 ")},
		{"http declared body never sent", missingBody("POST /topic/create?topic=t HTTP/1.1\r\nHost: x\r\nContent-Length: 1000\r\n\r\n", "HTTP/1.1 200 OK")},
		{"http chunked body never sent", missingBody("POST /topic/create?topic=t HTTP/1.1\r\nHost: x\r\nTransfer-Encoding: chunked\r\n\r\n", "HTTP/1.1 200 OK")},
		{"http symbol body never sent", missingBody("POST /debug/pprof/symbol HTTP/1.1\r\nHost: x\r\nContent-Length: 1000\r\n\r\n0x1+", "HTTP/1.1 200 OK")},
		{"http random bytes", rawStatus(string(random[:4096])+"\r\n\r\n", "HTTP/1.1 400 Bad Request")},
		// (what each 50 MB body costs in memory: TestHugeBodyMemory)
		{"http 50 MB post to /topic/create", hugePost("/topic/create?topic=huge", "HTTP/1.1 200 OK", false)},
		{"http 50 MB chunked post to /channel/create", hugePost("/channel/create?topic=huge&channel=c", "HTTP/1.1 200 OK", true)},
		{"http 50 MB post to /debug/pprof/symbol", hugePost("/debug/pprof/symbol", "HTTP/1.1 200 OK", false)},

		// HTTPS (https_hostile_test.go): what reaches the TLS port before
		// or instead of a handshake, then the HTTP attacks above over TLS.
		{"https garbage", tlsGarbage(garbage(3, 64<<10))},
		{"https nothing sent", tlsStalled(nil)},
		{"https partial client hello", tlsStalled(func(hello []byte) []byte { return hello[:20] })},
		{"https half handshake", tlsStalled(func(hello []byte) []byte { return hello })},
		{"https plaintext http", tlsPlaintext},
		{"https handshake then nothing", slowHeadersVia(dialHTTPS, "", 0)},
		{"https partial headers", slowHeadersVia(dialHTTPS, "GET /ping HTTP/1.1\r\nHost: x\r\n", 0)},
		{"https header 1 MiB", rawStatusVia(dialHTTPS, "GET /ping HTTP/1.1\r\nHost: x\r\nX-Big: "+strings.Repeat("h", 1<<20)+"\r\n\r\n",
			"HTTP/1.1 431 Request Header Fields Too Large")},
		{"https garbage request line", rawStatusVia(dialHTTPS, "GARBAGE\r\n\r\n", "HTTP/1.1 400 Bad Request")},
		{"https declared body never sent", missingBodyVia(dialHTTPS, "POST /topic/create?topic=t HTTP/1.1\r\nHost: x\r\nContent-Length: 1000\r\n\r\n", "HTTP/1.1 200 OK")},
		{"https 50 MB post to /topic/create", hugePostVia(dialHTTPS, "/topic/create?topic=huge", "HTTP/1.1 200 OK", false)},
		{"2000 idle tls connections", idleTLSConnections},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			tt.run(t, l, v)
			checkHealth(t, l, v, 0)
		})
	}
}

// idleConnections opens 2000 connections that send nothing, part of the
// magic, the magic, or a partial IDENTIFY, some half-closed; the daemon
// must serve everyone else meanwhile and close each by IdentifyTimeout.
func idleConnections(t *testing.T, l *NSQLookupd, v *victim) {
	n := int(ensureFDs(t, 2*2000+256)-256) / 2
	n = min(n, 2000)
	sends := []struct {
		send       string
		closeWrite bool
	}{
		{"", false},
		{"  V", false},
		{"  V1", false},
		{"  V1IDENTIFY\n\x00\x00\x00\x40{", false},
		{"  V1IDENTIFY\n", true}, // half-closed: the size never comes
		{"  V1PING\n", true},
	}
	conns := make([]net.Conn, n)
	var wg sync.WaitGroup
	errs := make(chan error, n)
	const workers = 8
	for w := 0; w < workers; w++ {
		wg.Add(1)
		go func(w int) {
			defer wg.Done()
			for i := w; i < n; i += workers {
				conn, err := net.DialTimeout("tcp", l.RealTCPAddr().String(), ioTimeout)
				if err != nil {
					errs <- err
					return
				}
				conns[i] = conn
				s := sends[i%len(sends)]
				if s.send != "" {
					conn.SetWriteDeadline(time.Now().Add(ioTimeout))
					conn.Write([]byte(s.send))
				}
				if s.closeWrite {
					conn.(*net.TCPConn).CloseWrite()
				}
			}
		}(w)
	}
	wg.Wait()
	t.Cleanup(func() {
		for _, c := range conns {
			if c != nil {
				c.Close()
			}
		}
	})
	close(errs)
	for err := range errs {
		t.Fatalf("dial: %s", err)
	}

	// Everyone else is served while they hang on.
	checkHealth(t, l, v, 0)

	// The server closes every one of them by itself.
	deadline := time.Now().Add(hostileIdentifyTimeout + 10*time.Second)
	var buf [64]byte
	for i, c := range conns {
		c.SetReadDeadline(deadline)
		for {
			_, err := c.Read(buf[:])
			if err == nil {
				continue // an answer (OK, E_BAD_BODY...) before the close
			}
			var ne net.Error
			if errors.As(err, &ne) && ne.Timeout() {
				t.Fatalf("connection %d (sent %q) still open after the identify timeout", i, sends[i%len(sends)].send)
			}
			break
		}
	}
	test.Eventually(t, 5*time.Second, func() bool {
		return trackedConns(l) <= 1 // the victim
	})
}

// connectionChurn connects and disconnects 2000 times, a third of the
// connections identifying and registering first; afterwards only the
// victim is left in the registry.
func connectionChurn(t *testing.T, l *NSQLookupd, _ *victim) {
	const n, workers = 2000, 8
	body := identifyJSON(9150, 9151)
	identify := "  V1IDENTIFY\n" + sizePrefix(int32(len(body))) + body + "REGISTER churn#ephemeral c#ephemeral\n"
	var wg sync.WaitGroup
	var failed atomic.Value
	for w := 0; w < workers; w++ {
		wg.Add(1)
		go func(w int) {
			defer wg.Done()
			for i := w; i < n; i += workers {
				conn, err := net.DialTimeout("tcp", l.RealTCPAddr().String(), ioTimeout)
				if err != nil {
					failed.Store(err)
					return
				}
				conn.SetDeadline(time.Now().Add(ioTimeout))
				switch i % 3 {
				case 0: // connect, close
				case 1:
					conn.Write([]byte("  V1"))
				case 2: // identify, register, read both answers, vanish
					conn.Write([]byte(identify))
					if _, err := io.ReadFull(conn, make([]byte, 4+len(l.identifyResponse)+4+2)); err != nil {
						failed.Store(fmt.Errorf("churn %d: reading answers: %w", i, err))
					}
				}
				conn.Close()
			}
		}(w)
	}
	wg.Wait()
	if err, _ := failed.Load().(error); err != nil {
		t.Fatal(err)
	}
	test.Eventually(t, 10*time.Second, func() bool {
		return trackedConns(l) <= 1 && peerCount(l) <= 1
	})
	var topics struct{ Topics []string }
	getJSON(t, l, "/topics", &topics)
	for _, topic := range topics.Topics {
		if topic == "churn#ephemeral" {
			t.Fatalf("topics: got %v; want churn#ephemeral gone with its producers", topics.Topics)
		}
	}
}

// slowHeaders sends start on the HTTP port, then, if every is not zero,
// one more byte each every; the server must hang up within its
// ReadHeaderTimeout (plus slack), without an answer.
func slowHeaders(start string, every time.Duration) func(t *testing.T, l *NSQLookupd, _ *victim) {
	return slowHeadersVia(dialHTTP, start, every)
}

// slowHeadersVia is slowHeaders on a connection from dial.
func slowHeadersVia(dial dialer, start string, every time.Duration) func(t *testing.T, l *NSQLookupd, _ *victim) {
	return func(t *testing.T, l *NSQLookupd, _ *victim) {
		conn := dial(t, l)
		defer conn.Close()
		begin := time.Now()
		conn.Write([]byte(start))
		stop := make(chan struct{})
		defer close(stop)
		if every > 0 {
			go func() {
				tick := time.NewTicker(every)
				defer tick.Stop()
				for {
					select {
					case <-stop:
						return
					case <-tick.C:
						if _, err := conn.Write([]byte("s")); err != nil {
							return
						}
					}
				}
			}()
		}
		expectHTTPClosed(t, conn, hostileReadHeaderTimeout+ioTimeout)
		t.Logf("closed after %s (ReadHeaderTimeout %s)", time.Since(begin).Round(time.Millisecond), hostileReadHeaderTimeout)
	}
}

// manySlowHeaders holds 200 slow-header connections while the health check
// runs, then expects each closed.
func manySlowHeaders(t *testing.T, l *NSQLookupd, v *victim) {
	const n = 200
	conns := make([]net.Conn, 0, n)
	defer func() {
		for _, c := range conns {
			c.Close()
		}
	}()
	for i := 0; i < n; i++ {
		conn := dialHTTP(t, l)
		conns = append(conns, conn)
		conn.Write([]byte("GET /ping HTTP/1.1\r\nHost: x\r\n"))
	}
	checkHealth(t, l, v, 0)
	for _, c := range conns {
		expectHTTPClosed(t, c, hostileReadHeaderTimeout+ioTimeout)
	}
}

// rawStatus sends req as is and expects the status line to start with
// want (net/http may add a reason after the standard text).
func rawStatus(req, want string) func(t *testing.T, l *NSQLookupd, _ *victim) {
	return rawStatusVia(dialHTTP, req, want)
}

// rawStatusVia is rawStatus on a connection from dial.
func rawStatusVia(dial dialer, req, want string) func(t *testing.T, l *NSQLookupd, _ *victim) {
	return func(t *testing.T, l *NSQLookupd, _ *victim) {
		if got := rawHTTPVia(t, l, dial, []byte(req)); !strings.HasPrefix(got, want) {
			t.Fatalf("got %q; want %q", got, want)
		}
	}
}

// missingBody declares a body in req and never sends it: the answer must
// come at once, and the server must hang up within its ReadHeaderTimeout
// (plus slack) instead of waiting for the body forever.
func missingBody(req, want string) func(t *testing.T, l *NSQLookupd, _ *victim) {
	return missingBodyVia(dialHTTP, req, want)
}

// missingBodyVia is missingBody on a connection from dial.
func missingBodyVia(dial dialer, req, want string) func(t *testing.T, l *NSQLookupd, _ *victim) {
	return func(t *testing.T, l *NSQLookupd, _ *victim) {
		conn := dial(t, l)
		defer conn.Close()
		start := time.Now()
		conn.Write([]byte(req))
		conn.SetReadDeadline(time.Now().Add(hostileReadHeaderTimeout + ioTimeout))
		r := bufio.NewReader(conn)
		status, err := r.ReadString('\n')
		if err != nil {
			t.Fatalf("reading the status line: got error %v after %s; want an answer", err, time.Since(start))
		}
		if got := strings.TrimRight(status, "\r\n"); got != want {
			t.Fatalf("got %q; want %q", got, want)
		}
		answered := time.Since(start)
		if _, err := io.Copy(io.Discard, r); err != nil {
			var ne net.Error
			if errors.As(err, &ne) && ne.Timeout() {
				t.Fatalf("connection still open %s after the answer; want it closed", time.Since(start))
			}
		}
		t.Logf("answered after %s, closed after %s", answered.Round(time.Millisecond), time.Since(start).Round(time.Millisecond))
	}
}

// httpStatus sends a well-formed request and expects status want.
func httpStatus(method, path string, want int) func(t *testing.T, l *NSQLookupd, _ *victim) {
	return httpStatusIn(method, path, want)
}

// httpStatusIn sends a well-formed request and expects one of wants.
func httpStatusIn(method, path string, wants ...int) func(t *testing.T, l *NSQLookupd, _ *victim) {
	return func(t *testing.T, l *NSQLookupd, _ *victim) {
		resp, body := httpDo(t, l, method, path)
		for _, want := range wants {
			if resp.StatusCode == want {
				return
			}
		}
		t.Fatalf("got %d %.200q; want one of %v", resp.StatusCode, body, wants)
	}
}

// hugePost streams a 50 MB body to path: the daemon must answer (status
// line want) before it has taken the body, and hang up rather than read
// it. What that costs the daemon in memory is TestHugeBodyMemory's to
// measure: this table runs in parallel with other tests.
func hugePost(path, want string, chunked bool) func(t *testing.T, l *NSQLookupd, _ *victim) {
	return hugePostVia(dialHTTP, path, want, chunked)
}

// hugePostVia is hugePost on a connection from dial.
func hugePostVia(dial dialer, path, want string, chunked bool) func(t *testing.T, l *NSQLookupd, _ *victim) {
	return func(t *testing.T, l *NSQLookupd, _ *victim) {
		conn := dial(t, l)
		defer conn.Close()
		sendHugePost(t, conn, path, want, chunked)
	}
}

// sendHugePost sends a request for path with a 50 MB body (chunked, or
// with its Content-Length) on conn, and fails unless the daemon answers
// with the status line want and hangs up before it has taken the body.
func sendHugePost(t *testing.T, conn net.Conn, path, want string, chunked bool) {
	t.Helper()
	const size = 50 << 20
	head := "POST " + path + " HTTP/1.1\r\nHost: x\r\n"
	if chunked {
		head += "Transfer-Encoding: chunked\r\n\r\n"
	} else {
		head += fmt.Sprintf("Content-Length: %d\r\n\r\n", size)
	}
	// The body is valid symbol addresses for pprof: the most work a
	// body can ask of the one handler that reads one.
	pc := fmt.Sprintf("%#x+", funcPC())
	chunk := bytes.Repeat([]byte(pc), (64<<10)/len(pc))
	if chunked {
		chunk = append([]byte(fmt.Sprintf("%x\r\n", len(chunk))), append(chunk, "\r\n"...)...)
	}
	var sent atomic.Int64
	writeDone := make(chan error, 1)
	go func() {
		conn.SetWriteDeadline(time.Now().Add(20 * time.Second))
		_, err := conn.Write([]byte(head))
		for err == nil && sent.Load() < size {
			var n int
			n, err = conn.Write(chunk)
			sent.Add(int64(n))
		}
		writeDone <- err
	}()

	start := time.Now()
	conn.SetReadDeadline(time.Now().Add(10 * time.Second))
	r := bufio.NewReader(conn)
	status, err := r.ReadString('\n')
	if err != nil {
		t.Fatalf("reading the status line: got error %v after %s (%d bytes sent); want an answer",
			err, time.Since(start), sent.Load())
	}
	answered := time.Since(start)
	if got := strings.TrimRight(status, "\r\n"); got != want {
		t.Fatalf("got %q; want %q", got, want)
	}
	// Take the whole answer (pprof's may be large), then the close.
	answer, _ := io.Copy(io.Discard, r)
	werr := <-writeDone
	t.Logf("answered after %s (%d-byte answer); client sent %d of %d bytes before the server hung up (%v)",
		answered.Round(time.Millisecond), answer, sent.Load(), size, werr)
	if werr == nil {
		t.Fatalf("the whole %d-byte body was taken; want the server to hang up", size)
	}
}

// Attacks on the HTTPS port, for TestHostileInput's table: bytes that are
// not TLS, handshakes that never finish, plaintext HTTP, and many idle
// connections. net/http bounds a handshake by the server's smallest
// timeout (ReadHeaderTimeout here), so each costs the daemon at most that.

// hostileTLSConfig is the attackers' client side: who the server is does
// not matter to them (the health check verifies it).
var hostileTLSConfig = &tls.Config{InsecureSkipVerify: true, CurvePreferences: []tls.CurveID{tls.X25519}}

// dialHTTPS connects to the daemon's HTTPS address and completes a TLS
// handshake, failing the test if it cannot within ioTimeout. The handshake
// races the daemon's deadline (500 ms in TestHostileInput): one the daemon
// cut is tried again. TLS 1.2, because there the server's Finished comes
// last: the client's handshake succeeds only once the server's has (in
// TLS 1.3 the client finishes first and could not tell).
func dialHTTPS(t *testing.T, l *NSQLookupd) net.Conn {
	t.Helper()
	for deadline := time.Now().Add(ioTimeout); ; {
		raw, err := net.DialTimeout("tcp", l.RealHTTPSAddr().String(), ioTimeout)
		if err != nil {
			t.Fatalf("dial: %s", err)
		}
		conn := tls.Client(raw, honestTLSConfig)
		conn.SetDeadline(deadline)
		err = conn.Handshake()
		if err == nil {
			conn.SetDeadline(time.Time{})
			return conn
		}
		raw.Close()
		if time.Now().After(deadline) {
			t.Fatalf("handshake: %s", err)
		}
	}
}

// honestTLSConfig is hostileTLSConfig with TLS 1.2 at most (dialHTTPS).
var honestTLSConfig = &tls.Config{InsecureSkipVerify: true, CurvePreferences: []tls.CurveID{tls.X25519}, MaxVersion: tls.VersionTLS12}

// dialTLSPort connects to the HTTPS address without a handshake.
func dialTLSPort(t *testing.T, l *NSQLookupd) net.Conn {
	t.Helper()
	conn, err := net.DialTimeout("tcp", l.RealHTTPSAddr().String(), ioTimeout)
	if err != nil {
		t.Fatalf("dial: %s", err)
	}
	t.Cleanup(func() { conn.Close() })
	return conn
}

// clientHello returns the first flight of a real TLS client, its
// ClientHello record, as sent on the wire.
func clientHello(t *testing.T) []byte {
	t.Helper()
	client, server := net.Pipe()
	defer client.Close()
	defer server.Close()
	go tls.Client(client, hostileTLSConfig).Handshake() // ends when the pipe closes
	server.SetReadDeadline(time.Now().Add(ioTimeout))
	r := bufio.NewReader(server)
	header := make([]byte, 5)
	if _, err := io.ReadFull(r, header); err != nil {
		t.Fatalf("reading the ClientHello: %s", err)
	}
	body := make([]byte, int(header[3])<<8|int(header[4]))
	if _, err := io.ReadFull(r, body); err != nil {
		t.Fatalf("reading the ClientHello: %s", err)
	}
	return append(header, body...)
}

// readUntilClosed reads conn until the server closes it and returns what
// it sent and when it closed; it fails the test if conn is still open
// after d.
func readUntilClosed(t *testing.T, conn net.Conn, d time.Duration) ([]byte, time.Duration) {
	t.Helper()
	start := time.Now()
	conn.SetReadDeadline(start.Add(d))
	got, err := io.ReadAll(conn)
	var ne net.Error
	if errors.As(err, &ne) && ne.Timeout() {
		t.Fatalf("connection still open after %s; want it closed", d)
	}
	return got, time.Since(start)
}

// tlsGarbage sends b (in the background: the server may hang up first)
// to the TLS port of a patient daemon: the server must hang up at once,
// answering nothing but a TLS alert.
func tlsGarbage(b []byte) func(t *testing.T, l *NSQLookupd, _ *victim) {
	return func(t *testing.T, _ *NSQLookupd, _ *victim) {
		conn := dialTLSPort(t, patientLookupd(t))
		go func() {
			conn.SetWriteDeadline(time.Now().Add(ioTimeout))
			conn.Write(b)
		}()
		got, took := readUntilClosed(t, conn, ioTimeout)
		if len(got) > 0 && got[0] != 0x15 { // an alert record
			t.Fatalf("got %q; want nothing or a TLS alert before the close", got)
		}
		t.Logf("closed after %s", took.Round(time.Millisecond))
	}
}

// patientLookupd starts a daemon with HTTPS and the default handshake and
// header deadline, http_api.ReadHeaderTimeout: a connection it closes
// within ioTimeout, which is shorter, was closed for what it sent, not at
// the deadline. The cases that say "at once" use it rather than a bound on
// how fast the table's daemon (500 ms deadlines) closes.
func patientLookupd(t *testing.T) *NSQLookupd {
	t.Helper()
	if http_api.ReadHeaderTimeout <= ioTimeout {
		t.Fatalf("http_api.ReadHeaderTimeout %s: want it longer than ioTimeout %s", http_api.ReadHeaderTimeout, ioTimeout)
	}
	return startLookupd(t, newTLSFiles(t).withHTTPS(nil))
}

// tlsStalled sends part of a handshake (cut of a real ClientHello; nil
// sends nothing) and then nothing: the server must hang up at the
// handshake deadline, neither sooner (the bytes were fine so far) nor much
// later.
func tlsStalled(cut func(hello []byte) []byte) func(t *testing.T, l *NSQLookupd, _ *victim) {
	return func(t *testing.T, l *NSQLookupd, _ *victim) {
		var send []byte
		if cut != nil {
			send = cut(clientHello(t))
		}
		conn := dialTLSPort(t, l)
		if _, err := conn.Write(send); err != nil {
			t.Fatalf("write: %s", err)
		}
		got, took := readUntilClosed(t, conn, hostileReadHeaderTimeout+ioTimeout)
		if took < hostileReadHeaderTimeout/2 {
			t.Fatalf("closed after %s; want it held until the handshake deadline %s", took, hostileReadHeaderTimeout)
		}
		t.Logf("the server sent %d bytes and closed after %s", len(got), took.Round(time.Millisecond))
	}
}

// tlsPlaintext sends a plain HTTP request to the TLS port of a patient
// daemon: net/http answers 400 in plaintext and hangs up at once.
func tlsPlaintext(t *testing.T, _ *NSQLookupd, _ *victim) {
	conn := dialTLSPort(t, patientLookupd(t))
	if _, err := conn.Write([]byte("GET /ping HTTP/1.1\r\nHost: x\r\n\r\n")); err != nil {
		t.Fatalf("write: %s", err)
	}
	got, _ := readUntilClosed(t, conn, ioTimeout)
	if want := "HTTP/1.0 400 Bad Request\r\n"; !bytes.HasPrefix(got, []byte(want)) {
		t.Fatalf("got %q; want it to start %q", got, want)
	}
}

// idleTLSDeadline is the handshake and header deadline of the daemon that
// idleTLSConnections attacks: long enough to hold most of its connections
// at once (opening them took 5 to 12 s under -race, 1.8 s without, on a
// 2-core machine that other jobs kept at a load average of 12), short
// enough to wait for.
const idleTLSDeadline = 5 * time.Second

// idleTLSConnections holds 2000 connections to the TLS port (fewer if the
// file limit is lower) that stop at every stage: nothing sent, part of a
// ClientHello, a whole one and no more, a finished handshake and no
// request, a finished handshake and part of a request. Opening them takes
// seconds (the handshakes), longer than the table daemon's 500 ms
// deadline, so they are held by a daemon of their own with
// idleTLSDeadline: everyone else is served by it meanwhile, over HTTP and
// HTTPS, and it closes each one by its deadline. (The table's health
// check of its own daemon follows, as for every case.)
func idleTLSConnections(t *testing.T, _ *NSQLookupd, _ *victim) {
	tlsFiles := newTLSFiles(t)
	l := startLookupd(t, tlsFiles.withHTTPS(nil), func(l *NSQLookupd) {
		l.httpServer.ReadHeaderTimeout = idleTLSDeadline
		l.httpsServer.ReadHeaderTimeout = idleTLSDeadline
	})
	v := newVictim(t, l)
	v.https = tlsFiles.client(nil)

	n := int(ensureFDs(t, 2*2000+256)-256) / 2
	n = min(n, 2000)
	hello := clientHello(t)
	// Of every ten connections, one goes through a full handshake and one
	// more sends a whole ClientHello (both cost the server a key exchange);
	// the others stop before the server has anything to compute.
	type stage struct {
		name  string
		per10 int
		open  func(raw net.Conn) (net.Conn, error)
	}
	stages := []stage{
		{"nothing sent", 4, func(raw net.Conn) (net.Conn, error) { return raw, nil }},
		{"partial ClientHello", 3, func(raw net.Conn) (net.Conn, error) { _, err := raw.Write(hello[:len(hello)/2]); return raw, err }},
		{"ClientHello only", 1, func(raw net.Conn) (net.Conn, error) { _, err := raw.Write(hello); return raw, err }},
		{"handshake, no request", 1, func(raw net.Conn) (net.Conn, error) {
			c := tls.Client(raw, hostileTLSConfig)
			return c, c.Handshake()
		}},
		{"handshake, partial request", 1, func(raw net.Conn) (net.Conn, error) {
			c := tls.Client(raw, hostileTLSConfig)
			if err := c.Handshake(); err != nil {
				return c, err
			}
			_, err := c.Write([]byte("GET /ping HTTP/1.1\r\nHost: x\r\n"))
			return c, err
		}},
	}
	var plan []stage // connection i stops at plan[i%10]
	for _, st := range stages {
		for k := 0; k < st.per10; k++ {
			plan = append(plan, st)
		}
	}
	conns := make([]net.Conn, n)
	t.Cleanup(func() {
		for _, c := range conns {
			if c != nil {
				c.Close()
			}
		}
	})
	var wg sync.WaitGroup
	errs := make(chan error, n)
	start := time.Now()
	const workers = 8
	for w := 0; w < workers; w++ {
		wg.Add(1)
		go func(w int) {
			defer wg.Done()
			for i := w; i < n; i += workers {
				raw, err := net.DialTimeout("tcp", l.RealHTTPSAddr().String(), ioTimeout)
				if err != nil {
					errs <- err
					return
				}
				conns[i] = raw
				dialed := time.Now()
				raw.SetDeadline(dialed.Add(ioTimeout))
				c, err := plan[i%len(plan)].open(raw)
				// Only the deadline may end a handshake: a connection that
				// has outlived it may be closed under the client's feet.
				if err != nil && time.Since(dialed) < idleTLSDeadline {
					errs <- fmt.Errorf("connection %d (%s): %w", i, plan[i%len(plan)].name, err)
					return
				}
				c.SetDeadline(time.Time{})
				conns[i] = c
			}
		}(w)
	}
	wg.Wait()
	close(errs)
	for err := range errs {
		t.Fatalf("opening the idle connections: %s", err)
	}
	t.Logf("opened %d connections in %s", n, time.Since(start).Round(time.Millisecond))

	// Everyone else is served while they hang on, over HTTP and HTTPS.
	checkHealth(t, l, v, 0)

	// The server closes every one of them by itself.
	deadline := time.Now().Add(idleTLSDeadline + 10*time.Second)
	for i, c := range conns {
		c.SetReadDeadline(deadline)
		if _, err := io.Copy(io.Discard, c); err != nil {
			var ne net.Error
			if errors.As(err, &ne) && ne.Timeout() {
				t.Fatalf("connection %d (%s) still open after the handshake and header deadlines", i, plan[i%len(plan)].name)
			}
		}
	}
	t.Logf("all closed %s after the start", time.Since(start).Round(time.Millisecond))
}
