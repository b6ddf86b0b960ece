package nsqlookupd

import (
	"bufio"
	"cmp"
	"fmt"
	"net"
	"net/http"
	"strconv"
	"strings"
	"sync/atomic"
	"syscall"
	"testing"
	"time"

	"github.com/lookupd/nsqlookupd/internal/test"
)

// A registry change either completes or leaves the registry as it was: a
// panic injected between a change's plan and its commit (the registry's
// test hook) must leave every answer as it was, and the invariants whole.

// populated returns a registry holding a bit of everything: three peers,
// durable and ephemeral topics and channels, a channel-only topic, and
// tombstones; and its peers.
func populated(now time.Time) (*registrationDB, []*peer) {
	db := newRegistrationDB()
	peers := []*peer{modelPeer(0, now), modelPeer(1, now), modelPeer(2, now)}
	for _, p := range peers {
		db.addPeer(p)
	}
	for i, p := range peers {
		db.register(p, "a", "x")
		db.register(p, "a", "z#ephemeral")
		db.register(p, fmt.Sprintf("own%d#ephemeral", i), "y")
	}
	db.register(peers[0], "b", "")
	db.createChannel("c", "w#ephemeral")
	db.createTopic("d")
	db.unregisterTopic(peers[0], "own0#ephemeral") // leaves channel y of it, without the topic
	db.tombstone("a", peers[2].info.node(), now)
	return db, peers
}

// registryAnswers returns every answer the registry gives, as one string.
func registryAnswers(db *registrationDB, now time.Time) string {
	var b strings.Builder
	fmt.Fprintln(&b, "topics", db.topicNames())
	for _, topic := range []string{wildcard, "a", "b", "c", "d", "own0#ephemeral", "own1#ephemeral", "new"} {
		chs, ps, ok := db.lookup(topic)
		fmt.Fprintln(&b, "lookup", topic, normalize(chs), normalize(ps), ok)
		fmt.Fprintln(&b, "channels", topic, db.channelNames(topic))
	}
	fmt.Fprintln(&b, "nodes", normalize(db.nodes(now, modelLifetime)))
	fmt.Fprintln(&b, "debug", normalize(db.debugState()))
	fmt.Fprintf(&b, "stats %+v\n", db.stats(now, modelLifetime))
	return b.String()
}

var errInjected = fmt.Errorf("injected panic")

func TestRegistryPanicLeavesItWhole(t *testing.T) {
	now := time.Date(2026, 11, 24, 14, 0, 0, 0, time.UTC)
	ops := []struct {
		name string // the op the hook names
		do   func(db *registrationDB, peers []*peer)
	}{
		{"addPeer", func(db *registrationDB, _ []*peer) { db.addPeer(modelPeer(1, now)) }}, // replaces peer 1
		{"register", func(db *registrationDB, p []*peer) { db.register(p[1], "new", "ch") }},
		{"unregisterChannel", func(db *registrationDB, p []*peer) { db.unregisterChannel(p[0], "a", "z#ephemeral") }},
		{"unregisterTopic", func(db *registrationDB, p []*peer) { db.unregisterTopic(p[1], "a") }},
		{"removePeer", func(db *registrationDB, p []*peer) { db.removePeer(p[2]) }},
		{"createTopic", func(db *registrationDB, _ []*peer) { db.createTopic("new") }},
		{"createChannel", func(db *registrationDB, _ []*peer) { db.createChannel("own0#ephemeral", "v") }},
		{"deleteTopic", func(db *registrationDB, _ []*peer) { db.deleteTopic(wildcard) }},
		{"deleteChannel", func(db *registrationDB, _ []*peer) { db.deleteChannel("a", "x") }},
		{"tombstone", func(db *registrationDB, p []*peer) { db.tombstone(wildcard, p[0].info.node(), now) }},
	}
	for _, op := range ops {
		t.Run(op.name, func(t *testing.T) {
			db, peers := populated(now)
			before := registryAnswers(db, now)
			hooked := 0
			db.hook = func(name string) {
				if name == op.name {
					hooked++
					panic(errInjected)
				}
			}
			func() {
				defer func() {
					if r := recover(); r != errInjected {
						t.Fatalf("recovered %v; want the injected panic", r)
					}
				}()
				op.do(db, peers)
			}()
			if hooked != 1 {
				t.Fatalf("hook called %d times for %s; want 1", hooked, op.name)
			}
			if after := registryAnswers(db, now); after != before {
				t.Fatalf("answers changed by a change that panicked before its commit:\nbefore\n%s\nafter\n%s", before, after)
			}
			if errs := db.checkInvariants(); len(errs) > 0 {
				t.Fatalf("invariants after the panic: %v", errs)
			}
			// the same change without the fault does change the registry:
			// the test above could fail
			db.hook = nil
			op.do(db, peers)
			if after := registryAnswers(db, now); after == before {
				t.Fatalf("%s changed nothing without the fault; the test proves nothing", op.name)
			}
			if errs := db.checkInvariants(); len(errs) > 0 {
				t.Fatalf("invariants after the change: %v", errs)
			}
		})
	}
}

