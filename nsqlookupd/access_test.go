package nsqlookupd

import (
	"bufio"
	"crypto/tls"
	"crypto/x509"
	"errors"
	"fmt"
	"net"
	"net/http"
	"net/url"
	"regexp"
	"strings"
	"sync"
	"syscall"
	"testing"
	"time"

	"github.com/lookupd/nsqlookupd/internal/test"
)

// Access control over real sockets. Every 127/8 address is on the loopback
// interface, so a test connects from 127.0.0.2 as from another host.

// dialerFrom returns a dialer whose connections come from the address src.
func dialerFrom(src string) *net.Dialer {
	return &net.Dialer{Timeout: ioTimeout, LocalAddr: &net.TCPAddr{IP: net.ParseIP(src)}}
}

// tcpFrom is dialRaw from the address src.
func tcpFrom(tb testing.TB, l *NSQLookupd, src string) *tcpClient {
	tb.Helper()
	conn, err := dialerFrom(src).Dial("tcp", l.RealTCPAddr().String())
	if err != nil {
		tb.Fatalf("dial from %s: %s", src, err)
	}
	tb.Cleanup(func() { conn.Close() })
	return &tcpClient{tb: tb, conn: conn, r: bufio.NewReader(conn)}
}

// expectRefused connects from src and fails unless the daemon closes the
// connection unanswered: the reset may come before the dial returns.
func expectRefused(tb testing.TB, l *NSQLookupd, src string, send string) {
	tb.Helper()
	if err := refusedFrom(l, src, send); err != nil {
		tb.Fatal(err)
	}
}

// refusedFrom connects from src, sends send (which may fail: the reset can
// come first) and reports how the connection was not closed unanswered.
func refusedFrom(l *NSQLookupd, src string, send string) error {
	conn, err := dialerFrom(src).Dial("tcp", l.RealTCPAddr().String())
	if errors.Is(err, syscall.ECONNRESET) {
		return nil
	}
	if err != nil {
		return fmt.Errorf("dial from %s: %w", src, err)
	}
	defer conn.Close()
	if send != "" {
		conn.Write([]byte(send))
	}
	conn.SetReadDeadline(time.Now().Add(ioTimeout))
	n, err := conn.Read(make([]byte, 16))
	if ne, ok := err.(net.Error); n > 0 || err == nil || ok && ne.Timeout() {
		return fmt.Errorf("connection from %s: read %d bytes, %v; want it closed unanswered", src, n, err)
	}
	return nil
}

// clientFrom returns an HTTP client whose connections come from src, with
// cfg for TLS (nil: plain HTTP). It follows no redirect and opens a new
// connection, and handshake, for every request.
func clientFrom(src string, cfg *tls.Config) *http.Client {
	return &http.Client{
		Timeout: ioTimeout,
		Transport: &http.Transport{
			DialContext:       dialerFrom(src).DialContext,
			TLSClientConfig:   cfg,
			DisableKeepAlives: true,
		},
		CheckRedirect: func(*http.Request, []*http.Request) error { return http.ErrUseLastResponse },
	}
}

// mustDo is do, failing the test on a transport error.
func mustDo(tb testing.TB, client *http.Client, method, url string) (*http.Response, string) {
	tb.Helper()
	resp, body, err := do(client, method, url)
	if err != nil {
		tb.Fatalf("%s %s: %s", method, url, err)
	}
	return resp, body
}

// refusals is the key of an nsqlookupd_access_refusals_total series.
func refusals(reason string) string {
	return series("nsqlookupd_access_refusals_total", "reason", reason)
}

