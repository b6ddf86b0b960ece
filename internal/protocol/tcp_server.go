package protocol

import (
	"errors"
	"net"
	"time"

	"github.com/lookupd/nsqlookupd/internal/lg"
	"github.com/lookupd/nsqlookupd/internal/util"
)

// TCPHandler serves one accepted connection. Handle owns conn and must close it.
type TCPHandler interface {
	Handle(conn net.Conn)
}

// Accept back-off bounds: a failing Accept (EMFILE, ENFILE...) is retried
// after a pause that doubles from acceptBackoffMin up to acceptBackoffMax,
// so a full file table neither spins the CPU nor stops the server for long.
const (
	acceptBackoffMin = 5 * time.Millisecond
	acceptBackoffMax = time.Second
)

// TCPServer accepts connections on listener and serves each in its own
// goroutine until the listener is closed; it then waits for every handler to
// return and returns nil.
func TCPServer(listener net.Listener, handler TCPHandler, logf lg.AppLogFunc) error {
	logf(lg.INFO, "TCP: listening on %s", listener.Addr())

	var wg util.WaitGroupWrapper
	var backoff time.Duration
	for {
		clientConn, err := listener.Accept()
		if err != nil {
			if errors.Is(err, net.ErrClosed) {
				break
			}
			if backoff == 0 {
				backoff = acceptBackoffMin
			} else if backoff *= 2; backoff > acceptBackoffMax {
				backoff = acceptBackoffMax
			}
			logf(lg.ERROR, "TCP: accept error - %s; retrying in %s", err, backoff)
			time.Sleep(backoff)
			continue
		}
		backoff = 0
		wg.Wrap(func() { handler.Handle(clientConn) })
	}

	wg.Wait()
	logf(lg.INFO, "TCP: closing %s", listener.Addr())
	return nil
}