// httpAnswers returns the daemon's read answers over HTTP, as one string.
func httpAnswers(t *testing.T, l *NSQLookupd, topics ...string) string {
	t.Helper()
	var b strings.Builder
	paths := []string{"/topics", "/nodes", "/debug", "/channels?topic=*", "/lookup?topic=*"}
	for _, topic := range topics {
		paths = append(paths, "/lookup?topic="+topic, "/channels?topic="+topic)
	}
	for _, path := range paths {
		resp, body := httpDo(t, l, "GET", path)
		fmt.Fprintln(&b, path, resp.StatusCode, body)
	}
	return b.String()
}

// TestPanicInUpdateOverTheWire: an admin POST whose registry change panics
// answers 500 and changes nothing; a REGISTER whose change panics closes
// that connection only.
func TestPanicInUpdateOverTheWire(t *testing.T) {
	var fail atomic.Value // the op to fail once, a string
	fail.Store("")
	l := startLookupdWith(t, nil, func(l *NSQLookupd) {
		l.db.hook = func(op string) {
			if fail.CompareAndSwap(op, "") {
				panic(errInjected)
			}
		}
	})
	a := connectProducer(t, l, 6150, 6151)
	a.mustOK("REGISTER t1 c1")
	a.mustOK("REGISTER t2 c2#ephemeral")
	b := connectProducer(t, l, 6250, 6251)
	b.mustOK("REGISTER t1 c3")
	httpDo(t, l, "POST", "/topic/tombstone?topic=t1&node=127.0.0.1:6251")
	before := httpAnswers(t, l, "t1", "t2")

	for _, req := range []string{"/topic/delete?topic=*", "/channel/delete?topic=t1&channel=c1",
		"/topic/create?topic=t3", "/channel/create?topic=t3&channel=c", "/topic/tombstone?topic=*&node=127.0.0.1:6151"} {
		op := map[string]string{"/topic/delete": "deleteTopic", "/channel/delete": "deleteChannel",
			"/topic/create": "createTopic", "/channel/create": "createChannel", "/topic/tombstone": "tombstone"}[req[:strings.Index(req, "?")]]
		fail.Store(op)
		resp, body := httpDo(t, l, "POST", req)
		if resp.StatusCode != http.StatusInternalServerError || body != `{"message":"INTERNAL_ERROR"}` {
			t.Fatalf("POST %s with its change failing: got %d %s; want 500 INTERNAL_ERROR", req, resp.StatusCode, body)
		}
		if after := httpAnswers(t, l, "t1", "t2"); after != before {
			t.Fatalf("POST %s failed but changed the answers:\nbefore\n%s\nafter\n%s", req, before, after)
		}
	}

	fail.Store("register")
	a.write("REGISTER t9\n")
	a.expectClosed()
	// a's registrations go with its connection, as on any disconnect; b's stay
	test.Eventually(t, 5*time.Second, func() bool { return peerCount(l) == 1 })
	if got := fmt.Sprint(lookupPorts(t, l, "t1")); got != "[]" { // b is tombstoned in t1
		t.Fatalf("/lookup t1: got %s; want [] (b tombstoned, a gone)", got)
	}
	b.mustOK("REGISTER t9")
	if got := fmt.Sprint(lookupPorts(t, l, "t9")); got != "[6250]" {
		t.Fatalf("/lookup t9: got %s; want [6250]", got)
	}
	if got := l.panics.Load(); got != 6 { // HTTP handlers' panics count too
		t.Fatalf("panics: got %d; want 6 (the five POSTs and the REGISTER)", got)
	}
	if errs := l.db.checkInvariants(); len(errs) > 0 {
		t.Fatalf("invariants: %v", errs)
	}
}

