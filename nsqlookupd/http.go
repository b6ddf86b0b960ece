package nsqlookupd

import (
	"encoding/json"
	"io"
	"net/http"
	"net/http/pprof"
	"strconv"
	"time"

	"github.com/julienschmidt/httprouter"

	"github.com/lookupd/nsqlookupd/internal/http_api"
	"github.com/lookupd/nsqlookupd/internal/lg"
	"github.com/lookupd/nsqlookupd/internal/protocol"
	"github.com/lookupd/nsqlookupd/internal/version"
)

type httpServer struct {
	nsqlookupd *NSQLookupd
	router     http.Handler
	handler    http.Handler // router behind the HTTP write timeout: what ServeHTTP serves
}

// newHTTPServer declares every route of the HTTP API.
func newHTTPServer(l *NSQLookupd) *httpServer {
	log := http_api.Log(l.logf)

	router := httprouter.New()
	router.HandleMethodNotAllowed = true
	router.PanicHandler = http_api.LogPanicHandler(l.logf)
	router.NotFound = http_api.LogNotFoundHandler(l.logf)
	router.MethodNotAllowed = http_api.LogMethodNotAllowedHandler(l.logf)
	writeTimeout := l.opts.HTTPWriteTimeout
	s := &httpServer{nsqlookupd: l, router: router, handler: http_api.WriteTimeout(router, writeTimeout)}

	router.Handle("GET", "/ping", http_api.Decorate(s.pingHandler, log, http_api.PlainText))
	router.Handle("GET", "/info", http_api.Decorate(s.doInfo, log, http_api.V1))

	router.Handle("GET", "/debug", http_api.Decorate(s.doDebug, log, http_api.V1))
	router.Handle("GET", "/lookup", http_api.Decorate(s.doLookup, log, http_api.V1))
	router.Handle("GET", "/topics", http_api.Decorate(s.doTopics, log, http_api.V1))
	router.Handle("GET", "/channels", http_api.Decorate(s.doChannels, log, http_api.V1))
	router.Handle("GET", "/nodes", http_api.Decorate(s.doNodes, log, http_api.V1))

	router.Handle("POST", "/topic/create", http_api.Decorate(s.doCreateTopic, log, http_api.V1))
	router.Handle("POST", "/topic/delete", http_api.Decorate(s.doDeleteTopic, log, http_api.V1))
	router.Handle("POST", "/channel/create", http_api.Decorate(s.doCreateChannel, log, http_api.V1))
	router.Handle("POST", "/channel/delete", http_api.Decorate(s.doDeleteChannel, log, http_api.V1))
	router.Handle("POST", "/topic/tombstone", http_api.Decorate(s.doTombstoneTopicProducer, log, http_api.V1))

	if !l.opts.DisablePprof {
		// v1.3.0's routes, then the index at /debug/pprof/ (where its
		// relative links resolve) and the profiles it links to.
		router.HandlerFunc("GET", "/debug/pprof", pprof.Index)
		router.HandlerFunc("GET", "/debug/pprof/", pprof.Index)
		router.HandlerFunc("GET", "/debug/pprof/cmdline", pprof.Cmdline)
		router.HandlerFunc("GET", "/debug/pprof/symbol", pprof.Symbol)
		router.HandlerFunc("POST", "/debug/pprof/symbol", pprof.Symbol)
		// These answer after ?seconds=N (profile 30 and trace 1 by
		// default; the others only when asked for a delta): their write
		// deadline is N past the HTTP write timeout.
		router.Handler("GET", "/debug/pprof/profile",
			http_api.ExtendWriteDeadline(http.HandlerFunc(pprof.Profile), 30, writeTimeout))
		router.Handler("GET", "/debug/pprof/trace",
			http_api.ExtendWriteDeadline(http.HandlerFunc(pprof.Trace), 1, writeTimeout))
		for _, name := range []string{"allocs", "block", "goroutine", "heap", "mutex", "threadcreate"} {
			router.Handler("GET", "/debug/pprof/"+name, http_api.ExtendWriteDeadline(pprof.Handler(name), 0, writeTimeout))
		}
	}
	return s
}

func (s *httpServer) ServeHTTP(w http.ResponseWriter, req *http.Request) {
	s.handler.ServeHTTP(w, req)
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
	channels, producers, ok := s.nsqlookupd.db.lookup(topicName)
	if !ok {
		return nil, errTopicNotFound
	}
	// {"channels":[...],"producers":[...]}, from each producer's sealed JSON
	size := 32 + 24*len(channels)
	for _, p := range producers {
		size += len(p.peer.info.json) + 1
	}
	b := make([]byte, 0, size)
	b = append(b, `{"channels":`...)
	b = appendNames(b, channels)
	b = append(b, `,"producers":`...)
	b = appendActiveProducers(b, producers, now, opts)
	return http_api.JSON(append(b, '}')), nil
}

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