// adminRoutes are the routes behind --http-admin-allow: the five POSTs, in
// an order that answers each 200 from an allowed source, then every pprof
// route (profile and trace for their shortest time).
var adminRoutes = []struct{ method, path string }{
	{"POST", "/topic/create?topic=t_new"},
	{"POST", "/channel/create?topic=t_new&channel=c_new"},
	{"POST", "/channel/delete?topic=t_new&channel=c_new"},
	{"POST", "/topic/tombstone?topic=t_new&node=127.0.0.1:1"},
	{"POST", "/topic/delete?topic=t_new"},
	{"GET", "/debug/pprof"},
	{"GET", "/debug/pprof/"},
	{"GET", "/debug/pprof/cmdline"},
	{"GET", "/debug/pprof/symbol"},
	{"POST", "/debug/pprof/symbol"},
	{"GET", "/debug/pprof/profile?seconds=1"},
	{"GET", "/debug/pprof/trace?seconds=0.01"},
	{"GET", "/debug/pprof/allocs"},
	{"GET", "/debug/pprof/block"},
	{"GET", "/debug/pprof/goroutine"},
	{"GET", "/debug/pprof/heap"},
	{"GET", "/debug/pprof/mutex"},
	{"GET", "/debug/pprof/threadcreate"},
}

// readRoutes stay open to every source.
var readRoutes = []string{"/ping", "/info", "/lookup?topic=t_keep", "/topics", "/channels?topic=t_keep",
	"/nodes", "/debug", "/metrics"}

// routePattern returns the route label of path: path without its query.
func routePattern(path string) string {
	p, _, _ := strings.Cut(path, "?")
	return p
}

// TestTCPAllow: a producer from outside --tcp-allow is closed as it is
// accepted, before it sends a byte, and never listed, while one from
// inside registers; 127.0.0.2 refused and 127.0.0.1 allowed, then the
// reverse. Each refusal is counted, the first logged.
func TestTCPAllow(t *testing.T) {
	t.Parallel()
	for _, tt := range []struct{ allow, allowed, refused string }{
		{"127.0.0.1", "127.0.0.1", "127.0.0.2"},
		{"10.0.0.0/8,127.0.0.2/32", "127.0.0.2", "127.0.0.1"},
	} {
		t.Run("allow "+tt.allow, func(t *testing.T) {
			logs := newLogLines(t)
			l := startLookupd(t, func(o *Options) {
				o.Logger = logs
				o.TCPAllow = strings.Split(tt.allow, ",")
			})
			before := scrape(t, l)

			// refused with nothing sent: closed at accept
			expectRefused(t, l, tt.refused, "")

			p := tcpFrom(t, l, tt.allowed)
			p.write("  V1")
			if ans := p.identifyRaw(identifyJSON(4150, 4151)); ans[0] != '{' {
				t.Fatalf("IDENTIFY from %s: got %q", tt.allowed, ans)
			}
			p.mustOK("REGISTER orders archive")

			// a refused nsqd that sends its whole registration at once gets
			// no answer and is never listed
			var size [4]byte
			body := identifyJSON(5150, 5151)
			size[3] = byte(len(body))
			expectRefused(t, l, tt.refused, "  V1IDENTIFY\n"+string(size[:])+body+"REGISTER orders evil\n")

			var nodes struct {
				Producers []struct {
					RemoteAddress string `json:"remote_address"`
				} `json:"producers"`
			}
			getJSON(t, l, "/nodes", &nodes)
			if len(nodes.Producers) != 1 || !strings.HasPrefix(nodes.Producers[0].RemoteAddress, tt.allowed+":") {
				t.Fatalf("/nodes: got %+v; want the producer from %s alone", nodes.Producers, tt.allowed)
			}
			var channels struct{ Channels []string }
			getJSON(t, l, "/channels?topic=orders", &channels)
			if strings.Join(channels.Channels, ",") != "archive" {
				t.Fatalf("/channels?topic=orders: got %q; want [archive]", channels.Channels)
			}

			after := scrape(t, l)
			if got := after.get(t, refusals("tcp_source")) - before.get(t, refusals("tcp_source")); got != 2 {
				t.Errorf("refusals tcp_source: got +%v; want +2", got)
			}
			if got := after.get(t, "nsqlookupd_tcp_connections_total") - before.get(t, "nsqlookupd_tcp_connections_total"); got != 1 {
				t.Errorf("tcp_connections_total: got +%v; want +1 (refused connections are not served)", got)
			}
			refusedLine := regexp.MustCompile(`WARNING: TCP: refused client\(` + regexp.QuoteMeta(tt.refused) + `:\d+\): not in --tcp-allow`)
			if got := logs.matching(refusedLine); len(got) != 1 {
				t.Errorf("refusal lines: got %q; want one (the second refusal within a minute is not logged)", got)
			}
			if got := logs.matching(regexp.MustCompile(`client\(` + regexp.QuoteMeta(tt.refused) + `:\d+\)`)); len(got) != 1 {
				t.Errorf("lines naming the refused client: got %q; want its refusal alone", got)
			}
		})
	}
}