// TestPanicInCleanup: the cleanup after a connection ends (after a panic,
// too) is itself protected: a panic in it is counted and the removal
// tried again.
func TestPanicInCleanup(t *testing.T) {
	var fails atomic.Int32 // how many removePeer calls still to fail
	l := startLookupdWith(t, nil, func(l *NSQLookupd) {
		l.tcpServer.commandHook = func(params []string) {
			if len(params) == 2 && params[0] == "REGISTER" && params[1] == "boom" {
				panic("injected by TestPanicInCleanup")
			}
		}
		l.db.hook = func(op string) {
			if op == "removePeer" && fails.Add(-1) >= 0 {
				panic(errInjected)
			}
		}
	})
	other := connectProducer(t, l, 6350, 6351)
	other.mustOK("REGISTER shared")

	// a panic in the IO loop, then one in the cleanup: the second try removes it
	fails.Store(1)
	a := connectProducer(t, l, 6450, 6451)
	a.mustOK("REGISTER shared c#ephemeral")
	a.write("REGISTER boom\n")
	a.expectClosed()
	test.Eventually(t, 5*time.Second, func() bool { return peerCount(l) == 1 && trackedConns(l) == 1 })
	if got := l.panics.Load(); got != 2 {
		t.Fatalf("panics: got %d; want 2 (the command, the first cleanup)", got)
	}
	if got := fmt.Sprint(lookupPorts(t, l, "shared")); got != "[6350]" {
		t.Fatalf("/lookup shared: got %s; want [6350]", got)
	}
	if chs := l.db.channelNames("shared"); len(chs) != 0 {
		t.Fatalf("channels of shared: got %v; want the ephemeral one gone", chs)
	}

	// every try fails: the connection still goes, the daemon serves on,
	// and the registry stays whole (the producer stays, as before the tries)
	fails.Store(cleanupAttempts)
	b := connectProducer(t, l, 6550, 6551)
	b.mustOK("REGISTER shared")
	b.conn.Close()
	test.Eventually(t, 5*time.Second, func() bool { return trackedConns(l) == 1 })
	if got := l.panics.Load(); got != 2+cleanupAttempts {
		t.Fatalf("panics: got %d; want %d", got, 2+cleanupAttempts)
	}
	if got := fmt.Sprint(lookupPorts(t, l, "shared")); got != "[6350 6550]" {
		t.Fatalf("/lookup shared: got %s; want [6350 6550]", got)
	}
	if errs := l.db.checkInvariants(); len(errs) > 0 {
		t.Fatalf("invariants: %v", errs)
	}
	other.mustOK("PING")
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
	l := startLookupd(t, func(o *Options) { o.TCPAddress = "0.0.0.0:0" })
	port := l.RealTCPAddr().Port
	probe, err := net.ListenTCP("tcp", &net.TCPAddr{IP: net.IPv4(127, 0, 0, 1)})
	if err != nil {
		t.Fatal(err)
	}
	local := probe.Addr().(*net.TCPAddr) // a free local port
	probe.Close()

	stale := dialFrom(t, local, "127.0.0.1", port)
	if ans := stale.identifyRaw(identifyBody(7150, 7151)); ans[0] != '{' {
		t.Fatalf("IDENTIFY: %q", ans)
	}
	stale.mustOK("REGISTER old c#ephemeral")
	stale.mustOK("REGISTER shared")

	fresh := dialFrom(t, local, "127.0.0.2", port)
	if fresh.conn.LocalAddr().String() != stale.conn.LocalAddr().String() {
		t.Fatalf("the two connections come from %s and %s; want one address", stale.conn.LocalAddr(), fresh.conn.LocalAddr())
	}
	if ans := fresh.identifyRaw(identifyBody(7250, 7251)); ans[0] != '{' {
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
	if chs := l.db.channelNames("old"); len(chs) != 0 {
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
