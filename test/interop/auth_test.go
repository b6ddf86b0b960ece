package interop

import (
	"encoding/json"
	"fmt"
	"io"
	"log"
	"net"
	"net/http"
	"regexp"
	"slices"
	"strings"
	"sync"
	"sync/atomic"
	"testing"
	"time"

	"github.com/nsqio/go-nsq"
	"github.com/nsqio/nsq/nsqd"
)

// Authorization (docs/authorization.md): the daemon checks the secret of
// each read against nsqd's auth server, and answers what it may reach.
// One auth server, written here and speaking nsqd v1.3.0's protocol,
// serves both the daemon and the real nsqd of each test.

// grant is one authorization, as an auth server writes it.
type grant struct {
	Topic       string   `json:"topic"`
	Channels    []string `json:"channels"`
	Permissions []string `json:"permissions"`
}

// The tenants: A may publish and subscribe to every channel of its
// topics; B may publish to its topics and subscribe only to "archive".
// secret-short is A's with a ttl of one second.
var tenantGrants = map[string][]grant{
	"secret-a": {{Topic: `^tenant_a\.`, Channels: []string{".*"}, Permissions: []string{"subscribe", "publish"}}},
	"secret-b": {
		{Topic: `^tenant_b\.`, Channels: []string{`^archive$`}, Permissions: []string{"subscribe"}},
		{Topic: `^tenant_b\.`, Channels: []string{".*"}, Permissions: []string{"publish"}},
	},
	"secret-short": {{Topic: `^tenant_a\.`, Channels: []string{".*"}, Permissions: []string{"subscribe", "publish"}}},
}

// authd is an auth server of nsqd v1.3.0's protocol on 127.0.0.1: GET
// /auth?common_name=&remote_ip=&secret=&tls= answers a known secret's
// grants, and 403 to any other. It counts the queries by secret.
type authd struct {
	addr string
	srv  *http.Server
	ttl  int

	mu      sync.Mutex
	queries map[string]int
	hold    chan struct{} // when not nil, queries wait until it is closed
}

func startAuthd(t *testing.T) *authd {
	t.Helper()
	ln, err := net.Listen("tcp", "127.0.0.1:0")
	if err != nil {
		t.Fatal(err)
	}
	a := &authd{addr: ln.Addr().String(), ttl: 3600, queries: map[string]int{}}
	a.srv = &http.Server{Handler: http.HandlerFunc(a.serve), ErrorLog: log.New(io.Discard, "", 0)}
	go a.srv.Serve(ln)
	t.Cleanup(a.kill)
	return a
}

func (a *authd) serve(w http.ResponseWriter, req *http.Request) {
	q := req.URL.Query()
	secret := q.Get("secret")
	a.mu.Lock()
	a.queries[secret]++
	hold := a.hold
	a.mu.Unlock()
	if hold != nil {
		select {
		case <-hold:
		case <-req.Context().Done():
			return
		}
	}
	grants, ok := tenantGrants[secret]
	_, hasCN := q["common_name"]
	if req.URL.Path != "/auth" || !ok || q.Get("remote_ip") == "" || (q.Get("tls") != "true" && q.Get("tls") != "false") || !hasCN {
		w.WriteHeader(http.StatusForbidden)
		io.WriteString(w, `{"message":"NOT_AUTHORIZED"}`)
		return
	}
	ttl := a.ttl
	if secret == "secret-short" {
		ttl = 1
	}
	json.NewEncoder(w).Encode(map[string]any{"ttl": ttl, "identity": strings.TrimPrefix(secret, "secret-"),
		"identity_url": "https://auth.example/", "authorizations": grants})
}

// kill stops the server and closes its connections: queries fail at once.
func (a *authd) kill() { a.srv.Close() }

// count returns how many queries asked for secret.
func (a *authd) count(secret string) int {
	a.mu.Lock()
	defer a.mu.Unlock()
	return a.queries[secret]
}

// total returns how many queries it was sent.
func (a *authd) total() int {
	a.mu.Lock()
	defer a.mu.Unlock()
	n := 0
	for _, c := range a.queries {
		n += c
	}
	return n
}

// startAuthLookupd starts the daemon under test with a as its auth server.
func startAuthLookupd(t *testing.T, a *authd, args ...string) *lookupd {
	t.Helper()
	return startLookupdOn(t, "127.0.0.1", append([]string{"--auth-http-address=" + a.addr}, args...)...)
}

