package nsqlookupd

import (
	"cmp"
	"encoding/json"
	"slices"
	"strconv"
	"strings"
	"sync"
	"sync/atomic"
	"time"

	"github.com/lookupd/nsqlookupd/internal/protocol"
)

// wildcard, as the topic of /lookup, /channels, /topic/delete or
// /topic/tombstone, matches every topic.
const wildcard = "*"

// peerInfo is what a producer (an nsqd) told us in IDENTIFY, plus the
// address of its connection. It is written once, before the producer is
// added to the registry, and never changed after: it is shared by pointer.
type peerInfo struct {
	id   string // the connection's remote address: the producer's key
	json []byte // the exported fields as a JSON object, encoded once by seal

	RemoteAddress    string `json:"remote_address"`
	Hostname         string `json:"hostname"`
	BroadcastAddress string `json:"broadcast_address"`
	TCPPort          int    `json:"tcp_port"`
	HTTPPort         int    `json:"http_port"`
	Version          string `json:"version"`
	TopologyZone     string `json:"topology_zone,omitempty"`
	TopologyRegion   string `json:"topology_region,omitempty"`
}

// seal encodes the producer's JSON once: /lookup and /nodes send it for
// every request, and its fields never change after IDENTIFY.
func (pi *peerInfo) seal() {
	pi.json, _ = json.Marshal(pi)
}

// peer is one identified registration connection.
type peer struct {
	info peerInfo
	// lastUpdate is the time of IDENTIFY or of the last PING, in unix ns.
	lastUpdate atomic.Int64
	// slot is the peer's index in registrationDB.peerSlots and regs its
	// index entry; guarded by registrationDB.mu, set by addPeer.
	slot slot
	regs *peerRegs
}

func newPeer(info *peerInfo, now time.Time) *peer {
	p := &peer{info: *info}
	p.lastUpdate.Store(now.UnixNano())
	return p
}

// slot is a small integer naming an identified peer, or a topic, inside
// the registry. The maps that hold one entry per registration are keyed by
// slots and hold no pointers: they cost a few bytes an entry and the
// garbage collector never scans them, however large the cluster.
type slot uint32

// tombstone is a producer's tombstone in a topic registration: tombstones
// are per (producer, topic). at is in unix ns and meaningful only when set.
type tombstone struct {
	at  int64
	set bool
}

// topicEntry is a producer's entry in a topic registration.
type topicEntry struct {
	slot slot
	tb   tombstone
}

// topicReg holds everything registered under one topic name: the topic
// registration itself, when it exists, and the topic's channel
// registrations, which may exist without it.
type topicReg struct {
	name       string
	slot       slot
	registered bool // ("topic", name, "") exists
	// producers holds the topic registration's producers sorted by peer
	// id, the order /lookup answers in; empty unless registered.
	producers []topicEntry
	// channels maps a channel name to its producers; a channel without
	// producers holds a nil map (see removeChannelProducerLocked).
	channels     map[string]map[slot]struct{}
	channelsPeak int      // most entries channels has held: see shrink
	channelNames []string // the keys of channels, sorted
}

