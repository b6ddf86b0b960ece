package nsqlookupd

import (
	"encoding/json"
	"io"
	"net/http"
	"net/http/pprof"
	"strconv"
	"sync"
	"time"

	"github.com/julienschmidt/httprouter"

	"github.com/lookupd/nsqlookupd/internal/http_api"
	"github.com/lookupd/nsqlookupd/internal/lg"
	"github.com/lookupd/nsqlookupd/internal/protocol"
	"github.com/lookupd/nsqlookupd/internal/version"
)

type httpServer struct {
	nsqlookupd *NSQLookupd
	router     *httprouter.Router
	handler    http.Handler // dispatch behind the HTTP write timeout: what ServeHTTP serves
	// panicked answers a request whose handler panicked: it is counted,
	// logged and answered 500.
	panicked func(http.ResponseWriter, *http.Request, interface{})
	// optionsRoutes maps each route pattern to its counts, for the OPTIONS
	// answers the router gives itself. Filled by newHTTPServer, then only
	// read.
	optionsRoutes map[string]*routeMetrics
}

// newHTTPServer declares every route of the HTTP API. Each is counted in
// /metrics under its pattern; only /metrics and the pprof routes are not
// access-logged.
func newHTTPServer(l *NSQLookupd) *httpServer {
	log := http_api.Log(l.logf)
	m := l.metrics

	router := httprouter.New()
	router.HandleMethodNotAllowed = true
	writeTimeout := l.opts.HTTPWriteTimeout
	s := &httpServer{nsqlookupd: l, router: router, optionsRoutes: make(map[string]*routeMetrics)}
	s.handler = http_api.WriteTimeout(http.HandlerFunc(s.dispatch), writeTimeout)
	logPanic := http_api.LogPanicHandler(l.logf)
	s.panicked = func(w http.ResponseWriter, req *http.Request, p interface{}) {
		l.panics.Add(1)
		logPanic(w, req, p)
	}
	router.PanicHandler = s.panicked
	router.NotFound = tagRoute(m.notFound, http_api.LogNotFoundHandler(l.logf))
	router.MethodNotAllowed = tagRoute(m.methodNotAllowed, http_api.LogMethodNotAllowedHandler(l.logf))
	router.GlobalOPTIONS = http.HandlerFunc(s.optionsAnswered)

	s.api("GET", "/ping", s.pingHandler, log, http_api.PlainText)
	s.api("GET", "/info", s.doInfo, log, http_api.V1)

	s.api("GET", "/debug", s.doDebug, log, http_api.V1)
	s.api("GET", "/lookup", s.doLookup, log, http_api.V1)
	s.api("GET", "/topics", s.doTopics, log, http_api.V1)
	s.api("GET", "/channels", s.doChannels, log, http_api.V1)
	s.api("GET", "/nodes", s.doNodes, log, http_api.V1)

	s.adminAPI("POST", "/topic/create", s.doCreateTopic, log, http_api.V1)
	s.adminAPI("POST", "/topic/delete", s.doDeleteTopic, log, http_api.V1)
	s.adminAPI("POST", "/channel/create", s.doCreateChannel, log, http_api.V1)
	s.adminAPI("POST", "/channel/delete", s.doDeleteChannel, log, http_api.V1)
	s.adminAPI("POST", "/topic/tombstone", s.doTombstoneTopicProducer, log, http_api.V1)

	// Not access-logged (a scrape every 15 s would flood the log), and
	// served with --disable-pprof too.
	s.plain("GET", "/metrics", m.handler, metricsCodes)

	// The admin POSTs above and the pprof routes below are declared
	// through adminAPI and adminPlain: behind the access rules (access.go).
	if !l.opts.DisablePprof {
		// v1.3.0's routes, then the index at /debug/pprof/ (where its
		// relative links resolve) and the profiles it links to.
		s.adminPlain("GET", "/debug/pprof", http.HandlerFunc(pprof.Index), pprofCodes)
		s.adminPlain("GET", "/debug/pprof/", http.HandlerFunc(pprof.Index), pprofCodes)
		s.adminPlain("GET", "/debug/pprof/cmdline", http.HandlerFunc(pprof.Cmdline), pprofCodes)
		s.adminPlain("GET", "/debug/pprof/symbol", http.HandlerFunc(pprof.Symbol), pprofCodes)
		s.adminPlain("POST", "/debug/pprof/symbol", http.HandlerFunc(pprof.Symbol), pprofCodes)
		// These answer after ?seconds=N (profile 30 and trace 1 by
		// default; the others only when asked for a delta): their write
		// deadline is N past the HTTP write timeout.
		s.adminPlain("GET", "/debug/pprof/profile",
			http_api.ExtendWriteDeadline(http.HandlerFunc(pprof.Profile), 30, writeTimeout), pprofCodes)
		s.adminPlain("GET", "/debug/pprof/trace",
			http_api.ExtendWriteDeadline(http.HandlerFunc(pprof.Trace), 1, writeTimeout), pprofCodes)
		for _, name := range []string{"allocs", "block", "goroutine", "heap", "mutex", "threadcreate"} {
			s.adminPlain("GET", "/debug/pprof/"+name, http_api.ExtendWriteDeadline(pprof.Handler(name), 0, writeTimeout), pprofCodes)
		}
	}
	return s
}

