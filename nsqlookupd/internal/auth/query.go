package auth

import (
	"context"
	"crypto/tls"
	"crypto/x509"
	"encoding/json"
	"errors"
	"fmt"
	"io"
	"math/rand/v2"
	"net"
	"net/http"
	"net/url"
	"os"
	"strconv"
	"strings"
	"time"
)

// maxAnswer bounds what is read of an auth server's answer: a real one is
// a few hundred bytes per authorization.
const maxAnswer = 1 << 20

// params are what an auth query sends besides the secret, as nsqd v1.3.0
// sends them for a client connection.
type params struct {
	remoteIP   string // the client's address, without port
	tls        bool   // whether the request came over TLS
	commonName string // its verified client certificate's subject CN, or ""
}

// Results of a query, the label values of nsqlookupd_auth_queries_total.
const (
	resultOK      = iota // an answer with authorizations
	resultRefused        // 401 or 403, or an answer with no authorization
	resultFailed         // no usable answer: unreachable, timed out, another status, or an answer nsqd would reject
	numResults
	// resultLimited: not queried, the source's budget of refusals spent.
	resultLimited = numResults
)

var resultNames = [numResults]string{"ok", "refused", "failed"}

// client queries the auth servers as nsqd v1.3.0 does.
type client struct {
	servers    []server
	rootCAFile string // as configured
	http       *http.Client
}

// addrs returns the servers as configured.
func (c *client) addrs() []string {
	addrs := make([]string, len(c.servers))
	for i, s := range c.servers {
		addrs[i] = s.addr
	}
	return addrs
}

// server is one --auth-http-address.
type server struct {
	addr string // as configured
	name string // as logged: a URL's password redacted
}

// endpoint returns the URL queried for the query string q: a full URL as
// given, else http://host:port/auth, as nsqd builds it.
func (s server) endpoint(q string) string {
	if strings.Contains(s.addr, "://") {
		return s.addr + "?" + q
	}
	return "http://" + s.addr + "/auth?" + q
}

// parseServer checks one --auth-http-address: host:port with a port, or
// an http or https URL with a host.
func parseServer(addr string) (server, error) {
	if strings.TrimSpace(addr) == "" {
		return server{}, errors.New("--auth-http-address: empty address")
	}
	if strings.Contains(addr, "://") {
		u, err := url.Parse(addr)
		switch {
		case err != nil:
			return server{}, fmt.Errorf("--auth-http-address: %q is not a URL - %w", addr, err)
		case u.Scheme != "http" && u.Scheme != "https":
			return server{}, fmt.Errorf("--auth-http-address: %q: the scheme must be http or https", u.Redacted())
		case u.Host == "":
			return server{}, fmt.Errorf("--auth-http-address: %q has no host", u.Redacted())
		case u.RawQuery != "" || u.Fragment != "":
			return server{}, fmt.Errorf("--auth-http-address: %q: the query is added by nsqlookupd; give the URL without one", u.Redacted())
		}
		return server{addr: addr, name: u.Redacted()}, nil
	}
	host, port, err := net.SplitHostPort(addr)
	if err != nil {
		return server{}, fmt.Errorf("--auth-http-address: %q is neither host:port nor a URL - %w", addr, err)
	}
	if n, err := strconv.ParseUint(port, 10, 16); err != nil || n == 0 || host == "" {
		return server{}, fmt.Errorf("--auth-http-address: %q is neither host:port nor a URL", addr)
	}
	return server{addr: addr, name: addr}, nil
}

// newClient makes the client of c, which has passed Validate. Its
// transport is nsqd's: the connect timeout bounds the dial, the request
// timeout the wait for the answer and the whole query (redirects
// included, followed as Go does by default); no proxy from the
// environment. An https server is verified against c.RootCAFile, or the
// system's roots, with TLS 1.2 at least. Unlike nsqd, which makes a
// client per query, connections are kept for the next query.
func newClient(c Config) (*client, error) {
	cl := &client{rootCAFile: c.RootCAFile}
	for _, a := range c.Servers {
		s, _ := parseServer(a)
		cl.servers = append(cl.servers, s)
	}
	tlsConfig := &tls.Config{MinVersion: tls.VersionTLS12}
	if c.RootCAFile != "" {
		pem, err := os.ReadFile(c.RootCAFile)
		if err != nil {
			return nil, fmt.Errorf("auth client: %w", err)
		}
		tlsConfig.RootCAs = x509.NewCertPool()
		if !tlsConfig.RootCAs.AppendCertsFromPEM(pem) {
			return nil, fmt.Errorf("auth client: no certificate in %s", c.RootCAFile)
		}
	}
	cl.http = &http.Client{
		Transport: &http.Transport{
			DialContext:           (&net.Dialer{Timeout: c.ConnectTimeout, KeepAlive: 30 * time.Second}).DialContext,
			ResponseHeaderTimeout: c.RequestTimeout,
			TLSHandshakeTimeout:   10 * time.Second,
			TLSClientConfig:       tlsConfig,
			MaxIdleConns:          100,
			MaxIdleConnsPerHost:   maxInFlight,
			IdleConnTimeout:       90 * time.Second,
		},
		Timeout: c.RequestTimeout,
	}
	return cl, nil
}