// startAuthNSQD starts an in-process nsqd v1.3.0 that checks its clients'
// secrets with a and registers with lookupdTCPAddr, as startNSQD does.
func startAuthNSQD(t *testing.T, a *authd, lookupdTCPAddr string) *nsqdNode {
	t.Helper()
	id := nsqdIDs.Add(1) % 1024
	logger := newTestLogger(t, fmt.Sprintf("nsqd%d", id))
	opts := nsqd.NewOptions()
	opts.ID = id
	opts.Logger = logger
	opts.TCPAddress, opts.HTTPAddress, opts.HTTPSAddress = "127.0.0.1:0", "127.0.0.1:0", ""
	opts.BroadcastAddress = "127.0.0.1"
	opts.NSQLookupdTCPAddresses = []string{lookupdTCPAddr}
	opts.AuthHTTPAddresses = []string{a.addr}
	opts.DataPath = t.TempDir()
	n, err := nsqd.New(opts)
	if err != nil {
		t.Fatalf("nsqd.New: %v", err)
	}
	runUntilCleanup(t, fmt.Sprintf("nsqd%d", id), logger, n.Main, n.Exit)
	tcp, httpAddr := n.RealTCPAddr().(*net.TCPAddr), n.RealHTTPAddr().(*net.TCPAddr)
	return &nsqdNode{NSQD: n, TCPAddr: tcp.String(), HTTPAddr: httpAddr.String(), TCPPort: tcp.Port, HTTPPort: httpAddr.Port}
}

// startTenantConsumer starts a go-nsq v1.1.0 consumer with secret;
// connect points it at the daemon (go-nsq then sends the secret to it as
// Authorization: Bearer) or at nsqd (which gets it in AUTH).
func startTenantConsumer(t *testing.T, topic, channel, secret string, got *messageSet, connect func(*nsq.Consumer) error) *nsq.Consumer {
	t.Helper()
	cfg := nsq.NewConfig()
	cfg.LookupdPollInterval = 200 * time.Millisecond
	cfg.AuthSecret = secret
	return startConsumerWith(t, cfg, topic, channel, got.add, connect)
}

// viaLookupd connects a consumer to the daemon d.
func viaLookupd(d *lookupd) func(*nsq.Consumer) error {
	return func(c *nsq.Consumer) error { return c.ConnectToNSQLookupd(d.HTTPAddr) }
}

// tenantClient sends its requests from 127.0.0.2: an address that passes
// no admin rule and that no producer registers from.
var tenantClient = &http.Client{Timeout: 10 * time.Second, Transport: &http.Transport{
	DialContext:         (&net.Dialer{LocalAddr: &net.TCPAddr{IP: net.IPv4(127, 0, 0, 2)}}).DialContext,
	MaxIdleConnsPerHost: 64,
}}

// getAs GETs pathAndQuery of d with the secret ("" for none) through
// client, and returns the status and body.
func getAs(t *testing.T, client *http.Client, d *lookupd, pathAndQuery, secret string) (int, string) {
	t.Helper()
	req, err := http.NewRequest(http.MethodGet, d.url(pathAndQuery), nil)
	if err != nil {
		t.Fatal(err)
	}
	if secret != "" {
		req.Header.Set("Authorization", "Bearer "+secret)
	}
	resp, err := client.Do(req)
	if err != nil {
		t.Fatalf("GET %s: %v", pathAndQuery, err)
	}
	defer resp.Body.Close()
	body, err := io.ReadAll(resp.Body)
	if err != nil {
		t.Fatalf("GET %s: %v", pathAndQuery, err)
	}
	return resp.StatusCode, string(body)
}

// waitTopics waits until the daemon's unfiltered view (from 127.0.0.1,
// which passes the admin rule) lists topics.
func waitTopics(t *testing.T, d *lookupd, topics ...string) {
	t.Helper()
	eventually(t, registerTimeout, func() (bool, string) {
		got, err := d.topics()
		if err != nil {
			return false, err.Error()
		}
		return sameSet(got, topics), fmt.Sprintf("/topics %q, want %q", got, topics)
	})
}

