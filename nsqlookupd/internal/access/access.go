// Package access holds nsqlookupd's access rules, all off by default
// (README, "Access control"): which sources may register over TCP
// (--tcp-allow), which may use the admin routes and /debug/pprof
// (--http-admin-allow), and, on the HTTPS port, which client certificates
// those routes need (--http-admin-require-client-cert,
// --http-admin-client-allowed-san).
//
// The rules are parsed once into prefixes (net/netip) and checked against
// a connection's peer address: at accept for TCP, before a byte is read;
// per request for the admin routes only. Reads never pass through here, so
// /lookup and REGISTER cost what they cost without rules. The source is
// always the peer address; no header, X-Forwarded-For included, is read.
//
// A Guard counts what it refuses in nsqlookupd_access_refusals_total and
// logs refused registration connections as refusalLog allows. Its rules
// are one immutable value that Reload replaces whole (docs/logging.md,
// Reload): a check reads one set of rules, old or new, never a mix.
package access

import (
	"fmt"
	"net"
	"net/http"
	"net/netip"
	"strings"
	"sync/atomic"
	"time"

	"github.com/julienschmidt/httprouter"
	"github.com/prometheus/client_golang/prometheus"

	"github.com/lookupd/nsqlookupd/internal/http_api"
	"github.com/lookupd/nsqlookupd/internal/lg"
)

// Config is the access rules as the options give them.
type Config struct {
	// TCPAllow lists the networks (CIDRs such as 10.0.0.0/8, or single
	// addresses) that may open a registration connection. One from any
	// other source is reset as it is accepted, counted (reason
	// tcp_source) and logged at most once a minute per source. Empty: any
	// source.
	TCPAllow []string
	// AdminAllow lists the networks that may use the admin routes (the
	// POSTs that change the registry) and /debug/pprof. From any other
	// source they answer 403 {"message":"FORBIDDEN"} and change nothing;
	// reads stay open. Empty: any source.
	AdminAllow []string
	// RequireClientCert makes the admin routes need a client certificate
	// verified against the root CA, while reads need none: over HTTPS a
	// request without one answers 403 {"message":"CLIENT_CERT_REQUIRED"};
	// on the plain port, where none can be given, the TLSRequired answer
	// of New, which nsqadmin follows.
	RequireClientCert bool
	// ClientSANs, when not empty, narrows RequireClientCert to
	// certificates carrying one of these subject alternative names (DNS
	// name, email address, IP address or URI), compared exactly, as
	// Prometheus exporter-toolkit's client_allowed_sans; the subject's
	// common name is not read. Any other certificate gets 403
	// {"message":"CLIENT_CERT_NOT_ALLOWED"}.
	ClientSANs []string

	// AdminRuleRequired (auth is on: docs/authorization.md) makes the
	// admin routes, /debug/pprof and /debug need an explicit rule above:
	// without one, they are refused to every source.
	AdminRuleRequired bool

	// What RequireClientCert needs of the HTTPS options: an HTTPS
	// address, a root CA, and a client auth policy that verifies.
	HTTPS, RootCA    bool
	ClientAuthPolicy string
}

// Validate reports the first rule that cannot work: a malformed or empty
// item, or a certificate rule without the HTTPS options it needs. Its
// errors name the command-line flags.
func (c Config) Validate() error {
	if _, err := parseAllowlist("tcp-allow", c.TCPAllow); err != nil {
		return err
	}
	if _, err := parseAllowlist("http-admin-allow", c.AdminAllow); err != nil {
		return err
	}
	if _, err := parseSANs(c.ClientSANs); err != nil {
		return err
	}
	if len(c.ClientSANs) > 0 && !c.RequireClientCert {
		return fmt.Errorf("--http-admin-client-allowed-san needs --http-admin-require-client-cert")
	}
	if !c.RequireClientCert {
		return nil
	}
	switch {
	case !c.HTTPS && !c.RootCA:
		return fmt.Errorf("--http-admin-require-client-cert needs --https-address and --tls-root-ca-file")
	case !c.HTTPS:
		return fmt.Errorf("--http-admin-require-client-cert needs --https-address")
	case !c.RootCA:
		return fmt.Errorf("--http-admin-require-client-cert needs --tls-root-ca-file")
	case c.ClientAuthPolicy == "require":
		return fmt.Errorf("--http-admin-require-client-cert needs certificates verified: --tls-client-auth-policy empty or require-verify, not require")
	}
	return nil
}

