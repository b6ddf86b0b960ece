package auth

import (
	"crypto/tls"
	"crypto/x509"
	"crypto/x509/pkix"
	"encoding/pem"
	"fmt"
	"io"
	"log"
	"net"
	"net/http"
	"net/http/httptest"
	"net/netip"
	"os"
	"path/filepath"
	"strings"
	"sync"
	"sync/atomic"
	"testing"
	"time"

	"github.com/prometheus/client_golang/prometheus"
	"github.com/prometheus/client_golang/prometheus/testutil"

	"github.com/lookupd/nsqlookupd/internal/lg"
)

// TestQuery: a query carries what nsqd v1.3.0 sends for a client
// connection: remote_ip, tls, secret and common_name, at /auth of a
// host:port or at a full URL as given, with nsqd's Accept header.
func TestQuery(t *testing.T) {
	srv := startAuthServer(t)
	srv.set(func(s *authServer) { s.grants["sa"] = tenantA })
	a, _ := newAuthorizer(t, newFakeClock(), Config{Servers: []string{srv.addr()}})

	st, err := read(a, "10.1.2.3:5555", "sa")
	if err != nil {
		t.Fatal(err)
	}
	if st.Identity != "id-sa" || st.IdentityURL != "https://auth.example/" || st.Authorizations() != 1 {
		t.Errorf("state: got %q %q %d; want id-sa https://auth.example/ 1", st.Identity, st.IdentityURL, st.Authorizations())
	}
	srv.mu.Lock()
	req := srv.last
	srv.mu.Unlock()
	if got, want := req.URL.RawQuery, "common_name=&remote_ip=10.1.2.3&secret=sa&tls=false"; got != want {
		t.Errorf("query: got %q; want %q", got, want)
	}
	if got := req.Header.Get("Accept"); got != "application/vnd.nsq; version=1.0" {
		t.Errorf("Accept: got %q; want nsqd's", got)
	}

	// over TLS, the common name of a verified client certificate, as nsqd
	// sends its peer's (an unverified one is not sent)
	cert := &x509.Certificate{Subject: pkix.Name{CommonName: "consumer 1"}}
	for _, verified := range []bool{false, true} {
		r := request("10.1.2.3:5555", "sa")
		r.TLS = &tls.ConnectionState{PeerCertificates: []*x509.Certificate{cert}}
		want := "common_name=&remote_ip=10.1.2.3&secret=sa&tls=true"
		if verified {
			r.TLS.VerifiedChains = [][]*x509.Certificate{{cert}}
			want = "common_name=consumer+1&remote_ip=10.1.2.3&secret=sa&tls=true"
		}
		if _, err := a.Read(httptest.NewRecorder(), r, false); err != nil {
			t.Fatal(err)
		}
		if got := srv.lastQuery().Encode(); got != want {
			t.Errorf("verified %v: got %q; want %q", verified, got, want)
		}
	}

	// a full URL is queried at its own path; IPv6 peers are sent bare
	srv.set(func(s *authServer) {
		s.answer = func(w http.ResponseWriter, req *http.Request) {
			fmt.Fprint(w, `{"ttl":60,"authorizations":[{"topic":".*","channels":[".*"],"permissions":["subscribe"]}]}`)
		}
	})
	b, _ := newAuthorizer(t, newFakeClock(), Config{Servers: []string{srv.URL + "/v2/nsq-auth"}})
	if _, err := read(b, "[fd00::7]:4000", "s b&c"); err != nil {
		t.Fatal(err)
	}
	srv.mu.Lock()
	req = srv.last
	srv.mu.Unlock()
	if req.URL.Path != "/v2/nsq-auth" || req.URL.RawQuery != "common_name=&remote_ip=fd00%3A%3A7&secret=s+b%26c&tls=false" {
		t.Errorf("URL: got %s?%s; want /v2/nsq-auth?common_name=&remote_ip=fd00%%3A%%3A7&secret=s+b%%26c&tls=false", req.URL.Path, req.URL.RawQuery)
	}
}