// TestAuthRealPeers: nsqd v1.3.0 with --auth-http-address registers a
// topic of each tenant. A go-nsq v1.1.0 consumer with tenant A's secret
// finds tenant_a.orders through the daemon and consumes it from nsqd
// (which asks the same auth server); tenant B's consumes its own, finds
// nothing of A's and sees only its topics; no secret gets 401; nsqadmin,
// from the address the admin rule allows, lists everything and
// tombstones.
func TestAuthRealPeers(t *testing.T) {
	t.Parallel()
	a := startAuthd(t)
	d := startAuthLookupd(t, a, "--http-admin-allow=127.0.0.1")
	if want := "INFO: AUTH: reads need a secret (Authorization: Bearer) checked against " + a.addr + " (connect timeout 2s, request timeout 5s)"; !strings.Contains(d.text(), want) {
		t.Errorf("no start-up line %q in the daemon's log", want)
	}
	n := startAuthNSQD(t, a, d.TCPAddr)
	n.publish(t, "tenant_a.orders", "a1")
	n.publish(t, "tenant_b.payments", "b1")
	waitTopics(t, d, "tenant_a.orders", "tenant_b.payments")

	var gotA, gotB, spied messageSet
	startTenantConsumer(t, "tenant_a.orders", "ch_a", "secret-a", &gotA, viaLookupd(d))
	startTenantConsumer(t, "tenant_b.payments", "archive", "secret-b", &gotB, viaLookupd(d))
	waitConsumed(t, &gotA, []string{"a1"})
	waitConsumed(t, &gotB, []string{"b1"})
	// nsqd asked the same server for its clients' secrets
	if n := a.count("secret-a"); n < 2 {
		t.Errorf("the auth server got %d queries for secret-a; want the daemon's and nsqd's", n)
	}

	// B's consumer of A's topic: its lookups find nothing
	startTenantConsumer(t, "tenant_a.orders", "spy", "secret-b", &spied, viaLookupd(d))
	line := regexp.MustCompile(`INFO: 404 GET /lookup\?topic=tenant_a\.orders \(127\.0\.0\.1:\d+\) `)
	eventually(t, registerTimeout, func() (bool, string) {
		return len(line.FindAllString(d.text(), -1)) >= 3, "fewer than 3 lookups of tenant_a.orders answered 404"
	})
	n.publish(t, "tenant_a.orders", "a2")
	waitConsumed(t, &gotA, []string{"a2"})
	if m := spied.missing([]string{"a1", "a2"}); len(m) != 2 {
		t.Errorf("tenant B consumed tenant A's messages: got all but %q", m)
	}

	for _, tt := range []struct{ path, secret, want string }{
		{"/lookup?topic=tenant_a.orders", "secret-b", `404 {"message":"TOPIC_NOT_FOUND"}`},
		{"/lookup?topic=no_such_topic", "secret-b", `404 {"message":"TOPIC_NOT_FOUND"}`},
		{"/topics", "secret-b", `200 {"topics":["tenant_b.payments"]}`},
		{"/topics", "secret-a", `200 {"topics":["tenant_a.orders"]}`},
		{"/channels?topic=tenant_a.orders", "secret-a", `200 {"channels":["ch_a"]}`},
		{"/channels?topic=tenant_a.orders", "secret-b", `200 {"channels":[]}`},
		{"/topics", "", `401 {"message":"AUTH_REQUIRED"}`},
		{"/lookup?topic=tenant_a.orders", "", `401 {"message":"AUTH_REQUIRED"}`},
		{"/lookup?topic=tenant_a.orders", "secret-wrong", `401 {"message":"AUTH_FAILED"}`},
	} {
		code, body := getAs(t, tenantClient, d, tt.path, tt.secret)
		if got := fmt.Sprintf("%d %s", code, body); got != tt.want {
			t.Errorf("GET %s with %q: got %s; want %s", tt.path, tt.secret, got, tt.want)
		}
	}

	// nsqadmin sends no secret: from 127.0.0.1, which the admin rule
	// allows, it reads everything and tombstones
	api := startNSQAdmin(t, d.HTTPAddr, "", "", "")
	var topics struct {
		Topics  []string `json:"topics"`
		Message string   `json:"message"`
	}
	if _, err := getJSON(api+"/topics", &topics); err != nil {
		t.Fatal(err)
	}
	if !sameSet(topics.Topics, []string{"tenant_a.orders", "tenant_b.payments"}) || topics.Message != "" {
		t.Errorf("nsqadmin /api/topics: %+v; want both tenants' topics", topics)
	}
	doRequest(t, http.MethodDelete, api+"/nodes/"+n.nodeAddr(), map[string]string{"topic": "tenant_b.payments"})
	eventually(t, registerTimeout, func() (bool, string) {
		l, _, err := d.lookup("tenant_b.payments")
		if err != nil {
			return false, err.Error()
		}
		return len(l.Producers) == 0, fmt.Sprintf("producers %+v after the tombstone", l.Producers)
	})
}