// Reasons for a refusal, the label values of
// nsqlookupd_access_refusals_total.
const (
	refusedTCPSource  = iota // a registration connection from outside --tcp-allow
	refusedHTTPSource        // an admin request from outside --http-admin-allow
	refusedClientCert        // an admin request without a verified client certificate
	refusedClientSAN         // a verified certificate with none of the allowed SANs
	numRefusals
)

var refusalNames = [numRefusals]string{"tcp_source", "http_source", "client_cert", "client_san"}

// The messages of the 403 answers, in v1.3.0's error style.
var refusalTexts = [numRefusals]string{
	refusedHTTPSource: "FORBIDDEN",
	refusedClientCert: "CLIENT_CERT_REQUIRED",
	refusedClientSAN:  "CLIENT_CERT_NOT_ALLOWED",
}

// errRefused is what an admin route's guard returns for its 403, so the
// route's counts see the status.
var errRefused = http_api.Err{Code: http.StatusForbidden, Text: "FORBIDDEN"}

// rules are a Config parsed.
type rules struct {
	tcp   allowlist // nil: any source may register
	admin allowlist // nil: any source may use the admin routes
	// requireCert: the admin routes need a verified client certificate,
	// with one of sans when sans is not empty.
	requireCert bool
	sans        []string
	// closed: no admin rule, yet one is required: every admin request is
	// refused.
	closed bool
}

// parse returns the rules of c, which has passed Validate.
func parse(c Config) *rules {
	r := &rules{requireCert: c.RequireClientCert}
	r.tcp, _ = parseAllowlist("tcp-allow", c.TCPAllow)
	r.admin, _ = parseAllowlist("http-admin-allow", c.AdminAllow)
	r.sans, _ = parseSANs(c.ClientSANs)
	r.closed = c.AdminRuleRequired && r.admin == nil && !r.requireCert
	return r
}

// Guard holds the rules in force and counts what they refuse.
type Guard struct {
	rules atomic.Pointer[rules]

	refusals  *prometheus.CounterVec
	refusedBy [numRefusals]prometheus.Counter
	// answers[reason] answers 403 with refusalTexts[reason], logged;
	// tlsRequired answers the plain port's admin requests that need a
	// certificate.
	answers     [numRefusals]http.Handler
	tlsRequired http.Handler
	log         *lg.Log
	now         func() time.Time
	tcpLog      refusalLog
}

// New makes the Guard of c, which has passed Validate, and logs the rules
// in force, if any. tlsRequired answers an admin request on the plain port
// when a certificate is required (nil: CLIENT_CERT_REQUIRED there too);
// now tells the time for the refusal log.
func New(c Config, tlsRequired http.Handler, log *lg.Log, now func() time.Time) *Guard {
	g := &Guard{tlsRequired: tlsRequired, log: log, now: now}
	g.rules.Store(parse(c))

	g.refusals = prometheus.NewCounterVec(prometheus.CounterOpts{
		Name: "nsqlookupd_access_refusals_total",
		Help: "Connections and requests refused by the access rules, by reason: tcp_source (not in --tcp-allow), " +
			"http_source (not in --http-admin-allow), client_cert (no verified client certificate), client_san (no allowed SAN).",
	}, []string{"reason"})
	for r := range g.refusedBy {
		g.refusedBy[r] = g.refusals.WithLabelValues(refusalNames[r])
	}
	for r, text := range refusalTexts {
		if text != "" {
			g.answers[r] = refusalAnswer(text, log)
		}
	}
	if rules := g.String(); rules != "" {
		log.Logf(lg.INFO, "ACCESS: %s", rules)
	}
	return g
}

