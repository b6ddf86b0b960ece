package nsqlookupd

import (
	"bufio"
	"encoding/json"
	"errors"
	"fmt"
	"io"
	"math/rand/v2"
	"net"
	"net/http"
	"net/http/httptest"
	"slices"
	"strings"
	"sync"
	"testing"
	"time"

	"github.com/julienschmidt/httprouter"

	"github.com/lookupd/nsqlookupd/internal/lg"
	"github.com/lookupd/nsqlookupd/internal/test"
	"github.com/lookupd/nsqlookupd/nsqlookupd/internal/registry"
)

const (
	jsonType = "application/json; charset=utf-8"
	nsqType  = "nsq; version=1.0"
)

type httpCase struct {
	method, path string
	status       int
	body         string
	contentType  string // "" means no Content-Type header
	nsqHeader    bool   // X-NSQ-Content-Type expected
	allow        string // Allow header expected, if any
	location     string // Location header expected, if any
}

func runHTTPCases(t *testing.T, l *NSQLookupd, cases []httpCase) {
	t.Helper()
	for _, tc := range cases {
		t.Run(tc.method+" "+tc.path, func(t *testing.T) {
			resp, body := httpDo(t, l, tc.method, tc.path)
			if resp.StatusCode != tc.status {
				t.Errorf("status: got %d; want %d (body %q)", resp.StatusCode, tc.status, body)
			}
			if tc.body != "*" && body != tc.body {
				t.Errorf("body: got %q; want %q", body, tc.body)
			}
			if got := resp.Header.Get("Content-Type"); got != tc.contentType {
				t.Errorf("Content-Type: got %q; want %q", got, tc.contentType)
			}
			got := resp.Header.Get("X-NSQ-Content-Type")
			if tc.nsqHeader && got != nsqType || !tc.nsqHeader && got != "" {
				t.Errorf("X-NSQ-Content-Type: got %q; want present=%v", got, tc.nsqHeader)
			}
			if got := resp.Header.Get("Allow"); got != tc.allow {
				t.Errorf("Allow: got %q; want %q", got, tc.allow)
			}
			if got := resp.Header.Get("Location"); got != tc.location {
				t.Errorf("Location: got %q; want %q", got, tc.location)
			}
		})
	}
}

// apiOK and apiErr build the common cases.
func apiOK(method, path, body string) httpCase {
	ct := jsonType
	if body == "" {
		ct = ""
	}
	return httpCase{method: method, path: path, status: 200, body: body, contentType: ct, nsqHeader: true}
}

func apiErr(method, path string, status int, msg string) httpCase {
	return httpCase{method: method, path: path, status: status, body: `{"message":"` + msg + `"}`,
		contentType: jsonType, nsqHeader: true}
}