// route returns the counts of the route (method, path), answering codes,
// and marks the series it can add, OPTIONS answers and the router's
// redirects to it included, as expected.
func (s *httpServer) route(method, path string, codes []int) *routeMetrics {
	m := s.nsqlookupd.metrics
	r := m.route(path)
	m.expect(r, methodIndex(method), codes...)
	m.expect(r, methodOPTIONS, http.StatusOK)
	// httprouter redirects a GET with 301, any other method with 307
	if method == http.MethodGet {
		m.expect(m.redirect, methodGET, http.StatusMovedPermanently)
	} else {
		m.expect(m.redirect, methodIndex(method), http.StatusTemporaryRedirect)
	}
	s.optionsRoutes[path] = r
	return r
}

// api declares a route answered by an APIHandler through the decorators
// ds; its status is the error the outermost of them returns (see
// http_api.Observe).
func (s *httpServer) api(method, path string, f http_api.APIHandler, ds ...http_api.Decorator) {
	r := s.route(method, path, apiCodes)
	mi := methodIndex(method)
	ds = append(ds, http_api.Observe(func(code int, start time.Time) { r.observe(mi, code, start) }))
	s.router.Handle(method, path, http_api.Decorate(f, ds...))
}

// plain declares a route answered by a plain http.Handler, which may answer
// codes. Its status is read through a statusWriter: these routes (pprof,
// /metrics) are not hot, and pay that allocation.
func (s *httpServer) plain(method, path string, h http.Handler, codes []int) {
	r := s.route(method, path, codes)
	mi := methodIndex(method)
	s.router.Handle(method, path, func(w http.ResponseWriter, req *http.Request, _ httprouter.Params) {
		start := time.Now()
		sw := &statusWriter{ResponseWriter: w}
		code := http.StatusInternalServerError // unless h returns: the panic handler's answer
		defer func() { r.observe(mi, code, start) }()
		h.ServeHTTP(sw, req)
		code = sw.status()
	})
}

// ServeHTTP serves a request behind the HTTP write timeout.
func (s *httpServer) ServeHTTP(w http.ResponseWriter, req *http.Request) {
	s.handler.ServeHTTP(w, req)
}

// dispatch sends a request for a route straight to its handler, which
// counts itself; any other request goes through serveUnrouted. The handle
// is found as the router itself finds it, so this costs no second lookup.
func (s *httpServer) dispatch(w http.ResponseWriter, req *http.Request) {
	if h, ps, _ := s.router.Lookup(req.Method, req.URL.Path); h != nil {
		defer s.recoverPanic(w, req) // as the router does with its PanicHandler
		h(w, req, ps)
		return
	}
	s.serveUnrouted(w, req)
}

func (s *httpServer) recoverPanic(w http.ResponseWriter, req *http.Request) {
	if p := recover(); p != nil {
		s.panicked(w, req, p)
	}
}

// serveUnrouted lets the router answer a request that matches no route: a
// redirect (trailing slash, case, unclean path), an OPTIONS answer, 405 or
// 404. The router redirects without calling any handler of ours; the other
// answers go through handlers that tag the request's statusWriter with
// their route. So an untagged answer is a redirect. Only these requests pay
// for a statusWriter.
func (s *httpServer) serveUnrouted(w http.ResponseWriter, req *http.Request) {
	start := time.Now()
	mi := methodIndex(req.Method)
	sw := &statusWriter{ResponseWriter: w}
	s.router.ServeHTTP(sw, req)
	r := sw.route
	if r == nil {
		r = s.nsqlookupd.metrics.redirect
	}
	r.observe(mi, sw.status(), start)
}

