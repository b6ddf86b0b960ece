package nsqlookupd

import (
	"crypto/tls"
	"crypto/x509"
	"errors"
	"fmt"
	"io"
	"net/http"
	"net/http/httptest"
	"regexp"
	"strings"
	"sync"
	"testing"
	"time"

	"github.com/lookupd/nsqlookupd/internal/lg"
	"github.com/lookupd/nsqlookupd/internal/test"
)

// Reload (docs/logging.md, Reload), in-process: Reload is given options
// as main gives them after reading the config file again.

// asking returns a load function that gives the running options changed
// by modify, as a config file with those changes would.
func asking(l *NSQLookupd, modify func(*Options)) func() (*Options, error) {
	return func() (*Options, error) {
		opts := *l.opts
		modify(&opts)
		return &opts, opts.Validate()
	}
}

// mustReload reloads with modify and fails the test on error.
func mustReload(t *testing.T, l *NSQLookupd, modify func(*Options)) {
	t.Helper()
	if err := l.Reload(asking(l, modify)); err != nil {
		t.Fatalf("Reload: %s", err)
	}
}

// sameConnection fails unless the producer c is still connected and
// listed with its remote address: the reload dropped nothing.
func sameConnection(t *testing.T, l *NSQLookupd, c *tcpClient) {
	t.Helper()
	c.mustOK("PING")
	want := c.conn.LocalAddr().String()
	var a struct {
		Producers []struct {
			RemoteAddress string `json:"remote_address"`
		}
	}
	getJSON(t, l, "/lookup?topic=t_keep", &a)
	for _, p := range a.Producers {
		if p.RemoteAddress == want {
			return
		}
	}
	t.Fatalf("/lookup?topic=t_keep: %+v; want the producer at %s still listed", a.Producers, want)
}

