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

// renew issues a new pair and renames its files over f's, the way certbot
// and Kubernetes renew them (a new inode each), and returns it.
func (f *tlsFiles) renew(t *testing.T) test.Pair {
	t.Helper()
	next := f.ca.Issue(t, "nsqlookupd renewed")
	dir := t.TempDir()
	for _, file := range []struct {
		path string
		pem  []byte
	}{{f.certFile, next.CertPEM}, {f.keyFile, next.KeyPEM}} {
		tmp := filepath.Join(dir, filepath.Base(file.path))
		test.WriteFile(t, tmp, file.pem)
		if err := os.Rename(tmp, file.path); err != nil {
			t.Fatal(err)
		}
	}
	return next
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

// TestHTTPSSameAsHTTP sends every route over both ports: the status,
// headers (but Date) and body must be the same bytes. The access lines
// say which port answered.
func TestHTTPSSameAsHTTP(t *testing.T) {
	t.Parallel()
	f := newTLSFiles(t)
	logs := newLogLines(t)
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
			defer lockProfiling(tt.path)()
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
	t.Parallel()
	f := newTLSFiles(t)
	logs := newLogLines(t)
	l := newLookupd(t, f.withHTTPS(func(o *Options) { o.Logger = logs }))
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
	t.Parallel()
	f := newTLSFiles(t)
	logs := newLogLines(t)
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

// TestHTTPSServerLimits: the HTTPS server has the HTTP server's limits (the
// hostile tests shorten the header timeout on both and attack each port),
// and speaks HTTP/1.1 only, as nsqd's HTTPS does, even to a client that
// offers HTTP/2.
func TestHTTPSServerLimits(t *testing.T) {
	t.Parallel()
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
// close comes up to 5 s later than on the plain port (crypto/tls's Close
// first tries to send a close_notify alert, with a write deadline of its
// own of 5 s, to a client that does not read): the wait allows for that.
func TestHTTPSWriteTimeout(t *testing.T) {
	t.Parallel()
	const writeTimeout = time.Second // long enough for the other clients' answers on a loaded machine
	f := newTLSFiles(t)
	states := &connStates{closed: make(map[string]time.Time)}
	l := startLookupd(t, f.withHTTPS(func(o *Options) { o.HTTPWriteTimeout = writeTimeout }), func(l *NSQLookupd) {
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
	if took := closedAt.Sub(start); took < writeTimeout {
		t.Fatalf("closed after %s; want after the write timeout %s", took, writeTimeout)
	} else {
		t.Logf("stalled HTTPS /debug reader closed after %s (write timeout %s)", took, writeTimeout)
	}
}
