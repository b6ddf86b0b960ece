package nsqlookupd

import (
	"bufio"
	"bytes"
	"crypto/tls"
	"errors"
	"fmt"
	"io"
	"net"
	"sync"
	"testing"
	"time"
)

// Attacks on the HTTPS port, for TestHostileInput's table: bytes that are
// not TLS, handshakes that never finish, plaintext HTTP, and many idle
// connections. net/http bounds a handshake by the server's smallest
// timeout (ReadHeaderTimeout here), so each costs the daemon at most that.

// hostileTLSConfig is the attackers' client side: who the server is does
// not matter to them (the health check verifies it).
var hostileTLSConfig = &tls.Config{InsecureSkipVerify: true, CurvePreferences: []tls.CurveID{tls.X25519}}

// dialHTTPS connects to the daemon's HTTPS address and completes a TLS
// handshake, failing the test if it cannot.
func dialHTTPS(t *testing.T, l *NSQLookupd) net.Conn {
	t.Helper()
	raw, err := net.DialTimeout("tcp", l.RealHTTPSAddr().String(), ioTimeout)
	if err != nil {
		t.Fatalf("dial: %s", err)
	}
	conn := tls.Client(raw, hostileTLSConfig)
	conn.SetDeadline(time.Now().Add(ioTimeout))
	if err := conn.Handshake(); err != nil {
		raw.Close()
		t.Fatalf("handshake: %s", err)
	}
	conn.SetDeadline(time.Time{})
	return conn
}

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
// to the TLS port: the server must hang up at once, answering nothing but
// a TLS alert.
func tlsGarbage(b []byte) func(t *testing.T, l *NSQLookupd, _ *victim) {
	return func(t *testing.T, l *NSQLookupd, _ *victim) {
		conn := dialTLSPort(t, l)
		go func() {
			conn.SetWriteDeadline(time.Now().Add(ioTimeout))
			conn.Write(b)
		}()
		got, took := readUntilClosed(t, conn, hostileReadHeaderTimeout+3*time.Second)
		if len(got) > 0 && got[0] != 0x15 { // an alert record
			t.Fatalf("got %q; want nothing or a TLS alert before the close", got)
		}
		if took >= hostileReadHeaderTimeout {
			t.Fatalf("closed after %s; want at once, not at the handshake deadline %s", took, hostileReadHeaderTimeout)
		}
		t.Logf("closed after %s", took.Round(time.Millisecond))
	}
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
		got, took := readUntilClosed(t, conn, hostileReadHeaderTimeout+3*time.Second)
		if took < hostileReadHeaderTimeout/2 {
			t.Fatalf("closed after %s; want it held until the handshake deadline %s", took, hostileReadHeaderTimeout)
		}
		t.Logf("the server sent %d bytes and closed after %s", len(got), took.Round(time.Millisecond))
	}
}

// tlsPlaintext sends a plain HTTP request to the TLS port: net/http
// answers 400 in plaintext and hangs up at once.
func tlsPlaintext(t *testing.T, l *NSQLookupd, _ *victim) {
	conn := dialTLSPort(t, l)
	if _, err := conn.Write([]byte("GET /ping HTTP/1.1\r\nHost: x\r\n\r\n")); err != nil {
		t.Fatalf("write: %s", err)
	}
	got, took := readUntilClosed(t, conn, hostileReadHeaderTimeout+3*time.Second)
	if want := "HTTP/1.0 400 Bad Request\r\n"; !bytes.HasPrefix(got, []byte(want)) {
		t.Fatalf("got %q; want it to start %q", got, want)
	}
	if took >= hostileReadHeaderTimeout {
		t.Fatalf("closed after %s; want at once", took)
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
	l := startLookupdWith(t, tlsFiles.withHTTPS(nil), func(l *NSQLookupd) {
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