// peerRegs indexes one identified peer's registrations: the number of its
// registrations (topic and channel) under each topic.
type peerRegs struct {
	peer   *peer
	topics map[slot]int32 // topic slot -> count
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

// registrationDB is the daemon's only state: which producers hold which
// registrations. It is safe for concurrent use. Every method takes the lock
// once and returns copies; the indexes make each one cost what its answer
// holds, never a walk of unrelated topics or peers.
type registrationDB struct {
	mu     sync.RWMutex         // guards the fields below, and what they point to but peer.lastUpdate
	topics map[string]*topicReg // topic name -> its registrations
	peers  map[string]*peerRegs // peer id -> its registrations: the ("client", "", "") registration

	peerSlots  []*peer     // peer slot -> peer; nil when free
	topicSlots []*topicReg // topic slot -> topic; nil when free
	freePeers  []slot      // free indexes of peerSlots
	freeTopics []slot      // free indexes of topicSlots

	topicsPeak, peersPeak int // most entries topics and peers have held: see shrink
}

// shrinkMin is the size below which a map is never reallocated.
const shrinkMin = 64

// shrink returns m, or, when deletes have left it holding a quarter or less
// of the peak entries it held, a copy sized to what it holds, and resets
// *peak. Go maps never give back their storage: without this, a topic that
// once had 50 000 ephemeral channels keeps ~1.7 MB after they are gone.
// The copy costs O(len(m)), paid for by the 3/4 of peak deletes before it.
func shrink[K comparable, V any](m map[K]V, peak *int) map[K]V {
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

// allocSlot returns a free index of a slot table, growing it if none is free.
func allocSlot[T any](table *[]*T, free *[]slot, v *T) slot {
	if n := len(*free); n > 0 {
		s := (*free)[n-1]
		*free = (*free)[:n-1]
		(*table)[s] = v
		return s
	}
	*table = append(*table, v)
	return slot(len(*table) - 1)
}

func newRegistrationDB() *registrationDB {
	return &registrationDB{
		topics: make(map[string]*topicReg),
		peers:  make(map[string]*peerRegs),
	}
}

// topicLocked returns the topicReg of name, creating it.
func (db *registrationDB) topicLocked(name string) *topicReg {
	t, ok := db.topics[name]
	if !ok {
		t = &topicReg{
			name:     name,
			channels: make(map[string]map[slot]struct{}),
		}
		t.slot = allocSlot(&db.topicSlots, &db.freeTopics, t)
		db.topics[name] = t
		db.topicsPeak = max(db.topicsPeak, len(db.topics))
	}
	return t
}

// matchLocked calls f for the topic named name, or for every topic when name
// is the wildcard.
func (db *registrationDB) matchLocked(name string, f func(*topicReg)) {
	if name == wildcard {
		for _, t := range db.topics {
			f(t)
		}
		return
	}
	if t, ok := db.topics[name]; ok {
		f(t)
	}
}

// gcLocked drops t once it holds no registration at all, and reallocates
// maps that deletes have left much smaller than they were. No caller
// ranges over t.channels when it calls gcLocked; deleteTopic ranges over
// db.topics, but a range keeps reading the map it started with, and each
// topic it yields is gc'd only by its own call.
func (db *registrationDB) gcLocked(t *topicReg) {
	if !t.registered && len(t.channels) == 0 {
		delete(db.topics, t.name)
		db.topicSlots[t.slot] = nil
		db.freeTopics = append(db.freeTopics, t.slot)
		db.topics = shrink(db.topics, &db.topicsPeak)
		return
	}
	t.channels = shrink(t.channels, &t.channelsPeak)
}

// forgetLocked records that peer s lost one registration under topic t.
func (db *registrationDB) forgetLocked(s slot, t *topicReg) {
	p := db.peerSlots[s]
	if p == nil {
		return
	}
	pr := p.regs
	if pr.topics[t.slot] <= 1 {
		delete(pr.topics, t.slot)
	} else {
		pr.topics[t.slot]--
	}
}

// peerLocked returns p's index entry, or nil if p is not (or no longer) in
// the registry.
func (db *registrationDB) peerLocked(p *peer) *peerRegs {
	if int(p.slot) < len(db.peerSlots) && db.peerSlots[p.slot] == p {
		return p.regs
	}
	return nil
}

// producerIndexLocked returns where peer s is, or would be, in
// t.producers, and whether it is there.
func (db *registrationDB) producerIndexLocked(t *topicReg, s slot) (int, bool) {
	id := db.peerSlots[s].info.id
	return slices.BinarySearchFunc(t.producers, id, func(e topicEntry, id string) int {
		return strings.Compare(db.peerSlots[e.slot].info.id, id)
	})
}

// addChannelLocked adds the channel registration (t.name channel) with no
// producers, if absent.
func addChannelLocked(t *topicReg, channel string) {
	if _, ok := t.channels[channel]; ok {
		return
	}
	t.channels[channel] = nil
	t.channelsPeak = max(t.channelsPeak, len(t.channels))
	i, _ := slices.BinarySearch(t.channelNames, channel)
	t.channelNames = slices.Insert(t.channelNames, i, channel)
}

// deleteChannelLocked removes the channel registration (t.name channel).
func deleteChannelLocked(t *topicReg, channel string) {
	delete(t.channels, channel)
	if i, ok := slices.BinarySearch(t.channelNames, channel); ok {
		t.channelNames = slices.Delete(t.channelNames, i, i+1)
	}
	if len(t.channelNames) == 0 {
		t.channelNames = nil
	}
}

// addPeer adds an identified peer to the client registration. It reports
// false if a peer with that id is there already.
func (db *registrationDB) addPeer(p *peer) bool {
	db.mu.Lock()
	defer db.mu.Unlock()
	if _, ok := db.peers[p.info.id]; ok {
		return false
	}
	pr := &peerRegs{peer: p, topics: make(map[slot]int32)}
	p.regs = pr
	p.slot = allocSlot(&db.peerSlots, &db.freePeers, p)
	db.peers[p.info.id] = pr
	db.peersPeak = max(db.peersPeak, len(db.peers))
	return true
}

// register adds p to (channel topic channel), when channel is not empty, and
// to (topic topic), and reports which of the two it was not in before. A
// repeated registration keeps the producer's tombstone.
func (db *registrationDB) register(p *peer, topic, channel string) (channelAdded, topicAdded bool) {
	db.mu.Lock()
	defer db.mu.Unlock()
	pr := db.peerLocked(p)
	if pr == nil {
		return false, false // the peer has gone: its connection is being torn down
	}
	t := db.topicLocked(topic)
	if channel != "" {
		producers := t.channels[channel]
		if producers == nil { // a new channel, or one without producers
			addChannelLocked(t, channel)
			producers = make(map[slot]struct{})
			t.channels[channel] = producers
		}
		if _, ok := producers[p.slot]; !ok {
			producers[p.slot] = struct{}{}
			pr.topics[t.slot]++
			channelAdded = true
		}
	}
	t.registered = true
	if i, ok := db.producerIndexLocked(t, p.slot); !ok {
		t.producers = slices.Insert(t.producers, i, topicEntry{slot: p.slot})
		pr.topics[t.slot]++
		topicAdded = true
	}
	return channelAdded, topicAdded
}

// removeChannelProducerLocked removes peer s from channel of t and, if that
// leaves an ephemeral channel empty, the channel itself.
func (db *registrationDB) removeChannelProducerLocked(t *topicReg, channel string, s slot) bool {
	producers, ok := t.channels[channel]
	if !ok {
		return false
	}
	_, removed := producers[s]
	if removed {
		delete(producers, s)
		db.forgetLocked(s, t)
	}
	if len(producers) == 0 {
		if protocol.IsEphemeral(channel) {
			deleteChannelLocked(t, channel)
		} else {
			// The registration stays, but not the storage of the map
			// that held its producers (~200 bytes even when empty).
			t.channels[channel] = nil
		}
	}
	return removed
}

// removeTopicProducerLocked removes peer s from the topic registration of t
// and, if that leaves an ephemeral topic empty, the registration itself.
func (db *registrationDB) removeTopicProducerLocked(t *topicReg, s slot) bool {
	i, removed := db.producerIndexLocked(t, s)
	if removed {
		t.producers = slices.Delete(t.producers, i, i+1)
		if len(t.producers) == 0 {
			t.producers = nil
		}
		db.forgetLocked(s, t)
	}
	if t.registered && len(t.producers) == 0 && protocol.IsEphemeral(t.name) {
		t.registered = false
	}
	return removed
}

// unregisterChannel removes p from (channel topic channel); an ephemeral
// channel left empty is removed.
func (db *registrationDB) unregisterChannel(p *peer, topic, channel string) bool {
	db.mu.Lock()
	defer db.mu.Unlock()
	t, ok := db.topics[topic]
	if !ok || db.peerLocked(p) == nil {
		return false
	}
	removed := db.removeChannelProducerLocked(t, channel, p.slot)
	db.gcLocked(t)
	return removed
}

// unregisterTopic removes p from every channel of topic, then from the
// topic; ephemeral registrations left empty are removed. It returns the
// channels p was removed from, and whether it was in the topic.
func (db *registrationDB) unregisterTopic(p *peer, topic string) (channels []string, removed bool) {
	db.mu.Lock()
	defer db.mu.Unlock()
	t, ok := db.topics[topic]
	if !ok || db.peerLocked(p) == nil {
		return nil, false
	}
	for channel := range t.channels {
		if db.removeChannelProducerLocked(t, channel, p.slot) {
			channels = append(channels, channel)
		}
	}
	removed = db.removeTopicProducerLocked(t, p.slot)
	db.gcLocked(t)
	slices.Sort(channels)
	return channels, removed
}

// removePeer removes p from the client registration and from every
// registration it holds, removing ephemeral ones it leaves empty. It returns
// the registrations p was removed from, sorted.
func (db *registrationDB) removePeer(p *peer) []registration {
	db.mu.Lock()
	defer db.mu.Unlock()
	pr := db.peerLocked(p)
	if pr == nil {
		return nil
	}
	s := p.slot
	removed := []registration{{Category: "client"}}
	for ts := range pr.topics {
		t := db.topicSlots[ts]
		for channel, producers := range t.channels {
			if _, ok := producers[s]; ok {
				db.removeChannelProducerLocked(t, channel, s)
				removed = append(removed, registration{"channel", t.name, channel})
			}
		}
		if db.removeTopicProducerLocked(t, s) {
			removed = append(removed, registration{"topic", t.name, ""})
		}
		db.gcLocked(t)
	}
	delete(db.peers, p.info.id)
	db.peerSlots[s] = nil
	db.freePeers = append(db.freePeers, s)
	db.peers = shrink(db.peers, &db.peersPeak)
	slices.SortFunc(removed, compareRegistrations)
	return removed
}

// createTopic adds the registration (topic name) if absent.
func (db *registrationDB) createTopic(name string) {
	db.mu.Lock()
	defer db.mu.Unlock()
	db.topicLocked(name).registered = true
}

// createChannel adds (channel topic channel) and (topic topic) if absent.
func (db *registrationDB) createChannel(topic, channel string) {
	db.mu.Lock()
	defer db.mu.Unlock()
	t := db.topicLocked(topic)
	addChannelLocked(t, channel) // no producers yet: register makes the map
	t.registered = true
}

// dropChannelLocked removes the registration (channel t.name channel), with
// its producers.
func (db *registrationDB) dropChannelLocked(t *topicReg, channel string) {
	for s := range t.channels[channel] {
		db.forgetLocked(s, t)
	}
	deleteChannelLocked(t, channel)
}

// deleteTopic removes every channel registration of the matching topics,
// then the topic registrations, producers and all. It returns what it
// removed, sorted.
func (db *registrationDB) deleteTopic(name string) (channels []registration, topics []string) {
	db.mu.Lock()
	defer db.mu.Unlock()
	db.matchLocked(name, func(t *topicReg) {
		for channel := range t.channels {
			db.dropChannelLocked(t, channel)
			channels = append(channels, registration{"channel", t.name, channel})
		}
		if t.registered {
			for _, e := range t.producers {
				db.forgetLocked(e.slot, t)
			}
			t.producers = nil
			t.registered = false
			topics = append(topics, t.name)
		}
		db.gcLocked(t)
	})
	slices.SortFunc(channels, compareRegistrations)
	slices.Sort(topics)
	return channels, topics
}

// deleteChannel removes the registration (channel topic channel) with its
// producers; it reports false if there was none.
func (db *registrationDB) deleteChannel(topic, channel string) bool {
	db.mu.Lock()
	defer db.mu.Unlock()
	t, ok := db.topics[topic]
	if !ok {
		return false
	}
	if _, ok := t.channels[channel]; !ok {
		return false
	}
	db.dropChannelLocked(t, channel)
	db.gcLocked(t)
	return true
}

// tombstone marks, in the matching topics, every producer whose
// broadcast_address:http_port is node as tombstoned at now. It returns how
// many entries it marked.
func (db *registrationDB) tombstone(topic, node string, now time.Time) int {
	db.mu.Lock()
	defer db.mu.Unlock()
	n := 0
	db.matchLocked(topic, func(t *topicReg) {
		for i, e := range t.producers {
			if db.peerSlots[e.slot].info.isNode(node) {
				t.producers[i].tb = tombstone{at: now.UnixNano(), set: true}
				n++
			}
		}
	})
	return n
}

// node returns the producer's broadcast_address:http_port, as named by
// /topic/tombstone.
func (pi *peerInfo) node() string {
	return pi.BroadcastAddress + ":" + strconv.Itoa(pi.HTTPPort)
}

// producerState is a copy of a producer's registration state.
type producerState struct {
	info         *peerInfo // immutable, shared
	lastUpdate   int64
	tombstoned   bool
	tombstonedAt time.Time
}

// stateLocked returns the state of peer s with the tombstone tb.
func (db *registrationDB) stateLocked(s slot, tb tombstone) producerState {
	ps := peerState(db.peerSlots[s])
	if tb.set {
		ps.tombstoned, ps.tombstonedAt = true, time.Unix(0, tb.at)
	}
	return ps
}

func peerState(p *peer) producerState {
	return producerState{info: &p.info, lastUpdate: p.lastUpdate.Load()}
}

// isTombstoned reports whether the producer's tombstone is younger than
// lifetime.
func (ps producerState) isTombstoned(now time.Time, lifetime time.Duration) bool {
	return ps.tombstoned && now.Sub(ps.tombstonedAt) < lifetime
}

// isActive reports whether the producer pinged within inactiveTimeout and is
// not tombstoned within lifetime.
func (ps producerState) isActive(now time.Time, inactiveTimeout, lifetime time.Duration) bool {
	return now.UnixNano()-ps.lastUpdate <= int64(inactiveTimeout) && !ps.isTombstoned(now, lifetime)
}

func byID(a, b producerState) int {
	return strings.Compare(a.info.id, b.info.id)
}

// topicNames returns the names of every topic registration, sorted.
func (db *registrationDB) topicNames() []string {
	db.mu.RLock()
	defer db.mu.RUnlock()
	return db.topicNamesLocked()
}

func (db *registrationDB) topicNamesLocked() []string {
	names := make([]string, 0, len(db.topics))
	for name, t := range db.topics {
		if t.registered {
			names = append(names, name)
		}
	}
	slices.Sort(names)
	return names
}

// channelsLocked appends the channel names of the matching topics, sorted.
func (db *registrationDB) channelsLocked(topic string, channels []string) []string {
	db.matchLocked(topic, func(t *topicReg) {
		channels = append(channels, t.channelNames...)
	})
	if topic == wildcard {
		slices.Sort(channels)
	}
	return channels
}

// channelNames returns the channel names of topic (of every topic for the
// wildcard), sorted; never nil.
func (db *registrationDB) channelNames(topic string) []string {
	db.mu.RLock()
	defer db.mu.RUnlock()
	return db.channelsLocked(topic, []string{})
}

// lookup returns the channels and producers of topic (for the wildcard: of
// every topic, each producer once, in its least tombstoned entry). ok is
// false when no matching topic registration exists.
func (db *registrationDB) lookup(topic string) (channels []string, producers []producerState, ok bool) {
	db.mu.RLock()
	defer db.mu.RUnlock()
	if topic != wildcard {
		t, found := db.topics[topic]
		if !found || !t.registered {
			return nil, nil, false
		}
		producers = make([]producerState, len(t.producers))
		for i, e := range t.producers {
			producers[i] = db.stateLocked(e.slot, e.tb)
		}
		return append(make([]string, 0, len(t.channelNames)), t.channelNames...), producers, true
	}

	index := make(map[slot]int)
	for _, t := range db.topics {
		if !t.registered {
			continue
		}
		ok = true
		for _, e := range t.producers {
			s, tb := e.slot, e.tb
			i, seen := index[s]
			switch {
			case !seen:
				index[s] = len(producers)
				producers = append(producers, db.stateLocked(s, tb))
			case !tb.set:
				producers[i] = db.stateLocked(s, tb)
			case producers[i].tombstoned && tb.at < producers[i].tombstonedAt.UnixNano():
				producers[i] = db.stateLocked(s, tb)
			}
		}
	}
	if !ok {
		return nil, nil, false
	}
	slices.SortFunc(producers, byID)
	return db.channelsLocked(topic, []string{}), producers, true
}

// nodeState is a copy of an identified producer with the topics it is
// registered in, sorted, and whether it is tombstoned in each.
type nodeState struct {
	producerState
	topics     []string
	tombstones []bool // tombstones[i] is for topics[i]
}

// nodes returns every identified producer, sorted by id, with its topics
// and, for each, whether its tombstone there is younger than lifetime at
// now. One pass over the topics in name order appends each to its
// producers' lists, so no list needs sorting: the cost is the answer's size.
func (db *registrationDB) nodes(now time.Time, lifetime time.Duration) []nodeState {
	db.mu.RLock()
	defer db.mu.RUnlock()
	bySlot := make([]int, len(db.peerSlots))
	nodes := make([]nodeState, 0, len(db.peers))
	for s, p := range db.peerSlots {
		if p == nil {
			continue
		}
		bySlot[s] = len(nodes)
		nodes = append(nodes, nodeState{
			producerState: peerState(p),
			topics:        make([]string, 0, len(p.regs.topics)),
			tombstones:    make([]bool, 0, len(p.regs.topics)),
		})
	}
	cutoff := now.Add(-lifetime).UnixNano()
	for _, name := range db.topicNamesLocked() {
		for _, e := range db.topics[name].producers {
			n := &nodes[bySlot[e.slot]]
			n.topics = append(n.topics, name)
			n.tombstones = append(n.tombstones, e.tb.set && e.tb.at > cutoff)
		}
	}
	slices.SortFunc(nodes, func(a, b nodeState) int { return byID(a.producerState, b.producerState) })
	return nodes
}

// debugState returns every registration that has producers, keyed
// "category:key:subkey", each list sorted by id.
func (db *registrationDB) debugState() map[string][]producerState {
	db.mu.RLock()
	defer db.mu.RUnlock()
	data := make(map[string][]producerState)
	if len(db.peers) > 0 {
		list := make([]producerState, 0, len(db.peers))
		for _, pr := range db.peers {
			list = append(list, peerState(pr.peer))
		}
		slices.SortFunc(list, byID)
		data["client::"] = list
	}
	for name, t := range db.topics {
		if len(t.producers) > 0 {
			list := make([]producerState, len(t.producers))
			for i, e := range t.producers {
				list[i] = db.stateLocked(e.slot, e.tb)
			}
			data["topic:"+name+":"] = list
		}
		for channel, producers := range t.channels {
			if len(producers) == 0 {
				continue
			}
			list := make([]producerState, 0, len(producers))
			for s := range producers {
				list = append(list, peerState(db.peerSlots[s]))
			}
			slices.SortFunc(list, byID)
			data["channel:"+name+":"+channel] = list
		}
	}
	return data
}