// TestHTTPReadRoutes checks every GET route of docs/wire.md, HTTP API, byte for byte
// against a registry holding one producer.
func TestHTTPReadRoutes(t *testing.T) {
	t.Parallel()
	l := startLookupd(t, nil)
	p := connectProducer(t, l, 4150, 4151)
	p.mustOK("REGISTER t c2")
	p.mustOK("REGISTER t c1")
	p.mustOK("REGISTER u c1")
	addr := p.conn.LocalAddr().String()
	prod := fmt.Sprintf(`{"remote_address":%q,"hostname":"host-4150","broadcast_address":"127.0.0.1","tcp_port":4150,"http_port":4151,"version":"1.3.0"`, addr)

	runHTTPCases(t, l, []httpCase{
		{method: "GET", path: "/ping", status: 200, body: "OK", contentType: "text/plain; charset=utf-8"},
		apiOK("GET", "/info", `{"version":"1.3.0"}`),
		apiOK("GET", "/topics", `{"topics":["t","u"]}`),
		apiOK("GET", "/channels?topic=t", `{"channels":["c1","c2"]}`),
		apiOK("GET", "/channels?topic=nope", `{"channels":[]}`),
		apiOK("GET", "/channels?topic=*", `{"channels":["c1","c1","c2"]}`),
		apiOK("GET", "/channels?topic=t&topic=u", `{"channels":["c1","c2"]}`),
		apiErr("GET", "/channels", 400, "MISSING_ARG_TOPIC"),
		apiErr("GET", "/channels?topic=%zz", 400, "INVALID_REQUEST"),
		apiOK("GET", "/lookup?topic=t", `{"channels":["c1","c2"],"producers":[`+prod+`}]}`),
		apiOK("GET", "/lookup?topic=*", `{"channels":["c1","c1","c2"],"producers":[`+prod+`}]}`),
		apiErr("GET", "/lookup?topic=bad!", 404, "TOPIC_NOT_FOUND"),
		apiErr("GET", "/lookup?topic=", 404, "TOPIC_NOT_FOUND"),
		apiErr("GET", "/lookup", 400, "MISSING_ARG_TOPIC"),
		apiErr("GET", "/lookup?topic=t;x", 400, "INVALID_REQUEST"),
		apiOK("GET", "/nodes", `{"producers":[`+prod+`,"tombstones":[false,false],"topics":["t","u"]}]}`),
		apiOK("GET", "/topics?%zz", `{"topics":["t","u"]}`), // routes that read no parameter don't parse
		apiErr("GET", "/nope", 404, "NOT_FOUND"),
		apiErr("POST", "/nope", 404, "NOT_FOUND"),
		{method: "POST", path: "/lookup", status: 405, body: `{"message":"METHOD_NOT_ALLOWED"}`, contentType: jsonType, nsqHeader: true, allow: "GET, OPTIONS"},
		{method: "GET", path: "/topic/create", status: 405, body: `{"message":"METHOD_NOT_ALLOWED"}`, contentType: jsonType, nsqHeader: true, allow: "OPTIONS, POST"},
		{method: "HEAD", path: "/ping", status: 405, body: "", contentType: jsonType, nsqHeader: true, allow: "GET, OPTIONS"},
		{method: "OPTIONS", path: "/lookup", status: 200, body: "", allow: "GET, OPTIONS"},
		{method: "GET", path: "/lookup/?topic=t", status: 301, body: "*", contentType: "text/html; charset=utf-8", location: "/lookup?topic=t"},
		{method: "GET", path: "/LOOKUP?topic=t", status: 301, body: "*", contentType: "text/html; charset=utf-8", location: "/lookup?topic=t"},
		{method: "GET", path: "//lookup?topic=t", status: 301, body: "*", contentType: "text/html; charset=utf-8", location: "/lookup?topic=t"},
		{method: "POST", path: "/topic/create/?topic=x", status: 307, body: "", location: "/topic/create?topic=x"},
	})
}

// TestHTTPWriteRoutes checks every POST route and its errors, in order.
func TestHTTPWriteRoutes(t *testing.T) {
	t.Parallel()
	l := startLookupd(t, nil)
	runHTTPCases(t, l, []httpCase{
		apiErr("POST", "/topic/create", 400, "MISSING_ARG_TOPIC"),
		apiErr("POST", "/topic/create?topic=bad!", 400, "INVALID_ARG_TOPIC"),
		apiErr("POST", "/topic/create?topic=", 400, "INVALID_ARG_TOPIC"),
		apiErr("POST", "/topic/create?topic=%zz", 400, "INVALID_REQUEST"),
		apiOK("POST", "/topic/create?topic=a", ""),
		apiOK("POST", "/topic/create?topic=a", ""),
		apiErr("POST", "/channel/create?channel=c", 400, "MISSING_ARG_TOPIC"),
		apiErr("POST", "/channel/create?topic=bad!&channel=bad!", 400, "INVALID_ARG_TOPIC"),
		apiErr("POST", "/channel/create?topic=b", 400, "MISSING_ARG_CHANNEL"),
		apiErr("POST", "/channel/create?topic=b&channel=bad!", 400, "INVALID_ARG_CHANNEL"),
		apiOK("POST", "/channel/create?topic=b&channel=c", ""),
		apiOK("POST", "/channel/create?topic=b&channel=d%23ephemeral", ""),
		apiOK("GET", "/topics", `{"topics":["a","b"]}`),
		apiOK("GET", "/channels?topic=b", `{"channels":["c","d#ephemeral"]}`),
		apiOK("GET", "/lookup?topic=b", `{"channels":["c","d#ephemeral"],"producers":[]}`),
		apiOK("GET", "/debug", `{}`),
		apiErr("POST", "/channel/delete?topic=b", 400, "MISSING_ARG_CHANNEL"),
		apiErr("POST", "/channel/delete?topic=b&channel=x", 404, "CHANNEL_NOT_FOUND"),
		apiOK("POST", "/channel/delete?topic=b&channel=c", ""),
		apiOK("GET", "/channels?topic=b", `{"channels":["d#ephemeral"]}`),
		apiErr("POST", "/topic/delete", 400, "MISSING_ARG_TOPIC"),
		apiOK("POST", "/topic/delete?topic=absent", ""),
		apiOK("POST", "/topic/delete?topic=b", ""),
		apiOK("GET", "/topics", `{"topics":["a"]}`),
		apiOK("GET", "/channels?topic=b", `{"channels":[]}`),
		apiErr("POST", "/topic/tombstone", 400, "MISSING_ARG_TOPIC"),
		apiErr("POST", "/topic/tombstone?topic=a", 400, "MISSING_ARG_NODE"),
		apiOK("POST", "/topic/tombstone?topic=a&node=nobody:1", ""),
		apiOK("POST", "/topic/delete?topic=*", ""),
		apiOK("GET", "/topics", `{"topics":[]}`),
	})
}

