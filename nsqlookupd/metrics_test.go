package nsqlookupd

import (
	"bufio"
	"fmt"
	"math/rand/v2"
	"net/http"
	"net/http/httptest"
	"net/url"
	"runtime"
	"slices"
	"strconv"
	"strings"
	"sync"
	"testing"
	"time"

	"github.com/julienschmidt/httprouter"

	"github.com/lookupd/nsqlookupd/internal/http_api"
	"github.com/lookupd/nsqlookupd/internal/lg"
	"github.com/lookupd/nsqlookupd/internal/test"
)

// samples are the samples of one scrape, keyed by series as the text
// format writes them: name{label="value",...}, labels in name order.
type samples map[string]float64

// series returns the key of a series: name and label, value pairs.
func series(name string, labels ...string) string {
	if len(labels) == 0 {
		return name
	}
	pairs := make([]string, 0, len(labels)/2)
	for i := 0; i+1 < len(labels); i += 2 {
		pairs = append(pairs, labels[i]+"="+strconv.Quote(labels[i+1]))
	}
	slices.Sort(pairs)
	return name + "{" + strings.Join(pairs, ",") + "}"
}

// requests is the key of an nsqlookupd_http_requests_total series.
func requests(route, method, code string) string {
	return series("nsqlookupd_http_requests_total", "route", route, "method", method, "code", code)
}

// durationCount is the key of a route's request count in the histogram.
func durationCount(route string) string {
	return series("nsqlookupd_http_request_duration_seconds_count", "route", route)
}

func commands(command, result string) string {
	return series("nsqlookupd_tcp_commands_total", "command", command, "result", result)
}

// scrape GETs /metrics over the wire and parses the text format.
func scrape(tb testing.TB, l *NSQLookupd) samples {
	tb.Helper()
	resp, body := httpDo(tb, l, "GET", "/metrics")
	if resp.StatusCode != http.StatusOK {
		tb.Fatalf("GET /metrics: status %d: %s", resp.StatusCode, body)
	}
	if ct := resp.Header.Get("Content-Type"); !strings.HasPrefix(ct, "text/plain; version=0.0.4") {
		tb.Fatalf("GET /metrics: Content-Type %q; want the text format", ct)
	}
	s := samples{}
	sc := bufio.NewScanner(strings.NewReader(body))
	for sc.Scan() {
		line := sc.Text()
		if line == "" || line[0] == '#' {
			continue
		}
		i := strings.LastIndexByte(line, ' ')
		v, err := strconv.ParseFloat(line[i+1:], 64)
		if i < 0 || err != nil {
			tb.Fatalf("GET /metrics: bad sample line %q", line)
		}
		if _, dup := s[line[:i]]; dup {
			tb.Fatalf("GET /metrics: series %s twice", line[:i])
		}
		s[line[:i]] = v
	}
	return s
}

// get returns the value of series k, failing the test if it is absent.
func (s samples) get(tb testing.TB, k string) float64 {
	tb.Helper()
	v, ok := s[k]
	if !ok {
		tb.Fatalf("series %s absent from /metrics", k)
	}
	return v
}

// keys returns the sorted series of s.
func (s samples) keys() []string {
	keys := make([]string, 0, len(s))
	for k := range s {
		keys = append(keys, k)
	}
	slices.Sort(keys)
	return keys
}

// TestMetricsFreshDaemon checks that a fresh daemon shows every series of
// docs/wire.md, Metrics, with the Go and process collectors.
func TestMetricsFreshDaemon(t *testing.T) {
	t.Parallel()
	l := startLookupd(t, nil)
	s := scrape(t, l)
	for _, k := range []string{
		series("nsqlookupd_build_info", "version", "1.3.0", "goversion", runtime.Version()),
		"nsqlookupd_producers", "nsqlookupd_topics", "nsqlookupd_channels",
		"nsqlookupd_registrations", "nsqlookupd_tombstones",
		"nsqlookupd_tcp_connections", "nsqlookupd_tcp_connections_total",
		commands("PING", "ok"), commands("invalid", "error"),
		"nsqlookupd_producer_evictions_total",
		requests("/lookup", "GET", "200"), requests("/lookup", "GET", "500"),
		requests("not_found", "GET", "404"), requests("method_not_allowed", "POST", "405"),
		requests("redirect", "GET", "301"), requests("/topic/create", "OPTIONS", "200"),
		durationCount("/lookup"),
		"nsqlookupd_panics_total", "nsqlookupd_log_lines_dropped_total",
	} {
		want := 0.0
		if strings.HasPrefix(k, "nsqlookupd_build_info") {
			want = 1
		}
		if got := s.get(t, k); got != want {
			t.Errorf("%s: got %v; want %v", k, got, want)
		}
	}
	for _, k := range []string{"go_goroutines", "go_memstats_heap_alloc_bytes", "process_open_fds", "process_resident_memory_bytes"} {
		s.get(t, k)
	}
	// 5 commands x 2 results, no more
	n := 0
	for k := range s {
		if strings.HasPrefix(k, "nsqlookupd_tcp_commands_total{") {
			n++
		}
	}
	if want := 2 * (len(commandTable) + 1); n != want {
		t.Errorf("nsqlookupd_tcp_commands_total: got %d series; want %d", n, want)
	}
}