// TestReloadEachSetting changes each reloadable setting in turn, with a
// producer connected throughout, and sees the new behaviour at once: the
// log level, the log format, the access log's choice, --http-admin-allow,
// the client certificate rules, and --tcp-allow narrowed (its refused
// producer closed, with one line, and gone; the other untouched). Then
// the TLS files are read again at once, and a restart-only option is named
// and kept.
func TestReloadEachSetting(t *testing.T) {
	t.Parallel()
	f := newTLSFiles(t)
	clientCA := test.NewCA(t, "client CA")
	logs := newLogLines(t)
	l := startAdminCluster(t, f, logs, "", func(o *Options) { o.TLSRootCAFile = clientCA.CertFile })
	p := connectProducer(t, l, 4250, 4251)
	p.mustOK("REGISTER t_keep c_keep")
	other := tcpFrom(t, l, "127.0.0.2")
	other.write("  V1")
	if ans := other.identifyRaw(identifyJSON(4350, 4351)); ans[0] != '{' {
		t.Fatalf("IDENTIFY from 127.0.0.2: %q", ans)
	}
	other.mustOK("REGISTER t_keep c_keep")
	from1, from2 := clientFrom("127.0.0.1", nil), clientFrom("127.0.0.2", nil)
	get := func(path string) { mustDo(t, from1, "GET", "http://"+l.RealHTTPAddr().String()+path) }
	accessLines := func(path string) int {
		return len(logs.matching(regexp.MustCompile(`^(INFO: |\{).*200 GET ` + regexp.QuoteMeta(path) + ` \(`)))
	}

	mustReload(t, l, func(o *Options) { o.LogLevel = lg.WARN })
	get("/lookup?topic=t_keep&at=warn")
	mustReload(t, l, func(o *Options) { o.LogFormat = lg.JSON })
	get("/lookup?topic=t_keep&at=json")
	if accessLines("/lookup?topic=t_keep&at=warn") != 0 || logs.find(`"msg":"200 GET /lookup?topic=t_keep&at=json`) == "" {
		t.Fatalf("at WARNING, then in JSON: want no access line, then one JSON line")
	}
	mustReload(t, l, func(o *Options) { o.HTTPAccessLog = lg.AccessIgnoreProbes })
	get("/ping?at=quiet")
	get("/lookup?topic=t_keep&at=quiet")
	if accessLines("/ping?at=quiet") != 0 || accessLines("/lookup?topic=t_keep&at=quiet") != 1 {
		t.Fatalf("ignore-probes: want no line for /ping, one for /lookup")
	}
	sameConnection(t, l, p)

	admin := "http://" + l.RealHTTPAddr().String() + "/topic/create?topic=t_admin"
	if resp, body := mustDo(t, from1, "POST", admin); resp.StatusCode != http.StatusOK {
		t.Fatalf("admin POST before the rule: %d %s", resp.StatusCode, body)
	}
	mustReload(t, l, func(o *Options) { o.HTTPAdminAllow = []string{"127.0.0.2"} })
	if resp, body := mustDo(t, from1, "POST", admin); resp.StatusCode != http.StatusForbidden || body != `{"message":"FORBIDDEN"}` {
		t.Fatalf("admin POST from 127.0.0.1 after --http-admin-allow=127.0.0.2: got %d %s; want 403 FORBIDDEN", resp.StatusCode, body)
	}
	if resp, body := mustDo(t, from2, "POST", admin); resp.StatusCode != http.StatusOK {
		t.Fatalf("admin POST from 127.0.0.2: got %d %s; want 200", resp.StatusCode, body)
	}

	// client certificates, over HTTPS
	sanCert := clientCA.IssueWith(t, "nsqadmin", func(c *x509.Certificate) { c.DNSNames = []string{"nsqadmin.example.com"} })
	withCert := clientFrom("127.0.0.2", &tls.Config{RootCAs: f.ca.Pool, Certificates: []tls.Certificate{sanCert.TLS(t)}})
	mustReload(t, l, func(o *Options) {
		o.HTTPAdminAllow = nil
		o.HTTPAdminRequireClientCert = true
		o.HTTPAdminClientAllowedSANs = []string{"nsqadmin.example.com"}
	})
	if resp, body := mustDo(t, clientFrom("127.0.0.1", &tls.Config{RootCAs: f.ca.Pool}), "POST", httpsURL(l, "/topic/create?topic=t_admin")); resp.StatusCode != http.StatusForbidden || body != `{"message":"CLIENT_CERT_REQUIRED"}` {
		t.Fatalf("admin POST without a certificate: got %d %s; want 403 CLIENT_CERT_REQUIRED", resp.StatusCode, body)
	}
	if resp, body := mustDo(t, withCert, "POST", httpsURL(l, "/topic/create?topic=t_admin")); resp.StatusCode != http.StatusOK {
		t.Fatalf("admin POST with an allowed SAN: got %d %s; want 200", resp.StatusCode, body)
	}
	mustReload(t, l, func(o *Options) {
		o.HTTPAdminRequireClientCert = true
		o.HTTPAdminClientAllowedSANs = []string{"other.example.com"}
	})
	if resp, body := mustDo(t, withCert, "POST", httpsURL(l, "/topic/create?topic=t_admin")); resp.StatusCode != http.StatusForbidden || body != `{"message":"CLIENT_CERT_NOT_ALLOWED"}` {
		t.Fatalf("admin POST with a SAN no longer allowed: got %d %s; want 403 CLIENT_CERT_NOT_ALLOWED", resp.StatusCode, body)
	}
	sameConnection(t, l, p)

	// --tcp-allow narrowed: the producer from 127.0.0.2 is closed, with one
	// line, and leaves; the one from 127.0.0.1 stays
	otherAddr := other.conn.LocalAddr().String()
	mustReload(t, l, func(o *Options) { o.TCPAllow = []string{"127.0.0.1"} })
	other.expectClosed()
	sameConnection(t, l, p)
	test.Eventually(t, ioTimeout, func() bool { return registered(t, l, "t_keep", 4350) == "none" })
	closing := "WARNING: TCP: closing client(" + otherAddr + "): not in --tcp-allow since the reload"
	if logs.count(closing) != 1 || logs.find("ERROR: client("+otherAddr+")") != "" {
		t.Fatalf("want one line %q, and no ERROR line for the connection", closing)
	}
	expectRefused(t, l, "127.0.0.2", "  V1")

	// the TLS files, read again at once: the next handshake gets the new pair
	second := f.renew(t)
	before := logs.count("HTTPS: reloaded --tls-cert")
	mustReload(t, l, func(*Options) {})
	if got := logs.count("HTTPS: reloaded --tls-cert"); got != before+1 {
		t.Fatalf("HTTPS: reloaded lines: %d, then %d after the reload (no handshake yet); want one more", before, got)
	}
	resp, _, err := do(f.client(nil), "GET", httpsURL(l, "/ping"))
	if err != nil || resp.TLS.PeerCertificates[0].SerialNumber.Cmp(second.Serial) != 0 {
		t.Fatalf("after the reload: %v; want the new pair served", err)
	}

	// a restart-only option: named, and kept
	mustReload(t, l, func(o *Options) { o.TombstoneLifetime = 10 * time.Second })
	if logs.find(`RELOAD: --tombstone-lifetime needs a restart: still 45s (asked: 10s)`) == "" || l.running.TombstoneLifetime != 45*time.Second {
		t.Fatalf("a restart-only change: want a WARNING line naming it, and 45s kept")
	}
	sameConnection(t, l, p)
}

