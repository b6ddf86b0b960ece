package nsqlookupd

import (
	"crypto/tls"
	"fmt"
	"io"
	"net"
	"net/http"
	"os"
	"path/filepath"
	"regexp"
	"strings"
	"sync"
	"testing"
	"time"

	"github.com/lookupd/nsqlookupd/internal/test"
)

// tlsFiles is a test CA and a server pair it signed for 127.0.0.1, on disk.
type tlsFiles struct {
	ca                *test.CA
	pair              test.Pair
	certFile, keyFile string
}

func newTLSFiles(t *testing.T) *tlsFiles {
	t.Helper()
	ca := test.NewCA(t, "test CA")
	pair := ca.Issue(t, "nsqlookupd")
	certFile, keyFile := pair.WriteFiles(t)
	return &tlsFiles{ca: ca, pair: pair, certFile: certFile, keyFile: keyFile}
}

// withHTTPS returns an options modifier that serves HTTPS on 127.0.0.1:0
// with f's pair, then applies modify (when not nil).
func (f *tlsFiles) withHTTPS(modify func(*Options)) func(*Options) {
	return func(o *Options) {
		o.HTTPSAddress = "127.0.0.1:0"
		o.TLSCert, o.TLSKey = f.certFile, f.keyFile
		if modify != nil {
			modify(o)
		}
	}
}

// client returns an HTTPS client trusting f's CA, offering certs, that
// opens a new connection (and handshake) for every request and follows no
// redirect.
func (f *tlsFiles) client(cfg *tls.Config) *http.Client {
	if cfg == nil {
		cfg = &tls.Config{}
	}
	if cfg.RootCAs == nil {
		cfg.RootCAs = f.ca.Pool
	}
	return &http.Client{
		Timeout:       ioTimeout,
		Transport:     &http.Transport{TLSClientConfig: cfg, DisableKeepAlives: true},
		CheckRedirect: func(*http.Request, []*http.Request) error { return http.ErrUseLastResponse },
	}
}

// do sends method path to base with client and returns the answer with its
// body read; err is the transport's.
func do(client *http.Client, method, url string) (*http.Response, string, error) {
	req, err := http.NewRequest(method, url, nil)
	if err != nil {
		return nil, "", err
	}
	resp, err := client.Do(req)
	if err != nil {
		return nil, "", err
	}
	defer resp.Body.Close()
	body, err := io.ReadAll(resp.Body)
	return resp, string(body), err
}

func httpsURL(l *NSQLookupd, path string) string {
	return "https://" + l.RealHTTPSAddr().String() + path
}

// captureLogger keeps every line and passes it on to the test log.
type captureLogger struct {
	next  Logger
	mu    sync.Mutex
	lines []string
}

func newCaptureLogger(t *testing.T) *captureLogger {
	return &captureLogger{next: test.NewTestLogger(t)}
}

func (c *captureLogger) Output(depth int, s string) error {
	c.mu.Lock()
	c.lines = append(c.lines, s)
	c.mu.Unlock()
	return c.next.Output(depth+1, s)
}

// matching returns the lines matching re.
func (c *captureLogger) matching(re *regexp.Regexp) []string {
	c.mu.Lock()
	defer c.mu.Unlock()
	var out []string
	for _, l := range c.lines {
		if re.MatchString(l) {
			out = append(out, l)
		}
	}
	return out
}