// TestAuthChannelPrecreation: with auth on, a second nsqd that creates
// tenant_a.orders still pre-creates the channel a first one registered:
// it asks /channels without a secret, from the address of its own
// registration connection, and reads it unfiltered. The admin rule here
// leaves that address out; a request without a secret from elsewhere, or
// to another route, is 401.
func TestAuthChannelPrecreation(t *testing.T) {
	t.Parallel()
	a := startAuthd(t)
	d := startAuthLookupd(t, a, "--http-admin-allow=127.0.0.9")
	n1, n2 := startAuthNSQD(t, a, d.TCPAddr), startAuthNSQD(t, a, d.TCPAddr)
	// n2 holds the daemon's IDENTIFY answer once a topic of its shows
	n2.publish(t, "tenant_a.warmup", "w")
	eventually(t, registerTimeout, func() (bool, string) {
		code, body := getAs(t, tenantClient, d, "/lookup?topic=tenant_a.warmup", "secret-a")
		return code == 200 && strings.Contains(body, fmt.Sprintf(`"tcp_port":%d`, n2.TCPPort)), fmt.Sprintf("%d %s", code, body)
	})
	// a consumer of n1 registers the channel
	var got messageSet
	startTenantConsumer(t, "tenant_a.orders", "ch_a", "secret-a", &got, func(c *nsq.Consumer) error { return c.ConnectToNSQD(n1.TCPAddr) })
	eventually(t, registerTimeout, func() (bool, string) {
		code, body := getAs(t, tenantClient, d, "/channels?topic=tenant_a.orders", "secret-a")
		return code == 200 && body == `{"channels":["ch_a"]}`, fmt.Sprintf("%d %s", code, body)
	})

	n2.publish(t, "tenant_a.orders", "o1") // returns once n2 has made the topic and its channels
	if got := nsqdChannels(t, n2, "tenant_a.orders"); !slices.Equal(got, []string{"ch_a"}) {
		t.Errorf("second nsqd: tenant_a.orders channels %q; want [ch_a], pre-created", got)
	}
	if v, err := metric(d, `nsqlookupd_auth_requests_total{answer="producer"}`); err != nil || v < 1 {
		t.Errorf(`nsqlookupd_auth_requests_total{answer="producer"}: %v (%v); want at least 1`, v, err)
	}

	fromProducer := &http.Client{Timeout: 10 * time.Second} // 127.0.0.1, where both nsqd register from
	for _, tt := range []struct {
		client       *http.Client
		path, secret string
		want         string
	}{
		{tenantClient, "/channels?topic=tenant_a.orders", "", `401 {"message":"AUTH_REQUIRED"}`},
		{fromProducer, "/channels?topic=tenant_a.orders", "", `200 {"channels":["ch_a"]}`},
		{fromProducer, "/topics", "", `401 {"message":"AUTH_REQUIRED"}`},
		{fromProducer, "/lookup?topic=tenant_a.orders", "", `401 {"message":"AUTH_REQUIRED"}`},
		{fromProducer, "/debug", "", `403 {"message":"FORBIDDEN"}`},
		{fromProducer, "/channels?topic=tenant_a.orders", "secret-b", `200 {"channels":[]}`}, // a secret is always what decides
	} {
		code, body := getAs(t, tt.client, d, tt.path, tt.secret)
		if got := fmt.Sprintf("%d %s", code, body); got != tt.want {
			t.Errorf("GET %s with %q: got %s; want %s", tt.path, tt.secret, got, tt.want)
		}
	}
}

// tenantView is what a tenant's grants let it see, read from nsqd v1.3.0's
// rules by this test, apart from the daemon's code: a topic it may publish
// to (a publish grant whose topic and one of whose channels match, the
// channel being "") or subscribe to some channel of, and the channels it
// may subscribe to. "*" names no topic.
type tenantView []grant

func (v tenantView) sees(topic string) bool {
	for _, g := range v {
		if topic == "*" || !regexp.MustCompile(g.Topic).MatchString(topic) {
			continue
		}
		if (slices.Contains(g.Permissions, "subscribe") && len(g.Channels) > 0) ||
			(slices.Contains(g.Permissions, "publish") && v.matchesChannel(g, "")) {
			return true
		}
	}
	return false
}