// registryGauges are the registry's sizes as /metrics shows them.
type registryGauges struct {
	producers, topics, channels, registrations, tombstones float64
}

func readRegistryGauges(tb testing.TB, l *NSQLookupd) registryGauges {
	tb.Helper()
	s := scrape(tb, l)
	return registryGauges{
		producers:     s.get(tb, "nsqlookupd_producers"),
		topics:        s.get(tb, "nsqlookupd_topics"),
		channels:      s.get(tb, "nsqlookupd_channels"),
		registrations: s.get(tb, "nsqlookupd_registrations"),
		tombstones:    s.get(tb, "nsqlookupd_tombstones"),
	}
}

// TestMetricsRegistry follows the registry gauges through IDENTIFY,
// REGISTER, UNREGISTER, HTTP creates and deletes, tombstones and their
// expiry (on the fake clock) and disconnects.
func TestMetricsRegistry(t *testing.T) {
	t.Parallel()
	clock := newFakeClock()
	l := startLookupd(t, func(o *Options) { o.TombstoneLifetime = 45 * time.Second }, clock.install)
	check := func(step string, want registryGauges) {
		t.Helper()
		if got := readRegistryGauges(t, l); got != want {
			t.Fatalf("%s: got %+v; want %+v", step, got, want)
		}
	}
	// eventually is check for what a disconnect changes: the connection's
	// goroutine cleans up after the close.
	eventually := func(step string, want registryGauges) {
		t.Helper()
		var got registryGauges
		ok := false
		for end := time.Now().Add(5 * time.Second); !ok && time.Now().Before(end); time.Sleep(5 * time.Millisecond) {
			got = readRegistryGauges(t, l)
			ok = got == want
		}
		if !ok {
			t.Fatalf("%s: got %+v; want %+v", step, got, want)
		}
	}

	check("fresh", registryGauges{})
	p1 := connectProducer(t, l, 4150, 4151)
	check("IDENTIFY", registryGauges{producers: 1})
	p1.mustOK("REGISTER t1 c1")
	check("REGISTER t1 c1", registryGauges{producers: 1, topics: 1, channels: 1, registrations: 2})
	p1.mustOK("REGISTER t1 c2")
	p1.mustOK("REGISTER t1 c2") // again: nothing changes
	check("REGISTER t1 c2", registryGauges{producers: 1, topics: 1, channels: 2, registrations: 3})
	p2 := connectProducer(t, l, 4250, 4251)
	p2.mustOK("REGISTER t1 c1")
	check("second producer", registryGauges{producers: 2, topics: 1, channels: 2, registrations: 5})

	p1.mustOK("UNREGISTER t1 c2") // c2 is not ephemeral: it stays, without producers
	check("UNREGISTER t1 c2", registryGauges{producers: 2, topics: 1, channels: 2, registrations: 4})
	httpDo(t, l, "POST", "/channel/delete?topic=t1&channel=c2")
	check("/channel/delete", registryGauges{producers: 2, topics: 1, channels: 1, registrations: 4})
	httpDo(t, l, "POST", "/topic/create?topic=t2")
	httpDo(t, l, "POST", "/channel/create?topic=t2&channel=c9")
	check("/topic/create, /channel/create", registryGauges{producers: 2, topics: 2, channels: 2, registrations: 4})

	httpDo(t, l, "POST", "/topic/tombstone?topic=t1&node=127.0.0.1:4151")
	check("/topic/tombstone", registryGauges{producers: 2, topics: 2, channels: 2, registrations: 4, tombstones: 1})
	clock.Advance(45*time.Second - 1)
	check("tombstone just alive", registryGauges{producers: 2, topics: 2, channels: 2, registrations: 4, tombstones: 1})
	clock.Advance(1)
	check("tombstone expired", registryGauges{producers: 2, topics: 2, channels: 2, registrations: 4})

	httpDo(t, l, "POST", "/topic/tombstone?topic=*&node=127.0.0.1:4251")
	check("tombstone p2", registryGauges{producers: 2, topics: 2, channels: 2, registrations: 4, tombstones: 1})
	p2.mustOK("UNREGISTER t1") // its tombstone goes with its registration
	check("UNREGISTER t1", registryGauges{producers: 2, topics: 2, channels: 2, registrations: 2})

	p2.mustOK("REGISTER t3#ephemeral")
	check("REGISTER t3#ephemeral", registryGauges{producers: 2, topics: 3, channels: 2, registrations: 3})
	p2.conn.Close()
	eventually("p2 disconnected", registryGauges{producers: 1, topics: 2, channels: 2, registrations: 2})

	httpDo(t, l, "POST", "/topic/delete?topic=t1")
	check("/topic/delete t1", registryGauges{producers: 1, topics: 1, channels: 1})
	p1.conn.Close()
	eventually("p1 disconnected", registryGauges{topics: 1, channels: 1})
}

