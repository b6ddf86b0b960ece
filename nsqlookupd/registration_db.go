package nsqlookupd

import (
	"cmp"
	"encoding/json"
	"net"
	"slices"
	"strconv"
	"strings"
	"sync"
	"sync/atomic"
	"time"

	"github.com/lookupd/nsqlookupd/internal/protocol"
)

// registrationDB is the daemon's only state: which producers (nsqd) hold
// which registrations. A registration is the client registration, which
// every identified producer is in; a topic registration; or a channel
// registration of a topic. The registry is indexed by topic and by
// producer, so each query costs what its answer holds, never a walk of
// unrelated topics or producers.
//
// # Locking
//
// One mutex, mu, serializes every change: a writer takes it once, checks
// and plans what it will change (allocating what it needs), then commits,
// so a change happens whole or, if planning fails (panics), not at all.
//
// Readers do not queue behind writers. The hot queries, /lookup and
// /channels of one topic, never take mu: they find the topic in the topic
// index (64 shards, each locked for a map access, and by writers only to
// add or remove a topic) and copy it under the topic's own read lock, which a
// writer holds only while it changes what that topic's readers see (its
// registration, producers, tombstones, channel names): a slice insert or
// a field store, well under a microsecond. /topics reads the sorted topic
// names under namesMu, which a writer holds only to add or remove a topic
// name. The long queries take mu a piece at a time: /nodes one producer at
// a time, and only for producers whose topics changed since its last
// answer (it keeps each producer's encoded entry); /debug one topic at a
// time. The wildcard queries copy topic after topic under their read
// locks. So a REGISTER waits at most for one producer's or one topic's
// worth of copying, and a /lookup at most for one writer's store into that
// same topic.
//
// Fields a reader sees are written only with mu and the topic's lock both
// held; a reader holds either. Every other field is guarded by mu alone.
//
// Why this design, measured with the load harness's churn phase (large
// preset: 1.2M registrations, 16 connections sending 2 000 ephemeral
// REGISTER/UNREGISTER a second, 8 clients on /lookup, /nodes polled back
// to back). With one RWMutex for everything, /lookup spent about 30% of
// its time in RLock behind queued writers, and /nodes held the lock while
// it sorted 10 000 topics: /lookup p99 rose 4-6x under churn. Immutable
// copy-on-write topics would free readers too, but every REGISTER would
// copy its topic's lists (some 500 MB of garbage to register the xlarge
// preset) and a topic of 200 000 channels would need a persistent tree.
// Per-topic locks with the long reads cut into pieces cost one short lock
// per read and no garbage: under churn the block profile shows no /lookup
// waiting on a registry lock (writers' Lock is 1.5% of blocked time, most
// of it the log), and /lookup p99 is that of the same load without churn
// (1.00-1.13x); what is left of the tail is the two cores being busy.
//
// # Invariants
//
// checkInvariants verifies each of these and names the number of any that
// is broken:
//
//  1. topics maps each name to a *topic of that name, and holds exactly the
//     topics that are registered or have a channel.
//  2. A topic's producers are sorted by peer id, without duplicates, and
//     each is a live peer: the one peers maps its id to.
//  3. A topic with producers is registered.
//  4. A topic's chanNames hold exactly the keys of its channels, in order.
//  5. A channel's producers are live peers, without duplicates, each among
//     the producers of the channel's topic.
//  6. A live peer's topics map has a key for each topic whose producers
//     hold it and no other; its value is the number of that topic's
//     channels that hold the peer.
//  7. names holds exactly the names of the registered topics.
//  8. The counts equal what they count: producers, registered topics,
//     channels, and registrations (producers of topic and channel
//     registrations, the client registration not counted).
//  9. The tombstone queue counts each tombstone of a producer entry once,
//     and no other.
//  10. Topic and channel names are valid names: they hold no ':', which
//     /debug's key order relies on.
type registrationDB struct {
	mu sync.Mutex // serializes changes; guards what no other lock guards

	topics *topicIndex      // topic name -> *topic; changed under mu
	peers  map[string]*peer // peer id -> the live peer: the client registration
	// peersPeak is the most entries peers has held: see shrinkMap.
	peersPeak int

	namesMu sync.RWMutex // guards names; written with mu held too
	names   sortedNames  // the registered topics' names

	// gen counts changes of any answer, topicsGen changes of names and
	// peersGen changes of peers: the answers' caches are keyed by them.
	gen, topicsGen, peersGen atomic.Uint64

	// The sizes /metrics reports, changed under mu.
	nProducers, nTopics, nChannels, nRegistrations atomic.Int64
	tombstones                                     tombstoneQueue

	sortedPeers atomic.Pointer[peerList] // cache of peers sorted by id
	answers     answers                  // shared answers of the large queries

	// hook, when not nil, is called by each change after it has planned
	// and before it commits. It is always nil in production: tests set it
	// to inject a fault (a panic) where no input can cause one.
	hook func(op string)
}

