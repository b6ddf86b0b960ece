package nsqlookupd

import (
	"fmt"
	"net/http"
	"runtime"
	"strconv"
	"sync"
	"time"

	"github.com/prometheus/client_golang/prometheus"
	"github.com/prometheus/client_golang/prometheus/collectors"
	"github.com/prometheus/client_golang/prometheus/promhttp"

	"github.com/lookupd/nsqlookupd/internal/lg"
	"github.com/lookupd/nsqlookupd/internal/version"
)

// metrics is what GET /metrics reports (docs/wire.md, Metrics), on a
// Prometheus registry this daemon owns, so that a test process can run
// many daemons. Every count is a client_golang vector; the hot path, a V1
// command, uses its series resolved once, at start-up. No label value
// comes from client input: a method or a status the daemon does not know
// is "other", a route is a declared one or what the router answered.
type metrics struct {
	registry *prometheus.Registry
	handler  http.Handler // GET /metrics: the registry in the text format

	// commands[i][result] counts commands[i] (the V1 command table; the
	// last is "invalid": any other verb, or a line too long to read) by
	// result, 0 ok and 1 error.
	commands [][2]prometheus.Counter
	requests *prometheus.CounterVec   // route, method, code
	duration *prometheus.HistogramVec // route
	// answers holds the series of each (route, method, code) answered so
	// far: a request finds its own without hashing labels or taking the
	// vectors' locks (a tenth of what a /lookup costs the daemon).
	answers sync.Map // answerKey -> answerSeries
}

type answerKey struct {
	route, method string
	code          int
}

type answerSeries struct {
	count    prometheus.Counter
	duration prometheus.Observer
}

// durationBuckets of nsqlookupd_http_request_duration_seconds: fine where
// API answers are (0.1 to 10 ms), coarse up to the longest pprof profile.
var durationBuckets = []float64{.0001, .00025, .0005, .001, .0025, .005, .01, .025, .1, .5, 2.5, 10}

// newMetrics registers every series for l.
func newMetrics(l *NSQLookupd) *metrics {
	m := &metrics{registry: prometheus.NewRegistry()}
	commands := prometheus.NewCounterVec(prometheus.CounterOpts{
		Name: "nsqlookupd_tcp_commands_total",
		Help: "V1 commands received on registration connections, by command and result.",
	}, []string{"command", "result"})
	m.requests = prometheus.NewCounterVec(prometheus.CounterOpts{
		Name: "nsqlookupd_http_requests_total",
		Help: "HTTP requests answered, by route pattern (or not_found, method_not_allowed, redirect), method and status.",
	}, []string{"route", "method", "code"})
	m.duration = prometheus.NewHistogramVec(prometheus.HistogramOpts{
		Name:    "nsqlookupd_http_request_duration_seconds",
		Help:    "Time to answer an HTTP request, by route.",
		Buckets: durationBuckets,
	}, []string{"route"})
	counter := func(name, help string, f func() float64) prometheus.Collector {
		return prometheus.NewCounterFunc(prometheus.CounterOpts{Name: name, Help: help}, f)
	}
	m.registry.MustRegister(
		collectors.NewGoCollector(),
		collectors.NewProcessCollector(collectors.ProcessCollectorOpts{}),
		prometheus.NewGaugeFunc(prometheus.GaugeOpts{
			Name:        "nsqlookupd_build_info",
			Help:        "Always 1; the labels give the version this daemon reports and the Go release it was built with.",
			ConstLabels: prometheus.Labels{"version": version.Binary, "goversion": runtime.Version()},
		}, func() float64 { return 1 }),
		registryCollector{l},
		prometheus.NewGaugeFunc(prometheus.GaugeOpts{
			Name: "nsqlookupd_tcp_connections",
			Help: "Open registration connections.",
		}, func() float64 {
			open, _ := l.tcpServer.counts()
			return float64(open)
		}),
		counter("nsqlookupd_tcp_connections_total", "Registration connections accepted.", func() float64 {
			_, accepted := l.tcpServer.counts()
			return float64(accepted)
		}),
		counter("nsqlookupd_producer_evictions_total",
			"Registration connections closed because the producer fell silent (the producer read timeout).",
			func() float64 { return float64(l.evictions.Load()) }),
		counter("nsqlookupd_panics_total", "Panics recovered at a registration connection or HTTP request boundary.",
			func() float64 { return float64(l.panics.Load()) }),
		counter("nsqlookupd_log_lines_dropped_total", "Log lines that could not be written (stderr closed or failing); the daemon serves on.",
			func() float64 { return float64(lg.Dropped(l.opts.Logger)) }),
		commands, m.requests, m.duration,
	)

	m.commands = make([][2]prometheus.Counter, len(commandTable)+1)
	for i := range m.commands {
		verb := "invalid"
		if i < len(commandTable) {
			verb = commandTable[i].verb
		}
		m.commands[i] = [2]prometheus.Counter{commands.WithLabelValues(verb, "ok"), commands.WithLabelValues(verb, "error")}
	}
	for _, method := range methods {
		m.expect("not_found", method, http.StatusNotFound)
		if method != http.MethodOptions { // the router answers OPTIONS itself, never 405
			m.expect("method_not_allowed", method, http.StatusMethodNotAllowed)
		}
	}
	m.handler = promhttp.HandlerFor(m.registry, promhttp.HandlerOpts{ErrorLog: promLogger{l.logf}})
	return m
}