// TestAnswers: each kind of answer, checked as nsqd v1.3.0 checks it; a
// refusal is 401 AUTH_FAILED, a failure 503 AUTH_UNAVAILABLE (fail closed).
func TestAnswers(t *testing.T) {
	tests := []struct {
		name   string
		status int
		body   string
		want   error
	}{
		{"valid", 200, `{"ttl":60,"identity":"i","authorizations":[{"topic":"t","channels":["c"],"permissions":["subscribe","publish"]}]}`, nil},
		{"no authorization", 200, `{"ttl":60,"identity":"i","authorizations":[]}`, ErrAuthFailed},
		{"403", 403, `{"message":"NOT_AUTHORIZED"}`, ErrAuthFailed},
		{"401", 401, ``, ErrAuthFailed},
		{"unknown permission", 200, `{"ttl":60,"authorizations":[{"topic":"t","channels":["c"],"permissions":["admin"]}]}`, ErrAuthUnavailable},
		{"topic does not compile", 200, `{"ttl":60,"authorizations":[{"topic":"(","channels":["c"],"permissions":["publish"]}]}`, ErrAuthUnavailable},
		{"channel does not compile", 200, `{"ttl":60,"authorizations":[{"topic":"t","channels":["[a-"],"permissions":["publish"]}]}`, ErrAuthUnavailable},
		{"ttl 0", 200, `{"ttl":0,"authorizations":[{"topic":"t","channels":["c"],"permissions":["publish"]}]}`, ErrAuthUnavailable},
		{"negative ttl", 200, `{"ttl":-5,"authorizations":[{"topic":"t","channels":["c"],"permissions":["publish"]}]}`, ErrAuthUnavailable},
		{"ttl not an integer", 200, `{"ttl":"60","authorizations":[]}`, ErrAuthUnavailable},
		{"not JSON", 200, `OK`, ErrAuthUnavailable},
		{"500", 500, `{"message":"INTERNAL_ERROR"}`, ErrAuthUnavailable},
		{"404", 404, `not found`, ErrAuthUnavailable},
		{"too large", 200, `{"ttl":60,"identity":"` + strings.Repeat("x", maxAnswer) + `","authorizations":[]}`, ErrAuthUnavailable},
		{"largest read", 200, padded(`{"ttl":60,"identity":"i","authorizations":[{"topic":"t","channels":["c"],"permissions":["publish"]}]}`, maxAnswer), nil},
		{"a byte too large", 200, padded(`{"ttl":60,"identity":"i","authorizations":[{"topic":"t","channels":["c"],"permissions":["publish"]}]}`, maxAnswer+1), ErrAuthUnavailable},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			srv := startAuthServer(t)
			srv.set(func(s *authServer) {
				s.answer = func(w http.ResponseWriter, req *http.Request) {
					w.WriteHeader(tt.status)
					fmt.Fprint(w, tt.body)
				}
			})
			a, _ := newAuthorizer(t, newFakeClock(), Config{Servers: []string{srv.addr()}})
			rec := httptest.NewRecorder()
			st, err := a.Read(rec, request("127.0.0.1:1", "secret"), false)
			if err != tt.want {
				t.Fatalf("got %v; want %v", err, tt.want)
			}
			if (err == nil) != (st != nil) {
				t.Errorf("state %v with error %v", st, err)
			}
			if err == ErrAuthFailed && rec.Header().Get("WWW-Authenticate") == "" {
				t.Error("401 without WWW-Authenticate")
			}
		})
	}
}

// padded returns the JSON answer a, spaces after it, n bytes long.
func padded(a string, n int) string { return a + strings.Repeat(" ", n-len(a)) }

// TestSourceBudget: a source may have sourceBurst refusals reserved at
// once, then one every sourceRefill; a refund gives one back, never past
// the burst. Sources are IPv4 addresses and IPv6 /64s; past maxSources, new
// ones share one budget, and those whose budget is full again are
// forgotten to make room.
func TestSourceBudget(t *testing.T) {
	c := newCache()
	now := time.Unix(1e9, 0)
	src := sourceOf("192.0.2.1")
	for i := range sourceBurst {
		if !c.take(src, now) {
			t.Fatalf("refusal %d of the burst not granted", i+1)
		}
	}
	if c.take(src, now) || !c.overBudget(src, now) {
		t.Fatal("a refusal past the burst was granted")
	}
	if c.overBudget(sourceOf("192.0.2.2"), now) || sourceOf("2001:db8::1") != sourceOf("2001:db8::2:3") || sourceOf("2001:db8::1") == sourceOf("2001:db8:0:1::1") {
		t.Fatal("sources are not each IPv4 address and each IPv6 /64")
	}
	if c.take(src, now.Add(sourceRefill-time.Millisecond)) {
		t.Fatal("granted before a refill")
	}
	now = now.Add(sourceRefill)
	if c.overBudget(src, now) || !c.take(src, now) || c.take(src, now) {
		t.Fatal("not granted exactly one after a refill")
	}
	if c.refund(src, now); !c.take(src, now) {
		t.Fatal("a refund was not given back")
	}
	later := now.Add(100 * sourceRefill)
	c.refund(src, later)
	for i := range sourceBurst {
		if !c.take(src, later) {
			t.Fatalf("refusal %d of a full budget not granted", i+1)
		}
	}
	if c.take(src, later) {
		t.Fatal("a refund went past the burst")
	}

	c = newCache()
	for i := range maxSources {
		c.take(netip.PrefixFrom(netip.AddrFrom4([4]byte{10, byte(i >> 8), byte(i), 1}), 32), now)
	}
	for i := range sourceBurst {
		if !c.take(sourceOf(fmt.Sprintf("192.0.2.%d", i)), now) {
			t.Fatalf("refusal %d of the shared budget not granted", i+1)
		}
	}
	if c.take(sourceOf("198.51.100.1"), now) || !c.overBudget(sourceOf("198.51.100.2"), now) {
		t.Fatal("the sources past maxSources do not share one budget")
	}
	// a refill later, each known source's budget is full again
	if !c.take(sourceOf("198.51.100.1"), now.Add(sourceRefill)) || len(c.sources) != 1 {
		t.Fatalf("%d sources; want the full ones forgotten and the new one's own", len(c.sources))
	}
}