// Reload puts the rules of c in force, from the next check on, and logs
// them if they changed; c must pass Validate. Connections already open are
// the caller's to close (Refuses).
func (g *Guard) Reload(c Config) error {
	if err := c.Validate(); err != nil {
		return err
	}
	before := g.String()
	g.rules.Store(parse(c))
	if after := g.String(); after != before {
		if after == "" {
			after = "no rules: any source may register and use the admin routes"
		}
		g.log.Logf(lg.INFO, "ACCESS: %s", after)
	}
	return nil
}

// Refuses reports whether the rules in force refuse registrations from
// addr, a connection's peer; nothing is counted or logged.
func (g *Guard) Refuses(addr net.Addr) bool {
	tcp := g.rules.Load().tcp
	return tcp != nil && !tcp.contains(peerAddr(addr).Unmap())
}

// Metrics returns the refusal counter, for the daemon's /metrics.
func (g *Guard) Metrics() prometheus.Collector {
	return g.refusals
}

// String describes the rules in force, "" when there are none.
func (g *Guard) String() string {
	r := g.rules.Load()
	if r.tcp == nil && !r.guardsHTTP() {
		return ""
	}
	tcp := "registrations from any source"
	if r.tcp != nil {
		tcp = "registrations only from " + r.tcp.String()
	}
	admin := "admin routes and /debug/pprof from any source"
	if r.closed {
		admin = "admin routes and /debug/pprof refused: auth is on and there is no admin rule"
	}
	if r.admin != nil {
		admin = "admin routes and /debug/pprof only from " + r.admin.String()
	}
	if r.requireCert {
		admin += ", over HTTPS with a verified client certificate"
		if len(r.sans) > 0 {
			admin += " carrying a SAN of " + strings.Join(r.sans, ", ")
		}
	}
	return tcp + "; " + admin
}

// GuardsHTTP reports whether any rule in force applies to the admin
// routes.
func (g *Guard) GuardsHTTP() bool {
	return g.rules.Load().guardsHTTP()
}

func (r *rules) guardsHTTP() bool {
	return r.admin != nil || r.requireCert || r.closed
}

// Admits reports whether req passes an explicit admin rule: false when
// there is none.
func (g *Guard) Admits(req *http.Request) bool {
	r := g.rules.Load()
	return (r.admin != nil || r.requireCert) && r.check(req) < 0
}

// AllowTCP reports whether conn, a registration connection just accepted,
// may be served. A refused one is counted, logged as refusalLog allows,
// and set to be reset when the caller closes it: the peer gets an RST and
// this side keeps no TIME_WAIT for it.
func (g *Guard) AllowTCP(conn net.Conn) bool {
	tcp := g.rules.Load().tcp
	if tcp == nil {
		return true
	}
	addr := peerAddr(conn.RemoteAddr()).Unmap()
	if tcp.contains(addr) {
		return true
	}
	g.refusedBy[refusedTCPSource].Inc()
	if tc, ok := conn.(*net.TCPConn); ok {
		tc.SetLinger(0)
	}
	switch g.tcpLog.note(addr, g.now()) {
	case logRefusal:
		g.log.Eventf(lg.WARN, lg.Keys{"remote_address", "reason"}, "TCP: refused client(%s): %s (logged once a minute per source)",
			conn.RemoteAddr(), "not in --tcp-allow")
	case logOverflow:
		g.log.Logf(lg.WARN, "TCP: refused clients from more than %d sources within a minute: the others are not logged, only counted in nsqlookupd_access_refusals_total", maxLoggedSources)
	}
	return false
}