// TestMetricsTCP checks the connection gauges and counters and the
// command counters, with their labels.
func TestMetricsTCP(t *testing.T) {
	t.Parallel()
	l := startLookupd(t, nil)
	before := scrape(t, l)

	p := connectProducer(t, l, 4150, 4151) // IDENTIFY ok
	p.mustOK("PING")
	p.mustOK("REGISTER t c")
	p.mustOK("UNREGISTER t c")
	p.cmd("REGISTER bad!") // REGISTER error, and close
	p.expectClosed()

	c := dial(t, l)
	c.cmd("UNREGISTER t") // not identified: error
	c = dial(t, l)
	c.cmd("PING") // before IDENTIFY: ok
	c.cmd("FOO")  // invalid
	c = dial(t, l)
	c.write(strings.Repeat("x", maxCommandLine+1) + "\n") // invalid: too long to read
	c.mustRead()
	c = dial(t, l)
	c.identifyRaw("{}") // IDENTIFY error
	c = dial(t, l)
	c.cmd("ping") // verbs are upper-case: invalid

	live := dial(t, l)
	live.mustOK("PING")

	want := map[string]float64{
		commands("PING", "ok"):          3,
		commands("IDENTIFY", "ok"):      1,
		commands("IDENTIFY", "error"):   1,
		commands("REGISTER", "ok"):      1,
		commands("REGISTER", "error"):   1,
		commands("UNREGISTER", "ok"):    1,
		commands("UNREGISTER", "error"): 1,
		commands("invalid", "error"):    3,
		commands("PING", "error"):       0,
		commands("invalid", "ok"):       0,
	}
	after := scrape(t, l)
	for k, n := range want {
		if got := after.get(t, k) - before.get(t, k); got != n {
			t.Errorf("%s: went up by %v; want %v", k, got, n)
		}
	}
	if got := after.get(t, "nsqlookupd_tcp_connections_total"); got != 7 {
		t.Errorf("nsqlookupd_tcp_connections_total: got %v; want 7", got)
	}
	// The daemon has closed every connection but live.
	open := func(want float64) func() bool {
		return func() bool { return scrape(t, l).get(t, "nsqlookupd_tcp_connections") == want }
	}
	test.Eventually(t, 5*time.Second, open(1))
	live.conn.Close()
	test.Eventually(t, 5*time.Second, open(0))
}

// TestMetricsEvictions checks that a producer closed for silence counts as
// an eviction and leaves the registry gauges.
func TestMetricsEvictions(t *testing.T) {
	t.Parallel()
	const timeout = time.Minute
	clk := newFakeClock()
	l := startLookupd(t, func(o *Options) { o.ProducerReadTimeout = timeout }, clk.install)
	p := connectProducer(t, l, 1, 11)
	p.mustOK("REGISTER t c")
	s := scrape(t, l)
	if e, n := s.get(t, "nsqlookupd_producer_evictions_total"), s.get(t, "nsqlookupd_producers"); e != 0 || n != 1 {
		t.Fatalf("before the timeout: %v evictions, %v producers; want 0, 1", e, n)
	}
	clk.Advance(timeout)
	p.expectClosed()
	test.Eventually(t, ioTimeout, func() bool {
		s := scrape(t, l)
		return s.get(t, "nsqlookupd_producer_evictions_total") == 1 &&
			s.get(t, "nsqlookupd_producers") == 0 && s.get(t, "nsqlookupd_registrations") == 0
	})
}