// TestServersInTurn: the servers are asked from a random first one, then
// the others in turn, until one answers: a refusal or a failure moves on.
func TestServersInTurn(t *testing.T) {
	good := startAuthServer(t)
	good.set(func(s *authServer) { s.grants["sa"] = tenantA })
	refusing := startAuthServer(t) // knows no secret
	down := closedAddr(t)
	a, log := newAuthorizer(t, newFakeClock(), Config{Servers: []string{down, refusing.addr(), good.addr()}})
	for i := range 40 {
		// distinct remote IPs: one query each
		if _, err := read(a, fmt.Sprintf("10.0.0.%d:1", i), "sa"); err != nil {
			t.Fatalf("query %d: %v", i, err)
		}
	}
	if n := good.queries.Load(); n != 40 {
		t.Errorf("the answering server got %d queries; want 40", n)
	}
	// from a random first: the refusing one is asked first or second
	// (after the one down) two times in three, and it is asked then
	if n := refusing.queries.Load(); n == 0 || n == 40 {
		t.Errorf("the refusing server got %d of 40 queries; want some, not all", n)
	}
	if lines := log.lines(); len(lines) != 1 || !strings.Contains(lines[0], "failed to auth against "+down) {
		t.Errorf("log: got %q; want one failure of %s", lines, down)
	}
	want := "reads need a secret (Authorization: Bearer) checked against " + down + ", " + refusing.addr() + ", " + good.addr() +
		" (connect timeout 2s, request timeout 5s); /debug joins the admin routes; a request without a secret reads unfiltered if it passes an admin rule"
	if got := a.String(); got != want {
		t.Errorf("start-up line: got %q; want %q", got, want)
	}

	// every server refuses or fails: a refusal, if one refused
	b, _ := newAuthorizer(t, newFakeClock(), Config{Servers: []string{down, refusing.addr()}})
	if _, err := read(b, "10.0.0.1:1", "sa"); err != ErrAuthFailed {
		t.Errorf("one down, one refusing: got %v; want %v", err, ErrAuthFailed)
	}
	c, _ := newAuthorizer(t, newFakeClock(), Config{Servers: []string{down}})
	if _, err := read(c, "10.0.0.1:1", "sa"); err != ErrAuthUnavailable {
		t.Errorf("all down: got %v; want %v", err, ErrAuthUnavailable)
	}
}

// TestNoSecret: a request without a secret is 401 AUTH_REQUIRED, unless
// it passes an admin rule, or asks /channels from the address of a
// connected producer; then it reads unfiltered (nil state).
func TestNoSecret(t *testing.T) {
	srv := startAuthServer(t)
	admin := func(req *http.Request) bool { return strings.HasPrefix(req.RemoteAddr, "10.9.9.9:") }
	a, _ := newAuthorizer(t, newFakeClock(), Config{Servers: []string{srv.addr()}, Admin: admin})
	a.ProducerUp("10.0.0.5:4150")
	a.ProducerUp("10.0.0.5:4151")
	a.ProducerDown("10.0.0.5:4151")
	a.ProducerUp("[::ffff:10.0.0.6]:4150")

	tests := []struct {
		name, remote, header string
		channels             bool
		want                 error
	}{
		{"no header", "10.0.0.1:1", "", false, ErrAuthRequired},
		{"empty bearer", "10.0.0.1:1", "Bearer ", false, ErrAuthRequired},
		{"basic", "10.0.0.1:1", "Basic dXNlcjpwYXNz", false, ErrAuthRequired},
		{"admin", "10.9.9.9:1", "", false, nil},
		{"producer, /channels", "10.0.0.5:9999", "", true, nil},
		{"producer as v4-in-v6, /channels", "10.0.0.6:9999", "", true, nil},
		{"producer, /lookup", "10.0.0.5:9999", "", false, ErrAuthRequired},
		{"not a producer, /channels", "10.0.0.7:9999", "", true, ErrAuthRequired},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			req := request(tt.remote, "")
			if tt.header != "" {
				req.Header.Set("Authorization", tt.header)
			}
			rec := httptest.NewRecorder()
			st, err := a.Read(rec, req, tt.channels)
			if err != tt.want || st != nil {
				t.Fatalf("got %v, %v; want nil, %v", st, err, tt.want)
			}
			if err != nil && rec.Header().Get("WWW-Authenticate") != `Bearer realm="nsqlookupd"` {
				t.Errorf("WWW-Authenticate: got %q", rec.Header().Get("WWW-Authenticate"))
			}
		})
	}
	a.ProducerDown("10.0.0.5:4150")
	if _, err := a.Read(httptest.NewRecorder(), request("10.0.0.5:9999", ""), true); err != ErrAuthRequired {
		t.Errorf("after the producer left: got %v; want %v", err, ErrAuthRequired)
	}
	if n := srv.queries.Load(); n != 0 {
		t.Errorf("%d queries; want none", n)
	}
}

