package nsqlookupd

import (
	"fmt"
	"net/http"
	"runtime"
	"sync"
	"sync/atomic"
	"time"

	"github.com/prometheus/client_golang/prometheus"
	"github.com/prometheus/client_golang/prometheus/collectors"
	"github.com/prometheus/client_golang/prometheus/promhttp"

	"github.com/lookupd/nsqlookupd/internal/lg"
	"github.com/lookupd/nsqlookupd/internal/version"
)

// metrics is what GET /metrics reports (SPEC §7), on a registry this daemon
// owns, so that a test process can run many daemons.
//
// Counting costs the hot paths next to nothing, and never an allocation or
// a map lookup: every labelled series a command or a request can touch is
// resolved once, when the daemon starts, into the arrays below. A command
// is a plain add on its connection, published once per read (see
// commandCounts); a request an atomic add and a histogram observation. No
// label value comes from client input, so the set of series is fixed at
// start-up. The registry's sizes
// are counts it keeps as it changes, read once per scrape
// (registryCollector).
type metrics struct {
	registry *prometheus.Registry
	handler  http.Handler // GET /metrics: the registry in the text format

	// tcpCommands[command][result] counts the V1 commands by commandIndex
	// and resultIndex, as each connection publishes its commandCounts.
	tcpCommands [numCommands][numResults]prometheus.Counter

	httpDuration *prometheus.HistogramVec

	mu     sync.Mutex               // guards routes: filled as routes are declared, read by scrapes
	routes map[string]*routeMetrics // route label -> its counts
	// The routes of the answers the router gives without a handler of
	// ours (see httpServer.serveUnrouted).
	notFound, methodNotAllowed, redirect *routeMetrics
}

// Label values of nsqlookupd_tcp_commands_total.
const (
	cmdPING = iota
	cmdIDENTIFY
	cmdREGISTER
	cmdUNREGISTER
	cmdInvalid // any other verb, or a line too long to read
	numCommands
)

var commandNames = [numCommands]string{"PING", "IDENTIFY", "REGISTER", "UNREGISTER", "invalid"}

// commandIndex returns the label of a command line's verb: anything a
// client sends that is not a command is "invalid".
func commandIndex(verb string) int {
	switch verb {
	case "PING":
		return cmdPING
	case "IDENTIFY":
		return cmdIDENTIFY
	case "REGISTER":
		return cmdREGISTER
	case "UNREGISTER":
		return cmdUNREGISTER
	}
	return cmdInvalid
}

const (
	resultOK = iota
	resultError
	numResults
)

// commandCounts are one connection's command counts not yet added to
// metrics.tcpCommands. The IO loop counts each command with a plain add
// and publishes once per read of the connection (before it sends the
// answers gathered so far), before it sends an error, and when it ends: one
// atomic add per batch of pipelined commands, not one per command.
type commandCounts struct {
	n       [numCommands][numResults]uint32 // a batch is at most a few thousand commands
	pending bool
}

// add counts one command: its commandIndex, and the error it answered.
func (c *commandCounts) add(command int, err error) {
	c.n[command][resultIndex(err)]++
	c.pending = true
}

// publish adds the counts to m's counters and resets them.
func (c *commandCounts) publish(m *metrics) {
	if !c.pending {
		return
	}
	c.pending = false
	for command := range c.n {
		for result, n := range c.n[command] {
			if n > 0 {
				m.tcpCommands[command][result].Add(float64(n))
				c.n[command][result] = 0
			}
		}
	}
}

var resultNames = [numResults]string{"ok", "error"}

func resultIndex(err error) int {
	if err != nil {
		return resultError
	}
	return resultOK
}

// Label values of nsqlookupd_http_requests_total. A method is one of
// net/http's, or "other": a client may send any token as a method.
const (
	methodGET = iota
	methodHEAD
	methodPOST
	methodPUT
	methodPATCH
	methodDELETE
	methodCONNECT
	methodOPTIONS
	methodTRACE
	methodOther
	numMethods
)

var methodNames = [numMethods]string{"GET", "HEAD", "POST", "PUT", "PATCH", "DELETE", "CONNECT", "OPTIONS", "TRACE", "other"}