func TestHTTPPanicAnswers500(t *testing.T) {
	t.Parallel()
	l := startLookupd(t, nil)
	s := newHTTPServer(l)
	s.router.GET("/boom", func(http.ResponseWriter, *http.Request, httprouter.Params) {
		panic("boom")
	})
	w := httptest.NewRecorder()
	s.ServeHTTP(w, httptest.NewRequest("GET", "/boom", nil))
	if w.Code != 500 || w.Body.String() != `{"message":"INTERNAL_ERROR"}` {
		t.Fatalf("got %d %q; want 500 INTERNAL_ERROR", w.Code, w.Body.String())
	}
	if got := w.Header().Get("X-NSQ-Content-Type"); got != nsqType {
		t.Fatalf("X-NSQ-Content-Type: got %q; want %q", got, nsqType)
	}
}

// goZeroTimeUnixNano is what v1.3.0 reports as tombstoned_at of a producer
// never tombstoned: Go's zero time in unix nanoseconds.
const goZeroTimeUnixNano = -6795364578871345152

// TestLookupWildcardAndOrder checks the wildcard topic and sorted lists.
func TestLookupWildcardAndOrder(t *testing.T) {
	t.Parallel()
	l := startLookupd(t, nil)
	for i := 5; i > 0; i-- {
		c := connectProducer(t, l, 4000+i, 5000+i)
		c.mustOK(fmt.Sprintf("REGISTER t%d c%d", i%2, i))
	}
	var lookup struct {
		Channels  []string
		Producers []struct {
			RemoteAddress string `json:"remote_address"`
		}
	}
	getJSON(t, l, "/lookup?topic=*", &lookup)
	if len(lookup.Producers) != 5 {
		t.Fatalf("wildcard producers: got %d; want 5", len(lookup.Producers))
	}
	for i := 1; i < len(lookup.Producers); i++ {
		if lookup.Producers[i-1].RemoteAddress >= lookup.Producers[i].RemoteAddress {
			t.Fatalf("producers not sorted: %v", lookup.Producers)
		}
	}
	if got := strings.Join(lookup.Channels, ","); got != "c1,c2,c3,c4,c5" {
		t.Fatalf("wildcard channels: got %s", got)
	}
}

// registerTopics registers n topics with two channels each through c,
// pipelined, and reads the answers.
func registerTopics(t *testing.T, c *tcpClient, n int) {
	t.Helper()
	var b strings.Builder
	for i := 0; i < n; i++ {
		fmt.Fprintf(&b, "REGISTER topic-%06d ch-a\nREGISTER topic-%06d ch-b\n", i, i)
	}
	go c.conn.Write([]byte(b.String()))
	for i := 0; i < 2*n; i++ {
		if got := c.mustRead(); got != "OK" {
			t.Fatalf("REGISTER %d: got %q; want OK", i, got)
		}
	}
}

// connStates records the connections an http.Server has closed, by their
// remote address.
type connStates struct {
	mu     sync.Mutex
	closed map[string]time.Time
}