// TestSingleFlight: 1,000 concurrent requests with one new secret make one
// query, and all get its answer.
func TestSingleFlight(t *testing.T) {
	srv := startAuthServer(t)
	gate := make(chan struct{})
	srv.set(func(s *authServer) { s.grants["sa"] = tenantA; s.gate = gate })
	a, _ := newAuthorizer(t, newFakeClock(), Config{Servers: []string{srv.addr()}})

	const n = 1000
	var started, done sync.WaitGroup
	errs := make(chan error, n)
	for range n {
		started.Add(1)
		done.Add(1)
		go func() {
			defer done.Done()
			started.Done()
			st, err := read(a, "127.0.0.1:1", "sa")
			if err == nil && st.Identity != "id-sa" {
				err = fmt.Errorf("identity %q", st.Identity)
			}
			errs <- err
		}()
	}
	started.Wait()
	// the query is under way, held by the server, while they all ask
	for deadline := time.Now().Add(10 * time.Second); srv.queries.Load() == 0; time.Sleep(time.Millisecond) {
		if time.Now().After(deadline) {
			t.Fatal("no query reached the auth server in 10 s")
		}
	}
	close(gate)
	done.Wait()
	close(errs)
	for err := range errs {
		if err != nil {
			t.Fatal(err)
		}
	}
	if q := srv.queries.Load(); q != 1 {
		t.Errorf("%d queries; want 1", q)
	}
	if got := testutil.ToFloat64(a.m.queries[resultOK]); got != 1 {
		t.Errorf("nsqlookupd_auth_queries_total{result=ok}: got %v; want 1", got)
	}
}

// TestTTL: a state answers until its ttl ends, then a new query is made;
// a key is the secret with the remote IP, tls and common name.
func TestTTL(t *testing.T) {
	srv := startAuthServer(t)
	srv.set(func(s *authServer) { s.grants["sa"] = tenantA; s.ttl = 60 })
	clk := newFakeClock()
	a, _ := newAuthorizer(t, clk, Config{Servers: []string{srv.addr()}})
	ask := func(remote string, wantQueries int64) {
		t.Helper()
		if _, err := read(a, remote, "sa"); err != nil {
			t.Fatal(err)
		}
		if q := srv.queries.Load(); q != wantQueries {
			t.Fatalf("%d queries; want %d", q, wantQueries)
		}
	}
	ask("127.0.0.1:1", 1)
	ask("127.0.0.1:2", 1) // another port, same IP: cached
	clk.Advance(59 * time.Second)
	ask("127.0.0.1:1", 1)
	ask("127.0.0.2:1", 2) // another IP: its own query
	clk.Advance(time.Second)
	ask("127.0.0.1:1", 3) // expired
	ask("127.0.0.1:1", 3)

	// over TLS, with or without a verified certificate: other keys
	cert := &x509.Certificate{Subject: pkix.Name{CommonName: "consumer-1"}}
	for i, cs := range []*tls.ConnectionState{
		{PeerCertificates: []*x509.Certificate{cert}},
		{PeerCertificates: []*x509.Certificate{cert}, VerifiedChains: [][]*x509.Certificate{{cert}}},
	} {
		req := request("127.0.0.1:1", "sa")
		req.TLS = cs
		for range 2 {
			if _, err := a.Read(httptest.NewRecorder(), req, false); err != nil {
				t.Fatal(err)
			}
		}
		if q := srv.queries.Load(); q != int64(4+i) {
			t.Fatalf("%d queries; want %d", q, 4+i)
		}
	}
}

// TestRefusals: a refused secret is remembered for refusedTTL: a client
// that repeats it costs a query every 10 s.
func TestRefusals(t *testing.T) {
	srv := startAuthServer(t)
	clk := newFakeClock()
	a, _ := newAuthorizer(t, clk, Config{Servers: []string{srv.addr()}})
	for range 100 {
		if _, err := read(a, "127.0.0.1:1", "bad"); err != ErrAuthFailed {
			t.Fatalf("got %v; want %v", err, ErrAuthFailed)
		}
	}
	if q := srv.queries.Load(); q != 1 {
		t.Errorf("%d queries; want 1", q)
	}
	// made valid: works once the refusal is forgotten
	srv.set(func(s *authServer) { s.grants["bad"] = tenantA })
	clk.Advance(refusedTTL - time.Millisecond)
	if _, err := read(a, "127.0.0.1:1", "bad"); err != ErrAuthFailed {
		t.Fatalf("within refusedTTL: got %v; want %v", err, ErrAuthFailed)
	}
	clk.Advance(time.Millisecond)
	if _, err := read(a, "127.0.0.1:1", "bad"); err != nil {
		t.Fatalf("after refusedTTL: got %v; want nil", err)
	}
	if q := srv.queries.Load(); q != 2 {
		t.Errorf("%d queries; want 2", q)
	}
}

