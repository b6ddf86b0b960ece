package nsqlookupd

import (
	"fmt"
	"net"
	"strings"
	"sync"
	"testing"
	"time"

	"github.com/lookupd/nsqlookupd/internal/test"
)

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

func TestExitTwiceAndBounded(t *testing.T) {
	opts := NewOptions()
	opts.Logger = test.NewTestLogger(t)
	opts.TCPAddress, opts.HTTPAddress = "127.0.0.1:0", "127.0.0.1:0"
	l, err := New(opts)
	if err != nil {
		t.Fatal(err)
	}
	mainDone := make(chan error, 1)
	go func() { mainDone <- l.Main() }()

	// live connections of every kind: identified, half-sent, HTTP keep-alive
	p := connectProducer(t, l, 1, 2)
	p.mustOK("REGISTER t")
	half := dial(t, l)
	half.write("REGIS")
	httpDo(t, l, "GET", "/ping")

	exited := make(chan struct{})
	go func() {
		l.Exit()
		l.Exit() // harmless
		close(exited)
	}()
	select {
	case <-exited:
	case <-time.After(5 * time.Second):
		t.Fatal("Exit did not return within 5s with live connections")
	}
	if err := <-mainDone; err != nil {
		t.Fatalf("Main: got %v; want nil after Exit", err)
	}
	p.expectClosed()
	half.expectClosed()
	for _, addr := range []string{l.RealTCPAddr().String(), l.RealHTTPAddr().String()} {
		if c, err := net.DialTimeout("tcp", addr, time.Second); err == nil {
			c.Close()
			t.Errorf("%s still accepts connections after Exit", addr)
		}
	}
}

func TestExitWithoutMain(t *testing.T) {
	opts := NewOptions()
	opts.Logger = test.NewTestLogger(t)
	opts.TCPAddress, opts.HTTPAddress = "127.0.0.1:0", "127.0.0.1:0"
	l, err := New(opts)
	if err != nil {
		t.Fatal(err)
	}
	l.Exit()
	if err := l.Main(); err != nil {
		t.Fatalf("Main after Exit: got %v; want nil", err)
	}
}

func TestNewListenFailure(t *testing.T) {
	busy, err := net.Listen("tcp", "127.0.0.1:0")
	if err != nil {
		t.Fatal(err)
	}
	defer busy.Close()
	opts := NewOptions()
	opts.Logger = test.NewTestLogger(t)
	opts.TCPAddress, opts.HTTPAddress = "127.0.0.1:0", busy.Addr().String()
	_, err = New(opts)
	want := fmt.Sprintf("listen (%s) failed - ", busy.Addr())
	if err == nil || !strings.HasPrefix(err.Error(), want) {
		t.Fatalf("got %v; want an error starting %q", err, want)
	}
}

// withClock starts a daemon whose clock is a fake one, returned.
func withClock(t *testing.T, modify func(*Options)) (*NSQLookupd, *fakeClock) {
	t.Helper()
	clk := newFakeClock()
	l := startLookupdWith(t, modify, func(l *NSQLookupd) { l.clock = clk })
	return l, clk
}

