// Package auth decides what a lookup may read when nsqlookupd runs with
// --auth-http-address (docs/authorization.md): the client's secret, sent
// as go-nsq sends it (Authorization: Bearer <secret>), is checked against
// nsqd's auth servers exactly as nsqd v1.3.0 checks the secret of an AUTH
// command, and the routes that read the registry answer only the topics
// and channels the identity may publish or subscribe to.
//
// The daemon makes one Authorizer with New (none when auth is off: a nil
// *Authorizer lets everything through and costs one comparison), calls
// Read at the start of each read route and filters the answer with the
// *State it returns, tells it of producers that come and go (ProducerUp,
// ProducerDown), registers Metrics, and calls Close on exit.
//
// An answer is cached per (secret, remote_ip, tls, common_name), as nsqd
// keeps one per connection, until its ttl ends; concurrent first requests
// for one key make one query (singleflight). Refusals are remembered
// briefly and counted per source, so that neither a repeated bad secret
// nor a stream of distinct ones becomes a stream of queries. Memory is
// bounded by the constants of cache.go. The secret is hashed into the
// cache key; it is never logged, never a metric label, never in an
// answer's body, and scrubbed from the errors of a failed query.
//
// An auth server that cannot answer never means "allow": a request whose
// secret needs a query then gets 503, within the request timeout.
package auth

import (
	"context"
	"errors"
	"fmt"
	"net/http"
	"net/netip"
	"slices"
	"strings"
	"sync"
	"sync/atomic"
	"time"

	"github.com/prometheus/client_golang/prometheus"
	"golang.org/x/sync/singleflight"

	"github.com/lookupd/nsqlookupd/internal/http_api"
	"github.com/lookupd/nsqlookupd/internal/lg"
)

const (
	// maxSecret bounds a secret: a longer one is refused without a query
	// (nsqd sends the secret in the query string, which servers cap at a
	// few KiB).
	maxSecret = 4 << 10
	// maxInFlight bounds the queries under way at once, whatever the
	// number of distinct secrets asked: a query waits for a slot until the
	// request timeout, then counts as failed.
	maxInFlight = 64
	// failureLogInterval is how often one auth server's failures may be
	// logged.
	failureLogInterval = time.Minute
)

// The answers of a request that may not read, in v1.3.0's error style.
var (
	// ErrAuthRequired: no secret (no Authorization: Bearer header).
	ErrAuthRequired = http_api.Err{Code: http.StatusUnauthorized, Text: "AUTH_REQUIRED"}
	// ErrAuthFailed: the auth servers refused the secret, or gave it no
	// authorization.
	ErrAuthFailed = http_api.Err{Code: http.StatusUnauthorized, Text: "AUTH_FAILED"}
	// ErrAuthRateLimited: the source had too many secrets refused lately
	// for its new secret to be checked now.
	ErrAuthRateLimited = http_api.Err{Code: http.StatusTooManyRequests, Text: "AUTH_RATE_LIMITED"}
	// ErrAuthUnavailable: the secret needed a query and no auth server
	// answered in time.
	ErrAuthUnavailable = http_api.Err{Code: http.StatusServiceUnavailable, Text: "AUTH_UNAVAILABLE"}
)

// Statuses lists the statuses Read may answer with, for the daemon's
// route counts.
var Statuses = []int{http.StatusUnauthorized, http.StatusTooManyRequests, http.StatusServiceUnavailable}

// Config is the auth options.
type Config struct {
	// Servers are the auth servers (--auth-http-address), each host:port
	// (queried at http://host:port/auth) or a full http or https URL
	// (queried as given), as nsqd reads them. Empty: auth is off.
	Servers []string
	// ConnectTimeout bounds connecting to an auth server, and
	// RequestTimeout a whole query (--http-client-connect-timeout and
	// --http-client-request-timeout, nsqd's 2 s and 5 s).
	ConnectTimeout, RequestTimeout time.Duration
	// RootCAFile is the PEM bundle an https auth server is verified
	// against (--tls-root-ca-file, as nsqd); empty, the system's roots.
	RootCAFile string
	// Admin reports whether a request passes an explicitly configured
	// admin rule (--http-admin-allow, the admin client certificate); nil
	// when there is none. Such a request without a secret reads
	// unfiltered: nsqadmin sends none.
	Admin func(*http.Request) bool
}