// startAdminCluster starts a daemon with --http-admin-allow allow, on HTTP
// and HTTPS, and a producer of t_keep/c_keep (HTTP port 4151); more
// changes the options further when not nil.
func startAdminCluster(t *testing.T, f *tlsFiles, logs *logLines, allow string, more func(*Options)) *NSQLookupd {
	t.Helper()
	l := startLookupd(t, f.withHTTPS(func(o *Options) {
		o.Logger = logs
		if allow != "" {
			o.HTTPAdminAllow = []string{allow}
		}
		if more != nil {
			more(o)
		}
	}))
	p := connectProducer(t, l, 4150, 4151)
	p.mustOK("REGISTER t_keep c_keep")
	return l
}

// checkUnchanged fails unless the registry holds t_keep/c_keep with its
// producer not tombstoned, and nothing else.
func checkUnchanged(t *testing.T, l *NSQLookupd) {
	t.Helper()
	var topics struct{ Topics []string }
	getJSON(t, l, "/topics", &topics)
	var lookup struct {
		Channels  []string
		Producers []struct{}
	}
	getJSON(t, l, "/lookup?topic=t_keep", &lookup)
	if strings.Join(topics.Topics, ",") != "t_keep" || strings.Join(lookup.Channels, ",") != "c_keep" || len(lookup.Producers) != 1 {
		t.Fatalf("after refused requests: /topics %q, /lookup?topic=t_keep %+v; want t_keep/c_keep with its producer", topics.Topics, lookup)
	}
}

