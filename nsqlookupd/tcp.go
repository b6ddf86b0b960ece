package nsqlookupd

import (
	"fmt"
	"io"
	"net"
	"sync"
	"sync/atomic"
	"time"

	"github.com/lookupd/nsqlookupd/internal/lg"
	"github.com/lookupd/nsqlookupd/internal/protocol"
	"github.com/lookupd/nsqlookupd/nsqlookupd/internal/registry"
)

// tcpServer hands each accepted connection to the V1 protocol after reading
// its magic, and keeps the live connections so Exit can close them.
type tcpServer struct {
	nsqlookupd *NSQLookupd

	mu        sync.Mutex            // guards the four fields below
	closed    bool                  // set by closeAll: new connections are refused
	conns     map[net.Conn]struct{} // live connections
	connsPeak int                   // the most conns has held since it was made
	accepted  uint64                // connections ever accepted

	writeTimeout time.Duration // bounds each write of answers (0: none)
	refused      sync.Map      // connections closeRefused closed: net.Conn -> true
}

func newTCPServer(l *NSQLookupd, writeTimeout time.Duration) *tcpServer {
	return &tcpServer{nsqlookupd: l, conns: make(map[net.Conn]struct{}), writeTimeout: writeTimeout}
}

// track adds conn to the live set; it reports false once closeAll has run.
func (p *tcpServer) track(conn net.Conn) bool {
	p.mu.Lock()
	defer p.mu.Unlock()
	p.accepted++
	if p.closed {
		return false
	}
	p.conns[conn] = struct{}{}
	p.connsPeak = max(p.connsPeak, len(p.conns))
	return true
}

func (p *tcpServer) untrack(conn net.Conn) {
	p.mu.Lock()
	defer p.mu.Unlock()
	delete(p.conns, conn)
	if p.connsPeak >= 64 && len(p.conns) <= p.connsPeak/4 {
		// a Go map never gives back what a burst of connections took
		conns := make(map[net.Conn]struct{}, len(p.conns))
		for c := range p.conns {
			conns[c] = struct{}{}
		}
		p.conns, p.connsPeak = conns, len(conns)
	}
}

// counts returns how many connections are open and how many were ever
// accepted, for /metrics.
func (p *tcpServer) counts() (open int, accepted uint64) {
	p.mu.Lock()
	defer p.mu.Unlock()
	return len(p.conns), p.accepted
}

// closeAll closes every live connection and refuses new ones.
func (p *tcpServer) closeAll() {
	p.mu.Lock()
	defer p.mu.Unlock()
	p.closed = true
	for conn := range p.conns {
		conn.Close()
	}
}

// closeStale closes the connections from addr other than conn: a new
// connection from the address of a live producer means the kernel reused
// it, and the old connection is dead (docs/differences.md, Reused peer
// id).
func (p *tcpServer) closeStale(addr string, conn net.Conn) {
	p.mu.Lock()
	defer p.mu.Unlock()
	for c := range p.conns {
		if c != conn && c.RemoteAddr().String() == addr {
			c.Close()
		}
	}
}

// closeRefused closes each registration connection the access rules in
// force refuse, with one line: its producer leaves as on any disconnect.
func (p *tcpServer) closeRefused() {
	p.mu.Lock()
	defer p.mu.Unlock()
	for c := range p.conns {
		if p.nsqlookupd.access.Refuses(c.RemoteAddr()) {
			p.refused.Store(c, true)
			p.nsqlookupd.log.Eventf(lg.WARN, clientKeys, "TCP: closing client(%s): %s since the reload", c.RemoteAddr(), "not in --tcp-allow")
			c.Close()
		}
	}
}