// TestReloadRefused: a configuration that cannot be loaded, or that fails
// any check (a bad rule, TLS files that no longer load), is one ERROR line
// and changes nothing, not even what came before the failing check; the
// gauges say so, and the next good reload puts everything in force.
func TestReloadRefused(t *testing.T) {
	t.Parallel()
	f := newTLSFiles(t)
	logs := newLogLines(t)
	l := startAdminCluster(t, f, logs, "", nil)
	gauges := func() (float64, float64) {
		s := scrape(t, l)
		return s.get(t, "nsqlookupd_config_last_reload_successful"), s.get(t, "nsqlookupd_config_last_reload_success_timestamp_seconds")
	}
	if ok, at := gauges(); ok != 1 || at < float64(time.Now().Add(-time.Hour).Unix()) {
		t.Fatalf("at start-up: successful %v at %v; want 1, now", ok, at)
	}
	_, startedAt := gauges()

	for _, tt := range []struct {
		name string
		load func() (*Options, error)
		want string
	}{
		{"unreadable", func() (*Options, error) { return nil, errors.New("failed to load config file x - permission denied") }, "permission denied"},
		{"a bad rule", func() (*Options, error) { // not checked by load: the daemon checks
			opts := *l.opts
			opts.LogLevel, opts.TCPAllow = lg.DEBUG, []string{"10.0.0.0/33"}
			return &opts, nil
		}, "tcp-allow"},
		{"a bad TLS pair", func() (*Options, error) {
			test.WriteFile(t, f.certFile, []byte("garbage")) // restored below
			opts := *l.opts
			opts.LogLevel, opts.HTTPAdminAllow = lg.DEBUG, []string{"10.0.0.0/8"}
			return &opts, nil
		}, "failed to load --tls-cert"},
	} {
		before := logs.count("ERROR: RELOAD: ")
		if err := l.Reload(tt.load); err == nil || !strings.Contains(err.Error(), tt.want) {
			t.Fatalf("%s: got %v; want an error holding %q", tt.name, err, tt.want)
		}
		if got := logs.matching(regexp.MustCompile(`^ERROR: RELOAD: .*; the running configuration is kept$`)); len(got) != before+1 {
			t.Fatalf("%s: ERROR lines %q; want one more", tt.name, got)
		}
		if ok, at := gauges(); ok != 0 || at != startedAt {
			t.Fatalf("%s: successful %v at %v; want 0 at %v", tt.name, ok, at, startedAt)
		}
		// nothing applied: still INFO, admin routes open
		if s := l.log.Settings(); s.Level != lg.INFO || l.access.GuardsHTTP() {
			t.Fatalf("%s: level %s, admin guarded %v: half applied", tt.name, s.Level, l.access.GuardsHTTP())
		}
		test.WriteFile(t, f.certFile, f.pair.CertPEM)
	}
	mustReload(t, l, func(o *Options) { o.LogLevel = lg.WARN })
	if ok, at := gauges(); ok != 1 || at < startedAt || l.log.Settings().Level != lg.WARN {
		t.Fatalf("after a good reload: successful %v at %v, level %s; want 1, WARNING", ok, at, l.log.Settings().Level)
	}
}

