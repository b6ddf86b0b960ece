package nsqlookupd

import (
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
	"github.com/lookupd/nsqlookupd/nsqlookupd/internal/registry"
)

// httpServer is the HTTP API (docs/wire.md, HTTP API), profiling and
// /metrics, on one router; each request is counted in /metrics.
type httpServer struct {
	nsqlookupd *NSQLookupd
	router     *httprouter.Router
}

// Statuses each kind of route answers with. Their series are exported at
// zero from start-up, so that the set of series does not change at run
// time and a rate over an error code sees its first increase.
var (
	// apiCodes: the V1 and PlainText decorators answer 200, an Err's code
	// (400 or 404), or 500 (a panic).
	apiCodes = []int{http.StatusOK, http.StatusBadRequest, http.StatusNotFound, http.StatusInternalServerError}
	// plainCodes: net/http/pprof answers 400 to a bad parameter and 500
	// when a profile is already running; promhttp 500 when a collector
	// fails.
	plainCodes = []int{http.StatusOK, http.StatusBadRequest, http.StatusInternalServerError}
)

// newHTTPServer declares every route. Only /metrics and the pprof routes
// are not access-logged.
func newHTTPServer(l *NSQLookupd) *httpServer {
	log := http_api.Log(l.logf)
	router := httprouter.New()
	router.HandleMethodNotAllowed = true
	router.PanicHandler = func(w http.ResponseWriter, req *http.Request, p interface{}) {
		l.panics.Add(1)
		http_api.LogPanicHandler(l.logf)(w, req, p)
	}
	router.NotFound = http_api.LogNotFoundHandler(l.logf)
	router.MethodNotAllowed = http_api.LogMethodNotAllowedHandler(l.logf)
	s := &httpServer{nsqlookupd: l, router: router}

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
	s.plain("GET", "/metrics", l.metrics.handler)

	// The admin POSTs above and the pprof routes below are declared
	// through adminAPI and adminPlain: behind the access rules (internal/access).
	if !l.opts.DisablePprof {
		// v1.3.0's routes, then the index at /debug/pprof/ (where its
		// relative links resolve) and the profiles it links to. The
		// server's write timeout is extended by ?seconds=N for those that
		// take it (net/http/pprof does that itself).
		s.adminPlain("GET", "/debug/pprof", http.HandlerFunc(pprof.Index))
		s.adminPlain("GET", "/debug/pprof/", http.HandlerFunc(pprof.Index))
		s.adminPlain("GET", "/debug/pprof/cmdline", http.HandlerFunc(pprof.Cmdline))
		s.adminPlain("GET", "/debug/pprof/symbol", http.HandlerFunc(pprof.Symbol))
		s.adminPlain("POST", "/debug/pprof/symbol", http.HandlerFunc(pprof.Symbol))
		s.adminPlain("GET", "/debug/pprof/profile", http.HandlerFunc(pprof.Profile))
		s.adminPlain("GET", "/debug/pprof/trace", http.HandlerFunc(pprof.Trace))
		for _, name := range []string{"allocs", "block", "goroutine", "heap", "mutex", "threadcreate"} {
			s.adminPlain("GET", "/debug/pprof/"+name, pprof.Handler(name))
		}
	}
	return s
}

// api declares a route answered by an APIHandler through the decorators ds.
func (s *httpServer) api(method, path string, f http_api.APIHandler, ds ...http_api.Decorator) {
	s.nsqlookupd.metrics.expectRoute(method, path, apiCodes)
	s.router.Handle(method, path, http_api.Decorate(f, ds...))
}