// Handle serves one registration connection until it ends, then removes its
// producer from the registry.
func (p *tcpServer) Handle(conn net.Conn) {
	l := p.nsqlookupd
	defer conn.Close()
	if !l.access.AllowTCP(conn) { // refused before a byte is read (internal/access)
		return
	}
	if !p.track(conn) {
		return
	}
	defer p.untrack(conn)

	l.log.Eventf(lg.INFO, clientKeys, "TCP: new client(%s)", conn.RemoteAddr())
	if l.opts.IdentifyTimeout > 0 {
		// Lifted by a successful IDENTIFY: a connection that never identifies
		// cannot hold its goroutine and buffers forever.
		conn.SetReadDeadline(time.Now().Add(l.opts.IdentifyTimeout))
	}

	var magic [4]byte
	if _, err := io.ReadFull(conn, magic[:]); err != nil {
		l.log.Eventf(lg.ERROR, clientKeys[1:], "failed to read protocol version - %s", err)
		return
	}
	l.log.Eventf(lg.INFO, clientKeys[:1], "CLIENT(%s): desired protocol magic '%s'", conn.RemoteAddr(), magic[:])
	if string(magic[:]) != protocol.MagicV1 {
		protocol.SendFramedResponse(conn, []byte("E_BAD_PROTOCOL"))
		l.log.Eventf(lg.ERROR, clientKeys[:1], "client(%s) bad protocol magic '%s'", conn.RemoteAddr(), magic[:])
		return
	}

	client := newClientV1(conn)
	defer func() {
		// Last line of defence: a panic, in the IO loop or in the cleanup
		// below, closes this one connection, is logged and counted, and
		// leaves the daemon serving.
		if r := recover(); r != nil {
			l.panics.Add(1)
			l.log.Eventf(lg.ERROR, clientKeys, "client(%s) - panic: %v", client, r)
		}
	}()
	defer p.cleanup(client)

	err := (&lookupProtocolV1{nsqlookupd: l}).IOLoop(client)
	if _, refused := p.refused.LoadAndDelete(conn); err != nil && !refused { // closeRefused logged it
		l.log.Eventf(lg.ERROR, clientKeys, "client(%s) - %s", conn.RemoteAddr(), err)
	}
}

// cleanup removes the client's producer from every registration it holds.
func (p *tcpServer) cleanup(client *clientV1) {
	if client.producer == nil {
		return
	}
	l := p.nsqlookupd
	l.auth.ProducerDown(client.addr)
	l.db.RemoveProducer(client.producer, func(left []registry.Registration) {
		for _, r := range left {
			l.logDB(client, "UNREGISTER", r)
		}
	})
	// Let the producer go now: a stopped eviction timer can hold the
	// client until the runtime drops the timer.
	client.producer = nil
}

// clientV1 is one registration connection.
type clientV1 struct {
	net.Conn
	addr     string             // the remote address, as logs name the client
	producer *registry.Producer // nil until IDENTIFY succeeds

	// Eviction of a silent producer: after IDENTIFY, evictTimer fires once
	// readTimeout has passed without a completed command. The fields but
	// evicted belong to the connection's goroutine.
	evictTimer  timer // nil before IDENTIFY or with the timeout off
	readTimeout time.Duration
	commands    int         // commands completed since evictTimer was last reset
	evicted     atomic.Bool // set when evictTimer fires
}

func newClientV1(conn net.Conn) *clientV1 {
	return &clientV1{Conn: conn, addr: fmt.Sprint(conn.RemoteAddr())}
}

// String returns the remote address, as logs name a client.
func (c *clientV1) String() string {
	return c.addr
}

// aLongTimeAgo is a deadline in the past: it makes a blocked read return.
var aLongTimeAgo = time.Unix(1, 0)

// startEviction arms the eviction timer of a client that has just
// identified; a timeout of 0 leaves eviction off.
func (c *clientV1) startEviction(clk clock, timeout time.Duration) {
	if timeout <= 0 {
		return
	}
	c.readTimeout = timeout
	c.evictTimer = clk.AfterFunc(timeout, func() {
		// Mark, then wake the reader: its read fails at once and IOLoop,
		// seeing evicted, closes the connection as a disconnect would.
		c.evicted.Store(true)
		c.SetReadDeadline(aLongTimeAgo)
	})
}

// keepAlive pushes the eviction back by readTimeout if a command completed
// since the last push. It is called when the reader needs more input, not
// per command: pipelined commands cost one timer reset per read, and bytes
// that complete no command (a peer dribbling half a line) never count.
func (c *clientV1) keepAlive() {
	if c.evictTimer != nil && c.commands > 0 {
		c.commands = 0
		c.evictTimer.Reset(c.readTimeout)
	}
}

// stopEviction cancels a pending eviction when the connection ends.
func (c *clientV1) stopEviction() {
	if c.evictTimer != nil {
		c.evictTimer.Stop()
	}
}