// TestHTTPSSameAsHTTP sends every route over both ports: the status,
// headers (but Date) and body must be the same bytes. The access lines
// say which port answered.
func TestHTTPSSameAsHTTP(t *testing.T) {
	f := newTLSFiles(t)
	logs := newCaptureLogger(t)
	l := startLookupd(t, f.withHTTPS(func(o *Options) { o.Logger = logs }))
	p := connectProducer(t, l, 4150, 4151)
	p.mustOK("REGISTER t c1")
	p.mustOK("REGISTER t c2")
	p.mustOK("REGISTER u")

	plain := &http.Client{
		Timeout:       ioTimeout,
		CheckRedirect: func(*http.Request, []*http.Request) error { return http.ErrUseLastResponse },
	}
	secure := f.client(nil)
	tests := []struct {
		method, path string
		volatile     bool // the body changes between two requests: compare all but the body
	}{
		{"GET", "/ping", false},
		{"GET", "/info", false},
		{"GET", "/topics", false},
		{"GET", "/channels?topic=t", false},
		{"GET", "/channels?topic=*", false},
		{"GET", "/channels", false},
		{"GET", "/lookup?topic=t", false},
		{"GET", "/lookup?topic=nope", false},
		{"GET", "/lookup?topic=%zz", false},
		{"GET", "/nodes", false},
		{"GET", "/debug", false},
		{"POST", "/topic/create?topic=made", false},
		{"POST", "/topic/create?topic=bad!", false},
		{"POST", "/topic/delete?topic=absent", false},
		{"POST", "/channel/create?topic=made&channel=ch", false},
		{"POST", "/channel/delete?topic=absent&channel=ch", false},
		{"POST", "/topic/tombstone?topic=u&node=127.0.0.1:9", false},
		{"POST", "/topic/tombstone?topic=u", false},
		{"GET", "/nope", false},
		{"POST", "/lookup", false},
		{"HEAD", "/ping", false},
		{"OPTIONS", "/lookup", false},
		{"GET", "/lookup/?topic=t", false},
		{"GET", "/LOOKUP?topic=t", false},
		{"POST", "/topic/create/?topic=x", false},
		{"GET", "/debug/pprof/cmdline", false},
		{"GET", "/debug/pprof/symbol", false},
		{"GET", "/debug/pprof", true},
		{"GET", "/debug/pprof/", true},
		{"GET", "/debug/pprof/goroutine?debug=1", true},
		{"GET", "/debug/pprof/heap", true},
		{"GET", "/debug/pprof/profile?seconds=1", true},
	}
	for _, tt := range tests {
		t.Run(tt.method+" "+tt.path, func(t *testing.T) {
			hResp, hBody, err := do(plain, tt.method, "http://"+l.RealHTTPAddr().String()+tt.path)
			if err != nil {
				t.Fatalf("HTTP: %s", err)
			}
			sResp, sBody, err := do(secure, tt.method, httpsURL(l, tt.path))
			if err != nil {
				t.Fatalf("HTTPS: %s", err)
			}
			if sResp.TLS == nil {
				t.Fatal("HTTPS answer without TLS")
			}
			if hResp.StatusCode != sResp.StatusCode {
				t.Errorf("status: HTTPS %d; HTTP %d", sResp.StatusCode, hResp.StatusCode)
			}
			if !tt.volatile && hBody != sBody {
				t.Errorf("body: HTTPS %q; HTTP %q", sBody, hBody)
			}
			for _, h := range []http.Header{hResp.Header, sResp.Header} {
				h.Del("Date")
				if tt.volatile {
					h.Del("Content-Length")
				}
			}
			if got, want := fmt.Sprint(sResp.Header), fmt.Sprint(hResp.Header); got != want {
				t.Errorf("headers: HTTPS %s; HTTP %s", got, want)
			}
		})
	}

	// One access line per API request on each port: v1.3.0's on HTTP, the
	// same marked "HTTPS: " on HTTPS.
	plainLine := regexp.MustCompile(`^INFO: 200 GET /info \(127\.0\.0\.1:\d+\) \S+$`)
	httpsLine := regexp.MustCompile(`^INFO: HTTPS: 200 GET /info \(127\.0\.0\.1:\d+\) \S+$`)
	if got := logs.matching(plainLine); len(got) != 1 {
		t.Errorf("plain access lines for /info: got %q; want one matching %s", got, plainLine)
	}
	if got := logs.matching(httpsLine); len(got) != 1 {
		t.Errorf("HTTPS access lines for /info: got %q; want one matching %s", got, httpsLine)
	}
	if got := logs.matching(regexp.MustCompile(`^INFO: HTTPS: 404 GET /nope `)); len(got) != 1 {
		t.Errorf("HTTPS access lines for /nope: got %q; want one", got)
	}
	if got := logs.matching(regexp.MustCompile(`^INFO: HTTPS: listening on 127\.0\.0\.1:\d+$`)); len(got) != 1 {
		t.Errorf("got %q; want one \"HTTPS: listening on\" line", got)
	}
}