func (v tenantView) subscribes(topic, channel string) bool {
	for _, g := range v {
		if topic != "*" && slices.Contains(g.Permissions, "subscribe") &&
			regexp.MustCompile(g.Topic).MatchString(topic) && v.matchesChannel(g, channel) {
			return true
		}
	}
	return false
}

func (tenantView) matchesChannel(g grant, channel string) bool {
	return slices.ContainsFunc(g.Channels, func(c string) bool { return regexp.MustCompile(c).MatchString(channel) })
}

// decode decodes a JSON body into a generic value.
func decode(t *testing.T, body string) map[string]any {
	t.Helper()
	var v map[string]any
	if err := json.Unmarshal([]byte(body), &v); err != nil {
		t.Fatalf("decoding %q: %v", body, err)
	}
	return v
}

// keep returns the names (a JSON array) for which f holds.
func keep(names any, f func(string) bool) []any {
	out := []any{}
	for _, n := range names.([]any) {
		if f(n.(string)) {
			out = append(out, n)
		}
	}
	return out
}

// TestAuthRoutes: each route with no secret, a refused secret, and tenant
// A's and B's, each answer compared with the filtered truth: the
// unfiltered answer (read from the address the admin rule allows)
// filtered by tenantView.
func TestAuthRoutes(t *testing.T) {
	t.Parallel()
	a := startAuthd(t)
	d := startAuthLookupd(t, a, "--http-admin-allow=127.0.0.1")
	n := startAuthNSQD(t, a, d.TCPAddr)
	registered := map[string][]string{
		"tenant_a.orders": {"ch1", "ch2"}, "tenant_a.events": nil,
		"tenant_b.payments": {"archive", "audit"}, "tenant_b.refunds": {"audit"}, "other.stuff": {"x"},
	}
	var topics []string
	for topic, channels := range registered {
		topics = append(topics, topic)
		doRequest(t, http.MethodPost, "http://"+n.HTTPAddr+"/topic/create?topic="+topic, nil)
		for _, c := range channels {
			doRequest(t, http.MethodPost, "http://"+n.HTTPAddr+"/channel/create?topic="+topic+"&channel="+c, nil)
		}
	}
	eventually(t, registerTimeout, func() (bool, string) {
		for topic, channels := range registered {
			if got, err := d.channels(topic); err != nil || !sameSet(got, channels) {
				return false, fmt.Sprintf("%s: channels %q (%v), want %q", topic, got, err, channels)
			}
		}
		return true, ""
	})
	// nsqd's second producer entry: a topic with a tombstoned producer
	d.post(t, "/topic/tombstone?topic=tenant_b.refunds&node="+n.nodeAddr())
	asked := append(slices.Clone(topics), "no_such_topic", "*")

	truth := func(path string) string {
		code, body := getAs(t, httpClient, d, path, "") // 127.0.0.1: the admin rule, unfiltered
		if code != http.StatusOK && code != http.StatusNotFound {
			t.Fatalf("unfiltered GET %s: %d %s", path, code, body)
		}
		return body
	}
	same := func(who, path string, code int, body string, wantCode int, want any) {
		t.Helper()
		var got any
		if err := json.Unmarshal([]byte(body), &got); err != nil || code != wantCode {
			t.Errorf("%s GET %s: got %d %s; want %d", who, path, code, body, wantCode)
			return
		}
		wantJSON, _ := json.Marshal(want) // maps: keys sorted, as got's
		if gotJSON, _ := json.Marshal(got); string(gotJSON) != string(wantJSON) {
			t.Errorf("%s GET %s:\n got  %s\n want %s", who, path, gotJSON, wantJSON)
		}
	}
	reads := []string{"/topics", "/nodes"}
	for _, topic := range asked {
		reads = append(reads, "/lookup?topic="+topic, "/channels?topic="+topic)
	}

	for _, who := range []string{"", "secret-wrong", "secret-a", "secret-b"} {
		// open to all, and closed to all but the admin rule
		for _, tt := range []struct {
			method, path string
			code         int
		}{
			{"GET", "/ping", 200}, {"GET", "/info", 200}, {"GET", "/metrics", 200},
			{"GET", "/debug", 403}, {"GET", "/debug/pprof/", 403}, {"POST", "/topic/create?topic=tenant_a.x", 403},
			{"POST", "/topic/tombstone?topic=tenant_a.orders&node=" + n.nodeAddr(), 403},
		} {
			req, _ := http.NewRequest(tt.method, d.url(tt.path), nil)
			if who != "" {
				req.Header.Set("Authorization", "Bearer "+who)
			}
			resp, err := tenantClient.Do(req)
			if err != nil {
				t.Fatal(err)
			}
			io.Copy(io.Discard, resp.Body)
			resp.Body.Close()
			if resp.StatusCode != tt.code {
				t.Errorf("%q %s %s: got %d; want %d", who, tt.method, tt.path, resp.StatusCode, tt.code)
			}
		}
		view := tenantView(tenantGrants[who])
		for _, path := range reads {
			code, body := getAs(t, tenantClient, d, path, who)
			switch who {
			case "":
				same(who, path, code, body, 401, map[string]string{"message": "AUTH_REQUIRED"})
				continue
			case "secret-wrong":
				same(who, path, code, body, 401, map[string]string{"message": "AUTH_FAILED"})
				continue
			}
			topic, _ := strings.CutPrefix(path[strings.Index(path, "?")+1:], "topic=")
			switch {
			case path == "/topics":
				same(who, path, code, body, 200, map[string]any{"topics": keep(decode(t, truth(path))["topics"], view.sees)})
			case strings.HasPrefix(path, "/channels"):
				want := keep(decode(t, truth(path))["channels"], func(c string) bool { return view.subscribes(topic, c) })
				same(who, path, code, body, 200, map[string]any{"channels": want})
			case strings.HasPrefix(path, "/lookup") && !view.sees(topic):
				same(who, path, code, body, 404, map[string]string{"message": "TOPIC_NOT_FOUND"})
			case strings.HasPrefix(path, "/lookup"):
				want := decode(t, truth(path))
				want["channels"] = keep(want["channels"], func(c string) bool { return view.subscribes(topic, c) })
				same(who, path, code, body, 200, want)
			case path == "/nodes":
				want := decode(t, truth(path))
				producers := []any{}
				for _, p := range want["producers"].([]any) {
					p := p.(map[string]any)
					var ts, tombs []any
					for i, tp := range p["topics"].([]any) {
						if view.sees(tp.(string)) {
							ts, tombs = append(ts, tp), append(tombs, p["tombstones"].([]any)[i])
						}
					}
					if len(ts) > 0 {
						p["topics"], p["tombstones"] = ts, tombs
						producers = append(producers, p)
					}
				}
				want["producers"] = producers
				same(who, path, code, body, 200, want)
			}
		}
	}
	// the refusals are counted by route and status
	if v, err := metric(d, `nsqlookupd_http_requests_total{code="401",method="GET",route="/topics"}`); err != nil || v != 2 {
		t.Errorf(`/topics answered 401: %v (%v); want 2 (no secret, a refused one)`, v, err)
	}
	// what the tenants saw was not nothing
	if _, body := getAs(t, tenantClient, d, "/nodes", "secret-b"); !strings.Contains(body, `"tombstones":[false,true],"topics":["tenant_b.payments","tenant_b.refunds"]`) {
		t.Errorf("tenant B's /nodes: %s; want its two topics, one tombstoned", body)
	}
	if _, body := getAs(t, tenantClient, d, "/lookup?topic=tenant_b.payments", "secret-b"); !strings.HasPrefix(body, `{"channels":["archive"],"producers":[{`) {
		t.Errorf("tenant B's /lookup: %s; want channel archive alone, and the producer", body)
	}
}

