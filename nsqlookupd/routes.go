package nsqlookupd

import (
	"net/http"
	"net/http/pprof"

	"github.com/julienschmidt/httprouter"

	"github.com/lookupd/nsqlookupd/internal/http_api"
	"github.com/lookupd/nsqlookupd/nsqlookupd/internal/auth"
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

// newHTTPServer declares every route. Only the pprof routes are not
// access-logged (as in v1.3.0).
func newHTTPServer(l *NSQLookupd) *httpServer {
	log, probe := http_api.Log(l.log), http_api.LogProbe(l.log)
	router := httprouter.New()
	router.HandleMethodNotAllowed = true
	router.PanicHandler = func(w http.ResponseWriter, req *http.Request, p interface{}) {
		l.panics.Add(1)
		http_api.LogPanicHandler(l.log)(w, req, p)
	}
	router.NotFound = http_api.LogNotFoundHandler(l.log)
	router.MethodNotAllowed = http_api.LogMethodNotAllowedHandler(l.log)
	s := &httpServer{nsqlookupd: l, router: router}

	s.api("GET", "/ping", s.pingHandler, probe, http_api.PlainText)
	s.api("GET", "/info", s.doInfo, probe, http_api.V1)

	debug := s.api
	if l.auth != nil {
		debug = s.adminAPI // it names every topic: an admin route with auth on
	}
	debug("GET", "/debug", s.doDebug, log, http_api.V1)
	s.read("/lookup", false, s.doLookup, log, http_api.V1)
	s.read("/topics", false, s.doTopics, log, http_api.V1)
	s.read("/channels", true, s.doChannels, log, http_api.V1)
	s.read("/nodes", false, s.doNodes, log, http_api.V1)

	s.adminAPI("POST", "/topic/create", s.doCreateTopic, log, http_api.V1)
	s.adminAPI("POST", "/topic/delete", s.doDeleteTopic, log, http_api.V1)
	s.adminAPI("POST", "/channel/create", s.doCreateChannel, log, http_api.V1)
	s.adminAPI("POST", "/channel/delete", s.doDeleteChannel, log, http_api.V1)
	s.adminAPI("POST", "/topic/tombstone", s.doTombstoneTopicProducer, log, http_api.V1)

	// A probe for the access log, as /ping and /info; served with
	// --disable-pprof too.
	s.plain("GET", "/metrics", http_api.LogProbeHandler(l.log, l.metrics.handler))

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

// read declares a route that reads the registry: with auth on, a request
// gets an auth error, or f gets the state that filters its answer (nil:
// unfiltered); channels says the route is /channels (internal/auth, Read).
func (s *httpServer) read(path string, channels bool, f func(http.ResponseWriter, *http.Request, *auth.State) (interface{}, error), ds ...http_api.Decorator) {
	if s.nsqlookupd.auth != nil {
		s.nsqlookupd.metrics.expectRoute("GET", path, auth.Statuses)
	}
	s.api("GET", path, func(w http.ResponseWriter, req *http.Request, _ httprouter.Params) (interface{}, error) {
		st, err := s.nsqlookupd.auth.Read(w, req, channels)
		if err != nil {
			return nil, err
		}
		return f(w, req, st)
	}, ds...)
}

// plain declares a route answered by a plain http.Handler.
func (s *httpServer) plain(method, path string, h http.Handler) {
	s.nsqlookupd.metrics.expectRoute(method, path, plainCodes)
	s.router.Handler(method, path, h)
}

// adminAPI declares an admin route (a POST that changes the registry) as
// api does, behind the access rules, which a reload may change; its 403 is
// counted from start-up, as every answer a route can give.
func (s *httpServer) adminAPI(method, path string, f http_api.APIHandler, ds ...http_api.Decorator) {
	s.nsqlookupd.metrics.expect(path, method, http.StatusForbidden)
	s.api(method, path, f, append(ds, s.nsqlookupd.access.API)...)
}

// adminPlain declares a /debug/pprof route as plain does, behind the
// access rules.
func (s *httpServer) adminPlain(method, path string, h http.Handler) {
	s.nsqlookupd.metrics.expect(path, method, http.StatusForbidden)
	s.plain(method, path, s.nsqlookupd.access.Handler(h))
}