// TestMetricsHTTP sends one request of each kind and checks that it moves
// exactly its own series: route pattern or not_found, method_not_allowed,
// redirect; method, unknown ones as "other"; status.
func TestMetricsHTTP(t *testing.T) {
	t.Parallel()
	logs := newLogLines(t)
	l := startLookupd(t, func(o *Options) { o.Logger = logs })
	cases := []struct {
		method, path       string
		route, label, code string
	}{
		{"GET", "/ping", "/ping", "GET", "200"},
		{"GET", "/lookup?topic=none", "/lookup", "GET", "404"},
		{"GET", "/lookup", "/lookup", "GET", "400"},
		{"POST", "/topic/create?topic=a", "/topic/create", "POST", "200"},
		{"GET", "/lookup?topic=a", "/lookup", "GET", "200"},
		{"POST", "/lookup", "method_not_allowed", "POST", "405"},
		{"HEAD", "/ping", "method_not_allowed", "HEAD", "405"},
		{"BREW", "/ping", "method_not_allowed", "other", "405"},
		{"get", "/ping", "method_not_allowed", "other", "405"},
		{"GET", "/nope", "not_found", "GET", "404"},
		{"BREW", "/nope", "not_found", "other", "404"},
		{"OPTIONS", "/lookup", "/lookup", "OPTIONS", "200"},
		{"OPTIONS", "/nope", "not_found", "OPTIONS", "404"},
		{"GET", "/lookup/?topic=a", "redirect", "GET", "301"},
		{"GET", "/LOOKUP?topic=a", "redirect", "GET", "301"},
		{"GET", "//lookup", "redirect", "GET", "301"},
		{"POST", "/topic/create/?topic=x", "redirect", "POST", "307"},
		{"GET", "/debug/pprof/cmdline", "/debug/pprof/cmdline", "GET", "200"},
		{"POST", "/debug/pprof/symbol", "/debug/pprof/symbol", "POST", "200"},
		{"GET", "/debug/pprof/heap?seconds=x", "/debug/pprof/heap", "GET", "400"},
		{"GET", "/metrics", "/metrics", "GET", "200"},
	}
	for _, tc := range cases {
		t.Run(tc.method+" "+tc.path, func(t *testing.T) {
			before := scrape(t, l) // counted as it ends: in the next scrape
			resp, _ := httpDo(t, l, tc.method, tc.path)
			if got := strconv.Itoa(resp.StatusCode); got != tc.code {
				t.Fatalf("status: got %s; want %s", got, tc.code)
			}
			after := scrape(t, l)
			want := map[string]float64{
				requests(tc.route, tc.label, tc.code): 1,
				durationCount(tc.route):               1,
			}
			want[requests("/metrics", "GET", "200")]++
			want[durationCount("/metrics")]++
			for k, v := range after {
				if !strings.HasPrefix(k, "nsqlookupd_http_requests_total{") &&
					!strings.HasPrefix(k, "nsqlookupd_http_request_duration_seconds_count{") {
					continue
				}
				if d := v - before[k]; d != want[k] {
					t.Errorf("%s: went up by %v; want %v", k, d, want[k])
				}
			}
			for k := range want {
				after.get(t, k)
			}
		})
	}
	// a probe, access-logged unless --http-access-log says otherwise
	if logs.find("200 GET /metrics") == "" {
		t.Errorf("GET /metrics: no access line")
	}
	if logs.find("200 GET /ping") == "" {
		t.Errorf("GET /ping: no access line")
	}
}

// TestMetricsWithoutPprof checks that /metrics stays with --disable-pprof,
// and that the pprof paths count as not found.
func TestMetricsWithoutPprof(t *testing.T) {
	t.Parallel()
	l := startLookupd(t, func(o *Options) { o.DisablePprof = true })
	before := scrape(t, l)
	if _, ok := before[durationCount("/debug/pprof/heap")]; ok {
		t.Fatalf("pprof routes have series with --disable-pprof")
	}
	if resp, _ := httpDo(t, l, "GET", "/debug/pprof/heap"); resp.StatusCode != http.StatusNotFound {
		t.Fatalf("GET /debug/pprof/heap: got %d; want 404", resp.StatusCode)
	}
	k := requests("not_found", "GET", "404")
	if got := scrape(t, l).get(t, k) - before.get(t, k); got != 1 {
		t.Fatalf("%s: went up by %v; want 1", k, got)
	}
}

