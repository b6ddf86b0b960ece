package nsqlookupd

import (
	"io"
	"net/http"
	"slices"
	"strconv"
	"strings"
	"sync"
	"time"

	"github.com/julienschmidt/httprouter"

	"github.com/lookupd/nsqlookupd/internal/http_api"
	"github.com/lookupd/nsqlookupd/internal/lg"
	"github.com/lookupd/nsqlookupd/internal/protocol"
	"github.com/lookupd/nsqlookupd/internal/version"
	"github.com/lookupd/nsqlookupd/nsqlookupd/internal/auth"
	"github.com/lookupd/nsqlookupd/nsqlookupd/internal/registry"
)

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

func (s *httpServer) doTopics(w http.ResponseWriter, req *http.Request, st *auth.State) (interface{}, error) {
	if st != nil {
		return http_api.JSON(append(appendNames([]byte(`{"topics":`), st.Topics(s.nsqlookupd.db.Topics())), '}')), nil
	}
	return http_api.JSON(s.nsqlookupd.answers.topics(s.nsqlookupd.db)), nil
}

func (s *httpServer) doChannels(w http.ResponseWriter, req *http.Request, st *auth.State) (interface{}, error) {
	_, topicName, err := topicParam(req)
	if err != nil {
		return nil, err
	}
	if topicName == registry.Wildcard && st == nil {
		return http_api.JSON(s.nsqlookupd.answers.allChannels(s.nsqlookupd.db)), nil
	}
	b := append([]byte(`{"channels":`), appendNames(nil, st.Channels(topicName, s.nsqlookupd.db.Channels(topicName)))...)
	return http_api.JSON(append(b, '}')), nil
}

func (s *httpServer) doLookup(w http.ResponseWriter, req *http.Request, st *auth.State) (interface{}, error) {
	_, topicName, err := topicParam(req)
	if err != nil {
		return nil, err
	}
	if !st.MaySee(topicName) {
		return nil, errTopicNotFound // as for a topic that does not exist
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
	b = appendNames(b, st.Channels(topicName, channels))
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
	return p.UpdatedSince(now.Add(-s.nsqlookupd.opts.InactiveProducerTimeout))
}

// appendActive appends, as a JSON array, the producers of entries that are
// active at now and not tombstoned within the tombstone lifetime.
func (s *httpServer) appendActive(b []byte, entries []registry.Entry, now time.Time) []byte {
	b = append(b, '[')
	first, since := true, now.Add(-s.nsqlookupd.opts.InactiveProducerTimeout)
	for _, e := range entries {
		tombstoned := !e.Tombstoned.IsZero() && now.Sub(e.Tombstoned) < s.nsqlookupd.opts.TombstoneLifetime
		if !e.Producer.UpdatedSince(since) || tombstoned {
			continue
		}
		if !first {
			b = append(b, ',')
		}
		first = false
		b = append(b, e.Producer.Listing...) // as IDENTIFY encoded it
	}
	return append(b, ']')
}

// doNodes writes each active producer's entry as the node cache keeps it
// encoded: concurrent answers share those bytes.
func (s *httpServer) doNodes(w http.ResponseWriter, req *http.Request, st *auth.State) (interface{}, error) {
	now := s.nsqlookupd.clock.Now()
	nodes := s.nsqlookupd.answers.nodes(s.nsqlookupd.db, now, s.nsqlookupd.opts.TombstoneLifetime, st)
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

// doDebug streams the registrations: /debug is the largest answer (about
// 240 bytes a registration), so it is encoded a registration at a time,
// never held whole. Its keys, "<category>:<key>:<subkey>", come in the
// order v1.3.0's map sorts them: the channel registrations, the client
// one, then the topic ones, each kind by topic name in key order
// (compareDebugKeys), a topic's channels by name.
func (s *httpServer) doDebug(w http.ResponseWriter, req *http.Request, ps httprouter.Params) (interface{}, error) {
	db := s.nsqlookupd.db
	return http_api.JSONStream(func(w io.Writer) error {
		topics := db.TopicNames()
		slices.SortFunc(topics, compareDebugKeys)
		b := []byte{'{'}
		var err error
		write := func(key string, producers []registry.Entry) bool {
			if len(b) == 0 {
				b = append(b, ',')
			}
			b = appendJSONString(b, key)
			b = append(b, ':', '[')
			for i, e := range producers {
				if i > 0 {
					b = append(b, ',')
				}
				b = appendDebugProducer(b, e)
			}
			_, err = w.Write(append(b, ']'))
			b = b[:0]
			return err == nil
		}
		for _, t := range topics {
			if !db.EachChannel(t, func(c string, producers []registry.Entry) bool {
				return write("channel:"+t+":"+c, producers)
			}) {
				return err
			}
		}
		if nodes := db.Nodes(); len(nodes) > 0 {
			producers := make([]registry.Entry, len(nodes))
			for i, n := range nodes {
				producers[i].Producer = n.Producer
			}
			if !write("client::", producers) {
				return err
			}
		}
		var channels []string
		var producers []registry.Entry
		for _, t := range topics {
			channels, producers, _ = db.Lookup(t, channels[:0], producers[:0])
			if len(producers) > 0 && !write("topic:"+t+":", producers) {
				return err
			}
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
		if r.Kind == registry.KindChannel {
			s.nsqlookupd.logf(lg.INFO, "DB: removing channel(%s) from topic(%s)", r.Channel, r.Topic)
		} else {
			s.nsqlookupd.logf(lg.INFO, "DB: removing topic(%s)", r.Topic)
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
	s.nsqlookupd.db.Tombstone(topicName, s.nsqlookupd.clock.Now(), nodeAddresses(node)...)
	return nil, nil
}

// nodeAddresses returns the producer addresses node, as /topic/tombstone
// names one, may mean: a broadcast address and HTTP port joined as v1.3.0
// joins them ("::1:4151") or as nsqadmin does ("[::1]:4151"). See
// docs/differences.md, IPv6 tombstones.
func nodeAddresses(node string) []registry.Address {
	i := strings.LastIndexByte(node, ':')
	if i < 0 {
		return nil
	}
	host, port := node[:i], node[i+1:]
	n, err := strconv.Atoi(port)
	if err != nil || strconv.Itoa(n) != port {
		return nil // no HTTP port is written so
	}
	addrs := []registry.Address{{BroadcastAddress: host, HTTPPort: n}}
	if inner, ok := strings.CutPrefix(host, "["); ok && strings.HasSuffix(inner, "]") && strings.Contains(inner, ":") {
		addrs = append(addrs, registry.Address{BroadcastAddress: inner[:len(inner)-1], HTTPPort: n})
	}
	return addrs
}