// peerAddr returns the IP address of a connection's peer; the zero Addr,
// which no rule contains, if it has none.
func peerAddr(a net.Addr) netip.Addr {
	if ta, ok := a.(*net.TCPAddr); ok {
		return ta.AddrPort().Addr()
	}
	ap, _ := netip.ParseAddrPort(a.String())
	return ap.Addr()
}

// check returns the reason the admin request req is refused, or -1 if it
// may pass. The source is the connection's peer (req.RemoteAddr, set by
// net/http).
func (r *rules) check(req *http.Request) int {
	if r.closed {
		return refusedHTTPSource
	}
	if r.admin != nil {
		ap, _ := netip.ParseAddrPort(req.RemoteAddr)
		if !r.admin.contains(ap.Addr()) {
			return refusedHTTPSource
		}
	}
	if r.requireCert {
		if req.TLS == nil || len(req.TLS.VerifiedChains) == 0 {
			return refusedClientCert
		}
		if len(r.sans) > 0 && !r.sanAllowed(req) {
			return refusedClientSAN
		}
	}
	return -1
}

// sanAllowed reports whether the verified client certificate of req
// carries one of the allowed SANs, compared exactly: its DNS names, email
// addresses, IP addresses and URIs. The subject's common name is not read
// (Go has ignored it for host names since 1.15).
func (r *rules) sanAllowed(req *http.Request) bool {
	cert := req.TLS.VerifiedChains[0][0]
	var have []string
	have = append(have, cert.DNSNames...)
	have = append(have, cert.EmailAddresses...)
	for _, ip := range cert.IPAddresses {
		if addr, ok := netip.AddrFromSlice(ip); ok {
			have = append(have, addr.Unmap().String())
		}
	}
	for _, u := range cert.URIs {
		have = append(have, u.String())
	}
	for _, s := range have {
		for _, allowed := range r.sans {
			if s == allowed {
				return true
			}
		}
	}
	return false
}

// refusal counts and returns the answer refusing req, or nil if req may
// pass. An admin request on the plain port that needs a certificate gets
// the TLSRequired answer: nsqadmin then sends it again over HTTPS, with
// its certificate.
func (g *Guard) refusal(req *http.Request) http.Handler {
	reason := g.rules.Load().check(req)
	if reason < 0 {
		return nil
	}
	g.refusedBy[reason].Inc()
	if reason == refusedClientCert && req.TLS == nil && g.tlsRequired != nil {
		return g.tlsRequired
	}
	return g.answers[reason]
}

// API is the decorator of an admin API route, put outside the access log
// and V1 decorators (its answer is not theirs to write): a refused request
// gets the refusal's answer and the handler never runs.
func (g *Guard) API(f http_api.APIHandler) http_api.APIHandler {
	return func(w http.ResponseWriter, req *http.Request, ps httprouter.Params) (interface{}, error) {
		if h := g.refusal(req); h != nil {
			h.ServeHTTP(w, req)
			return nil, errRefused
		}
		return f(w, req, ps)
	}
}

// Handler wraps a /debug/pprof handler as API does an API route.
func (g *Guard) Handler(h http.Handler) http.Handler {
	return http.HandlerFunc(func(w http.ResponseWriter, req *http.Request) {
		if r := g.refusal(req); r != nil {
			r.ServeHTTP(w, req)
			return
		}
		h.ServeHTTP(w, req)
	})
}

// refusalAnswer answers 403 {"message":"<text>"} and logs the access line,
// as any API answer.
func refusalAnswer(text string, log *lg.Log) http.Handler {
	err := http_api.Err{Code: http.StatusForbidden, Text: text}
	h := http_api.Decorate(func(http.ResponseWriter, *http.Request, httprouter.Params) (interface{}, error) {
		return nil, err
	}, http_api.Log(log), http_api.V1)
	return http.HandlerFunc(func(w http.ResponseWriter, req *http.Request) { h(w, req, nil) })
}