// TestBadSecretsBounded (hostile): 100,000 distinct bad secrets from one
// source, asked by 8 concurrent clients, cost sourceBurst queries, then
// are answered 429 without a query; from 100,000 sources, the queries stay
// under maxSources+sourceBurst. Either way the cache stays within its
// bounds, and a cached good secret keeps working.
func TestBadSecretsBounded(t *testing.T) {
	for _, spread := range []bool{false, true} {
		t.Run(fmt.Sprintf("many sources %v", spread), func(t *testing.T) {
			srv := startAuthServer(t)
			srv.set(func(s *authServer) { s.grants["good"] = tenantA })
			clk := newFakeClock()
			a, _ := newAuthorizer(t, clk, Config{Servers: []string{srv.addr()}})
			if _, err := read(a, "10.0.0.1:1", "good"); err != nil {
				t.Fatal(err)
			}
			const n = 100_000
			var limited, next atomic.Int64
			var wg sync.WaitGroup
			errs := make(chan error, 8)
			for range 8 {
				wg.Add(1)
				go func() {
					defer wg.Done()
					for i := next.Add(1) - 1; i < n; i = next.Add(1) - 1 {
						remote := "10.0.0.1:1"
						if spread {
							remote = fmt.Sprintf("10.%d.%d.%d:1", i>>16, (i>>8)&255, i&255)
						}
						switch _, err := read(a, remote, fmt.Sprintf("bad-%d", i)); err {
						case ErrAuthRateLimited:
							limited.Add(1)
						case ErrAuthFailed:
						default:
							errs <- fmt.Errorf("secret %d: got %v", i, err)
							return
						}
						if i%10_000 == 0 {
							if _, err := read(a, "10.0.0.1:1", "good"); err != nil {
								errs <- fmt.Errorf("the good secret, after %d bad ones: %v", i, err)
								return
							}
						}
					}
				}()
			}
			wg.Wait()
			close(errs)
			for err := range errs {
				t.Fatal(err)
			}
			q := srv.queries.Load() - 1
			limit := int64(sourceBurst)
			if spread {
				limit = maxSources + sourceBurst
			}
			if q > limit {
				t.Errorf("%d queries for %d bad secrets; want at most %d", q, n, limit)
			}
			if limited.Load() != n-q {
				t.Errorf("%d answered 429; want the %d not queried", limited.Load(), n-q)
			}
			allowed, bytes, refused := a.cache.sizes()
			if allowed != 1 || refused > maxRefused || bytes > maxBytes {
				t.Errorf("cache: %d allowed, %d bytes, %d refused; want 1, <= %d, <= %d", allowed, bytes, refused, maxBytes, maxRefused)
			}
			a.cache.mu.RLock()
			sources := len(a.cache.sources)
			a.cache.mu.RUnlock()
			if sources > maxSources {
				t.Errorf("%d sources counted; want at most %d", sources, maxSources)
			}
			// the budget comes back with time
			clk.Advance(sourceRefill)
			if _, err := read(a, "10.0.0.1:1", "bad-again"); err != ErrAuthFailed {
				t.Errorf("after %s: got %v; want a query and %v", sourceRefill, err, ErrAuthFailed)
			}
		})
	}
}

// TestCacheBounds: the allowed states stay within maxEntries and maxBytes,
// the refusals within maxRefused; expired entries go first.
func TestCacheBounds(t *testing.T) {
	c := newCache()
	now := time.Unix(1e9, 0)
	for i := range maxEntries + 1000 {
		c.putAllowed(keyOf(fmt.Sprint(i), params{}), &State{Expires: now.Add(time.Hour), size: 512}, now)
	}
	// at the bound an eighth is freed, then the last 999 are added
	if n, b, _ := c.sizes(); n != maxEntries*7/8+999 || b != 512*n {
		t.Errorf("%d states, %d bytes; want %d, 512 each", n, b, maxEntries*7/8+999)
	}
	c = newCache()
	for i := range 1000 {
		c.putAllowed(keyOf(fmt.Sprint(i), params{}), &State{Expires: now.Add(time.Hour), size: 1 << 20}, now)
	}
	// 64 fill the bytes; the 65th frees an eighth (down to 55), and so on
	// every 9: the 1000th fills them again
	if n, b, _ := c.sizes(); b != maxBytes || n != 64 {
		t.Errorf("%d states of 1 MiB, %d bytes; want 64, %d bytes", n, b, maxBytes)
	}
	for _, tt := range []struct {
		size int
		kept bool
	}{{maxBytes / 16, true}, {maxBytes/16 + 1, false}} {
		c = newCache()
		c.putAllowed(keyOf("big", params{}), &State{Expires: now.Add(time.Hour), size: tt.size}, now)
		if st, _ := c.get(keyOf("big", params{}), now); (st != nil) != tt.kept {
			t.Errorf("a state of %d bytes (the cache holds %d): kept %t; want %t", tt.size, maxBytes, st != nil, tt.kept)
		}
	}

	// the same key again replaces its state and its bytes; a refusal of
	// it forgets the state
	c = newCache()
	k := keyOf("again", params{})
	c.putAllowed(k, &State{Expires: now.Add(time.Hour), size: 512}, now)
	c.putAllowed(k, &State{Expires: now.Add(time.Hour), size: 100}, now)
	if n, b, _ := c.sizes(); n != 1 || b != 100 {
		t.Errorf("after a state replaced: %d states, %d bytes; want 1, 100", n, b)
	}
	c.putRefused(k, now.Add(time.Second), now)
	if n, b, r := c.sizes(); n != 0 || b != 0 || r != 1 {
		t.Errorf("after a refusal: %d states, %d bytes, %d refusals; want 0, 0, 1", n, b, r)
	}

	// past the bound, the expired states go, and only they
	c = newCache()
	for i := range maxEntries {
		c.putAllowed(keyOf(fmt.Sprint(i), params{}), &State{Expires: now.Add(time.Duration(1+i%2) * time.Hour), size: 512}, now)
	}
	later := now.Add(time.Hour)
	c.putAllowed(keyOf("new", params{}), &State{Expires: later.Add(time.Hour), size: 512}, later)
	if n, _, _ := c.sizes(); n != maxEntries/2+1 {
		t.Errorf("%d states after the expired half went; want %d", n, maxEntries/2+1)
	}

	c = newCache()
	for i := range maxRefused {
		c.putRefused(keyOf(fmt.Sprint(i), params{}), now.Add(time.Hour), now)
	}
	c.putRefused(keyOf("one more", params{}), now.Add(time.Hour), now)
	if _, _, r := c.sizes(); r != maxRefused*7/8 {
		t.Errorf("%d refusals after one past the bound; want %d (an eighth freed)", r, maxRefused*7/8)
	}

	c = newCache()
	for i := range maxRefused {
		c.putRefused(keyOf(fmt.Sprint(i), params{}), now.Add(time.Second), now)
	}
	later = now.Add(2 * time.Second)
	c.putRefused(keyOf("new", params{}), later.Add(time.Second), later)
	if _, _, r := c.sizes(); r != 1 {
		t.Errorf("%d refusals after the expired ones went; want 1", r)
	}
}

