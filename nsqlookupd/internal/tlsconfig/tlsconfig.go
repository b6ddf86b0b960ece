// Package tlsconfig is the HTTPS port's TLS configuration (docs/wire.md,
// HTTPS): nsqd v1.3.0's TLS options, checked, the tls.Config built from
// them, with a certificate that follows renewals on disk, and the plain
// port's answer when TLS is required.
package tlsconfig

import (
	"crypto/tls"
	"crypto/x509"
	"fmt"
	"io"
	"net/http"
	"os"
	"strings"
	"sync"

	"github.com/julienschmidt/httprouter"

	"github.com/lookupd/nsqlookupd/internal/http_api"
	"github.com/lookupd/nsqlookupd/internal/lg"
)

// Options are the TLS options, as the daemon's flags of the same names
// (--https-address, --tls-cert, ...) give them.
type Options struct {
	HTTPSAddress     string
	Cert, Key        string
	ClientAuthPolicy string
	RootCAFile       string
	MinVersion       string
	RequireTLS       bool
}

// tlsVersions are the --tls-min-version values, as nsqd spells them.
var tlsVersions = map[string]uint16{
	"tls1.0": tls.VersionTLS10,
	"tls1.1": tls.VersionTLS11,
	"tls1.2": tls.VersionTLS12,
	"tls1.3": tls.VersionTLS13,
}

// defaultTLSMinVersion is what an empty --tls-min-version means.
const defaultTLSMinVersion = tls.VersionTLS12

// parseTLSVersion parses a --tls-min-version value, in any case; empty is
// the default (as nsqd ignores an empty value).
func parseTLSVersion(s string) (uint16, error) {
	if s == "" {
		return defaultTLSMinVersion, nil
	}
	if v, ok := tlsVersions[strings.ToLower(s)]; ok {
		return v, nil
	}
	return 0, fmt.Errorf("unknown --tls-min-version %q (want tls1.0, tls1.1, tls1.2 or tls1.3)", s)
}

// clientAuthPolicies maps --tls-client-auth-policy to what the HTTPS port
// asks of client certificates. The empty policy asks for none when there
// is no --tls-root-ca-file (see clientAuth).
var clientAuthPolicies = map[string]tls.ClientAuthType{
	"":               tls.VerifyClientCertIfGiven,
	"require":        tls.RequireAnyClientCert,
	"require-verify": tls.RequireAndVerifyClientCert,
}

// clientAuth returns what the HTTPS port asks of client certificates. With
// the empty policy and no --tls-root-ca-file it asks for none, as nsqd
// v1.3.0 does for the empty policy: a certificate would be checked against
// the system's roots, and Go clients (nsqadmin with --http-client-tls-cert
// for its nsqd, say) send theirs whenever the server names no CA, so
// clients that work with nsqd would be refused for a certificate that
// authorizes nothing here. With a CA file, a certificate given is verified.
func clientAuth(o Options) tls.ClientAuthType {
	if o.ClientAuthPolicy == "" && o.RootCAFile == "" {
		return tls.NoClientCert
	}
	return clientAuthPolicies[o.ClientAuthPolicy]
}

// Required reports whether the plain HTTP port sends clients to HTTPS:
// asked for, or implied by a client certificate policy (as in nsqd).
func (o Options) Required() bool {
	return o.RequireTLS || o.ClientAuthPolicy != ""
}