// peerInfo is what a producer (an nsqd) told us in IDENTIFY, plus the
// address of its connection. It is written once, before the producer is
// added to the registry, and never changed after.
type peerInfo struct {
	id string // the connection's remote address: the producer's key

	RemoteAddress    string `json:"remote_address"`
	Hostname         string `json:"hostname"`
	BroadcastAddress string `json:"broadcast_address"`
	TCPPort          int    `json:"tcp_port"`
	HTTPPort         int    `json:"http_port"`
	Version          string `json:"version"`
	TopologyZone     string `json:"topology_zone,omitempty"`
	TopologyRegion   string `json:"topology_region,omitempty"`

	// The producer's JSON, encoded once by seal: /lookup and /nodes send
	// json for every request, and /debug writes debug[0], last_update,
	// debug[1], tombstoned, debug[2], tombstoned_at, debug[3] (the fields
	// in the sorted order of v1.3.0's map).
	json  []byte
	debug [4][]byte
}

// seal encodes the producer's JSON once its fields are set.
func (pi *peerInfo) seal() {
	pi.json, _ = json.Marshal(pi)
	str := func(s string) string { b, _ := json.Marshal(s); return string(b) }
	pi.debug[0] = []byte(`{"broadcast_address":` + str(pi.BroadcastAddress) +
		`,"hostname":` + str(pi.Hostname) +
		`,"http_port":` + strconv.Itoa(pi.HTTPPort) +
		`,"id":` + str(pi.id) + `,"last_update":`)
	pi.debug[1] = []byte(`,"tcp_port":` + strconv.Itoa(pi.TCPPort) + `,"tombstoned":`)
	pi.debug[2] = []byte(`,"tombstoned_at":`)
	tail := ""
	if pi.TopologyRegion != "" {
		tail += `,"topology_region":` + str(pi.TopologyRegion)
	}
	if pi.TopologyZone != "" {
		tail += `,"topology_zone":` + str(pi.TopologyZone)
	}
	pi.debug[3] = []byte(tail + `,"version":` + str(pi.Version) + `}`)
}

// node returns the producer's broadcast_address:http_port, as named by
// /topic/tombstone.
func (pi *peerInfo) node() string {
	return pi.BroadcastAddress + ":" + strconv.Itoa(pi.HTTPPort)
}

// isNode reports whether node, as /topic/tombstone?node= gives it, names
// this producer: its broadcast_address:http_port as v1.3.0 builds it
// (plain concatenation: "::1:4151" for an IPv6 address), or as
// net.JoinHostPort builds it ("[::1]:4151", which is what nsqadmin sends).
// v1.3.0 matches only the first, so nsqadmin can never tombstone an nsqd
// that broadcasts an IPv6 address there (SPEC §6, IPv6 tombstones).
func (pi *peerInfo) isNode(node string) bool {
	return node == pi.node() || node == net.JoinHostPort(pi.BroadcastAddress, strconv.Itoa(pi.HTTPPort))
}