// TestUnavailable: when no server answers in time, a secret that needs a
// query is 503 (never an unfiltered answer), while a cached one keeps
// answering; each failing server is logged at most once a minute, with
// the count of failures since, and never with the secret.
func TestUnavailable(t *testing.T) {
	srv := startAuthServer(t)
	hang := make(chan struct{})
	defer close(hang)
	srv.set(func(s *authServer) { s.grants["sa"] = tenantA })
	clk := newFakeClock()
	a, log := newAuthorizer(t, clk, Config{Servers: []string{srv.addr()}, RequestTimeout: 200 * time.Millisecond})
	if _, err := read(a, "127.0.0.1:1", "sa"); err != nil {
		t.Fatal(err)
	}
	srv.set(func(s *authServer) { s.gate = hang }) // it stops answering
	for i := range 5 {
		st, err := read(a, "127.0.0.1:1", fmt.Sprintf("s3cr3t-%d", i))
		if err != ErrAuthUnavailable || st != nil {
			t.Fatalf("got %v, %v; want nil, %v", st, err, ErrAuthUnavailable)
		}
	}
	if _, err := read(a, "127.0.0.1:1", "sa"); err != nil {
		t.Errorf("cached secret while the server hangs: %v", err)
	}
	eventually(t, func() bool { return testutil.ToFloat64(a.m.queries[resultFailed]) == 5 })
	clk.Advance(failureLogInterval)
	if _, err := read(a, "127.0.0.1:1", "s3cr3t-x"); err != ErrAuthUnavailable {
		t.Fatal(err)
	}
	eventually(t, func() bool { return len(log.lines()) == 2 })
	lines := log.lines()
	for _, l := range lines {
		if strings.Contains(l, "s3cr3t") {
			t.Errorf("the secret is logged: %q", l)
		}
	}
	if !strings.Contains(lines[0], "WARNING: AUTH: failed to auth against "+srv.addr()) ||
		!strings.Contains(lines[1], "and 4 failures not logged since the last line") {
		t.Errorf("log: got %q; want a line for the first failure, then one a minute later counting 4 more", lines)
	}
	if got := testutil.ToFloat64(a.m.answers[answerUnavailable]); got != 6 {
		t.Errorf("auth_unavailable answers: got %v; want 6", got)
	}
}

// TestSecretNotInErrors: a failing server whose answer or URL holds the
// secret: the log line has it scrubbed, and /metrics never has it.
func TestSecretNotInErrors(t *testing.T) {
	srv := startAuthServer(t)
	srv.set(func(s *authServer) {
		s.answer = func(w http.ResponseWriter, req *http.Request) {
			w.WriteHeader(200)
			fmt.Fprintf(w, `{"ttl":60,"authorizations":[{"topic":%q,"channels":[],"permissions":["publish"]}]}`, "("+req.URL.Query().Get("secret"))
		}
	})
	a, log := newAuthorizer(t, newFakeClock(), Config{Servers: []string{srv.addr(), "http://user:pa55@" + closedAddr(t) + "/auth"}})
	for _, secret := range []string{"hunter2", "a b/c?d"} {
		if _, err := read(a, "127.0.0.1:1", secret); err != ErrAuthUnavailable {
			t.Fatal(err)
		}
	}
	reg := prometheus.NewRegistry()
	reg.MustRegister(a.Metrics())
	mfs, err := reg.Gather()
	if err != nil {
		t.Fatal(err)
	}
	all := strings.Join(log.lines(), "\n") + fmt.Sprint(mfs)
	for _, leak := range []string{"hunter2", "a b/c?d", "a+b%2Fc%3Fd", "pa55"} {
		if strings.Contains(all, leak) {
			t.Errorf("%q appears in the log or the metrics:\n%s", leak, all)
		}
	}
	if !strings.Contains(all, "<secret>") {
		t.Errorf("want the scrubbed error logged; got\n%s", all)
	}
}