// TestHTTPAdminAllow sends each admin route and each pprof route, on the
// HTTP and the HTTPS port, from a source outside --http-admin-allow (403
// FORBIDDEN, access-logged, counted, nothing changed) and from one inside
// (served), with 127.0.0.1 and 127.0.0.2 in each role. Reads stay open,
// and X-Forwarded-For changes nothing.
func TestHTTPAdminAllow(t *testing.T) {
	t.Parallel()
	f := newTLSFiles(t)
	for _, tt := range []struct {
		port             string
		allowed, refused string
		allow            string
		tls              bool
	}{
		{"HTTP", "127.0.0.1", "127.0.0.2", "127.0.0.1", false},
		{"HTTP", "127.0.0.2", "127.0.0.1", "127.0.0.2/31", false},
		{"HTTPS", "127.0.0.1", "127.0.0.2", "127.0.0.1", true},
		{"HTTPS", "127.0.0.2", "127.0.0.1", "127.0.0.2/31", true},
	} {
		t.Run(fmt.Sprintf("%s allow %s", tt.port, tt.allow), func(t *testing.T) {
			t.Parallel()
			logs := newLogLines(t)
			l := startAdminCluster(t, f, logs, tt.allow, nil)
			base, cfg := "http://"+l.RealHTTPAddr().String(), (*tls.Config)(nil)
			if tt.tls {
				base, cfg = "https://"+l.RealHTTPSAddr().String(), &tls.Config{RootCAs: f.ca.Pool}
			}
			refused, allowed := clientFrom(tt.refused, cfg), clientFrom(tt.allowed, cfg)
			before := scrape(t, l)

			for _, r := range adminRoutes {
				resp, body := mustDo(t, refused, r.method, base+r.path)
				if resp.StatusCode != http.StatusForbidden || body != `{"message":"FORBIDDEN"}` ||
					resp.Header.Get("Content-Type") != "application/json; charset=utf-8" ||
					resp.Header.Get("X-NSQ-Content-Type") != "nsq; version=1.0" {
					t.Errorf("%s %s from %s: got %d %q %v; want 403 {\"message\":\"FORBIDDEN\"} with both content types",
						r.method, r.path, tt.refused, resp.StatusCode, body, resp.Header)
				}
			}
			checkUnchanged(t, l)
			for _, path := range readRoutes {
				if resp, body := mustDo(t, refused, "GET", base+path); resp.StatusCode != http.StatusOK {
					t.Errorf("GET %s from %s: got %d %q; want 200 (reads stay open)", path, tt.refused, resp.StatusCode, body)
				}
			}
			// the peer address counts, never a header
			for _, h := range []string{"X-Forwarded-For", "X-Real-IP", "Forwarded"} {
				req, _ := http.NewRequest("POST", base+"/topic/create?topic=t_xff", nil)
				req.Header.Set(h, tt.allowed)
				if h == "Forwarded" {
					req.Header.Set(h, "for="+tt.allowed)
				}
				resp, err := refused.Do(req)
				if err != nil {
					t.Fatal(err)
				}
				resp.Body.Close()
				if resp.StatusCode != http.StatusForbidden {
					t.Errorf("POST from %s with %s: %s: got %d; want 403", tt.refused, h, tt.allowed, resp.StatusCode)
				}
			}
			checkUnchanged(t, l)

			for _, r := range adminRoutes {
				unlock := lockProfiling(r.path)
				resp, body := mustDo(t, allowed, r.method, base+r.path)
				unlock()
				if resp.StatusCode != http.StatusOK {
					t.Errorf("%s %s from %s: got %d %q; want 200", r.method, r.path, tt.allowed, resp.StatusCode, body)
				}
			}

			after := scrape(t, l)
			if got, want := after.get(t, refusals("http_source"))-before.get(t, refusals("http_source")), float64(len(adminRoutes)+3); got != want {
				t.Errorf("refusals http_source: got +%v; want +%v", got, want)
			}
			for _, r := range adminRoutes[1:] { // /topic/create had the header tries too
				if got := after.get(t, requests(routePattern(r.path), r.method, "403")); got != 1 {
					t.Errorf("%s %s: 403 counted %v times; want 1", r.method, r.path, got)
				}
			}
			// each 403 is access-logged, pprof's too
			prefix := ""
			if tt.tls {
				prefix = "HTTPS: "
			}
			line := regexp.MustCompile(`INFO: ` + prefix + `403 (GET|POST) /\S+ \(` + regexp.QuoteMeta(tt.refused) + `:\d+\) `)
			if got := logs.matching(line); len(got) != len(adminRoutes)+3 {
				t.Errorf("403 access lines: got %d; want %d:\n%s", len(got), len(adminRoutes)+3, strings.Join(got, "\n"))
			}
		})
	}
}

// TestAccessOffByDefault: without rules, no refusal is counted, no
// ACCESS line logged, and every admin route answers from any source; the
// counter is there at zero for each reason.
func TestAccessOffByDefault(t *testing.T) {
	t.Parallel()
	logs := newLogLines(t)
	l := startLookupd(t, func(o *Options) { o.Logger = logs })
	client := clientFrom("127.0.0.2", nil)
	for _, r := range adminRoutes[:6] {
		if resp, body := mustDo(t, client, r.method, "http://"+l.RealHTTPAddr().String()+r.path); resp.StatusCode != http.StatusOK {
			t.Errorf("%s %s from 127.0.0.2: got %d %q; want 200", r.method, r.path, resp.StatusCode, body)
		}
	}
	c := tcpFrom(t, l, "127.0.0.2")
	c.write("  V1")
	c.mustOK("PING")
	s := scrape(t, l)
	for _, reason := range []string{"tcp_source", "http_source", "client_cert", "client_san"} {
		if got := s.get(t, refusals(reason)); got != 0 {
			t.Errorf("refusals %s: got %v; want 0", reason, got)
		}
	}
	// a reload may add rules: the 403 series is there from start-up
	if got, ok := s[requests("/topic/create", "POST", "403")]; !ok || got != 0 {
		t.Errorf("403 series of /topic/create without rules: %v, %v; want 0", got, ok)
	}
	if got := logs.matching(regexp.MustCompile(`ACCESS: `)); len(got) != 0 {
		t.Errorf("got %q; want no ACCESS line without rules", got)
	}
}