// clientFrom returns a client that sends its requests from ip, with room
// for many concurrent connections.
func clientFrom(ip string) *http.Client {
	return &http.Client{Timeout: 20 * time.Second, Transport: &http.Transport{
		DialContext:         (&net.Dialer{LocalAddr: &net.TCPAddr{IP: net.ParseIP(ip)}}).DialContext,
		MaxIdleConnsPerHost: 1000,
	}}
}

// fetchAs is getAs for goroutines: an error is part of the answer.
func fetchAs(client *http.Client, d *lookupd, pathAndQuery, secret string) string {
	req, _ := http.NewRequest(http.MethodGet, d.url(pathAndQuery), nil)
	if secret != "" {
		req.Header.Set("Authorization", "Bearer "+secret)
	}
	resp, err := client.Do(req)
	if err != nil {
		return err.Error()
	}
	defer resp.Body.Close()
	body, _ := io.ReadAll(resp.Body)
	return fmt.Sprintf("%d %s", resp.StatusCode, body)
}

// TestAuthCache: 1,000 concurrent requests with a new secret make one
// query; after its ttl a secret is queried again; 100,000 distinct bad
// secrets (hostile) cost a bounded number of queries and cache entries,
// and a cached good secret of the same source keeps working.
func TestAuthCache(t *testing.T) {
	t.Parallel()
	a := startAuthd(t)
	d := startAuthLookupd(t, a)
	n := startAuthNSQD(t, a, d.TCPAddr)
	n.publish(t, "tenant_a.orders", "a1")
	wantA := `200 {"topics":["tenant_a.orders"]}`
	eventually(t, registerTimeout, func() (bool, string) {
		got := fetchAs(tenantClient, d, "/topics", "secret-short") // registered: the secret is A's
		return got == wantA, got
	})

	// 1,000 at once, the query held until all are sent
	hold := make(chan struct{})
	a.mu.Lock()
	a.hold = hold
	a.mu.Unlock()
	client := clientFrom("127.0.0.2")
	const n1k = 1000
	answers := make(chan string, n1k)
	var started sync.WaitGroup
	for range n1k {
		started.Add(1)
		go func() {
			started.Done()
			answers <- fetchAs(client, d, "/topics", "secret-a")
		}()
	}
	started.Wait()
	eventually(t, registerTimeout, func() (bool, string) { return a.count("secret-a") == 1, "no query yet" })
	a.mu.Lock()
	a.hold = nil
	a.mu.Unlock()
	close(hold)
	for range n1k {
		if got := <-answers; got != wantA {
			t.Fatalf("a concurrent request: got %s; want %s", got, wantA)
		}
	}
	if q := a.count("secret-a"); q != 1 {
		t.Errorf("%d concurrent requests with one new secret made %d queries; want 1", n1k, q)
	}

	// the ttl: secret-short's is one second
	before := a.count("secret-short")
	if got := fetchAs(tenantClient, d, "/topics", "secret-short"); got != wantA || a.count("secret-short") != before {
		t.Fatalf("within the ttl: got %s and %d queries; want %s and %d", got, a.count("secret-short"), wantA, before)
	}
	eventually(t, registerTimeout, func() (bool, string) {
		fetchAs(tenantClient, d, "/topics", "secret-short")
		return a.count("secret-short") == before+1, "no new query after the ttl"
	})

	// 100,000 distinct bad secrets from one source, 8 at a time
	hostile := clientFrom("127.0.0.3")
	if got := fetchAs(hostile, d, "/topics", "secret-a"); got != wantA {
		t.Fatalf("the good secret from the hostile source: %s", got)
	}
	queriesBefore := a.total()
	start := time.Now()
	const nBad = 100_000
	var refused, limited, other atomic.Int64
	var next atomic.Int64
	var wg sync.WaitGroup
	for range 8 {
		wg.Add(1)
		go func() {
			defer wg.Done()
			for i := next.Add(1); i <= nBad; i = next.Add(1) {
				switch got := fetchAs(hostile, d, "/lookup?topic=tenant_a.orders", fmt.Sprintf("bad-%d", i)); got {
				case `401 {"message":"AUTH_FAILED"}`:
					refused.Add(1)
				case `429 {"message":"AUTH_RATE_LIMITED"}`:
					limited.Add(1)
				default:
					if other.Add(1) == 1 {
						t.Errorf("a bad secret: got %s", got)
					}
				}
			}
		}()
	}
	wg.Wait()
	elapsed := time.Since(start)
	queries := a.total() - queriesBefore
	// the budget: 32 refusals, then one every 2 s
	if bound := 32 + int(elapsed/(2*time.Second)) + 1; queries > bound {
		t.Errorf("%d bad secrets in %s made %d queries; want at most %d", nBad, elapsed.Round(time.Millisecond), queries, bound)
	}
	t.Logf("%d bad secrets in %s: %d refused (a query each), %d answered 429", nBad, elapsed.Round(time.Millisecond), refused.Load(), limited.Load())
	if v, err := metric(d, `nsqlookupd_auth_cache_entries{kind="refused"}`); err != nil || v > 16384 || v < 1 {
		t.Errorf("refusals cached: %v (%v); want 1 to 16384", v, err)
	}
	if v, err := metric(d, `nsqlookupd_auth_cache_entries{kind="allowed"}`); err != nil || v != 3 {
		t.Errorf("states cached: %v (%v); want 3 (secret-a from 127.0.0.2 and .3, secret-short from .2)", v, err)
	}
	for _, c := range []*http.Client{hostile, tenantClient} {
		if got := fetchAs(c, d, "/topics", "secret-a"); got != wantA {
			t.Errorf("the good secret after the flood: got %s; want %s", got, wantA)
		}
	}
}