// peer is one identified registration connection: a producer.
type peer struct {
	info peerInfo // immutable
	// lastUpdate is the time of IDENTIFY or of the last PING, in unix ns.
	lastUpdate atomic.Int64

	// topics has a key for each topic whose producers hold this peer; the
	// value is how many of that topic's channels hold it. Guarded by mu.
	topics map[*topic]int32
	// gen counts changes of the peer's topics and tombstones: its /nodes
	// entry, cached in node, is rebuilt when they no longer match. Written
	// under mu.
	gen  atomic.Uint64
	node atomic.Pointer[nodeState]

	// close closes the peer's connection, when a newer connection with
	// the same id replaces it (see addPeer). Set before addPeer.
	close func() error
}

func newPeer(info *peerInfo, now time.Time) *peer {
	p := &peer{info: *info}
	p.lastUpdate.Store(now.UnixNano())
	return p
}

// tombstone is a producer entry's tombstone: tombstones are per (producer,
// topic). It is immutable once made, but for the fields tombstoneQueue
// guards; a new tombstone replaces it.
type tombstone struct {
	at int64 // unix ns

	// guarded by tombstoneQueue.mu
	queued  bool // in the queue, and still the entry's tombstone
	counted bool // counted as younger than the lifetime
}

// producer is a producer's entry in a topic registration, and what the
// queries hand out: a copy of it is a consistent view of that entry.
type producer struct {
	peer *peer
	tomb *tombstone // nil: not tombstoned
}

// topic holds everything registered under one topic name: the topic
// registration itself, when there is one, and the topic's channel
// registrations, which may exist without it.
type topic struct {
	name string

	mu         sync.RWMutex // readers' lock: guards the fields below, written with registrationDB.mu held too
	registered bool         // ("topic", name, "") exists
	producers  []producer   // the topic registration's producers, sorted by peer id
	chanNames  sortedNames  // the channel registrations' names

	// channels maps a channel name to its producers (unordered, few);
	// guarded by registrationDB.mu.
	channels     map[string][]*peer
	channelsPeak int // most entries channels has held: see shrinkMap
}

// registration names one (category, key, subkey) triple, for logs.
type registration struct {
	Category, Key, SubKey string
}

// compareRegistrations orders registrations by category, key, then subkey.
func compareRegistrations(a, b registration) int {
	return cmp.Or(strings.Compare(a.Category, b.Category),
		strings.Compare(a.Key, b.Key), strings.Compare(a.SubKey, b.SubKey))
}

// shrinkMin is the size below which a map is never reallocated.
const shrinkMin = 64

// shrinkMap returns m, or, when deletes have left it holding a quarter or
// less of the peak entries it held, a copy sized to what it holds, and
// resets *peak. Go maps never give back their storage: without this, a
// topic that once had 50 000 ephemeral channels keeps ~1.7 MB after they
// are gone. The copy costs O(len(m)), paid for by the 3/4 of peak deletes
// before it.
func shrinkMap[K comparable, V any](m map[K]V, peak *int) map[K]V {
	if *peak < shrinkMin || len(m) > *peak/4 {
		return m
	}
	c := make(map[K]V, len(m))
	for k, v := range m {
		c[k] = v
	}
	*peak = len(m)
	return c
}

func newRegistrationDB() *registrationDB {
	return &registrationDB{peers: make(map[string]*peer), topics: newTopicIndex()}
}

// topic returns the topic named name, or nil; for readers.
func (db *registrationDB) topic(name string) *topic {
	return db.topics.get(name)
}

// topicLocked returns the topic named name, or nil; for writers.
func (db *registrationDB) topicLocked(name string) *topic {
	return db.topics.getLocked(name)
}

// isLiveLocked reports whether p is the peer registered under its id.
func (db *registrationDB) isLiveLocked(p *peer) bool {
	return db.peers[p.info.id] == p
}