func methodIndex(method string) int {
	switch method {
	case http.MethodGet:
		return methodGET
	case http.MethodHead:
		return methodHEAD
	case http.MethodPost:
		return methodPOST
	case http.MethodPut:
		return methodPUT
	case http.MethodPatch:
		return methodPATCH
	case http.MethodDelete:
		return methodDELETE
	case http.MethodConnect:
		return methodCONNECT
	case http.MethodOptions:
		return methodOPTIONS
	case http.MethodTrace:
		return methodTRACE
	}
	return methodOther
}

// The statuses the daemon answers with; "other" is there so that an
// unforeseen status from a handler we do not own (pprof, promhttp) is still
// counted under a fixed label.
const (
	code200 = iota
	code301
	code307
	code400
	code403 // access control (access.go)
	code404
	code405
	code500
	codeOther
	numCodes
)

var codeNames = [numCodes]string{"200", "301", "307", "400", "403", "404", "405", "500", "other"}

func codeIndex(code int) int {
	switch code {
	case http.StatusOK:
		return code200
	case http.StatusMovedPermanently:
		return code301
	case http.StatusTemporaryRedirect:
		return code307
	case http.StatusBadRequest:
		return code400
	case http.StatusForbidden:
		return code403
	case http.StatusNotFound:
		return code404
	case http.StatusMethodNotAllowed:
		return code405
	case http.StatusInternalServerError:
		return code500
	}
	return codeOther
}

// Statuses each kind of route answers with: exported at zero from start-up,
// so that the set of series does not change at run time and a rate over an
// error code sees its first increase.
var (
	// apiCodes: the V1 and PlainText decorators answer 200, an Err's code
	// (400 or 404), or 500.
	apiCodes = []int{http.StatusOK, http.StatusBadRequest, http.StatusNotFound, http.StatusInternalServerError}
	// pprofCodes: net/http/pprof answers 400 to a bad parameter and 500
	// when a profile is already running.
	pprofCodes = []int{http.StatusOK, http.StatusBadRequest, http.StatusInternalServerError}
	// metricsCodes: promhttp answers 500 when a collector fails.
	metricsCodes = []int{http.StatusOK, http.StatusInternalServerError}
)

// durationBuckets of nsqlookupd_http_request_duration_seconds: fine where
// API answers are (0.1 to 10 ms), coarse up to the longest pprof profile.
var durationBuckets = []float64{.0001, .00025, .0005, .001, .0025, .005, .01, .025, .1, .5, 2.5, 10}

// routeMetrics counts the answers of one route label.
type routeMetrics struct {
	name     string
	duration prometheus.Observer
	// expected[method] holds the statuses, as bits by codeIndex, that this
	// route answers method with: those series are exported from start-up.
	// Written while routes are declared; guarded by metrics.mu.
	expected [numMethods]uint16
	counts   [numMethods][numCodes]atomic.Uint64
}

// observe counts one answer with status code to method, started at start.
func (r *routeMetrics) observe(method, code int, start time.Time) {
	r.counts[method][codeIndex(code)].Add(1)
	r.duration.Observe(time.Since(start).Seconds())
}

// newMetrics registers every series of SPEC §7 for l.
func newMetrics(l *NSQLookupd) *metrics {
	m := &metrics{
		registry: prometheus.NewRegistry(),
		routes:   make(map[string]*routeMetrics),
	}
	reg := m.registry
	reg.MustRegister(
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
		prometheus.NewCounterFunc(prometheus.CounterOpts{
			Name: "nsqlookupd_tcp_connections_total",
			Help: "Registration connections accepted.",
		}, func() float64 {
			_, accepted := l.tcpServer.counts()
			return float64(accepted)
		}),
		prometheus.NewCounterFunc(prometheus.CounterOpts{
			Name: "nsqlookupd_producer_evictions_total",
			Help: "Registration connections closed because the producer fell silent (the producer read timeout).",
		}, func() float64 { return float64(l.evictions.Load()) }),
		prometheus.NewCounterFunc(prometheus.CounterOpts{
			Name: "nsqlookupd_panics_total",
			Help: "Panics recovered at a registration connection or HTTP request boundary.",
		}, func() float64 { return float64(l.panics.Load()) }),
		requestsCollector{m},
	)

	commands := prometheus.NewCounterVec(prometheus.CounterOpts{
		Name: "nsqlookupd_tcp_commands_total",
		Help: "V1 commands received on registration connections, by command and result.",
	}, []string{"command", "result"})
	reg.MustRegister(commands)
	for c := range m.tcpCommands {
		for r := range m.tcpCommands[c] {
			m.tcpCommands[c][r] = commands.WithLabelValues(commandNames[c], resultNames[r])
		}
	}

	m.httpDuration = prometheus.NewHistogramVec(prometheus.HistogramOpts{
		Name:    "nsqlookupd_http_request_duration_seconds",
		Help:    "Time to answer an HTTP request, by route.",
		Buckets: durationBuckets,
	}, []string{"route"})
	reg.MustRegister(m.httpDuration)

	m.notFound = m.route("not_found")
	m.methodNotAllowed = m.route("method_not_allowed")
	m.redirect = m.route("redirect")
	for method := range numMethods {
		m.expect(m.notFound, method, http.StatusNotFound)
		if method != methodOPTIONS { // the router answers OPTIONS itself, never 405
			m.expect(m.methodNotAllowed, method, http.StatusMethodNotAllowed)
		}
	}

	m.handler = promhttp.HandlerFor(reg, promhttp.HandlerOpts{ErrorLog: promLogger{l.logf}})
	return m
}