// TestAuthServerDown: the auth server is killed mid-run. Cached secrets
// keep answering, filtered; a secret that needs a query gets 503; nothing
// unfiltered is ever answered; nsqd's registrations go on; the failing
// server is logged once a minute. A server that accepts and never answers
// gives 503 too.
func TestAuthServerDown(t *testing.T) {
	t.Parallel()
	a := startAuthd(t)
	d := startAuthLookupd(t, a, "--http-client-request-timeout=500ms")
	n := startAuthNSQD(t, a, d.TCPAddr)
	n.publish(t, "tenant_a.orders", "a1")
	n.publish(t, "tenant_b.payments", "b1")
	eventually(t, registerTimeout, func() (bool, string) {
		got := fetchAs(tenantClient, d, "/topics", "secret-a")
		return got == `200 {"topics":["tenant_a.orders"]}`, got
	})

	// a reader with A's cached secret, all along: never a word of B's
	stop := make(chan struct{})
	var leaks []string
	var reads atomic.Int64
	var readerDone sync.WaitGroup
	readerDone.Add(1)
	go func() {
		defer readerDone.Done()
		paths := []string{"/topics", "/nodes", "/lookup?topic=tenant_b.payments", "/channels?topic=tenant_b.payments", "/lookup?topic=tenant_a.orders"}
		for i := 0; ; i++ {
			select {
			case <-stop:
				return
			default:
			}
			path := paths[i%len(paths)]
			got := fetchAs(tenantClient, d, path, "secret-a")
			reads.Add(1)
			if strings.Contains(got, "tenant_b") || (!strings.HasPrefix(got, "200 ") && !strings.HasPrefix(got, "404 ")) {
				leaks = append(leaks, path+": "+got)
			}
		}
	}()
	eventually(t, registerTimeout, func() (bool, string) { return reads.Load() > 10, "the reader has not started" })

	a.kill()
	for i := range 5 {
		if got := fetchAs(tenantClient, d, "/topics", fmt.Sprintf("secret-new-%d", i)); got != `503 {"message":"AUTH_UNAVAILABLE"}` {
			t.Errorf("a new secret while the server is down: got %s; want 503 AUTH_UNAVAILABLE", got)
		}
	}
	if got := fetchAs(tenantClient, d, "/lookup?topic=tenant_b.payments", "secret-b"); got != `503 {"message":"AUTH_UNAVAILABLE"}` {
		t.Errorf("tenant B's first request while the server is down: got %s; want 503", got)
	}
	// registrations go on over TCP, and the cached secret sees the new topic
	n.publish(t, "tenant_a.new", "n1")
	eventually(t, registerTimeout, func() (bool, string) {
		got := fetchAs(tenantClient, d, "/topics", "secret-a")
		return got == `200 {"topics":["tenant_a.new","tenant_a.orders"]}`, got
	})
	reads.Store(0)
	eventually(t, registerTimeout, func() (bool, string) { return reads.Load() > 50, "the reader has stopped" })
	close(stop)
	readerDone.Wait()
	if len(leaks) > 0 {
		t.Errorf("%d answers to A's cached secret were not A's filtered view, the first: %s", len(leaks), leaks[0])
	}
	failure := regexp.MustCompile(`WARNING: AUTH: failed to auth against ` + regexp.QuoteMeta(a.addr) + ` - `)
	if got := len(failure.FindAllString(d.text(), -1)); got != 1 {
		t.Errorf("%d log lines for the failing server; want 1 (once a minute)", got)
	}
	if v, err := metric(d, `nsqlookupd_auth_queries_total{result="failed"}`); err != nil || v != 6 {
		t.Errorf(`nsqlookupd_auth_queries_total{result="failed"}: %v (%v); want 6`, v, err)
	}

	// a server that accepts and never answers
	h := startAuthd(t)
	h.hold = make(chan struct{}) // never closed: the server's Close ends the queries
	d2 := startAuthLookupd(t, h, "--http-client-request-timeout=300ms")
	if got := fetchAs(tenantClient, d2, "/topics", "secret-a"); got != `503 {"message":"AUTH_UNAVAILABLE"}` {
		t.Errorf("a server that never answers: got %s; want 503 AUTH_UNAVAILABLE", got)
	}
}