func (s *connStates) hook(c net.Conn, state http.ConnState) {
	if state == http.StateClosed || state == http.StateHijacked {
		s.mu.Lock()
		s.closed[c.RemoteAddr().String()] = time.Now()
		s.mu.Unlock()
	}
}

func (s *connStates) closedAt(addr string) (time.Time, bool) {
	s.mu.Lock()
	defer s.mu.Unlock()
	at, ok := s.closed[addr]
	return at, ok
}

// TestHTTPWriteTimeout: a client that asks for a large answer and never
// reads it has its connection closed once the write timeout has passed
// since its request began; other clients are served meanwhile.
func TestHTTPWriteTimeout(t *testing.T) {
	t.Parallel()
	const writeTimeout = time.Second // long enough for the other clients' answers on a loaded machine
	states := &connStates{closed: make(map[string]time.Time)}
	l := startLookupd(t, func(o *Options) { o.HTTPWriteTimeout = writeTimeout }, func(l *NSQLookupd) {
		l.httpServer.ConnState = states.hook
		l.httpListener = smallSendBuffers{l.httpListener}
	})
	p := connectProducer(t, l, 1, 11)
	registerTopics(t, p, 2000) // /debug is about 1 MB

	stalled := dialSmallReceive(t, l.RealHTTPAddr().String())
	start := time.Now()
	if _, err := io.WriteString(stalled, "GET /debug HTTP/1.1\r\nHost: x\r\n\r\n"); err != nil {
		t.Fatal(err)
	}
	// others are served while the stalled answer waits
	for i := 0; i < 5; i++ {
		if resp, body := httpDo(t, l, "GET", "/ping"); resp.StatusCode != 200 || body != "OK" {
			t.Fatalf("/ping: got %d %q", resp.StatusCode, body)
		}
		if ports := lookupPorts(t, l, "topic-000007"); fmt.Sprint(ports) != "[1]" {
			t.Fatalf("/lookup: got %v; want [1]", ports)
		}
	}
	var closedAt time.Time
	test.Eventually(t, 10*time.Second, func() bool {
		var ok bool
		closedAt, ok = states.closedAt(stalled.LocalAddr().String())
		return ok
	})
	if took := closedAt.Sub(start); took < writeTimeout {
		t.Fatalf("closed after %s; want at least the write timeout %s", took, writeTimeout)
	} else {
		t.Logf("stalled /debug reader closed after %s (write timeout %s)", took, writeTimeout)
	}
	// What it can still read is a cut answer: part of it, then EOF. (On a
	// loaded machine the deadline may pass before the daemon has written
	// even the head.)
	stalled.SetReadDeadline(time.Now().Add(ioTimeout))
	resp, err := http.ReadResponse(bufio.NewReader(stalled), nil)
	if err == nil {
		var n int64
		n, err = io.Copy(io.Discard, resp.Body)
		t.Logf("read the head and %d bytes of the body", n)
	}
	if !errors.Is(err, io.ErrUnexpectedEOF) && !errors.Is(err, io.EOF) {
		t.Fatalf("reading what was sent: got %v; want the answer cut short (EOF)", err)
	}
}

// TestHTTPWriteTimeoutPerRequest: the write deadline is set at the start of
// every request, so a kept-alive connection idle for longer than the
// timeout still gets its next answer.
func TestHTTPWriteTimeoutPerRequest(t *testing.T) {
	t.Parallel()
	const writeTimeout = 2 * time.Second // the first answer's deadline: room for /ping on a loaded machine
	l := startLookupd(t, func(o *Options) { o.HTTPWriteTimeout = writeTimeout })
	conn := dialHTTP(t, l)
	defer conn.Close()
	r := bufio.NewReader(conn)
	var answered time.Time
	for i := 0; i < 2; i++ {
		if i > 0 {
			// the first request's deadline, set before its answer came,
			// passes on the idle connection: time must go by, there is
			// no event to wait for
			time.Sleep(time.Until(answered.Add(writeTimeout + 100*time.Millisecond)))
		}
		conn.SetDeadline(time.Now().Add(ioTimeout))
		if _, err := io.WriteString(conn, "GET /ping HTTP/1.1\r\nHost: x\r\n\r\n"); err != nil {
			t.Fatalf("request %d: %s", i, err)
		}
		resp, err := http.ReadResponse(r, nil)
		if err != nil {
			t.Fatalf("request %d on the kept-alive connection: %s", i, err)
		}
		body, err := io.ReadAll(resp.Body)
		if err != nil || string(body) != "OK" {
			t.Fatalf("request %d: got %q, %v; want OK", i, body, err)
		}
		answered = time.Now()
	}
}

