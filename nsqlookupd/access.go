package nsqlookupd

// Access control, all off by default (README, "Access control"): which
// sources may register over TCP (--tcp-allow), which may use the admin
// routes and /debug/pprof (--http-admin-allow), and, on the HTTPS port,
// which client certificates those routes need
// (--http-admin-require-client-cert, --http-admin-client-allowed-san).
//
// The rules are parsed once, in New, into prefixes (net/netip) checked
// against the connection's peer address: at accept for TCP, before a byte
// is read; per request for the admin routes only. Reads never pass through
// here, so /lookup and REGISTER cost what they cost without rules.

import (
	"fmt"
	"net"
	"net/http"
	"net/netip"
	"strings"
	"sync"
	"time"

	"github.com/julienschmidt/httprouter"
	"github.com/prometheus/client_golang/prometheus"

	"github.com/lookupd/nsqlookupd/internal/http_api"
	"github.com/lookupd/nsqlookupd/internal/lg"
)

const (
	// refusalLogInterval is how often one source's refused registration
	// connections may be logged: a scanner retrying every millisecond
	// costs one line a minute.
	refusalLogInterval = time.Minute
	// maxRefusalLogSources bounds the sources remembered as logged within
	// the interval: a sweep from more addresses than this (an IPv6 /64
	// holds 2^64) costs at most this many lines a minute, plus one saying
	// the rest are only counted, and a map this small.
	maxRefusalLogSources = 256
)

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

// The messages of the 403 answers, in v1.3.0's error style. An admin
// request on the plain port that needs a certificate gets TLS_REQUIRED
// instead (see access.refusal).
var refusalTexts = [numRefusals]string{
	refusedHTTPSource: "FORBIDDEN",
	refusedClientCert: "CLIENT_CERT_REQUIRED",
	refusedClientSAN:  "CLIENT_CERT_NOT_ALLOWED",
}

// errRefused is what an admin route's guard returns for its 403, so the
// route's counts see the status.
var errRefused = http_api.Err{Code: http.StatusForbidden, Text: "FORBIDDEN"}

// allowlist is a parsed --tcp-allow or --http-admin-allow; nil allows every
// source.
type allowlist []netip.Prefix

// contains reports whether addr is in one of the prefixes. An IPv4 peer of
// a dual-stack listener comes as ::ffff:a.b.c.d, and a link-local one with
// its zone: both are matched as the plain address.
func (a allowlist) contains(addr netip.Addr) bool {
	addr = addr.Unmap().WithZone("")
	for _, p := range a {
		if p.Contains(addr) {
			return true
		}
	}
	return false
}

// String lists the prefixes, a single address without its /32 or /128.
func (a allowlist) String() string {
	s := make([]string, len(a))
	for i, p := range a {
		if p.IsSingleIP() {
			s[i] = p.Addr().String()
		} else {
			s[i] = p.String()
		}
	}
	return strings.Join(s, ", ")
}

// parseAllowlist parses the items of the list option flag: each a CIDR
// (10.0.0.0/8, fd00::/8) or an address (one host). An empty list is nil:
// no rule. An empty item, a malformed one, a CIDR with bits set past its
// length (10.0.0.1/8: which was meant?) or an address with a zone is an
// error naming the option and the item.
func parseAllowlist(flag string, items []string) (allowlist, error) {
	if len(items) == 0 {
		return nil, nil
	}
	list := make(allowlist, 0, len(items))
	for _, item := range items {
		s := strings.TrimSpace(item)
		if s == "" {
			return nil, fmt.Errorf("--%s: empty item in %q", flag, strings.Join(items, ","))
		}
		if !strings.Contains(s, "/") {
			addr, err := netip.ParseAddr(s)
			if err != nil {
				return nil, fmt.Errorf("--%s: %q is neither an address nor a CIDR - %w", flag, s, err)
			}
			if addr.Zone() != "" {
				return nil, fmt.Errorf("--%s: %q has a zone; give the address alone", flag, s)
			}
			addr = addr.Unmap()
			list = append(list, netip.PrefixFrom(addr, addr.BitLen()))
			continue
		}
		p, err := netip.ParsePrefix(s)
		if err != nil {
			return nil, fmt.Errorf("--%s: %q is neither an address nor a CIDR - %w", flag, s, err)
		}
		if m := p.Masked(); m != p {
			return nil, fmt.Errorf("--%s: %q has bits set past its length: the network is %s, the address alone %s",
				flag, s, m, netip.PrefixFrom(p.Addr(), p.Addr().BitLen()))
		}
		if p.Addr().Is4In6() && p.Bits() >= 96 { // ::ffff:10.0.0.0/104 is 10.0.0.0/8
			p = netip.PrefixFrom(p.Addr().Unmap(), p.Bits()-96)
		}
		list = append(list, p)
	}
	return list, nil
}