// planned calls the test hook, if any: everything is planned, nothing
// changed yet.
func (db *registrationDB) planned(op string) {
	if db.hook != nil {
		db.hook(op)
	}
}

// changed records that answers changed.
func (db *registrationDB) changed() { db.gen.Add(1) }

// producerIndex returns where p is, or would be, in producers, and
// whether it is there.
func producerIndex(producers []producer, p *peer) (int, bool) {
	return slices.BinarySearchFunc(producers, p.info.id, func(e producer, id string) int {
		return strings.Compare(e.peer.info.id, id)
	})
}

// addPeer adds an identified peer to the client registration. A live peer
// with the same id (the kernel reused its address; the old connection is
// dead but not yet closed) is replaced: it leaves every registration, as
// on a disconnect, and is returned with what it left, so its connection
// can be closed.
func (db *registrationDB) addPeer(p *peer) (replaced *peer, left []registration) {
	db.mu.Lock()
	defer db.mu.Unlock()
	old := db.peers[p.info.id]
	if old == p {
		return nil, nil
	}
	var plan []topicRemoval
	if old != nil {
		plan = db.planRemovePeerLocked(old)
	}
	db.planned("addPeer")

	if old != nil {
		left = db.commitRemovePeerLocked(old, plan)
	}
	p.topics = make(map[*topic]int32)
	db.peers[p.info.id] = p
	db.peersPeak = max(db.peersPeak, len(db.peers))
	db.nProducers.Add(1)
	db.peersGen.Add(1)
	db.changed()
	return old, left
}

// register adds p to (channel topic channel), when channel is not empty, and
// to (topic topic), and reports which of the two it was not in before. A
// repeated registration keeps the producer's tombstone.
func (db *registrationDB) register(p *peer, topicName, channel string) (channelAdded, topicAdded bool) {
	db.mu.Lock()
	defer db.mu.Unlock()
	if !db.isLiveLocked(p) {
		return false, false // the peer has gone: its connection is being torn down
	}
	t := db.topicLocked(topicName)
	newTopic := t == nil
	var chProducers []*peer
	newChannel := false
	if channel != "" {
		var ok bool
		if t != nil {
			chProducers, ok = t.channels[channel]
		}
		newChannel = !ok
		channelAdded = !slices.Contains(chProducers, p)
	}
	if t != nil {
		_, in := p.topics[t]
		topicAdded = !in
	} else {
		topicAdded = true
	}
	if !channelAdded && !topicAdded {
		return false, false // registered already (and so the topic is)
	}
	if newTopic {
		t = &topic{name: strings.Clone(topicName), channels: make(map[string][]*peer)}
	}
	if newChannel {
		channel = strings.Clone(channel)
	}
	db.planned("register")

	if newTopic {
		db.topics.put(t)
	}
	if channelAdded {
		t.channels[channel] = append(chProducers, p)
		t.channelsPeak = max(t.channelsPeak, len(t.channels))
		p.topics[t]++ // made below if topicAdded: a map's zero value counts up
		db.nRegistrations.Add(1)
	}
	t.mu.Lock()
	if newChannel {
		t.chanNames.Insert(channel)
		db.nChannels.Add(1)
	}
	registered := t.registered
	t.registered = true
	if topicAdded {
		i, _ := producerIndex(t.producers, p)
		t.producers = slices.Insert(t.producers, i, producer{peer: p})
	}
	t.mu.Unlock()
	if !registered {
		db.addNameLocked(t.name)
	}
	if topicAdded {
		if _, ok := p.topics[t]; !ok {
			p.topics[t] = 0
		}
		db.nRegistrations.Add(1)
		p.gen.Add(1)
	}
	db.changed()
	return channelAdded, topicAdded
}