// TestAccessLogStatus: each request's access line (docs/wire.md, Process and configuration: "<status>
// <METHOD> <request-uri> (<remote addr>) <duration>", at INFO) carries the
// status the client got, whichever way the answer was made.
func TestAccessLogStatus(t *testing.T) {
	t.Parallel()
	logs := newLogLines(t)
	l := startLookupd(t, func(o *Options) { o.Logger = logs }, func(l *NSQLookupd) {
		// A route that panics, as only a bug could make one.
		hs := newHTTPServer(l)
		hs.router.GET("/boom", func(http.ResponseWriter, *http.Request, httprouter.Params) {
			panic("boom")
		})
		l.httpServer.Handler = hs
	})
	p := connectProducer(t, l, 1, 2)
	p.mustOK("REGISTER t c")

	tests := []struct {
		method, uri string
		status      int
	}{
		{"GET", "/lookup?topic=t", 200},
		{"POST", "/topic/create?topic=u", 200},
		{"GET", "/lookup", 400},
		{"GET", "/lookup?topic=%zz", 400},
		{"POST", "/channel/create?topic=t&channel=bad!", 400},
		{"GET", "/lookup?topic=nope", 404},
		{"POST", "/channel/delete?topic=t&channel=nope", 404},
		{"GET", "/nope", 404},
		{"POST", "/lookup?topic=t", 405},
		{"GET", "/topic/create?topic=t", 405},
		{"GET", "/boom", 500},
	}
	for _, tt := range tests {
		resp, body := httpDo(t, l, tt.method, tt.uri)
		if resp.StatusCode != tt.status {
			t.Fatalf("%s %s: got status %d %s; want %d", tt.method, tt.uri, resp.StatusCode, body, tt.status)
		}
		found := logs.accessLines(tt.method, tt.uri)
		want := fmt.Sprintf("INFO: %d %s %s (127.0.0.1:", tt.status, tt.method, tt.uri)
		if len(found) != 1 || !strings.HasPrefix(found[0], want) {
			t.Errorf("%s %s answered %d; access log lines %q, want one starting %q", tt.method, tt.uri, tt.status, found, want)
		}
	}
}

// TestLookupWildcardEntry: /lookup?topic=* lists each producer once, by one
// of its topic entries: an entry without a tombstone if it has one, else
// the one with the oldest tombstone (the first to expire). v1.3.0 takes
// whichever entry its walk of a map meets first. The registry walks its
// topics in map order too, so each producer's entries are spread over
// many topics and the answer is read many times: a pick that depended on
// the order would show.
func TestLookupWildcardEntry(t *testing.T) {
	t.Parallel()
	const (
		lifetime = 45 * time.Second
		topics   = 8
		reads    = 20
	)
	clk := newFakeClock()
	l := startLookupd(t, func(o *Options) { o.TombstoneLifetime = lifetime }, clk.install)
	tombstone := func(topic string, httpPort int) {
		t.Helper()
		path := fmt.Sprintf("/topic/tombstone?topic=%s&node=127.0.0.1:%d", topic, httpPort)
		if resp, body := httpDo(t, l, "POST", path); resp.StatusCode != 200 {
			t.Fatalf("%s: got %d %s", path, resp.StatusCode, body)
		}
	}
	// Producer 1: in every topic, tombstoned in all but the last.
	// Producer 2: in every topic, tombstoned in t0 first, 10s later in the rest.
	// Producer 3: in t0 only, tombstoned. Producer 4: in t0 only.
	for port := 1; port <= 4; port++ {
		p := connectProducer(t, l, port, 10+port)
		for i := range topics {
			if port <= 2 || i == 0 {
				p.mustOK(fmt.Sprintf("REGISTER t%d", i))
			}
		}
	}
	for i := range topics - 1 {
		tombstone(fmt.Sprintf("t%d", i), 11)
	}
	tombstone("t0", 12)
	tombstone("t0", 13)
	clk.Advance(10 * time.Second)
	for i := 1; i < topics; i++ {
		tombstone(fmt.Sprintf("t%d", i), 12)
	}

	check := func(when string, want []int) {
		t.Helper()
		for range reads {
			got := lookupPorts(t, l, "*")
			slices.Sort(got)
			if !slices.Equal(got, want) {
				t.Fatalf("%s: /lookup?topic=* producers %v; want %v", when, got, want)
			}
		}
	}
	// 1: its untombstoned entry. 2, 3: tombstoned everywhere. 4: never tombstoned.
	check("10s after the first tombstones", []int{1, 4})
	clk.Advance(lifetime - 10*time.Second - time.Nanosecond)
	check("1ns before the oldest tombstones expire", []int{1, 4})
	// 2: its oldest tombstone (t0) has expired, the others have not.
	clk.Advance(time.Nanosecond)
	check("when the oldest tombstones expire", []int{1, 2, 3, 4})
}