// TestAccessStartupLine: the rules in force are logged once at start-up,
// after the version line; 403 is counted from start-up on the admin
// routes.
func TestAccessStartupLine(t *testing.T) {
	t.Parallel()
	f := newTLSFiles(t)
	clientCA := test.NewCA(t, "client CA")
	for _, tt := range []struct {
		name   string
		modify func(*Options)
		want   string
	}{
		{"tcp", func(o *Options) { o.TCPAllow = []string{"10.0.0.0/8", "127.0.0.1"} },
			"ACCESS: registrations only from 10.0.0.0/8, 127.0.0.1; admin routes and /debug/pprof from any source"},
		{"all", func(o *Options) {
			o.TCPAllow = []string{"10.0.0.0/8"}
			o.HTTPAdminAllow = []string{"127.0.0.1", "::1"}
			o.TLSRootCAFile = clientCA.CertFile
			o.HTTPAdminRequireClientCert = true
			o.HTTPAdminClientAllowedSANs = []string{"nsqadmin.example.com", "10.1.2.3"}
		}, "ACCESS: registrations only from 10.0.0.0/8; admin routes and /debug/pprof only from 127.0.0.1, ::1, " +
			"over HTTPS with a verified client certificate carrying a SAN of nsqadmin.example.com, 10.1.2.3"},
	} {
		t.Run(tt.name, func(t *testing.T) {
			logs := newLogLines(t)
			l := startLookupd(t, f.withHTTPS(func(o *Options) {
				o.Logger = logs
				tt.modify(o)
			}))
			got := logs.matching(regexp.MustCompile(`ACCESS: `))
			if len(got) != 1 || !strings.HasSuffix(got[0], "INFO: "+tt.want) {
				t.Fatalf("got %q; want one line ending %q", got, "INFO: "+tt.want)
			}
			if version := logs.matching(regexp.MustCompile(`INFO: nsqlookupd v`)); len(version) != 1 {
				t.Fatalf("version line: got %q", version)
			}
			s := scrape(t, l)
			if _, ok := s[requests("/topic/delete", "POST", "403")]; !ok {
				t.Errorf("no 403 series of /topic/delete")
			}
		})
	}
}