// addNameLocked records that the topic named name is now registered.
func (db *registrationDB) addNameLocked(name string) {
	db.namesMu.Lock()
	db.names.Insert(name)
	db.namesMu.Unlock()
	db.nTopics.Add(1)
	db.topicsGen.Add(1)
}

// removeNameLocked records that the topic named name is no longer
// registered.
func (db *registrationDB) removeNameLocked(name string) {
	db.namesMu.Lock()
	db.names.Delete(name)
	db.namesMu.Unlock()
	db.nTopics.Add(-1)
	db.topicsGen.Add(1)
}

// gcLocked drops t from topics once it holds no registration at all, and
// reallocates its channel map once deletes have left it much smaller than
// it was. A reader that found t before sees an empty topic, as if it had
// looked a moment later.
func (db *registrationDB) gcLocked(t *topic) {
	if !t.registered && len(t.channels) == 0 {
		db.topics.remove(t)
		return
	}
	t.channels = shrinkMap(t.channels, &t.channelsPeak)
}

// topicRemoval plans the removal of a peer from one topic: the channels it
// leaves, which of them then go (ephemeral and left empty), and whether it
// leaves the topic registration and the topic then goes.
type topicRemoval struct {
	t          *topic
	channels   []string // channels holding the peer
	drop       []bool   // drop[i]: channels[i] goes
	fromTopic  bool     // the peer is among the topic's producers
	dropTopic  bool     // the topic registration goes
	producerAt int      // where the peer is in t.producers, if fromTopic
}

// planRemoveLocked plans the removal of p from topic t: from each channel
// holding it, then from the topic registration. With dropChannels, an
// ephemeral channel the peer leaves empty goes (on a disconnect: SPEC §6;
// v1.3.0's UNREGISTER of a topic keeps its channels, and so do we). The
// topic registration goes if ephemeral and empty afterwards, even if p
// was not in it (v1.3.0's rule for the topic an UNREGISTER names; a peer
// leaving on disconnect is always in it).
func planRemoveLocked(t *topic, p *peer, dropChannels bool) topicRemoval {
	r := topicRemoval{t: t}
	if p.topics[t] > 0 {
		for name, producers := range t.channels {
			if slices.Contains(producers, p) {
				r.channels = append(r.channels, name)
				r.drop = append(r.drop, dropChannels && len(producers) == 1 && protocol.IsEphemeral(name))
			}
		}
	}
	r.producerAt, r.fromTopic = producerIndex(t.producers, p)
	left := len(t.producers)
	if r.fromTopic {
		left--
	}
	r.dropTopic = t.registered && left == 0 && protocol.IsEphemeral(t.name)
	return r
}

// commitRemoveLocked carries out r for peer p.
func (db *registrationDB) commitRemoveLocked(p *peer, r topicRemoval) {
	t := r.t
	for i, name := range r.channels {
		producers := t.channels[name]
		j := slices.Index(producers, p)
		producers[j] = producers[len(producers)-1]
		producers[len(producers)-1] = nil
		t.channels[name] = shrinkSlice(producers[:len(producers)-1])
		db.nRegistrations.Add(-1)
		if r.drop[i] {
			delete(t.channels, name)
		}
	}
	if len(r.channels) > 0 {
		p.topics[t] -= int32(len(r.channels))
	}
	t.mu.Lock()
	for i, name := range r.channels {
		if r.drop[i] {
			t.chanNames.Delete(name)
			db.nChannels.Add(-1)
		}
	}
	if r.fromTopic {
		db.tombstones.cancel(t.producers[r.producerAt].tomb)
		t.producers = shrinkSlice(slices.Delete(t.producers, r.producerAt, r.producerAt+1))
	}
	if r.dropTopic {
		t.registered = false
	}
	t.mu.Unlock()
	if r.fromTopic {
		delete(p.topics, t)
		db.nRegistrations.Add(-1)
		p.gen.Add(1)
	}
	if r.dropTopic {
		db.removeNameLocked(t.name)
	}
	db.gcLocked(t)
}