// route returns the counts of the route labelled name, creating them.
func (m *metrics) route(name string) *routeMetrics {
	m.mu.Lock()
	defer m.mu.Unlock()
	r, ok := m.routes[name]
	if !ok {
		r = &routeMetrics{name: name, duration: m.httpDuration.WithLabelValues(name)}
		m.routes[name] = r
	}
	return r
}

// expect marks the series of r for method and codes as exported from
// start-up.
func (m *metrics) expect(r *routeMetrics, method int, codes ...int) {
	m.mu.Lock()
	defer m.mu.Unlock()
	for _, code := range codes {
		r.expected[method] |= 1 << codeIndex(code)
	}
}

var requestsDesc = prometheus.NewDesc("nsqlookupd_http_requests_total",
	"HTTP requests answered, by route pattern (or not_found, method_not_allowed, redirect), method and status.",
	[]string{"route", "method", "code"}, nil)

// requestsCollector exports nsqlookupd_http_requests_total from the
// routes' counts: every expected series, and any other that counted
// something. A CounterVec would need each (route, method, code) cell
// created up front, most of them answers the daemon never gives, or a map
// lookup per request for the first use of a cell.
type requestsCollector struct {
	m *metrics
}

func (c requestsCollector) Describe(ch chan<- *prometheus.Desc) {
	ch <- requestsDesc
}

func (c requestsCollector) Collect(ch chan<- prometheus.Metric) {
	c.m.mu.Lock()
	defer c.m.mu.Unlock()
	for _, r := range c.m.routes {
		for method := range r.counts {
			for code := range r.counts[method] {
				n := r.counts[method][code].Load()
				if n == 0 && r.expected[method]&(1<<code) == 0 {
					continue
				}
				ch <- prometheus.MustNewConstMetric(requestsDesc, prometheus.CounterValue, float64(n),
					r.name, methodNames[method], codeNames[code])
			}
		}
	}
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

// registryCollector exports the registry's sizes: one call of stats per
// scrape, which reads the counts the registry keeps, without its lock.
type registryCollector struct {
	l *NSQLookupd
}

func (c registryCollector) Describe(ch chan<- *prometheus.Desc) {
	ch <- producersDesc
	ch <- topicsDesc
	ch <- channelsDesc
	ch <- registrationsDesc
	ch <- tombstonesDesc
}

func (c registryCollector) Collect(ch chan<- prometheus.Metric) {
	s := c.l.db.stats(c.l.clock.Now(), c.l.opts.TombstoneLifetime)
	for _, g := range []struct {
		desc *prometheus.Desc
		n    int
	}{
		{producersDesc, s.Producers},
		{topicsDesc, s.Topics},
		{channelsDesc, s.Channels},
		{registrationsDesc, s.Registrations},
		{tombstonesDesc, s.Tombstones},
	} {
		ch <- prometheus.MustNewConstMetric(g.desc, prometheus.GaugeValue, float64(g.n))
	}
}

// promLogger sends promhttp's errors (a collector that failed) to the log.
type promLogger struct {
	logf lg.AppLogFunc
}

func (p promLogger) Println(v ...interface{}) {
	p.logf(lg.ERROR, "METRICS: %s", fmt.Sprint(v...))
}