// TestHTTPSExit: Exit closes the HTTPS port with the others, in bounded
// time, with an HTTPS keep-alive connection open.
func TestHTTPSExit(t *testing.T) {
	f := newTLSFiles(t)
	logs := newCaptureLogger(t)
	opts := NewOptions()
	f.withHTTPS(func(o *Options) {
		o.Logger = logs
		o.TCPAddress, o.HTTPAddress = "127.0.0.1:0", "127.0.0.1:0"
	})(opts)
	l, err := New(opts)
	if err != nil {
		t.Fatal(err)
	}
	mainDone := make(chan error, 1)
	go func() { mainDone <- l.Main() }()

	keepAlive := &http.Client{Timeout: ioTimeout, Transport: &http.Transport{TLSClientConfig: &tls.Config{RootCAs: f.ca.Pool}}}
	if _, body, err := do(keepAlive, "GET", httpsURL(l, "/ping")); err != nil || body != "OK" {
		t.Fatalf("GET /ping over HTTPS: got %q, %v; want OK", body, err)
	}
	exited := make(chan struct{})
	go func() { l.Exit(); close(exited) }()
	select {
	case <-exited:
	case <-time.After(5 * time.Second):
		t.Fatal("Exit did not return within 5s")
	}
	if err := <-mainDone; err != nil {
		t.Fatalf("Main: got %v; want nil after Exit", err)
	}
	if c, err := net.DialTimeout("tcp", l.RealHTTPSAddr().String(), time.Second); err == nil {
		c.Close()
		t.Error("HTTPS address still accepts connections after Exit")
	}
	closing := regexp.MustCompile(`^INFO: HTTPS: closing ` + regexp.QuoteMeta(l.RealHTTPSAddr().String()) + `$`)
	if got := logs.matching(closing); len(got) != 1 {
		t.Errorf("got %q; want one line matching %s", got, closing)
	}
}

// TestHTTPSMinVersion: the HTTPS port refuses clients whose newest TLS
// version is older than --tls-min-version.
func TestHTTPSMinVersion(t *testing.T) {
	f := newTLSFiles(t)
	tests := []struct {
		min        string
		clientMax  uint16
		wantServed bool
	}{
		{"", tls.VersionTLS11, false}, // default: tls1.2
		{"", tls.VersionTLS12, true},
		{"tls1.2", tls.VersionTLS11, false},
		{"TLS1.2", tls.VersionTLS13, true},
		{"tls1.3", tls.VersionTLS12, false},
		{"tls1.3", tls.VersionTLS13, true},
		{"tls1.0", tls.VersionTLS10, true},
		{"tls1.1", tls.VersionTLS10, false},
		{"tls1.1", tls.VersionTLS11, true},
	}
	for _, tt := range tests {
		t.Run(fmt.Sprintf("min %q client max %s", tt.min, tls.VersionName(tt.clientMax)), func(t *testing.T) {
			l := startLookupd(t, f.withHTTPS(func(o *Options) { o.TLSMinVersion = tt.min }))
			client := f.client(&tls.Config{MinVersion: tls.VersionTLS10, MaxVersion: tt.clientMax})
			resp, body, err := do(client, "GET", httpsURL(l, "/ping"))
			if !tt.wantServed {
				if err == nil {
					t.Fatalf("got %s over %s; want the handshake refused", resp.Status, tls.VersionName(resp.TLS.Version))
				}
				if !strings.Contains(err.Error(), "protocol version") {
					t.Fatalf("got %v; want a protocol version alert", err)
				}
				return
			}
			if err != nil || body != "OK" {
				t.Fatalf("got %q, %v; want OK", body, err)
			}
			if resp.TLS.Version != tt.clientMax {
				t.Fatalf("served over %s; want %s", tls.VersionName(resp.TLS.Version), tls.VersionName(tt.clientMax))
			}
		})
	}
}

