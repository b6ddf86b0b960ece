package auth

import (
	"encoding/json"
	"fmt"
	"net"
	"net/http"
	"net/http/httptest"
	"net/url"
	"strings"
	"sync"
	"sync/atomic"
	"testing"
	"time"

	"github.com/lookupd/nsqlookupd/internal/lg"
)

// fakeClock is a clock the test moves.
type fakeClock struct{ ns atomic.Int64 }

func newFakeClock() *fakeClock {
	c := &fakeClock{}
	c.ns.Store(time.Date(2024, 1, 1, 0, 0, 0, 0, time.UTC).UnixNano())
	return c
}

func (c *fakeClock) Now() time.Time          { return time.Unix(0, c.ns.Load()) }
func (c *fakeClock) Advance(d time.Duration) { c.ns.Add(int64(d)) }

// grant is an authorization as an auth server writes it.
type grant struct {
	Topic       string   `json:"topic"`
	Channels    []string `json:"channels"`
	Permissions []string `json:"permissions"`
}

// authServer is an auth server speaking nsqd's protocol, over real HTTP on
// 127.0.0.1: GET /auth?remote_ip=&tls=&secret=&common_name= answers the
// secret's grants with ttl, or 403 for an unknown secret. It counts the
// queries and keeps the last one.
type authServer struct {
	*httptest.Server
	queries atomic.Int64

	mu     sync.Mutex
	grants map[string][]grant // secret -> its grants
	ttl    int
	last   *http.Request
	// answer, when set, answers instead (a misbehaving server).
	answer func(w http.ResponseWriter, req *http.Request)
	// gate, when set, holds each query until it is closed.
	gate chan struct{}
}

func startAuthServer(t *testing.T) *authServer {
	t.Helper()
	s := &authServer{grants: map[string][]grant{}, ttl: 3600}
	s.Server = httptest.NewServer(http.HandlerFunc(s.serve))
	t.Cleanup(s.Close)
	return s
}

// addr is the server's host:port, as --auth-http-address takes it.
func (s *authServer) addr() string {
	return strings.TrimPrefix(s.URL, "http://")
}

func (s *authServer) set(f func(s *authServer)) {
	s.mu.Lock()
	defer s.mu.Unlock()
	f(s)
}

func (s *authServer) serve(w http.ResponseWriter, req *http.Request) {
	s.queries.Add(1)
	s.mu.Lock()
	s.last = req
	gate, answer, ttl := s.gate, s.answer, s.ttl
	grants, ok := s.grants[req.URL.Query().Get("secret")]
	s.mu.Unlock()
	if gate != nil {
		<-gate
	}
	if answer != nil {
		answer(w, req)
		return
	}
	if req.URL.Path != "/auth" || !ok {
		w.WriteHeader(http.StatusForbidden)
		fmt.Fprint(w, `{"message":"NOT_AUTHORIZED"}`)
		return
	}
	json.NewEncoder(w).Encode(map[string]any{"ttl": ttl, "identity": "id-" + req.URL.Query().Get("secret"),
		"identity_url": "https://auth.example/", "authorizations": grants})
}

// lastQuery returns the last query's parameters.
func (s *authServer) lastQuery() url.Values {
	s.mu.Lock()
	defer s.mu.Unlock()
	if s.last == nil {
		return nil
	}
	return s.last.URL.Query()
}

// tenantA is tenant A of docs/authorization.md.
var tenantA = []grant{{Topic: `^tenant_a\.`, Channels: []string{".*"}, Permissions: []string{"subscribe", "publish"}}}

// logLines collects log lines, and passes them to t.Log.
type logLines struct {
	t  *testing.T
	mu sync.Mutex
	l  []string
}

func (l *logLines) logf(level lg.LogLevel, f string, args ...interface{}) {
	line := level.String() + ": " + fmt.Sprintf(f, args...)
	l.t.Log(line)
	l.mu.Lock()
	defer l.mu.Unlock()
	l.l = append(l.l, line)
}

// lines returns the lines logged so far.
func (l *logLines) lines() []string {
	l.mu.Lock()
	defer l.mu.Unlock()
	return append([]string(nil), l.l...)
}

// newAuthorizer makes an Authorizer of servers with a fake clock; its log
// lines go to the returned lines and t.Log.
func newAuthorizer(t *testing.T, clk *fakeClock, c Config) (*Authorizer, *logLines) {
	t.Helper()
	if c.ConnectTimeout == 0 {
		c.ConnectTimeout = 2 * time.Second
	}
	if c.RequestTimeout == 0 {
		c.RequestTimeout = 5 * time.Second
	}
	if err := c.Validate(); err != nil {
		t.Fatal(err)
	}
	log := &logLines{t: t}
	a, err := New(c, log.logf, clk.Now)
	if err != nil {
		t.Fatal(err)
	}
	t.Cleanup(a.Close)
	return a, log
}

// request is a read request from remote (ip:port) with the secret ("" for
// none).
func request(remote, secret string) *http.Request {
	req := httptest.NewRequest("GET", "/lookup?topic=x", nil)
	req.RemoteAddr = remote
	if secret != "" {
		req.Header.Set("Authorization", "Bearer "+secret)
	}
	return req
}

// read calls a.Read as the /lookup route does.
func read(a *Authorizer, remote, secret string) (*State, error) {
	return a.Read(httptest.NewRecorder(), request(remote, secret), false)
}

// closedAddr returns a 127.0.0.1 address nothing listens on.
func closedAddr(t *testing.T) string {
	t.Helper()
	l, err := net.Listen("tcp", "127.0.0.1:0")
	if err != nil {
		t.Fatal(err)
	}
	addr := l.Addr().String()
	l.Close()
	return addr
}