// Validate reports the first TLS option that cannot work: an unknown
// version or policy, or a TLS option without all of --https-address,
// --tls-cert and --tls-key. It reads no file: New loads them.
func (o Options) Validate() error {
	if _, err := parseTLSVersion(o.MinVersion); err != nil {
		return err
	}
	if _, ok := clientAuthPolicies[o.ClientAuthPolicy]; !ok {
		return fmt.Errorf("unknown --tls-client-auth-policy %q (want require or require-verify, or empty)", o.ClientAuthPolicy)
	}
	// Any TLS option needs the three below; name the first one given and
	// every one missing.
	needed := []struct {
		name string
		set  bool
	}{
		{"https-address", o.HTTPSAddress != ""},
		{"tls-cert", o.Cert != ""},
		{"tls-key", o.Key != ""},
	}
	given := ""
	for _, opt := range []struct {
		name string
		set  bool
	}{
		{"tls-required", o.RequireTLS},
		{"tls-client-auth-policy", o.ClientAuthPolicy != ""},
		{"tls-root-ca-file", o.RootCAFile != ""},
		needed[0], needed[1], needed[2],
	} {
		if opt.set {
			given = opt.name
			break
		}
	}
	if given == "" {
		return nil // no HTTPS
	}
	var missing []string
	for _, opt := range needed {
		if !opt.set {
			missing = append(missing, "--"+opt.name)
		}
	}
	switch len(missing) {
	case 0:
		return nil
	case 1:
		return fmt.Errorf("--%s needs %s", given, missing[0])
	default:
		return fmt.Errorf("--%s needs %s and %s", given, strings.Join(missing[:len(missing)-1], ", "), missing[len(missing)-1])
	}
}

// New returns the HTTPS port's configuration, as nsqd's buildTLSConfig
// maps the options, with two changes: the certificate is served through a
// Reloader, which it returns too, and only HTTP/1.1 is offered (nsqd's
// HTTPS offers no HTTP/2 either). opts must have passed Validate.
func New(opts Options, log *lg.Log) (*tls.Config, *Reloader, error) {
	reloader, err := newReloader(opts.Cert, opts.Key, log)
	if err != nil {
		return nil, nil, err
	}
	minVersion, _ := parseTLSVersion(opts.MinVersion)
	cfg := &tls.Config{
		GetCertificate: reloader.getCertificate,
		ClientAuth:     clientAuth(opts),
		MinVersion:     minVersion,
		NextProtos:     []string{"http/1.1"},
	}
	if opts.RootCAFile != "" {
		pem, err := os.ReadFile(opts.RootCAFile)
		if err != nil {
			return nil, nil, fmt.Errorf("failed to read --tls-root-ca-file - %w", err)
		}
		pool := x509.NewCertPool()
		if !pool.AppendCertsFromPEM(pem) {
			return nil, nil, fmt.Errorf("no PEM certificate in --tls-root-ca-file %s", opts.RootCAFile)
		}
		cfg.ClientCAs = pool
	}
	return cfg, reloader, nil
}

// Reloader serves the certificate and key at certFile and keyFile and
// loads them again, at the next handshake, when either file has changed
// (another inode, size or modification time): a renewal written in place
// or renamed into place is served without a restart. A pair that fails to
// load is logged once and the last good pair kept, so a renewal caught
// between its two writes costs one ERROR line and no failed handshake.
// Load reads them at once (a reload).
type Reloader struct {
	certFile, keyFile string
	log               *lg.Log

	mu sync.Mutex // guards the fields below
	// cert is the last pair that loaded.
	cert *tls.Certificate
	// certInfo and keyInfo are the files as they were at the last load
	// attempt, good or bad; nil after a failed stat.
	certInfo, keyInfo os.FileInfo
}

// newReloader loads the pair once; an unreadable or mismatched pair is an
// error.
func newReloader(certFile, keyFile string, log *lg.Log) (*Reloader, error) {
	r := &Reloader{certFile: certFile, keyFile: keyFile, log: log}
	r.certInfo, r.keyInfo, _ = r.stat()
	cert, err := tls.LoadX509KeyPair(certFile, keyFile)
	if err != nil {
		return nil, fmt.Errorf("failed to load --tls-cert %s and --tls-key %s - %w", certFile, keyFile, err)
	}
	r.cert = &cert
	return r, nil
}

// stat returns both files' info, nil for one that cannot be read, and the
// first error.
func (r *Reloader) stat() (certInfo, keyInfo os.FileInfo, err error) {
	certInfo, certErr := os.Stat(r.certFile)
	keyInfo, keyErr := os.Stat(r.keyFile)
	if certErr != nil {
		return nil, keyInfo, certErr
	}
	return certInfo, keyInfo, keyErr
}