// Validate reports the first option that cannot work; its errors name
// the command-line flags.
func (c Config) Validate() error {
	if c.ConnectTimeout <= 0 {
		return fmt.Errorf("--http-client-connect-timeout must be positive (got %s)", c.ConnectTimeout)
	}
	if c.RequestTimeout <= 0 {
		return fmt.Errorf("--http-client-request-timeout must be positive (got %s)", c.RequestTimeout)
	}
	for _, a := range c.Servers {
		if _, err := parseServer(a); err != nil {
			return err
		}
	}
	return nil
}

// Authorizer checks secrets and caches what they reach. Its methods are
// safe for concurrent use, and on a nil *Authorizer (auth off).
type Authorizer struct {
	client  atomic.Pointer[client]
	timeout atomic.Int64 // the request timeout in force, in ns
	connect atomic.Int64 // the connect timeout in force, in ns
	admin   func(*http.Request) bool
	cache   *cache
	flight  singleflight.Group
	slots   chan struct{} // a query holds one; cap maxInFlight
	peers   peers
	now     func() time.Time
	logf    lg.AppLogFunc
	ctx     context.Context // cancelled by Close: queries in flight stop
	cancel  context.CancelFunc

	failMu   sync.Mutex           // guards failures
	failures map[string]*failures // by server name

	m metrics
}

// failures is what was logged of one server's failures.
type failures struct {
	logged  time.Time // when the last line was
	skipped int       // failures since, not logged
}

// New makes the Authorizer of c, which has passed Validate; nil when c
// has no server. now tells the time for expiry and the failure log. The
// caller logs its String as the start-up line.
func New(c Config, logf lg.AppLogFunc, now func() time.Time) (*Authorizer, error) {
	if len(c.Servers) == 0 {
		return nil, nil
	}
	a := &Authorizer{admin: c.Admin, cache: newCache(), slots: make(chan struct{}, maxInFlight),
		peers: peers{n: make(map[netip.Addr]int)}, now: now, logf: logf, failures: make(map[string]*failures)}
	a.ctx, a.cancel = context.WithCancel(context.Background())
	if err := a.Reload(c); err != nil {
		return nil, err
	}
	a.m = newMetrics(a)
	return a, nil
}

// String describes the auth in force, for the start-up line: it names the
// auth servers.
func (a *Authorizer) String() string {
	return fmt.Sprintf("reads need a secret (Authorization: Bearer) checked against %s (connect timeout %s, request timeout %s); "+
		"/debug joins the admin routes; a request without a secret reads unfiltered if it passes an admin rule",
		a.client.Load().names(), time.Duration(a.connect.Load()), time.Duration(a.timeout.Load()))
}

// Reload puts c's servers and timeouts in force, for the next queries;
// with other servers, it also forgets every cached answer (they may decide
// otherwise). Options as they are change nothing. It checks c first: an
// error changes nothing either. The admin rule stays: whether auth is on,
// and the admin routes it guards, are decided at start-up.
func (a *Authorizer) Reload(c Config) error {
	if err := c.Validate(); err != nil {
		return err
	}
	if len(c.Servers) == 0 {
		return errors.New("--auth-http-address: auth cannot be turned off without a restart")
	}
	old := a.client.Load()
	sameServers := old != nil && slices.Equal(old.addrs(), c.Servers)
	if sameServers && c.RootCAFile == old.rootCAFile &&
		time.Duration(a.connect.Load()) == c.ConnectTimeout && time.Duration(a.timeout.Load()) == c.RequestTimeout {
		return nil
	}
	cl, err := newClient(c)
	if err != nil {
		return err
	}
	a.timeout.Store(int64(c.RequestTimeout))
	a.connect.Store(int64(c.ConnectTimeout))
	a.client.Store(cl)
	if old != nil {
		old.close()
		if !sameServers {
			a.cache.flush()
		}
		a.logf(lg.INFO, "AUTH: now %s", a)
	}
	return nil
}