// unregisterChannel removes p from (channel topic channel); an ephemeral
// channel left empty is removed, whoever was in it (as v1.3.0 does). It
// reports whether p was in the channel.
func (db *registrationDB) unregisterChannel(p *peer, topicName, channel string) bool {
	db.mu.Lock()
	defer db.mu.Unlock()
	t := db.topicLocked(topicName)
	if t == nil || !db.isLiveLocked(p) {
		return false
	}
	producers, ok := t.channels[channel]
	if !ok {
		return false
	}
	removed := slices.Contains(producers, p)
	left := len(producers)
	if removed {
		left--
	}
	drop := left == 0 && protocol.IsEphemeral(channel)
	if !removed && !drop {
		return false
	}
	db.planned("unregisterChannel")

	if removed {
		db.commitRemoveLocked(p, topicRemoval{t: t, channels: []string{channel}, drop: []bool{drop}})
	} else { // drop an empty ephemeral channel
		db.dropChannelLocked(t, channel)
		db.gcLocked(t)
	}
	db.changed()
	return removed
}

// unregisterTopic removes p from every channel of topic, then from the
// topic; the topic is removed if ephemeral and empty afterwards, its
// channels are kept (as v1.3.0 keeps them). It returns the channels p was
// removed from, sorted, and whether it was in the topic.
func (db *registrationDB) unregisterTopic(p *peer, topicName string) (channels []string, removed bool) {
	db.mu.Lock()
	defer db.mu.Unlock()
	t := db.topicLocked(topicName)
	if t == nil || !db.isLiveLocked(p) {
		return nil, false
	}
	r := planRemoveLocked(t, p, false)
	if len(r.channels) == 0 && !r.fromTopic && !r.dropTopic {
		return nil, false
	}
	channels = slices.Sorted(slices.Values(r.channels))
	db.planned("unregisterTopic")

	db.commitRemoveLocked(p, r)
	db.changed()
	return channels, r.fromTopic
}

// planRemovePeerLocked plans the removal of p from every registration.
func (db *registrationDB) planRemovePeerLocked(p *peer) []topicRemoval {
	plan := make([]topicRemoval, 0, len(p.topics))
	for t := range p.topics {
		plan = append(plan, planRemoveLocked(t, p, true))
	}
	return plan
}

// commitRemovePeerLocked carries out plan and removes p from the client
// registration. It returns the registrations p left, sorted.
func (db *registrationDB) commitRemovePeerLocked(p *peer, plan []topicRemoval) []registration {
	n := 1
	for _, r := range plan {
		n += len(r.channels) + 1
	}
	left := make([]registration, 1, n)
	left[0] = registration{Category: "client"}
	for _, r := range plan {
		for _, name := range r.channels {
			left = append(left, registration{"channel", r.t.name, name})
		}
		if r.fromTopic {
			left = append(left, registration{"topic", r.t.name, ""})
		}
		db.commitRemoveLocked(p, r)
	}
	delete(db.peers, p.info.id)
	db.peers = shrinkMap(db.peers, &db.peersPeak)
	db.nProducers.Add(-1)
	db.peersGen.Add(1)
	db.changed()
	slices.SortFunc(left, compareRegistrations)
	return left
}

// removePeer removes p from the client registration and from every
// registration it holds, removing ephemeral ones it leaves empty. It returns
// the registrations p was removed from, sorted; none if p was not live.
func (db *registrationDB) removePeer(p *peer) []registration {
	db.mu.Lock()
	defer db.mu.Unlock()
	if !db.isLiveLocked(p) {
		return nil
	}
	plan := db.planRemovePeerLocked(p)
	db.planned("removePeer")
	return db.commitRemovePeerLocked(p, plan)
}

