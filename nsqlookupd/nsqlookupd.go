// Package nsqlookupd is the discovery daemon of NSQ: nsqd register their
// topics and channels with it over TCP, and consumers find them over HTTP.
// It is a drop-in replacement for nsqlookupd v1.3.0.
//
// New listens on its addresses (TCP, HTTP and, when configured, HTTPS), Main
// serves until the first fatal error, Exit closes everything and waits:
//
//	l, err := nsqlookupd.New(nsqlookupd.NewOptions())
//	if err != nil { ... }
//	go l.Main()
//	defer l.Exit()
package nsqlookupd

import (
	"context"
	"crypto/tls"
	"encoding/json"
	"fmt"
	"net"
	"net/http"
	"os"
	"runtime"
	"sync"
	"sync/atomic"
	"time"

	"github.com/lookupd/nsqlookupd/internal/http_api"
	"github.com/lookupd/nsqlookupd/internal/lg"
	"github.com/lookupd/nsqlookupd/internal/protocol"
	"github.com/lookupd/nsqlookupd/internal/util"
	"github.com/lookupd/nsqlookupd/internal/version"
	"github.com/lookupd/nsqlookupd/nsqlookupd/internal/access"
	"github.com/lookupd/nsqlookupd/nsqlookupd/internal/auth"
	"github.com/lookupd/nsqlookupd/nsqlookupd/internal/registry"
	"github.com/lookupd/nsqlookupd/nsqlookupd/internal/reload"
	"github.com/lookupd/nsqlookupd/nsqlookupd/internal/tlsconfig"
)

// nsqdHeartbeat is how often nsqd PINGs each lookupd (fixed in nsqd): a
// producer read timeout must be longer, or idle nsqd are evicted.
const nsqdHeartbeat = 15 * time.Second

// shutdownTimeout bounds how long Exit lets HTTP requests in flight finish
// before their connections are closed.
const shutdownTimeout = 2 * time.Second

// NSQLookupd is one running daemon.
type NSQLookupd struct {
	opts *Options

	tcpListener  net.Listener
	httpListener net.Listener
	tcpServer    *tcpServer
	httpServer   *http.Server
	// httpsListener and httpsServer serve the same router over TLS; both
	// nil without --https-address.
	httpsListener net.Listener
	httpsServer   *http.Server
	tlsConfig     *tls.Config
	certs         *tlsconfig.Reloader // the HTTPS certificate, read again by a reload
	db            *registry.DB
	// answers are the encoded answers requests share (answer_cache.go).
	answers answers
	// clock is the daemon's only source of time: realClock, or a test's
	// fakeClock set before Main.
	clock clock

	// identifyResponse is the answer to every IDENTIFY, built once in New.
	identifyResponse []byte
	// releaser returns memory to the OS after a mass deletion.
	releaser *memoryReleaser

	mu      sync.Mutex // guards exiting, so Main never starts servers Exit won't wait for
	exiting bool
	wg      util.WaitGroupWrapper

	exitOnce sync.Once
	// flushLog waits until every log line so far is written: the default
	// logger writes in batches, from a goroutine of its own.
	flushLog func()
	// panics counts panics recovered at a registration connection (which
	// was closed) or an HTTP request (answered 500).
	panics atomic.Int64
	// evictions counts registration connections closed for silence longer
	// than the producer read timeout.
	evictions atomic.Int64

	// log is where every line goes, in the settings of the last reload.
	log      *lg.Log
	reloadMu sync.Mutex     // serializes reloads (reload.go); guards running
	running  *Options       // the options in force
	reloads  *reload.Status // their outcome, for /metrics
	// metrics is what GET /metrics reports.
	metrics *metrics
	// access holds the access rules (internal/access).
	access *access.Guard
	// auth checks the secrets of reads (internal/auth); nil: auth off.
	auth *auth.Authorizer
}

// identifyAnswer is the IDENTIFY response; its fields are in the order
// v1.3.0's sorted map gives them.
type identifyAnswer struct {
	BroadcastAddress string `json:"broadcast_address"`
	Hostname         string `json:"hostname"`
	HTTPPort         int    `json:"http_port"`
	TCPPort          int    `json:"tcp_port"`
	Version          string `json:"version"`
}