// methods are the methods counted under their own name; any other is
// "other".
var methods = []string{"GET", "HEAD", "POST", "PUT", "PATCH", "DELETE", "CONNECT", "OPTIONS", "TRACE", "other"}

func methodLabel(method string) string {
	for _, m := range methods {
		if m == method {
			return m
		}
	}
	return "other"
}

// codeLabel returns the label of a status: one the daemon answers with, or
// "other" for one from a handler it does not own.
func codeLabel(code int) string {
	switch code {
	case 200, 301, 307, 400, 401, 403, 404, 405, 429, 500, 503: // 401, 429, 503: auth (internal/auth)
		return strconv.Itoa(code)
	}
	return "other"
}

// expect exports the series of route, method and codes at zero.
func (m *metrics) expect(route, method string, codes ...int) {
	for _, code := range codes {
		m.requests.WithLabelValues(route, methodLabel(method), codeLabel(code))
	}
	m.duration.WithLabelValues(route)
}

// expectRoute exports the series a route (method, path) answering codes
// can add: its own, OPTIONS on its path, and the router's redirects to it
// (301 for GET, 307 for any other method).
func (m *metrics) expectRoute(method, path string, codes []int) {
	m.expect(path, method, codes...)
	m.expect(path, http.MethodOptions, http.StatusOK)
	if method == http.MethodGet {
		m.expect("redirect", method, http.StatusMovedPermanently)
	} else {
		m.expect("redirect", method, http.StatusTemporaryRedirect)
	}
}

// request counts one answer of route with code to method, that took d.
func (m *metrics) request(route, method string, code int, d time.Duration) {
	k := answerKey{route, methodLabel(method), code}
	s, ok := m.answers.Load(k)
	if !ok {
		s, _ = m.answers.LoadOrStore(k, answerSeries{
			m.requests.WithLabelValues(route, k.method, codeLabel(code)), m.duration.WithLabelValues(route)})
	}
	s.(answerSeries).count.Inc()
	s.(answerSeries).duration.Observe(d.Seconds())
}

// command counts one V1 command, commandTable[i] (or "invalid" for
// len(commandTable)), that answered err.
func (m *metrics) command(i int, err error) {
	result := 0
	if err != nil {
		result = 1
	}
	m.commands[i][result].Inc()
}