// optionsAnswered is the router's GlobalOPTIONS: the router has set the
// Allow header of an OPTIONS request to a route; the answer is an empty 200.
func (s *httpServer) optionsAnswered(w http.ResponseWriter, req *http.Request) {
	r := s.optionsRoutes[req.URL.Path] // the router found a route at exactly this path
	if r == nil {
		// unreachable: net/http answers "OPTIONS *" itself
		r = s.nsqlookupd.metrics.notFound
	}
	if sw, ok := w.(*statusWriter); ok {
		sw.route = r
	}
}

// tagRoute returns h, tagging the request's statusWriter with r first.
func tagRoute(r *routeMetrics, h http.Handler) http.Handler {
	return http.HandlerFunc(func(w http.ResponseWriter, req *http.Request) {
		if sw, ok := w.(*statusWriter); ok {
			sw.route = r
		}
		h.ServeHTTP(w, req)
	})
}

// statusWriter records the status written through it and, on the unrouted
// path, the route that answered.
type statusWriter struct {
	http.ResponseWriter
	code  int           // the first status written; 0 until then
	route *routeMetrics // set by the router's NotFound, MethodNotAllowed and GlobalOPTIONS handlers
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

var (
	errInvalidRequest  = http_api.Err{Code: http.StatusBadRequest, Text: "INVALID_REQUEST"}
	errMissingTopic    = http_api.Err{Code: http.StatusBadRequest, Text: "MISSING_ARG_TOPIC"}
	errInvalidTopic    = http_api.Err{Code: http.StatusBadRequest, Text: "INVALID_ARG_TOPIC"}
	errMissingNode     = http_api.Err{Code: http.StatusBadRequest, Text: "MISSING_ARG_NODE"}
	errTopicNotFound   = http_api.Err{Code: http.StatusNotFound, Text: "TOPIC_NOT_FOUND"}
	errChannelNotFound = http_api.Err{Code: http.StatusNotFound, Text: "CHANNEL_NOT_FOUND"}
)

// topicParam parses the query strictly and returns its topic parameter.
func topicParam(req *http.Request) (*http_api.ReqParams, string, error) {
	reqParams, err := http_api.NewReqParams(req)
	if err != nil {
		return nil, "", errInvalidRequest
	}
	topicName, err := reqParams.Get("topic")
	if err != nil {
		return nil, "", errMissingTopic
	}
	return reqParams, topicName, nil
}

// topicChannelParams parses the query strictly and returns its valid topic
// and channel parameters.
func topicChannelParams(req *http.Request) (string, string, error) {
	reqParams, err := http_api.NewReqParams(req)
	if err != nil {
		return "", "", errInvalidRequest
	}
	return http_api.GetTopicChannelArgs(reqParams)
}

func (s *httpServer) pingHandler(w http.ResponseWriter, req *http.Request, ps httprouter.Params) (interface{}, error) {
	return "OK", nil
}

type infoResponse struct {
	Version string `json:"version"`
}

func (s *httpServer) doInfo(w http.ResponseWriter, req *http.Request, ps httprouter.Params) (interface{}, error) {
	return infoResponse{Version: version.Binary}, nil
}

func (s *httpServer) doTopics(w http.ResponseWriter, req *http.Request, ps httprouter.Params) (interface{}, error) {
	return http_api.JSON(s.nsqlookupd.db.topicsJSON()), nil
}

type channelsResponse struct {
	Channels []string `json:"channels"`
}

func (s *httpServer) doChannels(w http.ResponseWriter, req *http.Request, ps httprouter.Params) (interface{}, error) {
	_, topicName, err := topicParam(req)
	if err != nil {
		return nil, err
	}
	if topicName == wildcard {
		return http_api.JSON(s.nsqlookupd.db.allChannelsJSON()), nil
	}
	return channelsResponse{Channels: s.nsqlookupd.db.channelNames(topicName)}, nil
}

func (s *httpServer) doLookup(w http.ResponseWriter, req *http.Request, ps httprouter.Params) (interface{}, error) {
	_, topicName, err := topicParam(req)
	if err != nil {
		return nil, err
	}
	opts := s.nsqlookupd.opts
	now := s.nsqlookupd.clock.Now()
	if topicName == wildcard {
		// every channel and producer: the channels' JSON is shared by the
		// requests that ask while the registry stays as it is, and written
		// as it is
		all := s.nsqlookupd.db.lookupAll()
		if !all.ok {
			return nil, errTopicNotFound
		}
		return http_api.JSONStream(func(w io.Writer) error {
			b := append([]byte(nil), `{"channels":`...)
			if _, err := w.Write(b); err != nil {
				return err
			}
			if _, err := w.Write(all.channelsJSON); err != nil {
				return err
			}
			b = appendActiveProducers(append(b[:0], `,"producers":`...), all.producers, now, opts)
			_, err := w.Write(append(b, '}'))
			return err
		}), nil
	}
	// the copies and the answer in buffers reused from request to
	// request: /lookup is the hot route, and its garbage the GC's work
	sc := lookupScratch.Get().(*lookupLists)
	channels, producers, ok := s.nsqlookupd.db.lookupInto(topicName, sc.channels[:0], sc.producers[:0])
	defer func() {
		if cap(channels)+cap(producers) > 4096 {
			return // a topic with thousands of channels: not kept
		}
		clear(channels) // let what they point to go
		clear(producers)
		sc.channels, sc.producers = channels[:0], producers[:0]
		lookupScratch.Put(sc)
	}()
	if !ok {
		return nil, errTopicNotFound
	}
	// {"channels":[...],"producers":[...]}, from each producer's sealed JSON
	buf := answerBuffers.Get().(*[]byte)
	b := append((*buf)[:0], `{"channels":`...)
	b = appendNames(b, channels)
	b = append(b, `,"producers":`...)
	b = appendActiveProducers(b, producers, now, opts)
	*buf = append(b, '}')
	return http_api.PooledJSON{B: buf, Pool: &answerBuffers}, nil
}

// lookupLists are the copies /lookup makes of a topic, kept for reuse.
type lookupLists struct {
	channels  []string
	producers []producer
}

var (
	lookupScratch = sync.Pool{New: func() any { return new(lookupLists) }}
	// answerBuffers hold answers of the hot routes while they are written.
	answerBuffers = sync.Pool{New: func() any { return new([]byte) }}
)

// appendActiveProducers appends the active producers as a JSON array, each
// from its sealed JSON.
func appendActiveProducers(b []byte, producers []producer, now time.Time, opts *Options) []byte {
	b = append(b, '[')
	first := true
	for _, p := range producers {
		if p.isActive(now, opts.InactiveProducerTimeout, opts.TombstoneLifetime) {
			if !first {
				b = append(b, ',')
			}
			b = append(b, p.peer.info.json...)
			first = false
		}
	}
	return append(b, ']')
}

// doNodes writes each active producer's entry as the registry keeps it
// encoded: concurrent answers share those bytes.
func (s *httpServer) doNodes(w http.ResponseWriter, req *http.Request, ps httprouter.Params) (interface{}, error) {
	opts := s.nsqlookupd.opts
	now := s.nsqlookupd.clock.Now()
	nodes := s.nsqlookupd.db.nodes(now, opts.TombstoneLifetime)
	return http_api.JSONStream(func(w io.Writer) error {
		// {"producers":[{<producer fields>,"tombstones":[...],"topics":[...]},...]}
		if _, err := io.WriteString(w, `{"producers":[`); err != nil {
			return err
		}
		first := true
		for _, n := range nodes {
			// tombstoned nodes stay listed; only inactivity hides a node
			if !(producer{peer: n.peer}).isActive(now, opts.InactiveProducerTimeout, 0) {
				continue
			}
			if !first {
				if _, err := io.WriteString(w, ","); err != nil {
					return err
				}
			}
			first = false
			if _, err := w.Write(n.json); err != nil {
				return err
			}
		}
		_, err := io.WriteString(w, "]}")
		return err
	}), nil
}

// appendNames appends names as a JSON array of strings.
func appendNames(b []byte, names []string) []byte {
	b = append(b, '[')
	for i, name := range names {
		if i > 0 {
			b = append(b, ',')
		}
		b = appendJSONString(b, name)
	}
	return append(b, ']')
}

// appendJSONString appends s as a JSON string, as encoding/json writes it.
// Topic and channel names are [.a-zA-Z0-9_#-] only, so they are written as
// they are; any other string is left to encoding/json.
func appendJSONString(b []byte, s string) []byte {
	if plainJSON(s) {
		b = append(b, '"')
		b = append(b, s...)
		return append(b, '"')
	}
	q, _ := json.Marshal(s)
	return append(b, q...)
}

// plainJSON reports whether s needs no escaping in a JSON string as
// encoding/json writes it.
func plainJSON(s string) bool {
	for i := 0; i < len(s); i++ {
		switch c := s[i]; {
		case c < 0x20, c >= 0x80, c == '"', c == '\\', c == '<', c == '>', c == '&':
			return false
		}
	}
	return true
}

// doDebug streams the registrations: /debug is the largest answer (about
// 240 bytes a registration), so it is encoded a registration at a time,
// never held whole.
func (s *httpServer) doDebug(w http.ResponseWriter, req *http.Request, ps httprouter.Params) (interface{}, error) {
	db := s.nsqlookupd.db
	return http_api.JSONStream(func(w io.Writer) error {
		// {"<key>":[{"broadcast_address":...},...],...}: the fields and keys
		// in the sorted order of v1.3.0's maps
		b := []byte{'{'}
		var err error
		first := true
		db.debugEach(func(key string, producers []producer) bool {
			if !first {
				b = append(b, ',')
			}
			first = false
			b = appendJSONString(b, key)
			b = append(b, ':', '[')
			for i, p := range producers {
				if i > 0 {
					b = append(b, ',')
				}
				b = appendDebugProducer(b, p)
			}
			b = append(b, ']')
			_, err = w.Write(b)
			b = b[:0]
			return err == nil
		})
		if err != nil {
			return err
		}
		_, err = w.Write(append(b, '}'))
		return err
	}), nil
}

// zeroTimeUnixNano is Go's zero time in unix ns: v1.3.0's tombstoned_at
// for a producer never tombstoned.
var zeroTimeUnixNano = time.Time{}.UnixNano()

// appendDebugProducer appends p as one entry of /debug.
func appendDebugProducer(b []byte, p producer) []byte {
	d := &p.peer.info.debug
	b = append(b, d[0]...)
	b = strconv.AppendInt(b, p.peer.lastUpdate.Load(), 10)
	b = append(b, d[1]...)
	b = strconv.AppendBool(b, p.tomb != nil)
	b = append(b, d[2]...)
	at := zeroTimeUnixNano
	if p.tomb != nil {
		at = p.tomb.at
	}
	b = strconv.AppendInt(b, at, 10)
	return append(b, d[3]...)
}

func (s *httpServer) doCreateTopic(w http.ResponseWriter, req *http.Request, ps httprouter.Params) (interface{}, error) {
	_, topicName, err := topicParam(req)
	if err != nil {
		return nil, err
	}
	if !protocol.IsValidTopicName(topicName) {
		return nil, errInvalidTopic
	}
	s.nsqlookupd.logf(lg.INFO, "DB: adding topic(%s)", topicName)
	s.nsqlookupd.db.createTopic(topicName)
	return nil, nil
}

func (s *httpServer) doDeleteTopic(w http.ResponseWriter, req *http.Request, ps httprouter.Params) (interface{}, error) {
	_, topicName, err := topicParam(req)
	if err != nil {
		return nil, err
	}
	channels, topics := s.nsqlookupd.db.deleteTopic(topicName)
	for _, r := range channels {
		s.nsqlookupd.logf(lg.INFO, "DB: removing channel(%s) from topic(%s)", r.SubKey, r.Key)
	}
	for _, t := range topics {
		s.nsqlookupd.logf(lg.INFO, "DB: removing topic(%s)", t)
	}
	return nil, nil
}

func (s *httpServer) doCreateChannel(w http.ResponseWriter, req *http.Request, ps httprouter.Params) (interface{}, error) {
	topicName, channelName, err := topicChannelParams(req)
	if err != nil {
		return nil, err
	}
	s.nsqlookupd.logf(lg.INFO, "DB: adding channel(%s) in topic(%s)", channelName, topicName)
	s.nsqlookupd.logf(lg.INFO, "DB: adding topic(%s)", topicName)
	s.nsqlookupd.db.createChannel(topicName, channelName)
	return nil, nil
}

func (s *httpServer) doDeleteChannel(w http.ResponseWriter, req *http.Request, ps httprouter.Params) (interface{}, error) {
	topicName, channelName, err := topicChannelParams(req)
	if err != nil {
		return nil, err
	}
	if !s.nsqlookupd.db.deleteChannel(topicName, channelName) {
		return nil, errChannelNotFound
	}
	s.nsqlookupd.logf(lg.INFO, "DB: removing channel(%s) from topic(%s)", channelName, topicName)
	return nil, nil
}

func (s *httpServer) doTombstoneTopicProducer(w http.ResponseWriter, req *http.Request, ps httprouter.Params) (interface{}, error) {
	reqParams, topicName, err := topicParam(req)
	if err != nil {
		return nil, err
	}
	node, err := reqParams.Get("node")
	if err != nil {
		return nil, errMissingNode
	}
	s.nsqlookupd.logf(lg.INFO, "DB: setting tombstone for producer@%s of topic(%s)", node, topicName)
	s.nsqlookupd.db.tombstone(topicName, node, s.nsqlookupd.clock.Now())
	return nil, nil
}