// queryAny asks the servers in turn, from a random first one, until one
// gives an answer, as nsqd v1.3.0 does: any failure or refusal moves on to
// the next. It returns the first answer (a State, or a refusal when it
// has no authorization), else a refusal if a server refused, else a
// failure. fail is called with each server that failed and why.
func (c *client) queryAny(ctx context.Context, secret string, p params, now func() time.Time, fail func(server, error)) (*State, int) {
	q := url.Values{}
	q.Set("remote_ip", p.remoteIP)
	q.Set("tls", strconv.FormatBool(p.tls))
	q.Set("secret", secret)
	q.Set("common_name", p.commonName)
	query := q.Encode()

	result := resultFailed
	start := rand.IntN(len(c.servers))
	for i := range c.servers {
		s := c.servers[(start+i)%len(c.servers)]
		st, r, err := c.query(ctx, s.endpoint(query), now)
		switch r {
		case resultOK:
			if st.Authorizations() == 0 {
				return st, resultRefused
			}
			return st, resultOK
		case resultRefused:
			result = resultRefused
		default:
			fail(s, scrub(err, secret))
		}
	}
	return nil, result
}

// query makes one query at endpoint. Over plain HTTP, a 403 that gives an
// https_port (a server run with nsqd's --tls-required) is asked again over
// HTTPS on that port, as nsqd's client does.
func (c *client) query(ctx context.Context, endpoint string, now func() time.Time) (*State, int, error) {
	code, body, err := c.get(ctx, endpoint)
	if err == nil && code == http.StatusForbidden && strings.HasPrefix(endpoint, "http:") {
		var tlsRequired struct {
			HTTPSPort int `json:"https_port"`
		}
		if json.Unmarshal(body, &tlsRequired) == nil && tlsRequired.HTTPSPort > 0 {
			u, _ := url.Parse(endpoint)
			u.Scheme, u.Host = "https", net.JoinHostPort(u.Hostname(), strconv.Itoa(tlsRequired.HTTPSPort))
			code, body, err = c.get(ctx, u.String())
		}
	}
	switch {
	case err != nil:
		return nil, resultFailed, err
	case code == http.StatusUnauthorized || code == http.StatusForbidden:
		return nil, resultRefused, nil
	case code != http.StatusOK:
		return nil, resultFailed, fmt.Errorf("got response %d %s", code, http.StatusText(code))
	}
	var a answer
	if err := json.Unmarshal(body, &a); err != nil {
		return nil, resultFailed, fmt.Errorf("invalid answer - %w", err)
	}
	st, err := newState(&a, now())
	if err != nil {
		return nil, resultFailed, fmt.Errorf("invalid answer - %w", err)
	}
	return st, resultOK, nil
}

// get makes one GET with nsqd's Accept header and returns its status and
// body. Its errors name neither the URL nor the answer, which may hold the
// secret.
func (c *client) get(ctx context.Context, endpoint string) (int, []byte, error) {
	req, err := http.NewRequestWithContext(ctx, http.MethodGet, endpoint, nil)
	if err != nil {
		return 0, nil, errors.New("invalid URL")
	}
	req.Header.Set("Accept", "application/vnd.nsq; version=1.0")
	resp, err := c.http.Do(req)
	if err != nil {
		var ue *url.Error
		if errors.As(err, &ue) {
			err = ue.Err // without the URL
		}
		return 0, nil, err
	}
	defer resp.Body.Close()
	body, err := io.ReadAll(io.LimitReader(resp.Body, maxAnswer+1))
	if err != nil {
		return 0, nil, fmt.Errorf("reading the answer - %w", err)
	}
	if len(body) > maxAnswer {
		return 0, nil, fmt.Errorf("answer larger than %d bytes", maxAnswer)
	}
	return resp.StatusCode, body, nil
}

// scrub returns err's text with the secret, as given and as escaped in a
// URL, replaced: no error from an auth query can carry it into a log.
func scrub(err error, secret string) error {
	if err == nil || secret == "" {
		return err
	}
	s := err.Error()
	for _, form := range []string{secret, url.QueryEscape(secret), url.PathEscape(secret)} {
		s = strings.ReplaceAll(s, form, "<secret>")
	}
	return errors.New(s)
}

// close lets the idle connections to the auth servers go.
func (c *client) close() {
	c.http.CloseIdleConnections()
}