// parseSANs checks the --http-admin-client-allowed-san items and returns
// them as compared: an IP address in its canonical form, anything else
// (a DNS name, an email address, a URI) as given.
func parseSANs(items []string) ([]string, error) {
	sans := make([]string, 0, len(items))
	for _, item := range items {
		s := strings.TrimSpace(item)
		if s == "" {
			return nil, fmt.Errorf("--http-admin-client-allowed-san: empty item in %q", strings.Join(items, ","))
		}
		if addr, err := netip.ParseAddr(s); err == nil {
			s = addr.Unmap().String()
		}
		sans = append(sans, s)
	}
	return sans, nil
}

// validateAccess reports the first access option that cannot work: a
// malformed or empty item, or a certificate option without the HTTPS
// options it needs.
func (o *Options) validateAccess() error {
	if _, err := parseAllowlist("tcp-allow", o.TCPAllow); err != nil {
		return err
	}
	if _, err := parseAllowlist("http-admin-allow", o.HTTPAdminAllow); err != nil {
		return err
	}
	if _, err := parseSANs(o.HTTPAdminClientAllowedSANs); err != nil {
		return err
	}
	if len(o.HTTPAdminClientAllowedSANs) > 0 && !o.HTTPAdminRequireClientCert {
		return fmt.Errorf("--http-admin-client-allowed-san needs --http-admin-require-client-cert")
	}
	if !o.HTTPAdminRequireClientCert {
		return nil
	}
	switch {
	case o.HTTPSAddress == "" && o.TLSRootCAFile == "":
		return fmt.Errorf("--http-admin-require-client-cert needs --https-address and --tls-root-ca-file")
	case o.HTTPSAddress == "":
		return fmt.Errorf("--http-admin-require-client-cert needs --https-address")
	case o.TLSRootCAFile == "":
		return fmt.Errorf("--http-admin-require-client-cert needs --tls-root-ca-file")
	case o.TLSClientAuthPolicy == "require":
		return fmt.Errorf("--http-admin-require-client-cert needs certificates verified: --tls-client-auth-policy empty or require-verify, not require")
	}
	return nil
}

// access holds the rules in force and counts what they refuse. Its methods
// are safe on a nil *access (no rules), for tests that build a daemon by
// hand.
type access struct {
	l *NSQLookupd

	tcp   allowlist // nil: any source may register
	admin allowlist // nil: any source may use the admin routes
	// requireCert: the admin routes need a verified client certificate,
	// with one of sans when sans is not empty.
	requireCert bool
	sans        []string

	refusals [numRefusals]prometheus.Counter
	// answers[reason] answers 403 with refusalTexts[reason], logged;
	// tlsRequired answers the plain port's admin requests that need a
	// certificate (nil without requireCert).
	answers     [numRefusals]http.Handler
	tlsRequired http.Handler
	tcpLog      refusalLog
}