// plain declares a route answered by a plain http.Handler.
func (s *httpServer) plain(method, path string, h http.Handler) {
	s.nsqlookupd.metrics.expectRoute(method, path, plainCodes)
	s.router.Handler(method, path, h)
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

// The API's errors, as docs/wire.md, HTTP API, lists them.
var (
	errInvalidRequest  = http_api.Err{Code: http.StatusBadRequest, Text: "INVALID_REQUEST"}
	errMissingTopic    = http_api.Err{Code: http.StatusBadRequest, Text: "MISSING_ARG_TOPIC"}
	errInvalidTopic    = http_api.Err{Code: http.StatusBadRequest, Text: "INVALID_ARG_TOPIC"}
	errMissingChannel  = http_api.Err{Code: http.StatusBadRequest, Text: "MISSING_ARG_CHANNEL"}
	errInvalidChannel  = http_api.Err{Code: http.StatusBadRequest, Text: "INVALID_ARG_CHANNEL"}
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

// topicChannelParams parses the query strictly and returns its topic and
// channel parameters, checking in order: topic present, topic valid,
// channel present, channel valid.
func topicChannelParams(req *http.Request) (string, string, error) {
	reqParams, topicName, err := topicParam(req)
	if err != nil {
		return "", "", err
	}
	if !protocol.IsValidTopicName(topicName) {
		return "", "", errInvalidTopic
	}
	channelName, err := reqParams.Get("channel")
	if err != nil {
		return "", "", errMissingChannel
	}
	if !protocol.IsValidChannelName(channelName) {
		return "", "", errInvalidChannel
	}
	return topicName, channelName, nil
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
	return http_api.JSON(s.nsqlookupd.answers.topics(s.nsqlookupd.db)), nil
}

func (s *httpServer) doChannels(w http.ResponseWriter, req *http.Request, ps httprouter.Params) (interface{}, error) {
	_, topicName, err := topicParam(req)
	if err != nil {
		return nil, err
	}
	if topicName == registry.Wildcard {
		return http_api.JSON(s.nsqlookupd.answers.allChannels(s.nsqlookupd.db)), nil
	}
	b := append([]byte(`{"channels":`), appendNames(nil, s.nsqlookupd.db.Channels(topicName))...)
	return http_api.JSON(append(b, '}')), nil
}

func (s *httpServer) doLookup(w http.ResponseWriter, req *http.Request, ps httprouter.Params) (interface{}, error) {
	_, topicName, err := topicParam(req)
	if err != nil {
		return nil, err
	}
	now := s.nsqlookupd.clock.Now()
	if topicName == registry.Wildcard {
		// every channel and producer: shared by the requests that ask while
		// the registry stays as it is, and written as it is
		all := s.nsqlookupd.answers.allLookup(s.nsqlookupd.db)
		if !all.ok {
			return nil, errTopicNotFound
		}
		return http_api.JSONStream(func(w io.Writer) error {
			if _, err := io.WriteString(w, `{"channels":`); err != nil {
				return err
			}
			if _, err := w.Write(all.channels); err != nil {
				return err
			}
			b := s.appendActive([]byte(`,"producers":`), all.producers, now)
			_, err := w.Write(append(b, '}'))
			return err
		}), nil
	}
	// the copies and the answer in buffers kept from request to request
	sc := lookupScratches.Get().(*lookupScratch)
	channels, producers, ok := s.nsqlookupd.db.Lookup(topicName, sc.channels[:0], sc.producers[:0])
	defer func() {
		if cap(channels)+cap(producers) <= 4096 { // a rare huge topic is not kept
			clear(channels) // let what they point to go
			clear(producers)
			sc.channels, sc.producers = channels[:0], producers[:0]
			lookupScratches.Put(sc)
		}
	}()
	if !ok {
		return nil, errTopicNotFound
	}
	buf := lookupBuffers.Get().(*[]byte)
	b := append((*buf)[:0], `{"channels":`...)
	b = appendNames(b, channels)
	b = s.appendActive(append(b, `,"producers":`...), producers, now)
	*buf = append(b, '}')
	return http_api.PooledJSON{B: buf, Pool: &lookupBuffers}, nil
}

// The buffers of /lookup, the hot route, kept from request to request: its
// copies of a topic, and its answer while it is written.
type lookupScratch struct {
	channels  []string
	producers []registry.Entry
}

var (
	lookupScratches = sync.Pool{New: func() any { return new(lookupScratch) }}
	lookupBuffers   = sync.Pool{New: func() any { return new([]byte) }}
)

// isActive reports whether p has PINGed within the inactive producer
// timeout at now.
func (s *httpServer) isActive(p *registry.Producer, now time.Time) bool {
	return now.Sub(p.LastUpdate()) <= s.nsqlookupd.opts.InactiveProducerTimeout
}

// appendActive appends, as a JSON array, the producers of entries that are
// active at now and not tombstoned within the tombstone lifetime.
func (s *httpServer) appendActive(b []byte, entries []registry.Entry, now time.Time) []byte {
	b = append(b, '[')
	first := true
	for _, e := range entries {
		tombstoned := !e.Tombstoned.IsZero() && now.Sub(e.Tombstoned) < s.nsqlookupd.opts.TombstoneLifetime
		if !s.isActive(e.Producer, now) || tombstoned {
			continue
		}
		if !first {
			b = append(b, ',')
		}
		first = false
		b = append(b, s.nsqlookupd.answers.producer(s.nsqlookupd.db, e.Producer)...)
	}
	return append(b, ']')
}

// doNodes writes each active producer's entry as the node cache keeps it
// encoded: concurrent answers share those bytes.
func (s *httpServer) doNodes(w http.ResponseWriter, req *http.Request, ps httprouter.Params) (interface{}, error) {
	now := s.nsqlookupd.clock.Now()
	nodes := s.nsqlookupd.answers.nodes(s.nsqlookupd.db, now, s.nsqlookupd.opts.TombstoneLifetime)
	return http_api.JSONStream(func(w io.Writer) error {
		// {"producers":[{<producer fields>,"tombstones":[...],"topics":[...]},...]}
		if _, err := io.WriteString(w, `{"producers":[`); err != nil {
			return err
		}
		first := true
		for _, n := range nodes {
			// tombstoned nodes stay listed; only inactivity hides a node
			if !s.isActive(n.producer, now) {
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

// zeroTimeUnixNano is Go's zero time in unix ns: v1.3.0's tombstoned_at
// for a producer never tombstoned.
var zeroTimeUnixNano = time.Time{}.UnixNano()

// doDebug streams the registrations: /debug is the largest answer (about
// 240 bytes a registration), so it is encoded a registration at a time,
// never held whole. Its keys and fields come in the order v1.3.0's maps
// sort them.
func (s *httpServer) doDebug(w http.ResponseWriter, req *http.Request, ps httprouter.Params) (interface{}, error) {
	db := s.nsqlookupd.db
	return http_api.JSONStream(func(w io.Writer) error {
		// {"<category>:<key>:<subkey>":[{"broadcast_address":...},...],...}
		b := []byte{'{'}
		var err error
		db.Debug(func(r registry.Registration, producers []registry.Entry) bool {
			if len(b) == 0 {
				b = append(b, ',')
			}
			b = appendJSONString(b, r.Category+":"+r.Key+":"+r.SubKey)
			b = append(b, ':', '[')
			for i, e := range producers {
				if i > 0 {
					b = append(b, ',')
				}
				info := &e.Producer.Info
				tombstonedAt := zeroTimeUnixNano
				if !e.Tombstoned.IsZero() {
					tombstonedAt = e.Tombstoned.UnixNano()
				}
				b = appendJSONString(append(b, `{"broadcast_address":`...), info.BroadcastAddress)
				b = appendJSONString(append(b, `,"hostname":`...), info.Hostname)
				b = strconv.AppendInt(append(b, `,"http_port":`...), int64(info.HTTPPort), 10)
				b = appendJSONString(append(b, `,"id":`...), info.ID)
				b = strconv.AppendInt(append(b, `,"last_update":`...), e.Producer.LastUpdate().UnixNano(), 10)
				b = strconv.AppendInt(append(b, `,"tcp_port":`...), int64(info.TCPPort), 10)
				b = strconv.AppendBool(append(b, `,"tombstoned":`...), !e.Tombstoned.IsZero())
				b = strconv.AppendInt(append(b, `,"tombstoned_at":`...), tombstonedAt, 10)
				if info.TopologyRegion != "" {
					b = appendJSONString(append(b, `,"topology_region":`...), info.TopologyRegion)
				}
				if info.TopologyZone != "" {
					b = appendJSONString(append(b, `,"topology_zone":`...), info.TopologyZone)
				}
				b = append(appendJSONString(append(b, `,"version":`...), info.Version), '}')
			}
			_, err = w.Write(append(b, ']'))
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

func (s *httpServer) doCreateTopic(w http.ResponseWriter, req *http.Request, ps httprouter.Params) (interface{}, error) {
	_, topicName, err := topicParam(req)
	if err != nil {
		return nil, err
	}
	if !protocol.IsValidTopicName(topicName) {
		return nil, errInvalidTopic
	}
	s.nsqlookupd.logf(lg.INFO, "DB: adding topic(%s)", topicName)
	s.nsqlookupd.db.CreateTopic(topicName)
	return nil, nil
}

func (s *httpServer) doDeleteTopic(w http.ResponseWriter, req *http.Request, ps httprouter.Params) (interface{}, error) {
	_, topicName, err := topicParam(req)
	if err != nil {
		return nil, err
	}
	for _, r := range s.nsqlookupd.db.DeleteTopic(topicName) {
		if r.Category == "channel" {
			s.nsqlookupd.logf(lg.INFO, "DB: removing channel(%s) from topic(%s)", r.SubKey, r.Key)
		} else {
			s.nsqlookupd.logf(lg.INFO, "DB: removing topic(%s)", r.Key)
		}
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
	s.nsqlookupd.db.CreateChannel(topicName, channelName)
	return nil, nil
}

func (s *httpServer) doDeleteChannel(w http.ResponseWriter, req *http.Request, ps httprouter.Params) (interface{}, error) {
	topicName, channelName, err := topicChannelParams(req)
	if err != nil {
		return nil, err
	}
	if !s.nsqlookupd.db.DeleteChannel(topicName, channelName) {
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
	s.nsqlookupd.db.Tombstone(topicName, node, s.nsqlookupd.clock.Now())
	return nil, nil
}

// adminAPI declares an admin route (a POST that changes the registry) as
// api does, behind the access rules when there are any; its 403 is then
// counted from start-up, as every answer a route can give.
func (s *httpServer) adminAPI(method, path string, f http_api.APIHandler, ds ...http_api.Decorator) {
	if g := s.nsqlookupd.access; g.GuardsHTTP() {
		ds = append(ds, g.API)
		s.nsqlookupd.metrics.expect(path, method, http.StatusForbidden)
	}
	s.api(method, path, f, ds...)
}

// adminPlain declares a /debug/pprof route as plain does, behind the
// access rules when there are any.
func (s *httpServer) adminPlain(method, path string, h http.Handler) {
	if g := s.nsqlookupd.access; g.GuardsHTTP() {
		h = g.Handler(h)
		s.nsqlookupd.metrics.expect(path, method, http.StatusForbidden)
	}
	s.plain(method, path, h)
}