// TestHTTPSClientAuth runs each client certificate policy against a client
// with no certificate, one from another CA, and one from the CA given as
// --tls-root-ca-file (or no CA file, for the empty policy). Every policy also makes the plain port answer
// TLS_REQUIRED.
func TestHTTPSClientAuth(t *testing.T) {
	f := newTLSFiles(t)
	clientCA := test.NewCA(t, "client CA")
	trusted := clientCA.Issue(t, "trusted client").TLS(t)
	untrusted := test.NewCA(t, "other CA").Issue(t, "untrusted client").TLS(t)
	// Each client sends its certificate whatever CAs the server names (Go's
	// client would hold back one the server's CA list does not cover).
	send := func(cert tls.Certificate) func(*tls.CertificateRequestInfo) (*tls.Certificate, error) {
		return func(*tls.CertificateRequestInfo) (*tls.Certificate, error) { return &cert, nil }
	}
	clients := []struct {
		name string
		cert func(*tls.CertificateRequestInfo) (*tls.Certificate, error)
	}{
		{"no certificate", nil},
		{"untrusted certificate", send(untrusted)},
		{"trusted certificate", send(trusted)},
	}
	tests := []struct {
		policy string
		rootCA string
		served []bool // for each client above
	}{
		{"", clientCA.CertFile, []bool{true, false, true}},
		// No CA to verify against: no certificate is asked for, and any
		// sent is ignored, as nsqd does.
		{"", "", []bool{true, true, true}},
		{"require", clientCA.CertFile, []bool{false, true, true}},
		{"require-verify", clientCA.CertFile, []bool{false, false, true}},
	}
	for _, tt := range tests {
		t.Run(fmt.Sprintf("policy %q root CA %v", tt.policy, tt.rootCA != ""), func(t *testing.T) {
			l := startLookupd(t, f.withHTTPS(func(o *Options) {
				o.TLSClientAuthPolicy = tt.policy
				o.TLSRootCAFile = tt.rootCA
			}))
			for i, c := range clients {
				resp, body, err := do(f.client(&tls.Config{GetClientCertificate: c.cert}), "GET", httpsURL(l, "/info"))
				switch {
				case tt.served[i] && (err != nil || resp.StatusCode != 200):
					t.Errorf("%s: got %v %q; want 200", c.name, err, body)
				case !tt.served[i] && err == nil:
					t.Errorf("%s: got %d %q; want the handshake refused", c.name, resp.StatusCode, body)
				case !tt.served[i] && !strings.Contains(err.Error(), "tls: "):
					t.Errorf("%s: got %v; want a TLS alert", c.name, err)
				}
			}
			resp, body := httpDo(t, l, "GET", "/info")
			if want := tt.policy != ""; (resp.StatusCode == http.StatusForbidden) != want {
				t.Errorf("plain GET /info: got %d %q; want TLS_REQUIRED %v", resp.StatusCode, body, want)
			}
		})
	}
}

// tlsRequiredAnswer is nsqd v1.3.0's answer on its plain port with TLS
// required, to a request with "Connection: close", byte for byte as
// net/http writes it, with the Date header's value as DATE. (test/interop
// compares it with a real nsqd's.)
func tlsRequiredAnswer(httpsPort int) string {
	body := fmt.Sprintf(`{"message": "TLS_REQUIRED", "https_port": %d}`, httpsPort)
	return "HTTP/1.1 403 Forbidden\r\n" +
		"Content-Type: application/json; charset=utf-8\r\n" +
		"X-Nsq-Content-Type: nsq; version=1.0\r\n" +
		"Date: DATE\r\n" +
		fmt.Sprintf("Content-Length: %d\r\n", len(body)) +
		"Connection: close\r\n" +
		"\r\n" + body
}

var dateHeader = regexp.MustCompile(`(?m)^Date: [^\r]*\r$`)

// rawAnswer sends one request line on a new connection to addr with
// "Connection: close" and returns the whole answer, Date's value as DATE.
func rawAnswer(t *testing.T, addr, method, path string) string {
	t.Helper()
	conn, err := net.DialTimeout("tcp", addr, ioTimeout)
	if err != nil {
		t.Fatal(err)
	}
	defer conn.Close()
	conn.SetDeadline(time.Now().Add(ioTimeout))
	fmt.Fprintf(conn, "%s %s HTTP/1.1\r\nHost: x\r\nConnection: close\r\n\r\n", method, path)
	b, err := io.ReadAll(conn)
	if err != nil {
		t.Fatalf("%s %s: %s after %q", method, path, err, b)
	}
	return dateHeader.ReplaceAllString(string(b), "Date: DATE\r")
}