var (
	producersDesc = prometheus.NewDesc("nsqlookupd_producers",
		"Identified producers: registration connections past IDENTIFY.", nil, nil)
	topicsDesc = prometheus.NewDesc("nsqlookupd_topics",
		"Topic registrations (what /topics lists).", nil, nil)
	channelsDesc = prometheus.NewDesc("nsqlookupd_channels",
		"Channel registrations, over all topics.", nil, nil)
	registrationsDesc = prometheus.NewDesc("nsqlookupd_registrations",
		"(producer, topic or channel registration) pairs.", nil, nil)
	tombstonesDesc = prometheus.NewDesc("nsqlookupd_tombstones",
		"(producer, topic) tombstones still within --tombstone-lifetime.", nil, nil)
)

// registryCollector exports the registry's sizes from one call of Stats
// per scrape.
type registryCollector struct {
	l *NSQLookupd
}

func (c registryCollector) Describe(ch chan<- *prometheus.Desc) {
	for _, d := range []*prometheus.Desc{producersDesc, topicsDesc, channelsDesc, registrationsDesc, tombstonesDesc} {
		ch <- d
	}
}

func (c registryCollector) Collect(ch chan<- prometheus.Metric) {
	s := c.l.db.Stats(c.l.clock.Now())
	for desc, n := range map[*prometheus.Desc]int{
		producersDesc:     s.Producers,
		topicsDesc:        s.Topics,
		channelsDesc:      s.Channels,
		registrationsDesc: s.Registrations,
		tombstonesDesc:    s.Tombstones,
	} {
		ch <- prometheus.MustNewConstMetric(desc, prometheus.GaugeValue, float64(n))
	}
}

// promLogger sends promhttp's errors (a collector that failed) to the log.
type promLogger struct {
	logf lg.AppLogFunc
}

func (p promLogger) Println(v ...interface{}) {
	p.logf(lg.ERROR, "METRICS: %s", fmt.Sprint(v...))
}

// ServeHTTP serves a request and counts its answer.
func (s *httpServer) ServeHTTP(w http.ResponseWriter, req *http.Request) {
	start := time.Now()
	sw := &statusWriter{ResponseWriter: w}
	s.router.ServeHTTP(sw, req)
	s.nsqlookupd.metrics.request(s.route(req, sw.status()), req.Method, sw.status(), time.Since(start))
}

// route returns the route label of a request answered with code: the
// route's path, or what the router answered for want of one. Routes have
// no parameters, so the path of a request a route answered is the route's
// pattern.
func (s *httpServer) route(req *http.Request, code int) string {
	switch h, _, _ := s.router.Lookup(req.Method, req.URL.Path); {
	case code == http.StatusMovedPermanently || code == http.StatusTemporaryRedirect:
		return "redirect" // no route redirects: the router does
	case h != nil:
		return req.URL.Path
	case code == http.StatusMethodNotAllowed:
		return "method_not_allowed"
	case req.Method == http.MethodOptions && code == http.StatusOK:
		return req.URL.Path // the router's Allow answer for a route's path
	}
	return "not_found"
}

// statusWriter records the status written through it.
type statusWriter struct {
	http.ResponseWriter
	code int // the first status written; 0 until then
}

func (w *statusWriter) WriteHeader(code int) {
	if w.code == 0 && code >= 200 {
		w.code = code
	}
	w.ResponseWriter.WriteHeader(code)
}

func (w *statusWriter) Write(b []byte) (int, error) {
	if w.code == 0 {
		w.code = http.StatusOK
	}
	return w.ResponseWriter.Write(b)
}

// Unwrap lets http.ResponseController (pprof sets write deadlines through
// it) reach the connection.
func (w *statusWriter) Unwrap() http.ResponseWriter {
	return w.ResponseWriter
}

// status returns the status sent: 200 when the handler wrote nothing.
func (w *statusWriter) status() int {
	if w.code == 0 {
		return http.StatusOK
	}
	return w.code
}