// newAccess parses l's rules (Validate has checked them), registers the
// refusal counter on l's metrics and logs the rules in force, if any.
func newAccess(l *NSQLookupd) *access {
	o := l.opts
	a := &access{l: l, requireCert: o.HTTPAdminRequireClientCert}
	a.tcp, _ = parseAllowlist("tcp-allow", o.TCPAllow)
	a.admin, _ = parseAllowlist("http-admin-allow", o.HTTPAdminAllow)
	a.sans, _ = parseSANs(o.HTTPAdminClientAllowedSANs)

	refusals := prometheus.NewCounterVec(prometheus.CounterOpts{
		Name: "nsqlookupd_access_refusals_total",
		Help: "Connections and requests refused by the access rules, by reason: tcp_source (not in --tcp-allow), " +
			"http_source (not in --http-admin-allow), client_cert (no verified client certificate), client_san (no allowed SAN).",
	}, []string{"reason"})
	for r := range a.refusals {
		a.refusals[r] = refusals.WithLabelValues(refusalNames[r])
	}
	if l.metrics != nil {
		l.metrics.registry.MustRegister(refusals)
	}
	for r, text := range refusalTexts {
		if text != "" {
			a.answers[r] = refusalAnswer(text, l.logf)
		}
	}
	if a.requireCert && l.httpsListener != nil {
		a.tlsRequired = tlsRequiredHandler(l.RealHTTPSAddr().Port, l.logf)
	}
	if rules := a.String(); rules != "" {
		l.logf(lg.INFO, "ACCESS: %s", rules)
	}
	return a
}

// String describes the rules in force, "" when there are none.
func (a *access) String() string {
	if a.tcp == nil && !a.guardsHTTP() {
		return ""
	}
	tcp := "registrations from any source"
	if a.tcp != nil {
		tcp = "registrations only from " + a.tcp.String()
	}
	admin := "admin routes and /debug/pprof from any source"
	if a.admin != nil {
		admin = "admin routes and /debug/pprof only from " + a.admin.String()
	}
	if a.requireCert {
		admin += ", over HTTPS with a verified client certificate"
		if len(a.sans) > 0 {
			admin += " carrying a SAN of " + strings.Join(a.sans, ", ")
		}
	}
	return tcp + "; " + admin
}

// guardsHTTP reports whether any rule applies to the admin routes.
func (a *access) guardsHTTP() bool {
	return a != nil && (a.admin != nil || a.requireCert)
}