func TestTombstoneLifetime(t *testing.T) {
	const lifetime = 45 * time.Second
	l, clk := withClock(t, func(o *Options) { o.TombstoneLifetime = lifetime })
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
	const timeout = 5 * time.Minute
	l, clk := withClock(t, func(o *Options) {
		o.InactiveProducerTimeout = timeout
		o.ProducerReadTimeout = 0 // here a producer falls silent and stays connected
	})
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

func TestEphemeral(t *testing.T) {
	l := startLookupd(t, nil)
	a := connectProducer(t, l, 1, 11)
	b := connectProducer(t, l, 2, 12)
	a.mustOK("REGISTER t#ephemeral c#ephemeral")
	b.mustOK("REGISTER t#ephemeral c#ephemeral")
	a.mustOK("REGISTER t c#ephemeral")
	a.mustOK("REGISTER t d")

	channels := func(topic string) string {
		var c struct{ Channels []string }
		getJSON(t, l, "/channels?topic="+strings.ReplaceAll(topic, "#", "%23"), &c)
		return strings.Join(c.Channels, ",")
	}
	topics := func() string {
		var c struct{ Topics []string }
		getJSON(t, l, "/topics", &c)
		return strings.Join(c.Topics, ",")
	}

	// an ephemeral channel stays while a producer holds it
	a.mustOK("UNREGISTER t#ephemeral c#ephemeral")
	if got := channels("t#ephemeral"); got != "c#ephemeral" {
		t.Fatalf("got %q; want c#ephemeral still held by b", got)
	}
	b.mustOK("UNREGISTER t#ephemeral c#ephemeral")
	if got := channels("t#ephemeral"); got != "" {
		t.Fatalf("got %q; want the empty ephemeral channel removed", got)
	}
	a.mustOK("UNREGISTER t#ephemeral")
	if got := topics(); got != "t,t#ephemeral" {
		t.Fatalf("topics: got %q; want t#ephemeral held by b", got)
	}
	b.mustOK("UNREGISTER t#ephemeral")
	if got := topics(); got != "t" {
		t.Fatalf("topics: got %q; want t", got)
	}
	// a non-ephemeral channel stays when emptied
	a.mustOK("UNREGISTER t d")
	if got := channels("t"); got != "c#ephemeral,d" {
		t.Fatalf("got %q; want c#ephemeral,d", got)
	}
	// better than v1.3.0: a connection drop removes the ephemeral
	// registrations it leaves empty, and keeps the others
	a.conn.Close()
	test.Eventually(t, 5*time.Second, func() bool { return channels("t") == "d" })
	if got := topics(); got != "t" {
		t.Fatalf("topics after disconnect: got %q; want t", got)
	}
}

func TestDisconnectCleanup(t *testing.T) {
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

// TestSameIdentityTwoProducers: two connections with the same IDENTIFY body
// are two producers, keyed by their remote addresses.
func TestSameIdentityTwoProducers(t *testing.T) {
	l := startLookupd(t, nil)
	a := connectProducer(t, l, 1, 11)
	b := connectProducer(t, l, 1, 11)
	a.mustOK("REGISTER t")
	b.mustOK("REGISTER t")
	var a1 lookupAnswer
	getJSON(t, l, "/lookup?topic=t", &a1)
	if len(a1.Producers) != 2 || a1.Producers[0].RemoteAddress == a1.Producers[1].RemoteAddress {
		t.Fatalf("got %+v; want two producers with distinct remote addresses", a1.Producers)
	}
}

func TestIdentifyTimeout(t *testing.T) {
	l := startLookupd(t, func(o *Options) { o.IdentifyTimeout = 200 * time.Millisecond })
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

// recordingLogger keeps the log lines, for tests that read them.
type recordingLogger struct {
	mu    sync.Mutex
	lines []string
}

func (r *recordingLogger) Output(_ int, s string) error {
	r.mu.Lock()
	defer r.mu.Unlock()
	r.lines = append(r.lines, s)
	return nil
}

func (r *recordingLogger) has(substr string) bool {
	r.mu.Lock()
	defer r.mu.Unlock()
	for _, line := range r.lines {
		if strings.Contains(line, substr) {
			return true
		}
	}
	return false
}

// TestShortReadTimeoutWarns: a producer read timeout within nsqd's 15 s
// heartbeat would evict idle, healthy nsqd: start-up says so.
func TestShortReadTimeoutWarns(t *testing.T) {
	for _, tt := range []struct {
		timeout time.Duration
		warn    bool
	}{{0, false}, {3 * time.Second, true}, {15 * time.Second, true}, {16 * time.Second, false}, {time.Minute, false}} {
		log := &recordingLogger{}
		startLookupd(t, func(o *Options) { o.Logger = log; o.ProducerReadTimeout = tt.timeout })
		if got := log.has("WARNING: producer-read-timeout " + tt.timeout.String() + " is not longer than nsqd's 15s heartbeat"); got != tt.warn {
			t.Errorf("timeout %s: warned %t; want %t", tt.timeout, got, tt.warn)
		}
	}
}

// TestIdentifyTimeoutDisabled: with --identify-timeout 0 no deadline is set
// (one in the past would close the connection before its magic is read).
func TestIdentifyTimeoutDisabled(t *testing.T) {
	l := startLookupd(t, func(o *Options) { o.IdentifyTimeout = 0 })
	p := connectProducer(t, l, 1, 11)
	p.mustOK("REGISTER t")
}