// TestHTTPAdminClientCert: with --http-admin-require-client-cert, reads
// need no certificate on either port; the admin routes and pprof need a
// verified one over HTTPS, and on the plain port answer nsqd's
// TLS_REQUIRED. With allowed SANs, only a certificate carrying one of them
// passes; the common name is not read.
func TestHTTPAdminClientCert(t *testing.T) {
	t.Parallel()
	f := newTLSFiles(t)
	clientCA := test.NewCA(t, "client CA")
	issue := func(cn string, modify func(*x509.Certificate)) *tls.Config {
		pair := clientCA.IssueWith(t, cn, func(c *x509.Certificate) {
			c.DNSNames, c.IPAddresses = nil, nil
			if modify != nil {
				modify(c)
			}
		})
		return &tls.Config{RootCAs: f.ca.Pool, Certificates: []tls.Certificate{pair.TLS(t)}}
	}
	noCert := &tls.Config{RootCAs: f.ca.Pool}
	dnsSAN := issue("nsqadmin", func(c *x509.Certificate) { c.DNSNames = []string{"nsqadmin.example.com"} })
	cnOnly := issue("nsqadmin.example.com", nil)
	uriSAN := issue("nsqadmin", func(c *x509.Certificate) {
		u, _ := url.Parse("spiffe://example.com/nsqadmin")
		c.URIs = []*url.URL{u}
	})
	emailSAN := issue("ops", func(c *x509.Certificate) { c.EmailAddresses = []string{"ops@example.com"} })
	ipSAN := issue("ops", func(c *x509.Certificate) { c.IPAddresses = []net.IP{net.ParseIP("10.1.2.3")} })
	otherSAN := issue("nsqadmin", func(c *x509.Certificate) { c.DNSNames = []string{"evil.example.com"} })

	const (
		certRequired = `{"message":"CLIENT_CERT_REQUIRED"}`
		notAllowed   = `{"message":"CLIENT_CERT_NOT_ALLOWED"}`
	)
	for _, tt := range []struct {
		name string
		sans []string
		cfg  *tls.Config
		want string // the admin answer: "" for 200, else the 403 body
	}{
		{"no certificate", nil, noCert, certRequired},
		{"any verified certificate", nil, cnOnly, ""},
		{"SANs: no certificate", []string{"nsqadmin.example.com"}, noCert, certRequired},
		{"SANs: DNS", []string{"nsqadmin.example.com"}, dnsSAN, ""},
		{"SANs: common name alone", []string{"nsqadmin.example.com"}, cnOnly, notAllowed},
		{"SANs: another DNS name", []string{"nsqadmin.example.com"}, otherSAN, notAllowed},
		{"SANs: URI", []string{"nsqadmin.example.com", "spiffe://example.com/nsqadmin"}, uriSAN, ""},
		{"SANs: email", []string{"ops@example.com"}, emailSAN, ""},
		{"SANs: IP", []string{"::ffff:10.1.2.3"}, ipSAN, ""},
		{"SANs: IP not listed", []string{"10.1.2.4"}, ipSAN, notAllowed},
	} {
		t.Run(tt.name, func(t *testing.T) {
			logs := newLogLines(t)
			l := startAdminCluster(t, f, logs, "", func(o *Options) {
				o.TLSRootCAFile = clientCA.CertFile
				o.HTTPAdminRequireClientCert = true
				o.HTTPAdminClientAllowedSANs = tt.sans
			})
			client := clientFrom("127.0.0.1", tt.cfg)
			for _, path := range readRoutes {
				if resp, body := mustDo(t, client, "GET", httpsURL(l, path)); resp.StatusCode != http.StatusOK {
					t.Errorf("HTTPS GET %s: got %d %q; want 200 (reads need no certificate)", path, resp.StatusCode, body)
				}
			}
			for _, r := range []struct{ method, path string }{adminRoutes[0], {"GET", "/debug/pprof/cmdline"}, adminRoutes[4]} {
				resp, body := mustDo(t, client, r.method, httpsURL(l, r.path))
				if tt.want == "" && resp.StatusCode != http.StatusOK || tt.want != "" && (resp.StatusCode != http.StatusForbidden || body != tt.want) {
					t.Errorf("HTTPS %s %s: got %d %q; want %q (empty: 200)", r.method, r.path, resp.StatusCode, body, tt.want)
				}
			}
			reason := map[string]string{certRequired: "client_cert", notAllowed: "client_san"}[tt.want]
			if s := scrape(t, l); reason != "" && s.get(t, refusals(reason)) != 3 {
				t.Errorf("refusals %s: got %v; want 3", reason, s.get(t, refusals(reason)))
			}
			if tt.want != "" {
				checkUnchanged(t, l)
			}
		})
	}

	t.Run("plain port", func(t *testing.T) {
		logs := newLogLines(t)
		l := startAdminCluster(t, f, logs, "", func(o *Options) {
			o.TLSRootCAFile = clientCA.CertFile
			o.HTTPAdminRequireClientCert = true
		})
		for _, path := range readRoutes {
			if resp, body := httpDo(t, l, "GET", path); resp.StatusCode != http.StatusOK {
				t.Errorf("GET %s: got %d %q; want 200", path, resp.StatusCode, body)
			}
		}
		want := fmt.Sprintf(`{"message": "TLS_REQUIRED", "https_port": %d}`, l.RealHTTPSAddr().Port)
		for _, r := range adminRoutes[:7] {
			resp, body := httpDo(t, l, r.method, r.path)
			if resp.StatusCode != http.StatusForbidden || body != want || resp.Header.Get("X-NSQ-Content-Type") != "nsq; version=1.0" {
				t.Errorf("%s %s: got %d %q; want 403 %q", r.method, r.path, resp.StatusCode, body, want)
			}
		}
		checkUnchanged(t, l)
		if got := scrape(t, l).get(t, refusals("client_cert")); got != 7 {
			t.Errorf("refusals client_cert: got %v; want 7", got)
		}
		if got := logs.matching(regexp.MustCompile(`INFO: 403 POST /topic/create\?topic=t_new \(127\.0\.0\.1:\d+\) `)); len(got) != 1 {
			t.Errorf("access lines of the refused POST: got %q; want one", got)
		}
	})

	t.Run("source refused first", func(t *testing.T) {
		logs := newLogLines(t)
		l := startAdminCluster(t, f, logs, "127.0.0.2", func(o *Options) {
			o.TLSRootCAFile = clientCA.CertFile
			o.HTTPAdminRequireClientCert = true
		})
		resp, body := mustDo(t, clientFrom("127.0.0.1", dnsSAN), "POST", httpsURL(l, "/topic/create?topic=t_new"))
		if resp.StatusCode != http.StatusForbidden || body != `{"message":"FORBIDDEN"}` {
			t.Errorf("from outside --http-admin-allow with a certificate: got %d %q; want 403 FORBIDDEN", resp.StatusCode, body)
		}
		resp, body = mustDo(t, clientFrom("127.0.0.2", dnsSAN), "POST", httpsURL(l, "/topic/create?topic=t_new"))
		if resp.StatusCode != http.StatusOK {
			t.Errorf("from inside with a certificate: got %d %q; want 200", resp.StatusCode, body)
		}
	})
}