// allowTCP reports whether conn, a registration connection just accepted,
// may be served. A refused one is counted, logged as refusalLog allows,
// and set to be reset when the caller closes it: the peer gets an RST and
// this side keeps no TIME_WAIT for it.
func (a *access) allowTCP(conn net.Conn) bool {
	if a == nil || a.tcp == nil {
		return true
	}
	addr := peerAddr(conn.RemoteAddr()).Unmap()
	if a.tcp.contains(addr) {
		return true
	}
	a.refusals[refusedTCPSource].Inc()
	if tc, ok := conn.(*net.TCPConn); ok {
		tc.SetLinger(0)
	}
	switch a.tcpLog.note(addr, a.l.clock.Now()) {
	case logRefusal:
		a.l.logf(lg.WARN, "TCP: refused client(%s): not in --tcp-allow (logged once a minute per source)", conn.RemoteAddr())
	case logOverflow:
		a.l.logf(lg.WARN, "TCP: refused clients from more than %d sources within a minute: the others are not logged, only counted in nsqlookupd_access_refusals_total", maxRefusalLogSources)
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
// net/http); no header such as X-Forwarded-For is read.
func (a *access) check(req *http.Request) int {
	if a.admin != nil {
		ap, _ := netip.ParseAddrPort(req.RemoteAddr)
		if !a.admin.contains(ap.Addr()) {
			return refusedHTTPSource
		}
	}
	if a.requireCert {
		if req.TLS == nil || len(req.TLS.VerifiedChains) == 0 {
			return refusedClientCert
		}
		if len(a.sans) > 0 && !a.sanAllowed(req) {
			return refusedClientSAN
		}
	}
	return -1
}

// sanAllowed reports whether the verified client certificate of req
// carries one of the allowed SANs, compared exactly, as Prometheus
// exporter-toolkit compares client_allowed_sans: its DNS names, email
// addresses, IP addresses and URIs. The subject's common name is not read
// (Go has ignored it for host names since 1.15).
func (a *access) sanAllowed(req *http.Request) bool {
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
		for _, allowed := range a.sans {
			if s == allowed {
				return true
			}
		}
	}
	return false
}

// refusal counts and returns the answer refusing req, or nil if req may
// pass. An admin request on the plain port that needs a certificate gets
// nsqd's TLS_REQUIRED with the HTTPS port: nsqadmin then sends it again
// over HTTPS, with its certificate.
func (a *access) refusal(req *http.Request) http.Handler {
	reason := a.check(req)
	if reason < 0 {
		return nil
	}
	a.refusals[reason].Inc()
	if reason == refusedClientCert && req.TLS == nil && a.tlsRequired != nil {
		return a.tlsRequired
	}
	return a.answers[reason]
}

// guardAPI is the decorator of an admin API route, put outside the access
// log and V1 decorators (its answer is not theirs to write): a refused
// request gets the refusal's answer and the handler never runs.
func (a *access) guardAPI(f http_api.APIHandler) http_api.APIHandler {
	return func(w http.ResponseWriter, req *http.Request, ps httprouter.Params) (interface{}, error) {
		if h := a.refusal(req); h != nil {
			h.ServeHTTP(w, req)
			return nil, errRefused
		}
		return f(w, req, ps)
	}
}

// guardHandler wraps a /debug/pprof handler as guardAPI does an API route.
func (a *access) guardHandler(h http.Handler) http.Handler {
	return http.HandlerFunc(func(w http.ResponseWriter, req *http.Request) {
		if r := a.refusal(req); r != nil {
			r.ServeHTTP(w, req)
			return
		}
		h.ServeHTTP(w, req)
	})
}

// refusalAnswer answers 403 {"message":"<text>"} and logs the access line,
// as any API answer.
func refusalAnswer(text string, logf lg.AppLogFunc) http.Handler {
	err := http_api.Err{Code: http.StatusForbidden, Text: text}
	h := http_api.Decorate(func(http.ResponseWriter, *http.Request, httprouter.Params) (interface{}, error) {
		return nil, err
	}, http_api.Log(logf), http_api.V1)
	return http.HandlerFunc(func(w http.ResponseWriter, req *http.Request) { h(w, req, nil) })
}

// adminAPI declares an admin route (a POST that changes the registry) as
// s.api does, behind the access rules when there are any; its 403 is then
// counted from start-up, as every answer a route can give.
func (s *httpServer) adminAPI(method, path string, f http_api.APIHandler, ds ...http_api.Decorator) {
	a := s.nsqlookupd.access
	if !a.guardsHTTP() {
		s.api(method, path, f, ds...)
		return
	}
	s.api(method, path, f, append(ds, a.guardAPI)...)
	s.nsqlookupd.metrics.expect(path, method, http.StatusForbidden)
}

// adminPlain declares a /debug/pprof route as s.plain does, behind the
// access rules when there are any.
func (s *httpServer) adminPlain(method, path string, h http.Handler) {
	a := s.nsqlookupd.access
	if a.guardsHTTP() {
		h = a.guardHandler(h)
		s.nsqlookupd.metrics.expect(path, method, http.StatusForbidden)
	}
	s.plain(method, path, h)
}

// What refusalLog.note decides for one refusal.
const (
	logNothing  = iota
	logRefusal  // log this refusal
	logOverflow // log that sources are too many to log each
)

// refusalLog decides which refused registration connections are logged:
// each source at most once per refusalLogInterval, and at most
// maxRefusalLogSources sources per interval, then one line saying the
// rest are only counted.
type refusalLog struct {
	mu         sync.Mutex
	logged     map[netip.Addr]time.Time // source -> when it was last logged
	overflowAt time.Time                // when the overflow line was last logged
}

// note records a refusal from addr at now and says what to log.
func (r *refusalLog) note(addr netip.Addr, now time.Time) int {
	r.mu.Lock()
	defer r.mu.Unlock()
	if r.logged == nil {
		r.logged = make(map[netip.Addr]time.Time)
	}
	if t, ok := r.logged[addr]; ok {
		if now.Sub(t) < refusalLogInterval {
			return logNothing
		}
	} else if len(r.logged) >= maxRefusalLogSources {
		for a, t := range r.logged {
			if now.Sub(t) >= refusalLogInterval {
				delete(r.logged, a)
			}
		}
		if len(r.logged) >= maxRefusalLogSources {
			if now.Sub(r.overflowAt) < refusalLogInterval {
				return logNothing
			}
			r.overflowAt = now
			return logOverflow
		}
	}
	r.logged[addr] = now
	return logRefusal
}