// TestMetricsPanics injects a panic into a registration connection and into
// HTTP handlers of both kinds, and checks that each one counts.
func TestMetricsPanics(t *testing.T) {
	t.Parallel()
	l := startLookupd(t, nil)
	c := dial(t, l)
	c.write(panicVerb + "\n")
	c.expectClosed()
	if got := scrape(t, l).get(t, "nsqlookupd_panics_total"); got != 1 {
		t.Fatalf("after a TCP panic: nsqlookupd_panics_total %v; want 1", got)
	}

	// A second server on the same daemon, with routes that panic, declared
	// as the real ones are.
	s := newHTTPServer(l)
	s.api("GET", "/boom", func(http.ResponseWriter, *http.Request, httprouter.Params) (interface{}, error) {
		panic("injected by TestMetricsPanics")
	}, http_api.V1)
	s.plain("GET", "/boom-plain", http.HandlerFunc(func(http.ResponseWriter, *http.Request) {
		panic("injected by TestMetricsPanics")
	}))
	srv := httptest.NewServer(s)
	defer srv.Close()
	for _, path := range []string{"/boom", "/boom-plain"} {
		resp, err := http.Get(srv.URL + path)
		if err != nil {
			t.Fatal(err)
		}
		resp.Body.Close()
		if resp.StatusCode != http.StatusInternalServerError {
			t.Fatalf("GET %s: got %d; want 500", path, resp.StatusCode)
		}
	}
	s2 := scrape(t, l)
	if got := s2.get(t, "nsqlookupd_panics_total"); got != 3 {
		t.Fatalf("after HTTP panics: nsqlookupd_panics_total %v; want 3", got)
	}
	for _, route := range []string{"/boom", "/boom-plain"} {
		if got := s2.get(t, requests(route, "GET", "500")); got != 1 {
			t.Errorf("%s: %v; want 1", requests(route, "GET", "500"), got)
		}
	}
}