// unchanged reports whether a and b describe the same file content as far
// as stat can tell.
func unchanged(a, b os.FileInfo) bool {
	if a == nil || b == nil {
		return a == nil && b == nil
	}
	return os.SameFile(a, b) && a.Size() == b.Size() && a.ModTime().Equal(b.ModTime())
}

// getCertificate is the tls.Config's GetCertificate: it checks the files
// (two stat calls per handshake) and answers the current pair.
func (r *Reloader) getCertificate(*tls.ClientHelloInfo) (*tls.Certificate, error) {
	certInfo, keyInfo, err := r.stat()
	r.mu.Lock()
	defer r.mu.Unlock()
	if unchanged(certInfo, r.certInfo) && unchanged(keyInfo, r.keyInfo) {
		return r.cert, nil
	}
	r.certInfo, r.keyInfo = certInfo, keyInfo
	var cert tls.Certificate
	if err == nil {
		cert, err = tls.LoadX509KeyPair(r.certFile, r.keyFile)
	}
	if err != nil {
		r.log.Eventf(lg.ERROR, lg.Keys{"tls_cert", "tls_key", "reason"},
			"HTTPS: reloading --tls-cert %s and --tls-key %s failed, still serving the previous certificate - %s", r.certFile, r.keyFile, err)
		return r.cert, nil
	}
	r.putLocked(&cert)
	return r.cert, nil
}

// putLocked serves cert from now on and logs it; r.mu is held.
func (r *Reloader) putLocked(cert *tls.Certificate) {
	r.cert = cert
	if cert.Leaf != nil {
		r.log.Eventf(lg.INFO, lg.Keys{"tls_cert"}, "HTTPS: reloaded --tls-cert %s (serial %X, valid until %s)",
			r.certFile, cert.Leaf.SerialNumber, cert.Leaf.NotAfter.UTC().Format("2006-01-02 15:04:05 MST"))
	} else {
		r.log.Eventf(lg.INFO, lg.Keys{"tls_cert"}, "HTTPS: reloaded --tls-cert %s", r.certFile)
	}
}

// Load reads the pair at once, changed or not, and returns what puts it in
// force, or why it cannot be: a reload checks everything before it
// changes anything. On a nil Reloader (no HTTPS), commit does nothing.
func (r *Reloader) Load() (commit func(), err error) {
	if r == nil {
		return func() {}, nil
	}
	certInfo, keyInfo, _ := r.stat()
	cert, err := tls.LoadX509KeyPair(r.certFile, r.keyFile)
	if err != nil {
		return nil, fmt.Errorf("failed to load --tls-cert %s and --tls-key %s - %w", r.certFile, r.keyFile, err)
	}
	return func() {
		r.mu.Lock()
		defer r.mu.Unlock()
		r.certInfo, r.keyInfo = certInfo, keyInfo
		r.putLocked(&cert)
	}, nil
}

// errTLSRequired is the status of the plain port's answers when TLS is
// required, for their access lines.
var errTLSRequired = http_api.Err{Code: http.StatusForbidden, Text: "TLS_REQUIRED"}

// RequiredHandler answers every request as nsqd v1.3.0's plain HTTP port
// does with TLS required: 403, both content-type headers, and exactly the
// body {"message": "TLS_REQUIRED", "https_port": N} (with its spaces, which
// RespondV1 would not write). nsqadmin and nsqd read https_port from it and
// retry over HTTPS. Each answer is access-logged like any other.
func RequiredHandler(httpsPort int, log *lg.Log) http.Handler {
	body := fmt.Sprintf(`{"message": "TLS_REQUIRED", "https_port": %d}`, httpsPort)
	h := http_api.Decorate(func(w http.ResponseWriter, req *http.Request, _ httprouter.Params) (interface{}, error) {
		w.Header().Set("X-NSQ-Content-Type", "nsq; version=1.0")
		w.Header().Set("Content-Type", "application/json; charset=utf-8")
		w.WriteHeader(http.StatusForbidden)
		io.WriteString(w, body)
		return nil, errTLSRequired // read by the Log decorator only
	}, http_api.Log(log))
	return http.HandlerFunc(func(w http.ResponseWriter, req *http.Request) { h(w, req, nil) })
}