// TestTLSRequired: with --tls-required the plain port answers every
// request nsqd's 403, byte for byte, and does nothing else; the HTTPS
// port serves as usual.
func TestTLSRequired(t *testing.T) {
	f := newTLSFiles(t)
	logs := newCaptureLogger(t)
	l := startLookupd(t, f.withHTTPS(func(o *Options) {
		o.TLSRequired = true
		o.Logger = logs
	}))
	want := tlsRequiredAnswer(l.RealHTTPSAddr().Port)
	for _, req := range []struct{ method, path string }{
		{"GET", "/ping"},
		{"GET", "/lookup?topic=t"},
		{"GET", "/nodes"},
		{"POST", "/topic/create?topic=sneaky"},
		{"GET", "/debug/pprof/"},
		{"GET", "/nope"},
		{"DELETE", "/info"},
	} {
		if got := rawAnswer(t, l.RealHTTPAddr().String(), req.method, req.path); got != want {
			t.Errorf("%s %s on the plain port:\ngot  %q\nwant %q", req.method, req.path, got, want)
		}
	}
	// The answers are logged as the plain port's.
	logLine := regexp.MustCompile(`^INFO: 403 POST /topic/create\?topic=sneaky \(127\.0\.0\.1:\d+\) \S+$`)
	if got := logs.matching(logLine); len(got) != 1 {
		t.Errorf("got %q; want one line matching %s", got, logLine)
	}
	// The plain POST created nothing; HTTPS serves.
	resp, body, err := do(f.client(nil), "GET", httpsURL(l, "/topics"))
	if err != nil || resp.StatusCode != 200 || body != `{"topics":[]}` {
		t.Fatalf("GET /topics over HTTPS: got %v %q; want 200 {\"topics\":[]}", err, body)
	}
}

// TestCertificateRenewal: a pair renamed into place, or written over the
// old files, is served from the next connection on; a broken pair is
// logged and the previous one kept.
func TestCertificateRenewal(t *testing.T) {
	f := newTLSFiles(t)
	logs := newCaptureLogger(t)
	l := startLookupd(t, f.withHTTPS(func(o *Options) { o.Logger = logs }))
	serial := func() string {
		t.Helper()
		resp, _, err := do(f.client(nil), "GET", httpsURL(l, "/ping"))
		if err != nil {
			t.Fatalf("GET /ping over HTTPS: %s", err)
		}
		return resp.TLS.PeerCertificates[0].SerialNumber.String()
	}
	if got, want := serial(), f.pair.Serial.String(); got != want {
		t.Fatalf("serial: got %s; want the first pair's %s", got, want)
	}

	// Renewed the way certbot and Kubernetes do: new files renamed over
	// the old ones (a new inode each).
	second := f.ca.Issue(t, "nsqlookupd renewed")
	dir := t.TempDir()
	for _, file := range []struct {
		path string
		pem  []byte
	}{{f.certFile, second.CertPEM}, {f.keyFile, second.KeyPEM}} {
		tmp := filepath.Join(dir, filepath.Base(file.path))
		test.WriteFile(t, tmp, file.pem)
		if err := os.Rename(tmp, file.path); err != nil {
			t.Fatal(err)
		}
	}
	if got, want := serial(), second.Serial.String(); got != want {
		t.Fatalf("serial after renaming a new pair into place: got %s; want %s", got, want)
	}

	// A broken write: the last good pair is served, and the failure logged.
	// (Each write here sets an explicit modification time: the kernel's
	// clock may not tick between two writes this close together.)
	later := time.Now().Add(time.Minute)
	writeOver := func(path string, b []byte) {
		t.Helper()
		test.WriteFile(t, path, b)
		if err := os.Chtimes(path, later, later); err != nil {
			t.Fatal(err)
		}
		later = later.Add(time.Minute)
	}
	writeOver(f.certFile, []byte("-----BEGIN CERTIFICATE-----\ngarbage\n-----END CERTIFICATE-----\n"))
	if got, want := serial(), second.Serial.String(); got != want {
		t.Fatalf("serial after a broken write: got %s; want the last good %s", got, want)
	}
	serial() // the same broken files: not logged again
	failed := regexp.MustCompile(`^ERROR: HTTPS: reloading --tls-cert .* failed, still serving the previous certificate - `)
	if got := logs.matching(failed); len(got) != 1 {
		t.Fatalf("got %q; want one line matching %s", got, failed)
	}

	// Renewed in place: written over the same files.
	third := f.ca.Issue(t, "nsqlookupd renewed again")
	writeOver(f.certFile, third.CertPEM)
	writeOver(f.keyFile, third.KeyPEM)
	if got, want := serial(), third.Serial.String(); got != want {
		t.Fatalf("serial after writing a new pair over the files: got %s; want %s", got, want)
	}
}