// New checks opts, loads the TLS files if HTTPS is configured, and listens
// on the TCP, HTTP and HTTPS addresses. It logs the version line and returns
// an error rather than exiting.
func New(opts *Options) (_ *NSQLookupd, err error) {
	flushLog := func() {}
	if opts.Logger == nil {
		logger := lg.NewBatchedLogger(opts.LogPrefix, os.Stderr)
		opts.Logger, flushLog = logger, logger.Flush
	}
	if err := opts.Validate(); err != nil {
		return nil, err
	}
	hostname, err := os.Hostname()
	if err != nil {
		return nil, fmt.Errorf("unable to get hostname - %w", err)
	}

	l := &NSQLookupd{opts: opts, db: registry.New(opts.TombstoneLifetime), clock: realClock{}, flushLog: flushLog,
		log:     lg.New(opts.Logger, lg.Settings{Level: opts.LogLevel, Format: opts.LogFormat, Access: opts.HTTPAccessLog}),
		running: opts, reloads: reload.NewStatus(time.Now())}
	l.releaser = newMemoryReleaser(l)
	// The TLS files are read before anything is logged: a bad pair is a
	// bad configuration, one error and no other line.
	if opts.HTTPSAddress != "" {
		if l.tlsConfig, l.certs, err = tlsconfig.New(opts.tlsOptions(), l.log); err != nil {
			return nil, err
		}
	}
	ac := opts.authConfig() // its CA file read before anything is logged, as the TLS files
	ac.Admin = func(req *http.Request) bool { return l.access.Admits(req) }
	if l.auth, err = auth.New(ac, l.logf, func() time.Time { return l.clock.Now() }); err != nil {
		return nil, err
	}
	l.logf(lg.INFO, "%s", version.String("nsqlookupd"))
	if l.auth != nil {
		l.logf(lg.INFO, "AUTH: %s", l.auth)
	}
	if t := opts.ProducerReadTimeout; t > 0 && t <= nsqdHeartbeat {
		l.logf(lg.WARN, "producer-read-timeout %s is not longer than nsqd's %s heartbeat: an idle but healthy nsqd will be evicted", t, nsqdHeartbeat)
	}

	// one cleanup path: whatever was opened is closed if New fails
	defer func() {
		if err != nil {
			for _, ln := range []net.Listener{l.tcpListener, l.httpListener, l.httpsListener} {
				if ln != nil {
					ln.Close()
				}
			}
			flushLog()
		}
	}()
	listen := func(addr string) (net.Listener, error) {
		ln, err := net.Listen("tcp", addr)
		if err != nil {
			return nil, fmt.Errorf("listen (%s) failed - %w", addr, err)
		}
		return ln, nil
	}
	if l.tcpListener, err = listen(opts.TCPAddress); err != nil {
		return nil, err
	}
	if l.httpListener, err = listen(opts.HTTPAddress); err != nil {
		return nil, err
	}
	if opts.HTTPSAddress != "" {
		if l.httpsListener, err = listen(opts.HTTPSAddress); err != nil {
			return nil, err
		}
	}

	l.identifyResponse, _ = json.Marshal(identifyAnswer{
		BroadcastAddress: opts.BroadcastAddress,
		Hostname:         hostname,
		HTTPPort:         l.RealHTTPAddr().Port,
		TCPPort:          l.RealTCPAddr().Port,
		Version:          version.Binary,
	})

	if opts.BlockProfileRate > 0 {
		runtime.SetBlockProfileRate(opts.BlockProfileRate)
	}
	if opts.MutexProfileFraction > 0 {
		runtime.SetMutexProfileFraction(opts.MutexProfileFraction)
	}

	l.tcpServer = newTCPServer(l, answerWriteTimeout)
	l.metrics = newMetrics(l)
	// tlsRequired is the plain port's answer to every request with
	// --tls-required, and to an admin request that needs a certificate
	var tlsRequired http.Handler
	if l.httpsListener != nil {
		tlsRequired = tlsconfig.RequiredHandler(l.RealHTTPSAddr().Port, l.log)
	}
	l.access = access.New(opts.accessConfig(), tlsRequired, l.log, func() time.Time { return l.clock.Now() })
	l.metrics.registry.MustRegister(append(l.reloads.Metrics(), l.access.Metrics())...)
	if l.auth != nil {
		l.metrics.registry.MustRegister(l.auth.Metrics())
	}
	router := newHTTPServer(l)
	var plain http.Handler = router
	if l.httpsListener != nil {
		// The HTTPS server gets the plain one's limits; net/http bounds a
		// TLS handshake by the smallest of them (ReadHeaderTimeout), so a
		// half handshake or plaintext costs at most that long. HTTP/1.1
		// only, as nsqd: no HTTP/2 to harden separately.
		l.httpsServer = http_api.NewServer(router, opts.HTTPWriteTimeout, l.logf)
		l.httpsServer.TLSNextProto = map[string]func(*http.Server, *tls.Conn, http.Handler){}
		if opts.tlsOptions().Required() {
			plain = tlsRequired
		}
	}
	l.httpServer = http_api.NewServer(plain, opts.HTTPWriteTimeout, l.logf)
	return l, nil
}