// TestLongSecret: a secret past maxSecret is refused without a query.
func TestLongSecret(t *testing.T) {
	srv := startAuthServer(t)
	a, _ := newAuthorizer(t, newFakeClock(), Config{Servers: []string{srv.addr()}})
	if _, err := read(a, "127.0.0.1:1", strings.Repeat("s", maxSecret+1)); err != ErrAuthFailed {
		t.Errorf("got %v; want %v", err, ErrAuthFailed)
	}
	if q := srv.queries.Load(); q != 0 {
		t.Errorf("%d queries; want 0", q)
	}
	longest := strings.Repeat("s", maxSecret) // the longest a server is asked about
	srv.set(func(s *authServer) { s.grants[longest] = []grant{{".*", []string{".*"}, []string{"subscribe"}}} })
	if _, err := read(a, "127.0.0.1:1", longest); err != nil || srv.queries.Load() != 1 {
		t.Errorf("a secret of %d bytes: %v, %d queries; want it queried and allowed", maxSecret, err, srv.queries.Load())
	}
}

// TestConfig: what Validate refuses, naming the flag.
func TestConfig(t *testing.T) {
	ok := Config{ConnectTimeout: time.Second, RequestTimeout: time.Second}
	tests := []struct {
		servers []string
		connect time.Duration
		want    string
	}{
		{[]string{"127.0.0.1:4181", "auth.example:80", "[::1]:4181", "http://a/auth", "https://u:p@a:8443/x"}, time.Second, ""},
		{[]string{""}, time.Second, "--auth-http-address: empty address"},
		{[]string{" "}, time.Second, "--auth-http-address: empty address"},
		{[]string{"127.0.0.1"}, time.Second, `--auth-http-address: "127.0.0.1" is neither host:port nor a URL`},
		{[]string{"127.0.0.1:http"}, time.Second, `--auth-http-address: "127.0.0.1:http" is neither host:port nor a URL`},
		{[]string{":4181"}, time.Second, `--auth-http-address: ":4181" is neither host:port nor a URL`},
		{[]string{"127.0.0.1:0"}, time.Second, `--auth-http-address: "127.0.0.1:0" is neither host:port nor a URL`},
		{[]string{"ftp://a/auth"}, time.Second, `--auth-http-address: "ftp://a/auth": the scheme must be http or https`},
		{[]string{"http:///auth"}, time.Second, `--auth-http-address: "http:///auth" has no host`},
		{[]string{"http://a/auth?x=1"}, time.Second, `the query is added by nsqlookupd`},
		{[]string{"http://a b/"}, time.Second, `--auth-http-address: "http://a b/" is not a URL`},
		{[]string{"https://u:secretpw@/x"}, time.Second, `"https://u:xxxxx@/x" has no host`},
		{nil, 0, "--http-client-connect-timeout must be positive (got 0s)"},
	}
	for _, tt := range tests {
		c := ok
		c.Servers, c.ConnectTimeout = tt.servers, tt.connect
		err := c.Validate()
		if (err == nil) != (tt.want == "") || (err != nil && !strings.Contains(err.Error(), tt.want)) {
			t.Errorf("%q: got %v; want %q", tt.servers, err, tt.want)
		}
	}
	if err := (Config{ConnectTimeout: time.Second, RequestTimeout: -time.Second}).Validate(); err == nil ||
		err.Error() != "--http-client-request-timeout must be positive (got -1s)" {
		t.Errorf("negative request timeout: got %v", err)
	}
	if a, err := New(Config{ConnectTimeout: time.Second, RequestTimeout: time.Second}, nil, time.Now); a != nil || err != nil {
		t.Errorf("no server: got %v, %v; want auth off (nil, nil)", a, err)
	}
	var off *Authorizer
	if st, err := off.Read(httptest.NewRecorder(), request("127.0.0.1:1", ""), false); st != nil || err != nil {
		t.Errorf("auth off: got %v, %v; want nil, nil", st, err)
	}
	off.ProducerUp("127.0.0.1:1")
	off.Close()
}

// eventually polls cond until it holds, or fails the test after 10 s.
func eventually(t *testing.T, cond func() bool) {
	t.Helper()
	for end := time.Now().Add(10 * time.Second); !cond(); time.Sleep(5 * time.Millisecond) {
		if time.Now().After(end) {
			t.Fatal("condition not met before deadline")
		}
	}
}

// TestTLSRequired: a server that answers 403 with an https_port (nsqd's
// --tls-required answer) is asked again over HTTPS on that port, as nsqd's
// client does; the HTTPS server is verified against RootCAFile.
func TestTLSRequired(t *testing.T) {
	tlsSrv := httptest.NewUnstartedServer(http.HandlerFunc(func(w http.ResponseWriter, req *http.Request) {
		if req.URL.Path != "/auth" || req.URL.Query().Get("secret") != "sa" {
			w.WriteHeader(http.StatusForbidden)
			return
		}
		fmt.Fprint(w, `{"ttl":60,"identity":"over-tls","authorizations":[{"topic":".*","channels":[".*"],"permissions":["subscribe"]}]}`)
	}))
	tlsSrv.Config.ErrorLog = log.New(io.Discard, "", 0) // the handshake the unverified client drops
	tlsSrv.StartTLS()
	defer tlsSrv.Close()
	port := tlsSrv.Listener.Addr().(*net.TCPAddr).Port
	plain := startAuthServer(t)
	plain.set(func(s *authServer) {
		s.answer = func(w http.ResponseWriter, req *http.Request) {
			w.WriteHeader(http.StatusForbidden)
			fmt.Fprintf(w, `{"message":"TLS_REQUIRED","https_port":%d}`, port)
		}
	})
	ca := filepath.Join(t.TempDir(), "ca.pem")
	if err := os.WriteFile(ca, pem.EncodeToMemory(&pem.Block{Type: "CERTIFICATE", Bytes: tlsSrv.Certificate().Raw}), 0o600); err != nil {
		t.Fatal(err)
	}
	a, _ := newAuthorizer(t, newFakeClock(), Config{Servers: []string{plain.addr()}, RootCAFile: ca})
	st, err := read(a, "127.0.0.1:1", "sa")
	if err != nil || st.Identity != "over-tls" {
		t.Fatalf("got %v, %v; want the HTTPS server's state", st, err)
	}
	// without the CA, the HTTPS server is not trusted: a failure
	b, _ := newAuthorizer(t, newFakeClock(), Config{Servers: []string{plain.addr()}})
	if _, err := read(b, "127.0.0.1:1", "sa"); err != ErrAuthUnavailable {
		t.Errorf("unverified server: got %v; want %v", err, ErrAuthUnavailable)
	}
	if _, err := New(Config{Servers: []string{plain.addr()}, ConnectTimeout: time.Second, RequestTimeout: time.Second,
		RootCAFile: filepath.Join(t.TempDir(), "missing.pem")}, func(lg.LogLevel, string, ...interface{}) {}, time.Now); err == nil {
		t.Error("a missing CA file: got no error")
	}
}