// TestHTTPSBadConfig: every bad TLS configuration is an error from New
// (which main logs as one FATAL line), before anything listens.
func TestHTTPSBadConfig(t *testing.T) {
	f := newTLSFiles(t)
	other := newTLSFiles(t)
	dir := t.TempDir()
	garbage := filepath.Join(dir, "garbage.pem")
	test.WriteFile(t, garbage, []byte("not PEM at all\n"))
	missing := filepath.Join(dir, "missing.pem")
	tests := []struct {
		name   string
		modify func(*Options)
		want   string
	}{
		{"https without cert and key", func(o *Options) { o.HTTPSAddress = "127.0.0.1:0" },
			"--https-address needs --tls-cert and --tls-key"},
		{"cert without key", func(o *Options) { o.HTTPSAddress, o.TLSCert = "127.0.0.1:0", f.certFile },
			"--https-address needs --tls-key"},
		{"key alone", func(o *Options) { o.TLSKey = f.keyFile },
			"--tls-key needs --https-address and --tls-cert"},
		{"cert and key without https", func(o *Options) { o.TLSCert, o.TLSKey = f.certFile, f.keyFile },
			"--tls-cert needs --https-address"},
		{"tls-required alone", func(o *Options) { o.TLSRequired = true },
			"--tls-required needs --https-address, --tls-cert and --tls-key"},
		{"tls-required without https", func(o *Options) { o.TLSRequired, o.TLSCert, o.TLSKey = true, f.certFile, f.keyFile },
			"--tls-required needs --https-address"},
		{"policy without cert", func(o *Options) { o.HTTPSAddress, o.TLSClientAuthPolicy = "127.0.0.1:0", "require" },
			"--tls-client-auth-policy needs --tls-cert and --tls-key"},
		{"root CA without https", func(o *Options) { o.TLSRootCAFile = f.ca.CertFile },
			"--tls-root-ca-file needs --https-address, --tls-cert and --tls-key"},
		{"unknown policy", f.withHTTPS(func(o *Options) { o.TLSClientAuthPolicy = "verify" }),
			`unknown --tls-client-auth-policy "verify" (want require or require-verify, or empty)`},
		{"unknown version", f.withHTTPS(func(o *Options) { o.TLSMinVersion = "ssl3.0" }),
			`unknown --tls-min-version "ssl3.0" (want tls1.0, tls1.1, tls1.2 or tls1.3)`},
		{"missing cert file", f.withHTTPS(func(o *Options) { o.TLSCert = missing }),
			"failed to load --tls-cert " + missing + " and --tls-key " + f.keyFile + " - open " + missing + ": no such file or directory"},
		{"garbage cert file", f.withHTTPS(func(o *Options) { o.TLSCert = garbage }),
			"failed to load --tls-cert " + garbage + " and --tls-key " + f.keyFile + " - tls: failed to find any PEM data in certificate input"},
		{"mismatched pair", f.withHTTPS(func(o *Options) { o.TLSKey = other.keyFile }),
			"failed to load --tls-cert " + f.certFile + " and --tls-key " + other.keyFile + " - tls: private key does not match public key"},
		{"missing root CA file", f.withHTTPS(func(o *Options) { o.TLSRootCAFile = missing }),
			"failed to read --tls-root-ca-file - open " + missing + ": no such file or directory"},
		{"garbage root CA file", f.withHTTPS(func(o *Options) { o.TLSRootCAFile = garbage }),
			"no PEM certificate in --tls-root-ca-file " + garbage},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			opts := NewOptions()
			opts.Logger = test.NewTestLogger(t)
			opts.TCPAddress, opts.HTTPAddress = "127.0.0.1:0", "127.0.0.1:0"
			tt.modify(opts)
			l, err := New(opts)
			if err == nil {
				l.Exit()
				t.Fatalf("New: got no error; want %q", tt.want)
			}
			if err.Error() != tt.want {
				t.Fatalf("New:\ngot  %q\nwant %q", err, tt.want)
			}
		})
	}
}

