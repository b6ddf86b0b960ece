// make mutate builds the tests with the mutation tag: this file's tests
// (the TLS options) cover none of the registry, the protocol or the API
// handlers; with pprof_test.go they take a third of the package's time.

//go:build !mutation

package nsqlookupd

import (
	"crypto/tls"
	"fmt"
	"net/http"
	"os"
	"path/filepath"
	"regexp"
	"strings"
	"testing"
	"time"

	"github.com/lookupd/nsqlookupd/internal/test"
)

// The TLS options themselves: versions, client certificate policies,
// renewal of the server's pair, and bad configurations.

// TestHTTPSMinVersion: the HTTPS port refuses clients whose newest TLS
// version is older than --tls-min-version.
func TestHTTPSMinVersion(t *testing.T) {
	t.Parallel()
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
	t.Parallel()
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

// TestCertificateRenewal: a pair renamed into place, or written over the
// old files, is served from the next connection on; a broken pair is
// logged and the previous one kept.
func TestCertificateRenewal(t *testing.T) {
	t.Parallel()
	f := newTLSFiles(t)
	logs := newLogLines(t)
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
	second := f.renew(t)
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

	// A key that vanishes (a renewal that removes before it writes): the
	// same, logged once more.
	if err := os.Remove(f.keyFile); err != nil {
		t.Fatal(err)
	}
	if got, want := serial(), second.Serial.String(); got != want {
		t.Fatalf("serial with the key file gone: got %s; want the last good %s", got, want)
	}
	serial()
	if got := logs.matching(failed); len(got) != 2 || !strings.Contains(got[1], "no such file or directory") {
		t.Fatalf("got %q; want a second line matching %s, for the missing file", got, failed)
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
	t.Parallel()
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
			l, err := New(testOptions(t, tt.modify))
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
