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

// Server limits. There is no WriteTimeout: /debug/pprof/profile and
// /debug/pprof/trace stream for as long as ?seconds= asks, and net/http/pprof
// refuses any duration at or above the server's WriteTimeout.
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
)

type logWriter struct {
	logf lg.AppLogFunc
}

func (l logWriter) Write(p []byte) (int, error) {
	l.logf(lg.WARN, "%s", strings.TrimSuffix(string(p), "\n"))
	return len(p), nil
}

// NewServer returns an http.Server for handler with the limits above and its
// error log sent through logf.
func NewServer(handler http.Handler, logf lg.AppLogFunc) *http.Server {
	return &http.Server{
		Handler:           handler,
		ReadHeaderTimeout: ReadHeaderTimeout,
		IdleTimeout:       IdleTimeout,
		MaxHeaderBytes:    MaxHeaderBytes,
		ErrorLog:          log.New(logWriter{logf}, "", 0),
	}
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