// TestDebug: /debug is byte for byte what encoding/json makes of
// v1.3.0's map of maps (keys sorted at both levels), for producers with and
// without the topology fields, tombstoned or not.
func TestDebug(t *testing.T) {
	t.Parallel()
	clk := newFakeClock()
	l := startLookupd(t, func(o *Options) { o.ProducerReadTimeout = 0 }, clk.install)
	plain := connectProducer(t, l, 4150, 4151)
	plain.mustOK("REGISTER t c")
	zoned := dial(t, l)
	if ans := zoned.identifyRaw(`{"broadcast_address":"b<&>","hostname":"h\"1","tcp_port":5150,"http_port":5151,"version":"1.3.0","topology_zone":"z1","topology_region":"r1"}`); ans[0] != '{' {
		t.Fatalf("IDENTIFY: %q", ans)
	}
	zoned.mustOK("REGISTER t")
	httpDo(t, l, "POST", "/topic/tombstone?topic=t&node=127.0.0.1:4151")

	entry := func(c *tcpClient, bcast, host string, tcp, http int, tombAt int64, topo bool) map[string]any {
		e := map[string]any{"id": c.conn.LocalAddr().String(), "broadcast_address": bcast, "hostname": host,
			"tcp_port": tcp, "http_port": http, "version": "1.3.0", "last_update": clk.Now().UnixNano(),
			"tombstoned": tombAt != goZeroTimeUnixNano, "tombstoned_at": tombAt}
		if topo {
			e["topology_zone"], e["topology_region"] = "z1", "r1"
		}
		return e
	}
	p := entry(plain, "127.0.0.1", "host-4150", 4150, 4151, goZeroTimeUnixNano, false)
	z := entry(zoned, "b<&>", `h"1`, 5150, 5151, goZeroTimeUnixNano, true)
	pTomb := entry(plain, "127.0.0.1", "host-4150", 4150, 4151, clk.Now().UnixNano(), false)
	clients := []any{p, z}
	topic := []any{pTomb, z}
	if plain.conn.LocalAddr().String() > zoned.conn.LocalAddr().String() {
		clients, topic = []any{z, p}, []any{z, pTomb}
	}
	want, _ := json.Marshal(map[string]any{"channel:t:c": []any{p}, "client::": clients, "topic:t:": topic})
	if _, got := httpDo(t, l, "GET", "/debug"); got != string(want) {
		t.Fatalf("/debug:\ngot  %s\nwant %s", got, want)
	}
}

// TestDebugKeyOrder: /debug's keys are in the order encoding/json sorts
// v1.3.0's map in: as whole strings, so "topic:a.b:" comes before
// "topic:a:" ('.' < ':') though "a" sorts before "a.b".
func TestDebugKeyOrder(t *testing.T) {
	t.Parallel()
	l := startLookupd(t, nil)
	p := connectProducer(t, l, 4150, 4151)
	for _, reg := range []string{"a c", "a.b c", "a-1 c.d", "a_b c", "ab c-1", "a c.d", "a c-1", "A c"} {
		p.mustOK("REGISTER " + reg)
	}
	_, raw := httpDo(t, l, "GET", "/debug")
	var keys []string
	dec := json.NewDecoder(strings.NewReader(raw))
	dec.Token() // {
	for dec.More() {
		k, err := dec.Token()
		if err != nil {
			t.Fatal(err)
		}
		keys = append(keys, k.(string))
		var skip json.RawMessage
		if err := dec.Decode(&skip); err != nil {
			t.Fatal(err)
		}
	}
	if len(keys) != 8+6+1 || !slices.IsSorted(keys) {
		t.Fatalf("/debug keys: %q; want 15, sorted as strings", keys)
	}
}