// TestMetricsCardinality sends 10 000 HTTP requests with random methods,
// paths and topics, and registration connections with random commands and
// topics: the set of series must not change, and every request must be
// counted.
func TestMetricsCardinality(t *testing.T) {
	t.Parallel()
	l := startLookupd(t, quietLog)
	before := scrape(t, l)
	const requestsSent, workers = 10000, 4

	methods := []string{"GET", "POST", "HEAD", "PUT", "PATCH", "DELETE", "OPTIONS", "TRACE"}
	// Not /metrics: a scrape costs some 50 ms under the race detector. It
	// is among the fixed requests below.
	routes := []string{"/ping", "/info", "/debug", "/lookup", "/topics", "/channels", "/nodes",
		"/topic/create", "/topic/delete", "/channel/create", "/channel/delete", "/topic/tombstone",
		"/debug/pprof", "/debug/pprof/cmdline", "/debug/pprof/symbol"}
	fixed := [][2]string{{"GET", "/metrics"}, {"POST", "/metrics"}, {"OPTIONS", "/metrics"},
		{"GET", "/metrics/"}, {"GET", "/METRICS"}, {"BREW", "/metrics"}}
	var wg sync.WaitGroup
	errs := make(chan error, workers)
	for w := 0; w < workers; w++ {
		wg.Add(1)
		go func(seed uint64) {
			defer wg.Done()
			rng := rand.New(rand.NewPCG(seed, 42))
			client := &http.Client{
				Timeout:       ioTimeout,
				CheckRedirect: func(*http.Request, []*http.Request) error { return http.ErrUseLastResponse },
			}
			for i := 0; i < requestsSent/workers; i++ {
				method := methods[rng.IntN(len(methods))]
				if rng.IntN(4) == 0 {
					method = randomToken(rng)
				}
				path := routes[rng.IntN(len(routes))]
				if i < len(fixed) {
					method, path = fixed[i][0], fixed[i][1]
				}
				switch rng.IntN(6) {
				case 0:
					path = "/" + randomString(rng, 1+rng.IntN(30))
				case 1:
					path = strings.ToUpper(path)
				case 2:
					path += "/"
				case 3:
					path = "/" + path + "/" + randomString(rng, 3)
				}
				u := &url.URL{Scheme: "http", Host: l.RealHTTPAddr().String(), Path: path,
					RawQuery: "topic=" + url.QueryEscape(randomString(rng, 1+rng.IntN(70))) +
						"&channel=" + url.QueryEscape(randomString(rng, 1+rng.IntN(10))) + "&node=x:1"}
				req, err := http.NewRequest(method, u.String(), nil)
				if err != nil {
					errs <- fmt.Errorf("%s %s: %v", method, u, err)
					return
				}
				resp, err := client.Do(req)
				if err != nil {
					errs <- fmt.Errorf("%s %s: %v", method, u, err)
					return
				}
				resp.Body.Close()
			}
		}(uint64(w))
	}

	// Registration connections with random commands and topics.
	rng := rand.New(rand.NewPCG(7, 7))
	verbs := []string{"PING", "REGISTER", "UNREGISTER", "IDENTIFY", "register", randomToken(rng)}
	for i := 0; i < 100; i++ {
		c := connectProducer(t, l, 5000+i, 6000+i)
		for j := 0; j < 10; j++ {
			line := verbs[rng.IntN(len(verbs))] + " " + randomName(rng) + " " + randomName(rng)
			if ans := c.cmd(line); strings.HasPrefix(ans, "E_") {
				break
			}
		}
		c.conn.Close()
	}

	wg.Wait()
	close(errs)
	for err := range errs {
		t.Fatal(err)
	}
	test.Eventually(t, 5*time.Second, func() bool { return peerCount(l) == 0 })

	after := scrape(t, l)
	if b, a := before.keys(), after.keys(); !slices.Equal(b, a) {
		for _, k := range a {
			if _, ok := before[k]; !ok {
				t.Errorf("new series: %s", k)
			}
		}
		for _, k := range b {
			if _, ok := after[k]; !ok {
				t.Errorf("series gone: %s", k)
			}
		}
	}
	var counted float64
	for k, v := range after {
		if strings.HasPrefix(k, "nsqlookupd_http_requests_total{") {
			counted += v - before[k]
		}
	}
	if counted != requestsSent+1 { // and the first scrape
		t.Errorf("requests counted: %v; want %d", counted, requestsSent+1)
	}
}

// randomString returns n random bytes, any value.
func randomString(rng *rand.Rand, n int) string {
	b := make([]byte, n)
	for i := range b {
		b[i] = byte(rng.IntN(256))
	}
	return string(b)
}

// randomToken returns a random HTTP method: token characters.
func randomToken(rng *rand.Rand) string {
	const chars = "ABCDEFGHIJKLMNOPQRSTUVWXYZabcdefghijklmnopqrstuvwxyz0123456789!#$%&'*+-.^_`|~"
	b := make([]byte, 1+rng.IntN(12))
	for i := range b {
		b[i] = chars[rng.IntN(len(chars))]
	}
	return string(b)
}

// randomName returns a topic or channel name, valid or not.
func randomName(rng *rand.Rand) string {
	const chars = "abcdefghijklmnopqrstuvwxyz0123456789._-#"
	b := make([]byte, 1+rng.IntN(20))
	for i := range b {
		b[i] = chars[rng.IntN(len(chars))]
	}
	if rng.IntN(5) == 0 {
		b[0] = '!'
	}
	return string(b)
}

// discardWriter is an http.ResponseWriter that keeps nothing.
type discardWriter struct {
	h http.Header
}

func (w *discardWriter) Header() http.Header         { return w.h }
func (w *discardWriter) Write(b []byte) (int, error) { return len(b), nil }
func (w *discardWriter) WriteHeader(int)             {}

// BenchmarkScrape times one whole scrape of /metrics (registry sizes, the
// Go and process collectors, the request counts, the text encoding) at
// each registry size. docs/wire.md, Metrics, wants it flat.
func BenchmarkScrape(b *testing.B) {
	for _, sz := range test.Sizes {
		b.Run(sz.Name, func(b *testing.B) {
			l := startLookupd(b, func(o *Options) { o.LogLevel = lg.ERROR })
			fill(l, sz, "topic%d", "ch%d")
			req := httptest.NewRequest("GET", "/metrics", nil)
			w := &discardWriter{h: http.Header{}}
			b.ReportAllocs()
			for b.Loop() {
				l.metrics.handler.ServeHTTP(w, req)
			}
		})
	}
}