// Main serves TCP and HTTP until one of them stops; it returns that
// server's error, or nil once Exit has closed them.
func (l *NSQLookupd) Main() error {
	exitCh := make(chan error, 1)
	var once sync.Once
	exitFunc := func(err error) {
		once.Do(func() {
			if err != nil {
				l.log.Eventf(lg.FATAL, clientKeys[1:], "%s", err)
			}
			exitCh <- err
		})
	}

	l.mu.Lock()
	if l.exiting {
		l.mu.Unlock()
		return nil
	}
	l.wg.Wrap(func() {
		exitFunc(protocol.TCPServer(l.tcpListener, l.tcpServer, l.logf))
	})
	l.wg.Wrap(func() {
		exitFunc(http_api.Serve(l.httpListener, l.httpServer, "HTTP", l.logf))
	})
	if l.httpsListener != nil {
		l.wg.Wrap(func() {
			exitFunc(http_api.Serve(tls.NewListener(l.httpsListener, l.tlsConfig), l.httpsServer, "HTTPS", l.logf))
		})
	}
	l.releaser.start()
	l.mu.Unlock()

	return <-exitCh
}

// RealTCPAddr returns the address the TCP listener is bound to.
func (l *NSQLookupd) RealTCPAddr() *net.TCPAddr {
	return l.tcpListener.Addr().(*net.TCPAddr)
}

// RealHTTPAddr returns the address the HTTP listener is bound to.
func (l *NSQLookupd) RealHTTPAddr() *net.TCPAddr {
	return l.httpListener.Addr().(*net.TCPAddr)
}

// RealHTTPSAddr returns the address the HTTPS listener is bound to, or nil
// without --https-address.
func (l *NSQLookupd) RealHTTPSAddr() *net.TCPAddr {
	if l.httpsListener == nil {
		return nil
	}
	return l.httpsListener.Addr().(*net.TCPAddr)
}

// Exit closes every listener and every connection, and waits for the
// servers' goroutines. It returns in bounded time; later calls do nothing.
func (l *NSQLookupd) Exit() {
	l.exitOnce.Do(func() {
		l.mu.Lock()
		l.exiting = true
		l.mu.Unlock()

		l.releaser.stop()
		l.auth.Close()
		l.tcpListener.Close()
		l.tcpServer.closeAll()

		// One deadline for both HTTP servers: requests in flight get
		// shutdownTimeout in all, then their connections are closed.
		ctx, cancel := context.WithTimeout(context.Background(), shutdownTimeout)
		defer cancel()
		if err := l.httpServer.Shutdown(ctx); err != nil {
			l.httpServer.Close()
		}
		l.httpListener.Close()
		if l.httpsServer != nil {
			if err := l.httpsServer.Shutdown(ctx); err != nil {
				l.httpsServer.Close()
			}
			l.httpsListener.Close()
		}

		l.wg.Wait()
		l.flushLog()
	})
}

func (l *NSQLookupd) logf(level lg.LogLevel, f string, args ...interface{}) {
	l.log.Logf(level, f, args...)
}

// logDB logs a change of a client's registrations at INFO: one line per
// registration (a fleet's start logs millions), built without fmt, naming
// the registration as v1.3.0 does (category, key, subkey).
func (l *NSQLookupd) logDB(client *clientV1, verb string, r registry.Registration) {
	l.log.Join(lg.INFO, lg.Keys{1: "remote_address", 5: "category", 7: "topic", 9: "channel"}, "DB: client(", client.addr, ") ", verb,
		" category:", categories[r.Kind], " key:", r.Topic, " subkey:", r.Channel)
}

// categories are v1.3.0's names of the kinds of registration, in its log
// lines and /debug keys.
var categories = [...]string{registry.KindProducer: "client", registry.KindTopic: "topic", registry.KindChannel: "channel"}

// clientKeys name the JSON fields of a connection's events (docs/logging.md, Logs).
var clientKeys = lg.Keys{"remote_address", "reason"}