func TestTombstoneLifetime(t *testing.T) {
	t.Parallel()
	const lifetime = 45 * time.Second
	clk := newFakeClock()
	l := startLookupd(t, func(o *Options) { o.TombstoneLifetime = lifetime }, clk.install)
	a := connectProducer(t, l, 1, 11)
	b := connectProducer(t, l, 2, 12)
	a.mustOK("REGISTER t c")
	a.mustOK("REGISTER u")
	b.mustOK("REGISTER t")

	resp, _ := httpDo(t, l, "POST", "/topic/tombstone?topic=t&node=127.0.0.1:11")
	if resp.StatusCode != 200 {
		t.Fatalf("tombstone: status %d", resp.StatusCode)
	}
	if got := fmt.Sprint(lookupPorts(t, l, "t")); got != "[2]" {
		t.Fatalf("/lookup t right after tombstone: got %s; want [2]", got)
	}
	if got := fmt.Sprint(lookupPorts(t, l, "u")); got != "[1]" {
		t.Fatalf("/lookup u: got %s; want [1] (tombstones are per topic)", got)
	}
	nodes := func() map[int]string {
		var nodes nodesAnswer
		getJSON(t, l, "/nodes", &nodes)
		got := map[int]string{}
		for _, n := range nodes.Producers {
			got[n.TCPPort] = fmt.Sprint(n.Topics, n.Tombstones)
		}
		return got
	}
	// /nodes keeps the node, flagged, with tombstones aligned to topics
	if got := nodes(); got[1] != "[t u] [true false]" || got[2] != "[t] [false]" {
		t.Fatalf("/nodes: got %v; want node 1 [t u] [true false], node 2 [t] [false]", got)
	}

	// a repeated REGISTER keeps the tombstone
	a.mustOK("REGISTER t")
	clk.Advance(lifetime - time.Nanosecond)
	if got := fmt.Sprint(lookupPorts(t, l, "t")); got != "[2]" {
		t.Fatalf("after re-REGISTER, just before the lifetime ends: got %s; want [2]", got)
	}
	if got := nodes(); got[1] != "[t u] [true false]" {
		t.Fatalf("/nodes just before the lifetime ends: got %v; want node 1 still flagged", got)
	}
	// it expires after the lifetime, in /lookup and in /nodes
	clk.Advance(time.Nanosecond)
	if got := fmt.Sprint(lookupPorts(t, l, "t")); got != "[1 2]" {
		t.Fatalf("once the lifetime has passed: got %s; want [1 2]", got)
	}
	if got := nodes(); got[1] != "[t u] [false false]" {
		t.Fatalf("/nodes once the lifetime has passed: got %v; want node 1 [t u] [false false]", got)
	}

	// UNREGISTER then REGISTER clears it
	httpDo(t, l, "POST", "/topic/tombstone?topic=t&node=127.0.0.1:11")
	a.mustOK("UNREGISTER t")
	a.mustOK("REGISTER t")
	if got := fmt.Sprint(lookupPorts(t, l, "t")); got != "[1 2]" {
		t.Fatalf("after UNREGISTER+REGISTER: got %s; want [1 2]", got)
	}
}