// TestReloadBurst: 100 reloads at once, alternating two configurations,
// while producers register and readers read: each part's settings are
// always one configuration's, never a mix (the log's and the access
// rules' are each swapped whole; between the two, a commit takes a few
// microseconds), and the last reload wins; no producer is dropped.
func TestReloadBurst(t *testing.T) {
	t.Parallel()
	l := startLookupd(t, quietLog)
	p := connectProducer(t, l, 4150, 4151)
	p.mustOK("REGISTER t_keep c_keep")
	a := func(o *Options) {
		o.LogLevel, o.HTTPAccessLog, o.TCPAllow = lg.WARN, lg.AccessNone, []string{"127.0.0.0/8"}
	}
	b := func(o *Options) {
		o.LogLevel, o.HTTPAccessLog, o.TCPAllow = lg.ERROR, lg.AccessIgnoreProbes, []string{"127.0.0.1", "10.0.0.0/8"}
	}
	whole := func() bool {
		s, rules := l.log.Settings(), l.access.String()
		return (s == lg.Settings{Level: lg.INFO} || s == lg.Settings{Level: lg.WARN, Access: lg.AccessNone} ||
			s == lg.Settings{Level: lg.ERROR, Access: lg.AccessIgnoreProbes}) &&
			(rules == "" || strings.HasPrefix(rules, "registrations only from 127.0.0.0/8;") ||
				strings.HasPrefix(rules, "registrations only from 127.0.0.1, 10.0.0.0/8;"))
	}

	stop := make(chan struct{})
	var load sync.WaitGroup
	for i := range 4 {
		c := connectProducer(t, l, 5000+2*i, 5001+2*i)
		c.conn.SetDeadline(time.Now().Add(time.Minute))
		load.Add(1)
		go func() {
			defer load.Done()
			for {
				select {
				case <-stop:
					return
				default:
				}
				_, err := io.WriteString(c.conn, "REGISTER t_load c_load\nUNREGISTER t_load c_load\n")
				for range 2 {
					if err == nil {
						_, err = c.readFrame()
					}
				}
				if err == nil {
					var resp *http.Response
					if resp, err = http.Get("http://" + l.RealHTTPAddr().String() + "/lookup?topic=t_keep"); err == nil {
						resp.Body.Close()
					}
				}
				if err != nil {
					t.Errorf("under load: %s", err)
					return
				}
				if !whole() {
					t.Errorf("settings %+v with rules %q: not one configuration's", l.log.Settings(), l.access.String())
				}
			}
		}()
	}
	var reloads sync.WaitGroup
	for i := range 100 {
		reloads.Add(1)
		go func() {
			defer reloads.Done()
			modify := a
			if i%2 == 1 {
				modify = b
			}
			if err := l.Reload(asking(l, modify)); err != nil {
				t.Errorf("Reload: %s", err)
			}
		}()
	}
	reloads.Wait()
	mustReload(t, l, a)
	close(stop)
	load.Wait()
	if s := l.log.Settings(); s.Level != lg.WARN || s.Access != lg.AccessNone || !strings.HasPrefix(l.access.String(), "registrations only from 127.0.0.0/8;") {
		t.Fatalf("after the burst and a last reload: %+v, %q; want the last one's", s, l.access.String())
	}
	p.mustOK("PING")
	if got := lookupPorts(t, l, "t_keep"); len(got) != 1 || got[0] != 4150 {
		t.Fatalf("/lookup?topic=t_keep: %v; want the producer that stayed connected", got)
	}
}

// TestReloadAuthServers: with auth on, a reload to other auth servers puts
// them in force at once (a cached secret is asked again, of the new
// server); a reload that would turn auth off is restart-only, named in a
// WARNING line, and auth stays on (docs/logging.md, Reload).
func TestReloadAuthServers(t *testing.T) {
	t.Parallel()
	authServer := func(topic string) string {
		s := httptest.NewServer(http.HandlerFunc(func(w http.ResponseWriter, req *http.Request) {
			fmt.Fprintf(w, `{"ttl":3600,"authorizations":[{"topic":%q,"channels":[".*"],"permissions":["subscribe"]}]}`, topic)
		}))
		t.Cleanup(s.Close)
		return strings.TrimPrefix(s.URL, "http://")
	}
	logs := newLogLines(t)
	l := startLookupd(t, func(o *Options) {
		o.AuthHTTPAddresses = []string{authServer("^a$")}
		o.Logger = logs
	})
	p := connectProducer(t, l, 4250, 4251)
	p.mustOK("REGISTER a c")
	p.mustOK("REGISTER b c")
	topics := func() string {
		req, _ := http.NewRequest("GET", "http://"+l.RealHTTPAddr().String()+"/topics", nil)
		req.Header.Set("Authorization", "Bearer s")
		resp, err := http.DefaultClient.Do(req)
		if err != nil {
			t.Fatal(err)
		}
		defer resp.Body.Close()
		body, _ := io.ReadAll(resp.Body)
		return fmt.Sprintf("%d %s", resp.StatusCode, body)
	}
	if got := topics(); got != `200 {"topics":["a"]}` {
		t.Fatalf("before the reload: %s", got)
	}
	mustReload(t, l, func(o *Options) { o.AuthHTTPAddresses = []string{authServer("^b$")} })
	if got := topics(); got != `200 {"topics":["b"]}` {
		t.Fatalf("after a reload to another auth server: %s; want its grant", got)
	}
	mustReload(t, l, func(o *Options) { o.AuthHTTPAddresses = nil })
	if got := topics(); got != `200 {"topics":["b"]}` {
		t.Fatalf("after a reload without auth servers: %s; want auth still on", got)
	}
	if logs.find("RELOAD: --auth-http-address needs a restart") == "" {
		t.Error("no WARNING line for turning auth off")
	}
}