// names lists the servers as logged.
func (c *client) names() string {
	names := make([]string, len(c.servers))
	for i, s := range c.servers {
		names[i] = s.name
	}
	return strings.Join(names, ", ")
}

// Close stops the queries in flight and lets the idle connections to the
// auth servers go.
func (a *Authorizer) Close() {
	if a == nil {
		return
	}
	a.cancel()
	a.client.Load().close()
}

// Read decides what req may read of the registry. It returns the State
// to filter the answer with; nil, nil when req reads everything: auth
// off, a request without a secret that passes an admin rule, or, when
// channels is true (the /channels route), a request without a secret from
// the address of a connected producer (an nsqd about to create a topic
// asks which channels to make). Otherwise it returns one of the Err
// values above, for the route to answer with, and sets the
// WWW-Authenticate header of a 401.
func (a *Authorizer) Read(w http.ResponseWriter, req *http.Request, channels bool) (*State, error) {
	if a == nil {
		return nil, nil
	}
	h := req.Header.Get("Authorization")
	if len(h) <= len("Bearer ") || !strings.EqualFold(h[:len("Bearer ")], "Bearer ") {
		switch {
		case a.admin != nil && a.admin(req):
			a.m.answers[answerAdmin].Inc()
			return nil, nil
		case channels && a.peers.has(remoteIP(req)):
			a.m.answers[answerProducer].Inc()
			return nil, nil
		}
		w.Header().Set("WWW-Authenticate", `Bearer realm="nsqlookupd"`)
		a.m.answers[answerRequired].Inc()
		return nil, ErrAuthRequired
	}
	st, err := a.check(req, h[len("Bearer "):])
	switch err {
	case nil:
		a.m.answers[answerFiltered].Inc()
	case ErrAuthFailed:
		w.Header().Set("WWW-Authenticate", `Bearer realm="nsqlookupd", error="invalid_token"`)
		a.m.answers[answerFailed].Inc()
	case ErrAuthRateLimited:
		w.Header().Set("Retry-After", "2")
		a.m.answers[answerRateLimited].Inc()
	default:
		a.m.answers[answerUnavailable].Inc()
	}
	return st, err
}

// remoteIP returns the address of req's peer without its port, as
// net.SplitHostPort would of the "ip:port" or "[ip]:port" net/http sets.
func remoteIP(req *http.Request) string {
	host := req.RemoteAddr
	if i := strings.LastIndexByte(host, ':'); i >= 0 {
		host = host[:i]
	}
	if len(host) > 1 && host[0] == '[' && host[len(host)-1] == ']' {
		host = host[1 : len(host)-1]
	}
	return host
}

// check returns the state of secret for req: from the cache, else from
// one query shared by the concurrent requests with the same key.
func (a *Authorizer) check(req *http.Request, secret string) (*State, error) {
	if len(secret) > maxSecret {
		return nil, ErrAuthFailed
	}
	p := params{remoteIP: remoteIP(req), tls: req.TLS != nil}
	if req.TLS != nil && len(req.TLS.VerifiedChains) > 0 {
		p.commonName = req.TLS.VerifiedChains[0][0].Subject.CommonName
	}
	k := keyOf(secret, p)
	now := a.now()
	st, refused := a.cache.get(k, now)
	switch {
	case st != nil:
		return st, nil
	case refused:
		return nil, ErrAuthFailed
	}
	src := sourceOf(p.remoteIP)
	if a.cache.overBudget(src, now) {
		return nil, ErrAuthRateLimited
	}
	timeout := time.Duration(a.timeout.Load())
	miss := k // the closure's own copy: k stays on the stack of a hit
	ch := a.flight.DoChan(string(miss[:]), func() (any, error) {
		return a.query(miss, secret, p, src, timeout), nil
	})
	timer := time.NewTimer(timeout)
	defer timer.Stop()
	select {
	case r := <-ch:
		q := r.Val.(queried)
		switch q.result {
		case resultOK:
			return q.state, nil
		case resultRefused:
			return nil, ErrAuthFailed
		case resultLimited:
			return nil, ErrAuthRateLimited
		}
	case <-timer.C:
	case <-req.Context().Done():
	}
	return nil, ErrAuthUnavailable
}