func TestInactiveProducerTimeout(t *testing.T) {
	t.Parallel()
	const timeout = 5 * time.Minute
	clk := newFakeClock()
	l := startLookupd(t, func(o *Options) {
		o.InactiveProducerTimeout = timeout
		o.ProducerReadTimeout = 0 // here a producer falls silent and stays connected
	}, clk.install)
	a := connectProducer(t, l, 1, 11)
	a.mustOK("REGISTER t")
	if got := fmt.Sprint(lookupPorts(t, l, "t")); got != "[1]" {
		t.Fatalf("got %s; want [1]", got)
	}
	nodeCount := func() int {
		var nodes nodesAnswer
		getJSON(t, l, "/nodes", &nodes)
		return len(nodes.Producers)
	}
	// REGISTER does not refresh activity: the producer drops out just after
	// the timeout
	clk.Advance(timeout)
	a.mustOK("REGISTER t")
	if got := fmt.Sprint(lookupPorts(t, l, "t")); got != "[1]" || nodeCount() != 1 {
		t.Fatalf("at the timeout: got %s, %d nodes; want [1], 1 (active up to the timeout itself)", got, nodeCount())
	}
	clk.Advance(time.Nanosecond)
	if got := fmt.Sprint(lookupPorts(t, l, "t")); got != "[]" {
		t.Fatalf("past the timeout: got %s; want []", got)
	}
	if n := nodeCount(); n != 0 {
		t.Fatalf("/nodes lists an inactive producer: got %d nodes", n)
	}
	// PING brings it back
	a.mustOK("PING")
	if got := fmt.Sprint(lookupPorts(t, l, "t")); got != "[1]" {
		t.Fatalf("after PING: got %s; want [1]", got)
	}
	if n := nodeCount(); n != 1 {
		t.Fatalf("/nodes after PING: got %d; want one producer", n)
	}
}

// BenchmarkHTTPLookup times a whole /lookup request through the router and
// its handler (no network), the topics asked in a random order so that
// each reads memory a cache may not hold, as under load; /auth with auth
// on and the secret cached, its grant a tenant's prefix
// (docs/authorization.md).
func BenchmarkHTTPLookup(b *testing.B) {
	authd := httptest.NewServer(http.HandlerFunc(func(w http.ResponseWriter, req *http.Request) {
		io.WriteString(w, `{"ttl":3600,"authorizations":[{"topic":"^topic","channels":[".*"],"permissions":["subscribe"]}]}`)
	}))
	defer authd.Close()
	for _, sz := range test.LookupSizes {
		for _, auth := range []bool{false, true} {
			name := sz.Name
			if auth {
				name += "/auth"
			}
			b.Run(name, func(b *testing.B) {
				l := startLookupd(b, func(o *Options) {
					o.LogLevel = lg.ERROR // no access lines
					if auth {
						o.AuthHTTPAddresses = []string{strings.TrimPrefix(authd.URL, "http://")}
					}
				})
				fill(l, sz, "topic%d", "ch%d")
				s := l.httpServer.Handler
				reqs := make([]string, sz.T)
				for i, t := range rand.New(rand.NewPCG(1, 2)).Perm(sz.T) {
					reqs[i] = fmt.Sprintf("/lookup?topic=topic%d", t)
				}
				b.ReportAllocs()
				test.ReportCPU(b)
				i := 0
				for b.Loop() {
					w := httptest.NewRecorder()
					req := httptest.NewRequest("GET", reqs[i%len(reqs)], nil)
					if auth {
						req.Header["Authorization"] = []string{"Bearer a-secret"}
					}
					s.ServeHTTP(w, req)
					if w.Code != 200 {
						b.Fatalf("status %d", w.Code)
					}
					i++
				}
			})
		}
	}
}

// TestNodeAddresses: /topic/tombstone's node names a producer by its
// broadcast address and HTTP port, joined as v1.3.0 joins them or as
// nsqadmin does (docs/differences.md, IPv6 tombstones).
func TestNodeAddresses(t *testing.T) {
	t.Parallel()
	for _, tt := range []struct {
		addr, node string
		want       bool
	}{
		{"h", "h:4151", true},
		{"h", "h:4150", false},
		{"h", "g:4151", false},
		{"h", "h:04151", false},
		{"h", "h", false},
		{"::1", "::1:4151", true},   // as v1.3.0 joins them
		{"::1", "[::1]:4151", true}, // as nsqadmin does
		{"::1", "[::1]:4150", false},
		{"[::1]", "[::1]:4151", true},
		{"10.0.0.1", "[10.0.0.1]:4151", false},
	} {
		a := registry.Address{BroadcastAddress: tt.addr, HTTPPort: 4151}
		if got := slices.Contains(nodeAddresses(tt.node), a); got != tt.want {
			t.Errorf("node %q names %s: got %t; want %t (addresses %v)", tt.node, tt.addr, got, tt.want, nodeAddresses(tt.node))
		}
	}
}
