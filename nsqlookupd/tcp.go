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
)

// tcpServer hands each accepted connection to the V1 protocol after reading
// its magic, and keeps the live connections so Exit can close them.
type tcpServer struct {
	nsqlookupd *NSQLookupd

	mu        sync.Mutex            // guards the four fields below
	closed    bool                  // set by closeAll: new connections are refused
	conns     map[net.Conn]struct{} // live connections
	connsPeak int                   // most entries conns has held: see shrinkMap
	accepted  uint64                // connections ever accepted

	// commandHook, when not nil, is called with the words of each command
	// line before it runs. It is always nil in production: tests set it,
	// before Main, to inject a fault (a panic) that no input can cause.
	commandHook func(params []string)
	// writeTimeout bounds each write of answers: answerWriteTimeout, which
	// tests may shorten before Main.
	writeTimeout time.Duration
}

func newTCPServer(l *NSQLookupd) *tcpServer {
	return &tcpServer{nsqlookupd: l, conns: make(map[net.Conn]struct{}), writeTimeout: answerWriteTimeout}
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
	p.conns = shrinkMap(p.conns, &p.connsPeak) // give back a burst's storage
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

// Handle serves one registration connection until it ends, then removes its
// producer from the registry.
func (p *tcpServer) Handle(conn net.Conn) {
	l := p.nsqlookupd
	defer conn.Close()
	if !l.access.allowTCP(conn) { // access control (access.go): refused before a byte is read
		return
	}
	if !p.track(conn) {
		return
	}
	defer p.untrack(conn)

	l.logf(lg.INFO, "TCP: new client(%s)", conn.RemoteAddr())
	if l.opts.IdentifyTimeout > 0 {
		// Lifted by a successful IDENTIFY: a connection that never identifies
		// cannot hold its goroutine and buffers forever.
		conn.SetReadDeadline(time.Now().Add(l.opts.IdentifyTimeout))
	}

	var magic [4]byte
	if _, err := io.ReadFull(conn, magic[:]); err != nil {
		l.logf(lg.ERROR, "failed to read protocol version - %s", err)
		return
	}
	l.logf(lg.INFO, "CLIENT(%s): desired protocol magic '%s'", conn.RemoteAddr(), magic[:])
	if string(magic[:]) != protocol.MagicV1 {
		protocol.SendFramedResponse(conn, []byte("E_BAD_PROTOCOL"))
		l.logf(lg.ERROR, "client(%s) bad protocol magic '%s'", conn.RemoteAddr(), magic[:])
		return
	}

	client := newClientV1(conn)
	defer func() {
		// Last line of defence: a panic closes this one connection, is
		// logged and counted, and leaves the daemon serving.
		if r := recover(); r != nil {
			l.panics.Add(1)
			l.logf(lg.ERROR, "client(%s) - panic: %v", client, r)
		}
		p.cleanup(client)
		// Let the producer go now: a stopped eviction timer can hold the
		// client until the runtime drops the timer, and the producer's
		// index can be large.
		client.peer = nil
	}()

	prot := &lookupProtocolV1{nsqlookupd: l}
	if err := prot.IOLoop(client); err != nil {
		l.logf(lg.ERROR, "client(%s) - %s", conn.RemoteAddr(), err)
	}
}

// cleanupAttempts is how many times cleanup tries to remove a producer
// whose removal panicked: a registry change either completes or changes
// nothing, so a second try starts from a whole registry.
const cleanupAttempts = 2

// cleanup removes the client's producer from every registration it holds.
// It runs after a recovered panic too, so it is protected itself: a panic
// in it is logged and counted, and the removal tried again.
func (p *tcpServer) cleanup(client *clientV1) {
	if client.peer == nil {
		return
	}
	l := p.nsqlookupd
	for range cleanupAttempts {
		if p.removeProducer(client) {
			return
		}
	}
	l.logf(lg.ERROR, "client(%s) - its registrations could not be removed; they stay until its address identifies again or it goes inactive", client)
}

// removeProducer removes the client's producer, and reports false if that
// panicked.
func (p *tcpServer) removeProducer(client *clientV1) (done bool) {
	l := p.nsqlookupd
	defer func() {
		if r := recover(); r != nil {
			l.panics.Add(1)
			l.logf(lg.ERROR, "client(%s) - panic while removing its registrations: %v", client, r)
		}
	}()
	for _, r := range l.db.removePeer(client.peer) {
		l.logDB(client, "UNREGISTER", r.Category, r.Key, r.SubKey)
	}
	return true
}

// clientV1 is one registration connection.
type clientV1 struct {
	net.Conn
	addr string // the remote address, as logs name the client
	peer *peer  // nil until IDENTIFY succeeds

	// Eviction of a silent producer: after IDENTIFY, evictTimer fires once
	// readTimeout has passed without a completed command. The fields but
	// evicted belong to the connection's goroutine.
	evictTimer  timer // nil before IDENTIFY or with the timeout off
	readTimeout time.Duration
	commands    int         // commands completed since evictTimer was last reset
	evicted     atomic.Bool // set when evictTimer fires

	// counts are the commands not yet added to /metrics' counters; they
	// belong to the connection's goroutine.
	counts commandCounts
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

func newClientV1(conn net.Conn) *clientV1 {
	return &clientV1{Conn: conn, addr: fmt.Sprint(conn.RemoteAddr())}
}

// String returns the remote address, as logs name a client.
func (c *clientV1) String() string {
	return c.addr
}