// TestHTTPSServerLimits: the HTTPS server has the HTTP server's limits (the
// hostile tests shorten the header timeout on both and attack each port),
// and speaks HTTP/1.1 only, as nsqd's HTTPS does, even to a client that
// offers HTTP/2.
func TestHTTPSServerLimits(t *testing.T) {
	f := newTLSFiles(t)
	l := startLookupd(t, f.withHTTPS(nil))
	h, s := l.httpServer, l.httpsServer
	got := fmt.Sprint(s.ReadHeaderTimeout, s.ReadTimeout, s.WriteTimeout, s.IdleTimeout, s.MaxHeaderBytes, s.ErrorLog != nil)
	want := fmt.Sprint(h.ReadHeaderTimeout, h.ReadTimeout, h.WriteTimeout, h.IdleTimeout, h.MaxHeaderBytes, h.ErrorLog != nil)
	if got != want || s.ReadHeaderTimeout <= 0 {
		t.Fatalf("HTTPS server limits: got %s; want the HTTP server's %s", got, want)
	}
	client := &http.Client{Timeout: ioTimeout, Transport: &http.Transport{
		TLSClientConfig:   &tls.Config{RootCAs: f.ca.Pool},
		ForceAttemptHTTP2: true,
	}}
	resp, body, err := do(client, "GET", httpsURL(l, "/ping"))
	if err != nil || body != "OK" {
		t.Fatalf("GET /ping: got %q, %v; want OK", body, err)
	}
	if resp.Proto != "HTTP/1.1" || resp.TLS.NegotiatedProtocol != "http/1.1" {
		t.Fatalf("got %s (ALPN %q); want HTTP/1.1", resp.Proto, resp.TLS.NegotiatedProtocol)
	}
}

// TestHTTPSWriteTimeout: the HTTP write timeout holds on the HTTPS port
// too: a TLS client that asks for a large answer and never reads it has its
// connection closed once the timeout has passed; others are served. The
// close comes up to 5 s later than on the plain port: crypto/tls's Close
// first tries to send a close_notify alert, with a write deadline of its
// own of 5 s, to a client that does not read.
func TestHTTPSWriteTimeout(t *testing.T) {
	const writeTimeout = 300 * time.Millisecond
	f := newTLSFiles(t)
	states := &connStates{closed: make(map[string]time.Time)}
	l := startLookupdWith(t, f.withHTTPS(func(o *Options) { o.HTTPWriteTimeout = writeTimeout }), func(l *NSQLookupd) {
		l.httpsServer.ConnState = states.hook
		l.httpsListener = smallSendBuffers{l.httpsListener}
	})
	p := connectProducer(t, l, 1, 11)
	registerTopics(t, p, 2000) // /debug is about 1 MB

	stalled := tls.Client(dialSmallReceive(t, l.RealHTTPSAddr().String()), &tls.Config{RootCAs: f.ca.Pool, ServerName: "127.0.0.1"})
	defer stalled.Close()
	stalled.SetDeadline(time.Now().Add(ioTimeout))
	if err := stalled.Handshake(); err != nil {
		t.Fatalf("handshake: %s", err)
	}
	start := time.Now()
	if _, err := io.WriteString(stalled, "GET /debug HTTP/1.1\r\nHost: x\r\n\r\n"); err != nil {
		t.Fatal(err)
	}
	client := f.client(nil)
	for i := 0; i < 5; i++ {
		if resp, body, err := do(client, "GET", httpsURL(l, "/ping")); err != nil || resp.StatusCode != 200 || body != "OK" {
			t.Fatalf("HTTPS /ping while a reader stalls: got %v %q", err, body)
		}
	}
	var closedAt time.Time
	test.Eventually(t, 15*time.Second, func() bool {
		var ok bool
		closedAt, ok = states.closedAt(stalled.LocalAddr().String())
		return ok
	})
	const closeNotifyDeadline = 5 * time.Second // crypto/tls's, in Conn.Close
	if took := closedAt.Sub(start); took < writeTimeout || took > writeTimeout+closeNotifyDeadline+3*time.Second {
		t.Fatalf("closed after %s; want after the write timeout %s, and within %s more", took, writeTimeout, closeNotifyDeadline)
	} else {
		t.Logf("stalled HTTPS /debug reader closed after %s (write timeout %s)", took, writeTimeout)
	}
}