// ensureTopicLocked returns the topic named name, registered, creating it.
func (db *registrationDB) ensureTopicLocked(name string) *topic {
	t := db.topicLocked(name)
	if t == nil {
		t = &topic{name: strings.Clone(name), channels: make(map[string][]*peer)}
		db.topics.put(t)
	}
	if !t.registered {
		t.mu.Lock()
		t.registered = true
		t.mu.Unlock()
		db.addNameLocked(t.name)
	}
	return t
}

// createTopic adds the registration (topic name) if absent.
func (db *registrationDB) createTopic(name string) {
	db.mu.Lock()
	defer db.mu.Unlock()
	if t := db.topicLocked(name); t != nil && t.registered {
		return
	}
	db.planned("createTopic")
	db.ensureTopicLocked(name)
	db.changed()
}

// createChannel adds (channel topic channel) and (topic topic) if absent.
func (db *registrationDB) createChannel(topicName, channel string) {
	db.mu.Lock()
	defer db.mu.Unlock()
	if t := db.topicLocked(topicName); t != nil && t.registered {
		if _, ok := t.channels[channel]; ok {
			return
		}
	}
	db.planned("createChannel")
	t := db.ensureTopicLocked(topicName)
	if _, ok := t.channels[channel]; !ok {
		channel = strings.Clone(channel)
		t.channels[channel] = nil // no producers yet: register makes the slice
		t.channelsPeak = max(t.channelsPeak, len(t.channels))
		t.mu.Lock()
		t.chanNames.Insert(channel)
		t.mu.Unlock()
		db.nChannels.Add(1)
	}
	db.changed()
}

// dropChannelLocked removes the registration (channel t.name channel),
// with its producers.
func (db *registrationDB) dropChannelLocked(t *topic, channel string) {
	for _, p := range t.channels[channel] {
		p.topics[t]--
	}
	db.nRegistrations.Add(-int64(len(t.channels[channel])))
	delete(t.channels, channel)
	t.mu.Lock()
	t.chanNames.Delete(channel)
	t.mu.Unlock()
	db.nChannels.Add(-1)
}

// dropTopicLocked removes every channel registration of t, then the topic
// registration with its producers, and returns what it removed.
func (db *registrationDB) dropTopicLocked(t *topic) (channels []registration, registered bool) {
	for channel := range t.channels {
		db.dropChannelLocked(t, channel)
		channels = append(channels, registration{"channel", t.name, channel})
	}
	registered = t.registered
	if registered {
		t.mu.Lock()
		producers := t.producers
		t.producers = nil
		t.registered = false
		t.mu.Unlock()
		for _, e := range producers {
			db.tombstones.cancel(e.tomb)
			delete(e.peer.topics, t)
			e.peer.gen.Add(1)
		}
		db.nRegistrations.Add(-int64(len(producers)))
		db.removeNameLocked(t.name)
	}
	db.gcLocked(t)
	return channels, registered
}

// matchingLocked returns the topic named name, or every topic for the
// wildcard.
func (db *registrationDB) matchingLocked(name string) []*topic {
	if name != wildcard {
		if t := db.topicLocked(name); t != nil {
			return []*topic{t}
		}
		return nil
	}
	return db.topics.all()
}

// deleteTopic removes every channel registration of the matching topics,
// then the topic registrations, producers and all. It returns what it
// removed, sorted.
func (db *registrationDB) deleteTopic(name string) (channels []registration, topics []string) {
	db.mu.Lock()
	defer db.mu.Unlock()
	matching := db.matchingLocked(name)
	if len(matching) == 0 {
		return nil, nil
	}
	db.planned("deleteTopic")
	for _, t := range matching {
		chs, registered := db.dropTopicLocked(t)
		channels = append(channels, chs...)
		if registered {
			topics = append(topics, t.name)
		}
	}
	db.changed()
	slices.SortFunc(channels, compareRegistrations)
	slices.Sort(topics)
	return channels, topics
}