// TestHostileRefusedSources: a sweep of refused registration connections
// from 300 source addresses, 3 000 connections, against a daemon with a
// producer registered. Every one is closed unanswered and counted; the log
// gets one line per source up to 256 and one saying the
// rest are not logged, however many connections; the producer is served
// throughout. A minute later a source is logged again. (That what the
// daemon remembers of sources stays bounded is TestRefusalLog's, in
// internal/access.)
func TestHostileRefusedSources(t *testing.T) {
	t.Parallel()
	const sources, perSource = 300, 10
	// README, "Access control": each source at most once a minute, and
	// past 256 sources within a minute one line for the rest
	const logInterval, loggedSources = time.Minute, 256
	logs := newLogLines(t)
	clock := newFakeClock()
	l := startLookupd(t, func(o *Options) {
		o.Logger = logs
		o.TCPAllow = []string{"127.0.0.1"}
	}, clock.install)
	victim := connectProducer(t, l, 4150, 4151)
	victim.mustOK("REGISTER orders archive")
	src := func(i int) string { return fmt.Sprintf("127.0.%d.%d", 1+i/250, 2+i%250) }

	var wg sync.WaitGroup
	errs := make(chan error, 8)
	for w := range 8 {
		wg.Add(1)
		go func() {
			defer wg.Done()
			for i := w; i < sources*perSource; i += 8 {
				if err := refusedFrom(l, src(i%sources), "  V1PING\n"); err != nil {
					errs <- err
					return
				}
			}
		}()
		if w == 3 {
			victim.mustOK("PING") // served while the sweep runs
		}
	}
	wg.Wait()
	close(errs)
	for err := range errs {
		t.Fatal(err)
	}
	victim.mustOK("PING")
	victim.mustOK("REGISTER orders archive2")

	refusedLine := regexp.MustCompile(`TCP: refused client\(`)
	if got := len(logs.matching(refusedLine)); got != loggedSources {
		t.Errorf("refusal lines: got %d; want %d (one per source, up to the bound)", got, loggedSources)
	}
	if got := logs.matching(regexp.MustCompile(`TCP: refused clients from more than 256 sources`)); len(got) != 1 {
		t.Errorf("overflow lines: got %q; want one", got)
	}
	if got := scrape(t, l).get(t, refusals("tcp_source")); got != sources*perSource {
		t.Errorf("refusals tcp_source: got %v; want %d", got, sources*perSource)
	}
	var lookup struct{ Producers []struct{} }
	getJSON(t, l, "/lookup?topic=orders", &lookup)
	if len(lookup.Producers) != 1 {
		t.Errorf("/lookup?topic=orders: got %d producers; want the victim alone", len(lookup.Producers))
	}

	clock.Advance(logInterval)
	expectRefused(t, l, src(0), "")
	if got := len(logs.matching(refusedLine)); got != loggedSources+1 {
		t.Errorf("refusal lines a minute later: got %d; want %d", got, loggedSources+1)
	}
}