// BenchmarkRead measures what auth adds to a /lookup once the secret is
// cached: Read (header, key hash, cache) and the filters of one topic and
// its five channels, with the bench harness's grant (".*") and a tenant's
// ("^tenant_a\.").
func BenchmarkRead(b *testing.B) {
	for _, g := range []struct{ name, topic string }{{"all", ".*"}, {"tenant", `^tenant_a\.`}} {
		b.Run(g.name, func(b *testing.B) {
			srv := httptest.NewServer(http.HandlerFunc(func(w http.ResponseWriter, req *http.Request) {
				fmt.Fprintf(w, `{"ttl":3600,"authorizations":[{"topic":%q,"channels":[".*"],"permissions":["subscribe","publish"]}]}`, g.topic)
			}))
			defer srv.Close()
			a, err := New(Config{Servers: []string{strings.TrimPrefix(srv.URL, "http://")}, ConnectTimeout: time.Second, RequestTimeout: time.Second},
				func(lg.LogLevel, string, ...interface{}) {}, time.Now)
			if err != nil {
				b.Fatal(err)
			}
			defer a.Close()
			req := request("127.0.0.1:4000", "a-secret-of-some-32-characters..")
			w := httptest.NewRecorder()
			channels := []string{"ch0", "ch1", "ch2", "ch3", "ch4"}
			buf := make([]string, len(channels))
			b.ReportAllocs()
			for b.Loop() {
				st, err := a.Read(w, req, false)
				if err != nil || !st.MaySee("tenant_a.orders") || len(st.Channels("tenant_a.orders", append(buf[:0], channels...))) != 5 {
					b.Fatal(err)
				}
			}
		})
	}
}

// TestReload: other servers are asked from the next query on, and the
// cached answers are forgotten; other timeouts alone keep them; the same
// options change nothing; a bad option, or no server, changes nothing
// and is an error.
func TestReload(t *testing.T) {
	one, two := startAuthServer(t), startAuthServer(t)
	for _, s := range []*authServer{one, two} {
		s.set(func(s *authServer) { s.grants["sa"] = tenantA })
	}
	c := Config{Servers: []string{one.addr()}, ConnectTimeout: time.Second, RequestTimeout: time.Second}
	a, log := newAuthorizer(t, newFakeClock(), c)
	ask := func(wantOne, wantTwo int64) {
		t.Helper()
		if _, err := read(a, "127.0.0.1:1", "sa"); err != nil {
			t.Fatal(err)
		}
		if q1, q2 := one.queries.Load(), two.queries.Load(); q1 != wantOne || q2 != wantTwo {
			t.Fatalf("queries: %d and %d; want %d and %d", q1, q2, wantOne, wantTwo)
		}
	}
	ask(1, 0)
	if err := a.Reload(c); err != nil || len(log.lines()) != 0 {
		t.Fatalf("the same options: %v, log %q; want nothing", err, log.lines())
	}
	c.RequestTimeout = 2 * time.Second
	if err := a.Reload(c); err != nil {
		t.Fatal(err)
	}
	ask(1, 0) // still cached
	if !strings.Contains(a.String(), "request timeout 2s") {
		t.Errorf("after a new timeout: %s", a)
	}
	for _, bad := range []Config{{Servers: []string{"nowhere"}, ConnectTimeout: time.Second, RequestTimeout: time.Second},
		{ConnectTimeout: time.Second, RequestTimeout: time.Second}} {
		if err := a.Reload(bad); err == nil {
			t.Errorf("Reload(%+v): no error", bad)
		}
	}
	c.Servers = []string{two.addr()}
	if err := a.Reload(c); err != nil {
		t.Fatal(err)
	}
	ask(1, 1) // asked again, of the new server
	if lines := log.lines(); len(lines) != 2 || !strings.Contains(lines[1], "AUTH: now reads need a secret (Authorization: Bearer) checked against "+two.addr()) {
		t.Errorf("log: %q", lines)
	}
}
