package http_api

import (
	"errors"
	"log"
	"net"
	"net/http"
	"strings"
	"time"

	"github.com/lookupd/nsqlookupd/internal/lg"
)

// Server limits. The write timeout is the caller's (an option); net/http/pprof
// extends it by ?seconds=N for the profiles that take that long.
const (
	// ReadHeaderTimeout bounds how long a client may take to send its
	// request line and headers (a slow-header client holds one goroutine at
	// most this long).
	ReadHeaderTimeout = 10 * time.Second
	// IdleTimeout closes keep-alive connections idle this long.
	IdleTimeout = 120 * time.Second
	// MaxHeaderBytes caps request line plus headers: real NSQ clients send a
	// few hundred bytes; anything over is answered 431.
	MaxHeaderBytes = 64 << 10
	// MaxBodyBytes caps what is read of a request body. Only POST
	// /debug/pprof/symbol reads one: hex addresses joined by "+", some 15
	// bytes each, so 1 MiB is ~70 000 addresses, more than a profile holds.
	// Without a cap, a body of valid addresses makes pprof build an answer
	// several times its size.
	MaxBodyBytes = 1 << 20
)

type logWriter struct {
	logf lg.AppLogFunc
}

func (l logWriter) Write(p []byte) (int, error) {
	l.logf(lg.WARN, "%s", strings.TrimSuffix(string(p), "\n"))
	return len(p), nil
}

// NewServer returns an http.Server for handler with the limits above, an
// answer abandoned and its connection closed once writeTimeout has passed
// since its request was read (0: never), and its error log sent through
// logf. A request body, too, must arrive within the server's
// ReadHeaderTimeout: see boundBody.
func NewServer(handler http.Handler, writeTimeout time.Duration, logf lg.AppLogFunc) *http.Server {
	srv := &http.Server{
		WriteTimeout:      writeTimeout,
		ReadHeaderTimeout: ReadHeaderTimeout,
		IdleTimeout:       IdleTimeout,
		MaxHeaderBytes:    MaxHeaderBytes,
		ErrorLog:          log.New(logWriter{logf}, "", 0),
	}
	srv.Handler = boundBody(handler, srv)
	return srv
}

// boundBody bounds what a request body can cost; requests without one
// (every route but pprof's symbol lookup) pass untouched. With no
// ReadTimeout (it would cut long pprof profiles short), net/http waits
// without a deadline for a body: after the handler, it reads what the
// handler left unread (up to 256 KiB) before it answers, so a client that
// declares a body and never sends it would hold a connection and a
// goroutine forever. So: the body must arrive within srv.ReadHeaderTimeout
// (read when the request starts, so tests may shorten it before Serve), at
// most MaxBodyBytes of it are read, and the connection closes after the
// answer, which is then sent at once instead of after the discard.
func boundBody(h http.Handler, srv *http.Server) http.Handler {
	return http.HandlerFunc(func(w http.ResponseWriter, req *http.Request) {
		if req.ContentLength != 0 { // a declared length, or -1: chunked
			if d := srv.ReadHeaderTimeout; d > 0 {
				http.NewResponseController(w).SetReadDeadline(time.Now().Add(d))
			}
			w.Header().Set("Connection", "close")
			req.Body = http.MaxBytesReader(w, req.Body, MaxBodyBytes)
		}
		h.ServeHTTP(w, req)
	})
}

// Serve serves srv on listener until the server is closed, logging
// "<proto>: listening on" and "<proto>: closing"; it returns nil once
// closed, or the error that stopped it.
func Serve(listener net.Listener, srv *http.Server, proto string, logf lg.AppLogFunc) error {
	logf(lg.INFO, "%s: listening on %s", proto, listener.Addr())
	err := srv.Serve(listener)
	if err != nil && !errors.Is(err, http.ErrServerClosed) && !errors.Is(err, net.ErrClosed) {
		return err
	}
	logf(lg.INFO, "%s: closing %s", proto, listener.Addr())
	return nil
}