// queried is the outcome of one query.
type queried struct {
	state  *State
	result int
}

// query asks the auth servers about secret and caches what they answer.
// It waits for a slot among maxInFlight at most timeout.
func (a *Authorizer) query(k key, secret string, p params, src netip.Prefix, timeout time.Duration) queried {
	// A request that missed the cache just before the last query for k
	// stored its answer, and asked after that query had ended, finds it now.
	if st, refused := a.cache.get(k, a.now()); st != nil {
		return queried{state: st, result: resultOK}
	} else if refused {
		return queried{result: resultRefused}
	}
	wait := time.NewTimer(timeout)
	defer wait.Stop()
	select {
	case a.slots <- struct{}{}:
		defer func() { <-a.slots }()
	case <-wait.C:
		a.m.queries[resultFailed].Inc()
		return queried{result: resultFailed}
	case <-a.ctx.Done():
		return queried{result: resultFailed}
	}
	if !a.cache.take(src, a.now()) {
		return queried{result: resultLimited}
	}
	start := time.Now()
	st, result := a.client.Load().queryAny(a.ctx, secret, p, a.now, a.logFailure)
	a.m.duration.Observe(time.Since(start).Seconds())
	a.m.queries[result].Inc()
	now := a.now()
	switch result {
	case resultOK:
		a.cache.putAllowed(k, st, now)
	case resultRefused:
		until := now.Add(refusedTTL)
		if st != nil && st.Expires.Before(until) {
			until = st.Expires
		}
		a.cache.putRefused(k, until, now)
	}
	if result != resultRefused {
		a.cache.refund(src, now)
	}
	return queried{state: st, result: result}
}

// logFailure logs that s failed, at most once per failureLogInterval per
// server, with the number of failures not logged since the last line.
// The error has been scrubbed of the secret.
func (a *Authorizer) logFailure(s server, err error) {
	if a.ctx.Err() != nil {
		return // closing: queries were cancelled
	}
	now := a.now()
	a.failMu.Lock()
	f := a.failures[s.name]
	if f == nil {
		f = &failures{}
		a.failures[s.name] = f
	}
	if !f.logged.IsZero() && now.Sub(f.logged) < failureLogInterval {
		f.skipped++
		a.failMu.Unlock()
		return
	}
	skipped := f.skipped
	f.logged, f.skipped = now, 0
	a.failMu.Unlock()
	more := ""
	if skipped > 0 {
		more = fmt.Sprintf(" (and %d failures not logged since the last line)", skipped)
	}
	a.logf(lg.WARN, "AUTH: failed to auth against %s - %s%s; logged at most once a minute per server", s.name, err, more)
}

// ProducerUp records that a producer identified itself over the
// registration connection from addr (host:port).
func (a *Authorizer) ProducerUp(addr string) {
	if a != nil {
		a.peers.add(addr, 1)
	}
}

// ProducerDown records that the identified registration connection from
// addr has closed.
func (a *Authorizer) ProducerDown(addr string) {
	if a != nil {
		a.peers.add(addr, -1)
	}
}

// peers counts the identified registration connections by peer address.
type peers struct {
	mu sync.Mutex
	n  map[netip.Addr]int
}

func (p *peers) add(addr string, delta int) {
	ap, err := netip.ParseAddrPort(addr)
	if err != nil {
		return
	}
	ip := ap.Addr().Unmap().WithZone("")
	p.mu.Lock()
	defer p.mu.Unlock()
	if p.n[ip] += delta; p.n[ip] <= 0 {
		delete(p.n, ip)
	}
}

func (p *peers) has(ip string) bool {
	addr, err := netip.ParseAddr(ip)
	if err != nil {
		return false
	}
	p.mu.Lock()
	defer p.mu.Unlock()
	return p.n[addr.Unmap().WithZone("")] > 0
}

// Metrics returns the auth series, for the daemon's /metrics.
func (a *Authorizer) Metrics() prometheus.Collector {
	return a.m.all
}