// deleteChannel removes the registration (channel topic channel) with its
// producers; it reports false if there was none.
func (db *registrationDB) deleteChannel(topicName, channel string) bool {
	db.mu.Lock()
	defer db.mu.Unlock()
	t := db.topicLocked(topicName)
	if t == nil {
		return false
	}
	if _, ok := t.channels[channel]; !ok {
		return false
	}
	db.planned("deleteChannel")
	db.dropChannelLocked(t, channel)
	db.gcLocked(t)
	db.changed()
	return true
}

// tombstone marks, in the matching topics, every producer whose
// broadcast_address:http_port is node as tombstoned at now. It returns how
// many entries it marked.
func (db *registrationDB) tombstone(topicName, node string, now time.Time) int {
	db.mu.Lock()
	defer db.mu.Unlock()
	type mark struct {
		t *topic
		i int
	}
	var marks []mark
	for _, t := range db.matchingLocked(topicName) {
		for i, e := range t.producers {
			if e.peer.info.isNode(node) {
				marks = append(marks, mark{t, i})
			}
		}
	}
	if len(marks) == 0 {
		return 0
	}
	tombs := make([]*tombstone, len(marks))
	for i := range tombs {
		tombs[i] = &tombstone{at: now.UnixNano()}
	}
	db.planned("tombstone")
	for i, m := range marks {
		e := &m.t.producers[m.i]
		db.tombstones.replace(e.tomb, tombs[i])
		m.t.mu.Lock()
		e.tomb = tombs[i]
		m.t.mu.Unlock()
		e.peer.gen.Add(1)
	}
	db.changed()
	return len(marks)
}

// tombstoneQueue counts the tombstones younger than the lifetime without
// walking the registry: the tombstones in the order they were made, which
// is the order they expire in. Its own mutex keeps a /metrics scrape off
// the registry's.
type tombstoneQueue struct {
	mu     sync.Mutex
	queue  []*tombstone // oldest first; some no longer queued
	queued int          // tombstones in queue still queued
	active int          // of those, counted: not yet seen expired
}

// replace records that tombstone next (nil: none) replaces prev (nil:
// none) on an entry.
func (q *tombstoneQueue) replace(prev, next *tombstone) {
	q.mu.Lock()
	defer q.mu.Unlock()
	q.cancelLocked(prev)
	if next == nil {
		return
	}
	next.queued, next.counted = true, true
	q.queue = append(q.queue, next)
	q.queued++
	q.active++
	// replaced tombstones stay in the slice until they reach the front:
	// compact when they are most of it
	if len(q.queue) > 64 && len(q.queue) > 2*q.queued {
		q.queue = slices.DeleteFunc(q.queue, func(tb *tombstone) bool { return !tb.queued })
		q.queue = shrinkSlice(q.queue)
	}
}

// cancel records that tb (nil: none) is no longer an entry's tombstone.
func (q *tombstoneQueue) cancel(tb *tombstone) {
	if tb == nil {
		return
	}
	q.mu.Lock()
	defer q.mu.Unlock()
	q.cancelLocked(tb)
}

func (q *tombstoneQueue) cancelLocked(tb *tombstone) {
	if tb == nil || !tb.queued {
		return
	}
	tb.queued = false
	q.queued--
	if tb.counted {
		tb.counted = false
		q.active--
	}
}

// youngerThan returns how many tombstones are younger than lifetime at now.
func (q *tombstoneQueue) youngerThan(now time.Time, lifetime time.Duration) int {
	q.mu.Lock()
	defer q.mu.Unlock()
	cutoff := now.UnixNano() - int64(lifetime)
	i := 0
	for ; i < len(q.queue); i++ {
		tb := q.queue[i]
		if tb.queued && tb.at > cutoff {
			break
		}
		if tb.counted {
			tb.counted = false
			q.active--
		}
		if tb.queued {
			tb.queued = false // expired: the entry keeps it, the queue lets it go
			q.queued--
		}
	}
	if i > 0 {
		q.queue = shrinkSlice(slices.Delete(q.queue, 0, i))
	}
	return q.active
}
